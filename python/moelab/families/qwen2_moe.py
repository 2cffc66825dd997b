"""Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B; Alibaba Qwen), ``qwen2_moe``.

GQA attention with q/k/v biases; a softmax top-k router (not renormalised by default) and one
shared expert behind a sigmoid gate; ``mlp_only_layers`` / ``decoder_sparse_step`` place the
MoE layers, the others are dense (all MoE in the releases).

Preset sources. Qwen1.5-MoE-A2.7B: [copy] a copy of its config.json (the model card of
Qwen/Qwen1.5-MoE-A2.7B-Chat-GPTQ-Int4); [card] Qwen/Qwen1.5-MoE-A2.7B (14.3B in total, 2.7B
activated); [HF] transformers 5.23 ``Qwen2MoeConfig`` defaults (docstring:
Qwen/Qwen1.5-MoE-A2.7B). Qwen2-57B-A14B: [copy57] the copy of its config.json in TensorRT-LLM's
tests (``test_modeling_qwen_moe.py``, QWEN2_57B_A14B_CONFIG); [print] the module print of
Qwen2MoeForCausalLM loading it (28 layers, q 3584 / kv 512 with bias, 64 experts of 2560, a
shared expert of 20480 with its gate); [blog] Qwen2 blog (57.41B, 56.32B non-embedding).
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import Keys, decoder, gqa_attention, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import CheckpointNames, Family, MoEBlockNames, ParityFixture, register
from ._qwen import placement, routed_layer, sliding_layer_types

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``Qwen2MoeConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
    num_attention_heads=16, num_key_value_heads=16, hidden_act="silu", rms_norm_eps=1e-6,
    tie_word_embeddings=False, use_sliding_window=False, sliding_window=4096,
    max_window_layers=28, decoder_sparse_step=1, moe_intermediate_size=1408,
    shared_expert_intermediate_size=5632, num_experts_per_tok=4, num_experts=60,
    norm_topk_prob=False, mlp_only_layers=None, qkv_bias=True, layer_types=None)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    window, lt = sliding_layer_types(k, L, "qwen2_moe")
    moe = routed_layer(k, H, gated_shared_expert=True) if k("num_experts") > 0 else None
    return decoder(k, H, num_hidden_layers=L,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, bias_qkv=k("qkv_bias"),
                                sliding_window=window),
        moe=moe, **placement(k, lt))


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixture
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames(shared_experts="shared_expert"))

PARITY = ParityFixture(
    "qwen2_moe", "Qwen2MoeConfig", dict(
        intermediate_size=48, moe_intermediate_size=16, shared_expert_intermediate_size=24,
        num_hidden_layers=2, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
        decoder_sparse_step=2),
    moe_layer=1, dense_layer=0, aux_loss=True,
    saved_expert_tensor="model.layers.1.mlp.experts.0.gate_proj.weight")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
QWEN1_5_MOE_A2_7B = ModelConfig(
    name="qwen1.5-moe-a2.7b",
    model_type="qwen2_moe",
    vocab_size=151936,                  # [HF] vocab_size
    hidden_size=2048,                   # [copy] hidden_size
    num_hidden_layers=24,               # [copy] num_hidden_layers
    attention=AttentionConfig(
        num_attention_heads=16,         # [copy] num_attention_heads
        num_key_value_heads=16,         # [copy] num_key_value_heads (MHA)
        head_dim=128,                   # hidden_size // num_attention_heads
        attention_bias=True,            # [HF] qkv_bias: q/k/v with bias, o_proj without
    ),
    intermediate_size=5632,             # [copy] intermediate_size (no dense layer uses it)
    moe=MoEConfig(
        hidden_size=2048,               # = the model hidden_size
        num_experts=60,                 # [copy] num_experts
        num_experts_per_tok=4,          # [copy] num_experts_per_tok
        moe_intermediate_size=1408,     # [copy] moe_intermediate_size
        scoring="softmax",              # [HF] Qwen2MoeTopKRouter
        norm_topk_prob=False,           # [copy] norm_topk_prob
        activation="silu",              # [copy] hidden_act
        n_shared_experts=1,             # [HF] Qwen2MoeSparseMoeBlock.shared_expert
        shared_intermediate_size=5632,  # [copy] shared_expert_intermediate_size
        shared_expert_gate=True,        # [HF] shared_expert_gate (sigmoid)
    ),
    hidden_act="silu",                  # [copy] hidden_act
    decoder_sparse_step=1,              # [copy] decoder_sparse_step
    mlp_only_layers=(),                 # [HF] mlp_only_layers default: none
    tie_word_embeddings=False,          # [copy] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [HF] rms_norm_eps
)

QWEN2_57B_A14B = ModelConfig(
    name="qwen2-57b-a14b",
    model_type="qwen2_moe",
    vocab_size=151936,                  # [copy57] vocab_size; [print] Embedding(151936, 3584)
    hidden_size=3584,                   # [copy57] hidden_size; [print]
    num_hidden_layers=28,               # [copy57] num_hidden_layers; [print] 28 layers
    attention=AttentionConfig(
        num_attention_heads=28,         # [copy57] num_attention_heads; [print] q_proj 3584
        num_key_value_heads=4,          # [copy57] num_key_value_heads; [print] k_proj 512
        head_dim=128,                   # hidden_size // num_attention_heads
        attention_bias=True,            # [print] q/k/v_proj bias=True, o_proj bias=False
    ),
    intermediate_size=18944,            # [copy57] intermediate_size (no dense layer uses it)
    moe=MoEConfig(
        hidden_size=3584,               # = the model hidden_size
        num_experts=64,                 # [copy57] num_experts; [print] 64 experts
        num_experts_per_tok=8,          # [copy57] num_experts_per_tok
        moe_intermediate_size=2560,     # [copy57] moe_intermediate_size; [print]
        scoring="softmax",              # [HF] Qwen2MoeTopKRouter
        norm_topk_prob=False,           # [copy57] norm_topk_prob
        activation="silu",              # [copy57] hidden_act
        n_shared_experts=1,             # [print] shared_expert
        shared_intermediate_size=20480,  # [copy57] shared_expert_intermediate_size; [print]
        shared_expert_gate=True,        # [print] shared_expert_gate Linear(3584, 1)
    ),
    hidden_act="silu",                  # [copy57] hidden_act
    decoder_sparse_step=1,              # [copy57] decoder_sparse_step
    mlp_only_layers=(),                 # [HF] mlp_only_layers default: none
    tie_word_embeddings=False,          # [copy57] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [copy57] rms_norm_eps
)

register(Family("qwen2_moe", parse=parse, defaults=HF_DEFAULTS,
                presets={"qwen1.5-moe-a2.7b": QWEN1_5_MOE_A2_7B,
                         "qwen2-57b-a14b": QWEN2_57B_A14B},
                checkpoint=CHECKPOINT, parity=(PARITY,)))
