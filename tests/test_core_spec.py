"""moelab._core.MoESpec: the C++ home of a MoE layer's value rules and canonical weights.

It takes MoEConfig's field names and meanings; MoEConfig validates by building it, so both
reject the same values with the same reason (MoEConfig's after its "MoEConfig." prefix), and it
lists the weights MoEConfig and the layer hold.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_config import BASE, VALUE_ERRORS

import moelab
from moelab import _core
from moelab.config import ACTIVATIONS, SCORINGS


def fields_of(cfg: moelab.MoEConfig) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


@pytest.mark.parametrize("case", list(VALUE_ERRORS), ids=str)
def test_the_core_rejects_what_moe_config_rejects_with_its_message(case):
    fields, word = VALUE_ERRORS[case]
    kw = {**BASE, **fields}
    with pytest.raises(ValueError) as python_error:
        moelab.MoEConfig(**kw)
    with pytest.raises(ValueError, match=word) as core_error:
        _core.MoESpec(**kw)
    assert f"MoEConfig.{core_error.value}" == str(python_error.value)


def test_the_core_bounds_every_dimension():
    """A dimension beyond 2^24 (no model has one), as MoEConfig asks the core."""
    dims = dict(hidden_size=1 << 25, num_experts=1, num_experts_per_tok=1, moe_intermediate_size=1)
    with pytest.raises(ValueError, match="hidden_size must be <= 2"):
        _core.MoESpec(**dims)
    with pytest.raises(ValueError, match=r"^MoEConfig\.hidden_size must be <= 2"):
        moelab.MoEConfig(**dims)


@pytest.mark.parametrize("value", [1 << 63, -(1 << 63) - 1, 1 << 100], ids=str)
def test_integers_beyond_64_bits_are_value_errors_naming_the_field(value):
    with pytest.raises(ValueError, match="MoEConfig.num_experts=.* 64-bit"):
        moelab.MoEConfig(**{**BASE, "num_experts": value})


def test_the_size_limit_is_the_cores():
    """2^36 parameters in one layer: the core's limit, which MoEConfig does not restate."""
    E = (1 << 36) // (3 * 64 * 64 + 64) + 1  # one expert over the limit (H = I = 64)
    with pytest.raises(ValueError, match="exceeds the limit of 68,719,476,736 parameters"):
        moelab.MoEConfig(64, E, 1, 64)
    assert moelab.MoEConfig(64, E - 1, 1, 64).num_params <= 1 << 36


def test_none_and_zero_keep_moe_config_meanings():
    spec = _core.MoESpec(**BASE, router_logit_softcap=None, capacity_factor=None)
    assert spec.capacity(10) == -1 and spec.shared_width == 0
    for name in ("router_logit_softcap", "capacity_factor"):
        with pytest.raises(ValueError, match=name):  # 0 is a value, as in MoEConfig
            _core.MoESpec(**BASE, **{name: 0.0})
    spec = _core.MoESpec(**BASE, n_shared_experts=2, shared_intermediate_size=None)
    assert spec.shared_width == 2 * BASE["moe_intermediate_size"]
    assert _core.MoESpec(**BASE, n_shared_experts=2, shared_intermediate_size=5).shared_width == 5
    assert _core.MoESpec(**BASE, capacity_factor=1.5).capacity(10) == 4  # ceil(10 * 2 / 8 * 1.5)
    # never more than the T * k pairs, so that a huge factor stays an integer
    assert _core.MoESpec(**BASE, capacity_factor=1e300).capacity(10) == 20


def moe_configs() -> dict:
    configs = {name: cfg.moe for name in moelab.list_presets()
               if (cfg := moelab.preset(name)).moe is not None}
    configs["every-switch"] = moelab.MoEConfig(
        24, 8, 2, 12, scoring="sigmoid", n_group=4, topk_group=2, correction_bias=True,
        router_bias=True, expert_bias=True, n_shared_experts=2, shared_intermediate_size=20,
        shared_expert_gate=True)
    return configs


@pytest.mark.parametrize("name, cfg", list(moe_configs().items()), ids=str)
def test_weight_shapes_and_num_params_match_moe_config(name, cfg):
    spec = _core.MoESpec(**fields_of(cfg))
    assert spec.weight_shapes() == list(cfg.weight_shapes().items())
    assert spec.num_params == cfg.num_params
    assert spec.shared_width == cfg.shared_width


def test_the_layer_holds_the_weights_its_spec_lists():
    cfg = moe_configs()["every-switch"]
    layer = moelab.MoELayer(cfg, seed=0, weight_dtype="bfloat16")
    assert [(n, w.shape) for n, w in layer.weights.items()] == \
        _core.MoESpec(**fields_of(cfg)).weight_shapes()


def test_router_and_activation_names_have_one_home():
    assert _core.SCORINGS == SCORINGS
    assert _core.ACTIVATIONS == ACTIVATIONS
