"""Gated DeltaNet vs Hugging Face transformers (5.23, CPU torch fallback, float32).

The HF ``Qwen3NextGatedDeltaNet`` of a tiny Qwen3-Next config runs one sequence with its
``DynamicCache``: a prefill of T = 1, 7, 64 or 150 tokens (150 = two full chunks of 64 and a
partial one), 6 one-token decode steps, then a second prefill of 9 tokens that continues the
state. The float64 recurrent twin ``moelab.reference.gated_deltanet`` and moelab's
``GatedDeltaNet`` follow the same sequence; outputs and final states are compared.
"""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import reference
from tolerances import DELTANET, assert_close

try:
    import torch

    import _hf_deltanet as hfd
except ImportError:  # conftest.py fails or skips every test below
    torch = hfd = None

pytestmark = pytest.mark.reference

PREFILLS = (1, 7, 64, 150)
DECODE_STEPS = 6
SECOND_PREFILL = 9


def _segments(T: int):
    """The sequence's calls: a prefill of T, DECODE_STEPS single tokens, a second prefill."""
    return [T] + [1] * DECODE_STEPS + [SECOND_PREFILL]


@pytest.mark.parametrize("T", PREFILLS, ids=[f"T{t}" for t in PREFILLS])
def test_reference_matches_transformers(T):
    """The float64 twin follows HF's chunked prefill, recurrent decode and cache exactly (to
    HF's own float32 rounding)."""
    hf_config = hfd.make_config()
    cfg = hfd.moelab_config(hf_config)
    module = hfd.make_module(hf_config, seed=T)
    weights = hfd.weights_of(module)
    hf = hfd.HFSequence(module, hf_config)
    state = None
    for i, n in enumerate(_segments(T)):
        x = hfd.inputs(n, seed=100 * T + i)
        y_hf = hf(x)
        y_ref, state = reference.gated_deltanet(x, weights, cfg, state)
        assert_close(y_hf, y_ref, DELTANET, f"T={T}, call {i} (n={n}): HF vs reference")
    assert_close(hf.recurrent_state(), state["recurrent"], DELTANET, "recurrent state")
    assert_close(hf.conv_state(), state["conv"], DELTANET, "conv state")


def test_reference_without_cache_is_a_fresh_sequence():
    """HF without a cache (the chunked path from a zero state) = the twin with state=None."""
    hf_config = hfd.make_config()
    cfg = hfd.moelab_config(hf_config)
    module = hfd.make_module(hf_config, seed=3)
    x = hfd.inputs(70, seed=5)
    y_hf = hfd.HFSequence(module, hf_config, cached=False)(x)
    y_ref, _ = reference.gated_deltanet(x, hfd.weights_of(module), cfg)
    assert_close(y_hf, y_ref, DELTANET, "uncached prefill")


@pytest.mark.parametrize("T", PREFILLS, ids=[f"T{t}" for t in PREFILLS])
def test_moelab_matches_transformers(T):
    """moelab's GatedDeltaNet (chunked prefill, recurrent decode, one state) follows HF's module
    and cache: every call's output and the final recurrent and conv states."""
    hf_config = hfd.make_config()
    cfg = hfd.moelab_config(hf_config)
    module = hfd.make_module(hf_config, seed=T)
    layer = moelab.GatedDeltaNet(cfg, hfd.LAYER)
    layer.load_weights({name: p.detach().numpy() for name, p in module.named_parameters()})
    hf = hfd.HFSequence(module, hf_config)
    state = layer.new_state()
    for i, n in enumerate(_segments(T)):
        x = hfd.inputs(n, seed=100 * T + i)
        y_hf = hf(x)
        y = layer(x, state)
        assert_close(y, y_hf, DELTANET, f"T={T}, call {i} (n={n}): moelab vs HF")
    assert_close(state.recurrent_state(), hf.recurrent_state(), DELTANET, "recurrent state")
    assert_close(state.conv_state(), hf.conv_state(), DELTANET, "conv state")
    assert state.length == sum(_segments(T))


def test_moelab_loads_the_module_state_dict_as_is():
    """The HF parameter names and shapes are moelab's: a strict load of the module's
    state_dict() (tensors, not arrays) works, and every weight round-trips."""
    hf_config = hfd.make_config()
    module = hfd.make_module(hf_config, seed=1)
    layer = moelab.GatedDeltaNet(hfd.moelab_config(hf_config), hfd.LAYER)
    layer.load_weights(module.state_dict())
    for name, p in module.state_dict().items():
        np.testing.assert_array_equal(layer.weights[name], p.numpy(), err_msg=name)
