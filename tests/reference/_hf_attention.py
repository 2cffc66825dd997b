"""Hugging Face attention modules of tiny configs, run as the reference for moelab.Attention.

Each family of ``FAMILIES`` names its transformers config, attention and rotary classes, the
overrides that make its config tiny (window and chunk sizes below the test sequence, so the
masks bite) and the decoder layers worth testing (one per kind of layer). The HF module runs a
whole sequence at once in float32 with the eager attention and an additive mask written from
transformers' masking rules (causal; sliding: q - k < window; chunked: k // c == q // c); row t
of its output is what any cached run must give for token t.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np
import torch
import transformers

import moelab

H, N_HEADS, N_KV, HEAD_DIM = 64, 4, 2, 16
WINDOW = 8  # sliding_window and attention_chunk_size: below T
MAX_POSITIONS = 256

_COMMON = dict(hidden_size=H, num_attention_heads=N_HEADS, num_key_value_heads=N_KV,
               head_dim=HEAD_DIM, max_position_embeddings=MAX_POSITIONS, rms_norm_eps=1e-6,
               intermediate_size=32, vocab_size=32)


@dataclass(frozen=True)
class Family:
    model_type: str
    module: str          # transformers.models.<module>.modeling_<module>
    attention: str       # attention class name
    rotary: str          # rotary embedding class name
    layers: Tuple[int, ...]
    overrides: Dict = field(default_factory=dict)


FAMILIES = (
    Family("qwen3", "qwen3", "Qwen3Attention", "Qwen3RotaryEmbedding", (0,),
           dict(num_hidden_layers=1)),
    Family("qwen3_moe", "qwen3_moe", "Qwen3MoeAttention", "Qwen3MoeRotaryEmbedding", (0,),
           dict(num_hidden_layers=1, num_experts=4, num_experts_per_tok=2,
                moe_intermediate_size=16)),
    Family("mistral", "mistral", "MistralAttention", "MistralRotaryEmbedding", (0,),
           dict(num_hidden_layers=1, sliding_window=WINDOW)),
    Family("mixtral", "mixtral", "MixtralAttention", "MixtralRotaryEmbedding", (0,),
           dict(num_hidden_layers=1, sliding_window=None, num_local_experts=4)),
    Family("olmo2", "olmo2", "Olmo2Attention", "Olmo2RotaryEmbedding", (0,),
           dict(num_hidden_layers=1)),
    Family("smollm3", "smollm3", "SmolLM3Attention", "SmolLM3RotaryEmbedding", (0, 3),
           dict(num_hidden_layers=4, no_rope_layer_interval=4)),
    Family("glm4_moe", "glm4_moe", "Glm4MoeAttention", "Glm4MoeRotaryEmbedding", (0,),
           dict(num_hidden_layers=1, attention_bias=True, use_qk_norm=True,
                partial_rotary_factor=0.5, n_routed_experts=4, num_experts_per_tok=2,
                moe_intermediate_size=16, first_k_dense_replace=1)),
    Family("gpt_oss", "gpt_oss", "GptOssAttention", "GptOssRotaryEmbedding", (0, 1),
           dict(num_hidden_layers=2, sliding_window=WINDOW, num_local_experts=4,
                rope_parameters=dict(rope_type="yarn", rope_theta=150000.0, factor=32.0,
                                     beta_fast=32.0, beta_slow=1.0, truncate=False,
                                     original_max_position_embeddings=64))),
    Family("gemma3_text", "gemma3", "Gemma3Attention", "Gemma3RotaryEmbedding", (0, 5),
           dict(num_hidden_layers=6, sliding_window=WINDOW, query_pre_attn_scalar=24,
                rope_parameters=dict(
                    full_attention=dict(rope_type="linear", rope_theta=1e6, factor=8.0),
                    sliding_attention=dict(rope_type="default", rope_theta=1e4)))),
    Family("llama4_text", "llama4", "Llama4TextAttention", "Llama4TextRotaryEmbedding", (0, 3),
           dict(num_hidden_layers=4, attention_chunk_size=WINDOW, use_qk_norm=True,
                floor_scale=4, attn_scale=0.1, attn_temperature_tuning=True,
                num_local_experts=4, intermediate_size_mlp=32,
                rope_parameters=dict(rope_type="llama3", rope_theta=5e5, factor=8.0,
                                     low_freq_factor=1.0, high_freq_factor=4.0,
                                     original_max_position_embeddings=64))),
    Family("qwen3_next", "qwen3_next", "Qwen3NextAttention", "Qwen3NextRotaryEmbedding", (3,),
           dict(num_hidden_layers=4, partial_rotary_factor=0.25, num_experts=4,
                num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=16,
                linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
                linear_value_head_dim=8)),
)


def _modeling(family: Family):
    return importlib.import_module(f"transformers.models.{family.module}.modeling_{family.module}")


def make_config(family: Family):
    kw = dict(_COMMON)
    kw.update(family.overrides)
    config = transformers.CONFIG_MAPPING[family.model_type](**kw)
    config._attn_implementation = "eager"
    return config


def make_module(family: Family, config, layer_idx: int, seed: int):
    """The HF attention module of layer_idx with random weights (norms near 1, sinks ~ N(0,1))."""
    torch.manual_seed(seed)
    module = getattr(_modeling(family), family.attention)(config, layer_idx).eval()
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name == "sinks":
                p.normal_(0.0, 1.0)
            else:
                p.uniform_(-1.0, 1.0).mul_(p.shape[-1] ** -0.5)
    return module


def weights_of(module) -> Dict[str, np.ndarray]:
    return {name: p.detach().numpy().copy() for name, p in module.named_parameters()}


def layer_mask(config, layer_idx: int) -> Tuple[str, int]:
    """The layer's mask kind and size as transformers' models choose them: by
    ``config.layer_types`` where the config has them, else (Mistral, Mixtral, Qwen3-MoE) a
    sliding window for every layer whenever ``config.sliding_window`` is set."""
    types = getattr(config, "layer_types", None)
    if types is not None:
        kind = types[layer_idx]
    else:
        kind = "sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"
    if kind == "sliding_attention":
        return "sliding", config.sliding_window
    if kind == "chunked_attention":
        return "chunked", config.attention_chunk_size
    return "causal", 0


def _mask(config, layer_idx: int, T: int) -> torch.Tensor:
    """(1, 1, T, T) additive float32 mask by transformers' rules (masking_utils: causal,
    sliding_window_overlay, chunked_overlay) for the layer's kind."""
    kind, size = layer_mask(config, layer_idx)
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    allowed = k <= q
    if kind == "sliding":
        allowed &= (q - k) < size
    elif kind == "chunked":
        allowed &= (k // size) == (q // size)
    mask = torch.zeros(T, T)
    mask[~allowed] = torch.finfo(torch.float32).min
    return mask[None, None]


def run_module(family: Family, config, module, x: np.ndarray) -> np.ndarray:
    """HF's output (T, H) for the whole sequence x (T, H) at positions 0 .. T - 1."""
    T = x.shape[0]
    rotary = getattr(_modeling(family), family.rotary)(config)
    hidden = torch.from_numpy(x)[None]
    positions = torch.arange(T)[None]
    if family.model_type == "gemma3_text":
        emb = rotary(hidden, positions, config.layer_types[module.layer_idx])
    else:
        emb = rotary(hidden, positions)
    with torch.no_grad():
        out = module(hidden_states=hidden, position_embeddings=emb,
                     attention_mask=_mask(config, module.layer_idx, T), past_key_values=None)[0]
    return out[0].numpy()


def inputs(T: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((T, H)).astype(np.float32)


def run_cached(layer, x: np.ndarray, prefill: int, decode_steps: int):
    """A moelab attention layer (softmax or MLA) over x in one cache: x[:prefill] as one
    prefill, then ``decode_steps`` tokens one at a time. Returns (y_prefill (prefill, H),
    y_decode (decode_steps, H), the cache), the cache's length checked."""
    cache = layer.new_cache()
    y = [layer(x[:prefill], cache)]
    for t in range(prefill, prefill + decode_steps):
        y.append(layer(x[t:t + 1], cache))
    assert cache.length == prefill + decode_steps
    return y[0], np.concatenate(y[1:]), cache
