"""moelab vs Hugging Face transformers (5.23, CPU, float32): one MoE block per family.

For each family a tiny transformers model is built with random weights, the weights of its MoE
layer are copied into a ``moelab.MoELayer`` through ``moelab.hf.load_moe_layer`` (from the
model's own ``state_dict()``, the 5.x fused names), and both run on the same hidden states.
Compared: the output (scale-relative error <= 1e-5), the selected experts (as sets per token),
their weights, and the router logits.

transformers 5.23 runs decorated experts (``@use_experts_implementation``) with
``grouped_mm`` by default, also on CPU (torch 2.13 has a CPU kernel); the comparison is done
with ``eager`` forced and repeated with ``grouped_mm`` and ``batched_mm``, which all run on CPU.
Llama 4's experts are not decorated (a dense ``bmm`` over all experts).
"""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab.hf_config import from_hf_config
from tolerances import LOGITS, OUTPUT, ROUTING_WEIGHTS, assert_close, rel_err

import _fixtures as fx

try:
    import torch

    import _hf_blocks as hfb
except ImportError:  # conftest.py fails or skips every test below
    torch = hfb = None

pytestmark = pytest.mark.reference

#: Every parity fixture (moelab.families()) of a family whose MoE layers moelab.hf loads.
FAMILIES = fx.LOADABLE
#: Those whose experts use @use_experts_implementation (eager / grouped_mm / batched_mm).
DECORATED = tuple(f for f in FAMILIES if fx.FIXTURES[f].decorated)
#: Fixtures of families whose router moelab does not reproduce (their loading is refused).
REFUSED = tuple(f for f in fx.FIXTURES if f not in FAMILIES)
IMPLS = ("eager", "grouped_mm", "batched_mm")
CASES = [(f, "eager") for f in FAMILIES] + [(f, i) for f in DECORATED for i in IMPLS[1:]]


def _compare(family: str, impl: str):
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam, impl=impl)
    block = hfb.block_of(model, fam.moe_layer)
    x = hfb.hidden_states(fam)                                   # (B, S, H)
    ref = hfb.run_block(fam, block, x)
    layer = moelab.hf.load_moe_layer(model.state_dict(), fam.moe_layer, config=model.config)
    y, stats = layer(x.numpy(), return_stats=True)               # (B, S, H)
    return model, block, x, ref, y.reshape(ref["y"].shape), stats


@pytest.mark.parametrize("family,impl", CASES, ids=[f"{f}-{i}" for f, i in CASES])
def test_moe_block_matches_transformers(family, impl):
    model, block, _, ref, y, stats = _compare(family, impl)
    if family in DECORATED:  # the requested experts implementation is the one that ran
        assert block.experts.config._experts_implementation == impl
    assert rel_err(y, ref["y"]) <= OUTPUT.rtol
    assert_close(y, ref["y"], OUTPUT, f"{family}/{impl} output")
    ids, w = hfb.by_id(stats.topk_ids, stats.topk_weights)       # (T, k), (T, k)
    ref_ids, ref_w = hfb.by_id(ref["ids"], ref["weights"])       # (T, k), (T, k)
    np.testing.assert_array_equal(ids, ref_ids, err_msg=f"{family}: selected experts differ")
    assert_close(w, ref_w, ROUTING_WEIGHTS, f"{family} routing weights")
    assert_close(stats.router_logits, ref["logits"], LOGITS, f"{family} router logits")
    # the routing is not degenerate: several experts are used
    assert np.count_nonzero(stats.tokens_per_expert) >= min(4, layer_experts(model, family))


def layer_experts(model, family: str) -> int:
    return hfb.block_of(model, fx.FIXTURES[family].moe_layer).experts.num_experts


@pytest.mark.parametrize("family", DECORATED)
def test_default_experts_implementation_on_cpu_is_grouped_mm(family):
    """What runs when nothing is forced: grouped_mm (torch 2.13 has a CPU grouped_mm)."""
    import transformers

    fam = fx.FIXTURES[family]
    assert fam.decorated
    model = transformers.AutoModelForCausalLM.from_config(fam.make_config())
    assert model.config._experts_implementation == "grouped_mm"
    assert hfb.block_of(model, fam.moe_layer).experts.config._experts_implementation == "grouped_mm"


