"""Resident memory per rank of an expert-parallel model: ``moelab.hf.load_model(path,
expert_parallel=comm)`` under ``mpirun -n N`` (the memory point of the expert-parallel issue).

    python benchmarks/bench_ep_memory.py                # a ~330 MiB Qwen3-MoE-shaped bf16
                                                        # checkpoint in a temporary folder, -n 4
    python benchmarks/bench_ep_memory.py --checkpoint DIR -n 4
    python benchmarks/bench_ep_memory.py --quick        # a tiny checkpoint, -n 2 (seconds)

The parent makes the checkpoint (transformers ``Qwen3MoeForCausalLM``, random weights,
``make_checkpoint.py``), reads its files once (a warm page cache), then starts
``mpirun -n N python bench_ep_memory.py --worker DIR``. Each rank, one thread:

1. ``rss_start``: VmRSS after importing numpy, mpi4py and moelab, before loading;
2. ``rss_after_load``: after ``load_model(DIR, expert_parallel=MPI.COMM_WORLD)``;
3. ``rss_after_forward``: after one forward of the model over ``--tokens`` random token ids
   (every replicated weight read), then of each MoE layer over as many random hidden states
   (a random model's deeper layers send most tokens to a few experts; random hidden states
   reach them all): at least one token must have reached every expert of every MoE layer
   (counted from the routing statistics, ``experts_touched``), so that every rank has read
   each of its experts; ``checkpoint_mapped``, the part of VmRSS that is pages of the
   checkpoint's files (``/proc/self/smaps``): what of the file the rank has read.

Against each rank's bound, from the checkpoint's header: ``replicated_bytes`` (every tensor
but the routed experts', which every rank reads) + ``held_expert_bytes`` (the routed-expert
tensors of the experts the rank holds: 1/N of ``expert_bytes`` for contiguous blocks when N
divides E). ``overhead`` = rss_after_forward - replicated - held: what a rank holds beyond the
weights it reads (the interpreter and libraries, float32 copies of routers and norms, the
activations and workspaces of the forward); the goal states it as a constant,
``GOAL_OVERHEAD`` (in mapped file pages, both figures count the pages the rank's kernels
read; the file's pages are in the page cache once, shared by the ranks).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _machine import vm_status  # noqa: E402
from make_checkpoint import FULL, checkpoint_bytes, make_checkpoint  # noqa: E402

__all__ = ["MEDIUM", "TINY", "weight_bytes", "measure", "report", "main"]

MIB = 1 << 20
#: What a rank may hold beyond the replicated weights and its experts' (see the docstring).
GOAL_OVERHEAD = 128 * MIB
RSS_KEYS = ("VmRSS", "RssAnon", "RssFile")

#: Qwen3-30B-A3B's design (64-wide heads, top-8 of many small experts, untied head) at a size
#: that writes and loads in seconds: 6 MoE layers of 64 experts, H=512, I=256; about 330 MiB
#: of bfloat16, 87 % of it routed experts.
MEDIUM: Dict[str, object] = dict(
    FULL, hidden_size=512, intermediate_size=1536, moe_intermediate_size=256, num_experts=64,
    num_experts_per_tok=8, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2,
    head_dim=64, vocab_size=16384)
#: The same design, tiny (the smoke test).
TINY: Dict[str, object] = dict(
    FULL, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_experts=8,
    num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=16, vocab_size=512)

_EXPERT = re.compile(r"layers\.(\d+)\.mlp\.experts\.(\d+)\.")


def weight_bytes(folder) -> Dict[str, object]:
    """From the checkpoint's header: ``replicated`` (bytes of every tensor but the routed
    experts'), ``experts`` (bytes of all routed-expert tensors) and ``per_expert`` (E,) the
    routed-expert bytes of each expert index, summed over the MoE layers."""
    import numpy as np

    import moelab
    from moelab.hf_config import from_hf_config

    E = from_hf_config(moelab.io.read_config_json(folder)).moe.num_experts
    with moelab.io.open_checkpoint(folder) as ckpt:
        per_expert = np.zeros(E, dtype=np.int64)
        replicated = 0
        for name in ckpt.names():
            info = ckpt.info(name)
            nbytes = int(np.prod(info.shape)) * {"BF16": 2, "F32": 4}[info.dtype]
            m = _EXPERT.search(name)
            if m is None:
                replicated += nbytes
            else:
                per_expert[int(m[2])] += nbytes
    return {"replicated": replicated, "experts": int(per_expert.sum()),
            "per_expert": per_expert.tolist()}


def mapped_checkpoint_bytes(path: str = "/proc/self/smaps") -> int:
    """Resident bytes of this process's mappings of ``*.safetensors`` files: the checkpoint
    pages its kernels read (0 where smaps cannot be read)."""
    total, counting = 0, False
    try:
        with open(path) as f:
            for line in f:
                head = line.split()
                if head and not head[0].endswith(":"):   # a mapping's header line
                    counting = head[-1].endswith(".safetensors")
                elif counting and head[0] == "Rss:":
                    total += int(head[1]) * 1024
    except OSError:
        return 0
    return total


def measure(folder: str, tokens: int, comm) -> Dict[str, object]:
    """On this rank (every rank of ``comm`` calls it): the figures of the module docstring."""
    import numpy as np

    import moelab

    rss_start = vm_status(keys=RSS_KEYS)
    model = moelab.hf.load_model(folder, expert_parallel=comm)
    rss_after_load = vm_status(keys=RSS_KEYS)
    rng = np.random.default_rng(0)
    routing: dict = {}
    model(rng.integers(0, model.config.vocab_size, tokens), routing=routing)  # (T,) ids
    # a random model's deeper layers route most tokens to a few experts; each MoE layer
    # also runs on random hidden states, whose routing reaches every expert
    x = rng.standard_normal((tokens, model.config.hidden_size)).astype(np.float32)  # (T, H)
    touched = 0
    for i, stats in routing.items():
        _, more = model.layers[i].ffn(x, return_stats=True)
        touched += int(((stats.tokens_per_expert > 0) | (more.tokens_per_expert > 0)).sum())
    rss_after_forward = vm_status(keys=RSS_KEYS)
    moe = [model.layers[i].ffn for i in routing]
    return {"rank": comm.Get_rank(), "rss_start": rss_start, "rss_after_load": rss_after_load,
            "rss_after_forward": rss_after_forward,
            "checkpoint_mapped": mapped_checkpoint_bytes(), "experts_touched": touched,
            "experts_total": len(routing) * model.config.moe.num_experts,
            "owned_experts": [int(e) for e in moe[0].owned_experts] if moe else []}


def report(folder, ranks: List[Dict[str, object]]) -> Dict[str, object]:
    """Each rank's figures against its bound (module docstring), and the goal met or not."""
    sizes = weight_bytes(folder)
    N = len(ranks)
    rows = []
    for r in ranks:
        held = sum(sizes["per_expert"][e] for e in r["owned_experts"])
        bound = sizes["replicated"] + held
        rss = r["rss_after_forward"]["VmRSS"]
        rows.append(dict(r, held_expert_bytes=held, replicated_plus_held=bound,
                         overhead=rss - bound,
                         growth_beyond_weights=rss - r["rss_start"]["VmRSS"] - bound))
    worst = max(row["overhead"] for row in rows)
    return {"ranks": N, "file_bytes": checkpoint_bytes(folder),
            "replicated_bytes": sizes["replicated"], "expert_bytes": sizes["experts"],
            "expert_bytes_over_n": sizes["experts"] / N, "per_rank": rows,
            "max_overhead": worst,
            "goals": {"every expert touched": all(r["experts_touched"] == r["experts_total"]
                                                  for r in ranks),
                      f"rss_after_forward <= replicated + held experts + "
                      f"{GOAL_OVERHEAD // MIB} MiB": worst <= GOAL_OVERHEAD}}


