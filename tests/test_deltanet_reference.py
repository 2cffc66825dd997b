"""Checks of the float64 Gated DeltaNet twin (moelab.reference) against its own definition:
the grouped split, the helpers, and that a sequence cut in pieces equals one call."""

from __future__ import annotations

import math

import numpy as np
import pytest

import moelab
from moelab import reference
from tolerances import FLOAT64_FORMULA, assert_close


def tiny_config() -> moelab.ModelConfig:
    """Qwen3-Next's structure at H = 32, with n_k = 2, n_v = 6, d_k = 8, d_v = 12, K = 4."""
    cfg = moelab.preset("qwen3-next-80b-a3b").scaled(hidden_size=32)
    return cfg.replace(attention=cfg.attention.replace(
        linear_num_key_heads=2, linear_num_value_heads=6, linear_key_head_dim=8,
        linear_value_head_dim=12))


def random_weights(cfg: moelab.ModelConfig, rng: np.random.Generator) -> dict:
    a = cfg.attention
    n_k, n_v, d_k, d_v, K = (a.linear_num_key_heads, a.linear_num_value_heads,
                             a.linear_key_head_dim, a.linear_value_head_dim,
                             a.linear_conv_kernel_dim)
    H, C = cfg.hidden_size, 2 * n_k * d_k + n_v * d_v
    u = lambda shape, fan_in: rng.uniform(-1, 1, shape) / math.sqrt(fan_in)  # noqa: E731
    return {"in_proj_qkvz.weight": u((2 * n_k * d_k + 2 * n_v * d_v, H), H),
            "in_proj_ba.weight": u((2 * n_v, H), H),
            "conv1d.weight": u((C, 1, K), K),
            "dt_bias": rng.uniform(-2.5, -1.5, n_v),
            "A_log": np.log(np.linspace(0.02, 2.0, n_v)),
            "norm.weight": rng.uniform(0.5, 1.5, d_v),
            "out_proj.weight": u((H, n_v * d_v), n_v * d_v)}


def test_split_follows_the_grouped_layout():
    """Per key head g: [q_g | k_g | v_g (r d_v) | z_g (r d_v)] and [b_g (r) | a_g (r)]."""
    cfg = tiny_config()
    n_k, n_v, d_k, d_v, r = 2, 6, 8, 12, 3
    group = 2 * d_k + 2 * r * d_v
    qkvz = np.arange(n_k * group, dtype=np.float64)      # value = flat index
    ba = np.arange(2 * n_v, dtype=np.float64)
    q, k, v, z, b, a = reference.deltanet_split(qkvz, ba, cfg)
    assert q.shape == k.shape == (n_k, d_k) and v.shape == z.shape == (n_v, d_v)
    for g in range(n_k):
        np.testing.assert_array_equal(q[g], g * group + np.arange(d_k))
        np.testing.assert_array_equal(k[g], g * group + d_k + np.arange(d_k))
        for j in range(r):
            h = g * r + j
            np.testing.assert_array_equal(v[h], g * group + 2 * d_k + j * d_v + np.arange(d_v))
            np.testing.assert_array_equal(z[h], g * group + 2 * d_k + (r + j) * d_v
                                          + np.arange(d_v))
            assert b[h] == g * 2 * r + j and a[h] == g * 2 * r + r + j


def test_helpers():
    assert reference.softplus(25.0) == 25.0                       # torch's threshold
    assert_close(reference.softplus(0.0), math.log(2.0), FLOAT64_FORMULA, "softplus(0)")
    v = np.array([[3.0, 4.0], [0.0, 0.0]])
    n = reference.l2_normalize(v)
    assert_close(n[0], np.array([3.0, 4.0]) / math.sqrt(25.0 + reference.DELTANET_L2_EPS),
                 FLOAT64_FORMULA, "l2_normalize")
    np.testing.assert_array_equal(n[1], [0.0, 0.0])               # eps: no 0/0
    y = reference.gated_rms_norm(np.array([2.0, -2.0]), np.array([3.0, 3.0]),
                                 np.array([1.0, 0.5]), 0.0)       # rms = 2
    silu3 = 3.0 / (1.0 + math.exp(-3.0))
    assert_close(y, [silu3, -0.5 * silu3], FLOAT64_FORMULA, "gated_rms_norm")


def test_pieces_equal_one_call(rng):
    """Prefill 11, decode 3, prefill 9: bitwise the same as one call over 23 tokens (the twin
    runs token by token either way), and the state is a value, not a reference."""
    cfg = tiny_config()
    W = random_weights(cfg, rng)
    x = rng.standard_normal((23, 32))
    y_all, st_all = reference.gated_deltanet(x, W, cfg)
    ys, state = [], None
    for lo, hi in ((0, 11), (11, 12), (12, 13), (13, 14), (14, 23)):
        before = None if state is None else {k: v.copy() for k, v in state.items()}
        y, new = reference.gated_deltanet(x[lo:hi], W, cfg, state)
        if before is not None:  # the given state is not modified
            for key in before:
                np.testing.assert_array_equal(state[key], before[key])
        ys.append(y)
        state = new
    np.testing.assert_array_equal(np.vstack(ys), y_all)
    for key in ("recurrent", "conv"):
        np.testing.assert_array_equal(state[key], st_all[key])
    a = cfg.attention
    assert state["recurrent"].shape == (a.linear_num_value_heads, a.linear_key_head_dim,
                                        a.linear_value_head_dim)
    assert state["conv"].shape == (a.linear_conv_kernel_dim - 1, 2 * 2 * 8 + 6 * 12)
    np.testing.assert_array_equal(state["conv"][-1], _conv_input(x[-1], W, cfg))


def _conv_input(x_t, W, cfg) -> np.ndarray:
    q, k, v, _, _, _ = reference.deltanet_split(W["in_proj_qkvz.weight"] @ x_t,
                                                W["in_proj_ba.weight"] @ x_t, cfg)
    return np.concatenate([q.ravel(), k.ravel(), v.ravel()])


@pytest.mark.parametrize("T", [0, 1, 5])
def test_empty_and_short_sequences(T, rng):
    cfg = tiny_config()
    W = random_weights(cfg, rng)
    y, st = reference.gated_deltanet(rng.standard_normal((T, 32)), W, cfg)
    assert y.shape == (T, 32)
    if T == 0:
        assert not np.any(st["recurrent"]) and not np.any(st["conv"])
