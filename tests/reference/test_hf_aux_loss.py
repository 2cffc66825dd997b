"""moelab's ``stats.aux_loss`` vs transformers' ``load_balancing_loss_func`` (5.23).

transformers 5.3 had a defect: the routers of Mixtral, Qwen2-MoE,
Qwen3-MoE, Qwen3-Next and OLMoE returned softmax probabilities as element 0, which the model
records as ``router_logits``, so the loss applied softmax twice. In 5.23 it is fixed (PR
#45131): every router returns the raw logits first. ``test_recorded_router_logits_are_raw``
checks that on the recorded outputs of a real forward, so the comparisons below are against the
correct (single-softmax) formula, as computed by transformers itself.

transformers concatenates the router outputs of all MoE layers into one (L*T, E) matrix before
averaging; moelab's ``aux_loss`` is one layer's. The end-to-end test compares per layer and
rebuilds the multi-layer value from moelab's per-layer routing.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import moelab
from moelab.hf_config import from_hf_config
from tolerances import LOGITS, LOSS, assert_close

import _fixtures as fx

try:
    import torch

    import _hf_blocks as hfb
except ImportError:  # conftest.py fails or skips every test below
    torch = hfb = None

pytestmark = pytest.mark.reference

#: Families whose transformers module defines load_balancing_loss_func (DeepSeek-V3,
#: GLM-4-MoE and Llama 4 compute no auxiliary loss): their fixtures say ``aux_loss=True``.
AUX_FAMILIES = fx.AUX_LOSS_FAMILIES


def _modeling(fixture: str):
    """The transformers modeling module of a fixture's family."""
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    name = model_type_to_module_name(fx.FAMILY_OF[fixture])
    return importlib.import_module(f"transformers.models.{name}.modeling_{name}")


def _loss_func(fixture: str):
    return _modeling(fixture).load_balancing_loss_func


def test_aux_families_are_the_fixtures_whose_module_has_the_loss():
    assert set(AUX_FAMILIES) >= {"mixtral", "qwen2_moe", "qwen3_moe", "qwen3_next", "olmoe",
                                 "gpt_oss"}
    for family in fx.LOADABLE:
        has_loss = hasattr(_modeling(family), "load_balancing_loss_func")
        assert has_loss == (family in AUX_FAMILIES), family
    for family in AUX_FAMILIES:
        assert callable(_loss_func(family))


@pytest.mark.parametrize("family", AUX_FAMILIES)
def test_aux_loss_matches_load_balancing_loss_func(family):
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam)
    block = hfb.block_of(model, fam.moe_layer)
    x = hfb.hidden_states(fam)                                  # (B, S, H)
    ref = hfb.run_block(fam, block, x)
    layer = moelab.hf.load_moe_layer(model.state_dict(), fam.moe_layer, config=model.config)
    _, stats = layer(x.numpy(), return_stats=True)
    E, k = layer.config.num_experts, layer.config.num_experts_per_tok
    expected = float(_loss_func(family)((torch.from_numpy(ref["logits"]),), E, k))
    assert_close(stats.aux_loss, expected, LOSS, f"{family} aux_loss")
    # uniform routing gives k; random routers of 48 tokens are measurably unbalanced
    assert abs(stats.aux_loss - k) > 1e-3


@pytest.mark.parametrize("family", AUX_FAMILIES)
def test_recorded_router_logits_are_raw(family):
    """A whole-model forward with ``output_router_logits=True``: per MoE layer, what transformers
    records equals moelab's raw ``router_logits`` on the same input (no softmax applied), its
    loss on that layer equals moelab's aux_loss, and the model's multi-layer ``aux_loss`` equals
    the value rebuilt from moelab's per-layer routing."""
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam)
    moe_layers = from_hf_config(model.config.to_dict()).moe_layer_indices
    inputs = {}
    hooks = [hfb.block_of(model, i).register_forward_pre_hook(
        lambda _m, args, i=i: inputs.__setitem__(i, args[0].detach().clone()))
        for i in moe_layers]
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=g)
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=True)
    for h in hooks:
        h.remove()
    recorded = [r.float().numpy() for r in out.router_logits]   # L_moe x (T, E)
    assert len(recorded) == len(moe_layers) == len(inputs)

    loss_func = _loss_func(family)
    counts, probs = [], []
    for rec, i in zip(recorded, moe_layers):
        layer = moelab.hf.load_moe_layer(model.state_dict(), i, config=model.config)
        E, k = layer.config.num_experts, layer.config.num_experts_per_tok
        _, stats = layer(inputs[i].numpy(), return_stats=True)
        assert_close(rec, stats.router_logits, LOGITS, f"{family} layer {i} recorded logits")
        assert not np.allclose(rec.sum(axis=1), 1.0, atol=1e-3)  # not probabilities
        expected = float(loss_func((torch.from_numpy(rec),), E, k))
        assert_close(stats.aux_loss, expected, LOSS, f"{family} layer {i} aux_loss")
        counts.append(stats.tokens_per_expert)                  # (E,)
        z = stats.router_logits.astype(np.float64)              # (T, E)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(p / p.sum(axis=1, keepdims=True))          # (T, E)
    T = recorded[0].shape[0]
    f = np.sum(counts, axis=0) / (len(moe_layers) * T)         # (E,)
    P = np.concatenate(probs).mean(axis=0)                      # (E,)
    assert_close(float(out.aux_loss), E * float(f @ P), LOSS, f"{family} model aux_loss")
