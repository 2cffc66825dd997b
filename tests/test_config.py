"""MoEConfig: every validation rule of config.py raises with a reason, and the derived sizes
(shared width, weight shapes, parameter counts) follow from the fields."""

from __future__ import annotations

import dataclasses
import math

import pytest

import moelab

BASE = dict(hidden_size=16, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=8)


def make(**changes) -> moelab.MoEConfig:
    return moelab.MoEConfig(**{**BASE, **changes})


# --------------------------------------------------------------------------------------------
# types
# --------------------------------------------------------------------------------------------
INT_FIELDS = ["hidden_size", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
              "n_group", "topk_group", "n_shared_experts"]
BOOL_FIELDS = ["norm_topk_prob", "correction_bias", "router_bias", "expert_bias",
               "shared_expert_gate"]


@pytest.mark.parametrize("value", [8.0, "8", True, None], ids=["float", "str", "bool", "None"])
@pytest.mark.parametrize("field", INT_FIELDS, ids=str)
def test_int_fields_reject_other_types(field, value):
    with pytest.raises(TypeError, match=field):
        make(**{field: value})


@pytest.mark.parametrize("value", [1, 0, "True", None], ids=["1", "0", "str", "None"])
@pytest.mark.parametrize("field", BOOL_FIELDS, ids=str)
def test_bool_fields_reject_other_types(field, value):
    with pytest.raises(TypeError, match=field):
        make(**{field: value})


@pytest.mark.parametrize("field,value", [
    ("shared_intermediate_size", 8.0), ("shared_intermediate_size", "8"),
    ("routed_scaling_factor", "2.5"), ("routed_scaling_factor", None),
    ("routed_scaling_factor", True), ("router_logit_softcap", "30"),
    ("router_logit_softcap", 3j), ("capacity_factor", "1.0"), ("capacity_factor", True),
    ("scoring", 1), ("scoring", None), ("activation", 2), ("activation", None),
], ids=lambda v: repr(v) if not isinstance(v, str) else v)
def test_other_fields_reject_other_types(field, value):
    with pytest.raises(TypeError, match=field):
        make(**{field: value})


def test_numpy_integers_and_floats_are_accepted():
    import numpy as np
    cfg = make(hidden_size=np.int64(16), routed_scaling_factor=np.float32(2.0), scoring="sigmoid",
               capacity_factor=np.float64(1.5), router_logit_softcap=30)
    assert cfg.hidden_size == 16 and cfg.routed_scaling_factor == 2.0
    assert type(cfg.hidden_size) is int and type(cfg.capacity_factor) is float


def test_numpy_fields_are_held_as_python_numbers_so_counts_never_wrap():
    import numpy as np
    cfg = make(hidden_size=np.uint8(200), moe_intermediate_size=np.uint8(250))
    assert cfg.num_params == 8 * (3 * 200 * 250) + 8 * 200  # not wrapped in uint8


@pytest.mark.parametrize("np_type", ["uint8", "int8", "int16", "uint32", "int64"])
def test_numpy_integer_fields_become_python_ints(np_type):
    """A NumPy integer field is kept as a Python int: the sizes computed from it neither wrap
    (uint8 4 * 3 * 16 ...) nor overflow (NumPy scalars raise OverflowError on some mixes)."""
    import numpy as np
    t = getattr(np, np_type)
    cfg = make(hidden_size=t(16), num_experts=t(8), num_experts_per_tok=t(2),
               moe_intermediate_size=t(8), n_shared_experts=t(1), shared_intermediate_size=t(24))
    for name in INT_FIELDS + ["shared_intermediate_size"]:
        assert type(getattr(cfg, name)) is int, name
    assert cfg.num_params == make(n_shared_experts=1, shared_intermediate_size=24).num_params
    assert type(cfg.num_params) is int


@pytest.mark.parametrize("field, fields", [
    ("hidden_size", dict(hidden_size=(1 << 24) + 1)),
    ("num_experts", dict(num_experts=2**40)),
    ("n_shared_experts", dict(n_shared_experts=2**32, shared_intermediate_size=8)),
    ("shared expert width", dict(n_shared_experts=(1 << 21), moe_intermediate_size=16)),
], ids=["hidden_size", "num_experts", "n_shared_experts", "shared-width"])
def test_every_dimension_is_bounded_as_the_core_bounds_it(field, fields):
    """The config refuses what the core would refuse (and what it could not even convert)."""
    with pytest.raises(ValueError, match=f"{field}.* must be <= 2\\^24 = 16777216"):
        make(**fields)


