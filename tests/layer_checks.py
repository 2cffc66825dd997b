"""Checks that the softmax-attention and MLA layer tests share: bitwise determinism across
thread counts, a cache left unchanged by a forward that raises, the bad x every token mixer
rejects, and the peak memory of a long prefill."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np


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
