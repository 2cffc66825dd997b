"""Whole-model CPU speed: moelab against transformers and llama.cpp on the same random weights.

    python benchmarks/bench_model.py --quick                      # tiny checkpoints (the smoke test)
    python benchmarks/bench_model.py --work DIR --convert-script \\
        .../llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py   # the full run

Checkpoints (``make_model_checkpoint``): transformers' random init, saved with ``save_pretrained``
in bfloat16. ``qwen3``: Qwen3-30B-A3B's widths (H=2048, 128 experts of I=768, top-8) with
``--layers`` layers (default 16: about 20 GiB of bf16, comfortably inside 24 GiB); ``gpt-oss``:
gpt-oss-20b's widths (H=2880, 32 experts of I=2880, top-4, sinks, sliding layers of 128) with
default 12 layers (about 21 GiB). Random routers route almost uniformly: a decode step touches
k distinct experts per layer as a trained model does, but a prefill spreads its tokens evenly over
all experts (a trained model's skew makes a few experts' GEMMs larger); the figures are of the
engines, not of a trained model's routing.

GGUF: the checkpoint is converted by llama.cpp's own ``convert_hf_to_gguf.py`` from the folder
``--convert-script`` names (the one in the llama-cpp-python sdist, never a copy here), at BF16,
F32 and Q8_0; Q4_0 is quantized from the BF16 file with ``llama_cpp.llama_model_quantize``. A
random checkpoint has no tokenizer: a tiny byte-level BPE is saved beside it and the converter's
pre-tokenizer check is told its name (``qwen2`` / ``gpt-4o``); token ids are fed directly, so the
vocabulary never matters.

Engines (each measurement in its own subprocess, so peak RSS is its own): ``moelab-bf16``,
``moelab-f32`` (``moelab.hf.load_model``), ``hf-bf16``, ``hf-f32`` (transformers on torch CPU,
``sdpa`` attention, experts implementation ``--hf-experts``), ``llama-BF16``, ``llama-F32``,
``llama-Q8_0``, ``llama-Q4_0`` (``llama_cpp.Llama``, n_threads, logits_all off). An engine whose
package does not import is reported absent. Rounds interleave the engines (round r runs every
engine once before round r+1) so that machine noise falls on all; medians and min-max spread.

Metrics per engine and thread count: prefill tokens/s at 128 and 512 prompt tokens, decode
tokens/s over 128 greedy tokens after a 512-token prompt, time to first token (the 512-token
prompt's prefill and the first argmax), peak RSS (VmHWM), and the fraction of the decode
bandwidth roof: bytes of the weights one decode token touches (everything but the embedding
table, experts scaled by k/E) over the read bandwidth measured here. moelab's decode step is
profiled by phase (attention, router, experts, norms, LM head, Python overhead) from
``RoutingStats.phase_seconds`` and timers around DecoderModel's loop.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _machine import machine_info, vm_status  # noqa: E402

__all__ = ["MODELS", "QUICK_MODELS", "ENGINES", "make_model_checkpoint", "touched_bytes",
           "measure_engine", "main"]

GIB = 1 << 30
#: Qwen3-30B-A3B's widths (its config.json on the Hub).
QWEN3 = dict(model_type="qwen3_moe", hidden_size=2048, intermediate_size=6144,
             moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8,
             num_attention_heads=32, num_key_value_heads=4, head_dim=128, vocab_size=151936,
             max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0,
             norm_topk_prob=True, tie_word_embeddings=False, decoder_sparse_step=1,
             mlp_only_layers=[])
#: gpt-oss-20b's widths (its config.json on the Hub); rope scaling left at transformers' default.
GPT_OSS = dict(model_type="gpt_oss", hidden_size=2880, intermediate_size=2880,
               num_local_experts=32, num_experts_per_tok=4, num_attention_heads=64,
               num_key_value_heads=8, head_dim=64, vocab_size=201088, sliding_window=128,
               max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False)
MODELS = {"qwen3": (QWEN3, 16), "gpt-oss": (GPT_OSS, 12)}
QUICK_MODELS = {
    "qwen3": (dict(QWEN3, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                   num_experts=8, num_experts_per_tok=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, vocab_size=512), 2),
    "gpt-oss": (dict(GPT_OSS, hidden_size=64, intermediate_size=32, num_local_experts=8,
                     num_experts_per_tok=2, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=16, vocab_size=512, sliding_window=8), 2),
}
#: the name the converter's pre-tokenizer check is given for each family
TOKENIZER_PRE = {"qwen3_moe": "qwen2", "gpt_oss": "gpt-4o"}
ENGINES = ("moelab-bf16", "moelab-f32", "hf-bf16", "hf-f32",
           "llama-BF16", "llama-F32", "llama-Q8_0", "llama-Q4_0")
GGUF_TYPES = ("BF16", "F32", "Q8_0", "Q4_0")


# ---------------------------------------------------------------------------------------------
# checkpoints and GGUF files
# ---------------------------------------------------------------------------------------------
def make_model_checkpoint(out_dir, config: Dict[str, object], layers: int, seed: int = 0) -> Path:
    """A bfloat16 checkpoint of ``config`` with ``layers`` layers (transformers' random init of
    ``seed``, ``save_pretrained``) and a tiny byte-level BPE tokenizer.json; returns the folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    kw = {k: v for k, v in config.items() if k != "model_type"}
    cfg = AutoConfig.for_model(config["model_type"], num_hidden_layers=layers, **kw)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # no float32 copy of 20 GiB
    try:
        model = AutoModelForCausalLM.from_config(cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(out, max_shard_size="4GB")
    _save_tokenizer(out)
    return out


def _save_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer=trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<eos>"}))


def _convert_child(script: str, pre: str, argv: List[str]) -> None:
    """In this (child) process: run llama.cpp's converter with its pre-tokenizer check answered."""
    sys.path.insert(0, str(Path(script).parent))
    from conversion import base

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    sys.argv = [script] + argv
    runpy.run_path(script, run_name="__main__")


def make_gguf(folder: Path, script: str, kind: str) -> Path:
    """``folder``'s GGUF file of ``kind`` (BF16, F32, Q8_0 converted; Q4_0 quantized from BF16)."""
    out = folder / f"model-{kind}.gguf"
    if out.exists():
        return out
    if kind == "Q4_0":
        src = make_gguf(folder, script, "BF16")
        code = ("import llama_cpp, sys; p = llama_cpp.llama_model_quantize_default_params(); "
                "p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0; "
                "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), "
                "sys.argv[2].encode(), p))")
        subprocess.run([sys.executable, "-c", code, str(src), str(out)], check=True,
                       capture_output=True)
        return out
    pre = TOKENIZER_PRE[json.loads((folder / "config.json").read_text())["model_type"]]
    subprocess.run([sys.executable, __file__, "--child-convert", script, pre, str(folder),
                    "--outtype", kind.lower(), "--outfile", str(out)], check=True,
                   capture_output=True)
    return out


# ---------------------------------------------------------------------------------------------
# the decode bandwidth roof
# ---------------------------------------------------------------------------------------------
def touched_bytes(folder: Path, weight_bytes: int) -> int:
    """Bytes of the weights one decode token reads at ``weight_bytes`` per value: every tensor but
    the embedding table (one row), the routed experts' tensors scaled by k/E."""
    from moelab.io import open_checkpoint

    cfg = json.loads((folder / "config.json").read_text())
    E = cfg.get("num_experts") or cfg.get("num_local_experts")
    k = cfg["num_experts_per_tok"]
    dense = experts = 0
    with open_checkpoint(folder) as ckpt:
        for name in ckpt.names():
            n = int(np.prod(ckpt.shape(name)))
            if "embed_tokens" in name:
                continue
            if ".experts." in name:
                experts += n
            else:
                dense += n
    return int((dense + experts * k / E) * weight_bytes)


def read_bandwidth(threads: int, nbytes: int) -> float:
    """Bytes/s of a threaded read of a buffer of ``nbytes`` (written first)."""
    from _roofline import measure_read_bandwidth

    buf = np.ones(nbytes // 4, dtype=np.float32)
    return measure_read_bandwidth(buf, threads)


# ---------------------------------------------------------------------------------------------
# the engines, each in its own process
# ---------------------------------------------------------------------------------------------
class _Moelab:
    def __init__(self, folder, dtype, threads):
        import moelab
        moelab.set_num_threads(threads)
        self.model = moelab.hf.load_model(folder, dtype=dtype)

    def prefill(self, ids):  # -> the state after ids, the last token's argmax
        cache = self.model.new_cache()
        return cache, int(np.argmax(self.model(ids, cache=cache)[-1]))

    def step(self, cache, tok):
        return int(np.argmax(self.model(np.array([tok]), cache=cache)[-1]))


class _Transformers:
    def __init__(self, folder, dtype, threads, experts):
        import torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(threads)
        self.torch = torch
        kw = dict(dtype=torch.bfloat16 if dtype == "bfloat16" else torch.float32,
                  experts_implementation=experts)
        try:
            self.model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa",
                                                              **kw).eval()
            self.attention = "sdpa"
        except ValueError:  # gpt-oss (attention sinks): transformers 5.23 has no sdpa path
            self.model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                              **kw).eval()
            self.attention = "eager"

    def prefill(self, ids):
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(ids)[None], use_cache=True)
        return out.past_key_values, int(out.logits[0, -1].argmax())

    def step(self, cache, tok):
        with self.torch.inference_mode():
            out = self.model(self.torch.tensor([[tok]]), past_key_values=cache, use_cache=True)
        return int(out.logits[0, -1].argmax())


