"""``stats.aux_loss`` per router kind (docs/semantics.md, "Statistics"): the family's own
definition, computed from the routing the layer applied (after the group limit, the correction
bias and capacity drops).

Each test compares the core with its NumPy twin (``reference.aux_loss``) and with the
definition written out again here from the layer's own statistics (``tokens_per_expert``
counts the kept pairs), so that a twin and a core that agree on a wrong formula still fail.
"""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import reference
from tolerances import FLOAT64_FORMULA, LOSS, assert_close

H = 32

#: One layer per router kind and routing feature; capacity 0.75 drops pairs.
CASES = {
    "softmax": dict(num_experts=8, num_experts_per_tok=2, scoring="softmax"),
    "softmax-softcap": dict(num_experts=8, num_experts_per_tok=2, scoring="softmax",
                            norm_topk_prob=False, router_logit_softcap=1.0),
    "softmax-capacity": dict(num_experts=8, num_experts_per_tok=2, scoring="softmax",
                             capacity_factor=0.75),
    "sigmoid": dict(num_experts=8, num_experts_per_tok=2, scoring="sigmoid"),
    "sigmoid-groups-bias": dict(num_experts=16, num_experts_per_tok=4, scoring="sigmoid",
                                n_group=4, topk_group=2, correction_bias=True),
    "sigmoid-groups-bias-capacity": dict(num_experts=16, num_experts_per_tok=4,
                                         scoring="sigmoid", n_group=4, topk_group=2,
                                         correction_bias=True, capacity_factor=0.75),
    "topk_softmax-bias": dict(num_experts=8, num_experts_per_tok=4, scoring="topk_softmax",
                              router_bias=True),
    "topk_softmax-capacity": dict(num_experts=8, num_experts_per_tok=4, scoring="topk_softmax",
                                  router_bias=True, capacity_factor=0.75),
    "llama4-k1": dict(num_experts=8, num_experts_per_tok=1, scoring="llama4",
                      norm_topk_prob=False),
    "llama4-k2-capacity": dict(num_experts=8, num_experts_per_tok=2, scoring="llama4",
                               norm_topk_prob=False, capacity_factor=0.75),
}


def make_layer(case: dict, seed: int = 0) -> moelab.MoELayer:
    """A layer of the case whose router is far from uniform: router weights of std 2/sqrt(H);
    a correction bias of std 0.3 (enough to change selections)."""
    cfg = moelab.MoEConfig(hidden_size=H, moe_intermediate_size=16, **case)
    layer = moelab.MoELayer(cfg, seed=seed)
    rng = np.random.default_rng(seed + 100)
    w = layer.weights
    w["router.weight"][...] = rng.normal(0.0, 2.0 / np.sqrt(H), w["router.weight"].shape)
    if "router.e_score_correction_bias" in w:
        w["router.e_score_correction_bias"][...] = rng.normal(0.0, 0.3, cfg.num_experts)
    return layer