# --------------------------------------------------------------------------------------------
# values and impossible combinations
# --------------------------------------------------------------------------------------------
VALUE_ERRORS = {
    # id: (fields, a word the message must contain)
    "hidden_size-0": (dict(hidden_size=0), "hidden_size"),
    "num_experts-0": (dict(num_experts=0, num_experts_per_tok=1), "num_experts"),
    "intermediate-neg": (dict(moe_intermediate_size=-4), "moe_intermediate_size"),
    "k-0": (dict(num_experts_per_tok=0), "num_experts_per_tok"),
    "k-above-E": (dict(num_experts_per_tok=9), "num_experts_per_tok"),
    "scoring-unknown": (dict(scoring="softermax"), "scoring"),
    "activation-unknown": (dict(activation="swish"), "activation"),
    "rsf-0": (dict(routed_scaling_factor=0.0), "routed_scaling_factor"),
    "rsf-neg": (dict(routed_scaling_factor=-1.0), "routed_scaling_factor"),
    "rsf-nan": (dict(routed_scaling_factor=math.nan), "routed_scaling_factor"),
    "rsf-inf": (dict(routed_scaling_factor=math.inf), "routed_scaling_factor"),
    "rsf-topk_softmax": (dict(scoring="topk_softmax", routed_scaling_factor=2.0),
                         "routed_scaling_factor"),
    "rsf-llama4": (dict(scoring="llama4", routed_scaling_factor=2.0), "routed_scaling_factor"),
    "n_group-0": (dict(n_group=0), "n_group"),
    "topk_group-0": (dict(topk_group=0), "topk_group"),
    "topk_group-above-n_group": (dict(scoring="sigmoid", n_group=2, topk_group=3), "topk_group"),
    "groups-softmax": (dict(n_group=2, topk_group=1), "n_group"),
    "groups-llama4": (dict(scoring="llama4", n_group=2, topk_group=1), "n_group"),
    "groups-not-dividing": (dict(scoring="sigmoid", n_group=3, topk_group=1), "n_group"),
    "groups-of-one": (dict(scoring="sigmoid", n_group=8, topk_group=2), "group"),
    "k-above-allowed-groups": (dict(scoring="sigmoid", n_group=4, topk_group=1,
                                    num_experts_per_tok=3), "num_experts_per_tok"),
    "correction_bias-softmax": (dict(correction_bias=True), "correction_bias"),
    "correction_bias-topk_softmax": (dict(scoring="topk_softmax", correction_bias=True),
                                     "correction_bias"),
    "softcap-0": (dict(router_logit_softcap=0.0), "router_logit_softcap"),
    "softcap-neg": (dict(router_logit_softcap=-30.0), "router_logit_softcap"),
    "softcap-inf": (dict(router_logit_softcap=math.inf), "router_logit_softcap"),
    "softcap-nan": (dict(router_logit_softcap=math.nan), "router_logit_softcap"),
    "n_shared-neg": (dict(n_shared_experts=-1), "n_shared_experts"),
    "shared-size-without-shared": (dict(shared_intermediate_size=32), "shared_intermediate_size"),
    "gate-without-shared": (dict(shared_expert_gate=True), "shared_expert_gate"),
    "shared-size-0": (dict(n_shared_experts=1, shared_intermediate_size=0),
                      "shared_intermediate_size"),
    "capacity-0": (dict(capacity_factor=0.0), "capacity_factor"),
    "capacity-neg": (dict(capacity_factor=-1.0), "capacity_factor"),
    "capacity-nan": (dict(capacity_factor=math.nan), "capacity_factor"),
    "capacity-inf": (dict(capacity_factor=math.inf), "capacity_factor"),
    "absurd-size": (dict(hidden_size=1 << 20, num_experts=1 << 10, moe_intermediate_size=1 << 20),
                    "parameters"),
    # applied in float32, where these would be inf
    "rsf-beyond-float32": (dict(routed_scaling_factor=1e300),
                           r"routed_scaling_factor must be <= 3.4028234663852886e\+38 \(the "
                           r"float32 maximum\), got 1e\+300"),
    "softcap-beyond-float32": (dict(router_logit_softcap=1e300),
                               r"router_logit_softcap must be <= 3.4028234663852886e\+38"),
}


