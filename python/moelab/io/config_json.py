"""Reading a Hugging Face ``config.json``: the one reader every moelab entry point uses."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping

from .local_path import existing_path

__all__ = ["read_config_json", "read_json_object", "config_dict"]


def read_config_json(path) -> Dict[str, Any]:
    """The JSON object of a ``config.json``, given its path or its folder's.

    Raises ValueError naming the file: no such file (a path shaped like a Hub id is not
    downloaded: the message says so), not readable, not valid JSON, or JSON that is not an
    object.
    """
    path = existing_path(path, "config")
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(f"config: no config file at {path} (no such file)")
    return read_json_object(path, "config")


def read_json_object(path, what: str) -> Dict[str, Any]:
    """The JSON object in the file at ``path`` (a checkpoint's config.json, tokenizer_config.json
    ...). Raises ValueError naming ``what`` and the file: not readable, not valid JSON, or JSON
    that is not an object."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what}: {path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path} ({exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{what}: {path} holds a {type(d).__name__}, not a JSON object")
    return d


def config_dict(config) -> Dict[str, Any]:
    """A Hugging Face config as a new dict.

    config : a mapping (a parsed ``config.json``), a path to a ``config.json`` or to its folder,
        or an object with ``to_dict()`` (a ``transformers`` config).

    Raises TypeError for anything else, ValueError as :func:`read_config_json`.
    """
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, (str, os.PathLike)):
        return read_config_json(config)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        d = to_dict()
        if isinstance(d, Mapping):
            return dict(d)
    raise TypeError("config must be a mapping (a parsed config.json), a path to a config.json "
                    "or its folder, or an object with to_dict() (a transformers config), got "
                    f"{type(config).__name__}")
