"""MLASpec: what one multi-head latent attention (MLA) layer computes, read from a Hugging Face
config.

MLA is DeepSeek-V2/V3's and Kimi K2's attention: queries through a low-rank bottleneck
(``q_lora_rank``) or a plain ``q_proj``; keys and values rebuilt from a per-token latent of
``kv_lora_rank`` floats plus one RoPE key of ``qk_rope_head_dim`` floats shared by every head,
which is all the cache keeps. ``MLASpec.from_hf(config, layer_idx)`` reads a transformers
``DeepseekV3Config`` (or a deepseek_v3 / kimi_k2 ``config.json`` dict) as transformers 5.x's
``DeepseekV3Attention`` does, the YaRN mscale of the softmax scale included.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from . import _core
from .attention_spec import ROPE_TYPES, _ROPE_KEYS

__all__ = ["MLASpec", "MLA_MODEL_TYPES"]

#: transformers model types whose attention is MLA.
MLA_MODEL_TYPES = ("deepseek_v3", "kimi_k2")


def _yarn_mscale(factor: float, mscale: float) -> float:
    """HF's yarn_get_mscale: 0.1 m ln(factor) + 1 above factor 1, else 1."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


@dataclass(frozen=True)
class MLASpec:
    """One MLA layer (n_h heads; shapes in the fields' comments).

    Fields
    ------
    hidden_size : H.
    num_attention_heads : n_h.
    q_lora_rank : the query bottleneck (q_a_proj -> q_a_layernorm -> q_b_proj), or None for a
        plain q_proj.
    kv_lora_rank : r, the latent width (kv_a_proj_with_mqa -> kv_a_layernorm -> kv_b_proj).
    qk_nope_head_dim, qk_rope_head_dim, v_head_dim : d_n, d_r (the shared RoPE key), d_v.
    max_position_embeddings : positions must stay below it.
    attention_bias : biases on q_a_proj, kv_a_proj_with_mqa and o_proj (as HF).
    rope : HF rope parameters of the d_r channels (``rope_type``, ``rope_theta``, ``factor``,
        ``mscale``, ``mscale_all_dim``, ...).
    rope_interleave : the RoPE pairs are (2i, 2i+1) (HF's default for DeepSeek-V3).
    scaling : the softmax scale; None: d_qk^-0.5, times mscale(factor, mscale_all_dim)^2 for a
        scaled rope with ``mscale_all_dim`` (HF's yarn_apply_mscale).
    rms_norm_eps : epsilon of q_a_layernorm and kv_a_layernorm (HF builds both with 1e-6,
        whatever the config's rms_norm_eps).
    """

    hidden_size: int
    num_attention_heads: int
    q_lora_rank: Optional[int]
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    max_position_embeddings: int
    attention_bias: bool = False
    rope: Mapping[str, Any] = field(default_factory=lambda: {"rope_type": "default"})
    rope_interleave: bool = True
    scaling: Optional[float] = None
    rms_norm_eps: float = 1e-6

    def __post_init__(self):
        kind = self.rope.get("rope_type", "default")
        if kind not in ROPE_TYPES:
            raise ValueError(f"rope['rope_type'] must be one of {ROPE_TYPES}, got {kind!r}")
        if self.q_lora_rank is not None and (isinstance(self.q_lora_rank, bool)
                                             or int(self.q_lora_rank) < 1):
            raise ValueError(f"q_lora_rank: must be >= 1 or None, got {self.q_lora_rank!r}")
        d_r = self.qk_rope_head_dim
        if isinstance(d_r, bool) or not isinstance(d_r, int) or d_r < 2 or d_r % 2:
            raise ValueError(f"qk_rope_head_dim: must be an even int >= 2, got {d_r!r}")
        self.to_core()  # every range check lives in the core: ValueError naming the field

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def latent_dim(self) -> int:
        """Floats per cached token: kv_lora_rank + qk_rope_head_dim."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def logit_scale(self) -> float:
        if self.scaling is not None:
            return float(self.scaling)
        scale = self.qk_head_dim ** -0.5
        if self.rope.get("rope_type", "default") != "default" and self.rope.get("mscale_all_dim"):
            m = _yarn_mscale(float(self.rope["factor"]), float(self.rope["mscale_all_dim"]))
            scale *= m * m
        return scale

    def rope_spec(self) -> "_core.RopeSpec":
        p = dict(self.rope)
        kw = {k: p[k] if p.get(k) is not None else v for k, v in _ROPE_KEYS.items()}
        if p.get("rope_type") == "yarn" and p.get("factor") is None:
            kw["factor"] = self.max_position_embeddings / kw["original_max_position_embeddings"]
        return _core.RopeSpec(rope_type=p.get("rope_type", "default"),
                              head_dim=self.qk_rope_head_dim,
                              **{k: (bool(v) if k == "truncate" else float(v))
                                 for k, v in kw.items()})

    def to_core(self) -> "_core.MlaSpec":
        return _core.MlaSpec(
            hidden_size=int(self.hidden_size), num_attention_heads=int(self.num_attention_heads),
            q_lora_rank=int(self.q_lora_rank or 0), kv_lora_rank=int(self.kv_lora_rank),
            qk_nope_head_dim=int(self.qk_nope_head_dim),
            qk_rope_head_dim=int(self.qk_rope_head_dim), v_head_dim=int(self.v_head_dim),
            attention_bias=bool(self.attention_bias), rms_norm_eps=float(self.rms_norm_eps),
            rope=self.rope_spec(), rope_interleave=bool(self.rope_interleave),
            scaling=float(self.logit_scale),
            max_position_embeddings=int(self.max_position_embeddings))

    def replace(self, **changes) -> "MLASpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_config(cls, cfg, max_position_embeddings: int = 163840,
                    rope: Optional[Mapping[str, Any]] = None) -> "MLASpec":
        """The spec of the MLA layers of a ``moelab.ModelConfig`` (``attention.kind == "mla"``).

        RoPE parameters and the position limit are not part of ModelConfig: ``rope`` (HF
        ``rope_parameters``; default: rope_theta 10000, no scaling) and
        ``max_position_embeddings`` give them. Raises ValueError for a GQA model.
        """
        a = cfg.attention
        if a.kind != "mla":
            raise ValueError(f"cfg: attention kind is {a.kind!r}, not 'mla'; use moelab.AttentionSpec")
        return cls(
            hidden_size=cfg.hidden_size, num_attention_heads=a.num_attention_heads,
            q_lora_rank=a.q_lora_rank, kv_lora_rank=a.kv_lora_rank,
            qk_nope_head_dim=a.qk_nope_head_dim, qk_rope_head_dim=a.qk_rope_head_dim,
            v_head_dim=a.v_head_dim, max_position_embeddings=max_position_embeddings,
            attention_bias=a.attention_bias,
            rope=dict(rope or {"rope_type": "default", "rope_theta": 10000.0}))

    @classmethod
    def from_hf(cls, config, layer_idx: int = 0) -> "MLASpec":
        """The spec of decoder layer ``layer_idx`` of a deepseek_v3 / kimi_k2 transformers config
        (object or ``config.json`` dict; every layer's attention is the same).

        Raises ValueError for another model_type or a layer index out of range.
        """
        from .hf_config import Keys  # here: hf_config's import chain reaches this module

        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        model_type = c.get("model_type", "")
        if model_type not in MLA_MODEL_TYPES:
            raise ValueError(f"config: model_type {model_type!r} is not MLA "
                             f"(one of {MLA_MODEL_TYPES}); use moelab.AttentionSpec")
        k = Keys(c, model_type)
        L = k.num_layers()
        if not 0 <= layer_idx < L:
            raise ValueError(f"layer_idx: expected 0 <= layer_idx < {L}, got {layer_idx}")
        rope = k.rope_parameters()
        q_lora = k("q_lora_rank", None)
        return cls(
            hidden_size=k.count("hidden_size"), num_attention_heads=k.count("num_attention_heads"),
            q_lora_rank=None if q_lora is None else k.count("q_lora_rank"),
            kv_lora_rank=k.count("kv_lora_rank"), qk_nope_head_dim=k.count("qk_nope_head_dim"),
            qk_rope_head_dim=k.count("qk_rope_head_dim"), v_head_dim=k.count("v_head_dim"),
            max_position_embeddings=k.count("max_position_embeddings"),
            attention_bias=bool(k("attention_bias", False)), rope=rope,
            rope_interleave=bool(k("rope_interleave", True)))
