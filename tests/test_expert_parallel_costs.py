"""The expert-parallel cost model (moelab.expert_parallel_traffic / expert_parallel_costs).

The closed forms are checked against a brute-force count of what the transport sends (one
loop over ranks, tokens and slots, written independently of the closed form): exactly, by
enumerating every routing of a few tokens on a tiny layer, and in expectation, by routing
random tokens through real ``MoELayer`` routers whose logits are exchangeable (orthonormal
router rows, Gaussian tokens: every expert set equally likely, group-limited routing included).
The published shapes (DeepSeek-V3, Kimi K2) are checked against figures written out by hand.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

import moelab
from moelab.analysis import EP_AGREEMENT_BYTES, EP_ROUTING_BYTES_PER_SLOT
from tolerances import FLOAT64_FORMULA, SAMPLED_MEAN_SIGMAS, assert_close

PARTS = ("dispatch_bytes", "combine_bytes", "allgather_bytes", "metadata_bytes")


def transport_bytes_per_call(ids: np.ndarray, owner: np.ndarray, num_ranks: int, hidden: int,
                             activation_bytes: int, allgather_output: bool = True) -> dict:
    """Bytes (ints) that the expert-parallel transport puts on the network for one call.

    ids : (T, k) routed expert ids; owner : (E,) owning rank of each expert. Rank r routes the
    r-th ``np.array_split`` slice of the tokens; a pair goes to (and comes back from) its
    expert's owner unless that is r; the ids and weights and the output rows go to the N - 1
    other ranks; each rank sends its input check's outcome to each other rank first. Without
    ``allgather_output``
    (``forward_local``) the output rows stay on their rank.
    """
    T, k = ids.shape
    rows_out = ids_out = out_rows = 0
    for src, tokens in enumerate(np.array_split(np.arange(T), num_ranks)):
        for t in tokens:
            for slot in range(k):
                if owner[ids[t, slot]] != src:
                    rows_out += 1
            ids_out += k * (num_ranks - 1)
            if allgather_output:
                out_rows += num_ranks - 1
    agreements = num_ranks * (num_ranks - 1)
    row = hidden * activation_bytes
    return {"dispatch_bytes": rows_out * row, "combine_bytes": rows_out * row,
            "allgather_bytes": out_rows * row,
            "metadata_bytes": (ids_out * EP_ROUTING_BYTES_PER_SLOT
                               + agreements * EP_AGREEMENT_BYTES)}


def transport_bytes(ids: np.ndarray, owner: np.ndarray, num_ranks: int, hidden: int,
                    activation_bytes: int) -> dict:
    """``transport_bytes_per_call`` per token of the call."""
    per_call = transport_bytes_per_call(ids, owner, num_ranks, hidden, activation_bytes)
    return {p: b / len(ids) for p, b in per_call.items()}


def contiguous(num_experts: int, num_ranks: int) -> np.ndarray:
    """(E,) owners of np.array_split blocks: the interface's default placement."""
    owner = np.empty(num_experts, dtype=np.int64)
    for r, block in enumerate(np.array_split(np.arange(num_experts), num_ranks)):
        owner[block] = r
    return owner


# --- exact: every routing of a few tokens ------------------------------------------------------
@pytest.mark.parametrize("E, k, N, T, placement, allgather", [
    (5, 2, 3, 1, None, True), (5, 2, 3, 2, None, True), (5, 2, 3, 4, None, True),
    (5, 2, 2, 3, None, True),
    (5, 2, 3, 4, None, False),                           # forward_local: no output allgather
    (4, 4, 3, 2, None, True),                            # k = E: every expert every time
    (6, 1, 4, 3, None, True),                            # k = 1, T < N: a rank with no tokens
    (5, 2, 3, 3, (2, 2, 0, 2, 1), True),                 # a placement given by the user
    (5, 2, 3, 2, (1, 1, 1, 1, 1), False),                # ranks that own nothing
    (5, 2, 1, 3, None, True),                            # one rank: nothing on the network
], ids=lambda v: str(v))
def test_closed_form_equals_the_mean_over_every_routing(E, k, N, T, placement, allgather):
    H, a = 3, 4
    cfg = moelab.MoEConfig(hidden_size=H, num_experts=E, num_experts_per_tok=k,
                           moe_intermediate_size=2)
    owner = contiguous(E, N) if placement is None else np.array(placement)
    sets = list(itertools.combinations(range(E), k))
    total = dict.fromkeys(PARTS, 0)  # exact: ints summed over every routing
    count = 0
    for routing in itertools.product(sets, repeat=T):
        sent = transport_bytes_per_call(np.array(routing), owner, N, H, a, allgather)
        for p in PARTS:
            total[p] += sent[p]
        count += 1
    mean = {p: Fraction(total[p], count * T) for p in PARTS}  # per token, exact
    model = moelab.expert_parallel_traffic(cfg, N, tokens=T, placement=placement,
                                           activation_bytes=a, allgather_output=allgather)
    for p in PARTS:
        assert_close(getattr(model, p), float(mean[p]), FLOAT64_FORMULA, p)
    remote = mean["dispatch_bytes"] / (k * H * a)
    assert_close(model.remote_pair_fraction, float(remote), FLOAT64_FORMULA,
                 "remote_pair_fraction")
    assert_close(model.bytes_per_token, float(sum(mean.values())), FLOAT64_FORMULA,
                 "bytes_per_token")
    if N == 1:
        assert model.bytes_per_token == 0.0


