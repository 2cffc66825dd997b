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
from typing import Tuple

import _fuzzlib as fl
from _fuzzlib import KnownDefect

with fl.instrumented(__name__ == "__main__"):
    import moelab

NAME = "hf_config"
ALLOWED = (TypeError, ValueError)
KNOWN_DEFECTS: Tuple[KnownDefect, ...] = ()

def _as_dict(data: bytes):
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def describe(data: bytes) -> str:
    """The call an input makes, as Python (for reports of findings)."""
    return f"# config.json = {data!r}\nmoelab.from_hf_config('config.json')"


def body(data: bytes) -> None:
    as_dict = _as_dict(data)
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
