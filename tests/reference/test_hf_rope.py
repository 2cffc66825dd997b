"""RoPE vs Hugging Face transformers 5.23: inverse frequencies and attention scaling of each
rope type (``ROPE_INIT_FUNCTIONS`` and the default computation of ``LlamaRotaryEmbedding``),
and the rotation of (T, heads, head_dim) rows (``apply_rotary_pos_emb`` of Llama for
rotate-half pairs, of GLM-4.5 for partial rotary; Llama 4's complex ``apply_rotary_emb`` for
interleaved pairs), for the core (``_core.RopeSpec``) and the float64 twin
(``moelab.reference.rope_parameters`` / ``apply_rope``)."""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import _core, reference
from tolerances import ROPE, ROPE_FAR_POSITIONS, assert_close

try:
    import torch
    import transformers
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.glm4_moe import modeling_glm4_moe as glm
    from transformers.models.llama import modeling_llama as llama
    from transformers.models.llama4 import modeling_llama4 as llama4
except ImportError:  # conftest.py fails or skips every test below
    torch = None

pytestmark = pytest.mark.reference

HEAD_DIM, MAX_POS = 32, 4096
CASES = {
    "default": dict(rope_type="default", rope_theta=10000.0),
    "default-partial": dict(rope_type="default", rope_theta=1e6, partial_rotary_factor=0.5),
    "linear": dict(rope_type="linear", rope_theta=1e6, factor=8.0),
    "llama3": dict(rope_type="llama3", rope_theta=5e5, factor=8.0, low_freq_factor=1.0,
                   high_freq_factor=4.0, original_max_position_embeddings=256),
    "yarn-gpt-oss": dict(rope_type="yarn", rope_theta=150000.0, factor=32.0, beta_fast=32.0,
                         beta_slow=1.0, truncate=False, original_max_position_embeddings=128),
    "yarn-mscale": dict(rope_type="yarn", rope_theta=10000.0, factor=40.0, mscale=1.0,
                        mscale_all_dim=1.0, beta_fast=32, beta_slow=1,
                        original_max_position_embeddings=128),
    "yarn-mscale-0.707": dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, mscale=0.707,
                              mscale_all_dim=1.0, original_max_position_embeddings=1024),
    "yarn-qwen": dict(rope_type="yarn", rope_theta=1e6, factor=4.0,
                      original_max_position_embeddings=1024),
}


def _hf_config(params):
    # Llama's default rope ignores partial_rotary_factor; GLM-4.5's applies it
    cls = transformers.Glm4MoeConfig if "partial_rotary_factor" in params else transformers.LlamaConfig
    return cls(hidden_size=128, num_attention_heads=4, head_dim=HEAD_DIM,
                                    max_position_embeddings=MAX_POS,
                                    rope_parameters=dict(params))


def _hf_inv_freq(params):
    config = _hf_config(params)
    kind = params["rope_type"]
    if kind == "default":
        rotary = glm.Glm4MoeRotaryEmbedding if "partial_rotary_factor" in params else llama.LlamaRotaryEmbedding
        inv, scale = rotary.compute_default_rope_parameters(config)
    else:
        inv, scale = ROPE_INIT_FUNCTIONS[kind](config, "cpu")
    return inv.numpy(), float(scale)


def _spec(params, interleaved=False):
    return moelab.AttentionSpec(hidden_size=128, num_attention_heads=4, num_key_value_heads=4,
                                head_dim=HEAD_DIM, max_position_embeddings=MAX_POS, rope=params,
                                rope_interleaved=interleaved).rope_spec()


@pytest.mark.parametrize("name", list(CASES))
def test_inverse_frequencies_and_scaling(name):
    params = CASES[name]
    inv_hf, scale_hf = _hf_inv_freq(params)
    spec = _spec(params)
    assert_close(spec.inv_freq(), inv_hf, ROPE, f"{name}: core inv_freq")
    assert spec.attention_scaling() == pytest.approx(scale_hf, rel=ROPE.rtol)
    inv_ref, scale_ref = reference.rope_parameters(params, HEAD_DIM, MAX_POS)
    assert_close(inv_ref, inv_hf, ROPE, f"{name}: reference inv_freq")
    assert scale_ref == pytest.approx(scale_hf, rel=ROPE.rtol)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("pos0", [0, 1000])
def test_rotate_half_matches_apply_rotary_pos_emb(name, pos0):
    params = CASES[name]
    T, heads = 21, 3
    x = np.random.default_rng(1).standard_normal((T, heads, HEAD_DIM)).astype(np.float32)
    config = _hf_config(params)
    positions = torch.arange(pos0, pos0 + T)[None]
    xt = torch.from_numpy(x).transpose(0, 1)[None]  # (1, heads, T, d)
    rotary = glm.Glm4MoeRotaryEmbedding if "partial" in name else llama.LlamaRotaryEmbedding
    cos, sin = rotary(config)(xt, positions)
    apply = glm.apply_rotary_pos_emb if "partial" in name else llama.apply_rotary_pos_emb
    y_hf, _ = apply(xt, xt, cos, sin)
    y_hf = y_hf[0].transpose(0, 1).numpy()  # (T, heads, d)
    assert_close(_spec(params).apply(x, pos0), y_hf, ROPE, f"{name}: core rotation")
    inv, scale = reference.rope_parameters(params, HEAD_DIM, MAX_POS)
    y_ref = reference.apply_rope(x, np.arange(pos0, pos0 + T), inv, scale)
    # float64 angles vs float32 ones: the twin differs from both by the angles' rounding
    assert_close(y_ref, y_hf, ROPE if pos0 == 0 else ROPE_FAR_POSITIONS,
                 f"{name}: reference rotation")


def test_interleaved_matches_llama4_complex_rotation():
    params = CASES["llama3"]
    T, heads, pos0 = 17, 2, 300
    x = np.random.default_rng(2).standard_normal((T, heads, HEAD_DIM)).astype(np.float32)
    config = transformers.Llama4TextConfig(hidden_size=128, num_attention_heads=4,
                                           head_dim=HEAD_DIM, max_position_embeddings=MAX_POS,
                                           rope_parameters=dict(params))
    xt = torch.from_numpy(x)[None]  # (1, T, heads, d): Llama 4 rotates before the transpose
    freqs_cis = llama4.Llama4TextRotaryEmbedding(config)(xt, torch.arange(pos0, pos0 + T)[None])
    y_hf, _ = llama4.apply_rotary_emb(xt, xt, freqs_cis)
    y_hf = y_hf[0].numpy()
    assert_close(_spec(params, interleaved=True).apply(x, pos0), y_hf, ROPE, "core interleaved")
    inv, scale = reference.rope_parameters(params, HEAD_DIM, MAX_POS)
    y_ref = reference.apply_rope(x, np.arange(pos0, pos0 + T), inv, scale, interleaved=True)
    assert_close(y_ref, y_hf, ROPE_FAR_POSITIONS, "reference interleaved")


def test_rotation_is_not_the_identity_or_the_other_pairing():
    """The comparison can fail: the other pair layout or a shifted position is far off."""
    params = CASES["default"]
    x = np.random.default_rng(3).standard_normal((9, 2, HEAD_DIM)).astype(np.float32)
    spec = _spec(params)
    y = spec.apply(x, 5)
    for other in (x, _spec(params, interleaved=True).apply(x, 5), spec.apply(x, 6)):
        with pytest.raises(AssertionError):
            assert_close(y, other, ROPE, "different rotations")
