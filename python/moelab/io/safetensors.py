"""safetensors checkpoints read without torch: header parse and checks, memory mapping, dtypes.

    with moelab.io.open_checkpoint("path/to/checkpoint") as ckpt:   # a folder or one file
        ckpt.names()                          # every tensor name, in file order
        ckpt.info(name)                       # TensorInfo(dtype="BF16", shape=(V, H))
        w = ckpt.view(name)                   # read-only NumPy view into the mapped file
        w = ckpt.read_float32(name)           # a new float32 array

Format: 8 bytes little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, then the data section; offsets are
relative to its start (byte 8 + N). A folder holds ``model.safetensors``, or shards listed by
``model.safetensors.index.json`` (``{"weight_map": {name: shard}}``), or shards without an
index (their headers then say which holds what).

Every header is parsed and checked when its file is opened, before any tensor byte is read: the
header length against the file size, each entry's dtype, shape and offsets against the data
section, and the byte count against the dtype and shape. A folder's shards are opened lazily,
the first time one of their tensors is asked for.

Each file is memory-mapped once, on the first read. ``view`` returns a read-only array over the
mapping (no copy): float32, float16 and float64 tensors and the integer and bool dtypes in
their own NumPy dtype, bfloat16 as its raw ``uint16`` bit patterns and the float8 formats as raw
``uint8``. A view keeps its mapping alive; ``close()`` (or the end of a ``with`` block) unmaps a
file at once when no view of it is left, and otherwise when its last view is gone.
``read_float32`` copies a floating-point tensor out as float32 (bfloat16 decoded here).
"""

from __future__ import annotations

import json
import math
import mmap
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .local_path import existing_path
from .source import TensorInfo, TensorSource

__all__ = ["ITEMSIZE", "VIEW_DTYPES", "FLOAT_DTYPES", "MAX_HEADER_BYTES",
           "SafetensorsFile", "Checkpoint", "checkpoint_path", "open_checkpoint",
           "bf16_to_float32"]

#: Bytes per element of every safetensors dtype.
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2,
            "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8,
            "U64": 8}
#: The NumPy dtype of ``view()`` per safetensors dtype: the same type where NumPy has it, the
#: raw bits (unsigned ints of the same width) for bfloat16 and the float8 formats.
VIEW_DTYPES = {"BOOL": "?", "U8": "u1", "I8": "i1", "F8_E5M2": "u1", "F8_E4M3": "u1",
               "F8_E8M0": "u1", "I16": "<i2", "U16": "<u2", "F16": "<f2", "BF16": "<u2",
               "I32": "<i4", "U32": "<u4", "F32": "<f4", "F64": "<f8", "I64": "<i8",
               "U64": "<u8"}
#: The dtypes ``read_float32`` converts: float32 exactly, float16 and bfloat16 exactly (every
#: value is a float32), float64 rounded to nearest.
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
#: A header longer than this is taken for a broken file, not parsed.
MAX_HEADER_BYTES = 100 * 1024 * 1024

_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (any shape, uint16) -> a new float32 array of the same shape.

    Exact: a bfloat16 is the high 16 bits of a float32.
    """
    out = np.asarray(bits, dtype=np.uint16).astype(np.uint32)  # a copy
    out <<= 16
    return out.view(np.float32)


def _json_int(value) -> int:
    """A header's dimension or offset: a JSON integer (not a bool, a float such as 1.5 or
    Infinity, or a string); TypeError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


