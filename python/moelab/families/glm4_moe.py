"""GLM-4.5 and GLM-4.5-Air (Zhipu AI / Z.ai), ``glm4_moe``.

GQA attention (q/k/v biases, optional per-head QK-norm, RoPE on half the head); DeepSeek-V3's
sigmoid router with correction bias and one shared expert; the first ``first_k_dense_replace``
layers dense; one MTP layer, which transformers ignores on load.

Preset sources: [T] GLM-4.5 paper Table 1 / GLM-5 tech report table as quoted (dims, 3 + 89
layers, 160 experts / 8 / 1 shared; Air: 1 dense + 45 MoE); [copy] public copies of GLM-4.5-Air
and GLM-4.6/4.7 config.json (routed_scaling_factor, qk-norm, attention bias, partial rotary,
tie); [HF] transformers 5.23 ``Glm4MoeConfig`` defaults, which equal GLM-4.5-Air's dims. The MTP
layer (layers.92 / layers.46) is ignored by HF on load.
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import ROUTED_EXPERTS_ALIASES, Keys, activation, decoder, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import CheckpointNames, Family, MoEBlockNames, ParityFixture, register
from .deepseek_v3 import mtp_layers, sigmoid_router_moe

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``Glm4MoeConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=151552, hidden_size=4096, intermediate_size=10944, num_hidden_layers=46,
    num_attention_heads=96, num_key_value_heads=8, hidden_act="silu", rms_norm_eps=1e-5,
    tie_word_embeddings=False, attention_bias=False, moe_intermediate_size=1408,
    num_experts_per_tok=8, n_shared_experts=1, n_routed_experts=128, routed_scaling_factor=1.0,
    n_group=1, topk_group=1, first_k_dense_replace=1, norm_topk_prob=True, use_qk_norm=False,
    num_nextn_predict_layers=1)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    att = AttentionConfig(num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=d,
                          attention_bias=bool(k("attention_bias")), o_proj_bias=False,
                          qk_norm="head" if k("use_qk_norm") else None,
                          partial_rotary_factor=k.rope_factor(0.5))  # HF post_init default 0.5
    return decoder(k, H,
        attention=att,
        intermediate_size=k("intermediate_size"), moe=sigmoid_router_moe(k, H),
        hidden_act=activation(k), first_k_dense_replace=k("first_k_dense_replace"),
        num_nextn_predict_layers=mtp_layers(k, 1))


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixture
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames(shared_experts="shared_experts"))

PARITY = ParityFixture(
    "glm4_moe", "Glm4MoeConfig", dict(
        intermediate_size=48, moe_intermediate_size=16, head_dim=8, num_hidden_layers=2,
        n_routed_experts=8, num_experts_per_tok=2, n_group=1, topk_group=1,
        routed_scaling_factor=2.5, norm_topk_prob=True, n_shared_experts=1,
        first_k_dense_replace=1),
    moe_layer=1, dense_layer=0,
    saved_expert_tensor="model.layers.1.mlp.experts.0.gate_proj.weight")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
GLM_4_5 = ModelConfig(
    name="glm-4.5",
    model_type="glm4_moe",
    vocab_size=151552,                  # [T] vocabulary
    hidden_size=5120,                   # [T] hidden dim
    num_hidden_layers=92,               # [T] 3 dense + 89 MoE (+1 MTP layer, separate)
    attention=AttentionConfig(
        num_attention_heads=96,         # [T] attention heads
        num_key_value_heads=8,          # [copy] num_key_value_heads
        head_dim=128,                   # [copy] head_dim
        attention_bias=True,            # [copy] attention_bias (GLM-4.6 copy; q/k/v only)
        qk_norm="head",                 # [copy] use_qk_norm true (GLM-4.6 copy)
        partial_rotary_factor=0.5,      # [copy] partial_rotary_factor
    ),
    intermediate_size=12288,            # [T] dense FFN width
    moe=MoEConfig(
        hidden_size=5120,               # = the model hidden_size
        num_experts=160,                # [T] routed experts
        num_experts_per_tok=8,          # [T] active experts
        moe_intermediate_size=1536,     # [T] expert width
        scoring="sigmoid",              # [HF] Glm4MoeTopkRouter (DeepSeek-V3 router)
        norm_topk_prob=True,            # [copy] norm_topk_prob
        routed_scaling_factor=2.5,      # [copy] routed_scaling_factor (GLM-4.6 copy)
        n_group=1,                      # [copy] n_group
        topk_group=1,                   # [copy] topk_group
        correction_bias=True,           # [HF] e_score_correction_bias
        activation="silu",              # [copy] hidden_act
        n_shared_experts=1,             # [T] shared experts
    ),
    hidden_act="silu",                  # [copy] hidden_act
    first_k_dense_replace=3,            # [T] 3 dense layers
    num_nextn_predict_layers=1,         # [HF] _keys_to_ignore_on_load: model.layers.92
    tie_word_embeddings=False,          # [copy] tie_word_embeddings
    rms_norm_eps=1e-5,                  # [copy] rms_norm_eps
)

GLM_4_5_AIR = ModelConfig(
    name="glm-4.5-air",
    model_type="glm4_moe",
    vocab_size=151552,                  # [copy] vocab_size; [HF]
    hidden_size=4096,                   # [copy] hidden_size; [HF]
    num_hidden_layers=46,               # [T] 1 dense + 45 MoE; [copy]; [HF]
    attention=AttentionConfig(
        num_attention_heads=96,         # [copy]; [HF]
        num_key_value_heads=8,          # [copy]; [HF]
        head_dim=128,                   # [copy] head_dim
        attention_bias=True,            # [copy] attention_bias
        qk_norm=None,                   # [copy] use_qk_norm false; [HF]
        partial_rotary_factor=0.5,      # [copy]; [HF]
    ),
    intermediate_size=10944,            # [copy]; [HF]
    moe=MoEConfig(
        hidden_size=4096,               # = the model hidden_size
        num_experts=128,                # [copy] n_routed_experts; [HF]
        num_experts_per_tok=8,          # [copy]; [HF]
        moe_intermediate_size=1408,     # [copy]; [HF]
        scoring="sigmoid",              # [HF] Glm4MoeTopkRouter
        norm_topk_prob=True,            # [copy]; [HF]
        routed_scaling_factor=1.0,      # [copy]; [HF]
        n_group=1,                      # [copy]; [HF]
        topk_group=1,                   # [copy]; [HF]
        correction_bias=True,           # [HF] e_score_correction_bias
        activation="silu",              # [copy]
        n_shared_experts=1,             # [copy]; [HF]
    ),
    hidden_act="silu",                  # [copy]
    first_k_dense_replace=1,            # [T]; [copy]; [HF]
    num_nextn_predict_layers=1,         # [HF] _keys_to_ignore_on_load: model.layers.46
    tie_word_embeddings=False,          # [copy]; [HF]
    rms_norm_eps=1e-5,                  # [copy]; [HF]
)

register(Family(
    "glm4_moe", parse=parse, defaults=HF_DEFAULTS, key_aliases=ROUTED_EXPERTS_ALIASES,
    presets={"glm-4.5": GLM_4_5, "glm-4.5-air": GLM_4_5_AIR}, checkpoint=CHECKPOINT,
    parity=(PARITY,)))
