"""The README tells a new user what moelab does today: the presets, the instruction sets, how to
get a CPU build of the reference torch, and set-up commands that stay as CI runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import moelab
from test_dtype_isa import ORDER

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
PROSE = " ".join(README.split())  # line breaks and indentation do not matter in the prose


def test_names_every_dense_preset():
    dense = [n for n in moelab.list_presets() if not moelab.preset(n).is_moe]
    assert dense
    for name in dense:
        assert f"`{name}`" in README, name


def test_names_the_instruction_sets():
    assert f"MOELAB_ISA={'|'.join(ORDER)}" in README


@pytest.mark.parametrize("text", [
    "Inference only, CPU only", "no training", "no GPU", "x86-64", "Nothing is downloaded",
    "F32, F16, BF16 or F64", "Quantized tensors", "read in place by the kernels",
    "no `generate` command in the CLI", "Other model types are refused by name"])
def test_says_what_it_does_not_do(text):
    assert text in PROSE


def test_says_how_to_get_a_cpu_torch():
    assert "multi-GB CUDA build" in PROSE
    assert ("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
            in README)


def test_set_up_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert "pip install . && python -m moelab compare\n" in blocks
    assert "pip install \".[test,reference]\" && python -m pytest\n" in blocks
    marker = README.index("<!-- test-command")
    assert README[marker:].split("```bash\n", 1)[1].startswith(
        "pip install \".[test,reference]\" && python -m pytest\n")
