"""CoreWeights: the weights face that every Python layer over a C++ layer shares (MoELayer,
GatedMLP, GatedDeltaNet, Attention, MultiHeadLatentAttention): random init, storage dtype, views
of the weights, all-or-nothing loads, and the argument checks of a token mixer's forward.
"""

from __future__ import annotations

import threading
from typing import Mapping

import numpy as np

from ._checks import checked_seed
from ._convert import as_float32_array, as_float32_weights

__all__ = ["CoreWeights", "WEIGHT_DTYPES"]

#: How a layer may store its large matrices (the math is float32 either way).
WEIGHT_DTYPES = ("float32", "bfloat16")


class CoreWeights:
    """A base for the classes that wrap a C++ layer (``self._core``) holding named weights."""

    @staticmethod
    def _check_weight_dtype(weight_dtype: str) -> None:
        if weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weight_dtype must be 'float32' or 'bfloat16', got {weight_dtype!r}")

    def _init_from_spec(self, spec, spec_type: type, core_type, seed, weight_dtype: str,
                        weights) -> None:
        """Check the arguments of a layer made from a spec (Attention, MultiHeadLatentAttention;
        the seed by checked_seed, as every layer's), make its C++ layer
        ``core_type(spec.to_core(), weight_dtype)`` with the random init of ``seed``, then load
        ``weights`` strictly when given."""
        if not isinstance(spec, spec_type):
            raise TypeError(f"spec must be a moelab.{spec_type.__name__}, got "
                            f"{type(spec).__name__}")
        seed = checked_seed(seed)
        self._check_weight_dtype(weight_dtype)
        self._spec = spec
        self._attach(core_type(spec.to_core(), weight_dtype), seed)
        if weights is not None:
            self.load_weights(weights)

    @staticmethod
    def _check_sequence(value, name: str, kind: type):
        """``value._core`` (the C++ cache or state) of a ``kind`` or None; TypeError naming
        ``name`` for anything else."""
        if value is None:
            return None
        if not isinstance(value, kind):
            raise TypeError(f"{name}: expected a moelab.{kind.__name__} or None, got "
                            f"{type(value).__name__}")
        return value._core

    @staticmethod
    def _checked_tokens(x, hidden_size: int) -> np.ndarray:
        """x (T, hidden_size) as float32; TypeError / ValueError naming x otherwise."""
        x = as_float32_array(x, "x")
        if x.ndim != 2 or x.shape[1] != hidden_size:
            raise ValueError(f"x: expected (T, H={hidden_size}), got {x.shape}")
        return x

    def _forward_sequence(self, x, sequence, name: str, kind: type, *options) -> np.ndarray:
        """A token mixer's forward: y (T, H) float32 from the C++ layer for x (T, H),
        continuing ``sequence`` (a ``kind`` or None, the argument ``name``d in errors), after
        the checks of ``_check_sequence`` and ``_checked_tokens``, in that order."""
        core_sequence = self._check_sequence(sequence, name, kind)
        x = self._checked_tokens(x, self._core.spec.hidden_size)
        return self._core.forward(x, core_sequence, *options)

    def _dtype_repr(self) -> str:
        """", weight_dtype='bfloat16'" for a bf16 layer, "" for float32 (a repr's tail)."""
        return "" if self.weight_dtype == "float32" else f", weight_dtype={self.weight_dtype!r}"

    def _attach(self, core, seed: int) -> None:
        """Hold ``core`` (a new C++ layer) and fill it with the random init of ``seed``."""
        self._core = core
        self._core.init_random(int(seed))
        self._load_lock = threading.Lock()

    @property
    def weight_dtype(self) -> str:
        """"float32" or "bfloat16": how the large matrices are stored."""
        return self._core.weight_dtype

    @property
    def num_params(self) -> int:
        """Parameters of the layer (every weight's element count)."""
        return int(sum(w.size for w in self.weights.values()))

    @property
    def weights(self) -> dict:
        """name -> float32 NumPy view into the layer (not a copy: writing into it changes the
        layer). With ``weight_dtype="bfloat16"`` the matrices stored as bfloat16 come back as
        read-only float32 copies of the stored values (NumPy has no bfloat16; use
        ``load_weights``)."""
        return {name: self._core.weight(name) for name in self._core.weight_names()}

    def load_weights(self, weights: Mapping[str, object], strict: bool = True) -> None:
        """Copy weights into the layer, all or nothing.

        weights : mapping of weight name to an array-like of its shape; any real dtype is
            converted to float32 once.
        strict : every weight of the layer must be given (``False``: a subset may be given).

        Raises ``TypeError`` (not a mapping, a non-numeric array), ``ValueError`` (an unknown or
        missing name, a wrong shape, a NaN or Inf; the message names the tensor and both shapes).
        Every array is checked before anything changes, so a failed load leaves the layer
        exactly as it was; a load waits for running forwards.
        """
        converted = as_float32_weights(weights)
        with self._load_lock:
            self._core.load_weights(converted, bool(strict))
