"""moelab.Attention vs Hugging Face transformers (5.23, float32, eager attention).

For each family of ``_hf_attention.FAMILIES`` and each of its listed decoder layers (one per
kind: sliding and full, RoPE and NoPE, chunked), the HF attention module of a tiny config with
random weights runs the whole sequence of T = 37 + 6 tokens; moelab's layer, given the same
weights by their HF names, runs a prefill of 37 tokens and then 6 one-token decode steps through
its KVCache. Every token's output must match HF's row. The float64 twin
``moelab.reference.attention`` is held to the same rows.
"""

from __future__ import annotations

import pytest

import moelab
from moelab import reference
from tolerances import ATTENTION, assert_close

try:
    import torch  # noqa: F401

    import _hf_attention as hfa
except ImportError:  # conftest.py fails or skips every test below
    hfa = None

pytestmark = pytest.mark.reference

PREFILL, DECODE_STEPS = 37, 6

_CASES = [] if hfa is None else [(f, layer) for f in hfa.FAMILIES for layer in f.layers]
_IDS = [f"{f.model_type}-L{layer}" for f, layer in _CASES]


def _setup(family, layer_idx):
    config = hfa.make_config(family)
    spec = moelab.AttentionSpec.from_hf(config, layer_idx)
    module = hfa.make_module(family, config, layer_idx, seed=layer_idx + 1)
    x = hfa.inputs(PREFILL + DECODE_STEPS, seed=7)
    y_hf = hfa.run_module(family, config, module, x)
    return config, spec, module, x, y_hf


@pytest.mark.parametrize("family,layer_idx", _CASES, ids=_IDS)
def test_moelab_matches_transformers(family, layer_idx):
    _, spec, module, x, y_hf = _setup(family, layer_idx)
    layer = moelab.Attention(spec, weights=hfa.weights_of(module))
    y_prefill, y_decode, _ = hfa.run_cached(layer, x, PREFILL, DECODE_STEPS)
    assert_close(y_prefill, y_hf[:PREFILL], ATTENTION, f"{family.model_type} L{layer_idx} prefill")
    assert_close(y_decode, y_hf[PREFILL:], ATTENTION, f"{family.model_type} L{layer_idx} decode")


@pytest.mark.parametrize("family,layer_idx", _CASES, ids=_IDS)
def test_reference_matches_transformers(family, layer_idx):
    _, spec, module, x, y_hf = _setup(family, layer_idx)
    y_ref = reference.attention(x, hfa.weights_of(module), spec)
    assert_close(y_hf, y_ref, ATTENTION, f"{family.model_type} L{layer_idx}: HF vs reference")
