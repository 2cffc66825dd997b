"""Smoke tests of benchmarks/bench_deltanet.py and its FMA probe on tiny shapes: the FLOP and
byte counts by hand, the probe, and one whole run (moelab vs transformers) with its report.

No timing is asserted anywhere: times are only produced, never compared.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import moelab
from require_reference import require_torch_and_transformers

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import _fma_probe  # noqa: E402
import bench_deltanet as bd  # noqa: E402


def tiny_config() -> moelab.ModelConfig:
    cfg = moelab.preset(bd.PRESET).scaled(hidden_size=32)
    return cfg.replace(attention=cfg.attention.replace(
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
        linear_value_head_dim=16, linear_conv_kernel_dim=4))


def test_flops_and_bytes_by_hand():
    cfg = tiny_config()
    H, n_k, n_v, d_k, d_v, K = 32, 2, 4, 8, 16, 4
    conv_dim = 2 * n_k * d_k + n_v * d_v
    matrix = H * (2 * n_k * d_k + 2 * n_v * d_v) + H * 2 * n_v + n_v * d_v * H
    assert bd.flops_per_token(cfg) == 2 * matrix + 7 * n_v * d_k * d_v + 2 * K * conv_dim
    layer = moelab.GatedDeltaNet(cfg, 0)
    small = conv_dim * K + 2 * n_v + d_v                      # conv, dt_bias, A_log, norm
    state = 4 * (n_v * d_k * d_v + (K - 1) * conv_dim)
    assert layer.new_state().nbytes == state
    assert bd.decode_bytes_per_token(layer, state) == 4 * (matrix + small) + 2 * state
    layer16 = moelab.GatedDeltaNet(cfg, 0, weight_dtype="bfloat16")
    assert bd.decode_bytes_per_token(layer16, state) == 2 * matrix + 4 * small + 2 * state


def test_calls_shrink_with_the_prefill_length():
    assert bd.calls_for(64, 5) == 5
    assert bd.calls_for(512, 5) == 5
    assert bd.calls_for(2048, 5) == 1
    assert bd.calls_for(8192, 1) == 1


def test_fma_probe_compiles_and_reports_a_rate_or_none(tmp_path):
    exe = _fma_probe.compile_probe(tmp_path)
    peaks = _fma_probe.fma_peak([1, 2], iters=200_000)
    assert set(peaks) == {1, 2}
    if exe is None:  # no C compiler on this machine: the report says "unavailable"
        assert all(p is None for p in peaks.values())
    else:
        assert all(isinstance(p, float) and p > 0 for p in peaks.values())


def test_a_whole_run_and_its_report(tmp_path, restore_threads):
    require_torch_and_transformers()
    args = bd.parse_args(["--tokens", "20", "70", "--threads", "1", "2", "--repeats", "1",
                          "--decode-context", "5", "--decode-steps", "2", "--no-snapshot",
                          "--out", str(tmp_path)])
    assert isinstance(args, argparse.Namespace)
    assert bd.run(args, cfg=tiny_config(), bandwidth_bytes=1 << 20, probe_iters=100_000) == 0
    results = json.loads((tmp_path / bd.RESULTS_JSON).read_text())
    assert [(r["T"], r["threads"]) for r in results["prefill"]] == [(20, 1), (70, 1), (20, 2),
                                                                    (70, 2)]
    assert [r["threads"] for r in results["decode"]] == [1, 2]
    for r in results["prefill"] + results["decode"]:
        assert r["rel_err"] < bd.VERIFY_RTOL         # moelab and transformers agree
        assert r["moelab"]["median_s"] > 0 and r["torch"]["median_s"] > 0
    report = (tmp_path / bd.REPORT).read_text()
    for part in ("## Machine", "## Prefill", "## Decode", "FMA peak", "| 70 | 2 |"):
        assert part in report, part
    assert np.isfinite(results["decode"][0]["moelab"]["bytes_per_s"])
