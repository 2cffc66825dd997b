"""Shared fixtures of the test suite: a seeded RNG and a guard that restores the thread count.

Tolerances live in ``tests/tolerances.py``, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings

# The machine is shared and slow at times: Hypothesis must not fail a property on timing.
settings.register_profile("moelab", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("moelab")


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed (each test gets a fresh one)."""
    return np.random.default_rng(20240607)


@pytest.fixture
def restore_threads():
    """Give moelab's thread count back as it was after the test, whatever it set."""
    import moelab

    before = moelab.get_num_threads()
    yield before
    moelab.set_num_threads(before)