@pytest.mark.parametrize("case", list(VALUE_ERRORS), ids=str)
def test_impossible_values_raise_value_error(case):
    fields, word = VALUE_ERRORS[case]
    with pytest.raises(ValueError, match=word):
        make(**fields)


@pytest.mark.parametrize("fields", [
    dict(scoring="sigmoid", n_group=4, topk_group=2, num_experts_per_tok=4, correction_bias=True,
         routed_scaling_factor=2.5),
    dict(scoring="sigmoid", n_group=4, topk_group=4, num_experts_per_tok=8),
    dict(scoring="topk_softmax", router_bias=True, expert_bias=True, activation="swiglu_oai"),
    dict(scoring="llama4", num_experts_per_tok=1, n_shared_experts=1),
    dict(router_logit_softcap=30.0, norm_topk_prob=False, capacity_factor=1.25),
    dict(num_experts_per_tok=8),
    dict(n_shared_experts=2, shared_intermediate_size=24, shared_expert_gate=True),
], ids=["deepseek", "all-groups", "gpt-oss", "llama4", "grok-capacity", "k-equals-E", "qwen2"])
def test_valid_combinations_are_accepted(fields):
    cfg = make(**fields)
    for name, value in fields.items():
        assert getattr(cfg, name) == value


def test_replace_validates_again():
    cfg = make()
    assert cfg.replace(num_experts_per_tok=3).num_experts_per_tok == 3
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        cfg.replace(num_experts_per_tok=9)
    with pytest.raises(ValueError, match="correction_bias"):
        cfg.replace(correction_bias=True)


def test_frozen():
    cfg = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hidden_size = 32  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# derived sizes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_shared,size,expected", [(0, None, 0), (1, None, 8), (3, None, 24),
                                                    (2, 40, 40)],
                         ids=["none", "one", "three", "explicit"])
def test_shared_width(n_shared, size, expected):
    assert make(n_shared_experts=n_shared, shared_intermediate_size=size).shared_width == expected


FLAG_SETS = {
    "plain": dict(),
    "gpt-oss": dict(scoring="topk_softmax", router_bias=True, expert_bias=True),
    "deepseek": dict(scoring="sigmoid", correction_bias=True, n_shared_experts=2),
    "qwen2": dict(n_shared_experts=1, shared_intermediate_size=40, shared_expert_gate=True),
}


@pytest.mark.parametrize("flags", list(FLAG_SETS), ids=str)
def test_weight_shapes_and_param_counts(flags):
    cfg = make(**FLAG_SETS[flags])
    shapes = cfg.weight_shapes()
    H, E, k, I, S = 16, 8, 2, 8, cfg.shared_width
    assert shapes["router.weight"] == (E, H)
    assert shapes["experts.gate_up_proj"] == (E, 2 * I, H)
    assert shapes["experts.down_proj"] == (E, H, I)
    assert ("router.bias" in shapes) == cfg.router_bias
    assert ("router.e_score_correction_bias" in shapes) == cfg.correction_bias
    assert ("experts.gate_up_proj_bias" in shapes) == cfg.expert_bias
    assert ("experts.down_proj_bias" in shapes) == cfg.expert_bias
    assert ("shared_experts.gate_up_proj" in shapes) == (S > 0)
    assert ("shared_expert_gate.weight" in shapes) == cfg.shared_expert_gate
    if S:
        assert shapes["shared_experts.gate_up_proj"] == (2 * S, H)
        assert shapes["shared_experts.down_proj"] == (H, S)
    # parameters = every tensor except the correction bias (a buffer, not a parameter)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    total = sum(v for n, v in sizes.items() if n != "router.e_score_correction_bias")
    assert cfg.num_params == total
    routed = sum(v for n, v in sizes.items() if n.startswith("experts."))
    assert cfg.num_active_params == total - routed + routed // E * k
    # the layer allocates exactly these tensors
    layer = moelab.MoELayer(cfg, seed=0)
    assert {n: w.shape for n, w in layer.weights.items()} == shapes


def test_repr_shows_dimensions_and_non_defaults():
    text = repr(make(scoring="sigmoid", routed_scaling_factor=2.5))
    for part in ("H=16", "E=8", "k=2", "I=8", "scoring='sigmoid'", "routed_scaling_factor=2.5"):
        assert part in text, text
    assert "capacity_factor" not in text  # defaults are left out
