"""The steps of MoELayer.forward called one by one (route, dispatch, expert_inputs, run_experts,
combine, routing_losses), and a layer loaded in part (held_experts).

Composed on one process the steps give forward's output and every RoutingStats field bitwise,
for every router kind, shared experts with and without gate, capacity on and off, float32 and
bfloat16 storage, with the experts run in one call or in groups (as expert-parallel ranks run
them). Bad arguments raise naming the argument; a layer missing experts refuses forward.
"""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import reference
from moelab._core_weights import NO_INIT
from ep_cases import (DTYPES, E, H, SCORINGS, assert_bitwise, assert_same_stats, config,
                      every_variant, forward_by_steps, inputs, make_layer, pair_of_row)

#: Expert groups as uneven placements give them: 3 ranks over 8 experts, and one rank without.
GROUPS = {"one-call": None, "3-ranks": [[0, 1, 2], [3, 4, 5], [6, 7]],
          "with-empty": [[0, 5], [], [1, 2, 3, 4, 6, 7]]}


@pytest.mark.parametrize("T", [0, 1, 7, 300], ids=lambda t: f"T{t}")
@every_variant
def test_steps_compose_to_forward(scoring, shared, capacity, dtype, T):
    layer = make_layer(scoring, shared, capacity, dtype)
    x = inputs(T)
    y, stats = layer(x, return_stats=True)
    y_steps, stats_steps = forward_by_steps(layer, x)
    assert_bitwise(y_steps, y)
    assert_same_stats(stats_steps, stats)
    if capacity == "capacity" and T == 300:
        assert stats.dropped > 0  # the capacity case drops pairs


@pytest.mark.parametrize("groups", list(GROUPS))
@pytest.mark.parametrize("scoring", list(SCORINGS))
def test_experts_in_groups(scoring, groups):
    """Grouped expert calls (one per rank) give the bits of one call; non-contiguous groups are
    split into the contiguous runs each covers."""
    layer = make_layer(scoring, "gated-shared", "dropless", "float32")
    x = inputs(64)
    y = layer(x)
    runs = []
    for group in GROUPS[groups] or [list(range(E))]:
        # contiguous runs of the group (the helper takes each run's rows as one block)
        run = []
        for e in group:
            if run and e != run[-1] + 1:
                runs.append(run)
                run = []
            run.append(e)
        if run:
            runs.append(run)
    assert_bitwise(forward_by_steps(layer, x, runs)[0], y)


def test_route_matches_stats():
    layer = make_layer("sigmoid", "no-shared", "dropless", "float32")
    x = inputs(9)
    _, stats = layer(x, return_stats=True)
    logits, ids, weights = layer.route(x)
    assert logits.dtype == np.float32 and ids.dtype == np.int32 and weights.dtype == np.float32
    assert_bitwise(logits, stats.router_logits)
    assert_bitwise(ids, stats.topk_ids)
    assert_bitwise(weights, stats.topk_weights)


def test_dispatch_order_and_capacity():
    """Rows of expert e are contiguous, in token then slot order; capacity(T) drops the last."""
    layer = make_layer("softmax", "no-shared", "capacity", "float32")
    T, k = 40, 2
    ids = np.zeros((T, k), np.int32)
    ids[:, 1] = np.arange(T) % (E - 1) + 1
    row_of_pair, tokens, dropped = layer.dispatch(ids)
    cap = reference.capacity(T, layer.config)
    assert tokens[0] == cap and dropped == T - cap
    assert list(row_of_pair[0:2 * cap:2]) == list(range(cap))   # expert 0: tokens 0..cap-1
    assert (row_of_pair[2 * cap::2] == -1).all()


