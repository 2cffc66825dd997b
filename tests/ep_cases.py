"""What the tests of the MoE layer's steps and of expert parallelism share: the layer variants
(every router kind, shared experts with and without their gate, capacity on and off, float32 and
bfloat16 storage; E = 8 experts, which 3 does not divide) and forward recomposed from the steps
on one process."""

from __future__ import annotations

import numpy as np
import pytest

import moelab

H, E, I = 32, 8, 16

#: scoring -> the MoEConfig fields of that router kind (sigmoid: DeepSeek-V3's groups and
#: correction bias; topk_softmax: gpt-oss's router bias; llama4: k = 1 as in Llama 4).
SCORINGS = {
    "softmax": dict(scoring="softmax", num_experts_per_tok=2),
    "topk_softmax": dict(scoring="topk_softmax", num_experts_per_tok=2, router_bias=True),
    "sigmoid": dict(scoring="sigmoid", num_experts_per_tok=3, n_group=4, topk_group=2,
                    correction_bias=True, routed_scaling_factor=2.5),
    "llama4": dict(scoring="llama4", num_experts_per_tok=1),
}
SHARED = {
    "no-shared": {},
    "shared": dict(n_shared_experts=1, shared_intermediate_size=24),
    "gated-shared": dict(n_shared_experts=1, shared_intermediate_size=24,
                         shared_expert_gate=True),
}
CAPACITY = {"dropless": None, "capacity": 0.75}
DTYPES = ("float32", "bfloat16")


def every_variant(test):
    """``test`` parametrized over scoring x shared x capacity x dtype (those argument names)."""
    for name, values in (("dtype", DTYPES), ("capacity", list(CAPACITY)),
                         ("shared", list(SHARED)), ("scoring", list(SCORINGS))):
        test = pytest.mark.parametrize(name, values)(test)
    return test


def config(scoring: str, shared: str, capacity: str) -> moelab.MoEConfig:
    return moelab.MoEConfig(hidden_size=H, num_experts=E, moe_intermediate_size=I,
                            capacity_factor=CAPACITY[capacity], **SCORINGS[scoring],
                            **SHARED[shared])


def make_layer(scoring: str, shared: str, capacity: str, dtype: str,
               seed: int = 3) -> moelab.MoELayer:
    """A seeded layer whose biases are away from zero (the random init gives every weight the
    bound of its matrix; the correction bias is then large enough to change selections)."""
    layer = moelab.MoELayer(config(scoring, shared, capacity), seed=seed, weight_dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for name, w in layer.weights.items():
        if name.endswith("bias") and w.flags.writeable:
            w[...] = rng.normal(0.0, 0.1, w.shape)
    return layer


def inputs(T: int, seed: int = 5) -> np.ndarray:
    """x (T, H) float32, standard normal."""
    return np.random.default_rng(seed).standard_normal((T, H)).astype(np.float32)


def pair_of_row(row_of_pair: np.ndarray) -> np.ndarray:
    """(R,) int64: the pair each sorted row holds (the inverse of row_of_pair on kept pairs)."""
    kept = np.flatnonzero(row_of_pair >= 0)                  # (R,)
    out = np.empty(kept.size, np.int64)
    out[row_of_pair[kept]] = kept
    return out


def forward_by_steps(layer: moelab.MoELayer, x: np.ndarray, expert_groups=None):
    """(y, RoutingStats) of x from the layer's steps on one process; the routed experts run in
    ``expert_groups`` (lists of expert ids, increasing; default: all in one call), as the ranks
    of an expert-parallel layer run theirs."""
    T, k = x.shape[0], layer.config.num_experts_per_tok
    logits, ids, weights = layer.route(x)                    # (T, E), (T, k), (T, k)
    row_of_pair, tokens_per_expert, dropped = layer.dispatch(ids)
    pairs = pair_of_row(row_of_pair)                         # (R,)
    rows = layer.expert_inputs(x, pairs // k, weights.reshape(-1)[pairs])  # (R, H)
    offsets = np.concatenate([[0], np.cumsum(tokens_per_expert)])
    groups = expert_groups if expert_groups is not None else [list(range(E))]
    output = np.empty_like(rows)                             # (R, H)
    for group in groups:
        group = np.asarray(group, np.int32)
        if group.size == 0:
            continue
        lo, hi = offsets[group[0]], offsets[group[-1] + 1]  # a contiguous block of rows
        output[lo:hi] = layer.run_experts(rows[lo:hi], group, tokens_per_expert[group])
    y = layer.combine(x, weights, row_of_pair, output)       # (T, H)
    aux, z = layer.routing_losses(logits, tokens_per_expert)
    topk_weights = np.where(row_of_pair.reshape(T, k) >= 0, weights, np.float32(0))
    stats = moelab.RoutingStats(topk_ids=ids, topk_weights=topk_weights, router_logits=logits,
                                tokens_per_expert=tokens_per_expert, aux_loss=aux, z_loss=z,
                                dropped=dropped)
    return y, stats


def assert_same_stats(a: moelab.RoutingStats, b: moelab.RoutingStats) -> None:
    """Every field of two RoutingStats bitwise equal (phase_seconds aside)."""
    for name in ("topk_ids", "topk_weights", "router_logits", "tokens_per_expert"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), name
    for name in ("aux_loss", "z_loss", "dropped"):
        assert getattr(a, name) == getattr(b, name), name


def assert_bitwise(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def forward_local_by_steps(layer: moelab.MoELayer, x_all: np.ndarray, t0: int, t1: int):
    """y (t1 - t0, H) of tokens [t0, t1) of the batch x_all (T, H) as data-parallel ranks
    compute them: the routed experts over the whole batch's rows, the shared experts over the
    rank's own rows; from the layer's steps on one process."""
    k = layer.config.num_experts_per_tok
    _, ids, weights = layer.route(x_all)
    row_of_pair, tokens_per_expert, _ = layer.dispatch(ids)
    pairs = pair_of_row(row_of_pair)
    rows = layer.expert_inputs(x_all, pairs // k, weights.reshape(-1)[pairs])
    output = layer.run_experts(rows, np.arange(E, dtype=np.int32), tokens_per_expert)
    return layer.combine(x_all[t0:t1], weights[t0:t1], row_of_pair[t0 * k:t1 * k], output)
