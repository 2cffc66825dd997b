"""A tiny Hugging Face ``Qwen3NextGatedDeltaNet`` with random weights, run with its own cache.

Everything torch lives here; test modules import this inside a ``try`` (conftest.py decides
whether a missing reference fails or skips). CPU has no fused kernels (flash-linear-attention,
causal-conv1d), so transformers runs its torch fallbacks: ``torch_chunk_gated_delta_rule`` for a
prefill, ``torch_recurrent_gated_delta_rule`` for a cached one-token step, ``causal_conv1d_fn`` /
``causal_conv1d_update`` for the conv.

The dims are all different (H = 40, n_k = 2, n_v = 6, d_k = 8, d_v = 12, K = 4), so that a
swapped axis or head index cannot pass by symmetry.
"""

from __future__ import annotations

import numpy as np
import torch
import transformers
from transformers.cache_utils import DynamicCache
from transformers.models.qwen3_next import modeling_qwen3_next

import moelab

H = 40
LAYER = 0  # layer_types = [linear_attention, full_attention]

# The fallback notices ("... is not installed ...") are logged once per process; keep them out
# of the test output.
transformers.logging.set_verbosity_error()


def make_config(**overrides) -> transformers.Qwen3NextConfig:
    dims = dict(vocab_size=64, hidden_size=H, num_attention_heads=4, num_key_value_heads=2,
                head_dim=8, intermediate_size=48, moe_intermediate_size=16,
                shared_expert_intermediate_size=24, num_hidden_layers=2, num_experts=4,
                num_experts_per_tok=2, full_attention_interval=2, linear_num_key_heads=2,
                linear_num_value_heads=6, linear_key_head_dim=8, linear_value_head_dim=12,
                linear_conv_kernel_dim=4, rms_norm_eps=1e-6)
    dims.update(overrides)
    return transformers.Qwen3NextConfig(**dims)


def moelab_config(hf_config: transformers.Qwen3NextConfig) -> "moelab.ModelConfig":
    return moelab.from_hf_config(hf_config.to_dict())


def make_module(hf_config, seed: int = 0, dtype=torch.float32):
    """The DeltaNet of layer LAYER with seeded weights.

    Matrices and the conv keep torch's default init (uniform in ±1/sqrt(fan_in)); A_log and
    dt_bias are set so that the per-token decays e^g span about 0.99 to 0.6 across the heads:
    slow heads carry the state over several chunks (an error in the chunked form shows), fast
    heads test strong decay. norm.weight varies around 1 so that a wrong channel shows.
    """
    torch.manual_seed(seed)
    module = modeling_qwen3_next.Qwen3NextGatedDeltaNet(hf_config, LAYER).to(dtype).eval()
    n_v = hf_config.linear_num_value_heads
    d_v = hf_config.linear_value_head_dim
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.A_log.copy_(torch.log(torch.linspace(0.02, 2.0, n_v, dtype=torch.float64)))
        module.dt_bias.copy_(-2.0 + 0.2 * torch.randn(n_v, generator=g, dtype=torch.float64))
        module.norm.weight.copy_(0.5 + torch.rand(d_v, generator=g, dtype=torch.float64))
    return module


def weights_of(module) -> dict:
    """name -> float64 NumPy copy of every parameter (the HF names moelab uses)."""
    return {name: p.detach().to(torch.float64).numpy().copy()
            for name, p in module.named_parameters()}


def inputs(T: int, seed: int) -> np.ndarray:
    """(T, H) float32 unit-normal hidden states."""
    return np.random.default_rng(seed).standard_normal((T, H)).astype(np.float32)


class HFSequence:
    """One sequence through the HF module, with a ``DynamicCache`` when ``cached``."""

    def __init__(self, module, hf_config, cached: bool = True):
        self.module = module
        self.cache = DynamicCache(config=hf_config) if cached else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """y (T, H) float64 for x (T, H); continues the cache."""
        dtype = next(self.module.parameters()).dtype
        xt = torch.from_numpy(np.asarray(x)).to(dtype)[None]     # (1, T, H)
        with torch.no_grad():
            y = self.module(xt, cache_params=self.cache)           # (1, T, H)
        return y[0].to(torch.float64).numpy()

    def recurrent_state(self) -> np.ndarray:
        """(n_v, d_k, d_v) float64."""
        return self.cache.layers[LAYER].recurrent_states[0][0].to(torch.float64).numpy()

    def conv_state(self) -> np.ndarray:
        """(K - 1, conv_dim) float64, oldest first (HF keeps the last K inputs, channel-major)."""
        conv = self.cache.layers[LAYER].conv_states[0][0]          # (conv_dim, K)
        return conv[:, 1:].T.to(torch.float64).numpy()
