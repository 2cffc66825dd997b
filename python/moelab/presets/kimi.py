"""Kimi K2 (Moonshot AI): DeepSeek-V3's architecture with other dims. Data only.

Sources: [R] MoonshotAI/Kimi-K2 README (61 layers, 1 dense layer, hidden 7168, expert hidden
2048, 64 attention heads, 384 experts, 8 per token, 1 shared, "160K" vocabulary); [copy] a
public copy of its config.json (163840 vocab, 18432 dense, MLA dims, routed_scaling_factor
2.827, n_group 1); ARCHITECTURES.md §2.5, §3.1.
"""

from ..config import MoEConfig
from ..model_config import AttentionConfig, ModelConfig

KIMI_K2 = ModelConfig(
    name="kimi-k2",
    model_type="kimi_k2",               # [copy] model_type (architectures DeepseekV3ForCausalLM)
    vocab_size=163840,                  # [copy] vocab_size ([R] "160K")
    hidden_size=7168,                   # [R] attention hidden dimension
    num_hidden_layers=61,               # [R] number of layers (incl. the dense one)
    attention=AttentionConfig(
        kind="mla",                     # [R] attention mechanism MLA
        num_attention_heads=64,         # [R] number of attention heads
        num_key_value_heads=64,         # [copy] num_key_value_heads
        head_dim=64,                    # unused by MLA (= qk_rope_head_dim)
        q_lora_rank=1536,               # [copy] q_lora_rank
        kv_lora_rank=512,               # [copy] kv_lora_rank
        qk_nope_head_dim=128,           # [copy] qk_nope_head_dim
        qk_rope_head_dim=64,            # [copy] qk_rope_head_dim
        v_head_dim=128,                 # [copy] v_head_dim
    ),
    intermediate_size=18432,            # [copy] intermediate_size (the dense layer)
    moe=MoEConfig(
        hidden_size=7168,                 # = the model hidden_size
        num_experts=384,                # [R] number of experts
        num_experts_per_tok=8,          # [R] selected experts per token
        moe_intermediate_size=2048,     # [R] MoE hidden dimension (per expert)
        scoring="sigmoid",              # [copy] scoring_func sigmoid, topk_method noaux_tc
        norm_topk_prob=True,            # [copy] norm_topk_prob
        routed_scaling_factor=2.827,    # [copy] routed_scaling_factor
        n_group=1,                      # [copy] n_group
        topk_group=1,                   # [copy] topk_group
        correction_bias=True,           # [copy] noaux_tc: e_score_correction_bias
        activation="silu",              # [copy] hidden_act
        n_shared_experts=1,             # [R] number of shared experts
    ),
    hidden_act="silu",                  # [copy] hidden_act
    first_k_dense_replace=1,            # [R] number of dense layers
    num_nextn_predict_layers=0,         # [copy] no MTP weights in the release
    tie_word_embeddings=False,          # [copy] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [copy] rms_norm_eps
)

PRESETS = {"kimi-k2": KIMI_K2}
ALIASES = {}
