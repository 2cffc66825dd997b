"""Gemma 3 (Google), text model, dense comparator: ``gemma3_text``, and the multimodal wrapper
``gemma3`` (its ``config.json`` nests the text model under ``text_config``).

Sliding-window layers with a global one every 6th; per-head QK-norm; GELU-tanh MLP; four norms
per layer; tied embeddings.

Preset sources: [copy] several copies of google/gemma-3-27b-it config.json text_config (5376 /
62 layers / 32 / 16 heads / head_dim 128 / 21504, sliding window 1024, 5 local : 1 global,
query_pre_attn_scalar 168); the released module print (262208 x 5376 embedding); [HF]
transformers 5.23 ``Gemma3TextConfig`` (vocab 262208, tied, GELU-tanh, per-head QK-norm, 4 norms
per layer).
"""

from __future__ import annotations

from ..hf_config import Keys, activation, attention_bias, decoder, gqa_attention, heads
from ..model_config import AttentionConfig, ModelConfig
from ..registry import Family, TextWrapper, register

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: transformers 5.23 ``Gemma3TextConfig`` defaults.
HF_DEFAULTS = dict(
    vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
    num_attention_heads=8, num_key_value_heads=4, head_dim=256,
    hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, tie_word_embeddings=True,
    attention_bias=False, sliding_window=4096, layer_types=None, attn_logit_softcapping=None)
#: transformers 5.23 ``Gemma3Config`` (the wrapper) top-level defaults.
WRAPPER_DEFAULTS = dict(tie_word_embeddings=True)


def parse(k: Keys) -> ModelConfig:
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    lt = k("layer_types")
    if lt is None:  # HF: the BC key sliding_window_pattern (default 6): every 6th layer global
        pattern = k.count("sliding_window_pattern", 6)
        lt = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(L)]
    return decoder(k, H, num_hidden_layers=L,
        attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k),
                                qk_norm="head", sliding_window=k("sliding_window"),
                                attn_logit_softcapping=k("attn_logit_softcapping")),
        intermediate_size=k("intermediate_size"), hidden_act=activation(k, "hidden_activation"),
        layer_types=lt, norm_placement="sandwich")


# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
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

register(Family("gemma3_text", parse=parse, defaults=HF_DEFAULTS,
                presets={"gemma3-27b": GEMMA3_27B}))
register(Family("gemma3", wraps=TextWrapper("gemma3_text"), defaults=WRAPPER_DEFAULTS))
