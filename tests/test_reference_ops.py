"""The single C++ ops against their float64 twins in moelab.reference.

``moelab.ops.route`` vs ``reference.route`` (every router, groups, biases, -inf logits, exact
ties), ``moelab.ops.activation`` vs ``reference.activation`` (including the swiglu_oai clamps),
``moelab.GatedMLP`` vs ``reference.gated_mlp``, and checks of the reference itself that follow
from the definitions (uniform routing, the soft-cap's range, the drop rule).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import moelab
from moelab import reference
from tolerances import (ACTIVATION, FLOAT64_FORMULA, LOSS, OUTPUT, ROUTING_WEIGHTS,
                        assert_close)

ROUTER_CASES = {
    # id: MoEConfig fields besides the dimensions (E = 8)
    "softmax": dict(scoring="softmax"),
    "softmax-nonorm-rsf2.5": dict(scoring="softmax", norm_topk_prob=False,
                                  routed_scaling_factor=2.5),
    "sigmoid": dict(scoring="sigmoid"),
    "sigmoid-bias-nonorm": dict(scoring="sigmoid", correction_bias=True, norm_topk_prob=False),
    "sigmoid-bias-rsf2.5": dict(scoring="sigmoid", correction_bias=True,
                                routed_scaling_factor=2.5),
    "sigmoid-groups4-top2": dict(scoring="sigmoid", correction_bias=True, n_group=4,
                                 topk_group=2),
    "sigmoid-groups2-top1": dict(scoring="sigmoid", n_group=2, topk_group=1),
    "topk_softmax": dict(scoring="topk_softmax"),
    "llama4": dict(scoring="llama4"),
}
E = 8


def router_config(case: str, k: int) -> moelab.MoEConfig:
    return moelab.MoEConfig(16, E, k, 8, **ROUTER_CASES[case])


def max_k(case: str) -> int:
    """The largest k the case allows (group-limited routing caps it)."""
    c = ROUTER_CASES[case]
    n_group, topk_group = c.get("n_group", 1), c.get("topk_group", 1)
    return E if n_group == 1 else topk_group * (E // n_group)


def correction_bias_for(cfg: moelab.MoEConfig, rng: np.random.Generator):
    if not cfg.correction_bias:
        return None
    return rng.normal(0.0, 0.1, E).astype(np.float32)  # (E,)


def check_route(logits: np.ndarray, cfg: moelab.MoEConfig, bias) -> None:
    ids, w = moelab.ops.route(logits, cfg, bias)
    ids_ref, w_ref = reference.route(logits, cfg, bias)
    T, k = logits.shape[0], cfg.num_experts_per_tok
    assert ids.shape == (T, k) and ids.dtype == np.int32
    assert w.shape == (T, k) and w.dtype == np.float32
    np.testing.assert_array_equal(ids, ids_ref)
    assert_close(w, w_ref, ROUTING_WEIGHTS, "route weights")


# --------------------------------------------------------------------------------------------
# route
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [0, 1, 7, 128], ids=lambda t: f"T{t}")
@pytest.mark.parametrize("k_kind", ["k1", "kmax"])
@pytest.mark.parametrize("case", list(ROUTER_CASES), ids=str)
def test_route(case, k_kind, T, rng):
    k = 1 if k_kind == "k1" else max_k(case)
    cfg = router_config(case, k)
    logits = rng.normal(0.0, 2.0, (T, E)).astype(np.float32)  # (T, E)
    check_route(logits, cfg, correction_bias_for(cfg, rng))


@pytest.mark.parametrize("case", list(ROUTER_CASES), ids=str)
def test_route_with_minus_inf(case, rng):
    k = 2
    cfg = router_config(case, k)
    logits = rng.normal(0.0, 2.0, (64, E)).astype(np.float32)  # (T, E)
    # up to E - k entries per token are -inf, never the experts of group 0 (so that every
    # allowed group set of the group-limited cases still has k finite candidates)
    for t in range(64):
        n_masked = t % (E - k + 1)
        masked = rng.choice(np.arange(2, E), size=min(n_masked, E - 2), replace=False)
        logits[t, masked] = -np.inf
    bias = correction_bias_for(cfg, rng)
    ids, w = moelab.ops.route(logits, cfg, bias)
    if not cfg.correction_bias and cfg.n_group == 1:
        # without a selection bias or groups, a -inf logit can never beat a finite one
        chosen = np.take_along_axis(logits, ids.astype(np.int64), axis=1)  # (T, k)
        assert np.all(np.isfinite(chosen))
    check_route(logits, cfg, bias)


@pytest.mark.parametrize("case", list(ROUTER_CASES), ids=str)
def test_route_exact_ties_go_to_lower_id(case):
    """All logits equal: every stage ties, so the chosen ids are 0..k-1 in order."""
    k = min(3, max_k(case))
    cfg = router_config(case, k)
    logits = np.zeros((5, E), dtype=np.float32)
    bias = np.zeros(E, dtype=np.float32) if cfg.correction_bias else None
    expected = np.tile(np.arange(k), (5, 1))
    for ids, w in (moelab.ops.route(logits, cfg, bias), reference.route(logits, cfg, bias)):
        np.testing.assert_array_equal(ids, expected)
        assert np.all(w == w[:, :1])  # equal logits, equal weights


def test_route_weight_ties_sorted_by_lower_id():
    """Selection by biased score, order by unbiased weight: equal weights list the lower id
    first even when the bias selected the higher id first."""
    cfg = moelab.MoEConfig(16, 4, 2, 8, scoring="sigmoid", correction_bias=True)
    logits = np.zeros((1, 4), dtype=np.float32)                  # sigmoid 0.5 everywhere
    bias = np.array([0.0, 0.1, 0.2, 0.3], dtype=np.float32)      # selects 3 then 2
    for ids, w in (moelab.ops.route(logits, cfg, bias), reference.route(logits, cfg, bias)):
        np.testing.assert_array_equal(ids, [[2, 3]])
        assert w[0, 0] == w[0, 1]


def test_route_tie_at_the_kth_place():
    cfg = moelab.MoEConfig(16, 5, 2, 8, scoring="topk_softmax")
    logits = np.array([[1.0, 0.0, 1.0, 0.0, 1.0]], dtype=np.float32)
    for ids, _ in (moelab.ops.route(logits, cfg), reference.route(logits, cfg)):
        np.testing.assert_array_equal(ids, [[0, 2]])


def test_route_group_tie_goes_to_lower_group():
    # groups {0,1} {2,3} {4,5} {6,7}; groups 1 and 3 tie with the best score, group 1 wins
    cfg = moelab.MoEConfig(16, 8, 2, 8, scoring="sigmoid", n_group=4, topk_group=1)
    logits = np.array([[0.0, 0.0, 2.0, 1.0, 0.0, 0.0, 1.0, 2.0]], dtype=np.float32)
    for ids, _ in (moelab.ops.route(logits, cfg), reference.route(logits, cfg)):
        np.testing.assert_array_equal(ids, [[2, 3]])


def test_route_group_score_is_sum_of_two_best():
    # group 0 = {0..3} has the single best expert, group 1 = {4..7} the best pair: with
    # topk_group = 1 the pair's group must win (a max-based group score would pick group 0).
    cfg = moelab.MoEConfig(16, 8, 1, 8, scoring="sigmoid", n_group=2, topk_group=1)
    logits = np.array([[4.0, -4.0, -4.0, -4.0, 1.5, 1.5, -4.0, -4.0]], dtype=np.float32)
    for ids, _ in (moelab.ops.route(logits, cfg), reference.route(logits, cfg)):
        np.testing.assert_array_equal(ids, [[4]])


def test_route_correction_bias_changes_selection_not_weights():
    cfg = moelab.MoEConfig(16, 4, 1, 8, scoring="sigmoid", correction_bias=True,
                           norm_topk_prob=False)
    logits = np.array([[1.0, 0.5, 0.0, -0.5]], dtype=np.float32)
    bias = np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    for ids, w in (moelab.ops.route(logits, cfg, bias), reference.route(logits, cfg, bias)):
        np.testing.assert_array_equal(ids, [[3]])
        assert_close(w, [[1.0 / (1.0 + math.exp(0.5))]], ROUTING_WEIGHTS, "unbiased weight")


# --------------------------------------------------------------------------------------------
# activation
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N", [0, 1, 37], ids=lambda n: f"N{n}")
@pytest.mark.parametrize("kind", list(moelab.config.ACTIVATIONS), ids=str)
def test_activation(kind, N, rng):
    gate = rng.uniform(-10.0, 10.0, (N, 19)).astype(np.float32)  # (N, I) past the +-7 clamps
    up = rng.uniform(-10.0, 10.0, (N, 19)).astype(np.float32)    # (N, I)
    out = moelab.ops.activation(kind, gate, up)
    expected = reference.activation(kind, gate, up)
    assert out.shape == gate.shape and out.dtype == np.float32
    scale = (1.0 + np.abs(gate.astype(np.float64))) * (1.0 + np.abs(up.astype(np.float64)))
    assert_close(out, expected, ACTIVATION, f"activation {kind}", scale=scale)


def test_swiglu_oai_clamps():
    gate = np.array([[7.0, 8.0, 100.0, -100.0, 6.5]], dtype=np.float32)
    up = np.array([[7.0, -8.0, 100.0, 3.0, -100.0]], dtype=np.float32)
    out = moelab.ops.activation("swiglu_oai", gate, up)
    expected = reference.activation("swiglu_oai", gate, up)
    sig7 = 1.0 / (1.0 + math.exp(-1.702 * 7.0))
    # g = 8 and g = 100 clamp to 7; u = 100 clamps to 7 and u = -8, -100 to -7
    assert_close(expected[0, :3], [8 * 7 * sig7, -6 * 7 * sig7, 8 * 7 * sig7], ACTIVATION,
                 "reference clamps", scale=100.0)
    scale = (1.0 + np.abs(gate.astype(np.float64))) * (1.0 + np.abs(up.astype(np.float64)))
    assert_close(out, expected, ACTIVATION, "swiglu_oai clamps", scale=scale)


def test_activation_reference_definitions():
    """The reference's gelu is the exact erf form and gelu_tanh the tanh approximation."""
    g = np.linspace(-4.0, 4.0, 81)
    one = np.ones_like(g)
    exact = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in g])
    np.testing.assert_array_equal(reference.activation("gelu", g, one), exact)
    approx = reference.activation("gelu_tanh", g, one)
    assert 0 < np.max(np.abs(approx - exact)) < 1e-3  # close, yet a different function
    np.testing.assert_array_equal(reference.activation("relu", g, one), np.maximum(g, 0.0))
    assert_close(reference.activation("silu", g, one), g / (1.0 + np.exp(-g)), FLOAT64_FORMULA,
                 "silu = g / (1 + exp(-g))")


