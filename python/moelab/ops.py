"""The single C++ ops of a layer, callable on their own (each has a twin in moelab.reference)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import _core
from ._convert import as_float32_array
from .config import ACTIVATIONS, MoEConfig
from .layer import core_spec

__all__ = ["route", "activation", "linear"]


def route(logits, config: MoEConfig, correction_bias=None) -> Tuple[np.ndarray, np.ndarray]:
    """Select experts and their weights from router logits (docs/semantics.md, "Routers").

    logits : (T, E) float, already soft-capped and with any router bias added.
    correction_bias : (E,) float, the selection-only bias of the "sigmoid" router, or None.
    Returns ``ids (T, k) int32`` sorted by weight descending (ties towards the lower id) and
    ``weights (T, k) float32``, the weights the layer applies.

    Raises ``ValueError`` on a wrong shape or NaN, ``TypeError`` on non-numeric input. Unlike
    ``MoELayer`` inputs, logits may hold -inf (an expert that can never be chosen).
    """
    logits = as_float32_array(logits, "logits")
    bias: Optional[np.ndarray] = None
    if correction_bias is not None:
        bias = as_float32_array(correction_bias, "correction_bias")
    return _core.route(logits, core_spec(config), bias)


def activation(kind: str, gate, up) -> np.ndarray:
    """The gated activation ``act(gate) * up`` of the experts; gate, up : (N, I) -> (N, I)."""
    if kind not in ACTIVATIONS:
        raise ValueError(f"kind must be one of {ACTIVATIONS}, got {kind!r}")
    return _core.activation(kind, as_float32_array(gate, "gate"), as_float32_array(up, "up"))


def linear(x, weight, bias=None) -> np.ndarray:
    """The dense projection ``y = x W^T (+ bias)`` of attention, DeltaNet and the LM head.

    x : (T, K) float array-like, converted to float32 once (T may be 0).
    weight : (N, K), float32 (another real dtype is converted once), or a uint16 array holding
        bfloat16 bit patterns (a bfloat16 checkpoint tensor as stored), which the bfloat16
        kernels read in place; math is float32 either way.
    bias : (N,) float array-like or None.
    Returns ``y : (T, N) float32``, bitwise identical for any thread count.

    Raises ``TypeError`` for non-numeric input, ``ValueError`` for wrong shapes (the message
    names the argument and both shapes) or a NaN or Inf in x, weight or bias (all are checked
    on every call).
    """
    x = as_float32_array(x, "x")
    if isinstance(weight, np.ndarray) and weight.dtype == np.uint16:
        weight = np.ascontiguousarray(weight)  # bfloat16 bits, as they are
    else:
        weight = as_float32_array(weight, "weight")
    if bias is not None:
        bias = as_float32_array(bias, "bias")
    return _core.linear(x, weight, bias)
