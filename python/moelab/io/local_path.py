"""Local paths only: what to say when a path given for a model does not exist.

moelab reads files on this machine and downloads nothing. A path that does not exist but is
shaped like a Hugging Face Hub id (``"Qwen/Qwen3-30B-A3B"``) was most likely meant as one, so
the message says how to get the folder instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["existing_path", "looks_like_hub_id"]

# "owner/name": one slash, no leading "." or "/", the characters the Hub allows in both parts
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def looks_like_hub_id(path) -> bool:
    """True for a str shaped like a Hub repository id, ``"owner/name"``."""
    return isinstance(path, str) and _HUB_ID.fullmatch(path) is not None


def existing_path(path, what: str) -> Path:
    """``path`` as a Path when it exists; else ValueError, starting with ``what``, that names it
    and, for something shaped like a Hub id, says that hub ids are not downloaded and gives the
    folder form."""
    p = Path(path)
    if p.exists():
        return p
    if looks_like_hub_id(path):
        name = path.split("/")[1]
        raise ValueError(
            f"{what}: {path!r} is not a local folder, and moelab does not download from the "
            f"Hugging Face Hub. Download it first, e.g. `hf download {path} --local-dir {name}` "
            f"(the huggingface_hub CLI), then pass the folder: {name!r}")
    raise ValueError(f"{what}: {os.fspath(path)!r} does not exist (no such file or folder)")