def test_expert_inputs_llama4_scales_rows():
    layer = make_layer("llama4", "no-shared", "dropless", "float32")
    x = inputs(3)
    w = np.array([0.5, 2.0], np.float32)
    rows = layer.expert_inputs(x, [2, 0], w)
    assert_bitwise(rows, np.stack([np.float32(0.5) * x[2], np.float32(2.0) * x[0]]))
    plain = make_layer("softmax", "no-shared", "dropless", "float32")
    assert_bitwise(plain.expert_inputs(x, [2, 0]), x[[2, 0]])


# ---- Partial expert loading -------------------------------------------------------------------

def partial_weights(layer: moelab.MoELayer, held, read_only: bool = False) -> dict:
    """The layer's weights with the routed experts given per expert, None for those not in
    ``held`` (read-only arrays are read in place by the layer)."""
    w = {name: np.array(v) for name, v in layer.weights.items()}
    gate_up, down = w.pop("experts.gate_up_proj"), w.pop("experts.down_proj")
    I2 = gate_up.shape[1] // 2
    parts_gu, parts_d = [], []
    for e in range(E):
        if e in held:
            parts_gu += [gate_up[e, :I2], gate_up[e, I2:]]
            parts_d.append(down[e])
        else:
            parts_gu += [None, None]
            parts_d.append(None)
    w["experts.gate_up_proj"], w["experts.down_proj"] = parts_gu, parts_d
    if read_only:
        for v in [*parts_gu, *parts_d]:
            if v is not None:
                v.flags.writeable = False
    return w


