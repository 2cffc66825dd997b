"""Roofline arithmetic of one MoE forward, and the two machine rates it needs.

Pure functions first (FLOPs, bytes touched, the roofline of a batch), then the measurements:
the memory read bandwidth (N Python threads, each reducing a slice of a buffer much larger than
the last-level cache; NumPy releases the GIL in reductions) and the dense GEMM rate of the core
(``moelab.GatedMLP`` on a compute-bound shape).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

__all__ = [
    "expert_bytes", "shared_bytes", "router_bytes", "moe_flops", "touched_bytes",
    "Roofline", "roofline", "gathered_weight_bytes",
    "measure_read_bandwidth", "measure_kernel_cache_rate", "measure_gemm_rate",
]

F32 = 4  # bytes


def _dims(cfg):
    return (cfg.hidden_size, cfg.num_experts, cfg.num_experts_per_tok, cfg.moe_intermediate_size,
            cfg.shared_width)


def expert_bytes(cfg, weight_bytes: int = F32) -> int:
    """Bytes of one routed expert: gate_up (2I, H) + down (H, I), plus biases (2I + H, fp32)."""
    H, _, _, I, _ = _dims(cfg)
    n = 3 * H * I * weight_bytes
    if cfg.expert_bias:
        n += (2 * I + H) * F32
    return n


def shared_bytes(cfg, weight_bytes: int = F32) -> int:
    """Bytes of the shared expert block (2S, H) + (H, S), and its (1, H) gate if any."""
    H, _, _, _, S = _dims(cfg)
    n = 3 * H * S * weight_bytes
    if cfg.shared_expert_gate:
        n += H * F32
    return n


def router_bytes(cfg) -> int:
    """Bytes of the router (always fp32): weight (E, H), bias (E,), correction bias (E,)."""
    H, E, _, _, _ = _dims(cfg)
    return (E * H + E * int(cfg.router_bias) + E * int(cfg.correction_bias)) * F32


def moe_flops(cfg, T: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward over T tokens, dropless.

    Router ``2 T H E``, routed experts ``2 T k (2 I H + I H)``, shared experts ``2 T 3 H S``
    (+ ``2 T H`` for a shared gate). Activations, softmax and the combine are not counted.
    """
    H, E, k, I, S = _dims(cfg)
    flops = 2 * T * H * E + 2 * T * k * 3 * H * I + 2 * T * 3 * H * S
    if cfg.shared_expert_gate:
        flops += 2 * T * H
    return int(flops)


def touched_bytes(cfg, topk_ids: np.ndarray, weight_bytes: int = F32) -> int:
    """Bytes one forward must read or write at least: distinct experts + shared + router + x, y.

    topk_ids : (T, k) integer array of the experts the batch selected (``stats.topk_ids``).
    Each distinct expert's weights are read once; the input x (T, H) is read and y (T, H)
    written once, in fp32.
    """
    ids = np.asarray(topk_ids)
    if ids.ndim != 2:
        raise ValueError(f"topk_ids: expected (T, k), got {ids.shape}")
    T = ids.shape[0]
    distinct = int(np.unique(ids).size) if ids.size else 0
    return (distinct * expert_bytes(cfg, weight_bytes) + shared_bytes(cfg, weight_bytes)
            + router_bytes(cfg) + 2 * T * cfg.hidden_size * F32)


def gathered_weight_bytes(cfg, T: int) -> int:
    """Bytes that transformers' ``batched_mm`` gathers: one copy of an expert per (token, slot)."""
    return T * cfg.num_experts_per_tok * expert_bytes(cfg)


@dataclass(frozen=True)
class Roofline:
    """The roofline of one forward: the larger of the compute time and the memory time.

    compute_s = flops / peak_flops, bandwidth_s = bytes / bandwidth, roof_s = max of the two,
    bound = "compute" | "memory".
    """

    flops: int
    bytes: int
    compute_s: float
    bandwidth_s: float

    @property
    def roof_s(self) -> float:
        return max(self.compute_s, self.bandwidth_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.bandwidth_s else "memory"

    def fraction(self, measured_s: float) -> float:
        """roof_s / measured_s: 1.0 means the forward ran at the roofline."""
        if not measured_s > 0:
            raise ValueError(f"measured_s must be > 0, got {measured_s}")
        return self.roof_s / measured_s


def roofline(flops: int, nbytes: int, peak_flops_per_s: float, bytes_per_s: float) -> Roofline:
    """Roofline of a forward of ``flops`` FLOPs that touches ``nbytes`` bytes.

    Raises ValueError when a rate is not positive.
    """
    if not peak_flops_per_s > 0:
        raise ValueError(f"peak_flops_per_s must be > 0, got {peak_flops_per_s}")
    if not bytes_per_s > 0:
        raise ValueError(f"bytes_per_s must be > 0, got {bytes_per_s}")
    return Roofline(int(flops), int(nbytes), flops / peak_flops_per_s, nbytes / bytes_per_s)


# -- measurements -----------------------------------------------------------------------------

def _threaded_reduce(parts: List[np.ndarray]) -> float:
    """Seconds for len(parts) Python threads to each reduce (max) their part, all started together."""
    barrier = threading.Barrier(len(parts) + 1)
    sink = [None] * len(parts)

    def work(i: int) -> None:
        barrier.wait()
        sink[i] = np.maximum.reduce(parts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(parts))]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return time.perf_counter() - t0


def measure_read_bandwidth(buffer: np.ndarray, threads: int, repeats: int = 5) -> float:
    """Best read bandwidth in bytes/s: ``threads`` Python threads each reduce one slice of buffer.

    buffer : a 1-D float32 array, already written (its pages resident), much larger than the
    last-level cache. The reduction is ``np.maximum.reduce`` (vectorised, releases the GIL).
    """
    if buffer.ndim != 1 or buffer.dtype != np.float32:
        raise ValueError(f"buffer: expected a 1-D float32 array, got {buffer.dtype} {buffer.shape}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    parts = np.array_split(buffer, threads)
    best = min(_threaded_reduce(parts) for _ in range(repeats))
    return buffer.nbytes / best


def measure_kernel_cache_rate(nbytes: int = 1 << 20, repeats: int = 200) -> float:
    """Bytes/s of the same reduction on a small (cache-resident) buffer, one thread.

    If this is not well above the DRAM figure, the bandwidth measurement is limited by the
    reduction kernel rather than by memory.
    """
    small = np.ones(nbytes // F32, dtype=np.float32)
    np.maximum.reduce(small)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.maximum.reduce(small)
        best = min(best, time.perf_counter() - t0)
    return small.nbytes / best


def measure_gemm_rate(hidden_size: int, width: int, rows: int, repeats: int = 3,
                      seed: int = 0) -> Dict[str, float]:
    """Best dense FLOP/s of the core's GEMM path: ``moelab.GatedMLP(H, width)`` on (rows, H).

    The shape is compute-bound (``rows`` rows reuse every weight ``rows`` times). Uses the
    thread count currently set in moelab. Returns {"flops": per call, "seconds": best,
    "flops_per_s": best rate}.
    """
    import moelab

    mlp = moelab.GatedMLP(hidden_size, width, seed=seed)
    x = np.random.default_rng(seed).standard_normal((rows, hidden_size), dtype=np.float32)
    mlp(x)  # warm up (workspace, first touch)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mlp(x)
        best = min(best, time.perf_counter() - t0)
    flops = 6 * rows * hidden_size * width
    return {"flops": flops, "seconds": best, "flops_per_s": flops / best}
