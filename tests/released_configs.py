"""Released ``config.json`` files of real models, as dicts: one table for every test.

Written from copies of each model's config.json (the preset's sources, where the model is a
preset). ``RELEASED`` maps the model's name to it: the preset name where there is a preset
(tests/test_hf_config.py checks that the config and the preset agree), else the model's own
name (its published size is in tests/test_param_counts.py). Data only.
"""

from __future__ import annotations

_DSV3 = dict(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"],
             vocab_size=129280, hidden_size=7168, intermediate_size=18432,
             moe_intermediate_size=2048, num_hidden_layers=61, num_nextn_predict_layers=1,
             num_attention_heads=128, num_key_value_heads=128, n_shared_experts=1,
             n_routed_experts=256, routed_scaling_factor=2.5, kv_lora_rank=512,
             q_lora_rank=1536, qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128,
             topk_method="noaux_tc", n_group=8, topk_group=4, num_experts_per_tok=8,
             moe_layer_freq=1, first_k_dense_replace=3, norm_topk_prob=True,
             scoring_func="sigmoid", hidden_act="silu", rms_norm_eps=1e-6,
             tie_word_embeddings=False, attention_bias=False)
_KIMI = dict(_DSV3, model_type="kimi_k2", vocab_size=163840, num_attention_heads=64,
             num_key_value_heads=64, n_routed_experts=384, routed_scaling_factor=2.827,
             n_group=1, topk_group=1, first_k_dense_replace=1, num_nextn_predict_layers=0)
_GLM45 = dict(model_type="glm4_moe", vocab_size=151552, hidden_size=5120,
              intermediate_size=12288, moe_intermediate_size=1536, num_hidden_layers=92,
              num_attention_heads=96, num_key_value_heads=8, head_dim=128, n_routed_experts=160,
              n_shared_experts=1, num_experts_per_tok=8, first_k_dense_replace=3,
              routed_scaling_factor=2.5, n_group=1, topk_group=1, norm_topk_prob=True,
              use_qk_norm=True, attention_bias=True, partial_rotary_factor=0.5,
              num_nextn_predict_layers=1, rms_norm_eps=1e-5, tie_word_embeddings=False,
              hidden_act="silu")
_GLM45_AIR = dict(_GLM45, hidden_size=4096, intermediate_size=10944, moe_intermediate_size=1408,
                  num_hidden_layers=46, n_routed_experts=128, first_k_dense_replace=1,
                  routed_scaling_factor=1.0, use_qk_norm=False)
_QWEN3_30B = dict(model_type="qwen3_moe", vocab_size=151936, hidden_size=2048,
                  intermediate_size=6144, moe_intermediate_size=768, num_hidden_layers=48,
                  num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128,
                  num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1,
                  mlp_only_layers=[], use_sliding_window=False, sliding_window=None,
                  max_window_layers=48, attention_bias=False, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, hidden_act="silu")
_QWEN3_235B = dict(_QWEN3_30B, hidden_size=4096, intermediate_size=12288,
                   moe_intermediate_size=1536, num_hidden_layers=94, num_attention_heads=64)
_QWEN3_NEXT = dict(model_type="qwen3_next", vocab_size=151936, hidden_size=2048,
                   intermediate_size=5120, num_hidden_layers=48, num_attention_heads=16,
                   num_key_value_heads=2, head_dim=256, partial_rotary_factor=0.25,
                   full_attention_interval=4, linear_conv_kernel_dim=4, linear_key_head_dim=128,
                   linear_value_head_dim=128, linear_num_key_heads=16,
                   linear_num_value_heads=32, decoder_sparse_step=1, moe_intermediate_size=512,
                   shared_expert_intermediate_size=512, num_experts=512, num_experts_per_tok=10,
                   norm_topk_prob=True, mlp_only_layers=[], tie_word_embeddings=False,
                   rms_norm_eps=1e-6, hidden_act="silu")
_SCOUT_TEXT = dict(model_type="llama4_text", attention_chunk_size=8192, head_dim=128,
                   hidden_size=5120, intermediate_size=8192, intermediate_size_mlp=16384,
                   interleave_moe_layer_step=1, moe_layers=list(range(48)),
                   no_rope_layers=[int((i + 1) % 4 != 0) for i in range(48)],
                   num_attention_heads=40, num_experts_per_tok=1, num_hidden_layers=48,
                   num_key_value_heads=8, num_local_experts=16, use_qk_norm=True,
                   vocab_size=202048, rms_norm_eps=1e-5)
