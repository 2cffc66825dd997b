"""Released model configurations as ``ModelConfig`` presets: one data-only file per family.

    moelab.list_presets()              # canonical names, MoE models first
    cfg = moelab.preset("deepseek-v3") # a ModelConfig (frozen; ``cfg.replace(...)`` to vary)

Aliases (``deepseek-r1`` -> ``deepseek-v3``) resolve to the same architecture with the alias as
its display name.
"""

from __future__ import annotations

from typing import Dict, List

from ..model_config import ModelConfig
from . import (deepseek, gemma3, glm, gpt_oss, grok, kimi, llama4, mistral, mixtral, olmo2,
               qwen, smollm3)

__all__ = ["list_presets", "preset", "PRESETS", "ALIASES"]

_FAMILIES = (deepseek, kimi, glm, qwen, llama4, gpt_oss, grok, mixtral,
             olmo2, gemma3, mistral, smollm3)

PRESETS: Dict[str, ModelConfig] = {}
ALIASES: Dict[str, str] = {}
for _family in _FAMILIES:
    PRESETS.update(_family.PRESETS)
    ALIASES.update(_family.ALIASES)


def list_presets(include_aliases: bool = False) -> List[str]:
    """Names of every preset, in a fixed order (MoE families first, then dense comparators).

    include_aliases : also list alternative names (e.g. ``"deepseek-r1"``).
    """
    names = list(PRESETS)
    if include_aliases:
        names += list(ALIASES)
    return names


def preset(name: str) -> ModelConfig:
    """The ``ModelConfig`` of a released model by preset name (case-insensitive).

    Raises TypeError (name not a str) or ValueError (unknown name; the message lists them all).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    if key in ALIASES:
        return PRESETS[ALIASES[key]].replace(name=key)
    raise ValueError(f"unknown preset {name!r}; available: "
                     f"{', '.join(list_presets(include_aliases=True))}")