class _LlamaCpp:
    def __init__(self, path, threads, n_ctx):
        import llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), n_threads=threads,
                                   n_threads_batch=threads, n_ctx=n_ctx, n_batch=512,
                                   n_ubatch=512, logits_all=False, verbose=False)

    def _last(self):
        return int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))

    def prefill(self, ids):
        self.llm.reset()
        self.llm.eval(ids.tolist())
        return None, self._last()

    def step(self, cache, tok):
        self.llm.eval([tok])
        return self._last()


def _open_engine(engine: str, folder: Path, threads: int, hf_experts: str, n_ctx: int):
    if engine.startswith("moelab"):
        return _Moelab(folder, "bfloat16" if engine.endswith("bf16") else "float32", threads)
    if engine.startswith("hf"):
        return _Transformers(folder, "bfloat16" if engine.endswith("bf16") else "float32",
                             threads, hf_experts)
    return _LlamaCpp(folder / f"model-{engine.split('-', 1)[1]}.gguf", threads, n_ctx)


def measure_engine(engine: str, folder: Path, threads: int, prompts: List[int], decode: int,
                   hf_experts: str = "grouped_mm", profile: bool = False) -> Dict[str, object]:
    """One round of one engine in this process: load, prefill at each prompt length, decode
    ``decode`` tokens after the longest prompt, peak RSS; moelab's decode profile if asked."""
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    rng = np.random.default_rng(0)
    longest = max(prompts)
    ids = rng.integers(1, vocab, size=longest).astype(np.int64)           # (P,)
    start = time.perf_counter()
    eng = _open_engine(engine, folder, threads, hf_experts, longest + decode + 8)
    out: Dict[str, object] = {"load_s": time.perf_counter() - start}
    if hasattr(eng, "attention"):
        out["attention"] = eng.attention
    eng.prefill(ids[:8])                                                   # warm-up
    for P in sorted(prompts):  # the longest last: decode continues its cache
        start = time.perf_counter()
        cache, tok = eng.prefill(ids[:P])
        out[f"prefill_{P}_tok_s"] = P / (time.perf_counter() - start)
        if P == longest:
            out["ttft_s"] = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(decode):
        tok = eng.step(cache, tok)
    out["decode_tok_s"] = decode / (time.perf_counter() - start)
    out["peak_rss_bytes"] = vm_status(keys=("VmHWM",)).get("VmHWM")
    if engine.startswith("moelab"):
        out["cache_bytes"] = cache.nbytes                    # 512 + 128 positions, float32
    if profile and engine.startswith("moelab"):
        out["profile"] = profile_decode(eng.model, ids[:longest], min(decode, 32))
    return out


