"""Scaled models: structure kept, runnable, deterministic; build() (a DecoderModel with random
weights) and the maths of its FFN view (FFNStack)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import moelab
from moelab.ffn_stack import FFNStack
from moelab.model import MAX_POSITIONS

PRESETS = moelab.list_presets()
#: presets build() assembles (Grok-2's whole decoder is refused: test_build_refuses_grok)
BUILT = [n for n in PRESETS if not moelab.preset(n).residual_moe]


def _x(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- scaled() keeps the structure ----------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_scaled_keeps_structure(name):
    full = moelab.preset(name)
    toy = full.scaled()
    assert toy.hidden_size == 64 and toy.name == f"{name}-scaled"
    assert toy.model_type == full.model_type
    L = toy.num_hidden_layers
    assert 4 <= L <= 6
    assert toy.all_layer_types == full.all_layer_types[:L]
    assert set(toy.all_layer_types) == set(full.all_layer_types)  # every kind of layer kept
    assert toy.ffn_kinds == full.ffn_kinds[:L]
    assert toy.norm_placement == full.norm_placement and toy.residual_moe == full.residual_moe
    assert toy.attention.kind == full.attention.kind
    if full.moe is None:
        assert toy.moe is None
        return
    a, b = full.moe, toy.moe
    for f in ("scoring", "norm_topk_prob", "routed_scaling_factor", "correction_bias",
              "router_bias", "router_logit_softcap", "activation", "expert_bias",
              "n_shared_experts", "shared_expert_gate"):
        assert getattr(b, f) == getattr(a, f), f
    assert (b.n_group > 1) == (a.n_group > 1)
    assert b.num_experts <= a.num_experts and b.num_experts_per_tok <= a.num_experts_per_tok
    assert "moe" in toy.ffn_kinds
    if full.first_k_dense_replace:
        assert toy.ffn_kinds[0] == "dense"


def test_scaled_examples():
    ds = moelab.preset("deepseek-v3").scaled()
    assert ds.ffn_kinds == ("dense", "dense", "dense", "moe")
    assert (ds.moe.num_experts, ds.moe.n_group, ds.moe.topk_group) == (16, 8, 4)
    mav = moelab.preset("llama4-maverick").scaled()
    assert mav.ffn_kinds == ("dense", "moe", "dense", "moe")
    nxt = moelab.preset("qwen3-next-80b-a3b").scaled(num_layers=8)
    assert nxt.all_layer_types == ("linear_attention",) * 3 + ("full_attention",) + \
        ("linear_attention",) * 3 + ("full_attention",)
    gem = moelab.preset("gemma3-27b").scaled()
    assert gem.num_hidden_layers == 6 and gem.layer_type(5) == "full_attention"
    g = moelab.preset("grok-2").scaled(hidden_size=32, num_experts=4, num_experts_per_tok=1,
                                       moe_intermediate_size=24, intermediate_size=40,
                                       vocab_size=100, num_attention_heads=2,
                                       capacity_factor=1.5)
    assert (g.hidden_size, g.moe.num_experts, g.moe.num_experts_per_tok) == (32, 4, 1)
    assert (g.moe.moe_intermediate_size, g.intermediate_size, g.vocab_size) == (24, 40, 100)
    assert g.moe.capacity_factor == 1.5 and g.attention.num_attention_heads == 2
    short = moelab.preset("glm-4.5").scaled(num_layers=2)  # 3 dense-first cut to 1
    assert short.ffn_kinds == ("dense", "moe")
    grouped = moelab.preset("deepseek-v3").scaled(num_experts=12, num_experts_per_tok=6)
    assert grouped.moe.n_group == 6 and grouped.moe.topk_group == 4


@pytest.mark.parametrize("kw, exc, match", [
    (dict(hidden_size=0), ValueError, "hidden_size must be >= 1"),
    (dict(hidden_size=64.0), TypeError, "hidden_size must be an int"),
    (dict(num_layers=100), ValueError, "num_layers=100 exceeds the model's 32 layers"),
    (dict(num_experts=4, num_experts_per_tok=5), ValueError, "exceeds num_experts=4"),
    (dict(num_experts_per_tok=True), TypeError, "num_experts_per_tok must be an int"),
    (dict(intermediate_size=-1), ValueError, "intermediate_size must be >= 0"),
])
def test_scaled_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        moelab.preset("mixtral-8x7b").scaled(**kw)


def test_scaled_capacity_needs_moe():
    with pytest.raises(ValueError, match="capacity_factor needs a MoE model"):
        moelab.preset("olmo2-7b").scaled(capacity_factor=1.0)
    with pytest.raises(ValueError, match="no MoE layer"):
        moelab.preset("llama4-maverick").scaled(num_layers=1)


# --- the built model ----------------------------------------------------------------------
def _rms(x, eps, w=1.0):
    return moelab.reference.rms_norm(x.astype(np.float64), np.ones(x.shape[-1]) * w, eps)


@pytest.mark.parametrize("name", BUILT)
def test_scaled_model_runs_and_is_deterministic(name, rng):
    cfg = moelab.preset(name).scaled()
    model = moelab.build(cfg, seed=3)
    assert isinstance(model, moelab.DecoderModel) and model.config is cfg
    ids = rng.integers(0, cfg.vocab_size, 12)                       # (T,)
    routing = {}
    logits = model(ids, routing=routing)                            # (T, V)
    assert logits.shape == (12, cfg.vocab_size) and logits.dtype == np.float32
    assert np.isfinite(logits).all() and logits.std() > 0
    assert sorted(routing) == list(cfg.moe_layer_indices)
    for st in routing.values():
        assert st.topk_ids.shape == (12, cfg.moe.num_experts_per_tok)
    np.testing.assert_array_equal(moelab.build(cfg, seed=3)(ids), logits)
    assert not np.array_equal(moelab.build(cfg, seed=4)(ids), logits)
    # the FFN view: hidden states in, per-layer stats out
    stack = model.ffn_stack()
    x = _x(rng, 2, 8, cfg.hidden_size)                              # (B, S, H)
    y, stats = stack(x, return_stats=True)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert len(stats) == cfg.num_hidden_layers
    for kind, st in zip(cfg.ffn_kinds, stats):
        if kind == "dense":
            assert st is None
        else:
            assert isinstance(st, moelab.RoutingStats)
            assert st.topk_ids.shape == (16, cfg.moe.num_experts_per_tok)
            assert int(st.tokens_per_expert.sum()) + st.dropped == 16 * cfg.moe.num_experts_per_tok
    np.testing.assert_array_equal(stack(x.reshape(16, -1)), y.reshape(16, -1))  # (T, H) too


@pytest.mark.parametrize("name", BUILT)
def test_built_layers_follow_the_config(name):
    """Each layer's mixer is the kind its layer type and attention kind say, the FFN the kind
    ffn_kinds says, the norms those of the placement; cached decode continues the prompt."""
    cfg = moelab.preset(name).scaled()
    model = moelab.build(cfg)
    for i, layer in enumerate(model.layers):
        kind = cfg.layer_type(i)
        if kind == "linear_attention":
            assert isinstance(layer.mixer, moelab.GatedDeltaNet)
        elif cfg.attention.kind == "mla":
            assert isinstance(layer.mixer, moelab.MultiHeadLatentAttention)
            assert layer.mixer.spec.max_position_embeddings == MAX_POSITIONS
        else:
            spec = layer.mixer.spec
            assert isinstance(layer.mixer, moelab.Attention)
            assert spec.mask == {"sliding_attention": "sliding",
                                 "chunked_attention": "chunked"}.get(kind, "causal")
            assert spec.window == {"sliding_attention": cfg.attention.sliding_window,
                                   "chunked_attention": cfg.attention.attention_chunk_size
                                   }.get(kind, 0)
            nope = cfg.no_rope_layers is not None and not cfg.no_rope_layers[i]
            assert (spec.rope is None) == nope
            assert spec.sinks == cfg.attention.attention_sinks
            assert spec.output_gate == cfg.attention.output_gate
            assert (spec.num_attention_heads, spec.num_key_value_heads, spec.head_dim) == (
                cfg.attention.num_attention_heads, cfg.attention.num_key_value_heads,
                cfg.attention.head_dim)
        ffn = moelab.MoELayer if cfg.ffn_kind(i) == "moe" else moelab.GatedMLP
        assert isinstance(layer.ffn, ffn)
        if ffn is moelab.MoELayer:
            assert layer.ffn.config == cfg.moe
        assert len(layer.norms) == cfg.norms_per_layer
    assert (model.lm_head is model.embed) == cfg.tie_word_embeddings
    ids = np.arange(10) % cfg.vocab_size
    full = model(ids)                                              # (T, V)
    cache = model.new_cache()
    model(ids[:7], cache=cache)
    steps = np.concatenate([model(ids[t:t + 1], cache=cache) for t in range(7, 10)])
    np.testing.assert_allclose(steps, full[7:], rtol=1e-4, atol=1e-4)
    assert cache.length == 10


@pytest.mark.parametrize("name", BUILT)
def test_built_params_are_count_params(name):
    """build() allocates exactly the parameters moelab.count_params counts (one home each),
    plus DeepSeek's selection bias (E per MoE layer), a buffer in transformers, not a parameter."""
    cfg = moelab.preset(name).scaled()
    buffers = cfg.num_moe_layers * cfg.moe.num_experts if cfg.is_moe and cfg.moe.correction_bias else 0
    assert moelab.build(cfg).num_params == moelab.count_params(cfg).total + buffers


