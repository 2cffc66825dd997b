"""OLMo 2 (AI2), dense comparator, ``olmo2``: QK-norm over the full q and k vectors; RMSNorms
after attention and after the MLP, before the residual add.

Preset sources: [copy] a mirror of allenai/OLMo-2-1124-7B/config.json; [copy] a Megatron
provider test for 13B (40 layers, 5120, 40 heads, 13824); [HF] transformers 5.23
``Olmo2Attention`` (q_norm / k_norm over the full q and k vectors) and decoder layer (RMSNorm
after attention and after the MLP, before the residual add).
"""

from __future__ import annotations

from ..hf_config import Keys, activation, attention_bias, decoder, gqa_attention, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import Family, register

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``Olmo2Config`` defaults.
HF_DEFAULTS = dict(
    vocab_size=50304, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=None, hidden_act="silu", rms_norm_eps=1e-5,
    tie_word_embeddings=False, attention_bias=False)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    return decoder(k, H,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k),
                                qk_norm="full"),
        intermediate_size=k("intermediate_size"), hidden_act=activation(k),
        norm_placement="post")


# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
OLMO2_7B = ModelConfig(
    name="olmo2-7b",
    model_type="olmo2",
    vocab_size=100352,                  # [copy] vocab_size
    hidden_size=4096,                   # [copy] hidden_size
    num_hidden_layers=32,               # [copy] num_hidden_layers
    attention=AttentionConfig(
        num_attention_heads=32,         # [copy] num_attention_heads
        num_key_value_heads=32,         # [copy] num_key_value_heads
        head_dim=128,                   # hidden_size // num_attention_heads
        qk_norm="full",                 # [HF] Olmo2Attention q_norm / k_norm
    ),
    intermediate_size=11008,            # [copy] intermediate_size
    hidden_act="silu",                  # [copy] hidden_act
    norm_placement="post",              # [HF] Olmo2DecoderLayer
    tie_word_embeddings=False,          # [copy] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [copy] rms_norm_eps
)

OLMO2_13B = ModelConfig(
    name="olmo2-13b",
    model_type="olmo2",
    vocab_size=100352,                  # [copy] (same tokenizer as 7B)
    hidden_size=5120,                   # [copy] hidden_size
    num_hidden_layers=40,               # [copy] num_layers
    attention=AttentionConfig(
        num_attention_heads=40,         # [copy] num_attention_heads
        num_key_value_heads=40,         # MHA, as 7B
        head_dim=128,                   # hidden_size // num_attention_heads
        qk_norm="full",                 # [HF]
    ),
    intermediate_size=13824,            # [copy] ffn_hidden_size
    hidden_act="silu",                  # as 7B
    norm_placement="post",              # [HF]
    tie_word_embeddings=False,          # as 7B
    rms_norm_eps=1e-6,                  # as 7B
)

register(Family("olmo2", parse=parse, defaults=HF_DEFAULTS,
                presets={"olmo2-7b": OLMO2_7B, "olmo2-13b": OLMO2_13B}))
