#!/usr/bin/env python
"""moelab softmax-attention benchmark: moelab.Attention vs transformers' sdpa and eager paths.

    python benchmarks/bench_attention.py           # full run -> benchmarks/RESULTS_ATTENTION.md
    python benchmarks/bench_attention.py --quick   # smoke run (seconds), to a temporary folder

One attention layer with the dims of Qwen3-30B-A3B (H = 2048, 32 query heads, 4 key/value
heads, d = 128, per-head q/k RMSNorm, RoPE theta 1e6), float32 weights, and transformers'
``Qwen3MoeAttention`` holding the *same* weights, run with its ``sdpa`` and ``eager`` attention
(PyTorch CPU). For each thread count it measures, in one run:

* prefill of T tokens (default 512, 2048, 8192) from a fresh sequence (sdpa causal without a
  mask; eager with its additive causal mask);
* decode: one token at a time after a prefill of C tokens (default 1024, 8192), moelab with its
  ``KVCache`` (float32 and bfloat16 projections), transformers with its ``DynamicCache``.

Every cell first checks that moelab and both torch paths give the same output; calls alternate
moelab / sdpa / eager so that a disturbance of the machine hits all alike. Times are medians.
Nothing here asserts a time. Not measured yet: the FMA and bandwidth roofs of issue 13, the
DeepSeek-V3 MLA layer (no MLA in moelab yet), decode at 32k (pass ``--contexts 32768``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _machine  # noqa: E402

#: Qwen3-30B-A3B's attention (its config.json on the Hub).
QWEN3_30B_A3B = dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=4,
                     head_dim=128, max_position_embeddings=40960, rms_norm_eps=1e-6)
ROPE = dict(rope_type="default", rope_theta=1_000_000.0)
DEFAULT_TOKENS = (512, 2048, 8192)
DEFAULT_CONTEXTS = (1024, 8192)
DEFAULT_THREADS = (1, 2)
VERIFY_RTOL = 1e-4        # ||y_torch - y_moelab|| / ||y_moelab|| expected below this
REPORT = "RESULTS_ATTENTION.md"
PATHS = ("sdpa", "eager")


def rel_err(y, ref) -> float:
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(y - ref) / den) if den > 0 else float(np.linalg.norm(y))


def make_layers(dims: Dict, seed: int = 0):
    """(moelab float32 layer, its bfloat16 twin, HF config, {path: HF module}) on one weight set."""
    import torch
    import transformers
    from transformers.models.qwen3_moe.modeling_qwen3_moe import (Qwen3MoeAttention,
                                                                  Qwen3MoeRotaryEmbedding)

    import moelab
    spec = moelab.AttentionSpec(**dims, qk_norm="head", rope=ROPE)
    layer = moelab.Attention(spec, seed=seed)
    layer16 = moelab.Attention(spec, weights=layer.weights, weight_dtype="bfloat16")
    hc = transformers.Qwen3MoeConfig(**dims, num_hidden_layers=1, vocab_size=64,
                                     num_experts=4, num_experts_per_tok=2,
                                     moe_intermediate_size=16, rope_parameters=dict(ROPE))
    modules = {}
    for path in PATHS:
        hc_path = transformers.Qwen3MoeConfig(**hc.to_dict())
        hc_path._attn_implementation = path
        m = Qwen3MoeAttention(hc_path, 0).float().eval()
        m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.weights.items()})
        modules[path] = m
    rotary = Qwen3MoeRotaryEmbedding(hc)
    return layer, layer16, rotary, modules


def hf_call(module, rotary, x: np.ndarray, pos0: int = 0, cache=None) -> np.ndarray:
    """transformers' output (T, H) for x (T, H) at positions pos0 .. (cache: a DynamicCache)."""
    import torch
    T = x.shape[0]
    hidden = torch.from_numpy(x)[None]
    emb = rotary(hidden, torch.arange(pos0, pos0 + T)[None])
    mask = None
    if module.config._attn_implementation == "eager" and T > 1:
        full = torch.full((T, pos0 + T), torch.finfo(torch.float32).min)
        mask = torch.triu(full, diagonal=pos0 + 1)[None, None]
    with torch.no_grad():
        return module(hidden, emb, mask, past_key_values=cache)[0][0].numpy()


def set_threads(n: int) -> None:
    import torch

    import moelab
    moelab.set_num_threads(n)
    torch.set_num_threads(n)


def _median_ms(times: List[float]) -> float:
    return 1e3 * statistics.median(times)


def prefill_cell(layers, T: int, repeats: int, rng) -> Dict:
    layer, _, rotary, modules = layers
    x = rng.standard_normal((T, layer.spec.hidden_size)).astype(np.float32)
    y = layer(x)
    errs = {p: rel_err(hf_call(m, rotary, x), y) for p, m in modules.items()}
    fns: Dict[str, Callable[[], object]] = {"moelab": lambda: layer(x)}
    fns.update({p: (lambda m=m: hf_call(m, rotary, x)) for p, m in modules.items()})
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {"T": T, "ms": {k: _median_ms(v) for k, v in times.items()}, "rel_err": errs}


