"""Attention: one softmax-attention token mixer of the C++ core, with its KV cache.

The layer follows Hugging Face transformers 5.x's attention modules of the covered families
(MHA / GQA / MQA, q/k/v/o biases, q/k-norms, RoPE kinds and NoPE layers, causal / sliding /
chunked masks, learned sinks, logit soft-cap, output gate, Llama 4's temperature tuning), as
described by an ``AttentionSpec``. ``moelab.reference.attention`` is its float64 twin.

Prefill (T tokens at once) scores keys block by block with an online softmax, never a T x T
matrix; decoding continues a ``KVCache`` whose positions continue from its length.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from . import _core
from ._core_weights import CoreWeights
from .attention_spec import AttentionSpec
from .kv_cache import KVCache

__all__ = ["Attention", "AttentionSpec", "KVCache"]


class Attention(CoreWeights):
    """One softmax-attention layer.

    Parameters
    ----------
    spec : AttentionSpec (``AttentionSpec.from_hf(config, layer_idx)`` for a HF model's layer).
    weights : optional mapping of HF module names to arrays, loaded strictly (all of them).
    seed : deterministic random init otherwise: uniform in ±1/sqrt(fan_in) (sinks ±1), norm
        weights 1 (0 with the (1 + w) form).
    weight_dtype : "float32" or "bfloat16": storage of the four projection matrices (read in
        place by the kernels; biases, norms and sinks stay float32, every sum is float32).

    Weights (HF names), with n_h d = q width and n_kv d = kv width:
    ``q_proj.weight`` (n_h d, H), or (2 n_h d, H) with ``output_gate`` ([q | gate] per head);
    ``k_proj.weight``, ``v_proj.weight`` (n_kv d, H); ``o_proj.weight`` (H, n_h d);
    ``q_proj.bias`` / ``k_proj.bias`` / ``v_proj.bias`` with ``qkv_bias``; ``o_proj.bias`` (H,)
    with ``o_bias``; ``q_norm.weight`` / ``k_norm.weight`` (d,) for ``qk_norm="head"``,
    (n_h d,) / (n_kv d,) for ``"full"``; ``sinks`` (n_h,) with ``sinks``.

    ``layer(x, cache=None)`` takes x : (T, H) float array-like and returns y : (T, H) float32;
    with a cache the tokens are at positions ``cache.length ..`` and are appended to it.

    Raises
    ------
    TypeError : spec not an AttentionSpec, a seed that is not an int, x not numeric, cache not a
        KVCache.
    ValueError : a seed outside [0, 2**64), x of the wrong shape or holding NaN/Inf, a cache of another layer, positions
        reaching ``max_position_embeddings``, a result that overflows float32 (the cache is then
        unchanged); bad weight names, shapes or values (the layer is then unchanged).

    Thread-safe: forwards from several Python threads share the weights (the GIL is released in
    the core), each with its own cache. Results are bitwise the same for any thread count.
    """

    def __init__(self, spec: AttentionSpec, weights: Optional[Mapping[str, object]] = None,
                 seed: int = 0, weight_dtype: str = "float32"):
        self._init_from_spec(spec, AttentionSpec, _core.Attention, seed, weight_dtype, weights)

    @property
    def spec(self) -> AttentionSpec:
        return self._spec

    def new_cache(self) -> KVCache:
        """An empty cache for one sequence through this layer."""
        return KVCache(self._core.new_cache())

    def forward(self, x, cache: Optional[KVCache] = None) -> np.ndarray:
        """y (T, H) float32 for x (T, H), continuing ``cache`` when given (T = 0 allowed)."""
        return self._forward_sequence(x, cache, "cache", KVCache)

    __call__ = forward

    def __repr__(self) -> str:
        s = self._spec
        extra = "" if s.mask == "causal" else f", mask={s.mask}({s.window})"
        return (f"Attention(H={s.hidden_size}, n_h={s.num_attention_heads}, "
                f"n_kv={s.num_key_value_heads}, d={s.head_dim}{extra}, "
                f"rope={'none' if s.rope is None else s.rope.get('rope_type', 'default')}, "
                f"params={self.num_params:,}{self._dtype_repr()})")
