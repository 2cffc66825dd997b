"""``TensorSource``: what every tensor reader of ``moelab.io`` answers, whatever holds the data."""

from __future__ import annotations

from typing import List, NamedTuple, Tuple

import numpy as np

__all__ = ["TensorInfo", "TensorSource"]


class TensorInfo(NamedTuple):
    """dtype (a safetensors dtype string: "F32", "BF16", ...) and shape of a stored tensor."""

    dtype: str
    shape: Tuple[int, ...]


class TensorSource:
    """Named tensors: ``names()``, ``info(name)`` (so ``dtype`` and ``shape``) without reading
    any data, and ``read_float32(name)``, a new float32 array. A context manager: ``close()``
    (or leaving the ``with`` block) releases what the source holds."""

    def names(self) -> List[str]:
        raise NotImplementedError

    def info(self, name: str) -> TensorInfo:
        raise NotImplementedError

    def read_float32(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def dtype(self, name: str) -> str:
        """The stored dtype ("F32", "BF16", "F8_E4M3", ...)."""
        return self.info(name).dtype

    def shape(self, name: str) -> Tuple[int, ...]:
        return self.info(name).shape

    def close(self) -> None:
        """Release what the source holds (nothing, unless a subclass says otherwise)."""

    def release_pages(self) -> None:
        """Unmap from this process the pages of mapped files read so far (nothing, unless a
        subclass maps files)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
