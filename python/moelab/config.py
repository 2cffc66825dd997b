"""Configuration of one MoE layer: a frozen, validated dataclass with Hugging Face key names.

Every switch of the routers and experts (docs/semantics.md) is a field; nothing is inferred
from a dimension. An impossible combination raises ``ValueError`` saying why, at construction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from . import _core, params
from ._checks import is_int, is_real

__all__ = ["MoEConfig", "SCORINGS", "ACTIVATIONS"]

#: Router kinds (docs/semantics.md, "Routers"), as the core names them.
SCORINGS = _core.SCORINGS
#: Gated expert activations: ``act(gate) * up``; ``swiglu_oai`` is gpt-oss's clamped SwiGLU.
ACTIVATIONS = _core.ACTIVATIONS

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1  # the range of the core's integers


@dataclass(frozen=True)
class MoEConfig:
    """One Mixture-of-Experts FFN layer.

    Dimensions
    ----------
    hidden_size : H, the model width.
    num_experts : E, routed experts.
    num_experts_per_tok : k, experts per token (1 <= k <= E).
    moe_intermediate_size : I, width of one routed expert.

    Router (docs/semantics.md)
    --------------------------
    scoring : "softmax" | "sigmoid" | "topk_softmax" | "llama4".
    norm_topk_prob : renormalise the selected weights to sum to 1 ("softmax", "sigmoid"; the
        "topk_softmax" weights sum to 1 by construction; not used by "llama4").
    routed_scaling_factor : multiplies the applied weights ("softmax", "sigmoid" only).
    n_group, topk_group : group-limited selection ("sigmoid" only; DeepSeek-V3 uses 8 / 4).
    correction_bias : a selection-only bias ``router.e_score_correction_bias`` ("sigmoid" only).
    router_bias : ``router.bias`` added to the logits (gpt-oss).
    router_logit_softcap : ``c * tanh(l / c)`` on the logits before scoring (Grok-2: 30.0).

    Experts
    -------
    activation : "silu" | "gelu" | "gelu_tanh" | "relu" | "swiglu_oai" (gpt-oss clamped SwiGLU).
    expert_bias : biases on gate_up_proj and down_proj (gpt-oss).
    n_shared_experts : always-active experts added to the routed output.
    shared_intermediate_size : width S of the shared expert block; ``None`` means
        ``n_shared_experts * moe_intermediate_size`` (DeepSeek-V3 convention).
    shared_expert_gate : scale the shared output by ``sigmoid(w_g . x)`` (Qwen2-MoE, Qwen3-Next).
    capacity_factor : ``None`` is dropless; otherwise each expert keeps at most
        ``C = ceil(T * k / E * capacity_factor)`` (token, slot) pairs, in token order.

    Integer fields take Python or NumPy integers (not bools) and keep them as Python ints. The
    core's bounds apply: H, E, I, the shared width and ``n_shared_experts`` at most 2^24, the
    layer at most 2^36 parameters; ``routed_scaling_factor`` and ``router_logit_softcap`` at
    most the float32 maximum (they are applied in float32).

    Raises
    ------
    TypeError : a field of the wrong type.
    ValueError : a value out of range or an impossible combination, with the reason.
    """

    hidden_size: int
    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    scoring: str = "softmax"
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    correction_bias: bool = False
    router_bias: bool = False
    router_logit_softcap: Optional[float] = None
    activation: str = "silu"
    expert_bias: bool = False
    n_shared_experts: int = 0
    shared_intermediate_size: Optional[int] = None
    shared_expert_gate: bool = False
    capacity_factor: Optional[float] = None

    def __post_init__(self) -> None:
        self._check_types()
        self._as_python_numbers()
        self.core_spec()  # the value rules live in the core (cpp/src/spec.cpp)

    def _as_python_numbers(self) -> None:
        """NumPy scalars and fractions become the Python int or float the core reads, so that
        sizes derived from the fields never wrap in a fixed-width type."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (bool, str)) or v is None or type(v) in (int, float):
                continue
            object.__setattr__(self, f.name, int(v) if is_int(v) else float(v))

    # -- validation ---------------------------------------------------------------------
    def _check_types(self) -> None:
        """Types only (the core's conversion would name no field); values: ``core_spec``."""
        for name in ("hidden_size", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
                     "n_group", "topk_group", "n_shared_experts"):
            v = getattr(self, name)
            if not is_int(v):
                raise TypeError(f"MoEConfig.{name} must be an int, got {type(v).__name__} {v!r}")
        if self.shared_intermediate_size is not None and not is_int(self.shared_intermediate_size):
            raise TypeError("MoEConfig.shared_intermediate_size must be an int or None, got "
                            f"{type(self.shared_intermediate_size).__name__}")
        for name in ("norm_topk_prob", "correction_bias", "router_bias", "expert_bias",
                     "shared_expert_gate"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise TypeError(f"MoEConfig.{name} must be a bool, got {type(v).__name__} {v!r}")
        if not is_real(self.routed_scaling_factor):
            raise TypeError("MoEConfig.routed_scaling_factor must be a real number, got "
                            f"{type(self.routed_scaling_factor).__name__}")
        for name in ("router_logit_softcap", "capacity_factor"):
            v = getattr(self, name)
            if v is not None and not is_real(v):
                raise TypeError(f"MoEConfig.{name} must be a real number or None, got "
                                f"{type(v).__name__}")
        for name in ("scoring", "activation"):
            v = getattr(self, name)
            if not isinstance(v, str):
                raise TypeError(f"MoEConfig.{name} must be a str, got {type(v).__name__}")

    def core_spec(self) -> "_core.MoESpec":
        """The C++ description of this layer (``_core.MoESpec``), which holds the value rules.

        Raises ValueError "MoEConfig.<the core's reason>" for a value out of range or an
        impossible combination.
        """
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, v in fields.items():
            if is_int(v) and not _INT64_MIN <= v <= _INT64_MAX:  # what the core cannot hold
                raise ValueError(f"MoEConfig.{name}={v} does not fit in a 64-bit integer")
        try:
            return _core.MoESpec(**fields)
        except ValueError as exc:
            raise ValueError(f"MoEConfig.{exc}") from None

    # -- derived sizes (the formulas: moelab.params) ------------------------------------
    @property
    def shared_width(self) -> int:
        """S, the width of the shared expert block (0 when there is none)."""
        if self.n_shared_experts == 0:
            return 0
        if self.shared_intermediate_size is not None:
            return self.shared_intermediate_size
        return self.n_shared_experts * self.moe_intermediate_size

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert (gate, up, down and their biases)."""
        return params.gated_mlp(self.hidden_size, self.moe_intermediate_size,
                                self.expert_bias).total

    @property
    def router_params(self) -> int:
        """Router parameters (weight and bias; the correction bias is a buffer, not counted)."""
        return params.router(self.num_experts, self.hidden_size, self.router_bias).total

    @property
    def shared_params(self) -> int:
        """Parameters of the shared expert block and its gate."""
        return self._shared().total

    def _shared(self) -> "params.Params":
        H = self.hidden_size
        gate = params.shared_expert_gate(H) if self.shared_expert_gate else params.Params()
        return params.gated_mlp(H, self.shared_width) + gate

    def param_split(self, active: bool = False) -> "params.Params":
        """The layer's parameters as weight matrices and the rest (``moelab.params.Params``):
        all of them, or with ``active`` those one token uses (k routed experts, the shared
        block, the router)."""
        experts = self.num_experts_per_tok if active else self.num_experts
        expert = params.gated_mlp(self.hidden_size, self.moe_intermediate_size, self.expert_bias)
        return (experts * expert + self._shared()
                + params.router(self.num_experts, self.hidden_size, self.router_bias))

    @property
    def num_params(self) -> int:
        """All parameters of the layer (routed experts, shared experts, router)."""
        return self.param_split().total

    @property
    def num_active_params(self) -> int:
        """Parameters that work for one token: k routed experts, the shared block, the router."""
        return self.param_split(active=True).total

    def weight_shapes(self) -> dict:
        """The canonical weight names (docs/semantics.md, "Weights") mapped to their shapes, in
        canonical order, as the core lists them."""
        return dict(self.core_spec().weight_shapes())

    def replace(self, **changes) -> "MoEConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        default = {f.name: f.default for f in dataclasses.fields(self)}
        parts = [f"H={self.hidden_size}", f"E={self.num_experts}",
                 f"k={self.num_experts_per_tok}", f"I={self.moe_intermediate_size}"]
        skip = {"hidden_size", "num_experts", "num_experts_per_tok", "moe_intermediate_size"}
        for f in dataclasses.fields(self):
            if f.name in skip:
                continue
            v = getattr(self, f.name)
            if v != default[f.name]:
                parts.append(f"{f.name}={v!r}")
            elif f.name in ("scoring", "activation"):
                parts.append(f"{f.name}={v!r}")
        return f"MoEConfig({', '.join(parts)})"
