"""DBRX (Databricks), ``dbrx``.

Its ``config.json`` has its own key names (``d_model``, ``n_heads``, ``n_layers``) and nests the
attention and FFN settings (``attn_config``, ``ffn_config``). A softmax router whose selected
weights are divided by their p-norm: p = 1 is moelab's renormalisation; any other p gets
``router_variant="pnorm"``.
"""

from __future__ import annotations

from typing import Mapping

from ..config import MoEConfig
from ..hf_config import ACTIVATIONS_BY_HF_NAME, Keys, decoder
from ..model_config import AttentionConfig, ModelConfig
from ..registry import Family, register

#: transformers 5.23 ``DbrxConfig`` defaults, and of its nested ``DbrxAttentionConfig`` and
#: ``DbrxFFNConfig``.
HF_DEFAULTS = dict(d_model=2048, n_heads=16, n_layers=24, vocab_size=32000,
                   tie_word_embeddings=False, attn_config=None, ffn_config=None)
ATTN_DEFAULTS = dict(clip_qkv=None, kv_n_heads=1)
FFN_DEFAULTS = dict(ffn_act_fn=None, ffn_hidden_size=3584, moe_num_experts=4, moe_top_k=1,
                    moe_normalize_expert_weights=1.0)


def parse(k: Keys) -> ModelConfig:
    a, f = k.sub("attn_config", ATTN_DEFAULTS), k.sub("ffn_config", FFN_DEFAULTS)
    H, n_h = k("d_model"), k.count("n_heads")  # H // n_h below
    act_fn = f("ffn_act_fn") or {"name": "silu"}
    if not isinstance(act_fn, Mapping):
        raise ValueError(f"dbrx config: ffn_config.ffn_act_fn must be a mapping (e.g. "
                         f"{{'name': 'silu'}}), got {act_fn!r}")
    name = act_fn.get("name", "silu")
    if name not in ACTIVATIONS_BY_HF_NAME:
        raise ValueError(f"dbrx config: ffn_config.ffn_act_fn name {name!r} is not supported")
    p = f("moe_normalize_expert_weights")
    moe = MoEConfig(hidden_size=H, num_experts=f("moe_num_experts"),
                    num_experts_per_tok=f("moe_top_k"),
                    moe_intermediate_size=f("ffn_hidden_size"), scoring="softmax",
                    norm_topk_prob=p is not None, activation=ACTIVATIONS_BY_HF_NAME[name])
    return decoder(k, H, num_hidden_layers=k.num_layers("n_layers"),
        attention=AttentionConfig(num_attention_heads=n_h, num_key_value_heads=a("kv_n_heads"),
                                  head_dim=H // n_h),
        intermediate_size=0, moe=moe, router_variant=None if p in (None, 1, 1.0) else "pnorm",
        rms_norm_eps=1e-5)


register(Family(
    "dbrx", parse=parse, defaults=HF_DEFAULTS,
    key_aliases=(("d_model", "hidden_size"), ("n_heads", "num_attention_heads"),
                 ("n_layers", "num_hidden_layers")),
    nested_defaults={"attn_config": ATTN_DEFAULTS, "ffn_config": FFN_DEFAULTS}))
