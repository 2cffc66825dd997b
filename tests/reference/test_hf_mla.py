"""moelab.MultiHeadLatentAttention vs transformers' DeepseekV3Attention (5.23, float32, eager).

For each tiny deepseek_v3 config of ``CASES`` (with and without q_lora_rank, YaRN rope scaling
with mscale_all_dim, rope_interleave off, attention_bias), HF's attention module with random
weights runs the whole sequence of T = 37 + 6 tokens; moelab's layer, given the same weights by
their HF names, runs a prefill of 37 tokens (expanded form) and then 6 one-token decode steps
through its latent cache (absorbed form). Every token's output must match HF's row. The float64
twin ``moelab.reference.mla`` is held to the same rows, and HF's own DynamicCache holds the
same latent rows as moelab's cache.
"""

from __future__ import annotations

import pytest

import moelab
from moelab import reference
from tolerances import ATTENTION, assert_close

try:
    import torch
    import transformers

    import _hf_attention as hfa
except ImportError:  # conftest.py fails or skips every test below
    hfa = None

pytestmark = pytest.mark.reference

PREFILL, DECODE_STEPS = 37, 6
_MLA = dict(num_hidden_layers=1, q_lora_rank=24, kv_lora_rank=32, qk_nope_head_dim=16,
            qk_rope_head_dim=8, v_head_dim=12, n_routed_experts=4, num_experts_per_tok=2,
            moe_intermediate_size=16, n_group=1, topk_group=1, first_k_dense_replace=1,
            num_key_value_heads=4, head_dim=8)  # HF rotates head_dim = qk_rope_head_dim channels
_YARN = dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, mscale=1.0, mscale_all_dim=1.0,
             beta_fast=32.0, beta_slow=1.0, original_max_position_embeddings=64)
CASES = {
    "q-lora": dict(),
    "q-proj": dict(q_lora_rank=None),
    "yarn-mscale": dict(rope_parameters=_YARN),
    "yarn-q-proj-halves-bias": dict(rope_parameters=_YARN, q_lora_rank=None,
                                    rope_interleave=False, attention_bias=True),
}


def _family():
    return hfa.Family("deepseek_v3", "deepseek_v3", "DeepseekV3Attention",
                      "DeepseekV3RotaryEmbedding", (0,), {**_MLA})


def _setup(case):
    family = _family()
    family = hfa.Family(family.model_type, family.module, family.attention, family.rotary,
                        family.layers, {**family.overrides, **CASES[case]})
    config = hfa.make_config(family)
    module = hfa.make_module(family, config, 0, seed=3)
    x = hfa.inputs(PREFILL + DECODE_STEPS, seed=7)
    return family, config, module, x, hfa.run_module(family, config, module, x)


@pytest.mark.parametrize("case", list(CASES))
def test_moelab_matches_transformers(case):
    family, config, module, x, y_hf = _setup(case)
    spec = moelab.MLASpec.from_hf(config)
    assert spec.logit_scale == pytest.approx(module.scaling, rel=1e-12)
    layer = moelab.MultiHeadLatentAttention(spec, weights=hfa.weights_of(module))
    y_prefill, y_decode, cache = hfa.run_cached(layer, x, PREFILL, DECODE_STEPS)
    assert cache.nbytes == (PREFILL + DECODE_STEPS) * (32 + 8) * 4
    assert_close(y_prefill, y_hf[:PREFILL], ATTENTION, f"{case} prefill")
    assert_close(y_decode, y_hf[PREFILL:], ATTENTION, f"{case} decode")


@pytest.mark.parametrize("case", list(CASES))
def test_reference_matches_transformers(case):
    _, config, module, x, y_hf = _setup(case)
    y_ref = reference.mla(x, hfa.weights_of(module), moelab.MLASpec.from_hf(config))
    assert_close(y_hf, y_ref, ATTENTION, f"{case}: HF vs reference")


@pytest.mark.parametrize("case", ["q-lora", "yarn-q-proj-halves-bias"])
def test_cache_rows_are_hfs_cached_latents(case):
    """HF's DynamicCache keeps (kv_nope, k_rot) for the layer: moelab's rows are the same."""
    family, config, module, x, _ = _setup(case)
    T = PREFILL
    rotary = getattr(hfa._modeling(family), family.rotary)(config)
    hidden = torch.from_numpy(x[:T])[None]
    cache_hf = transformers.DynamicCache(config=config)
    with torch.no_grad():
        module(hidden_states=hidden, position_embeddings=rotary(hidden, torch.arange(T)[None]),
               attention_mask=hfa._mask(config, 0, T), past_key_values=cache_hf)
    c_hf = cache_hf.layers[0].keys[0, 0].numpy()    # (T, kv_lora_rank)
    kr_hf = cache_hf.layers[0].values[0, 0].numpy()  # (T, qk_rope_head_dim)
    layer = moelab.MultiHeadLatentAttention(moelab.MLASpec.from_hf(config),
                                            weights=hfa.weights_of(module))
    cache = layer.new_cache()
    layer(x[:T], cache)
    rows = cache.read()
    assert_close(rows[:, :32], c_hf, ATTENTION, f"{case} latent")
    assert_close(rows[:, 32:], kr_hf, ATTENTION, f"{case} roped key")
