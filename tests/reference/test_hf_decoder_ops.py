"""The decoder ops vs the transformers modules they stand for (5.23, CPU torch, float32 math):

- ops.rms_norm(offset=0) vs Qwen3RMSNorm, ops.rms_norm(offset=1) vs Gemma3RMSNorm, with
  float32 weights and with bfloat16 weights (a bf16 checkpoint's norm weight applied to float32
  activations: torch promotes to float32, as moelab does);
- ops.embedding vs nn.Embedding, and with scale vs Gemma3TextScaledWordEmbedding in float32
  and in bfloat16 (bitwise: a gather, and one product in the table's dtype);
- ops.logit_softcap vs the final-logit soft-capping lines of Gemma3ForCausalLM.forward.

Weights are copied across (bfloat16 as its bit pattern).
"""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from tolerances import RMS_NORM, SOFTCAP, assert_close

try:
    import torch
    from transformers.models.gemma3.modeling_gemma3 import (Gemma3RMSNorm,
                                                            Gemma3TextScaledWordEmbedding)
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm
except ImportError:  # conftest.py fails or skips every test below
    torch = None

pytestmark = pytest.mark.reference


def bits(t: "torch.Tensor") -> np.ndarray:
    """A torch tensor's values as moelab takes them: float32, or uint16 bfloat16 bit patterns."""
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(np.uint16).copy()
    return t.detach().numpy().copy()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
@pytest.mark.parametrize("T, H", [(1, 128), (40, 1024), (9, 4096)], ids=str)
def test_rms_norm_matches_transformers(family, dtype, T, H):
    torch.manual_seed(T * H)
    eps = 1e-6
    module = Qwen3RMSNorm(H, eps=eps) if family == "qwen3" else Gemma3RMSNorm(H, eps=eps)
    with torch.no_grad():
        module.weight.copy_(torch.randn(H) * 0.3 + (1.0 if family == "qwen3" else 0.0))
    module = module.to(getattr(torch, dtype))
    x = torch.randn(T, H) * 4.0                                           # (T, H) float32
    with torch.no_grad():
        expected = module(x).float().numpy()                              # (T, H)
    assert module(x).dtype == torch.float32
    offset = 0.0 if family == "qwen3" else 1.0
    y = moelab.ops.rms_norm(x.numpy(), bits(module.weight), eps, offset=offset)
    assert_close(y, expected, RMS_NORM, f"{family} {dtype} rms_norm")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_embedding_matches_nn_embedding(dtype):
    torch.manual_seed(0)
    module = torch.nn.Embedding(3000, 96).to(getattr(torch, dtype))
    ids = torch.tensor([0, 2999, 17, 17, 1234, 5])
    with torch.no_grad():
        expected = module(ids).float().numpy()
    np.testing.assert_array_equal(moelab.ops.embedding(ids.numpy(), bits(module.weight)), expected)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("H", [64, 640, 2560])
def test_scaled_embedding_matches_gemma3(dtype, H):
    """Gemma 3 multiplies by sqrt(H) cast to the table's dtype, in that dtype."""
    torch.manual_seed(H)
    module = Gemma3TextScaledWordEmbedding(500, H, padding_idx=0, embed_scale=H ** 0.5)
    module = module.to(getattr(torch, dtype))
    with torch.no_grad():
        module.weight.normal_()
    ids = torch.tensor([3, 0, 499, 42, 42, 7, 250])
    with torch.no_grad():
        expected = module(ids)
    assert expected.dtype == getattr(torch, dtype)
    out = moelab.ops.embedding(ids.numpy(), bits(module.weight), scale=H ** 0.5)
    np.testing.assert_array_equal(out, expected.float().numpy())


@pytest.mark.parametrize("cap", [30.0, 15.0])
def test_logit_softcap_matches_gemma3_final_logits(cap):
    torch.manual_seed(1)
    logits = torch.randn(7, 4096) * 60.0                                  # (T, V)
    expected = logits / cap                     # Gemma3ForCausalLM.forward, as written there
    expected = torch.tanh(expected)
    expected = expected * cap
    y = moelab.ops.logit_softcap(logits.numpy(), cap)
    assert_close(y, expected.numpy(), SOFTCAP, f"softcap {cap}")
