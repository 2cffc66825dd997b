"""OLMo 2 7B and 13B (AI2), dense comparators: data only.

Sources (ARCHITECTURES.md §3.2): [copy] a mirror of allenai/OLMo-2-1124-7B/config.json;
[copy] a Megatron provider test for 13B (40 layers, 5120, 40 heads, 13824); [HF] transformers
5.23 ``Olmo2Attention`` (q_norm / k_norm over the full q and k vectors) and decoder layer
(RMSNorm after attention and after the MLP, before the residual add).
"""

from ..model_config import AttentionConfig, ModelConfig

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

PRESETS = {"olmo2-7b": OLMO2_7B, "olmo2-13b": OLMO2_13B}
ALIASES = {}
