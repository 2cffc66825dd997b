"""The single C++ ops of a layer, callable on their own (each has a twin in moelab.reference)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import _core
from ._convert import as_float32_array, is_torch_tensor, torch_to_numpy
from .config import ACTIVATIONS, MoEConfig
from .layer import core_spec

__all__ = ["route", "activation", "linear", "rms_norm", "embedding", "logit_softcap"]


def _as_weight(weight, name: str) -> np.ndarray:
    """A uint16 array (bfloat16 bits) as it is (C-contiguous), anything else as float32."""
    if isinstance(weight, np.ndarray) and weight.dtype == np.uint16:
        return np.ascontiguousarray(weight)  # bfloat16 bits, read in place by the kernels
    return as_float32_array(weight, name)


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
    weight = _as_weight(weight, "weight")
    if bias is not None:
        bias = as_float32_array(bias, "bias")
    return _core.linear(x, weight, bias)


NORM_MATHS = ("float32", "double")


def rms_norm(x, weight, eps: float, offset: float = 0.0, math: str = "float32") -> np.ndarray:
    """RMSNorm over the last axis: ``y = x / sqrt(mean(x^2) + eps) * (offset + weight)``.

    x : (T, H) float array-like, converted to float32 once.
    weight : (H,), float32 (another real dtype is converted once), or a uint16 array holding
        bfloat16 bit patterns, read in place.
    eps : float >= 0. offset : 0 (Llama, Qwen: ``x/rms * w``) or 1 (Gemma: ``x/rms * (1 + w)``).
    math : "float32" follows transformers' Qwen3RMSNorm / Gemma3RMSNorm step by step in float32
        (the mean of squares rounded to float32, then rsqrt, x * r, times the weight);
        "double" computes the row in double and rounds once.
    Returns ``y : (T, H) float32``, bitwise identical for any thread count.

    Raises ``TypeError`` for non-numeric input, ``ValueError`` for wrong shapes (naming the
    argument and both shapes), a NaN or Inf, a negative eps, an offset other than 0 or 1, or an
    unknown math.
    """
    if math not in NORM_MATHS:
        raise ValueError(f"math must be one of {NORM_MATHS}, got {math!r}")
    return _core.rms_norm(as_float32_array(x, "x"), _as_weight(weight, "weight"), float(eps),
                          float(offset), math)


def embedding(ids, table, scale: Optional[float] = None, *, checked: bool = False) -> np.ndarray:
    """The token embedding: rows ``table[ids]`` as float32 ``(T, H)``.

    ids : (T,) integers (a list, a NumPy or torch integer array), each in [0, V).
    table : (V, H), float32 (another real dtype is converted once), or a uint16 array holding
        bfloat16 bit patterns, read in place.
    scale : None, or the factor Gemma multiplies embeddings by (sqrt(H)), applied as
        transformers applies it: rounded to the table's dtype and multiplied in it (a bfloat16
        table gives bfloat16 values).
    checked : False: the table's values are scanned for NaN/Inf on every call. True: the caller
        has checked them once and keeps them unchanged (DecoderModel, whose tables are
        read-only), so a decode step does not re-read a (V, H) table it reads one row of.
    Bitwise identical for any thread count.

    Raises ``TypeError`` for ids that are not integers, ``ValueError`` for ids that are not 1-D
    or a bad table, ``IndexError`` naming ``ids``, the id and V for an id out of range.
    """
    if is_torch_tensor(ids):
        ids = torch_to_numpy(ids)
    arr = np.asarray(ids)
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)  # an empty list reads as float64
    if arr.dtype.kind not in "iu":
        raise TypeError(f"ids: expected integers, got an array of dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"ids: expected (T,), got shape {arr.shape}")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise IndexError(f"ids: id {arr.max()} is out of range for a table of V={np.shape(table)[0]} rows")
    ids64 = np.ascontiguousarray(arr, dtype=np.int64)
    if scale is not None:
        scale = float(scale)
    return _core.embedding(ids64, _as_weight(table, "table"), scale, checked=bool(checked))


def logit_softcap(logits, cap: float) -> np.ndarray:
    """Soft-capping ``cap * tanh(logits / cap)`` in float32, as transformers writes it (Gemma
    2/3's ``final_logit_softcapping``); twin: ``moelab.reference.softcap``.

    logits : float array-like of any shape; cap : float > 0. Returns float32 of that shape,
    bitwise identical for any thread count. Raises ``ValueError`` for cap <= 0 or a NaN/Inf.
    """
    return _core.logit_softcap(as_float32_array(logits, "logits"), float(cap))