def profile_decode(model, prompt: np.ndarray, steps: int) -> Dict[str, float]:
    """Seconds per decode step by phase: attention (each mixer call), router and experts
    (``RoutingStats.phase_seconds``), norms and LM head (timers on the decoder's own calls to
    the core), and the remainder of the step, the Python overhead."""
    from moelab import decoder

    timed = {"attention": 0.0, "norms": 0.0, "lm_head": 0.0}
    real_core = decoder._core

    class _TimedCore:
        def __getattr__(self, name):
            return getattr(real_core, name)

        def rms_norm(self, *a, **kw):
            t = time.perf_counter()
            r = real_core.rms_norm(*a, **kw)
            timed["norms"] += time.perf_counter() - t
            return r

        def linear(self, *a, **kw):
            t = time.perf_counter()
            r = real_core.linear(*a, **kw)
            timed["lm_head"] += time.perf_counter() - t
            return r

    class _TimedMixer:
        def __init__(self, mixer):
            self.mixer = mixer

        def __call__(self, *a, **kw):
            t = time.perf_counter()
            r = self.mixer(*a, **kw)
            timed["attention"] += time.perf_counter() - t
            return r

    cache = model.new_cache()
    tok = int(np.argmax(model(prompt, cache=cache)[-1]))
    mixers = [layer.mixer for layer in model.layers]
    router = experts = 0.0
    decoder._core = _TimedCore()
    for layer in model.layers:
        layer.mixer = _TimedMixer(layer.mixer)
    try:
        start = time.perf_counter()
        for _ in range(steps):
            routing: dict = {}
            tok = int(np.argmax(model(np.array([tok]), cache=cache, routing=routing)[-1]))
            for stats in routing.values():
                router += stats.phase_seconds.get("route", 0.0)
                experts += sum(v for k, v in stats.phase_seconds.items() if k != "route")
        total = time.perf_counter() - start
    finally:
        decoder._core = real_core
        for layer, mixer in zip(model.layers, mixers):
            layer.mixer = mixer
    phases = dict(timed, router=router, experts=experts)
    phases = {k: v / steps for k, v in phases.items()}
    phases["python_overhead"] = total / steps - sum(phases.values())
    phases["step"] = total / steps
    return phases


