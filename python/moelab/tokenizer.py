"""Tokenizer: a checkpoint folder's tokenizer.json through the `tokenizers` library.

The special tokens and the chat template are read from the folder's files the way transformers
reads them, so that ``Tokenizer.from_pretrained(path)`` gives the ids, text and chat renderings
of ``transformers.AutoTokenizer.from_pretrained(path)`` for a tokenizer.json checkpoint:

- special tokens (bos, eos, unk, sep, pad, cls, mask) from ``tokenizer_config.json``; where
  that file has no ``added_tokens_decoder`` (an older save), ``special_tokens_map.json``
  overrides it. A named special token missing from the vocabulary is added as a special token.
- the special tokens that ``encode(..., add_special_tokens=True)`` adds are those of
  tokenizer.json's post-processor; ``add_bos_token`` / ``add_eos_token`` in
  ``tokenizer_config.json`` are ignored, as transformers (5.x) ignores them when a
  tokenizer.json is present.
- the chat template from ``chat_template.jinja`` if present, else ``tokenizer_config.json``'s
  ``chat_template`` (a string, or a list of named templates of which "default" is used),
  rendered in a sandboxed jinja2 environment with the globals transformers provides.
- the ids that end generation (``stop_ids``) from ``generation_config.json``'s
  ``eos_token_id``, else ``config.json``'s, else the tokenizer's eos token: what transformers'
  ``generate`` stops on.

Only local folders are read; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .io.config_json import read_json_object
from .io.local_path import existing_path

__all__ = ["Tokenizer"]

# The named special tokens of a transformers tokenizer, in its order.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                       "cls_token", "mask_token")


def _read_json(folder: str, name: str) -> Dict[str, Any]:
    """The JSON object in folder/name, {} if there is no such file (ValueError naming the file
    as read_json_object for an unreadable one)."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return {}
    return read_json_object(path, name)


def _token_content(value: Any, key: str, path: str) -> Optional[Tuple[str, bool, bool, bool]]:
    """(content, lstrip, rstrip, normalized) of a special token written as a string or as an
    AddedToken dict; None for null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value, False, False, False
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return (value["content"], bool(value.get("lstrip", False)), bool(value.get("rstrip", False)),
                bool(value.get("normalized", False)))
    raise ValueError(f"{path}: {key} must be a string, a token object or null, got {value!r}")


def _stop_ids(value: Any, key: str) -> Optional[Tuple[int, ...]]:
    """eos_token_id of a generation or model config: an int or a list of ints -> a tuple."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"{key}: expected a token id or a list of token ids, got {value!r}")
    return tuple(values)


def _compile_chat_template(template: str):
    """The template compiled in the sandboxed environment transformers renders chat templates
    in: trim_blocks, lstrip_blocks, loop controls, ``raise_exception``, ``strftime_now``, a
    ``tojson`` that keeps non-ASCII text and takes indent/separators/sort_keys."""
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 is a dependency
        raise ImportError("apply_chat_template needs jinja2: pip install 'jinja2>=3.1.6'") from e

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


