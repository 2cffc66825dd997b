"""The command line: ``python -m moelab compare | params | run | list | demo``."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

import moelab
from moelab.__main__ import main

ROOT = pathlib.Path(moelab.__file__).resolve().parent.parent  # the folder holding moelab/


def _cli(*args, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "moelab", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_compare_subprocess_prints_every_preset():
    r = _cli("compare")
    assert r.returncode == 0, r.stderr
    for name in moelab.list_presets():
        assert re.search(rf"^{re.escape(name)}\s", r.stdout, re.M), name
    assert "671.03B" in r.stdout and "37.55B" in r.stdout  # deepseek-v3 total / active
    assert "FLOPs/token" in r.stdout and "context of 4096 tokens" in " ".join(r.stdout.split())


def test_run_subprocess_reports_balance_and_throughput():
    r = _cli("run", "deepseek-v3", "--tokens", "64", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "deepseek-v3-scaled" in lines[0]
    rows = [ln.split() for ln in lines if re.match(r"^\s+\d+\s+\S+\s+(moe|dense)", ln)]
    assert [row[1] for row in rows] == ["mla"] * 4           # the token mixer of each layer
    assert [row[2] for row in rows] == ["dense", "dense", "dense", "moe"]
    moe_row = rows[3]
    assert float(moe_row[3]) >= 1.0            # max/mean tokens per expert
    assert float(moe_row[7]) > 0.0              # aux loss
    assert re.search(r"throughput: [\d,]+ tokens/s \(64 tokens", r.stdout)


def test_help_and_usage_errors_exit_2():
    r = _cli("--help")
    assert r.returncode == 0 and "compare" in r.stdout and "run" in r.stdout
    assert _cli().returncode == 2
    r = _cli("run", "nope", "--tokens", "4")
    assert r.returncode == 2 and "unknown preset 'nope'" in r.stderr
    assert _cli("compare", "--context", "0").returncode == 2
    assert _cli("frobnicate").returncode == 2


@pytest.mark.parametrize("argv", [["run", "mixtral-8x7b", "--tokens", "0"],
                                  ["run", "mixtral-8x7b", "--repeats", "0"],
                                  ["run", "mixtral-8x7b", "--threads", "0"],
                                  ["run", "mixtral-8x7b", "--experts", "2", "--top-k", "3"],
                                  ["run", "mixtral-8x7b", "--tokens", "x"],
                                  ["compare", "--sort", "nothing"]])
def test_bad_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_unknown_preset_in_process(capsys):
    assert main(["compare", "mixtral-8x7b", "gpt-9"]) == 2
    assert "unknown preset 'gpt-9'" in capsys.readouterr().err
    assert main(["params", "gpt-9"]) == 2


def test_run_options_in_process(capsys, restore_threads):
    assert main(["run", "qwen3-next-80b-a3b", "--tokens", "32", "--hidden", "32", "--layers",
                 "4", "--experts", "4", "--top-k", "1", "--repeats", "1", "--threads", "1",
                 "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "L=4, H=32" in out and "ffn=MMMM" in out and "threads=1" in out
    mixers = [ln.split()[1] for ln in out.splitlines() if re.match(r"^\s+\d+\s", ln)]
    assert mixers == ["linear_attention"] * 3 + ["full_attention"]
    assert moelab.get_num_threads() == 1


def test_run_refuses_grok_with_one_line(capsys):
    """Grok-2's whole decoder is not reproduced: a usage error naming it, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(["run", "grok-2", "--tokens", "8"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "residual MoE" in err and "Traceback" not in err