@pytest.mark.parametrize("read_only", [False, True], ids=["copied", "in-place"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_partial_layer_runs_its_experts(dtype, read_only):
    full = make_layer("softmax", "shared", "dropless", dtype)
    held = [1, 2, 6]
    part = moelab.MoELayer(full.config, seed=NO_INIT, weight_dtype=dtype)
    # read-only float32 parts are read in place; bfloat16 ones (float32 copies of the stored
    # values) are rounded back exactly
    part.load_weights(partial_weights(full, held, read_only))
    assert list(np.flatnonzero(part.held_experts)) == held
    assert full.held_experts.all()
    x = inputs(50)
    logits, ids, w = full.route(x)
    _, tokens, _ = full.dispatch(ids)
    rows = inputs(int(tokens[held].sum()), seed=9)
    counts = tokens[held]
    assert_bitwise(part.run_experts(rows, held, counts), full.run_experts(rows, held, counts))
    # route and combine need no routed expert
    assert_bitwise(part.route(x)[0], logits)
    with pytest.raises(ValueError, match=r"does not hold experts \[0, 3, 4, 5, 7\]"):
        part(x)
    with pytest.raises(ValueError, match="does not hold expert 0"):
        part.run_experts(rows[:counts[0]], [0], counts[:1])
    # absent experts read as NaN; the held ones as loaded
    view = part.weights["experts.down_proj"]
    assert np.isnan(view[0]).all() and np.array_equal(view[held], full.weights["experts.down_proj"][held])
    if not read_only:
        assert part.owned_weight_bytes < full.owned_weight_bytes
    # a random init holds every expert again
    part._core.init_random(3)
    assert part.held_experts.all()
    part(x)


def test_partial_load_none_for_every_expert():
    full = make_layer("softmax", "no-shared", "dropless", "float32")
    part = moelab.MoELayer(full.config, seed=NO_INIT)
    part.load_weights(partial_weights(full, []))
    assert not part.held_experts.any()
    assert part.run_experts(np.zeros((0, H), np.float32), [], []).shape == (0, H)


@pytest.mark.parametrize("case", ["down-missing", "up-missing", "whole-none", "router-none",
                                  "fused-block"])
def test_partial_load_inconsistent_raises(case):
    full = make_layer("softmax", "no-shared", "dropless", "float32")
    part = moelab.MoELayer(full.config, seed=1)
    w = partial_weights(full, [0, 1])
    if case == "down-missing":
        w["experts.down_proj"][1] = None
        match = "would hold different experts"
    elif case == "up-missing":
        w["experts.gate_up_proj"][3] = None
        match = r"expert 1 given in part"
    elif case == "whole-none":
        w["experts.down_proj"] = [None]
        match = "only for the routed experts' stacks given per expert"
    elif case == "router-none":
        w["router.weight"] = [None]
        match = "only for the routed experts' stacks given per expert"
    else:  # one (2I, H) block per expert: None allowed per expert
        gu = full.weights["experts.gate_up_proj"]
        w["experts.gate_up_proj"] = [gu[0], gu[1]] + [None] * (E - 2)
        part.load_weights(w)
        assert list(np.flatnonzero(part.held_experts)) == [0, 1]
        return
    before = {k: np.array(v) for k, v in part.weights.items()}
    with pytest.raises(ValueError, match=match):
        part.load_weights(w)
    assert part.held_experts.all()  # unchanged
    for name, v in part.weights.items():
        assert np.array_equal(v, before[name])


# ---- Bad arguments ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def layer():
    return make_layer("llama4", "gated-shared", "dropless", "float32")


def bad_calls(layer):
    x = inputs(4)
    logits, ids, w = layer.route(x)
    rop, tokens, _ = layer.dispatch(ids)
    rows = x[[0, 1, 2, 3]]
    k = layer.config.num_experts_per_tok
    return [
        ("route-H", lambda: layer.route(np.zeros((2, H + 1))), ValueError, r"x: expected \(T, H=32\)"),
        ("route-nan", lambda: layer.route(np.full((2, H), np.nan)), ValueError, "x"),
        ("route-str", lambda: layer.route("abc"), TypeError, "x"),
        ("dispatch-range", lambda: layer.dispatch(np.full((2, k), E)), ValueError,
         r"ids: expert 8 at \(0, 0\) outside \[0, E=8\)"),
        ("dispatch-shape", lambda: layer.dispatch(np.zeros((2, k + 1), np.int32)), ValueError,
         r"ids: expected \(T, k=1\), got \(2, 2\)"),
        ("dispatch-float", lambda: layer.dispatch(np.zeros((2, k))), TypeError, "ids: expected integers"),
        ("dispatch-wide", lambda: layer.dispatch(np.full((2, k), 2**40)), ValueError, "ids: values must fit int32"),
        ("inputs-token", lambda: layer.expert_inputs(x, [0, 4], [1, 1]), ValueError,
         r"tokens: 4 at 1 outside \[0, T=4\)"),
        ("inputs-llama4-weights", lambda: layer.expert_inputs(x, [0, 1]), ValueError,
         "weights: required for scoring 'llama4'"),
        ("inputs-weights-shape", lambda: layer.expert_inputs(x, [0, 1], [1.0]), ValueError,
         r"weights: expected \(R=2,\) like tokens, got \(1,\)"),
        ("experts-order", lambda: layer.run_experts(rows, [2, 1], [2, 2]), ValueError,
         "experts: must be strictly increasing"),
        ("experts-range", lambda: layer.run_experts(rows, [8], [4]), ValueError,
         r"experts: 8 at 0 outside \[0, E=8\)"),
        ("counts-sum", lambda: layer.run_experts(rows, [0, 1], [1, 2]), ValueError,
         "counts: sum to 3, but rows has 4 rows"),
        ("counts-negative", lambda: layer.run_experts(rows, [0, 1], [5, -1]), ValueError,
         "counts: -1 at 1 is negative"),
        ("counts-shape", lambda: layer.run_experts(rows, [0, 1], [4]), ValueError,
         r"counts: expected \(n=2,\) like experts, got \(1,\)"),
        ("rows-shape", lambda: layer.run_experts(rows[:, :5], [0], [4]), ValueError,
         r"rows: expected \(R, H=32\), got \(4, 5\)"),
        ("rows-nan", lambda: layer.run_experts(np.full((1, H), np.inf), [0], [1]), ValueError, "rows"),
        ("combine-weights", lambda: layer.combine(x, w[:2], rop, rows), ValueError,
         r"weights: expected \(T=4, k=1\) like x, got \(2, 1\)"),
        ("combine-rop-range", lambda: layer.combine(x, w, np.full(4, 9), rows), ValueError,
         r"row_of_pair: 9 at 0 outside \[-1, R=4\)"),
        ("combine-rop-shape", lambda: layer.combine(x, w, rop[:2], rows), ValueError,
         r"row_of_pair: expected \(T\*k=4,\), got \(2,\)"),
        ("combine-output", lambda: layer.combine(x, w, rop, rows[:, :3]), ValueError,
         r"expert_output: expected \(R, H=32\), got \(4, 3\)"),
        ("losses-shape", lambda: layer.routing_losses(logits[:, :3], tokens), ValueError,
         r"logits: expected \(T, E=8\), got \(4, 3\)"),
        ("losses-tokens", lambda: layer.routing_losses(logits, tokens[:3]), ValueError,
         r"tokens_per_expert: expected \(E=8,\), got \(3,\)"),
        ("losses-negative", lambda: layer.routing_losses(logits, -np.ones(E, np.int64)), ValueError,
         "tokens_per_expert: -1 at 0 is negative"),
    ]


_BAD = [c[0] for c in bad_calls(make_layer("llama4", "gated-shared", "dropless", "float32"))]


@pytest.mark.parametrize("case", _BAD)
def test_bad_arguments_raise(layer, case):
    _, call, error, match = next(c for c in bad_calls(layer) if c[0] == case)
    with pytest.raises(error, match=match):
        call()


def test_config_unchanged():
    """The case grid covers what it says (a guard against a silently narrowed grid)."""
    assert {config(s, "shared", "capacity").scoring for s in SCORINGS} == set(SCORINGS)
    assert E % 3 != 0


# ---- No allocation once sized; any thread count --------------------------------------------

@pytest.mark.parametrize("scoring", list(SCORINGS))
def test_steps_allocate_nothing_once_sized(scoring):
    """After one pass of the steps over 150 tokens, passes over as many or fewer allocate
    nothing in the core (NumPy's output arrays aside), as forward."""
    from moelab import _core

    def allocations(call):
        before = _core._heap_allocations()
        call()
        return _core._heap_allocations() - before

    layer = make_layer(scoring, "gated-shared", "capacity", "float32")
    forward_by_steps(layer, inputs(150))
    k = layer.config.num_experts_per_tok
    for T in (150, 33, 1, 0):
        x = inputs(T)
        logits, ids, w = layer.route(x)
        rop, tokens, _ = layer.dispatch(ids)
        pairs = pair_of_row(rop)
        rows = layer.expert_inputs(x, pairs // k, w.reshape(-1)[pairs])
        experts = np.arange(E, dtype=np.int32)
        output = layer.run_experts(rows, experts, tokens)
        tok, wts = pairs // k, w.reshape(-1)[pairs]
        calls = {"route": lambda: layer.route(x), "dispatch": lambda: layer.dispatch(ids),
                 "expert_inputs": lambda: layer.expert_inputs(x, tok, wts),
                 "run_experts": lambda: layer.run_experts(rows, experts, tokens),
                 "combine": lambda: layer.combine(x, w, rop, output),
                 "routing_losses": lambda: layer.routing_losses(logits, tokens)}
        for name, call in calls.items():
            assert allocations(call) == 0, f"{name}, T={T}"


def test_steps_bitwise_for_any_thread_count(set_threads, every_region_parallel):
    layer = make_layer("sigmoid", "gated-shared", "capacity", "bfloat16")
    x = inputs(300)
    set_threads(1)
    y1, s1 = forward_by_steps(layer, x)
    set_threads(3)
    (y3, s3), loops = every_region_parallel(forward_by_steps, layer, x)
    assert_bitwise(y3, y1)
    assert_same_stats(s3, s1)
    assert {"combine", "copy_expert_inputs", "experts_gate_up"} <= loops  # really on several threads
