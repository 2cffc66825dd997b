"""Hypothesis properties of routing and of the layer (docs/semantics.md).

* ids are unique per token, in [0, E), listed by weight descending (ties: lower id);
* renormalised weights sum to routed_scaling_factor ("topk_softmax": to 1);
* permuting the tokens of a dropless layer permutes its outputs and ids;
* a -inf logit is never chosen when at least k logits are finite.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import moelab
from tolerances import PERMUTATION, WEIGHT_SUM, assert_close

LOGIT_BOUND = 30.0  # sigmoid(-30) ~ 9e-14 > 0 in float32: every finite logit has a score > 0


@st.composite
def router_configs(draw, hidden_size: int = 8):
    """A valid MoEConfig covering every router, groups, scaling and renormalisation."""
    scoring = draw(st.sampled_from(moelab.config.SCORINGS))
    E = draw(st.integers(2, 12))
    kwargs = {}
    if scoring == "sigmoid":
        divisors = [g for g in range(1, E + 1) if E % g == 0 and (g == 1 or E // g >= 2)]
        n_group = draw(st.sampled_from(divisors))
        topk_group = draw(st.integers(1, n_group))
        k_max = E if n_group == 1 else topk_group * (E // n_group)
        kwargs.update(n_group=n_group, topk_group=topk_group,
                      correction_bias=draw(st.booleans()))
    else:
        k_max = E
    if scoring in ("softmax", "sigmoid"):
        kwargs.update(norm_topk_prob=draw(st.booleans()),
                      routed_scaling_factor=draw(st.sampled_from([1.0, 0.5, 2.5])))
    k = draw(st.integers(1, k_max))
    return moelab.MoEConfig(hidden_size, E, k, 4, scoring=scoring, **kwargs)


def logits_for(draw, T: int, E: int) -> np.ndarray:
    values = draw(st.lists(st.floats(-LOGIT_BOUND, LOGIT_BOUND, width=32),
                           min_size=T * E, max_size=T * E))
    return np.array(values, dtype=np.float32).reshape(T, E)  # (T, E)


@st.composite
def routing_problems(draw):
    cfg = draw(router_configs())
    T = draw(st.integers(0, 12))
    logits = logits_for(draw, T, cfg.num_experts)
    bias = None
    if cfg.correction_bias:
        bias = np.array(draw(st.lists(st.floats(-1.0, 1.0, width=32), min_size=cfg.num_experts,
                                      max_size=cfg.num_experts)), dtype=np.float32)
    return cfg, logits, bias


@given(routing_problems())
def test_ids_unique_in_range_and_sorted_by_weight(problem):
    cfg, logits, bias = problem
    ids, w = moelab.ops.route(logits, cfg, bias)
    T, k, E = logits.shape[0], cfg.num_experts_per_tok, cfg.num_experts
    assert ids.shape == (T, k) and w.shape == (T, k)
    assert np.all((ids >= 0) & (ids < E))
    for t in range(T):
        assert len(set(ids[t].tolist())) == k
        for j in range(k - 1):  # weight descending; an exact tie lists the lower id first
            assert w[t, j] > w[t, j + 1] or (w[t, j] == w[t, j + 1] and ids[t, j] < ids[t, j + 1])
    assert np.all(np.isfinite(w)) and np.all(w >= 0)


@given(routing_problems())
def test_renormalised_weights_sum_to_scaling_factor(problem):
    cfg, logits, bias = problem
    _, w = moelab.ops.route(logits, cfg, bias)
    if cfg.scoring == "topk_softmax":
        target = 1.0
    elif cfg.scoring in ("softmax", "sigmoid") and cfg.norm_topk_prob:
        target = cfg.routed_scaling_factor
    else:
        return  # "llama4" and unnormalised routers have no fixed sum
    sums = w.astype(np.float64).sum(axis=1)  # (T,)
    assert_close(sums, np.full_like(sums, target), WEIGHT_SUM, "weight sums", scale=target)


@st.composite
def layers_and_permutations(draw):
    cfg = draw(router_configs(hidden_size=8))
    cfg = cfg.replace(activation=draw(st.sampled_from(moelab.config.ACTIVATIONS)),
                      n_shared_experts=draw(st.integers(0, 1)))
    if cfg.n_shared_experts:
        cfg = cfg.replace(shared_expert_gate=draw(st.booleans()))
    T = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    perm = np.array(draw(st.permutations(range(T))), dtype=np.int64)  # (T,)
    return cfg, T, seed, perm


@given(layers_and_permutations())
def test_permuting_tokens_permutes_outputs_and_ids(case):
    """Dropless layers only: a capacity keeps pairs in token order, so it is not equivariant."""
    cfg, T, seed, perm = case
    layer = moelab.MoELayer(cfg, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, cfg.hidden_size)).astype(np.float32)  # (T, H)
    y, st_ = layer(x, return_stats=True)
    y_p, st_p = layer(x[perm], return_stats=True)
    np.testing.assert_array_equal(st_p.topk_ids, st_.topk_ids[perm])
    assert_close(y_p, y[perm], PERMUTATION, "permuted y")
    np.testing.assert_array_equal(st_p.tokens_per_expert, st_.tokens_per_expert)


@st.composite
def masked_routing_problems(draw):
    """Logits with some -inf per token but at least k finite; no correction bias, no groups
    (with those a finite-but-excluded expert or a biased score can lose to a -inf logit)."""
    cfg = draw(router_configs())
    cfg = cfg.replace(n_group=1, topk_group=1, correction_bias=False)
    T = draw(st.integers(1, 10))
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    logits = logits_for(draw, T, E)
    for t in range(T):
        masked = draw(st.lists(st.integers(0, E - 1), max_size=E - k, unique=True))
        logits[t, masked] = -np.inf
    return cfg, logits


@given(masked_routing_problems())
def test_minus_inf_logit_never_chosen(problem):
    cfg, logits = problem
    ids, w = moelab.ops.route(logits, cfg)
    chosen = np.take_along_axis(logits, ids.astype(np.int64), axis=1)  # (T, k)
    assert np.all(np.isfinite(chosen))
