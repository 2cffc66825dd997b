"""MLACache: one sequence's compressed cache for one multi-head latent attention layer."""

from __future__ import annotations

import numpy as np

from ._core_cache import CoreCache

__all__ = ["MLACache"]


class MLACache(CoreCache):
    """The latent rows one ``MultiHeadLatentAttention`` layer has seen: per token the
    normalised latent c (kv_lora_rank) and the roped shared key k_r (qk_rope_head_dim), never
    per-head keys or values.

    Make it with ``layer.new_cache()``; only that layer accepts it (another layer's cache raises
    ``ValueError``). The next token is at position ``length``. A forward that raises leaves the
    cache unchanged.

    Attributes
    ----------
    length : tokens seen since it was made (or reset).
    nbytes : ``length * (kv_lora_rank + qk_rope_head_dim) * 4`` (float32), what
        ``moelab.costs`` counts as an MLA layer's KV bytes.
    row_dim : kv_lora_rank + qk_rope_head_dim.
    """

    __slots__ = ()

    @property
    def tokens_held(self) -> int:
        return self.length

    @property
    def row_dim(self) -> int:
        return int(self._core.row_dim)

    def read(self) -> np.ndarray:
        """A copy of the rows [c | k_r], (length, kv_lora_rank + qk_rope_head_dim) float32,
        oldest token first."""
        return self._core.read()

    def __repr__(self) -> str:
        return f"MLACache(length={self.length}, row_dim={self.row_dim}, nbytes={self.nbytes:,})"
