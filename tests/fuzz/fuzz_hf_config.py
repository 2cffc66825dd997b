#!/usr/bin/env python3
"""Fuzz target: ``moelab.from_hf_config`` on arbitrary JSON, then the accounting of what it gives.

The input is the text of a ``config.json``. It is read both ways the function accepts: as a
path (the file holding exactly these bytes) and, when the bytes are a JSON object, as a dict.
The seeds are the released configs of every supported model type (tests/test_hf_config.py),
and hf_config.dict gives libFuzzer their keys and the values worth trying.

Allowed (documented in ``from_hf_config``): TypeError, ValueError.
Promises checked: the path and the dict give the same result (the same config or both an
error); an accepted config can be counted and costed (``count_params``, ``costs`` at a 4096
context) with total >= active > 0.

    python tests/fuzz/fuzz_hf_config.py CORPUS_DIR -dict=tests/fuzz/hf_config.dict [options]
"""

from __future__ import annotations

import json
import sys

import _fuzzlib as fl
from _fuzzlib import KnownDefect

with fl.instrumented(__name__ == "__main__"):
    import moelab

NAME = "hf_config"
ALLOWED = (TypeError, ValueError)
#: layer counts above this are not tried (see the "layer-count-hang" known defect)
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layers")
MAX_LAYERS = 100_000
KNOWN_DEFECTS = (
    KnownDefect("layer-count-hang", "new (fuzzing)", "from_hf_config",
                r"per-layer lists are built before the size limit is checked"),
    KnownDefect("value-used-unchecked", "new (fuzzing); issue 19.5", "from_hf_config",
                r"(raised by a library call|undocumented (ZeroDivision|Overflow)Error) at "
                r"hf_config\.py:"),
)

def _as_dict(data: bytes):
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def describe(data: bytes) -> str:
    """The call an input makes, as Python (for reports of findings)."""
    return f"# config.json = {data!r}\nmoelab.from_hf_config('config.json')"


def _layer_counts(value):
    """Every layer count the JSON holds, at any depth (text_config included)."""
    if isinstance(value, dict):
        for key, v in value.items():
            if key in LAYER_COUNT_KEYS and isinstance(v, int):
                yield key, v
            yield from _layer_counts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _layer_counts(v)


def body(data: bytes) -> None:
    as_dict = _as_dict(data)
    for key, count in _layer_counts(as_dict):
        if count > MAX_LAYERS:  # would run into the known hang, past the fuzzer's time limit
            raise fl.Finding("from_hf_config", f"{key}={count}: per-layer lists are built before "
                             "the size limit is checked (a hang)")
    path = fl.scratch_folder() / "config.json"
    path.write_bytes(data)
    ok, cfg = fl.call("from_hf_config(path)", moelab.from_hf_config, str(path), allowed=ALLOWED)
    if as_dict is not None:
        ok_dict, cfg_dict = fl.call("from_hf_config(dict)", moelab.from_hf_config, as_dict,
                                    allowed=ALLOWED)
        fl.expect("from_hf_config(dict)", ok == ok_dict and (not ok or cfg == cfg_dict),
                  f"the path gave {cfg!r}, the dict {cfg_dict!r}")
    if not ok:
        return
    pc = fl.succeed("count_params", moelab.count_params, cfg)
    fl.succeed("costs", moelab.costs, cfg, context=4096)
    fl.expect("count_params", pc.total >= pc.active > 0, f"{pc!r}")


def run_one(data: bytes):
    """None, or the id of the known defect this input shows; raises Finding on a new defect."""
    return fl.run_checked(body, KNOWN_DEFECTS, data)


def seeds():
    """The released config.json of every preset and of each other supported model type."""
    sys.path.insert(0, str(fl.HERE.parent))
    import released_configs

    return [json.dumps(c, indent=1).encode() for c in released_configs.RELEASED.values()]


if __name__ == "__main__":
    fl.fuzz(run_one)
