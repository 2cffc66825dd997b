"""Command line: ``python -m moelab {compare,params,run,generate,list,demo} ...`` (``--help`` on
each).

Exit status: 0 on success, 2 on a usage error (bad option, unknown preset; for ``generate``
also a checkpoint or tokenizer that cannot be read), always as a one-line message.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
import time
from typing import List, Optional

import numpy as np

from . import generate_cli

__all__ = ["main", "vendor_active", "EXAMPLES"]

EXAMPLES = """\
examples:
  python -m moelab compare                    # every preset: sizes, routing, KV cache, FLOPs
  python -m moelab compare qwen3-30b-a3b gpt-oss-20b --context 32768
  python -m moelab compare --wide --sort active   # every column (a wide terminal)
  python -m moelab params deepseek-v3         # parameter breakdown and per-token costs
  python -m moelab run deepseek-v3 --tokens 512   # the scaled model: load balance, tokens/s
  python -m moelab generate path/to/checkpoint "The capital of France is" --trace
  python -m moelab list                       # preset names
  python -m moelab demo --help                # one layer per router kind
"""

#: How a family's vendor counts "active" parameters when it publishes the figure: the
#: ParamCount attribute that reproduces the published count, and a label for the table.
#: Families not listed count everything a token uses (moelab's ``active``).
_VENDOR_CONVENTIONS = {
    "gpt_oss": ("active_no_embedding_matrix", "-1 VxH"),  # OpenAI's model card
    "kimi_k2": ("active_no_embedding_matrix", "-1 VxH"),  # Moonshot's "32B activated"
    "glm4_moe": ("active_no_embedding", "-emb,head"),     # the GLM-4.5 paper
}
_ALL_ACTIVE = ("active", "all")
_VENDOR_LEGEND = ("convention all: the same; -emb,head: without the embedding and the LM head, "
                  "as GLM counts; -1 VxH: without one vocabulary x hidden matrix, as OpenAI "
                  "(gpt-oss) and Moonshot (Kimi K2) count")


def vendor_active(cfg) -> "tuple[int, str]":
    """(active parameters as the model's vendor counts them, the convention's label)."""
    import moelab

    attribute, label = _VENDOR_CONVENTIONS.get(cfg.model_type, _ALL_ACTIVE)
    return int(getattr(moelab.count_params(cfg), attribute)), label


def _fmt_count(n: float) -> str:
    if n >= 1e12:
        return f"{n / 1e12:.3f}T"
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n:,.0f}"


def _fmt_number(v: float) -> str:
    """An integral value as an integer ("70,272"), any other with one decimal ("25,344.5")."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


#: columns of the default table (it fits a 100-column terminal); --wide shows every column
_NARROW = ["total", "active", "active_share", "vendor_active", "vendor_convention", "experts",
           "top_k", "kv_bytes_per_token", "flops_per_token"]


def _cmd_compare(args) -> int:
    import pandas as pd

    import moelab

    names = args.models or moelab.list_presets()
    df = moelab.compare(names, context=args.context)
    configs = [moelab.preset(n) if isinstance(n, str) else n for n in names]
    vendor = [vendor_active(cfg) for cfg in configs]
    df.insert(df.columns.get_loc("active_share") + 1, "vendor_active", [v for v, _ in vendor])
    df.insert(df.columns.get_loc("vendor_active") + 1, "vendor_convention", [c for _, c in vendor])
    if args.sort:
        df = df.sort_values(args.sort, ascending=False, kind="stable")
    if not args.wide:
        df = df[_NARROW]
    if args.raw:
        out = df
    else:
        out = df.copy()
        for col in ("total", "active", "vendor_active"):
            out[col] = df[col].map(_fmt_count)
        out["active_share"] = df["active_share"].map(lambda v: f"{100 * v:.1f}%")
        out["kv_bytes_per_token"] = df["kv_bytes_per_token"].map(_fmt_bytes_small)
        out["flops_per_token"] = df["flops_per_token"].map(lambda v: f"{v / 1e9:.1f}G")
        out = out.rename(columns={"active_share": "active%", "vendor_active": "vendor",
                                  "vendor_convention": "convention", "experts": "E",
                                  "top_k": "k", "shared_experts": "shared",
                                  "dense_first_layers": "dense_first",
                                  "kv_bytes_per_token": "KV/token",
                                  "flops_per_token": "FLOPs/token"})
    with pd.option_context("display.max_columns", None, "display.width", 1000,
                           "display.max_colwidth", 60):
        print(out.to_string())
    print()
    print(textwrap.fill(
        "active: every parameter a token uses, the embedding and the LM head included. vendor: "
        f"active as the model's vendor counts it ({_VENDOR_LEGEND}). KV/token: the KV cache in "
        f"bf16, averaged over a context of {args.context} tokens. FLOPs/token: 2 x the active "
        "matmul parameters + attention at that context (moelab.count_params, moelab.costs).",
        width=100))
    return 0


