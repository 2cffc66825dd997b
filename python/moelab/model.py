"""A runnable stack of decoder blocks assembled from a ``ModelConfig`` (``moelab.build``).

Each block is a residual FFN sub-block with the FFN the architecture puts at that depth::

    pre      : x = x + FFN(RMSNorm(x))                        (most models)
    sandwich : x = x + RMSNorm_post(FFN(RMSNorm_pre(x)))      (Grok-2, Gemma 3)
    post     : x = x + RMSNorm(FFN(x))                        (OLMo 2)

FFN is a ``moelab.MoELayer`` on MoE layers and a ``moelab.GatedMLP`` of width
``intermediate_size`` on dense layers; Grok-2's residual MoE is ``(MLP(x) + MoE(x)) / sqrt(2)``.
Every block has an ``attention`` slot, ``None`` for now (the attention sub-block is skipped, an
identity); set it to a callable ``(T, H) float32 -> (T, H) float32`` and the block runs
``x = x + attention(RMSNorm_attn(x))`` (sandwich: ``RMSNorm_post_attn(attention(...))``,
post: ``RMSNorm_attn(attention(x))``) before the FFN. A final RMSNorm follows the stack. The
model works on hidden states: there is no embedding and no LM head.
"""

from __future__ import annotations

import math
import time
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
from tqdm import tqdm

from . import params
from ._checks import SEED_LIMIT, checked_seed, is_int, is_real
from ._convert import as_float32_array
from .layer import MoELayer, RoutingStats
from .mlp import GatedMLP
from .model_config import ModelConfig

__all__ = ["RMSNorm", "DecoderBlock", "MoEModel", "build", "DEFAULT_MAX_BYTES"]

#: build() refuses models whose float32 weights would exceed this (4 GiB) unless told otherwise.
DEFAULT_MAX_BYTES = 4 << 30

#: With ``progress=None`` a forward's progress bar appears only after this many seconds.
PROGRESS_DELAY_S = 2.0

_INV_SQRT2 = np.float32(1.0 / math.sqrt(2.0))


