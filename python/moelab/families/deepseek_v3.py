"""DeepSeek-V3 (``deepseek_v3``; DeepSeek-R1 is the same network) and Kimi K2 (``kimi_k2``,
DeepSeek-V3's architecture with other dimensions).

MLA attention; a sigmoid router with a selection-only correction bias and group-limited
selection; one shared expert; the first ``first_k_dense_replace`` layers dense; MTP modules
counted apart.

Preset sources. DeepSeek-V3: [R] deepseek-ai/DeepSeek-V3 ``inference/configs/config_671B.json``
and README_WEIGHTS.md; [HF] transformers 5.23 ``DeepseekV3Config`` defaults (docstring:
deepseek-ai/DeepSeek-V3). Kimi K2: [K] MoonshotAI/Kimi-K2 README (61 layers, 1 dense layer,
hidden 7168, expert hidden 2048, 64 attention heads, 384 experts, 8 per token, 1 shared, "160K"
vocabulary); [copy] a public copy of its config.json (163840 vocab, 18432 dense, MLA dims,
routed_scaling_factor 2.827, n_group 1).
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import ROUTED_EXPERTS_ALIASES, Keys, activation, decoder, mla_attention
from ..model_config import AttentionConfig, ModelConfig
from ..registry import CheckpointNames, Family, MoEBlockNames, ParityFixture, register

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``DeepseekV3Config`` defaults.
HF_DEFAULTS = dict(
    vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
    num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128, n_shared_experts=1,
    n_routed_experts=256, routed_scaling_factor=2.5, kv_lora_rank=512, q_lora_rank=1536,
    qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128, n_group=8, topk_group=4,
    num_experts_per_tok=8, first_k_dense_replace=3, norm_topk_prob=True, hidden_act="silu",
    rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False,
    num_nextn_predict_layers=1)
#: Kimi K2 is not in transformers: only optional features have defaults.
KIMI_DEFAULTS = dict(num_key_value_heads=None, hidden_act="silu", rms_norm_eps=1e-6,
                     tie_word_embeddings=False, attention_bias=False, num_nextn_predict_layers=0,
                     n_group=1, topk_group=1, norm_topk_prob=True)


def sigmoid_router_moe(k: Keys, H: int) -> MoEConfig:
    """The DeepSeek-V3 routed layer (also GLM-4-MoE's): sigmoid scores, a selection-only
    ``e_score_correction_bias``, group-limited top-k, shared experts."""
    return MoEConfig(hidden_size=H, num_experts=k.need("n_routed_experts"),
                     num_experts_per_tok=k.need("num_experts_per_tok"),
                     moe_intermediate_size=k.need("moe_intermediate_size"), scoring="sigmoid",
                     norm_topk_prob=bool(k("norm_topk_prob")),
                     routed_scaling_factor=k.real("routed_scaling_factor"),
                     n_group=k("n_group") or 1, topk_group=k("topk_group") or 1,
                     correction_bias=True, activation=activation(k),
                     n_shared_experts=k.need("n_shared_experts"))


def mtp_layers(k: Keys, default: int) -> int:
    """Multi-token-prediction modules: ``num_nextn_predict_layers`` or ``num_mtp_layers``."""
    mtp = k("num_nextn_predict_layers", None)
    return k("num_mtp_layers", default) if mtp is None else mtp


def parse(k: Keys) -> ModelConfig:
    """deepseek_v3 and kimi_k2 (DeepseekV3ForCausalLM)."""
    H = k.need("hidden_size")
    n_h = k.need("num_attention_heads")
    n_kv = k("num_key_value_heads") or n_h
    return decoder(k, H,
        attention=mla_attention(k, n_h, n_kv),
        intermediate_size=k.need("intermediate_size"), moe=sigmoid_router_moe(k, H),
        hidden_act=activation(k), first_k_dense_replace=k.need("first_k_dense_replace"),
        num_nextn_predict_layers=mtp_layers(k, 0))


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixture
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames(shared_experts="shared_experts"))

PARITY = ParityFixture(
    "deepseek_v3", "DeepseekV3Config", dict(
        num_key_value_heads=4, intermediate_size=48, moe_intermediate_size=16,
        num_hidden_layers=2, n_routed_experts=16, num_experts_per_tok=4, n_group=4, topk_group=2,
        routed_scaling_factor=2.5, norm_topk_prob=True, n_shared_experts=1,
        first_k_dense_replace=1, q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=4,
        qk_nope_head_dim=8, v_head_dim=8),
    moe_layer=1, dense_layer=0,
    saved_expert_tensor="model.layers.1.mlp.experts.0.gate_proj.weight")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
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
        hidden_size=7168,               # = the model hidden_size
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

KIMI_K2 = ModelConfig(
    name="kimi-k2",
    model_type="kimi_k2",               # [copy] model_type (architectures DeepseekV3ForCausalLM)
    vocab_size=163840,                  # [copy] vocab_size ([K] "160K")
    hidden_size=7168,                   # [K] attention hidden dimension
    num_hidden_layers=61,               # [K] number of layers (incl. the dense one)
    attention=AttentionConfig(
        kind="mla",                     # [K] attention mechanism MLA
        num_attention_heads=64,         # [K] number of attention heads
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
        hidden_size=7168,               # = the model hidden_size
        num_experts=384,                # [K] number of experts
        num_experts_per_tok=8,          # [K] selected experts per token
        moe_intermediate_size=2048,     # [K] MoE hidden dimension (per expert)
        scoring="sigmoid",              # [copy] scoring_func sigmoid, topk_method noaux_tc
        norm_topk_prob=True,            # [copy] norm_topk_prob
        routed_scaling_factor=2.827,    # [copy] routed_scaling_factor
        n_group=1,                      # [copy] n_group
        topk_group=1,                   # [copy] topk_group
        correction_bias=True,           # [copy] noaux_tc: e_score_correction_bias
        activation="silu",              # [copy] hidden_act
        n_shared_experts=1,             # [K] number of shared experts
    ),
    hidden_act="silu",                  # [copy] hidden_act
    first_k_dense_replace=1,            # [K] number of dense layers
    num_nextn_predict_layers=0,         # [copy] no MTP weights in the release
    tie_word_embeddings=False,          # [copy] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [copy] rms_norm_eps
)

register(Family(
    "deepseek_v3", parse=parse, defaults=HF_DEFAULTS, key_aliases=ROUTED_EXPERTS_ALIASES,
    presets={"deepseek-v3": DEEPSEEK_V3},
    # DeepSeek-R1 is DeepSeek-V3's architecture with other weights (deepseek-ai/DeepSeek-R1 README).
    preset_aliases={"deepseek-r1": "deepseek-v3"},
    checkpoint=CHECKPOINT, parity=(PARITY,)))
register(Family(
    "kimi_k2", parse=parse, defaults=KIMI_DEFAULTS, key_aliases=ROUTED_EXPERTS_ALIASES,
    presets={"kimi-k2": KIMI_K2}, checkpoint=CHECKPOINT, hf_model_type="deepseek_v3"))
