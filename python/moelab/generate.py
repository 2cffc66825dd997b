"""Text generation with a DecoderModel: greedy or sampled (temperature, top-k, top-p, a seed),
stop ids, a per-token callback.

    out = model.generate(ids, max_new_tokens=32)          # greedy
    out.tokens                                             # int64: prompt + generated

The prompt is prefilled into a fresh cache in one forward, then each new token is one cached
forward of one token. Sampling draws from ``numpy.random.default_rng(seed)``, so a seed gives
the same tokens on any machine and thread count (the logits are bitwise reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np

from ._checks import is_int, is_real

__all__ = ["Generation", "ExpertTrace", "generate", "next_token", "check_sampling",
           "TRACE_FORMATS"]

#: File formats ``ExpertTrace.save`` writes, by suffix.
TRACE_FORMATS = (".csv", ".json")


@dataclass(frozen=True)
class ExpertTrace:
    """The experts each processed token was routed to, per MoE layer.

    tokens : (N,) int64, the tokens in the order the model processed them (the prompt, then
        each generated token but the last, which is never fed back); token n is at position n.
    layers : (M,) the decoder layer index of each MoE layer.
    ids : (N, M, k) int32 expert ids, per token and layer sorted by weight descending.
    weights : (N, M, k) float32, the weights the layer applied.
    """

    tokens: np.ndarray
    layers: Tuple[int, ...]
    ids: np.ndarray
    weights: np.ndarray

    def to_frame(self):
        """A pandas DataFrame, one row per (position, layer, rank): position, token, layer,
        rank, expert, weight."""
        import pandas as pd
        N, M, k = self.ids.shape
        pos, layer, rank = np.meshgrid(np.arange(N), np.arange(M), np.arange(k), indexing="ij")
        return pd.DataFrame({
            "position": pos.ravel(), "token": self.tokens[pos.ravel()],
            "layer": np.asarray(self.layers, dtype=np.int64)[layer.ravel()],
            "rank": rank.ravel(), "expert": self.ids.ravel(), "weight": self.weights.ravel()})

    def save(self, path) -> None:
        """Write the trace to ``path``, by its suffix: ``.csv``, the rows of ``to_frame()``;
        ``.json``, ``{"layers": [M], "tokens": [N], "ids": [N][M][k], "weights": [N][M][k]}``.

        Raises ValueError (another suffix, naming it) or OSError (the file cannot be written).
        """
        import json
        import os

        suffix = os.path.splitext(os.fspath(path))[1].lower()
        if suffix not in TRACE_FORMATS:
            raise ValueError(f"path: {os.fspath(path)!r}: expected a file name ending in "
                             f"{' or '.join(TRACE_FORMATS)}, got {suffix or 'no suffix'!r}")
        if suffix == ".csv":
            self.to_frame().to_csv(path, index=False)
            return
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"layers": [int(i) for i in self.layers], "tokens": self.tokens.tolist(),
                       "ids": self.ids.tolist(), "weights": self.weights.tolist()}, f)


class _TraceBuilder:
    """Collects the routing of each forward of a generation into an ExpertTrace."""

    def __init__(self, layers: Tuple[int, ...]):
        self.layers = layers
        self.tokens: List[np.ndarray] = []
        self.ids: List[np.ndarray] = []
        self.weights: List[np.ndarray] = []

    def add(self, tokens: np.ndarray, routing: dict) -> None:
        self.tokens.append(np.asarray(tokens, dtype=np.int64).reshape(-1))
        if not self.layers:  # a dense model: no expert was chosen
            self.ids.append(np.zeros((self.tokens[-1].size, 0, 0), dtype=np.int32))
            self.weights.append(np.zeros((self.tokens[-1].size, 0, 0), dtype=np.float32))
            return
        self.ids.append(np.stack([routing[i].topk_ids for i in self.layers], axis=1))
        self.weights.append(np.stack([routing[i].topk_weights for i in self.layers], axis=1))

    def build(self) -> ExpertTrace:
        return ExpertTrace(np.concatenate(self.tokens), self.layers,
                           np.concatenate(self.ids), np.concatenate(self.weights))


@dataclass(frozen=True)
class Generation:
    """What ``generate`` returns: ``tokens`` (int64, prompt + generated), ``num_prompt``, and
    ``trace`` (an ExpertTrace with ``trace=True``, else None)."""

    tokens: np.ndarray
    num_prompt: int
    trace: Optional[ExpertTrace] = None

    @property
    def new_tokens(self) -> np.ndarray:
        """The generated tokens only."""
        return self.tokens[self.num_prompt:]


def next_token(logits: np.ndarray, temperature: float, top_k: Optional[int],
               top_p: Optional[float], rng: np.random.Generator) -> int:
    """The next token id from one row of logits (V,): argmax when temperature is 0 (ties to
    the lower id, as torch.argmax), else a draw from softmax(logits / temperature) restricted
    to the top_k largest and then to the smallest set whose probability reaches top_p."""
    if temperature == 0.0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature                # (V,)
    order = np.argsort(-z, kind="stable")                       # (V,) best first
    if top_k is not None:
        order = order[:top_k]
    p = np.exp(z[order] - z[order[0]])
    p /= p.sum()
    if top_p is not None:
        keep = int(np.searchsorted(np.cumsum(p), top_p)) + 1   # reaches top_p, at least one
        order, p = order[:keep], p[:keep] / p[:keep].sum()
    return int(order[rng.choice(len(order), p=p)])


def check_sampling(max_new_tokens, temperature, top_k, top_p, seed) -> None:
    """Raise ValueError naming the first of ``generate``'s sampling arguments that is bad."""
    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not is_real(temperature) or not temperature >= 0.0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a finite float >= 0, got {temperature!r}")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (not is_real(top_p) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")


