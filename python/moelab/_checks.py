"""The type predicates every validator in moelab uses (one definition each).

An "int" is any integral number (Python ``int``, NumPy integers) but not a ``bool``; a "real"
any real number (ints and floats of either kind) but not a ``bool``.
"""

from __future__ import annotations

import numbers

__all__ = ["is_int", "is_real", "checked_seed", "SEED_LIMIT"]

#: seeds are unsigned 64-bit integers: [0, 2**64)
SEED_LIMIT = 1 << 64


def is_int(v) -> bool:
    """True for a Python or NumPy integer, False for a bool and everything else."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v) -> bool:
    """True for a Python or NumPy real number (int or float), False for a bool and the rest."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def checked_seed(seed, name: str = "seed") -> int:
    """``seed`` as a Python int in [0, 2**64): TypeError when it is not an int, ValueError
    (naming ``name`` and the range) when it is out of range."""
    if not is_int(seed):
        raise TypeError(f"{name} must be an int in [0, 2**64), got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
    return int(seed)
