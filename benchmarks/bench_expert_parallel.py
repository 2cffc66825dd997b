"""Expert parallelism: the transport measured on one machine, and the cost model for clusters.

    python benchmarks/bench_expert_parallel.py                 # MODELLED part only (no MPI)
    mpirun -n 2 python benchmarks/bench_expert_parallel.py --measured    # + MEASURED part
    ... --quick                                                # small shapes, few repeats

(as root OpenMPI also wants ``--allow-run-as-root --oversubscribe``.)

MEASURED (``--measured``, under ``mpirun -n N``, N >= 2 processes on this machine, so the
"network" is OpenMPI's shared-memory transport): per MoE layer call of T = 1, 64, 512 tokens,
the time of each collective of the expert-parallel transport, separately, with mpi4py's
buffer-based calls on NumPy arrays: the Allgatherv of the (T, k) int32 routed ids, the Alltoall
of the row counts, all-to-all 1 (Alltoallv of one float32 row of H per (token, slot) pair to its
expert's owner), all-to-all 2 (the rows back) and the Allgatherv of the (T, H) output; and the
expert compute of the rows one rank receives. The routing is uniform (each token's k experts a
seeded random set, the same on every rank), the layer shape Qwen3-30B-A3B's (H 2048, E 128,
k 8, I 768; float32 as moelab sends activations), experts in contiguous blocks. Each figure is
the slowest rank's time per repeat (a collective ends when its last rank does); the report
gives the median and the spread (min, 25th and 75th percentile, max) over the repeats.
The expert compute is a stand-in until the expert-parallel layer lands: a ``moelab.MoELayer``
holding one rank's E/N experts with top-k/N routing, called on all T tokens, which runs the
same number of rows (T k / N) through as many experts with the same kernels (its own router and
combine add a little).

MODELLED: ``moelab.expert_parallel_costs`` for DeepSeek-V3 and Kimi K2 on 2..64 nodes at 25,
100 and 400 Gb/s per node: the tokens/s upper bound from the network alone against the one from
the busiest node's memory bandwidth (MEMORY_GBYTE_PER_S, bf16 weights) at T = 1 and T = 512
tokens per step: a table and docs/expert_parallel_cost.png. No measurement enters it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
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
PHASES = ("ids_allgather", "counts_alltoall", "alltoall_1", "alltoall_2", "output_allgather")


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
         "K2) MoE layers x (the rows to the experts' nodes and back + the output allgather + ids "
         "and counts), float32 activations, uniform routing, contiguous expert blocks, one rank "
         "per node; network bound = nodes x link bandwidth / those bytes (every link busy, no "
         "latency); memory bound = T x " f"{MEMORY_GBYTE_PER_S:g} GB/s / the bf16 weight bytes "
         "the busiest node reads per step of T tokens (the replicated attention, dense layers, "
         "shared experts and LM head, plus its experts that the T tokens hit). The "
         "forward_local column drops the output allgather (data parallel over tokens: each "
         "node keeps its own tokens' outputs).", "",
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
    L += ["", "Network columns at T = 512 tokens per step; at T = 1 the count exchange (N (N - 1)"
          f" x 8 bytes per layer call) adds at most {100 * extra:.2g} % to the bytes."]
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
# measured (under mpirun)
# ---------------------------------------------------------------------------------------------
def _spread(times: List[float]) -> Dict[str, float]:
    t = np.asarray(times)
    return {"median_s": float(np.median(t)), "min_s": float(t.min()),
            "p25_s": float(np.percentile(t, 25)), "p75_s": float(np.percentile(t, 75)),
            "max_s": float(t.max()), "repeats": int(t.size)}


def _timed(comm, fn, repeats: int) -> Dict[str, float]:
    """The slowest rank's time of ``fn()`` per repeat (a barrier first), over ``repeats``."""
    from mpi4py import MPI

    fn()  # warm-up: buffers touched, connections made
    times = []
    for _ in range(repeats):
        comm.Barrier()
        start = time.perf_counter()
        fn()
        dt = time.perf_counter() - start
        times.append(comm.allreduce(dt, op=MPI.MAX))
    return _spread(times)


