"""What the Qwen families' parsers share (Qwen2, Qwen3, Qwen2-MoE, Qwen3-MoE, Qwen3-Next):
HF's sliding-window rule, Qwen3's attention, the softmax routed layer and its placement."""

from __future__ import annotations

from typing import List, Optional, Tuple

from ..config import MoEConfig
from ..hf_config import Keys, activation, attention_bias, gqa_attention, heads
from ..model_config import AttentionConfig


def sliding_layer_types(k: Keys, L: int, rule: str) -> Tuple[Optional[int], Optional[List[str]]]:
    """(window, layer_types) of Qwen2 / Qwen3 (-MoE) as HF's post_init computes them: a window
    only with ``use_sliding_window``; without ``layer_types``, the sliding layers are those from
    ``max_window_layers`` on (``rule="qwen2"``/``"qwen3"``) or the even-numbered ones below it
    (``rule="qwen2_moe"``)."""
    window = k("sliding_window") if k("use_sliding_window") else None
    lt = k("layer_types", None)
    if lt is None and window is not None:
        mwl = k("max_window_layers")
        if rule == "qwen2_moe":
            lt = ["sliding_attention" if (i + 1) % 2 and i < mwl else "full_attention"
                  for i in range(L)]
        else:
            lt = ["sliding_attention" if i >= mwl else "full_attention" for i in range(L)]
    if lt is not None and "sliding_attention" not in lt:
        window = None
    return window, lt


def qwen3_layers(k: Keys) -> Tuple[int, int, AttentionConfig, Optional[List[str]]]:
    """(H, L, attention, layer_types) of Qwen3 and Qwen3-MoE: q/k/v/o biases from
    ``attention_bias``, per-head QK-norm, the Qwen sliding-window rule."""
    H, n_h, n_kv, d = heads(k)
    L = k.num_layers()
    window, lt = sliding_layer_types(k, L, "qwen3")
    att = gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d, **attention_bias(k), qk_norm="head",
                        sliding_window=window)
    return H, L, att, lt


def routed_layer(k: Keys, H: int, gated_shared_expert: bool) -> MoEConfig:
    """The Qwen families' routed layer: softmax top-k (renormalised if norm_topk_prob), and for
    Qwen2-MoE / Qwen3-Next one shared expert scaled by a sigmoid gate."""
    shared = dict(n_shared_experts=1,
                  shared_intermediate_size=k("shared_expert_intermediate_size"),
                  shared_expert_gate=True) if gated_shared_expert else {}
    return MoEConfig(hidden_size=H, num_experts=k("num_experts"),
                     num_experts_per_tok=k("num_experts_per_tok"),
                     moe_intermediate_size=k("moe_intermediate_size"), scoring="softmax",
                     norm_topk_prob=bool(k("norm_topk_prob")), activation=activation(k),
                     **shared)


def placement(k: Keys, layer_types) -> dict:
    """ModelConfig fields the Qwen MoE families share: dense width, the mlp_only_layers /
    decoder_sparse_step placement rule and the layer types."""
    return dict(intermediate_size=k("intermediate_size"), hidden_act=activation(k),
                decoder_sparse_step=k("decoder_sparse_step"),
                mlp_only_layers=tuple(k("mlp_only_layers") or ()), layer_types=layer_types)
