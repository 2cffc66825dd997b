"""The thread count of moelab's kernels: what it may be on this machine, setting it, reading it.

One count holds for every kernel and every Python thread (the core keeps it process-wide). It
is capped at ``THREADS_PER_CORE_LIMIT`` times the cores this process may run on: more OpenMP
threads than that only add scheduling overhead, and a count in the tens of thousands makes the
OpenMP runtime fail to create threads or the per-thread workspaces exhaust memory.
"""

from __future__ import annotations

import operator
import os
import warnings

import numpy as np

from . import _core

__all__ = ["set_num_threads", "get_num_threads", "available_cores", "max_num_threads",
           "THREADS_PER_CORE_LIMIT"]

#: ``set_num_threads`` caps the count at this many threads per available core.
THREADS_PER_CORE_LIMIT = 4


def available_cores() -> int:
    """The cores this process may run on: ``os.sched_getaffinity`` where the platform has it
    (it honours taskset, cgroups' cpusets and container limits), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def max_num_threads() -> int:
    """The most threads ``set_num_threads`` uses: ``THREADS_PER_CORE_LIMIT * available_cores()``."""
    return THREADS_PER_CORE_LIMIT * available_cores()


def set_num_threads(n) -> None:
    """Threads used by every moelab kernel from now on (all Python threads).

    n : an integer >= 1: a Python int, a NumPy integer or any object with ``__index__`` (not a
        bool, not a float). Results are bitwise the same for any count.

    A count above ``max_num_threads()`` (4 x the available cores) is capped to it. A count
    above ``available_cores()`` warns (one ``RuntimeWarning`` per call): the extra threads share
    cores and only add overhead.

    Raises TypeError (not an integer) or ValueError (n < 1); the count is then unchanged.
    """
    if isinstance(n, (bool, np.bool_)) or not hasattr(type(n), "__index__"):
        raise TypeError(f"n must be an integer (int, a NumPy integer or an object with "
                        f"__index__), got {type(n).__name__} {n!r}")
    try:
        n = operator.index(n)
    except TypeError as exc:
        raise TypeError(f"n: {type(n).__name__}.__index__ failed: {exc}") from None
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cores, limit = available_cores(), max_num_threads()
    if n > cores:
        capped = (f"; capped at {limit} ({THREADS_PER_CORE_LIMIT} x the cores)" if n > limit
                  else "")
        warnings.warn(f"set_num_threads({n}): more threads than the {cores} available cores, "
                      f"the extra threads only add overhead{capped}", RuntimeWarning,
                      stacklevel=2)
    _core.set_num_threads(min(n, limit))


def get_num_threads() -> int:
    """Threads used by moelab kernels."""
    return int(_core.get_num_threads())
