"""The Hugging Face transformers MoE block of each benchmarked family, holding moelab's weights.

``build_hf_block(family, cfg, weights)`` builds the block on the meta device (no allocation) and
then gives it moelab's weights: where the layouts agree (fused (E, 2I, H) / (E, H, I): Qwen3-MoE,
DeepSeek-V3, Mixtral) the torch parameters are *views of the same memory* (``torch.from_numpy``),
so the comparison uses literally the same weights and no second copy is made; gpt-oss stores
experts transposed with interleaved gate/up columns, so it gets a converted copy:

    gate_up_proj[e] (H, 2I): column 2i = gate row i, column 2i+1 = up row i;  down_proj[e] (I, H).

``set_experts_implementation(block, name)`` switches ``config._experts_implementation``
("eager" runs the model file's own loop; "batched_mm" and "grouped_mm" the generic kernels of
``transformers.integrations.moe``). All float32 on CPU.
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np
import torch
import transformers
from transformers.integrations import moe as hf_moe

__all__ = ["FAMILIES", "build_hf_block", "set_experts_implementation", "hf_forward",
           "experts_implementations", "grouped_mm_backend", "to_gpt_oss_layout"]

#: family name -> transformers block class (module path) used for it
FAMILIES = ("qwen3_moe", "gpt_oss", "deepseek_v3", "mixtral")


def experts_implementations() -> List[str]:
    """Names transformers registers for ``_experts_implementation`` ("eager" is the default loop)."""
    return ["eager"] + sorted(hf_moe.ALL_EXPERTS_FUNCTIONS.keys())


def grouped_mm_backend() -> str:
    """Which kernel transformers' grouped_mm uses here: torch's grouped_mm or its python loop."""
    w = torch.zeros(2, 8, 8)
    x = torch.zeros(4, 8)
    offs = torch.tensor([2, 4], dtype=torch.int32)
    if hf_moe._can_use_grouped_mm(x, w, offs):
        return ("torch.nn.functional.grouped_mm" if hasattr(torch.nn.functional, "grouped_mm")
                else "torch._grouped_mm")
    return "transformers grouped_mm_fallback (a python loop of torch.mm)"


def _config(family: str, cfg):
    H, E, k, I = (cfg.hidden_size, cfg.num_experts, cfg.num_experts_per_tok,
                  cfg.moe_intermediate_size)
    if family == "qwen3_moe":
        return transformers.Qwen3MoeConfig(hidden_size=H, num_experts=E, num_experts_per_tok=k,
                                           moe_intermediate_size=I,
                                           norm_topk_prob=cfg.norm_topk_prob)
    if family == "gpt_oss":
        return transformers.GptOssConfig(hidden_size=H, num_local_experts=E,
                                         num_experts_per_tok=k, intermediate_size=I)
    if family == "deepseek_v3":
        if cfg.shared_width != cfg.n_shared_experts * I:
            raise ValueError("deepseek_v3: the HF block's shared width is n_shared_experts * I")
        return transformers.DeepseekV3Config(
            hidden_size=H, n_routed_experts=E, num_experts_per_tok=k, moe_intermediate_size=I,
            n_shared_experts=cfg.n_shared_experts, n_group=cfg.n_group,
            topk_group=cfg.topk_group, routed_scaling_factor=cfg.routed_scaling_factor,
            norm_topk_prob=cfg.norm_topk_prob)
    if family == "mixtral":
        return transformers.MixtralConfig(hidden_size=H, num_local_experts=E,
                                          num_experts_per_tok=k, intermediate_size=I)
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def _block_class(family: str):
    if family == "qwen3_moe":
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
        return Qwen3MoeSparseMoeBlock
    if family == "gpt_oss":
        from transformers.models.gpt_oss.modeling_gpt_oss import GptOssMLP
        return GptOssMLP
    if family == "deepseek_v3":
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
        return DeepseekV3MoE
    if family == "mixtral":
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
        return MixtralSparseMoeBlock
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def to_gpt_oss_layout(w: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """moelab canonical expert tensors -> gpt-oss's (E, H, 2I) interleaved / (E, I, H) layout.

    w : "experts.gate_up_proj" (E, 2I, H), "experts.down_proj" (E, H, I),
        "experts.gate_up_proj_bias" (E, 2I), "experts.down_proj_bias" (E, H).
    """
    gu = w["experts.gate_up_proj"]                                        # (E, 2I, H)
    E, two_i, H = gu.shape
    I = two_i // 2
    out_gu = np.empty((E, H, two_i), dtype=np.float32)                    # (E, H, 2I)
    out_gu[:, :, 0::2] = gu[:, :I, :].transpose(0, 2, 1)                  # gate columns
    out_gu[:, :, 1::2] = gu[:, I:, :].transpose(0, 2, 1)                  # up columns
    b = w["experts.gate_up_proj_bias"]                                    # (E, 2I)
    out_b = np.empty_like(b)
    out_b[:, 0::2] = b[:, :I]
    out_b[:, 1::2] = b[:, I:]
    return {"experts.gate_up_proj": out_gu,
            "experts.gate_up_proj_bias": out_b,
            "experts.down_proj": np.ascontiguousarray(
                w["experts.down_proj"].transpose(0, 2, 1)),               # (E, I, H)
            "experts.down_proj_bias": np.array(w["experts.down_proj_bias"])}


def _hf_tensors(family: str, cfg, w: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """HF parameter/buffer name -> array (views of w where the layout is the same)."""
    if family == "gpt_oss":
        out = to_gpt_oss_layout(w)
        out["router.weight"] = w["router.weight"]
        out["router.bias"] = w["router.bias"]
        return out
    out = {"gate.weight": w["router.weight"],
           "experts.gate_up_proj": w["experts.gate_up_proj"],
           "experts.down_proj": w["experts.down_proj"]}
    if family == "deepseek_v3":
        S = cfg.shared_width
        sgu = w["shared_experts.gate_up_proj"]                            # (2S, H)
        out["gate.e_score_correction_bias"] = (w["router.e_score_correction_bias"]
                                               if cfg.correction_bias
                                               else np.zeros(cfg.num_experts, np.float32))
        out["shared_experts.gate_proj.weight"] = sgu[:S]                  # (S, H)
        out["shared_experts.up_proj.weight"] = sgu[S:]                    # (S, H)
        out["shared_experts.down_proj.weight"] = w["shared_experts.down_proj"]  # (H, S)
    return out


def _set_tensor(module: torch.nn.Module, name: str, value: np.ndarray) -> None:
    *path, leaf = name.split(".")
    for p in path:
        module = getattr(module, p)
    t = torch.from_numpy(np.ascontiguousarray(value))   # shares memory when already contiguous
    if leaf in module._buffers:
        module._buffers[leaf] = t
    else:
        module._parameters[leaf] = torch.nn.Parameter(t, requires_grad=False)


def build_hf_block(family: str, cfg, weights: Mapping[str, np.ndarray]) -> torch.nn.Module:
    """The transformers MoE block of ``family`` with moelab's weights (eval mode, float32, CPU).

    Raises ValueError if a parameter or buffer of the block was left without a weight, or a
    shape differs.
    """
    hf_cfg = _config(family, cfg)
    with torch.device("meta"):
        block = _block_class(family)(hf_cfg)
    expected = dict(block.named_parameters())
    expected.update(dict(block.named_buffers()))
    tensors = _hf_tensors(family, cfg, weights)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"{family}: no weight for HF tensors {missing}")
    for name, value in tensors.items():
        if name not in expected:
            raise ValueError(f"{family}: the HF block has no tensor {name!r}")
        if tuple(expected[name].shape) != tuple(value.shape):
            raise ValueError(f"{family}: {name}: expected {tuple(expected[name].shape)}, "
                             f"got {tuple(value.shape)}")
        _set_tensor(block, name, value)
    block.eval()
    block.hf_config = hf_cfg
    return block


def set_experts_implementation(block: torch.nn.Module, name: str) -> None:
    """Select transformers' experts kernel for this block ("eager", "batched_mm", "grouped_mm")."""
    if name not in experts_implementations():
        raise ValueError(f"experts implementation must be one of {experts_implementations()}, "
                         f"got {name!r}")
    block.hf_config._experts_implementation = name


def hf_forward(block: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """y = block(x) for x : (T, H) float32 -> (T, H) float32 (no autograd)."""
    T, H = x.shape
    with torch.inference_mode():
        out = block(torch.from_numpy(x).view(1, T, H))
    if isinstance(out, tuple):      # GptOssMLP returns (y, router_scores)
        out = out[0]
    return out.reshape(T, H).numpy()
