"""``moelab.build``: a DecoderModel with random weights, assembled from a ``ModelConfig``.

    model = moelab.build(moelab.preset("qwen3-30b-a3b").scaled(), seed=0)
    logits = model(ids)                      # the same class as moelab.hf.load_model returns

Per layer the config says which token mixer (softmax attention of the layer's type, MLA, or a
Gated DeltaNet for ``"linear_attention"`` layers), which FFN (``MoELayer`` or ``GatedMLP``) and
which norms (the family's placement) to make; then the embedding, the final norm and the LM
head (the embedding matrix when tied). Random init: every layer's own deterministic init
(uniform in ±1/sqrt(fan_in)), embedding N(0, 1), an untied head uniform in ±1/sqrt(H), norms 1
(``(1 + w)`` norms: w = 0).

What a ``ModelConfig`` does not hold takes a default: RoPE with theta 10000 on every RoPE layer
(no scaling), the position limit ``MAX_POSITIONS``, the attention scale 1/sqrt(head_dim) (Gemma
3's ``query_pre_attn_scalar`` is not kept), no final logit soft-cap. A checkpoint's exact
numerics come from :func:`moelab.hf.load_model`, which reads them from its ``config.json``.
Features the decoder does not reproduce are refused by name (Grok-2's residual MoE and its
multipliers, PhiMoE's biased norms, router variants): never a silently different model.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import SEED_LIMIT, checked_seed, is_real
from .analysis import count_params
from .attention import Attention, AttentionSpec
from .attention_spec import _UNIT_OFFSET_NORMS
from .decoder import NORM_SLOTS, DecoderLayer, DecoderModel, check_decoder_features
from .deltanet import GatedDeltaNet
from .layer import MoELayer
from .mla import MultiHeadLatentAttention
from .mla_spec import MLASpec
from .mlp import GatedMLP
from .model_config import ModelConfig

__all__ = ["build", "DEFAULT_MAX_BYTES", "MAX_POSITIONS"]

#: build() refuses models whose float32 weights would exceed this (4 GiB) unless told otherwise.
DEFAULT_MAX_BYTES = 4 << 30

#: The position limit of a built model's attention layers (not part of ModelConfig).
MAX_POSITIONS = 131072

#: Families that scale the embedding by sqrt(H) (as moelab.hf.load_model does).
_SCALED_EMBEDDING = ("gemma3_text", "gemma3")


def build(cfg: ModelConfig, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES) -> DecoderModel:
    """A ``DecoderModel`` with random weights for ``cfg`` (usually ``preset(name).scaled()``).

    seed : int in [0, 2**64); the same seed gives the same weights (layer i's mixer and FFN are
        seeded from ``seed`` and ``i``). max_bytes : a number > 0; refuse a model whose float32
        weights (``count_params(cfg).total``) exceed this many bytes (default 4 GiB) - a
        full-size preset needs hundreds of GB; scale it first.

    Raises TypeError (not a ModelConfig, a seed that is not an int, max_bytes not a number) or
    ValueError (a seed out of range, max_bytes <= 0, too large, a feature the decoder does not
    reproduce, naming it).
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a moelab.ModelConfig, got {type(cfg).__name__}")
    seed = checked_seed(seed)
    if not is_real(max_bytes):
        raise TypeError(f"max_bytes must be a number, got {type(max_bytes).__name__} "
                        f"{max_bytes!r}")
    if not max_bytes > 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes!r}")
    if cfg.residual_moe:
        raise ValueError(
            f"build({cfg.display_name!r}): model_type {cfg.model_type!r} has Grok-2's residual "
            "MoE, whose whole decoder (its embedding, attention and output multipliers) moelab "
            "does not reproduce; its FFN is moelab.ResidualMoE")
    check_decoder_features(cfg)
    need = 4 * count_params(cfg).total
    if need > max_bytes:
        raise ValueError(
            f"build({cfg.display_name!r}): its weights need {need / 2**30:,.2f} GiB in "
            f"float32 ({need:,} bytes), above the limit max_bytes={max_bytes:,}; build a toy "
            "with cfg.scaled() or raise max_bytes")
    V, H = cfg.vocab_size, cfg.hidden_size
    offset = 1.0 if cfg.model_type in _UNIT_OFFSET_NORMS else 0.0
    base = seed * 1_000_003
    layers = []
    for i in range(cfg.num_hidden_layers):
        norms = {slot: np.full(H, 1.0 - offset, dtype=np.float32)
                 for slot in NORM_SLOTS[cfg.norm_placement]}
        layers.append(DecoderLayer(_mixer(cfg, i, (base + 2 * i) % SEED_LIMIT),
                                   _ffn(cfg, i, (base + 2 * i + 1) % SEED_LIMIT), norms))
    rng = np.random.default_rng(seed)
    embed = rng.standard_normal((V, H), dtype=np.float32)                       # (V, H)
    lm_head = embed if cfg.tie_word_embeddings else (
        rng.uniform(-1.0, 1.0, (V, H)) / math.sqrt(H)).astype(np.float32)       # (V, H)
    final_norm = np.full(H, 1.0 - offset, dtype=np.float32)                     # (H,)
    return DecoderModel(cfg, embed, layers, final_norm, lm_head,
                        embed_scale=math.sqrt(H) if cfg.model_type in _SCALED_EMBEDDING else None,
                        norm_offset=offset)


def _mixer(cfg: ModelConfig, i: int, seed: int):
    """Layer i's token mixer: a Gated DeltaNet, MLA, or softmax attention of its layer type."""
    if cfg.layer_type(i) == "linear_attention":
        return GatedDeltaNet(cfg, i, seed=seed)
    if cfg.attention.kind == "mla":
        return MultiHeadLatentAttention(MLASpec.from_config(cfg, MAX_POSITIONS), seed=seed)
    return Attention(AttentionSpec.from_config(cfg, i, MAX_POSITIONS), seed=seed)


def _ffn(cfg: ModelConfig, i: int, seed: int):
    if cfg.ffn_kind(i) == "moe":
        return MoELayer(cfg.moe, seed=seed)
    return GatedMLP(cfg.hidden_size, cfg.intermediate_size, activation=cfg.hidden_act, seed=seed)
