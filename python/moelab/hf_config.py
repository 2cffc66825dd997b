"""``from_hf_config``: a Hugging Face ``config.json`` (dict or path) -> ``ModelConfig``.

One parser per ``model_type``. A key missing from the dict takes the default of the HF config
class in transformers 5.23 (``models/<type>/configuration_<type>.py``; the tables ``_DEFAULTS``
below, checked against those classes by ``tests/test_hf_config.py``). Model types that
transformers does not ship (``kimi_k2``, Grok's ``grok``/``grok-1``/``git``) have defaults only
for optional features, so a missing dimension is an error. Values HF computes from others
(``head_dim = hidden_size // num_attention_heads``, ``layer_types``, ``moe_layers``...) are
computed the same way here.

Everything here is plain Python: transformers is not needed at run time.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Mapping, Optional

from .config import MoEConfig
from .model_config import AttentionConfig, ModelConfig

__all__ = ["from_hf_config", "SUPPORTED_MODEL_TYPES"]

_REQUIRED = object()

# HF activation names -> moelab activation names
_ACTS = {
    "silu": "silu", "swish": "silu",
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}

# ---------------------------------------------------------------------------------------------
# HF defaults (transformers 5.23 config classes). None = HF computes it from other keys.
# ---------------------------------------------------------------------------------------------
_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None,
                  head_dim=None, hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False,
                  attention_bias=False, mlp_bias=False),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    head_dim=None, hidden_act="silu", rms_norm_eps=1e-6,
                    tie_word_embeddings=False, sliding_window=4096),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                  hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False,
                  use_sliding_window=False, sliding_window=4096, max_window_layers=28,
                  layer_types=None),
    "qwen3": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                  head_dim=128, hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False,
                  attention_bias=False, use_sliding_window=False, sliding_window=4096,
                  max_window_layers=28, layer_types=None),
    "olmo2": dict(vocab_size=50304, hidden_size=4096, intermediate_size=11008,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None,
                  hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False,
                  attention_bias=False),
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216,
                        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                        head_dim=256, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                        tie_word_embeddings=True, attention_bias=False, sliding_window=4096,
                        layer_types=None, attn_logit_softcapping=None),
    "smollm3": dict(vocab_size=128256, hidden_size=2048, intermediate_size=11008,
                    num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=4,
                    hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=True,
                    use_sliding_window=False, sliding_window=None, no_rope_layers=None,
                    no_rope_layer_interval=4, layer_types=None, attention_bias=False,
                    mlp_bias=False),
    "mixtral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    head_dim=None, hidden_act="silu", rms_norm_eps=1e-5,
                    tie_word_embeddings=False, sliding_window=None, num_experts_per_tok=2,
                    num_local_experts=8),
    "qwen2_moe": dict(vocab_size=151936, hidden_size=2048, intermediate_size=5632,
                      num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
                      hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False,
                      use_sliding_window=False, sliding_window=4096, max_window_layers=28,
                      decoder_sparse_step=1, moe_intermediate_size=1408,
                      shared_expert_intermediate_size=5632, num_experts_per_tok=4,
                      num_experts=60, norm_topk_prob=False, mlp_only_layers=None, qkv_bias=True,
                      layer_types=None),
    "qwen3_moe": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                      num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=4,
                      hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False,
                      attention_bias=False, use_sliding_window=False, sliding_window=4096,
                      decoder_sparse_step=1, moe_intermediate_size=768, num_experts_per_tok=8,
                      num_experts=128, norm_topk_prob=False, mlp_only_layers=None),
    "qwen3_next": dict(vocab_size=151936, hidden_size=2048, intermediate_size=5632,
                       num_hidden_layers=48, num_attention_heads=16, num_key_value_heads=2,
                       hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False,
                       attention_bias=False, head_dim=256, linear_conv_kernel_dim=4,
                       linear_key_head_dim=128, linear_value_head_dim=128,
                       linear_num_key_heads=16, linear_num_value_heads=32,
                       decoder_sparse_step=1, moe_intermediate_size=512,
                       shared_expert_intermediate_size=512, num_experts_per_tok=10,
                       num_experts=512, norm_topk_prob=True, mlp_only_layers=None,
                       layer_types=None),
    "deepseek_v2": dict(vocab_size=102400, hidden_size=4096, intermediate_size=11008,
                        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None,
                        hidden_act="silu", rms_norm_eps=1e-6, tie_word_embeddings=False,
                        attention_bias=False, mlp_bias=False, first_k_dense_replace=0,
                        kv_lora_rank=512, q_lora_rank=1536, n_group=None,
                        n_routed_experts=64, n_shared_experts=2, qk_nope_head_dim=128,
                        qk_rope_head_dim=64, routed_scaling_factor=1.0, topk_group=None,
                        topk_method="greedy", v_head_dim=128, num_experts_per_tok=None,
                        moe_intermediate_size=1407),
    "deepseek_v3": dict(vocab_size=129280, hidden_size=7168, intermediate_size=18432,
                        moe_intermediate_size=2048, num_hidden_layers=61,
                        num_attention_heads=128, num_key_value_heads=128, n_shared_experts=1,
                        n_routed_experts=256, routed_scaling_factor=2.5, kv_lora_rank=512,
                        q_lora_rank=1536, qk_rope_head_dim=64, v_head_dim=128,
                        qk_nope_head_dim=128, n_group=8, topk_group=4, num_experts_per_tok=8,
                        first_k_dense_replace=3, norm_topk_prob=True, hidden_act="silu",
                        rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False,
                        num_nextn_predict_layers=1),
    # Kimi K2 is not in transformers: only optional features have defaults.
    "kimi_k2": dict(num_key_value_heads=None, hidden_act="silu", rms_norm_eps=1e-6,
                    tie_word_embeddings=False, attention_bias=False, num_nextn_predict_layers=0,
                    n_group=1, topk_group=1, norm_topk_prob=True),
    "glm4_moe": dict(vocab_size=151552, hidden_size=4096, intermediate_size=10944,
                     num_hidden_layers=46, num_attention_heads=96, num_key_value_heads=8,
                     hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False,
                     attention_bias=False, moe_intermediate_size=1408, num_experts_per_tok=8,
                     n_shared_experts=1, n_routed_experts=128, routed_scaling_factor=1.0,
                     n_group=1, topk_group=1, first_k_dense_replace=1, norm_topk_prob=True,
                     use_qk_norm=False, num_nextn_predict_layers=1),
    "llama4_text": dict(vocab_size=202048, hidden_size=5120, intermediate_size=8192,
                        intermediate_size_mlp=16384, num_hidden_layers=48,
                        num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                        hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False,
                        num_experts_per_tok=1, num_local_experts=16, moe_layers=None,
                        interleave_moe_layer_step=1, use_qk_norm=True, no_rope_layers=None,
                        no_rope_layer_interval=4, attention_chunk_size=8192, layer_types=None,
                        attention_bias=False),
    "gpt_oss": dict(num_hidden_layers=36, num_local_experts=128, vocab_size=201088,
                    hidden_size=2880, intermediate_size=2880, head_dim=64,
                    num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
                    tie_word_embeddings=False, hidden_act="silu", rms_norm_eps=1e-5,
                    num_experts_per_tok=4, swiglu_alpha=1.702, swiglu_limit=7.0,
                    layer_types=None, attention_bias=True),
    "olmoe": dict(vocab_size=50304, hidden_size=2048, intermediate_size=2048,
                  num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=None,
                  hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False,
                  attention_bias=False, num_experts_per_tok=8, num_experts=64,
                  norm_topk_prob=False),
    "phimoe": dict(vocab_size=32064, hidden_size=4096, intermediate_size=6400,
                   num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                   hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False,
                   sliding_window=None, num_experts_per_tok=2, num_local_experts=16,
                   attention_bias=False, lm_head_bias=False),
    "dbrx": dict(d_model=2048, n_heads=16, n_layers=24, vocab_size=32000,
                 tie_word_embeddings=False, attn_config=None, ffn_config=None),
    "dbrx_attn": dict(clip_qkv=None, kv_n_heads=1),
    "dbrx_ffn": dict(ffn_act_fn=None, ffn_hidden_size=3584, moe_num_experts=4, moe_top_k=1,
                     moe_normalize_expert_weights=1.0),
    # Grok is not in transformers. Optional keys take sglang's defaults (models/grok.py:
    # head_dim 128, residual_moe False, attn softcap 30; the router softcap is hard-coded 30).
    "grok": dict(head_dim=128, residual_moe=False, moe_intermediate_size=None,
                 router_logit_softcapping=30.0, attn_logit_softcapping=30.0,
                 rms_norm_eps=1e-5, tie_word_embeddings=False, num_key_value_heads=None),
}
# Top-level defaults of the multimodal wrappers (the text part nests under "text_config").
_WRAPPERS = {
    "gemma3": ("gemma3_text", dict(tie_word_embeddings=True)),
    "llama4": ("llama4_text", dict(tie_word_embeddings=False)),
    "mistral3": ("mistral", dict()),
}
# Mistral3Config builds its text part with these (Mistral-Small-3.1-24B) when text_config is
# absent (transformers 5.23 configuration_mistral3.py, sub_configs_defaults).
_MISTRAL3_TEXT = dict(head_dim=128, hidden_act="silu", hidden_size=5120, intermediate_size=32768,
                      num_attention_heads=32, num_hidden_layers=40, num_key_value_heads=8,
                      rms_norm_eps=1e-5, sliding_window=None, vocab_size=131072,
                      model_type="mistral")
_GROK_TYPES = ("grok", "grok-1", "grok1", "grok-2", "grok2")


# Key aliases, as the HF config classes' ``attribute_map`` (5.23): a config.json may use either
# name (released Qwen3 configs say "num_experts", transformers 5.x writes "num_local_experts").
_EXPERTS_LOCAL = (("num_experts", "num_local_experts"),)
_ROUTED = (("n_routed_experts", "num_local_experts", "num_experts"),
           ("num_nextn_predict_layers", "num_mtp_layers"))
_ALIASES: Dict[str, tuple] = {
    "mixtral": _EXPERTS_LOCAL, "qwen3_moe": _EXPERTS_LOCAL, "gpt_oss": _EXPERTS_LOCAL,
    "olmoe": _EXPERTS_LOCAL, "deepseek_v2": _ROUTED, "deepseek_v3": _ROUTED,
    "kimi_k2": _ROUTED, "glm4_moe": _ROUTED,
    "dbrx": (("d_model", "hidden_size"), ("n_heads", "num_attention_heads"),
             ("n_layers", "num_hidden_layers")),
}


class _Keys:
    """Key access with HF defaults; a missing key without a default is a ValueError naming it."""

    def __init__(self, d: Mapping[str, Any], model_type: str, defaults_key: Optional[str] = None):
        self.d = d
        self.model_type = model_type
        self.defaults = _DEFAULTS[defaults_key or model_type]
        self.aliases = {name: group for group in _ALIASES.get(defaults_key or model_type, ())
                        for name in group}

    def __call__(self, key: str, default: Any = _REQUIRED) -> Any:
        for name in self.aliases.get(key, (key,)):
            if name in self.d:
                return self.d[name]
        if key in self.defaults:
            return self.defaults[key]
        if default is not _REQUIRED:
            return default
        raise ValueError(f"{self.model_type} config: missing required key {key!r}")

    def need(self, key: str, *alternatives: str) -> Any:
        """A key that must end up set (not None), from the dict or an HF default."""
        for k in (key,) + alternatives:
            v = self(k, None)
            if v is not None:
                return v
        names = " or ".join(repr(k) for k in (key,) + alternatives)
        raise ValueError(f"{self.model_type} config: missing required key {names}")

    def rope_factor(self, default: float = 1.0) -> float:
        """partial_rotary_factor: top level, or inside rope_parameters (5.x) / rope_scaling."""
        v = self.d.get("partial_rotary_factor")
        for nested in ("rope_parameters", "rope_scaling"):
            rp = self.d.get(nested)
            if v is None and isinstance(rp, Mapping):
                v = rp.get("partial_rotary_factor")
        return default if v is None else float(v)


def _act(k: _Keys, name: str) -> str:
    v = k(name)
    if not isinstance(v, str) or v not in _ACTS:
        raise ValueError(f"{k.model_type} config: {name}={v!r} is not a supported activation; "
                         f"supported: {sorted(_ACTS)}")
    return _ACTS[v]


def _heads(k: _Keys, head_dim_key: Optional[str] = "head_dim"):
    H = k.need("hidden_size")
    n_h = k.need("num_attention_heads")
    n_kv = k("num_key_value_heads", None)
    n_kv = n_h if n_kv is None else n_kv
    d = k(head_dim_key, None) if head_dim_key else None
    d = H // n_h if not d else d
    return H, n_h, n_kv, d


def _sliding_qwen(k: _Keys, L: int, offset_rule: str):
    """layer_types of Qwen2/Qwen3(-MoE): HF post_init rules (window only if use_sliding_window)."""
    window = k("sliding_window") if k("use_sliding_window") else None
    lt = k("layer_types", None)
    if lt is None and window is not None:
        mwl = k("max_window_layers")
        if offset_rule == "qwen2_moe":
            lt = ["sliding_attention" if (i + 1) % 2 and i < mwl else "full_attention"
                  for i in range(L)]
        else:
            lt = ["sliding_attention" if i >= mwl else "full_attention" for i in range(L)]
    if lt is not None and "sliding_attention" not in lt:
        window = None
    return window, lt


def _gqa_attention(k: _Keys, *, n_h, n_kv, d, bias_qkv=False, bias_o=False, **kw):
    return AttentionConfig(num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=d,
                           attention_bias=bool(bias_qkv), o_proj_bias=bool(bias_o),
                           partial_rotary_factor=k.rope_factor(), **kw)


# --------------------------------------------------------------------------------------------
# dense models
# --------------------------------------------------------------------------------------------
def _llama(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    b = k("attention_bias")
    return ModelConfig(
        model_type=k.model_type, vocab_size=k("vocab_size"), hidden_size=H,
        num_hidden_layers=k("num_hidden_layers"),
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b),
        intermediate_size=k("intermediate_size"), hidden_act=_act(k, "hidden_act"),
        mlp_bias=bool(k("mlp_bias")), tie_word_embeddings=bool(k("tie_word_embeddings")),
        rms_norm_eps=k("rms_norm_eps"))


def _mistral(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    window = k("sliding_window")
    return ModelConfig(
        model_type="mistral", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, sliding_window=window),
        intermediate_size=k("intermediate_size"), hidden_act=_act(k, "hidden_act"),
        layer_types=None if window is None else ("sliding_attention",) * L,
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _qwen2(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    window, lt = _sliding_qwen(k, L, "qwen2")
    return ModelConfig(
        model_type="qwen2", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        # Qwen2Attention: q/k/v always with bias, o_proj without
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=True,
                                 sliding_window=window),
        intermediate_size=k("intermediate_size"), hidden_act=_act(k, "hidden_act"),
        layer_types=lt, tie_word_embeddings=bool(k("tie_word_embeddings")),
        rms_norm_eps=k("rms_norm_eps"))


def _qwen3_attention(k: _Keys, n_h: int, n_kv: int, d: int, window) -> AttentionConfig:
    """Qwen3 (dense and MoE): q/k/v/o biases from attention_bias, per-head QK-norm."""
    b = k("attention_bias")
    return _gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b, qk_norm="head",
                          sliding_window=window)


def _qwen3(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    window, lt = _sliding_qwen(k, L, "qwen3")
    return ModelConfig(
        model_type="qwen3", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=_qwen3_attention(k, n_h, n_kv, d, window),
        intermediate_size=k("intermediate_size"), hidden_act=_act(k, "hidden_act"),
        layer_types=lt, tie_word_embeddings=bool(k("tie_word_embeddings")),
        rms_norm_eps=k("rms_norm_eps"))


def _olmo2(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    b = k("attention_bias")
    return ModelConfig(
        model_type="olmo2", vocab_size=k("vocab_size"), hidden_size=H,
        num_hidden_layers=k("num_hidden_layers"),
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b,
                                 qk_norm="full"),
        intermediate_size=k("intermediate_size"), hidden_act=_act(k, "hidden_act"),
        norm_placement="post", tie_word_embeddings=bool(k("tie_word_embeddings")),
        rms_norm_eps=k("rms_norm_eps"))


def _gemma3_text(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    lt = k("layer_types")
    if lt is None:  # HF: the BC key sliding_window_pattern (default 6): every 6th layer global
        pattern = k("sliding_window_pattern", 6)
        lt = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(L)]
    b = k("attention_bias")
    return ModelConfig(
        model_type="gemma3_text", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b,
                                 qk_norm="head", sliding_window=k("sliding_window"),
                                 attn_logit_softcapping=k("attn_logit_softcapping")),
        intermediate_size=k("intermediate_size"), hidden_act=_act(k, "hidden_activation"),
        layer_types=lt, norm_placement="sandwich",
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _smollm3(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k, head_dim_key=None)
    L = k("num_hidden_layers")
    nr = k("no_rope_layers")
    if nr is None:
        interval = k("no_rope_layer_interval")
        nr = [int((i + 1) % interval != 0) for i in range(L)]
    window = k("sliding_window")
    lt = k("layer_types")
    if lt is None:
        use = k("use_sliding_window") and window is not None
        lt = ["sliding_attention" if use and not nr[i] else "full_attention" for i in range(L)]
    if "sliding_attention" not in lt:
        window = None
    b = k("attention_bias")
    return ModelConfig(
        model_type="smollm3", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b,
                                 sliding_window=window),
        intermediate_size=k("intermediate_size"), hidden_act=_act(k, "hidden_act"),
        mlp_bias=bool(k("mlp_bias")), layer_types=lt, no_rope_layers=nr,
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


# --------------------------------------------------------------------------------------------
# MoE models
# --------------------------------------------------------------------------------------------
def _mixtral(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    window = k("sliding_window")
    moe = MoEConfig(hidden_size=H, num_experts=k("num_local_experts"),
                    num_experts_per_tok=k("num_experts_per_tok"),
                    moe_intermediate_size=k("intermediate_size"),
                    scoring="softmax", norm_topk_prob=True,  # Mixtral always renormalises
                    activation=_act(k, "hidden_act"))
    return ModelConfig(
        model_type="mixtral", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, sliding_window=window),
        intermediate_size=0, moe=moe, hidden_act=_act(k, "hidden_act"),
        layer_types=None if window is None else ("sliding_attention",) * L,
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _qwen_moe_layer(k: _Keys, H: int, gated_shared_expert: bool) -> MoEConfig:
    """The Qwen families' routed layer: softmax top-k (renormalised if norm_topk_prob), and for
    Qwen2-MoE / Qwen3-Next one shared expert scaled by a sigmoid gate."""
    shared = dict(n_shared_experts=1,
                  shared_intermediate_size=k("shared_expert_intermediate_size"),
                  shared_expert_gate=True) if gated_shared_expert else {}
    return MoEConfig(hidden_size=H, num_experts=k("num_experts"),
                     num_experts_per_tok=k("num_experts_per_tok"),
                     moe_intermediate_size=k("moe_intermediate_size"), scoring="softmax",
                     norm_topk_prob=bool(k("norm_topk_prob")), activation=_act(k, "hidden_act"),
                     **shared)


def _qwen_placement(k: _Keys, layer_types) -> dict:
    """ModelConfig fields the Qwen MoE families share: dense width, the mlp_only_layers /
    decoder_sparse_step placement rule, layer types, tying and the norm epsilon."""
    return dict(intermediate_size=k("intermediate_size"), hidden_act=_act(k, "hidden_act"),
                decoder_sparse_step=k("decoder_sparse_step"),
                mlp_only_layers=tuple(k("mlp_only_layers") or ()), layer_types=layer_types,
                tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _qwen2_moe(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    window, lt = _sliding_qwen(k, L, "qwen2_moe")
    moe = _qwen_moe_layer(k, H, gated_shared_expert=True) if k("num_experts") > 0 else None
    return ModelConfig(
        model_type="qwen2_moe", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=k("qkv_bias"),
                                 sliding_window=window),
        moe=moe, **_qwen_placement(k, lt))


def _qwen3_moe(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    window, lt = _sliding_qwen(k, L, "qwen3")
    return ModelConfig(
        model_type="qwen3_moe", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=_qwen3_attention(k, n_h, n_kv, d, window),
        moe=_qwen_moe_layer(k, H, gated_shared_expert=False), **_qwen_placement(k, lt))


def _qwen3_next(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    lt = k("layer_types")
    if lt is None:
        interval = k("full_attention_interval", 4)
        lt = ["linear_attention" if (i + 1) % interval else "full_attention" for i in range(L)]
    b = k("attention_bias")
    factor = k.rope_factor(0.25)  # HF post_init default 0.25
    att = AttentionConfig(
        num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=d, attention_bias=b,
        o_proj_bias=b, qk_norm="head", output_gate=True, partial_rotary_factor=factor,
        linear_num_key_heads=k("linear_num_key_heads"),
        linear_num_value_heads=k("linear_num_value_heads"),
        linear_key_head_dim=k("linear_key_head_dim"),
        linear_value_head_dim=k("linear_value_head_dim"),
        linear_conv_kernel_dim=k("linear_conv_kernel_dim"))
    return ModelConfig(
        model_type="qwen3_next", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=att, moe=_qwen_moe_layer(k, H, gated_shared_expert=True),
        **_qwen_placement(k, lt))


def _mla_attention(k: _Keys, n_h: int, n_kv: int) -> AttentionConfig:
    return AttentionConfig(
        kind="mla", num_attention_heads=n_h, num_key_value_heads=n_kv,
        head_dim=k.need("qk_rope_head_dim"), attention_bias=bool(k("attention_bias")),
        o_proj_bias=bool(k("attention_bias")),
        q_lora_rank=k("q_lora_rank"), kv_lora_rank=k.need("kv_lora_rank"),
        qk_nope_head_dim=k.need("qk_nope_head_dim"), qk_rope_head_dim=k.need("qk_rope_head_dim"),
        v_head_dim=k.need("v_head_dim"))


def _deepseek_v2(k: _Keys) -> ModelConfig:
    H = k.need("hidden_size")
    n_h = k.need("num_attention_heads")
    n_kv = k("num_key_value_heads") or n_h
    if k("mlp_bias"):
        raise ValueError("deepseek_v2 config: mlp_bias=True (biases on the shared experts) is not "
                         "supported")
    method = k("topk_method")
    if method not in ("greedy", "group_limited_greedy"):
        raise ValueError(f"deepseek_v2 config: topk_method={method!r} is not supported "
                         "('greedy' or 'group_limited_greedy')")
    variant = "group_limited_greedy" if method == "group_limited_greedy" and (
        k("n_group") or 1) > 1 else None
    n_shared = k("n_shared_experts") or 0
    # HF v5 DeepseekV2TopkRouter: softmax over all experts, top-k, x routed_scaling_factor; it
    # never renormalises (norm_topk_prob is not read), so neither do we.
    moe = MoEConfig(hidden_size=H, num_experts=k.need("n_routed_experts"),
                    num_experts_per_tok=k.need("num_experts_per_tok"),
                    moe_intermediate_size=k.need("moe_intermediate_size"), scoring="softmax",
                    norm_topk_prob=False,
                    routed_scaling_factor=float(k("routed_scaling_factor")),
                    activation=_act(k, "hidden_act"), n_shared_experts=n_shared)
    return ModelConfig(
        model_type="deepseek_v2", vocab_size=k("vocab_size"), hidden_size=H,
        num_hidden_layers=k("num_hidden_layers"), attention=_mla_attention(k, n_h, n_kv),
        intermediate_size=k("intermediate_size"), moe=moe, hidden_act=_act(k, "hidden_act"),
        first_k_dense_replace=k("first_k_dense_replace"), router_variant=variant,
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _deepseek_v3(k: _Keys) -> ModelConfig:
    """deepseek_v3 and kimi_k2 (DeepseekV3ForCausalLM): sigmoid router with correction bias."""
    H = k.need("hidden_size")
    n_h = k.need("num_attention_heads")
    n_kv = k("num_key_value_heads") or n_h
    moe = MoEConfig(hidden_size=H, num_experts=k.need("n_routed_experts"),
                    num_experts_per_tok=k.need("num_experts_per_tok"),
                    moe_intermediate_size=k.need("moe_intermediate_size"), scoring="sigmoid",
                    norm_topk_prob=bool(k("norm_topk_prob")),
                    routed_scaling_factor=float(k.need("routed_scaling_factor")),
                    n_group=k("n_group") or 1, topk_group=k("topk_group") or 1,
                    correction_bias=True, activation=_act(k, "hidden_act"),
                    n_shared_experts=k.need("n_shared_experts"))
    mtp = k("num_nextn_predict_layers", None)
    if mtp is None:
        mtp = k("num_mtp_layers", 0)
    return ModelConfig(
        model_type=k.model_type, vocab_size=k.need("vocab_size"), hidden_size=H,
        num_hidden_layers=k.need("num_hidden_layers"), attention=_mla_attention(k, n_h, n_kv),
        intermediate_size=k.need("intermediate_size"), moe=moe, hidden_act=_act(k, "hidden_act"),
        first_k_dense_replace=k.need("first_k_dense_replace"), num_nextn_predict_layers=mtp,
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _glm4_moe(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    factor = k.rope_factor(0.5)  # HF post_init default 0.5
    att = AttentionConfig(num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=d,
                          attention_bias=bool(k("attention_bias")), o_proj_bias=False,
                          qk_norm="head" if k("use_qk_norm") else None,
                          partial_rotary_factor=factor)
    moe = MoEConfig(hidden_size=H, num_experts=k("n_routed_experts"),
                    num_experts_per_tok=k("num_experts_per_tok"),
                    moe_intermediate_size=k("moe_intermediate_size"), scoring="sigmoid",
                    norm_topk_prob=bool(k("norm_topk_prob")),
                    routed_scaling_factor=float(k("routed_scaling_factor")),
                    n_group=k("n_group") or 1, topk_group=k("topk_group") or 1,
                    correction_bias=True, activation=_act(k, "hidden_act"),
                    n_shared_experts=k("n_shared_experts"))
    mtp = k("num_nextn_predict_layers", None)
    if mtp is None:
        mtp = k("num_mtp_layers", 1)
    return ModelConfig(
        model_type="glm4_moe", vocab_size=k("vocab_size"), hidden_size=H,
        num_hidden_layers=k("num_hidden_layers"), attention=att,
        intermediate_size=k("intermediate_size"), moe=moe, hidden_act=_act(k, "hidden_act"),
        first_k_dense_replace=k("first_k_dense_replace"), num_nextn_predict_layers=mtp,
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _llama4_text(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    nr = k("no_rope_layers")
    if not nr:  # HF: `no_rope_layers if no_rope_layers else default`
        interval = k("no_rope_layer_interval")
        nr = [int((i + 1) % interval != 0) for i in range(L)]
    lt = k("layer_types")
    if lt is None:
        lt = ["chunked_attention" if r else "full_attention" for r in nr]
    chunk = k("attention_chunk_size")
    moe_layers = k("moe_layers")
    step = k("interleave_moe_layer_step")
    # HF computes moe_layers from the step when absent; an explicit list overrides the step.
    placement = dict(interleave_moe_layer_step=step) if moe_layers is None else dict(
        moe_layers=tuple(moe_layers))
    b = k("attention_bias")
    att = _gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b,
                         qk_norm="l2" if k("use_qk_norm") else None,
                         attention_chunk_size=chunk if "chunked_attention" in lt else None)
    I = k("intermediate_size")
    moe = MoEConfig(hidden_size=H, num_experts=k("num_local_experts"),
                    num_experts_per_tok=k("num_experts_per_tok"), moe_intermediate_size=I,
                    scoring="llama4", norm_topk_prob=False, activation=_act(k, "hidden_act"),
                    n_shared_experts=1, shared_intermediate_size=I)
    return ModelConfig(
        model_type="llama4_text", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=att, intermediate_size=k("intermediate_size_mlp"), moe=moe,
        hidden_act=_act(k, "hidden_act"), layer_types=lt, no_rope_layers=nr,
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"),
        **placement)


def _gpt_oss(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    for key, fixed in (("swiglu_alpha", 1.702), ("swiglu_limit", 7.0)):
        if float(k(key)) != fixed:
            raise ValueError(f"gpt_oss config: {key}={k(key)!r} is not supported (moelab's "
                             f"swiglu_oai uses {fixed})")
    lt = k("layer_types")
    if lt is None:
        lt = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(L)]
    b = k("attention_bias")
    att = _gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b, attention_sinks=True,
                         sliding_window=k("sliding_window"))
    moe = MoEConfig(hidden_size=H, num_experts=k("num_local_experts"),
                    num_experts_per_tok=k("num_experts_per_tok"),
                    moe_intermediate_size=k("intermediate_size"), scoring="topk_softmax",
                    router_bias=True, activation="swiglu_oai", expert_bias=True)
    return ModelConfig(
        model_type="gpt_oss", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=att, intermediate_size=0, moe=moe, layer_types=lt,
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _olmoe(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    b = k("attention_bias")
    moe = MoEConfig(hidden_size=H, num_experts=k("num_experts"),
                    num_experts_per_tok=k("num_experts_per_tok"),
                    moe_intermediate_size=k("intermediate_size"), scoring="softmax",
                    norm_topk_prob=bool(k("norm_topk_prob")), activation=_act(k, "hidden_act"))
    return ModelConfig(
        model_type="olmoe", vocab_size=k("vocab_size"), hidden_size=H,
        num_hidden_layers=k("num_hidden_layers"),
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b,
                                 qk_norm="full"),
        intermediate_size=0, moe=moe, hidden_act=_act(k, "hidden_act"),
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _phimoe(k: _Keys) -> ModelConfig:
    H, n_h, n_kv, d = _heads(k)
    L = k("num_hidden_layers")
    window = k("sliding_window")
    b = k("attention_bias")
    # sparsemixer: the same two experts as a softmax top-2 (by logit), different weights
    moe = MoEConfig(hidden_size=H, num_experts=k("num_local_experts"),
                    num_experts_per_tok=k("num_experts_per_tok"),
                    moe_intermediate_size=k("intermediate_size"), scoring="softmax",
                    norm_topk_prob=False, activation=_act(k, "hidden_act"))
    return ModelConfig(
        model_type="phimoe", vocab_size=k("vocab_size"), hidden_size=H, num_hidden_layers=L,
        attention=_gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=b, bias_o=b,
                                 sliding_window=window),
        intermediate_size=0, moe=moe, hidden_act=_act(k, "hidden_act"),
        layer_types=None if window is None else ("sliding_attention",) * L,
        norm_placement="pre", norm_bias=True, router_variant="sparsemixer",
        lm_head_bias=bool(k("lm_head_bias")),
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


def _sub(k: _Keys, key: str, defaults_key: str) -> _Keys:
    v = k(key)
    if v is None:
        v = {}
    if not isinstance(v, Mapping):
        raise ValueError(f"{k.model_type} config: {key} must be a mapping, got {type(v).__name__}")
    return _Keys(v, f"{k.model_type}.{key}", defaults_key)


def _dbrx(k: _Keys) -> ModelConfig:
    a, f = _sub(k, "attn_config", "dbrx_attn"), _sub(k, "ffn_config", "dbrx_ffn")
    H, n_h = k("d_model"), k("n_heads")
    n_kv = a("kv_n_heads")
    act_fn = f("ffn_act_fn") or {"name": "silu"}
    name = act_fn.get("name", "silu")
    if name not in _ACTS:
        raise ValueError(f"dbrx config: ffn_config.ffn_act_fn name {name!r} is not supported")
    p = f("moe_normalize_expert_weights")
    moe = MoEConfig(hidden_size=H, num_experts=f("moe_num_experts"),
                    num_experts_per_tok=f("moe_top_k"),
                    moe_intermediate_size=f("ffn_hidden_size"), scoring="softmax",
                    norm_topk_prob=p is not None, activation=_ACTS[name])
    return ModelConfig(
        model_type="dbrx", vocab_size=k("vocab_size"), hidden_size=H,
        num_hidden_layers=k("n_layers"),
        attention=AttentionConfig(num_attention_heads=n_h, num_key_value_heads=n_kv,
                                  head_dim=H // n_h),
        intermediate_size=0, moe=moe, router_variant=None if p in (None, 1, 1.0) else "pnorm",
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=1e-5)


def _grok(k: _Keys) -> ModelConfig:
    H = k.need("hidden_size")
    n_h = k.need("num_attention_heads")
    n_kv = k("num_key_value_heads") or n_h
    d = k("head_dim") or 128
    E = k.need("num_local_experts", "num_experts")
    I_dense = k.need("intermediate_size")
    I_moe = k("moe_intermediate_size") or I_dense
    residual = bool(k("residual_moe"))
    # sglang Grok1MoE: fp32 router, 30*tanh(l/30), softmax over all, top-k, no renormalisation;
    # experts GeGLU. GELU is tanh-approximated in the Grok-1 JAX reference and sglang's dense MLP.
    moe = MoEConfig(hidden_size=H, num_experts=E, num_experts_per_tok=k.need("num_experts_per_tok"),
                    moe_intermediate_size=I_moe, scoring="softmax", norm_topk_prob=False,
                    router_logit_softcap=k("router_logit_softcapping"), activation="gelu_tanh")
    att = AttentionConfig(num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=d,
                          attn_logit_softcapping=k("attn_logit_softcapping"))
    return ModelConfig(
        model_type="grok", vocab_size=k.need("vocab_size"), hidden_size=H,
        num_hidden_layers=k.need("num_hidden_layers"), attention=att,
        intermediate_size=I_dense if residual else 0, moe=moe, hidden_act="gelu_tanh",
        residual_moe=residual, norm_placement="sandwich",
        tie_word_embeddings=bool(k("tie_word_embeddings")), rms_norm_eps=k("rms_norm_eps"))


_PARSERS: Dict[str, Callable[[_Keys], ModelConfig]] = {
    "llama": _llama, "mistral": _mistral, "qwen2": _qwen2, "qwen3": _qwen3, "olmo2": _olmo2,
    "gemma3_text": _gemma3_text, "smollm3": _smollm3,
    "mixtral": _mixtral, "qwen2_moe": _qwen2_moe, "qwen3_moe": _qwen3_moe,
    "qwen3_next": _qwen3_next, "deepseek_v2": _deepseek_v2, "deepseek_v3": _deepseek_v3,
    "kimi_k2": _deepseek_v3, "glm4_moe": _glm4_moe, "llama4_text": _llama4_text,
    "gpt_oss": _gpt_oss, "olmoe": _olmoe, "phimoe": _phimoe, "dbrx": _dbrx, "grok": _grok,
}
#: Every accepted ``model_type`` (wrappers with a nested ``text_config`` and Grok aliases too).
SUPPORTED_MODEL_TYPES = tuple(sorted(set(_PARSERS) | set(_WRAPPERS) | set(_GROK_TYPES)))


def _load(config) -> Dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        if not os.path.isfile(path):
            raise ValueError(f"config: no such file {path!r}")
        with open(path, "r", encoding="utf-8") as fh:
            try:
                d = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"config: {path!r} is not valid JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise ValueError(f"config: {path!r} holds a {type(d).__name__}, not a JSON object")
        return d
    raise TypeError("config must be a mapping (a parsed config.json) or a path to a config.json "
                    f"or its folder, got {type(config).__name__}")


def from_hf_config(config) -> ModelConfig:
    """A ``ModelConfig`` from a Hugging Face config.

    config : a ``dict`` (a parsed ``config.json`` or ``PretrainedConfig.to_dict()``), or a path
        to a ``config.json`` or to the folder holding one.

    Supported ``model_type`` values: ``SUPPORTED_MODEL_TYPES`` (MoE: mixtral, qwen2_moe,
    qwen3_moe, qwen3_next, deepseek_v2, deepseek_v3, kimi_k2, glm4_moe, llama4 / llama4_text,
    gpt_oss, olmoe, phimoe, dbrx, grok; dense: llama, mistral, mistral3, qwen2, qwen3, olmo2,
    gemma3 / gemma3_text, smollm3). Grok-2's released config says ``"model_type": "git"``; it is
    recognised by ``architectures == ["Grok1ForCausalLM"]``.

    Raises TypeError (not a mapping or path) and ValueError (no such file, invalid JSON, an
    unknown or missing ``model_type``, a missing required key, an unsupported feature, or values
    ``ModelConfig`` rejects), each naming the key.
    """
    d = _load(config)
    mt = d.get("model_type")
    if mt is None:
        raise ValueError("config: missing required key 'model_type'")
    if not isinstance(mt, str):
        raise ValueError(f"config: model_type must be a str, got {mt!r}")
    if mt == "git" and "Grok1ForCausalLM" in (d.get("architectures") or ()):
        mt = "grok"
    if mt in _GROK_TYPES:
        mt = "grok"
    if mt in _WRAPPERS:
        text_type, top_defaults = _WRAPPERS[mt]
        text = d.get("text_config")
        if text is None:
            text = dict(_MISTRAL3_TEXT) if mt == "mistral3" else {}
        if not isinstance(text, Mapping):
            raise ValueError(f"{mt} config: text_config must be a mapping, got "
                             f"{type(text).__name__}")
        text = dict(text)
        if "tie_word_embeddings" in d:
            text["tie_word_embeddings"] = d["tie_word_embeddings"]
        elif "tie_word_embeddings" in top_defaults:
            text.setdefault("tie_word_embeddings", top_defaults["tie_word_embeddings"])
        text["model_type"] = text_type
        cfg = _PARSERS[text_type](_Keys(text, text_type))
        return cfg.replace(model_type=text_type)
    if mt not in _PARSERS:
        raise ValueError(f"config: unsupported model_type {mt!r}; supported: "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    try:
        return _PARSERS[mt](_Keys(d, mt))
    except TypeError as exc:  # a value of the wrong type in the JSON
        raise ValueError(f"{mt} config: {exc}") from exc
