"""Qwen3 MoE (30B-A3B, 235B-A22B) and Qwen3-Next-80B-A3B (Alibaba Qwen): data only.

Sources (ARCHITECTURES.md §2.3, §2.4, §3.1): [copy] verbatim copies of the released
config.json of Qwen3-30B-A3B and Qwen3-235B-A22B, and of Qwen3-Next (tie, rope theta, partial
rotary 0.25); [card] model cards (30.5B / 3.3B; 235B / 22B; Qwen3-Next: 48 layers laid out as
12 x (3 Gated DeltaNet + 1 gated attention), 16 Q / 2 KV heads of 256 with RoPE on 64, GDN
16 QK / 32 V heads of 128, 512 experts, 10 routed + 1 shared of 512); [HF] transformers 5.23
``Qwen3NextConfig`` defaults (docstring: Qwen/Qwen3-Next-80B-A3B-Instruct).
"""

from ..config import MoEConfig
from ..model_config import AttentionConfig, ModelConfig

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
        hidden_size=2048,                 # = the model hidden_size
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
        hidden_size=4096,                 # = the model hidden_size
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

QWEN3_NEXT_80B_A3B = ModelConfig(
    name="qwen3-next-80b-a3b",
    model_type="qwen3_next",
    vocab_size=151936,                  # [HF]
    hidden_size=2048,                   # [HF]; [card]
    num_hidden_layers=48,               # [HF]; [card]
    attention=AttentionConfig(
        num_attention_heads=16,         # [card] 16 Q heads; [HF]
        num_key_value_heads=2,          # [card] 2 KV heads; [HF]
        head_dim=256,                   # [card]; [HF]
        qk_norm="head",                 # [HF] Qwen3NextAttention q_norm/k_norm
        output_gate=True,               # [HF] gated attention (q_proj emits the gate)
        partial_rotary_factor=0.25,     # [card] RoPE on 64 of 256 dims; [copy]
        linear_num_key_heads=16,        # [card] 16 QK heads; [HF]
        linear_num_value_heads=32,      # [card] 32 V heads; [HF]
        linear_key_head_dim=128,        # [card]; [HF]
        linear_value_head_dim=128,      # [card]; [HF]
        linear_conv_kernel_dim=4,       # [HF]
    ),
    intermediate_size=5632,             # [HF] default; unused (no dense layer), release unverified
    moe=MoEConfig(
        hidden_size=2048,                 # = the model hidden_size
        num_experts=512,                # [card]; [HF]
        num_experts_per_tok=10,         # [card]; [HF]
        moe_intermediate_size=512,      # [card]; [HF]
        scoring="softmax",              # [HF] Qwen3NextTopKRouter
        norm_topk_prob=True,            # [HF]
        activation="silu",              # [HF]
        n_shared_experts=1,             # [card] 1 shared expert
        shared_intermediate_size=512,   # [card]; [HF] shared_expert_intermediate_size
        shared_expert_gate=True,        # [HF] shared_expert_gate (sigmoid)
    ),
    hidden_act="silu",                  # [HF]
    decoder_sparse_step=1,              # [HF]
    mlp_only_layers=(),                 # [HF]
    # [card] 12 x (3 x (Gated DeltaNet -> MoE) -> 1 x (Gated Attention -> MoE));
    layer_types=("linear_attention", "linear_attention", "linear_attention",  # [HF] interval 4
                 "full_attention") * 12,
    num_nextn_predict_layers=0,         # MTP weights exist but HF ignores them; not counted
    tie_word_embeddings=False,          # [copy]; [HF]
    rms_norm_eps=1e-6,                  # [HF]
)

PRESETS = {"qwen3-30b-a3b": QWEN3_30B_A3B, "qwen3-235b-a22b": QWEN3_235B_A22B,
           "qwen3-next-80b-a3b": QWEN3_NEXT_80B_A3B}
ALIASES = {}
