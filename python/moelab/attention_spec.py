"""AttentionSpec: what one softmax-attention layer computes, read from a Hugging Face config.

Every switch of the C++ ``Attention`` op is a field here (HF names where HF has one). The spec
is built by hand or with ``AttentionSpec.from_hf(config, layer_idx)`` from a transformers
config (a ``PreTrainedConfig`` or its ``config.json`` dict), which knows how each covered
family (qwen3, qwen3_moe, qwen3_next, mistral, mixtral, olmo2, smollm3, glm4_moe, gpt_oss,
gemma3_text, llama4_text, olmoe, qwen2_moe, qwen2, llama) lays out its attention in
transformers 5.x.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from . import _core

__all__ = ["AttentionSpec", "ROPE_TYPES", "QK_NORM_KINDS", "MASKS"]

#: rope_type values implemented (HF ROPE_INIT_FUNCTIONS keys).
ROPE_TYPES = ("default", "linear", "llama3", "yarn")
#: q/k normalisations: none, RMSNorm per head, RMSNorm over all heads (OLMo 2), L2 (Llama 4).
QK_NORM_KINDS = ("none", "head", "full", "l2")
#: masks by layer type: causal full, sliding window, chunked.
MASKS = ("causal", "sliding", "chunked")

# rope_parameters keys the core reads, with its defaults (HF's where HF has one).
_ROPE_KEYS = {"rope_theta": 10000.0, "factor": 1.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 0.0,
              "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.0, "mscale_all_dim": 0.0,
              "attention_factor": 0.0, "truncate": True}

# Families whose q_norm / k_norm weights are used as (1 + w).
_UNIT_OFFSET_NORMS = ("gemma3_text", "gemma3", "qwen3_next")
# Families whose o_proj has no bias whatever attention_bias says.
_NO_O_BIAS = ("glm4_moe", "mistral", "mixtral")


@dataclass(frozen=True)
class AttentionSpec:
    """One softmax-attention layer (shapes: n_h heads of d for q, n_kv for k and v).

    Fields
    ------
    hidden_size, num_attention_heads, num_key_value_heads, head_dim : H, n_h, n_kv, d.
    max_position_embeddings : positions must stay below it.
    qkv_bias, o_bias : biases on q/k/v and on o_proj.
    qk_norm : one of ``QK_NORM_KINDS``; norm_unit_offset: weights used as (1 + w).
    rms_norm_eps : epsilon of the q/k norms.
    rope : HF rope parameters (``rope_type``, ``rope_theta``, ``factor``, ...,
        ``partial_rotary_factor``) or None for a NoPE layer; rope_interleaved: pairs
        (2i, 2i+1) (Llama 4) instead of rotate-half.
    mask, window : one of ``MASKS``, and the sliding window / chunk size in tokens.
    sinks : a learned sink logit per head (gpt-oss); softcap: c tanh(s / c) on the logits.
    scaling : the logit scale (None: 1 / sqrt(d)).
    output_gate : q_proj emits [q | gate] per head, o *= sigmoid(gate) (Qwen3-Next).
    temperature_tuning, attn_scale, floor_scale : Llama 4's query scale on NoPE layers.
    """

    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: str = "none"
    norm_unit_offset: bool = False
    rms_norm_eps: float = 1e-6
    rope: Optional[Mapping[str, Any]] = field(default_factory=lambda: {"rope_type": "default"})
    rope_interleaved: bool = False
    mask: str = "causal"
    window: int = 0
    sinks: bool = False
    softcap: Optional[float] = None
    scaling: Optional[float] = None
    output_gate: bool = False
    temperature_tuning: bool = False
    attn_scale: float = 0.1
    floor_scale: float = 8192.0

    def __post_init__(self):
        if self.qk_norm not in QK_NORM_KINDS:
            raise ValueError(f"qk_norm must be one of {QK_NORM_KINDS}, got {self.qk_norm!r}")
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {self.mask!r}")
        if self.rope is not None:
            kind = self.rope.get("rope_type", "default")
            if kind not in ROPE_TYPES:
                raise ValueError(f"rope['rope_type'] must be one of {ROPE_TYPES}, got {kind!r}")
        self.to_core()  # every range check lives in the core: ValueError naming the field

    @property
    def use_rope(self) -> bool:
        return self.rope is not None

    @property
    def logit_scale(self) -> float:
        return self.scaling if self.scaling is not None else self.head_dim ** -0.5

    def rope_spec(self) -> Optional["_core.RopeSpec"]:
        """The core's RopeSpec (None for a NoPE layer)."""
        if self.rope is None:
            return None
        p = dict(self.rope)
        kw = {k: p[k] if p.get(k) is not None else v for k, v in _ROPE_KEYS.items()}
        if p.get("rope_type") == "yarn" and p.get("factor") is None:
            kw["factor"] = self.max_position_embeddings / kw["original_max_position_embeddings"]
        return _core.RopeSpec(rope_type=p.get("rope_type", "default"), head_dim=self.head_dim,
                              partial_rotary_factor=float(p.get("partial_rotary_factor") or 1.0),
                              interleaved=self.rope_interleaved,
                              **{k: (bool(v) if k == "truncate" else float(v))
                                 for k, v in kw.items()})

    def to_core(self) -> "_core.AttentionSpec":
        return _core.AttentionSpec(
            hidden_size=self.hidden_size, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads, head_dim=self.head_dim,
            qkv_bias=self.qkv_bias, o_bias=self.o_bias, qk_norm=self.qk_norm,
            norm_unit_offset=self.norm_unit_offset, rms_norm_eps=float(self.rms_norm_eps),
            rope=self.rope_spec(), mask=self.mask, window=int(self.window), sinks=self.sinks,
            softcap=float(self.softcap or 0.0), scaling=float(self.scaling or 0.0),
            output_gate=self.output_gate, temperature_tuning=self.temperature_tuning,
            attn_scale=float(self.attn_scale), floor_scale=float(self.floor_scale),
            max_position_embeddings=int(self.max_position_embeddings))

    def replace(self, **changes) -> "AttentionSpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_config(cls, cfg, layer_idx: int, max_position_embeddings: int = 131072,
                    rope: Optional[Mapping[str, Any]] = None) -> "AttentionSpec":
        """The spec of softmax-attention layer ``layer_idx`` of a ``moelab.ModelConfig``: its
        dims, biases, q/k-norm, mask (layer type), sinks, soft-cap, output gate and NoPE layers.

        RoPE parameters and the position limit are not part of ModelConfig: ``rope`` (HF
        ``rope_parameters``; default: rope_theta 10000, the config's partial_rotary_factor) and
        ``max_position_embeddings`` give them. Llama 4 takes transformers' defaults: the L2
        q/k norm on RoPE layers only, the query temperature tuning on NoPE layers. Raises
        ValueError for an MLA or DeltaNet layer.
        """
        a = cfg.attention
        kind = cfg.layer_type(layer_idx)
        if kind == "linear_attention" or a.kind != "gqa":
            raise ValueError(f"layer_idx: layer {layer_idx} is {kind!r} with {a.kind!r} "
                             "attention; AttentionSpec covers GQA softmax attention")
        use_rope = cfg.no_rope_layers is None or bool(cfg.no_rope_layers[layer_idx])
        rope = dict(rope or {"rope_type": "default", "rope_theta": 10000.0})
        if a.partial_rotary_factor != 1.0:
            rope.setdefault("partial_rotary_factor", a.partial_rotary_factor)
        window = {"sliding_attention": a.sliding_window,
                  "chunked_attention": a.attention_chunk_size}.get(kind) or 0
        family = cfg.model_type
        llama4 = family in ("llama4_text", "llama4")
        qk_norm = a.qk_norm or "none"
        if llama4 and not use_rope:  # HF Llama 4: the L2 q/k norm only on RoPE layers
            qk_norm = "none"
        return cls(
            hidden_size=cfg.hidden_size, num_attention_heads=a.num_attention_heads,
            num_key_value_heads=a.num_key_value_heads, head_dim=a.head_dim,
            max_position_embeddings=max_position_embeddings, qkv_bias=a.attention_bias,
            o_bias=a.o_proj_bias, qk_norm=qk_norm,
            norm_unit_offset=family in _UNIT_OFFSET_NORMS, rms_norm_eps=cfg.rms_norm_eps,
            rope=rope if use_rope else None,
            rope_interleaved=llama4,
            mask={"sliding_attention": "sliding", "chunked_attention": "chunked"}.get(kind, "causal"),
            window=window, sinks=a.attention_sinks, softcap=a.attn_logit_softcapping,
            output_gate=a.output_gate,
            temperature_tuning=llama4 and not use_rope)  # HF's attn_temperature_tuning default

    @classmethod
    def from_hf(cls, config, layer_idx: int) -> "AttentionSpec":
        """The spec of decoder layer ``layer_idx`` of a transformers config (object or dict).

        Raises ValueError for a model_type whose attention is not covered (MLA, DeltaNet layers)
        or a layer index out of range.
        """
        from .hf_config import Keys  # here: hf_config's import chain reaches this module

        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        model_type = c.get("model_type", "")
        if model_type in ("deepseek_v3", "deepseek_v2", "kimi_k2"):
            raise ValueError(f"config: {model_type} uses MLA, not covered by AttentionSpec")
        k = Keys(c, str(model_type or "config"))
        L = k.num_layers()
        if not 0 <= layer_idx < L:
            raise ValueError(f"layer_idx: expected 0 <= layer_idx < {L}, got {layer_idx}")
        layer_types = k("layer_types", None)
        if not layer_types:  # Mistral, Mixtral, Qwen3-MoE: one window for every layer, if any
            kind = "sliding_attention" if c.get("sliding_window") else "full_attention"
            layer_types = [kind] * L
        if not isinstance(layer_types, list) or len(layer_types) != L:
            raise ValueError(f"{k.model_type} config: layer_types must be a list of {L} layer "
                             f"types (num_hidden_layers), got {layer_types!r:.80}")
        layer_type = layer_types[layer_idx]
        if layer_type == "linear_attention":
            raise ValueError(f"layer_idx: layer {layer_idx} is a linear-attention (DeltaNet) "
                             "layer; use moelab.GatedDeltaNet")
        H = k.count("hidden_size")
        n_h = k.count("num_attention_heads")
        d = k.count("head_dim") if k("head_dim", None) else H // n_h
        bias = bool(k("attention_bias", False))
        o_bias = bias and model_type not in _NO_O_BIAS
        if model_type == "qwen2_moe":  # Qwen2MoeAttention: q/k/v bias by qkv_bias, o_proj none
            bias, o_bias = bool(k("qkv_bias", True)), False
        elif model_type == "qwen2":  # Qwen2Attention: q/k/v always with bias, o_proj none
            bias, o_bias = True, False
        if k("clip_qkv", None) is not None:  # OLMoE's clamp of q, k and v
            raise ValueError(f"{k.model_type} config: clip_qkv={k('clip_qkv')} (a clamp of q, k "
                             "and v) is not reproduced by moelab's attention")
        no_rope = k("no_rope_layers", None)
        if no_rope is not None and (not isinstance(no_rope, list) or len(no_rope) != L):
            raise ValueError(f"{k.model_type} config: no_rope_layers must be a list of {L} "
                             f"flags, got {no_rope!r:.80}")
        use_rope = not (no_rope and model_type in ("smollm3", "llama4_text", "llama4")
                        and not no_rope[layer_idx])
        local = None
        if layer_type == "sliding_attention" and c.get("rope_local_base_freq"):
            # a 4.x-style Gemma 3 config: its sliding layers use default RoPE at their own base
            local = {"rope_type": "default", "rope_theta": k.real("rope_local_base_freq")}
        rope = k.rope_parameters(layer_type, fallback=local)  # per layer type: Gemma 3
        if c.get("partial_rotary_factor") is not None and "partial_rotary_factor" not in rope:
            rope["partial_rotary_factor"] = k.real("partial_rotary_factor")
        qk_norm = "none"
        if model_type in ("qwen3", "qwen3_moe", "qwen3_next", "gemma3_text", "gemma3"):
            qk_norm = "head"
        elif model_type == "glm4_moe" and c.get("use_qk_norm"):
            qk_norm = "head"
        elif model_type in ("olmo2", "olmoe"):
            qk_norm = "full"
        elif model_type in ("llama4_text", "llama4") and c.get("use_qk_norm") and use_rope:
            qk_norm = "l2"
        mask, window = "causal", 0
        if layer_type == "sliding_attention":
            mask, window = "sliding", k.count("sliding_window")
        elif layer_type == "chunked_attention":
            mask, window = "chunked", k.count("attention_chunk_size")
        scaling = None
        if c.get("query_pre_attn_scalar") is not None:
            scalar = k.real("query_pre_attn_scalar")
            if not scalar > 0:
                raise ValueError(f"{k.model_type} config: query_pre_attn_scalar must be > 0, "
                                 f"got {scalar}")
            scaling = scalar ** -0.5
        softcap = k("attn_logit_softcapping", None)
        llama4 = model_type in ("llama4_text", "llama4")
        return cls(
            hidden_size=H, num_attention_heads=n_h,
            num_key_value_heads=k.count("num_key_value_heads") if k("num_key_value_heads", None)
            else n_h, head_dim=d,
            max_position_embeddings=k.count("max_position_embeddings"),
            qkv_bias=bias, o_bias=o_bias, qk_norm=qk_norm,
            norm_unit_offset=model_type in _UNIT_OFFSET_NORMS,
            rms_norm_eps=k.real("rms_norm_eps", 1e-6),
            rope=rope if use_rope else None, rope_interleaved=llama4, mask=mask, window=window,
            sinks=model_type == "gpt_oss",
            softcap=None if softcap is None else k.real("attn_logit_softcapping"),
            scaling=scaling, output_gate=model_type == "qwen3_next",
            temperature_tuning=llama4 and bool(c.get("attn_temperature_tuning")) and not use_rope,
            attn_scale=k.real("attn_scale", 0.1), floor_scale=k.real("floor_scale", 8192))
