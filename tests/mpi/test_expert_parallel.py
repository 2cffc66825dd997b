"""ExpertParallelMoE under MPI: every rank builds the same seeded layer and compares the
expert-parallel result with its own single-process forward, bitwise (y and every RoutingStats
field), for every router kind, shared experts with and without gate, capacity on and off,
float32 and bfloat16, T in {0, 1, 5, 64, 300}; uneven and user placements, layers loaded in part,
forward_local on a data-parallel split, CommStats' accounting, and bad input on one rank making
every rank raise (the watchdog of conftest.py fails a hang)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import moelab
from ep_cases import (DTYPES, E, H, SCORINGS, SHARED, assert_bitwise, assert_same_stats,
                      every_variant, forward_local_by_steps, inputs, make_layer)
from moelab._core_weights import NO_INIT
from moelab.expert_parallel import CommStats, ExpertParallelMoE, placement_of


@functools.lru_cache(maxsize=None)
def cached_layer(scoring, shared, capacity, dtype) -> moelab.MoELayer:
    return make_layer(scoring, shared, capacity, dtype)


def same_on_every_rank(comm, value) -> None:
    gathered = comm.allgather(value)
    assert all(v == gathered[0] for v in gathered), gathered


@every_variant
def test_matches_single_process(comm, scoring, shared, capacity, dtype):
    layer = cached_layer(scoring, shared, capacity, dtype)
    ep = ExpertParallelMoE(layer, comm)
    for T in (0, 1, 5, 64, 300):
        x = inputs(T, seed=T)
        y, stats = layer(x, return_stats=True)
        y_ep, stats_ep = ep(x, return_stats=True)
        assert_bitwise(y_ep, y)
        assert_same_stats(stats_ep, stats)
        assert_bitwise(ep(x), y)  # without statistics: the same path less the logits
    if capacity == "capacity":
        assert stats.dropped > 0  # (of T = 300)


def placements(N: int) -> dict:
    return {
        "blocks": None,                                   # uneven when N does not divide E
        "round-robin": [e % N for e in range(E)],         # each rank's experts apart
        "rank0-none": [1 + e % (N - 1) if N > 1 else 0 for e in range(E)],
        "one-rank-all": [N - 1] * E,
    }


@pytest.mark.parametrize("name", ["blocks", "round-robin", "rank0-none", "one-rank-all"])
@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
def test_placements(comm, scoring, name):
    layer = cached_layer(scoring, "gated-shared", "capacity", "float32")
    placement = placements(comm.size)[name]
    ep = ExpertParallelMoE(layer, comm, placement)
    assert_bitwise(ep.placement, placement_of(E, comm.size, placement))
    assert list(ep.owned_experts) == list(np.flatnonzero(ep.placement == comm.rank))
    x = inputs(64)
    y, stats = layer(x, return_stats=True)
    y_ep, stats_ep = ep(x, return_stats=True)
    assert_bitwise(y_ep, y)
    assert_same_stats(stats_ep, stats)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scoring", list(SCORINGS))
def test_layers_loaded_in_part(comm, scoring, dtype):
    """Each rank holds only its own experts (None for the others): the same bits."""
    full = cached_layer(scoring, "shared", "dropless", dtype)
    owners = placement_of(E, comm.size)
    weights = {name: np.array(v) for name, v in full.weights.items()}
    gate_up, down = weights["experts.gate_up_proj"], weights["experts.down_proj"]
    mine = owners == comm.rank
    weights["experts.gate_up_proj"] = [gate_up[e] if mine[e] else None for e in range(E)]
    weights["experts.down_proj"] = [down[e] if mine[e] else None for e in range(E)]
    part = moelab.MoELayer(full.config, seed=NO_INIT, weight_dtype=dtype)
    part.load_weights(weights)
    assert_bitwise(part.held_experts, mine)
    ep = ExpertParallelMoE(part, comm)
    assert ep.held_params == full.num_params - (E - mine.sum()) * full.config.expert_params
    assert ep.num_params == full.num_params
    x = inputs(64)
    y, stats = full(x, return_stats=True)
    y_ep, stats_ep = ep(x, return_stats=True)
    assert_bitwise(y_ep, y)
    assert_same_stats(stats_ep, stats)


@pytest.mark.parametrize("shared", list(SHARED))
@pytest.mark.parametrize("scoring", list(SCORINGS))
def test_forward_local(comm, scoring, shared):
    """Each rank its own tokens (rank r: 3 r + 1, the last rank none when N > 1): the routed
    part is the single-process batch's, capacity counting all tokens."""
    layer = cached_layer(scoring, shared, "capacity", "float32")
    ep = ExpertParallelMoE(layer, comm)
    counts = [3 * r + 1 for r in range(comm.size)]
    if comm.size > 1:
        counts[-1] = 0
    starts = np.concatenate([[0], np.cumsum(counts)])
    x_all = inputs(int(starts[-1]), seed=11)
    t0, t1 = int(starts[comm.rank]), int(starts[comm.rank + 1])
    y_local, stats = ep.forward_local(x_all[t0:t1], return_stats=True)
    assert_bitwise(y_local, forward_local_by_steps(layer, x_all, t0, t1))
    y_all, stats_all = layer(x_all, return_stats=True)
    assert_same_stats(stats, stats_all)
    if not shared == "no-shared":
        return
    assert_bitwise(y_local, y_all[t0:t1])  # without shared experts: the batch's rows exactly


