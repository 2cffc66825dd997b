#!/usr/bin/env python3
"""Fuzz target: the safetensors reader, through ``moelab.hf.load_moe_layer(folder, layer_idx)``.

The first byte picks a tiny model (Mixtral per-expert names, Qwen3 fused, gpt-oss interleaved
with biases, DeepSeek-V3 with shared experts and the correction bias) and the layer index
(-1 .. 2); the rest of the input is the folder's ``model.safetensors``, byte for byte, next to
that model's ``config.json``. The seeds are valid checkpoints of each model (F32, F16, BF16 and
F64 tensors), so the fuzzer mutates real headers, offsets and data.

Allowed (documented in ``load_moe_layer``): TypeError, IndexError, ValueError.
Promises checked after a successful load: the layer has its config's weight shapes, finite
weights, and a forward runs.

    python tests/fuzz/fuzz_safetensors.py CORPUS_DIR [libFuzzer options]
"""

from __future__ import annotations

import json
import struct

import numpy as np

import _fuzzlib as fl
from _fuzzlib import KnownDefect

with fl.instrumented(__name__ == "__main__"):
    import moelab
    import moelab.hf

NAME = "safetensors"
ALLOWED = (TypeError, IndexError, ValueError)
E, H, I = 4, 4, 2
_COMMON = dict(vocab_size=16, hidden_size=H, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=1, head_dim=2, num_experts_per_tok=2)
#: (config.json, the MoE block of layer 1 as {name: (safetensors dtype, shape)})
MODELS = (
    (dict(_COMMON, model_type="mixtral", intermediate_size=I, num_local_experts=E),
     {**{"model.layers.1.block_sparse_moe.gate.weight": ("F32", (E, H))},
      **{f"model.layers.1.block_sparse_moe.experts.{e}.{w}.weight": ("F16", shape)
         for e in range(E) for w, shape in (("w1", (I, H)), ("w3", (I, H)), ("w2", (H, I)))}}),
    (dict(_COMMON, model_type="qwen3_moe", intermediate_size=8, moe_intermediate_size=I,
          num_experts=E, norm_topk_prob=True),
     {"model.layers.1.mlp.gate.weight": ("BF16", (E, H)),
      "model.layers.1.mlp.experts.gate_up_proj": ("F32", (E, 2 * I, H)),
      "model.layers.1.mlp.experts.down_proj": ("F64", (E, H, I))}),
    (dict(_COMMON, model_type="gpt_oss", intermediate_size=I, num_local_experts=E),
     {"model.layers.1.mlp.router.weight": ("F32", (E, H)),
      "model.layers.1.mlp.router.bias": ("F32", (E,)),
      "model.layers.1.mlp.experts.gate_up_proj": ("BF16", (E, H, 2 * I)),
      "model.layers.1.mlp.experts.gate_up_proj_bias": ("F32", (E, 2 * I)),
      "model.layers.1.mlp.experts.down_proj": ("F32", (E, I, H)),
      "model.layers.1.mlp.experts.down_proj_bias": ("F32", (E, H))}),
    (dict(_COMMON, model_type="deepseek_v3", intermediate_size=8, moe_intermediate_size=I,
          n_routed_experts=E, n_group=2, topk_group=1, routed_scaling_factor=2.5,
          norm_topk_prob=True, n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=4,
          kv_lora_rank=4, qk_rope_head_dim=2, qk_nope_head_dim=2, v_head_dim=2),
     {**{"model.layers.1.mlp.gate.weight": ("F32", (E, H)),
         "model.layers.1.mlp.gate.e_score_correction_bias": ("F32", (E,))},
      **{f"model.layers.1.mlp.experts.{e}.{w}.weight": ("F32", shape)
         for e in range(E) for w, shape in (("gate_proj", (I, H)), ("up_proj", (I, H)),
                                            ("down_proj", (H, I)))},
      **{f"model.layers.1.mlp.shared_experts.{w}.weight": ("BF16", shape)
         for w, shape in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I)))}}),
)
_NUMPY = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
KNOWN_DEFECTS = ()

def _select(first: int):
    """(config, layer_idx) chosen by the input's first byte."""
    return MODELS[first % len(MODELS)][0], (first // len(MODELS)) % 4 - 1


def describe(data: bytes) -> str:
    """The call an input makes, as Python (for reports of findings)."""
    config, layer_idx = _select(data[0] if data else 0)
    return (f"# folder: config.json = {json.dumps(config)}\n# model.safetensors = {data[1:]!r}\n"
            f"moelab.hf.load_moe_layer(folder, {layer_idx})")


def body(data: bytes) -> None:
    config, layer_idx = _select(data[0] if data else 0)
    folder = fl.scratch_folder()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(data[1:])
    ok, layer = fl.call("load_moe_layer", moelab.hf.load_moe_layer, str(folder), layer_idx,
                        allowed=ALLOWED)
    if not ok:
        return
    shapes = layer.config.weight_shapes()
    weights = layer.weights
    fl.expect("load_moe_layer", {n: w.shape for n, w in weights.items()} == shapes,
              f"weights {[(n, w.shape) for n, w in weights.items()]}, config {shapes}")
    fl.expect("load_moe_layer", all(np.isfinite(w).all() for w in weights.values()),
              "a loaded weight holds NaN or Inf")
    x = np.random.default_rng(0).standard_normal((3, layer.config.hidden_size))
    ok, y = fl.call("forward", layer, x.astype(np.float32), allowed=(ValueError,))
    fl.expect("forward", not ok or y.shape == x.shape, f"y {y.shape} for x {x.shape}")


def run_one(data: bytes):
    """None, or the id of the known defect this input shows; raises Finding on a new defect."""
    return fl.run_checked(body, KNOWN_DEFECTS, data)


def _file(tensors: dict, rng) -> bytes:
    """A valid safetensors file of random tensors: {name: (dtype, shape)} -> bytes."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape) in tensors.items():
        values = rng.standard_normal(shape).astype(np.float32)
        if dtype == "BF16":
            raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = values.astype(_NUMPY[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def seeds():
    """A valid checkpoint of each model, read at its MoE layer (1)."""
    rng = np.random.default_rng(0)
    return [bytes([len(MODELS) * 2 + i]) + _file(tensors, rng)
            for i, (_, tensors) in enumerate(MODELS)]


if __name__ == "__main__":
    fl.fuzz(run_one)
