"""OLMoE (AI2), ``olmoe``.

Attention with RMSNorm over the full q and k vectors (and an optional ``clip_qkv``); a softmax
top-k router, not renormalised by default; no shared expert; all layers MoE, the experts of
width ``intermediate_size``.

Preset sources: [copy] public copies of allenai/OLMoE-1B-7B-0924's config.json (vocab 50304,
hidden 2048, intermediate 1024, 16 layers, 16 / 16 heads, 64 experts, top-8, norm_topk_prob
false, clip_qkv null, untied, rms_norm_eps 1e-5); [paper] OLMoE (arXiv 2409.02060: 16 layers, 64
experts with 8 active, 6.9B total / 1.3B active); [HF] transformers 5.23 ``OlmoeConfig``
(docstring: allenai/OLMoE-1B-7B-0924) and ``modeling_olmoe``.
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import (NUM_EXPERTS_ALIASES, Keys, activation, attention_bias, decoder,
                         gqa_attention, heads, softmax_experts)
from ..model_config import AttentionConfig, ModelConfig
from ..registry import CheckpointNames, Family, MoEBlockNames, ParityFixture, register

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``OlmoeConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=50304, hidden_size=2048, intermediate_size=2048, num_hidden_layers=16,
    num_attention_heads=16, num_key_value_heads=None, hidden_act="silu", rms_norm_eps=1e-5,
    tie_word_embeddings=False, attention_bias=False, num_experts_per_tok=8, num_experts=64,
    norm_topk_prob=False)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    moe = softmax_experts(k, H, "num_experts", norm_topk_prob=bool(k("norm_topk_prob")))
    return decoder(k, H,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k),
                                qk_norm="full"),
        intermediate_size=0, moe=moe, hidden_act=activation(k))


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixture
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames())

PARITY = ParityFixture(
    "olmoe", "OlmoeConfig", dict(
        intermediate_size=16, num_hidden_layers=2, num_experts=8, num_experts_per_tok=4,
        norm_topk_prob=False, eos_token_id=None, pad_token_id=None, bos_token_id=None),
    moe_layer=1, aux_loss=True,
    saved_expert_tensor="model.layers.1.mlp.experts.0.gate_proj.weight")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
OLMOE_1B_7B = ModelConfig(
    name="olmoe-1b-7b",
    model_type="olmoe",
    vocab_size=50304,                   # [copy] vocab_size; [HF]
    hidden_size=2048,                   # [copy] hidden_size; [HF]
    num_hidden_layers=16,               # [copy] num_hidden_layers; [paper] 16 layers
    attention=AttentionConfig(
        num_attention_heads=16,         # [copy] num_attention_heads
        num_key_value_heads=16,         # [copy] num_key_value_heads (MHA)
        head_dim=128,                   # hidden_size // num_attention_heads
        qk_norm="full",                 # [HF] OlmoeAttention q_norm / k_norm over full q and k
    ),
    intermediate_size=0,                # no dense FFN (1024 is the expert width)
    moe=MoEConfig(
        hidden_size=2048,               # = the model hidden_size
        num_experts=64,                 # [copy] num_experts; [paper] 64 experts
        num_experts_per_tok=8,          # [copy] num_experts_per_tok; [paper] 8 active
        moe_intermediate_size=1024,     # [copy] intermediate_size (the expert width)
        scoring="softmax",              # [HF] OlmoeTopKRouter: softmax, top-k
        norm_topk_prob=False,           # [copy] norm_topk_prob
        activation="silu",              # [copy] hidden_act
    ),
    hidden_act="silu",                  # [copy] hidden_act
    tie_word_embeddings=False,          # [copy] tie_word_embeddings
    rms_norm_eps=1e-5,                  # [copy] rms_norm_eps
)

register(Family("olmoe", parse=parse, defaults=HF_DEFAULTS, key_aliases=NUM_EXPERTS_ALIASES,
                presets={"olmoe-1b-7b": OLMOE_1B_7B}, checkpoint=CHECKPOINT, parity=(PARITY,)))