def test_comm_stats(comm):
    layer = cached_layer("sigmoid", "no-shared", "capacity", "float32")
    ep = ExpertParallelMoE(layer, comm)
    T = 300
    y, stats = ep(inputs(T), return_stats=True)
    c = stats.comm
    assert isinstance(c, CommStats)
    N = comm.size
    for a in (c.tokens, c.rows_sent, c.rows_received, c.rows_local, c.bytes_sent,
              c.bytes_received):
        assert a.shape == (N,) and a.dtype == np.int64
    assert list(c.tokens) == [len(b) for b in np.array_split(np.arange(T), N)]
    assert c.rows_sent.sum() == c.rows_received.sum()
    assert (c.rows_sent + c.rows_local).sum() == stats.tokens_per_expert.sum()
    # each rank's experts processed exactly their kept pairs
    owned_rows = [stats.tokens_per_expert[ep.placement == r].sum() for r in range(N)]
    assert list(c.expert_rows) == owned_rows
    assert list(c.bytes_sent) == list(4 * H * (c.rows_sent + c.rows_received))
    assert list(c.bytes_received) == list(c.bytes_sent)
    assert c.imbalance == pytest.approx(max(owned_rows) / np.mean(owned_rows))
    if N == 1:
        assert c.rows_sent.sum() == 0 and c.imbalance == 1.0
    else:
        assert c.rows_sent.sum() > 0
    same_on_every_rank(comm, (c.tokens.tolist(), c.rows_sent.tolist(),
                              c.rows_received.tolist(), c.rows_local.tolist(), c.imbalance))


# ---- Bad input on one rank: every rank raises ----------------------------------------------

@pytest.mark.parametrize("case", ["nan", "wrong-H", "not-numbers"])
def test_bad_local_input_on_one_rank(comm, case):
    layer = cached_layer("softmax", "shared", "dropless", "float32")
    ep = ExpertParallelMoE(layer, comm)
    bad_rank = comm.size - 1
    x = inputs(4)
    if comm.rank == bad_rank:
        x = {"nan": np.full((4, H), np.nan), "wrong-H": np.zeros((4, H + 1)),
             "not-numbers": "tokens"}[case]
    error = TypeError if case == "not-numbers" else ValueError
    with pytest.raises(error, match=f"rank {bad_rank}: x"):
        ep.forward_local(x)
    with pytest.raises(error, match=f"rank {bad_rank}: x"):
        ep(x)
    assert_bitwise(ep(inputs(4)), layer(inputs(4)))  # the layer still works after


def test_different_T_on_one_rank(comm):
    if comm.size == 1:
        pytest.skip("needs two ranks")  # the one-rank run has no other rank to differ from
    layer = cached_layer("softmax", "no-shared", "dropless", "float32")
    ep = ExpertParallelMoE(layer, comm)
    x = inputs(5 if comm.rank == 0 else 6)
    with pytest.raises(ValueError, match="the ranks were given different T"):
        ep(x)


@pytest.mark.parametrize("case", ["config", "weight_dtype", "placement"])
def test_ranks_disagree_at_construction(comm, case):
    if comm.size == 1:
        pytest.skip("needs two ranks")
    odd = comm.rank == comm.size - 1
    scoring = "sigmoid" if (case == "config" and odd) else "softmax"
    dtype = "bfloat16" if (case == "weight_dtype" and odd) else "float32"
    placement = None
    if case == "placement":
        placement = [0] * E if odd else [comm.size - 1] * E
    layer = cached_layer(scoring, "no-shared", "dropless", dtype)
    with pytest.raises(ValueError, match=f"the ranks disagree on the {case}"):
        ExpertParallelMoE(layer, comm, placement)


@pytest.mark.parametrize("case", ["bad-placement", "lacking-experts", "not-a-layer"])
def test_bad_construction_on_one_rank(comm, case):
    bad_rank = comm.size - 1
    layer = cached_layer("softmax", "no-shared", "dropless", "float32")
    placement = None
    error, match = ValueError, f"rank {bad_rank}: "
    if comm.rank == bad_rank:
        if case == "bad-placement":
            placement = [comm.size] * E
        elif case == "lacking-experts":
            part = moelab.MoELayer(layer.config, seed=NO_INIT)
            w = {name: np.array(v) for name, v in layer.weights.items()}
            w["experts.gate_up_proj"] = [None] * E
            w["experts.down_proj"] = [None] * E
            part.load_weights(w)
            layer = part
        else:
            layer = "a layer"
    if case == "bad-placement":
        match += r"placement\[0\]: rank"
    elif case == "lacking-experts":
        match += "layer: rank .* owns experts .* but its layer does not hold them"
    else:
        error, match = TypeError, match + "layer must be a moelab.MoELayer"
    with pytest.raises(error, match=match):
        ExpertParallelMoE(layer, comm, placement)
