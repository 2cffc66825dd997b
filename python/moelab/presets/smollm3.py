"""SmolLM3-3B (Hugging Face), dense comparator: data only.

Sources (ARCHITECTURES.md §3.2): [HF] transformers 5.23 ``SmolLM3Config`` defaults (docstring:
HuggingFaceTB/SmolLM3-3B): NoPE on every 4th layer, tied embeddings.
"""

from ..model_config import AttentionConfig, ModelConfig

SMOLLM3_3B = ModelConfig(
    name="smollm3-3b",
    model_type="smollm3",
    vocab_size=128256,                  # [HF] vocab_size
    hidden_size=2048,                   # [HF] hidden_size
    num_hidden_layers=36,               # [HF] num_hidden_layers
    attention=AttentionConfig(
        num_attention_heads=16,         # [HF] num_attention_heads
        num_key_value_heads=4,          # [HF] num_key_value_heads
        head_dim=128,                   # hidden_size // num_attention_heads
    ),
    intermediate_size=11008,            # [HF] intermediate_size
    hidden_act="silu",                  # [HF] hidden_act
    no_rope_layers=(1, 1, 1, 0) * 9,    # [HF] no_rope_layer_interval 4
    tie_word_embeddings=True,           # [HF] tie_word_embeddings
    rms_norm_eps=1e-6,                  # [HF] rms_norm_eps
)

PRESETS = {"smollm3-3b": SMOLLM3_3B}
ALIASES = {}
