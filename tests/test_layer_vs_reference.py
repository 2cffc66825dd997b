"""MoELayer (float32 C++ core) against moelab.reference.moe_layer (float64 NumPy twin).

Every router x activation x shared-expert variant x {dropless, capacity} at T in {0, 1, 7, 128}
and k in {1, E}, then one test per feature: 3-D input, expert biases, router bias, soft-cap,
group-limited routing, routed_scaling_factor, an expert that receives no tokens, capacity
counts, and model-like bundles. Each test compares the output, the routing (ids exactly; the
weights, logits and losses within tests/tolerances.py) and the counts exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import reference
from tolerances import LOGITS, LOSS, OUTPUT, ROUTING_WEIGHTS, WEIGHT_SUM, assert_close

SCORING_VARIANTS = {
    "softmax": {},
    "sigmoid": {"correction_bias": True},  # DeepSeek-V3 style, one group
    "topk_softmax": {},
    "llama4": {},
}
SHARED_VARIANTS = {
    "no-shared": {},
    "shared": {"n_shared_experts": 1},
    "gated-shared": {"n_shared_experts": 1, "shared_intermediate_size": 12,
                     "shared_expert_gate": True},
}
CAPACITY_VARIANTS = {"dropless": None, "capacity": 0.75}

H, E, I = 16, 4, 8  # small: the grid below has ~1000 cases


def random_weights(cfg: moelab.MoEConfig, rng: np.random.Generator) -> dict:
    """Random float32 weights for every canonical name of ``cfg``.

    Matrices are N(0, 1/fan_in) so activations stay O(1); biases are N(0, 0.1^2) and the
    selection-only correction bias N(0, 0.05^2), small next to sigmoid scores in (0, 1).
    """
    out = {}
    for name, shape in cfg.weight_shapes().items():
        if name == "router.e_score_correction_bias":
            w = rng.normal(0.0, 0.05, shape)
        elif len(shape) == 1 or name.endswith("_bias"):
            w = rng.normal(0.0, 0.1, shape)
        else:
            w = rng.normal(0.0, 1.0, shape) / np.sqrt(shape[-1])
        out[name] = w.astype(np.float32)
    return out


def make_layer(cfg: moelab.MoEConfig, rng: np.random.Generator) -> moelab.MoELayer:
    layer = moelab.MoELayer(cfg, seed=1)
    layer.load_weights(random_weights(cfg, rng))
    return layer


def starve_last_expert(layer: moelab.MoELayer, x: np.ndarray) -> np.ndarray:
    """Make expert E-1 lose every selection, in place; returns x with feature 0 set to +3.

    Router row E-1 becomes -20 * x[:, 0] = -60 (-29 after a soft-cap of 30; sigmoid ~ 1e-26),
    far below the O(1) logits of the other experts; its correction bias, if any, is set to -1.
    """
    x = x.copy()
    x[..., 0] = 3.0
    w = layer.weights
    w["router.weight"][-1, :] = 0.0
    w["router.weight"][-1, 0] = -20.0
    if "router.bias" in w:
        w["router.bias"][-1] = 0.0
    if "router.e_score_correction_bias" in w:
        w["router.e_score_correction_bias"][-1] = -1.0
    return x


def check_against_reference(layer: moelab.MoELayer, x: np.ndarray):
    """Run the layer and its reference twin on x; compare everything. Returns both stats."""
    cfg = layer.config
    y, st = layer(x, return_stats=True)
    y_ref, st_ref = reference.moe_layer(x, layer.weights, cfg)
    T = int(np.prod(x.shape[:-1]))
    k = cfg.num_experts_per_tok

    assert y.dtype == np.float32 and y.shape == x.shape
    assert st.topk_ids.shape == (T, k) and np.issubdtype(st.topk_ids.dtype, np.integer)
    assert st.topk_weights.shape == (T, k) and st.topk_weights.dtype == np.float32
    assert st.router_logits.shape == (T, cfg.num_experts)
    assert st.tokens_per_expert.shape == (cfg.num_experts,)
    assert isinstance(st.aux_loss, float) and isinstance(st.z_loss, float)
    assert isinstance(st.dropped, int)

    np.testing.assert_array_equal(st.topk_ids, st_ref["topk_ids"], err_msg="topk_ids")
    np.testing.assert_array_equal(st.tokens_per_expert, st_ref["tokens_per_expert"],
                                  err_msg="tokens_per_expert")
    assert st.dropped == st_ref["dropped"]
    assert int(st.tokens_per_expert.sum()) + st.dropped == T * k
    assert_close(st.router_logits, st_ref["router_logits"], LOGITS, "router_logits")
    assert_close(st.topk_weights, st_ref["topk_weights"], ROUTING_WEIGHTS, "topk_weights")
    assert_close(st.aux_loss, st_ref["aux_loss"], LOSS, "aux_loss")
    assert_close(st.z_loss, st_ref["z_loss"], LOSS, "z_loss")
    assert_close(y, y_ref, OUTPUT, "y")
    return st, st_ref


# --------------------------------------------------------------------------------------------
# the full grid
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [0, 1, 7, 128], ids=lambda t: f"T{t}")
@pytest.mark.parametrize("k", [1, E], ids=lambda k: f"k{k}")
@pytest.mark.parametrize("capacity", list(CAPACITY_VARIANTS), ids=str)
@pytest.mark.parametrize("shared", list(SHARED_VARIANTS), ids=str)
@pytest.mark.parametrize("activation", list(moelab.config.ACTIVATIONS), ids=str)
@pytest.mark.parametrize("scoring", list(SCORING_VARIANTS), ids=str)
def test_grid(scoring, activation, shared, capacity, k, T, rng):
    cfg = moelab.MoEConfig(H, E, k, I, scoring=scoring, activation=activation,
                           capacity_factor=CAPACITY_VARIANTS[capacity],
                           **SCORING_VARIANTS[scoring], **SHARED_VARIANTS[shared])
    layer = make_layer(cfg, rng)
    x = rng.normal(size=(T, H)).astype(np.float32)  # (T, H)
    st, _ = check_against_reference(layer, x)
    if capacity == "capacity" and k == E:
        # k = E sends T pairs to every expert, which keeps C = ceil(0.75 T) of them.
        assert st.dropped == E * (T - reference.capacity(T, cfg))


# --------------------------------------------------------------------------------------------
# one feature at a time
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 5), (1, 1), (2, 0), (0, 4)], ids=lambda s: f"B{s[0]}S{s[1]}")
@pytest.mark.parametrize("scoring", list(SCORING_VARIANTS), ids=str)
def test_3d_input(scoring, shape, rng):
    cfg = moelab.MoEConfig(H, E, 2, I, scoring=scoring, n_shared_experts=1,
                           **SCORING_VARIANTS[scoring])
    layer = make_layer(cfg, rng)
    x = rng.normal(size=(*shape, H)).astype(np.float32)  # (B, S, H)
    check_against_reference(layer, x)
    # the same tokens as a (T, H) batch: the same rows, in flattened order b * S + s
    y3, st3 = layer(x, return_stats=True)
    y2, st2 = layer(x.reshape(-1, H), return_stats=True)
    np.testing.assert_array_equal(y3.reshape(-1, H), y2)
    np.testing.assert_array_equal(st3.topk_ids, st2.topk_ids)


@pytest.mark.parametrize("capacity", list(CAPACITY_VARIANTS), ids=str)
@pytest.mark.parametrize("activation", list(moelab.config.ACTIVATIONS), ids=str)
@pytest.mark.parametrize("scoring", list(SCORING_VARIANTS), ids=str)
def test_expert_bias(scoring, activation, capacity, rng):
    # llama4 + capacity + biases: a dropped pair must contribute nothing (not Expert(0 * x),
    # which is non-zero with biases).
    cfg = moelab.MoEConfig(H, E, 2, I, scoring=scoring, activation=activation, expert_bias=True,
                           capacity_factor=CAPACITY_VARIANTS[capacity],
                           **SCORING_VARIANTS[scoring])
    layer = make_layer(cfg, rng)
    x = rng.normal(size=(33, H)).astype(np.float32)
    check_against_reference(layer, x)


@pytest.mark.parametrize("k", [1, 2], ids=lambda k: f"k{k}")
@pytest.mark.parametrize("scoring", list(SCORING_VARIANTS), ids=str)
def test_router_bias(scoring, k, rng):
    cfg = moelab.MoEConfig(H, E, k, I, scoring=scoring, router_bias=True,
                           **SCORING_VARIANTS[scoring])
    layer = make_layer(cfg, rng)
    layer.weights["router.bias"][:] = rng.normal(0.0, 1.0, E)  # large enough to matter
    x = rng.normal(size=(33, H)).astype(np.float32)
    check_against_reference(layer, x)


@pytest.mark.parametrize("cap", [0.5, 4.0], ids=lambda c: f"cap{c:g}")
@pytest.mark.parametrize("scoring", list(SCORING_VARIANTS), ids=str)
def test_softcap(scoring, cap, rng):
    # Raw logits of order 1.5 cap: the cap bends them, but does not saturate tanh (nor, with
    # cap <= 4, the sigmoid) into float32 ties, which would make float32 and float64 pick
    # different experts legitimately. Grok-2's cap of 30 is in test_model_like.
    cfg = moelab.MoEConfig(H, E, 2, I, scoring=scoring, router_logit_softcap=cap,
                           router_bias=True, **SCORING_VARIANTS[scoring])
    layer = make_layer(cfg, rng)
    layer.weights["router.weight"][:] *= 1.5 * cap
    x = rng.normal(size=(33, H)).astype(np.float32)
    st, st_ref = check_against_reference(layer, x)
    assert np.all(np.abs(st.router_logits) <= cap)
    raw = x.astype(np.float64) @ layer.weights["router.weight"].T.astype(np.float64)
    assert np.max(np.abs(raw)) > cap  # the cap was active


GROUP_CASES = [
    # (n_group, topk_group, k, correction_bias, norm_topk_prob, routed_scaling_factor)
    (2, 1, 1, False, True, 1.0),
    (2, 1, 4, True, True, 2.5),
    (4, 2, 2, True, True, 2.5),
    (4, 2, 4, True, False, 1.0),
    (4, 1, 2, False, False, 0.5),
    (4, 3, 6, True, True, 1.0),
    (4, 4, 8, True, True, 2.5),   # every group allowed: the group stage is a no-op
]


@pytest.mark.parametrize(
    "n_group,topk_group,k,bias,norm,scale", GROUP_CASES,
    ids=[f"g{g}-tg{tg}-k{k}-{'bias' if b else 'nobias'}-{'norm' if n else 'nonorm'}-rsf{s:g}"
         for g, tg, k, b, n, s in GROUP_CASES])
def test_group_limited(n_group, topk_group, k, bias, norm, scale, rng):
    E8 = 8
    cfg = moelab.MoEConfig(H, E8, k, I, scoring="sigmoid", n_group=n_group,
                           topk_group=topk_group, correction_bias=bias, norm_topk_prob=norm,
                           routed_scaling_factor=scale, n_shared_experts=1)
    layer = make_layer(cfg, rng)
    layer.weights["router.weight"][:] *= 3.0  # spread the sigmoid scores
    x = rng.normal(size=(64, H)).astype(np.float32)
    st, _ = check_against_reference(layer, x)
    groups = st.topk_ids // (E8 // n_group)  # (T, k) the group of each chosen expert
    for row in groups:
        assert len(set(row.tolist())) <= topk_group


@pytest.mark.parametrize("scale", [0.5, 2.5], ids=lambda s: f"rsf{s:g}")
@pytest.mark.parametrize("norm", [True, False], ids=["norm", "nonorm"])
@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"], ids=str)
def test_routed_scaling_factor(scoring, norm, scale, rng):
    cfg = moelab.MoEConfig(H, E, 2, I, scoring=scoring, norm_topk_prob=norm,
                           routed_scaling_factor=scale, **SCORING_VARIANTS[scoring])
    layer = make_layer(cfg, rng)
    x = rng.normal(size=(33, H)).astype(np.float32)
    st, _ = check_against_reference(layer, x)
    if norm:
        sums = st.topk_weights.astype(np.float64).sum(axis=1)  # (T,)
        assert_close(sums, np.full_like(sums, scale), WEIGHT_SUM, "weight sums", scale=scale)


@pytest.mark.parametrize("capacity", list(CAPACITY_VARIANTS), ids=str)
@pytest.mark.parametrize("k", [1, E - 1], ids=lambda k: f"k{k}")
@pytest.mark.parametrize("scoring", list(SCORING_VARIANTS), ids=str)
def test_expert_without_tokens(scoring, k, capacity, rng):
    cfg = moelab.MoEConfig(H, E, k, I, scoring=scoring, n_shared_experts=1,
                           capacity_factor=CAPACITY_VARIANTS[capacity],
                           **SCORING_VARIANTS[scoring])
    layer = make_layer(cfg, rng)
    x = starve_last_expert(layer, rng.normal(size=(40, H)).astype(np.float32))
    st, st_ref = check_against_reference(layer, x)
    assert st_ref["tokens_per_expert"][-1] == 0
    assert st.tokens_per_expert[-1] == 0
    assert np.all(st.tokens_per_expert[:-1] > 0)


@pytest.mark.parametrize("factor", [0.25, 0.5, 1.0, 1.5], ids=lambda f: f"cf{f:g}")
@pytest.mark.parametrize("scoring", list(SCORING_VARIANTS), ids=str)
def test_capacity_counts(scoring, factor, rng):
    cfg = moelab.MoEConfig(H, E, 2, I, scoring=scoring, capacity_factor=factor,
                           **SCORING_VARIANTS[scoring])
    layer = make_layer(cfg, rng)
    layer.weights["router.weight"][0] += 1.0  # an imbalanced router: expert 0 is popular
    x = rng.normal(size=(50, H)).astype(np.float32)
    x[:, :] += 0.5
    st, _ = check_against_reference(layer, x)
    C = reference.capacity(50, cfg)
    assert np.all(st.tokens_per_expert <= C)
    if factor <= 0.5:
        assert st.dropped > 0  # E * C < T * k: some pairs cannot fit
    # the dropped pairs are exactly the zero weights (random weights are never exactly 0),
    # and an expert that dropped a pair is full
    dropped_mask = st.topk_weights == 0.0  # (T, k)
    assert int(np.sum(dropped_mask)) == st.dropped
    for e in np.unique(st.topk_ids[dropped_mask]):
        assert st.tokens_per_expert[e] == C


def test_capacity_without_drops_equals_dropless(rng):
    cfg = moelab.MoEConfig(H, E, 2, I, n_shared_experts=1)
    layer = make_layer(cfg, rng)
    roomy = moelab.MoELayer(cfg.replace(capacity_factor=float(E)), seed=0)  # C = T * k >= all
    roomy.load_weights(layer.weights)
    x = rng.normal(size=(40, H)).astype(np.float32)
    y, st = layer(x, return_stats=True)
    y2, st2 = roomy(x, return_stats=True)
    assert st2.dropped == 0
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(st2.topk_weights, st.topk_weights)


MODEL_LIKE = {
    "mixtral": dict(num_experts=8, num_experts_per_tok=2),
    "qwen2-moe": dict(num_experts=8, num_experts_per_tok=4, norm_topk_prob=False,
                      n_shared_experts=1, shared_intermediate_size=48, shared_expert_gate=True),
    "deepseek-v3": dict(num_experts=16, num_experts_per_tok=4, scoring="sigmoid", n_group=4,
                        topk_group=2, correction_bias=True, routed_scaling_factor=2.5,
                        n_shared_experts=1),
    "gpt-oss": dict(num_experts=8, num_experts_per_tok=4, scoring="topk_softmax",
                    router_bias=True, expert_bias=True, activation="swiglu_oai"),
    "llama4": dict(num_experts=8, num_experts_per_tok=1, scoring="llama4", n_shared_experts=1),
    "grok-2": dict(num_experts=8, num_experts_per_tok=2, router_logit_softcap=30.0,
                   norm_topk_prob=False, activation="gelu"),
    "switch-capacity": dict(num_experts=8, num_experts_per_tok=1, capacity_factor=1.25),
}


@pytest.mark.parametrize("name", list(MODEL_LIKE), ids=str)
def test_model_like(name, rng):
    cfg = moelab.MoEConfig(hidden_size=32, moe_intermediate_size=16, **MODEL_LIKE[name])
    layer = make_layer(cfg, rng)
    x = rng.normal(size=(2, 37, 32)).astype(np.float32)  # (B, S, H)
    check_against_reference(layer, x)


@pytest.mark.parametrize("scoring", list(SCORING_VARIANTS), ids=str)
def test_seeded_init_against_reference(scoring, rng):
    """The layer's own random initialisation (no load_weights) is used consistently."""
    cfg = moelab.MoEConfig(H, E, 2, I, scoring=scoring, n_shared_experts=1,
                           shared_expert_gate=True, **SCORING_VARIANTS[scoring])
    layer = moelab.MoELayer(cfg, seed=7)
    x = rng.normal(size=(20, H)).astype(np.float32)
    check_against_reference(layer, x)
    again = moelab.MoELayer(cfg, seed=7)
    for name, w in layer.weights.items():
        np.testing.assert_array_equal(again.weights[name], w, err_msg=name)