# --- in expectation: random tokens routed by real routers ---------------------------------------
def exchangeable_layer(cfg: moelab.MoEConfig, seed: int) -> moelab.MoELayer:
    """A layer whose router has orthonormal rows (and no correction bias), so that Gaussian
    tokens get i.i.d. N(0, 1) logits and every expert set is equally likely."""
    layer = moelab.MoELayer(cfg, seed=seed)
    w = dict(layer.weights)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal(
        (cfg.hidden_size, cfg.hidden_size)))
    w["router.weight"] = np.ascontiguousarray(q[:cfg.num_experts], dtype=np.float32)  # (E, H)
    if cfg.correction_bias:
        w["router.e_score_correction_bias"] = np.zeros(cfg.num_experts, dtype=np.float32)
    layer.load_weights(w)
    return layer


def within_sampling_error(samples, expected: float, what: str) -> None:
    """The mean of ``samples`` is ``expected`` within SAMPLED_MEAN_SIGMAS standard errors (plus
    float64 rounding, for the parts that are the same in every draw)."""
    s = np.asarray(samples, dtype=np.float64)
    se = s.std(ddof=1) / math.sqrt(len(s))
    gap = abs(s.mean() - expected)
    assert gap <= SAMPLED_MEAN_SIGMAS * se + FLOAT64_FORMULA.rtol * abs(expected), (
        f"{what}: simulated mean {s.mean():.6g} vs model {expected:.6g}: gap {gap:.3g} is "
        f"{gap / se:.1f} standard errors (allowed {SAMPLED_MEAN_SIGMAS})")


@pytest.mark.parametrize("preset, N, T", [
    ("qwen3-30b-a3b", 5, 7),   # softmax; E = 12 over 5 ranks (3 3 2 2 2), 7 tokens (2 2 1 1 1)
    ("deepseek-v3", 3, 7),     # sigmoid, 8 groups, best 4: node-limited routing; 16 = 6 5 5
], ids=["softmax", "sigmoid-grouped"])
def test_routed_random_tokens_match_the_model(preset, N, T):
    E = 12 if preset.startswith("qwen") else 16
    cfg = moelab.preset(preset).scaled(hidden_size=16, num_experts=E, num_experts_per_tok=3,
                                       moe_intermediate_size=8)
    moe = cfg.moe
    layer = exchangeable_layer(moe, seed=1)
    owner = contiguous(E, N)
    rng = np.random.default_rng(2)
    draws = 3000
    x = rng.standard_normal((draws * T, moe.hidden_size)).astype(np.float32)
    _, stats = layer(x, return_stats=True)
    ids = np.asarray(stats.topk_ids).reshape(draws, T, moe.num_experts_per_tok)
    model = moelab.expert_parallel_traffic(cfg, N, tokens=T)
    costs = moelab.expert_parallel_costs(cfg, N, link_gbit_per_s=100, memory_gbyte_per_s=100,
                                         tokens=T)
    busiest = int(np.argmax(np.bincount(owner, minlength=N)))
    sent = [transport_bytes(ids[d], owner, N, moe.hidden_size, 4) for d in range(draws)]
    for p in PARTS:
        within_sampling_error([s[p] for s in sent], getattr(model, p), p)
    hit = [len(set(ids[d].ravel().tolist()) & set(np.flatnonzero(owner == busiest).tolist()))
           for d in range(draws)]
    w = costs.weight_dtype_bytes
    expected_hit = (costs.layer_memory_bytes - (moe.router_params + moe.shared_params) * w) / (
        moe.expert_params * w)
    within_sampling_error(hit, expected_hit, "experts the busiest rank reads")


