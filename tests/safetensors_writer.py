"""Writing safetensors files byte by byte, for dtypes ``safetensors.numpy`` cannot write
(bfloat16, float8) and for broken files. Used by tests/test_io.py and tests/reference/."""

from __future__ import annotations

import json
import struct

__all__ = ["write_raw_safetensors"]


def write_raw_safetensors(path, tensors) -> None:
    """tensors: name -> (safetensors dtype string, shape, raw little-endian bytes)."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
