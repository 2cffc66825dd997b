"""gpt-oss-20b and gpt-oss-120b (OpenAI), ``gpt_oss``.

GQA with biases, learned per-head sinks, sliding-window layers alternating with full ones; a
router with bias whose softmax runs over the top-4 logits; experts with biases and the clamped
SwiGLU (alpha 1.702, limit 7). Expert tensors stored transposed (x @ W) with gate and up
interleaved.

Preset sources: [R] openai/gpt-oss ``gpt_oss/torch/model.py`` ``ModelConfig`` (120b dims);
[copy] a copy of gpt-oss-20b's config.json; [card] model card (117B / 5.1B active, 21B / 3.6B
active); [HF] transformers 5.23 ``GptOssConfig`` defaults.
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import NUM_EXPERTS_ALIASES, Keys, attention_bias, decoder, gqa_attention, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import (TRANSPOSED_INTERLEAVED, CheckpointNames, Family, MoEBlockNames,
                        ParityFixture, register)

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``GptOssConfig`` defaults.
HF_DEFAULTS = dict(
    num_hidden_layers=36, num_local_experts=128, vocab_size=201088, hidden_size=2880,
    intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8,
    sliding_window=128, tie_word_embeddings=False, hidden_act="silu", rms_norm_eps=1e-5,
    num_experts_per_tok=4, swiglu_alpha=1.702, swiglu_limit=7.0, layer_types=None,
    attention_bias=True)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    for key, fixed in (("swiglu_alpha", 1.702), ("swiglu_limit", 7.0)):
        if k.real(key) != fixed:
            raise ValueError(f"gpt_oss config: {key}={k(key)!r} is not supported (moelab's "
                             f"swiglu_oai uses {fixed})")
    lt = k("layer_types")
    if lt is None:
        lt = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(L)]
    att = gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k), attention_sinks=True,
                        sliding_window=k("sliding_window"))
    moe = MoEConfig(hidden_size=H, num_experts=k("num_local_experts"),
                    num_experts_per_tok=k("num_experts_per_tok"),
                    moe_intermediate_size=k("intermediate_size"), scoring="topk_softmax",
                    router_bias=True, activation="swiglu_oai", expert_bias=True)
    return decoder(k, H, num_hidden_layers=L,
        attention=att, intermediate_size=0, moe=moe, layer_types=lt)


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixture
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames(router="router", layout=TRANSPOSED_INTERLEAVED,
                                          per_expert=None))

# Large inputs, so that the clamps of swiglu_oai act (tests/reference/test_hf_parity.py).
PARITY = ParityFixture(
    "gpt_oss", "GptOssConfig", dict(
        intermediate_size=16, head_dim=8, num_hidden_layers=2, num_local_experts=8,
        num_experts_per_tok=4),
    moe_layer=1, routing="router", input_scale=4.0, aux_loss=True,
    saved_expert_tensor="model.layers.1.mlp.experts.gate_up_proj")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
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
        hidden_size=2880,               # = the model hidden_size
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
        hidden_size=2880,               # = the model hidden_size
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

register(Family(
    "gpt_oss", parse=parse, defaults=HF_DEFAULTS, key_aliases=NUM_EXPERTS_ALIASES,
    presets={"gpt-oss-20b": GPT_OSS_20B, "gpt-oss-120b": GPT_OSS_120B}, checkpoint=CHECKPOINT,
    parity=(PARITY,)))
