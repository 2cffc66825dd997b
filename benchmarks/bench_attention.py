#!/usr/bin/env python
"""moelab attention benchmark: moelab.Attention and moelab.MultiHeadLatentAttention vs
transformers' sdpa and eager paths, and against the machine's roofs.

    python benchmarks/bench_attention.py           # full run -> benchmarks/RESULTS_ATTENTION.md
    python benchmarks/bench_attention.py --quick   # smoke run (seconds), to a temporary folder

Two layers, float32 weights, each with transformers' module holding the *same* weights, run with
its ``sdpa`` and ``eager`` attention (PyTorch CPU):

* ``qwen3``: an attention layer with the dims of Qwen3-30B-A3B (H = 2048, 32 query heads, 4
  key/value heads, d = 128, per-head q/k RMSNorm, RoPE theta 1e6) vs ``Qwen3MoeAttention``;
* ``mla``: a multi-head latent attention layer with the dims of DeepSeek-V3 (H = 7168, 128
  heads, q_lora_rank 1536, kv_lora_rank 512, d_nope 128, d_rope 64, d_v 128, YaRN factor 40)
  vs ``DeepseekV3Attention`` (moelab prefills in its expanded form, decodes in its absorbed
  form over the latent cache; transformers caches per-head K and V).

For each thread count it measures, in one run:

* prefill of T tokens (default 512, 2048, 8192) from a fresh sequence (sdpa causal without a
  mask; eager with its additive causal mask, skipped where its T x T scores of all heads would
  exceed ``EAGER_SCORES_LIMIT`` bytes), with each path's fraction of the float32 FMA peak: the
  layer's FLOPs (projections + causal QK^T and PV, 2 per multiply-add; ``prefill_flops``) over
  the time, over the peak that ``_fma_probe`` measures for that thread count;
* decode: one token at a time after a prefill of C tokens (default 1024, 8192), moelab with its
  cache (float32 and bfloat16 projections), transformers with its ``DynamicCache``, with each
  moelab path's fraction of the bandwidth roof: (cache bytes read + weight bytes) over the read
  bandwidth ``_roofline.measure_read_bandwidth`` measures for that thread count, over the time.

Every cell first checks that moelab and both torch paths give the same output; calls alternate
moelab / sdpa / eager so that a disturbance of the machine hits all alike. Times are medians.
Nothing here asserts a time. Decode at 32k: pass ``--contexts 32768`` (transformers' MLA cache
then holds ~5 GiB per path).
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

import _fma_probe  # noqa: E402
import _machine  # noqa: E402
import _roofline  # noqa: E402

#: Qwen3-30B-A3B's attention (its config.json on the Hub).
QWEN3_30B_A3B = dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=4,
                     head_dim=128, max_position_embeddings=40960, rms_norm_eps=1e-6)
ROPE = dict(rope_type="default", rope_theta=1_000_000.0)
#: DeepSeek-V3's attention (its config.json on the Hub).
DEEPSEEK_V3 = dict(hidden_size=7168, num_attention_heads=128, q_lora_rank=1536, kv_lora_rank=512,
                   qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                   max_position_embeddings=163840, rms_norm_eps=1e-6)
MLA_ROPE = dict(rope_type="yarn", rope_theta=10000.0, factor=40.0, mscale=1.0, mscale_all_dim=1.0,
                beta_fast=32.0, beta_slow=1.0, original_max_position_embeddings=4096)
LAYERS = ("qwen3", "mla")
EAGER_SCORES_LIMIT = 8 << 30  # bytes of eager's float32 (heads, T, T) scores; above: skipped
BANDWIDTH_BUFFER = 1 << 30    # 1 GiB read buffer (>= 30x the last-level cache here)
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


def _hf_modules(config, attention_class, weights) -> Dict:
    """{path: transformers' attention module of layer 0 in float32} holding ``weights``."""
    import torch
    modules = {}
    for path in PATHS:
        hc_path = type(config)(**config.to_dict())
        hc_path._attn_implementation = path
        m = attention_class(hc_path, 0).float().eval()
        m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        modules[path] = m
    return modules


def make_layers(dims: Dict, seed: int = 0) -> Dict:
    """The Qwen3 layer: {"layer": moelab float32, "layer16": its bfloat16 twin, "rotary": HF
    rotary embedding, "modules": {path: HF module}, "flops": prefill_flops} on one weight set."""
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
    return {"layer": layer, "layer16": layer16, "rotary": Qwen3MoeRotaryEmbedding(hc),
            "modules": _hf_modules(hc, Qwen3MoeAttention, layer.weights),
            "flops": lambda T: attention_flops(spec, T)}


def make_mla_layers(dims: Dict, seed: int = 0) -> Dict:
    """The DeepSeek-V3 MLA layer, as ``make_layers`` (HF ``DeepseekV3Attention``)."""
    import transformers
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import (DeepseekV3Attention,
                                                                      DeepseekV3RotaryEmbedding)

    import moelab
    hc = transformers.DeepseekV3Config(
        **dims, num_hidden_layers=1, vocab_size=64, n_routed_experts=4, num_experts_per_tok=2,
        moe_intermediate_size=16, n_group=1, topk_group=1, first_k_dense_replace=1,
        num_key_value_heads=dims["num_attention_heads"], head_dim=dims["qk_rope_head_dim"],
        rope_parameters=dict(MLA_ROPE))  # HF rotates head_dim = qk_rope_head_dim channels
    spec = moelab.MLASpec.from_hf(hc)
    layer = moelab.MultiHeadLatentAttention(spec, seed=seed)
    layer16 = moelab.MultiHeadLatentAttention(spec, weights=layer.weights,
                                              weight_dtype="bfloat16")
    return {"layer": layer, "layer16": layer16, "rotary": DeepseekV3RotaryEmbedding(hc),
            "modules": _hf_modules(hc, DeepseekV3Attention, layer.weights),
            "flops": lambda T: mla_flops(spec, T)}


def _causal_pairs(T: int) -> int:
    return T * (T + 1) // 2


def attention_flops(spec, T: int) -> int:
    """FLOPs of a softmax-attention prefill of T tokens (2 per multiply-add): the q/k/v/o
    projections and the causal QK^T and PV products (norms, RoPE and softmax left out)."""
    H, d = spec.hidden_size, spec.head_dim
    n_q, n_kv = spec.num_attention_heads, spec.num_key_value_heads
    per_token = 2 * H * (n_q + 2 * n_kv) * d + 2 * n_q * d * H
    return T * per_token + 2 * 2 * n_q * d * _causal_pairs(T)


def mla_flops(spec, T: int) -> int:
    """FLOPs of an MLA prefill of T tokens in its expanded form, counted once per token: the
    q (or q_a/q_b), kv_a, kv_b and o projections and the causal QK^T (d_nope + d_rope wide) and
    PV (d_v) products. moelab rebuilds k_nope and v per query tile, which it does not count."""
    H, n_h, r = spec.hidden_size, spec.num_attention_heads, spec.kv_lora_rank
    d_n, d_r, d_v = spec.qk_nope_head_dim, spec.qk_rope_head_dim, spec.v_head_dim
    q = (2 * H * n_h * (d_n + d_r) if spec.q_lora_rank is None
         else 2 * H * spec.q_lora_rank + 2 * spec.q_lora_rank * n_h * (d_n + d_r))
    per_token = q + 2 * H * (r + d_r) + 2 * r * n_h * (d_n + d_v) + 2 * n_h * d_v * H
    return T * per_token + 2 * n_h * (d_n + d_r + d_v) * _causal_pairs(T)


def weight_bytes(layer) -> int:
    """Bytes of the layer's weights as stored (bfloat16 projections count 2 bytes a value)."""
    owned = layer.owned_weight_bytes
    return owned if owned > 0 else 4 * layer.num_params


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


def eager_fits(layers: Dict, T: int) -> bool:
    """Whether eager's float32 (heads, T, T) scores stay within EAGER_SCORES_LIMIT."""
    return 4 * layers["layer"].spec.num_attention_heads * T * T <= EAGER_SCORES_LIMIT


def prefill_cell(layers: Dict, T: int, repeats: int, rng, peak=None) -> Dict:
    """Prefill of T tokens: medians in ms, each path's rel. error against moelab, the FLOPs and
    (with a peak in FLOP/s) each path's fraction of it."""
    layer, rotary = layers["layer"], layers["rotary"]
    modules = {p: m for p, m in layers["modules"].items() if p != "eager" or eager_fits(layers, T)}
    x = rng.standard_normal((T, layer.spec.hidden_size)).astype(np.float32)  # (T, H)
    y = layer(x)                                                             # (T, H)
    errs = {p: rel_err(hf_call(m, rotary, x), y) for p, m in modules.items()}
    fns: Dict[str, Callable[[], object]] = {"moelab": lambda: layer(x)}
    fns.update({p: (lambda m=m: hf_call(m, rotary, x)) for p, m in modules.items()})
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ms = {k: _median_ms(v) for k, v in times.items()}
    flops = int(layers["flops"](T))
    cell = {"T": T, "ms": ms, "rel_err": errs, "flops": flops, "peak": peak}
    if peak:
        cell["peak_fraction"] = {k: flops / (1e-3 * v) / peak for k, v in ms.items()}
    return cell


def decode_cell(layers: Dict, context: int, steps: int, rng, bandwidth=None) -> Dict:
    """Decode steps after a prefill of ``context`` tokens: medians in ms, rel. errors, and each
    moelab path's bytes read per step (its cache at the step's context + its weights) with
    (given the read bandwidth in bytes/s) its roof in ms and its fraction of it."""
    import transformers
    layer, layer16, rotary, modules = (layers["layer"], layers["layer16"], layers["rotary"],
                                       layers["modules"])
    H = layer.spec.hidden_size
    x = rng.standard_normal((context + steps, H)).astype(np.float32)  # (C + steps, H)
    caches = {"moelab": layer.new_cache(), "moelab-bf16": layer16.new_cache()}
    layer(x[:context], caches["moelab"])
    layer16(x[:context], caches["moelab-bf16"])
    hf_caches = {p: transformers.DynamicCache() for p in modules}
    for p, m in modules.items():
        hf_call(m, rotary, x[:context], 0, hf_caches[p])
    times = {name: [] for name in ("moelab", "moelab-bf16", *modules)}
    ys = {name: [] for name in times}
    cache_read = []  # bytes of the moelab cache each timed step reads (its own row included)
    for t in range(context, context + steps):
        step = x[t:t + 1]
        cache_read.append(caches["moelab"].nbytes * (t + 1) // t)
        for name, fn in (("moelab", lambda: layer(step, caches["moelab"])),
                         ("moelab-bf16", lambda: layer16(step, caches["moelab-bf16"])),
                         *((p, (lambda m=m, p=p: hf_call(m, rotary, step, t, hf_caches[p])))
                           for p, m in modules.items())):
            t0 = time.perf_counter()
            ys[name].append(fn())
            times[name].append(time.perf_counter() - t0)
    y = np.concatenate(ys["moelab"])
    errs = {p: rel_err(np.concatenate(ys[p]), y) for p in (*modules, "moelab-bf16")}
    ms = {k: _median_ms(v) for k, v in times.items()}
    cache_bytes = int(statistics.median(cache_read))
    read = {"moelab": cache_bytes + weight_bytes(layer),
            "moelab-bf16": cache_bytes + weight_bytes(layer16)}
    cell = {"context": context, "ms": ms, "rel_err": errs, "cache_bytes": caches["moelab"].nbytes,
            "bytes_read": read, "bandwidth": bandwidth}
    if bandwidth:
        cell["roof_ms"] = {k: 1e3 * v / bandwidth for k, v in read.items()}
        cell["roof_fraction"] = {k: cell["roof_ms"][k] / ms[k] for k in read}
    return cell


def check_agreement(cell: Dict) -> None:
    """Raise if a float32 torch path disagrees with moelab beyond VERIFY_RTOL (a timing of a
    wrong result would be worthless)."""
    bad = {k: v for k, v in cell["rel_err"].items() if k in PATHS and not v <= VERIFY_RTOL}
    if bad:
        raise RuntimeError(f"moelab and transformers disagree: {bad} (cell {cell})")


def _ratio(ms: Dict) -> float:
    """The report's ratio: the best torch time (sdpa, or eager where it ran) over moelab's."""
    return min(ms[p] for p in PATHS if p in ms) / ms["moelab"]


def _ms(ms: Dict, key: str, fmt: str) -> str:
    return format(ms[key], fmt) if key in ms else "skipped"


def _pct(fractions, key: str) -> str:
    return f"{100 * fractions[key]:.0f} %" if fractions and key in fractions else "-"


def _best_torch(ms: Dict) -> str:
    return min((p for p in PATHS if p in ms), key=lambda p: ms[p])


def _rate(value, unit: str, scale: float) -> str:
    return f"{value / scale:.1f} {unit}" if value else "unavailable"


def render(results: Dict) -> str:
    lines = ["# Attention: moelab vs transformers (sdpa, eager) and the machine's roofs", "",
             "Layers (float32; moelab also bf16 projections in decode):", ""]
    lines += [f"- {name}: {dims}" for name, dims in results["dims"].items()]
    lines += ["", "Times: medians in ms; ratio = best torch / moelab. Prefill % of peak: the "
              "layer's FLOPs (projections + causal QK^T and PV) per second over the float32 FMA "
              "peak the probe measured for that thread count. Decode % of roof: (moelab's cache "
              "bytes at that context + its weight bytes) over the measured read bandwidth, over "
              "the step's time. Eager is skipped where its scores of all heads would pass "
              f"{EAGER_SCORES_LIMIT / 2**30:.0f} GiB.", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in results["machine"].items()]
    lines.append("- float32 FMA peak (probe, vector FMAs in registers): " + ", ".join(
        f"{n} thread(s) {_rate(p, 'GFLOP/s', 1e9)}" for n, p in results["peaks"].items()))
    lines.append("- read bandwidth (NumPy reduction of a "
                 f"{results['bandwidth_buffer'] / 2**20:.0f} MiB buffer): " + ", ".join(
                     f"{n} thread(s) {_rate(b, 'GB/s', 1e9)}"
                     for n, b in results["bandwidth"].items()))
    lines += ["", "## Prefill", "",
              "| layer | threads | T | moelab | sdpa | eager | ratio | GFLOP | moelab % of peak "
              "| best torch % of peak | max rel err |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["prefill"]:
        ms, frac = r["ms"], r.get("peak_fraction")
        lines.append(f"| {r['layer']} | {r['threads']} | {r['T']} | {ms['moelab']:.1f} | "
                     f"{_ms(ms, 'sdpa', '.1f')} | {_ms(ms, 'eager', '.1f')} | "
                     f"{_ratio(ms):.2f} | {r['flops'] / 1e9:.1f} | {_pct(frac, 'moelab')} | "
                     f"{_pct(frac, _best_torch(ms))} | {max(r['rel_err'].values()):.1e} |")
    lines += ["", "## Decode (one token after a prefill of C)", "",
              "| layer | threads | C | cache MiB | MiB read (f32 / bf16) | roof ms (f32 / bf16) "
              "| moelab | moelab bf16 | sdpa | eager | ratio | moelab % of roof "
              "| bf16 % of roof | max rel err |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["decode"]:
        ms, read, roof = r["ms"], r["bytes_read"], r.get("roof_ms")
        roof_s = f"{roof['moelab']:.2f} / {roof['moelab-bf16']:.2f}" if roof else "-"
        lines.append(f"| {r['layer']} | {r['threads']} | {r['context']} | "
                     f"{r['cache_bytes'] / 2**20:.1f} | {read['moelab'] / 2**20:.1f} / "
                     f"{read['moelab-bf16'] / 2**20:.1f} | {roof_s} | "
                     f"{ms['moelab']:.2f} | {ms['moelab-bf16']:.2f} | {ms['sdpa']:.2f} | "
                     f"{ms['eager']:.2f} | {_ratio(ms):.2f} | "
                     f"{_pct(r.get('roof_fraction'), 'moelab')} | "
                     f"{_pct(r.get('roof_fraction'), 'moelab-bf16')} | "
                     f"{max(v for k, v in r['rel_err'].items() if k != 'moelab-bf16'):.1e} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run to a temporary folder")
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=None,
                   help="which layers (default: both)")
    p.add_argument("--tokens", nargs="+", type=int, default=None)
    p.add_argument("--contexts", nargs="+", type=int, default=None)
    p.add_argument("--threads", nargs="+", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--decode-steps", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="report folder")
    return p.parse_args(argv)


def machine_roofs(threads, quick: bool, probe_iters: int = None, bandwidth_bytes: int = None):
    """({n: FMA peak FLOP/s or None}, {n: read bandwidth bytes/s}, buffer bytes) per thread count.
    quick: a short probe and a 64 MiB buffer (may sit partly in cache: a smoke figure only)."""
    iters = probe_iters or (1_000_000 if quick else 20_000_000)
    nbytes = bandwidth_bytes or ((64 << 20) if quick else BANDWIDTH_BUFFER)
    peaks = _fma_probe.fma_peak(threads, iters)
    buf = np.ones(nbytes // 4, dtype=np.float32)
    bandwidth = {n: _roofline.measure_read_bandwidth(buf, n) for n in threads}
    return peaks, bandwidth, nbytes


def run(args, dims: Dict = QWEN3_30B_A3B, mla_dims: Dict = DEEPSEEK_V3) -> Dict:
    quick = args.quick
    tokens = args.tokens or ((32,) if quick else DEFAULT_TOKENS)
    contexts = args.contexts or ((48,) if quick else DEFAULT_CONTEXTS)
    threads = args.threads or ((1,) if quick else DEFAULT_THREADS)
    repeats = args.repeats or (1 if quick else 3)
    steps = args.decode_steps or (2 if quick else 16)
    names = args.layers or LAYERS
    rng = np.random.default_rng(0)
    peaks, bandwidth, buffer_bytes = machine_roofs(threads, quick)
    print("FMA peak: " + ", ".join(f"{n}: {_rate(p, 'GFLOP/s', 1e9)}" for n, p in peaks.items())
          + "; read bandwidth: " + ", ".join(f"{n}: {_rate(b, 'GB/s', 1e9)}"
                                             for n, b in bandwidth.items()), flush=True)
    results = {"dims": {}, "machine": _machine.machine_info(), "peaks": peaks,
               "bandwidth": bandwidth, "bandwidth_buffer": buffer_bytes, "prefill": [],
               "decode": []}
    for name in names:
        layers = make_layers(dims) if name == "qwen3" else make_mla_layers(mla_dims)
        results["dims"][name] = dims if name == "qwen3" else {**mla_dims, "rope": MLA_ROPE}
        for n in threads:
            set_threads(n)
            for T in tokens:
                cell = prefill_cell(layers, T, repeats, rng, peaks[n])
                check_agreement(cell)
                results["prefill"].append({"layer": name, "threads": n, **cell})
                print(f"{name} prefill threads={n} T={T}: {cell['ms']}", flush=True)
            for C in contexts:
                cell = decode_cell(layers, C, steps, rng, bandwidth[n])
                check_agreement(cell)
                results["decode"].append({"layer": name, "threads": n, **cell})
                print(f"{name} decode threads={n} C={C}: {cell['ms']}", flush=True)
        del layers
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
