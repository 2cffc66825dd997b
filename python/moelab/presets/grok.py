"""Grok-2 ("Grok 2.5" open weights, xai-org/grok-2): data only. Not in transformers.

Sources (ARCHITECTURES.md §2.9, §3.1; the official config.json was not seen): [S] sglang
``models/grok.py`` and its Grok tests' reduced copies of the config (vocab, hidden, heads,
head_dim, top-k, experts, softcaps 30/30/50, residual_moe, 4 norms per layer); [T] a
third-party table ("moe_intermediate_size 16384"); [D] HF discussion xai-org/grok-2 #6 (32768
residual FFN, 4 norms, untied head, 64 layers, 269,515,497,472 parameters). Expert GELU:
tanh-approximated as in the Grok-1 JAX reference (sglang's fused path says "gelu"; unverified).
"""

from ..config import MoEConfig
from ..model_config import AttentionConfig, ModelConfig

GROK_2 = ModelConfig(
    name="grok-2",
    model_type="grok",                  # the release says "git" with Grok1ForCausalLM
    vocab_size=131072,                  # [S] vocab_size
    hidden_size=8192,                   # [S] hidden_size
    num_hidden_layers=64,               # [D] 64 layers
    attention=AttentionConfig(
        num_attention_heads=64,         # [S] num_attention_heads
        num_key_value_heads=8,          # [S] num_key_value_heads
        head_dim=128,                   # [S] head_dim
        attn_logit_softcapping=30.0,    # [S] attn_logit_softcapping
    ),
    intermediate_size=32768,            # [D] residual (shared) dense FFN width
    moe=MoEConfig(
        hidden_size=8192,                 # = the model hidden_size
        num_experts=8,                  # [S] num_local_experts
        num_experts_per_tok=2,          # [S] num_experts_per_tok
        moe_intermediate_size=16384,    # [T] moe_intermediate_size
        scoring="softmax",              # [S] softmax over all experts ...
        norm_topk_prob=False,           # [S] ... no renormalisation (renormalize=False)
        router_logit_softcap=30.0,      # [S] router_logit_softcapping
        activation="gelu_tanh",         # GeGLU experts (see module docstring)
    ),
    hidden_act="gelu_tanh",             # [S] Grok1MLP GeluAndMul(approximate="tanh")
    residual_moe=True,                  # [S] residual_moe: (MLP(x) + MoE(x)) / sqrt(2)
    norm_placement="sandwich",          # [S] pre/post attention and pre/post MoE RMSNorms
    tie_word_embeddings=False,          # [D] untied
    rms_norm_eps=1e-5,                  # [S] rms_norm_eps
)

PRESETS = {"grok-2": GROK_2}
ALIASES = {}
