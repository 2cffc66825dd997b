#!/usr/bin/env python
"""The LM head as moelab runs it: ``moelab.ops.linear`` of (T, H) hidden states against the
(V, H) output embedding, vs ``torch.nn.functional.linear`` on the same weights.

    python benchmarks/bench_lm_head.py            # real vocabularies, prints a table (minutes)
    python benchmarks/bench_lm_head.py --quick    # one small shape, seconds (the smoke test)

Shapes: Qwen3 (V = 151936, H = 2048 and 4096) and gpt-oss (V = 201088, H = 2880), T = 1
(decode), 8 and 128 (prefill), float32 and bfloat16 weights. torch gets float32 x with float32
weights, and bfloat16 x with bfloat16 weights (CPU torch has no mixed kernel). Every cell first
checks moelab against float64 NumPy; calls alternate moelab / torch so that a disturbance of
the machine hits both; times are medians. Decode is a stream over the table, so it is also
shown as GB/s of weight bytes. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _machine  # noqa: E402
from bench_moe import rel_err, summarize, time_paired  # noqa: E402

#: (name, V, H): the output embeddings of released models (their config.json).
SHAPES = (("qwen3-30b-a3b", 151936, 2048), ("qwen3-235b-a22b", 151936, 4096),
          ("gpt-oss-20b", 201088, 2880))
QUICK_SHAPES = (("tiny", 4096, 256),)
TOKENS = (1, 8, 128)
QUICK_TOKENS = (1, 8)
VERIFY_RTOL = 1e-5   # ||y - y_f64|| / ||y_f64||: float32 dot products of H <= 4096 terms


def bf16_bits(w: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (round to nearest even), as moelab takes them."""
    u = w.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def run_cell(V: int, H: int, T: int, dtype: str, calls: int, rng: np.random.Generator) -> Dict:
    import torch

    import moelab

    w32 = (rng.standard_normal((V, H), dtype=np.float32) * 0.02)              # (V, H)
    w = bf16_bits(w32) if dtype == "bfloat16" else w32
    w_used = (w.astype(np.uint32) << 16).view(np.float32) if dtype == "bfloat16" else w32
    tw = torch.from_numpy(w_used).to(torch.bfloat16 if dtype == "bfloat16" else torch.float32)
    batches = [rng.standard_normal((T, H)).astype(np.float32) for _ in range(2)]  # (T, H)
    err = rel_err(moelab.ops.linear(batches[0], w), batches[0].astype(np.float64) @ w_used.T)
    if err > VERIFY_RTOL:
        raise AssertionError(f"V={V} H={H} T={T} {dtype}: moelab off by {err:.2e}")
    with torch.no_grad():
        t_moelab, t_torch = time_paired(
            lambda x: moelab.ops.linear(x, w),
            lambda x: torch.nn.functional.linear(torch.from_numpy(x).to(tw.dtype), tw),
            batches, calls)
    m, t = summarize(t_moelab), summarize(t_torch)
    return {"V": V, "H": H, "T": T, "dtype": dtype, "rel_err": err, "moelab": m, "torch": t,
            "weight_bytes": int(w.nbytes),
            "moelab_gb_per_s": w.nbytes / m["median_s"] / 1e9,
            "torch_over_moelab": t["median_s"] / m["median_s"]}


def main(argv: List[str] = None) -> List[Dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one small shape, few calls")
    p.add_argument("--calls", type=int, default=None, help="timed calls per cell")
    p.add_argument("--threads", type=int, default=None, help="moelab and torch threads")
    p.add_argument("--json", type=Path, default=None, help="write the cells here")
    args = p.parse_args(argv)
    import torch

    import moelab

    if args.threads:
        moelab.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    tokens = QUICK_TOKENS if args.quick else TOKENS
    calls = args.calls or (2 if args.quick else 7)
    info = _machine.machine_info()
    print(f"# LM head: moelab {info['moelab']} ({info['moelab_build_info']['simd']}, "
          f"{moelab.get_num_threads()} threads) vs torch {info.get('torch')} "
          f"({torch.get_num_threads()} threads); load average {_machine.load_average()}")
    print(f"{'shape':16s} {'V':>7s} {'H':>5s} {'T':>4s} {'dtype':9s} {'moelab ms':>10s} "
          f"{'torch ms':>9s} {'torch/moelab':>12s} {'GB/s':>6s}")
    rng = np.random.default_rng(0)
    cells = []
    for name, V, H in shapes:
        for dtype in ("float32", "bfloat16"):
            for T in tokens:
                c = run_cell(V, H, T, dtype, calls, rng)
                c["shape"] = name
                cells.append(c)
                print(f"{name:16s} {V:7d} {H:5d} {T:4d} {dtype:9s} "
                      f"{c['moelab']['median_s'] * 1e3:10.2f} {c['torch']['median_s'] * 1e3:9.2f} "
                      f"{c['torch_over_moelab']:12.2f} {c['moelab_gb_per_s']:6.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "cells": cells}, indent=1, default=str))
    return cells


if __name__ == "__main__":
    main()
