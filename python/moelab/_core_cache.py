"""CoreCache: the face that every Python wrapper of one sequence's C++ cache or state shares
(KVCache, MLACache, DeltaNetState): its length, its bytes, and a reset."""

from __future__ import annotations

__all__ = ["CoreCache"]


class CoreCache:
    """A base for the classes that wrap one sequence's C++ cache or state (``self._core``)."""

    __slots__ = ("_core",)

    def __init__(self, core_cache):
        self._core = core_cache

    @property
    def length(self) -> int:
        """Tokens seen since it was made (or reset)."""
        return int(self._core.length)

    @property
    def nbytes(self) -> int:
        """Bytes it holds (float32)."""
        return int(self._core.nbytes)

    def reset(self) -> None:
        """Back to an empty sequence (length 0)."""
        self._core.reset()