def tokens(T: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((T, H)).astype(np.float32)  # (T, H)


def definition(stats: moelab.RoutingStats, scoring: str) -> float:
    """The family's loss written out from the layer's statistics, in float64."""
    z = stats.router_logits.astype(np.float64)                   # (T, E)
    T, E = z.shape
    k = stats.topk_ids.shape[1]
    kept = stats.tokens_per_expert.astype(np.float64)            # (E,)
    if scoring == "sigmoid":                                     # DeepSeek-V3 eq. 17-20
        s = 1.0 / (1.0 + np.exp(-z))                             # (T, E)
        P = (s / s.sum(axis=1, keepdims=True)).mean(axis=0)      # (E,)
        return float(np.sum(E / (k * T) * kept * P))
    p = np.exp(z - z.max(axis=1, keepdims=True))                 # (T, E)
    P = (p / p.sum(axis=1, keepdims=True)).mean(axis=0)          # (E,)
    return float(E * np.sum(kept / T * P))                       # load_balancing_loss_func


@pytest.mark.parametrize("T", [1, 7, 200], ids=lambda t: f"T{t}")
@pytest.mark.parametrize("name", list(CASES))
def test_core_matches_twin_and_definition(name, T):
    layer = make_layer(CASES[name])
    cfg = layer.config
    x = tokens(T)
    _, st = layer(x, return_stats=True)
    _, st_ref = reference.moe_layer(x, layer.weights, cfg)
    np.testing.assert_array_equal(st.topk_ids, st_ref["topk_ids"])
    assert_close(st.aux_loss, st_ref["aux_loss"], LOSS, f"{name} aux_loss vs twin")
    assert_close(st.aux_loss, definition(st, cfg.scoring), LOSS, f"{name} aux_loss vs definition")
    if cfg.capacity_factor is not None and T == 200:
        assert st.dropped > 0, "the capacity case must drop pairs"


@pytest.mark.parametrize("name", [n for n in CASES if "capacity" in n])
def test_dropped_pairs_do_not_count(name):
    """The same weights and tokens without capacity: f counts every selected pair, so the loss
    differs by exactly the dropped pairs' share (in the definition's terms)."""
    case = CASES[name]
    layer = make_layer(case)
    dropless = make_layer({**case, "capacity_factor": None})
    x = tokens(200)
    _, st = layer(x, return_stats=True)
    _, st_all = dropless(x, return_stats=True)
    np.testing.assert_array_equal(st.topk_ids, st_all.topk_ids)
    assert st.dropped > 0 and st_all.dropped == 0
    assert np.all(st.tokens_per_expert <= st_all.tokens_per_expert)
    assert st.aux_loss < st_all.aux_loss  # every term is f_e P_e >= 0, and some f_e shrank
    assert_close(st_all.aux_loss, definition(st_all, case["scoring"]), LOSS, "dropless")


def test_issue_example_bias_steering_every_token_changes_the_loss():
    """A sigmoid router (E 32, k 4, n_group 4, topk_group 2) whose correction bias sends every
    token to experts 0-3, which its logits score lowest (a feature every token shares): the
    selection and the loss follow the bias. Then f_i = E / k for i < 4 and 0 elsewhere, so
    aux = (E / k) * sum_{i<4} P_i, far from the unbiased routing's value."""
    cfg = moelab.MoEConfig(H, 32, 4, 16, scoring="sigmoid", n_group=4, topk_group=2,
                           correction_bias=True, routed_scaling_factor=2.5)
    layer = moelab.MoELayer(cfg, seed=0)
    layer.weights["router.weight"][:4, 0] = -1.0
    x = tokens(256)
    x[:, 0] = 3.0                                                # logits of experts 0-3: ~ -3
    _, before = layer(x, return_stats=True)
    bias = layer.weights["router.e_score_correction_bias"]
    bias[...] = 0.0
    bias[:4] = 10.0
    _, after = layer(x, return_stats=True)

    np.testing.assert_array_equal(after.router_logits, before.router_logits)  # selection only
    assert np.all(np.sort(after.topk_ids, axis=1) == np.arange(4))
    np.testing.assert_array_equal(after.tokens_per_expert, [256] * 4 + [0] * 28)
    z = after.router_logits.astype(np.float64)                   # (T, E)
    s = 1.0 / (1.0 + np.exp(-z))                                 # (T, E)
    P = (s / s.sum(axis=1, keepdims=True)).mean(axis=0)          # (E,)
    expected = 32 / 4 * P[:4].sum()
    assert_close(after.aux_loss, expected, LOSS, "aux_loss, every token on experts 0-3")
    assert_close(before.aux_loss, definition(before, "sigmoid"), LOSS, "aux_loss before")
    assert before.tokens_per_expert[:4].sum() < 0.05 * 256 * 4   # unbiased: 0-3 avoided
    assert after.aux_loss < 0.5 * before.aux_loss


def test_sigmoid_and_softmax_layers_differ_on_the_same_logits():
    """The demo's complaint: a sigmoid router and a softmax router with the same router weights
    and tokens (the same logits) no longer report the same value."""
    common = dict(hidden_size=H, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16)
    soft = moelab.MoELayer(moelab.MoEConfig(scoring="softmax", **common), seed=0)
    sig = moelab.MoELayer(moelab.MoEConfig(scoring="sigmoid", **common), seed=0)
    sig.weights["router.weight"][...] = soft.weights["router.weight"]
    x = tokens(64)
    _, st_soft = soft(x, return_stats=True)
    _, st_sig = sig(x, return_stats=True)
    np.testing.assert_array_equal(st_soft.router_logits, st_sig.router_logits)
    assert abs(st_soft.aux_loss - st_sig.aux_loss) > 1e-3


@pytest.mark.parametrize("k", [1, 3, 8], ids=lambda k: f"k{k}")
def test_reference_uniform_routing(k):
    """Equal logits and every expert chosen equally often (T = 8 tokens, token t takes experts
    t, t+1, ... mod 8): P_e = 1/E, f_e = k/E, so load_balancing_loss = k and
    sequence_balance_loss = 1."""
    E, T = 8, 8
    logits = np.zeros((T, E))                                    # (T, E)
    ids = (np.arange(T)[:, None] + np.arange(k)[None, :]) % E    # (T, k)
    kept = np.ones((T, k), dtype=bool)                           # (T, k)
    assert_close(reference.load_balancing_loss(logits, ids, kept), float(k), FLOAT64_FORMULA,
                 "load_balancing_loss uniform")
    assert_close(reference.sequence_balance_loss(logits, ids, kept), 1.0, FLOAT64_FORMULA,
                 "sequence_balance_loss uniform")
    assert reference.load_balancing_loss(np.zeros((0, E)), ids[:0], kept[:0]) == 0.0
    assert reference.sequence_balance_loss(np.zeros((0, E)), ids[:0], kept[:0]) == 0.0


def test_reference_picks_the_definition_by_scoring():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 8))                            # (T, E)
    ids = np.argsort(-logits, axis=1)[:, :2]                     # (T, k)
    kept = rng.random((16, 2)) < 0.8                             # (T, k)
    seq = reference.sequence_balance_loss(logits, ids, kept)
    lb = reference.load_balancing_loss(logits, ids, kept)
    assert seq != lb
    assert reference.aux_loss(logits, ids, kept, "sigmoid") == seq
    for scoring in ("softmax", "topk_softmax", "llama4"):
        assert reference.aux_loss(logits, ids, kept, scoring) == lb


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
def test_logits_far_below_zero_give_a_finite_loss(scoring):
    """Logits near -1000 (sigmoid underflows to 0 in double for every expert): P is still the
    normalised distribution (s / sum s = softmax(log s)), the loss finite and equal to the
    twin's."""
    layer = make_layer(dict(num_experts=8, num_experts_per_tok=2, scoring=scoring))
    layer.weights["router.weight"][:, 0] = -100.0
    x = tokens(16)
    x[:, 0] = 10.0
    _, st = layer(x, return_stats=True)
    assert st.router_logits.max() < -900.0
    _, st_ref = reference.moe_layer(x, layer.weights, layer.config)
    assert np.isfinite(st.aux_loss) and st.aux_loss > 0.0
    assert_close(st.aux_loss, st_ref["aux_loss"], LOSS, f"{scoring} aux_loss at logits ~ -1000")


def test_empty_input_gives_zero():
    for case in CASES.values():
        _, st = make_layer(case)(np.zeros((0, H), np.float32), return_stats=True)
        assert st.aux_loss == 0.0


def test_demo_rows_follow_each_definition(capsys):
    """``python -m moelab demo``: the DeepSeek-V3 row (32 experts, top-4, like the Qwen3-MoE
    row, same seed) reports its own loss, not the softmax row's, and the footer says which
    definition each row uses."""
    from moelab import demo

    assert demo.main(["--tokens", "64", "--hidden", "32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    aux = {line.split("(")[1].split(")")[0]: float(line.split()[-3])
           for line in out.splitlines() if "(" in line and line.split()[-1][0].isdigit()}
    assert set(aux) == {"Qwen3-MoE", "Grok-2", "DeepSeek-V3", "gpt-oss", "Llama 4"}, aux
    assert abs(aux["DeepSeek-V3"] - aux["Qwen3-MoE"]) > 1.0   # ~1 (sequence-wise) vs ~k = 4
    assert "sequence-wise" in out and "load_balancing_loss_func" in out