def test_compare_options_in_process(capsys):
    assert main(["compare", "gpt-oss-20b", "olmo2-7b", "--sort", "total", "--raw",
                 "--context", "1024"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [ln for ln in out if ln.startswith(("gpt-oss-20b", "olmo2-7b"))]
    assert rows[0].startswith("gpt-oss-20b")  # 20.9B sorts before 7.3B
    assert str(moelab.count_params("gpt-oss-20b").total) in rows[0]


def test_params_and_list(capsys):
    assert main(["params", "deepseek-v3"]) == 0
    out = capsys.readouterr().out
    assert "671,026,404,352" in out and "11,610,067,968  (not in total)" in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in moelab.list_presets(include_aliases=True))


def test_demo_is_wired(capsys):
    assert main(["demo", "--tokens", "8", "--hidden", "16", "--repeats", "1"]) == 0
    assert capsys.readouterr().out.strip()


def test_cli_run_no_progress(capsys):
    assert main(["run", "mixtral-8x7b", "--tokens", "8", "--repeats", "1", "--no-progress"]) == 0
    assert "throughput" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# what users see (issue 19.7)
# --------------------------------------------------------------------------------------------
def test_compare_fits_a_100_column_terminal_and_wide_shows_everything(capsys):
    assert main(["compare"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(ln) for ln in lines) <= 100, max(lines, key=len)
    assert main(["compare", "--wide"]) == 0
    wide = capsys.readouterr().out
    for column in ("model_type", "attention", "moe_layers", "dense_first"):
        assert column in wide
    assert "MLA 128h r_kv=512" in wide  # deepseek-v3's attention


def test_compare_footer_and_each_vendors_convention(capsys):
    assert main(["compare", "gpt-oss-20b", "glm-4.5", "deepseek-v3"]) == 0
    out = capsys.readouterr().out
    assert ("active: every parameter a token uses, the embedding and the LM head included"
            in " ".join(out.split())), out
    pc = moelab.count_params("gpt-oss-20b")
    row = next(ln for ln in out.splitlines() if ln.startswith("gpt-oss-20b"))
    assert f"{pc.active_no_embedding_matrix / 1e9:.2f}B" in row  # 3.61B, OpenAI's 3.6B
    glm = next(ln for ln in out.splitlines() if ln.startswith("glm-4.5"))
    assert f"{moelab.count_params('glm-4.5').active_no_embedding / 1e9:.2f}B" in glm


def test_vendor_conventions_are_those_that_reproduce_the_published_figures():
    from moelab.__main__ import vendor_active
    from test_param_counts import PUBLISHED

    for name, quantity, published, source in PUBLISHED:
        if quantity.startswith("active"):
            cfg = moelab.preset(name)
            assert vendor_active(cfg)[0] == getattr(moelab.count_params(cfg), quantity), source


def test_subcommand_errors_print_the_subcommands_usage():
    for args, usage in ((["run", "nope", "--tokens", "4"], "run"),
                        (["params", "gpt-9"], "params"),
                        (["compare", "--context", "0"], "compare"),
                        (["run", "mixtral-8x7b", "--tokens", "0"], "run"),
                        (["compare", "mixtral-8x7b", "mixtral-8x7b"], "compare")):
        r = _cli(*args)
        assert r.returncode == 2, args
        assert f"usage: python -m moelab {usage}" in r.stderr, (args, r.stderr)


def test_help_shows_examples():
    r = _cli("--help")
    assert r.returncode == 0
    assert "examples:" in r.stdout
    assert "python -m moelab compare qwen3-30b-a3b gpt-oss-20b" in r.stdout
    r = _cli("compare", "--help")
    assert r.returncode == 0 and "--wide" in r.stdout


def test_params_prints_integers_as_integers_without_stray_spaces(capsys):
    assert main(["params", "deepseek-v3"]) == 0
    out = capsys.readouterr().out
    assert "70,272" in out and "70,272.0" not in out   # KV bytes per token (an integer)
    assert not re.search(r"\d,\d{3}\.0\b", out), out
    assert " )" not in out and "(fp8)" in out
    assert main(["params", "gpt-oss-20b", "--context", "1000"]) == 0
    assert "KV bytes per token" in capsys.readouterr().out  # not an integer here: still prints


def test_compare_refuses_a_model_given_twice():
    with pytest.raises(ValueError, match="'mixtral-8x7b'.*twice"):
        moelab.compare(["mixtral-8x7b", "olmo2-7b", "mixtral-8x7b"])
    cfg = moelab.preset("olmo2-7b")
    with pytest.raises(ValueError, match="twice"):
        moelab.compare([cfg, cfg.replace(vocab_size=1000)])   # same name, another model
    df = moelab.compare([cfg, cfg.replace(vocab_size=1000, name="olmo2-small-vocab")])
    assert list(df.index) == ["olmo2-7b", "olmo2-small-vocab"]
