"""CoreWeights: the weights face that every Python layer over a C++ layer shares (MoELayer,
GatedMLP, GatedDeltaNet, Attention, MultiHeadLatentAttention): random init, storage dtype, views
of the weights, all-or-nothing loads, and the argument checks of a token mixer's forward.
"""

from __future__ import annotations

import threading
from typing import Mapping

import numpy as np

from ._checks import checked_seed
from ._convert import as_float32_array, as_load_weights

__all__ = ["CoreWeights", "WEIGHT_DTYPES", "NO_INIT", "seed_or_no_init"]

#: How a layer may store its large matrices (the math is float32 either way).
WEIGHT_DTYPES = ("float32", "bfloat16")


class _NoInit:
    """The type of :data:`NO_INIT`."""

    def __repr__(self) -> str:
        return "NO_INIT"


#: The seed of a layer made only to be loaded at once (the checkpoint loaders): no random
#: init, so no storage is allocated or filled for weights that will be read in place; its
#: forward raises until ``load_weights`` has given every weight.
NO_INIT = _NoInit()


def seed_or_no_init(seed):
    """``seed`` checked (``checked_seed``), or :data:`NO_INIT` as it is."""
    return seed if seed is NO_INIT else checked_seed(seed)


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
        seed = seed_or_no_init(seed)
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

    def _attach(self, core, seed) -> None:
        """Hold ``core`` (a new C++ layer) and fill it with the random init of ``seed`` (none
        for :data:`NO_INIT`)."""
        self._core = core
        if seed is not NO_INIT:
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

    def weight_shapes(self) -> dict:
        """name -> shape (a tuple) of every weight, as ``load_weights`` takes them."""
        return dict(self._core.weight_shapes())

    @property
    def owned_weight_bytes(self) -> int:
        """Bytes of weight storage the layer holds itself: weights read in place from arrays
        given to ``load_weights`` (a memory-mapped checkpoint) count 0."""
        return int(self._core.owned_weight_bytes)

    @property
    def weights(self) -> dict:
        """name -> float32 NumPy view into the layer (not a copy: writing into it changes the
        layer). A weight the layer reads in place from an array given to ``load_weights`` comes
        back as a read-only view of that array; with ``weight_dtype="bfloat16"`` the matrices
        stored as bfloat16 come back as read-only float32 copies of the stored values (NumPy
        has no bfloat16; use ``load_weights``)."""
        return {name: self._core.weight(name) for name in self._core.weight_names()}

    def load_weights(self, weights: Mapping[str, object], strict: bool = True) -> None:
        """Load weights into the layer, all or nothing.

        weights : mapping of weight name to an array-like of its shape, or to a list of NumPy
            arrays that are its parts (a stack's experts given one by one, as checkpoints store
            them: ``experts.gate_up_proj`` as ``[gate_0, up_0, gate_1, up_1, ...]`` each (I, H),
            ``experts.down_proj`` as ``[down_0, down_1, ...]`` each (H, I); a dense
            ``gate_up_proj`` as ``[gate, up]``). A ``numpy.uint16`` array holds bfloat16 bits
            (as ``moelab.io`` views of a bfloat16 checkpoint are). A MoE layer's routed experts
            may be given in part: None for each part of an expert the layer is not to hold
            (its gate, up and down together; for expert parallelism); only the experts given
            take memory, and ``held_experts`` says which.
        strict : every weight of the layer must be given (``False``: a subset may be given).

        A read-only array (a view of a memory-mapped checkpoint, ``moelab.io``) that already is
        what the layer stores (C-contiguous, of the layer's dtype for that weight: float32, or
        uint16 bfloat16 bits with ``weight_dtype="bfloat16"``, aligned to its element size) is
        read in place, not copied: the layer keeps it alive, and its weight view is read-only.
        Any other array-like (a writable array, which its holder could change after the load's
        checks; another dtype or layout) is converted once (to float32, then to the layer's
        dtype) into storage of the layer's own.

        Raises ``TypeError`` (not a mapping, a non-numeric array), ``ValueError`` (an unknown or
        missing name, a wrong shape or number of parts, a NaN or Inf; the message names the
        tensor and both shapes). Every array is checked before anything changes, so a failed
        load leaves the layer exactly as it was; a load waits for running forwards.
        """
        arrays = as_load_weights(weights)
        with self._load_lock:
            self._core.load_weights(arrays, bool(strict), borrow=True)
