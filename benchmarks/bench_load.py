"""Load time and resident memory of ``moelab.hf.load_model`` on a bfloat16 checkpoint read in
place (the memory point of the whole-decoder issue).

    python benchmarks/bench_load.py CHECKPOINT          # a folder (make_checkpoint.py makes one)
    python benchmarks/bench_load.py --make DIR          # make the 4.6 GiB checkpoint in DIR first
    python benchmarks/bench_load.py --quick             # a tiny checkpoint in a temporary folder

Each figure is taken in a fresh process (the parent only reads its report), so that nothing
loaded before is counted:

- ``load_s``: ``load_model`` on a warm page cache (the files are read once before, untimed);
- ``rss_after_load``: VmRSS right after loading, and its parts RssAnon (the process's own
  memory) and RssFile (pages of the mapped files it has mapped);
- ``rss_after_generate``: VmRSS after a greedy generation of ``--new-tokens`` tokens (512),
  against the goal file size + the cache's bytes + 300 MiB.

Timings on a shared machine are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _machine import machine_info, vm_status  # noqa: E402
from make_checkpoint import FULL, QUICK, checkpoint_bytes, make_checkpoint  # noqa: E402

__all__ = ["measure", "main"]

MIB = 1 << 20
GOAL_LOAD_S = 2.0
GOAL_RSS_FRACTION = 0.10
GOAL_GENERATE_SLACK = 300 * MIB
RSS_KEYS = ("VmRSS", "RssAnon", "RssFile")


def warm_page_cache(folder: Path) -> None:
    """Reads every safetensors file once (untimed), so that the load runs on a warm cache."""
    for p in sorted(folder.glob("*.safetensors")):
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def measure(folder: str, new_tokens: int, threads: int) -> Dict[str, object]:
    """In this process: load, RSS, generate, RSS (see the module docstring)."""
    import numpy as np

    import moelab

    moelab.set_num_threads(threads)
    start = time.perf_counter()
    model = moelab.hf.load_model(folder)
    load_s = time.perf_counter() - start
    after_load = vm_status(keys=RSS_KEYS)
    owned = sum(getattr(l.mixer, "owned_weight_bytes", 0) + getattr(l.ffn, "owned_weight_bytes", 0)
                for l in model.layers)
    prompt = np.arange(1, 9, dtype=np.int64)
    start = time.perf_counter()
    gen = model.generate(prompt, max_new_tokens=new_tokens)
    generate_s = time.perf_counter() - start
    after_generate = vm_status(keys=RSS_KEYS)
    cache = model.new_cache()  # the cache of the whole sequence, for its size
    model(gen.tokens[:-1], cache=cache)
    return {"load_s": load_s, "rss_after_load": after_load, "owned_weight_bytes": owned,
            "generate_s": generate_s, "tokens": int(len(gen.tokens) - len(prompt)),
            "rss_after_generate": after_generate, "cache_bytes": int(cache.nbytes)}


def run_child(folder: Path, new_tokens: int, threads: int) -> Dict[str, object]:
    """measure() in a fresh interpreter; its JSON report."""
    out = subprocess.run([sys.executable, __file__, str(folder), "--child",
                          "--new-tokens", str(new_tokens), "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(folder: Path, r: Dict[str, object]) -> Dict[str, object]:
    """The measurement with the file size and each goal met or not."""
    size = checkpoint_bytes(folder)
    rss_load = r["rss_after_load"]["VmRSS"]
    rss_gen = r["rss_after_generate"]["VmRSS"]
    gen_limit = size + r["cache_bytes"] + GOAL_GENERATE_SLACK
    return dict(r, file_bytes=size,
                rss_after_load_fraction=rss_load / size,
                generate_limit_bytes=gen_limit,
                goals={"load_s < 2": r["load_s"] < GOAL_LOAD_S,
                       "rss_after_load < 10% of file": rss_load < GOAL_RSS_FRACTION * size,
                       "rss_after_generate <= file + cache + 300 MiB": rss_gen <= gen_limit})


def main(argv: List[str] = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", nargs="?", help="a checkpoint folder")
    p.add_argument("--make", metavar="DIR", help="make the full checkpoint in DIR first")
    p.add_argument("--quick", action="store_true", help="a tiny checkpoint, few tokens")
    p.add_argument("--new-tokens", type=int, default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    new_tokens = args.new_tokens or (8 if args.quick else 512)
    if args.child:
        print(json.dumps(measure(args.checkpoint, new_tokens, args.threads)))
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            folder = make_checkpoint(Path(tmp) / "quick", QUICK)
        elif args.make:
            folder = make_checkpoint(args.make, FULL)
        elif args.checkpoint:
            folder = Path(args.checkpoint)
        else:
            p.error("give a checkpoint folder, --make DIR or --quick")
        warm_page_cache(folder)
        result = report(folder, run_child(folder, new_tokens, args.threads))
    result["machine"] = machine_info()
    result["threads"] = args.threads
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
