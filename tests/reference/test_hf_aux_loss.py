"""moelab's ``stats.aux_loss`` against each family's own definition, on real transformers
routing (5.23).

* Families whose transformers module defines ``load_balancing_loss_func`` (Mixtral, Qwen2-MoE,
  Qwen3-MoE, Qwen3-Next, OLMoE, gpt-oss): that function on the router logits the HF block
  produced. In transformers 5.3 the routers of the first five returned softmax probabilities as
  the recorded ``router_logits`` (softmax applied twice in the loss); 5.23 fixed it (PR #45131),
  and ``test_recorded_router_logits_are_raw`` checks that on a real forward.
* Sigmoid routers (DeepSeek-V3, GLM-4-MoE): transformers records their logits but computes no
  auxiliary loss; moelab's is DeepSeek-V3's sequence-wise balance loss, checked here against
  that formula written in torch on the HF router's own logits and its own selection (group
  limit and correction bias applied).
* Llama 4: transformers computes no auxiliary loss; moelab's choice is the
  ``load_balancing_loss_func`` formula, checked by calling Mixtral's function on the Llama 4
  router's logits.

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
#: The loadable fixtures whose transformers module computes no auxiliary loss.
NO_HF_LOSS = tuple(name for name in fx.LOADABLE if name not in AUX_FAMILIES)


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
    assert set(NO_HF_LOSS) >= {"deepseek_v3", "glm4_moe", "llama4"}
    for family in fx.LOADABLE:
        has_loss = hasattr(_modeling(family), "load_balancing_loss_func")
        assert has_loss == (family in AUX_FAMILIES), family
    for family in AUX_FAMILIES:
        assert callable(_loss_func(family))


def _run_both(family: str):
    """The fixture's HF MoE block and its moelab layer on the same tokens: (the block's
    routing from ``run_block``, the layer's stats, the layer's config). The layer's selection
    is the block's (compared per token as sets)."""
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam)
    x = hfb.hidden_states(fam)                                  # (B, S, H)
    ref = hfb.run_block(fam, hfb.block_of(model, fam.moe_layer), x)
    layer = moelab.hf.load_moe_layer(model.state_dict(), fam.moe_layer, config=model.config)
    _, stats = layer(x.numpy(), return_stats=True)
    np.testing.assert_array_equal(np.sort(stats.topk_ids, axis=1), np.sort(ref["ids"], axis=1))
    return ref, stats, layer.config


@pytest.mark.parametrize("family", AUX_FAMILIES)
def test_aux_loss_matches_load_balancing_loss_func(family):
    ref, stats, cfg = _run_both(family)
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    expected = float(_loss_func(family)((torch.from_numpy(ref["logits"]),), E, k))
    assert_close(stats.aux_loss, expected, LOSS, f"{family} aux_loss")
    # uniform routing gives k; random routers of 48 tokens are measurably unbalanced
    assert abs(stats.aux_loss - k) > 1e-3


@pytest.mark.parametrize("family", NO_HF_LOSS)
def test_aux_loss_without_hf_loss_follows_the_family_definition(family):
    """Sigmoid routers: DeepSeek-V3's sequence-wise balance loss (eq. 17-20, without alpha) on
    the HF router's logits and the experts it selected; Llama 4: moelab's choice, transformers'
    load_balancing_loss_func formula (Mixtral's function) on the Llama 4 router's logits."""
    ref, stats, cfg = _run_both(family)
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    logits = torch.from_numpy(ref["logits"]).double()           # (T, E)
    ids = torch.from_numpy(ref["ids"]).long()                   # (T, k) HF's selection
    if cfg.scoring == "sigmoid":
        T = logits.shape[0]
        s = logits.sigmoid()                                    # (T, E)
        P = (s / s.sum(dim=-1, keepdim=True)).mean(dim=0)       # (E,)
        f = torch.bincount(ids.reshape(-1), minlength=E).double() * E / (k * T)  # (E,)
        expected = float((f * P).sum())
        # the correction bias changed the selection: f is not that of the unbiased top-k
        unbiased = torch.topk(s, k, dim=-1).indices             # (T, k)
        assert not torch.equal(unbiased.sort(dim=-1).values, ids.sort(dim=-1).values)
        assert abs(stats.aux_loss - 1.0) > 1e-3                 # uniform routing gives 1
    elif cfg.scoring == "llama4":
        mixtral = importlib.import_module("transformers.models.mixtral.modeling_mixtral")
        expected = float(mixtral.load_balancing_loss_func((logits.float(),), E, k))
        assert abs(stats.aux_loss - k) > 1e-3                   # uniform routing gives k
    else:
        pytest.fail(f"{family}: scoring {cfg.scoring!r} has no auxiliary-loss definition here")
    assert_close(stats.aux_loss, expected, LOSS, f"{family} aux_loss")


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
