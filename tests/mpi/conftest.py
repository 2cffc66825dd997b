"""The MPI tests: run under ``mpirun -n N python -m pytest tests/mpi`` (N = 1 also plainly).
They need mpi4py (the ``mpi`` extra) and fail, not skip, without it. The main suite does not
collect this folder (tests/conftest.py), so it needs no MPI.

Every rank runs every test; a test that hangs in a collective (a rank that never arrives) is
ended by a watchdog that prints the stacks and exits, so that mpirun fails instead of waiting.
"""

from __future__ import annotations

import faulthandler
import sys

import pytest

try:
    from mpi4py import MPI
except ImportError as exc:  # fail, never skip: these tests are what proves the MPI layer
    raise ImportError("tests/mpi need mpi4py: pip install 'moelab[mpi]' (and an MPI library, "
                      "e.g. Debian's openmpi-bin libopenmpi-dev)") from exc

import moelab

#: Seconds a test may take before the watchdog ends the process (a hang, not a slow test).
HANG_SECONDS = 120


@pytest.fixture(autouse=True)
def watchdog():
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True, scope="session")
def one_thread_per_rank():
    """The ranks share the machine's cores: one OpenMP thread each."""
    before = moelab.get_num_threads()
    moelab.set_num_threads(1)
    yield
    moelab.set_num_threads(before)


@pytest.fixture(scope="session")
def comm():
    return MPI.COMM_WORLD
