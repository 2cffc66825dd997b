"""DecoderModel: a whole decoder-only language model, tokens in, logits out.

    logits = model(ids)                        # (T,) int -> (T, V) float32, no cache
    cache = model.new_cache()                  # one sequence's state
    logits = model(ids, cache=cache)           # continues at position cache.length

One readable loop over layers (nanoGPT-like); every op with a loop over tokens, heads or
channels runs in the C++ core (embedding gather, RMSNorm, attention, MoE / gated MLP, the LM
head GEMM, soft-capping). Per layer, with x the residual stream (T, H):

=============  =================================================================================
"pre"          h = x + mixer(norm_1(x));             out = h + ffn(norm_2(h))
"sandwich"     h = x + norm_2(mixer(norm_1(x)));     out = h + norm_4(ffn(norm_3(h)))   (Gemma 3)
"post"         h = x + norm_1(mixer(x));             out = h + norm_2(ffn(h))           (OLMo 2)
=============  =================================================================================

Norms are RMSNorms ``x / rms(x) * (offset + w)``, offset 1 for Gemma's ``(1 + w)`` form; then a
final norm, the LM head (the embedding matrix when tied) and the final logit soft-cap where the
family has one. Make one with :func:`moelab.hf.load_model` (a checkpoint) or
:func:`moelab.build` (random weights from a ModelConfig).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from . import _core, ops
from .attention import Attention
from .io import bf16_to_float32
from .deltanet import GatedDeltaNet
from .expert_parallel import ExpertParallelMoE
from .layer import MoELayer
from .mla import MultiHeadLatentAttention
from .mlp import GatedMLP
from .model_config import ModelConfig

__all__ = ["DecoderModel", "DecoderLayer", "DecoderCache", "all_finite",
           "check_decoder_features", "PROGRESS_DELAY_S", "missing_decoder_features"]

#: With ``progress=None`` a forward's progress bar appears only after this many seconds.
PROGRESS_DELAY_S = 2.0

#: ModelConfig switches of features the decoder does not reproduce (Grok-2's residual MoE,
#: PhiMoE's LayerNorm and head biases, biased dense MLPs; routers other than ``moe.scoring``
#: are ``router_variant``), each with what it is.
UNSUPPORTED_FEATURES = {
    "norm_bias": "LayerNorm with a bias (the decoder's norms are RMSNorms)",
    "lm_head_bias": "an LM head bias",
    "mlp_bias": "biases on the dense MLP",
    "residual_moe": "a dense MLP beside each MoE block (Grok-2's residual MoE)"}

#: Norms of one decoder layer per placement, in the order of the table above.
NORM_SLOTS = {"pre": ("mixer_in", "ffn_in"),
              "sandwich": ("mixer_in", "mixer_out", "ffn_in", "ffn_out"),
              "post": ("mixer_out", "ffn_out")}

Mixer = Union[Attention, MultiHeadLatentAttention, GatedDeltaNet]
FFN = Union[MoELayer, ExpertParallelMoE, GatedMLP]
#: The FFNs that route tokens to experts (and give RoutingStats).
ROUTED_FFNS = (MoELayer, ExpertParallelMoE)


@dataclass
class DecoderLayer:
    """One decoder layer: its token mixer, its FFN and its norms.

    mixer : Attention (softmax attention), MultiHeadLatentAttention (MLA) or GatedDeltaNet
        (linear attention).
    ffn : MoELayer, ExpertParallelMoE (its experts across MPI ranks) or GatedMLP.
    norms : slot name (``NORM_SLOTS[placement]``) -> (H,) weight, float32 or uint16 (bfloat16
        bits, read in place).
    """

    mixer: Mixer
    ffn: FFN
    norms: dict


class DecoderCache:
    """One sequence's state through a DecoderModel: one cache per layer (a ``KVCache`` for an
    attention layer, an ``MLACache`` for an MLA layer, a ``DeltaNetState`` for a DeltaNet layer).

    length : tokens seen; the next token is at this position.
    nbytes : bytes held by all layers' caches.
    """

    def __init__(self, layers: List[object], owner: "DecoderModel"):
        self.layers = layers
        self._owner = owner

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0

    @property
    def nbytes(self) -> int:
        return int(sum(c.nbytes for c in self.layers))

    def __repr__(self) -> str:
        return f"DecoderCache(layers={len(self.layers)}, length={self.length}, nbytes={self.nbytes:,})"


def check_decoder_features(cfg: ModelConfig) -> None:
    """Raise ValueError naming the model type and the switch when ``cfg`` has a feature the
    decoder does not reproduce (``UNSUPPORTED_FEATURES``, a ``router_variant``): such a model is
    refused, never built or loaded approximately."""
    missing = missing_decoder_features(cfg)
    if missing:
        raise ValueError(f"model_type {cfg.model_type!r}: this config needs "
                         f"{'; '.join(missing)}, which the decoder does not reproduce")


def missing_decoder_features(cfg: ModelConfig) -> List[str]:
    """What ``cfg`` needs that the decoder does not reproduce, each switch named: the
    ``UNSUPPORTED_FEATURES`` it sets, and its ``router_variant``."""
    missing = [f"{what} ({flag}=True)" for flag, what in UNSUPPORTED_FEATURES.items()
               if getattr(cfg, flag)]
    if cfg.router_variant is not None:
        missing.append(f"the {cfg.router_variant!r} router (router_variant)")
    return missing


def all_finite(arr: np.ndarray, rows: int = 4096) -> bool:
    """No NaN or Inf in a float32 array or in uint16 bfloat16 bits: a C-contiguous one scanned
    by the core, any other checked ``rows`` rows at a time (a large table is never converted
    whole)."""
    if arr.dtype in (np.float32, np.uint16) and arr.flags.c_contiguous:
        return bool(_core.all_finite(arr))
    for start in range(0, max(arr.shape[0], 1) if arr.ndim else 1, rows):
        block = arr[start:start + rows] if arr.ndim else arr
        if not np.isfinite(bf16_to_float32(block) if arr.dtype == np.uint16 else block).all():
            return False
    return True


def _read_only(table: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous view of a checked table (a copy only if it is not contiguous):
    what the model reads without re-checking cannot be written through it."""
    view = np.ascontiguousarray(table).view()
    view.flags.writeable = False
    return view


