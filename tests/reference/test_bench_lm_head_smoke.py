"""Smoke test of benchmarks/bench_lm_head.py: the --quick run on one tiny shape, its checks and
its table. No timing is asserted: times are only produced, never compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import moelab

BENCH = Path(__file__).resolve().parent.parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_lm_head as bl  # noqa: E402

pytestmark = pytest.mark.reference


def test_quick_run_measures_every_cell(tmp_path, capsys, restore_threads):
    cells = bl.main(["--quick", "--calls", "1", "--threads", "1", "--json", str(tmp_path / "r.json")])
    assert len(cells) == len(bl.QUICK_SHAPES) * 2 * len(bl.QUICK_TOKENS)
    assert {(c["T"], c["dtype"]) for c in cells} == {(T, d) for T in bl.QUICK_TOKENS
                                                     for d in ("float32", "bfloat16")}
    for c in cells:
        assert c["rel_err"] <= bl.VERIFY_RTOL and c["moelab"]["n"] == 1
        assert c["weight_bytes"] == c["V"] * c["H"] * (4 if c["dtype"] == "float32" else 2)
    assert "torch/moelab" in capsys.readouterr().out
    assert (tmp_path / "r.json").stat().st_size > 0


def test_a_wrong_product_is_caught(monkeypatch):
    monkeypatch.setattr(moelab.ops, "linear", lambda x, w: np.zeros((x.shape[0], w.shape[0]), np.float32))
    with pytest.raises(AssertionError, match="moelab off by"):
        bl.run_cell(64, 16, 2, "bfloat16", 1, np.random.default_rng(0))