def warm_page_cache(folder: Path) -> None:
    """Reads every safetensors file once, so that loading does not wait on the disk."""
    for p in sorted(folder.glob("*.safetensors")):
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def run_ranks(folder: Path, n: int, tokens: int) -> List[Dict[str, object]]:
    """The workers under ``mpirun -n n``; their reports, in rank order."""
    root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    cmd = ["mpirun", *root, "--oversubscribe", "-n", str(n), sys.executable, __file__,
           "--worker", str(folder), "--tokens", str(tokens)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker(folder: str, tokens: int) -> None:
    """One rank: measure, then rank 0 prints every rank's figures as one JSON line."""
    from mpi4py import MPI

    import moelab

    moelab.set_num_threads(1)
    comm = MPI.COMM_WORLD
    figures = comm.gather(measure(folder, tokens, comm), root=0)
    if comm.Get_rank() == 0:
        print(json.dumps(figures))


def main(argv: List[str] = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="a qwen3_moe checkpoint folder (default: make one)")
    p.add_argument("-n", type=int, default=None, help="ranks (default 4; 2 with --quick)")
    p.add_argument("--tokens", type=int, default=None,
                   help="tokens of the forward (default 256; 32 with --quick)")
    p.add_argument("--quick", action="store_true", help="a tiny checkpoint, 2 ranks")
    p.add_argument("--worker", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    tokens = args.tokens or (32 if args.quick else 256)
    if args.worker:
        worker(args.worker, tokens)
        return {}
    n = args.n or (2 if args.quick else 4)
    with tempfile.TemporaryDirectory() as tmp:
        folder = (Path(args.checkpoint) if args.checkpoint else
                  make_checkpoint(Path(tmp) / "ckpt", TINY if args.quick else MEDIUM))
        warm_page_cache(folder)
        result = report(folder, run_ranks(folder, n, tokens))
    result["tokens"] = tokens
    print(json.dumps(result, indent=1))
    print(summary(result))
    return result


def summary(result: Dict[str, object]) -> str:
    """The per-rank figures as a Markdown table, in MiB."""
    def mib(b) -> str:
        return f"{b / MIB:.1f}"

    lines = [f"replicated {mib(result['replicated_bytes'])} MiB, experts "
             f"{mib(result['expert_bytes'])} MiB (/{result['ranks']} = "
             f"{mib(result['expert_bytes_over_n'])} MiB), {result['tokens']} tokens",
             "| rank | experts held | VmRSS at start | after load | after forward "
             "(RssAnon / RssFile) | of it the checkpoint's pages | replicated + held | "
             "overhead | growth beyond weights |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["per_rank"]:
        fwd = r["rss_after_forward"]
        lines.append(
            f"| {r['rank']} | {len(r['owned_experts'])} ({r['experts_touched']}/"
            f"{r['experts_total']} touched) | {mib(r['rss_start']['VmRSS'])} | "
            f"{mib(r['rss_after_load']['VmRSS'])} | {mib(fwd['VmRSS'])} ({mib(fwd['RssAnon'])}"
            f" / {mib(fwd['RssFile'])}) | {mib(r['checkpoint_mapped'])} | "
            f"{mib(r['replicated_plus_held'])} | "
            f"{mib(r['overhead'])} | {mib(r['growth_beyond_weights'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
