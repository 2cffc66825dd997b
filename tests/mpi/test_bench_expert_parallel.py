"""Smoke test of the measured part of benchmarks/bench_expert_parallel.py, on every rank of
``mpirun -n N python -m pytest tests/mpi`` (N >= 2; with one process the part refuses to run).

No timing is asserted: the figures are only produced, never compared. What is asserted: every
phase was timed on every repeat, ExpertParallelMoE's output equals the single-process layer's
bitwise, and the bytes it moved are positive.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_expert_parallel as bench  # noqa: E402


def test_measured_quick(comm):
    if comm.Get_size() < 2:
        with pytest.raises(SystemExit, match="at least 2 MPI processes"):
            bench.measured(comm, quick=True, repeats=2)
        return
    res = bench.measured(comm, quick=True, repeats=2)
    assert res["ranks"] == comm.Get_size()
    assert [row["T"] for row in res["rows"]] == list(bench.MEASURED_TOKENS)
    for row in res["rows"]:
        for phase in bench.PHASES + ("call",):
            assert row[phase]["repeats"] == 2 and row[phase]["median_s"] > 0, phase
        for phase in bench.COMM:
            assert row["transport_only"][phase]["median_s"] > 0, phase
        assert row["equals_single_process"] is True  # ExpertParallelMoE is exact
        assert row["network_bytes_per_token"] > 0 and row["model_bytes_per_token"] > 0
    if comm.Get_rank() == 0:
        text = bench.render_measured(res)
        assert f"Measured: mpirun -n {comm.Get_size()}" in text and "| bitwise |" in text
