"""The checks every softmax-attention and MLA layer passes, parametrized over the layer families
of layer_checks (Attention, MultiHeadLatentAttention) and their kinds: bitwise determinism across
thread counts, T = 0, bad x, another layer's cache and positions past the maximum (the cache
left unchanged), bad seeds, specs and weights (the layer left unchanged), bfloat16 storage,
and the peak memory of a long prefill."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from layer_checks import (FAMILIES, H, assert_bf16_storage_is_the_float32_layer_on_rounded_weights,
                          assert_bitwise_equal_across_thread_counts,
                          assert_cache_of_another_layer_raises,
                          assert_positions_past_the_maximum_raise, assert_unchanged, bad_x_cases,
                          filled_cache, inputs, prefill_peak_growth)

ALL_KINDS = [(f, kind) for f in FAMILIES.values() for kind in f.kinds]
BAD_SPECS = [(f, change, match) for f in FAMILIES.values() for change, match in f.bad_specs]
BF16_KINDS = [(f, kind) for f in FAMILIES.values() for kind in f.bf16_kinds]
family_kinds = pytest.mark.parametrize("family,kind", ALL_KINDS,
                                       ids=[f"{f.name}-{k}" for f, k in ALL_KINDS])
families = pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))


@family_kinds
def test_bitwise_equal_across_thread_counts(family, kind, set_threads, every_region_parallel):
    assert_bitwise_equal_across_thread_counts(family.make_layer(kind), inputs(90), set_threads,
                                              every_region_parallel)


@families
def test_empty_input_leaves_the_cache_empty(family):
    layer = family.make_layer(family.main_kind)
    cache = layer.new_cache()
    assert layer(np.zeros((0, H), np.float32), cache).shape == (0, H)
    assert cache.length == 0 and "length=0" in repr(cache)


@families
@pytest.mark.parametrize("bad,exc,match", bad_x_cases(H)[0], ids=bad_x_cases(H)[1])
def test_bad_x_raises_and_keeps_the_cache(family, bad, exc, match):
    layer = family.make_layer(family.main_kind)
    cache, snap = filled_cache(layer, inputs(20))
    with pytest.raises(exc, match=match):
        layer(bad, cache)
    assert_unchanged(cache, snap)


@families
def test_cache_of_another_layer_raises(family):
    assert_cache_of_another_layer_raises(family.make_layer(family.main_kind),
                                         family.make_layer(family.main_kind), inputs(7),
                                         family.error_name)


@families
def test_positions_past_the_maximum_raise(family):
    spec = family.spec_type(**{**family.base, "max_position_embeddings": 40})
    assert_positions_past_the_maximum_raise(family.layer_type(spec), inputs(41))


@families
def test_seeds_are_unsigned_64_bit(family):
    """The seed rule of every layer (checked_seed): an int in [0, 2**64), else a TypeError or a
    ValueError naming seed; the whole range works."""
    spec = family.spec_type(**family.base)
    for seed in ("1", 1.5, True, None):
        with pytest.raises(TypeError, match="seed"):
            family.layer_type(spec, seed=seed)
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\), got "):
            family.layer_type(spec, seed=seed)
    a, b = (family.layer_type(spec, seed=seed) for seed in (2**64 - 1, np.uint64(2**64 - 1)))
    for name, w in a.weights.items():
        np.testing.assert_array_equal(w, b.weights[name])


@pytest.mark.parametrize("family,change,match", BAD_SPECS,
                         ids=[f"{f.name}-{match}" for f, _, match in BAD_SPECS])
def test_bad_spec_raises(family, change, match):
    with pytest.raises(ValueError, match=match):
        family.spec_type(**{**family.base, **change})


@families
def test_bad_weights_raise_and_keep_the_layer(family):
    """A wrong shape or a NaN (every weight given), or a weight the layer lacks (strict=False):
    ValueError naming the weight, and the layer unchanged."""
    kind, loads = family.bad_weights
    layer = family.make_layer(kind)
    before = {k: v.copy() for k, v in layer.weights.items()}
    for name, value, match, strict in loads:
        with pytest.raises(ValueError, match=match):
            layer.load_weights({**before, name: value} if strict else {name: value},
                               strict=strict)
    for k, v in layer.weights.items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("family,kind", BF16_KINDS, ids=[f"{f.name}-{k}" for f, k in BF16_KINDS])
def test_bfloat16_storage_is_the_float32_layer_on_rounded_weights(family, kind):
    """bf16 projections are read in place: the same outputs as float32 on the rounded values,
    and close to the float32 layer itself."""
    assert_bf16_storage_is_the_float32_layer_on_rounded_weights(
        family.layer_type, family.make_layer(kind), inputs(70), f"{family.name} {kind}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@families
def test_prefill_never_holds_a_t_by_t_matrix(family):
    """A prefill of T = 6000 tokens raises the process's peak memory by far less than one
    T x T float32 score matrix (144 MB): O(T d) buffers only (measured in a fresh process)."""
    T = 6000
    grown = prefill_peak_growth(family.peak_script(), T)
    assert grown < T * T * 4 / 10, f"peak memory grew by {grown / 2**20:.1f} MiB"
