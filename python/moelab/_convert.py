"""Conversion of user array-likes to the strict float32 C-contiguous arrays the core takes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["as_float32_array", "as_int_array", "as_load_weights", "is_torch_tensor", "torch_to_numpy"]


def is_torch_tensor(value) -> bool:
    """True for a torch tensor, told by its type's module (torch is never imported here)."""
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def torch_to_numpy(tensor) -> np.ndarray:
    """A torch tensor's values as a NumPy array on the CPU; bfloat16 (which NumPy lacks) becomes
    float32, exactly. May share memory with the tensor."""
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        tensor = tensor.float()
    return tensor.numpy()


def _as_numpy(value, name: str, what: str) -> np.ndarray:
    """``value`` (a torch tensor or any array-like) as a NumPy array; TypeError naming ``name``
    when it cannot be read as an array of ``what``."""
    if is_torch_tensor(value):
        value = torch_to_numpy(value)
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: cannot be read as an array of {what} ({exc})") from None


def as_float32_array(value, name: str) -> np.ndarray:
    """``value`` as a float32 C-contiguous ndarray, converted once (no copy if it already is).

    Raises ``TypeError`` naming ``name`` when the data is not real numbers (strings, objects,
    booleans, complex), ``ValueError`` when a finite value is too large for float32 (float64
    input beyond +-3.4e38). NaN, Inf and shapes are checked by the C++ core.
    """
    arr = _as_numpy(value, name, "numbers")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected real numbers, got an array of dtype {arr.dtype}")
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= 4:  # every value fits float32's range
        return np.asarray(arr, dtype=np.float32, order="C")  # keeps a 0-d shape; no copy if right
    with np.errstate(over="ignore"):
        out = np.asarray(arr, dtype=np.float32, order="C")
    overflow = np.isinf(out) & np.isfinite(arr)
    if overflow.any():
        i = int(np.flatnonzero(overflow)[0])
        raise ValueError(f"{name}: overflows float32 (first at flat index {i}: "
                         f"{arr.reshape(-1)[i]!r}; float32 holds magnitudes up to "
                         f"{float(np.finfo(np.float32).max):.4g})")
    return out


def as_int_array(value, name: str, dtype) -> np.ndarray:
    """``value`` as a C-contiguous ndarray of the integer ``dtype`` (np.int32 or np.int64),
    converted once (no copy if it already is).

    Raises ``TypeError`` naming ``name`` when the data is not integers (floats, booleans,
    strings), ``ValueError`` when a value does not fit ``dtype``. Shapes and ranges are checked
    by the C++ core.
    """
    arr = _as_numpy(value, name, "integers")
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):  # [] is float
        raise TypeError(f"{name}: expected integers, got an array of dtype {arr.dtype}")
    limits = np.iinfo(dtype)
    if arr.size and (arr.min() < limits.min or arr.max() > limits.max):
        raise ValueError(f"{name}: values must fit {np.dtype(dtype).name}, got "
                         f"[{arr.min()}, {arr.max()}]")
    return np.asarray(arr, dtype=dtype, order="C")


def _load_array(value, name: str) -> np.ndarray:
    """An array for the core's load: a NumPy uint16 array (bfloat16 bits) as it is, made
    C-contiguous; anything else as :func:`as_float32_array` makes it (no copy if it already is
    float32 C-contiguous)."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint16:
        return np.ascontiguousarray(value)
    return as_float32_array(value, name)


def _is_parts(value) -> bool:
    """A list or tuple of 2-D NumPy arrays or torch tensors (or None: an expert the layer does
    not hold): a weight given as its parts (its blocks of rows)."""
    return (isinstance(value, (list, tuple)) and len(value) > 0 and
            all(v is None or ((isinstance(v, np.ndarray) or is_torch_tensor(v)) and v.ndim == 2)
                for v in value))


def as_load_weights(weights) -> dict:
    """A mapping of weight name -> array-like (or list of arrays: the weight's parts) as a dict
    of what the core's ``load_weights`` takes: float32 C-contiguous arrays (converted once when
    they are not), or uint16 arrays of bfloat16 bits as given; lists of them for parts.

    Raises ``TypeError`` for something that is not a mapping, a name that is not a str, or an
    array that is not real numbers. Names, shapes and parts are checked by the C++ core.
    """
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping of name -> array, got {type(weights).__name__}")
    out = {}
    for name, value in weights.items():
        if not isinstance(name, str):
            raise TypeError(f"weight names must be str, got {type(name).__name__} {name!r}")
        if _is_parts(value):
            out[name] = [None if v is None else _load_array(v, f"{name}[{i}]")
                         for i, v in enumerate(value)]
        else:
            out[name] = _load_array(value, name)
    return out
