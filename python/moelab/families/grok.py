"""Grok-2 ("Grok 2.5" open weights, xai-org/grok-2), ``grok``. Not in transformers.

Its released config.json says ``"model_type": "git"`` with ``architectures``
``["Grok1ForCausalLM"]``; ``grok``, ``grok-1``, ``grok1``, ``grok-2`` and ``grok2`` are accepted
too. GQA with an attention-logit soft-cap; a softmax router after a logit soft-cap of 30, no
renormalisation; GeGLU experts; a residual dense MLP beside every MoE layer,
``(MLP(x) + MoE(x)) / sqrt(2)``; four norms per layer.

Preset sources (the official config.json was not seen): [S] sglang ``models/grok.py`` and its
Grok tests' reduced copies of the config (vocab, hidden, heads, head_dim, top-k, experts,
softcaps 30/30/50, residual_moe, 4 norms per layer); [T] a third-party table
("moe_intermediate_size 16384"); [D] HF discussion xai-org/grok-2 #6 (32768 residual FFN, 4
norms, untied head, 64 layers, 269,515,497,472 parameters). Expert GELU: tanh-approximated as in
the Grok-1 JAX reference (sglang's fused path says "gelu"; unverified).
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import Keys, decoder
from ..model_config import AttentionConfig, ModelConfig
from ..registry import Family, register

# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
#: Optional keys take sglang's defaults (models/grok.py: head_dim 128, residual_moe False,
#: attention soft-cap 30; the router soft-cap is hard-coded 30). Dimensions have none.
DEFAULTS = dict(head_dim=128, residual_moe=False, moe_intermediate_size=None,
                router_logit_softcapping=30.0, attn_logit_softcapping=30.0, rms_norm_eps=1e-5,
                tie_word_embeddings=False, num_key_value_heads=None)


def parse(k: Keys) -> ModelConfig:
    H = k.need("hidden_size")
    n_h = k.need("num_attention_heads")
    n_kv = k("num_key_value_heads") or n_h
    d = k("head_dim") or 128
    E = k.need("num_local_experts", "num_experts")
    I_dense = k.need("intermediate_size")
    I_moe = k("moe_intermediate_size") or I_dense
    residual = bool(k("residual_moe"))
    # sglang Grok1MoE: fp32 router, 30*tanh(l/30), softmax over all, top-k, no renormalisation;
    # experts GeGLU. GELU is tanh-approximated in the Grok-1 JAX reference and sglang's dense MLP.
    moe = MoEConfig(hidden_size=H, num_experts=E, num_experts_per_tok=k.need("num_experts_per_tok"),
                    moe_intermediate_size=I_moe, scoring="softmax", norm_topk_prob=False,
                    router_logit_softcap=k("router_logit_softcapping"), activation="gelu_tanh")
    att = AttentionConfig(num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=d,
                          attn_logit_softcapping=k("attn_logit_softcapping"))
    return decoder(k, H,
        attention=att,
        intermediate_size=I_dense if residual else 0, moe=moe, hidden_act="gelu_tanh",
        residual_moe=residual, norm_placement="sandwich")


# ---------------------------------------------------------------------------------------------
# presets (data only: every value with its source)
# ---------------------------------------------------------------------------------------------
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
        hidden_size=8192,               # = the model hidden_size
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

register(Family(
    "grok", parse=parse, defaults=DEFAULTS, presets={"grok-2": GROK_2},
    other_names=("grok-1", "grok1", "grok-2", "grok2"),
    released_as=(("git", "Grok1ForCausalLM"),), hf_model_type=None))
