"""GatedMLP: a dense gated FFN in the C++ core, y = down( act(gate x) * up x )."""

from __future__ import annotations

import numpy as np

from . import _core, params
from ._checks import is_int
from ._convert import as_float32_array
from ._core_weights import CoreWeights, seed_or_no_init
from .config import ACTIVATIONS

__all__ = ["GatedMLP"]


def _from_core(name: str, doc: str) -> property:
    """A read-only property that asks the C++ object."""
    return property(lambda self: getattr(self._core, name), doc=doc)


class GatedMLP(CoreWeights):
    """A dense gated FFN with the layout of one expert (dense layers, Grok-2's residual MLP).

    Parameters
    ----------
    hidden_size : H.  intermediate_size : I.
    activation : "silu" | "gelu" | "gelu_tanh" | "relu" | "swiglu_oai".
    seed : int in [0, 2**64): deterministic uniform init in ±1/sqrt(fan_in).
    weight_dtype : "float32" or "bfloat16" (storage of both matrices; math in float32).

    Weights: ``gate_up_proj (2I, H)`` (gate rows first), ``down_proj (H, I)``.
    ``mlp(x)`` takes x : (T, H) or (B, S, H) and returns float32 of the same shape; it raises
    ``TypeError`` for non-numeric x and ``ValueError`` for a wrong shape, NaN or Inf.
    """

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "silu",
                 seed: int = 0, weight_dtype: str = "float32"):
        for name, v in (("hidden_size", hidden_size), ("intermediate_size", intermediate_size)):
            if not is_int(v):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        seed = seed_or_no_init(seed)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self._check_weight_dtype(weight_dtype)
        self._attach(_core.GatedMLP(int(hidden_size), int(intermediate_size), activation,
                                    weight_dtype), seed)

    hidden_size = _from_core("hidden_size", "H (int).")
    intermediate_size = _from_core("intermediate_size", "I (int).")
    activation = _from_core("activation", "The gated activation (str).")

    @property
    def num_params(self) -> int:
        return params.gated_mlp(self.hidden_size, self.intermediate_size).total

    def __call__(self, x) -> np.ndarray:
        x = as_float32_array(x, "x")
        H = self.hidden_size
        if x.ndim not in (2, 3) or x.shape[-1] != H:
            expected = f"(B, S, H={H})" if x.ndim == 3 else f"(T, H={H})"
            raise ValueError(f"x: expected {expected}, got {x.shape}")
        y = self._core.forward(x.reshape(-1, H))  # (T, H)
        return y.reshape(x.shape)

    def __repr__(self) -> str:
        return (f"GatedMLP(H={self.hidden_size}, I={self.intermediate_size}, "
                f"activation={self.activation!r})")