def test_pre_norm_ffn_maths(rng):
    cfg = moelab.preset("qwen3-30b-a3b").scaled(num_layers=1)
    stack = moelab.build(cfg, seed=0).ffn_stack()
    moe = stack.layers[0].ffn
    x = _x(rng, 5, 64)
    h = x + moe(_rms(x, cfg.rms_norm_eps).astype(np.float32))       # (T, H)
    np.testing.assert_allclose(stack(x), _rms(h, cfg.rms_norm_eps), rtol=1e-5, atol=1e-5)


def test_sandwich_ffn_maths_with_unit_offset_norms(rng):
    """Gemma 3: x + norm_out(FFN(norm_in(x))), norms (1 + w), w = 0 at init."""
    cfg = moelab.preset("gemma3-27b").scaled(num_layers=1)
    model = moelab.build(cfg, seed=0)
    layer = model.layers[0]
    assert set(layer.norms) == {"mixer_in", "mixer_out", "ffn_in", "ffn_out"}
    assert model.norm_offset == 1.0 and not layer.norms["ffn_out"].any()
    layer.norms["ffn_out"][:] = 1.0                                 # (1 + w) = 2
    eps = cfg.rms_norm_eps
    x = _x(rng, 6, 64)
    h = x + _rms(layer.ffn(_rms(x, eps).astype(np.float32)), eps, w=2.0)
    np.testing.assert_allclose(model.ffn_stack()(x), _rms(h, eps), rtol=1e-5, atol=1e-5)


