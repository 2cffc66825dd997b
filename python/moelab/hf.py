"""Hugging Face checkpoints -> moelab: load the MoE layer of one decoder layer, one at a time.

    layer = moelab.hf.load_moe_layer("path/to/checkpoint", layer_idx=3)
    layer = moelab.hf.load_moe_layer(model.state_dict(), 3, config=model.config)

``source`` is a checkpoint folder (``config.json`` and ``*.safetensors``, sharded with a
``model.safetensors.index.json`` or not), a single ``.safetensors`` file, or a state dict (a
mapping of tensor names to NumPy arrays or torch tensors). Only the tensors of the requested
layer are read: a folder is memory-mapped and each of that layer's tensors is copied out once,
converted to float32 (from float32, float16, bfloat16 or float64), so loading one layer costs
about that layer's size in memory whatever the size of the checkpoint. torch is never needed
(bfloat16 is decoded here) and never imported.

Names understood, per decoder layer ``i`` under any model prefix (``model.``,
``language_model.model.``, ``model.language_model.``, or none):

=========================  =================================================================
MoE block                  ``layers.{i}.mlp.`` | ``layers.{i}.block_sparse_moe.`` (Mixtral,
                           PhiMoE files) | ``layers.{i}.feed_forward.`` (Llama 4)
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
layout a tensor has is decided by the model type, never guessed from its shape.

The layer's :class:`moelab.MoEConfig` comes from ``moelab.from_hf_config(config).moe``.
Every tensor is located and its dtype and shape checked before any data is read, and the
layer is built only after every tensor was read and checked: an error never leaves a
half-loaded layer behind.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .config import MoEConfig
from .layer import MoELayer
from .model import PROGRESS_DELAY_S

__all__ = ["load_moe_layer", "load_moe_weights", "SUPPORTED_MODEL_TYPES"]

#: model_type -> layout of the fused expert tensors ("stacked": (E, 2I, H) and (E, H, I);
#: "transposed": (E, H, 2I) and (E, I, H), gate columns first; "transposed_interleaved":
#: transposed with gate and up interleaved along the last axis, gpt-oss).
_FUSED_LAYOUT = {
    "mixtral": "stacked",
    "qwen2_moe": "stacked",
    "qwen3_moe": "stacked",
    "qwen3_next": "stacked",
    "olmoe": "stacked",
    "deepseek_v3": "stacked",
    "kimi_k2": "stacked",
    "glm4_moe": "stacked",
    "llama4": "transposed",
    "llama4_text": "transposed",
    "gpt_oss": "transposed_interleaved",
}
#: The Hugging Face ``model_type`` values whose MoE layers :func:`load_moe_layer` reads.
SUPPORTED_MODEL_TYPES = tuple(sorted(_FUSED_LAYOUT))

_BLOCKS = ("mlp", "block_sparse_moe", "feed_forward")
_ROUTERS = ("gate", "router")
_PER_EXPERT_NAMES = (("gate_proj", "up_proj", "down_proj"), ("w1", "w3", "w2"))
_SHARED_MODULES = ("shared_expert", "shared_experts")
# When a checkpoint holds the same layer index under several prefixes (e.g. Qwen3-Next's
# ``mtp.layers.0``), the decoder is the one under one of these.
_DECODER_PREFIXES = ("model.", "", "model.language_model.", "language_model.model.",
                     "language_model.")

# safetensors dtype -> (NumPy dtype of the stored bytes, converter to float32)
_BF16 = "BF16"
_READABLE = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}
_SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
                         "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4,
                         "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


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
        and only once reading has taken ``moelab.model.PROGRESS_DELAY_S`` seconds (one layer of a
        large checkpoint is gigabytes), True always, False never.

    Returns
    -------
    MoELayer with ``moelab.from_hf_config(config).moe`` as its config and the checkpoint's
    weights in float32.

    Raises
    ------
    TypeError : a bad argument type, or a tensor of a dtype that cannot be read (float8,
        MXFP4 blocks, integers), naming the tensor.
    IndexError : layer_idx outside [0, num_hidden_layers).
    ValueError : an unsupported model type; a dense layer (naming it); a missing tensor, an
        unexpected tensor in the layer's MoE block, a wrong shape, NaN or Inf, a broken file;
        each naming the tensor or file.
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
    hf_config = _resolve_config(source, config)
    cfg, model_type = _moe_config(hf_config, layer_idx)
    tensors = _open_source(source)
    plan = _plan_layer(tensors, layer_idx, cfg, model_type)
    return cfg, plan.execute(tensors, progress)


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------
def _resolve_config(source, config) -> dict:
    """The Hugging Face config as a dict (from ``config`` or the source folder's config.json)."""
    if config is None:
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            return _read_config_file(Path(source) / "config.json")
        raise ValueError("config is required when source is a state dict or a single "
                         ".safetensors file (pass the model's config.json dict or path)")
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        return _read_config_file(path / "config.json" if path.is_dir() else path)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        d = to_dict()
        if isinstance(d, Mapping):
            return dict(d)
    raise TypeError("config must be a dict, a path to a config.json, or an object with "
                    f"to_dict() (a transformers config), got {type(config).__name__}")


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"config: no config file at {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"config: cannot read {path} as JSON ({exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"config: {path} does not hold a JSON object")
    return d


def _moe_config(hf_config: dict, layer_idx) -> Tuple[MoEConfig, str]:
    """(the MoEConfig of layer ``layer_idx``, the model type); checks the index and the layer."""
    from .hf_config import from_hf_config  # the config mapping lives in its own module

    if isinstance(layer_idx, bool) or not isinstance(layer_idx, (int, np.integer)):
        raise TypeError(f"layer_idx must be an int, got {type(layer_idx).__name__} {layer_idx!r}")
    layer_idx = int(layer_idx)
    model = from_hf_config(hf_config)
    model_type = model.model_type
    if model.router_variant is not None:
        raise ValueError(f"model_type {model_type!r}: its router ({model.router_variant!r}) is "
                         "not one that moelab reproduces, so its MoE layers cannot be loaded "
                         "exactly")
    if model_type not in _FUSED_LAYOUT:
        raise ValueError(f"model_type {model_type!r}: moelab.hf cannot load its MoE layers; "
                         f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    n_layers = model.num_hidden_layers
    if not 0 <= layer_idx < n_layers:
        raise IndexError(f"layer_idx={layer_idx} is out of range for a {model_type} model of "
                         f"num_hidden_layers={n_layers}")
    kind = model.ffn_kind(layer_idx)
    if kind != "moe" or model.moe is None:
        raise ValueError(f"layer {layer_idx} of this {model_type} model is a dense layer "
                         f"(ffn_kind={kind!r}), not an MoE layer")
    return model.moe, model_type


# ---------------------------------------------------------------------------------------------
# tensor sources: a state dict, or safetensors files read through mmap
# ---------------------------------------------------------------------------------------------
class _TensorSource:
    """Names, shapes and dtypes of tensors without reading them; ``read`` gives float32."""

    def names(self) -> Sequence[str]:
        raise NotImplementedError

    def shape(self, name: str) -> Tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, name: str) -> str:
        """The stored dtype, as a safetensors dtype string ("F32", "BF16", "F8_E4M3", ...)."""
        raise NotImplementedError

    def read(self, name: str) -> np.ndarray:
        """The tensor as a new C-contiguous float32 array of its stored shape."""
        raise NotImplementedError


_TORCH_DTYPES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16",
                 "torch.float64": "F64"}
_NUMPY_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


class _MappingSource(_TensorSource):
    """A state dict: names -> NumPy arrays or torch tensors (torch is not imported)."""

    def __init__(self, state: Mapping):
        self._state = state
        for name in state:
            if not isinstance(name, str):
                raise TypeError(f"source: state dict keys must be str, got "
                                f"{type(name).__name__} {name!r}")

    def names(self) -> Sequence[str]:
        return list(self._state.keys())

    def _value(self, name: str):
        value = self._state[name]
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(f"{name}: expected a NumPy array or a torch tensor, got "
                            f"{type(value).__name__}")
        return value

    def shape(self, name: str) -> Tuple[int, ...]:
        return tuple(int(d) for d in self._value(name).shape)

    def dtype(self, name: str) -> str:
        value = self._value(name)
        key = str(value.dtype)
        if _is_torch_tensor(value):
            return _TORCH_DTYPES.get(key, key)
        return _NUMPY_DTYPES.get(np.dtype(value.dtype).name, key)

    def read(self, name: str) -> np.ndarray:
        value = self._value(name)
        if _is_torch_tensor(value):
            value = value.detach().cpu()
            if str(value.dtype) == "torch.bfloat16":
                value = value.float()
            value = value.numpy()
        return np.array(value, dtype=np.float32, order="C", copy=True)


def _is_torch_tensor(value) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


class _SafetensorsFile:
    """One ``.safetensors`` file: its header parsed and checked; tensors read through mmap.

    Format: 8 bytes little-endian header length N, N bytes of JSON ``{name: {"dtype",
    "shape", "data_offsets": [begin, end]}}``, then the data; offsets are relative to 8 + N.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ValueError(f"{self.path}: not a safetensors file (shorter than 8 bytes)")
                n = int.from_bytes(head, "little")
                if n > min(size - 8, _MAX_HEADER_BYTES):
                    raise ValueError(f"{self.path}: not a safetensors file (header length {n} "
                                     f"for a file of {size} bytes)")
                raw = f.read(n)
        except OSError as exc:
            raise ValueError(f"{self.path}: cannot read ({exc})") from None
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: broken safetensors header ({exc})") from None
        if not isinstance(header, dict):
            raise ValueError(f"{self.path}: broken safetensors header (not a JSON object)")
        self._data_start = 8 + n
        data_size = size - self._data_start
        self._entries: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype = info["dtype"]
                shape = tuple(int(d) for d in info["shape"])
                begin, end = (int(o) for o in info["data_offsets"])
            except (TypeError, KeyError, ValueError):
                raise ValueError(f"{self.path}: broken header entry for tensor {name!r}: "
                                 f"{info!r}") from None
            if not isinstance(dtype, str) or any(d < 0 for d in shape) or not (
                    0 <= begin <= end <= data_size):
                raise ValueError(f"{self.path}: broken header entry for tensor {name!r}: "
                                 f"{info!r} (data section of {data_size} bytes)")
            itemsize = _SAFETENSORS_ITEMSIZE.get(dtype)
            if itemsize is not None and end - begin != math.prod(shape) * itemsize:
                raise ValueError(f"{self.path}: tensor {name!r} of dtype {dtype} and shape "
                                 f"{shape} should take {math.prod(shape) * itemsize} bytes, "
                                 f"the header gives {end - begin}")
            self._entries[name] = (dtype, shape, begin, end)

    def names(self) -> List[str]:
        return list(self._entries)

    def entry(self, name: str) -> Tuple[str, Tuple[int, ...], int, int]:
        return self._entries[name]

    def read(self, name: str) -> np.ndarray:
        dtype, shape, begin, end = self._entries[name]
        count = math.prod(shape)
        if count == 0:
            return np.zeros(shape, dtype=np.float32)
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            raw = np.frombuffer(mm, dtype=_READABLE[dtype], count=count,
                                offset=self._data_start + begin)  # a view into the mapping
            if dtype == _BF16:  # bfloat16 = the high 16 bits of a float32
                out = raw.astype(np.uint32)
                out <<= 16
                out = out.view(np.float32)
            else:
                out = raw.astype(np.float32)  # always a copy
            del raw  # the mapping can close only once no view of it is left
        return out.reshape(shape)


class _CheckpointSource(_TensorSource):
    """A checkpoint folder (sharded or not) or one ``.safetensors`` file; headers read lazily."""

    def __init__(self, path: Path):
        self._files: Dict[str, _SafetensorsFile] = {}
        if path.is_file():
            self._root = path.parent
            self._where = {name: path.name for name in self._open(path.name).names()}
            return
        self._root = path
        index = path / "model.safetensors.index.json"
        single = path / "model.safetensors"
        if index.is_file():
            try:
                with open(index, "r", encoding="utf-8") as f:
                    weight_map = json.load(f)["weight_map"]
                self._where = {str(k): str(v) for k, v in weight_map.items()}
            except (OSError, KeyError, TypeError, AttributeError, UnicodeDecodeError,
                    json.JSONDecodeError) as exc:
                raise ValueError(f"{index}: not a safetensors index (a JSON object with a "
                                 f"'weight_map'): {exc!r}") from None
        elif single.is_file():
            self._where = {name: single.name for name in self._open(single.name).names()}
        else:
            shards = sorted(p.name for p in path.glob("*.safetensors"))
            if not shards:
                raise ValueError(f"source: no *.safetensors files in {path} (only safetensors "
                                 "checkpoints can be read)")
            self._where = {}
            for shard in shards:
                for name in self._open(shard).names():
                    if name in self._where:
                        raise ValueError(f"source: tensor {name!r} is in both "
                                         f"{self._where[name]} and {shard}")
                    self._where[name] = shard

    def _open(self, shard: str) -> _SafetensorsFile:
        f = self._files.get(shard)
        if f is None:
            path = self._root / shard
            if not path.is_file():
                raise ValueError(f"source: shard {shard} named by the index is missing from "
                                 f"{self._root}")
            f = self._files[shard] = _SafetensorsFile(path)
        return f

    def _entry(self, name: str):
        shard = self._where[name]
        f = self._open(shard)
        try:
            return f, f.entry(name)
        except KeyError:
            raise ValueError(f"source: tensor {name!r} is listed in the index for {shard} but "
                             f"{shard} does not hold it") from None

    def names(self) -> Sequence[str]:
        return list(self._where)

    def shape(self, name: str) -> Tuple[int, ...]:
        return self._entry(name)[1][1]

    def dtype(self, name: str) -> str:
        return self._entry(name)[1][0]

    def read(self, name: str) -> np.ndarray:
        f, _ = self._entry(name)
        return f.read(name)


def _open_source(source) -> _TensorSource:
    if isinstance(source, Mapping):
        return _MappingSource(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir() or (path.is_file() and path.suffix == ".safetensors"):
            return _CheckpointSource(path)
        raise ValueError(f"source: {path} is neither a checkpoint folder nor a .safetensors file")
    raise TypeError("source must be a state dict (mapping of name -> array/tensor) or a path to "
                    f"a checkpoint folder or .safetensors file, got {type(source).__name__}")


# ---------------------------------------------------------------------------------------------
# locating a layer's tensors and converting them to the canonical layout
# ---------------------------------------------------------------------------------------------
class _Item:
    """One canonical weight: the checkpoint tensors it is made of and how to assemble them."""

    def __init__(self, canonical: str, sources: List[Tuple[str, Tuple[int, ...]]],
                 assemble: Callable[[Callable[[str], np.ndarray]], np.ndarray]):
        self.canonical = canonical
        self.sources = sources        # [(checkpoint name, expected stored shape)]
        self.assemble = assemble      # read -> canonical float32 array


class _Plan:
    """The checked list of items of one layer; ``execute`` reads them (float32, canonical)."""

    def __init__(self, items: List[_Item]):
        self.items = items

    def execute(self, tensors: _TensorSource, progress: Optional[bool] = None
                ) -> Dict[str, np.ndarray]:
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be None, True or False, got {progress!r}")
        total = sum(len(item.sources) for item in self.items)
        with tqdm(total=total, desc="reading tensors", unit="tensor", leave=False,
                  disable=None if progress is None else not progress,
                  delay=PROGRESS_DELAY_S if progress is None else 0.0) as bar:
            def read(name: str) -> np.ndarray:
                arr = tensors.read(name)
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name}: holds NaN or Inf")
                bar.update(1)
                return arr

            return {item.canonical: item.assemble(read) for item in self.items}


def _find_block(names: Iterable[str], layer_idx: int) -> Tuple[str, str]:
    """(block prefix ``...layers.{i}.<block>.``, router module name) of the MoE layer."""
    pattern = re.compile(r"^(?P<prefix>(?:.*\.)?)layers\.%d\.(?P<block>%s)\.(?P<router>%s)\.weight$"
                         % (layer_idx, "|".join(_BLOCKS), "|".join(_ROUTERS)))
    found = sorted({(m["prefix"], m["block"], m["router"])
                    for m in map(pattern.match, names) if m is not None})
    if len(found) > 1:
        prefixes = {p for p, _, _ in found}
        preferred = [p for p in _DECODER_PREFIXES if p in prefixes]
        if preferred:
            found = [f for f in found if f[0] == preferred[0]]
    if not found:
        raise ValueError(f"layer {layer_idx}: no MoE router weight found (looked for "
                         f"'<prefix>layers.{layer_idx}.{{{','.join(_BLOCKS)}}}."
                         f"{{{','.join(_ROUTERS)}}}.weight')")
    if len(found) > 1:
        listed = ", ".join(f"{p}layers.{layer_idx}.{b}.{r}.weight" for p, b, r in found)
        raise ValueError(f"layer {layer_idx}: several MoE routers found, cannot tell which is "
                         f"the decoder's: {listed}")
    prefix, block, router = found[0]
    return f"{prefix}layers.{layer_idx}.{block}.", router


def _plan_layer(tensors: _TensorSource, layer_idx: int, cfg: MoEConfig, model_type: str) -> _Plan:
    """Which tensors make up the layer, with dtypes and shapes checked (nothing read yet)."""
    names = tensors.names()
    block, router = _find_block(names, layer_idx)
    present = {n for n in names if n.startswith(block)}
    E, H, I, S = (cfg.num_experts, cfg.hidden_size, cfg.moe_intermediate_size, cfg.shared_width)
    layout = _FUSED_LAYOUT[model_type]
    items: List[_Item] = []

    def single(canonical, name, shape, transform=None):
        def assemble(read):
            arr = read(name)
            return np.ascontiguousarray(transform(arr)) if transform is not None else arr
        items.append(_Item(canonical, [(name, shape)], assemble))

    # router
    r = f"{block}{router}."
    single("router.weight", r + "weight", (E, H))
    if cfg.router_bias:
        single("router.bias", r + "bias", (E,))
    if cfg.correction_bias:
        single("router.e_score_correction_bias", r + "e_score_correction_bias", (E,))

    # routed experts: fused (5.x) or one tensor per expert (4.x files)
    x = f"{block}experts."
    fused = x + "gate_up_proj" in present or x + "down_proj" in present
    per_expert = [trio for trio in _PER_EXPERT_NAMES
                  if any(re.match(r"%s\d+\.%s\." % (re.escape(x), trio[0]), n) for n in present)]
    if fused and per_expert:
        raise ValueError(f"layer {layer_idx}: both fused ({x}gate_up_proj) and per-expert "
                         f"({x}<e>.{per_expert[0][0]}.weight) expert tensors are present")
    if fused or not per_expert:
        if layout == "stacked":
            single("experts.gate_up_proj", x + "gate_up_proj", (E, 2 * I, H))
            single("experts.down_proj", x + "down_proj", (E, H, I))
        elif layout == "transposed":  # Llama 4: x @ W, gate columns then up columns
            single("experts.gate_up_proj", x + "gate_up_proj", (E, H, 2 * I),
                   lambda a: a.transpose(0, 2, 1))
            single("experts.down_proj", x + "down_proj", (E, I, H), lambda a: a.transpose(0, 2, 1))
        else:  # gpt-oss: x @ W, columns gate0, up0, gate1, up1, ...
            single("experts.gate_up_proj", x + "gate_up_proj", (E, H, 2 * I),
                   lambda a: np.concatenate([a[:, :, 0::2], a[:, :, 1::2]], axis=2)
                   .transpose(0, 2, 1))
            single("experts.down_proj", x + "down_proj", (E, I, H), lambda a: a.transpose(0, 2, 1))
        if cfg.expert_bias:
            if layout == "transposed_interleaved":
                single("experts.gate_up_proj_bias", x + "gate_up_proj_bias", (E, 2 * I),
                       lambda a: np.concatenate([a[:, 0::2], a[:, 1::2]], axis=1))
            else:
                single("experts.gate_up_proj_bias", x + "gate_up_proj_bias", (E, 2 * I))
            single("experts.down_proj_bias", x + "down_proj_bias", (E, H))
    else:
        if cfg.expert_bias:
            raise ValueError(f"layer {layer_idx}: per-expert tensors ({x}0.*) cannot carry the "
                             "expert biases of this model; expected the fused "
                             f"{x}gate_up_proj and {x}gate_up_proj_bias")
        g, u, d = per_expert[0]
        gate_names = [f"{x}{e}.{g}.weight" for e in range(E)]
        up_names = [f"{x}{e}.{u}.weight" for e in range(E)]
        down_names = [f"{x}{e}.{d}.weight" for e in range(E)]

        def assemble_gate_up(read):
            out = np.empty((E, 2 * I, H), dtype=np.float32)  # (E, 2I, H)
            for e in range(E):
                out[e, :I] = read(gate_names[e])            # (I, H)
                out[e, I:] = read(up_names[e])              # (I, H)
            return out

        def assemble_down(read):
            out = np.empty((E, H, I), dtype=np.float32)      # (E, H, I)
            for e in range(E):
                out[e] = read(down_names[e])                # (H, I)
            return out

        items.append(_Item("experts.gate_up_proj",
                           [(n, (I, H)) for pair in zip(gate_names, up_names) for n in pair],
                           assemble_gate_up))
        items.append(_Item("experts.down_proj", [(n, (H, I)) for n in down_names], assemble_down))

    # shared experts
    if S:
        modules = [m for m in _SHARED_MODULES if any(n.startswith(f"{block}{m}.") for n in present)]
        if len(modules) > 1:
            raise ValueError(f"layer {layer_idx}: both {block}shared_expert.* and "
                             f"{block}shared_experts.* are present")
        s = f"{block}{modules[0] if modules else _SHARED_MODULES[0]}."
        gate_name, up_name, down_name = (f"{s}{p}.weight" for p in ("gate_proj", "up_proj",
                                                                    "down_proj"))

        def assemble_shared(read):
            out = np.empty((2 * S, H), dtype=np.float32)     # (2S, H)
            out[:S] = read(gate_name)                       # (S, H)
            out[S:] = read(up_name)                         # (S, H)
            return out

        items.append(_Item("shared_experts.gate_up_proj", [(gate_name, (S, H)), (up_name, (S, H))],
                           assemble_shared))
        single("shared_experts.down_proj", down_name, (H, S))
    if cfg.shared_expert_gate:
        single("shared_expert_gate.weight", f"{block}shared_expert_gate.weight", (1, H))

    # every tensor present, readable and of the right shape; nothing unexpected in the block
    wanted = [src for item in items for src in item.sources]
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
        if dtype not in _READABLE:
            raise TypeError(f"{name}: dtype {dtype} cannot be read (moelab reads F32, F16, BF16 "
                            "and F64; dequantize float8/MXFP4/integer checkpoints first)")
        shape = tensors.shape(name)
        if shape != expected:
            raise ValueError(f"{name}: expected shape {expected}, got {shape}")
    unexpected = sorted(present - {n for n, _ in wanted})
    if unexpected:
        more = f" (and {len(unexpected) - 3} more)" if len(unexpected) > 3 else ""
        raise ValueError(f"layer {layer_idx}: unexpected tensor(s) in the MoE block for this "
                         f"config ({cfg!r}): {', '.join(unexpected[:3])}{more}")
    return _Plan(items)