# --------------------------------------------------------------------------------------------
# GatedMLP
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (128,), (2, 5)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", list(moelab.config.ACTIVATIONS), ids=str)
def test_gated_mlp(kind, shape, rng):
    Hm, Im = 24, 40
    mlp = moelab.GatedMLP(Hm, Im, activation=kind, seed=3)
    weights = {"gate_up_proj": rng.normal(0, 1, (2 * Im, Hm)) / math.sqrt(Hm),   # (2I, H)
               "down_proj": rng.normal(0, 1, (Hm, Im)) / math.sqrt(Im)}          # (H, I)
    mlp.load_weights({n: w.astype(np.float32) for n, w in weights.items()})
    x = rng.normal(size=(*shape, Hm)).astype(np.float32)
    y = mlp(x)
    assert y.shape == x.shape and y.dtype == np.float32
    expected = reference.gated_mlp(x, mlp.weights["gate_up_proj"], mlp.weights["down_proj"], kind)
    assert_close(y, expected, OUTPUT, f"GatedMLP {kind}")


def test_gated_mlp_seeded_init(rng):
    mlp = moelab.GatedMLP(16, 8, seed=11)
    x = rng.normal(size=(9, 16)).astype(np.float32)
    expected = reference.gated_mlp(x, mlp.weights["gate_up_proj"], mlp.weights["down_proj"])
    assert_close(mlp(x), expected, OUTPUT, "GatedMLP seeded")
    bound = 1.0 / math.sqrt(16)  # uniform in +-1/sqrt(fan_in)
    assert np.all(np.abs(mlp.weights["gate_up_proj"]) <= bound)
    assert np.std(mlp.weights["gate_up_proj"]) > bound / 4


