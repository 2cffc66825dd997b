"""NumPy twin of every C++ op of moelab: the oracle of the tests, in float64.

Each function here mirrors one op of the C++ core (docs/semantics.md) and is written to be read,
not to be fast: plain loops where they make the rule obvious, a shape comment on every tensor
line, no cleverness. Everything is computed in float64 whatever the input dtype, so that the
float32 core can be compared against it with the tolerances of ``tests/tolerances.py``.

Conventions (the same as the core):

* Ties are broken towards the lower index everywhere: the lower expert id when selecting
  experts, the lower group id when selecting groups, the lower expert id when two selected
  experts have the same weight.
* The k experts of a token are listed by weight descending (ties: lower id first).
* Weight names are the canonical names of docs/semantics.md (``router.weight``,
  ``experts.gate_up_proj``, ...); gate rows come before up rows in every ``gate_up_proj``.

Nothing from moelab is imported except ``moelab.config`` and ``moelab.model_config`` (for the
types of the configs).
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from .config import MoEConfig
from .model_config import ModelConfig

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
    "linear",
    "capacity",
    "apply_capacity",
    "aux_loss",
    "z_loss",
    "load_balancing_loss",
    "sequence_balance_loss",
    "moe_layer",
    "softplus",
    "l2_normalize",
    "gated_rms_norm",
    "deltanet_split",
    "gated_deltanet",
    "rms_norm",
    "embedding",
    "rope_parameters",
    "apply_rope",
    "attention",
]

#: Added to the sum of the selected sigmoid scores before renormalising (as Hugging Face does).
SIGMOID_RENORM_EPS = 1e-20
#: gpt-oss clamped SwiGLU: clamp limit and the sigmoid slope.
SWIGLU_OAI_LIMIT = 7.0
SWIGLU_OAI_ALPHA = 1.702
#: Gated DeltaNet: the epsilon of the L2 normalisation of q and k (fixed in Hugging Face's
#: ``l2norm``, not a config value), and torch's softplus threshold (softplus(x) = x above it).
DELTANET_L2_EPS = 1e-6
SOFTPLUS_THRESHOLD = 20.0


# ---------------------------------------------------------------------------------------------
# elementwise helpers
# ---------------------------------------------------------------------------------------------
def _weight_f64(weight) -> np.ndarray:
    """A weight as float64: float values as they are, a uint16 array as bfloat16 bit patterns
    (the upper 16 bits of a float32)."""
    w = np.asarray(weight)
    if w.dtype == np.uint16:
        w = (w.astype(np.uint32) << 16).view(np.float32)
    return _f64(w)


def _round_bf16(v) -> np.ndarray:
    """float64 values rounded to float32, then to bfloat16 (nearest, ties to even), as float64."""
    bits = np.asarray(v, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16                # round to nearest even
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


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
    """The router logits (docs/semantics.md): ``W_r x (+ router.bias)``, then the soft-cap.

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
    """Select k experts per token and their weights (docs/semantics.md, "Routers").

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
def linear(x, weight, bias=None) -> np.ndarray:
    """y = x W^T (+ bias), the dense projection (twin of ``moelab.ops.linear``).

    x : (T, K); weight : (N, K) float, or uint16 holding bfloat16 bit patterns; bias : (N,).
    """
    x = _f64(x)                                                          # (T, K)
    y = x @ _weight_f64(weight).T                                        # (T, N)
    if bias is not None:
        y = y + _f64(bias)[None, :]                                      # (T, N)
    return y


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


def load_balancing_loss(logits, ids, kept) -> float:
    """Hugging Face's ``load_balancing_loss_func`` (Switch Transformer) for one layer, with f
    counted from the routing the layer applied.

    logits : (T, E), the router logits; ids : (T, k), the experts each token selected;
    kept : (T, k) bool, the pairs kept by capacity (all True when dropless).
    p = softmax(logits); f[e] = (kept pairs of expert e) / T; P[e] = mean_t p[t, e];
    aux = E * sum_e f[e] * P[e]. Dropless, f[e] is the share of tokens whose selection holds
    e, which is transformers' value (it takes the top-k of p, the selection of these routers).
    Uniform routing gives k. 0.0 when T = 0.
    """
    logits = _f64(logits)                              # (T, E)
    T, E = logits.shape
    if T == 0:
        return 0.0
    f = _kept_pairs_per_expert(ids, kept, E) / T       # (E,)
    P = softmax(logits).mean(axis=0)                   # (E,)
    return float(E * np.sum(f * P))


def sequence_balance_loss(logits, ids, kept) -> float:
    """DeepSeek-V3's sequence-wise balance loss (DeepSeek-V3 report, eq. 17-20) for one
    sequence, without its coefficient alpha.

    logits : (T, E), the router logits (no correction bias); ids : (T, k), the experts each
    token selected (after the group limit and the correction bias); kept : (T, k) bool, the
    pairs kept by capacity. s = sigmoid(logits); f[i] = E / (k T) * (kept pairs of expert i);
    P[i] = mean_t s[t, i] / sum_j s[t, j]; aux = sum_i f[i] * P[i]. Uniform routing gives 1.
    s / sum s is computed as softmax(log s), finite where every s of a token underflows.
    0.0 when T = 0.
    """
    logits = _f64(logits)                              # (T, E)
    T, E = logits.shape
    if T == 0:
        return 0.0
    k = np.asarray(ids).shape[1]
    f = _kept_pairs_per_expert(ids, kept, E) * E / (k * T)  # (E,)
    log_s = np.minimum(logits, 0.0) - np.log1p(np.exp(-np.abs(logits)))  # (T, E) log sigmoid
    P = softmax(log_s).mean(axis=0)                    # (E,) mean of s / sum_j s
    return float(np.sum(f * P))


def aux_loss(logits, ids, kept, scoring: str) -> float:
    """The auxiliary loss of one layer as its router kind defines it (docs/semantics.md,
    "Statistics"): ``sequence_balance_loss`` for "sigmoid" (DeepSeek-V3, Kimi K2, GLM-4.5),
    ``load_balancing_loss`` for "softmax", "topk_softmax" (gpt-oss, as transformers computes
    it) and "llama4" (moelab's choice: transformers computes none).

    logits : (T, E); ids, kept : (T, k), as ``apply_capacity`` returns them.
    """
    if scoring == "sigmoid":
        return sequence_balance_loss(logits, ids, kept)
    return load_balancing_loss(logits, ids, kept)


def _kept_pairs_per_expert(ids, kept, E: int) -> np.ndarray:
    """(E,) float64: the kept (token, slot) pairs of each expert. ids, kept : (T, k)."""
    ids = np.asarray(ids)                              # (T, k)
    kept = np.asarray(kept, dtype=bool)                # (T, k)
    count = np.zeros(E)                                # (E,)
    for t in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            if kept[t, j]:
                count[ids[t, j]] += 1.0
    return count


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

    x : (T, H) or (B, S, H); weights : canonical name -> array (docs/semantics.md).
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
    E = cfg.num_experts
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
        "aux_loss": aux_loss(logits, ids, kept, cfg.scoring),
        "z_loss": z_loss(logits),
        "dropped": int(dropped),
    }
    return y.reshape(x.shape), stats


# ---------------------------------------------------------------------------------------------
# Gated DeltaNet (Qwen3-Next's linear attention), step by step
# ---------------------------------------------------------------------------------------------
def softplus(z) -> np.ndarray:
    """log(1 + exp(z)), float64, and z itself above ``SOFTPLUS_THRESHOLD`` (as torch does)."""
    z = _f64(z)
    with np.errstate(over="ignore"):  # exp overflows only where the threshold returns z
        return np.where(z > SOFTPLUS_THRESHOLD, z, np.log1p(np.exp(z)))


def l2_normalize(v, eps: float = DELTANET_L2_EPS) -> np.ndarray:
    """v / sqrt(sum(v^2) + eps) over the last axis, float64."""
    v = _f64(v)                                        # (..., d)
    return v / np.sqrt(np.sum(v * v, axis=-1, keepdims=True) + eps)


def gated_rms_norm(o, z, weight, eps: float) -> np.ndarray:
    """Qwen3-Next's RMSNormGated over the last axis: w * o / sqrt(mean(o^2) + eps) * silu(z).

    o, z : (..., d_v); weight : (d_v,). Returns float64 of the shape of o.
    """
    o = _f64(o)                                        # (..., d_v)
    z = _f64(z)                                        # (..., d_v)
    rms = np.sqrt(np.mean(o * o, axis=-1, keepdims=True) + eps)  # (..., 1)
    return _f64(weight) * (o / rms) * (z * sigmoid(z))


def _deltanet_dims(cfg: ModelConfig) -> Tuple[int, int, int, int, int]:
    a = cfg.attention
    return (a.linear_num_key_heads, a.linear_num_value_heads, a.linear_key_head_dim,
            a.linear_value_head_dim, a.linear_conv_kernel_dim)


def deltanet_split(qkvz, ba, cfg: ModelConfig):
    """One token's in_proj outputs split into q, k, v, z, b, a (Hugging Face's
    ``fix_query_key_value_ordering``).

    qkvz : (2 n_k d_k + 2 n_v d_v,), laid out per key head g = 0..n_k-1 as
    ``[q_g (d_k) | k_g (d_k) | v_g (r d_v) | z_g (r d_v)]`` with r = n_v / n_k;
    ba : (2 n_v,), per key head ``[b_g (r) | a_g (r)]``. Value head h = g r + j belongs to key
    head g. Returns q (n_k, d_k), k (n_k, d_k), v (n_v, d_v), z (n_v, d_v), b (n_v,), a (n_v,).
    """
    n_k, n_v, d_k, d_v, _ = _deltanet_dims(cfg)
    r = n_v // n_k
    groups = _f64(qkvz).reshape(n_k, 2 * d_k + 2 * r * d_v)   # (n_k, 2 d_k + 2 r d_v)
    q = groups[:, :d_k]                                        # (n_k, d_k)
    k = groups[:, d_k:2 * d_k]                                 # (n_k, d_k)
    v = groups[:, 2 * d_k:2 * d_k + r * d_v].reshape(n_v, d_v)  # (n_v, d_v)
    z = groups[:, 2 * d_k + r * d_v:].reshape(n_v, d_v)        # (n_v, d_v)
    ba_groups = _f64(ba).reshape(n_k, 2 * r)                   # (n_k, 2 r)
    b = ba_groups[:, :r].reshape(n_v)                          # (n_v,)
    a = ba_groups[:, r:].reshape(n_v)                          # (n_v,)
    return q, k, v, z, b, a


def gated_deltanet(x, weights: Mapping[str, np.ndarray], cfg: ModelConfig,
                   state: Optional[Mapping[str, np.ndarray]] = None
                   ) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """One Gated DeltaNet layer over T tokens, one token at a time (the recurrent form; the
    twin of ``moelab.GatedDeltaNet``).

    x : (T, H). weights : ``in_proj_qkvz.weight`` (2 n_k d_k + 2 n_v d_v, H),
    ``in_proj_ba.weight`` (2 n_v, H), ``conv1d.weight`` (C, 1, K) with C = 2 n_k d_k + n_v d_v,
    ``dt_bias`` (n_v,), ``A_log`` (n_v,), ``norm.weight`` (d_v,), ``out_proj.weight``
    (H, n_v d_v). state : ``{"recurrent": (n_v, d_k, d_v), "conv": (K - 1, C)}`` (the conv rows
    of the last K - 1 tokens, oldest first), or None for a fresh sequence (zeros).

    Returns ``(y (T, H), new_state)`` in float64; the given state is not modified.

    Per token, with value head h reading key head h // (n_v / n_k):
      [q | k | v] = silu(causal depthwise conv over the last K tokens of [q | k | v]);
      q = l2_normalize(q) / sqrt(d_k); k = l2_normalize(k);
      beta = sigmoid(b); g = -exp(A_log) * softplus(a + dt_bias);
      S_h = exp(g_h) S_h;  delta = beta_h (v_h - S_h^T k);  S_h = S_h + k delta^T;
      o_h = S_h^T q;  y = out_proj(gated_rms_norm(o, z)).
    """
    n_k, n_v, d_k, d_v, K = _deltanet_dims(cfg)
    r = n_v // n_k
    x = _f64(x)                                        # (T, H)
    W = {name: _f64(value) for name, value in weights.items()}
    conv_w = W["conv1d.weight"][:, 0, :]               # (C, K)
    C = conv_w.shape[0]
    if state is None:
        S = np.zeros((n_v, d_k, d_v))                  # (n_v, d_k, d_v)
        tail = np.zeros((K - 1, C))                    # (K - 1, C)
    else:
        S = _f64(state["recurrent"]).copy()            # (n_v, d_k, d_v)
        tail = _f64(state["conv"]).copy()              # (K - 1, C)
    T = x.shape[0]
    y = np.zeros((T, cfg.hidden_size))                 # (T, H)
    for t in range(T):
        qkvz = W["in_proj_qkvz.weight"] @ x[t]         # (2 n_k d_k + 2 n_v d_v,)
        ba = W["in_proj_ba.weight"] @ x[t]             # (2 n_v,)
        q, k, v, z, b, a = deltanet_split(qkvz, ba, cfg)
        mixed = np.concatenate([q.ravel(), k.ravel(), v.ravel()])  # (C,)

        # causal depthwise conv over this token and the K - 1 before it, then SiLU
        window = np.vstack([tail, mixed[None, :]])     # (K, C), oldest first
        conv = np.sum(conv_w.T * window, axis=0)       # (C,)
        conv = conv * sigmoid(conv)                    # (C,)
        tail = window[1:]                              # (K - 1, C)
        q = conv[:n_k * d_k].reshape(n_k, d_k)         # (n_k, d_k)
        k = conv[n_k * d_k:2 * n_k * d_k].reshape(n_k, d_k)  # (n_k, d_k)
        v = conv[2 * n_k * d_k:].reshape(n_v, d_v)     # (n_v, d_v)

        q = l2_normalize(q) / math.sqrt(d_k)           # (n_k, d_k)
        k = l2_normalize(k)                            # (n_k, d_k)
        beta = sigmoid(b)                              # (n_v,)
        g = -np.exp(W["A_log"]) * softplus(a + W["dt_bias"])  # (n_v,), <= 0

        o = np.zeros((n_v, d_v))                       # (n_v, d_v)
        for h in range(n_v):
            q_h, k_h = q[h // r], k[h // r]            # (d_k,), (d_k,)
            S[h] = math.exp(g[h]) * S[h]               # (d_k, d_v) decay
            delta = beta[h] * (v[h] - S[h].T @ k_h)    # (d_v,) what the state mispredicts
            S[h] = S[h] + np.outer(k_h, delta)         # (d_k, d_v) delta-rule write
            o[h] = S[h].T @ q_h                        # (d_v,) read
        u = gated_rms_norm(o, z, W["norm.weight"], cfg.rms_norm_eps)  # (n_v, d_v)
        y[t] = W["out_proj.weight"] @ u.ravel()        # (H,)
    return y, {"recurrent": S, "conv": tail}


# ---------------------------------------------------------------------------------------------
# decoder ops around the layers (twins of moelab.ops.rms_norm / embedding; the soft-capping of
# moelab.ops.logit_softcap is softcap above, the LM head is linear)
# ---------------------------------------------------------------------------------------------
def rms_norm(x, weight, eps: float, offset: float = 0.0) -> np.ndarray:
    """RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * (offset + weight), float64.

    x : (..., H); weight : (H,) float, or uint16 holding bfloat16 bits. offset 0 is the
    Llama/Qwen norm, 1 Gemma's ``(1 + w)``. Returns float64 of the shape of x.
    """
    x = _f64(x)                                                      # (..., H)
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)      # (..., 1)
    return x / rms * (offset + _weight_f64(weight))                  # (..., H)


def embedding(ids, table, scale: Optional[float] = None) -> np.ndarray:
    """The rows ``table[ids]``, float64; with ``scale`` (Gemma's sqrt(H)) multiplied as
    transformers does it in the table's dtype: for a bfloat16 table (uint16 bits) the scale and
    the product are each rounded to bfloat16; for a float32 table, to float32.

    ids : (T,) int in [0, V); table : (V, H). Returns (T, H) float64.
    """
    ids = np.asarray(ids, dtype=np.int64)                            # (T,)
    rows = _weight_f64(table)[ids]                                   # (T, H)
    if scale is None:
        return rows
    if np.asarray(table).dtype == np.uint16:
        return _round_bf16(rows * _round_bf16(scale))                # (T, H), bfloat16 values
    return _f64((rows * np.float32(scale)).astype(np.float32))       # (T, H), float32 values


# ---------------------------------------------------------------------------------------------
# RoPE and softmax attention (twins of moelab.Attention; the spec is a moelab.AttentionSpec)
# ---------------------------------------------------------------------------------------------
def rope_parameters(rope: Mapping, head_dim: int, max_position_embeddings: int = 0
                    ) -> Tuple[np.ndarray, float]:
    """(inv_freq (R/2,), attention_scaling) of HF's ROPE_INIT_FUNCTIONS for ``rope``
    (``rope_type`` default / linear / llama3 / yarn and their keys), R = int(head_dim *
    partial_rotary_factor)."""
    kind = rope.get("rope_type", "default")
    base = float(rope.get("rope_theta", 10000.0))
    dim = int(head_dim * float(rope.get("partial_rotary_factor") or 1.0))
    pos_freq = base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)  # (R/2,)
    inv_freq = 1.0 / pos_freq                                          # (R/2,)
    scaling = 1.0
    factor = rope.get("factor")
    if kind == "linear":
        inv_freq = inv_freq / factor
    elif kind == "llama3":
        old = float(rope["original_max_position_embeddings"])
        low, high = float(rope["low_freq_factor"]), float(rope["high_freq_factor"])
        wavelen = 2 * math.pi / inv_freq                               # (R/2,)
        smooth = (old / wavelen - low) / (high - low)                  # (R/2,)
        scaled = np.where(wavelen > old / low, inv_freq / factor, inv_freq)
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        inv_freq = np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    elif kind == "yarn":
        old = float(rope["original_max_position_embeddings"])
        if factor is None:
            factor = max_position_embeddings / old

        def mscale(s, m=1.0):
            return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0

        scaling = rope.get("attention_factor")
        if scaling is None:
            m, m_all = rope.get("mscale"), rope.get("mscale_all_dim")
            scaling = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)

        def correction_dim(rotations):
            return dim * math.log(old / (rotations * 2 * math.pi)) / (2 * math.log(base))

        lo = correction_dim(rope.get("beta_fast") or 32)
        hi = correction_dim(rope.get("beta_slow") or 1)
        if rope.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, dim - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(dim // 2) - lo) / (hi - lo), 0, 1)  # (R/2,)
        extrapolation = 1 - ramp                                       # (R/2,)
        inv_freq = inv_freq / factor * (1 - extrapolation) + inv_freq * extrapolation
    elif kind != "default":
        raise ValueError(f"rope_type {kind!r} has no twin")
    return inv_freq, float(scaling)


def apply_rope(x, positions, inv_freq, attention_scaling: float = 1.0,
               interleaved: bool = False) -> np.ndarray:
    """x (T, heads, d) rotated by the angles positions[t] * inv_freq (cos and sin times
    attention_scaling) on its first R = 2 len(inv_freq) channels: pairs (i, i + R/2), or
    (2i, 2i + 1) when ``interleaved``."""
    x = _f64(x).copy()                                                 # (T, heads, d)
    half = len(inv_freq)
    angle = np.outer(_f64(positions), _f64(inv_freq))                  # (T, R/2)
    c = (np.cos(angle) * attention_scaling)[:, None, :]                # (T, 1, R/2)
    s = (np.sin(angle) * attention_scaling)[:, None, :]                # (T, 1, R/2)
    a = np.arange(half) * 2 if interleaved else np.arange(half)        # (R/2,) first of a pair
    b = a + 1 if interleaved else a + half                             # (R/2,) second
    xa, xb = x[..., a].copy(), x[..., b].copy()                        # (T, heads, R/2)
    x[..., a] = xa * c - xb * s
    x[..., b] = xb * c + xa * s
    return x


def _rms(v, weight, unit_offset: bool, eps: float) -> np.ndarray:
    """v / sqrt(mean(v^2) + eps) over the last axis, times w, (1 + w) or nothing."""
    out = v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps)
    if weight is None:
        return out
    w = _f64(weight)
    return out * (1.0 + w) if unit_offset else out * w


def attention(x, weights: Mapping[str, np.ndarray], spec) -> np.ndarray:
    """y (T, H) of one softmax-attention layer on the sequence x (T, H) at positions 0..T-1
    (twin of ``moelab.Attention``; spec a ``moelab.AttentionSpec``). A plain T x T softmax."""
    W = {name: _f64(w) for name, w in weights.items()}
    x = _f64(x)                                                        # (T, H)
    T = x.shape[0]
    n_h, n_kv, d = spec.num_attention_heads, spec.num_key_value_heads, spec.head_dim
    r = n_h // n_kv
    q = linear(x, W["q_proj.weight"], W.get("q_proj.bias"))           # (T, n_h d [* 2])
    k = linear(x, W["k_proj.weight"], W.get("k_proj.bias"))           # (T, n_kv d)
    v = linear(x, W["v_proj.weight"], W.get("v_proj.bias"))           # (T, n_kv d)
    gate = None
    if spec.output_gate:
        qg = q.reshape(T, n_h, 2 * d)                                  # (T, n_h, 2d)
        q, gate = qg[..., :d], qg[..., d:].reshape(T, n_h * d)         # (T, n_h, d), (T, n_h d)
    q = q.reshape(T, n_h, d)                                           # (T, n_h, d)
    k = k.reshape(T, n_kv, d)                                          # (T, n_kv, d)
    v = v.reshape(T, n_kv, d)                                          # (T, n_kv, d)
    eps, off = spec.rms_norm_eps, spec.norm_unit_offset
    if spec.qk_norm == "head":
        q = _rms(q, W["q_norm.weight"], off, eps)
        k = _rms(k, W["k_norm.weight"], off, eps)
    elif spec.qk_norm == "full":
        q = _rms(q.reshape(T, -1), W["q_norm.weight"], off, eps).reshape(T, n_h, d)
        k = _rms(k.reshape(T, -1), W["k_norm.weight"], off, eps).reshape(T, n_kv, d)
    elif spec.qk_norm == "l2":
        q, k = _rms(q, None, False, eps), _rms(k, None, False, eps)
    positions = np.arange(T)                                           # (T,)
    if spec.rope is not None:
        inv_freq, scaling = rope_parameters(spec.rope, d, spec.max_position_embeddings)
        q = apply_rope(q, positions, inv_freq, scaling, spec.rope_interleaved)
        k = apply_rope(k, positions, inv_freq, scaling, spec.rope_interleaved)
    if spec.temperature_tuning:
        tune = np.log1p(np.floor((positions + 1.0) / spec.floor_scale)) * spec.attn_scale + 1.0
        q = q * tune[:, None, None]                                    # (T, n_h, d)
    qp, kp = positions[:, None], positions[None, :]                    # (T, 1), (1, T)
    allowed = kp <= qp                                                 # (T, T) causal
    if spec.mask == "sliding":
        allowed &= (qp - kp) < spec.window
    elif spec.mask == "chunked":
        allowed &= (kp // spec.window) == (qp // spec.window)
    scale = spec.logit_scale
    o = np.zeros((T, n_h, d))                                          # (T, n_h, d)
    for h in range(n_h):
        s = (q[:, h] @ k[:, h // r].T) * scale                         # (T, T)
        if spec.softcap:
            s = spec.softcap * np.tanh(s / spec.softcap)
        s = np.where(allowed, s, -np.inf)                              # (T, T)
        if spec.sinks:
            sink = np.full((T, 1), W["sinks"][h])                      # (T, 1)
            p = softmax(np.concatenate([s, sink], axis=1))[:, :T]      # (T, T), sink dropped
        else:
            p = softmax(s)                                             # (T, T)
        o[:, h] = p @ v[:, h // r]                                     # (T, d)
    o = o.reshape(T, n_h * d)                                          # (T, n_h d)
    if gate is not None:
        o = o * sigmoid(gate)
    return linear(o, W["o_proj.weight"], W.get("o_proj.bias"))         # (T, H)


# ---------------------------------------------------------------------------------------------
# multi-head latent attention (twin of moelab.MultiHeadLatentAttention; spec a moelab.MLASpec)
# ---------------------------------------------------------------------------------------------
def mla(x, weights: Mapping[str, np.ndarray], spec) -> np.ndarray:
    """y (T, H) of one MLA layer on the sequence x (T, H) at positions 0..T-1, in the plain
    expanded form of transformers' DeepseekV3Attention: per-head keys and values rebuilt from
    the latent, a T x T causal softmax."""
    W = {name: _f64(w) for name, w in weights.items()}
    x = _f64(x)                                                        # (T, H)
    T = x.shape[0]
    n_h, r = spec.num_attention_heads, spec.kv_lora_rank
    d_n, d_r, d_v = spec.qk_nope_head_dim, spec.qk_rope_head_dim, spec.v_head_dim
    eps = spec.rms_norm_eps
    if spec.q_lora_rank is None:
        q = linear(x, W["q_proj.weight"])                              # (T, n_h d_qk)
    else:
        q_a = linear(x, W["q_a_proj.weight"], W.get("q_a_proj.bias"))  # (T, q_lora_rank)
        q = linear(_rms(q_a, W["q_a_layernorm.weight"], False, eps), W["q_b_proj.weight"])
    q = q.reshape(T, n_h, d_n + d_r)                                   # (T, n_h, d_qk)
    kv_a = linear(x, W["kv_a_proj_with_mqa.weight"], W.get("kv_a_proj_with_mqa.bias"))
    c = _rms(kv_a[:, :r], W["kv_a_layernorm.weight"], False, eps)      # (T, r)
    q_n, q_r = q[..., :d_n], q[..., d_n:]                              # (T, n_h, d_n), (.., d_r)
    k_r = kv_a[:, None, r:]                                            # (T, 1, d_r)
    if spec.rope_interleave:  # pairs (2i, 2i+1) laid out as (i, i + d_r/2), as HF does
        order = np.concatenate([np.arange(0, d_r, 2), np.arange(1, d_r, 2)])
        q_r, k_r = q_r[..., order], k_r[..., order]
    positions = np.arange(T)                                           # (T,)
    inv_freq, rope_scale = rope_parameters(spec.rope, d_r, spec.max_position_embeddings)
    q_r = apply_rope(q_r, positions, inv_freq, rope_scale)             # (T, n_h, d_r)
    k_r = apply_rope(k_r, positions, inv_freq, rope_scale)             # (T, 1, d_r)
    kv = linear(c, W["kv_b_proj.weight"]).reshape(T, n_h, d_n + d_v)   # (T, n_h, d_n + d_v)
    k_n, v = kv[..., :d_n], kv[..., d_n:]                              # (T, n_h, d_n), (.., d_v)
    allowed = positions[None, :] <= positions[:, None]                 # (T, T) causal
    scale = spec.logit_scale
    o = np.zeros((T, n_h, d_v))                                        # (T, n_h, d_v)
    for h in range(n_h):
        s = (q_n[:, h] @ k_n[:, h].T + q_r[:, h] @ k_r[:, 0].T) * scale  # (T, T)
        p = softmax(np.where(allowed, s, -np.inf))                     # (T, T)
        o[:, h] = p @ v[:, h]                                          # (T, d_v)
    return linear(o.reshape(T, n_h * d_v), W["o_proj.weight"], W.get("o_proj.bias"))  # (T, H)
