"""Qwen3 MoE (30B-A3B, 235B-A22B; Alibaba Qwen), ``qwen3_moe``.

GQA attention with per-head QK-norm; a softmax top-k router (renormalised in the releases); no
shared expert; ``mlp_only_layers`` / ``decoder_sparse_step`` place the MoE layers (all of them
in the releases).

Preset sources: [copy] verbatim copies of the released config.json of Qwen3-30B-A3B and
Qwen3-235B-A22B; [card] model cards (30.5B / 3.3B; 235B / 22B); [HF] transformers 5.23
``Qwen3MoeConfig`` and its modeling file.
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import NUM_EXPERTS_ALIASES, Keys, decoder
from ..model_config import AttentionConfig, ModelConfig
from ..registry import CheckpointNames, Family, MoEBlockNames, ParityFixture, register
from ._qwen import placement, qwen3_layers, routed_layer

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``Qwen3MoeConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
    num_attention_heads=32, num_key_value_heads=4, hidden_act="silu", rms_norm_eps=1e-6,
    tie_word_embeddings=False, attention_bias=False, use_sliding_window=False,
    sliding_window=4096, decoder_sparse_step=1, moe_intermediate_size=768, num_experts_per_tok=8,
    num_experts=128, norm_topk_prob=False, mlp_only_layers=None)


def parse(k: Keys) -> ModelConfig:
    H, L, att, lt = qwen3_layers(k)
    return decoder(k, H, num_hidden_layers=L,
        attention=att, moe=routed_layer(k, H, gated_shared_expert=False), **placement(k, lt))


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixture
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames())

PARITY = ParityFixture(
    "qwen3_moe", "Qwen3MoeConfig", dict(
        intermediate_size=48, moe_intermediate_size=16, head_dim=8, num_hidden_layers=2,
        num_experts=8, num_experts_per_tok=3, norm_topk_prob=True, mlp_only_layers=[0]),
    moe_layer=1, dense_layer=0, aux_loss=True,
    saved_expert_tensor="model.layers.1.mlp.experts.0.gate_proj.weight")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
QWEN3_30B_A3B = ModelConfig(
    name="qwen3-30b-a3b",
    model_type="qwen3_moe",
    vocab_size=151936,                  # [copy] vocab_size
    hidden_size=2048,                   # [copy] hidden_size
    num_hidden_layers=48,               # [copy]; [card] 48 layers
    attention=AttentionConfig(
        num_attention_heads=32,         # [copy]; [card] 32 Q heads
        num_key_value_heads=4,          # [copy]; [card] 4 KV heads
        head_dim=128,                   # [copy] head_dim
        qk_norm="head",                 # [HF] Qwen3MoeAttention q_norm/k_norm over head_dim
    ),
    intermediate_size=6144,             # [copy] intermediate_size (no dense layer uses it)
    moe=MoEConfig(
        hidden_size=2048,               # = the model hidden_size
        num_experts=128,                # [copy]; [card] 128 experts
        num_experts_per_tok=8,          # [copy]; [card] 8 activated
        moe_intermediate_size=768,      # [copy] moe_intermediate_size
        scoring="softmax",              # [HF] Qwen3MoeTopKRouter
        norm_topk_prob=True,            # [copy] norm_topk_prob
        activation="silu",              # [copy] hidden_act
    ),
    hidden_act="silu",                  # [copy]
    decoder_sparse_step=1,              # [copy] decoder_sparse_step
    mlp_only_layers=(),                 # [copy] mlp_only_layers []
    tie_word_embeddings=False,          # [copy] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [copy] rms_norm_eps
)

QWEN3_235B_A22B = ModelConfig(
    name="qwen3-235b-a22b",
    model_type="qwen3_moe",
    vocab_size=151936,                  # [copy]
    hidden_size=4096,                   # [copy]
    num_hidden_layers=94,               # [copy]; [card] 94 layers
    attention=AttentionConfig(
        num_attention_heads=64,         # [copy]; [card] 64 Q heads
        num_key_value_heads=4,          # [copy]; [card] 4 KV heads
        head_dim=128,                   # [copy]
        qk_norm="head",                 # [HF] Qwen3MoeAttention
    ),
    intermediate_size=12288,            # [copy] (no dense layer uses it)
    moe=MoEConfig(
        hidden_size=4096,               # = the model hidden_size
        num_experts=128,                # [copy]; [card]
        num_experts_per_tok=8,          # [copy]; [card]
        moe_intermediate_size=1536,     # [copy]
        scoring="softmax",              # [HF]
        norm_topk_prob=True,            # [copy]
        activation="silu",              # [copy]
    ),
    hidden_act="silu",                  # [copy]
    decoder_sparse_step=1,              # [copy]
    mlp_only_layers=(),                 # [copy]
    tie_word_embeddings=False,          # [copy]
    rms_norm_eps=1e-6,                  # [copy]
)

register(Family(
    "qwen3_moe", parse=parse, defaults=HF_DEFAULTS, key_aliases=NUM_EXPERTS_ALIASES,
    presets={"qwen3-30b-a3b": QWEN3_30B_A3B, "qwen3-235b-a22b": QWEN3_235B_A22B},
    checkpoint=CHECKPOINT, parity=(PARITY,)))
