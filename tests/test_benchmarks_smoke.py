"""Smoke tests of the benchmark's helpers (benchmarks/): roofline arithmetic on known inputs,
designed routing, reuse distance, HF weight conversion and the report, on tiny shapes.

No timing is asserted anywhere: times are only produced, never compared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import moelab

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import moelab.designed_tokens as _inputs  # noqa: E402
import _roofline as rl  # noqa: E402
import bench_moe  # noqa: E402
from _report import render_report  # noqa: E402

TINY = {
    "softmax": moelab.MoEConfig(64, 16, 2, 8),
    "topk_softmax": moelab.MoEConfig(64, 8, 2, 8, scoring="topk_softmax", router_bias=True,
                                     activation="swiglu_oai", expert_bias=True),
    "sigmoid_grouped": moelab.MoEConfig(64, 16, 4, 8, scoring="sigmoid", n_group=4,
                                        topk_group=2, correction_bias=True,
                                        routed_scaling_factor=2.5, n_shared_experts=1),
}


def _reference_imports():
    """torch + the HF block helpers; a missing reference fails under MOELAB_REQUIRE_REFERENCE=1."""
    try:
        import torch  # noqa: F401
        import _torch_blocks
    except Exception as exc:  # ImportError or a broken install
        if os.environ.get("MOELAB_REQUIRE_REFERENCE", "") not in ("", "0"):
            pytest.fail(f"MOELAB_REQUIRE_REFERENCE=1 but torch/transformers: {exc}")
        pytest.skip(f"torch/transformers unavailable: {exc}")
    return _torch_blocks


# -- roofline arithmetic ------------------------------------------------------------------------

def test_roofline_takes_the_larger_time_and_fraction_is_roof_over_measured():
    r = rl.roofline(flops=1000, nbytes=50, peak_flops_per_s=100.0, bytes_per_s=10.0)
    assert r.compute_s == pytest.approx(10.0) and r.bandwidth_s == pytest.approx(5.0)
    assert r.roof_s == pytest.approx(10.0) and r.bound == "compute"
    assert r.fraction(20.0) == pytest.approx(0.5)
    m = rl.roofline(flops=10, nbytes=500, peak_flops_per_s=100.0, bytes_per_s=10.0)
    assert m.roof_s == pytest.approx(50.0) and m.bound == "memory"


@pytest.mark.parametrize("kw", [dict(peak_flops_per_s=0.0, bytes_per_s=1.0),
                                dict(peak_flops_per_s=1.0, bytes_per_s=-1.0)])
def test_roofline_rejects_non_positive_rates(kw):
    with pytest.raises(ValueError, match="must be > 0"):
        rl.roofline(1, 1, **kw)
    with pytest.raises(ValueError, match="measured_s"):
        rl.roofline(1, 1, 1.0, 1.0).fraction(0.0)


def test_flops_and_bytes_on_a_hand_counted_layer():
    cfg = moelab.MoEConfig(4, 4, 2, 3, expert_bias=True, router_bias=True,
                           n_shared_experts=1, shared_intermediate_size=5)
    H, E, k, I, S = 4, 4, 2, 3, 5
    assert rl.expert_bytes(cfg) == (3 * H * I + 2 * I + H) * 4
    assert rl.expert_bytes(cfg, weight_bytes=2) == 3 * H * I * 2 + (2 * I + H) * 4
    assert rl.shared_bytes(cfg) == 3 * H * S * 4
    assert rl.router_bytes(cfg) == (E * H + E) * 4
    T = 7
    assert rl.moe_flops(cfg, T) == 2 * T * H * E + 2 * T * k * 3 * H * I + 2 * T * 3 * H * S
    ids = np.array([[0, 1], [1, 2]])  # 3 distinct experts
    assert rl.touched_bytes(cfg, ids) == (3 * rl.expert_bytes(cfg) + rl.shared_bytes(cfg)
                                          + rl.router_bytes(cfg) + 2 * 2 * H * 4)
    assert rl.gathered_weight_bytes(cfg, T) == T * k * rl.expert_bytes(cfg)
    with pytest.raises(ValueError, match="topk_ids"):
        rl.touched_bytes(cfg, np.zeros(3))


def test_bandwidth_probe_reads_the_whole_buffer_and_validates():
    buf = np.ones(1 << 16, dtype=np.float32)
    assert rl.measure_read_bandwidth(buf, threads=2, repeats=1) > 0
    with pytest.raises(ValueError, match="buffer"):
        rl.measure_read_bandwidth(buf.astype(np.float64), threads=1)
    with pytest.raises(ValueError, match="threads"):
        rl.measure_read_bandwidth(buf, threads=0)


def test_statistics_helpers():
    y = np.array([[3.0, 4.0], [0.0, 1.0]])
    assert bench_moe.rel_err(y, y) == 0.0
    assert bench_moe.rel_err(2 * y, y) == pytest.approx(1.0)
    assert bench_moe.max_token_rel_err(y + [[0.0, 0.0], [0.0, 0.5]], y) == pytest.approx(0.5)
    # whole rotations, at least one call, fewer calls at large T
    assert bench_moe.n_calls_for(1, 5, 16) == 16
    assert bench_moe.n_calls_for(8, 5, 4) == 16
    assert bench_moe.n_calls_for(2048, 5, 1) == 3
    assert bench_moe.n_calls_for(512, 5, 1) == 3


def test_paired_timing_alternates_the_two_functions_on_each_batch():
    calls = []
    batches = [np.zeros(1), np.ones(1)]
    ta, tb = bench_moe.time_paired(lambda x: calls.append(("a", x[0])),
                                   lambda x: calls.append(("b", x[0])), batches, 4)
    assert calls == [("a", 0.0), ("b", 0.0), ("a", 1.0), ("b", 1.0)] * 2
    assert len(ta) == len(tb) == 4 and min(ta + tb) >= 0.0


# -- designed routing -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TINY))
def test_cycle_sets_cover_every_expert_evenly_and_respect_groups(name, rng):
    cfg = TINY[name]
    sets = _inputs.cycle_sets(cfg, rng)
    assert sets.shape[1] == cfg.num_experts_per_tok
    counts = np.bincount(sets.ravel(), minlength=cfg.num_experts)
    assert counts.min() == counts.max() >= 1
    assert all(len(set(s)) == len(s) for s in sets.tolist())
    if cfg.n_group > 1:
        per_group = cfg.num_experts // cfg.n_group
        assert all(len(set((s // per_group).tolist())) == cfg.topk_group for s in sets)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("T", [1, 2, 16])
def test_designed_tokens_select_the_designed_experts(name, T, rng):
    cfg = TINY[name]
    layer = moelab.MoELayer(cfg, seed=3)
    batches, sets, mode = _inputs.make_batches(cfg, layer.weights["router.weight"], T, 3, rng,
                                                 router_bias=layer.weights.get("router.bias"))
    assert mode == ("cycle" if T * cfg.num_experts_per_tok <= cfg.num_experts else "random")
    assert len(batches) >= 3 and all(b.shape == (T, cfg.hidden_size) for b in batches)
    for xb, s in zip(batches, sets):
        _, st = layer(xb, return_stats=True)
        np.testing.assert_array_equal(np.sort(st.topk_ids, axis=1), np.sort(s, axis=1))


def test_reuse_distance_counts_other_experts_between_uses():
    cfg = moelab.MoEConfig(8, 4, 2, 3)
    eb = rl.expert_bytes(cfg)
    # sequence 0 1 | 2 3 | 0 1 | 2 3: expert 0 waits for 1, 2, 3
    assert bench_moe.min_reuse_bytes(cfg, [np.array([[0, 1]]), np.array([[2, 3]])]) == 3 * eb
    # the same batch every call: 1 | 0 -> expert 0 waits for expert 1 only
    assert bench_moe.min_reuse_bytes(cfg, [np.array([[1, 0]])]) == 1 * eb


# -- transformers blocks and the report -----------------------------------------------------------

@pytest.mark.reference
@pytest.mark.parametrize("family, cfg", [
    ("qwen3_moe", moelab.MoEConfig(32, 8, 2, 16)),
    ("mixtral", moelab.MoEConfig(32, 8, 2, 16)),
    ("gpt_oss", TINY["topk_softmax"].replace(hidden_size=32, moe_intermediate_size=16)),
    ("deepseek_v3", TINY["sigmoid_grouped"].replace(hidden_size=32, moe_intermediate_size=16)),
])
def test_hf_block_with_moelab_weights_matches_every_implementation(family, cfg, rng):
    hfb = _reference_imports()
    layer = moelab.MoELayer(cfg, seed=1)
    block = hfb.build_hf_block(family, cfg, layer.weights)
    x = (2.0 * rng.standard_normal((12, cfg.hidden_size))).astype(np.float32)
    y = layer(x)
    for impl in ("eager", "batched_mm", "grouped_mm"):
        hfb.set_experts_implementation(block, impl)
        assert bench_moe.rel_err(hfb.hf_forward(block, x), y) < 1e-5, impl
    with pytest.raises(ValueError, match="experts implementation"):
        hfb.set_experts_implementation(block, "nope")


@pytest.mark.reference
def test_gpt_oss_layout_interleaves_gate_and_up_columns():
    hfb = _reference_imports()
    E, I, H = 2, 3, 4
    gu = np.arange(E * 2 * I * H, dtype=np.float32).reshape(E, 2 * I, H)     # (E, 2I, H)
    w = {"experts.gate_up_proj": gu, "experts.down_proj": np.zeros((E, H, I), np.float32),
         "experts.gate_up_proj_bias": np.arange(E * 2 * I, dtype=np.float32).reshape(E, 2 * I),
         "experts.down_proj_bias": np.zeros((E, H), np.float32)}
    out = hfb.to_gpt_oss_layout(w)
    assert out["experts.gate_up_proj"].shape == (E, H, 2 * I)
    assert out["experts.down_proj"].shape == (E, I, H)
    np.testing.assert_array_equal(out["experts.gate_up_proj"][1, :, 4], gu[1, 2, :])      # gate 2
    np.testing.assert_array_equal(out["experts.gate_up_proj"][1, :, 5], gu[1, I + 2, :])  # up 2
    np.testing.assert_array_equal(out["experts.gate_up_proj_bias"][0], [0, 3, 1, 4, 2, 5])


def test_a_cell_and_the_report_on_a_tiny_layer(rng, restore_threads, tmp_path):
    cfg = TINY["softmax"]
    layer = moelab.MoELayer(cfg, seed=0)
    args = bench_moe.parse_args(["--no-torch", "--repeats", "1", "--threads", "1"])
    row = bench_moe.bench_cell("tiny", cfg, layer, None, None, 4, 1, args, rng, 1e10, 1e10,
                               {}, {}, lambda msg: None)
    assert row["routing_as_designed"] and row["schedule"] == "cycle"
    assert row["distinct_experts_mean"] == 8.0
    assert row["flops"] == rl.moe_flops(cfg, 4)
    assert {"route", "dispatch", "gate_up", "down", "combine"} <= set(row["phases"])
    assert row["roofline_s"] == pytest.approx(max(row["flops"], row["bytes"]) / 1e10)
    assert row["roofline_fraction"] == pytest.approx(row["roofline_s"]
                                                     / row["moelab"]["median_s"])
    results = {
        "meta": {"started": "now", "args": vars(args), "load_before": [0.0] * 3,
                 "lscpu": {"L3 cache": "4 MiB (1 instance)"}, "llc_bytes": 4 << 20},
        "bandwidth": {"buffer_bytes": 1 << 20, "kernel_cache_rate": 5e10,
                      "probes": [{"when": "start", "bytes_per_s": {1: 1e10}},
                                 {"when": "end", "bytes_per_s": {1: 2e10}}]},
        "models": {"tiny": {"config": {"hidden_size": 64, "num_experts": 16,
                                       "num_experts_per_tok": 2, "moe_intermediate_size": 8,
                                       "scoring": "softmax", "activation": "silu"},
                            "shared_width": 0, "layer_bytes_fp32": cfg.num_params * 4,
                            "expert_bytes": rl.expert_bytes(cfg), "rows": [row],
                            "verification": {}, "gemm_rate": {1: 1e10},
                            "torch_gemm_rate": {}}}}
    bench_moe.apply_roofs(results)          # the best probe (2e10 B/s) now sets the roof
    assert results["bandwidth"]["used"] == {1: 2e10}
    assert row["bandwidth_roof_s"] == pytest.approx(row["bytes"] / 2e10)
    assert row["roofline_s"] == pytest.approx(max(row["flops"] / 1e10, row["bytes"] / 2e10))
    md = render_report(results)
    assert "### tiny" in md and "| 4 | 1 |" in md and "**20.0**" in md
    assert "bf16: pending" in md or "bfloat16" in md
    assert "| tiny | 4 | 1 |" in md          # the phase-timings table
    # --report-from: results.json round-trips (int thread keys) and gives the same roofs
    bench_moe.save(results, tmp_path, partial=False)
    again = bench_moe.load_results(tmp_path / "results.json")
    bench_moe.apply_roofs(again)
    assert again["models"]["tiny"]["rows"][0]["roofline_s"] == pytest.approx(row["roofline_s"])
    assert (tmp_path / "RESULTS.md").read_text() == md


def test_designed_tokens_have_exactly_the_designed_logits_and_need_e_le_h(rng):
    W = rng.uniform(-0.1, 0.1, (6, 16)).astype(np.float32)                  # (E, H)
    b = rng.uniform(-0.1, 0.1, 6).astype(np.float32)
    sets = np.array([[4, 1], [0, 5]])
    x = _inputs.design_tokens(W, sets, rng, router_bias=b)                  # (2, H)
    logits = x.astype(np.float64) @ W.T + b                                 # (2, E)
    np.testing.assert_array_equal(np.argsort(-logits, axis=1)[:, :2], sets)
    np.testing.assert_allclose(logits[0, [4, 1]], [_inputs.CHOSEN_LOGIT + _inputs.LOGIT_STEP,
                                                  _inputs.CHOSEN_LOGIT], atol=1e-4)
    with pytest.raises(ValueError, match="E <= H"):
        _inputs.design_tokens(W.T, np.array([[0, 1]]), rng)


def test_bench_moe_imports_moelab_only_after_its_snapshot():
    """bench_moe's default run imports moelab from a private copy (snapshot_moelab), which
    refuses to run once moelab is imported: the module itself must not import it."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import bench_moe; "
            "print('moelab' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
