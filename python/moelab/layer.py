"""MoELayer: the Python face of one C++ MoE layer (NumPy in, NumPy out)."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Mapping, Tuple, Union

import numpy as np

from . import _core
from ._checks import checked_seed
from ._convert import as_float32_array, as_float32_weights
from .config import MoEConfig

__all__ = ["MoELayer", "RoutingStats", "core_spec"]


@dataclass(frozen=True)
class RoutingStats:
    """What the router did in one forward pass over T tokens (docs/semantics.md, "Statistics").

    topk_ids : (T, k) int32, per token sorted by weight descending, ties towards the lower id.
    topk_weights : (T, k) float32, the weights actually applied (for "llama4" the sigmoid that
        scales the expert's input); a pair dropped by capacity has weight 0.
    router_logits : (T, E) float32, ``W_r x (+ router.bias)``, after any soft-cap; without the
        correction bias.
    tokens_per_expert : (E,) int64, (token, slot) pairs each expert processed (after drops).
    aux_loss : E * sum_e f_e * P_e on softmax(router_logits), HF ``load_balancing_loss_func``
        for one layer; 0.0 when T = 0.
    z_loss : mean_t logsumexp_e(router_logits)^2; 0.0 when T = 0.
    dropped : (token, slot) pairs dropped by capacity (0 when dropless).
    phase_seconds : wall-clock seconds of this forward's phases: "route" (logits, selection),
        "dispatch" (counting sort, gather), "pack" (token panels, AVX-512 path), "gate_up",
        "down", "combine" (combine and statistics). For profiling; never compared in tests.
    """

    topk_ids: np.ndarray
    topk_weights: np.ndarray
    router_logits: np.ndarray
    tokens_per_expert: np.ndarray
    aux_loss: float
    z_loss: float
    dropped: int
    phase_seconds: dict = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        T, k = self.topk_ids.shape
        return (f"RoutingStats(T={T}, k={k}, E={self.tokens_per_expert.shape[0]}, "
                f"aux_loss={self.aux_loss:.4f}, z_loss={self.z_loss:.4f}, dropped={self.dropped})")


def core_spec(cfg: MoEConfig) -> "_core.MoESpec":
    """The C++ description of a layer, built from a validated MoEConfig (the same fields)."""
    if not isinstance(cfg, MoEConfig):
        raise TypeError(f"config must be a moelab.MoEConfig, got {type(cfg).__name__}")
    return _core.MoESpec(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})


class MoELayer:
    """One Mixture-of-Experts FFN layer: router, routed experts, optional shared experts.

    Parameters
    ----------
    config : MoEConfig
    seed : int in [0, 2**64), the seed of the deterministic random initialisation (uniform in
        ±1/sqrt(fan_in), as ``torch.nn.Linear``); the same seed gives the same weights on any
        machine and thread count.
    weight_dtype : "float32" (default) or "bfloat16". With bfloat16 the routed and shared expert
        matrices are stored as bfloat16 (rounded to nearest even on load; half the memory and
        half the bytes streamed per token), while the router, all biases and every sum stay
        float32. ``weights`` then returns read-only float32 copies of the rounded values for
        those matrices (NumPy has no bfloat16), and views for the rest.

    Calling ``layer(x)`` with ``x : (T, H)`` or ``(B, S, H)`` float array-like returns ``y`` of
    the same shape, float32. With ``return_stats=True`` it returns ``(y, RoutingStats)``, whose
    per-token arrays are indexed by the flattened token ``b * S + s``.

    Raises
    ------
    TypeError : config is not a MoEConfig, seed is not an int; x is not a numeric array
        (strings, objects, complex).
    ValueError : seed outside [0, 2**64), an unknown weight_dtype.
    ValueError : x has the wrong number of dimensions or the wrong H, or holds NaN or Inf.

    The layer is safe to share between Python threads: the GIL is released while the C++ core
    runs, forwards run concurrently, and ``load_weights`` waits for running forwards.
    """

    def __init__(self, config: MoEConfig, seed: int = 0, weight_dtype: str = "float32"):
        if not isinstance(config, MoEConfig):
            raise TypeError(f"config must be a moelab.MoEConfig, got {type(config).__name__}")
        seed = checked_seed(seed)
        if weight_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"weight_dtype must be 'float32' or 'bfloat16', got {weight_dtype!r}")
        self._config = config
        self._core = _core.MoELayer(core_spec(config), weight_dtype)
        self._core.init_random(seed)
        self._load_lock = threading.Lock()

    @property
    def config(self) -> MoEConfig:
        return self._config

    @property
    def weight_dtype(self) -> str:
        """"float32" or "bfloat16": how the expert matrices are stored."""
        return self._core.weight_dtype

    @property
    def weights(self) -> dict:
        """The canonical weights as a dict of float32 NumPy views into the layer (not copies).

        Writing into a view changes the layer; the shapes are those of
        ``config.weight_shapes()``. With ``weight_dtype="bfloat16"`` the expert matrices come
        back as read-only float32 copies of the stored bfloat16 values (use ``load_weights``).
        """
        return {name: self._core.weight(name) for name in self._core.weight_names()}

    def load_weights(self, weights: Mapping[str, object], strict: bool = True) -> None:
        """Copy weights into the layer, all or nothing.

        weights : mapping of canonical name (docs/semantics.md, "Weights") to an array-like of
            the documented shape; any real dtype is converted to float32 once.
        strict : every weight of the layer must be given (``False``: a subset may be given).

        Raises ``TypeError`` (not a mapping, a non-numeric array), ``ValueError`` (an unknown or
        missing name, a wrong shape, a NaN or Inf; the message names the tensor and both shapes).
        Every array is checked before anything changes, so a failed load leaves the layer
        exactly as it was.
        """
        converted = as_float32_weights(weights)
        with self._load_lock:
            self._core.load_weights(converted, bool(strict))

    def __call__(self, x, return_stats: bool = False
                 ) -> Union[np.ndarray, Tuple[np.ndarray, RoutingStats]]:
        return self.forward(x, return_stats=return_stats)

    def forward(self, x, return_stats: bool = False
                ) -> Union[np.ndarray, Tuple[np.ndarray, RoutingStats]]:
        """y = MoE(x). x : (T, H) or (B, S, H) -> y of the same shape, float32."""
        x = as_float32_array(x, "x")
        H = self._config.hidden_size
        if x.ndim not in (2, 3):
            raise ValueError(f"x: expected (T, H={H}) or (B, S, H={H}), got {x.shape}")
        if x.shape[-1] != H:
            expected = f"(T, H={H})" if x.ndim == 2 else f"(B, S, H={H})"
            raise ValueError(f"x: expected {expected}, got {x.shape}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim == 3 else x  # (T, H), a view
        y, raw = self._core.forward(x2, bool(return_stats))    # (T, H)
        y = y.reshape(*lead, y.shape[-1])
        if not return_stats:
            return y
        return y, RoutingStats(**raw)

    def __repr__(self) -> str:
        c = self._config
        shared = f", shared={c.shared_width}" if c.shared_width else ""
        dtype = "" if self.weight_dtype == "float32" else f", weight_dtype={self.weight_dtype!r}"
        return (f"MoELayer(H={c.hidden_size}, E={c.num_experts}, k={c.num_experts_per_tok}, "
                f"I={c.moe_intermediate_size}, scoring={c.scoring!r}, "
                f"activation={c.activation!r}{shared}, params={c.num_params:,}{dtype})")
