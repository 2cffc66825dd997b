"""NumPy twin of every C++ op of moelab: the oracle of the tests, in float64.

Each function here mirrors one op of the C++ core (DESIGN.md §3, §4) and is written to be read,
not to be fast: plain loops where they make the rule obvious, a shape comment on every tensor
line, no cleverness. Everything is computed in float64 whatever the input dtype, so that the
float32 core can be compared against it with the tolerances of ``tests/tolerances.py``.

Conventions (the same as the core):

* Ties are broken towards the lower index everywhere: the lower expert id when selecting
  experts, the lower group id when selecting groups, the lower expert id when two selected
  experts have the same weight.
* The k experts of a token are listed by weight descending (ties: lower id first).
* Weight names are the canonical names of DESIGN.md §2 (``router.weight``,
  ``experts.gate_up_proj``, ...); gate rows come before up rows in every ``gate_up_proj``.

Nothing from moelab is imported except ``moelab.config`` (for the type of the config).
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from .config import MoEConfig

__all__ = [
    "softmax",
    "sigmoid",
    "softcap",
    "router_logits",
    "top_k",
    "group_mask",
    "route",
    "activation",
    "expert",
    "gated_mlp",
    "capacity",
    "apply_capacity",
    "aux_loss",
    "z_loss",
    "moe_layer",
]

#: Added to the sum of the selected sigmoid scores before renormalising (as Hugging Face does).
SIGMOID_RENORM_EPS = 1e-20
#: gpt-oss clamped SwiGLU: clamp limit and the sigmoid slope.
SWIGLU_OAI_LIMIT = 7.0
SWIGLU_OAI_ALPHA = 1.702


# ---------------------------------------------------------------------------------------------
# elementwise helpers
# ---------------------------------------------------------------------------------------------
def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def softmax(z, axis: int = -1) -> np.ndarray:
    """softmax along ``axis``, float64; -inf entries get probability 0."""
    z = _f64(z)
    z_max = np.max(z, axis=axis, keepdims=True)
    e = np.exp(z - z_max)
    return e / np.sum(e, axis=axis, keepdims=True)


def sigmoid(z) -> np.ndarray:
    """1 / (1 + exp(-z)), float64 (sigmoid(-inf) = 0, sigmoid(+inf) = 1)."""
    z = _f64(z)
    with np.errstate(over="ignore"):  # exp(-z) overflows to inf for z << 0: sigmoid is 0 then
        return 1.0 / (1.0 + np.exp(-z))


def logsumexp(z, axis: int = -1) -> np.ndarray:
    """log(sum(exp(z))) along ``axis``, float64, computed stably."""
    z = _f64(z)
    z_max = np.max(z, axis=axis, keepdims=True)
    out = z_max + np.log(np.sum(np.exp(z - z_max), axis=axis, keepdims=True))
    return np.squeeze(out, axis=axis)


def _erf(z: np.ndarray) -> np.ndarray:
    """The error function elementwise (math.erf: NumPy has none)."""
    return np.vectorize(math.erf, otypes=[np.float64])(z)


# ---------------------------------------------------------------------------------------------
# router
# ---------------------------------------------------------------------------------------------
def softcap(logits, cap: Optional[float]) -> np.ndarray:
    """``cap * tanh(logits / cap)`` (Grok-2 uses cap = 30); ``cap=None`` returns the logits."""
    logits = _f64(logits)
    if cap is None:
        return logits
    return cap * np.tanh(logits / cap)


def router_logits(x, weights: Mapping[str, np.ndarray], cfg: MoEConfig) -> np.ndarray:
    """The router logits of DESIGN.md §2: ``W_r x (+ router.bias)``, then the soft-cap.

    x : (T, H); weights : the layer's canonical weights (``router.weight`` (E, H) and, when
    ``cfg.router_bias``, ``router.bias`` (E,)). Returns (T, E) float64. The selection-only
    correction bias is not part of the logits.
    """
    x = _f64(x)                                        # (T, H)
    w_r = _f64(weights["router.weight"])               # (E, H)
    logits = x @ w_r.T                                 # (T, E)
    if cfg.router_bias:
        logits = logits + _f64(weights["router.bias"])  # (T, E)
    return softcap(logits, cfg.router_logit_softcap)   # (T, E)


def top_k(scores, k: int) -> np.ndarray:
    """Indices of the k largest of a 1-D array, largest first, ties towards the lower index.

    scores : (N,) float (-inf allowed). Returns (k,) int64.
    """
    scores = _f64(scores)                              # (N,)
    # A stable sort of -scores keeps equal scores in index order: the lower index wins a tie.
    order = np.argsort(-scores, kind="stable")         # (N,)
    return order[:k]                                   # (k,)


def group_mask(biased_scores, n_group: int, topk_group: int) -> np.ndarray:
    """Group-limited routing (DeepSeek-V3) for one token: which experts may be chosen.

    biased_scores : (E,) the sigmoid scores plus the correction bias. The E experts form
    ``n_group`` consecutive groups of E / n_group; a group's score is the sum of its two best
    biased scores; the ``topk_group`` best groups are allowed (ties: lower group id).
    Returns (E,) bool, True for the experts of the allowed groups.
    """
    biased_scores = _f64(biased_scores)                # (E,)
    E = biased_scores.shape[0]
    group_size = E // n_group
    groups = biased_scores.reshape(n_group, group_size)  # (n_group, E / n_group)
    group_scores = np.zeros(n_group)                   # (n_group,)
    for g in range(n_group):
        best_two = top_k(groups[g], 2)                 # (2,)
        group_scores[g] = groups[g][best_two[0]] + groups[g][best_two[1]]
    allowed_groups = top_k(group_scores, topk_group)   # (topk_group,)
    allowed = np.zeros(E, dtype=bool)                  # (E,)
    for g in allowed_groups:
        allowed[g * group_size:(g + 1) * group_size] = True
    return allowed


def _sort_by_weight(ids: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Order one token's k (id, weight) pairs by weight descending, ties towards the lower id."""
    order = sorted(range(len(ids)), key=lambda j: (-w[j], ids[j]))
    return ids[order], w[order]


