"""Scaled models: structure kept, runnable, deterministic; build() and the block maths."""

from __future__ import annotations

import math

import numpy as np
import pytest

import moelab
from moelab.model import DecoderBlock, MoEModel, RMSNorm

PRESETS = moelab.list_presets()


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
@pytest.mark.parametrize("name", PRESETS)
def test_scaled_model_runs_and_is_deterministic(name, rng):
    cfg = moelab.preset(name).scaled()
    model = moelab.build(cfg, seed=3)
    x = _x(rng, 2, 8, cfg.hidden_size)                    # (B, S, H)
    y, stats = model(x, return_stats=True)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert len(stats) == cfg.num_hidden_layers
    for kind, st in zip(cfg.ffn_kinds, stats):
        if kind == "dense":
            assert st is None
        else:
            assert isinstance(st, moelab.RoutingStats)
            assert st.topk_ids.shape == (16, cfg.moe.num_experts_per_tok)
            assert int(st.tokens_per_expert.sum()) + st.dropped == 16 * cfg.moe.num_experts_per_tok
    again = moelab.build(cfg, seed=3)(x)
    np.testing.assert_array_equal(y, again)
    np.testing.assert_array_equal(model(x.reshape(16, -1)), y.reshape(16, -1))  # (T, H) too
    other = moelab.build(cfg, seed=4)(x)
    assert not np.array_equal(y, other)


def test_pre_norm_block_maths(rng):
    cfg = moelab.preset("qwen3-30b-a3b").scaled(num_layers=1)
    model = moelab.build(cfg, seed=0)
    block = model.blocks[0]
    x = _x(rng, 5, 64)
    norm = RMSNorm(64, cfg.rms_norm_eps)
    h = x + block.moe(norm(x))                             # (T, H)
    np.testing.assert_allclose(model(x), norm(h), rtol=1e-6, atol=1e-6)


def test_grok_residual_moe_and_sandwich_norms(rng):
    cfg = moelab.preset("grok-2").scaled(num_layers=1)
    model = moelab.build(cfg, seed=0)
    block = model.blocks[0]
    assert block.kind == "moe" and block.mlp is not None and block.post_ffn_norm is not None
    x = _x(rng, 6, 64)
    block.post_ffn_norm.weight[:] = np.linspace(0.5, 1.5, 64, dtype=np.float32)
    norm = RMSNorm(64, cfg.rms_norm_eps)
    hn = norm(x)
    ffn = (block.mlp(hn) + block.moe(hn)) / math.sqrt(2.0)  # (T, H)
    expected = x + block.post_ffn_norm(ffn)
    y, _ = block(x)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_post_norm_block(rng):
    cfg = moelab.preset("olmo2-7b").scaled(num_layers=1)
    block = moelab.build(cfg, seed=0).blocks[0]
    block.ffn_norm.weight[:] = 2.0
    x = _x(rng, 3, 64)
    y, st = block(x)
    assert st is None
    np.testing.assert_allclose(y, x + block.ffn_norm(block.mlp(x)), rtol=1e-6, atol=1e-6)


def test_attention_slot(rng):
    cfg = moelab.preset("mixtral-8x7b").scaled(num_layers=1)
    model = moelab.build(cfg, seed=0)
    x = _x(rng, 4, 64)
    before = model(x)
    block = model.blocks[0]
    assert block.attention is None
    block.attention = lambda h: 0.5 * h                    # (T, H) -> (T, H)
    after = model(x)
    norm = RMSNorm(64, cfg.rms_norm_eps)
    x1 = x + 0.5 * block.attn_norm(x)
    np.testing.assert_allclose(after, norm(x1 + block.moe(norm(x1))), rtol=1e-5, atol=1e-6)
    assert not np.allclose(before, after)
    assert "attention=function" in repr(block)


def test_empty_input_and_benchmark(rng):
    model = moelab.build(moelab.preset("gpt-oss-20b").scaled())
    y, stats = model(np.zeros((0, 64), np.float32), return_stats=True)
    assert y.shape == (0, 64) and all(st.aux_loss == 0.0 for st in stats)
    b = model.benchmark(_x(rng, 32, 64), repeats=2)
    assert b["tokens"] == 32 and b["seconds"] > 0 and b["tokens_per_s"] > 0


def test_repr_and_params():
    cfg = moelab.preset("llama4-maverick").scaled()
    model = moelab.build(cfg)
    assert "[DMDM]" in repr(model) and "llama4-maverick-scaled" in repr(model)
    expected = (sum(cfg.moe.num_params for _ in cfg.moe_layer_indices)
                + cfg.num_dense_layers * 3 * 64 * cfg.intermediate_size
                + cfg.num_hidden_layers * 2 * 64 + 64)
    assert model.num_params == expected
    assert isinstance(model, MoEModel) and isinstance(model.blocks[1], DecoderBlock)


# --- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
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
    with pytest.raises(ValueError, match=r"expected \(T, H=64\) or \(B, S, H=64\), got \(3, 32\)"):
        model(np.zeros((3, 32), np.float32))
    with pytest.raises(ValueError, match="got \\(64,\\)"):
        model(np.zeros(64, np.float32))
    bad = np.zeros((2, 64), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(bad)
    with pytest.raises(TypeError):
        model(np.array([["a"] * 64]))


def test_rms_norm(rng):
    norm = RMSNorm(8, eps=1e-6)
    x = _x(rng, 3, 8)
    expected = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(norm(x), expected, rtol=1e-6)
    assert norm(x).dtype == np.float32 and norm.num_params == 8 and "H=8" in repr(norm)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., H=8\)"):
        norm(_x(rng, 3, 7))
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        RMSNorm(0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        RMSNorm(8, eps=0.0)
    with pytest.raises(TypeError, match="hidden_size must be an int"):
        RMSNorm(8.0)


def test_progress_bar_flag(capsys):
    cfg = moelab.preset("deepseek-v3").scaled(num_layers=4)
    model = moelab.build(cfg)
    x = np.ones((4, cfg.hidden_size), np.float32)                 # (T, H)
    y_on = model(x, progress=True)
    err_on = capsys.readouterr().err
    y_off = model(x, progress=False)
    err_off = capsys.readouterr().err
    y_auto = model(x)                                             # stderr is not a TTY here
    err_auto = capsys.readouterr().err
    assert "/4 [" in err_on and "layer" in err_on and err_off == "" and err_auto == ""
    np.testing.assert_array_equal(y_on, y_off)
    np.testing.assert_array_equal(y_on, y_auto)
    with pytest.raises(TypeError, match="progress"):
        model(x, progress=1)
