"""Loading one layer costs about that layer's memory, not the checkpoint's.

A 12-layer Mixtral-style checkpoint (4.x per-expert names, float32, 3 shards with an index,
~145 MB) is written; a fresh Python process loads layer 5 (~12.6 MB in float32) and reports its
peak RSS growth during the load (Linux: ``VmHWM`` reset through ``/proc/self/clear_refs``, so
that import-time peaks do not count). The loader holds the canonical float32 dict (1 layer) and
the MoELayer's own copy (1 layer) at the end, plus one source tensor at a time and the pages of
the memory-mapped file it is reading, so the growth must stay within 3 layers: far below the
checkpoint, which a naive ``load_file`` of every shard would bring into memory (~190 MB).
No torch or transformers needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

E, H, I, L, LAYER = 8, 256, 512, 12, 5

_MEASURE = r"""
import json, sys
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
import moelab
rss_before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
layer = moelab.hf.load_moe_layer(sys.argv[1], int(sys.argv[2]))
peak = status("VmHWM:")
print(json.dumps({"growth": peak - rss_before, "num_params": layer.config.num_params,
                  "router_sum": float(layer.weights["router.weight"].sum())}))
"""


def _write_checkpoint(folder: Path) -> dict:
    """12 Mixtral layers in 3 shards; returns the router weight of LAYER for a spot check."""
    rng = np.random.default_rng(7)
    (folder / "config.json").write_text(json.dumps(dict(
        model_type="mixtral", vocab_size=64, hidden_size=H, intermediate_size=I,
        num_hidden_layers=L, num_attention_heads=4, num_key_value_heads=2,
        num_local_experts=E, num_experts_per_tok=2)))
    weight_map, router = {}, None
    for s in range(3):
        shard, tensors = f"model-{s + 1:05d}-of-00003.safetensors", {}
        for layer in range(s * L // 3, (s + 1) * L // 3):
            p = f"model.layers.{layer}.block_sparse_moe."
            tensors[p + "gate.weight"] = rng.standard_normal((E, H), dtype=np.float32)
            if layer == LAYER:
                router = tensors[p + "gate.weight"]
            for e in range(E):
                for w, shape in (("w1", (I, H)), ("w3", (I, H)), ("w2", (H, I))):
                    tensors[f"{p}experts.{e}.{w}.weight"] = rng.standard_normal(
                        shape, dtype=np.float32)
        safetensors.numpy.save_file(tensors, str(folder / shard))
        weight_map.update({n: shard for n in tensors})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return router


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                    reason="peak RSS is measured through Linux /proc")
def test_loading_one_layer_costs_about_one_layer(tmp_path):
    router = _write_checkpoint(tmp_path)
    checkpoint_bytes = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
    layer_bytes = 4 * (3 * E * H * I + E * H)                  # float32
    assert checkpoint_bytes > 10 * layer_bytes
    python_path = str(Path(__import__("moelab").__file__).resolve().parent.parent)
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path), str(LAYER)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
                             [python_path] + [p for p in [os.environ.get("PYTHONPATH")] if p])})
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["num_params"] * 4 == layer_bytes
    assert report["router_sum"] == pytest.approx(float(router.sum()), rel=1e-6)
    growth = report["growth"]
    # it measured the load (at least the layer itself), and no more than three layers' worth
    assert layer_bytes <= growth <= 3 * layer_bytes, (
        f"peak RSS grew by {growth / 2**20:.1f} MiB loading a {layer_bytes / 2**20:.1f} MiB layer "
        f"from a {checkpoint_bytes / 2**20:.1f} MiB checkpoint")
