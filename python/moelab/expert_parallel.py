"""ExpertParallelMoE: one MoE layer whose routed experts are split across the ranks of an MPI
communicator (mpi4py), with outputs and routing statistics bitwise equal to the single-process
layer's (docs/expert_parallel.md).

Every rank holds the replicated part of the layer (router, shared experts, biases) and the
routed experts its placement gives it. A call on the same (T, H) hidden states on every rank:

1. each rank routes its contiguous slice of the tokens (``np.array_split`` boundaries);
2. the routed ids and weights of all tokens are gathered (``Allgatherv``, T * 2k int32), and
   every rank runs the same counting sort with the capacity of all T tokens, so every rank knows
   which (token, slot) pairs are kept, which row each takes, and how many rows it sends to and
   receives from every other rank (no exchange of counts is needed);
3. all-to-all 1 (``Alltoallv``): each kept pair's input row goes to the rank that owns its
   expert; the owners run their experts over their rows in the single-process row order;
4. all-to-all 2 (``Alltoallv``): the outputs go back; each rank combines its slice in slot
   order (plus the shared experts) and ``Allgatherv`` restores (T, H) on every rank.

The transport uses mpi4py's buffer methods on NumPy arrays (no pickling on the hot path); the
C++ steps run with the GIL released in between. mpi4py itself is not imported here: ``comm`` is
any mpi4py communicator (``MPI.COMM_WORLD`` or one split from it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ._checks import is_int
from ._convert import as_float32_array
from .config import MoEConfig
from .layer import MoELayer, RoutingStats

__all__ = ["ExpertParallelMoE", "CommStats", "placement_of"]

_FLOAT_BYTES = 4  # rows travel as float32


def placement_of(num_experts: int, size: int, placement=None) -> np.ndarray:
    """(E,) int64: the rank that owns each routed expert.

    num_experts : E >= 1; size : the number of ranks N >= 1.
    placement : None for contiguous blocks of experts (``np.array_split(range(E), N)``: the
        first E mod N ranks hold one expert more when N does not divide E; ranks past E hold
        none), or a length-E sequence of ints in [0, N) (a rank may own no expert).

    Raises TypeError (a non-int count or owner, a placement that is not a sequence) or
    ValueError (counts below 1, a placement of the wrong length or with a rank outside
    [0, N)), naming the argument.
    """
    for name, value in (("num_experts", num_experts), ("size", size)):
        if not is_int(value):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    E, N = int(num_experts), int(size)
    if placement is None:
        blocks = np.array_split(np.arange(E), N)
        return np.concatenate([np.full(len(b), r, np.int64) for r, b in enumerate(blocks)])
    if isinstance(placement, (str, bytes)) or not hasattr(placement, "__len__"):
        raise TypeError(f"placement must be None or a sequence of E={E} ranks, got "
                        f"{type(placement).__name__}")
    if len(placement) != E:
        raise ValueError(f"placement: expected (E={E},) owning ranks, got {len(placement)}")
    owners = []
    for e, r in enumerate(placement):
        if not is_int(r):
            raise TypeError(f"placement[{e}]: expected an int rank, got {type(r).__name__} {r!r}")
        if not 0 <= r < N:
            raise ValueError(f"placement[{e}]: rank {r} outside [0, N={N})")
        owners.append(int(r))
    return np.asarray(owners, np.int64)


@dataclass(frozen=True)
class CommStats:
    """The communication of one expert-parallel call, per rank (arrays of length N, index =
    rank, the same on every rank).

    tokens : (N,) int64, tokens each rank routed (its slice).
    rows_sent : (N,) int64, kept (token, slot) pairs each rank sent to other ranks in
        all-to-all 1 (the same number of rows comes back to it in all-to-all 2).
    rows_received : (N,) int64, rows each rank received from other ranks for its experts.
    rows_local : (N,) int64, kept pairs whose token and expert are on the same rank (they do
        not cross the network). sum(rows_sent) == sum(rows_received), and
        sum(rows_sent + rows_local) == the kept pairs (sum of tokens_per_expert).
    expert_rows : (N,) int64, rows each rank's experts processed: rows_received + rows_local.
    bytes_sent, bytes_received : (N,) int64, bytes of rows each rank sent to and received from
        other ranks over both all-to-alls: 4 H (rows_sent + rows_received) each (float32 rows
        out and outputs back). The small collectives (the gathered ids and weights, 8 k bytes
        per token; the gathered outputs, 4 H bytes per token; the logits when statistics are
        asked) come on top.
    imbalance : max over mean of expert_rows (1.0 when no row was processed).
    seconds : this rank's wall-clock seconds per phase ("route", "gather_ids", "dispatch",
        "alltoall_rows", "experts", "alltoall_back", "combine", "gather_y"); for profiling,
        never compared.
    """

    tokens: np.ndarray
    rows_sent: np.ndarray
    rows_received: np.ndarray
    rows_local: np.ndarray
    bytes_sent: np.ndarray
    bytes_received: np.ndarray
    imbalance: float
    seconds: dict = field(default_factory=dict, compare=False)

    @property
    def expert_rows(self) -> np.ndarray:
        return self.rows_received + self.rows_local

    def __repr__(self) -> str:
        return (f"CommStats(N={self.tokens.shape[0]}, rows_sent={self.rows_sent.tolist()}, "
                f"rows_received={self.rows_received.tolist()}, "
                f"imbalance={self.imbalance:.3f})")


def _digest(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _slices(counts: np.ndarray) -> np.ndarray:
    """(N + 1,) starts of the ranks' slices of tokens with these counts."""
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


