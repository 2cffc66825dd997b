"""Grok-2's FFN vs a float64 NumPy reference written from the description of its code.

Grok-2 is not in transformers, so its reference is the description of the sglang / Grok-1
code: router in fp32, logits soft-capped ``30 * tanh(l / 30)``, softmax over all experts, top-2,
no renormalisation; GeGLU experts ``w2(gelu_tanh(w1 x) * w3 x)``; and the residual dense GeGLU
MLP beside the MoE: ``ffn(x) = (MLP(x) + MoE(x)) / sqrt(2)``.
The reference below is written from that text alone (it does not use ``moelab.reference``).
The FFN is ``moelab.ResidualMoE`` of the ``grok-2`` preset with toy dimensions
(ModelConfig.replace); ``moelab.build`` refuses Grok-2's whole decoder. No torch needed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import moelab
from tolerances import LOGITS, OUTPUT, ROUTING_WEIGHTS, assert_close

H, I, I_DENSE, T = 32, 16, 48, 64
SOFTCAP = 30.0


def gelu_tanh(z):
    return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))


def grok2_ffn(x, W, softcap=SOFTCAP, renormalize=False, combine=1.0 / math.sqrt(2.0)):
    """float64 reference. x (T, H); W: router (E, H), w1/w3 (E, I, H), w2 (E, H, I),
    mlp_gate/mlp_up (I_dense, H), mlp_down (H, I_dense). Returns (ffn (T, H), capped logits
    (T, E), top-2 ids (T, 2), their weights (T, 2)). The keyword arguments give the variants
    that Grok-2 is NOT (no soft-cap, renormalised top-2, no 1/sqrt(2))."""
    x = x.astype(np.float64)
    logits = softcap * np.tanh((x @ W["router"].T) / softcap)       # (T, E)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)                               # (T, E), over all experts
    top = np.argsort(-p, axis=1, kind="stable")[:, :2]              # (T, 2)
    w = np.take_along_axis(p, top, axis=1)                          # (T, 2)
    if renormalize:
        w = w / w.sum(axis=1, keepdims=True)
    moe = np.zeros_like(x)                                          # (T, H)
    for t in range(x.shape[0]):
        for j in range(2):
            e = top[t, j]
            h = gelu_tanh(W["w1"][e] @ x[t]) * (W["w3"][e] @ x[t])  # (I,)
            moe[t] += w[t, j] * (W["w2"][e] @ h)                     # (H,)
    mlp = (gelu_tanh(x @ W["mlp_gate"].T) * (x @ W["mlp_up"].T)) @ W["mlp_down"].T  # (T, H)
    return (mlp + moe) * combine, logits, top, w


def _grok_block(rng):
    """moelab's Grok-2 FFN (toy dims) with Grok-named random weights loaded into it."""
    full = moelab.preset("grok-2")
    m = full.moe
    # the preset is the architecture described above
    assert (m.scoring, m.norm_topk_prob, m.router_logit_softcap, m.num_experts_per_tok,
            m.activation, m.n_shared_experts) == ("softmax", False, SOFTCAP, 2, "gelu_tanh", 0)
    assert full.residual_moe and full.hidden_act == "gelu_tanh"
    assert full.norm_placement == "sandwich"
    cfg = full.replace(hidden_size=H, num_hidden_layers=1, intermediate_size=I_DENSE,
                       moe=m.replace(hidden_size=H, moe_intermediate_size=I))
    block = moelab.ResidualMoE(cfg, seed=0)
    E = m.num_experts
    W = {"router": rng.standard_normal((E, H)) * (8.0 / math.sqrt(H)),
         "w1": rng.standard_normal((E, I, H)) / math.sqrt(H),
         "w3": rng.standard_normal((E, I, H)) / math.sqrt(H),
         "w2": rng.standard_normal((E, H, I)) / math.sqrt(I),
         "mlp_gate": rng.standard_normal((I_DENSE, H)) / math.sqrt(H),
         "mlp_up": rng.standard_normal((I_DENSE, H)) / math.sqrt(H),
         "mlp_down": rng.standard_normal((H, I_DENSE)) / math.sqrt(I_DENSE)}
    W = {k: v.astype(np.float32).astype(np.float64) for k, v in W.items()}  # exact in both
    block.moe.load_weights({"router.weight": W["router"],
                            "experts.gate_up_proj": np.concatenate([W["w1"], W["w3"]], axis=1),
                            "experts.down_proj": W["w2"]})
    block.mlp.load_weights({"gate_up_proj": np.concatenate([W["mlp_gate"], W["mlp_up"]]),
                            "down_proj": W["mlp_down"]})
    return cfg, block, W


def test_grok2_ffn_matches_reference(rng):
    cfg, block, W = _grok_block(rng)
    scale = np.geomspace(0.2, 4.0, T)[:, None]                     # (T, 1): mild to capped logits
    x = (rng.standard_normal((T, H)) * scale).astype(np.float32)   # (T, H)
    ref, logits, top, w = grok2_ffn(x, W)
    raw = x.astype(np.float64) @ W["router"].T                      # (T, E)
    # the soft-cap is active and matters, and the second expert has real weight somewhere
    assert int((np.abs(raw) > SOFTCAP).sum()) >= 20
    assert np.max(np.abs(logits - raw)) > 5.0
    assert np.max(w[:, 1]) > 0.2 and np.min(w.sum(axis=1)) < 0.99

    y, stats = block(x, return_stats=True)                          # (T, H)
    assert_close(y, ref, OUTPUT, "grok-2 ffn(x)")
    np.testing.assert_array_equal(np.sort(stats.topk_ids, axis=1), np.sort(top, axis=1))
    order = np.argsort(stats.topk_ids, axis=1)
    ref_order = np.argsort(top, axis=1)
    assert_close(np.take_along_axis(stats.topk_weights, order, 1),
                 np.take_along_axis(w, ref_order, 1), ROUTING_WEIGHTS, "grok-2 routing weights")
    assert_close(stats.router_logits, logits, LOGITS, "grok-2 capped logits")


VARIANTS = {"no_softcap": dict(softcap=1e9), "renormalised": dict(renormalize=True),
            "no_sqrt2": dict(combine=1.0)}


@pytest.mark.parametrize("wrong", sorted(VARIANTS))
def test_reference_distinguishes_the_variants(rng, wrong):
    """The comparison above would catch a block without the soft-cap, one renormalising the
    top-2 weights (vLLM's variant) or one without the 1/sqrt(2): on the same inputs each differs
    from the reference by far more than the tolerance."""
    _, _, W = _grok_block(rng)
    x = rng.standard_normal((T, H)) * np.geomspace(0.2, 4.0, T)[:, None]  # (T, H)
    ref = grok2_ffn(x, W)[0]
    other = grok2_ffn(x, W, **VARIANTS[wrong])[0]
    assert np.max(np.abs(other - ref)) > 100 * OUTPUT.rtol * np.max(np.abs(ref))
