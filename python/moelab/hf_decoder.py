"""Hugging Face checkpoints -> a whole :class:`moelab.DecoderModel`.

    model = moelab.hf.load_model("path/to/checkpoint")

The folder holds ``config.json`` and ``*.safetensors`` (sharded with a
``model.safetensors.index.json`` or not); weights are read from disk only, never downloaded.
Every tensor goes through ``moelab.io``'s memory-mapped safetensors reader. Where each weight
lies is said by the family's :class:`moelab.registry.DecoderNames`
(``moelab.families()``); the defaults, for decoder layer ``i`` under the model prefix
(``model.`` ...):

=====================  =========================================================================
embedding              ``embed_tokens.weight`` (V, H)
attention              ``layers.{i}.self_attn.`` + the names of :class:`moelab.Attention` (of
                       :class:`moelab.MultiHeadLatentAttention` for MLA);
                       ``layers.{i}.linear_attn.`` + those of :class:`moelab.GatedDeltaNet`
dense FFN              ``layers.{i}.<block>.gate_proj/up_proj/down_proj.weight``, ``<block>`` the
                       family's FFN block (``mlp``; ``feed_forward`` for Llama 4)
MoE FFN                as :func:`moelab.hf.load_moe_layer` reads it
norms                  ``layers.{i}.input_layernorm``, ``post_attention_layernorm`` ("pre");
                       ``post_attention_layernorm``, ``post_feedforward_layernorm`` ("post",
                       OLMo 2); all four with ``pre_feedforward_layernorm`` ("sandwich", Gemma 3)
final norm, LM head    ``norm.weight``; ``lm_head.weight`` at the top level (absent when tied)
=====================  =========================================================================

Weights are read where they lie: every float32 or bfloat16 tensor is memory-mapped and read in
place by the kernels, not copied (the layers borrow the mapped arrays and keep them alive):
the embedding table, the LM head, the norms, the attention / MLA / DeltaNet projections, the
dense MLPs (gate and up as the two parts of ``gate_up_proj``) and the routed and shared experts
(each expert's ``gate_proj``, ``up_proj`` and ``down_proj`` read through a pointer of its own).
With ``dtype=None`` the layers store their matrices as the checkpoint does (a bfloat16
checkpoint stays bfloat16, exactly). Converted once at load, into storage of the layer's own:

- layouts that must change: gpt-oss's fused experts (gate and up columns interleaved, the
  stack transposed) and Llama 4's transposed expert stacks (``(E, H, 2I)``, ``(E, I, H)``);
- what the core keeps in float32 whatever the weight dtype, from a bfloat16 checkpoint: the
  router weights and biases (routing runs in float32), the expert and attention biases, the
  shared-expert gate, MLA's ``kv_b_proj`` and the small per-layer vectors of attention, MLA
  and DeltaNet (norm weights, sinks, DeltaNet's conv, ``dt_bias`` and ``A_log``);
- every tensor when ``dtype`` differs from the stored one (bfloat16 -> float32 is exact),
  or when a float32 tensor's data is not 4-byte aligned in the file.

So the resident memory of a loaded model is what the kernels touch of the file (page cache,
shared) plus these small copies and the caches.

Across ranks (``load_model(path, expert_parallel=MPI.COMM_WORLD)`` under ``mpirun -n N``): each
MoE layer's routed experts are split between the ranks (contiguous blocks by default), and each
rank checks and reads only its own experts' tensors (for a fused stack, its experts' slices of
the mapped tensor); everything else is read by every rank, so a rank's resident memory is the
replicated weights plus its share of the experts. Each rank's load ends with one exchange of
outcomes (``moelab.rank_agreement``): a load that failed on any rank, or ranks given different
configs, dtypes or placements, raise the same ValueError on every rank.

Only families whose whole decoder has been checked against transformers load
(``DECODER_MODEL_TYPES``); any other model type, a quantized checkpoint, or a model feature the
decoder does not reproduce is refused with an error naming it, never loaded approximately
(PhiMoE: its LayerNorms with bias and its sparsemixer router; Grok-2: no transformers model to
check against).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from . import registry
from ._core_weights import NO_INIT
from .attention import Attention, AttentionSpec
from .attention_spec import _UNIT_OFFSET_NORMS
from .deltanet import GatedDeltaNet
from .expert_parallel import ExpertParallelMoE, placement_of
from .decoder import (NORM_SLOTS, DecoderLayer, DecoderModel, all_finite,
                      check_decoder_features, missing_decoder_features)
from .hf_config import from_hf_config
from .io import open_checkpoint, read_config_json
from .layer import MoELayer
from .mla import MultiHeadLatentAttention
from .mla_spec import MLASpec
from .mlp import GatedMLP
from .model_config import ModelConfig
from .rank_agreement import agreed, communicator, digest

__all__ = ["load_model", "DECODER_MODEL_TYPES"]

#: Model types whose whole decoder matches transformers (tests/reference/test_hf_decoder.py).
DECODER_MODEL_TYPES = ("qwen3_moe", "qwen3", "mixtral", "mistral", "olmo2", "glm4_moe",
                       "gpt_oss", "smollm3", "gemma3_text", "llama4_text", "qwen3_next",
                       "deepseek_v3", "olmoe", "qwen2_moe", "qwen2", "llama")

#: Families that scale the embedding by sqrt(H).
SCALED_EMBEDDING = ("gemma3_text", "gemma3")
DTYPES = (None, "float32", "bfloat16")
_STORED = {"F32": np.float32, "BF16": np.uint16}


def load_model(path, dtype: Optional[str] = None, expert_parallel=None,
               placement=None) -> DecoderModel:
    """The DecoderModel of a Hugging Face checkpoint folder.

    Parameters
    ----------
    path : str or path-like, a folder with ``config.json`` and ``*.safetensors``.
    dtype : None (as stored: a bfloat16 checkpoint stays bfloat16, float32 stays float32),
        "float32" or "bfloat16": how the layers store their matrices (math is float32).
    expert_parallel : None, or an mpi4py communicator of N ranks (``MPI.COMM_WORLD`` under
        ``mpirun -n N``), every rank calling ``load_model`` with it: each MoE layer's routed
        experts are then split between the ranks by ``placement`` and each rank reads only its
        own experts' tensors (the others are never touched); everything else is replicated.
        Each MoE layer is an :class:`moelab.expert_parallel.ExpertParallelMoE`, so the model's
        forward, ``generate`` and routing statistics run unchanged on every rank, and give the
        single-process model's results bitwise (every rank must run the same calls).
    placement : with ``expert_parallel`` only: None (contiguous blocks of experts) or a
        length-E sequence of owning ranks (``moelab.expert_parallel.placement_of``).

    Raises
    ------
    TypeError : a bad argument, a tensor of a dtype other than float32 / bfloat16 (naming it).
    ValueError : an unsupported model type or feature, a quantized checkpoint
        (``quantization_config``), a missing tensor or one of the wrong shape, NaN or Inf,
        a broken file; each naming the key, tensor or file. Nothing half-built is returned.
        With ``expert_parallel``, every rank raises alike (``moelab.rank_agreement.agreed``):
        ValueError naming the rank(s) whose load failed and their messages, or what the ranks
        disagree on (config.json, dtype, number of ranks, placement); only ``expert_parallel``
        itself (not a communicator: TypeError) is checked on each rank alone.
    """
    if expert_parallel is None:
        if placement is not None:
            raise ValueError("placement: only with expert_parallel (an mpi4py communicator)")
        return _load(path, dtype)[0]
    comm = communicator(expert_parallel, "expert_parallel")

    def this_rank():
        model, parallel = _load(path, dtype, comm, placement)
        return (model, parallel.owners), parallel.facts

    model, owners = agreed(comm, "load_model", this_rank)
    # only once every rank holds its part: making an ExpertParallelMoE communicates
    for layer in model.layers:
        if isinstance(layer.ffn, MoELayer):
            layer.ffn = ExpertParallelMoE(layer.ffn, comm, owners)
    return model


class _Parallel:
    """This rank's part of an expert-parallel load: its rank, the placement (``owners``, (E,)
    the rank of each routed expert; None for a model without MoE layers) and the ``facts``."""

    def __init__(self, comm, hf_config: dict, cfg: ModelConfig, dtype: Optional[str],
                 placement):
        self.rank, size = comm.Get_rank(), comm.Get_size()
        self.owners = None
        if cfg.moe is not None:
            self.owners = placement_of(cfg.moe.num_experts, size, placement)  # (E,)
        elif placement is not None:
            raise ValueError("placement: this model has no MoE layer, so no experts to place")
        #: what every rank's load must agree on (``rank_agreement.agreed``)
        self.facts = {"config.json": digest(hf_config), "dtype": repr(dtype),
                      "number of ranks": size,
                      "placement": None if self.owners is None else digest(self.owners.tolist())}

    def held(self) -> np.ndarray:
        """(E,) bool: the experts this rank holds."""
        return self.owners == self.rank


def _load(path, dtype: Optional[str], comm=None, placement=None
          ) -> Tuple[DecoderModel, Optional[_Parallel]]:
    """The body of :func:`load_model`: ``(model, parallel)``; with ``comm``, the model is this
    rank's part of an expert-parallel one (plain MoELayers holding this rank's experts) and
    ``parallel`` its placement and the facts all ranks must agree on."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not Path(path).is_dir():
        raise ValueError(f"path: {str(path)!r} is not a checkpoint folder")
    hf_config = read_config_json(path)
    if "quantization_config" in hf_config:
        quantization = hf_config["quantization_config"]
        method = quantization.get("quant_method", "?") if isinstance(quantization, dict) else "?"
        raise ValueError(f"config.json: quantization_config ({method}): quantized checkpoints "
                         "are not supported; use a bfloat16 or float32 checkpoint")
    cfg = from_hf_config(hf_config)
    _check_supported(cfg)
    parallel = None if comm is None else _Parallel(comm, hf_config, cfg, dtype, placement)
    tensors = open_checkpoint(path)
    try:
        return _Builder(path, hf_config, cfg, tensors, dtype, parallel).build(), parallel
    except BaseException:
        tensors.close()
        raise


