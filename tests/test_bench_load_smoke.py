"""Smoke test of benchmarks/make_checkpoint.py and bench_load.py: a tiny qwen3_moe checkpoint
made with transformers, then the whole measurement in a child process, and that the model it
loads reads its matrices in place.

No timing or memory figure is asserted: they are only produced, never compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import moelab
from require_reference import require_torch_and_transformers

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_load  # noqa: E402
import make_checkpoint as mc  # noqa: E402


def test_the_quick_checkpoint_is_bf16_per_expert_and_read_in_place(tmp_path):
    require_torch_and_transformers()
    folder = mc.make_checkpoint(tmp_path / "ckpt", mc.QUICK)
    assert mc.checkpoint_bytes(folder) > 0
    with moelab.io.open_checkpoint(folder) as ckpt:
        names = ckpt.names()
        assert "model.layers.0.mlp.experts.0.gate_proj.weight" in names
        assert {ckpt.dtype(n) for n in names} == {"BF16"}
    model = moelab.hf.load_model(folder)
    assert model.layers[0].ffn.weight_dtype == "bfloat16"
    for layer in model.layers:
        # only the router's matrix (float32 in the core) is a copy of the layer's own
        E, H = mc.QUICK["num_experts"], mc.QUICK["hidden_size"]
        assert layer.ffn.owned_weight_bytes == E * H * 4
        # and q_norm, k_norm (float32 in the core): the projections are borrowed
        assert layer.mixer.owned_weight_bytes == 2 * mc.QUICK["head_dim"] * 4
    assert model(np.arange(1, 6)).shape == (5, mc.QUICK["vocab_size"])


def test_bench_load_quick_reports_every_figure():
    require_torch_and_transformers()
    r = bench_load.main(["--quick", "--threads", "1"])
    for key in ("load_s", "generate_s", "file_bytes", "cache_bytes", "owned_weight_bytes"):
        assert r[key] > 0, key
    assert r["tokens"] == 8
    assert set(r["rss_after_load"]) == set(bench_load.RSS_KEYS)
    assert set(r["goals"]) == {"load_s < 2", "rss_after_load < 10% of file",
                               "rss_after_generate <= file + cache + 300 MiB"}