class Tokenizer:
    """A checkpoint's tokenizer: text <-> token ids, special tokens, chat template.

    Build it with ``Tokenizer.from_pretrained(folder)``. Attributes: ``bos_token``,
    ``eos_token``, ``unk_token``, ``sep_token``, ``pad_token``, ``cls_token``, ``mask_token``
    (str or None) and the matching ``*_token_id`` (int or None); ``stop_ids`` (tuple of int,
    the ids that end generation); ``chat_template`` (str or None); ``vocab_size`` (int, added
    tokens included).
    """

    def __init__(self, backend, special_tokens: Dict[str, str], chat_template: Optional[str],
                 stop_ids: Tuple[int, ...], path: str):
        self._backend = backend
        self._special = dict(special_tokens)
        self.chat_template = chat_template
        self.stop_ids = stop_ids
        self.path = path
        self._compiled_template = None

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path) -> "Tokenizer":
        """Read the tokenizer of a local checkpoint folder.

        path : str or os.PathLike, a folder holding ``tokenizer.json`` (and optionally
            ``tokenizer_config.json``, ``special_tokens_map.json``, ``chat_template.jinja``,
            ``generation_config.json``, ``config.json``).
        Raises ``TypeError`` if path is not a str or PathLike, ``ValueError`` if it is not an
        existing folder (a Hub id is refused: nothing is downloaded), has no tokenizer.json,
        or a file in it is malformed.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a str or os.PathLike folder, got {type(path).__name__}")
        if not existing_path(path, "path").is_dir():
            raise ValueError(f"path: {os.fspath(path)!r} is a file, not a checkpoint folder")
        folder = os.fspath(path)
        tokenizer_file = os.path.join(folder, "tokenizer.json")
        if not os.path.isfile(tokenizer_file):
            raise ValueError(f"path: {folder!r} has no tokenizer.json (moelab reads only the "
                             "tokenizers library's format, not sentencepiece or vocab files)")
        from tokenizers import AddedToken, Tokenizer as Backend

        try:
            backend = Backend.from_file(tokenizer_file)
        except Exception as e:  # the Rust library raises a plain Exception
            raise ValueError(f"{tokenizer_file}: not a readable tokenizer.json ({e})") from e

        config_path = os.path.join(folder, "tokenizer_config.json")
        config = _read_json(folder, "tokenizer_config.json")
        tokens: Dict[str, Tuple[str, bool, bool, bool]] = {}
        for name in SPECIAL_TOKEN_NAMES:
            token = _token_content(config.get(name), name, config_path)
            if token is not None:
                tokens[name] = token
        if "added_tokens_decoder" not in config:  # an older save: the map overrides the config
            map_path = os.path.join(folder, "special_tokens_map.json")
            for name, value in _read_json(folder, "special_tokens_map.json").items():
                if name in SPECIAL_TOKEN_NAMES:
                    token = _token_content(value, name, map_path)
                    if token is not None:
                        tokens[name] = token

        missing = [t for t in tokens.values() if backend.token_to_id(t[0]) is None]
        if missing:
            backend.add_special_tokens([AddedToken(c, lstrip=l, rstrip=r, normalized=n, special=True)
                                        for c, l, r, n in missing])
        special = {name: t[0] for name, t in tokens.items()}

        template_file = os.path.join(folder, "chat_template.jinja")
        chat_template = config.get("chat_template")
        if os.path.isfile(template_file):
            with open(template_file, encoding="utf-8") as f:
                chat_template = f.read()
        elif isinstance(chat_template, list):  # named templates: [{"name", "template"}, ...]
            named = {t.get("name"): t.get("template") for t in chat_template if isinstance(t, dict)}
            chat_template = named.get("default")
        if chat_template is not None and not isinstance(chat_template, str):
            raise ValueError(f"{config_path}: chat_template must be a string or a list of "
                             f"named templates, got {type(chat_template).__name__}")

        stop = _stop_ids(_read_json(folder, "generation_config.json").get("eos_token_id"),
                         "generation_config.json: eos_token_id")
        if stop is None:
            stop = _stop_ids(_read_json(folder, "config.json").get("eos_token_id"),
                             "config.json: eos_token_id")
        if stop is None:
            eos_id = backend.token_to_id(special["eos_token"]) if "eos_token" in special else None
            stop = () if eos_id is None else (eos_id,)
        return cls(backend, special, chat_template, stop, folder)

    # ---------------------------------------------------------------- special tokens
    def __getattr__(self, name: str):
        special = self.__dict__.get("_special", {})
        if name in SPECIAL_TOKEN_NAMES:
            return special.get(name)
        if name.endswith("_id") and name[:-3] in SPECIAL_TOKEN_NAMES:
            token = special.get(name[:-3])
            return None if token is None else self._backend.token_to_id(token)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def special_tokens_map(self) -> Dict[str, str]:
        """{"bos_token": "<s>", ...}: the named special tokens that are set."""
        return {name: self._special[name] for name in SPECIAL_TOKEN_NAMES if name in self._special}

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    # ---------------------------------------------------------------- text <-> ids
    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """Token ids of ``text`` (with the post-processor's special tokens if asked)."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        return list(self._backend.encode(text, add_special_tokens=bool(add_special_tokens)).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of the token ids ``ids`` (a sequence or 1-D array of ints in [0, vocab_size)).

        Raises ``TypeError`` for a non-integer id, ``IndexError`` naming ``ids`` and the
        vocabulary size for an id out of range.
        """
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(f"ids: expected a sequence of ints, got {type(ids).__name__}")
        values = []
        for i in ids:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise TypeError(f"ids: expected ints, got {type(i).__name__}")
            values.append(int(i))
        V = self.vocab_size
        bad = [i for i in values if not 0 <= i < V]
        if bad:
            raise IndexError(f"ids: {bad[0]} is out of range for a vocabulary of V={V} ids")
        return self._backend.decode(values, skip_special_tokens=bool(skip_special_tokens))

    # ---------------------------------------------------------------- chat
    def apply_chat_template(self, messages: Sequence[Dict[str, Any]], add_generation_prompt: bool = True,
                            tokenize: bool = False, **kwargs):
        """Render ``messages`` (``[{"role": ..., "content": ...}, ...]``) with the chat template.

        The template sees ``messages`` (keys whose value is None dropped, as transformers
        does), ``add_generation_prompt``, the special tokens by name (``bos_token``, ...) and
        ``kwargs``. Returns the text, or its ids when ``tokenize=True`` (encoded without
        adding special tokens: the template writes them). Raises ``ValueError`` when the
        checkpoint has no chat template or ``messages`` is empty, ``TypeError`` when a message
        is not a dict, and jinja2's ``TemplateError`` from the template's ``raise_exception``.
        """
        if self.chat_template is None:
            raise ValueError(f"{self.path}: this checkpoint has no chat template (no "
                             "chat_template.jinja, no chat_template in tokenizer_config.json)")
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages: expected a list of dicts, got {type(messages).__name__}")
        if len(messages) == 0:
            raise ValueError("messages: empty; give at least one message")
        for m in messages:
            if not isinstance(m, dict):
                raise TypeError(f"messages: each message must be a dict, got {type(m).__name__}")
        if self._compiled_template is None:
            self._compiled_template = _compile_chat_template(self.chat_template)
        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        text = self._compiled_template.render(messages=chat, tools=None, documents=None,
                                              add_generation_prompt=bool(add_generation_prompt),
                                              **{**self.special_tokens_map, **kwargs})
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def __repr__(self) -> str:
        return (f"Tokenizer(path={self.path!r}, vocab_size={self.vocab_size}, "
                f"bos_token={self.bos_token!r}, eos_token={self.eos_token!r}, "
                f"pad_token={self.pad_token!r}, stop_ids={self.stop_ids}, "
                f"chat_template={'yes' if self.chat_template else 'no'})")
