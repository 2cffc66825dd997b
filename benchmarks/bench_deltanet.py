#!/usr/bin/env python
"""moelab Gated DeltaNet benchmark: moelab vs transformers (PyTorch CPU) vs the machine's peak.

    python benchmarks/bench_deltanet.py           # full run -> benchmarks/RESULTS_DELTANET.md
    python benchmarks/bench_deltanet.py --quick   # smoke run (a few minutes), to a temporary folder

One Gated DeltaNet layer (Qwen3-Next's linear attention) with the dims of Qwen3-Next-80B-A3B
(H = 2048, 16 key heads, 32 value heads, d_k = d_v = 128, conv kernel 4), float32 weights, and
transformers' ``Qwen3NextGatedDeltaNet`` holding the *same* weights (its torch fallbacks: CPU
has no fused kernels). For each thread count it measures, in one run:

* prefill of T tokens (default 512, 2048, 8192): a fresh sequence (moelab without a state,
  transformers without a cache: its chunked delta rule);
* decode: one token at a time after a prefill of ``--decode-context`` tokens (the state has a
  fixed size, so the context length does not change the work), moelab with its
  ``DeltaNetState`` (float32 weights, and bfloat16), transformers with its ``DynamicCache``
  (its recurrent delta rule);
* FLOPs per token: 2 x the projection parameters plus the recurrence and conv in their
  recurrent form (``moelab.analysis.linear_attention_flops``); the achieved FLOP/s as a fraction
  of the machine's float32 FMA peak, measured for that thread count by a small FMA probe
  (``_fma_probe.py``); decode also as bytes per token (weights + the state read and written)
  against the read bandwidth measured in the same run.

Every cell first checks that moelab and transformers give the same output; calls alternate
moelab / transformers so that a disturbance of the machine hits both. Times are medians.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _fma_probe  # noqa: E402
import _machine  # noqa: E402
import _roofline as rl  # noqa: E402
from _report import _ms, _table  # noqa: E402
from bench_moe import rel_err, snapshot_moelab, summarize, time_paired  # noqa: E402

PRESET = "qwen3-next-80b-a3b"   # its layer 0 is a Gated DeltaNet layer
LAYER = 0
DEFAULT_TOKENS = (512, 2048, 8192)
DEFAULT_THREADS = (1, 2)
VERIFY_RTOL = 1e-4               # ||y_hf - y_moelab|| / ||y_moelab|| expected below this
BANDWIDTH_BUFFER = 1 << 30       # 1 GiB read buffer (>= 30x the last-level cache here)
REPORT = "RESULTS_DELTANET.md"
RESULTS_JSON = "results_deltanet.json"


# -- the layer and its costs --------------------------------------------------------------------

def flops_per_token(cfg) -> int:
    """2 x the projection parameters + the recurrence and conv (recurrent form)."""
    from moelab.analysis import attention_params, linear_attention_flops
    matrix, _ = attention_params(cfg, "linear_attention")
    return 2 * matrix + linear_attention_flops(cfg.attention)


def decode_bytes_per_token(layer, state_nbytes: int) -> int:
    """Bytes one decode step must move at least: every weight once (at its storage size) and
    the state read and written."""
    weight_bytes = 2 if layer.weight_dtype == "bfloat16" else 4
    matrices = ("in_proj_qkvz.weight", "in_proj_ba.weight", "out_proj.weight")
    total = 0
    for name, w in layer.weights.items():
        total += w.size * (weight_bytes if name in matrices else 4)
    return total + 2 * state_nbytes


def hf_config(cfg):
    """A transformers Qwen3NextConfig with the DeltaNet dims of ``cfg`` (layer LAYER linear)."""
    import transformers
    a = cfg.attention
    return transformers.Qwen3NextConfig(
        vocab_size=64, hidden_size=cfg.hidden_size, num_hidden_layers=4, full_attention_interval=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=4,
        num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=16,
        linear_num_key_heads=a.linear_num_key_heads,
        linear_num_value_heads=a.linear_num_value_heads,
        linear_key_head_dim=a.linear_key_head_dim, linear_value_head_dim=a.linear_value_head_dim,
        linear_conv_kernel_dim=a.linear_conv_kernel_dim, rms_norm_eps=cfg.rms_norm_eps,
        hidden_act=cfg.hidden_act)


def hf_module(cfg, layer):
    """transformers' Qwen3NextGatedDeltaNet of layer LAYER holding ``layer``'s weights (float32)."""
    import torch
    import transformers
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet
    transformers.logging.set_verbosity_error()  # the "falling back to torch" notices
    hc = hf_config(cfg)
    module = Qwen3NextGatedDeltaNet(hc, LAYER).float().eval()
    module.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32))
                            for k, v in layer.weights.items()})
    return module, hc


def calls_for(T: int, repeats: int) -> int:
    """Timed calls of a prefill of T: repeats at T <= 512, fewer above (at least 1)."""
    return max(1, round(repeats * min(1.0, 512 / T)))


def set_threads(n: int) -> None:
    import moelab
    moelab.set_num_threads(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass


# -- cells ----------------------------------------------------------------------------------------

def prefill_cell(layer, module, T: int, threads: int, repeats: int, peak: Optional[float],
                 rng: np.random.Generator) -> dict:
    """Prefill of T tokens from a fresh sequence, moelab vs transformers (None: no torch)."""
    set_threads(threads)
    x = rng.standard_normal((T, layer.config.hidden_size), dtype=np.float32)  # (T, H)
    flops = T * flops_per_token(layer.config)
    y = layer(x)  # warm-up (work buffers) and the output to check
    row = {"T": T, "threads": threads, "flops": flops}
    n = calls_for(T, repeats)
    if module is None:
        t_m = [_timed(lambda: layer(x)) for _ in range(n)]
    else:
        import torch
        xt = torch.from_numpy(x)[None]                        # (1, T, H)
        with torch.inference_mode():
            y_hf = module(xt)[0].numpy()
            row["rel_err"] = rel_err(y, y_hf)
            t_m, t_h = time_paired(lambda _: layer(x), lambda _: module(xt), [x], n)
        row["torch"] = summarize(t_h)
        row["torch"]["gflops"] = flops / row["torch"]["median_s"] / 1e9
    row["moelab"] = summarize(t_m)
    row["moelab"]["gflops"] = flops / row["moelab"]["median_s"] / 1e9
    if peak:
        row["moelab"]["peak_fraction"] = flops / row["moelab"]["median_s"] / peak
        if "torch" in row:
            row["torch"]["peak_fraction"] = flops / row["torch"]["median_s"] / peak
    if "torch" in row:
        row["speedup"] = row["torch"]["median_s"] / row["moelab"]["median_s"]
    return row


def decode_cell(layer, layer16, module, hc, context: int, steps: int, threads: int,
                peak: Optional[float], bandwidth: Optional[float],
                rng: np.random.Generator) -> dict:
    """Decode steps after a prefill of ``context`` tokens: moelab (float32, and bfloat16 when
    given) with a DeltaNetState, transformers with a DynamicCache."""
    set_threads(threads)
    H = layer.config.hidden_size
    prompt = rng.standard_normal((context, H), dtype=np.float32)     # (context, H)
    tokens = rng.standard_normal((steps, 1, H), dtype=np.float32)    # steps x (1, H)
    state = layer.new_state()
    layer(prompt, state)
    flops = flops_per_token(layer.config)
    row = {"context": context, "steps": steps, "threads": threads, "flops": flops,
           "bytes": decode_bytes_per_token(layer, state.nbytes), "state_nbytes": state.nbytes}
    batches = list(tokens)
    if module is None:
        t_m = [_timed(lambda x=x: layer(x, state)) for x in batches]
    else:
        import torch
        from transformers.cache_utils import DynamicCache
        cache = DynamicCache(config=hc)
        with torch.inference_mode():
            module(torch.from_numpy(prompt)[None], cache_params=cache)
            y = layer(batches[0], state)
            y_hf = module(torch.from_numpy(batches[0])[None], cache_params=cache)[0].numpy()
            row["rel_err"] = rel_err(y, y_hf)
            t_m, t_h = time_paired(lambda x: layer(x, state),
                                   lambda x: module(torch.from_numpy(x)[None], cache_params=cache),
                                   batches, steps)
        row["torch"] = summarize(t_h)
    row["moelab"] = summarize(t_m)
    if layer16 is not None:
        state16 = layer16.new_state()
        layer16(prompt, state16)
        row["moelab_bf16"] = summarize([_timed(lambda x=x: layer16(x, state16)) for x in batches])
        row["bytes_bf16"] = decode_bytes_per_token(layer16, state16.nbytes)
    for key, nbytes in (("moelab", row["bytes"]), ("torch", row["bytes"]),
                        ("moelab_bf16", row.get("bytes_bf16"))):
        if key not in row:
            continue
        r = row[key]
        r["bytes_per_s"] = nbytes / r["median_s"]
        if bandwidth:
            r["bandwidth_fraction"] = r["bytes_per_s"] / bandwidth
        if peak:
            r["peak_fraction"] = flops / r["median_s"] / peak
    if "torch" in row:
        row["speedup"] = row["torch"]["median_s"] / row["moelab"]["median_s"]
    return row


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- the run --------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: T = 512, decode after 64 tokens, repeats 1")
    p.add_argument("--tokens", nargs="+", type=int, default=None)
    p.add_argument("--threads", nargs="+", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls at T <= 512 (fewer above, at least 1); default 5")
    p.add_argument("--decode-context", type=int, default=None,
                   help="tokens prefilled before the decode steps (default 512)")
    p.add_argument("--decode-steps", type=int, default=None, help="timed decode steps (default 32)")
    p.add_argument("--no-torch", action="store_true", help="moelab and the machine's peaks only")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder for {REPORT} and {RESULTS_JSON} (default benchmarks/; "
                        "--quick: a new temporary folder)")
    p.add_argument("--no-snapshot", action="store_true",
                   help="import moelab in place (default: from a private copy)")
    args = p.parse_args(argv)
    if args.quick:
        args.tokens = args.tokens or [512]
        args.repeats = args.repeats or 1
        args.decode_context = args.decode_context or 64
        args.decode_steps = args.decode_steps or 8
    args.tokens = sorted(set(args.tokens or DEFAULT_TOKENS))
    args.threads = args.threads or list(DEFAULT_THREADS)
    args.repeats = args.repeats or 5
    args.decode_context = args.decode_context or 512
    args.decode_steps = args.decode_steps or 32
    for name, vals in (("--tokens", args.tokens), ("--threads", args.threads),
                       ("--repeats", [args.repeats]), ("--decode-context", [args.decode_context]),
                       ("--decode-steps", [args.decode_steps])):
        if any(v < 1 for v in vals):
            p.error(f"{name} values must be >= 1")
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="moelab-bench-dn-")) if args.quick else HERE
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    snapshot = None if args.no_snapshot else snapshot_moelab()
    try:
        return run(args)
    finally:
        if snapshot is not None:
            shutil.rmtree(snapshot, ignore_errors=True)


def run(args, cfg=None, bandwidth_bytes: int = BANDWIDTH_BUFFER,
        probe_iters: int = 20_000_000) -> int:
    """Measure every cell and write the report into args.out. cfg: the ModelConfig (default the
    preset's); the smoke test passes a tiny one, a small bandwidth buffer and a short probe."""
    import moelab

    def log(msg: str) -> None:
        print(msg, flush=True)

    started = time.time()
    cfg = cfg if cfg is not None else moelab.preset(PRESET)
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "load_before": _machine.load_average(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    meta.update(_machine.machine_info())
    a = cfg.attention
    meta["layer"] = {"model": cfg.display_name, "layer_idx": LAYER, "H": cfg.hidden_size,
                     "n_k": a.linear_num_key_heads, "n_v": a.linear_num_value_heads,
                     "d_k": a.linear_key_head_dim, "d_v": a.linear_value_head_dim,
                     "K": a.linear_conv_kernel_dim, "flops_per_token": flops_per_token(cfg),
                     "chunk_size": moelab.deltanet.CHUNK_SIZE}
    log(f"FMA peak probe, threads {args.threads} ...")
    peaks = _fma_probe.fma_peak(args.threads, probe_iters)
    log("  " + ", ".join(f"{n} thread(s): " + (f"{p / 1e9:.1f} GFLOP/s" if p else "unavailable")
                         for n, p in peaks.items()))
    buf = np.ones(bandwidth_bytes // 4, dtype=np.float32)
    bandwidth = {n: rl.measure_read_bandwidth(buf, n) for n in args.threads}
    del buf
    gc.collect()
    log("  read bandwidth: " + ", ".join(f"{n}: {b / 1e9:.1f} GB/s" for n, b in bandwidth.items()))

    layer = moelab.GatedDeltaNet(cfg, LAYER, seed=0)
    layer16 = moelab.GatedDeltaNet(cfg, LAYER, seed=0, weight_dtype="bfloat16")
    layer16.load_weights(layer.weights)
    module = hc = None
    if not args.no_torch:
        try:
            module, hc = hf_module(cfg, layer)
        except ImportError as exc:
            log(f"transformers unavailable ({exc}): moelab only")
            meta["torch_error"] = str(exc)
    rng = np.random.default_rng(0)
    results = {"meta": meta, "peaks": peaks, "bandwidth": bandwidth, "prefill": [], "decode": []}
    for threads in args.threads:
        for T in args.tokens:
            row = prefill_cell(layer, module, T, threads, args.repeats, peaks[threads], rng)
            results["prefill"].append(row)
            log(_prefill_line(row))
        row = decode_cell(layer, layer16, module, hc, args.decode_context, args.decode_steps,
                          threads, peaks[threads], bandwidth[threads], rng)
        results["decode"].append(row)
        log(_decode_line(row))
    meta["wall_s"] = time.time() - started
    meta["load_after"] = _machine.load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULTS_JSON).write_text(json.dumps(results, indent=1, default=str))
    (args.out / REPORT).write_text(render_report(results))
    log(f"wrote {args.out / REPORT}")
    return 0


def _prefill_line(r: dict) -> str:
    s = f"prefill T={r['T']} threads={r['threads']}: moelab {r['moelab']['median_s'] * 1e3:.1f} ms"
    if "torch" in r:
        s += (f", transformers {r['torch']['median_s'] * 1e3:.1f} ms (x{r['speedup']:.2f}, "
              f"rel err {r['rel_err']:.1e})")
    return s


def _decode_line(r: dict) -> str:
    s = f"decode threads={r['threads']}: moelab {r['moelab']['median_s'] * 1e3:.2f} ms/token"
    if "moelab_bf16" in r:
        s += f" (bf16 {r['moelab_bf16']['median_s'] * 1e3:.2f})"
    if "torch" in r:
        s += f", transformers {r['torch']['median_s'] * 1e3:.2f} ms (x{r['speedup']:.2f})"
    return s


# -- the report -----------------------------------------------------------------------------------

def _pct(v: Optional[float]) -> str:
    return "—" if v is None else f"{100 * v:.0f} %"


def _or_dash(v: Optional[float], spec: str) -> str:
    """v formatted with the format spec, or a dash where there is no value."""
    return "—" if v is None else format(v, spec)


def _run(r: dict, key: str) -> dict:
    """The measurements of one contender in a result row ({} where it did not run)."""
    return r.get(key) or {}


def _gbps(run: dict) -> str:
    """A contender's bytes per second in GB/s, or a dash where it did not run."""
    return "—" if not run else f"{run['bytes_per_s'] / 1e9:.1f}"


def _section(title: str, intro: str, columns, entries) -> List[str]:
    """A report section: title, intro and a table of one row per entry, its columns given as
    (header, cell(entry)) pairs."""
    rows = [[cell(r) for _, cell in columns] for r in entries]
    return [title, "", intro, ""] + _table([h for h, _ in columns], rows) + [""]


#: the prefill table: (header, cell of a result row)
PREFILL_COLUMNS = (
    ("T", lambda r: r["T"]),
    ("threads", lambda r: r["threads"]),
    ("moelab ms", lambda r: _ms(r["moelab"]["median_s"])),
    ("transformers ms", lambda r: _ms(_run(r, "torch").get("median_s"))),
    ("speed-up", lambda r: _or_dash(r.get("speedup"), ".2f")),
    ("moelab GFLOP/s", lambda r: f"{r['moelab']['gflops']:.1f}"),
    ("moelab % of peak", lambda r: _pct(r["moelab"].get("peak_fraction"))),
    ("transformers GFLOP/s", lambda r: _or_dash(_run(r, "torch").get("gflops"), ".1f")),
    ("transformers % of peak", lambda r: _pct(_run(r, "torch").get("peak_fraction"))),
    ("rel err", lambda r: _or_dash(r.get("rel_err"), ".1e")),
)
#: the decode table: (header, cell of a result row)
DECODE_COLUMNS = (
    ("threads", lambda r: r["threads"]),
    ("context", lambda r: r["context"]),
    ("moelab ms", lambda r: _ms(r["moelab"]["median_s"])),
    ("moelab bf16 ms", lambda r: _ms(_run(r, "moelab_bf16").get("median_s"))),
    ("transformers ms", lambda r: _ms(_run(r, "torch").get("median_s"))),
    ("speed-up (f32)", lambda r: _or_dash(r.get("speedup"), ".2f")),
    ("moelab GB/s", lambda r: _gbps(r["moelab"])),
    ("% of bandwidth", lambda r: _pct(r["moelab"].get("bandwidth_fraction"))),
    ("bf16 GB/s", lambda r: _gbps(_run(r, "moelab_bf16"))),
    ("bf16 % of bandwidth", lambda r: _pct(_run(r, "moelab_bf16").get("bandwidth_fraction"))),
    ("rel err", lambda r: _or_dash(r.get("rel_err"), ".1e")),
)


def render_report(results: dict) -> str:
    meta, args = results["meta"], results["meta"]["args"]
    lay = meta["layer"]
    cpu = meta.get("lscpu", {})
    L = ["# moelab Gated DeltaNet benchmark", ""]
    if args.get("quick"):
        L += ["**A `--quick` run (one repeat, short decode context) on a shared machine: "
              "indicative only.**", ""]
    L += [f"Generated by `python benchmarks/bench_deltanet.py"
          + (" --quick" if args.get("quick") else "") + f"` on {meta['started']} in "
          f"{meta.get('wall_s', 0) / 60:.1f} min. Layer: {lay['model']} layer {lay['layer_idx']} "
          f"(H = {lay['H']}, n_k = {lay['n_k']}, n_v = {lay['n_v']}, d_k = {lay['d_k']}, "
          f"d_v = {lay['d_v']}, K = {lay['K']}), float32 weights, chunk size "
          f"{lay['chunk_size']}; {lay['flops_per_token'] / 1e6:.1f} MFLOP per token. Times are "
          f"medians; `{RESULTS_JSON}` has every figure. Nothing here is asserted by a test.", ""]
    L += ["## Machine", ""]
    git = meta.get("git", {})
    info = meta.get("moelab_build_info", {})
    L += [f"- CPU: {cpu.get('Model name', '?')}, {cpu.get('CPU(s)', '?')} CPUs "
          f"({cpu.get('Core(s) per socket', '?')} cores per socket, "
          f"{cpu.get('Thread(s) per core', '?')} thread(s) per core); L2 {cpu.get('L2 cache', '?')},"
          f" L3 {cpu.get('L3 cache', '?')}; SIMD: {cpu.get('SIMD flags', '?')}",
          f"- Memory: {(meta.get('mem_total_bytes') or 0) / 2**30:.0f} GiB; load average before "
          f"{meta.get('load_before')}, after {meta.get('load_after')}",
          f"- moelab {meta.get('moelab')} (commit {str(git.get('commit', '?'))[:10]}"
          f"{', modified' if git.get('dirty') else ''}), kernels: {info.get('simd', '?')}, "
          f"OpenMP {info.get('openmp', '?')}; torch {meta.get('torch', '—')}, transformers "
          f"{meta.get('transformers', '—')}; numpy {meta.get('numpy')}, Python {meta.get('python')}",
          "- float32 FMA peak (probe): " + ", ".join(
              f"{n} thread(s) {p / 1e9:.1f} GFLOP/s" if p else f"{n} thread(s) unavailable"
              for n, p in results["peaks"].items()),
          "- read bandwidth: " + ", ".join(f"{n} thread(s) {b / 1e9:.1f} GB/s"
                                           for n, b in results["bandwidth"].items()), ""]

    L += _section("## Prefill (a fresh sequence of T tokens)",
                  "moelab runs the chunked delta rule; transformers its torch chunked fallback. "
                  "Speed-up = transformers time / moelab time; % of peak = achieved FLOP/s / the "
                  "FMA probe's peak for the same thread count.",
                  PREFILL_COLUMNS, results["prefill"])
    L += _section("## Decode (one token after a prefill of the context)",
                  "Per token: moelab with a `DeltaNetState` (the recurrent step), transformers "
                  "with a `DynamicCache`. Bytes = every weight once at its storage size + the "
                  "state read and written; % of bandwidth = bytes per second / the measured read "
                  "bandwidth.", DECODE_COLUMNS, results["decode"])
    if results["decode"]:
        d = results["decode"][0]
        L += [f"State per sequence: {d['state_nbytes']:,} bytes (constant in the context); "
              f"bytes per decode step: {d['bytes'] / 1e6:.1f} MB (float32), "
              f"{d.get('bytes_bf16', 0) / 1e6:.1f} MB (bfloat16).", ""]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
