"""Gemma 3 27B (Google), text model, dense comparator: data only.

Sources (ARCHITECTURES.md §3.2): [copy] several copies of google/gemma-3-27b-it config.json
text_config (5376 / 62 layers / 32 / 16 heads / head_dim 128 / 21504, sliding window 1024,
5 local : 1 global, query_pre_attn_scalar 168); the released module print (262208 x 5376
embedding); [HF] transformers 5.23 ``Gemma3TextConfig`` (vocab 262208, tied, GELU-tanh,
per-head QK-norm, 4 norms per layer).
"""

from ..model_config import AttentionConfig, ModelConfig

GEMMA3_27B = ModelConfig(
    name="gemma3-27b",
    model_type="gemma3_text",
    vocab_size=262208,                  # [HF] default; module print 262208 x 5376
    hidden_size=5376,                   # [copy] hidden_size
    num_hidden_layers=62,               # [copy] num_hidden_layers
    attention=AttentionConfig(
        num_attention_heads=32,         # [copy] num_attention_heads
        num_key_value_heads=16,         # [copy] num_key_value_heads
        head_dim=128,                   # [copy] head_dim
        qk_norm="head",                 # [HF] Gemma3Attention q_norm / k_norm over head_dim
        sliding_window=1024,            # [copy] sliding_window
    ),
    intermediate_size=21504,            # [copy] intermediate_size
    hidden_act="gelu_tanh",             # [HF] hidden_activation gelu_pytorch_tanh
    layer_types=(("sliding_attention",) * 5 + ("full_attention",)) * 10  # [copy] pattern 6:
    + ("sliding_attention",) * 2,       # 5 local layers then 1 global, from layer 0
    norm_placement="sandwich",          # [HF] input/post-attention/pre-FFN/post-FFN norms
    tie_word_embeddings=True,           # [HF] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [HF] rms_norm_eps
)

PRESETS = {"gemma3-27b": GEMMA3_27B}
ALIASES = {}