def route(logits, cfg: MoEConfig, correction_bias=None) -> Tuple[np.ndarray, np.ndarray]:
    """Select k experts per token and their weights (DESIGN.md §3).

    logits : (T, E), already soft-capped and with any router bias added; -inf allowed (an
        expert that cannot be chosen, as long as k entries are finite).
    correction_bias : (E,) the selection-only bias of the "sigmoid" router, or None (no bias).
    Returns ``ids (T, k) int64`` sorted per token by weight descending (ties: lower id) and
    ``weights (T, k) float64``, the weights the layer applies:

    * "softmax": the k largest logits (the same order as the probabilities, and robust to
      probabilities that underflow to equal values); weights = their softmax probabilities over
      all E, divided by their sum if ``norm_topk_prob``; times ``routed_scaling_factor``.
    * "sigmoid": s = sigmoid(logits); the k largest of s + correction_bias among the experts of
      the allowed groups (others excluded, i.e. -inf); weights = the unbiased s of the chosen,
      divided by (sum + 1e-20) if ``norm_topk_prob``; times ``routed_scaling_factor``.
    * "topk_softmax": the k largest logits; weights = softmax over those k logits only.
    * "llama4": the k largest logits; weights = sigmoid of those logits (they scale the
      expert's input, see ``moe_layer``).

    Raises ValueError if a correction bias is given to a router other than "sigmoid".
    """
    logits = _f64(logits)                              # (T, E)
    T, E = logits.shape
    k = cfg.num_experts_per_tok
    if correction_bias is not None:
        if cfg.scoring != "sigmoid":
            raise ValueError("correction_bias: only the 'sigmoid' router has a correction bias, "
                             f"not {cfg.scoring!r}")
        correction_bias = _f64(correction_bias)        # (E,)

    ids = np.zeros((T, k), dtype=np.int64)             # (T, k)
    weights = np.zeros((T, k), dtype=np.float64)       # (T, k)
    for t in range(T):
        l = logits[t]                                  # (E,)
        if cfg.scoring == "softmax":
            p = softmax(l)                             # (E,)
            chosen = top_k(l, k)                       # (k,)
            w = p[chosen]                              # (k,)
            if cfg.norm_topk_prob:
                w = w / np.sum(w)
            w = w * cfg.routed_scaling_factor
        elif cfg.scoring == "sigmoid":
            s = sigmoid(l)                             # (E,)
            biased = s if correction_bias is None else s + correction_bias  # (E,)
            if cfg.n_group > 1:
                allowed = group_mask(biased, cfg.n_group, cfg.topk_group)   # (E,)
                biased = np.where(allowed, biased, -np.inf)                 # (E,)
            chosen = top_k(biased, k)                  # (k,)
            w = s[chosen]                              # (k,) unbiased scores
            if cfg.norm_topk_prob:
                w = w / (np.sum(w) + SIGMOID_RENORM_EPS)
            w = w * cfg.routed_scaling_factor
        elif cfg.scoring == "topk_softmax":
            chosen = top_k(l, k)                       # (k,)
            w = softmax(l[chosen])                     # (k,) softmax over the chosen only
        elif cfg.scoring == "llama4":
            chosen = top_k(l, k)                       # (k,)
            w = sigmoid(l[chosen])                     # (k,)
        else:
            raise ValueError(f"cfg.scoring: unknown router {cfg.scoring!r}")
        ids[t], weights[t] = _sort_by_weight(chosen, w)
    return ids, weights


