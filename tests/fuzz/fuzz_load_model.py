#!/usr/bin/env python3
"""Fuzz target: whole-model loading, ``moelab.hf.load_model(folder, dtype)``, then a forward.

The input is a checkpoint folder, byte for byte: the first byte picks ``dtype`` (None,
"float32", "bfloat16"), the next two (little-endian) give the length of ``config.json``, whose
text follows; the rest is ``model.safetensors``. The seeds are valid tiny checkpoints of every
family ``load_model`` loads, each saved by transformers' ``save_pretrained`` (float32, and
bfloat16 for some), so the fuzzer mutates real configs, headers, offsets and data together: a
config that contradicts its weights, a tensor of the wrong shape, dtype or name, a truncated
file, NaN in the data.

Allowed (documented in ``load_model``): TypeError, ValueError; and for the forward on the loaded
model (``DecoderModel.forward``): ValueError (positions past ``max_position_embeddings``).
Promises checked after a successful load: the model has the config's layer count and vocabulary;
logits of a 3-token prompt are (3, V); the same prompt fed to a cache as 2 tokens then 1 gives
(2, V) and (1, V) and leaves the cache at length 3.

    python tests/fuzz/fuzz_load_model.py CORPUS_DIR [libFuzzer options]
"""

from __future__ import annotations

import json
import struct

import numpy as np

import _fuzzlib as fl

with fl.instrumented(__name__ == "__main__"):
    import moelab
    import moelab.hf

NAME = "load_model"
ALLOWED = (TypeError, ValueError)
DTYPES = (None, "float32", "bfloat16")
KNOWN_DEFECTS = ()