class DecoderModel:
    """A decoder-only LM (module docstring).

    Parameters
    ----------
    config : ModelConfig (``norm_placement``, ``rms_norm_eps``, ``vocab_size``, ``hidden_size``).
    embed : (V, H) embedding table, float32 or uint16 (bfloat16 bits), read in place.
    layers : the DecoderLayers, ``config.num_hidden_layers`` of them.
    final_norm : (H,) weight of the final norm.
    lm_head : (V, H) LM head matrix (the embedding table itself when tied), float32 or uint16.
    embed_scale : None, or the factor Gemma multiplies embeddings by (sqrt(H)).
    norm_offset : 0.0, or 1.0 for Gemma's ``(1 + w)`` norms.
    final_softcap : None, or c of the final ``c * tanh(logits / c)``.
    source : what the weights are read from (kept open while the model lives), or None.
    tables_checked : True when the caller has already checked every value of ``embed`` and
        ``lm_head`` (load_model's reader does), so that they are not scanned a second time.

    ``max_positions`` is the (MLA) attention layers' ``max_position_embeddings`` (None without any).
    The embedding table and the LM head are checked once (shape, dtype, finite: here, unless
    ``tables_checked``) and kept as read-only views (``model.embed``, ``model.lm_head``): a forward
    reads one row per token of the (V, H) table and runs the LM head GEMM without scanning either
    again (a decode step would otherwise read both whole tables twice).
    """

    def __init__(self, config: ModelConfig, embed: np.ndarray, layers: Sequence[DecoderLayer],
                 final_norm: np.ndarray, lm_head: np.ndarray, embed_scale: Optional[float] = None,
                 norm_offset: float = 0.0, final_softcap: Optional[float] = None, source=None,
                 tables_checked: bool = False):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a moelab.ModelConfig, got {type(config).__name__}")
        V, H = config.vocab_size, config.hidden_size
        if len(layers) != config.num_hidden_layers:
            raise ValueError(f"layers: expected {config.num_hidden_layers} (num_hidden_layers), "
                             f"got {len(layers)}")
        for name, arr, shape in (("embed", embed, (V, H)), ("lm_head", lm_head, (V, H)),
                                 ("final_norm", final_norm, (H,))):
            if tuple(arr.shape) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(arr.shape)}")
            if arr.dtype not in (np.float32, np.uint16):
                raise TypeError(f"{name}: expected float32 or uint16 (bfloat16 bits), got {arr.dtype}")
        if not tables_checked:
            for name, arr in (("embed", embed), ("lm_head", lm_head)):
                if not all_finite(arr):
                    raise ValueError(f"{name}: holds NaN or Inf")
        slots = NORM_SLOTS[config.norm_placement]
        for i, layer in enumerate(layers):
            if set(layer.norms) != set(slots):
                raise ValueError(f"layers[{i}].norms: expected {slots} for norm_placement="
                                 f"{config.norm_placement!r}, got {tuple(layer.norms)}")
        self.config = config
        self.embed = _read_only(embed)
        self.layers = list(layers)
        self.final_norm = final_norm
        self.lm_head = self.embed if lm_head is embed else _read_only(lm_head)
        self.embed_scale = embed_scale
        self.norm_offset = float(norm_offset)
        self.final_softcap = final_softcap
        self._source = source
        limits = [l.mixer.spec.max_position_embeddings for l in self.layers
                  if not isinstance(l.mixer, GatedDeltaNet)]
        self.max_positions = min(limits) if limits else None

    # -- the forward ----------------------------------------------------------------------
    def new_cache(self) -> DecoderCache:
        """An empty state for one sequence."""
        return DecoderCache([layer.mixer.new_state() if isinstance(layer.mixer, GatedDeltaNet)
                             else layer.mixer.new_cache() for layer in self.layers], self)

    def __call__(self, ids, cache: Optional[DecoderCache] = None,
                 routing: Optional[dict] = None, progress: Optional[bool] = None) -> np.ndarray:
        return self.forward(ids, cache, routing, progress)

    def forward(self, ids, cache: Optional[DecoderCache] = None,
                routing: Optional[dict] = None, progress: Optional[bool] = None) -> np.ndarray:
        """logits (T, V) float32 for token ids (T,), continuing ``cache`` when given.

        routing : None, or a dict that receives ``{layer index: RoutingStats}`` of every MoE
            layer for these T tokens (``moelab.RoutingStats``: top-k ids and weights...).
        progress : a tqdm bar over the layers on stderr: None (default) only on a terminal and
            only once the forward has run ``PROGRESS_DELAY_S`` seconds (a long prefill), True
            always, False never.

        Raises TypeError (ids not integers, cache not this model's DecoderCache), ValueError
        (ids not 1-D or empty, positions reaching ``max_positions``), IndexError (an id
        outside [0, V), naming it).
        """
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be None, True or False, got {progress!r}")
        if cache is not None and (not isinstance(cache, DecoderCache) or cache._owner is not self):
            raise TypeError("cache: expected a DecoderCache from this model's new_cache(), got "
                            f"{type(cache).__name__}")
        if np.size(ids) == 0:
            raise ValueError("ids: the prompt is empty (expected (T,) token ids, T >= 1)")
        x = ops.embedding(ids, self.embed, self.embed_scale, checked=True)   # (T, H)
        start = 0 if cache is None else cache.length
        if self.max_positions is not None and start + len(x) > self.max_positions:
            # checked before any layer runs, so a cache is never left half-advanced
            raise ValueError(f"ids: positions {start}..{start + len(x) - 1} reach "
                             f"max_position_embeddings={self.max_positions}")
        bar = tqdm(self.layers, desc=self.config.display_name, unit="layer", leave=False,
                   disable=None if progress is None else not progress,
                   delay=PROGRESS_DELAY_S if progress is None else 0.0)
        for i, layer in enumerate(bar):
            layer_cache = None if cache is None else cache.layers[i]
            x = self._layer(i, layer, x, layer_cache, routing)                # (T, H)
        x = self._norm(x, self.final_norm)                                    # (T, H)
        logits = _core.linear(x, self.lm_head, None, checked=True)           # (T, V)
        if self.final_softcap is not None:
            logits = ops.logit_softcap(logits, self.final_softcap)
        return logits

    def _layer(self, i: int, layer: DecoderLayer, x: np.ndarray, cache,
               routing: Optional[dict]) -> np.ndarray:
        n = layer.norms
        h = self._norm(x, n["mixer_in"]) if "mixer_in" in n else x           # (T, H)
        h = layer.mixer(h, cache)                                             # (T, H)
        if "mixer_out" in n:
            h = self._norm(h, n["mixer_out"])
        x = x + h                                                             # (T, H)
        h = self._norm(x, n["ffn_in"]) if "ffn_in" in n else x
        if routing is not None and isinstance(layer.ffn, ROUTED_FFNS):
            h, routing[i] = layer.ffn(h, return_stats=True)                   # (T, H)
        else:
            h = layer.ffn(h)                                                  # (T, H)
        if "ffn_out" in n:
            h = self._norm(h, n["ffn_out"])
        return x + h                                                          # (T, H)

    def _norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return _core.rms_norm(x, weight, float(self.config.rms_norm_eps), self.norm_offset,
                              "float32")

    def generate(self, ids, max_new_tokens: int = 32, temperature: float = 0.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None, seed: int = 0,
                 stop=None, trace: bool = False, callback=None):
        """Continue ``ids`` by up to ``max_new_tokens`` tokens: a ``moelab.generate.Generation``
        (``.tokens`` int64, prompt + generated). See :func:`moelab.generate.generate`;
        ``trace=True`` adds ``.trace``, the ``moelab.generate.ExpertTrace`` of every token
        the model processed."""
        from .generate import generate
        return generate(self, ids, max_new_tokens, temperature, top_k, top_p, seed, stop,
                        callback, trace)

    def ffn_stack(self):
        """A view of this model's FFN sub-blocks with the token mixers skipped: hidden states
        in, hidden states and per-layer ``RoutingStats`` out (``moelab.model.FFNStack``)."""
        from .ffn_stack import FFNStack
        return FFNStack(self)

    # -- facts ----------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_params(self) -> int:
        """Parameters of the model: embedding, every layer's mixer, FFN and norms, the final
        norm and the LM head (counted once when tied); all the experts of an expert-parallel
        layer, wherever they are held."""
        n = self.embed.size + self.final_norm.size
        if not self.config.tie_word_embeddings:
            n += self.lm_head.size
        for layer in self.layers:
            n += layer.ffn.num_params + layer.mixer.num_params
            n += sum(w.size for w in layer.norms.values())
        return int(n)

    def __repr__(self) -> str:
        c = self.config
        return (f"DecoderModel({c.model_type}, L={c.num_hidden_layers}, H={c.hidden_size}, "
                f"V={c.vocab_size}, norm={c.norm_placement}, "
                f"ffn={''.join('M' if k == 'moe' else 'D' for k in c.ffn_kinds)})")
