"""The notebooks in notebooks/ run top to bottom without an error (executed with nbclient).

Each notebook is executed in a fresh kernel of *this* interpreter (a kernel spec written to a
temporary JUPYTER_PATH points at ``sys.executable``, so the venv running pytest is the one the
notebook sees), with ``MPLBACKEND=Agg`` and moelab importable. Any exception in any cell fails
the test. Notebook 05 times moelab against the transformers block: without torch and
transformers it is skipped, and it fails instead under ``MOELAB_REQUIRE_REFERENCE=1``.

Static checks on the committed files: no outputs, seeded random generators, public API only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

import moelab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01_active_parameters.ipynb", "02_routers.ipynb", "03_architectures.ipynb",
            "04_load_balance.ipynb", "05_cpu_speed.ipynb", "06_experts_on_real_text.ipynb",
            "07_attention_memory.ipynb"]
#: notebooks that import torch + transformers (the ``reference`` extra)
NEEDS_REFERENCE = {"05_cpu_speed.ipynb"}
CELL_TIMEOUT_S = 300
KERNEL_NAME = "moelab-notebook-tests"


def _reference_required() -> bool:
    return os.environ.get("MOELAB_REQUIRE_REFERENCE", "") not in ("", "0")


def _read(path: Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def _code(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_every_notebook_is_there():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    import nbformat

    nb = _read(path)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} has outputs"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_seeded_and_public_api_only(path):
    src = _code(_read(path))
    # every NumPy generator is seeded; the global-state samplers are not used
    assert not re.search(r"default_rng\(\s*\)", src), f"{path.name}: unseeded default_rng()"
    assert not re.search(r"np\.random\.(rand|randn|randint|normal|uniform|choice|seed)\b", src), \
        f"{path.name}: global-state np.random sampler"
    if "torch." in src:
        assert "torch.manual_seed(" in src, f"{path.name}: torch used without torch.manual_seed"
    # public API: `import moelab` / `from moelab import <public names>`, no private modules
    assert not re.search(r"moelab\._(?!_)", src), f"{path.name}: uses a private moelab module"
    for m in re.finditer(r"from moelab(\.\w+)? import ([\w, ]+)", src):
        assert m.group(1) is None, f"{path.name}: imports from submodule moelab{m.group(1)}"
        for name in (n.strip() for n in m.group(2).split(",")):
            assert name in moelab.__all__, f"{path.name}: {name} is not in moelab.__all__"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernel spec running this interpreter with moelab on its path and the Agg backend."""
    if importlib.util.find_spec("ipykernel") is None:
        pytest.fail("ipykernel is not installed in this interpreter: pip install 'moelab[test]'",
                    pytrace=False)
    home = tmp_path_factory.mktemp("jupyter")
    spec_dir = home / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    package_parent = str(Path(moelab.__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(
        [package_parent] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "moelab notebook tests",
        "language": "python",
        "env": {"MPLBACKEND": "Agg", "PYTHONPATH": pythonpath},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as mp:
        old = os.environ.get("JUPYTER_PATH")
        mp.setenv("JUPYTER_PATH", str(home) + (os.pathsep + old if old else ""))
        mp.setenv("JUPYTER_PLATFORM_DIRS", "1")
        mp.setenv("MPLBACKEND", "Agg")
        yield KERNEL_NAME


def _reference_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


@pytest.mark.notebook
@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.reference) if p.name in NEEDS_REFERENCE else p
     for p in NOTEBOOKS],
    ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_name):
    from nbclient import NotebookClient

    if path.name in NEEDS_REFERENCE and not _reference_available():
        msg = (f"{path.name} needs torch and transformers (pip install 'moelab[reference]')")
        if _reference_required():
            pytest.fail(f"MOELAB_REQUIRE_REFERENCE=1 but {msg}", pytrace=False)
        pytest.skip(msg)
    nb = _read(path)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) on any error
    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert executed and all(c.execution_count is not None for c in executed)
    errors = [o for c in executed for o in c.outputs if o.output_type == "error"]
    assert errors == []
