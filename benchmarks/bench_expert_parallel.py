"""Expert parallelism: the transport measured on one machine, and the cost model for clusters.

    python benchmarks/bench_expert_parallel.py                 # MODELLED part only (no MPI)
    mpirun -n 2 python benchmarks/bench_expert_parallel.py --measured    # + MEASURED part
    ... --quick                                                # small shapes, few repeats

(as root OpenMPI also wants ``--allow-run-as-root --oversubscribe``.)

MEASURED (``--measured``, under ``mpirun -n N``, N >= 2 processes on this machine, so the
"network" is OpenMPI's shared-memory transport): ``moelab.expert_parallel.ExpertParallelMoE``
per MoE layer call of T = 1, 64, 512 tokens, phase by phase from its own ``CommStats.seconds``:
the Allgatherv of the routed ids and weights, all-to-all 1 (one float32 row of H per (token,
slot) pair to its expert's owner), the experts (``run_experts`` on the rank's rows), all-to-all
2 (the rows back), the Allgatherv of the (T, H) output, and route / dispatch / combine; and the
whole call without statistics. Each rank holds only its own experts (contiguous blocks,
float32); the layer shape is Qwen3-30B-A3B's (H 2048, E 128, k 8, I 768); the routing is
uniform (a router with orthonormal rows on Gaussian tokens: i.i.d. logits). Each figure is the
slowest rank's time per repeat; the report gives the median and the spread (min, 25th and 75th
percentile, max) over the repeats. The output is compared with the single-process layer's (all
experts on rank 0): bitwise equal, or the report says NO.

MODELLED: ``moelab.expert_parallel_costs`` for DeepSeek-V3 and Kimi K2 on 2..64 nodes at 25,
100 and 400 Gb/s per node: the tokens/s upper bound from the network alone against the one from
the busiest node's memory bandwidth (MEMORY_GBYTE_PER_S, bf16 weights) at T = 1 and T = 512
tokens per step: a table and docs/expert_parallel_cost.png. No measurement enters it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import moelab  # noqa: E402

__all__ = ["modelled", "measured", "figure", "render_modelled", "render_measured", "main"]

#: Memory read bandwidth per node of the model, GB/s: a 12-channel DDR5-4800 socket peaks at
#: 12 x 38.4 = 460.8 GB/s; 400 is a round figure a little below that peak.
MEMORY_GBYTE_PER_S = 400.0
MODELS = ("deepseek-v3", "kimi-k2")
NODES = (2, 4, 8, 16, 32, 64)
LINKS_GBIT_PER_S = (25, 100, 400)
STEP_TOKENS = (1, 512)
MEASURED_TOKENS = (1, 64, 512)
#: The measured layer: Qwen3-30B-A3B's MoE layer shape (the preset's), or a small one (--quick).
MEASURED_PRESET = "qwen3-30b-a3b"
QUICK_SHAPE = dict(hidden_size=256, num_experts=16, num_experts_per_tok=4,
                   moe_intermediate_size=128)


# ---------------------------------------------------------------------------------------------
# modelled
# ---------------------------------------------------------------------------------------------
def modelled(quick: bool = False) -> List[Dict[str, object]]:
    """One row per (model, nodes, link): the network and memory bounds (see the docstring)."""
    nodes = (2, 8, 64) if quick else NODES
    rows = []
    for name in MODELS:
        for n in nodes:
            for link in LINKS_GBIT_PER_S:
                row: Dict[str, object] = {"model": name, "nodes": n, "link_gbit_per_s": link}
                for T in STEP_TOKENS:
                    c = moelab.expert_parallel_costs(name, n, link, MEMORY_GBYTE_PER_S, tokens=T)
                    row[f"network_bytes_per_token_T{T}"] = c.network_bytes_per_token
                    row[f"network_tokens_per_s_T{T}"] = c.network_tokens_per_s
                    row[f"memory_tokens_per_s_T{T}"] = c.memory_tokens_per_s
                    row[f"layer_network_tokens_per_s_T{T}"] = c.layer_network_tokens_per_s
                    row["remote_pair_fraction_T512"] = c.traffic.remote_pair_fraction
                local = moelab.expert_parallel_costs(name, n, link, MEMORY_GBYTE_PER_S,
                                                     tokens=512, allgather_output=False)
                row["local_network_tokens_per_s_T512"] = local.network_tokens_per_s
                rows.append(row)
    return rows


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def render_modelled(rows: List[Dict[str, object]]) -> str:
    L = ["#### Modelled: DeepSeek-V3 and Kimi K2 on 2-64 nodes (cost model, nothing measured)", "",
         "`moelab.expert_parallel_costs`: network bytes per token = 58 (DeepSeek-V3) or 60 (Kimi "
         "K2) MoE layers x (the rows to the experts' nodes and back + the output allgather + the "
         "gathered ids and weights + the input check's agreement), float32 activations, "
         "uniform routing, contiguous expert blocks, one rank per node; network bound = nodes x "
         "link bandwidth / those bytes (every link busy, no latency); memory bound = T x "
         f"{MEMORY_GBYTE_PER_S:g} GB/s / the bf16 weight bytes the busiest node reads per step "
         "of T tokens (the replicated attention, dense layers, shared experts and LM head, plus "
         "its experts that the T tokens hit). The forward_local column drops the output "
         "allgather (data parallel over tokens: each node keeps its own tokens' outputs).", "",
         "| model | nodes | link Gb/s | network MB/token | network bound tokens/s | one MoE "
         "layer, tokens/s | forward_local network bound, tokens/s | memory bound T=1, "
         "tokens/s | memory bound T=512, tokens/s |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['model']} | {r['nodes']} | {r['link_gbit_per_s']} | "
                 f"{r['network_bytes_per_token_T512'] / 1e6:.2f} | "
                 f"{_fmt(r['network_tokens_per_s_T512'])} | "
                 f"{_fmt(r['layer_network_tokens_per_s_T512'])} | "
                 f"{_fmt(r['local_network_tokens_per_s_T512'])} | "
                 f"{_fmt(r['memory_tokens_per_s_T1'])} | {_fmt(r['memory_tokens_per_s_T512'])} |")
    extra = max(r["network_bytes_per_token_T1"] / r["network_bytes_per_token_T512"] - 1
                for r in rows)
    L += ["", "Network columns at T = 512 tokens per step; at T = 1 the input check's agreement "
          f"(N (N - 1) x 16 bytes per layer call) adds at most {100 * extra:.2g} % to the bytes."]
    return "\n".join(L)


def figure(rows: List[Dict[str, object]], path: Path) -> Path:
    """docs/expert_parallel_cost.png: both bounds against nodes, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(12, 5.4), sharey=True,
                             layout="constrained")
    for ax, name in zip(axes, MODELS):
        mine = [r for r in rows if r["model"] == name]
        nodes = sorted({r["nodes"] for r in mine})
        for link, style in zip(LINKS_GBIT_PER_S, ("o-", "s-", "^-")):
            ys = [next(r["network_tokens_per_s_T512"] for r in mine
                       if r["nodes"] == n and r["link_gbit_per_s"] == link) for n in nodes]
            ax.plot(nodes, ys, style, label=f"network bound, {link} Gb/s per node")
        ys = [next(r["local_network_tokens_per_s_T512"] for r in mine
                   if r["nodes"] == n and r["link_gbit_per_s"] == 100) for n in nodes]
        ax.plot(nodes, ys, "s-.", color="tab:gray",
                label="network bound, 100 Gb/s, forward_local (no output allgather)")
        for T, style in zip(STEP_TOKENS, ("k--", "k:")):
            ys = [next(r[f"memory_tokens_per_s_T{T}"] for r in mine if r["nodes"] == n)
                  for n in nodes]
            ax.plot(nodes, ys, style, label=f"memory bound, {T} token{'s' if T > 1 else ''} "
                    f"per step, {MEMORY_GBYTE_PER_S:g} GB/s per node")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(nodes, [str(n) for n in nodes])
        ax.set_xlabel("nodes (one rank per node)")
        ax.set_title(f"{name}: expert parallelism, modelled upper bounds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("tokens/s (whole model, upper bound)")
    fig.suptitle("MODELLED, not measured (moelab.expert_parallel_costs): network bounds at 512 "
                 "tokens per step, float32 activations on the wire, bf16 weights, uniform "
                 "routing", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9)
    fig.savefig(path, dpi=80, pil_kwargs={"optimize": True})
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# measured (under mpirun): moelab.expert_parallel.ExpertParallelMoE, phase by phase
# ---------------------------------------------------------------------------------------------
#: The phases ExpertParallelMoE times (``CommStats.seconds``), in order; COMM are collectives.
PHASES = ("route", "gather_ids", "dispatch", "alltoall_rows", "experts", "alltoall_back",
          "combine", "gather_y")
COMM = ("gather_ids", "alltoall_rows", "alltoall_back", "gather_y")


def _spread(times) -> Dict[str, float]:
    t = np.asarray(times)
    return {"median_s": float(np.median(t)), "min_s": float(t.min()),
            "p25_s": float(np.percentile(t, 25)), "p75_s": float(np.percentile(t, 75)),
            "max_s": float(t.max()), "repeats": int(t.size)}


def _owner(num_experts: int, size: int) -> np.ndarray:
    """(E,) owning rank of each expert: contiguous np.array_split blocks (placement=None)."""
    owner = np.empty(num_experts, dtype=np.int64)
    for r, block in enumerate(np.array_split(np.arange(num_experts), size)):
        owner[block] = r
    return owner


def _weights(moe: "moelab.MoEConfig", held: np.ndarray, seed: int) -> Dict[str, object]:
    """Weights of a layer holding the experts ``held`` (E,) bool (None parts for the others).

    Expert e's matrices come from a generator seeded with (seed, e), so every rank makes the
    same expert without making the others. The router has orthonormal rows: Gaussian tokens
    then get i.i.d. logits, so routing is uniform (every set of k experts equally likely)."""
    E, H, I = moe.num_experts, moe.hidden_size, moe.moe_intermediate_size
    q, _ = np.linalg.qr(np.random.default_rng([seed, E]).standard_normal((H, E)))  # (H, E)
    w: Dict[str, object] = {"router.weight": np.ascontiguousarray(q.T, dtype=np.float32)}
    gate_up: List[Optional[np.ndarray]] = []
    down: List[Optional[np.ndarray]] = []
    for e in range(E):
        if not held[e]:
            gate_up += [None, None]
            down.append(None)
            continue
        rng = np.random.default_rng([seed, e])
        gate_up += [(rng.standard_normal((I, H), dtype=np.float32) / np.sqrt(H)) for _ in "gu"]
        down.append(rng.standard_normal((H, I), dtype=np.float32) / np.sqrt(I))
    w["experts.gate_up_proj"] = gate_up
    w["experts.down_proj"] = down
    return w


def _layer(moe: "moelab.MoEConfig", held: np.ndarray, seed: int) -> "moelab.MoELayer":
    from moelab._core_weights import NO_INIT  # an empty layer: only the experts given take memory

    layer = moelab.MoELayer(moe, seed=NO_INIT)
    layer.load_weights(_weights(moe, held, seed))
    return layer


def _slowest(comm, values: List[float]) -> np.ndarray:
    """Elementwise max over the ranks (a phase ends when its slowest rank is done)."""
    from mpi4py import MPI

    mine = np.asarray(values, dtype=np.float64)
    out = np.empty_like(mine)
    comm.Allreduce(mine, out, op=MPI.MAX)
    return out


def transport_only(comm, flow: np.ndarray, per_rank: np.ndarray, H: int, k: int,
                   repeats: int) -> Dict[str, Dict[str, float]]:
    """The layer's four collectives alone, on buffers made once, an untimed barrier before
    each (so that no rank's compute is in the time): flow (N, N) rows from rank r to rank s
    (as a layer call moved them), per_rank (N,) tokens of each rank's slice."""
    from mpi4py import MPI

    rank = comm.Get_rank()
    first = np.concatenate([[0], np.cumsum(per_rank)[:-1]])                    # (N,)
    send, recv = flow[rank], flow[:, rank]                                      # (N,) rows
    send_at = np.concatenate([[0], np.cumsum(send)[:-1]])
    recv_at = np.concatenate([[0], np.cumsum(recv)[:-1]])
    rng = np.random.default_rng(rank)
    packed = rng.integers(0, 1 << 30, (per_rank[rank], 2 * k), dtype=np.int32)  # (t_r, 2k)
    gathered = np.empty((per_rank.sum(), 2 * k), dtype=np.int32)                # (T, 2k)
    rows_out = rng.standard_normal((send.sum(), H)).astype(np.float32)          # (S, H)
    rows_in = np.empty((recv.sum(), H), dtype=np.float32)                       # (R, H)
    back = np.empty_like(rows_out)                                              # (S, H)
    y_mine = rng.standard_normal((per_rank[rank], H)).astype(np.float32)        # (t_r, H)
    y = np.empty((per_rank.sum(), H), dtype=np.float32)                         # (T, H)
    ops = {
        "gather_ids": lambda: comm.Allgatherv(
            [packed, MPI.INT32_T], [gathered, (per_rank * 2 * k, first * 2 * k), MPI.INT32_T]),
        "alltoall_rows": lambda: comm.Alltoallv(
            [rows_out, (send * H, send_at * H), MPI.FLOAT],
            [rows_in, (recv * H, recv_at * H), MPI.FLOAT]),
        "alltoall_back": lambda: comm.Alltoallv(
            [rows_in, (recv * H, recv_at * H), MPI.FLOAT],
            [back, (send * H, send_at * H), MPI.FLOAT]),
        "gather_y": lambda: comm.Allgatherv(
            [y_mine, MPI.FLOAT], [y, (per_rank * H, first * H), MPI.FLOAT]),
    }
    out = {}
    for name, op in ops.items():
        op()  # warm-up
        times = []
        for _ in range(repeats):
            comm.Barrier()
            start = time.perf_counter()
            op()
            times.append(float(_slowest(comm, [time.perf_counter() - start])[0]))
        out[name] = _spread(times)
    return out


def _mpi_library() -> str:
    """The MPI library's version line and mpi4py's version."""
    import mpi4py
    from mpi4py import MPI

    line = MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()
    return f"{line}; mpi4py {mpi4py.__version__}"


def measured(comm, quick: bool = False, repeats: Optional[int] = None,
             check: bool = True) -> Dict[str, object]:
    """The measured part on every rank (rank 0's return value holds the results)."""
    from moelab.expert_parallel import ExpertParallelMoE

    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        raise SystemExit("--measured needs at least 2 MPI processes: mpirun -n 2 python "
                         "benchmarks/bench_expert_parallel.py --measured")
    moe = moelab.preset(MEASURED_PRESET).moe
    if quick:
        moe = moe.replace(**QUICK_SHAPE)
    moelab.set_num_threads(1)  # one core per rank
    E, H, k = moe.num_experts, moe.hidden_size, moe.num_experts_per_tok
    layer = _layer(moe, _owner(E, size) == rank, seed=0)
    ep = ExpertParallelMoE(layer, comm)
    results: Dict[str, object] = {"layer": MEASURED_PRESET + (" (quick shape)" if quick else ""),
                                  "config": {"hidden_size": H, "num_experts": E,
                                             "num_experts_per_tok": k,
                                             "moe_intermediate_size": moe.moe_intermediate_size},
                                  "ranks": size, "threads_per_rank": 1, "rows": [],
                                  "mpi_library": _mpi_library()}
    outputs = []  # (x, y) per T
    for T in MEASURED_TOKENS:
        reps = repeats or (3 if quick else (30 if T <= 64 else 8))
        x = np.random.default_rng(T).standard_normal((T, H)).astype(np.float32)
        y, stats = ep(x, return_stats=True)  # warm-up, the output and the rows moved
        per_phase: Dict[str, List[float]] = {p: [] for p in PHASES}
        for _ in range(reps):  # the phases (return_stats=True: CommStats.seconds)
            comm.Barrier()
            seconds = ep(x, return_stats=True)[1].comm.seconds
            for p, t in zip(PHASES, _slowest(comm, [seconds[p] for p in PHASES])):
                per_phase[p].append(float(t))
        calls = []
        for _ in range(reps):  # the whole call as a model runs it (no statistics)
            comm.Barrier()
            start = time.perf_counter()
            ep(x)
            calls.append(float(_slowest(comm, [time.perf_counter() - start])[0]))
        row: Dict[str, object] = {"T": T, **{p: _spread(v) for p, v in per_phase.items()},
                                  "call": _spread(calls)}
        row["collectives_median_s"] = sum(row[p]["median_s"] for p in COMM)
        c = stats.comm
        tokens = c.tokens.astype(np.int64)                                       # (N,)
        sent = (int(c.bytes_sent.sum())                                          # both all-to-alls
                + int(tokens.sum()) * (size - 1) * (4 * H + 8 * k)               # y, ids + weights
                + size * (size - 1) * 16)                                        # the agreement
        row["network_bytes_per_token"] = sent / T
        row["model_bytes_per_token"] = moelab.expert_parallel_traffic(moe, size,
                                                                      tokens=T).bytes_per_token
        row["rows_sent"] = c.rows_sent.tolist()
        owner = _owner(E, size)
        src = np.repeat(np.repeat(np.arange(size), tokens), k)                   # (T*k,)
        dest = owner[np.asarray(stats.topk_ids).ravel()]                         # (T*k,)
        flow = np.bincount(src * size + dest, minlength=size * size).reshape(size, size)
        row["transport_only"] = transport_only(comm, flow.astype(np.int64), tokens, H, k,
                                               reps if T > 1 else 2 * reps)
        row["transport_only_median_s"] = sum(v["median_s"]
                                             for v in row["transport_only"].values())
        row["imbalance"] = float(c.imbalance)
        outputs.append((x, y))
        results["rows"].append(row)
    if check:  # the single-process layer on rank 0 (all experts): bitwise the same outputs?
        del ep, layer
        same = None
        if rank == 0:
            full = _layer(moe, np.ones(E, dtype=bool), seed=0)
            same = [bool(np.array_equal(full(x), y)) for x, y in outputs]
        for row, equal in zip(results["rows"], comm.bcast(same)):
            row["equals_single_process"] = equal
    return results


def _ms(s: float) -> str:
    return f"{s * 1e3:.3g}"


def render_measured(res: Dict[str, object]) -> str:
    c = res["config"]
    L = [f"#### Measured: mpirun -n {res['ranks']} over shared memory on this machine", "",
         "`moelab.expert_parallel.ExpertParallelMoE` on a MoE layer of H "
         f"{c['hidden_size']}, E {c['num_experts']}, k {c['num_experts_per_tok']}, I "
         f"{c['moe_intermediate_size']} ({res['layer']}); float32 weights and "
         f"activations; each rank holds its {c['num_experts'] // res['ranks']} experts "
         "(contiguous blocks); uniform routing (a router with orthonormal rows, Gaussian "
         f"tokens); {res['threads_per_rank']} thread per rank. Times in ms: median [min, p25-p75, "
         "max] over the repeats of the slowest rank's time per phase, from the layer's own "
         "`CommStats.seconds` (a collective's time includes waiting for the slowest rank to "
         "arrive); whole call: `ep(x)` without statistics, separate repeats.", "",
         "| T | gather ids (ids + weights) | all-to-all rows | all-to-all back | gather y | "
         "collectives, sum of medians | experts (`run_experts`) | collectives / experts | "
         "whole call | network bytes/token (sent / model) | = single process |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(t):
        return (f"{_ms(t['median_s'])} [{_ms(t['min_s'])}, {_ms(t['p25_s'])}-"
                f"{_ms(t['p75_s'])}, {_ms(t['max_s'])}]")

    for r in res["rows"]:
        comp = r["experts"]["median_s"]
        same = {True: "bitwise", False: "NO", None: "not checked"}[r.get("equals_single_process")]
        L.append(f"| {r['T']} | " + " | ".join(cell(r[p]) for p in COMM)
                 + f" | {_ms(r['collectives_median_s'])} | {cell(r['experts'])} | "
                 f"{r['collectives_median_s'] / comp:.3g} | {cell(r['call'])} | "
                 f"{r['network_bytes_per_token']:,.0f} / {r['model_bytes_per_token']:,.0f} | "
                 f"{same} |")
    L += ["", "The same four collectives alone (ms, same format): the row counts of the call "
          "above on buffers made once, an untimed barrier before each, so no rank's compute is "
          "in them:", "",
          "| T | " + " | ".join(COMM) + " | sum of medians | / experts |",
          "|" + "---|" * (len(COMM) + 3)]
    for r in res["rows"]:
        t = r["transport_only"]
        L.append(f"| {r['T']} | " + " | ".join(cell(t[p]) for p in COMM)
                 + f" | {_ms(r['transport_only_median_s'])} | "
                 f"{r['transport_only_median_s'] / r['experts']['median_s']:.3g} |")
    others = [p for p in PHASES if p not in COMM and p != "experts"]
    L += ["", "The other phases (ms, same format; route includes the input check's agreement):",
          "", "| T | " + " | ".join(others) + " |", "|" + "---|" * (len(others) + 1)]
    for r in res["rows"]:
        L.append(f"| {r['T']} | " + " | ".join(cell(r[p]) for p in others) + " |")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    ap.add_argument("--measured", action="store_true",
                    help="also run the measured part (under mpirun -n 2 or more)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per figure")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the bitwise comparison with the single-process layer (which "
                    "builds all experts on rank 0)")
    ap.add_argument("--figure", type=Path, default=REPO / "docs" / "expert_parallel_cost.png")
    ap.add_argument("--json", type=Path, default=BENCH / "results_expert_parallel.json")
    args = ap.parse_args(argv)

    comm = None
    rank = 0
    if args.measured:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        rank = comm.Get_rank()
    results: Dict[str, object] = {}
    if args.measured:
        try:
            results["measured"] = measured(comm, quick=args.quick, repeats=args.repeats,
                                           check=not args.no_check)
        except BaseException:  # the other ranks would wait in a collective for ever
            traceback.print_exc()
            sys.stderr.flush()
            comm.Abort(1)
    if rank != 0:
        return results
    from _machine import git_commit, load_average, lscpu

    results["machine"] = {"lscpu": lscpu(), "load_average": load_average(),
                          "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    results["modelled"] = modelled(quick=args.quick)
    figure(results["modelled"], args.figure)
    commit = git_commit().get("commit", "?")[:7]
    launcher = f"mpirun -n {results['measured']['ranks']} " if args.measured else ""
    text = ["## Expert parallelism", "", "### Network: the transport measured, the cost model "
            "(issue 20, point 4)", "",
            f"Generated by `{launcher}python benchmarks/"
            f"bench_expert_parallel.py{' --measured' if args.measured else ''}"
            f"{' --quick' if args.quick else ''}` on {results['machine']['started']} at commit "
            f"{commit}. MEASURED = timed on this machine; MODELLED = computed by the cost model,"
            " no measurement in it. Machine-readable: `results_expert_parallel.json`.", ""]
    if "measured" in results:
        cpu = results["machine"]["lscpu"]
        text += [render_measured(results["measured"]), "",
                 f"Machine (lscpu): {cpu.get('Model name', '?')}, {cpu.get('CPU(s)', '?')} CPUs "
                 f"({cpu.get('Core(s) per socket', '?')} cores x "
                 f"{cpu.get('Thread(s) per core', '?')} threads), L2 {cpu.get('L2 cache', '?')},"
                 f" L3 {cpu.get('L3 cache', '?')}, SIMD {cpu.get('SIMD flags', '?')}; "
                 f"{results['measured']['mpi_library']}; load average (1/5/15 min) after the "
                 f"run {results['machine']['load_average']}: the machine was shared.", ""]
    else:
        text += ["(measured part not run: start it with `mpirun -n 2 python "
                 "benchmarks/bench_expert_parallel.py --measured`)", ""]
    text += [render_modelled(results["modelled"]), "",
             f"Figure: {args.figure.name}."]
    print("\n".join(text))
    args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return results


if __name__ == "__main__":
    main()