#: the tiny checkpoints the seeds hold: model_type -> transformers config overrides (every
#: family load_model loads, with its layout features: dense-first or interleaved MoE layers,
#: shared experts, sliding/chunked/NoPE layers, MLA, DeltaNet, tied heads, sandwich norms)
_COMMON = dict(vocab_size=16, hidden_size=8, num_attention_heads=2, num_key_value_heads=1,
               head_dim=4, max_position_embeddings=32, intermediate_size=8,
               tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
SEED_MODELS = {
    "qwen3_moe": dict(num_hidden_layers=2, num_experts=4, num_experts_per_tok=2,
                      moe_intermediate_size=4, mlp_only_layers=[0], norm_topk_prob=True),
    "qwen3": dict(num_hidden_layers=1, tie_word_embeddings=True),
    "mixtral": dict(num_hidden_layers=1, num_local_experts=4, num_experts_per_tok=2),
    "mistral": dict(num_hidden_layers=1, sliding_window=2),
    "olmo2": dict(num_hidden_layers=1),
    "glm4_moe": dict(num_hidden_layers=2, first_k_dense_replace=1, n_routed_experts=4,
                     num_experts_per_tok=2, moe_intermediate_size=4, n_shared_experts=1,
                     n_group=1, topk_group=1, attention_bias=True, use_qk_norm=True,
                     partial_rotary_factor=0.5),
    "gpt_oss": dict(num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
                    intermediate_size=4, sliding_window=2,
                    layer_types=["sliding_attention", "full_attention"]),
    "smollm3": dict(num_hidden_layers=4, no_rope_layer_interval=4),
    "gemma3_text": dict(num_hidden_layers=2, sliding_window=2, query_pre_attn_scalar=4,
                        layer_types=["sliding_attention", "full_attention"],
                        final_logit_softcapping=30.0, tie_word_embeddings=True),
    "llama4_text": dict(num_hidden_layers=2, interleave_moe_layer_step=2, num_local_experts=4,
                        num_experts_per_tok=1, intermediate_size=4, intermediate_size_mlp=8,
                        attention_chunk_size=2, use_qk_norm=True),
    "qwen3_next": dict(num_hidden_layers=4, partial_rotary_factor=0.5, num_experts=4,
                       num_experts_per_tok=2, moe_intermediate_size=4,
                       shared_expert_intermediate_size=4, linear_num_key_heads=1,
                       linear_num_value_heads=2, linear_key_head_dim=4,
                       linear_value_head_dim=4, mlp_only_layers=[0]),
    "deepseek_v3": dict(num_hidden_layers=2, first_k_dense_replace=1, n_routed_experts=4,
                        num_experts_per_tok=2, moe_intermediate_size=4, n_shared_experts=1,
                        n_group=2, topk_group=1, q_lora_rank=4, kv_lora_rank=4,
                        qk_nope_head_dim=2, qk_rope_head_dim=2, v_head_dim=2,
                        num_key_value_heads=2),
    "olmoe": dict(num_hidden_layers=1, num_experts=4, num_experts_per_tok=2,
                  intermediate_size=4),
    "qwen2_moe": dict(num_hidden_layers=2, num_experts=4, num_experts_per_tok=2,
                      moe_intermediate_size=4, shared_expert_intermediate_size=4,
                      mlp_only_layers=[0], use_sliding_window=True, sliding_window=2,
                      max_window_layers=1),
    "qwen2": dict(num_hidden_layers=1),
    "llama": dict(num_hidden_layers=1, attention_bias=True),
}
#: families whose seed is also saved in bfloat16
BF16_SEEDS = ("qwen3_moe", "gpt_oss", "deepseek_v3", "qwen3_next")


def _split(data: bytes):
    """(dtype, config.json bytes, model.safetensors bytes) of an input."""
    dtype = DTYPES[data[0] % len(DTYPES)] if data else None
    (length,) = struct.unpack("<H", (data[1:3] + b"\0\0")[:2])
    return dtype, data[3:3 + length], data[3 + length:]


def pack(dtype, config: bytes, safetensors: bytes) -> bytes:
    """The input that stands for a folder of ``config`` and ``safetensors``, loaded as dtype."""
    return bytes([DTYPES.index(dtype)]) + struct.pack("<H", len(config)) + config + safetensors


def describe(data: bytes) -> str:
    """The call an input makes, as Python (for reports of findings)."""
    dtype, config, weights = _split(data)
    return (f"# folder: config.json = {config!r}\n# model.safetensors = {weights[:2000]!r}"
            f"{' ...' if len(weights) > 2000 else ''}\nmoelab.hf.load_model(folder, {dtype!r})")


def body(data: bytes) -> None:
    dtype, config, weights = _split(data)
    folder = fl.scratch_folder()
    (folder / "config.json").write_bytes(config)
    (folder / "model.safetensors").write_bytes(weights)
    ok, model = fl.call("load_model", moelab.hf.load_model, str(folder), dtype, allowed=ALLOWED)
    if not ok:
        return
    cfg = model.config
    fl.expect("load_model", model.num_layers == cfg.num_hidden_layers,
              f"{model.num_layers} layers for num_hidden_layers={cfg.num_hidden_layers}")
    V = cfg.vocab_size
    ids = np.array([0, V - 1, V // 2])
    ok, logits = fl.call("forward", model, ids, allowed=(ValueError,))
    if not ok:
        return
    fl.expect("forward", logits.shape == (3, V), f"logits {logits.shape} for 3 ids, V={V}")
    cache = fl.succeed("new_cache", model.new_cache)
    first = fl.succeed("forward(cache)", model, ids[:2], cache=cache)
    last = fl.succeed("forward(cache)", model, ids[2:], cache=cache)
    fl.expect("forward(cache)", first.shape == (2, V) and last.shape == (1, V),
              f"cached logits {first.shape}, {last.shape}, V={V}")
    fl.expect("forward(cache)", cache.length == 3, f"cache length {cache.length} after 3 ids")


def run_one(data: bytes):
    """None, or the id of the known defect this input shows; raises Finding on a new defect."""
    return fl.run_checked(body, KNOWN_DEFECTS, data)


def seeds():
    """A valid checkpoint of every seed model, saved by transformers (needs the reference
    extra: torch and transformers), as float32 and, for BF16_SEEDS, as bfloat16."""
    import tempfile
    from pathlib import Path

    import torch
    import transformers

    out = []
    for model_type, overrides in SEED_MODELS.items():
        config = transformers.CONFIG_MAPPING[model_type](**{**_COMMON, **overrides})
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config).eval()
        for dtype in (torch.float32, torch.bfloat16)[:2 if model_type in BF16_SEEDS else 1]:
            with tempfile.TemporaryDirectory() as folder:
                model.to(dtype).save_pretrained(folder)
                config_json = json.dumps(json.loads(Path(folder, "config.json").read_text()),
                                         separators=(",", ":"), sort_keys=True).encode()
                weights = Path(folder, "model.safetensors").read_bytes()
            out.append(pack(None, config_json, weights))
    return out


if __name__ == "__main__":
    fl.fuzz(run_one)