class ExpertParallelMoE:
    """One MoE layer run across the ranks of ``comm``, each holding the experts ``placement``
    gives it (docs/expert_parallel.md).

    Parameters
    ----------
    layer : MoELayer, the same config and replicated weights on every rank; it must hold the
        experts this rank owns (a layer made with a seed holds all; one loaded in part, with
        None for the others, holds only its own: ``MoELayer.load_weights``).
    comm : an mpi4py communicator (``MPI.COMM_WORLD``), every rank of it making this object.
    placement : None (contiguous blocks of experts) or a length-E sequence of owning ranks
        (``placement_of``).

    ``layer(x)`` on the same x (T, H) on every rank returns y (T, H) float32 on every rank,
    bitwise equal to ``layer.layer(x)`` on one process; ``return_stats=True`` adds the
    RoutingStats of all T tokens (equal too), whose ``comm`` field holds ``CommStats``.
    ``forward_local(x_slice)`` takes each rank's own tokens instead (data parallel over tokens).

    Raises (on every rank alike, so that none waits forever in a collective)
    ------
    TypeError : layer is not a MoELayer, comm not an mpi4py communicator, a bad placement type.
    ValueError : a bad placement; ranks that disagree on the config, the weight dtype or the
        placement (named); a layer that lacks experts its rank owns.
    """

    def __init__(self, layer: MoELayer, comm, placement=None):
        for method in ("Get_rank", "Get_size", "allgather", "Allgather", "Allgatherv",
                       "Alltoallv"):
            if not hasattr(comm, method):
                raise TypeError(f"comm must be an mpi4py communicator (MPI.COMM_WORLD), got "
                                f"{type(comm).__name__}")
        self._comm = comm
        self._rank, self._size = int(comm.Get_rank()), int(comm.Get_size())
        # Every check runs on every rank before the first collective; the collective after
        # them agrees on the outcome, so that all ranks raise together.
        error, facts = None, None
        try:
            if not isinstance(layer, MoELayer):
                raise TypeError(f"layer must be a moelab.MoELayer, got {type(layer).__name__}")
            owners = placement_of(layer.config.num_experts, self._size, placement)
            owned = np.flatnonzero(owners == self._rank)
            lacking = owned[~layer.held_experts[owned]]
            if lacking.size:
                raise ValueError(f"layer: rank {self._rank} owns experts {lacking.tolist()} by "
                                 f"the placement, but its layer does not hold them")
            facts = {"config": _digest(sorted(dataclasses.asdict(layer.config).items())),
                     "weight_dtype": layer.weight_dtype,
                     "placement": _digest(owners.tolist())}
        except (TypeError, ValueError) as exc:
            error = (type(exc).__name__, str(exc))
        gathered = comm.allgather((error, facts))  # small, once: pickled
        _raise_first_error([g[0] for g in gathered])
        for key in ("config", "weight_dtype", "placement"):
            values = [g[1][key] for g in gathered]
            if len(set(values)) > 1:
                groups = {}
                for r, v in enumerate(values):
                    groups.setdefault(v, []).append(r)
                raise ValueError(f"the ranks disagree on the {key}: " +
                                 "; ".join(f"ranks {rs} have {v}" for v, rs in groups.items()))
        self._layer = layer
        self._owners = owners                                       # (E,)
        self._owned = owned.astype(np.int32)                        # (E_r,)

    # ---- What it holds ------------------------------------------------------------------

    @property
    def layer(self) -> MoELayer:
        return self._layer

    @property
    def config(self) -> MoEConfig:
        return self._layer.config

    @property
    def comm(self):
        return self._comm

    @property
    def placement(self) -> np.ndarray:
        """(E,) int64: the rank owning each routed expert."""
        return self._owners.copy()

    @property
    def owned_experts(self) -> np.ndarray:
        """(E_r,) int32, increasing: the routed experts this rank runs."""
        return self._owned.copy()

    @property
    def num_params(self) -> int:
        """Parameters of the whole layer, every expert counted wherever it is held (as the
        single-process layer's ``num_params``: every weight at its full shape, buffers such as
        a correction bias included); :attr:`held_params` is this rank's share."""
        return int(sum(int(np.prod(s)) for s in self.layer.weight_shapes().values()))

    @property
    def held_params(self) -> int:
        """Parameters this rank holds for the layer: the replicated ones (router, shared
        experts, biases of the router) and the routed experts it owns."""
        c = self.config
        return self.num_params - (c.num_experts - len(self._owned)) * c.expert_params

    def __repr__(self) -> str:
        c = self.config
        return (f"ExpertParallelMoE(rank={self._rank}/{self._size}, E={c.num_experts}, "
                f"owned={len(self._owned)}, H={c.hidden_size}, scoring={c.scoring!r})")

    # ---- Calls --------------------------------------------------------------------------

    def __call__(self, x, return_stats: bool = False
                 ) -> Union[np.ndarray, Tuple[np.ndarray, RoutingStats]]:
        """y (T, H) float32 of x (T, H), the same x on every rank -> the same y on every rank.

        Raises ValueError / TypeError (x of the wrong shape or type, NaN or Inf, or ranks
        given different T) on every rank."""
        return self._run(x, replicated=True, return_stats=return_stats)

    def forward_local(self, x_slice, return_stats: bool = False
                      ) -> Union[np.ndarray, Tuple[np.ndarray, RoutingStats]]:
        """y (T_r, H) of this rank's own tokens x_slice (T_r, H) (data parallel over tokens:
        each rank its own T_r, which may be 0). The tokens of all ranks, concatenated in rank
        order, are one batch: capacity counts all of them, and the routed part of y is bitwise
        that of the single-process layer on the concatenation. The shared experts run on the
        rank's own rows (their kernel's per-row bits are those of a batch of T_r rows).
        ``return_stats`` gives the RoutingStats of the concatenation.

        Raises on every rank when any rank's x_slice is bad."""
        return self._run(x_slice, replicated=False, return_stats=return_stats)

    # ---- The steps ----------------------------------------------------------------------

    def _checked(self, x) -> Tuple[Optional[np.ndarray], Optional[Tuple[str, str]]]:
        """x as float32 (T, H) and no error, or None and (error type, message)."""
        H = self.config.hidden_size
        try:
            x = as_float32_array(x, "x")
            if x.ndim != 2 or x.shape[1] != H:
                raise ValueError(f"x: expected (T, H={H}), got {x.shape}")
            if not np.isfinite(x).all():
                raise ValueError("x: holds NaN or Inf")
            return x, None
        except (TypeError, ValueError) as exc:
            return None, (type(exc).__name__, str(exc))

    def _agree(self, x: Optional[np.ndarray], error) -> np.ndarray:
        """(N,) tokens of every rank after every rank checked its input: one Allgather of
        (error flag, T); when any rank failed, every rank raises (the messages gathered)."""
        mine = np.array([1 if error else 0, 0 if x is None else x.shape[0]], np.int64)
        everyone = np.empty((self._size, 2), np.int64)
        self._comm.Allgather(mine, everyone)
        if everyone[:, 0].any():
            _raise_first_error(self._comm.allgather(error))  # the error path only: pickled
        return everyone[:, 1]

    def _run(self, x, replicated: bool, return_stats: bool):
        clock = _Clock()
        comm, N, rank = self._comm, self._size, self._rank
        layer = self._layer
        k, E, H = (self.config.num_experts_per_tok, self.config.num_experts,
                   self.config.hidden_size)
        x, error = self._checked(x)
        tokens_of = self._agree(x, error)                                 # (N,)
        if replicated:
            if (tokens_of != tokens_of[0]).any():
                raise ValueError(f"x: the ranks were given different T: {tokens_of.tolist()} "
                                 f"(every rank must call with the same x)")
            T = int(tokens_of[0])
            tokens_of = np.array([len(b) for b in np.array_split(np.arange(T), N)], np.int64)
        starts = _slices(tokens_of)                                       # (N + 1,)
        T = int(starts[-1])
        t0, t1 = int(starts[rank]), int(starts[rank + 1])
        x_mine = x[t0:t1] if replicated else x                            # (T_r, H)

        # 1. route this rank's tokens; gather every token's ids and weights
        logits_mine, ids_mine, w_mine = layer.route(x_mine)               # (T_r, E), (T_r, k) x2
        clock.lap("route")
        packed = np.concatenate([ids_mine, w_mine.view(np.int32)], axis=1)  # (T_r, 2k) int32
        gathered = np.empty((T, 2 * k), np.int32)
        comm.Allgatherv(packed, [gathered, tokens_of * 2 * k])
        ids = np.ascontiguousarray(gathered[:, :k])                       # (T, k)
        weights = np.ascontiguousarray(gathered[:, k:]).view(np.float32)  # (T, k)
        clock.lap("gather_ids")

        # 2. the same dispatch on every rank: which pairs are kept, and their rows
        row_of_pair, tokens_per_expert, dropped = layer.dispatch(ids)     # (T k,), (E,)
        pair_expert = ids.reshape(-1).astype(np.int64)                    # (T k,)
        pair_rank = np.repeat(np.arange(N), tokens_of * k)                # (T k,) token's rank
        kept = row_of_pair >= 0
        dest = self._owners[pair_expert]                                  # (T k,) owner
        # rows each rank sends to each rank: (source, destination) counts
        flow = np.bincount(pair_rank[kept] * N + dest[kept], minlength=N * N).reshape(N, N)
        # what this rank sends: its kept pairs ordered by destination, then by row (the
        # single-process row order: expert, token, slot)
        mine = np.flatnonzero(kept[t0 * k:t1 * k]) + t0 * k               # (S,) global pairs
        send_order = mine[np.lexsort((row_of_pair[mine], dest[mine]))]     # (S,)
        rows_out = layer.expert_inputs(x_mine, send_order // k - t0,
                                       weights.reshape(-1)[send_order])   # (S, H)
        # what this rank receives: the kept pairs of its experts, by source, then by row
        theirs = np.flatnonzero(kept & (dest == rank))                    # (Q,) by pair
        recv_rows = row_of_pair[theirs[np.lexsort((row_of_pair[theirs], pair_rank[theirs]))]]
        clock.lap("dispatch")

        # 3. all-to-all 1: rows to their experts' owners
        rows_in = np.empty((recv_rows.size, H), np.float32)                # (Q, H)
        comm.Alltoallv([rows_out, flow[rank] * H], [rows_in, flow[:, rank] * H])
        clock.lap("alltoall_rows")
        # the owner's experts over their rows in the single-process order (by row)
        by_row = np.argsort(recv_rows, kind="stable")                     # (Q,)
        counts = tokens_per_expert[self._owned]                           # (E_r,)
        out_sorted = layer.run_experts(rows_in[by_row], self._owned, counts)  # (Q, H)
        out_in = np.empty_like(out_sorted)
        out_in[by_row] = out_sorted                                       # (Q, H) as received
        clock.lap("experts")

        # 4. all-to-all 2: outputs back to the tokens' ranks, in the order sent
        out_back = np.empty((send_order.size, H), np.float32)             # (S, H)
        comm.Alltoallv([out_in, flow[:, rank] * H], [out_back, flow[rank] * H])
        clock.lap("alltoall_back")
        # each pair of this rank's tokens -> its row in out_back (-1: dropped)
        local_row = np.full(T * k, -1, np.int64)
        local_row[send_order] = np.arange(send_order.size)
        if replicated and self.config.shared_width:
            # The shared experts over all T tokens, as the single-process layer runs them (a
            # kernel's per-row bits depend on the batch's row count): combine over all tokens,
            # the other ranks' pairs left out, and keep this rank's slice.
            y_mine = layer.combine(x, weights, local_row, out_back)[t0:t1]  # (T_r, H)
        else:
            y_mine = layer.combine(x_mine, weights[t0:t1], local_row[t0 * k:t1 * k], out_back)
        clock.lap("combine")

        if replicated:
            y = np.empty((T, H), np.float32)
            comm.Allgatherv(np.ascontiguousarray(y_mine), [y, tokens_of * H])
        else:
            y = y_mine
        clock.lap("gather_y")
        if not return_stats:
            return y

        # statistics of all T tokens, computed alike on every rank
        logits = np.empty((T, E), np.float32)
        comm.Allgatherv(logits_mine, [logits, tokens_of * E])
        aux, z = layer.routing_losses(logits, tokens_per_expert)
        topk_weights = np.where(row_of_pair.reshape(T, k) >= 0, weights, np.float32(0))
        rows_local = np.diag(flow).astype(np.int64)
        rows_sent = flow.sum(axis=1) - rows_local
        rows_received = flow.sum(axis=0) - rows_local
        moved = (rows_sent + rows_received) * H * _FLOAT_BYTES
        expert_rows = rows_received + rows_local
        mean = expert_rows.mean()
        comm_stats = CommStats(
            tokens=tokens_of.astype(np.int64), rows_sent=rows_sent, rows_received=rows_received,
            rows_local=rows_local, bytes_sent=moved.copy(), bytes_received=moved.copy(),
            imbalance=float(expert_rows.max() / mean) if mean > 0 else 1.0,
            seconds=clock.seconds)
        stats = RoutingStats(
            topk_ids=ids, topk_weights=topk_weights, router_logits=logits,
            tokens_per_expert=tokens_per_expert, aux_loss=aux, z_loss=z, dropped=dropped,
            comm=comm_stats)
        return y, stats


class _Clock:
    """Seconds per named phase, lap after lap."""

    def __init__(self):
        self.seconds = {}
        self._mark = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._mark
        self._mark = now


def _raise_first_error(errors: Sequence) -> None:
    """Raise, on every rank alike, the first rank's error of (type name, message) pairs (None
    for a rank without one), naming the rank."""
    for r, error in enumerate(errors):
        if error:
            kind, message = error
            raise (TypeError if kind == "TypeError" else ValueError)(f"rank {r}: {message}")
