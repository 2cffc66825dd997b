"""The guard of the tests that need torch and transformers as their reference."""

from __future__ import annotations

import os

import pytest


def require_torch_and_transformers() -> None:
    """Import torch and transformers; when that fails, fail the test under
    MOELAB_REQUIRE_REFERENCE=1, else skip it."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except Exception as exc:  # ImportError or a broken install
        if os.environ.get("MOELAB_REQUIRE_REFERENCE", "") not in ("", "0"):
            pytest.fail(f"MOELAB_REQUIRE_REFERENCE=1 but torch/transformers: {exc}")
        pytest.skip(f"torch/transformers unavailable: {exc}")
