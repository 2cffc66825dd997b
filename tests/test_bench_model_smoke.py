"""Smoke test of benchmarks/bench_model.py: the --quick run of the moelab and transformers engines
on tiny checkpoints, every table cell a real number, and the report written.

llama.cpp's engines run only where ``llama_cpp`` imports: llama-cpp-python is in the ``bench``
extra, not in the test extras (it compiles llama.cpp), so elsewhere they must be reported absent.
Their measured run also needs llama.cpp's converter: the environment variable
MOELAB_CONVERT_HF_TO_GGUF names its convert_hf_to_gguf.py (in the llama-cpp-python sdist).
No timing is compared: figures are only produced.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

from require_reference import require_torch_and_transformers

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_model  # noqa: E402

NUMBERS = ("load_s", "prefill_16_tok_s", "prefill_32_tok_s", "decode_tok_s", "ttft_s",
           "peak_rss_bytes")


def _llama_cpp_imports() -> bool:
    # in a child, as the benchmark asks: the library is never loaded into the test process
    return bench_model._engine_available("llama-BF16") is None


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    require_torch_and_transformers()
    tmp = tmp_path_factory.mktemp("bench_model")
    out = tmp / "RESULTS_MODEL.md"
    engines = "moelab-bf16,moelab-f32,hf-bf16,hf-f32,llama-BF16"
    return out, bench_model.main(["--quick", "--threads", "1", "--engines", engines,
                                  "--work", str(tmp / "work"), "--out", str(out)])


def test_every_cell_of_moelab_and_transformers_is_a_number(quick):
    _, r = quick
    assert [m["model"] for m in r["models"]] == ["qwen3", "gpt-oss"]
    for model in r["models"]:
        rows = {row["engine"]: row for row in model["rows"]}
        for engine in ("moelab-bf16", "moelab-f32", "hf-bf16", "hf-f32"):
            row = rows[engine]
            assert "error" not in row, (model["model"], engine, row.get("error"))
            for key in NUMBERS:
                assert _finite_positive(row[key]["median"]), (model["model"], engine, key)
                assert row[key]["min"] <= row[key]["median"] <= row[key]["max"]
            assert _finite_positive(row["roof_tok_s"])
            assert _finite_positive(row["roof_fraction"])
        assert set(model["profiles"]) == {"moelab-bf16 t=1", "moelab-f32 t=1"}
        for phases in model["profiles"].values():
            assert set(phases) == {"attention", "router", "experts", "norms", "lm_head",
                                   "python_overhead", "step"}
            assert phases["step"] > 0 and phases["attention"] > 0 and phases["experts"] > 0
        assert {"decode >= 85% of roof", "Python overhead < 5% of the step",
                "prefill 32 >= 2 x transformers bf16",
                "peak RSS <= file + KV cache + 300 MiB"} <= set(model["goals"])
        for ratio, met in model["goals"].values():
            assert _finite_positive(ratio) and isinstance(met, bool)


def test_llama_cpp_runs_where_it_imports_and_is_absent_elsewhere(quick):
    _, r = quick
    if not _llama_cpp_imports():
        assert "llama_cpp" in r["absent"]["llama-BF16"]
        assert all(row["engine"] != "llama-BF16" for m in r["models"] for row in m["rows"])
        return
    # with llama_cpp but no --convert-script the engine is absent too, never faked
    assert r["absent"]["llama-BF16"] == "no --convert-script given"


def test_the_report_and_its_json_are_written(quick):
    out, r = quick
    text = out.read_text()
    assert "| moelab-bf16 | 1 |" in text and "moelab decode step by phase" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["quick"] is True and saved["threads"] == [1]
    assert all(b > 0 for b in r["bandwidth"].values())


def test_touched_bytes_counts_k_of_e_experts(quick):
    _, r = quick
    folder = Path(r["models"][0]["folder"])
    assert bench_model.touched_bytes(folder, 4) == 2 * bench_model.touched_bytes(folder, 2)


def test_llama_cpp_engines_measure_every_gguf_type(tmp_path):
    script = os.environ.get("MOELAB_CONVERT_HF_TO_GGUF")
    if not _llama_cpp_imports() or not script:
        pytest.skip("llama_cpp (bench extra) or MOELAB_CONVERT_HF_TO_GGUF absent: not a test "
                    "extra")
    engines = ",".join(f"llama-{t}" for t in bench_model.GGUF_TYPES)
    r = bench_model.main(["--quick", "--threads", "1", "--models", "qwen3", "--engines", engines,
                          "--convert-script", script, "--work", str(tmp_path / "work"),
                          "--out", str(tmp_path / "R.md")])
    rows = {row["engine"]: row for row in r["models"][0]["rows"]}
    assert set(rows) == set(engines.split(",")), r["absent"]
    for engine, row in rows.items():
        assert "error" not in row, (engine, row.get("error"))
        for key in NUMBERS:
            assert _finite_positive(row[key]["median"]), (engine, key)
    assert "roof_fraction" in rows["llama-BF16"] and "roof_fraction" not in rows["llama-Q4_0"]
