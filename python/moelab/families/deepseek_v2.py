"""DeepSeek-V2 (and V2-Lite), ``deepseek_v2``.

MLA attention (a plain q_proj when ``q_lora_rank`` is None); a softmax router (transformers v5
never renormalises it) times ``routed_scaling_factor``; shared experts; dense first layers.
Its ``group_limited_greedy`` selection (groups scored by their best expert) is not one of
moelab's routers: such a config gets ``router_variant="group_limited_greedy"``.
"""

from __future__ import annotations

from ..config import MoEConfig
from ..hf_config import ROUTED_EXPERTS_ALIASES, Keys, activation, decoder, mla_attention
from ..model_config import ModelConfig
from ..registry import Family, register

#: transformers 5.23 ``DeepseekV2Config`` defaults.
HF_DEFAULTS = dict(
    vocab_size=102400, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=None, hidden_act="silu", rms_norm_eps=1e-6,
    tie_word_embeddings=False, attention_bias=False, mlp_bias=False, first_k_dense_replace=0,
    kv_lora_rank=512, q_lora_rank=1536, n_group=None, n_routed_experts=64, n_shared_experts=2,
    qk_nope_head_dim=128, qk_rope_head_dim=64, routed_scaling_factor=1.0, topk_group=None,
    topk_method="greedy", v_head_dim=128, num_experts_per_tok=None, moe_intermediate_size=1407)


def parse(k: Keys) -> ModelConfig:
    H = k.need("hidden_size")
    n_h = k.need("num_attention_heads")
    n_kv = k("num_key_value_heads") or n_h
    if k("mlp_bias"):
        raise ValueError("deepseek_v2 config: mlp_bias=True (biases on the shared experts) is not "
                         "supported")
    method = k("topk_method")
    if method not in ("greedy", "group_limited_greedy"):
        raise ValueError(f"deepseek_v2 config: topk_method={method!r} is not supported "
                         "('greedy' or 'group_limited_greedy')")
    variant = "group_limited_greedy" if method == "group_limited_greedy" and (
        k("n_group") or 1) > 1 else None
    # HF v5 DeepseekV2TopkRouter: softmax over all experts, top-k, x routed_scaling_factor; it
    # never renormalises (norm_topk_prob is not read), so neither do we.
    moe = MoEConfig(hidden_size=H, num_experts=k.need("n_routed_experts"),
                    num_experts_per_tok=k.need("num_experts_per_tok"),
                    moe_intermediate_size=k.need("moe_intermediate_size"), scoring="softmax",
                    norm_topk_prob=False,
                    routed_scaling_factor=k.real("routed_scaling_factor"),
                    activation=activation(k), n_shared_experts=k("n_shared_experts") or 0)
    return decoder(k, H,
        attention=mla_attention(k, n_h, n_kv),
        intermediate_size=k("intermediate_size"), moe=moe, hidden_act=activation(k),
        first_k_dense_replace=k("first_k_dense_replace"), router_variant=variant)


register(Family("deepseek_v2", parse=parse, defaults=HF_DEFAULTS,
                key_aliases=ROUTED_EXPERTS_ALIASES))
