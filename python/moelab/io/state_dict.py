"""A state dict (tensor name -> NumPy array or torch tensor) read like a checkpoint.

``StateDict`` is a :class:`moelab.io.TensorSource` like a checkpoint: ``names``, ``info``
(the dtype as a safetensors dtype string for the float types), ``read_float32``. torch is never
imported: a torch tensor is told by its type.
"""

from __future__ import annotations

from typing import List, Mapping

import numpy as np

from .._convert import is_torch_tensor, torch_to_numpy
from .source import TensorInfo, TensorSource

__all__ = ["StateDict"]

_TORCH_DTYPES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16",
                 "torch.float64": "F64"}
_NUMPY_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


class StateDict(TensorSource):
    """Names -> NumPy arrays or torch tensors. Raises TypeError for a key that is not a str."""

    def __init__(self, state: Mapping):
        for name in state:
            if not isinstance(name, str):
                raise TypeError(f"state dict keys must be str, got {type(name).__name__} "
                                f"{name!r}")
        self._state = state

    def names(self) -> List[str]:
        return list(self._state.keys())

    def __contains__(self, name) -> bool:
        return name in self._state

    def _value(self, name: str):
        value = self._state[name]
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(f"{name}: expected a NumPy array or a torch tensor, got "
                            f"{type(value).__name__}")
        return value

    def info(self, name: str) -> TensorInfo:
        """The dtype as a safetensors dtype string for the float types ("F32", "BF16", ...),
        else NumPy's or torch's own name ("int8", "torch.int8"); the shape."""
        value = self._value(name)
        key = str(value.dtype)
        if is_torch_tensor(value):
            dtype = _TORCH_DTYPES.get(key, key)
        else:
            dtype = _NUMPY_DTYPES.get(np.dtype(value.dtype).name, key)
        return TensorInfo(dtype, tuple(int(d) for d in value.shape))

    def read_float32(self, name: str) -> np.ndarray:
        """The tensor as a new C-contiguous float32 array (never a view of the state dict)."""
        value = self._value(name)
        if is_torch_tensor(value):
            value = torch_to_numpy(value)
        return np.array(value, dtype=np.float32, order="C", copy=True)

    def __repr__(self) -> str:
        return f"StateDict(tensors={len(self._state)})"
