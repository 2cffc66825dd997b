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
    "Other model types are refused by name"])
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


def test_shows_generate_on_a_local_checkpoint():
    """The generate section: the command on a local path, weights read from disk, no Hub
    download, and the model types that load (every one of load_model's, no other)."""
    import moelab.hf_decoder

    section = README.split("## Generate from a local checkpoint", 1)[1].split("\n## ", 1)[0]
    assert 'python -m moelab generate path/to/checkpoint "' in section and "--trace" in section
    prose = " ".join(section.split())
    assert "The weights are read from disk" in prose and "Nothing is downloaded" in prose
    listed = re.findall(r"`([a-z0-9_]+)`", prose.split("The model types that load", 1)[1]
                        .split(";", 1)[0])
    assert sorted(listed) == sorted(moelab.hf_decoder.DECODER_MODEL_TYPES)


def test_generate_doc_names_the_api_and_the_model_types():
    import moelab.hf_decoder

    doc = (Path(__file__).resolve().parents[1] / "docs" / "generate.md").read_text("utf-8")
    for name in ("moelab.build(", "moelab.hf.load_model(", "model.generate(", "ExpertTrace",
                 "moelab.plot.expert_trace(", "python -m moelab generate"):
        assert name in doc, name
    prose = " ".join(doc.split())
    listed = re.findall(r"`([a-z0-9_]+)`", prose.split("Model types that load", 1)[1]
                        .split("(`moelab.hf_decoder", 1)[0])
    assert sorted(listed) == sorted(moelab.hf_decoder.DECODER_MODEL_TYPES)
