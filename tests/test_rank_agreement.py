"""moelab.rank_agreement without MPI: ``agreed`` against a stand-in communicator whose
``allgather`` returns this rank's outcome among the other ranks' (given by the test), so every
message can be checked on one process; and the argument checks of the entry points that take a
communicator. The same paths under ``mpirun`` are in tests/mpi/test_expert_parallel_model.py."""

from __future__ import annotations

import pytest

import moelab
from moelab.rank_agreement import agreed, communicator, digest


class StandIn:
    """A communicator of ``len(others) + 1`` ranks, this one ``rank``: ``allgather`` puts this
    rank's message among ``others`` (the other ranks' messages, in rank order) and counts calls."""

    def __init__(self, rank: int, others):
        self.rank, self.others, self.calls = rank, list(others), 0

    def allgather(self, message):
        self.calls += 1
        return self.others[:self.rank] + [message] + self.others[self.rank:]


FACTS = {"config.json": "abc", "dtype": "None"}


def test_every_rank_ok_and_agreeing_returns_the_result():
    comm = StandIn(1, [(None, dict(FACTS)), (None, dict(FACTS))])
    assert agreed(comm, "load_model", lambda: ("model", dict(FACTS))) == "model"
    assert comm.calls == 1


def test_a_rank_that_failed_makes_this_one_raise_naming_it():
    comm = StandIn(0, [(None, FACTS), ("ValueError: layer 1: missing tensor(s) x", None)])
    with pytest.raises(ValueError, match=r"^load_model failed on rank\(s\) 2: rank 2: "
                                         r"ValueError: layer 1: missing tensor\(s\) x$"):
        agreed(comm, "load_model", lambda: ("model", FACTS))
    assert comm.calls == 1


def test_this_rank_failing_still_sends_its_outcome_then_raises_with_every_failure():
    def step():
        raise KeyError("no such tensor")

    comm = StandIn(1, [("TypeError: bad", None), (None, FACTS)])
    with pytest.raises(ValueError, match=r"failed on rank\(s\) 0, 1: rank 0: TypeError: bad; "
                                         r"rank 1: KeyError: 'no such tensor'") as caught:
        agreed(comm, "load_model", step)
    assert comm.calls == 1                                  # it took part in the exchange
    assert isinstance(caught.value.__cause__, KeyError)     # the local error kept


def test_ranks_failing_alike_are_listed_together():
    def step():
        raise ValueError("path: 'x' does not exist")

    comm = StandIn(0, [(None, FACTS), ("ValueError: path: 'x' does not exist", None)])
    with pytest.raises(ValueError, match=r"^load_model failed on rank\(s\) 0, 2: ranks 0, 2: "
                                         r"ValueError: path: 'x' does not exist$"):
        agreed(comm, "load_model", step)


def test_disagreeing_facts_are_named_with_the_ranks_that_hold_each_value():
    other = dict(FACTS, dtype="'bfloat16'")
    comm = StandIn(0, [(None, other), (None, dict(FACTS)), (None, other)])
    with pytest.raises(ValueError, match=r"load_model: the ranks disagree on dtype \(rank\(s\) "
                                         r"0, 2: None; rank\(s\) 1, 3: 'bfloat16'\)$"):
        agreed(comm, "load_model", lambda: ("model", dict(FACTS)))


def test_a_fact_only_another_rank_has_is_a_disagreement():
    comm = StandIn(0, [(None, dict(FACTS, placement="p"))])
    with pytest.raises(ValueError, match="disagree on placement"):
        agreed(comm, "load_model", lambda: ("model", dict(FACTS)))


def test_digest_is_canonical():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert len(digest(None)) == 16


def test_communicator_refuses_anything_else():
    """Named, with mpi4py (the type given) or without it (how to install it)."""
    try:
        import mpi4py  # noqa: F401
        why = r" \(mpi4py.MPI.Comm, e.g. MPI.COMM_WORLD\), got StandIn"
    except ImportError:
        why = r", but mpi4py cannot be imported .*pip install 'moelab\[mpi\]'"
    with pytest.raises(TypeError, match=r"^expert_parallel: expected an mpi4py communicator" + why):
        communicator(StandIn(0, []), "expert_parallel")


def test_load_model_checks_expert_parallel_and_placement(tmp_path):
    with pytest.raises(TypeError, match="expert_parallel: expected an mpi4py communicator"):
        moelab.hf.load_model(tmp_path, expert_parallel=object())
    with pytest.raises(ValueError, match=r"placement: only with expert_parallel"):
        moelab.hf.load_model(tmp_path, placement=[0, 1])