def _owner(num_experts: int, size: int) -> np.ndarray:
    owner = np.empty(num_experts, dtype=np.int64)  # (E,)
    for r, block in enumerate(np.array_split(np.arange(num_experts), size)):
        owner[block] = r
    return owner


def measure_transport(comm, moe: "moelab.MoEConfig", T: int, repeats: int, seed: int = 0):
    """Times of each collective of one layer call of T tokens (module docstring)."""
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    E, k, H = moe.num_experts, moe.num_experts_per_tok, moe.hidden_size
    rng = np.random.default_rng(seed + T)  # the same routing on every rank
    ids = np.stack([rng.choice(E, size=k, replace=False) for _ in range(T)]).astype(np.int32)
    owner = _owner(E, size)
    slices = np.array_split(np.arange(T), size)
    mine = slices[rank]
    tokens = np.array([len(s) for s in slices], dtype=np.int64)      # (N,)
    token_offsets = np.concatenate([[0], np.cumsum(tokens)[:-1]])    # (N,)

    # ids: every rank's (t_r, k) slice to every rank
    ids_all = np.empty((T, k), dtype=np.int32)                        # (T, k)
    ids_mine = np.ascontiguousarray(ids[mine])                        # (t_r, k)
    def ids_allgather():
        comm.Allgatherv([ids_mine, MPI.INT32_T],
                        [ids_all, (tokens * k, token_offsets * k), MPI.INT32_T])

    # counts: rows this rank sends to each rank
    dest = owner[ids[mine]].ravel()                                   # (t_r * k,)
    send_rows = np.bincount(dest, minlength=size).astype(np.int64)    # (N,)
    recv_rows = np.empty(size, dtype=np.int64)                        # (N,)
    def counts_alltoall():
        comm.Alltoall([send_rows, MPI.INT64_T], [recv_rows, MPI.INT64_T])
    counts_alltoall()
    send_off = np.concatenate([[0], np.cumsum(send_rows)[:-1]])
    recv_off = np.concatenate([[0], np.cumsum(recv_rows)[:-1]])
    rng_x = np.random.default_rng(seed + 1000 * rank + T)
    rows_out = rng_x.standard_normal((int(send_rows.sum()), H)).astype(np.float32)  # (R_s, H)
    rows_in = np.empty((int(recv_rows.sum()), H), dtype=np.float32)              # (R_r, H)
    def alltoall_1():
        comm.Alltoallv([rows_out, (send_rows * H, send_off * H), MPI.FLOAT],
                       [rows_in, (recv_rows * H, recv_off * H), MPI.FLOAT])
    back = np.empty_like(rows_out)                                                  # (R_s, H)
    def alltoall_2():
        comm.Alltoallv([rows_in, (recv_rows * H, recv_off * H), MPI.FLOAT],
                       [back, (send_rows * H, send_off * H), MPI.FLOAT])
    y_mine = rng_x.standard_normal((len(mine), H)).astype(np.float32)               # (t_r, H)
    y_all = np.empty((T, H), dtype=np.float32)                                      # (T, H)
    def output_allgather():
        comm.Allgatherv([y_mine, MPI.FLOAT], [y_all, (tokens * H, token_offsets * H), MPI.FLOAT])

    out = {name: _timed(comm, fn, repeats) for name, fn in zip(
        PHASES, (ids_allgather, counts_alltoall, alltoall_1, alltoall_2, output_allgather))}
    # bytes that left each rank (the self part of an Alltoallv is a copy, not sent)
    remote = int(send_rows.sum() - send_rows[rank])
    sent = (remote * H * 4 * 2 + len(mine) * (size - 1) * (H * 4 + k * 4)
            + (size - 1) * 8)
    out["network_bytes_per_token"] = comm.allreduce(sent) / T
    out["rows_received"] = comm.allgather(int(recv_rows.sum()))
    return out


