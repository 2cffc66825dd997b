"""Mixtral-8x7B (Mistral AI), ``mixtral``.

GQA, optional sliding window; a softmax top-2 router that always renormalises; 8 experts, all
layers MoE. Its files name the block ``block_sparse_moe`` and the experts ``w1`` (gate), ``w3``
(up), ``w2`` (down); transformers 5.x renames them ``mlp`` and fuses the experts on load.

Preset sources: [HF] transformers 5.23 ``MixtralConfig`` defaults (docstring:
mistralai/Mixtral-8x7B-v0.1); [P] Mixtral paper / blog ("47B parameters, 13B active", 8
experts, top-2, 32 layers, 4096 / 14336, 32 / 8 heads, 32000 vocab).
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import (NUM_EXPERTS_ALIASES, Keys, activation, all_sliding, decoder,
                         gqa_attention, heads, softmax_experts)
from ..model_config import AttentionConfig, ModelConfig
from ..registry import CheckpointNames, Family, MoEBlockNames, ParityFixture, register

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``MixtralConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, head_dim=None, hidden_act="silu",
    rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None, num_experts_per_tok=2,
    num_local_experts=8)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    window = k("sliding_window")
    moe = softmax_experts(k, H, "num_local_experts", norm_topk_prob=True)  # always renormalised
    return decoder(k, H, num_hidden_layers=L,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, sliding_window=window),
        intermediate_size=0, moe=moe, hidden_act=activation(k),
        layer_types=all_sliding(window, L))


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixture
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames(blocks=("mlp", "block_sparse_moe"),
                                          per_expert=("w1", "w3", "w2")))

PARITY = ParityFixture(
    "mixtral", "MixtralConfig", dict(
        intermediate_size=16, num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=2),
    moe_layer=1, aux_loss=True,
    saved_expert_tensor="model.layers.1.block_sparse_moe.experts.0.w1.weight")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
MIXTRAL_8X7B = ModelConfig(
    name="mixtral-8x7b",
    model_type="mixtral",
    vocab_size=32000,                   # [HF]; [P]
    hidden_size=4096,                   # [HF]; [P]
    num_hidden_layers=32,               # [HF]; [P]
    attention=AttentionConfig(
        num_attention_heads=32,         # [HF]; [P]
        num_key_value_heads=8,          # [HF]; [P]
        head_dim=128,                   # [HF] hidden_size // num_attention_heads
    ),
    intermediate_size=0,                # no dense FFN (14336 is the expert width)
    moe=MoEConfig(
        hidden_size=4096,               # = the model hidden_size
        num_experts=8,                  # [HF] num_local_experts; [P]
        num_experts_per_tok=2,          # [HF]; [P]
        moe_intermediate_size=14336,    # [HF] intermediate_size; [P]
        scoring="softmax",              # [HF] MixtralTopKRouter ...
        norm_topk_prob=True,            # [HF] ... always renormalises the top-2
        activation="silu",              # [HF] hidden_act
    ),
    hidden_act="silu",                  # [HF]
    tie_word_embeddings=False,          # [HF]
    rms_norm_eps=1e-5,                  # [HF]
)

register(Family(
    "mixtral", parse=parse, defaults=HF_DEFAULTS, key_aliases=NUM_EXPERTS_ALIASES,
    presets={"mixtral-8x7b": MIXTRAL_8X7B}, checkpoint=CHECKPOINT, parity=(PARITY,)))
