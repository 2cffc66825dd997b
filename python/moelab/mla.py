"""MultiHeadLatentAttention: DeepSeek-V3 / Kimi K2 multi-head latent attention in the C++ core,
with its compressed cache.

The layer follows transformers 5.x's ``DeepseekV3Attention`` as described by an ``MLASpec``;
``moelab.reference.mla`` is its float64 twin. The cache (``MLACache``) holds per token only the
normalised latent and the roped shared key: kv_lora_rank + qk_rope_head_dim floats.

Two exact rewritings of the same attention run it:

* ``"expanded"`` (prefill): each head's k_nope and v are rebuilt from the latent once for all
  keys, then tiles of 32 queries are scored against blocks of 64 keys with an online softmax
  (never a T x T matrix);
* ``"absorbed"`` (decode): kv_b_proj's key half is folded into the query (q_c = W_UK^T q_nope,
  scored against the latent) and its value half applied after the weighted sum of latents, so a
  step reads each cached row once per block of 8 heads and rebuilds no per-head K/V.

``form="auto"`` takes the absorbed form for calls of at most 4 tokens, else the expanded one.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from . import _core
from ._core_weights import CoreWeights
from .mla_cache import MLACache
from .mla_spec import MLASpec

__all__ = ["MultiHeadLatentAttention", "MLASpec", "MLACache", "MLA_FORMS"]

#: How a forward rewrites the attention: by token count, or forced.
MLA_FORMS = ("auto", "expanded", "absorbed")


class MultiHeadLatentAttention(CoreWeights):
    """One MLA layer.

    Parameters
    ----------
    spec : MLASpec (``MLASpec.from_hf(config)`` for a deepseek_v3 / kimi_k2 model).
    weights : optional mapping of HF module names to arrays, loaded strictly (all of them).
    seed : deterministic random init otherwise: uniform in ±1/sqrt(fan_in), norm weights 1.
    weight_dtype : "float32" or "bfloat16": storage of the projections run as dense matmuls
        (q_proj or q_a_proj / q_b_proj, kv_a_proj_with_mqa, o_proj; read in place). kv_b_proj,
        which the attention kernels read per head, biases and norms stay float32; every sum is
        float32.

    Weights (HF names; n_h heads, d_qk = d_n + d_r, r = kv_lora_rank):
    ``q_proj.weight`` (n_h d_qk, H) when q_lora_rank is None, else ``q_a_proj.weight``
    (q_lora_rank, H), ``q_a_layernorm.weight`` (q_lora_rank,), ``q_b_proj.weight``
    (n_h d_qk, q_lora_rank); ``kv_a_proj_with_mqa.weight`` (r + d_r, H),
    ``kv_a_layernorm.weight`` (r,), ``kv_b_proj.weight`` (n_h (d_n + d_v), r),
    ``o_proj.weight`` (H, n_h d_v); with attention_bias ``q_a_proj.bias``,
    ``kv_a_proj_with_mqa.bias``, ``o_proj.bias``.

    ``layer(x, cache=None, form="auto")`` takes x : (T, H) float array-like and returns
    y : (T, H) float32; with a cache the tokens are at positions ``cache.length ..`` and their
    latent rows are appended to it.

    Raises
    ------
    TypeError : spec not an MLASpec, a seed that is not an int, x not numeric, cache not an
        MLACache.
    ValueError : a seed outside [0, 2**64), x of the wrong shape or holding NaN/Inf, a cache of another layer, positions
        reaching ``max_position_embeddings``, an unknown form, a result that overflows float32
        (the cache is then unchanged); bad weight names, shapes or values (the layer is then
        unchanged).

    Thread-safe (the GIL is released in the core); results are bitwise the same for any
    thread count.
    """

    def __init__(self, spec: MLASpec, weights: Optional[Mapping[str, object]] = None,
                 seed: int = 0, weight_dtype: str = "float32"):
        self._init_from_spec(spec, MLASpec, _core.MultiHeadLatentAttention, seed, weight_dtype,
                             weights)

    @property
    def spec(self) -> MLASpec:
        return self._spec

    def new_cache(self) -> MLACache:
        """An empty latent cache for one sequence through this layer."""
        return MLACache(self._core.new_cache())

    def forward(self, x, cache: Optional[MLACache] = None, form: str = "auto") -> np.ndarray:
        """y (T, H) float32 for x (T, H), continuing ``cache`` when given (T = 0 allowed)."""
        core_cache = self._check_sequence(cache, "cache", MLACache)
        if form not in MLA_FORMS:
            raise ValueError(f"form must be one of {MLA_FORMS}, got {form!r}")
        x = self._checked_tokens(x, self._spec.hidden_size)
        return self._core.forward(x, core_cache, form)

    __call__ = forward

    def __repr__(self) -> str:
        s = self._spec
        return (f"MultiHeadLatentAttention(H={s.hidden_size}, n_h={s.num_attention_heads}, "
                f"q_lora_rank={s.q_lora_rank}, kv_lora_rank={s.kv_lora_rank}, "
                f"d_nope={s.qk_nope_head_dim}, d_rope={s.qk_rope_head_dim}, "
                f"d_v={s.v_head_dim}, params={self.num_params:,}{self._dtype_repr()})")
