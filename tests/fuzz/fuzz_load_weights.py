#!/usr/bin/env python3
"""Fuzz target: ``MoELayer.load_weights(weights, strict)`` with arbitrary dict contents.

The bytes pick a small layer (``_fuzzlib.MOE_LAYERS``: one per router kind and expert
feature) and build the dict: names of this layer, of other layers' weights, made up or not
even strings; values that are arrays of any dtype (floats, ints, bool, complex, object,
strings), of the right shape or a near miss (a dimension off by one, transposed, an extra or
a missing axis, empty, 0-d), in any memory layout (C, Fortran, strided, read-only), holding
NaN, Inf or values beyond float32; or no array at all (None, a str, nested lists). ``weights`` itself may be a list or None.

Allowed (documented in ``MoELayer.load_weights``): TypeError, ValueError.
Promises checked: a failed load leaves every weight of the layer as it was (all or nothing);
a successful load stores each given array converted to float32, exactly; a forward after it
runs and returns the input's shape.

    python tests/fuzz/fuzz_load_weights.py CORPUS_DIR [libFuzzer options]
"""

from __future__ import annotations

import math

import numpy as np

import _fuzzlib as fl
from _fuzzlib import ByteReader

with fl.instrumented(__name__ == "__main__"):
    import moelab

NAME = "load_weights"
ALLOWED = (TypeError, ValueError)
LAYERS = fl.MOE_LAYERS
ALL_NAMES = sorted({n for kw in LAYERS for n in moelab.MoEConfig(**kw).weight_shapes()})
DTYPES = (np.float32, np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8,
          np.bool_, np.complex64, np.object_, np.str_)
SPECIALS = (math.nan, math.inf, -math.inf, 1e39, -1e39, 1e300, -0.0, 3.4e38, 1e-45)
KNOWN_DEFECTS = ()


def _shape(r: ByteReader, shape):
    """The expected shape, or a near miss of it."""
    shape = list(shape)
    kind = r.below(10)
    if kind == 0 and shape:
        i = r.below(len(shape))
        shape[i] = max(0, shape[i] + r.pick((-1, 1, 2)))
    elif kind == 1:
        shape = shape[::-1]
    elif kind == 2:
        shape = [1] + shape
    elif kind == 3 and shape:
        shape = shape[1:]
    elif kind == 4 and shape:
        shape[r.below(len(shape))] = 0
    elif kind == 5:
        shape = []
    return tuple(shape)


def _array(r: ByteReader, shape):
    """A value for a weight: usually an array near ``shape``, sometimes not an array at all."""
    kind = r.below(16)
    if kind == 0:
        return r.pick((None, "router", 3, 2.5, b"\x00" * 8))
    if kind == 1:
        return np.zeros(shape, np.float32).tolist()  # nested lists (array-like)
    dtype = r.pick(DTYPES)
    shape = _shape(r, shape)
    rng = np.random.default_rng(r.u8())
    values = np.asarray(rng.standard_normal(shape) * r.pick((1.0, 1e-3, 1e3, 1e30)))  # float64
    if values.size and r.below(3) == 0:
        values.flat[r.below(values.size)] = r.pick(SPECIALS)
    with np.errstate(all="ignore"):
        arr = values.astype(dtype)
    layout = r.below(6)
    if layout == 1:
        arr = np.asfortranarray(arr)
    elif layout == 2 and arr.ndim:
        arr = np.repeat(arr, 2, axis=-1)[..., ::2]    # the same values, strided
    elif layout == 3:
        arr.flags.writeable = False
    return arr


def _weights(r: ByteReader, cfg) -> dict:
    shapes = cfg.weight_shapes()
    weights = {}
    if r.below(3) == 0:  # start from a complete, valid set
        weights = {name: np.ones(shape, np.float32) for name, shape in shapes.items()}
    for _ in range(r.below(6)):
        kind = r.below(12)
        if kind < 7:
            name = r.pick(list(shapes))
        elif kind < 9:
            name = r.pick(ALL_NAMES)
        elif kind < 11:
            name = r.text(ALL_NAMES)
        else:
            name = r.pick((0, None, ("router.weight",), b"router.weight"))
        weights[name] = _array(r, shapes.get(name, (cfg.num_experts, cfg.hidden_size)))
    return weights


def _float32_or_none(value):
    """What load_weights stores for ``value`` (float32, C order), or None if it is not numbers."""
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - only the expectation is computed here
        return None
    if arr.dtype.kind not in "fiu":
        return None
    with np.errstate(all="ignore"):
        return arr.astype(np.float32)


def describe(data: bytes) -> str:
    """The call an input makes, as Python (for reports of findings)."""
    r = ByteReader(data)
    kw = r.pick(LAYERS)
    weights = _weights(r, moelab.MoEConfig(**kw))
    shown = {k: (f"array(shape={v.shape}, dtype={v.dtype}, C={v.flags.c_contiguous})"
                 if isinstance(v, np.ndarray) else repr(v)[:60]) for k, v in weights.items()}
    return f"moelab.MoELayer(moelab.MoEConfig(**{kw!r})).load_weights({shown}, strict=...)"


def body(data: bytes) -> None:
    r = ByteReader(data)
    cfg = moelab.MoEConfig(**r.pick(LAYERS))
    layer = moelab.MoELayer(cfg, seed=0)
    before = {name: w.copy() for name, w in layer.weights.items()}
    weights = _weights(r, cfg)
    if r.below(16) == 15:
        weights = r.pick((list(weights.items()), None, "router.weight"))
    strict = r.pick((True, False, True, False, 1, None))
    ok, _ = fl.call("load_weights", layer.load_weights, weights, strict=strict, allowed=ALLOWED)
    after = layer.weights
    if not ok:
        changed = [n for n in before if not np.array_equal(before[n], after[n], equal_nan=True)]
        fl.expect("load_weights", not changed, f"a failed load changed {changed}")
        return
    fl.expect("load_weights", isinstance(weights, dict), f"accepted {type(weights).__name__}")
    for name, value in weights.items():
        fl.expect("load_weights", name in after, f"accepted a weight the layer has not: {name!r}")
        expected = _float32_or_none(value)
        fl.expect("load_weights", expected is not None and expected.shape == after[name].shape
                  and np.array_equal(expected, after[name], equal_nan=True),
                  f"{name}: stored {after[name]!r}, given {value!r}")
    x = np.random.default_rng(0).standard_normal((r.below(6), cfg.hidden_size))
    ok, y = fl.call("forward", layer, x.astype(np.float32), allowed=ALLOWED)  # logits may overflow
    fl.expect("forward", not ok or y.shape == x.shape, f"y {y.shape} for x {x.shape}")


def run_one(data: bytes):
    """None, or the id of the known defect this input shows; raises Finding on a new defect."""
    return fl.run_checked(body, KNOWN_DEFECTS, data)


def seeds():
    """A complete valid load for each layer (the bytes run out: no changes), and the empty dict."""
    return [bytes([i]) for i in range(len(LAYERS))] + [bytes([0, 1])]


if __name__ == "__main__":
    fl.fuzz(run_one)