def _fmt_bytes_small(n: float) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.2f} MiB"
    if n >= 2**10:
        return f"{n / 2**10:.1f} KiB"
    return f"{n:.0f} B"


def _cmd_params(args) -> int:
    import moelab

    cfg = moelab.preset(args.model)
    pc = moelab.count_params(cfg)
    c = moelab.costs(cfg, context=args.context)
    print(repr(cfg))
    print(f"  total                       {pc.total:>20,}  ({_fmt_count(pc.total)})")
    print(f"  active                      {pc.active:>20,}  ({_fmt_count(pc.active)}, "
          f"{100 * pc.active_share:.1f}%)")
    print(f"  active w/o embedding+head   {pc.active_no_embedding:>20,}")
    print(f"  active w/o one VxH matrix   {pc.active_no_embedding_matrix:>20,}")
    for key, value in pc.breakdown().items():
        note = "  (not in total)" if key == "mtp" else ""
        print(f"    {key:25s} {value:>20,}{note}")
    print(f"  per token at context {c.context}:")
    print(f"    matmul FLOPs              {c.matmul_flops:>20,}")
    print(f"    attention FLOPs           {c.attention_flops:>20,}")
    for fmt, b in c.weight_bytes.items():
        print(f"    {f'weights read ({fmt})':25s} {_fmt_bytes(b):>20}")
    print(f"    KV cache (bf16, 1 seq)    {_fmt_bytes(c.kv_cache_bytes):>20}")
    print(f"    KV bytes per token        {_fmt_number(c.kv_bytes_per_token):>20}")
    return 0


def _cmd_list(args) -> int:
    import moelab

    for name in moelab.list_presets(include_aliases=True):
        cfg = moelab.preset(name)
        kind = "MoE" if cfg.is_moe else "dense"
        print(f"{name:24s} {cfg.model_type:14s} {kind}")
    return 0


def _cmd_run(args, parser) -> int:
    import moelab

    if args.tokens < 1:
        parser.error("--tokens must be >= 1")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads is not None:
        try:
            moelab.set_num_threads(args.threads)  # capped at 4 x the cores, warns above them
        except ValueError as exc:
            parser.error(f"--threads: {exc}")
    kw = {"hidden_size": args.hidden}
    for name in ("num_layers", "num_experts", "num_experts_per_tok"):
        v = getattr(args, name)
        if v is not None:
            kw[name] = v
    full = moelab.preset(args.model)
    try:
        cfg = full.scaled(**kw)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    try:
        model = moelab.build(cfg, seed=args.seed)
    except ValueError as exc:  # a family the decoder does not reproduce (Grok-2)
        parser.error(str(exc))
    ids = np.random.default_rng(args.seed).integers(0, cfg.vocab_size, args.tokens)  # (T,)
    routing = {}
    model(ids, routing=routing, progress=False if args.no_progress else None)      # (T, V)
    print(f"{model!r}  ({cfg.display_name}, scaled from {full.display_name}; "
          f"threads={moelab.get_num_threads()})")
    print(f"{'layer':>5} {'mixer':>17} {'ffn':>5} {'max/mean':>9} {'min':>5} {'max':>5} "
          f"{'idle':>5} {'aux_loss':>9} {'z_loss':>9} {'dropped':>7}")
    for i in range(cfg.num_hidden_layers):
        mixer = cfg.layer_type(i)                     # MLA layers: "mla" whatever their mask
        if cfg.attention.kind == "mla" and mixer != "linear_attention":
            mixer = "mla"
        st = routing.get(i)
        if st is None:
            print(f"{i:>5} {mixer:>17} {'dense':>5}")
            continue
        tpe = st.tokens_per_expert
        mean = tpe.mean() if tpe.size else 0.0
        ratio = tpe.max() / mean if mean > 0 else float("nan")
        print(f"{i:>5} {mixer:>17} {'moe':>5} {ratio:>9.3f} {tpe.min():>5d} {tpe.max():>5d} "
              f"{int((tpe == 0).sum()):>5d} {st.aux_loss:>9.4f} {st.z_loss:>9.4f} "
              f"{st.dropped:>7d}")
    best = math.inf
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        logits = model(ids, progress=False)                                           # (T, V)
        best = min(best, time.perf_counter() - t0)
    print(f"throughput: {args.tokens / best:,.0f} tokens/s ({args.tokens} tokens in "
          f"{1e3 * best:.2f} ms, ids to logits, best of {args.repeats}); "
          f"logits std {float(logits.std()):.4f}")
    return 0


