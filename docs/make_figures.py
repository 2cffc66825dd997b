#!/usr/bin/env python
"""Regenerate the figures under docs/ from moelab's counts (the README shows them).

    python docs/make_figures.py            # writes the three PNGs below into docs/

- active_parameters.png: the stacked parameter bars of notebooks/01_active_parameters.ipynb,
  drawn with the same helper (``moelab.plot.param_bars``): every preset's parameters by
  component, in billions and as shares of its total.
- kv_cache_vs_context.png: notebooks/07_attention_memory.ipynb's KV cache of one sequence
  against context for every preset (``moelab.costs``, bf16).
- experts_on_real_text.png: notebooks/06_experts_on_real_text.ipynb's top expert per token and
  MoE layer of the shipped checkpoint notebooks/data/tiny-moe over an English passage
  (``moelab.plot.expert_trace``).

Needs matplotlib (``pip install moelab[plot]``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import moelab  # noqa: E402
from moelab import plot  # noqa: E402

HERE = Path(__file__).resolve().parent


def active_parameters(path: Path, dpi: int = 80) -> Path:
    """Stacked bars of total vs active parameters for every preset -> a PNG at ``path``."""
    names = moelab.list_presets()
    fig, (ax_abs, ax_rel) = plt.subplots(1, 2, figsize=(15, 6.5), layout="constrained")
    plot.param_bars(names, ax=ax_abs, legend=False)
    plot.param_bars(names, ax=ax_rel, normalize=True)
    ax_abs.set_title("parameters by component (billions)")
    ax_rel.set_title("share of each model's total (all but the idle routed experts run for "
                     "every token)", fontsize="medium")
    fig.suptitle("Total vs active parameters of the moelab presets (moelab.count_params)")
    fig.savefig(path, dpi=dpi, pil_kwargs={"optimize": True})
    plt.close(fig)
    return path


def kv_cache_vs_context(path: Path, dpi: int = 80) -> Path:
    """KV cache of one sequence (bf16) against context, every preset -> a PNG at ``path``."""
    contexts = [1024 * 2 ** i for i in range(8)]                        # 1k .. 128k
    fig, ax = plt.subplots(figsize=(10, 6), layout="constrained")
    colors = plt.get_cmap("tab20").colors
    for i, name in enumerate(moelab.list_presets()):                  # 20 colours x 3 styles
        gib = [moelab.costs(name, context=n).kv_cache_bytes / 2 ** 30 for n in contexts]
        ax.plot(contexts, gib, ["-", "--", ":"][i % 3], color=colors[i % 20], marker="o", ms=3,
                label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(contexts, [f"{n // 1024}k" for n in contexts])
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("KV cache of one sequence (GiB, bf16)")
    ax.set_title("KV cache against context (moelab.costs, equal to measured caches of scaled models)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(ncol=2, fontsize=7, loc="upper left")
    fig.savefig(path, dpi=dpi, pil_kwargs={"optimize": True})
    plt.close(fig)
    return path


def experts_on_real_text(path: Path, dpi: int = 80) -> Path:
    """Top expert per token and MoE layer of the shipped tiny checkpoint -> a PNG at ``path``."""
    folder = HERE.parent / "notebooks" / "data" / "tiny-moe"
    model, tok = moelab.hf.load_model(folder), moelab.Tokenizer.from_pretrained(folder)
    text = 'a large boat that carries people across a river; "we took the ferry in 1969"'
    trace = model.generate(tok.encode(text), max_new_tokens=1, trace=True).trace
    ax = plot.expert_trace(trace, tokens=tok, num_experts=model.config.moe.num_experts)
    ax.set_title("Top expert per token and MoE layer (notebooks/data/tiny-moe, trained on English)")
    ax.figure.set_size_inches(11, 3.4)
    ax.figure.savefig(path, dpi=dpi, bbox_inches="tight", pil_kwargs={"optimize": True})
    plt.close(ax.figure)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE, help="output folder (default: docs/)")
    p.add_argument("--dpi", type=int, default=80, help="resolution (default 80)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for make in (active_parameters, kv_cache_vs_context, experts_on_real_text):
        out = make(args.out / f"{make.__name__}.png", dpi=args.dpi)
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