def converter_info(script: Optional[str]) -> str:
    """Which converter: its path and the version of the gguf-py shipped beside it."""
    if not script:
        return "none"
    meta = Path(script).parent / "gguf-py" / "pyproject.toml"
    version = "?"
    if meta.exists():
        for line in meta.read_text().splitlines():
            if line.startswith("version"):
                version = line.split("=", 1)[1].strip().strip('"')
                break
    return f"{script} (gguf-py {version} beside it)"


def _engine_available(engine: str) -> Optional[str]:
    """None if the engine's package imports, else why not."""
    module = {"moelab": "moelab", "hf": "transformers", "llama": "llama_cpp"}[engine.split("-")[0]]
    code = f"import {module}"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if r.returncode == 0 else r.stderr.strip().splitlines()[-1]


def _run_child(engine, folder, threads, prompts, decode, hf_experts, profile):
    cmd = [sys.executable, __file__, "--child", engine, str(folder), "--threads", str(threads),
           "--prompts", ",".join(map(str, prompts)), "--decode", str(decode),
           "--hf-experts", hf_experts] + (["--profile"] if profile else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _summary(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def run_model(name: str, folder: Path, engines: List[str], threads: List[int], rounds: int,
              prompts: List[int], decode: int, hf_experts: str, bandwidth: Dict[int, float]
              ) -> Dict[str, object]:
    """Every engine x thread count, ``rounds`` interleaved rounds; medians, spread, roof."""
    per = {(e, t): [] for e in engines for t in threads}
    profiles = {}
    for r in range(rounds):
        for t in threads:
            for e in engines:
                res = _run_child(e, folder, t, prompts, decode, hf_experts,
                                 profile=(r == rounds - 1))
                if "profile" in res:
                    profiles[f"{e} t={t}"] = res.pop("profile")
                per[(e, t)].append(res)
    table = []
    for (e, t), runs in per.items():
        errors = [x["error"] for x in runs if "error" in x]
        if errors:
            table.append({"engine": e, "threads": t, "error": errors[0]})
            continue
        row = {"engine": e, "threads": t}
        for key in runs[0]:
            values = [x[key] for x in runs]
            row[key] = _summary(values) if isinstance(values[0], (int, float)) else values[0]
        wbytes = {"bf16": 2, "f32": 4, "BF16": 2, "F32": 4}.get(e.rsplit("-", 1)[1])
        if wbytes:
            roof = bandwidth[t] / touched_bytes(folder, wbytes)
            row["roof_tok_s"] = roof
            row["roof_fraction"] = row["decode_tok_s"]["median"] / roof
        table.append(row)
    return {"model": name, "folder": str(folder), "config": json.loads(
        (folder / "config.json").read_text()), "rows": table, "profiles": profiles}


def goals(model: Dict[str, object], threads: int = 2) -> Dict[str, object]:
    """The issue's goals at ``threads`` threads, bf16 weights: each the measured ratio and
    whether it is met (None where an engine it compares with is absent)."""
    rows = {r["engine"]: r for r in model["rows"]
            if r["threads"] == threads and "error" not in r}
    me = rows.get("moelab-bf16")
    if me is None:
        return {}

    def med(row, key):
        return row[key]["median"]

    out = {}
    P = max(int(k.split("_")[1]) for k in me if k.startswith("prefill_"))
    llama, hf = rows.get("llama-BF16"), rows.get("hf-bf16")
    if llama:
        r = med(me, "decode_tok_s") / med(llama, "decode_tok_s")
        out["decode >= llama.cpp BF16"] = (r, r >= 1.0)
        r = med(me, f"prefill_{P}_tok_s") / med(llama, f"prefill_{P}_tok_s")
        out[f"prefill {P} >= 1.5 x llama.cpp BF16"] = (r, r >= 1.5)
    if hf:
        r = med(me, f"prefill_{P}_tok_s") / med(hf, f"prefill_{P}_tok_s")
        out[f"prefill {P} >= 2 x transformers bf16"] = (r, r >= 2.0)
    out["decode >= 85% of roof"] = (me["roof_fraction"], me["roof_fraction"] >= 0.85)
    prof = model["profiles"].get(f"moelab-bf16 t={threads}")
    if prof:
        r = prof["python_overhead"] / prof["step"]
        out["Python overhead < 5% of the step"] = (r, r < 0.05)
    folder = Path(model["folder"])
    limit = (sum(p.stat().st_size for p in folder.glob("*.safetensors"))
             + med(me, "cache_bytes") + 300 * (1 << 20))
    r = med(me, "peak_rss_bytes") / limit
    out["peak RSS <= file + KV cache + 300 MiB"] = (r, r <= 1.0)
    return out


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def _cell(row, key, scale=1.0, fmt="{:.1f}"):
    v = row.get(key)
    if not isinstance(v, dict):
        return "-"
    return (fmt.format(v["median"] * scale) + " (" + fmt.format(v["min"] * scale) + "-"
            + fmt.format(v["max"] * scale) + ")")


def render(results: Dict[str, object]) -> str:
    m = results["machine"]
    lines = ["# Whole-model CPU speed: moelab, transformers, llama.cpp", "",
             f"Run {results['date']} ({'--quick' if results['quick'] else 'full'}), "
             f"{results['rounds']} interleaved rounds; medians with (min-max).", "",
             f"- CPU: {m['lscpu'].get('Model name', '?')}, {m['lscpu'].get('CPU(s)', '?')} CPUs; "
             f"load average {results['load_average']}",
             f"- moelab {m['moelab']} ({m['git']['commit'][:10]}), numpy {m['numpy']}, "
             f"torch {m.get('torch')}, transformers {m.get('transformers')}, llama-cpp-python "
             f"{results['versions'].get('llama_cpp')}, converter {results['converter']}",
             "- read bandwidth (bytes/s) by threads: " + ", ".join(
                 f"{t}: {b / 1e9:.1f} GB/s" for t, b in results["bandwidth"].items()),
             "- random weights: routing is near uniform (see the module docstring)"]
    if results["quick"]:
        lines.append("- --quick: tiny checkpoints and few tokens; these figures show that the "
                     "harness runs, not how fast the engines are")
    lines.append("")
    for name, absent in results["absent"].items():
        lines.append(f"- engine {name}: absent ({absent})")
    P = results["prompts"]
    for model in results["models"]:
        lines += ["", f"## {model['model']} ({model['config']['num_hidden_layers']} layers, "
                      f"H={model['config']['hidden_size']})", "",
                  f"| engine | threads | prefill {P[0]} tok/s | prefill {P[-1]} tok/s | decode "
                  f"{results['decode']} tok/s | TTFT ms ({P[-1]}) | peak RSS MiB | roof tok/s "
                  "| of roof |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in model["rows"]:
            if "error" in row:
                lines.append(f"| {row['engine']} | {row['threads']} | failed: {row['error']} "
                             "| | | | | | |")
                continue
            roof = row.get("roof_tok_s")
            engine = row["engine"] + (f" ({row['attention']})" if "attention" in row else "")
            lines.append(" | ".join([
                f"| {engine}", str(row["threads"]), _cell(row, f"prefill_{P[0]}_tok_s"),
                _cell(row, f"prefill_{P[-1]}_tok_s"),
                _cell(row, "decode_tok_s"), _cell(row, "ttft_s", 1e3),
                _cell(row, "peak_rss_bytes", 1 / (1 << 20), "{:.0f}"),
                "-" if roof is None else f"{roof:.1f}",
                ("-" if roof is None else f"{row['roof_fraction']:.0%}") + " |"]))
        met = model.get("goals") or {}
        if met:
            lines += ["", f"Goals at {results['goal_threads']} threads, bf16 (measured ratio):", ""]
            lines += [f"- {g}: {r:.2f} ({'met' if ok else 'missed'})" for g, (r, ok) in met.items()]
        if model["profiles"]:
            lines += ["", "moelab decode step by phase (ms per step, last round):", "",
                      "| run | attention | router | experts | norms | LM head | Python | step |",
                      "|---|---|---|---|---|---|---|---|"]
            for run, ph in model["profiles"].items():
                lines.append("| " + " | ".join([run] + [f"{ph[k] * 1e3:.2f}" for k in (
                    "attention", "router", "experts", "norms", "lm_head", "python_overhead",
                    "step")]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: List[str] = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny checkpoints, 1 round, few tokens")
    p.add_argument("--work", help="folder for checkpoints and GGUF files (kept)")
    p.add_argument("--models", default="qwen3,gpt-oss")
    p.add_argument("--layers", type=int, default=None, help="layers of every model")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--prompts", default=None, help="prompt lengths (default 128,512)")
    p.add_argument("--decode", type=int, default=None, help="decoded tokens (default 128)")
    p.add_argument("--hf-experts", default="grouped_mm",
                   help="transformers' experts_implementation (eager, grouped_mm, batched_mm)")
    p.add_argument("--convert-script", help="llama.cpp's convert_hf_to_gguf.py (llama.cpp "
                   "engines are absent without it)")
    p.add_argument("--out", default=str(BENCH / "RESULTS_MODEL.md"))
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    prompts = [int(x) for x in (args.prompts or ("16,32" if args.quick else "128,512")).split(",")]
    decode = args.decode or (8 if args.quick else 128)
    if args.child:
        engine, folder = args.child
        print(json.dumps(measure_engine(engine, Path(folder), threads[0], prompts, decode,
                                        args.hf_experts, args.profile)))
        return {}
    rounds = args.rounds or (1 if args.quick else 5)
    engines = args.engines.split(",")
    absent = {}
    for e in engines:
        why = _engine_available(e)
        if why is None and e.startswith("llama") and not args.convert_script:
            why = "no --convert-script given"
        if why is not None:
            absent[e] = why
    engines = [e for e in engines if e not in absent]
    bw_bytes = (64 << 20) if args.quick else GIB
    bandwidth = {t: read_bandwidth(t, bw_bytes) for t in threads}
    table = QUICK_MODELS if args.quick else MODELS
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        models = []
        for name in args.models.split(","):
            config, layers = table[name]
            folder = make_model_checkpoint(work / name, config, args.layers or layers)
            usable = list(engines)
            for e in engines:
                if e.startswith("llama"):
                    try:
                        make_gguf(folder, args.convert_script, e.split("-", 1)[1])
                    except subprocess.CalledProcessError as exc:
                        err = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
                        absent[f"{e} on {name}"] = "conversion failed: " + (err[-1] if err else "?")
                        usable.remove(e)
            models.append(run_model(name, folder, usable, threads, rounds, prompts, decode,
                                    args.hf_experts, bandwidth))
            models[-1]["goals"] = goals(models[-1], max(threads))
    from importlib import metadata
    try:  # its distribution's version: the library itself is loaded by the children only
        versions = {"llama_cpp": metadata.version("llama_cpp_python")}
    except metadata.PackageNotFoundError:
        versions = {"llama_cpp": "absent"}
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
               "rounds": rounds, "threads": threads, "prompts": prompts, "decode": decode,
               "hf_experts": args.hf_experts, "machine": machine_info(),
               "load_average": [round(v, 2) for v in os.getloadavg()],
               "versions": versions, "bandwidth": bandwidth, "absent": absent,
               "converter": converter_info(args.convert_script), "goal_threads": max(threads),
               "models": models}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print(render(results))
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-convert":
        _convert_child(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        main(sys.argv[1:])
