"""Configuration of a whole decoder: a frozen, validated dataclass with Hugging Face key names.

``ModelConfig`` describes everything that decides the parameter count and the per-token cost of
a decoder-only LLM: vocabulary, width, depth, the attention of every layer (``AttentionConfig``),
which layers carry a Mixture-of-Experts FFN and which a dense one, the routed layer's
``MoEConfig``, Grok-2's residual dense MLP and multi-token-prediction layers. Every switch is a
field; nothing is inferred from a dimension.

Layer kinds
-----------
``layer_types[i]`` is the HF name of decoder layer ``i``'s token mixer:

* ``"full_attention"``: causal attention over the whole context (GQA or MLA, ``attention.kind``);
* ``"sliding_attention"``: attention over the last ``attention.sliding_window`` tokens;
* ``"chunked_attention"``: attention inside chunks of ``attention.attention_chunk_size`` tokens
  (Llama 4's RoPE layers);
* ``"linear_attention"``: Qwen3-Next's Gated DeltaNet (a fixed-size recurrent state).

FFN placement (``ffn_kind(i)``)
-------------------------------
Layer ``i`` is ``"moe"`` iff ``moe`` is set and all of these hold, else ``"dense"``:
``i >= first_k_dense_replace`` (DeepSeek, GLM); ``i not in mlp_only_layers`` and
``(i + 1) % decoder_sparse_step == 0`` (Qwen); ``(i + 1) % interleave_moe_layer_step == 0`` and,
when given, ``i in moe_layers`` (Llama 4). Dense layers use a gated MLP of width
``intermediate_size`` with activation ``hidden_act``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Tuple

from . import params
from ._checks import is_int, is_real
from .config import ACTIVATIONS, MoEConfig

__all__ = ["AttentionConfig", "ModelConfig", "LAYER_TYPES", "ATTENTION_KINDS", "QK_NORMS",
           "NORM_PLACEMENTS", "NORMS_PER_LAYER", "ROUTER_VARIANTS", "MAX_LAYERS"]

#: Token-mixer kinds of a decoder layer (HF ``layer_types`` names).
LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention", "linear_attention")
#: Softmax-attention kinds: grouped-query attention (MHA and MQA included) or DeepSeek's MLA.
ATTENTION_KINDS = ("gqa", "mla")
#: QK-norm kinds: None; "head" = RMSNorm over head_dim shared by all heads (Qwen3, GLM, Gemma 3,
#: Qwen3-Next); "full" = RMSNorm over the whole q (n_h*d) and k (n_kv*d) vectors (OLMo 2, OLMoE);
#: "l2" = weight-less L2 norm (Llama 4).
QK_NORMS = (None, "head", "full", "l2")
#: Where each layer's RMSNorms sit, and how many there are: "pre" (2 per layer, before attention
#: and FFN), "sandwich" (4 per layer, before and after each: Grok-2, Gemma 3), "post" (2 per
#: layer, after each sub-block before the residual add: OLMo 2).
NORMS_PER_LAYER = {"pre": 2, "sandwich": 4, "post": 2}
NORM_PLACEMENTS = tuple(NORMS_PER_LAYER)
#: Routers that ``MoEConfig`` does not reproduce exactly. ``ModelConfig.moe`` then holds the
#: closest config (same experts, same parameter count) and ``router_variant`` says what differs:
#: "sparsemixer" (PhiMoE: same top-2 ids as softmax top-2 by logit, different weights),
#: "group_limited_greedy" (DeepSeek-V2: softmax groups scored by their max expert),
#: "pnorm" (DBRX with ``moe_normalize_expert_weights`` other than 1).
ROUTER_VARIANTS = (None, "sparsemixer", "group_limited_greedy", "pnorm")

# build() and analysis never need more; a config above this is a typo, not a model.
_MAX_TOTAL_PARAMS = 1 << 44  # ~17.6 T parameters
#: The most decoder layers a config may have. Released decoders have at most a few hundred;
#: per-layer structure (FFN kinds, layer types) is built and analysed layer by layer in Python,
#: so an absurd count is refused before anything loops over it.
MAX_LAYERS = 4096


def _as_tuple(owner: object, name: str, kind=int) -> None:
    """Normalise a list-valued field to a tuple (frozen dataclasses stay hashable)."""
    v = getattr(owner, name)
    if v is None:
        return
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(f"{type(owner).__name__}.{name} must be a sequence or None, got "
                        f"{type(v).__name__} {v!r}")
    t = tuple(v)
    for item in t:
        ok = is_int(item) if kind is int else isinstance(item, kind)
        if not ok:
            raise TypeError(f"{type(owner).__name__}.{name} must hold {kind.__name__} values, got "
                            f"{type(item).__name__} {item!r}")
    object.__setattr__(owner, name, tuple(int(i) for i in t) if kind is int else t)


@dataclass(frozen=True)
class AttentionConfig:
    """The attention of a decoder: dimensions of the softmax-attention and linear-attention layers.

    Which layer uses which is ``ModelConfig.layer_types``. Fields keep HF key names.

    Softmax attention (``"full_attention"``, ``"sliding_attention"``, ``"chunked_attention"``)
    ---------------------------------------------------------------------------------------
    kind : "gqa" (q/k/v/o projections; MHA when kv heads = heads) or "mla" (DeepSeek's latent
        attention; then ``head_dim`` is unused and the MLA fields below apply).
    num_attention_heads, num_key_value_heads, head_dim : n_h, n_kv, d (GQA).
    attention_bias : biases on q, k, v (GQA) or on q_a, kv_a and o (MLA, as HF).
    o_proj_bias : a bias on o_proj (GQA; gpt-oss).
    qk_norm : one of ``QK_NORMS``.
    attention_sinks : a learned sink logit per head (gpt-oss), n_h parameters.
    output_gate : Qwen3-Next gated attention: q_proj also emits a per-channel sigmoid gate
        (q_proj is H -> 2 n_h d).
    sliding_window, attention_chunk_size : window / chunk in tokens of the sliding and chunked
        layers.
    partial_rotary_factor : share of head_dim that RoPE rotates (no parameters; documentation).
    attn_logit_softcapping : c in c*tanh(s/c) on the attention logits (Grok-2 30), or None.

    MLA (``kind="mla"``)
    --------------------
    q_lora_rank : r_q, or None for a plain q_proj (DeepSeek-V2-Lite).
    kv_lora_rank : r_kv, the compressed KV width (what the cache stores, with the RoPE key).
    qk_nope_head_dim, qk_rope_head_dim, v_head_dim : per-head dims.

    Gated DeltaNet (``"linear_attention"`` layers, Qwen3-Next)
    ----------------------------------------------------------
    linear_num_key_heads, linear_num_value_heads, linear_key_head_dim, linear_value_head_dim,
    linear_conv_kernel_dim : n_k, n_v, d_k, d_v and the causal conv kernel length.

    Raises TypeError (a field of the wrong type) or ValueError (out of range, inconsistent).
    """

    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    kind: str = "gqa"
    attention_bias: bool = False
    o_proj_bias: bool = False
    qk_norm: Optional[str] = None
    attention_sinks: bool = False
    output_gate: bool = False
    sliding_window: Optional[int] = None
    attention_chunk_size: Optional[int] = None
    partial_rotary_factor: float = 1.0
    attn_logit_softcapping: Optional[float] = None
    q_lora_rank: Optional[int] = None
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 0

    def __post_init__(self) -> None:
        name = "AttentionConfig"
        for f in ("num_attention_heads", "num_key_value_heads", "head_dim", "kv_lora_rank",
                  "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "linear_num_key_heads",
                  "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
                  "linear_conv_kernel_dim"):
            v = getattr(self, f)
            if not is_int(v):
                raise TypeError(f"{name}.{f} must be an int, got {type(v).__name__} {v!r}")
            if v < 0:
                raise ValueError(f"{name}.{f} must be >= 0, got {v}")
        for f in ("sliding_window", "attention_chunk_size", "q_lora_rank"):
            v = getattr(self, f)
            if v is not None and not is_int(v):
                raise TypeError(f"{name}.{f} must be an int or None, got {type(v).__name__} {v!r}")
            if v is not None and v < 1:
                raise ValueError(f"{name}.{f} must be None or >= 1, got {v}")
        for f in ("attention_bias", "o_proj_bias", "attention_sinks", "output_gate"):
            v = getattr(self, f)
            if not isinstance(v, bool):
                raise TypeError(f"{name}.{f} must be a bool, got {type(v).__name__} {v!r}")
        if not isinstance(self.kind, str) or self.kind not in ATTENTION_KINDS:
            raise ValueError(f"{name}.kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")
        if self.qk_norm not in QK_NORMS:
            raise ValueError(f"{name}.qk_norm must be one of {QK_NORMS}, got {self.qk_norm!r}")
        if not is_real(self.partial_rotary_factor) or not 0 <= self.partial_rotary_factor <= 1:
            raise ValueError(f"{name}.partial_rotary_factor must be in [0, 1], got "
                             f"{self.partial_rotary_factor!r}")
        c = self.attn_logit_softcapping
        if c is not None and not (is_real(c) and math.isfinite(c) and c > 0):
            raise ValueError(f"{name}.attn_logit_softcapping must be None or finite and > 0, "
                             f"got {c!r}")
        n_h, n_kv = self.num_attention_heads, self.num_key_value_heads
        if n_h < 1 or n_kv < 1:
            raise ValueError(f"{name}: num_attention_heads={n_h} and num_key_value_heads={n_kv} "
                             "must be >= 1")
        if n_h % n_kv != 0:
            raise ValueError(f"{name}: num_attention_heads={n_h} is not a multiple of "
                             f"num_key_value_heads={n_kv}")
        if self.kind == "gqa":
            if self.head_dim < 1:
                raise ValueError(f"{name}.head_dim must be >= 1 for kind='gqa', got "
                                 f"{self.head_dim}")
        else:
            for f in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
                if getattr(self, f) < 1:
                    raise ValueError(f"{name}.{f} must be >= 1 for kind='mla', got "
                                     f"{getattr(self, f)}")
            if self.qk_norm is not None or self.attention_sinks or self.output_gate:
                raise ValueError(f"{name}: qk_norm, attention_sinks and output_gate are GQA "
                                 "features, not available with kind='mla'")
        lin = (self.linear_num_key_heads, self.linear_num_value_heads, self.linear_key_head_dim,
               self.linear_value_head_dim, self.linear_conv_kernel_dim)
        if any(lin) and not all(lin):
            raise ValueError(f"{name}: the Gated DeltaNet dims (linear_num_key_heads, "
                             "linear_num_value_heads, linear_key_head_dim, linear_value_head_dim, "
                             f"linear_conv_kernel_dim) must all be set or all 0, got {lin}")
        if all(lin) and self.linear_num_value_heads % self.linear_num_key_heads != 0:
            raise ValueError(f"{name}: linear_num_value_heads={self.linear_num_value_heads} is not "
                             f"a multiple of linear_num_key_heads={self.linear_num_key_heads}")

    @property
    def has_linear_attention(self) -> bool:
        """True when the Gated DeltaNet dims are set."""
        return self.linear_num_key_heads > 0

    def replace(self, **changes) -> "AttentionConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ModelConfig:
    """A whole decoder-only model (see the module docstring for layer kinds and FFN placement).

    Fields (HF key names)
    ---------------------
    model_type : the HF ``model_type`` this config came from or corresponds to (``"deepseek_v3"``,
        ``"qwen3_moe"``, ``"llama4_text"``, ``"grok"``...).
    vocab_size, hidden_size, num_hidden_layers : V, H, L (L excludes MTP layers;
        1 <= L <= ``MAX_LAYERS``).
    attention : AttentionConfig.
    intermediate_size : width of the dense gated MLP (dense layers and Grok-2's residual MLP);
        0 when the model has none.
    moe : the routed layer's MoEConfig (hidden_size must equal H), or None for a dense model.
    hidden_act : activation of the dense MLP, a moelab activation name (``ACTIVATIONS``).
    mlp_bias : biases on the dense MLP's projections.
    first_k_dense_replace, decoder_sparse_step, interleave_moe_layer_step, moe_layers,
    mlp_only_layers : FFN placement (module docstring).
    residual_moe : Grok-2: every MoE layer also runs a dense MLP of width ``intermediate_size`` and
        the FFN output is ``(MLP(x) + MoE(x)) / sqrt(2)``.
    layer_types : per-layer token mixer (``LAYER_TYPES``); None means all ``"full_attention"``.
    no_rope_layers : per layer 1 = RoPE, 0 = NoPE (HF Llama 4 / SmolLM3 convention); None = all
        RoPE. Documentation only (no parameters).
    norm_placement : one of ``NORM_PLACEMENTS``.
    norm_bias : the norms are LayerNorms with a bias (PhiMoE): 2 H parameters each, not H.
    tie_word_embeddings : the LM head shares the embedding matrix.
    lm_head_bias : the LM head has a bias of V parameters (PhiMoE), counted with the head.
    num_nextn_predict_layers : multi-token-prediction modules (DeepSeek-V3 1, GLM-4.5 1); counted
        separately, never in the total.
    router_variant : one of ``ROUTER_VARIANTS`` (None: ``moe`` is exact).
    rms_norm_eps : epsilon of the RMSNorms.
    name : a display name (the preset name), or None.

    Raises TypeError (a field of the wrong type) or ValueError (out of range, or inconsistent:
    e.g. a dense layer without ``intermediate_size``, ``moe.hidden_size != hidden_size``,
    ``layer_types`` of the wrong length, sliding layers without a window).
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    attention: AttentionConfig
    intermediate_size: int = 0
    moe: Optional[MoEConfig] = None
    hidden_act: str = "silu"
    mlp_bias: bool = False
    first_k_dense_replace: int = 0
    decoder_sparse_step: int = 1
    interleave_moe_layer_step: int = 1
    moe_layers: Optional[Tuple[int, ...]] = None
    mlp_only_layers: Tuple[int, ...] = ()
    residual_moe: bool = False
    layer_types: Optional[Tuple[str, ...]] = None
    no_rope_layers: Optional[Tuple[int, ...]] = None
    norm_placement: str = "pre"
    norm_bias: bool = False
    tie_word_embeddings: bool = False
    lm_head_bias: bool = False
    num_nextn_predict_layers: int = 0
    router_variant: Optional[str] = None
    rms_norm_eps: float = 1e-6
    name: Optional[str] = None

    def __post_init__(self) -> None:
        n = "ModelConfig"
        if not isinstance(self.model_type, str) or not self.model_type:
            raise TypeError(f"{n}.model_type must be a non-empty str, got {self.model_type!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"{n}.name must be a str or None, got {type(self.name).__name__}")
        for f in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                  "first_k_dense_replace", "decoder_sparse_step", "interleave_moe_layer_step",
                  "num_nextn_predict_layers"):
            v = getattr(self, f)
            if not is_int(v):
                raise TypeError(f"{n}.{f} must be an int, got {type(v).__name__} {v!r}")
        for f in ("mlp_bias", "residual_moe", "norm_bias", "tie_word_embeddings",
                  "lm_head_bias"):
            v = getattr(self, f)
            if not isinstance(v, bool):
                raise TypeError(f"{n}.{f} must be a bool, got {type(v).__name__} {v!r}")
        if not isinstance(self.attention, AttentionConfig):
            raise TypeError(f"{n}.attention must be an AttentionConfig, got "
                            f"{type(self.attention).__name__}")
        if self.moe is not None and not isinstance(self.moe, MoEConfig):
            raise TypeError(f"{n}.moe must be a MoEConfig or None, got {type(self.moe).__name__}")
        if not is_real(self.rms_norm_eps) or not self.rms_norm_eps > 0:
            raise ValueError(f"{n}.rms_norm_eps must be > 0, got {self.rms_norm_eps!r}")
        _as_tuple(self, "moe_layers")
        _as_tuple(self, "mlp_only_layers")
        _as_tuple(self, "no_rope_layers")
        _as_tuple(self, "layer_types", kind=str)
        self._check_values()

    def _check_values(self) -> None:
        n = "ModelConfig"
        V, H, L = self.vocab_size, self.hidden_size, self.num_hidden_layers
        for f, v in (("vocab_size", V), ("hidden_size", H), ("num_hidden_layers", L)):
            if v < 1:
                raise ValueError(f"{n}.{f} must be >= 1, got {v}")
        if L > MAX_LAYERS:
            raise ValueError(f"{n}.num_hidden_layers must be <= {MAX_LAYERS}, got {L}")
        if self.intermediate_size < 0:
            raise ValueError(f"{n}.intermediate_size must be >= 0, got {self.intermediate_size}")
        if self.first_k_dense_replace < 0 or self.num_nextn_predict_layers < 0:
            raise ValueError(f"{n}.first_k_dense_replace and num_nextn_predict_layers must be "
                             f">= 0, got {self.first_k_dense_replace} / "
                             f"{self.num_nextn_predict_layers}")
        for f in ("decoder_sparse_step", "interleave_moe_layer_step"):
            if getattr(self, f) < 1:
                raise ValueError(f"{n}.{f} must be >= 1, got {getattr(self, f)}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"{n}.hidden_act must be one of {ACTIVATIONS}, got "
                             f"{self.hidden_act!r}")
        if self.norm_placement not in NORM_PLACEMENTS:
            raise ValueError(f"{n}.norm_placement must be one of {NORM_PLACEMENTS}, got "
                             f"{self.norm_placement!r}")
        if self.router_variant not in ROUTER_VARIANTS:
            raise ValueError(f"{n}.router_variant must be one of {ROUTER_VARIANTS}, got "
                             f"{self.router_variant!r}")
        for f in ("moe_layers", "mlp_only_layers"):
            v = getattr(self, f)
            bad = [i for i in (v or ()) if not 0 <= i < L]
            if bad:
                raise ValueError(f"{n}.{f} holds layer indices outside [0, {L}): {bad}")
        if self.layer_types is not None:
            if len(self.layer_types) != L:
                raise ValueError(f"{n}.layer_types has {len(self.layer_types)} entries, expected "
                                 f"num_hidden_layers={L}")
            bad = sorted(set(self.layer_types) - set(LAYER_TYPES))
            if bad:
                raise ValueError(f"{n}.layer_types: unknown kinds {bad}; known: {LAYER_TYPES}")
            kinds = set(self.layer_types)
            a = self.attention
            if "sliding_attention" in kinds and a.sliding_window is None:
                raise ValueError(f"{n}: sliding_attention layers need attention.sliding_window")
            if "chunked_attention" in kinds and a.attention_chunk_size is None:
                raise ValueError(f"{n}: chunked_attention layers need "
                                 "attention.attention_chunk_size")
            if "linear_attention" in kinds and not a.has_linear_attention:
                raise ValueError(f"{n}: linear_attention layers need the Gated DeltaNet dims "
                                 "(attention.linear_*)")
        if self.no_rope_layers is not None:
            if len(self.no_rope_layers) != L:
                raise ValueError(f"{n}.no_rope_layers has {len(self.no_rope_layers)} entries, "
                                 f"expected num_hidden_layers={L}")
            if set(self.no_rope_layers) - {0, 1}:
                raise ValueError(f"{n}.no_rope_layers must hold 0 (NoPE) or 1 (RoPE) per layer")
        if self.moe is None:
            if self.residual_moe:
                raise ValueError(f"{n}.residual_moe=True needs a moe config")
            if self.router_variant is not None:
                raise ValueError(f"{n}.router_variant is set but the model has no moe config")
        else:
            if self.moe.hidden_size != H:
                raise ValueError(f"{n}: moe.hidden_size={self.moe.hidden_size} differs from "
                                 f"hidden_size={H}")
            if self.num_moe_layers == 0:
                raise ValueError(f"{n}: a moe config is given but the placement fields leave no "
                                 "MoE layer")
        needs_dense = self.num_dense_layers > 0 or self.residual_moe
        if needs_dense and self.intermediate_size < 1:
            raise ValueError(f"{n}: {self.num_dense_layers} dense layer(s)"
                             f"{' and residual_moe' if self.residual_moe else ''} need "
                             f"intermediate_size >= 1, got {self.intermediate_size}")
        # guard against absurd sizes before any analysis multiplies them out
        dense = params.gated_mlp(H, max(self.intermediate_size, 1)).total
        approx = L * (4 * H * H + dense) + 2 * V * H
        if self.moe is not None:
            approx += L * self.moe.num_params
        if approx > _MAX_TOTAL_PARAMS:
            raise ValueError(f"{n} describes about {approx:,} parameters (limit "
                             f"{_MAX_TOTAL_PARAMS:,}): the dimensions are absurd")

    # -- per-layer structure ------------------------------------------------------------
    def ffn_kind(self, i: int) -> str:
        """``"moe"`` or ``"dense"``: the FFN of decoder layer ``i`` (0 <= i < num_hidden_layers).

        Raises TypeError (not an int) or IndexError (out of range).
        """
        if not is_int(i):
            raise TypeError(f"layer index must be an int, got {type(i).__name__} {i!r}")
        L = self.num_hidden_layers
        if not 0 <= i < L:
            raise IndexError(f"layer index {i} out of range [0, {L})")
        if self.moe is None:
            return "dense"
        moe = (i >= self.first_k_dense_replace
               and i not in self.mlp_only_layers
               and (i + 1) % self.decoder_sparse_step == 0
               and (i + 1) % self.interleave_moe_layer_step == 0
               and (self.moe_layers is None or i in self.moe_layers))
        return "moe" if moe else "dense"

    def layer_type(self, i: int) -> str:
        """The token mixer of layer ``i`` (one of ``LAYER_TYPES``). Raises IndexError/TypeError."""
        if not is_int(i):
            raise TypeError(f"layer index must be an int, got {type(i).__name__} {i!r}")
        if not 0 <= i < self.num_hidden_layers:
            raise IndexError(f"layer index {i} out of range [0, {self.num_hidden_layers})")
        return "full_attention" if self.layer_types is None else self.layer_types[i]

    @property
    def ffn_kinds(self) -> Tuple[str, ...]:
        """``ffn_kind(i)`` for every layer."""
        return tuple(self.ffn_kind(i) for i in range(self.num_hidden_layers))

    @property
    def all_layer_types(self) -> Tuple[str, ...]:
        """``layer_type(i)`` for every layer."""
        return tuple(self.layer_type(i) for i in range(self.num_hidden_layers))

    @property
    def moe_layer_indices(self) -> Tuple[int, ...]:
        """Indices of the MoE layers."""
        return tuple(i for i, k in enumerate(self.ffn_kinds) if k == "moe")

    @property
    def num_moe_layers(self) -> int:
        return len(self.moe_layer_indices)

    @property
    def num_dense_layers(self) -> int:
        return self.num_hidden_layers - self.num_moe_layers

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def norms_per_layer(self) -> int:
        """RMSNorms (LayerNorms with ``norm_bias``) in each decoder layer: ``NORMS_PER_LAYER``."""
        return NORMS_PER_LAYER[self.norm_placement]

    @property
    def display_name(self) -> str:
        """``name`` when set, else ``model_type``."""
        return self.name if self.name is not None else self.model_type

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def scaled(self, hidden_size: int = 64, num_layers: Optional[int] = None,
               num_experts: Optional[int] = None, num_experts_per_tok: Optional[int] = None,
               moe_intermediate_size: Optional[int] = None,
               intermediate_size: Optional[int] = None, vocab_size: Optional[int] = None,
               num_attention_heads: Optional[int] = None,
               capacity_factor: Optional[float] = None) -> "ModelConfig":
        """A toy-sized copy with the same structure, for ``moelab.build``.

        Kept: the router (scoring, renormalisation, scaling, correction bias, soft-cap, biases,
        activation), shared experts and their gate, Grok-2's residual MLP, the norm placement,
        the attention kind and every per-layer pattern (layer types, RoPE/NoPE, dense-first
        layers, interleaved or explicit MoE layers), cut to the first ``num_layers`` layers
        (the patterns are periodic from layer 0). Scaled: widths by ``hidden_size / H`` (to
        multiples of 8, at least 8), head counts, expert counts, the vocabulary.

        Defaults: hidden_size 64; num_layers the fewest (>= 4) whose prefix shows every kind
        of layer the model has (e.g. 4 for DeepSeek-V3: 3 dense + 1 MoE; 6 for Gemma 3's
        5 local : 1 global); num_experts min(E, 8) (min(E, 2 n_group) with group routing, so
        each group keeps 2 experts); num_experts_per_tok min(k, max(1, experts // 4));
        vocab_size min(V, 512); num_attention_heads min(n_h, 4) with the kv ratio kept.
        ``first_k_dense_replace`` is kept when the toy has room for a MoE layer after it,
        else cut to ``num_layers - 1``; group routing keeps as many groups as fit.
        ``capacity_factor`` (None: unchanged) sets the MoE capacity.

        Raises TypeError / ValueError for bad arguments (or a toy without MoE layers left).
        """
        return _scaled(self, hidden_size=hidden_size, num_layers=num_layers,
                       num_experts=num_experts, num_experts_per_tok=num_experts_per_tok,
                       moe_intermediate_size=moe_intermediate_size,
                       intermediate_size=intermediate_size, vocab_size=vocab_size,
                       num_attention_heads=num_attention_heads, capacity_factor=capacity_factor)

    def __repr__(self) -> str:
        a = self.attention
        parts = [f"{self.display_name!r}", f"model_type={self.model_type!r}",
                 f"V={self.vocab_size}", f"H={self.hidden_size}", f"L={self.num_hidden_layers}",
                 f"attention={a.kind}({a.num_attention_heads}/{a.num_key_value_heads})"]
        if self.moe is not None:
            m = self.moe
            parts.append(f"moe=E{m.num_experts}/k{m.num_experts_per_tok}/I{m.moe_intermediate_size}"
                         f"/{m.scoring}")
            parts.append(f"moe_layers={self.num_moe_layers}")
        if self.intermediate_size:
            parts.append(f"intermediate_size={self.intermediate_size}")
        return f"ModelConfig({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------
# scaling a config down to a toy (ModelConfig.scaled)
# ---------------------------------------------------------------------------------------------
def _check_opt_int(name: str, v, minimum: int = 1) -> None:
    if v is None:
        return
    if not is_int(v):
        raise TypeError(f"scaled(): {name} must be an int or None, got {type(v).__name__} {v!r}")
    if v < minimum:
        raise ValueError(f"scaled(): {name} must be >= {minimum}, got {v}")


def _default_num_layers(cfg: ModelConfig) -> int:
    """Fewest layers (>= 4, <= L) whose prefix holds every (mixer, FFN, RoPE) combination."""
    L = cfg.num_hidden_layers
    rope = cfg.no_rope_layers or (1,) * L
    sigs = [(cfg.layer_type(i), cfg.ffn_kind(i), rope[i]) for i in range(L)]
    need = set(sigs)
    seen = set()
    for n, sig in enumerate(sigs, start=1):
        seen.add(sig)
        if seen == need:
            return min(L, max(4, n))
    return L


def _scaled(cfg: ModelConfig, *, hidden_size, num_layers, num_experts, num_experts_per_tok,
            moe_intermediate_size, intermediate_size, vocab_size, num_attention_heads,
            capacity_factor) -> ModelConfig:
    _check_opt_int("hidden_size", hidden_size)
    for name, v in (("num_layers", num_layers), ("num_experts", num_experts),
                    ("num_experts_per_tok", num_experts_per_tok),
                    ("moe_intermediate_size", moe_intermediate_size),
                    ("vocab_size", vocab_size), ("num_attention_heads", num_attention_heads)):
        _check_opt_int(name, v)
    _check_opt_int("intermediate_size", intermediate_size, minimum=0)
    H0, H = cfg.hidden_size, hidden_size
    ratio = H / H0

    def width(w: int) -> int:
        return 0 if w == 0 else max(8, int(round(w * ratio / 8.0)) * 8)

    L = num_layers if num_layers is not None else _default_num_layers(cfg)
    if L > cfg.num_hidden_layers:
        raise ValueError(f"scaled(): num_layers={L} exceeds the model's "
                         f"{cfg.num_hidden_layers} layers")

    # attention
    a = cfg.attention
    n_h = num_attention_heads if num_attention_heads is not None else min(
        a.num_attention_heads, 4)
    n_kv = max(1, n_h * a.num_key_value_heads // a.num_attention_heads)
    while n_h % n_kv:
        n_kv -= 1
    head_dim = max(8, H // n_h)
    att = dict(num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=head_dim,
               sliding_window=None if a.sliding_window is None else min(a.sliding_window, 32),
               attention_chunk_size=None if a.attention_chunk_size is None else min(
                   a.attention_chunk_size, 64))
    if a.kind == "mla":
        att.update(q_lora_rank=None if a.q_lora_rank is None else width(a.q_lora_rank),
                   kv_lora_rank=width(a.kv_lora_rank), qk_nope_head_dim=head_dim,
                   qk_rope_head_dim=max(8, head_dim // 2), v_head_dim=head_dim)
    if a.has_linear_attention:
        n_k = min(a.linear_num_key_heads, 2)
        att.update(linear_num_key_heads=n_k,
                   linear_num_value_heads=n_k * (a.linear_num_value_heads
                                                 // a.linear_num_key_heads),
                   linear_key_head_dim=16, linear_value_head_dim=16)
    attention = a.replace(**att)

    # MoE
    moe = cfg.moe
    if moe is not None:
        E0, k0, g0 = moe.num_experts, moe.num_experts_per_tok, moe.n_group
        E = num_experts if num_experts is not None else (min(E0, 2 * g0) if g0 > 1 else
                                                         min(E0, 8))
        k = num_experts_per_tok if num_experts_per_tok is not None else min(k0, max(1, E // 4))
        if k > E:
            raise ValueError(f"scaled(): num_experts_per_tok={k} exceeds num_experts={E}")
        g, tg = 1, 1
        if g0 > 1:
            g = max([d for d in range(1, g0 + 1) if E % d == 0 and E // d >= 2] or [1])
            tg = min(moe.topk_group, g)
            while tg < g and k > tg * (E // g):
                tg += 1
        shared = moe.shared_intermediate_size
        moe = moe.replace(
            hidden_size=H, num_experts=E, num_experts_per_tok=k,
            moe_intermediate_size=(moe_intermediate_size if moe_intermediate_size is not None
                                   else width(moe.moe_intermediate_size)),
            n_group=g, topk_group=tg,
            shared_intermediate_size=None if shared is None else width(shared),
            capacity_factor=(capacity_factor if capacity_factor is not None
                             else moe.capacity_factor))
    elif capacity_factor is not None:
        raise ValueError("scaled(): capacity_factor needs a MoE model")

    first_k = cfg.first_k_dense_replace
    if moe is not None and first_k >= L:
        first_k = max(0, L - 1)
    moe_layers = None if cfg.moe_layers is None else tuple(i for i in cfg.moe_layers if i < L)
    return cfg.replace(
        name=f"{cfg.display_name}-scaled",
        vocab_size=vocab_size if vocab_size is not None else min(cfg.vocab_size, 512),
        hidden_size=H, num_hidden_layers=L, attention=attention, moe=moe,
        intermediate_size=(intermediate_size if intermediate_size is not None
                           else width(cfg.intermediate_size)),
        first_k_dense_replace=first_k, moe_layers=moe_layers,
        mlp_only_layers=tuple(i for i in cfg.mlp_only_layers if i < L),
        layer_types=None if cfg.layer_types is None else cfg.layer_types[:L],
        no_rope_layers=None if cfg.no_rope_layers is None else cfg.no_rope_layers[:L])
