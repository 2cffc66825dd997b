"""Agreement across MPI ranks: a step every rank runs on its own, then one exchange of outcomes.

    comm = communicator(expert_parallel, "expert_parallel")   # an mpi4py communicator, checked
    model = agreed(comm, "load_model", step)                   # step() -> (result, facts)

A step that runs on each rank alone (loading that rank's part of a model, reading a tokenizer)
can fail on one rank only: a missing tensor that only its owner reads, a file one node lacks.
A rank that raised and left would leave the others waiting forever in the next collective.
:func:`agreed` therefore catches any exception of the step, and every rank then sends its
outcome (its error message, or the short facts it must agree on with the others: digests of
its config, its dtype, its placement) in one ``allgather``. Every rank sees every outcome, so
every rank returns, or every rank raises the same ValueError naming the failing ranks and their
messages, or the facts the ranks disagree on and which rank has which.

mpi4py is imported only by :func:`communicator`: moelab does not need it otherwise.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Dict, List, Tuple, TypeVar

__all__ = ["communicator", "agreed", "digest"]

T = TypeVar("T")


def communicator(comm, name: str):
    """``comm`` when it is an mpi4py communicator (``mpi4py.MPI.Comm``); TypeError naming
    ``name`` otherwise, or when mpi4py is not installed."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise TypeError(f"{name}: expected an mpi4py communicator, but mpi4py cannot be "
                        f"imported ({exc}); install the 'mpi' extra (pip install "
                        "'moelab[mpi]')") from None
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"{name}: expected an mpi4py communicator (mpi4py.MPI.Comm, e.g. "
                        f"MPI.COMM_WORLD), got {type(comm).__name__}")
    return comm


def digest(obj) -> str:
    """A short digest of a JSON-able object in canonical form (sorted keys, no spaces): equal
    on every rank exactly when the objects are equal."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def agreed(comm, what: str, step: Callable[[], Tuple[T, Dict[str, object]]]) -> T:
    """``step()``'s result on every rank, once every rank's step succeeded and all agree.

    step : run on this rank; returns ``(result, facts)``, ``facts`` a dict of short str or int
        values (digests, sizes) that must be equal on every rank (shown as ``str`` shows them).
    what : the step's name, for the messages.

    Raises ValueError on every rank alike: ``"<what> failed on rank(s) 1, 3: rank 1:
    <exception type>: <message>; rank 3: ..."`` when the step raised on any rank (ranks with
    the same message listed together, ``ranks 1, 3: ...``; the local exception chained on that
    rank), else ``"<what>: the ranks disagree on <fact> (rank(s)
    0, 2: <value>; rank(s) 1: <value>)"`` naming every fact that differs. Exactly one
    ``allgather`` of a short message per call, on every path: no rank waits forever.
    """
    result, facts, error, local = None, None, None, None
    try:
        result, facts = step()
    except Exception as exc:  # reported to every rank below, then raised on every rank
        error, local = f"{type(exc).__name__}: {exc}", exc
    outcomes: List[Tuple[object, object]] = comm.allgather((error, facts))
    failed: Dict[str, List[int]] = {}  # message -> the ranks that raised it
    for rank, (err, _) in enumerate(outcomes):
        if err is not None:
            failed.setdefault(err, []).append(rank)
    if failed:
        ranks = ", ".join(str(r) for r in sorted(r for rs in failed.values() for r in rs))
        details = "; ".join(f"{'rank' if len(rs) == 1 else 'ranks'} {', '.join(map(str, rs))}: "
                            f"{err}" for err, rs in failed.items())
        raise ValueError(f"{what} failed on rank(s) {ranks}: {details}") from local
    differences = []
    for key in outcomes[0][1]:
        groups: Dict[object, List[int]] = {}
        for rank, (_, rank_facts) in enumerate(outcomes):
            groups.setdefault(rank_facts.get(key), []).append(rank)
        if len(groups) > 1:
            listed = "; ".join(f"rank(s) {', '.join(map(str, ranks))}: {value}"
                               for value, ranks in groups.items())
            differences.append(f"{key} ({listed})")
    extra = sorted(set().union(*(f for _, f in outcomes)) - set(outcomes[0][1]))
    differences += [f"{key} (absent on rank 0)" for key in extra]
    if differences:
        raise ValueError(f"{what}: the ranks disagree on {'; and on '.join(differences)}")
    return result
