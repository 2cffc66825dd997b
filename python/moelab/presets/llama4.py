"""Llama 4 Scout and Maverick (Meta), text model only: data only.

Sources (ARCHITECTURES.md §2.7, §3.1): [copy] a verbatim copy of Llama-4-Scout-17B-16E's
config.json text_config (incl. moe_layers, no_rope_layers); [copy] TensorRT-LLM test "Llama4
Maverick config but with only 2 layers" (48 layers noted); [R] meta-llama/llama-models
MODEL_CARD (109B / 17B, 400B / 17B); [HF] transformers 5.23 ``Llama4TextConfig`` defaults
(docstring: meta-llama/Llama-4-Scout-17B-16E).
"""

from ..config import MoEConfig
from ..model_config import AttentionConfig, ModelConfig

# [HF] no_rope_layers default: every 4th layer (3, 7, ...) is NoPE (0) and uses full attention,
# the others RoPE (1) with chunked attention.
_NO_ROPE = (1, 1, 1, 0) * 12
_LAYER_TYPES = ("chunked_attention",) * 3 + ("full_attention",)

LLAMA4_SCOUT = ModelConfig(
    name="llama4-scout",
    model_type="llama4_text",
    vocab_size=202048,                  # [copy]; [HF]
    hidden_size=5120,                   # [copy]; [HF]
    num_hidden_layers=48,               # [copy]; [HF]
    attention=AttentionConfig(
        num_attention_heads=40,         # [copy]; [HF]
        num_key_value_heads=8,          # [copy]; [HF]
        head_dim=128,                   # [copy]; [HF]
        qk_norm="l2",                   # [copy] use_qk_norm true (weight-less L2 norm)
        attention_chunk_size=8192,      # [copy] attention_chunk_size
    ),
    intermediate_size=16384,            # [copy] intermediate_size_mlp (no dense layer in Scout)
    moe=MoEConfig(
        hidden_size=5120,                 # = the model hidden_size
        num_experts=16,                 # [copy] num_local_experts
        num_experts_per_tok=1,          # [copy] num_experts_per_tok
        moe_intermediate_size=8192,     # [copy] intermediate_size
        scoring="llama4",               # [HF] Llama4Router: sigmoid of the top-1 logit
        norm_topk_prob=False,           # [HF] no renormalisation (sigmoid of each logit)
        activation="silu",              # [copy] hidden_act
        n_shared_experts=1,             # [HF] Llama4TextMoe.shared_expert
        shared_intermediate_size=8192,  # [HF] shared expert width = intermediate_size
    ),
    hidden_act="silu",                  # [copy]
    interleave_moe_layer_step=1,        # [copy] interleave_moe_layer_step 1: all 48 MoE
    layer_types=_LAYER_TYPES * 12,      # [HF] chunked on RoPE layers, full on NoPE layers
    no_rope_layers=_NO_ROPE,            # [copy] no_rope_layers
    tie_word_embeddings=False,          # [copy]
    rms_norm_eps=1e-5,                  # [copy]
)

LLAMA4_MAVERICK = ModelConfig(
    name="llama4-maverick",
    model_type="llama4_text",
    vocab_size=202048,                  # [copy]
    hidden_size=5120,                   # [copy]
    num_hidden_layers=48,               # [copy] (48 layers noted in the TensorRT-LLM test)
    attention=AttentionConfig(
        num_attention_heads=40,         # [copy]
        num_key_value_heads=8,          # [copy]
        head_dim=128,                   # [copy]
        qk_norm=None,                   # [copy] use_qk_norm false
        attention_chunk_size=8192,      # [copy]
    ),
    intermediate_size=16384,            # [copy] intermediate_size_mlp (the 24 dense layers)
    moe=MoEConfig(
        hidden_size=5120,                 # = the model hidden_size
        num_experts=128,                # [copy] num_local_experts
        num_experts_per_tok=1,          # [copy]
        moe_intermediate_size=8192,     # [copy] intermediate_size
        scoring="llama4",               # [HF] Llama4Router
        norm_topk_prob=False,           # [HF] no renormalisation (sigmoid of each logit)
        activation="silu",              # [copy]
        n_shared_experts=1,             # [HF] shared_expert
        shared_intermediate_size=8192,  # [HF]
    ),
    hidden_act="silu",                  # [copy]
    interleave_moe_layer_step=2,        # [copy] layers 1, 3, ..., 47 are MoE
    layer_types=_LAYER_TYPES * 12,      # [HF]
    no_rope_layers=_NO_ROPE,            # [HF] default
    tie_word_embeddings=False,          # [copy]
    rms_norm_eps=1e-5,                  # [copy]
)

PRESETS = {"llama4-scout": LLAMA4_SCOUT, "llama4-maverick": LLAMA4_MAVERICK}
ALIASES = {}
