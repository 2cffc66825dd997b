"""Tiny random Hugging Face MoE models of each family, and their MoE blocks run on one input.

Everything torch lives here; test modules import this inside a ``try`` (conftest.py decides
whether a missing reference fails or skips). All models are float32 on CPU.

Each family's :class:`moelab.registry.ParityFixture` (in its module under
``moelab/families/``) gives the tiny ``transformers`` config, which decoder layer is the MoE layer
under test, and how to read routing out of its block:

* ``gate``   (Mixtral, Qwen2/3-MoE, Qwen3-Next, OLMoE, DeepSeek-V3, GLM-4-MoE):
  ``block.gate(x) -> (logits, weights (T, k), ids (T, k))``;
* ``router`` (gpt-oss): ``block.router(x) -> (logits, weights (T, k), ids (T, k))``;
* ``llama4``: ``block.router(x) -> (scores (T, E) = sigmoid of the selected logits, 0 elsewhere,
  logits)``.
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np
import torch
import transformers

from _fixtures import H
from moelab.registry import ParityFixture

T_BATCH = (2, 24)  # (B, S): T = 48 tokens


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


def make_model(family: ParityFixture, seed: int = 0, impl: str = "eager"):
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


def hidden_states(family: ParityFixture, seed: int = 0) -> torch.Tensor:
    """(B, S, H) float32 inputs of the MoE block (unit normal times the family's input scale)."""
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(*T_BATCH, H, generator=g) * family.input_scale


def run_block(family: ParityFixture, block, x: torch.Tensor) -> Dict[str, np.ndarray]:
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
