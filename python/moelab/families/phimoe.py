"""Phi-3.5-MoE (Microsoft), ``phimoe``.

GQA with biases and a sliding window; LayerNorms with biases; an LM head with a bias; 16
experts, top-2 by its "sparsemixer" router, which is not one of moelab's: the config gets the
closest softmax top-2 layer (same experts, same parameters) and
``router_variant="sparsemixer"``, and ``moelab.hf`` refuses to load its layers.
"""

from __future__ import annotations

from ..hf_config import (Keys, activation, all_sliding, attention_bias, decoder, gqa_attention,
                         heads, softmax_experts)
from ..model_config import ModelConfig
from ..registry import Family, ParityFixture, register

#: transformers 5.23 ``PhimoeConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=32064, hidden_size=4096, intermediate_size=6400, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, hidden_act="silu", rms_norm_eps=1e-5,
    tie_word_embeddings=False, sliding_window=None, num_experts_per_tok=2, num_local_experts=16,
    attention_bias=False, lm_head_bias=False)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    window = k("sliding_window")
    # sparsemixer: the same two experts as a softmax top-2 (by logit), different weights
    moe = softmax_experts(k, H, "num_local_experts", norm_topk_prob=False)
    return decoder(k, H, num_hidden_layers=L,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k),
                                sliding_window=window),
        intermediate_size=0, moe=moe, hidden_act=activation(k),
        layer_types=all_sliding(window, L),
        norm_placement="pre", norm_bias=True, router_variant="sparsemixer",
        lm_head_bias=bool(k("lm_head_bias")))


# No checkpoint names: its router is not reproduced, so its layers are not loaded. The fixture
# serves the test that the refusal names the router.
PARITY = ParityFixture(
    "phimoe", "PhimoeConfig", dict(
        intermediate_size=16, num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=2),
    moe_layer=1)

register(Family("phimoe", parse=parse, defaults=HF_DEFAULTS, parity=(PARITY,)))
