"""Mistral (Mistral AI), dense comparator: ``mistral``, and the multimodal wrapper ``mistral3``
(Mistral Small 3.1; its ``config.json`` nests the text model under ``text_config``).

GQA with an optional sliding window on every layer.

Preset sources: [HF] transformers 5.23 ``Mistral3Config`` text_config defaults (docstring:
mistralai/Mistral-Small-3.1-24B-Instruct-2503). ``tie_word_embeddings`` False is inferred from
the published 24B count (the top-level HF default is True).
"""

from __future__ import annotations

from ..hf_config import Keys, activation, all_sliding, decoder, gqa_attention, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import Family, TextWrapper, register

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``MistralConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, head_dim=None, hidden_act="silu",
    rms_norm_eps=1e-6, tie_word_embeddings=False, sliding_window=4096)
#: What ``Mistral3Config`` builds its text part with (Mistral-Small-3.1-24B) when text_config is
#: absent (transformers 5.23 configuration_mistral3.py, sub_configs_defaults).
MISTRAL3_TEXT = dict(
    head_dim=128, hidden_act="silu", hidden_size=5120, intermediate_size=32768,
    num_attention_heads=32, num_hidden_layers=40, num_key_value_heads=8, rms_norm_eps=1e-5,
    sliding_window=None, vocab_size=131072, model_type="mistral")
#: transformers 5.23 ``Mistral3Config`` (the wrapper) top-level defaults: the head is tied
#: unless the top level says otherwise, whatever the text config says.
WRAPPER_DEFAULTS = dict(tie_word_embeddings=True)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    window = k("sliding_window")
    return decoder(k, H, num_hidden_layers=L,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, sliding_window=window),
        intermediate_size=k("intermediate_size"), hidden_act=activation(k),
        layer_types=all_sliding(window, L))


# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
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

register(Family("mistral", parse=parse, defaults=HF_DEFAULTS,
                presets={"mistral-small-3.1-24b": MISTRAL_SMALL_3_1_24B}))
register(Family("mistral3", wraps=TextWrapper("mistral", text_defaults=MISTRAL3_TEXT),
                defaults=WRAPPER_DEFAULTS))
