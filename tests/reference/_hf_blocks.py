"""Tiny random Hugging Face MoE models of each family, and their MoE blocks run on one input.

Everything torch lives here; test modules import this inside a ``try`` (conftest.py decides
whether a missing reference fails or skips). All models are float32 on CPU.

A family spec gives the tiny ``transformers`` config, which decoder layer is the MoE layer
under test, and how to read routing out of its block:

* ``gate``   (Mixtral, Qwen2/3-MoE, Qwen3-Next, OLMoE, DeepSeek-V3, GLM-4-MoE):
  ``block.gate(x) -> (logits, weights (T, k), ids (T, k))``;
* ``router`` (gpt-oss): ``block.router(x) -> (logits, weights (T, k), ids (T, k))``;
* ``llama4``: ``block.router(x) -> (scores (T, E) = sigmoid of the selected logits, 0 elsewhere,
  logits)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np
import torch
import transformers

H = 32          # hidden size of every tiny model
T_BATCH = (2, 24)  # (B, S): T = 48 tokens


@dataclass(frozen=True)
class Family:
    """A tiny model of one family: config factory, MoE layer index, routing accessor."""

    name: str
    make_config: Callable[[], transformers.PretrainedConfig]
    moe_layer: int
    dense_layer: "int | None"   # a dense decoder layer of the tiny model, if it has one
    routing: str                # "gate" | "router" | "llama4"
    input_scale: float = 1.0    # gpt-oss: large inputs so that its clamps are active
    decorated: bool = True      # experts use @use_experts_implementation (eager/grouped/batched)


def _attn(**kw):
    return dict(vocab_size=64, num_attention_heads=4, num_key_value_heads=2, **kw)


FAMILIES: Dict[str, Family] = {f.name: f for f in (
    Family("mixtral", lambda: transformers.MixtralConfig(
        **_attn(), hidden_size=H, intermediate_size=16, num_hidden_layers=2,
        num_local_experts=8, num_experts_per_tok=2), 1, None, "gate"),
    Family("qwen2_moe", lambda: transformers.Qwen2MoeConfig(
        **_attn(), hidden_size=H, intermediate_size=48, moe_intermediate_size=16,
        shared_expert_intermediate_size=24, num_hidden_layers=2, num_experts=8,
        num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=2), 1, 0, "gate"),
    Family("qwen3_moe", lambda: transformers.Qwen3MoeConfig(
        **_attn(), hidden_size=H, intermediate_size=48, moe_intermediate_size=16, head_dim=8,
        num_hidden_layers=2, num_experts=8, num_experts_per_tok=3, norm_topk_prob=True,
        mlp_only_layers=[0]), 1, 0, "gate"),
    Family("qwen3_next", lambda: transformers.Qwen3NextConfig(
        **_attn(), hidden_size=H, intermediate_size=48, moe_intermediate_size=16, head_dim=8,
        shared_expert_intermediate_size=24, num_hidden_layers=2, num_experts=8,
        num_experts_per_tok=2, norm_topk_prob=True, full_attention_interval=2,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
        linear_value_head_dim=8), 1, None, "gate"),
    Family("deepseek_v3", lambda: transformers.DeepseekV3Config(
        vocab_size=64, hidden_size=H, intermediate_size=48, moe_intermediate_size=16,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=16,
        num_experts_per_tok=4, n_group=4, topk_group=2, routed_scaling_factor=2.5,
        norm_topk_prob=True, n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=16,
        kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8), 1, 0, "gate"),
    Family("glm4_moe", lambda: transformers.Glm4MoeConfig(
        **_attn(), hidden_size=H, intermediate_size=48, moe_intermediate_size=16, head_dim=8,
        num_hidden_layers=2, n_routed_experts=8, num_experts_per_tok=2, n_group=1, topk_group=1,
        routed_scaling_factor=2.5, norm_topk_prob=True, n_shared_experts=1,
        first_k_dense_replace=1), 1, 0, "gate"),
    Family("llama4", lambda: transformers.Llama4TextConfig(
        **_attn(), hidden_size=H, intermediate_size=16, intermediate_size_mlp=48, head_dim=8,
        num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=1,
        interleave_moe_layer_step=2), 1, 0, "llama4", decorated=False),
    Family("llama4_k2", lambda: transformers.Llama4TextConfig(
        **_attn(), hidden_size=H, intermediate_size=16, intermediate_size_mlp=48, head_dim=8,
        num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=2,
        interleave_moe_layer_step=2), 1, 0, "llama4", decorated=False),
    Family("gpt_oss", lambda: transformers.GptOssConfig(
        **_attn(), hidden_size=H, intermediate_size=16, head_dim=8, num_hidden_layers=2,
        num_local_experts=8, num_experts_per_tok=4), 1, None, "router", input_scale=4.0),
    Family("olmoe", lambda: transformers.OlmoeConfig(
        **_attn(), hidden_size=H, intermediate_size=16, num_hidden_layers=2, num_experts=8,
        num_experts_per_tok=4, norm_topk_prob=False, eos_token_id=None, pad_token_id=None,
        bos_token_id=None), 1, None, "gate"),
)}

#: Families whose transformers module defines ``load_balancing_loss_func``.
AUX_LOSS_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "qwen3_next", "olmoe", "gpt_oss")

PHIMOE_CONFIG = lambda: transformers.PhimoeConfig(  # noqa: E731
    **_attn(), hidden_size=H, intermediate_size=16, num_hidden_layers=2, num_local_experts=8,
    num_experts_per_tok=2)


def block_of(model, layer_idx: int):
    """The FFN module of decoder layer ``layer_idx`` (``mlp`` or Llama 4's ``feed_forward``)."""
    if hasattr(model, "language_model"):   # Llama4ForConditionalGeneration
        model = model.language_model
    layer = model.model.layers[layer_idx]
    return layer.mlp if hasattr(layer, "mlp") else layer.feed_forward


def randomize_block(block, seed: int) -> None:
    """Overwrite every parameter and buffer of an MoE block with seeded random values.

    Router weights get std 2/sqrt(H) (logits of order 2 for unit inputs, so routing is far from
    uniform and near-ties are rare); matrices std 1/sqrt(fan_in); biases std 0.5; DeepSeek's
    e_score_correction_bias std 0.3 (enough to change some selections).
    """
    g = torch.Generator().manual_seed(seed)
    experts = block.experts
    transposed = bool(getattr(experts, "is_transposed", False)) or \
        type(experts).__name__ == "Llama4TextExperts"
    with torch.no_grad():
        for name, p in list(block.named_parameters()) + list(block.named_buffers()):
            if name.endswith("e_score_correction_bias"):
                std = 0.3
            elif p.ndim == 1 or name.endswith("_bias"):
                std = 0.5
            elif name in ("gate.weight", "router.weight"):
                std = 2.0 / math.sqrt(p.shape[-1])
            elif p.ndim == 3:  # fused experts (E, out, in), or (E, in, out) when transposed
                std = 1.0 / math.sqrt(p.shape[1] if transposed else p.shape[2])
            else:
                std = 1.0 / math.sqrt(p.shape[-1])
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * std)


