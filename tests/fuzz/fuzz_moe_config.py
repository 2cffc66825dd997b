#!/usr/bin/env python3
"""Fuzz target: ``moelab.MoEConfig(...)`` with arbitrary field values, then the layer it describes.

The bytes pick one of a few valid configurations (one per router kind) and change, drop or add
up to six fields, each to a value of any kind (ints at the edges of C types, floats beyond
float32, NaN, strings, None, NumPy scalars, fractions, lists, unknown field names).

Allowed (documented in ``MoEConfig``'s docstring): TypeError, ValueError.
Promises checked when the config is accepted (and small enough to build in a fuzz iteration):
``MoELayer(cfg, seed=0)`` builds (a config MoEConfig accepts is a layer moelab can run), a
forward of 0-8 standard-normal tokens returns finite outputs of the input's shape and routing
statistics of the documented shapes; ``MoELayer(cfg, seed=s)`` with a fuzzed seed raises
only TypeError or ValueError (its docstring).

    python tests/fuzz/fuzz_moe_config.py CORPUS_DIR [libFuzzer options]
"""

from __future__ import annotations

import dataclasses
import fractions
import warnings
from typing import Tuple

import numpy as np

import _fuzzlib as fl
from _fuzzlib import ByteReader, KnownDefect

with fl.instrumented(__name__ == "__main__"):
    import moelab

NAME = "moe_config"
ALLOWED = (TypeError, ValueError)
BASES = fl.MOE_LAYERS  # the configurations from which the fuzzer starts
FIELDS = tuple(f.name for f in dataclasses.fields(moelab.MoEConfig))
WORDS = ("softmax", "sigmoid", "topk_softmax", "llama4", "silu", "gelu", "gelu_tanh", "relu",
         "swiglu_oai", "", "SOFTMAX", "none")
#: a layer larger than this is not built in a fuzz iteration (the config is still checked)
MAX_BUILT_PARAMS = 50_000

KNOWN_DEFECTS: Tuple[KnownDefect, ...] = ()


def _value(r: ByteReader, depth: int = 0):
    """Any kind of value a user might pass for a field."""
    kind = r.below(12)
    if kind in (0, 1, 2):
        return r.integer()
    if kind in (3, 4):
        return r.real()
    if kind == 5:
        return r.flag()
    if kind == 6:
        return None
    if kind == 7:
        return r.text(WORDS)
    if kind == 8:
        np_type = r.pick((np.int64, np.int32, np.uint8, np.float32, np.float64, np.bool_))
        with np.errstate(all="ignore"):  # out-of-range casts wrap or saturate, as users get
            return np.array(r.pick((0, 1, 2, 4, 255, 1e300, -1.0, np.nan))).astype(np_type)[()]
    if kind == 9:
        return fractions.Fraction(r.integer(), r.pick((1, 2, 3, 7)))
    if kind == 10 and depth < 2:
        return [_value(r, depth + 1) for _ in range(r.below(3))]
    return complex(r.real(), 1.0)


def _exact_num_params(cfg) -> int:
    """The layer's parameters from its dimensions, in Python ints (the oracle of num_params)."""
    H, E, I = int(cfg.hidden_size), int(cfg.num_experts), int(cfg.moe_intermediate_size)
    S = int(cfg.shared_width)
    expert = 3 * H * I + ((2 * I + H) if cfg.expert_bias else 0)
    shared = 3 * H * S + (H if cfg.shared_expert_gate else 0)
    return E * expert + shared + E * H + (E if cfg.router_bias else 0)


def _kwargs(r: ByteReader) -> dict:
    kwargs = dict(r.pick(BASES))
    for _ in range(r.below(7)):
        name = r.pick(FIELDS + ("num_local_experts", "bogus"))
        if r.below(8) == 0:
            kwargs.pop(name, None)
        else:
            kwargs[name] = _value(r)
    return kwargs


def describe(data: bytes) -> str:
    """The call an input makes, as Python (for reports of findings)."""
    return f"moelab.MoEConfig(**{_kwargs(ByteReader(data))!r})"


def body(data: bytes) -> None:
    r = ByteReader(data)
    kwargs = _kwargs(r)
    ok, cfg = fl.call("MoEConfig", moelab.MoEConfig, allowed=ALLOWED, **kwargs)
    if not ok:
        return
    exact = _exact_num_params(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counted = cfg.num_params
    fl.expect("MoEConfig", counted == exact,
              f"num_params is {counted!r} ({type(counted).__name__}), the dimensions give {exact}: "
              f"the count wraps in the fields' integer type ({cfg!r})")
    if exact > MAX_BUILT_PARAMS:
        return
    layer = fl.succeed("MoELayer(cfg)", moelab.MoELayer, cfg, seed=0,
                       weight_dtype=r.pick(("float32", "bfloat16")))
    T = r.below(9)
    x = np.random.default_rng(r.u8()).standard_normal((T, cfg.hidden_size)).astype(np.float32)
    y, stats = fl.succeed("forward", layer, x, return_stats=True)
    k, E = cfg.num_experts_per_tok, cfg.num_experts
    fl.expect("forward", y.shape == x.shape and y.dtype == np.float32,
              f"y {y.shape} {y.dtype} for x {x.shape}")
    fl.expect("forward", bool(np.isfinite(y).all()), f"non-finite output for {cfg!r}")
    fl.expect("forward", stats.topk_ids.shape == (T, k) and stats.topk_weights.shape == (T, k)
              and stats.router_logits.shape == (T, E) and stats.tokens_per_expert.shape == (E,),
              f"stats shapes {stats!r}")
    fl.expect("forward", bool(((stats.topk_ids >= 0) & (stats.topk_ids < E)).all()),
              f"expert ids out of range: {stats.topk_ids}")
    fl.expect("forward", int(stats.tokens_per_expert.sum()) == T * k - stats.dropped,
              f"tokens_per_expert sums to {stats.tokens_per_expert.sum()}, "
              f"T*k - dropped = {T * k - stats.dropped}")
    fl.call("MoELayer(cfg, seed)", moelab.MoELayer, cfg, seed=_value(r), allowed=ALLOWED)


def run_one(data: bytes):
    """None, or the id of the known defect this input shows; raises Finding on a new defect."""
    return fl.run_checked(body, KNOWN_DEFECTS, data)


def seeds():
    """Inputs that start from each base configuration unchanged."""
    return [bytes([i]) for i in range(len(BASES))]


if __name__ == "__main__":
    fl.fuzz(run_one)