# ---------------------------------------------------------------------------------------------
# experts
# ---------------------------------------------------------------------------------------------
def activation(kind: str, gate, up) -> np.ndarray:
    """The gated activation of the experts, elementwise: gate, up : (N, I) -> (N, I) float64.

    "silu": silu(g) * u; "gelu": exact (erf) GELU(g) * u; "gelu_tanh": tanh-approximated
    GELU(g) * u; "relu": max(g, 0) * u; "swiglu_oai" (gpt-oss): g' = min(g, 7),
    u' = clip(u, -7, 7), (u' + 1) * g' * sigmoid(1.702 * g').
    """
    g = _f64(gate)                                     # (N, I)
    u = _f64(up)                                       # (N, I)
    if g.shape != u.shape:
        raise ValueError(f"up: expected the shape of gate {g.shape}, got {u.shape}")
    if kind == "silu":
        return g * sigmoid(g) * u
    if kind == "gelu":
        return 0.5 * g * (1.0 + _erf(g / math.sqrt(2.0))) * u
    if kind == "gelu_tanh":
        inner = math.sqrt(2.0 / math.pi) * (g + 0.044715 * g ** 3)
        return 0.5 * g * (1.0 + np.tanh(inner)) * u
    if kind == "relu":
        return np.maximum(g, 0.0) * u
    if kind == "swiglu_oai":
        g = np.minimum(g, SWIGLU_OAI_LIMIT)
        u = np.clip(u, -SWIGLU_OAI_LIMIT, SWIGLU_OAI_LIMIT)
        return (u + 1.0) * g * sigmoid(SWIGLU_OAI_ALPHA * g)
    raise ValueError(f"kind: unknown activation {kind!r}")


