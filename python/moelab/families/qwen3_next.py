"""Qwen3-Next (80B-A3B; Alibaba Qwen), ``qwen3_next``.

Layers of Gated DeltaNet (linear attention) and gated full attention (3 : 1); per-head
QK-norm, RoPE on a quarter of the head; a softmax top-k router over 512 experts and one shared
expert behind a sigmoid gate.

Preset sources: [copy] a verbatim copy of the released config.json (tie, rope theta, partial
rotary 0.25); [card] model card (48 layers laid out as 12 x (3 Gated DeltaNet + 1 gated
attention), 16 Q / 2 KV heads of 256 with RoPE on 64, GDN 16 QK / 32 V heads of 128, 512
experts, 10 routed + 1 shared of 512); [HF] transformers 5.23 ``Qwen3NextConfig`` defaults
(docstring: Qwen/Qwen3-Next-80B-A3B-Instruct).
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import Keys, decoder, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import CheckpointNames, Family, MoEBlockNames, ParityFixture, register
from ._qwen import placement, routed_layer

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``Qwen3NextConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=5632, num_hidden_layers=48,
    num_attention_heads=16, num_key_value_heads=2, hidden_act="silu", rms_norm_eps=1e-6,
    tie_word_embeddings=False, attention_bias=False, head_dim=256, linear_conv_kernel_dim=4,
    linear_key_head_dim=128, linear_value_head_dim=128, linear_num_key_heads=16,
    linear_num_value_heads=32, decoder_sparse_step=1, moe_intermediate_size=512,
    shared_expert_intermediate_size=512, num_experts_per_tok=10, num_experts=512,
    norm_topk_prob=True, mlp_only_layers=None, layer_types=None)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    lt = k("layer_types")
    if lt is None:
        interval = k.count("full_attention_interval", 4)
        lt = ["linear_attention" if (i + 1) % interval else "full_attention" for i in range(L)]
    b = k("attention_bias")
    att = AttentionConfig(
        num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=d, attention_bias=b,
        o_proj_bias=b, qk_norm="head", output_gate=True,
        partial_rotary_factor=k.rope_factor(0.25),  # HF post_init default 0.25
        linear_num_key_heads=k("linear_num_key_heads"),
        linear_num_value_heads=k("linear_num_value_heads"),
        linear_key_head_dim=k("linear_key_head_dim"),
        linear_value_head_dim=k("linear_value_head_dim"),
        linear_conv_kernel_dim=k("linear_conv_kernel_dim"))
    return decoder(k, H, num_hidden_layers=L,
        attention=att, moe=routed_layer(k, H, gated_shared_expert=True), **placement(k, lt))


# ---------------------------------------------------------------------------------------------
# checkpoints and the transformers parity fixture
# ---------------------------------------------------------------------------------------------
CHECKPOINT = CheckpointNames(MoEBlockNames(shared_experts="shared_expert"))

PARITY = ParityFixture(
    "qwen3_next", "Qwen3NextConfig", dict(
        intermediate_size=48, moe_intermediate_size=16, head_dim=8,
        shared_expert_intermediate_size=24, num_hidden_layers=2, num_experts=8,
        num_experts_per_tok=2, norm_topk_prob=True, full_attention_interval=2,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
        linear_value_head_dim=8),
    moe_layer=1, aux_loss=True,
    saved_expert_tensor="model.layers.1.mlp.experts.0.gate_proj.weight")

# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
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
        hidden_size=2048,               # = the model hidden_size
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

register(Family(
    "qwen3_next", parse=parse, defaults=HF_DEFAULTS,
    presets={"qwen3-next-80b-a3b": QWEN3_NEXT_80B_A3B}, checkpoint=CHECKPOINT,
    parity=(PARITY,)))
