"""Mistral-Small-3.1-24B (Mistral AI), text model, dense comparator: data only.

Sources (ARCHITECTURES.md §3.2): [HF] transformers 5.23 ``Mistral3Config`` text_config defaults
(docstring: mistralai/Mistral-Small-3.1-24B-Instruct-2503). ``tie_word_embeddings`` False is
inferred from the published 24B count (the top-level HF default is True).
"""

from ..model_config import AttentionConfig, ModelConfig

MISTRAL_SMALL_3_1_24B = ModelConfig(
    name="mistral-small-3.1-24b",
    model_type="mistral",
    vocab_size=131072,                  # [HF] vocab_size
    hidden_size=5120,                   # [HF] hidden_size
    num_hidden_layers=40,               # [HF] num_hidden_layers
    attention=AttentionConfig(
        num_attention_heads=32,         # [HF] num_attention_heads
        num_key_value_heads=8,          # [HF] num_key_value_heads
        head_dim=128,                   # [HF] head_dim
        sliding_window=None,            # [HF] sliding_window None
    ),
    intermediate_size=32768,            # [HF] intermediate_size
    hidden_act="silu",                  # [HF] hidden_act
    tie_word_embeddings=False,          # inferred from the 24B count
    rms_norm_eps=1e-5,                  # [HF] rms_norm_eps
)

PRESETS = {"mistral-small-3.1-24b": MISTRAL_SMALL_3_1_24B}
ALIASES = {}