def expert(x, gate_up, down, kind: str, gate_up_bias=None, down_bias=None) -> np.ndarray:
    """One gated expert (a SwiGLU-style MLP) applied to rows of x.

    x : (N, H); gate_up : (2I, H), gate rows first; down : (H, I);
    gate_up_bias : (2I,) or None; down_bias : (H,) or None. Returns (N, H) float64.
    """
    x = _f64(x)                                        # (N, H)
    gate_up = _f64(gate_up)                            # (2I, H)
    down = _f64(down)                                  # (H, I)
    I = gate_up.shape[0] // 2
    gu = x @ gate_up.T                                 # (N, 2I)
    if gate_up_bias is not None:
        gu = gu + _f64(gate_up_bias)                   # (N, 2I)
    h = activation(kind, gu[:, :I], gu[:, I:])         # (N, I)
    y = h @ down.T                                     # (N, H)
    if down_bias is not None:
        y = y + _f64(down_bias)                        # (N, H)
    return y


def gated_mlp(x, gate_up_proj, down_proj, kind: str = "silu") -> np.ndarray:
    """A dense gated FFN (the twin of ``moelab.GatedMLP``), no biases.

    x : (T, H) or (B, S, H); gate_up_proj : (2I, H); down_proj : (H, I).
    Returns float64 of the shape of x.
    """
    x = _f64(x)
    x2 = x.reshape(-1, x.shape[-1])                    # (T, H)
    y = expert(x2, gate_up_proj, down_proj, kind)      # (T, H)
    return y.reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# capacity and losses
# ---------------------------------------------------------------------------------------------
def capacity(T: int, cfg: MoEConfig) -> Optional[int]:
    """(token, slot) pairs each expert may keep: ``ceil(T * k / E * capacity_factor)``.

    None when the layer is dropless (``capacity_factor`` is None).
    """
    if cfg.capacity_factor is None:
        return None
    return int(math.ceil(T * cfg.num_experts_per_tok / cfg.num_experts * cfg.capacity_factor))


def apply_capacity(ids, weights, cfg: MoEConfig):
    """The drop rule: each expert keeps its first C pairs in (token, slot) order.

    ids, weights : (T, k) from ``route``. Pairs are visited token by token and, within a
    token, slot by slot (j = 0..k-1, the order of ``ids``); a pair whose expert already holds
    C kept pairs is dropped. Returns ``(weights, kept, tokens_per_expert, dropped)``:
    weights (T, k) float64 with dropped pairs set to 0; kept (T, k) bool;
    tokens_per_expert (E,) int64, the kept pairs per expert; dropped, an int.
    """
    ids = np.asarray(ids)                              # (T, k)
    weights = _f64(weights).copy()                     # (T, k)
    T, k = ids.shape
    E = cfg.num_experts
    C = capacity(T, cfg)
    kept = np.ones((T, k), dtype=bool)                 # (T, k)
    tokens_per_expert = np.zeros(E, dtype=np.int64)    # (E,)
    dropped = 0
    for t in range(T):
        for j in range(k):
            e = ids[t, j]
            if C is not None and tokens_per_expert[e] >= C:
                kept[t, j] = False
                weights[t, j] = 0.0
                dropped += 1
            else:
                tokens_per_expert[e] += 1
    return weights, kept, tokens_per_expert, dropped


def aux_loss(logits, k: int) -> float:
    """Load-balancing loss of one layer (HF ``load_balancing_loss_func`` on raw logits).

    logits : (T, E). p = softmax(logits); each token's k most probable experts (ties: lower
    id) give f[j, e] = mean_t [expert of slot j is e]; P[e] = mean_t p[t, e];
    aux = E * sum_{j, e} f[j, e] * P[e]. 0.0 when T = 0.
    """
    logits = _f64(logits)                              # (T, E)
    T, E = logits.shape
    if T == 0:
        return 0.0
    p = softmax(logits)                                # (T, E)
    mask = np.zeros((T, k, E))                         # (T, k, E) one-hot of the chosen
    for t in range(T):
        for j, e in enumerate(top_k(p[t], k)):
            mask[t, j, e] = 1.0
    f = mask.mean(axis=0)                              # (k, E)
    P = p.mean(axis=0)                                 # (E,)
    return float(E * np.sum(f * P[None, :]))