# --------------------------------------------------------------------------------------------
# the reference on its own: consequences of the definitions
# --------------------------------------------------------------------------------------------
def test_reference_z_loss_of_uniform_router():
    """Equal logits: logsumexp = log E, so z = (log E)^2 (the aux losses of a uniform router:
    tests/test_aux_loss.py)."""
    logits = np.zeros((10, 8))
    assert_close(reference.z_loss(logits), math.log(8) ** 2, LOSS, "z_loss uniform")
    assert reference.z_loss(np.zeros((0, 8))) == 0.0


def test_reference_softcap_range_and_identity(rng):
    z = rng.normal(0.0, 100.0, 1000)
    capped = reference.softcap(z, 30.0)
    assert np.all(np.abs(capped) < 30.0 + 1e-12)
    assert np.all(np.sign(capped) == np.sign(z))
    small = rng.normal(0.0, 1e-2, 100)
    # |c tanh(z / c) - z| <= |z|^3 / (3 c^2) (Taylor; plus the float64 rounding of z): the
    # identity near 0, and not exactly
    deviation = np.abs(reference.softcap(small, 30.0) - small)
    bound = np.abs(small) ** 3 / (3 * 30.0 ** 2)
    assert_close(deviation, np.minimum(deviation, bound), FLOAT64_FORMULA, "softcap near 0",
                 scale=np.abs(small))
    assert np.any(deviation > 0)
    np.testing.assert_array_equal(reference.softcap(z, None), z)


def test_reference_drop_rule_keeps_first_pairs_in_token_order():
    cfg = moelab.MoEConfig(16, 2, 2, 8, capacity_factor=0.5)  # C = ceil(T * 2 / 2 * 0.5)
    ids = np.array([[0, 1], [1, 0], [0, 1], [1, 0]])           # (T=4, k=2)
    weights = np.full((4, 2), 0.5)
    C = reference.capacity(4, cfg)
    assert C == math.ceil(4 * 2 / 2 * 0.5)
    w, kept, tokens_per_expert, dropped = reference.apply_capacity(ids, weights, cfg)
    # each expert keeps its first C pairs visited token by token: tokens 0 and 1
    expected_kept = np.array([[True, True], [True, True], [False, False], [False, False]])
    np.testing.assert_array_equal(kept, expected_kept)
    np.testing.assert_array_equal(tokens_per_expert, [C, C])
    assert dropped == 4 and np.all(w[~kept] == 0.0) and np.all(w[kept] == 0.5)
    assert reference.capacity(4, cfg.replace(capacity_factor=None)) is None
