"""Shared fixtures of the test suite: a seeded RNG and a guard that restores the thread count.

Tolerances live in ``tests/tolerances.py``, not here.
"""

from __future__ import annotations

from pathlib import Path

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



@pytest.fixture
def every_region_parallel():
    """Lower the core's parallel threshold to 0 for the test, so that every parallel loop runs on
    all the threads it may use (below 2^20 operations a loop otherwise runs on one thread, and a
    determinism test on small shapes would never see two), and restore it after.

    Yields ``run(fn, *args)``, which returns ``(fn(*args), loops)``: ``loops`` is the set of the
    core's parallel loops (by name) that really ran on more than one thread during the call.
    """
    from moelab import _core

    def run(fn, *args):
        before = _core._parallel_regions()
        result = fn(*args)
        after = _core._parallel_regions()
        return result, {name for name, n in after.items() if n > before[name]}

    threshold = _core._get_min_parallel_work()
    _core._set_min_parallel_work(0.0)
    yield run
    _core._set_min_parallel_work(threshold)


@pytest.fixture
def set_threads(restore_threads):
    """``set_threads(n)``: ``moelab.set_num_threads(n)`` for tests that choose thread counts above
    the machine's cores on purpose (oversubscription must not change a bit). The RuntimeWarning
    that gives is expected, and required exactly when n exceeds the available cores; the count
    is restored after the test."""
    import operator
    import warnings

    import moelab
    from moelab.threads import available_cores

    def set_(n):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            moelab.set_num_threads(n)
        messages = [str(w.message) for w in caught]
        expected = 1 if operator.index(n) > available_cores() else 0
        assert len(caught) == expected and all(
            issubclass(w.category, RuntimeWarning) and "more threads than" in str(w.message)
            for w in caught), messages

    return set_


# tests/mpi needs mpi4py and runs under mpirun (.ci/run's MPI stage); the main suite skips the
# folder unless it is named on the command line.
def pytest_ignore_collect(collection_path, config):
    if collection_path.name == "mpi" and collection_path.parent == Path(__file__).parent:
        named = [Path(a.split("::")[0]).resolve() for a in config.args]
        return not any(p == collection_path or collection_path in p.parents for p in named)
    return None
