"""MoELayer: the Python face of one C++ MoE layer (NumPy in, NumPy out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple, Union

import numpy as np

from . import _core
from ._convert import as_float32_array, as_int_array
from ._core_weights import CoreWeights, seed_or_no_init
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
    aux_loss : the layer's load-balancing loss as its router family defines it, with f from
        the pairs kept (after groups, correction bias and capacity), kept_e =
        tokens_per_expert[e]: "softmax", "topk_softmax" and "llama4" (moelab's choice;
        transformers' Llama 4 has none): E * sum_e (kept_e / T) * mean_t softmax(logits)_e,
        transformers' ``load_balancing_loss_func`` for one layer; "sigmoid": DeepSeek-V3's
        sequence-wise balance loss without alpha, sum_e (E kept_e / (k T)) *
        mean_t (s_te / sum_j s_tj), s = sigmoid(logits). 0.0 when T = 0.
    z_loss : mean_t logsumexp_e(router_logits)^2; 0.0 when T = 0.
    dropped : (token, slot) pairs dropped by capacity (0 when dropless).
    phase_seconds : wall-clock seconds of this forward's phases: "route" (logits, selection),
        "dispatch" (counting sort, gather), "pack" (token panels, AVX-512 and AVX2), "gate_up",
        "down", "combine" (combine and statistics). For profiling; never compared in tests.
    comm : the communication of an expert-parallel call (``moelab.expert_parallel.CommStats``;
        None for a single-process layer). Not compared.
    """

    topk_ids: np.ndarray
    topk_weights: np.ndarray
    router_logits: np.ndarray
    tokens_per_expert: np.ndarray
    aux_loss: float
    z_loss: float
    dropped: int
    phase_seconds: dict = field(default_factory=dict, compare=False)
    comm: object = field(default=None, compare=False)

    def __repr__(self) -> str:
        T, k = self.topk_ids.shape
        return (f"RoutingStats(T={T}, k={k}, E={self.tokens_per_expert.shape[0]}, "
                f"aux_loss={self.aux_loss:.4f}, z_loss={self.z_loss:.4f}, dropped={self.dropped})")


def core_spec(cfg: MoEConfig) -> "_core.MoESpec":
    """The C++ description of a layer, built from a validated MoEConfig (the same fields)."""
    if not isinstance(cfg, MoEConfig):
        raise TypeError(f"config must be a moelab.MoEConfig, got {type(cfg).__name__}")
    return cfg.core_spec()


class MoELayer(CoreWeights):
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

    ``weights`` and ``load_weights`` use the canonical names and shapes of
    ``config.weight_shapes()`` (docs/semantics.md, "Weights").

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
        seed = seed_or_no_init(seed)
        self._check_weight_dtype(weight_dtype)
        self._config = config
        self._attach(_core.MoELayer(core_spec(config), weight_dtype), seed)

    @property
    def config(self) -> MoEConfig:
        return self._config

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

    # ---- The steps of forward, one by one (expert parallelism runs them apart) -----------
    # Each calls the very C++ functions ``forward`` runs, so composing them on one process
    # gives forward's bits: route -> dispatch -> expert_inputs -> run_experts -> combine
    # (docs/expert_parallel.md). R: rows of the routed experts.

    def _tokens(self, x) -> np.ndarray:
        """x (T, H) as float32; TypeError / ValueError naming x otherwise."""
        return self._checked_tokens(x, self._config.hidden_size)

    def route(self, x) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """forward's step 1. x : (T, H) float -> (logits (T, E) float32, ids (T, k) int32,
        weights (T, k) float32): ``RoutingStats``' router_logits, topk_ids, and the weights
        before any capacity drop. Raises ValueError for a NaN or Inf in x."""
        return self._core.route(self._tokens(x))

    def dispatch(self, ids) -> Tuple[np.ndarray, np.ndarray, int]:
        """forward's counting sort of the (token, slot) pairs of ids (T, k) int by expert, with
        the capacity of T tokens -> (row_of_pair (T*k,) int64: the pair's row in that order, rows
        of expert e contiguous, in token then slot order; -1 for a pair dropped by capacity;
        tokens_per_expert (E,) int64; dropped int). Raises ValueError for an id outside [0, E)."""
        row_of_pair, tokens, dropped = self._core.dispatch(as_int_array(ids, "ids", np.int32))
        return row_of_pair, tokens, int(dropped)

    def expert_inputs(self, x, tokens, weights=None) -> np.ndarray:
        """The rows (R, H) float32 the routed experts read: x (T, H)[tokens (R,) int], times
        weights (R,) (the pairs' routing weights) for scoring "llama4", which scales the experts'
        inputs (weights required then, ignored otherwise). Raises ValueError for a token outside
        [0, T)."""
        x = self._tokens(x)
        tokens = as_int_array(tokens, "tokens", np.int64)
        if weights is not None:
            weights = as_float32_array(weights, "weights")
        return self._core.expert_inputs(x, tokens, weights)

    def run_experts(self, rows, experts, counts) -> np.ndarray:
        """The routed experts: rows (R, H) float in n runs, run i of counts[i] rows (n,) int for
        expert experts[i] (n,) int, strictly increasing -> their outputs (R, H) float32. An
        expert's rows must all come in its one run: its kernel path depends on its row count.
        Raises ValueError for an expert the layer does not hold (``held_experts``), counts that
        do not sum to R."""
        rows = as_float32_array(rows, "rows")
        experts = as_int_array(experts, "experts", np.int32)
        counts = as_int_array(counts, "counts", np.int64)
        return self._core.run_experts(rows, experts, counts)

    def combine(self, x, weights, row_of_pair, expert_output) -> np.ndarray:
        """y (T, H) float32 = per token, in slot order, its kept rows of expert_output (R, H)
        (row_of_pair (T*k,) int, -1 for none) times weights (T, k) (not for "llama4"), plus
        the shared experts on x (T, H) (times their gate)."""
        x = self._tokens(x)
        weights = as_float32_array(weights, "weights")
        row_of_pair = as_int_array(row_of_pair, "row_of_pair", np.int64)
        expert_output = as_float32_array(expert_output, "expert_output")
        return self._core.combine(x, weights, row_of_pair, expert_output)

    def routing_losses(self, logits, tokens_per_expert) -> Tuple[float, float]:
        """(aux_loss, z_loss) of logits (T, E) and tokens_per_expert (E,), as ``RoutingStats``
        defines them."""
        logits = as_float32_array(logits, "logits")
        tokens = as_int_array(tokens_per_expert, "tokens_per_expert", np.int64)
        aux, z = self._core.routing_losses(logits, tokens)
        return float(aux), float(z)

    @property
    def held_experts(self) -> np.ndarray:
        """(E,) bool: the routed experts whose weights the layer holds. All for a layer made
        with a seed; a layer loaded in part (``load_weights`` with None for an expert's parts,
        for expert parallelism) holds some, and its ``forward`` raises ValueError naming the
        others."""
        return self._core.held_experts

    def __repr__(self) -> str:
        c = self._config
        shared = f", shared={c.shared_width}" if c.shared_width else ""
        dtype = "" if self.weight_dtype == "float32" else f", weight_dtype={self.weight_dtype!r}"
        return (f"MoELayer(H={c.hidden_size}, E={c.num_experts}, k={c.num_experts_per_tok}, "
                f"I={c.moe_intermediate_size}, scoring={c.scoring!r}, "
                f"activation={c.activation!r}{shared}, params={c.num_params:,}{dtype})")