class RMSNorm:
    """``y = x / sqrt(mean(x^2) + eps) * weight`` over the last axis.

    hidden_size : H. eps : > 0. ``weight`` is a float32 (H,) array of ones (writable).
    Calling it on ``x : (..., H)`` float32 returns float32 of the same shape (the mean of squares
    is accumulated in float64). Raises ValueError on a wrong last dimension.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        if not is_int(hidden_size):
            raise TypeError(f"hidden_size must be an int, got {type(hidden_size).__name__}")
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.hidden_size = int(hidden_size)
        self.eps = float(eps)
        self.weight = np.ones(self.hidden_size, dtype=np.float32)  # (H,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.hidden_size:
            raise ValueError(f"x: expected (..., H={self.hidden_size}), got {x.shape}")
        ms = np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True)  # (..., 1)
        inv = (1.0 / np.sqrt(ms + self.eps)).astype(np.float32)                # (..., 1)
        return (x * inv) * self.weight                                         # (..., H)

    @property
    def num_params(self) -> int:
        return self.hidden_size

    def __repr__(self) -> str:
        return f"RMSNorm(H={self.hidden_size}, eps={self.eps:g})"


class DecoderBlock:
    """One decoder layer: the attention slot (identity while ``attention is None``) and the FFN.

    kind : "moe" or "dense". moe : the MoELayer (MoE layers), mlp : the GatedMLP (dense layers,
    and Grok-2's residual MLP beside the MoE). ``block(x, return_stats)`` with ``x : (T, H)``
    float32 returns ``(y (T, H), RoutingStats | None)``.
    """

    def __init__(self, index: int, kind: str, hidden_size: int, norm_placement: str, eps: float,
                 moe: Optional[MoELayer] = None, mlp: Optional[GatedMLP] = None,
                 residual_moe: bool = False):
        self.index = index
        self.kind = kind
        self.norm_placement = norm_placement
        self.moe = moe
        self.mlp = mlp
        self.residual_moe = residual_moe
        #: The attention slot: None (skipped) or a callable (T, H) -> (T, H) float32.
        self.attention: Optional[Callable[[np.ndarray], np.ndarray]] = None
        self.attn_norm = RMSNorm(hidden_size, eps)
        self.post_attn_norm = RMSNorm(hidden_size, eps) if norm_placement == "sandwich" else None
        self.ffn_norm = RMSNorm(hidden_size, eps)
        self.post_ffn_norm = RMSNorm(hidden_size, eps) if norm_placement == "sandwich" else None

    def _ffn(self, h: np.ndarray, return_stats: bool) -> Tuple[np.ndarray, Optional[RoutingStats]]:
        stats = None
        if self.kind == "dense":
            return self.mlp(h), None                              # (T, H)
        if return_stats:
            y, stats = self.moe(h, return_stats=True)             # (T, H)
        else:
            y = self.moe(h)                                       # (T, H)
        if self.residual_moe:
            y = (self.mlp(h) + y) * _INV_SQRT2                    # (T, H)
        return y, stats

    def _sub(self, x: np.ndarray, fn, pre: RMSNorm, post: Optional[RMSNorm]) -> np.ndarray:
        if self.norm_placement == "post":
            return pre(fn(x))
        out = fn(pre(x))
        return post(out) if post is not None else out

    def __call__(self, x: np.ndarray, return_stats: bool = False
                 ) -> Tuple[np.ndarray, Optional[RoutingStats]]:
        if self.attention is not None:
            a = self._sub(x, self.attention, self.attn_norm, self.post_attn_norm)  # (T, H)
            x = x + np.asarray(a, dtype=np.float32)                                  # (T, H)
        box = {}

        def ffn(h):
            y, box["stats"] = self._ffn(h, return_stats)
            return y

        y = self._sub(x, ffn, self.ffn_norm, self.post_ffn_norm)  # (T, H)
        return x + y, box.get("stats")

    @property
    def num_params(self) -> int:
        n = sum(norm.num_params for norm in (self.attn_norm, self.post_attn_norm, self.ffn_norm,
                                             self.post_ffn_norm) if norm is not None)
        if self.moe is not None:
            n += self.moe.config.num_params
        if self.mlp is not None:
            n += self.mlp.num_params
        return n

    def __repr__(self) -> str:
        ffn = repr(self.moe) if self.kind == "moe" else repr(self.mlp)
        extra = f" + residual {self.mlp!r}" if self.residual_moe else ""
        att = "None" if self.attention is None else type(self.attention).__name__
        return f"DecoderBlock({self.index}, {self.kind}: {ffn}{extra}, attention={att})"


class MoEModel:
    """A stack of ``DecoderBlock``s built from a ``ModelConfig`` by ``moelab.build``.

    ``model(x)`` with ``x : (T, H)`` or ``(B, S, H)`` float array-like returns float32 of the
    same shape; ``model(x, return_stats=True)`` returns ``(y, stats)`` with ``stats`` a list of
    one ``RoutingStats`` per layer (``None`` for dense layers), token index ``b * S + s``.
    ``progress`` draws a tqdm bar over the layers on stderr: None (default) only on a terminal
    and only once the forward has run ``PROGRESS_DELAY_S`` seconds, True always, False never.

    Raises TypeError (non-numeric x) or ValueError (wrong rank or H, NaN/Inf).
    """

    def __init__(self, config: ModelConfig, blocks: List[DecoderBlock], seed: int):
        self.config = config
        self.blocks = blocks
        self.seed = seed
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_params(self) -> int:
        """Parameters allocated (FFNs and norms; no attention, embedding or head)."""
        return sum(b.num_params for b in self.blocks) + self.norm.num_params

    def __call__(self, x, return_stats: bool = False, progress: Optional[bool] = None
                 ) -> Union[np.ndarray, Tuple[np.ndarray, List[Optional[RoutingStats]]]]:
        return self.forward(x, return_stats=return_stats, progress=progress)

    def forward(self, x, return_stats: bool = False, progress: Optional[bool] = None
                ) -> Union[np.ndarray, Tuple[np.ndarray, List[Optional[RoutingStats]]]]:
        x = as_float32_array(x, "x")
        H = self.hidden_size
        if x.ndim not in (2, 3) or x.shape[-1] != H:
            raise ValueError(f"x: expected (T, H={H}) or (B, S, H={H}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x holds NaN or Inf")
        lead = x.shape[:-1]
        h = x.reshape(-1, H)                                  # (T, H)
        stats: List[Optional[RoutingStats]] = []
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be None, True or False, got {progress!r}")
        bar = tqdm(self.blocks, desc=self.config.display_name, unit="layer", leave=False,
                   disable=None if progress is None else not progress,
                   delay=PROGRESS_DELAY_S if progress is None else 0.0)
        for block in bar:
            h, st = block(h, return_stats)                    # (T, H)
            stats.append(st)
        y = self.norm(h).reshape(*lead, H)                   # (T, H) -> x.shape
        return (y, stats) if return_stats else y

    def benchmark(self, x, repeats: int = 3) -> dict:
        """Best-of-``repeats`` wall time of ``self(x)``: {"seconds", "tokens", "tokens_per_s"}."""
        x = as_float32_array(x, "x")
        tokens = int(np.prod(x.shape[:-1]))
        best = math.inf
        for _ in range(max(1, int(repeats))):
            t0 = time.perf_counter()
            self(x, progress=False)
            best = min(best, time.perf_counter() - t0)
        return {"seconds": best, "tokens": tokens,
                "tokens_per_s": tokens / best if best > 0 else math.inf}

    def __repr__(self) -> str:
        c = self.config
        kinds = "".join("M" if b.kind == "moe" else "D" for b in self.blocks)
        return (f"MoEModel({c.display_name!r}, H={c.hidden_size}, layers={len(self.blocks)} "
                f"[{kinds}], params={self.num_params:,})")


def _allocated_params(cfg: ModelConfig) -> int:
    """What ``build`` allocates: every layer's norms and FFNs (no biases), the final norm."""
    H = cfg.hidden_size
    n = params.norms(H, 1).total + cfg.num_hidden_layers * params.norms(
        H, cfg.norms_per_layer).total
    dense = params.gated_mlp(H, cfg.intermediate_size).total
    for kind in cfg.ffn_kinds:
        if kind == "moe":
            n += cfg.moe.num_params + (dense if cfg.residual_moe else 0)
        else:
            n += dense
    return n


def build(cfg: ModelConfig, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES) -> MoEModel:
    """A runnable ``MoEModel`` for ``cfg`` (usually ``preset(name).scaled()``).

    seed : int in [0, 2**64); the same seed gives the same weights (layer i's FFN is seeded
        from ``seed`` and ``i``). max_bytes : a number > 0; refuse a model whose float32 FFN
        weights exceed this many bytes (default 4 GiB) - a full-size preset needs hundreds of
        GB; scale it first.

    Raises TypeError (not a ModelConfig, a seed that is not an int, max_bytes not a number) or
    ValueError (a seed out of range, max_bytes <= 0, too large).
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a moelab.ModelConfig, got {type(cfg).__name__}")
    seed = checked_seed(seed)
    if not is_real(max_bytes):
        raise TypeError(f"max_bytes must be a number, got {type(max_bytes).__name__} "
                        f"{max_bytes!r}")
    if not max_bytes > 0:
        raise ValueError(f"max_bytes must be > 0, got {max_bytes!r}")
    need = 4 * _allocated_params(cfg)
    if need > max_bytes:
        raise ValueError(
            f"build({cfg.display_name!r}): its FFN weights need {need / 2**30:,.2f} GiB in "
            f"float32 ({need:,} bytes), above the limit max_bytes={max_bytes:,}; build a toy "
            "with cfg.scaled() or raise max_bytes")
    blocks = []
    base = seed * 1_000_003
    for i, kind in enumerate(cfg.ffn_kinds):
        moe = mlp = None
        if kind == "moe":
            moe = MoELayer(cfg.moe, seed=(base + 2 * i) % SEED_LIMIT)
        if kind == "dense" or cfg.residual_moe:
            mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, activation=cfg.hidden_act,
                           seed=(base + 2 * i + 1) % SEED_LIMIT)
        blocks.append(DecoderBlock(i, kind, cfg.hidden_size, cfg.norm_placement,
                                   cfg.rms_norm_eps, moe=moe, mlp=mlp,
                                   residual_moe=cfg.residual_moe and kind == "moe"))
    return MoEModel(cfg, blocks, seed)