def _run_demo(argv: List[str]) -> int:
    from . import demo

    return int(demo.main(list(argv)) or 0)


def _parser() -> argparse.ArgumentParser:
    """The parser; each sub-parser is kept as ``parser.commands[name]`` for its errors."""
    p = argparse.ArgumentParser(prog="python -m moelab",
                                description="Build, run and compare Mixture-of-Experts LLMs.",
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{compare,params,run,generate,list,demo}")
    sub.required = True

    c = sub.add_parser("compare", help="compare presets (all by default) in one table")
    c.add_argument("models", nargs="*", help="preset names (default: every preset)")
    c.add_argument("--context", type=int, default=4096,
                   help="context length for KV bytes and FLOPs (default 4096)")
    c.add_argument("--sort", choices=["total", "active", "active_share", "vendor_active",
                                      "kv_bytes_per_token", "flops_per_token"],
                   help="sort descending by a column")
    c.add_argument("--wide", action="store_true",
                   help="every column (model type, layer counts, attention): ~200 characters")
    c.add_argument("--raw", action="store_true", help="print raw numbers, not human units")

    pr = sub.add_parser("params", help="parameter breakdown and per-token costs of a preset")
    pr.add_argument("model", help="preset name")
    pr.add_argument("--context", type=int, default=4096, help="context length (default 4096)")

    r = sub.add_parser("run", help="build a preset's scaled model (random weights), run "
                       "random token ids through it, report each layer's routing and tokens/s")
    r.add_argument("model", help="preset name")
    r.add_argument("--tokens", type=int, default=1024, help="tokens per forward (default 1024)")
    r.add_argument("--hidden", type=int, default=64, help="hidden size of the toy (default 64)")
    r.add_argument("--layers", dest="num_layers", type=int, default=None,
                   help="layers of the toy (default: enough to show the layer pattern)")
    r.add_argument("--experts", dest="num_experts", type=int, default=None,
                   help="routed experts of the toy")
    r.add_argument("--top-k", dest="num_experts_per_tok", type=int, default=None,
                   help="experts per token of the toy")
    r.add_argument("--repeats", type=int, default=3, help="timed forwards (default 3)")
    r.add_argument("--threads", type=int, default=None,
                   help="moelab threads (capped at 4 x the available cores; warns above them)")
    r.add_argument("--seed", type=int, default=0, help="weights and input seed (default 0)")
    r.add_argument("--no-progress", action="store_true",
                   help="no progress bar over the layers (it is shown only on a terminal, "
                        "for forwards longer than a few seconds)")

    gen = generate_cli.add_parser(sub)

    lst = sub.add_parser("list", help="list the preset names")

    # `demo ...` is dispatched before parsing (every argument goes to moelab.demo.main); the
    # sub-parser is here for --help.
    demo = sub.add_parser("demo", help="run moelab.demo (arguments are passed on; demo --help)",
                          add_help=False)
    p.commands = {"compare": c, "params": pr, "run": r, "generate": gen, "list": lst,
                  "demo": demo}
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m moelab``; returns the exit status (0, or 2 on usage errors).

    A usage error of a sub-command prints that sub-command's usage: an argument argparse
    rejects, or one the command rejects (exits with SystemExit(2)); an unknown preset or a
    model listed twice (returns 2).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        return _run_demo(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    command = parser.commands[args.command]
    if getattr(args, "context", 1) < 1:
        command.error("--context must be >= 1")
    try:
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "params":
            return _cmd_params(args)
        if args.command == "run":
            return _cmd_run(args, command)
        if args.command == "generate":
            return generate_cli.run(args, command)
        return _cmd_list(args)
    except ValueError as exc:
        if "unknown preset" in str(exc) or "twice" in str(exc):
            command.print_usage(sys.stderr)
            print(f"{command.prog}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
