"""Parameter counts of the building blocks: each formula is written here once.

A count is a :class:`Params`: ``matrix`` parameters (weight matrices, what a matmul multiplies:
2 FLOPs each per token) and ``other`` parameters (biases, norm weights). ``MoEConfig`` (its
experts, router and shared block), ``GatedMLP``, ``moelab.count_params`` / ``moelab.costs`` and
``moelab.build``'s size guard all derive their counts from these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Params", "gated_mlp", "router", "shared_expert_gate", "norms"]


@dataclass(frozen=True)
class Params:
    """A parameter count split into weight-matrix and other parameters (ints)."""

    matrix: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.matrix + self.other

    def __add__(self, rhs: "Params") -> "Params":
        return Params(self.matrix + rhs.matrix, self.other + rhs.other)

    def __mul__(self, n: int) -> "Params":
        return Params(self.matrix * n, self.other * n)

    __rmul__ = __mul__


def gated_mlp(hidden_size: int, intermediate_size: int, bias: bool = False) -> Params:
    """A gated MLP (one expert, a shared expert block, a dense FFN): ``gate_up_proj`` (2I, H)
    and ``down_proj`` (H, I); with ``bias`` their (2I,) and (H,) biases."""
    H, I = hidden_size, intermediate_size
    return Params(matrix=3 * H * I, other=(2 * I + H) if bias else 0)


def router(num_experts: int, hidden_size: int, bias: bool = False) -> Params:
    """``router.weight`` (E, H), with ``bias`` ``router.bias`` (E,). The selection bias
    ``e_score_correction_bias`` is a buffer, not a parameter."""
    E, H = num_experts, hidden_size
    return Params(matrix=E * H, other=E if bias else 0)


def shared_expert_gate(hidden_size: int) -> Params:
    """``shared_expert_gate.weight`` (1, H): one row that a matmul multiplies."""
    return Params(matrix=hidden_size)


def norms(hidden_size: int, count: int, bias: bool = False) -> Params:
    """``count`` RMSNorms over H (LayerNorms, with a bias each, when ``bias``)."""
    return Params(other=count * hidden_size * (2 if bias else 1))
