"""Qwen2 / Qwen2.5 (Alibaba Qwen), dense, ``qwen2``: GQA with q/k/v biases (o_proj without),
optional sliding-window layers."""

from __future__ import annotations

from ..hf_config import Keys, activation, decoder, gqa_attention, heads
from ..model_config import ModelConfig
from ..registry import Family, register
from ._qwen import sliding_layer_types

#: transformers 5.23 ``Qwen2Config`` defaults.
HF_DEFAULTS = dict(
    vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=32, hidden_act="silu", rms_norm_eps=1e-6,
    tie_word_embeddings=False, use_sliding_window=False, sliding_window=4096,
    max_window_layers=28, layer_types=None)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    window, lt = sliding_layer_types(k, L, "qwen2")
    return decoder(k, H, num_hidden_layers=L,
        # Qwen2Attention: q/k/v always with bias, o_proj without
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=True,
                                sliding_window=window),
        intermediate_size=k("intermediate_size"), hidden_act=activation(k),
        layer_types=lt)


register(Family("qwen2", parse=parse, defaults=HF_DEFAULTS))
