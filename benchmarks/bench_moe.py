#!/usr/bin/env python
"""moelab MoE layer benchmark: moelab vs transformers (PyTorch CPU) vs the machine's roofline.

    python benchmarks/bench_moe.py            # full run (~25 min on 2 cores) -> benchmarks/RESULTS.md
    python benchmarks/bench_moe.py --quick    # smoke run (< 2 min), writes to a temporary folder

For layers shaped like Qwen3-30B-A3B, gpt-oss-20b, DeepSeek-V3 (32 experts) and Mixtral-8x7B,
at several token counts T and thread counts, it measures in one run:

* moelab's forward time (float32; also bfloat16 weights when ``MoELayer`` accepts
  ``weight_dtype``);
* the transformers MoE block with the *same* weights, for each experts implementation that
  runs on CPU ("eager", "batched_mm", "grouped_mm"), after checking its output agrees;
* a compute roof (the MoE's FLOPs at the dense GEMM rate of the same core, ``moelab.GatedMLP``
  on a compute-bound shape) and a bandwidth roof (bytes of the distinct experts the batch
  selects + shared + router, at the read bandwidth measured in the same run); the roofline is
  the larger of the two, and moelab's fraction of it is roofline time / moelab time;
* resident memory of a Qwen3-shaped layer and the extra memory of one forward at T = 2048.

Inputs are designed so that each token selects a chosen set of experts
(``moelab.designed_tokens``), and small batches are called in rotation so that the experts used
by one call are only used again after the whole layer (>= 5x the last-level cache) has been
streamed. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import inspect
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _machine  # noqa: E402
import _roofline as rl  # noqa: E402

# -- the benchmarked layers -------------------------------------------------------------------
# Dimensions from the released configs (moelab.preset); DeepSeek-V3 keeps 32 of
# its 256 experts (one layer would be 45 GB in fp32) with n_group 8 / topk_group 4 as released.
MODELS: Dict[str, dict] = {
    "qwen3-30b-a3b": dict(family="qwen3_moe", config=dict(
        hidden_size=2048, num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768,
        scoring="softmax", norm_topk_prob=True)),
    "gpt-oss-20b": dict(family="gpt_oss", config=dict(
        hidden_size=2880, num_experts=32, num_experts_per_tok=4, moe_intermediate_size=2880,
        scoring="topk_softmax", router_bias=True, activation="swiglu_oai", expert_bias=True)),
    "deepseek-v3-e32": dict(family="deepseek_v3", config=dict(
        hidden_size=7168, num_experts=32, num_experts_per_tok=8, moe_intermediate_size=2048,
        scoring="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5, n_group=8,
        topk_group=4, correction_bias=True, n_shared_experts=1)),
    "mixtral-8x7b": dict(family="mixtral", config=dict(
        hidden_size=4096, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=14336,
        scoring="softmax", norm_topk_prob=True)),
}

DEFAULT_TOKENS = (1, 8, 64, 512, 2048)
DEFAULT_THREADS = (1, 2)
TORCH_IMPLS = ("eager", "batched_mm", "grouped_mm")
VERIFY_RTOL = 1e-4               # ||y_hf - y_moelab|| / ||y_moelab|| allowed before timing
BANDWIDTH_BUFFER = 5 << 29       # 2.5 GiB read buffer (>= 5x the 480 MiB LLC reported)
GEMM_ROWS, GEMM_WIDTH = 256, 2048  # compute-bound dense shape for the GEMM rate
WARMUP_MAX_T = 64                # warm-up calls only where a call is cheap
BATCHED_MM_CAP = 2 << 30         # batched_mm gathers T*k expert copies; skip above 2 GiB


# -- small helpers ----------------------------------------------------------------------------

def rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    """||y - ref||_F / ||ref||_F in float64 (0 when both are 0)."""
    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    den = np.linalg.norm(ref)
    num = np.linalg.norm(y - ref)
    return float(num / den) if den > 0 else float(num)


def max_token_rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    """max over tokens of ||y_t - ref_t|| / ||ref_t|| (rows of (T, H) arrays)."""
    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    den = np.maximum(np.linalg.norm(ref, axis=1), np.finfo(np.float64).tiny)
    return float(np.max(np.linalg.norm(y - ref, axis=1) / den))


def n_calls_for(T: int, repeats: int, n_batches: int) -> int:
    """Timed calls at T: repeats x (3 at T <= 8, 1 at T <= 64, 0.6 above),
    at least 1, rounded up to whole rotations of the batches."""
    factor = 3.0 if T <= 8 else 1.0 if T <= 64 else 0.6
    n = max(1, round(repeats * factor))
    return n_batches * math.ceil(n / n_batches)


def time_calls(fn: Callable[[np.ndarray], object], batches: List[np.ndarray], n_calls: int,
               keep: bool = False):
    """Seconds of each of n_calls calls of fn, walking the batches in rotation.

    keep : also return the results of the first call on each batch (else an empty list).
    """
    times, kept = [], []
    for i in range(n_calls):
        x = batches[i % len(batches)]
        t0 = time.perf_counter()
        out = fn(x)
        times.append(time.perf_counter() - t0)
        if keep and i < len(batches):
            kept.append(out)
    return times, kept


def time_paired(fn_a: Callable[[np.ndarray], object], fn_b: Callable[[np.ndarray], object],
                batches: List[np.ndarray], n_calls: int):
    """Seconds of n_calls calls of fn_a and of fn_b, alternating a, b on each batch in rotation,
    so that a disturbance of the machine (other processes on the 2 cores) hits both alike and
    their ratio stays fair."""
    times_a, times_b = [], []
    for i in range(n_calls):
        x = batches[i % len(batches)]
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return times_a, times_b


def summarize(times: List[float]) -> Dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "n": len(times)}


def designed_batches(cfg, layer, T: int, min_batches: int, rng: np.random.Generator):
    """(batches, designed sets, mode) of ``designed_tokens.make_batches`` for this layer's router.

    Imported here, not at the top: moelab must be imported only after ``snapshot_moelab``."""
    from moelab import designed_tokens

    w = layer.weights
    return designed_tokens.make_batches(cfg, w["router.weight"], T, min_batches, rng,
                                        router_bias=w.get("router.bias"))


def supports_bf16() -> bool:
    """Whether ``moelab.MoELayer`` takes ``weight_dtype`` (bfloat16 weights)."""
    import moelab
    return "weight_dtype" in inspect.signature(moelab.MoELayer.__init__).parameters


def phase_timings(stats: list, skip_first: bool) -> Optional[Dict[str, float]]:
    """Median seconds per phase (route, dispatch, pack, gate_up, down, combine) over the calls'
    ``RoutingStats.phase_seconds``; None if the core does not report them.

    skip_first : leave out the first call (a warm-up that may grow the workspace) when there
    are others.
    """
    runs = [dict(getattr(st, "phase_seconds", None) or {}) for st in stats]
    if skip_first and len(runs) > 1:
        runs = runs[1:]
    runs = [r for r in runs if r]
    if not runs:
        return None
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}


# -- memory probe (run in a child process so that nothing else is resident) --------------------

def memory_probe(T: int = 2048) -> dict:
    """RSS of a Qwen3-shaped layer vs its weights, and the peak RSS growth of one forward."""
    import moelab

    spec = MODELS["qwen3-30b-a3b"]
    cfg = moelab.MoEConfig(**spec["config"])
    H, k, I = cfg.hidden_size, cfg.num_experts_per_tok, cfg.moe_intermediate_size
    rss_start = _machine.vm_status()["VmRSS"]
    layer = moelab.MoELayer(cfg, seed=0)
    rss_layer = _machine.vm_status()["VmRSS"]
    rng = np.random.default_rng(1)
    batches, _, _ = designed_batches(cfg, layer, T, 1, rng)
    x = batches[0]
    out = {"model": "qwen3-30b-a3b", "T": T, "threads": moelab.get_num_threads(),
           "weights_bytes": cfg.num_params * 4, "rss_before_layer": rss_start,
           "rss_after_layer": rss_layer, "layer_rss_growth": rss_layer - rss_start,
           "bound_bytes": T * k * max(H, 2 * I) * 4, "output_bytes": T * H * 4,
           "hwm_reset": True}
    for label in ("first_forward", "steady_forward"):
        gc.collect()
        before = _machine.vm_status()["VmRSS"]
        if not _machine.reset_peak_rss():
            out["hwm_reset"] = False
            break
        y = layer(x)
        st = _machine.vm_status()
        out[label] = {"rss_before": before, "peak_growth": st["VmHWM"] - before,
                      "rss_growth_after": st["VmRSS"] - before}
        del y
    if supports_bf16():
        del layer
        gc.collect()
        rss0 = _machine.vm_status()["VmRSS"]
        layer16 = moelab.MoELayer(cfg, seed=0, weight_dtype="bfloat16")
        out["bf16_layer_rss_growth"] = _machine.vm_status()["VmRSS"] - rss0
        del layer16
    return out


def run_memory_probe_subprocess(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-probe"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- bandwidth and GEMM rates -------------------------------------------------------------------

def measure_bandwidth(threads_list, nbytes: int) -> Dict[int, float]:
    """Read bandwidth (bytes/s) for each thread count over one freshly written buffer."""
    buf = np.ones(nbytes // 4, dtype=np.float32)
    out = {n: rl.measure_read_bandwidth(buf, n) for n in threads_list}
    del buf
    gc.collect()
    return out


def torch_gemm_rate(H: int, width: int, rows: int, repeats: int = 3) -> float:
    """Best FLOP/s of the same dense gated FFN in PyTorch (context for the core's GEMM rate)."""
    import torch
    g = torch.Generator().manual_seed(0)
    gu = torch.randn(2 * width, H, generator=g) / H ** 0.5
    down = torch.randn(H, width, generator=g) / width ** 0.5
    x = torch.randn(rows, H, generator=g)

    def ffn():
        a, b = torch.nn.functional.linear(x, gu).chunk(2, dim=-1)
        return torch.nn.functional.linear(torch.nn.functional.silu(a) * b, down)

    best = float("inf")
    with torch.inference_mode():
        ffn()
        for _ in range(repeats):
            t0 = time.perf_counter()
            ffn()
            best = min(best, time.perf_counter() - t0)
    return 6 * rows * H * width / best


# -- one model ---------------------------------------------------------------------------------

def bench_model(name: str, args, bandwidth: Dict[int, float], log) -> dict:
    import moelab

    spec = MODELS[name]
    cfg = moelab.MoEConfig(**spec["config"])
    res = {"config": dataclasses.asdict(cfg), "family": spec["family"],
           "layer_bytes_fp32": cfg.num_params * 4, "expert_bytes": rl.expert_bytes(cfg),
           "shared_width": cfg.shared_width,
           "rows": [], "verification": {}, "gemm_rate": {}, "torch_gemm_rate": {}}
    t0 = time.perf_counter()
    layer = moelab.MoELayer(cfg, seed=0)
    weights = layer.weights
    log(f"[{name}] layer built ({cfg.num_params * 4 / 2**30:.2f} GiB fp32) in "
        f"{time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(zlib.crc32(name.encode()))      # the same inputs every run

    layer16 = None
    if supports_bf16():
        layer16 = moelab.MoELayer(cfg, seed=0, weight_dtype="bfloat16")
        layer16.load_weights(weights)

    block = None
    if not args.no_torch:
        import _torch_blocks as hfb
        block = hfb.build_hf_block(spec["family"], cfg, weights)
        res["torch_weights"] = ("converted copy (transposed, interleaved gate/up)"
                                if spec["family"] == "gpt_oss" else
                                "shared memory with moelab (same layout, torch.from_numpy)")
        # verify every implementation on designed tokens before timing anything
        moelab.set_num_threads(max(args.threads))
        for impl in TORCH_IMPLS:
            too_big = impl == "batched_mm" and rl.gathered_weight_bytes(cfg, 8) > BATCHED_MM_CAP
            Tv = 1 if too_big else 8
            xb, sets, _ = designed_batches(cfg, layer, Tv, 1, rng)
            y_ml, st = layer(xb[0], return_stats=True)
            hfb.set_experts_implementation(block, impl)
            y_hf = hfb.hf_forward(block, xb[0])
            err = rel_err(y_hf, y_ml)
            res["verification"][impl] = {
                "T": Tv, "rel_err": err, "max_token_rel_err": max_token_rel_err(y_hf, y_ml),
                "ok": bool(err <= VERIFY_RTOL),
                "routing_as_designed": bool(np.array_equal(np.sort(st.topk_ids, axis=1),
                                                           np.sort(sets[0], axis=1)))}
            log(f"[{name}] verify {impl}: rel err {err:.2e} (T={Tv})")

    # The layer keeps its workspace between calls and grows it on the first call at a larger T;
    # grow it once now (largest T, most threads) so that no timed call pays the first touch.
    T_max = max(args.tokens)
    if T_max > WARMUP_MAX_T:
        moelab.set_num_threads(max(args.threads))
        xb, _, _ = designed_batches(cfg, layer, T_max, 1, rng)
        t0 = time.perf_counter()
        for lay in (layer, layer16):
            if lay is not None:
                lay(xb[0])
        log(f"[{name}] workspace grown at T={T_max} in {time.perf_counter() - t0:.1f} s")
        del xb

    for threads in args.threads:
        moelab.set_num_threads(threads)
        gr = rl.measure_gemm_rate(cfg.hidden_size, GEMM_WIDTH, GEMM_ROWS)
        res["gemm_rate"][threads] = gr["flops_per_s"]
        if block is not None:
            import torch
            torch.set_num_threads(threads)
            res["torch_gemm_rate"][threads] = torch_gemm_rate(cfg.hidden_size, GEMM_WIDTH,
                                                              GEMM_ROWS)
        log(f"[{name}] threads={threads}: core GEMM {gr['flops_per_s'] / 1e9:.1f} GFLOP/s"
            + (f", torch {res['torch_gemm_rate'][threads] / 1e9:.1f}" if block is not None else ""))
        last_torch: Dict[str, tuple] = {}
        for T in args.tokens:
            row = bench_cell(name, cfg, layer, layer16, block, T, threads, args, rng,
                             bandwidth[threads], res["gemm_rate"][threads], last_torch,
                             res["verification"], log)
            res["rows"].append(row)
    del block, layer16, layer, weights
    gc.collect()
    return res


def bench_cell(name, cfg, layer, layer16, block, T, threads, args, rng, bw, gemm_rate,
               last_torch, verification, log) -> dict:
    """All measurements at one (model, T, threads).

    last_torch : impl -> (median s, T) of the previous T, to project and skip slow calls.
    verification : impl -> {"ok": bool, ...}; an implementation that disagreed is not timed.
    """
    min_batches = 4 if T <= 64 else 1
    batches, sets, mode = designed_batches(cfg, layer, T, min_batches, rng)
    R = len(batches)
    n_calls = n_calls_for(T, args.repeats, R)
    warm = T <= WARMUP_MAX_T

    def with_stats(xb):
        return layer(xb, return_stats=True)

    if warm:  # every batch once, with the routing statistics; then plain timed calls
        outs = [with_stats(xb) for xb in batches]
        t_ml = summarize(time_calls(layer, batches, n_calls)[0])
    else:     # calls of seconds: no warm-up; the timed calls return the statistics themselves
        times, outs = time_calls(with_stats, batches, n_calls, keep=True)
        t_ml = summarize(times)
    y0 = outs[0][0]                                                   # (T, H) fp32 reference
    stats = [st for _, st in outs]
    designed = all(np.array_equal(np.sort(st.topk_ids, axis=1), np.sort(s, axis=1))
                   for st, s in zip(stats, sets))
    distinct = [int(np.unique(st.topk_ids).size) for st in stats]
    nbytes = float(np.mean([rl.touched_bytes(cfg, st.topk_ids) for st in stats]))
    flops = rl.moe_flops(cfg, T)
    roof = rl.roofline(flops, int(nbytes), gemm_rate, bw)
    row = {"T": T, "threads": threads, "batches": R, "schedule": mode,
           "warmup": warm, "routing_as_designed": designed,
           "distinct_experts_mean": float(np.mean(distinct)),
           "flops": flops, "bytes": nbytes, "moelab": t_ml,
           "compute_roof_s": roof.compute_s, "bandwidth_roof_s": roof.bandwidth_s,
           "roofline_s": roof.roof_s, "bound": roof.bound,
           "roofline_fraction": roof.fraction(t_ml["median_s"]),
           "achieved_flops_per_s": flops / t_ml["median_s"],
           "achieved_bytes_per_s": nbytes / t_ml["median_s"],
           "phases": phase_timings(stats, skip_first=warm), "torch": {}, "bf16": None}
    # reuse distance: bytes of distinct experts touched between two uses of an expert
    row["min_reuse_bytes"] = min_reuse_bytes(cfg, [st.topk_ids for st in stats])
    log(f"[{name}] T={T:<5d} thr={threads} moelab {t_ml['median_s'] * 1e3:9.2f} ms "
        f"(roof {roof.roof_s * 1e3:8.2f} ms {roof.bound}, frac {row['roofline_fraction']:.2f}, "
        f"{R} batches x {n_calls // R}, {mode})")

    if layer16 is not None:
        if warm:  # bf16 calls alternate with fp32 ones: the speed-up comes from those pairs
            y16 = layer16(batches[0])
            times32, times16 = time_paired(layer, layer16, batches, n_calls)
            t16, t32 = summarize(times16), summarize(times32)
        else:     # calls of seconds: the fp32 time above is the reference
            times, outs16 = time_calls(layer16, batches, n_calls, keep=True)
            y16, t16, t32 = outs16[0], summarize(times), t_ml
        bytes16 = float(np.mean([rl.touched_bytes(cfg, st.topk_ids, weight_bytes=2)
                                 for st in stats]))
        roof16 = rl.roofline(flops, int(bytes16), gemm_rate, bw)
        row["bf16"] = {**t16, "bytes": bytes16, "fp32_paired_median_s": t32["median_s"],
                       "speedup_vs_fp32": t32["median_s"] / t16["median_s"],
                       "rel_err_vs_fp32": rel_err(y16, y0),
                       "max_token_rel_err_vs_fp32": max_token_rel_err(y16, y0),
                       "roofline_s": roof16.roof_s,
                       "roofline_fraction": roof16.fraction(t16["median_s"])}
        log(f"[{name}]            bf16 {t16['median_s'] * 1e3:9.2f} ms "
            f"(x{row['bf16']['speedup_vs_fp32']:.2f}, err {row['bf16']['rel_err_vs_fp32']:.1e})")

    if block is not None:
        import torch
        import _torch_blocks as hfb
        torch.set_num_threads(threads)
        for impl in TORCH_IMPLS:
            if not verification.get(impl, {}).get("ok", False):
                row["torch"][impl] = {"skipped": "output did not match moelab (see verification)"}
                continue
            if impl == "batched_mm" and rl.gathered_weight_bytes(cfg, T) > BATCHED_MM_CAP:
                row["torch"][impl] = {"skipped": f"would gather "
                                      f"{rl.gathered_weight_bytes(cfg, T) / 2**30:.1f} GiB of "
                                      f"expert weights (T*k copies)"}
                continue
            if impl in last_torch:
                t_prev, T_prev = last_torch[impl]
                projected = t_prev * T / T_prev
                if projected > args.max_call_s:
                    row["torch"][impl] = {"skipped": f"projected {projected:.0f} s per call "
                                          f"(> --max-call-s {args.max_call_s:.0f})"}
                    continue
            hfb.set_experts_implementation(block, impl)
            if warm:
                hfb.hf_forward(block, batches[0])
            tt = summarize(time_calls(lambda xb: hfb.hf_forward(block, xb), batches,
                                      n_calls)[0])
            tt["moelab_speedup"] = tt["median_s"] / t_ml["median_s"]
            row["torch"][impl] = tt
            last_torch[impl] = (tt["median_s"], T)
            log(f"[{name}]            {impl:10s} {tt['median_s'] * 1e3:9.2f} ms "
                f"(moelab x{tt['moelab_speedup']:.2f})")
    return row


def min_reuse_bytes(cfg, ids_per_batch: List[np.ndarray]) -> Optional[float]:
    """Smallest bytes of *other* experts streamed between two uses of one expert.

    Model: each call streams its distinct experts once, in ascending id order (the order of
    the counting sort); the rotation of batches is walked twice so that the wrap-around counts.
    None when no expert is used twice.
    """
    eb = rl.expert_bytes(cfg)
    seq = [int(e) for ids in ids_per_batch for e in np.unique(ids)] * 2
    last: Dict[int, int] = {}
    best = None
    for p, e in enumerate(seq):
        if e in last:
            d = len(set(seq[last[e] + 1:p]) - {e}) * eb
            best = d if best is None else min(best, d)
        last[e] = p
    return best


# -- report ------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: qwen3 only, T in {1, 64}, repeats 1 (< 2 minutes)")
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None)
    p.add_argument("--tokens", nargs="+", type=int, default=None)
    p.add_argument("--threads", nargs="+", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls at T=64 (x3 at T<=8, x0.6 at T>=512); default 5")
    p.add_argument("--max-call-s", type=float, default=60.0,
                   help="skip a torch implementation whose projected call time exceeds this")
    p.add_argument("--no-torch", action="store_true", help="moelab and roofs only")
    p.add_argument("--no-memory", action="store_true", help="skip the RSS probe")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for RESULTS.md and results.json (default benchmarks/; "
                        "--quick: a new temporary folder)")
    p.add_argument("--no-snapshot", action="store_true",
                   help="import moelab in place (default: from a private copy, so that a rebuild "
                        "during the run cannot crash it)")
    p.add_argument("--report-from", type=Path, default=None, metavar="RESULTS_JSON",
                   help="measure nothing: recompute the roofs of a saved results.json and "
                        "rewrite it and RESULTS.md into --out")
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.models = args.models or ["qwen3-30b-a3b"]
        args.tokens = args.tokens or [1, 64]
        args.repeats = args.repeats or 1
    args.models = args.models or list(MODELS)
    args.tokens = sorted(set(args.tokens or DEFAULT_TOKENS))  # ascending: projections use the last T
    args.threads = args.threads or list(DEFAULT_THREADS)
    args.repeats = args.repeats or 5
    for name, vals in (("--tokens", args.tokens), ("--threads", args.threads)):
        if any(v < 1 for v in vals):
            p.error(f"{name} values must be >= 1")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="moelab-bench-")) if args.quick else HERE
    return args


