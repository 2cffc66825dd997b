"""Llama 2 / 3 (Meta), dense, ``llama``: GQA, optional attention and MLP biases."""

from __future__ import annotations

from ..hf_config import Keys, activation, attention_bias, decoder, gqa_attention, heads
from ..model_config import ModelConfig
from ..registry import Family, register

#: transformers 5.23 ``LlamaConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=None, head_dim=None, hidden_act="silu",
    rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False, mlp_bias=False)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    return decoder(k, H,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k)),
        intermediate_size=k("intermediate_size"), hidden_act=activation(k),
        mlp_bias=bool(k("mlp_bias")))


register(Family("llama", parse=parse, defaults=HF_DEFAULTS))