# --- the published shapes -----------------------------------------------------------------------
def test_deepseek_v3_on_8_ranks():
    H, k, E, N, T, L, a = 7168, 8, 256, 8, 64, 58, 4
    t = moelab.expert_parallel_traffic("deepseek-v3", N, tokens=T)
    assert (t.num_experts, t.top_k, t.hidden_size) == (E, k, H)
    assert t.experts_per_rank == (32,) * 8 and t.tokens_per_rank == (8,) * 8
    assert t.remote_pair_fraction == 7 / 8
    assert t.dispatch_bytes == t.combine_bytes == 7 / 8 * k * H * a == 200704
    assert t.allgather_bytes == 7 * H * a == 200704
    assert t.metadata_bytes == 7 * k * 8 + 8 * 7 * 16 / 64 == 462
    assert t.bytes_per_token == 602574 and t.bytes_per_token_per_rank == 602574 / 8
    c = moelab.expert_parallel_costs("deepseek-v3", N, link_gbit_per_s=100,
                                     memory_gbyte_per_s=400, tokens=T)
    assert c.moe_layers == L and c.network_bytes_per_token == L * 602574
    assert c.network_tokens_per_s == pytest.approx(8 * 12.5e9 / (L * 602574), rel=1e-12)
    assert c.layer_network_tokens_per_s == pytest.approx(8 * 12.5e9 / 602574, rel=1e-12)
    expert = 3 * H * 2048 * 2                            # bf16 bytes of one routed expert
    hit = 1 - (1 - k / E) ** T
    assert c.expert_weight_bytes == pytest.approx(L * 32 * hit * expert, rel=1e-12)
    pc = moelab.count_params("deepseek-v3")
    replicated = 2 * (pc.total - pc.routed_experts - pc.embedding)  # no embedding lookup
    assert c.replicated_weight_bytes == replicated
    assert c.memory_tokens_per_s == pytest.approx(
        T * 400e9 / (replicated + L * 32 * hit * expert), rel=1e-12)
    router, shared = E * H, 3 * H * 2048
    assert c.layer_memory_bytes == pytest.approx(2 * (router + shared) + 32 * hit * expert,
                                                 rel=1e-12)


def test_kimi_k2_uneven_ranks_and_one_token():
    # 384 experts over 7 ranks: 55 55 55 55 55 55 54; one token, routed by rank 0
    t = moelab.expert_parallel_traffic("kimi-k2", 7, tokens=1, activation_bytes=2)
    assert t.experts_per_rank == (55,) * 6 + (54,)
    assert t.tokens_per_rank == (1, 0, 0, 0, 0, 0, 0)
    assert t.remote_pair_fraction == pytest.approx(1 - 55 / 384, rel=1e-15)
    assert t.dispatch_bytes == pytest.approx((1 - 55 / 384) * 8 * 7168 * 2, rel=1e-15)
    assert t.allgather_bytes == 6 * 7168 * 2
    assert t.metadata_bytes == 6 * 8 * 8 + 7 * 6 * 16
    c = moelab.expert_parallel_costs("kimi-k2", 7, 25, 400, weight_dtype_bytes=1)
    assert c.moe_layers == 60
    assert c.expert_weight_bytes == pytest.approx(60 * 55 * 8 / 384 * 3 * 7168 * 2048, rel=1e-12)


def test_more_ranks_more_network_less_expert_memory():
    prev = None
    for N in (1, 2, 4, 8, 16, 32, 64):
        c = moelab.expert_parallel_costs("deepseek-v3", N, 100, 400, tokens=512)
        if prev is not None:
            assert c.network_bytes_per_token > prev.network_bytes_per_token
            assert c.expert_weight_bytes < prev.expert_weight_bytes
            assert c.replicated_weight_bytes == prev.replicated_weight_bytes
        prev = c
    one = moelab.expert_parallel_costs("deepseek-v3", 1, 100, 400)
    assert one.network_bytes_per_token == 0 and one.network_tokens_per_s == math.inf
    fast = moelab.expert_parallel_costs("deepseek-v3", 8, 400, 400)
    slow = moelab.expert_parallel_costs("deepseek-v3", 8, 25, 400)
    assert fast.network_tokens_per_s == pytest.approx(16 * slow.network_tokens_per_s, rel=1e-12)
    # the placement does not change the expectation when N divides T (uniform routing)
    owner = [(e * 5) % 4 for e in range(256)]
    assert moelab.expert_parallel_traffic("deepseek-v3", 4, tokens=8, placement=owner
                                          ).remote_pair_fraction == 3 / 4
    assert "N=8" in repr(fast) and "remote_pair_fraction" in repr(fast.traffic)


