"""Mixtral-8x7B (Mistral AI): data only.

Sources (ARCHITECTURES.md §2.1, §3.1): [HF] transformers 5.23 ``MixtralConfig`` defaults
(docstring: mistralai/Mixtral-8x7B-v0.1); [P] Mixtral paper / blog ("47B parameters, 13B
active", 8 experts, top-2, 32 layers, 4096 / 14336, 32 / 8 heads, 32000 vocab).
"""

from ..config import MoEConfig
from ..model_config import AttentionConfig, ModelConfig

MIXTRAL_8X7B = ModelConfig(
    name="mixtral-8x7b",
    model_type="mixtral",
    vocab_size=32000,                   # [HF]; [P]
    hidden_size=4096,                   # [HF]; [P]
    num_hidden_layers=32,               # [HF]; [P]
    attention=AttentionConfig(
        num_attention_heads=32,         # [HF]; [P]
        num_key_value_heads=8,          # [HF]; [P]
        head_dim=128,                   # [HF] hidden_size // num_attention_heads
    ),
    intermediate_size=0,                # no dense FFN (14336 is the expert width)
    moe=MoEConfig(
        hidden_size=4096,                 # = the model hidden_size
        num_experts=8,                  # [HF] num_local_experts; [P]
        num_experts_per_tok=2,          # [HF]; [P]
        moe_intermediate_size=14336,    # [HF] intermediate_size; [P]
        scoring="softmax",              # [HF] MixtralTopKRouter ...
        norm_topk_prob=True,            # [HF] ... always renormalises the top-2
        activation="silu",              # [HF] hidden_act
    ),
    hidden_act="silu",                  # [HF]
    tie_word_embeddings=False,          # [HF]
    rms_norm_eps=1e-5,                  # [HF]
)

PRESETS = {"mixtral-8x7b": MIXTRAL_8X7B}
ALIASES = {}
