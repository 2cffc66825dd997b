"""GatedDeltaNet: Qwen3-Next's linear-attention token mixer in the C++ core, and its state.

A ``"linear_attention"`` decoder layer mixes tokens with a gated delta rule instead of softmax
attention: each value head keeps a (d_k, d_v) matrix that every token decays and corrects, so a
sequence's state has a fixed size whatever its length. The layer follows Hugging Face's
``Qwen3NextGatedDeltaNet`` (transformers 5.23) exactly; ``moelab.reference.gated_deltanet``
is its float64 twin, written one token at a time.

Prefill (T > 1 tokens) runs the delta rule in chunks of ``CHUNK_SIZE`` tokens (one triangular
solve per chunk replaces its sequential updates), decode (T = 1) one recurrent step; both continue the same
``DeltaNetState``, so a prompt can be prefilled, decoded token by token and prefilled again.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _core
from ._core_cache import CoreCache
from ._core_weights import CoreWeights, seed_or_no_init
from .model_config import ModelConfig

__all__ = ["GatedDeltaNet", "DeltaNetState", "CHUNK_SIZE"]

#: Tokens per chunk of the chunked (prefill) form of the delta rule (a constant of the core).
CHUNK_SIZE: int = int(_core.DELTA_CHUNK)


class DeltaNetState(CoreCache):
    """One sequence's state of one ``GatedDeltaNet`` layer (make it with ``layer.new_state()``).

    It holds the recurrent matrix of every value head and the conv inputs of the last
    ``linear_conv_kernel_dim - 1`` tokens, in float32; its size never changes with the length.
    Only the layer that made it accepts it (a state of another layer, or of the same layer
    index in another model, raises ``ValueError``). A forward that raises leaves it unchanged.

    Attributes
    ----------
    length : tokens seen since it was made (or reset).
    nbytes : bytes it holds, ``4 * (n_v d_k d_v + (K - 1) (2 n_k d_k + n_v d_v))``.
    layer_idx : the decoder layer of the layer that made it.
    """

    __slots__ = ("_layer_idx",)

    def __init__(self, core_state: "_core.DeltaNetState", layer_idx: int):
        super().__init__(core_state)
        self._layer_idx = layer_idx

    @property
    def layer_idx(self) -> int:
        return self._layer_idx

    def recurrent_state(self) -> np.ndarray:
        """A copy of the recurrent matrices, (n_v, d_k, d_v) float32 (HF's layout)."""
        return self._core.recurrent_state()

    def conv_state(self) -> np.ndarray:
        """A copy of the conv inputs of the last K - 1 tokens, (K - 1, 2 n_k d_k + n_v d_v)
        float32, oldest first (zeros before the first token)."""
        return self._core.conv_state()

    def __repr__(self) -> str:
        return (f"DeltaNetState(layer_idx={self._layer_idx}, length={self.length}, "
                f"nbytes={self.nbytes:,})")


class GatedDeltaNet(CoreWeights):
    """The Gated DeltaNet token mixer of decoder layer ``layer_idx`` of ``config``.

    Parameters
    ----------
    config : ModelConfig whose ``layer_types[layer_idx]`` is ``"linear_attention"``; its
        ``hidden_size``, ``attention.linear_*`` dims and ``rms_norm_eps`` shape the layer, and
        ``hidden_act`` (the conv's activation, as in HF) must be ``"silu"``.
    layer_idx : int, the decoder layer.
    seed : int in [0, 2**64), deterministic init: uniform in ±1/sqrt(fan_in) (projections,
        conv, ``dt_bias``, ``A_log``), ``norm.weight`` = 1.
    weight_dtype : "float32" or "bfloat16": storage of the three projection matrices (read in
        place by the kernels; the conv, ``dt_bias``, ``A_log`` and ``norm.weight`` stay float32,
        every sum is float32).

    Weights (HF module names), with C = 2 n_k d_k + n_v d_v:
    ``in_proj_qkvz.weight`` (2 n_k d_k + 2 n_v d_v, H) grouped per key head as
    ``[q | k | v | z]``; ``in_proj_ba.weight`` (2 n_v, H) grouped per key head as ``[b | a]``;
    ``conv1d.weight`` (C, 1, K); ``dt_bias`` (n_v,); ``A_log`` (n_v,); ``norm.weight`` (d_v,);
    ``out_proj.weight`` (H, n_v d_v).

    ``layer(x, state=None)`` takes x : (T, H) float array-like and returns y : (T, H) float32.
    Without a state every call is a fresh sequence; with one, the call continues it.

    Raises
    ------
    TypeError : config not a ModelConfig, layer_idx not an int, x not numeric, state not a
        DeltaNetState.
    IndexError : layer_idx out of range.
    ValueError : a layer that is not ``"linear_attention"``, x of the wrong shape or holding
        NaN or Inf, a state of another layer, or a result that overflows float32 (the state is
        then unchanged).

    Thread-safe: two Python threads may run one layer at once (the GIL is released in the core),
    each with its own state; ``load_weights`` waits for running forwards.
    """

    def __init__(self, config: ModelConfig, layer_idx: int, seed: int = 0,
                 weight_dtype: str = "float32"):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a moelab.ModelConfig, got {type(config).__name__}")
        kind = config.layer_type(layer_idx)  # TypeError / IndexError on a bad index
        if kind != "linear_attention":
            raise ValueError(f"layer_idx: layer {layer_idx} of {config.display_name!r} is "
                             f"{kind!r}, not 'linear_attention'")
        if config.hidden_act != "silu":
            raise ValueError(f"config.hidden_act: the Gated DeltaNet's conv activation is "
                             f"hidden_act; only 'silu' is implemented, got {config.hidden_act!r}")
        seed = seed_or_no_init(seed)
        self._check_weight_dtype(weight_dtype)
        a = config.attention
        spec = _core.DeltaNetSpec(
            hidden_size=config.hidden_size,
            linear_num_key_heads=a.linear_num_key_heads,
            linear_num_value_heads=a.linear_num_value_heads,
            linear_key_head_dim=a.linear_key_head_dim,
            linear_value_head_dim=a.linear_value_head_dim,
            linear_conv_kernel_dim=a.linear_conv_kernel_dim,
            rms_norm_eps=float(config.rms_norm_eps))
        self._config = config
        self._layer_idx = int(layer_idx)
        self._attach(_core.GatedDeltaNet(spec, weight_dtype), seed)

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def layer_idx(self) -> int:
        return self._layer_idx

    def new_state(self) -> DeltaNetState:
        """A fresh sequence's state for this layer (zeros, length 0)."""
        return DeltaNetState(self._core.new_state(), self._layer_idx)

    def forward(self, x, state: Optional[DeltaNetState] = None) -> np.ndarray:
        """y (T, H) float32 for x (T, H), continuing ``state`` when given (T = 0 is allowed)."""
        return self._forward_sequence(x, state, "state", DeltaNetState)

    __call__ = forward

    def __repr__(self) -> str:
        a = self._config.attention
        return (f"GatedDeltaNet(layer_idx={self._layer_idx}, H={self._config.hidden_size}, "
                f"n_k={a.linear_num_key_heads}, n_v={a.linear_num_value_heads}, "
                f"d_k={a.linear_key_head_dim}, d_v={a.linear_value_head_dim}, "
                f"K={a.linear_conv_kernel_dim}, params={self.num_params:,}{self._dtype_repr()})")
