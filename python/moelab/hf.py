"""Hugging Face checkpoints -> moelab: load the MoE layer of one decoder layer, one at a time.

    layer = moelab.hf.load_moe_layer("path/to/checkpoint", layer_idx=3)
    layer = moelab.hf.load_moe_layer(model.state_dict(), 3, config=model.config)

``source`` is a checkpoint folder (``config.json`` and ``*.safetensors``, sharded with a
``model.safetensors.index.json`` or not), a single ``.safetensors`` file, or a state dict (a
mapping of tensor names to NumPy arrays or torch tensors). Only the tensors of the requested
layer are read: a folder is memory-mapped (``moelab.io``) and each of that layer's tensors is
copied out once, converted to float32 (from float32, float16, bfloat16 or float64), so loading
one layer costs about that layer's size in memory whatever the size of the checkpoint. torch is
never needed (bfloat16 is decoded by ``moelab.io``) and never imported. (The whole-decoder loader,
:func:`load_model`, reads the same tensors in place instead: :func:`moe_weights_in_place`.)

Where a family's checkpoints keep each weight is said by its
:class:`moelab.registry.CheckpointNames` (``moelab.families()``); for decoder layer ``i``, under
any model prefix (``model.``, ``language_model.model.``, ``model.language_model.``, or none):

=========================  =================================================================
MoE block                  ``layers.{i}.mlp.`` | ``layers.{i}.block_sparse_moe.`` (Mixtral
                           files) | ``layers.{i}.feed_forward.`` (Llama 4)
router                     ``gate.weight`` | ``router.weight`` (gpt-oss, Llama 4), ``.bias``
                           (gpt-oss), ``gate.e_score_correction_bias`` (DeepSeek-V3, GLM-4-MoE)
fused experts (5.x)        ``experts.gate_up_proj`` (E, 2I, H) and ``experts.down_proj``
                           (E, H, I); Llama 4 transposed (E, H, 2I) / (E, I, H); gpt-oss
                           transposed with gate/up interleaved on the last axis, and
                           ``experts.gate_up_proj_bias`` / ``experts.down_proj_bias``
per-expert (4.x files)     ``experts.{e}.gate_proj/up_proj/down_proj.weight``; Mixtral
                           ``experts.{e}.w1/w3/w2.weight`` (w1 = gate, w3 = up, w2 = down)
shared experts             ``shared_expert.`` (Qwen2-MoE, Qwen3-Next, Llama 4) |
                           ``shared_experts.`` (DeepSeek-V3, GLM-4-MoE) with
                           ``gate_proj/up_proj/down_proj.weight``; ``shared_expert_gate.weight``
=========================  =================================================================

transformers 5.x ``save_pretrained`` writes the per-expert names for the Mixtral, Qwen, OLMoE,
DeepSeek-V3 and GLM-4-MoE families (it reverses its load-time fusion) and the fused names for
gpt-oss and Llama 4; a model's in-memory ``state_dict()`` has the fused names. Which fused
layout a tensor has is decided by the family, never guessed from its shape.

The layer's :class:`moelab.MoEConfig` comes from ``moelab.from_hf_config(config).moe``; the
weights read are those of ``MoEConfig.weight_shapes()``. Every tensor is located and its dtype
and shape checked before any data is read, and the layer is built only after every tensor was
read and checked: an error never leaves a half-loaded layer behind.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
from tqdm import tqdm

from . import registry
from ._checks import is_int
from .config import MoEConfig
from .hf_config import from_hf_config
from .io import (FLOAT_DTYPES, StateDict, bf16_to_float32, checkpoint_path, config_dict,
                 open_checkpoint, read_config_json)
from .layer import MoELayer
from .decoder import PROGRESS_DELAY_S
from .registry import CheckpointNames, ExpertLayout, MoEBlockNames

__all__ = ["load_moe_layer", "load_moe_weights", "LOADABLE_MODEL_TYPES"]


def __getattr__(name: str):
    if name == "LOADABLE_MODEL_TYPES":  # computed when asked: the registry may have grown
        return registry.loadable_model_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def load_moe_layer(source, layer_idx: int, config=None, progress: Optional[bool] = None
                   ) -> MoELayer:
    """The :class:`moelab.MoELayer` of decoder layer ``layer_idx`` of a Hugging Face model.

    Parameters
    ----------
    source : a checkpoint folder (str or path) with ``config.json`` and ``*.safetensors``
        (optionally sharded with ``model.safetensors.index.json``); a single ``.safetensors``
        file; or a state dict, a mapping of tensor names to NumPy arrays or torch tensors
        (float32, float16, bfloat16 or float64).
    layer_idx : int, the decoder layer, 0 <= layer_idx < num_hidden_layers.
    config : the Hugging Face config: a dict, a path to a ``config.json`` (or its folder), or an
        object with ``to_dict()`` (a ``transformers`` config). Required for a state dict or a
        single file; for a folder it defaults to the folder's ``config.json``.
    progress : a tqdm bar over the tensors read, on stderr: None (default) only on a terminal
        and only once reading has taken ``moelab.decoder.PROGRESS_DELAY_S`` seconds (one layer
        of a large checkpoint is gigabytes), True always, False never.

    Returns
    -------
    MoELayer with ``moelab.from_hf_config(config).moe`` as its config and the checkpoint's
    weights in float32.

    Raises
    ------
    TypeError : a bad argument type (source neither a mapping nor a str / os.PathLike, ...), or
        a tensor of a dtype that cannot be read (float8, MXFP4 blocks, integers), naming the
        tensor.
    IndexError : layer_idx outside [0, num_hidden_layers).
    ValueError : a source path that does not exist (one shaped like a Hub id,
        ``"Qwen/Qwen3-30B-A3B"``, is not downloaded: the message gives the folder form); a
        model type whose layers moelab does not load (``LOADABLE_MODEL_TYPES``); a
        dense layer (naming it); a missing tensor, an unexpected tensor in the layer's MoE
        block, a wrong shape, NaN or Inf, a broken file; each naming the tensor or file.
    """
    cfg, weights = load_moe_weights(source, layer_idx, config, progress=progress)
    layer = MoELayer(cfg)
    layer.load_weights(weights, strict=True)
    return layer


def load_moe_weights(source, layer_idx: int, config=None, progress: Optional[bool] = None
                     ) -> Tuple[MoEConfig, Dict[str, np.ndarray]]:
    """The MoEConfig and the canonical float32 weights of decoder layer ``layer_idx``.

    Same arguments and errors as :func:`load_moe_layer`; returns ``(cfg, weights)`` where
    ``weights`` maps the canonical names of ``cfg.weight_shapes()`` to C-contiguous float32
    arrays of those shapes, ready for ``MoELayer(cfg).load_weights(weights)``.
    """
    source = _checked_source(source)  # what is wrong with the source itself is said first
    hf_config = _resolve_config(source, config)
    cfg, names = _moe_config(hf_config, layer_idx)
    with _open_source(source) as tensors:
        plan = _plan_layer(tensors, layer_idx, cfg, names)
        return cfg, plan.execute(tensors, progress)


def moe_weights_in_place(tensors, hf_config: dict, layer_idx: int,
                         held: Optional[np.ndarray] = None
                         ) -> Tuple[MoEConfig, Dict[str, object], List[str]]:
    """For the decoder loader: ``(cfg, weights, sources)`` of MoE layer ``layer_idx`` of an
    open checkpoint, ``weights`` read in place (``_Plan.in_place``: views into the mapped file,
    per-expert tensors as parts; only gpt-oss's interleaved gate/up and transposed stacks such
    as Llama 4's converted once), ``sources`` the checkpoint tensors they come from. Names,
    shapes and dtypes are checked as by :func:`load_moe_weights`; the values by the layer's
    load.

    held : None (every expert), or (E,) bool, the routed experts to read (an expert-parallel
        rank's): the routed expert stacks are then given expert by expert, ``None`` parts for
        the others, whose tensors (or slices of a fused tensor) are neither checked nor read;
        ``sources`` lists only what is read."""
    cfg, names = _moe_config(hf_config, layer_idx)
    if held is not None:
        held = np.asarray(held, dtype=bool)
        if held.shape != (cfg.num_experts,):
            raise ValueError(f"held: expected ({cfg.num_experts},) bool (E), got {held.shape}")
    plan = _plan_layer(tensors, layer_idx, cfg, names, held)
    return cfg, plan.in_place(tensors, held), plan.sources(held)


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------
def _resolve_config(source, config) -> dict:
    """The Hugging Face config as a dict (from ``config`` or the source folder's config.json)."""
    if config is None:
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            return read_config_json(source)
        raise ValueError("config is required when source is a state dict or a single "
                         ".safetensors file (pass the model's config.json dict or path)")
    return config_dict(config)


def _moe_config(hf_config: dict, layer_idx) -> Tuple[MoEConfig, CheckpointNames]:
    """(the MoEConfig of layer ``layer_idx``, its family's checkpoint names); checks the index
    and the layer."""
    if not is_int(layer_idx):
        raise TypeError(f"layer_idx must be an int, got {type(layer_idx).__name__} {layer_idx!r}")
    layer_idx = int(layer_idx)
    model = from_hf_config(hf_config)
    model_type = model.model_type
    if model.router_variant is not None:
        raise ValueError(f"model_type {model_type!r}: its router ({model.router_variant!r}) is "
                         "not one that moelab reproduces, so its MoE layers cannot be loaded "
                         "exactly")
    fam = registry.lookup(model_type)
    if fam is None or fam.checkpoint is None:
        raise ValueError(f"model_type {model_type!r}: moelab.hf cannot load its MoE layers; "
                         f"supported: {', '.join(registry.loadable_model_types())}")
    n_layers = model.num_hidden_layers
    if not 0 <= layer_idx < n_layers:
        raise IndexError(f"layer_idx={layer_idx} is out of range for a {model_type} model of "
                         f"num_hidden_layers={n_layers}")
    kind = model.ffn_kind(layer_idx)
    if kind != "moe" or model.moe is None:
        raise ValueError(f"layer {layer_idx} of this {model_type} model is a dense layer "
                         f"(ffn_kind={kind!r}), not an MoE layer")
    return model.moe, fam.checkpoint


def _checked_source(source):
    """``source`` when it is a mapping, else its checkpoint folder or file as a Path: a path
    must exist (one shaped like a hub id is not downloaded: the message gives the folder form)
    and be a folder or a ``.safetensors`` file; anything else is a TypeError."""
    if isinstance(source, Mapping):
        return source
    if isinstance(source, (str, os.PathLike)):
        return checkpoint_path(source, "source")
    raise TypeError("source must be a state dict (a mapping of tensor names to NumPy arrays or "
                    "torch tensors) or a checkpoint folder or .safetensors file (a str or "
                    f"os.PathLike), got {type(source).__name__}")


def _open_source(source):
    """A checked source (:func:`_checked_source`) as a tensor source (``moelab.io``)."""
    return StateDict(source) if isinstance(source, Mapping) else open_checkpoint(source)


# ---------------------------------------------------------------------------------------------
# the plan: which checkpoint tensors make each canonical weight, checked before any is read
# ---------------------------------------------------------------------------------------------
Reader = Callable[[str], np.ndarray]


class _Item:
    """One canonical weight: the checkpoint tensors it is made of and how to assemble them,
    as one float32 array (``assemble``) or as the stored arrays themselves (``in_place``), and
    for a routed expert stack how to read it expert by expert (``experts``)."""

    def __init__(self, canonical: str, sources: List[Tuple[str, Tuple[int, ...]]],
                 assemble: Callable[[Reader], np.ndarray],
                 in_place: Optional[Callable[[Reader], object]] = None,
                 experts: Optional["_ExpertSlices"] = None):
        self.canonical = canonical
        self.sources = sources        # [(checkpoint name, expected stored shape)]
        self.assemble = assemble      # read -> canonical float32 array
        # view -> the stored array, or the list of its parts (MoELayer.load_weights), read in
        # place; None: the layout must change, so it is assembled (converted once)
        self.in_place = in_place
        self.experts = experts

    def sources_of(self, held: Optional[np.ndarray]) -> List[Tuple[str, Tuple[int, ...]]]:
        """The sources read when only the experts ``held`` are (all of them for None)."""
        if held is None or self.experts is None:
            return self.sources
        found = [src for e in np.flatnonzero(held) for src in self.experts.sources(int(e))]
        return list(dict.fromkeys(found))  # a fused tensor once, however many experts


class _SliceReader:
    """Reads one expert's slice ``name[e]`` of a tensor (``e=None``: the whole tensor) of an
    open checkpoint, touching nothing else of it: ``stored`` as a view into the mapped file
    when it is float32 or bfloat16 (its values checked by the layer's load), ``float32`` as a
    checked float32 copy (for a layout that must change)."""

    def __init__(self, tensors):
        self.tensors = tensors

    def stored(self, name: str, e: Optional[int] = None) -> np.ndarray:
        if self.tensors.dtype(name) in ("F32", "BF16"):
            view = self.tensors.view(name)
            return view if e is None else view[e]
        return self.float32(name, e)

    def float32(self, name: str, e: Optional[int] = None) -> np.ndarray:
        view = self.tensors.view(name)
        part = view if e is None else view[e]
        arr = (bf16_to_float32(part) if self.tensors.dtype(name) == "BF16"
               else np.ascontiguousarray(part, dtype=np.float32))
        if not np.isfinite(arr).all():
            where = name if e is None else f"{name}[{e}]"
            raise ValueError(f"{where}: holds NaN or Inf")
        return arr


class _ExpertSlices:
    """A routed expert stack read expert by expert (an expert-parallel rank reads only the
    experts it holds): ``sources(e)`` are the checkpoint tensors (name, stored shape) expert
    ``e``'s slice lies in, and ``parts(read, e)`` its ``count`` parts as
    ``MoELayer.load_weights`` takes them (gate and up of ``experts.gate_up_proj``, down of
    ``experts.down_proj``), read through a :class:`_SliceReader`."""

    def __init__(self, count: int, sources: Callable[[int], List[Tuple[str, Tuple[int, ...]]]],
                 parts: Callable[[_SliceReader, int], List[np.ndarray]]):
        self.count = count
        self.sources = sources
        self.parts = parts


class _Plan:
    """The checked list of items of one layer; ``execute`` reads them (float32, canonical)."""

    def __init__(self, items: List[_Item]):
        self.items = items

    def execute(self, tensors, progress: Optional[bool] = None) -> Dict[str, np.ndarray]:
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be None, True or False, got {progress!r}")
        total = sum(len(item.sources) for item in self.items)
        with tqdm(total=total, desc="reading tensors", unit="tensor", leave=False,
                  disable=None if progress is None else not progress,
                  delay=PROGRESS_DELAY_S if progress is None else 0.0) as bar:
            def read(name: str) -> np.ndarray:
                arr = tensors.read_float32(name)
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name}: holds NaN or Inf")
                bar.update(1)
                return arr

            return {item.canonical: item.assemble(read) for item in self.items}

    def in_place(self, tensors, held: Optional[np.ndarray] = None) -> Dict[str, object]:
        """The canonical weights as ``MoELayer.load_weights`` takes them, read where they lie:
        each stored tensor a view into the mapped file (float32 or uint16 bfloat16 bits), a
        weight stored as several tensors given as its parts; only a layout that must change is
        assembled in float32. Nothing is read here: the layer's load checks the values.
        With ``held`` ((E,) bool) the routed expert stacks are given expert by expert, ``None``
        parts for the experts not held (their data never touched)."""
        if held is not None:
            slices = _SliceReader(tensors)
            experts = {item.canonical: [
                part for e, mine in enumerate(held)
                for part in (item.experts.parts(slices, e) if mine else [None] * item.experts.count)]
                for item in self.items if item.experts is not None}
            rest = _Plan([item for item in self.items if item.experts is None])
            return {**rest.in_place(tensors), **experts}
        def view(name: str) -> np.ndarray:
            return tensors.view(name) if tensors.dtype(name) in ("F32", "BF16") else (
                tensors.read_float32(name))

        def read(name: str) -> np.ndarray:
            arr = tensors.read_float32(name)
            if not np.isfinite(arr).all():
                raise ValueError(f"{name}: holds NaN or Inf")
            return arr

        return {item.canonical: item.assemble(read) if item.in_place is None
                else item.in_place(view) for item in self.items}

    def sources(self, held: Optional[np.ndarray] = None) -> List[str]:
        """Every checkpoint tensor the layer is made of (of the experts ``held`` only)."""
        return [name for item in self.items for name, _ in item.sources_of(held)]


def _single(canonical: str, name: str, shape: Tuple[int, ...],
            transform: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> _Item:
    """A canonical weight stored as one tensor (``transform``: stored layout -> canonical)."""
    def assemble(read: Reader) -> np.ndarray:
        arr = read(name)
        return np.ascontiguousarray(transform(arr)) if transform is not None else arr
    return _Item(canonical, [(name, shape)], assemble,
                 None if transform is not None else lambda view: view(name))


def _stacked(canonical: str, parts: List[List[str]], shape: Tuple[int, ...]) -> _Item:
    """A canonical weight of shape ``shape`` assembled from tensors: ``parts[e]`` are the
    tensors stacked along axis 1 of slice ``e`` (along axis 0 when the weight is 2-D), each
    ``shape[-2] // len(parts[e])`` rows."""
    rows = shape[-2] // len(parts[0])
    block = (rows, shape[-1])

    def assemble(read: Reader) -> np.ndarray:
        out = np.empty(shape, dtype=np.float32)                  # (E, R, C) or (R, C)
        view = out if len(shape) == 3 else out[None]             # (E, R, C)
        for e, names in enumerate(parts):
            for j, name in enumerate(names):
                view[e, j * rows:(j + 1) * rows] = read(name)    # (rows, C)
        return out

    def in_place(view: Reader) -> List[np.ndarray]:  # the weight's parts, (rows, C) each
        return [view(name) for names in parts for name in names]

    return _Item(canonical, [(n, block) for names in parts for n in names], assemble, in_place)


def _fused_expert_tensor(canonical: str, name: str, shape: Tuple[int, ...],
                         layout: ExpertLayout) -> _Item:
    """A fused expert tensor (E, out, in) or bias (E, out) stored in ``layout``."""
    matrix = len(shape) == 3
    transposed = matrix and layout.transposed
    stored = (shape[0], shape[2], shape[1]) if transposed else shape
    interleaved = layout.interleaved and canonical.startswith("experts.gate_up_proj")
    axis = 2 if transposed else 1                                # the stored 2I (out) axis

    def to_canonical(a: np.ndarray) -> np.ndarray:
        if interleaved:  # gate0, up0, gate1, up1, ... -> all gates, then all ups
            a = np.concatenate([a.take(np.arange(0, a.shape[axis], 2), axis),
                                a.take(np.arange(1, a.shape[axis], 2), axis)], axis=axis)
        return a.transpose(0, 2, 1) if transposed else a         # (E, out, in)

    item = _single(canonical, name, stored, to_canonical if transposed or interleaved else None)
    if matrix:
        halves = 2 if canonical == "experts.gate_up_proj" else 1

        def parts(read: _SliceReader, e: int) -> List[np.ndarray]:
            if transposed or interleaved:                        # converted, this slice only
                a = np.ascontiguousarray(to_canonical(read.float32(name, e)[None])[0])
            else:
                a = read.stored(name, e)                         # a view into the file
            rows = a.shape[0] // halves                          # (out, in) -> I or H rows
            return [a[j * rows:(j + 1) * rows] for j in range(halves)]

        item.experts = _ExpertSlices(halves, lambda e: [(name, stored)], parts)
    return item


def _find_block(names: Iterable[str], layer_idx: int, moe: MoEBlockNames,
                prefixes: Tuple[str, ...]) -> str:
    """The MoE block prefix ``<prefix>layers.{i}.<block>.`` of the layer, found by its router."""
    pattern = re.compile(r"^(?P<prefix>(?:.*\.)?)layers\.%d\.(?P<block>%s)\.%s\.weight$"
                         % (layer_idx, "|".join(map(re.escape, moe.blocks)),
                            re.escape(moe.router)))
    found = sorted({(m["prefix"], m["block"]) for m in map(pattern.match, names) if m is not None})
    if len(found) > 1:
        preferred = [p for p in prefixes if p in {p for p, _ in found}]
        if preferred:
            found = [f for f in found if f[0] == preferred[0]]
    if not found:
        raise ValueError(f"layer {layer_idx}: no MoE router weight found (looked for "
                         f"'<prefix>layers.{layer_idx}.{{{','.join(moe.blocks)}}}."
                         f"{moe.router}.weight')")
    if len(found) > 1:
        listed = ", ".join(f"{p}layers.{layer_idx}.{b}.{moe.router}.weight" for p, b in found)
        raise ValueError(f"layer {layer_idx}: several MoE routers found, cannot tell which is "
                         f"the decoder's: {listed}")
    prefix, block = found[0]
    return f"{prefix}layers.{layer_idx}.{block}."


def _per_expert_storage(present: set, experts: str, moe: MoEBlockNames, layer_idx: int,
                        cfg: MoEConfig) -> bool:
    """True when the routed experts are stored one tensor per expert (4.x files), False when
    fused (5.x); an error when both are present or the per-expert form lacks the biases."""
    fused = experts + "gate_up_proj" in present or experts + "down_proj" in present
    gate = moe.per_expert[0] if moe.per_expert is not None else None
    per_expert = gate is not None and any(
        re.match(r"%s\d+\.%s\." % (re.escape(experts), re.escape(gate)), n) for n in present)
    if fused and per_expert:
        raise ValueError(f"layer {layer_idx}: both fused ({experts}gate_up_proj) and per-expert "
                         f"({experts}<e>.{gate}.weight) expert tensors are present")
    if per_expert and cfg.expert_bias:
        raise ValueError(f"layer {layer_idx}: per-expert tensors ({experts}0.*) cannot carry the "
                         "expert biases of this model; expected the fused "
                         f"{experts}gate_up_proj and {experts}gate_up_proj_bias")
    return per_expert


def _plan_layer(tensors, layer_idx: int, cfg: MoEConfig, names: CheckpointNames,
                held: Optional[np.ndarray] = None) -> _Plan:
    """Which tensors make up the layer, with dtypes and shapes checked (nothing read yet; of
    the routed experts, only those ``held`` are checked when given)."""
    moe = names.moe
    all_names = tensors.names()
    block = _find_block(all_names, layer_idx, moe, names.decoder_prefixes)
    present = {n for n in all_names if n.startswith(block)}
    experts = f"{block}experts."
    per_expert = _per_expert_storage(present, experts, moe, layer_idx, cfg)
    E = cfg.num_experts

    def item(canonical: str, shape: Tuple[int, ...]) -> _Item:
        group, _, leaf = canonical.partition(".")
        if group == "router":
            return _single(canonical, f"{block}{moe.router}.{leaf}", shape)
        if group == "experts" and not per_expert:
            return _fused_expert_tensor(canonical, experts + leaf, shape, moe.layout)
        if group == "experts" and leaf in ("gate_up_proj", "down_proj"):
            g, u, d = moe.per_expert
            parts = [[f"{experts}{e}.{g}.weight", f"{experts}{e}.{u}.weight"]
                     if leaf == "gate_up_proj" else [f"{experts}{e}.{d}.weight"]
                     for e in range(E)]
            stack = _stacked(canonical, parts, shape)
            block_shape = stack.sources[0][1]
            stack.experts = _ExpertSlices(
                len(parts[0]), lambda e: [(n, block_shape) for n in parts[e]],
                lambda read, e: [read.stored(n) for n in parts[e]])
            return stack
        if group == "shared_experts":
            if moe.shared_experts is None:
                raise ValueError(f"layer {layer_idx}: this config has shared experts, but the "
                                 "family's checkpoints have no shared expert module")
            s = f"{block}{moe.shared_experts}."
            g, u, d = moe.shared_projections
            if leaf == "down_proj":
                return _single(canonical, f"{s}{d}.weight", shape)
            return _stacked(canonical, [[f"{s}{g}.weight", f"{s}{u}.weight"]], shape)
        if group == "shared_expert_gate":
            return _single(canonical, f"{block}{moe.shared_expert_gate}.{leaf}", shape)
        raise NotImplementedError(f"moelab.hf does not know where checkpoints keep {canonical!r}")

    items = [item(canonical, shape) for canonical, shape in cfg.weight_shapes().items()]
    _check_sources(tensors, items, present, layer_idx, cfg, held)
    return _Plan(items)


def _check_sources(tensors, items: List[_Item], present: set, layer_idx: int,
                   cfg: MoEConfig, held: Optional[np.ndarray] = None) -> None:
    """Every tensor read (of the experts ``held`` only, when given) present, readable and of
    the right shape; nothing unexpected in the block."""
    wanted = [src for item in items for src in item.sources_of(held)]
    known = {n for item in items for n, _ in item.sources}  # every expert's, held or not
    missing = [n for n, _ in wanted if n not in present]
    for name in missing:  # stored quantized under other names (gpt-oss MXFP4: _blocks/_scales)
        quantized = [name + suffix for suffix in ("_blocks", "_scales") if name + suffix in present]
        if quantized:
            raise TypeError(f"{name}: stored quantized as {', '.join(quantized)}; moelab reads "
                            "F32, F16, BF16 and F64 tensors only (dequantize the checkpoint first)")
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise ValueError(f"layer {layer_idx}: missing tensor(s) {', '.join(missing[:3])}{more}")
    for name, expected in wanted:
        dtype = tensors.dtype(name)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: dtype {dtype} cannot be read (moelab reads F32, F16, BF16 "
                            "and F64; dequantize float8/MXFP4/integer checkpoints first)")
        shape = tensors.shape(name)
        if shape != expected:
            raise ValueError(f"{name}: expected shape {expected}, got {shape}")
    unexpected = sorted(present - known)
    if unexpected:
        more = f" (and {len(unexpected) - 3} more)" if len(unexpected) > 3 else ""
        raise ValueError(f"layer {layer_idx}: unexpected tensor(s) in the MoE block for this "
                         f"config ({cfg!r}): {', '.join(unexpected[:3])}{more}")
from .hf_decoder import DECODER_MODEL_TYPES, load_model  # noqa: E402,F401  (the whole decoder)
