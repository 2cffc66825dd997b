"""The fuzzers' regression inputs, replayed without the fuzzer (atheris is not needed here).

Every input in tests/fuzz/corpus/<target>/ (the seeds and what fuzzing runs kept) goes through
its harness: each must end in success or a documented error, never a finding. Each known
defect the harnesses let pass has a reproducer in tests/fuzz/reproducers/<target>/<id> that
must still show it: once the defect is fixed, the test fails until the entry is taken off the
harness's KNOWN_DEFECTS (and the reproducer moved into the corpus, as a regression input).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _fuzzlib import TARGETS  # noqa: E402 - after the path that finds it


def _harness(target):
    return importlib.import_module(f"fuzz_{target}")


def _inputs(folder: Path):
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_without_findings(target):
    harness = _harness(target)
    inputs = _inputs(HERE / "corpus" / target)
    assert inputs, f"corpus/{target} is empty (python tests/fuzz/run.py --seed {target})"
    findings = []
    for path in inputs:
        try:
            harness.run_one(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - every finding is listed, not just the first
            findings.append(f"{path.name}: {exc}")
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize("target", TARGETS)
def test_known_defects_still_reproduce(target):
    """Each listed defect's reproducer still shows it (none listed: nothing to show)."""
    for defect in _harness(target).KNOWN_DEFECTS:
        data = (HERE / "reproducers" / target / defect.id).read_bytes()
        shown = _harness(target).run_one(data)
        assert shown == defect.id, (
            f"{defect.id} ({defect.issue}) no longer shows: if it is fixed, take it off "
            f"fuzz_{target}.KNOWN_DEFECTS and move its reproducer into corpus/{target}/")


def test_every_reproducer_is_listed():
    listed = {(t, d.id) for t in TARGETS for d in _harness(t).KNOWN_DEFECTS}
    present = {(p.parent.name, p.name) for p in (HERE / "reproducers").glob("*/*")}
    assert present == listed


def test_seeds_are_accepted_inputs(tmp_path):
    """The seeds are valid checkpoints / configs, so fuzzing starts from inputs that load."""
    import moelab
    import moelab.hf

    safetensors = _harness("safetensors")
    for data in safetensors.seeds():
        config, layer_idx = safetensors._select(data[0])
        folder = tmp_path
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "model.safetensors").write_bytes(data[1:])
        layer = moelab.hf.load_moe_layer(str(folder), layer_idx)
        assert layer.config.weight_shapes() == {n: w.shape for n, w in layer.weights.items()}
    for data in _harness("hf_config").seeds():
        assert moelab.count_params(moelab.from_hf_config(json.loads(data))).total > 0
    for kwargs in _harness("moe_config").BASES:  # the load_weights harness's layers too
        moelab.MoELayer(moelab.MoEConfig(**kwargs))


def test_load_model_corpus_holds_a_loading_seed_per_family(tmp_path):
    """Whole-model fuzzing starts from a checkpoint that loads for every seed family (float32
    and bfloat16 where the harness saves both). Its seeds are made by transformers
    (``run.py --seed load_model``), so here they are found in the corpus, not remade."""
    import moelab.hf

    harness = _harness("load_model")
    loaded = set()
    for path in _inputs(HERE / "corpus" / "load_model"):
        dtype, config, weights = harness._split(path.read_bytes())
        try:
            model_type = json.loads(config)["model_type"]
        except (ValueError, TypeError, KeyError):
            continue
        if model_type not in harness.SEED_MODELS:
            continue
        (tmp_path / "config.json").write_bytes(config)
        (tmp_path / "model.safetensors").write_bytes(weights)
        try:
            model = moelab.hf.load_model(tmp_path, dtype)
        except (TypeError, ValueError):
            continue
        stored = "bfloat16" if model.embed.dtype == "uint16" else "float32"
        loaded.add((model_type, stored))
    wanted = {(t, "float32") for t in harness.SEED_MODELS}
    wanted |= {(t, "bfloat16") for t in harness.BF16_SEEDS}
    assert wanted <= loaded, f"no loading seed for {sorted(wanted - loaded)}"