def test_llama4_experts_are_not_dispatched():
    """Llama 4's experts have no @use_experts_implementation: the dense bmm always runs."""
    import transformers
    from transformers.models.llama4.modeling_llama4 import Llama4TextExperts

    assert not fx.FIXTURES["llama4"].decorated
    model = transformers.AutoModelForCausalLM.from_config(fx.FIXTURES["llama4"].make_config())
    assert model.config._experts_implementation == "eager"
    assert not hasattr(Llama4TextExperts, "_apply_gate")  # the decorator adds it


def test_deepseek_v3_bias_and_groups_decide_the_selection():
    """The DeepSeek-V3 case exercises both the correction bias and the group limit: without
    either the transformers router picks other experts for some tokens (and moelab matches the
    router with both, test above)."""
    fam = fx.FIXTURES["deepseek_v3"]
    model = hfb.make_model(fam)
    gate = hfb.block_of(model, fam.moe_layer).gate
    assert gate.num_group > 1 and gate.topk_group < gate.num_group
    bias = gate.e_score_correction_bias.clone()
    assert float(bias.abs().max()) > 0.1
    x2 = hfb.hidden_states(fam).reshape(-1, hfb.H)              # (T, H)

    def selection():
        with torch.no_grad():
            ids = gate(x2)[2].numpy()                           # (T, k)
        return np.sort(ids, axis=1)

    full = selection()
    gate.e_score_correction_bias.zero_()
    no_bias = selection()
    gate.e_score_correction_bias.copy_(bias)
    gate.num_group, gate.topk_group = 1, 1
    no_groups = selection()
    assert (full != no_bias).any(axis=1).sum() >= 3
    assert (full != no_groups).any(axis=1).sum() >= 3
    layer = moelab.hf.load_moe_layer(model.state_dict(), fam.moe_layer, config=model.config)
    _, stats = layer(x2.numpy(), return_stats=True)
    np.testing.assert_array_equal(np.sort(stats.topk_ids, axis=1), full)


def test_gpt_oss_clamps_are_active():
    """The gpt-oss inputs drive the clamped SwiGLU past its limits (gate > 7, |up| > 7) on
    selected (token, expert) pairs, so the parity test covers the clamps."""
    fam = fx.FIXTURES["gpt_oss"]
    model = hfb.make_model(fam)
    block = hfb.block_of(model, fam.moe_layer)
    x2 = hfb.hidden_states(fam).reshape(-1, hfb.H)              # (T, H)
    with torch.no_grad():
        _, _, ids = block.router(x2)                            # (T, k)
        e = ids.reshape(-1)                                     # (T*k,)
        xt = x2.repeat_interleave(ids.shape[1], dim=0)          # (T*k, H)
        gu = torch.einsum("nh,nhj->nj", xt, block.experts.gate_up_proj[e]) \
            + block.experts.gate_up_proj_bias[e]                # (T*k, 2I)
    gate, up = gu[:, 0::2], gu[:, 1::2]                          # (T*k, I) each
    limit = model.config.swiglu_limit
    assert limit == 7.0
    assert int((gate > limit).sum()) >= 10
    assert int((up > limit).sum()) >= 10 and int((up < -limit).sum()) >= 10


def test_phimoe_is_refused():
    assert "phimoe" in REFUSED


@pytest.mark.parametrize("family", REFUSED)
def test_unreproduced_router_is_refused_with_a_clear_error(family):
    """PhiMoE's sparsemixer router is not one of moelab's scorings: from_hf_config marks the
    config ``router_variant='sparsemixer'`` and moelab.hf refuses to load its layers."""
    import transformers

    fam = fx.FIXTURES[family]
    model = transformers.AutoModelForCausalLM.from_config(fam.make_config())
    cfg = from_hf_config(model.config.to_dict())
    assert cfg.router_variant is not None
    with pytest.raises(ValueError, match=cfg.router_variant):
        moelab.hf.load_moe_layer(model.state_dict(), fam.moe_layer, config=model.config)
