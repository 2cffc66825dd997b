"""SmolLM3 (Hugging Face), dense comparator, ``smollm3``: NoPE on every 4th layer, optional
sliding window on the RoPE layers, tied embeddings.

Preset sources: [HF] transformers 5.23 ``SmolLM3Config`` defaults (docstring:
HuggingFaceTB/SmolLM3-3B): NoPE on every 4th layer, tied embeddings.
"""

from __future__ import annotations

from ..hf_config import Keys, activation, attention_bias, decoder, gqa_attention, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import Family, register

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``SmolLM3Config`` defaults.
HF_DEFAULTS = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
    num_attention_heads=16, num_key_value_heads=4, hidden_act="silu", rms_norm_eps=1e-6,
    tie_word_embeddings=True, use_sliding_window=False, sliding_window=None,
    no_rope_layers=None, no_rope_layer_interval=4, layer_types=None, attention_bias=False,
    mlp_bias=False)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k, head_dim_key=None)
    L = k.num_layers()
    nr = k("no_rope_layers")
    if nr is None:
        interval = k.count("no_rope_layer_interval")
        nr = [int((i + 1) % interval != 0) for i in range(L)]
    window = k("sliding_window")
    lt = k("layer_types")
    if lt is None:
        use = k("use_sliding_window") and window is not None
        # one entry per no_rope_layers entry (ModelConfig checks there are L of them)
        lt = ["sliding_attention" if use and not r else "full_attention" for r in nr]
    if "sliding_attention" not in lt:
        window = None
    return decoder(k, H, num_hidden_layers=L,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k),
                                sliding_window=window),
        intermediate_size=k("intermediate_size"), hidden_act=activation(k),
        mlp_bias=bool(k("mlp_bias")), layer_types=lt, no_rope_layers=nr)


# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
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

register(Family("smollm3", parse=parse, defaults=HF_DEFAULTS,
                presets={"smollm3-3b": SMOLLM3_3B}))