_SCOUT = dict(model_type="llama4", text_config=_SCOUT_TEXT, tie_word_embeddings=False)
_MAVERICK = dict(model_type="llama4", tie_word_embeddings=False, text_config=dict(
    _SCOUT_TEXT, interleave_moe_layer_step=2, moe_layers=list(range(1, 48, 2)),
    num_local_experts=128, use_qk_norm=False))
_GPT_OSS_120B = dict(model_type="gpt_oss", num_hidden_layers=36, num_local_experts=128,
                     vocab_size=201088, hidden_size=2880, intermediate_size=2880, head_dim=64,
                     num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
                     layer_types=["sliding_attention", "full_attention"] * 18,
                     experts_per_token=4, num_experts_per_tok=4, swiglu_limit=7.0,
                     attention_bias=True, tie_word_embeddings=False, rms_norm_eps=1e-5,
                     hidden_act="silu")
_GPT_OSS_20B = dict(_GPT_OSS_120B, num_hidden_layers=24, num_local_experts=32,
                    layer_types=["sliding_attention", "full_attention"] * 12)
_GROK2 = dict(architectures=["Grok1ForCausalLM"], model_type="git", vocab_size=131072,
              hidden_size=8192, intermediate_size=32768, moe_intermediate_size=16384,
              num_local_experts=8, num_experts_per_tok=2, residual_moe=True,
              num_attention_heads=64, num_key_value_heads=8, num_hidden_layers=64, head_dim=128,
              rms_norm_eps=1e-5, final_logit_softcapping=50.0, attn_logit_softcapping=30.0,
              router_logit_softcapping=30.0, embedding_multiplier_scale=90.50966799187809,
              output_multiplier_scale=0.5, tie_word_embeddings=False)
_MIXTRAL = dict(model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                num_local_experts=8, num_experts_per_tok=2, rms_norm_eps=1e-5,
                sliding_window=None, tie_word_embeddings=False, hidden_act="silu")
_OLMO2_7B = dict(model_type="olmo2", vocab_size=100352, hidden_size=4096, intermediate_size=11008,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False)
_OLMO2_13B = dict(_OLMO2_7B, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                  num_attention_heads=40, num_key_value_heads=40)
_GEMMA3_27B = dict(model_type="gemma3", text_config=dict(
    model_type="gemma3_text", head_dim=128, hidden_size=5376, intermediate_size=21504,
    num_attention_heads=32, num_hidden_layers=62, num_key_value_heads=16,
    query_pre_attn_scalar=168, sliding_window=1024, sliding_window_pattern=6,
    rope_scaling={"factor": 8.0, "rope_type": "linear"}))
_MISTRAL_SMALL = dict(model_type="mistral3", tie_word_embeddings=False, text_config=dict(
    model_type="mistral", head_dim=128, hidden_size=5120, intermediate_size=32768,
    max_position_embeddings=131072, num_attention_heads=32, num_hidden_layers=40,
    num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=1e9, sliding_window=None,
    vocab_size=131072, tie_word_embeddings=False))
_SMOLLM3 = dict(model_type="smollm3", vocab_size=128256, hidden_size=2048, intermediate_size=11008,
                num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=4,
                no_rope_layer_interval=4, tie_word_embeddings=True, rms_norm_eps=1e-6)

# Qwen/Qwen1.5-MoE-A2.7B config.json
_QWEN1_5_MOE = dict(model_type="qwen2_moe", vocab_size=151936, hidden_size=2048,
                    intermediate_size=5632, num_hidden_layers=24, num_attention_heads=16,
                    num_key_value_heads=16, decoder_sparse_step=1, moe_intermediate_size=1408,
                    shared_expert_intermediate_size=5632, num_experts_per_tok=4,
                    num_experts=60, norm_topk_prob=False, mlp_only_layers=[],
                    use_sliding_window=False, sliding_window=32768, max_window_layers=21,
                    tie_word_embeddings=False, rms_norm_eps=1e-6)
# Qwen/Qwen2-57B-A14B config.json (the copy in TensorRT-LLM's test_modeling_qwen_moe.py)
_QWEN2_57B = dict(architectures=["Qwen2MoeForCausalLM"], model_type="qwen2_moe",
                  decoder_sparse_step=1, hidden_act="silu", hidden_size=3584,
                  intermediate_size=18944, max_window_layers=28, moe_intermediate_size=2560,
                  norm_topk_prob=False, num_attention_heads=28, num_experts=64,
                  num_experts_per_tok=8, num_hidden_layers=28, num_key_value_heads=4,
                  rms_norm_eps=1e-6, shared_expert_intermediate_size=20480,
                  sliding_window=131072, tie_word_embeddings=False, use_sliding_window=False,
                  vocab_size=151936)