def snapshot_moelab() -> Path:
    """Import moelab from a private copy of the package (and make child processes do so too).

    A run takes many minutes; rebuilding the package meanwhile copies a new ``_core`` over the
    loaded one, which kills the running process with SIGBUS. Returns the copy's folder.
    Must run before moelab is imported.
    """
    if "moelab" in sys.modules:
        raise RuntimeError("snapshot_moelab() must run before moelab is imported")
    spec = importlib.util.find_spec("moelab")
    if spec is None or spec.origin is None:
        raise ImportError("moelab is not importable (build it, or set PYTHONPATH=python)")
    dst = Path(tempfile.mkdtemp(prefix="moelab-snapshot-"))
    shutil.copytree(Path(spec.origin).parent, dst / "moelab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(dst))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(dst), os.environ.get("PYTHONPATH"))
                                               if p)
    return dst


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe()))
        return 0
    if args.report_from is not None:
        results = load_results(args.report_from)
        apply_roofs(results)
        results["meta"]["re_rendered"] = (f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} with "
                                          f"`--report-from` (roofs recomputed, no new timing)")
        args.out.mkdir(parents=True, exist_ok=True)
        save(results, args.out, partial=bool(results["meta"].get("partial")))
        print(f"re-rendered {args.out / 'RESULTS.md'} from {args.report_from}")
        return 0
    snapshot = None if args.no_snapshot else snapshot_moelab()
    try:
        return run(args, snapshot)
    finally:
        if snapshot is not None:
            shutil.rmtree(snapshot, ignore_errors=True)


