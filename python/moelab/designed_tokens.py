"""Tokens whose routing is chosen in advance, so that a benchmark streams the experts from memory.

A real model streams each layer's experts once per token; a benchmark that calls one layer
again and again on the same input would find the experts it just used in the last-level cache,
and report more than the memory bandwidth allows. So every token here is *designed* to select a
chosen set of k experts, and batches of such tokens are called in rotation
(``benchmarks/bench_moe.py`` and notebook 05 time layers this way). With the router
W (E, H), E <= H, the token

    x = W^+ (l - b) + (I - W^+ W) n,     n ~ N(0, NOISE_STD^2 I)

has exactly the logits ``W x + b = l``: the chosen experts get l = 3.0, 3.25, ... (distinct,
slot order), all others l ~ U(-2, 0); the Gaussian part lies in the null space of W, so it
gives realistic activations to the experts without touching the routing. Selection margins are
then large for every router (softmax, sigmoid + correction bias, grouped, gpt-oss top-k).

The chosen sets come from one of two schedules:

* ``"cycle"`` (when T*k <= E): the sets are consecutive k-chunks of one fixed random permutation
  of the experts, walked cyclically from batch to batch, so an expert is used again only after
  all others (reuse distance ~ the whole layer). Group-limited routers (DeepSeek-V3) get sets
  of ``k / topk_group`` experts from each of ``topk_group`` groups, built the same way.
* ``"random"`` (T*k > E): each token draws a random k-set (respecting groups), which gives the
  load imbalance of random routing; such a batch touches (almost) every expert anyway.

    batches, sets, mode = moelab.designed_tokens.make_batches(
        layer.config, layer.weights["router.weight"], T=8, min_batches=4,
        rng=np.random.default_rng(0))
"""

from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np

__all__ = ["schedule_mode", "cycle_sets", "random_sets", "design_tokens", "make_batches"]

NOISE_STD = 0.5       # std of the null-space Gaussian part of every token
CHOSEN_LOGIT = 3.0    # logit of the last chosen slot; each earlier slot gets LOGIT_STEP more
LOGIT_STEP = 0.25
OTHER_LOGITS = (-2.0, 0.0)  # uniform range of the logits of the experts not chosen


def schedule_mode(cfg, T: int) -> str:
    """``"cycle"`` when a batch can use distinct experts for every (token, slot), else ``"random"``."""
    return "cycle" if T * cfg.num_experts_per_tok <= cfg.num_experts else "random"


def _group_layout(cfg) -> Tuple[int, int, int]:
    """(n_group, experts per group, experts per chosen group m); ValueError if sets cannot be even."""
    E, k, G, tg = cfg.num_experts, cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group
    if G == 1 or cfg.scoring != "sigmoid":
        return 1, E, k
    if k % tg:
        raise ValueError(f"k={k} is not a multiple of topk_group={tg}: cannot design grouped sets")
    return G, E // G, k // tg


def cycle_sets(cfg, rng: np.random.Generator) -> np.ndarray:
    """One cycle of expert sets that covers every expert once: (n_sets, k) int array.

    Plain routers: n_sets = E / gcd(E, k) consecutive k-chunks of a cyclic permutation (each
    expert appears k / gcd times, evenly spaced). Group-limited sigmoid routers: each group's
    experts are shuffled and cut into chunks of m = k / topk_group, and each set takes one chunk
    from each of topk_group distinct groups (greedily, the groups with most chunks left first).
    """
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    G, per_group, m = _group_layout(cfg)
    if G == 1:
        perm = rng.permutation(E)
        n_sets = E // math.gcd(E, k)
        idx = (np.arange(n_sets)[:, None] * k + np.arange(k)[None, :]) % E   # (n_sets, k)
        return perm[idx].astype(np.int64)
    chunks = []
    for g in range(G):
        members = g * per_group + rng.permutation(per_group)
        chunks.append([members[i:i + m] for i in range(0, per_group - m + 1, m)])
    sets = []
    tg = cfg.topk_group
    while True:
        order = sorted(range(G), key=lambda g: (-len(chunks[g]), rng.random()))
        chosen = [g for g in order if chunks[g]][:tg]
        if len(chosen) < tg:
            break
        sets.append(np.concatenate([chunks[g].pop() for g in chosen]))
    return np.asarray(sets, dtype=np.int64)