# deepseek-ai/DeepSeek-V2-Lite config.json
_DSV2_LITE = dict(model_type="deepseek_v2", vocab_size=102400, hidden_size=2048,
                  intermediate_size=10944, moe_intermediate_size=1408,
                  num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16,
                  n_shared_experts=2, n_routed_experts=64, num_experts_per_tok=6,
                  first_k_dense_replace=1, kv_lora_rank=512, q_lora_rank=None,
                  qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                  routed_scaling_factor=1.0, topk_method="greedy", n_group=1,
                  topk_group=1, norm_topk_prob=False, tie_word_embeddings=False)
# allenai/OLMoE-1B-7B-0924 config.json
_OLMOE = dict(model_type="olmoe", vocab_size=50304, hidden_size=2048, intermediate_size=1024,
              num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
              num_experts=64, num_experts_per_tok=8, norm_topk_prob=False, clip_qkv=None,
              tie_word_embeddings=False, rms_norm_eps=1e-5)
# microsoft/Phi-3.5-MoE-instruct config.json
_PHI35_MOE = dict(model_type="phimoe", vocab_size=32064, hidden_size=4096,
                  intermediate_size=6400, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, num_local_experts=16, num_experts_per_tok=2,
                  attention_bias=True, lm_head_bias=True, sliding_window=131072,
                  tie_word_embeddings=False, rms_norm_eps=1e-5)
# databricks/dbrx-base config.json
_DBRX = dict(model_type="dbrx", d_model=6144, n_heads=48, n_layers=40, vocab_size=100352,
             attn_config={"kv_n_heads": 8, "clip_qkv": 8},
             ffn_config={"ffn_hidden_size": 10752, "moe_num_experts": 16, "moe_top_k": 4,
                         "moe_normalize_expert_weights": 1.0},
             tie_word_embeddings=False)
# meta-llama/Llama-3.1-8B config.json
_LLAMA31_8B = dict(model_type="llama", vocab_size=128256, hidden_size=4096,
                   intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=8, rms_norm_eps=1e-5, tie_word_embeddings=False)
# Qwen/Qwen2.5-7B config.json
_QWEN25_7B = dict(model_type="qwen2", vocab_size=152064, hidden_size=3584,
                  intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, tie_word_embeddings=False, use_sliding_window=False,
                  sliding_window=131072, max_window_layers=28)
# Qwen/Qwen3-8B config.json
_QWEN3_8B = dict(model_type="qwen3", vocab_size=151936, hidden_size=4096,
                 intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=128, tie_word_embeddings=False)

#: Model name (the preset's, where there is one) -> its released config.json.
RELEASED = {
    "deepseek-v3": _DSV3, "kimi-k2": _KIMI, "glm-4.5": _GLM45, "glm-4.5-air": _GLM45_AIR,
    "qwen3-30b-a3b": _QWEN3_30B, "qwen3-235b-a22b": _QWEN3_235B,
    "qwen3-next-80b-a3b": _QWEN3_NEXT, "llama4-scout": _SCOUT, "llama4-maverick": _MAVERICK,
    "gpt-oss-20b": _GPT_OSS_20B, "gpt-oss-120b": _GPT_OSS_120B, "grok-2": _GROK2,
    "mixtral-8x7b": _MIXTRAL, "olmo2-7b": _OLMO2_7B, "olmo2-13b": _OLMO2_13B,
    "gemma3-27b": _GEMMA3_27B, "mistral-small-3.1-24b": _MISTRAL_SMALL, "smollm3-3b": _SMOLLM3,
    "qwen1.5-moe-a2.7b": _QWEN1_5_MOE,
    "qwen2-57b-a14b": _QWEN2_57B,
    "deepseek-v2-lite": _DSV2_LITE,
    "olmoe-1b-7b": _OLMOE,
    "phi-3.5-moe": _PHI35_MOE,
    "dbrx-base": _DBRX,
    "llama-3.1-8b": _LLAMA31_8B,
    "qwen2.5-7b": _QWEN25_7B,
    "qwen3-8b": _QWEN3_8B,
}