def generate(model, ids, max_new_tokens: int = 32, temperature: float = 0.0,
             top_k: Optional[int] = None, top_p: Optional[float] = None, seed: int = 0,
             stop: Optional[Iterable[int]] = None,
             callback: Optional[Callable[[int], None]] = None, trace: bool = False
             ) -> Generation:
    """Continue the prompt ``ids`` (T,) by up to ``max_new_tokens`` tokens.

    temperature : 0 = greedy, else > 0. top_k : None or an int >= 1. top_p : None or in (0, 1].
    seed : int >= 0, the sampler's seed. stop : token ids that end generation (the stop token is
    kept). callback : called with each new token id as it is made (streaming). trace : also
    record which experts each token was routed to (``Generation.trace``).

    Raises TypeError / ValueError naming the argument; the prompt's errors are the forward's.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p, seed)
    stop_ids = frozenset(int(s) for s in (stop or ()))
    prompt = np.asarray(ids)
    rng = np.random.default_rng(int(seed))
    if not isinstance(trace, bool):
        raise TypeError(f"trace must be a bool, got {type(trace).__name__}")
    tracer = _TraceBuilder(model.config.moe_layer_indices) if trace else None
    routing = {} if trace else None
    cache = model.new_cache()
    logits = model(prompt, cache=cache, routing=routing)       # (T, V)
    if tracer is not None:
        tracer.add(prompt, routing)
    out = [int(t) for t in prompt.reshape(-1)]
    for n in range(int(max_new_tokens)):
        token = next_token(logits[-1], float(temperature), top_k, top_p, rng)
        out.append(token)
        if callback is not None:
            callback(token)
        if token in stop_ids or n == max_new_tokens - 1:
            break  # the last token is never fed back
        step = np.array([token], dtype=np.int64)
        logits = model(step, cache=cache, routing=routing)    # (1, V)
        if tracer is not None:
            tracer.add(step, routing)
    return Generation(np.array(out, dtype=np.int64), int(prompt.size),
                      None if tracer is None else tracer.build())
