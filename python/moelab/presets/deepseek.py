"""DeepSeek-V3 (and DeepSeek-R1, the same network): data only, every value with its source.

Sources: [R] deepseek-ai/DeepSeek-V3 ``inference/configs/config_671B.json`` and README_WEIGHTS.md;
[HF] transformers 5.23 ``DeepseekV3Config`` defaults (docstring: deepseek-ai/DeepSeek-V3);
see ARCHITECTURES.md §2.5 and §3.1.
"""

from ..config import MoEConfig
from ..model_config import AttentionConfig, ModelConfig

DEEPSEEK_V3 = ModelConfig(
    name="deepseek-v3",
    model_type="deepseek_v3",
    vocab_size=129280,                  # [R] vocab_size; [HF]
    hidden_size=7168,                   # [R] dim; [HF]
    num_hidden_layers=61,               # [R] n_layers (the MTP module is layer 61, extra)
    attention=AttentionConfig(
        kind="mla",                     # [R] multi-head latent attention
        num_attention_heads=128,        # [R] n_heads
        num_key_value_heads=128,        # [HF] num_key_value_heads
        head_dim=64,                    # [HF] head_dim = qk_rope_head_dim (unused by MLA)
        q_lora_rank=1536,               # [R] q_lora_rank
        kv_lora_rank=512,               # [R] kv_lora_rank
        qk_nope_head_dim=128,           # [R] qk_nope_head_dim
        qk_rope_head_dim=64,            # [R] qk_rope_head_dim
        v_head_dim=128,                 # [R] v_head_dim
    ),
    intermediate_size=18432,            # [R] inter_dim (the 3 dense layers)
    moe=MoEConfig(
        hidden_size=7168,                 # = the model hidden_size
        num_experts=256,                # [R] n_routed_experts
        num_experts_per_tok=8,          # [R] n_activated_experts
        moe_intermediate_size=2048,     # [R] moe_inter_dim
        scoring="sigmoid",              # [R] score_func "sigmoid"
        norm_topk_prob=True,            # [HF] norm_topk_prob
        routed_scaling_factor=2.5,      # [R] route_scale
        n_group=8,                      # [R] n_expert_groups
        topk_group=4,                   # [R] n_limited_groups
        correction_bias=True,           # [HF] e_score_correction_bias (topk_method "noaux_tc")
        activation="silu",              # [HF] hidden_act
        n_shared_experts=1,             # [R] n_shared_experts
    ),
    hidden_act="silu",                  # [HF] hidden_act
    first_k_dense_replace=3,            # [R] n_dense_layers
    num_nextn_predict_layers=1,         # [R] README_WEIGHTS: one MTP module
    tie_word_embeddings=False,          # [HF] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [HF] rms_norm_eps
)

PRESETS = {"deepseek-v3": DEEPSEEK_V3}
# DeepSeek-R1 is DeepSeek-V3's architecture with other weights (deepseek-ai/DeepSeek-R1 README).
ALIASES = {"deepseek-r1": "deepseek-v3"}
