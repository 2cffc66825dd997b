"""moelab.ops.linear, the dense projection y = x W^T (+ b): against its float64 twin on every
instruction-set path, with float32 and bfloat16 weights, bitwise equal for any thread count, and
the inputs it must refuse."""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import _core, reference
from tolerances import LINEAR, assert_close

ORDER = ["portable", "avx2", "avx512"]
ISAS = ORDER[: ORDER.index(_core.build_info()["isa_detected"]) + 1]
#: T = 0, 1 (decode), 31 / 33 (a partial panel; a full one and a dot tail), 700 (many panels).
ROWS = [0, 1, 31, 33, 700]
#: (N, K): K not a multiple of 16; K = 4100 is cut in chunks of K on the panel path.
SHAPES = [(24, 40), (50, 77), (16, 4100)]


def bf16_bits(w: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even."""
    u = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def make_weights(rng, N: int, K: int, dtype: str, bias: bool):
    w = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)  # (N, K)
    b = rng.standard_normal(N).astype(np.float32) if bias else None      # (N,)
    return (bf16_bits(w) if dtype == "bfloat16" else w), b


@pytest.fixture
def isa():
    before = _core.get_isa()
    yield _core.set_isa
    _core.set_isa(before)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"N{s[0]}-K{s[1]}")
@pytest.mark.parametrize("T", ROWS, ids=lambda t: f"T{t}")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
def test_linear_matches_reference(isa, path, dtype, T, shape, rng):
    isa(path)
    N, K = shape
    w, b = make_weights(rng, N, K, dtype, bias=T % 2 == 1)
    x = rng.standard_normal((T, K)).astype(np.float32)  # (T, K)
    y = moelab.ops.linear(x, w, b)
    assert y.shape == (T, N) and y.dtype == np.float32
    assert_close(y, reference.linear(x, w, b), LINEAR, f"linear {path} {dtype}")


def test_bfloat16_weights_are_the_rounded_float32_ones(rng):
    w, _ = make_weights(rng, 12, 40, "float32", bias=False)
    x = rng.standard_normal((9, 40)).astype(np.float32)
    widened = (bf16_bits(w).astype(np.uint32) << 16).view(np.float32)  # (N, K), exact
    np.testing.assert_array_equal(moelab.ops.linear(x, bf16_bits(w)), moelab.ops.linear(x, widened))
    assert not np.array_equal(widened, w)  # the rounding did change the weights


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
def test_linear_bitwise_equal_across_thread_counts(isa, set_threads, every_region_parallel,
                                                   path, dtype, rng):
    isa(path)
    w, b = make_weights(rng, 200, 77, dtype, bias=True)
    for T in (1, 33, 700):
        x = rng.standard_normal((T, 77)).astype(np.float32)
        results = []
        for n in (1, 2, 3):
            set_threads(n)
            y, loops = every_region_parallel(moelab.ops.linear, x, w, b)
            results.append(y)
            if n > 1:
                assert "experts_down" in loops, sorted(loops)
        for y in results[1:]:
            np.testing.assert_array_equal(y, results[0])


@pytest.mark.parametrize("path", ISAS)
def test_the_variant_for_parallel_regions_gives_the_same_bits(isa, set_threads,
                                                              every_region_parallel, path, rng):
    """linear_here (the calling thread alone, no parallel region) runs the same tasks."""
    isa(path)
    set_threads(2)
    for dtype in ("float32", "bfloat16"):
        w, b = make_weights(rng, 50, 77, dtype, bias=True)
        for T in ROWS:
            x = rng.standard_normal((T, 77)).astype(np.float32)
            np.testing.assert_array_equal(_core._linear_here(x, w, b), _core.linear(x, w, b))


@pytest.mark.parametrize("args, error, match", [
    (lambda x, w, b: (x[:, :-1], w, b), ValueError, r"x: expected \(T, K=40\)"),
    (lambda x, w, b: (x[0], w, b), ValueError, "x: expected 2 dimensions"),
    (lambda x, w, b: (x, w[0], b), ValueError, r"weight: expected \(N, K\)"),
    (lambda x, w, b: (x, w[:0], b), ValueError, r"weight: expected \(N, K\)"),
    (lambda x, w, b: (x, w, b[:-1]), ValueError, r"bias: expected \(N=24,\)"),
    (lambda x, w, b: (np.where(x > 1, np.nan, x), w, b), ValueError, "x: contains NaN"),
    (lambda x, w, b: (x, np.where(w > 0.1, np.inf, w), b), ValueError, "weight: contains NaN"),
    (lambda x, w, b: (x, bf16_bits(np.where(w > 0.1, np.nan, w)), b), ValueError,
     "weight: contains NaN"),
    (lambda x, w, b: (x, w, b * np.nan), ValueError, "bias: contains NaN"),
    (lambda x, w, b: (x.astype(str), w, b), TypeError, "x: expected real numbers"),
    (lambda x, w, b: (x, w.astype(np.complex64), b), TypeError, "weight: expected real numbers"),
], ids=["x-width", "x-1d", "weight-1d", "weight-empty", "bias-length", "x-nan", "weight-inf",
        "weight-bf16-nan", "bias-nan", "x-str", "weight-complex"])
def test_bad_input_raises(args, error, match, rng):
    w, b = make_weights(rng, 24, 40, "float32", bias=True)
    x = rng.standard_normal((5, 40)).astype(np.float32)
    with pytest.raises(error, match=match):
        moelab.ops.linear(*args(x, w, b))


def test_the_core_never_converts(rng):
    w, b = make_weights(rng, 24, 40, "float32", bias=True)
    x = rng.standard_normal((5, 40)).astype(np.float32)
    with pytest.raises(TypeError, match="weight: expected float32, or uint16"):
        _core.linear(x, w.astype(np.float64), b)
    with pytest.raises(ValueError, match="weight: expected a C-contiguous array"):
        _core.linear(x, np.asfortranarray(w), b)
    # the Python face converts once: any real dtype and layout
    np.testing.assert_array_equal(moelab.ops.linear(x, np.asfortranarray(w).astype(np.float64), b),
                                  moelab.ops.linear(x, w, b))


#: lanes of one panel: an 8-lane group, 16 + 8, and each side of the 8- and 16-lane edges.
PANEL_FILLS = [5, 8, 9, 16, 17, 24, 25, 32]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
def test_panel_rows_do_not_depend_on_the_panel_fill(isa, path, dtype, rng):
    """On the token-panel paths (build_info()["panels"]: AVX2 and AVX-512) a row's bits do not
    depend on how many rows share its panel (T = 5..32: one panel, partly filled)."""
    isa(path)
    assert moelab.build_info()["panels"] == (path != "portable")
    if not moelab.build_info()["panels"]:
        return
    w, b = make_weights(rng, 29, 300, dtype, bias=True)  # 29 rows: 2 x 12 + 5, 4 x 6 + 5
    x = rng.standard_normal((32, 300)).astype(np.float32)  # (32, K)
    full = moelab.ops.linear(x, w, b)                      # (32, N)
    for T in PANEL_FILLS:
        np.testing.assert_array_equal(moelab.ops.linear(x[:T], w, b), full[:T], err_msg=f"T={T}")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_avx2_panels_give_the_avx512_bits(isa, dtype, rng):
    """Both panel kernels run one FMA per k in order for every output, so they agree bitwise
    (T = 40: a full panel and a partial one; K = 700: the AVX2 kernel's K chunks)."""
    if "avx512" not in ISAS:
        pytest.skip("needs an AVX-512 CPU to run both panel kernels")
    w, b = make_weights(rng, 30, 700, dtype, bias=True)
    x = rng.standard_normal((40, 700)).astype(np.float32)  # (40, K)
    ys = []
    for path in ("avx2", "avx512"):
        isa(path)
        ys.append(moelab.ops.linear(x, w, b))               # (40, N)
    np.testing.assert_array_equal(ys[0], ys[1])
