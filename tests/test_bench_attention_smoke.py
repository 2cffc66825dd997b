"""Smoke test of benchmarks/bench_attention.py on tiny shapes: one whole run (moelab vs
transformers' sdpa and eager, prefill and decode) and its report. No time is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from require_reference import require_torch_and_transformers

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_attention as ba  # noqa: E402

TINY = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            max_position_embeddings=256, rms_norm_eps=1e-6)


def test_a_whole_run_and_its_report(restore_threads):
    require_torch_and_transformers()
    args = ba.parse_args(["--tokens", "20", "70", "--contexts", "30", "--threads", "1", "2",
                          "--repeats", "1", "--decode-steps", "2"])
    results = ba.run(args, dims=TINY)
    assert [(r["threads"], r["T"]) for r in results["prefill"]] == [(1, 20), (1, 70), (2, 20),
                                                                     (2, 70)]
    assert [(r["threads"], r["context"]) for r in results["decode"]] == [(1, 30), (2, 30)]
    for cell in results["prefill"] + results["decode"]:
        assert set(cell["ms"]) >= {"moelab", "sdpa", "eager"}
        assert all(v <= ba.VERIFY_RTOL for k, v in cell["rel_err"].items() if k in ba.PATHS)
    assert results["decode"][0]["cache_bytes"] == 32 * 2 * 2 * 16 * 4  # C + steps tokens
    report = ba.render(results)
    assert "| 2 | 70 |" in report and "## Decode" in report


def test_disagreement_is_an_error():
    with pytest.raises(RuntimeError, match="disagree"):
        ba.check_agreement({"rel_err": {"sdpa": 1e-2, "eager": 0.0}})
