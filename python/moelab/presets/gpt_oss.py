"""gpt-oss-20b and gpt-oss-120b (OpenAI): data only.

Sources (ARCHITECTURES.md §2.8, §3.1): [R] openai/gpt-oss ``gpt_oss/torch/model.py``
``ModelConfig`` (120b dims); [copy] a copy of gpt-oss-20b's config.json; [card] model card
(117B / 5.1B active, 21B / 3.6B active); [HF] transformers 5.23 ``GptOssConfig`` defaults.
"""

from ..config import MoEConfig
from ..model_config import AttentionConfig, ModelConfig

# Identical in both sizes.
_ATTENTION = AttentionConfig(
    num_attention_heads=64,             # [R] num_attention_heads; [copy]
    num_key_value_heads=8,              # [R] num_key_value_heads; [copy]
    head_dim=64,                        # [R] head_dim; [copy]
    attention_bias=True,                # [HF] q/k/v biases (attention_bias true)
    o_proj_bias=True,                   # [HF] o_proj bias
    attention_sinks=True,               # [R] per-head learned sinks
    sliding_window=128,                 # [R] sliding_window; [copy]
)

GPT_OSS_120B = ModelConfig(
    name="gpt-oss-120b",
    model_type="gpt_oss",
    vocab_size=201088,                  # [R] vocab_size; [HF]
    hidden_size=2880,                   # [R] hidden_size; [HF]
    num_hidden_layers=36,               # [R] num_hidden_layers; [HF]
    attention=_ATTENTION,
    intermediate_size=0,                # no dense FFN
    moe=MoEConfig(
        hidden_size=2880,                 # = the model hidden_size
        num_experts=128,                # [R] num_experts; [HF]
        num_experts_per_tok=4,          # [R] experts_per_token; [HF]
        moe_intermediate_size=2880,     # [R] intermediate_size; [HF]
        scoring="topk_softmax",         # [R] softmax over the top-4 logits
        router_bias=True,               # [R] gate bias
        activation="swiglu_oai",        # [R] swiglu alpha 1.702, limit 7.0
        expert_bias=True,               # [R] mlp1 / mlp2 biases
    ),
    layer_types=("sliding_attention", "full_attention") * 18,  # [R] even layers sliding
    tie_word_embeddings=False,          # [R] separate unembedding; [HF]
    rms_norm_eps=1e-5,                  # [HF] rms_norm_eps
)

GPT_OSS_20B = ModelConfig(
    name="gpt-oss-20b",
    model_type="gpt_oss",
    vocab_size=201088,                  # [copy] vocab_size
    hidden_size=2880,                   # [copy] hidden_size
    num_hidden_layers=24,               # [copy] num_hidden_layers
    attention=_ATTENTION,
    intermediate_size=0,                # no dense FFN
    moe=MoEConfig(
        hidden_size=2880,                 # = the model hidden_size
        num_experts=32,                 # [copy] num_local_experts
        num_experts_per_tok=4,          # [copy] num_experts_per_tok
        moe_intermediate_size=2880,     # [copy] intermediate_size
        scoring="topk_softmax",         # [R]
        router_bias=True,               # [R]
        activation="swiglu_oai",        # [R]
        expert_bias=True,               # [R]
    ),
    layer_types=("sliding_attention", "full_attention") * 12,  # [copy] layer_types
    tie_word_embeddings=False,          # [copy]
    rms_norm_eps=1e-5,                  # [copy]
)

PRESETS = {"gpt-oss-20b": GPT_OSS_20B, "gpt-oss-120b": GPT_OSS_120B}
ALIASES = {}
