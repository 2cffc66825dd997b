"""Configuration of one MoE layer: a frozen, validated dataclass with Hugging Face key names.

Every switch of the routers and experts (docs/semantics.md) is a field; nothing is inferred
from a dimension. An impossible combination raises ``ValueError`` saying why, at construction.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _core, params
from ._checks import is_int, is_real

__all__ = ["MoEConfig", "SCORINGS", "ACTIVATIONS"]

#: Router kinds (docs/semantics.md, "Routers").
SCORINGS = ("softmax", "sigmoid", "topk_softmax", "llama4")
#: Gated expert activations: ``act(gate) * up``; ``swiglu_oai`` is gpt-oss's clamped SwiGLU.
ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu", "swiglu_oai")

#: The router's scale and soft-cap are applied in float32: a larger value would become inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: The integer fields; each is kept as a Python int (a NumPy integer is converted).
_INT_FIELDS = ("hidden_size", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
               "n_group", "topk_group", "n_shared_experts", "shared_intermediate_size")


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

    Integer fields take Python or NumPy integers (not bools) and keep them as Python ints.
    Bounds (the core's): H, E, I, the shared width and ``n_shared_experts`` at most 2^24
    (``moelab._core.MAX_DIMENSION``), the layer at most 2^36 parameters;
    ``routed_scaling_factor`` and ``router_logit_softcap`` at most the float32 maximum (they
    are applied in float32).

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
        self._check_values()

    # -- validation ---------------------------------------------------------------------
    def _check_types(self) -> None:
        for name in _INT_FIELDS:
            v = getattr(self, name)
            if v is None and name == "shared_intermediate_size":
                continue
            if not is_int(v):
                or_none = " or None" if name == "shared_intermediate_size" else ""
                raise TypeError(f"MoEConfig.{name} must be an int{or_none}, got "
                                f"{type(v).__name__} {v!r}")
            # a NumPy integer would wrap or overflow in the sizes computed from it
            object.__setattr__(self, name, int(v))
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

    def _check_values(self) -> None:
        H, E, k, I = (self.hidden_size, self.num_experts, self.num_experts_per_tok,
                      self.moe_intermediate_size)
        for name, v in (("hidden_size", H), ("num_experts", E), ("moe_intermediate_size", I)):
            if v < 1:
                raise ValueError(f"MoEConfig.{name} must be >= 1, got {v}")
        if not 1 <= k <= E:
            raise ValueError(f"MoEConfig.num_experts_per_tok must be in [1, num_experts={E}], "
                             f"got {k}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"MoEConfig.scoring must be one of {SCORINGS}, got {self.scoring!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MoEConfig.activation must be one of {ACTIVATIONS}, "
                             f"got {self.activation!r}")
        if not math.isfinite(self.routed_scaling_factor) or self.routed_scaling_factor <= 0:
            raise ValueError("MoEConfig.routed_scaling_factor must be finite and > 0, got "
                             f"{self.routed_scaling_factor}")
        self._check_float32("routed_scaling_factor")
        if self.scoring not in ("softmax", "sigmoid") and self.routed_scaling_factor != 1.0:
            raise ValueError(f"MoEConfig.routed_scaling_factor={self.routed_scaling_factor} applies "
                             f"to the 'softmax' and 'sigmoid' routers only, not {self.scoring!r}")
        # group-limited routing
        if self.n_group < 1 or self.topk_group < 1:
            raise ValueError(f"MoEConfig.n_group and topk_group must be >= 1, got "
                             f"{self.n_group} / {self.topk_group}")
        if self.topk_group > self.n_group:
            raise ValueError(f"MoEConfig.topk_group={self.topk_group} exceeds n_group={self.n_group}")
        if self.n_group > 1:
            if self.scoring != "sigmoid":
                raise ValueError("MoEConfig.n_group > 1 (group-limited routing) needs "
                                 f"scoring='sigmoid', got {self.scoring!r}")
            if E % self.n_group != 0:
                raise ValueError(f"MoEConfig.num_experts={E} is not divisible by "
                                 f"n_group={self.n_group}")
            if E // self.n_group < 2:
                raise ValueError(f"MoEConfig: groups of {E // self.n_group} expert(s); the group "
                                 "score sums the two best experts, so a group needs at least 2")
            if k > self.topk_group * (E // self.n_group):
                raise ValueError(f"MoEConfig.num_experts_per_tok={k} exceeds the "
                                 f"{self.topk_group * (E // self.n_group)} experts of the "
                                 f"topk_group={self.topk_group} allowed groups")
        if self.correction_bias and self.scoring != "sigmoid":
            raise ValueError("MoEConfig.correction_bias (e_score_correction_bias) is a selection "
                             f"bias of the 'sigmoid' router, not {self.scoring!r}")
        self._check_none_or_positive("router_logit_softcap")
        self._check_float32("router_logit_softcap")
        # shared experts
        if self.n_shared_experts < 0:
            raise ValueError(f"MoEConfig.n_shared_experts must be >= 0, got {self.n_shared_experts}")
        if self.n_shared_experts == 0:
            if self.shared_intermediate_size is not None:
                raise ValueError("MoEConfig.shared_intermediate_size is set but n_shared_experts=0")
            if self.shared_expert_gate:
                raise ValueError("MoEConfig.shared_expert_gate=True needs n_shared_experts >= 1")
        elif self.shared_intermediate_size is not None and self.shared_intermediate_size < 1:
            raise ValueError("MoEConfig.shared_intermediate_size must be >= 1, got "
                             f"{self.shared_intermediate_size}")
        self._check_none_or_positive("capacity_factor", none_means=" (dropless)")
        # the core's bounds: every dimension (so no size computed from them overflows), then
        # the layer's size (an absurd config is refused before anything is allocated)
        for name in ("hidden_size", "num_experts", "moe_intermediate_size", "n_shared_experts"):
            if getattr(self, name) > _core.MAX_DIMENSION:
                raise ValueError(f"MoEConfig.{name} must be <= 2^24 = {_core.MAX_DIMENSION}, got "
                                 f"{getattr(self, name)}")
        if self.shared_width > _core.MAX_DIMENSION:
            raise ValueError("MoEConfig: the shared expert width (shared_intermediate_size, or "
                             "n_shared_experts * moe_intermediate_size) must be <= 2^24 = "
                             f"{_core.MAX_DIMENSION}, got {self.shared_width}")
        if self.num_params > _core.MAX_LAYER_PARAMS:
            raise ValueError(f"MoEConfig describes {self.num_params:,} parameters in one layer "
                             f"(limit {_core.MAX_LAYER_PARAMS:,}): the dimensions are absurd")

    def _check_float32(self, name: str) -> None:
        v = getattr(self, name)
        if v is not None and v > _FLOAT32_MAX:
            raise ValueError(f"MoEConfig.{name} must be <= {_FLOAT32_MAX} (the float32 maximum), "
                             f"got {v}")

    def _check_none_or_positive(self, name: str, none_means: str = "") -> None:
        v = getattr(self, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"MoEConfig.{name} must be None{none_means} or finite and > 0, "
                             f"got {v}")

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
        """The canonical weight names (docs/semantics.md, "Weights") mapped to their shapes."""
        H, E, I, S = (self.hidden_size, self.num_experts, self.moe_intermediate_size,
                      self.shared_width)
        shapes = {"router.weight": (E, H)}
        if self.router_bias:
            shapes["router.bias"] = (E,)
        if self.correction_bias:
            shapes["router.e_score_correction_bias"] = (E,)
        shapes["experts.gate_up_proj"] = (E, 2 * I, H)
        shapes["experts.down_proj"] = (E, H, I)
        if self.expert_bias:
            shapes["experts.gate_up_proj_bias"] = (E, 2 * I)
            shapes["experts.down_proj_bias"] = (E, H)
        if S:
            shapes["shared_experts.gate_up_proj"] = (2 * S, H)
            shapes["shared_experts.down_proj"] = (H, S)
        if self.shared_expert_gate:
            shapes["shared_expert_gate.weight"] = (1, H)
        return shapes

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