def run(args, snapshot: Optional[Path]) -> int:
    import moelab

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.time()
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": _machine.load_average(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    meta.update(_machine.machine_info())
    meta["moelab_imported_from"] = (str(Path(moelab.__file__).parent)
                                    + (" (a private copy taken at the start)" if snapshot else ""))
    meta["llc_bytes"] = _machine.llc_bytes(meta["lscpu"])
    meta["bf16_supported"] = supports_bf16()
    meta["workspace_pregrown"] = True   # bench_model grows each layer's workspace before timing
    if not args.no_torch:
        import torch
        import _torch_blocks as hfb
        meta["experts_implementations_offered"] = hfb.experts_implementations()
        meta["grouped_mm_backend"] = hfb.grouped_mm_backend()
        meta["torch_threads_default"] = torch.get_num_threads()
    log(f"moelab {moelab.__version__} {moelab.build_info()}; load {meta['load_before']}")

    results = {"meta": meta, "bandwidth": {"buffer_bytes": BANDWIDTH_BUFFER, "probes": [],
                                           "kernel_cache_rate": rl.measure_kernel_cache_rate()},
               "models": {}}

    def probe(when: str) -> Dict[int, float]:
        """Measure the read bandwidth now; return the best seen so far per thread count."""
        bw = measure_bandwidth(args.threads, BANDWIDTH_BUFFER)
        results["bandwidth"]["probes"].append({"when": when, "bytes_per_s": bw})
        log(f"read bandwidth ({when}): "
            + ", ".join(f"{n} thr {v / 1e9:.1f} GB/s" for n, v in bw.items()))
        return best_bandwidth(results)

    probe("start")
    if not args.no_memory:
        results["memory"] = run_memory_probe_subprocess(max(args.threads))
        log(f"memory probe: {results['memory']}")

    args.out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(args.models):
        bw = probe(f"before {name}") if i else best_bandwidth(results)
        results["models"][name] = bench_model(name, args, bw, log)
        gc.collect()
        apply_roofs(results)
        save(results, args.out, partial=True)   # keep what is done if the run is interrupted
    probe("end")
    apply_roofs(results)
    meta["load_after"] = _machine.load_average()
    meta["wall_s"] = time.time() - started
    save(results, args.out, partial=False)
    log(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'results.json'} "
        f"in {meta['wall_s'] / 60:.1f} min; load {meta['load_after']}")
    return 0


