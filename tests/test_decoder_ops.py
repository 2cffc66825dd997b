"""The decoder ops around the layers: rms_norm, embedding, logit_softcap, and linear as the LM
head. Each against its float64 twin in moelab.reference, bitwise across thread counts, without
heap allocation inside the core, and with its bad-input errors.

Parity with transformers' modules is in tests/reference/test_hf_decoder_ops.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import moelab
from moelab import _core, reference
from tolerances import LINEAR, RMS_NORM, SOFTCAP, assert_close

THREAD_COUNTS = (1, 2, 3)


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest even), as uint16 bit patterns."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def allocations(call) -> int:
    before = _core._heap_allocations()
    call()
    return _core._heap_allocations() - before


# ------------------------------------------------------------------------------- rms_norm
@pytest.mark.parametrize("math", ["float32", "double"])
@pytest.mark.parametrize("offset", [0.0, 1.0], ids=["w", "one_plus_w"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("T, H", [(0, 8), (1, 1), (7, 64), (33, 4096)], ids=str)
def test_rms_norm_matches_reference(T, H, dtype, offset, math, rng):
    x = (rng.standard_normal((T, H)) * 3.0).astype(np.float32)              # (T, H)
    w = rng.standard_normal(H).astype(np.float32)                           # (H,)
    if dtype == "bfloat16":
        w = bf16_bits(w)
    y = moelab.ops.rms_norm(x, w, 1e-6, offset=offset, math=math)
    assert y.dtype == np.float32 and y.shape == (T, H)
    assert_close(y, reference.rms_norm(x, w, 1e-6, offset=offset), RMS_NORM, "rms_norm")


def test_rms_norm_eps_and_zero_rows():
    x = np.zeros((2, 4), np.float32)
    x[1] = [1e-4, -1e-4, 1e-4, -1e-4]
    w = np.full(4, 2.0, np.float32)
    y = moelab.ops.rms_norm(x, w, eps=1e-6)
    np.testing.assert_array_equal(y[0], 0.0)          # 0 / sqrt(eps)
    assert_close(y, reference.rms_norm(x, w, 1e-6), RMS_NORM, "eps")
    assert abs(y[1, 0] - 2e-4 / np.sqrt(1e-8 + 1e-6)) < 1e-7  # eps dominates: not x/|x|


def test_rms_norm_modes_differ_only_by_rounding(rng):
    x = rng.standard_normal((50, 512)).astype(np.float32)
    w = rng.standard_normal(512).astype(np.float32)
    a = moelab.ops.rms_norm(x, w, 1e-5, math="float32")
    b = moelab.ops.rms_norm(x, w, 1e-5, math="double")
    assert_close(a, b, RMS_NORM, "float32 vs double")
    assert not np.array_equal(a, b)  # the two modes really are two computations


# ------------------------------------------------------------------------------- embedding
@pytest.mark.parametrize("scale", [None, 64 ** 0.5, 2560 ** 0.5], ids=["plain", "s8", "s50.6"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_embedding_is_the_twin_exactly(dtype, scale, rng):
    V, H = 1000, 64
    table = rng.standard_normal((V, H)).astype(np.float32)                  # (V, H)
    if dtype == "bfloat16":
        table = bf16_bits(table)
    ids = np.array([0, 999, 5, 5, 123, 0], np.int64)                         # (T,)
    out = moelab.ops.embedding(ids, table, scale=scale)
    assert out.dtype == np.float32 and out.shape == (6, H)
    np.testing.assert_array_equal(out, reference.embedding(ids, table, scale))
    if scale is None and dtype == "float32":
        np.testing.assert_array_equal(out, table[ids])


def test_embedding_bf16_scale_rounds_like_bf16():
    table = bf16_bits(np.array([[1.0, 3.0]], np.float32))
    out = moelab.ops.embedding([0], table, scale=2560 ** 0.5)  # 50.596 -> bf16 50.5
    np.testing.assert_array_equal(out, [[50.5, 152.0]])  # 3 * 50.5 = 151.5: a tie, to even 152
    out32 = moelab.ops.embedding([0], np.array([[1.0, 3.0]], np.float32), scale=2560 ** 0.5)
    np.testing.assert_array_equal(out32, [[np.float32(2560 ** 0.5), np.float32(3 * np.float32(2560 ** 0.5))]])


def test_embedding_takes_lists_torch_like_ints_and_empty():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(moelab.ops.embedding([3, 1], table), table[[3, 1]])
    np.testing.assert_array_equal(moelab.ops.embedding(np.array([2], np.int32), table), table[[2]])
    assert moelab.ops.embedding([], table).shape == (0, 3)


# ------------------------------------------------------------------------------- softcap
@pytest.mark.parametrize("cap", [30.0, 15.0, 0.5])
def test_logit_softcap_matches_reference(cap, rng):
    logits = (rng.standard_normal((5, 300)) * 40).astype(np.float32)
    y = moelab.ops.logit_softcap(logits, cap)
    assert y.shape == logits.shape and y.dtype == np.float32
    assert np.all(np.abs(y) <= cap)
    assert_close(y, reference.softcap(logits, cap), SOFTCAP, f"softcap {cap}")


# ------------------------------------------------------------------------------- LM head
def test_lm_head_is_linear_at_a_real_vocabulary(rng):
    """The LM head of Qwen3 (V = 151936) is ops.linear: one token and a short prefill."""
    V, H = 151936, 64
    w = bf16_bits(rng.standard_normal((V, H)).astype(np.float32) * 0.05)   # (V, H) bf16
    for T in (1, 5):
        x = rng.standard_normal((T, H)).astype(np.float32)                  # (T, H)
        logits = moelab.ops.linear(x, w)                                     # (T, V)
        assert logits.shape == (T, V)
        assert_close(logits, reference.linear(x, w), LINEAR, f"lm_head T={T}")


# ------------------------------------------------------------------------------- threads
def test_ops_bitwise_equal_across_thread_counts(set_threads, every_region_parallel, rng):
    x = rng.standard_normal((37, 96)).astype(np.float32)
    w = bf16_bits(rng.standard_normal(96).astype(np.float32))
    table = rng.standard_normal((500, 96)).astype(np.float32)
    ids = rng.integers(0, 500, size=37)
    logits = rng.standard_normal((37, 500)).astype(np.float32) * 50
    results = {}
    for n in THREAD_COUNTS:
        set_threads(n)
        a, loops_a = every_region_parallel(moelab.ops.rms_norm, x, w, 1e-6, 1.0)
        b, loops_b = every_region_parallel(moelab.ops.embedding, ids, table, 9.8)
        c, loops_c = every_region_parallel(moelab.ops.logit_softcap, logits, 30.0)
        results[n] = (a, b, c)
        if n > 1:
            assert loops_a == {"rms_norm"} and loops_b == {"embedding"} \
                and loops_c == {"logit_softcap"}, (loops_a, loops_b, loops_c)
    for n in THREAD_COUNTS[1:]:
        for got, want in zip(results[n], results[1]):
            np.testing.assert_array_equal(got, want, err_msg=f"{n} threads vs 1")


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the heap probe is linked on Linux builds only")
def test_ops_allocate_nothing_inside_the_core(set_threads, every_region_parallel, rng):
    set_threads(2)
    x = rng.standard_normal((40, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    table = bf16_bits(rng.standard_normal((100, 64)).astype(np.float32))
    ids = np.arange(40, dtype=np.int64)
    assert allocations(lambda: moelab.ops.rms_norm(x, w, 1e-6)) == 0
    assert allocations(lambda: moelab.ops.embedding(ids, table, 8.0)) == 0
    assert allocations(lambda: moelab.ops.logit_softcap(x, 30.0)) == 0


# ------------------------------------------------------------------------------- bad input
X = np.ones((3, 4), np.float32)
W = np.ones(4, np.float32)
TABLE = np.ones((10, 4), np.float32)


@pytest.mark.parametrize("call, error, match", [
    (lambda: moelab.ops.rms_norm(X, np.ones(5, np.float32), 1e-6), ValueError,
     r"x: expected \(T, H=5\) for weight \(5,\), got \(3, 4\)"),
    (lambda: moelab.ops.rms_norm(X, np.ones((1, 4), np.float32), 1e-6), ValueError,
     "weight: expected 1 dimensions"),
    (lambda: moelab.ops.rms_norm(X[0], W, 1e-6), ValueError, "x: expected 2 dimensions"),
    (lambda: moelab.ops.rms_norm(X, W, -1.0), ValueError, "eps: expected >= 0"),
    (lambda: moelab.ops.rms_norm(X, W, float("nan")), ValueError, "eps: expected >= 0"),
    (lambda: moelab.ops.rms_norm(X, W, 1e-6, offset=0.5), ValueError, "offset: expected 0"),
    (lambda: moelab.ops.rms_norm(X, W, 1e-6, math="half"), ValueError, "math must be one of"),
    (lambda: moelab.ops.rms_norm(np.full((3, 4), np.nan, np.float32), W, 1e-6), ValueError,
     "x: contains NaN"),
    (lambda: moelab.ops.rms_norm(X, W.astype(np.complex64), 1e-6), TypeError,
     "weight: expected real numbers"),
    (lambda: moelab.ops.embedding([10], TABLE), IndexError,
     r"ids: id 10 at position 0 is out of range for a table of V=10 rows \(10, 4\)"),
    (lambda: moelab.ops.embedding([1, -1], TABLE), IndexError, "ids: id -1 at position 1"),
    (lambda: moelab.ops.embedding([1.0], TABLE), TypeError, "ids: expected integers"),
    (lambda: moelab.ops.embedding([[1]], TABLE), ValueError, r"ids: expected \(T,\)"),
    (lambda: moelab.ops.embedding([1], np.ones(4, np.float32)), ValueError,
     "table: expected 2 dimensions"),
    (lambda: moelab.ops.embedding([1], TABLE, scale=float("inf")), ValueError,
     "scale: expected a finite"),
    (lambda: moelab.ops.embedding([1], np.full((10, 4), np.inf, np.float32)), ValueError,
     "table: contains NaN or Inf"),
    (lambda: moelab.ops.logit_softcap(X, 0.0), ValueError, "cap: expected > 0"),
    (lambda: moelab.ops.logit_softcap(X, float("inf")), ValueError, "cap: expected a finite"),
    (lambda: moelab.ops.logit_softcap(["a"], 1.0), TypeError, "logits: expected real numbers"),
], ids=["norm_H", "norm_w_2d", "norm_x_1d", "norm_eps_neg", "norm_eps_nan", "norm_offset",
        "norm_math", "norm_nan", "norm_complex", "emb_high", "emb_negative", "emb_float",
        "emb_2d", "emb_table_1d", "emb_scale_inf", "emb_table_inf", "cap_zero", "cap_inf",
        "cap_str"])
def test_bad_input_is_refused_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
