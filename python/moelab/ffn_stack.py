"""FFNStack: the FFN half of a DecoderModel's layers, hidden states in and out.

A view of a model built by ``moelab.build`` (or loaded), sharing its weights: each layer's FFN
sub-block with the norm placement of the family, the token mixers skipped, then the final norm::

    pre      : x = x + FFN(norm_in(x))
    sandwich : x = x + norm_out(FFN(norm_in(x)))        (Gemma 3)
    post     : x = x + norm_out(FFN(x))                 (OLMo 2)

It is the model to study routing on synthetic hidden-state streams (no embedding, no attention):
``stack(x, return_stats=True)`` gives one ``RoutingStats`` per layer.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np
from tqdm import tqdm

from ._convert import as_float32_array
from .decoder import PROGRESS_DELAY_S, ROUTED_FFNS
from .layer import RoutingStats

__all__ = ["FFNStack"]


class FFNStack:
    """The FFN sub-blocks of ``model`` (a DecoderModel), token mixers skipped.

    ``stack(x)`` with ``x : (T, H)`` or ``(B, S, H)`` float array-like returns float32 of the
    same shape; ``stack(x, return_stats=True)`` returns ``(y, stats)`` with ``stats`` a list of
    one ``RoutingStats`` per layer (``None`` for dense layers), token index ``b * S + s``.
    ``progress`` draws a tqdm bar over the layers on stderr: None (default) only on a terminal
    and only once the forward has run ``PROGRESS_DELAY_S`` seconds, True always, False never.

    Raises TypeError (non-numeric x, progress not a bool or None) or ValueError (wrong rank or
    H, NaN/Inf).
    """

    def __init__(self, model):
        self.model = model

    @property
    def config(self):
        return self.model.config

    @property
    def layers(self):
        return self.model.layers

    def __call__(self, x, return_stats: bool = False, progress: Optional[bool] = None
                 ) -> Union[np.ndarray, Tuple[np.ndarray, List[Optional[RoutingStats]]]]:
        return self.forward(x, return_stats=return_stats, progress=progress)

    def forward(self, x, return_stats: bool = False, progress: Optional[bool] = None
                ) -> Union[np.ndarray, Tuple[np.ndarray, List[Optional[RoutingStats]]]]:
        x = as_float32_array(x, "x")
        H = self.config.hidden_size
        if x.ndim not in (2, 3) or x.shape[-1] != H:
            raise ValueError(f"x: expected (T, H={H}) or (B, S, H={H}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x holds NaN or Inf")
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be None, True or False, got {progress!r}")
        lead = x.shape[:-1]
        h = x.reshape(-1, H)                                                 # (T, H)
        norm = self.model._norm
        stats: List[Optional[RoutingStats]] = []
        bar = tqdm(self.layers, desc=self.config.display_name, unit="layer", leave=False,
                   disable=None if progress is None else not progress,
                   delay=PROGRESS_DELAY_S if progress is None else 0.0)
        for layer in bar:
            n = layer.norms
            f = norm(h, n["ffn_in"]) if "ffn_in" in n else h                 # (T, H)
            st = None
            if return_stats and isinstance(layer.ffn, ROUTED_FFNS):
                f, st = layer.ffn(f, return_stats=True)                      # (T, H)
            else:
                f = layer.ffn(f)                                             # (T, H)
            if "ffn_out" in n:
                f = norm(f, n["ffn_out"])
            h = h + f                                                        # (T, H)
            stats.append(st)
        y = norm(h, self.model.final_norm).reshape(*lead, H)                 # (T, H) -> x.shape
        return (y, stats) if return_stats else y

    def __repr__(self) -> str:
        return f"FFNStack({self.model!r})"