def decode_cell(layers, context: int, steps: int, rng) -> Dict:
    import transformers
    layer, layer16, rotary, modules = layers
    H = layer.spec.hidden_size
    x = rng.standard_normal((context + steps, H)).astype(np.float32)
    caches = {"moelab": layer.new_cache(), "moelab-bf16": layer16.new_cache()}
    layer(x[:context], caches["moelab"])
    layer16(x[:context], caches["moelab-bf16"])
    hf_caches = {p: transformers.DynamicCache() for p in modules}
    for p, m in modules.items():
        hf_call(m, rotary, x[:context], 0, hf_caches[p])
    times = {name: [] for name in ("moelab", "moelab-bf16", *modules)}
    ys = {name: [] for name in times}
    for t in range(context, context + steps):
        step = x[t:t + 1]
        for name, fn in (("moelab", lambda: layer(step, caches["moelab"])),
                         ("moelab-bf16", lambda: layer16(step, caches["moelab-bf16"])),
                         *((p, (lambda m=m, p=p: hf_call(m, rotary, step, t, hf_caches[p])))
                           for p, m in modules.items())):
            t0 = time.perf_counter()
            ys[name].append(fn())
            times[name].append(time.perf_counter() - t0)
    y = np.concatenate(ys["moelab"])
    errs = {p: rel_err(np.concatenate(ys[p]), y) for p in (*modules, "moelab-bf16")}
    return {"context": context, "ms": {k: _median_ms(v) for k, v in times.items()},
            "rel_err": errs, "cache_bytes": caches["moelab"].nbytes}


def check_agreement(cell: Dict) -> None:
    """Raise if a float32 torch path disagrees with moelab beyond VERIFY_RTOL (a timing of a
    wrong result would be worthless)."""
    bad = {k: v for k, v in cell["rel_err"].items() if k in PATHS and not v <= VERIFY_RTOL}
    if bad:
        raise RuntimeError(f"moelab and transformers disagree: {bad} (cell {cell})")


def _ratio(ms: Dict) -> float:
    """The report's ratio: the best torch time (sdpa or eager) over moelab's."""
    return min(ms["sdpa"], ms["eager"]) / ms["moelab"]


def render(results: Dict) -> str:
    lines = ["# Softmax attention: moelab vs transformers (sdpa, eager)", "",
             f"Layer: Qwen3-30B-A3B attention {results['dims']}, float32 (moelab also bf16 "
             "projections in decode). Times: medians in ms; ratio = best torch / moelab.", "",
             "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in results["machine"].items()]
    lines += ["", "## Prefill", "", "| threads | T | moelab | sdpa | eager | ratio | max rel err |",
              "|---|---|---|---|---|---|---|"]
    for r in results["prefill"]:
        ms = r["ms"]
        lines.append(f"| {r['threads']} | {r['T']} | {ms['moelab']:.1f} | {ms['sdpa']:.1f} | "
                     f"{ms['eager']:.1f} | {_ratio(ms):.2f} | "
                     f"{max(r['rel_err'].values()):.1e} |")
    lines += ["", "## Decode (one token after a prefill of C)", "",
              "| threads | C | cache MiB | moelab | moelab bf16 | sdpa | eager | ratio | max rel err |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results["decode"]:
        ms = r["ms"]
        lines.append(f"| {r['threads']} | {r['context']} | {r['cache_bytes'] / 2**20:.1f} | "
                     f"{ms['moelab']:.2f} | {ms['moelab-bf16']:.2f} | {ms['sdpa']:.2f} | "
                     f"{ms['eager']:.2f} | {_ratio(ms):.2f} | "
                     f"{max(v for k, v in r['rel_err'].items() if k != 'moelab-bf16'):.1e} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run to a temporary folder")
    p.add_argument("--tokens", nargs="+", type=int, default=None)
    p.add_argument("--contexts", nargs="+", type=int, default=None)
    p.add_argument("--threads", nargs="+", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--decode-steps", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="report folder")
    return p.parse_args(argv)


def run(args, dims: Dict = QWEN3_30B_A3B) -> Dict:
    quick = args.quick
    tokens = args.tokens or ((32,) if quick else DEFAULT_TOKENS)
    contexts = args.contexts or ((48,) if quick else DEFAULT_CONTEXTS)
    threads = args.threads or ((1,) if quick else DEFAULT_THREADS)
    repeats = args.repeats or (1 if quick else 3)
    steps = args.decode_steps or (2 if quick else 16)
    rng = np.random.default_rng(0)
    layers = make_layers(dims)
    results = {"dims": dims, "machine": _machine.machine_info(), "prefill": [], "decode": []}
    for n in threads:
        set_threads(n)
        for T in tokens:
            cell = prefill_cell(layers, T, repeats, rng)
            check_agreement(cell)
            results["prefill"].append({"threads": n, **cell})
            print(f"prefill threads={n} T={T}: {cell['ms']}", flush=True)
        for C in contexts:
            cell = decode_cell(layers, C, steps, rng)
            check_agreement(cell)
            results["decode"].append({"threads": n, **cell})
            print(f"decode threads={n} C={C}: {cell['ms']}", flush=True)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    results = run(args)
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-attention-")) if args.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(render(results), encoding="utf-8")
    print(f"report: {out / REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
