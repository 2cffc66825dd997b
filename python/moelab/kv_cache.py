"""KVCache: one sequence's keys and values for one ``moelab.Attention`` layer."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ._core_cache import CoreCache

__all__ = ["KVCache"]


class KVCache(CoreCache):
    """The keys (after q/k-norm and RoPE) and values one ``Attention`` layer has seen.

    Make it with ``layer.new_cache()``; only that layer accepts it (another layer's cache raises
    ``ValueError``). The next token is at position ``length``. A full-attention layer keeps every
    token; a sliding-window or chunked layer keeps only its last ``window`` tokens (a ring
    buffer), all its mask can reach. A forward that raises leaves the cache unchanged.

    Attributes
    ----------
    length : tokens seen since it was made (or reset).
    tokens_held : min(length, window) for a sliding or chunked layer, else length.
    nbytes : bytes of keys and values held, ``tokens_held * 2 * n_kv * d * 4`` (float32).
    window : the ring's size, or None when every token is kept.
    """

    __slots__ = ()

    @property
    def tokens_held(self) -> int:
        return int(self._core.tokens_held)

    @property
    def window(self):
        w = int(self._core.window)
        return w or None

    def read(self) -> Tuple[np.ndarray, np.ndarray]:
        """Copies of (keys, values), each (tokens_held, n_kv * d) float32, oldest token first."""
        return self._core.read()

    def __repr__(self) -> str:
        window = "" if self.window is None else f", window={self.window}"
        return f"KVCache(length={self.length}{window}, nbytes={self.nbytes:,})"