def z_loss(logits) -> float:
    """Router z-loss: mean_t logsumexp_e(logits[t])^2. logits : (T, E). 0.0 when T = 0."""
    logits = _f64(logits)                              # (T, E)
    if logits.shape[0] == 0:
        return 0.0
    lse = logsumexp(logits, axis=-1)                   # (T,)
    return float(np.mean(lse ** 2))


# ---------------------------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------------------------
def moe_layer(x, weights: Mapping[str, np.ndarray], cfg: MoEConfig) -> Tuple[np.ndarray, Dict]:
    """One MoE layer forward (the twin of ``moelab.MoELayer``).

    x : (T, H) or (B, S, H); weights : canonical name -> array (DESIGN.md §2).
    Returns ``(y, stats)``: y float64 of the shape of x, and stats, a dict with the keys of
    ``moelab.RoutingStats`` (per-token arrays over the flattened tokens):
    topk_ids (T, k), topk_weights (T, k), router_logits (T, E), tokens_per_expert (E,),
    aux_loss, z_loss, dropped.

    y[t] = sum over kept slots j of w[t, j] * Expert_{ids[t, j]}(x_t)   (llama4: the weight
    scales the expert's input instead: Expert_e(w[t, j] * x_t)), plus the shared experts
    S(x_t), times sigmoid(x_t . shared_expert_gate) when gated. A dropped pair contributes
    nothing.
    """
    x = _f64(x)
    x2 = x.reshape(-1, x.shape[-1])                    # (T, H)
    T, H = x2.shape
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    W = {name: _f64(value) for name, value in weights.items()}

    # 1. route
    logits = router_logits(x2, W, cfg)                 # (T, E)
    bias = W["router.e_score_correction_bias"] if cfg.correction_bias else None  # (E,)
    ids, w = route(logits, cfg, bias)                  # (T, k), (T, k)
    w, kept, tokens_per_expert, dropped = apply_capacity(ids, w, cfg)

    # 2. routed experts, one expert at a time over the tokens that chose it
    y = np.zeros((T, H))                               # (T, H)
    for e in range(E):
        token_idx, slot_idx = np.nonzero((ids == e) & kept)  # (n_e,), (n_e,)
        if token_idx.size == 0:
            continue
        w_e = w[token_idx, slot_idx][:, None]          # (n_e, 1)
        x_e = x2[token_idx]                            # (n_e, H)
        gate_up_bias = W["experts.gate_up_proj_bias"][e] if cfg.expert_bias else None
        down_bias = W["experts.down_proj_bias"][e] if cfg.expert_bias else None
        if cfg.scoring == "llama4":
            y_e = expert(w_e * x_e, W["experts.gate_up_proj"][e], W["experts.down_proj"][e],
                         cfg.activation, gate_up_bias, down_bias)        # (n_e, H)
        else:
            y_e = w_e * expert(x_e, W["experts.gate_up_proj"][e], W["experts.down_proj"][e],
                               cfg.activation, gate_up_bias, down_bias)  # (n_e, H)
        y[token_idx] += y_e                            # a token picks an expert at most once

    # 3. shared experts
    if cfg.shared_width > 0:
        shared = gated_mlp(x2, W["shared_experts.gate_up_proj"],
                           W["shared_experts.down_proj"], cfg.activation)  # (T, H)
        if cfg.shared_expert_gate:
            gate = sigmoid(x2 @ W["shared_expert_gate.weight"][0])       # (T,)
            shared = gate[:, None] * shared            # (T, H)
        y = y + shared                                 # (T, H)

    stats = {
        "topk_ids": ids,                               # (T, k)
        "topk_weights": w,                             # (T, k)
        "router_logits": logits,                       # (T, E)
        "tokens_per_expert": tokens_per_expert,        # (E,)
        "aux_loss": aux_loss(logits, k),
        "z_loss": z_loss(logits),
        "dropped": int(dropped),
    }
    return y.reshape(x.shape), stats
