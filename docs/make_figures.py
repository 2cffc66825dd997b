#!/usr/bin/env python
"""Regenerate the figures under docs/ from moelab's counts (the README shows them).

    python docs/make_figures.py            # writes docs/active_parameters.png

The figure is the stacked parameter bars of notebooks/01_active_parameters.ipynb, drawn with the
same helper (``moelab.plot.param_bars``): every preset's parameters by component, in billions
and as shares of its total. Needs matplotlib (``pip install moelab[plot]``).
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE, help="output folder (default: docs/)")
    p.add_argument("--dpi", type=int, default=80, help="resolution (default 80)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    out = active_parameters(args.out / "active_parameters.png", dpi=args.dpi)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