def make_model(family: Family, seed: int = 0, impl: str = "eager"):
    """A tiny float32 CausalLM of the family, its MoE block randomised, in eval mode."""
    torch.manual_seed(seed)
    cfg = family.make_config()
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.eval()
    if family.decorated:
        model.set_experts_implementation(impl)
    for i in range(cfg.num_hidden_layers):
        block = block_of(model, i)
        if hasattr(block, "experts"):  # every MoE block, so that no router is near-uniform
            randomize_block(block, seed + 1 + i)
    return model


def hidden_states(family: Family, seed: int = 0) -> torch.Tensor:
    """(B, S, H) float32 inputs of the MoE block (unit normal times the family's input scale)."""
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(*T_BATCH, H, generator=g) * family.input_scale


def run_block(family: Family, block, x: torch.Tensor) -> Dict[str, np.ndarray]:
    """The HF block on x (B, S, H): output y (T, H), routing ids (T, k), weights (T, k), logits."""
    x2 = x.reshape(-1, x.shape[-1])                       # (T, H)
    with torch.no_grad():
        out = block(x if family.routing != "llama4" else x2)
        y = out[0] if isinstance(out, tuple) else out
        if family.routing == "llama4":
            scores, logits = block.router(x2)              # (T, E), (T, E)
            k = block.router.top_k
            ids = torch.topk(logits, k, dim=1).indices    # (T, k)
            w = scores.gather(1, ids)                      # (T, k)
        else:
            router = block.gate if family.routing == "gate" else block.router
            logits, w, ids = router(x2)                    # (T, E), (T, k), (T, k)
    return {"y": y.reshape(x2.shape).numpy(), "ids": ids.numpy(), "weights": w.float().numpy(),
            "logits": logits.float().numpy()}


def by_id(ids: np.ndarray, weights: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per token, the (ids, weights) pairs sorted by expert id: order-free comparison."""
    order = np.argsort(ids, axis=1, kind="stable")         # (T, k)
    return np.take_along_axis(ids, order, 1), np.take_along_axis(weights, order, 1)