def _expert_stand_in(moe: "moelab.MoEConfig", size: int, seed: int) -> "moelab.MoELayer":
    """One rank's share of the experts as a layer: E/N experts, top-k/N (module docstring)."""
    local = moe.replace(num_experts=moe.num_experts // size,
                        num_experts_per_tok=max(1, moe.num_experts_per_tok // size),
                        n_shared_experts=0, shared_expert_gate=False)
    return moelab.MoELayer(local, seed=seed)


def _mpi_library() -> str:
    """The MPI library's version line and mpi4py's version."""
    import mpi4py
    from mpi4py import MPI

    line = MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()
    return f"{line}; mpi4py {mpi4py.__version__}"


def measured(comm, quick: bool = False, repeats: Optional[int] = None) -> Dict[str, object]:
    """The measured part on every rank (rank 0's return value holds the results)."""
    size = comm.Get_size()
    if size < 2:
        raise SystemExit("--measured needs at least 2 MPI processes: mpirun -n 2 python "
                         "benchmarks/bench_expert_parallel.py --measured")
    moe = moelab.preset(MEASURED_PRESET).moe
    if quick:
        moe = moe.replace(**QUICK_SHAPE)
    moelab.set_num_threads(1)  # one core per rank
    layer = _expert_stand_in(moe, size, seed=comm.Get_rank())
    results: Dict[str, object] = {"layer": MEASURED_PRESET + (" (quick shape)" if quick else ""),
                                  "config": {"hidden_size": moe.hidden_size,
                                             "num_experts": moe.num_experts,
                                             "num_experts_per_tok": moe.num_experts_per_tok,
                                             "moe_intermediate_size": moe.moe_intermediate_size},
                                  "ranks": size, "threads_per_rank": 1, "rows": [],
                                  "mpi_library": _mpi_library()}
    for T in MEASURED_TOKENS:
        reps = repeats or (3 if quick else (50 if T <= 64 else 30))
        row: Dict[str, object] = {"T": T}
        row.update(measure_transport(comm, moe, T, reps))
        x = np.random.default_rng(T).standard_normal((T, moe.hidden_size)).astype(np.float32)
        comp_reps = repeats or (3 if quick else (10 if T <= 64 else 5))
        row["expert_compute"] = _timed(comm, lambda: layer(x), comp_reps)
        row["expert_compute_rows"] = T * layer.config.num_experts_per_tok
        model = moelab.expert_parallel_traffic(moe, size, tokens=T)
        row["model_bytes_per_token"] = model.bytes_per_token
        row["transport_median_s"] = sum(row[p]["median_s"] for p in PHASES)
        results["rows"].append(row)
    return results


def _ms(s: float) -> str:
    ms = s * 1e3
    return f"{ms:.3g}"


def render_measured(res: Dict[str, object]) -> str:
    c = res["config"]
    L = [f"#### Measured: mpirun -n {res['ranks']} over shared memory on this machine", "",
         f"Layer shape {res['layer']}: H {c['hidden_size']}, E {c['num_experts']}, k "
         f"{c['num_experts_per_tok']}, I {c['moe_intermediate_size']}; float32 activations; "
         f"uniform random routing; {res['threads_per_rank']} thread per rank. Times in ms: "
         "median [min, p25-p75, max] over the repeats of the slowest rank's time. Expert "
         "compute: the stand-in layer (E/N experts, top-k/N) on T tokens.", "",
         "| T | ids allgather | counts alltoall | all-to-all 1 | all-to-all 2 | output allgather "
         "| transport total | expert compute | transport / compute | network bytes/token "
         "(sent / model) |",
         "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(t):
        return (f"{_ms(t['median_s'])} [{_ms(t['min_s'])}, {_ms(t['p25_s'])}-"
                f"{_ms(t['p75_s'])}, {_ms(t['max_s'])}]")

    for r in res["rows"]:
        comp = r["expert_compute"]["median_s"]
        L.append(f"| {r['T']} | " + " | ".join(cell(r[p]) for p in PHASES)
                 + f" | {_ms(r['transport_median_s'])} | {cell(r['expert_compute'])} | "
                 f"{r['transport_median_s'] / comp:.3g} | "
                 f"{r['network_bytes_per_token']:,.0f} / {r['model_bytes_per_token']:,.0f} |")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    ap.add_argument("--measured", action="store_true",
                    help="also run the measured part (under mpirun -n 2 or more)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per figure")
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
        results["measured"] = measured(comm, quick=args.quick, repeats=args.repeats)
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
