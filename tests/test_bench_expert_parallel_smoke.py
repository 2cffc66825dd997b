"""Smoke test of benchmarks/bench_expert_parallel.py: the modelled part (no MPI) in this
process, the measured part under ``mpirun -n 2`` in a child process.

No timing is asserted: the figures are only produced, never compared. The measured part needs
OpenMPI and mpi4py (the ``mpi`` extra): without them it is skipped, unless MOELAB_REQUIRE_MPI=1,
which makes the missing piece a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import moelab

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_expert_parallel as bench  # noqa: E402


def test_modelled_quick_writes_the_table_and_the_figure(tmp_path, capsys):
    fig, out = tmp_path / "cost.png", tmp_path / "r.json"
    r = bench.main(["--quick", "--figure", str(fig), "--json", str(out)])
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out.read_text())["modelled"] == json.loads(json.dumps(r["modelled"]))
    rows = r["modelled"]
    assert len(rows) == len(bench.MODELS) * 3 * len(bench.LINKS_GBIT_PER_S)
    for row in rows:
        c = moelab.expert_parallel_costs(row["model"], row["nodes"], row["link_gbit_per_s"],
                                         bench.MEMORY_GBYTE_PER_S, tokens=512)
        assert row["network_tokens_per_s_T512"] == c.network_tokens_per_s
        assert row["memory_tokens_per_s_T512"] > row["memory_tokens_per_s_T1"] > 0
    text = capsys.readouterr().out
    assert "Modelled" in text and "nothing measured" in text
    assert "measured part not run" in text
    assert "| deepseek-v3 | 64 | 400 |" in text and "| kimi-k2 | 2 | 25 |" in text


def _mpi_or_skip() -> str:
    mpirun = shutil.which("mpirun")
    missing = []
    if mpirun is None:
        missing.append("mpirun (Debian: openmpi-bin)")
    if importlib.util.find_spec("mpi4py") is None:
        missing.append("mpi4py (pip install moelab[mpi])")
    if missing:
        if os.environ.get("MOELAB_REQUIRE_MPI") == "1":
            pytest.fail(f"MOELAB_REQUIRE_MPI=1 but {', '.join(missing)} missing")
        pytest.skip(f"{', '.join(missing)} missing")
    return mpirun


def test_measured_quick_under_mpirun(tmp_path):
    mpirun = _mpi_or_skip()
    out = tmp_path / "r.json"
    cmd = [mpirun, "--oversubscribe", "-n", "2"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    cmd += [sys.executable, str(BENCH / "bench_expert_parallel.py"), "--quick", "--measured",
            "--repeats", "2", "--figure", str(tmp_path / "cost.png"), "--json", str(out)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(moelab.__file__).resolve().parent.parent)]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    measured = json.loads(out.read_text())["measured"]
    assert measured["ranks"] == 2
    assert [row["T"] for row in measured["rows"]] == list(bench.MEASURED_TOKENS)
    for row in measured["rows"]:
        for phase in bench.PHASES + ("call",):
            assert row[phase]["repeats"] == 2 and row[phase]["median_s"] > 0, phase
        assert row["equals_single_process"] is True  # ExpertParallelMoE is exact
        assert row["network_bytes_per_token"] > 0 and row["model_bytes_per_token"] > 0
    assert "Measured: mpirun -n 2" in proc.stdout and "| bitwise |" in proc.stdout