def random_sets(cfg, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random expert sets, (n, k) int array; group-limited routers: m experts in tg random groups."""
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    G, per_group, m = _group_layout(cfg)
    out = np.empty((n, k), dtype=np.int64)
    for t in range(n):
        if G == 1:
            out[t] = rng.choice(E, size=k, replace=False)
        else:
            groups = rng.choice(G, size=cfg.topk_group, replace=False)
            out[t] = np.concatenate([g * per_group + rng.choice(per_group, size=m, replace=False)
                                     for g in groups])
    return out


def design_tokens(router_weight: np.ndarray, sets: np.ndarray, rng: np.random.Generator,
                  router_bias: "np.ndarray | None" = None) -> np.ndarray:
    """Tokens whose router logits select the given expert sets exactly: (n, H) float32.

    router_weight : (E, H) float32, the layer's ``router.weight`` (E <= H, full row rank).
    sets : (n, k) int, the experts token i must select, in slot order (descending logit).
    router_bias : (E,) the layer's ``router.bias``, if it has one.
    Raises ValueError if router_weight is not (E, H) with E <= H (the logits could not be chosen
    freely), or sets is not (n, k) of distinct expert ids in [0, E) per token.
    """
    W = np.asarray(router_weight, dtype=np.float64)                     # (E, H)
    if W.ndim != 2 or W.shape[0] > W.shape[1]:
        raise ValueError(f"router_weight: need (E, H) with E <= H to design logits, got {W.shape}")
    E, H = W.shape
    sets = np.asarray(sets)
    if sets.ndim != 2 or sets.dtype.kind not in "iu":
        raise ValueError(f"sets: expected (n, k) integers, got {sets.shape} {sets.dtype}")
    if sets.size and (sets.min() < 0 or sets.max() >= E
                      or (np.diff(np.sort(sets, axis=1), axis=1) == 0).any()):
        raise ValueError(f"sets: each row must hold distinct expert ids in [0, E={E})")
    n, k = sets.shape
    logits = rng.uniform(*OTHER_LOGITS, size=(n, E))                    # (n, E)
    chosen = CHOSEN_LOGIT + LOGIT_STEP * np.arange(k - 1, -1, -1)       # (k,)
    np.put_along_axis(logits, np.asarray(sets), np.broadcast_to(chosen, (n, k)), axis=1)
    if router_bias is not None:
        logits -= np.asarray(router_bias, dtype=np.float64)[None, :]
    gram_inv = np.linalg.inv(W @ W.T)                                   # (E, E)
    noise = NOISE_STD * rng.standard_normal((n, H))                     # (n, H)
    noise -= (noise @ W.T) @ gram_inv @ W                               # null space of W
    x = logits @ gram_inv @ W + noise                                   # (n, H)
    return x.astype(np.float32)


def make_batches(cfg, router_weight: np.ndarray, T: int, min_batches: int,
                 rng: np.random.Generator, router_bias: "np.ndarray | None" = None
                 ) -> Tuple[List[np.ndarray], List[np.ndarray], str]:
    """Batches of T designed tokens to be called in rotation: (batches, designed sets, mode).

    batches : list of (T, H) float32; sets : list of (T, k) int64, the designed selections.
    In ``"cycle"`` mode the number of batches R is a multiple of n_sets / gcd(n_sets, T), so
    that walking the batches in order and wrapping around keeps the cyclic schedule exact;
    R >= min_batches.

    cfg : the layer's MoEConfig; router_weight : (E, H), its ``router.weight``; T, min_batches :
    ints >= 1; router_bias : (E,), its ``router.bias`` if it has one. Raises TypeError for a cfg
    that is not a MoEConfig, ValueError for a T or min_batches below 1, a router weight of
    another shape, or grouped sets that cannot be even (k not a multiple of topk_group).
    """
    from .config import MoEConfig

    if not isinstance(cfg, MoEConfig):
        raise TypeError(f"cfg must be a moelab.MoEConfig, got {type(cfg).__name__}")
    for name, v in (("T", T), ("min_batches", min_batches)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    expected = (cfg.num_experts, cfg.hidden_size)
    if np.shape(router_weight) != expected:
        raise ValueError(f"router_weight: expected (E, H)={expected}, got {np.shape(router_weight)}")
    mode = schedule_mode(cfg, T)
    if mode == "cycle":
        cyc = cycle_sets(cfg, rng)                                          # (n_sets, k)
        n_sets = cyc.shape[0]
        period = n_sets // math.gcd(n_sets, T)
        R = period * max(1, math.ceil(min_batches / period))
        order = np.arange(R * T) % n_sets
        all_sets = cyc[order]                                               # (R*T, k)
    else:
        R = max(1, min_batches)
        all_sets = random_sets(cfg, R * T, rng)                             # (R*T, k)
    sets = [all_sets[b * T:(b + 1) * T] for b in range(R)]
    batches = [design_tokens(router_weight, s, rng, router_bias) for s in sets]
    return batches, sets, mode