#: Why a family whose features the decoder has is still not loaded.
_NOT_CHECKED = {
    "grok": "transformers has no Grok model to check the whole decoder against, and the names "
            "of Grok checkpoints' tensors are not mapped"}


def _check_supported(cfg: ModelConfig) -> None:
    """Refuse a model the decoder does not reproduce, naming every missing feature."""
    t = cfg.model_type
    if t not in DECODER_MODEL_TYPES:
        missing = missing_decoder_features(cfg)
        why = [f"it needs {'; '.join(missing)}"] if missing else []
        why.append(_NOT_CHECKED.get(t, "its whole decoder has not been checked against "
                                       "transformers yet"))
        raise ValueError(f"model_type {t!r}: moelab.hf.load_model does not load this family: "
                         f"{', and '.join(why)}; supported: {', '.join(DECODER_MODEL_TYPES)}")
    check_decoder_features(cfg)


class _Builder:
    """Reads one checkpoint into a DecoderModel (every tensor checked before it is used)."""

    def __init__(self, path, hf_config: dict, cfg: ModelConfig, tensors, dtype: Optional[str],
                 parallel: Optional[_Parallel] = None):
        self.path, self.cfg, self.tensors, self.dtype = path, cfg, tensors, dtype
        self.parallel = parallel
        self.hf_config = hf_config
        self.text = dict(hf_config.get("text_config") or hf_config)
        self.text.setdefault("model_type", cfg.model_type)
        # the layer types as the family's parser resolved them: a 4.x config.json has none, or
        # null (Qwen2's may set sliding_window with use_sliding_window off; Llama 4 chunks by rule)
        if not self.text.get("layer_types"):
            self.text["layer_types"] = [cfg.layer_type(i) for i in range(cfg.num_hidden_layers)]
        fam = registry.family(cfg.model_type)
        self.names = fam.decoder
        self.moe_blocks = () if fam.checkpoint is None else fam.checkpoint.moe.blocks
        self.prefix = self._find_prefix()
        self.used = set()  # the checkpoint tensors the model is made of

    # -- tensors --------------------------------------------------------------------------
    def _find_prefix(self) -> str:
        names = set(self.tensors.names())
        for p in registry.DECODER_PREFIXES:
            if f"{p}{self.names.embedding}" in names:
                return p
        raise ValueError(f"{self.path}: no embedding tensor found (looked for "
                         f"'<prefix>{self.names.embedding}', prefix one of "
                         f"{registry.DECODER_PREFIXES})")

    def tensor(self, name: str, shape) -> np.ndarray:
        """The checked tensor ``name`` of ``shape``: a read-only view into the file (float32,
        or uint16 bfloat16 bits) when allowed by ``dtype``, else float32."""
        arr = self.stored(name, shape)
        if self.dtype is not None and _DTYPE_OF[self.tensors.info(name).dtype] != self.dtype:
            arr = self.tensors.read_float32(name)
        if not all_finite(arr):
            raise ValueError(f"{name}: holds NaN or Inf")
        return arr

    def stored(self, name: str, shape) -> np.ndarray:
        """The tensor ``name`` of ``shape`` as stored: a read-only view into the mapped file
        (float32, or uint16 bfloat16 bits), name, shape and dtype checked; its values are
        checked by the layer that loads it (:meth:`load`)."""
        info = self._info(name)
        if tuple(info.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(info.shape)}")
        if info.dtype not in _STORED:
            raise TypeError(f"{name}: dtype {info.dtype} is not supported (float32 or bfloat16)")
        self.used.add(name)
        return self.tensors.view(name)

    def load(self, layer, weights: dict, sources) -> None:
        """``layer.load_weights(weights)`` (read in place where the layer can), a NaN or Inf
        reported under the name of the checkpoint tensor (one of ``sources``) that holds it."""
        try:
            layer.load_weights(weights)
        except ValueError as exc:
            if "NaN or Inf" not in str(exc):
                raise
            bad = next((n for n in sources if not all_finite(self.tensors.view(n))), None)
            if bad is None:
                raise
            raise ValueError(f"{bad}: holds NaN or Inf") from None

    def weight_dtype(self, name: str) -> str:
        """The storage of a layer's matrices: ``dtype``, or as ``name`` is stored."""
        if self.dtype is not None:
            return self.dtype
        return "bfloat16" if self._info(name).dtype == "BF16" else "float32"

    def _info(self, name: str):
        """The header entry of tensor ``name`` (ValueError naming it when it is absent)."""
        if name not in self.tensors:
            raise ValueError(f"{name}: missing from the checkpoint")
        return self.tensors.info(name)

    # -- the model ------------------------------------------------------------------------
    def build(self) -> DecoderModel:
        cfg, p = self.cfg, self.prefix
        V, H = cfg.vocab_size, cfg.hidden_size
        embed = self.tensor(p + self.names.embedding, (V, H))
        layers = [self.layer(i) for i in range(cfg.num_hidden_layers)]
        self._no_unused_layer_tensors()
        final_norm = self.tensor(p + self.names.final_norm, (H,))
        lm_head = embed if cfg.tie_word_embeddings else self.tensor(self._lm_head_name(), (V, H))
        t = cfg.model_type
        model = DecoderModel(
            cfg, embed, layers, final_norm, lm_head,
            embed_scale=math.sqrt(H) if t in SCALED_EMBEDDING else None,
            norm_offset=1.0 if t in _UNIT_OFFSET_NORMS else 0.0,
            final_softcap=self.text.get("final_logit_softcapping"), source=self.tensors,
            tables_checked=True)  # tensor() checked every value
        self.tensors.release_pages()  # the checks read every page; the kernels map back theirs
        return model

    def _lm_head_name(self) -> str:
        model_part = self.prefix[:-len("model.")] if self.prefix.endswith("model.") else ""
        lm_head = self.names.lm_head
        for name in (model_part + lm_head, lm_head):
            if name in self.tensors:
                return name
        raise ValueError(f"{lm_head}: missing from the checkpoint (tie_word_embeddings is "
                         "false in config.json)")

    def layer(self, i: int) -> DecoderLayer:
        base = f"{self.prefix}layers.{i}."
        placement = self.cfg.norm_placement
        norms = {slot: self.tensor(f"{base}{self.names.norms[placement][slot]}.weight",
                                   (self.cfg.hidden_size,))
                 for slot in NORM_SLOTS[placement]}
        return DecoderLayer(self.mixer(i, base), self.ffn(i, base), norms)

    def mixer(self, i: int, base: str):
        """Softmax attention or MLA (``self_attn.``), or a Gated DeltaNet (``linear_attn.``)."""
        if self.cfg.layer_type(i) == "linear_attention":
            base += self.names.linear_attention + "."
            layer = GatedDeltaNet(self.cfg, i, seed=NO_INIT, weight_dtype=self.weight_dtype(
                base + "in_proj_qkvz.weight"))
        elif self.cfg.attention.kind == "mla":
            base += self.names.attention + "."
            layer = MultiHeadLatentAttention(MLASpec.from_hf(self.text, i), seed=NO_INIT,
                                             weight_dtype=self.weight_dtype(
                                                 base + "kv_a_proj_with_mqa.weight"))
        else:
            base += self.names.attention + "."
            spec = AttentionSpec.from_hf(self.text, i)
            layer = Attention(spec, seed=NO_INIT,
                              weight_dtype=self.weight_dtype(base + "q_proj.weight"))
        expected = layer.weight_shapes()
        self.load(layer, {n: self.stored(base + n, s) for n, s in expected.items()},
                  [base + n for n in expected])
        return layer

    def ffn(self, i: int, base: str):
        cfg = self.cfg
        if cfg.ffn_kind(i) == "moe":
            from .hf import moe_weights_in_place
            held = None if self.parallel is None else self.parallel.held()
            moe_cfg, weights, sources = moe_weights_in_place(self.tensors, self.hf_config, i,
                                                             held)
            layer = MoELayer(moe_cfg, seed=NO_INIT, weight_dtype=self.weight_dtype(
                self.prefix + self.names.embedding))  # the experts' storage: the checkpoint's
            self.load(layer, weights, sources)  # with ``parallel``: this rank's experts only
            return layer
        block = self._dense_block(i, base)
        H, I = cfg.hidden_size, cfg.intermediate_size
        names = [f"{block}{p}_proj.weight" for p in ("gate", "up", "down")]
        gate, up = (self.stored(n, (I, H)) for n in names[:2])
        down = self.stored(names[2], (H, I))
        mlp = GatedMLP(H, I, cfg.hidden_act, seed=NO_INIT,
                       weight_dtype=self.weight_dtype(names[0]))
        self.load(mlp, {"gate_up_proj": [gate, up], "down_proj": down}, names)  # parts: gate, up
        return mlp

    def _dense_block(self, i: int, base: str) -> str:
        blocks = self.names.dense_blocks
        for b in blocks:
            if f"{base}{b}.gate_proj.weight" in self.tensors:
                return f"{base}{b}."
        raise ValueError(f"layer {i}: dense MLP weights missing (looked for "
                         f"'{base}{{{','.join(blocks)}}}.gate_proj.weight')")

    def _no_unused_layer_tensors(self) -> None:
        """Every tensor of layers 0 .. L-1 is one the model uses (a tensor of a feature the
        decoder does not reproduce is refused, never ignored). The MoE blocks were checked by
        ``load_moe_weights``; tensors of layers >= L (multi-token prediction) are not read."""
        layer = re.compile(r"^%slayers\.(\d+)\." % re.escape(self.prefix))
        L = self.cfg.num_hidden_layers
        for name in sorted(self.tensors.names()):
            m = layer.match(name)
            if m is None or int(m[1]) >= L or name in self.used:
                continue
            if self.cfg.ffn_kind(int(m[1])) == "moe" and any(
                    name.startswith(f"{m[0]}{b}.") for b in self.moe_blocks):
                continue
            raise ValueError(f"{name}: a tensor this {self.cfg.model_type} decoder does not use "
                             "(a feature moelab does not reproduce, or a config that contradicts "
                             "the weights)")



_DTYPE_OF = {"F32": "float32", "BF16": "bfloat16"}
