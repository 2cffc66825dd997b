"""Smoke test of benchmarks/bench_attention.py on tiny shapes: one whole run (moelab's softmax
attention and MLA layers vs transformers' sdpa and eager, prefill and decode, with the FMA peak
and the bandwidth roof) and its report. No time is asserted."""

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
TINY_MLA = dict(hidden_size=64, num_attention_heads=4, q_lora_rank=24, kv_lora_rank=32,
                qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12,
                max_position_embeddings=256, rms_norm_eps=1e-6)


def test_a_whole_run_and_its_report(restore_threads):
    require_torch_and_transformers()
    args = ba.parse_args(["--quick", "--tokens", "20", "70", "--contexts", "30", "--threads",
                          "1", "2", "--repeats", "1", "--decode-steps", "2"])
    results = ba.run(args, dims=TINY, mla_dims=TINY_MLA)
    cells = [(r["layer"], r["threads"], r["T"]) for r in results["prefill"]]
    assert cells == [(name, n, T) for name in ("qwen3", "mla") for n in (1, 2) for T in (20, 70)]
    assert [(r["layer"], r["threads"], r["context"]) for r in results["decode"]] == [
        ("qwen3", 1, 30), ("qwen3", 2, 30), ("mla", 1, 30), ("mla", 2, 30)]
    for cell in results["prefill"] + results["decode"]:
        assert set(cell["ms"]) >= {"moelab", "sdpa", "eager"}
        assert all(v <= ba.VERIFY_RTOL for k, v in cell["rel_err"].items() if k in ba.PATHS)
    assert all(b > 0 for b in results["bandwidth"].values())
    for cell in results["prefill"]:
        if cell["peak"] is not None:  # None only without a C compiler
            assert set(cell["peak_fraction"]) == {"moelab", "sdpa", "eager"}
            assert all(f > 0 for f in cell["peak_fraction"].values())
    for cell in results["decode"]:
        assert cell["roof_fraction"]["moelab"] > 0 and cell["roof_ms"]["moelab"] > 0
        # f32 weights of the bf16 twin's projections take half the bytes
        assert cell["bytes_read"]["moelab-bf16"] < cell["bytes_read"]["moelab"]
    qwen_decode, mla_decode = results["decode"][0], results["decode"][2]
    assert qwen_decode["cache_bytes"] == 32 * 2 * 2 * 16 * 4  # C + steps tokens, K and V
    assert mla_decode["cache_bytes"] == 32 * (32 + 8) * 4     # latent + rope key per token
    report = ba.render(results)
    for part in ("| qwen3 | 2 | 70 |", "| mla | 1 | 20 |", "## Decode", "FMA peak",
                 "read bandwidth", "% of roof"):
        assert part in report


def test_flop_counts_by_hand():
    import moelab
    spec = moelab.AttentionSpec(**TINY, qk_norm="head")
    # q, k, v: 2*64*(64 + 32 + 32); o: 2*64*64; per pair QK and PV: 2*2*4*16
    assert ba.attention_flops(spec, 3) == 3 * (2 * 64 * 128 + 2 * 64 * 64) + 6 * 2 * 2 * 4 * 16
    mla = moelab.MLASpec(**TINY_MLA)
    per_token = (2 * 64 * 24 + 2 * 24 * 4 * 24 + 2 * 64 * 40 + 2 * 32 * 4 * 28
                 + 2 * 4 * 12 * 64)
    assert ba.mla_flops(mla, 3) == 3 * per_token + 6 * 2 * 4 * (24 + 12)


def test_eager_is_skipped_past_its_score_limit():
    layers = {"layer": type("L", (), {"spec": type("S", (), {"num_attention_heads": 128})})}
    assert ba.eager_fits(layers, 4096) and not ba.eager_fits(layers, 8192)


def test_disagreement_is_an_error():
    with pytest.raises(RuntimeError, match="disagree"):
        ba.check_agreement({"rel_err": {"sdpa": 1e-2, "eager": 0.0}})
