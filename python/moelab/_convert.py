"""Conversion of user array-likes to the strict float32 C-contiguous arrays the core takes."""

from __future__ import annotations

import numpy as np

__all__ = ["as_float32_array"]


def as_float32_array(value, name: str) -> np.ndarray:
    """``value`` as a float32 C-contiguous ndarray, converted once (no copy if it already is).

    Raises ``TypeError`` naming ``name`` when the data is not real numbers (strings, objects,
    booleans, complex). NaN, Inf and shapes are checked by the C++ core.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: cannot be read as an array of numbers ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected real numbers, got an array of dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float32, order="C")  # keeps a 0-d shape, no copy if already right
