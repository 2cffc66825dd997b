#!/usr/bin/env python
"""Run the fuzz harnesses (atheris, coverage-guided), keep their corpus, replay findings.

    python tests/fuzz/run.py                       # every target, 25 s each, from the corpus
    python tests/fuzz/run.py --seconds 1800 --merge safetensors   # a long run; keep new inputs
    python tests/fuzz/run.py --seed                # (re)write the seed inputs into the corpus
    python tests/fuzz/run.py --replay moe_config crash-1234...    # what an input does, as Python

Each target fuzzes a copy of its corpus (tests/fuzz/corpus/<target>/), so a run never changes
the repository unless ``--merge`` is given: then libFuzzer's merge adds to the corpus only the
new inputs that reach new coverage. A finding (an uncaught exception, a crash, a hang past
``--timeout`` seconds, memory past ``--rss-limit-mb``) fails the run; its input is written to
``--artifacts`` and shown as the Python call it makes. Needs atheris (``pip install
'moelab[fuzz]'``). The corpus is replayed without atheris by tests/fuzz/test_fuzz_corpus.py.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _fuzzlib import DICTIONARIES, TARGETS  # noqa: E402 - after the path that finds it


def harness(target: str):
    """The harness module of a target (tests/fuzz/fuzz_<target>.py)."""
    return importlib.import_module(f"fuzz_{target}")


def corpus_dir(target: str) -> Path:
    return HERE / "corpus" / target


def write_seeds(target: str) -> int:
    """Write the harness's seed inputs into its corpus (named by content); returns how many."""
    folder = corpus_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    seeds = harness(target).seeds()
    for data in seeds:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(seeds)


def libfuzzer_options(target: str, args, work: Path) -> list:
    """The fuzzer's options; a joined dictionary (DICTIONARIES) is written into ``work``."""
    options = [f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_limit_mb}",
               "-print_final_stats=1"]
    dictionary = HERE / f"{target}.dict"
    if target in DICTIONARIES:
        dictionary = work / f"{target}.dict"
        dictionary.write_text("".join((HERE / f"{name}.dict").read_text()
                                      for name in DICTIONARIES[target]))
    if dictionary.is_file():
        options.append(f"-dict={dictionary}")
    return options


def _child_env(work: Path) -> dict:
    """The environment of the fuzzer: libFuzzer's merge re-runs the harness as a program (its
    ``#!/usr/bin/env python3`` line), which must find this interpreter first on the PATH; the
    harnesses' scratch files go into ``work`` (libFuzzer exits without running atexit)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["TMPDIR"] = str(work)
    return env


def fuzz(target: str, args, artifacts: Path) -> bool:
    """Fuzz one target for args.seconds; True when nothing was found."""
    work = Path(tempfile.mkdtemp(prefix=f"moelab-fuzz-{target}-"))
    try:
        corpus = work / "corpus"
        shutil.copytree(corpus_dir(target), corpus)
        before = len(os.listdir(corpus))
        command = [sys.executable, str(HERE / f"fuzz_{target}.py"), str(corpus),
                   f"-max_total_time={args.seconds}", f"-artifact_prefix={artifacts}/{target}-",
                   *libfuzzer_options(target, args, work)]
        start = time.monotonic()
        run = subprocess.run(command, capture_output=True, text=True, errors="replace",
                             env=_child_env(work))
        took = time.monotonic() - start
        stats = [ln for ln in run.stderr.splitlines()
                 if ln.startswith(("stat::number_of_executed_units", "stat::peak_rss_mb"))
                 or " DONE " in ln]
        print(f"fuzz {target}: {took:.0f} s, exit {run.returncode}, corpus {before} -> "
              f"{len(os.listdir(corpus))} inputs; " + "; ".join(s.strip() for s in stats))
        if run.returncode != 0:
            log = [ln for ln in run.stderr.splitlines()
                   if not ln.startswith(("#", "INFO: Instrumenting", "WARNING: Failed to find"))]
            print("\n".join(log)[-6000:], file=sys.stderr)
            for found in sorted(artifacts.glob(f"{target}-*")):
                print(f"fuzz {target}: FINDING in {found}", file=sys.stderr)
                if found.name.startswith(f"{target}-crash-"):  # an exception: show it
                    show = [sys.executable, __file__, "--replay", target, str(found)]
                    try:
                        subprocess.run(show, timeout=60)
                    except subprocess.TimeoutExpired:
                        print("(the replay did not finish in 60 s)", file=sys.stderr)
                else:  # a hang or too much memory: only what the input is
                    print(harness(target).describe(found.read_bytes()), file=sys.stderr)
            return False
        if args.merge:
            merged = subprocess.run([sys.executable, str(HERE / f"fuzz_{target}.py"), "-merge=1",
                                     str(corpus_dir(target)), str(corpus),
                                     *libfuzzer_options(target, args, work)],
                                    capture_output=True, text=True, errors="replace",
                                    env=_child_env(work))
            if merged.returncode != 0 or "MERGE-OUTER: successful" not in merged.stderr:
                print(merged.stderr[-3000:], file=sys.stderr)
                return False
            print(f"fuzz {target}: merged, corpus now {len(os.listdir(corpus_dir(target)))} inputs")
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def replay(target: str, paths) -> int:
    """Run inputs through a harness without the fuzzer, printing each call and its outcome."""
    module = harness(target)
    status = 0
    for path in paths:
        data = Path(path).read_bytes()
        print(f"--- {path}\n{module.describe(data)}")
        try:
            known = module.run_one(data)
        except Exception as exc:  # noqa: BLE001 - a finding is reported, not raised
            print(f"FINDING: {exc}")
            status = 1
        else:
            print(f"known defect: {known}" if known else "ok")
    return status


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("targets", nargs="*", help=f"targets (default: all of {', '.join(TARGETS)})")
    p.add_argument("--seconds", type=int, default=25, help="fuzzing time per target (25)")
    p.add_argument("--timeout", type=int, default=10,
                   help="seconds one input may take before it counts as a hang (10)")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="memory limit (2048 MB)")
    p.add_argument("--artifacts", default=None, help="folder for findings (default: a temporary one)")
    p.add_argument("--merge", action="store_true",
                   help="add the new coverage-increasing inputs to the repository corpus")
    p.add_argument("--seed", action="store_true", help="write the seed inputs into the corpus")
    p.add_argument("--replay", nargs="+", metavar=("TARGET", "FILE"),
                   help="run FILEs through TARGET's harness and show what they do")
    args = p.parse_args(argv)
    if args.replay:
        target, *paths = args.replay
        if target not in TARGETS or not paths:
            p.error(f"--replay TARGET FILE...: TARGET is one of {', '.join(TARGETS)}")
        return replay(target, paths)
    targets = args.targets or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; targets: {', '.join(TARGETS)}")
    if args.seed:
        for t in targets:
            print(f"seed {t}: {write_seeds(t)} inputs")
        return 0
    artifacts = Path(args.artifacts or tempfile.mkdtemp(prefix="moelab-fuzz-findings-"))
    artifacts.mkdir(parents=True, exist_ok=True)
    failed = [t for t in targets if not fuzz(t, args, artifacts.resolve())]
    if failed:
        print(f"fuzz: findings in {', '.join(failed)} (inputs in {artifacts})", file=sys.stderr)
        return 1
    if args.artifacts is None:
        shutil.rmtree(artifacts, ignore_errors=True)  # nothing found: nothing to keep
    return 0


if __name__ == "__main__":
    sys.exit(main())
