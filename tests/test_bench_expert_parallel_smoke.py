"""Smoke test of benchmarks/bench_expert_parallel.py's modelled part (no MPI); the measured
part runs under mpirun in tests/mpi/test_bench_expert_parallel.py.

No timing is asserted: the figures are only produced, never compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
