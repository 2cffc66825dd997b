"""The Hugging Face reference: torch and transformers, required or skipped.

Tests that compare against ``transformers`` carry the ``reference`` marker. When torch or
transformers cannot be imported, each of them FAILS if ``MOELAB_REQUIRE_REFERENCE=1`` (as in
``.ci/run``) and is skipped with the import error as the reason otherwise. Test modules import
torch inside a ``try`` (see ``_hf_blocks.py``), so that collection never breaks on a missing
reference; this hook then decides. Tests without the marker (checkpoint parsing, errors,
memory) need neither and always run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The shared tolerances (tests/tolerances.py) and this folder's helpers (_hf_blocks.py) must be
# importable whatever pytest's import mode; appended, so that they shadow nothing.
_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE.parent), str(_HERE)):
    if _p not in sys.path:
        sys.path.append(_p)

#: Pinned in pyproject.toml's ``reference`` extra; the tests are written against these.
TORCH_VERSION = "2.13.0"
TRANSFORMERS_VERSION = "5.23.0"

try:
    import torch
    import transformers
except Exception as exc:  # ImportError, or a broken install raising something else
    REFERENCE_ERROR: "str | None" = f"{type(exc).__name__}: {exc}"
else:
    REFERENCE_ERROR = None
    if (torch.__version__.split("+")[0] != TORCH_VERSION
            or transformers.__version__ != TRANSFORMERS_VERSION):
        REFERENCE_ERROR = (f"the reference is pinned to torch=={TORCH_VERSION} and "
                           f"transformers=={TRANSFORMERS_VERSION}, found torch=={torch.__version__}"
                           f" and transformers=={transformers.__version__}")


def _required() -> bool:
    return os.environ.get("MOELAB_REQUIRE_REFERENCE", "") not in ("", "0")


def _message() -> str:
    return (f"Hugging Face reference unavailable ({REFERENCE_ERROR}); install the 'reference' "
            "extra (torch==2.13.0, transformers==5.23.0)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Without the reference and without MOELAB_REQUIRE_REFERENCE: skip, saying why."""
    if REFERENCE_ERROR is not None and item.get_closest_marker("reference") is not None \
            and not _required():
        pytest.skip(_message())


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """Without the reference but with MOELAB_REQUIRE_REFERENCE=1: the test itself fails."""
    if REFERENCE_ERROR is not None and pyfuncitem.get_closest_marker("reference") is not None:
        pytest.fail(f"MOELAB_REQUIRE_REFERENCE=1 but the {_message()}", pytrace=False)
    return None
