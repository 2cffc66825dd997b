"""Checks that the softmax-attention and MLA layer tests share: cached pieces against one
prefill, bitwise determinism across thread counts, a cache left unchanged by a forward that
raises (bad x, another layer's cache, positions past the maximum), and the peak memory of a long
prefill."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tolerances import ATTENTION, BF16_STORAGE, assert_close


def assert_cached_pieces_equal_one_prefill(layer, x, pieces, what):
    """x (sum(pieces), H) run in pieces through one cache gives one prefill's outputs."""
    y_full = layer(x)
    cache = layer.new_cache()
    out, t0 = [], 0
    for n in pieces:
        assert cache.length == t0
        out.append(layer(x[t0:t0 + n], cache))
        t0 += n
    assert_close(np.concatenate(out), y_full, ATTENTION, what)


def assert_bitwise_equal_across_thread_counts(layer, x, set_threads, every_region_parallel):
    """A prefill of x[:80] then a decode of x[80:81] into one cache gives bitwise the same
    output at 1, 2 and 3 threads, and the attention loops really ran in parallel."""
    results = []
    for threads in (1, 2, 3):
        set_threads(threads)
        cache = layer.new_cache()
        (y, loops) = every_region_parallel(lambda: (layer(x[:80], cache), layer(x[80:81], cache)))
        if threads > 1:
            assert {"attention_prepare", "attention_scores"} <= loops, loops
        results.append(np.concatenate(y))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def snapshot(cache):
    """(length, copies of every array ``cache.read()`` gives)."""
    held = cache.read()
    arrays = held if isinstance(held, tuple) else (held,)
    return cache.length, tuple(a.copy() for a in arrays)


def assert_unchanged(cache, snap):
    length, arrays = snap
    assert cache.length == length
    now = snapshot(cache)[1]
    assert len(now) == len(arrays)
    for a, b in zip(arrays, now):
        np.testing.assert_array_equal(a, b)


def filled_cache(layer, x):
    """A cache of ``layer`` after x, and its snapshot."""
    cache = layer.new_cache()
    layer(x, cache)
    return cache, snapshot(cache)


def assert_cache_of_another_layer_raises(a, b, x, kind):
    """b refuses a's cache (ValueError naming the layer ``kind``), and a refuses a non-cache
    (TypeError); the cache is unchanged. Returns the cache and its snapshot."""
    cache, snap = filled_cache(a, x[:5])
    with pytest.raises(ValueError, match=f"cache: belongs to another {kind} layer"):
        b(x[5:7], cache)
    assert_unchanged(cache, snap)
    with pytest.raises(TypeError, match="cache"):
        a(x[5:7], cache=object())
    return cache, snap


def assert_positions_past_the_maximum_raise(layer, x):
    """For a layer of max_position_embeddings=40 and x (41, H): tokens past position 39
    raise, in a cache (left unchanged) and without one."""
    cache, snap = filled_cache(layer, x[:39])
    with pytest.raises(ValueError, match="max_position_embeddings=40"):
        layer(x[:2], cache)
    assert_unchanged(cache, snap)
    layer(x[:1], cache)  # position 39 is the last one
    with pytest.raises(ValueError, match="max_position_embeddings"):
        layer(x)


def assert_bf16_storage_is_the_float32_layer_on_rounded_weights(layer_type, layer, x, what):
    """A bfloat16 copy of ``layer`` (prefill of x[:60], then the rest through its cache) gives
    the float32 layer's outputs on its rounded weights, and stays close to ``layer`` itself.
    Returns the bfloat16 layer."""
    layer16 = layer_type(layer.spec, weights=layer.weights, weight_dtype="bfloat16")
    assert layer16.weight_dtype == "bfloat16" and "bfloat16" in repr(layer16)
    rounded = layer_type(layer.spec, weights=layer16.weights)  # stored values, float32
    cache = layer16.new_cache()
    y16 = np.concatenate([layer16(x[:60], cache), layer16(x[60:], cache)])
    assert_close(y16, rounded(x), ATTENTION, f"{what}: bf16 vs float32 on rounded weights")
    assert_close(y16, layer(x), BF16_STORAGE, f"{what}: bf16 vs float32")
    return layer16


def bad_x_cases(H):
    """(bad x, exception, match) for x of the wrong shape, non-finite, non-numeric or
    overflowing the layer (hidden size H = 48), with their ids."""
    cases = [
        (np.zeros((3, H + 1), np.float32), ValueError, r"x: expected \(T, H=48\)"),
        (np.zeros(H, np.float32), ValueError, r"x: expected \(T, H=48\)"),
        (np.full((2, H), np.nan, np.float32), ValueError, r"x"),
        (np.full((1, H), np.inf, np.float32), ValueError, r"x"),
        (np.array([["a"] * H]), TypeError, r"x"),
        (np.full((2, H), 3e38, np.float32), ValueError, r"not finite"),
    ]
    return cases, ["width", "1d", "nan", "inf", "strings", "overflow"]


def prefill_peak_growth(script: str, T: int) -> int:
    """Bytes by which ``script`` (run with argument T in a fresh process, 2 threads) says a
    prefill of T tokens raised the process's peak memory (its last printed line)."""
    out = subprocess.run([sys.executable, "-c", script, str(T)], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    return int(out.stdout.strip().splitlines()[-1])