def best_bandwidth(results: dict) -> Dict[int, float]:
    """Per thread count, the best read bandwidth of all probes so far (the machine's capability;
    a probe that ran while other processes loaded the machine reads low)."""
    best: Dict[int, float] = {}
    for p in results["bandwidth"]["probes"]:
        for n, v in p["bytes_per_s"].items():
            best[int(n)] = max(best.get(int(n), 0.0), v)
    results["bandwidth"]["used"] = best
    return best


def best_gemm_rate(results: dict) -> Dict[int, float]:
    """Per thread count, the best dense GEMM rate measured in the run (over the models' probes;
    the probes differ only in H, and one that ran while the machine was loaded reads low)."""
    best: Dict[int, float] = {}
    for m in results["models"].values():
        for n, v in m["gemm_rate"].items():
            best[int(n)] = max(best.get(int(n), 0.0), v)
    results["gemm_rate_used"] = best
    return best


def apply_roofs(results: dict) -> None:
    """(Re)compute every row's roofline with the best bandwidth and the best GEMM rate measured
    in the run so far at that thread count."""
    bw = best_bandwidth(results)
    rates = best_gemm_rate(results)
    for m in results["models"].values():
        for row in m["rows"]:
            n = row["threads"]
            roof = rl.roofline(row["flops"], int(row["bytes"]), rates[n], bw[n])
            row.update(compute_roof_s=roof.compute_s, bandwidth_roof_s=roof.bandwidth_s,
                       roofline_s=roof.roof_s, bound=roof.bound,
                       roofline_fraction=roof.fraction(row["moelab"]["median_s"]))
            if row.get("bf16"):
                b = row["bf16"]
                roof16 = rl.roofline(row["flops"], int(b["bytes"]), rates[n], bw[n])
                b.update(roofline_s=roof16.roof_s,
                         roofline_fraction=roof16.fraction(b["median_s"]))


def load_results(path: Path) -> dict:
    """results.json as written by a run, with the thread-count keys made ints again."""
    results = json.loads(Path(path).read_text())

    def int_keys(d: dict) -> dict:
        return {int(k): v for k, v in d.items()}

    for p in results["bandwidth"]["probes"]:
        p["bytes_per_s"] = int_keys(p["bytes_per_s"])
    for m in results["models"].values():
        m["gemm_rate"] = int_keys(m["gemm_rate"])
        m["torch_gemm_rate"] = int_keys(m["torch_gemm_rate"])
    return results


def save(results: dict, out: Path, partial: bool) -> None:
    """Write results.json and RESULTS.md into out (partial: the run is still going)."""
    from _report import write_report
    results["meta"]["partial"] = partial
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
    write_report(results, out / "RESULTS.md")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
