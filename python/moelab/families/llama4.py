"""Llama 4 Scout and Maverick (Meta), text model: ``llama4_text``, and the multimodal wrapper
``llama4`` (its ``config.json`` nests the text model under ``text_config``).

Chunked attention on RoPE layers, full attention on every 4th (NoPE) layer, weight-less L2
QK-norm; a top-1 router whose sigmoid scales the expert's *input*; one shared expert; all
layers MoE (Scout) or every second one (Maverick). Expert tensors stored transposed (x @ W).

Preset sources: [copy] a verbatim copy of Llama-4-Scout-17B-16E's config.json text_config
(incl. moe_layers, no_rope_layers); [copy] TensorRT-LLM test "Llama4 Maverick config but with
only 2 layers" (48 layers noted); [R] meta-llama/llama-models MODEL_CARD (109B / 17B, 400B /
17B); [HF] transformers 5.23 ``Llama4TextConfig`` defaults (docstring:
meta-llama/Llama-4-Scout-17B-16E).
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import Keys, activation, attention_bias, decoder, gqa_attention, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import (TRANSPOSED, CheckpointNames, DecoderNames, Family, MoEBlockNames, ParityFixture,
                        TextWrapper, register)

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``Llama4TextConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=202048, hidden_size=5120, intermediate_size=8192, intermediate_size_mlp=16384,
    num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
    hidden_act="silu", rms_norm_eps=1e-5, tie_word_embeddings=False, num_experts_per_tok=1,
    num_local_experts=16, moe_layers=None, interleave_moe_layer_step=1, use_qk_norm=True,
    no_rope_layers=None, no_rope_layer_interval=4, attention_chunk_size=8192, layer_types=None,
    attention_bias=False)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    nr = k("no_rope_layers")
    if not nr:  # HF: `no_rope_layers if no_rope_layers else default`
        interval = k.count("no_rope_layer_interval")
        nr = [int((i + 1) % interval != 0) for i in range(L)]
    lt = k("layer_types")
    if lt is None:
        lt = ["chunked_attention" if r else "full_attention" for r in nr]
    chunk = k("attention_chunk_size")
    moe_layers = k("moe_layers")
    step = k("interleave_moe_layer_step")
    # HF computes moe_layers from the step when absent; an explicit list overrides the step.
    placement = dict(interleave_moe_layer_step=step) if moe_layers is None else dict(
        moe_layers=tuple(moe_layers))
    att = gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k),
                        qk_norm="l2" if k("use_qk_norm") else None,
                        attention_chunk_size=chunk if "chunked_attention" in lt else None)
    I = k("intermediate_size")
    moe = MoEConfig(hidden_size=H, num_experts=k("num_local_experts"),
                    num_experts_per_tok=k("num_experts_per_tok"), moe_intermediate_size=I,
                    scoring="llama4", norm_topk_prob=False, activation=activation(k),
                    n_shared_experts=1, shared_intermediate_size=I)
    return decoder(k, H, num_hidden_layers=L,
        attention=att, intermediate_size=k("intermediate_size_mlp"), moe=moe,
        hidden_act=activation(k), layer_types=lt, no_rope_layers=nr,
        **placement)


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixtures
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames(
    blocks=("feed_forward",), router="router", layout=TRANSPOSED, per_expert=None,
    shared_experts="shared_expert"))

_TINY = dict(intermediate_size=16, intermediate_size_mlp=48, head_dim=8, num_hidden_layers=2,
             num_local_experts=8, interleave_moe_layer_step=2)
# The experts are not decorated with @use_experts_implementation (a dense bmm over all experts).
PARITY = ParityFixture(
    "llama4", "Llama4TextConfig", dict(_TINY, num_experts_per_tok=1), moe_layer=1,
    dense_layer=0, routing="llama4", decorated=False,
    saved_expert_tensor="model.layers.1.feed_forward.experts.gate_up_proj")
#: Top-2: the sigmoid-scaled inputs of two experts per token.
PARITY_K2 = ParityFixture(
    "llama4_k2", "Llama4TextConfig", dict(_TINY, num_experts_per_tok=2), moe_layer=1,
    dense_layer=0, routing="llama4", decorated=False,
    saved_expert_tensor="model.layers.1.feed_forward.experts.gate_up_proj")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
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
        hidden_size=5120,               # = the model hidden_size
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
        hidden_size=5120,               # = the model hidden_size
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

register(Family(
    "llama4_text", parse=parse, defaults=HF_DEFAULTS,
    presets={"llama4-scout": LLAMA4_SCOUT, "llama4-maverick": LLAMA4_MAVERICK},
    checkpoint=CHECKPOINT, parity=(PARITY, PARITY_K2),
    decoder=DecoderNames(dense_blocks=("feed_forward",))))  # Llama4TextMLP of dense layers
# transformers ties Llama4ForConditionalGeneration's head by the text config's
# tie_word_embeddings, not by the top level's.
register(Family("llama4", wraps=TextWrapper("llama4_text", tie_from_top_level=False)))
