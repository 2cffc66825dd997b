"""The type predicates every validator in moelab uses (one definition each).

An "int" is any integral number (Python ``int``, NumPy integers) but not a ``bool``; a "real"
any real number (ints and floats of either kind) but not a ``bool``.
"""

from __future__ import annotations

import numbers

__all__ = ["is_int", "is_real"]


def is_int(v) -> bool:
    """True for a Python or NumPy integer, False for a bool and everything else."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v) -> bool:
    """True for a Python or NumPy real number (int or float), False for a bool and the rest."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
