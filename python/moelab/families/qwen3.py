"""Qwen3 (Alibaba Qwen), dense, ``qwen3``: GQA with per-head QK-norm, optional sliding-window
layers."""

from __future__ import annotations

from ..hf_config import Keys, activation, decoder
from ..model_config import ModelConfig
from ..registry import Family, register
from ._qwen import qwen3_layers

#: transformers 5.23 ``Qwen3Config`` defaults.
HF_DEFAULTS = dict(
    vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=32, head_dim=128, hidden_act="silu",
    rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False,
    use_sliding_window=False, sliding_window=4096, max_window_layers=28, layer_types=None)


def parse(k: Keys) -> ModelConfig:
    H, L, att, lt = qwen3_layers(k)
    return decoder(k, H, num_hidden_layers=L,
        attention=att, intermediate_size=k("intermediate_size"), hidden_act=activation(k),
        layer_types=lt)


register(Family("qwen3", parse=parse, defaults=HF_DEFAULTS))