def test_the_output_allgather_outweighs_the_all_to_alls_beyond_2k_ranks():
    k = 8
    for N in (4, 8, 16, 32, 64):
        t = moelab.expert_parallel_traffic("deepseek-v3", N, tokens=64 * 64)
        all_to_alls = t.dispatch_bytes + t.combine_bytes
        assert all_to_alls == pytest.approx(2 * k * (N - 1) / N * 7168 * 4, rel=1e-14)
        assert (t.allgather_bytes > all_to_alls) == (N > 2 * k)
        local = moelab.expert_parallel_traffic("deepseek-v3", N, tokens=64 * 64,
                                               allgather_output=False)
        assert local.allgather_bytes == 0
        assert local.bytes_per_token == t.bytes_per_token - t.allgather_bytes
    # replicated tokens: the network bound saturates at N * link / ((N - 1) rows per layer)
    c = moelab.expert_parallel_costs("deepseek-v3", 64, 100, 400, tokens=64)
    assert c.network_tokens_per_s < 12.5e9 / (58 * 7168 * 4)
    d = moelab.expert_parallel_costs("deepseek-v3", 64, 100, 400, tokens=64,
                                     allgather_output=False)
    assert d.network_tokens_per_s > 4 * c.network_tokens_per_s


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, exc, match", [
    (dict(num_ranks=0), ValueError, "num_ranks must be >= 1"),
    (dict(num_ranks=2.0), TypeError, "num_ranks must be an int"),
    (dict(num_ranks=True), TypeError, "num_ranks must be an int"),
    (dict(tokens=0), ValueError, "tokens must be >= 1"),
    (dict(link_gbit_per_s=0), ValueError, "link_gbit_per_s must be finite and > 0"),
    (dict(link_gbit_per_s=float("inf")), ValueError, "link_gbit_per_s must be finite"),
    (dict(link_gbit_per_s="100G"), TypeError, "link_gbit_per_s must be a real number"),
    (dict(memory_gbyte_per_s=-1.0), ValueError, "memory_gbyte_per_s must be finite and > 0"),
    (dict(memory_gbyte_per_s=float("nan")), ValueError, "memory_gbyte_per_s must be finite"),
    (dict(activation_bytes=0), ValueError, "activation_bytes must be finite and > 0"),
    (dict(weight_dtype_bytes=None), TypeError, "weight_dtype_bytes must be a real number"),
    (dict(placement=[0, 1]), ValueError,
     r"placement: expected \(E=256,\) owning ranks, got \(2,\)"),
    (dict(placement=[0] * 255 + [4]), ValueError,
     r"placement\[255\] = 4 is not a rank in \[0, 4\)"),
    (dict(placement=[0] * 255 + [-1]), ValueError, r"placement\[255\] = -1"),
    (dict(placement=[0.0] * 256), TypeError, r"placement\[0\] must be an int rank"),
    (dict(placement="0123"), TypeError, "placement must be None or a length-256 sequence"),
    (dict(allgather_output=1), TypeError, "allgather_output must be a bool"),
])
def test_bad_arguments(kw, exc, match):
    args = dict(num_ranks=4, link_gbit_per_s=100, memory_gbyte_per_s=400)
    args.update(kw)
    with pytest.raises(exc, match=match):
        moelab.expert_parallel_costs("deepseek-v3", **args)


def test_a_model_without_moe_layers_is_refused():
    with pytest.raises(ValueError, match="'olmo2-7b' has no MoE layers"):
        moelab.expert_parallel_traffic("olmo2-7b", 2)
    with pytest.raises(TypeError, match="ModelConfig or a preset name"):
        moelab.expert_parallel_traffic(None, 2)


def test_costs_gives_the_network_bytes_of_its_moe_layers():
    """``moelab.costs(..., num_ranks=N)``: the decode step's traffic per MoE layer, and times
    the MoE layers; nothing on the network for one rank."""
    one = moelab.costs("deepseek-v3")
    assert one.expert_parallel is None and one.network_bytes_per_token == 0.0
    c = moelab.costs("deepseek-v3", num_ranks=8)
    layer = moelab.expert_parallel_traffic("deepseek-v3", 8, tokens=1)
    assert c.expert_parallel == layer
    assert c.network_bytes_per_token == layer.bytes_per_token * 58   # 58 MoE layers of 61
    # the token is routed by rank 0, which holds 32 of the 256 experts: 8 * 224 / 256 = 7 pairs
    assert c.expert_parallel.dispatch_bytes == 7 * 7168 * 4
    assert c.flops_per_token == one.flops_per_token            # the rest is unchanged
    placed = moelab.costs("deepseek-v3", num_ranks=2, placement=[0] * 255 + [1])
    assert placed.expert_parallel.remote_pair_fraction == pytest.approx(1 / 256)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(num_ranks=0), ValueError, "num_ranks"),
    (dict(num_ranks=2.0), TypeError, "num_ranks"),
    (dict(placement=[0] * 256), ValueError, "placement"),
    (dict(num_ranks=2, placement=[0] * 3), ValueError, "placement"),
])
def test_costs_network_arguments_are_checked(kw, exc, match):
    with pytest.raises(exc, match=match):
        moelab.costs("deepseek-v3", **kw)


def test_costs_on_ranks_of_a_dense_model_is_refused():
    assert moelab.costs("olmo2-7b").network_bytes_per_token == 0.0
    with pytest.raises(ValueError, match="no MoE layers"):
        moelab.costs("olmo2-7b", num_ranks=2)
