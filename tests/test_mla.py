"""moelab.MultiHeadLatentAttention on its own: the float64 twin, the absorbed and expanded forms,
prefill vs cached decode, the latent cache's memory (and moelab.costs), specs from config.json
(the checks it shares with Attention, determinism and bad input among them, are
test_token_mixers.py's).

Sequences are longer than the key block (64) and the query tile (32), so block and tile edges
are crossed; head counts above the absorbed form's head block (8) cross that edge too.
"""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import reference
from layer_checks import (MLA_FAMILY, MLA_YARN as YARN, H,
                          assert_cached_pieces_equal_one_prefill, assert_unchanged, filled_cache,
                          filled_by_prefill_then_decode, inputs)
from tolerances import ATTENTION, assert_close

# Determinism, T = 0, bad x, specs and weights, another layer's cache, positions past the
# maximum, bfloat16 storage and peak memory: test_token_mixers.py, over the kinds of layer_checks.MLA_FAMILY.
BASE, KINDS = MLA_FAMILY.base, MLA_FAMILY.kinds
make_layer = MLA_FAMILY.make_layer


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("form", ["expanded", "absorbed"])
def test_matches_reference(kind, form):
    layer = make_layer(kind)
    x = inputs(100)
    assert_close(layer(x, form=form), reference.mla(x, layer.weights, layer.spec), ATTENTION,
                 f"{kind} {form}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_expanded_prefill_after_cached_tokens(kind, set_threads, every_region_parallel):
    """After 7 cached tokens, an expanded prefill of 2 query tiles + 5 tokens (the core scores
    32 queries of a head at once, its keys rebuilt once per head over cache and call) matches the
    float64 twin and gives the same bits at 1, 2 and 3 threads."""
    layer = make_layer(kind)
    x = inputs(7 + 69)
    results = []
    for threads in (1, 2, 3):
        set_threads(threads)
        cache = layer.new_cache()
        layer(x[:7], cache)
        y, loops = every_region_parallel(lambda: layer(x[7:], cache, form="expanded"))
        if threads > 1:
            assert "attention_scores" in loops, loops
        results.append(y)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    y_ref = reference.mla(x, layer.weights, layer.spec)[7:]
    assert_close(results[0], y_ref, ATTENTION, kind)


@pytest.mark.parametrize("kind", list(KINDS))
def test_absorbed_decode_equals_expanded(kind):
    """Decoding through the cache in the absorbed form (no per-head K/V) gives the expanded
    form's outputs, token by token."""
    layer = make_layer(kind)
    x = inputs(80)
    out = {}
    for form in ("expanded", "absorbed"):
        cache = layer.new_cache()
        y = [layer(x[:70], cache, form="expanded")]
        y += [layer(x[t:t + 1], cache, form=form) for t in range(70, 80)]
        out[form] = np.concatenate(y)
    assert_close(out["absorbed"], out["expanded"], ATTENTION, kind)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("pieces", [(1,) * 20, (37, 1, 1, 1, 50, 30), (70, 50)],
                         ids=["decode20", "mixed", "two-prefills"])
def test_cached_pieces_equal_one_prefill(kind, pieces):
    """Token t's output from one prefill equals that from earlier tokens in the cache."""
    assert_cached_pieces_equal_one_prefill(make_layer(kind), inputs(sum(pieces)), pieces,
                                           f"{kind} {pieces}")


def test_the_comparisons_can_fail():
    """Another scale, rope layout or q path moves outputs far beyond ATTENTION."""
    layer = make_layer("yarn-10-heads")
    x = inputs(40)
    y = layer(x)
    for change in (dict(scaling=0.2), dict(rope_interleave=False), dict(rope=dict(YARN, factor=4.0))):
        other = moelab.MultiHeadLatentAttention(layer.spec.replace(**change), weights=layer.weights)
        for form in ("expanded", "absorbed"):
            with pytest.raises(AssertionError):
                assert_close(other(x, form=form), y, ATTENTION, str(change))


def test_yarn_mscale_is_on_the_softmax_scale():
    spec = moelab.MLASpec(**{**BASE, "rope": YARN})
    m = 0.1 * np.log(40.0) + 1.0
    assert spec.logit_scale == pytest.approx(24 ** -0.5 * m * m)
    assert spec.to_core().logit_scale == pytest.approx(spec.logit_scale, rel=1e-7)
    plain = spec.replace(rope=dict(rope_type="default"))
    assert plain.logit_scale == pytest.approx(24 ** -0.5)


def test_cache_holds_the_latent_only():
    layer = make_layer("q-lora")
    x = inputs(50)
    cache = filled_by_prefill_then_decode(layer, x, 30)
    assert cache.length == cache.tokens_held == 50
    assert cache.nbytes == 50 * (32 + 8) * 4
    rows = cache.read()
    assert rows.shape == (50, 40)
    # the rows are kv_a_layernorm(c) and the roped k_r of each token
    W = layer.weights
    kv_a = reference.linear(x, W["kv_a_proj_with_mqa.weight"])
    assert_close(rows[:, :32], reference.rms_norm(kv_a[:, :32], W["kv_a_layernorm.weight"], 1e-6),
                 ATTENTION, "latent")
    cache.reset()
    assert cache.length == 0 and cache.nbytes == 0


def test_repr():
    layer = make_layer("q-lora")
    assert "kv_lora_rank=32" in repr(layer) and "length=0" in repr(layer.new_cache())


# ---- bad input: ValueError / TypeError naming the argument; the cache unchanged ----------------
def test_bad_cache_and_form_raise_and_keep_the_cache():
    """A cache of another layer type is a TypeError, an unknown form a ValueError."""
    layer = make_layer("q-lora")
    cache, rows = filled_cache(layer, inputs(7))
    with pytest.raises(TypeError, match="cache"):
        layer(inputs(2), cache=moelab.Attention(moelab.AttentionSpec(
            hidden_size=H, num_attention_heads=2, num_key_value_heads=2, head_dim=8,
            max_position_embeddings=8)).new_cache())
    with pytest.raises(ValueError, match="form"):
        layer(inputs(2), cache, form="fast")
    assert_unchanged(cache, rows)


# ---- memory: the latent caches of a whole model hold what moelab.costs predicts ---------------
MLA_PRESETS = [name for name in moelab.list_presets()
               if moelab.preset(name).attention.kind == "mla"]


def test_the_mla_presets_are_covered():
    assert {"deepseek-v3", "kimi-k2"} <= set(MLA_PRESETS)


@pytest.mark.parametrize("name", MLA_PRESETS)
@pytest.mark.parametrize("context", [5, 40])
def test_caches_hold_what_costs_predicts(name, context):
    """One layer of the preset's true latent widths (kv_lora_rank, qk_rope_head_dim), narrowed
    elsewhere to stay small, times the layer count: costs' kv_cache_bytes at 4 bytes a value."""
    cfg = moelab.preset(name)
    spec = moelab.MLASpec.from_config(cfg).replace(
        hidden_size=32, num_attention_heads=2, q_lora_rank=16, qk_nope_head_dim=8, v_head_dim=8)
    assert (spec.kv_lora_rank, spec.qk_rope_head_dim) == (cfg.attention.kv_lora_rank,
                                                           cfg.attention.qk_rope_head_dim)
    layer = moelab.MultiHeadLatentAttention(spec)
    cache = layer.new_cache()
    layer(np.random.default_rng(0).standard_normal((context, 32)), cache)
    assert cache.nbytes == context * spec.latent_dim * 4
    assert all(cfg.layer_type(i) == "full_attention" for i in range(cfg.num_hidden_layers))
    c = moelab.costs(cfg, context=context, kv_dtype_bytes=4)
    assert cfg.num_hidden_layers * cache.nbytes == c.kv_cache_bytes


def _config_json(model_type, n_h, max_positions, theta, factor, beta_fast):
    """A 4.x-style config.json: rope_scaling with "type", rope_theta on top."""
    return dict(model_type=model_type, num_hidden_layers=61, hidden_size=7168,
                num_attention_heads=n_h, q_lora_rank=1536, kv_lora_rank=512,
                qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                max_position_embeddings=max_positions, rope_theta=theta,
                rope_scaling=dict(type="yarn", factor=factor, beta_fast=beta_fast, beta_slow=1,
                                  mscale=1.0, mscale_all_dim=1.0,
                                  original_max_position_embeddings=4096))


@pytest.mark.parametrize("preset,config", [
    ("deepseek-v3", _config_json("deepseek_v3", 128, 163840, 10000.0, 40.0, 32)),
    ("kimi-k2", _config_json("kimi_k2", 64, 131072, 50000.0, 32.0, 1)),
], ids=["deepseek-v3", "kimi-k2"])
def test_from_hf_reads_a_config_json_dict(preset, config):
    spec = moelab.MLASpec.from_hf(config, 60)
    assert spec.num_attention_heads == config["num_attention_heads"]
    assert spec.rope["rope_type"] == "yarn" and spec.rope["rope_theta"] == config["rope_theta"]
    assert spec.rope_interleave and spec.latent_dim == 576
    m = 0.1 * np.log(config["rope_scaling"]["factor"]) + 1.0
    assert spec.logit_scale == pytest.approx(192 ** -0.5 * m * m)
    a = moelab.preset(preset).attention
    assert (spec.kv_lora_rank, spec.qk_rope_head_dim) == (a.kv_lora_rank, a.qk_rope_head_dim)
    with pytest.raises(ValueError, match="layer_idx"):
        moelab.MLASpec.from_hf(config, 61)
    with pytest.raises(ValueError, match="not MLA"):
        moelab.MLASpec.from_hf(dict(config, model_type="qwen3"), 0)


def test_bfloat16_storage_keeps_kv_b_proj_float32():
    """With bfloat16 storage the projections run by linear() are bfloat16 (read-only float32
    copies in Python), kv_b_proj (read by the attention kernels) stays float32 (a view)."""
    layer16 = moelab.MultiHeadLatentAttention(make_layer("q-lora").spec, weight_dtype="bfloat16")
    assert not layer16.weights["kv_a_proj_with_mqa.weight"].flags.writeable
    assert layer16.weights["kv_b_proj.weight"].flags.writeable  # float32, a view
