"""One module per model family; importing this package registers them all.

Each module holds everything moelab knows of its family (HF config defaults and parser,
presets with sources, checkpoint names, the transformers parity fixture) and ends by calling
``moelab.registry.register``. The order below is the registration order, which is the order of
``moelab.families()`` and of ``moelab.list_presets()`` (whose MoE presets come first): MoE
families with presets, dense families with presets, then the rest. How to add a family:
docs/adding_a_family.md.
"""

from __future__ import annotations

import importlib

#: Registration order.
MODULES = ("deepseek_v3", "glm4_moe", "qwen3_moe", "qwen3_next", "llama4", "gpt_oss", "grok",
           "mixtral", "olmo2", "gemma3", "mistral", "smollm3", "qwen2_moe", "olmoe",
           "deepseek_v2", "phimoe", "dbrx", "llama", "qwen2", "qwen3")

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
