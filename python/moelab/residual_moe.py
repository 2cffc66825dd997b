"""ResidualMoE: Grok-2's FFN, a dense MLP beside the MoE, ``(MLP(x) + MoE(x)) / sqrt(2)``.

Grok-2 runs on every MoE layer a dense gated MLP of width ``intermediate_size`` on the same
input as the routed experts and averages the two in the residual-preserving way (sglang's
``Grok1DecoderLayer`` with ``residual_moe``). ``moelab.build`` does not assemble Grok-2's whole
decoder (its multipliers are not part of ``ModelConfig``); this is its FFN, checked against a
reference written from the published code's description (tests/reference/test_grok2.py).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np

from ._checks import SEED_LIMIT, checked_seed
from .layer import MoELayer, RoutingStats
from .mlp import GatedMLP
from .model_config import ModelConfig

__all__ = ["ResidualMoE"]

_INV_SQRT2 = np.float32(1.0 / math.sqrt(2.0))


class ResidualMoE:
    """The FFN of a ``residual_moe`` model's MoE layers.

    config : ModelConfig with ``residual_moe`` (its ``moe`` and ``intermediate_size``,
        ``hidden_act`` for the MLP). seed : int in [0, 2**64) (the MoE from ``seed``, the MLP
        from ``seed + 1``).

    ``moe`` is the MoELayer, ``mlp`` the GatedMLP (their ``weights`` / ``load_weights``).
    ``ffn(x)`` with ``x : (T, H)`` float32 returns ``(T, H)`` float32;
    ``ffn(x, return_stats=True)`` returns ``(y, RoutingStats)``.

    Raises TypeError (config not a ModelConfig) or ValueError (a config without residual_moe);
    x is checked by the MoE layer and the MLP.
    """

    def __init__(self, config: ModelConfig, seed: int = 0):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a moelab.ModelConfig, got {type(config).__name__}")
        if not config.residual_moe:
            raise ValueError(f"config: {config.display_name!r} has residual_moe=False")
        seed = checked_seed(seed)
        self.config = config
        self.moe = MoELayer(config.moe, seed=seed)
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size,
                            activation=config.hidden_act, seed=(seed + 1) % SEED_LIMIT)

    def __call__(self, x, return_stats: bool = False
                 ) -> Union[np.ndarray, Tuple[np.ndarray, Optional[RoutingStats]]]:
        if return_stats:
            y, stats = self.moe(x, return_stats=True)                     # (T, H)
        else:
            y, stats = self.moe(x), None                                  # (T, H)
        y = (self.mlp(x) + y) * _INV_SQRT2                                # (T, H)
        return (y, stats) if return_stats else y

    @property
    def num_params(self) -> int:
        return self.moe.num_params + self.mlp.num_params

    def __repr__(self) -> str:
        return f"ResidualMoE({self.moe!r} + {self.mlp!r}) / sqrt(2)"