def test_post_norm_ffn_maths(rng):
    cfg = moelab.preset("olmo2-7b").scaled(num_layers=1)
    stack = moelab.build(cfg, seed=0).ffn_stack()
    layer = stack.layers[0]
    assert set(layer.norms) == {"mixer_out", "ffn_out"}
    layer.norms["ffn_out"][:] = 2.0
    x = _x(rng, 3, 64)
    y, stats = stack(x, return_stats=True)
    assert stats == [None]
    h = x + _rms(layer.ffn(x), cfg.rms_norm_eps, w=2.0)
    np.testing.assert_allclose(y, _rms(h, cfg.rms_norm_eps), rtol=1e-5, atol=1e-5)


def test_build_refuses_grok_and_residual_moe_is_grok_ffn(rng):
    cfg = moelab.preset("grok-2").scaled(num_layers=1)
    with pytest.raises(ValueError, match=r"'grok'.*residual MoE.*moelab\.ResidualMoE"):
        moelab.build(cfg)
    with pytest.raises(ValueError, match="residual MoE"):
        moelab.build(moelab.preset("grok-2"))                       # refused before its size
    ffn = moelab.ResidualMoE(cfg, seed=0)
    x = _x(rng, 6, 64)
    y, st = ffn(x, return_stats=True)
    np.testing.assert_allclose(y, (ffn.mlp(x) + ffn.moe(x)) / math.sqrt(2.0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(ffn(x), y)
    assert st.topk_ids.shape == (6, cfg.moe.num_experts_per_tok)
    assert ffn.num_params == cfg.moe.num_params + 3 * 64 * cfg.intermediate_size
    assert "sqrt(2)" in repr(ffn)
    with pytest.raises(ValueError, match="residual_moe=False"):
        moelab.ResidualMoE(moelab.preset("mixtral-8x7b").scaled())
    with pytest.raises(TypeError, match="ModelConfig"):
        moelab.ResidualMoE(cfg.moe)


@pytest.mark.parametrize("flag, value", [("norm_bias", True), ("lm_head_bias", True),
                                         ("mlp_bias", True), ("router_variant", "sparsemixer")])
def test_build_refuses_features_the_decoder_lacks(flag, value):
    cfg = moelab.preset("mixtral-8x7b").scaled().replace(**{flag: value})
    with pytest.raises(ValueError, match=f"model_type 'mixtral': .*{value}"):
        moelab.build(cfg)


def test_empty_input():
    stack = moelab.build(moelab.preset("gpt-oss-20b").scaled()).ffn_stack()
    y, stats = stack(np.zeros((0, 64), np.float32), return_stats=True)
    assert y.shape == (0, 64) and all(st.aux_loss == 0.0 for st in stats)
    assert "FFNStack(DecoderModel(gpt_oss" in repr(stack) and isinstance(stack, FFNStack)


def test_repr_and_params():
    cfg = moelab.preset("llama4-maverick").scaled()
    model = moelab.build(cfg)
    assert "ffn=DMDM" in repr(model) and "llama4_text" in repr(model)
    assert isinstance(model.layers[1].ffn, moelab.MoELayer)
    assert isinstance(model.layers[0].ffn, moelab.GatedMLP)


# --- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILT)
def test_full_size_build_refuses(name):
    with pytest.raises(ValueError, match=r"GiB in float32 .* cfg\.scaled\(\)"):
        moelab.build(moelab.preset(name))


def test_build_errors():
    cfg = moelab.preset("mixtral-8x7b").scaled()
    with pytest.raises(TypeError, match="cfg must be a moelab.ModelConfig"):
        moelab.build("mixtral-8x7b")
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        moelab.build(cfg, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        moelab.build(cfg, seed=1.5)
    with pytest.raises(ValueError, match="limit max_bytes"):
        moelab.build(cfg, max_bytes=1000)


def test_forward_errors():
    model = moelab.build(moelab.preset("qwen3-30b-a3b").scaled())
    stack = model.ffn_stack()
    with pytest.raises(ValueError, match=r"expected \(T, H=64\) or \(B, S, H=64\), got \(3, 32\)"):
        stack(np.zeros((3, 32), np.float32))
    with pytest.raises(ValueError, match="got \\(64,\\)"):
        stack(np.zeros(64, np.float32))
    bad = np.zeros((2, 64), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        stack(bad)
    with pytest.raises(TypeError):
        stack(np.array([["a"] * 64]))
    with pytest.raises(IndexError, match="ids"):
        model(np.array([0, 512]))
    with pytest.raises(ValueError, match="empty"):
        model(np.array([], dtype=np.int64))


def test_progress_bar_flag(capsys):
    cfg = moelab.preset("deepseek-v3").scaled(num_layers=4)
    model = moelab.build(cfg)
    x = np.ones((4, cfg.hidden_size), np.float32)                 # (T, H)
    stack = model.ffn_stack()
    y_on = stack(x, progress=True)
    err_on = capsys.readouterr().err
    y_off = stack(x, progress=False)
    err_off = capsys.readouterr().err
    y_auto = stack(x)                                             # stderr is not a TTY here
    err_auto = capsys.readouterr().err
    assert "/4 [" in err_on and "layer" in err_on and err_off == "" and err_auto == ""
    np.testing.assert_array_equal(y_on, y_off)
    np.testing.assert_array_equal(y_on, y_auto)
    with pytest.raises(TypeError, match="progress"):
        stack(x, progress=1)
    ids = np.arange(6)
    on = model(ids, progress=True)
    err_on = capsys.readouterr().err
    off = model(ids)
    assert "/4 [" in err_on and capsys.readouterr().err == ""
    np.testing.assert_array_equal(on, off)
    with pytest.raises(TypeError, match="progress"):
        model(ids, progress="yes")
