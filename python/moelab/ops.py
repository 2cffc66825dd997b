"""The single C++ ops of a layer, callable on their own (each has a twin in moelab.reference)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import _core
from ._convert import as_float32_array
from .config import ACTIVATIONS, MoEConfig
from .layer import core_spec

__all__ = ["route", "activation"]


def route(logits, config: MoEConfig, correction_bias=None) -> Tuple[np.ndarray, np.ndarray]:
    """Select experts and their weights from router logits (DESIGN.md §3).

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