class SafetensorsFile(TensorSource):
    """One ``.safetensors`` file: its header parsed and checked on opening, its data mapped on
    the first read.

    Raises ValueError naming the file when it cannot be read or is not a safetensors file
    (too short, a header length beyond the file, a header that is not a JSON object, an entry
    whose dtype, shape or offsets do not fit the data section).
    """

    def __init__(self, path):
        self.path = Path(path)
        self._map: Optional[mmap.mmap] = None
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ValueError(f"{self.path}: not a safetensors file (shorter than 8 bytes)")
                n = int.from_bytes(head, "little")
                if n > min(size - 8, MAX_HEADER_BYTES):
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
        self._entries: Dict[str, Tuple[TensorInfo, int, int]] = {}
        for name, entry in header.items():
            if name != "__metadata__":
                self._entries[name] = self._checked_entry(name, entry, size - self._data_start)

    def _checked_entry(self, name: str, entry, data_size: int) -> Tuple[TensorInfo, int, int]:
        """(info, begin, end) of one header entry, every field checked against the data size."""
        try:
            dtype = entry["dtype"]
            shape = tuple(_json_int(d) for d in entry["shape"])
            begin, end = (_json_int(o) for o in entry["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"{self.path}: broken header entry for tensor {name!r}: "
                             f"{entry!r}") from None
        if not isinstance(dtype, str) or any(d < 0 for d in shape) or not (
                0 <= begin <= end <= data_size):
            raise ValueError(f"{self.path}: broken header entry for tensor {name!r}: "
                             f"{entry!r} (data section of {data_size} bytes)")
        itemsize = ITEMSIZE.get(dtype)
        if itemsize is not None and end - begin != math.prod(shape) * itemsize:
            raise ValueError(f"{self.path}: tensor {name!r} of dtype {dtype} and shape "
                             f"{shape} should take {math.prod(shape) * itemsize} bytes, "
                             f"the header gives {end - begin}")
        return TensorInfo(dtype, shape), begin, end

    def names(self) -> List[str]:
        """The tensor names, in header order."""
        return list(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def info(self, name: str) -> TensorInfo:
        """dtype and shape of a tensor (KeyError naming it when the file has none of that name)."""
        return self._entry(name)[0]

    def _entry(self, name: str) -> Tuple[TensorInfo, int, int]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor {name!r}") from None

    def view(self, name: str) -> np.ndarray:
        """The tensor as a read-only NumPy array over the mapped file (no copy), of dtype
        ``VIEW_DTYPES[info(name).dtype]`` and the stored shape.

        Raises KeyError (no such tensor) or TypeError (a dtype the format does not define).
        """
        info, begin, _ = self._entry(name)
        if info.dtype not in VIEW_DTYPES:
            raise TypeError(f"{name}: dtype {info.dtype} is not a safetensors dtype moelab knows")
        dtype = np.dtype(VIEW_DTYPES[info.dtype])
        count = math.prod(info.shape)
        if count == 0:
            empty = np.zeros(info.shape, dtype=dtype)
            empty.flags.writeable = False
            return empty
        flat = np.frombuffer(self._mapped(), dtype=dtype, count=count,
                             offset=self._data_start + begin)  # read-only: the map is
        return flat.reshape(info.shape)

    def read_float32(self, name: str) -> np.ndarray:
        """The tensor as a new C-contiguous float32 array of its stored shape.

        Raises KeyError (no such tensor) or TypeError (not one of ``FLOAT_DTYPES``).
        """
        dtype = self.info(name).dtype
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: dtype {dtype} cannot be read as float32 (moelab reads "
                            f"{', '.join(FLOAT_DTYPES)})")
        stored = self.view(name)
        if dtype == "BF16":
            return bf16_to_float32(stored)
        return stored.astype(np.float32)  # always a copy

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            try:
                with open(self.path, "rb") as f:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as exc:
                raise ValueError(f"{self.path}: cannot map ({exc})") from None
        return self._map

    def release_pages(self) -> None:
        """Unmap from this process the pages read so far (``MADV_DONTNEED`` on the read-only
        mapping): the data stays in the page cache, views stay valid, and the next read of a
        page maps it again (a minor fault). What a whole-file check (NaN scan) mapped then no
        longer counts in the process's resident memory; only what the kernels read does."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Give up the mapping: unmapped now when no view of it is left, else with the last view."""
        m, self._map = self._map, None
        if m is not None:
            try:
                m.close()
            except BufferError:  # views still point into it; they keep it alive
                pass

    def __repr__(self) -> str:
        return f"SafetensorsFile({str(self.path)!r}, tensors={len(self._entries)})"


class Checkpoint(TensorSource):
    """A checkpoint folder (one file, or shards with or without an index) or one
    ``.safetensors`` file, as one set of named tensors.

    Same reading methods as :class:`SafetensorsFile`; ``file_of(name)`` says which file holds a
    tensor. Raises ValueError when the folder holds no ``*.safetensors`` file, when its index
    is broken or names a missing shard, or when two shards without an index hold the same
    name; and, when a shard is opened, for any error of :class:`SafetensorsFile`.
    """

    def __init__(self, path):
        path = Path(path)
        self._files: Dict[str, SafetensorsFile] = {}
        if path.is_file():
            self.root = path.parent
            self._where = {name: path.name for name in self._open(path.name).names()}
            return
        self.root = path
        index, single = path / _INDEX, path / _SINGLE
        if index.is_file():
            self._where = _read_index(index)
        elif single.is_file():
            self._where = {name: single.name for name in self._open(single.name).names()}
        else:
            shards = sorted(p.name for p in path.glob("*.safetensors"))
            if not shards:
                raise ValueError(f"{path}: no *.safetensors files (only safetensors checkpoints "
                                 "can be read)")
            self._where = {}
            for shard in shards:
                for name in self._open(shard).names():
                    if name in self._where:
                        raise ValueError(f"{path}: tensor {name!r} is in both "
                                         f"{self._where[name]} and {shard}")
                    self._where[name] = shard

    def _open(self, shard: str) -> SafetensorsFile:
        f = self._files.get(shard)
        if f is None:
            path = self.root / shard
            if not path.is_file():
                raise ValueError(f"{self.root}: shard {shard} named by the index is missing")
            f = self._files[shard] = SafetensorsFile(path)
        return f

    def _file(self, name: str) -> SafetensorsFile:
        try:
            shard = self._where[name]
        except KeyError:
            raise KeyError(f"{self.root}: no tensor {name!r}") from None
        f = self._open(shard)
        if name not in f:
            raise ValueError(f"{self.root}: tensor {name!r} is listed in the index for {shard} "
                             f"but {shard} does not hold it")
        return f

    def names(self) -> List[str]:
        """Every tensor name (index order, or file and header order)."""
        return list(self._where)

    def __contains__(self, name) -> bool:
        return name in self._where

    def file_of(self, name: str) -> Path:
        """The file that holds a tensor (KeyError when none does)."""
        return self._file(name).path

    def info(self, name: str) -> TensorInfo:
        """dtype and shape of a tensor (its shard's header is read if it was not yet)."""
        return self._file(name).info(name)

    def view(self, name: str) -> np.ndarray:
        """A read-only view into the mapped file, no copy (see :meth:`SafetensorsFile.view`)."""
        return self._file(name).view(name)

    def read_float32(self, name: str) -> np.ndarray:
        """A new float32 copy (see :meth:`SafetensorsFile.read_float32`)."""
        return self._file(name).read_float32(name)

    def release_pages(self) -> None:
        """Every mapped file's :meth:`SafetensorsFile.release_pages`."""
        for f in self._files.values():
            f.release_pages()

    def close(self) -> None:
        """Give up every file's mapping (see :meth:`SafetensorsFile.close`)."""
        for f in self._files.values():
            f.close()

    def __repr__(self) -> str:
        shards = len(set(self._where.values()))
        return f"Checkpoint({str(self.root)!r}, tensors={len(self._where)}, files={shards})"


def _read_index(index: Path) -> Dict[str, str]:
    try:
        with open(index, "r", encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        return {str(k): str(v) for k, v in weight_map.items()}
    except (OSError, KeyError, TypeError, AttributeError, UnicodeDecodeError,
            json.JSONDecodeError) as exc:
        raise ValueError(f"{index}: not a safetensors index (a JSON object with a "
                         f"'weight_map'): {exc!r}") from None


def checkpoint_path(path, what: str = "path") -> Path:
    """``path`` as a Path when it is an existing folder or ``.safetensors`` file (what
    :func:`open_checkpoint` opens). Raises TypeError (not a str or path) or ValueError starting
    with ``what``: it does not exist (a path shaped like a Hub id: hub ids are not downloaded),
    or it is another kind of file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str or a path, got {type(path).__name__}")
    path = existing_path(path, what)
    if path.is_dir() or (path.is_file() and path.suffix == ".safetensors"):
        return path
    raise ValueError(f"{what}: {path} is neither a checkpoint folder nor a .safetensors file")


def open_checkpoint(path) -> Checkpoint:
    """A :class:`Checkpoint` of a folder or of one ``.safetensors`` file.

    Raises TypeError or ValueError as :func:`checkpoint_path`, or any error of
    :class:`Checkpoint`.
    """
    return Checkpoint(checkpoint_path(path))
