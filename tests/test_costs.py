"""costs() (FLOPs, weight bytes, KV cache per token) and compare() (the comparison table).

Expected values are written out from the conventions in moelab.analysis' docstring, so that a
change of convention or of the structure shows up here.
"""

from __future__ import annotations

import pandas as pd
import pytest

import moelab


def test_dense_matmul_flops_are_twice_the_matrix_params():
    cfg = moelab.preset("mistral-small-3.1-24b")  # no biases, untied head
    pc, c = moelab.count_params(cfg), moelab.costs(cfg)
    assert c.matmul_flops == 2 * (pc.total - pc.embedding - pc.norms)


def test_tied_head_is_still_a_matmul():
    cfg = moelab.preset("smollm3-3b")
    pc, c = moelab.count_params(cfg), moelab.costs(cfg)
    assert pc.head == 0
    assert c.matmul_flops == 2 * (pc.total - pc.norms)  # embedding matrix used as the head


def test_moe_matmul_flops_use_active_experts_only():
    cfg = moelab.preset("mixtral-8x7b")
    pc, c = moelab.count_params(cfg), moelab.costs(cfg)
    assert c.matmul_flops == 2 * (pc.active - pc.embedding - pc.norms)
    # gpt-oss: biases and sinks are parameters but not matmul work
    cfg = moelab.preset("gpt-oss-20b")
    pc, c = moelab.count_params(cfg), moelab.costs(cfg)
    H, I, n_h, n_kv, d, E, k, L = 2880, 2880, 64, 8, 64, 32, 4, 24
    per_layer = (H * n_h * d + 2 * H * n_kv * d + n_h * d * H   # q, k, v, o
                 + k * 3 * H * I + E * H)                        # active experts, router
    assert c.matmul_flops == 2 * (L * per_layer + 201088 * H)


def test_attention_flops_full_sliding_chunked_mla():
    C = 4096
    # Mistral-Small: 40 full GQA layers, 32 heads of 128: QK^T + AV = 4 n_h d C per layer
    assert moelab.costs("mistral-small-3.1-24b", context=C).attention_flops == 40 * 4 * 32 * 128 * C
    # gpt-oss-120b: 18 full + 18 sliding (window 128) layers, 64 heads of 64
    assert moelab.costs("gpt-oss-120b", context=C).attention_flops == \
        18 * 4 * 64 * 64 * C + 18 * 4 * 64 * 64 * 128
    # Llama 4: 12 NoPE full layers + 36 chunked layers (chunk 8192) at a longer context
    C2 = 16384
    assert moelab.costs("llama4-scout", context=C2).attention_flops == \
        12 * 4 * 40 * 128 * C2 + 36 * 4 * 40 * 128 * 8192
    # DeepSeek-V3 MLA (not absorbed): QK over 128 + 64 dims, AV over 128, 128 heads
    assert moelab.costs("deepseek-v3", context=C).attention_flops == 61 * 2 * 128 * (192 + 128) * C


def test_gated_deltanet_cost_is_independent_of_context():
    a = moelab.costs("qwen3-next-80b-a3b", context=1024)
    b = moelab.costs("qwen3-next-80b-a3b", context=8192)
    full = 12 * 4 * 16 * 256                         # 12 gated-attention layers per key
    assert b.attention_flops - a.attention_flops == full * (8192 - 1024)
    conv_dim = 2 * 16 * 128 + 32 * 128
    state = 36 * (32 * 128 * 128 + conv_dim * 3) * 2  # recurrent state + conv rows, bf16
    assert a.linear_state_bytes == b.linear_state_bytes == state
    assert a.kv_bytes_per_token_unbounded == 12 * 2 * 2 * 256 * 2
    assert b.kv_cache_bytes == state + 12 * 2 * 2 * 256 * 2 * 8192


def test_kv_cache_kinds():
    C = 4096
    dsv3 = moelab.costs("deepseek-v3", context=C)
    assert dsv3.kv_bytes_per_token == dsv3.kv_bytes_per_token_unbounded == 61 * (512 + 64) * 2
    mix = moelab.costs("mixtral-8x7b", context=C)
    assert mix.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2
    oss = moelab.costs("gpt-oss-120b", context=C)
    per = 2 * 8 * 64 * 2
    assert oss.kv_cache_bytes == 18 * per * C + 18 * per * 128
    assert oss.kv_bytes_per_token_unbounded == 18 * per
    # Gemma 3: 52 local layers (window 1024) stop growing past the window
    g1, g2 = moelab.costs("gemma3-27b", context=1024), moelab.costs("gemma3-27b", context=8192)
    per = 2 * 16 * 128 * 2
    assert g1.kv_bytes_per_token == 62 * per
    assert g2.kv_cache_bytes == 10 * per * 8192 + 52 * per * 1024
    assert moelab.costs("deepseek-v3", kv_dtype_bytes=1).kv_bytes_per_token == 61 * 576


@pytest.mark.parametrize("name", moelab.list_presets())
def test_cost_invariants(name):
    pc = moelab.count_params(name)
    c = moelab.costs(name, context=2048)
    read = pc.active_no_embedding + pc.vocab_matrix
    assert c.weight_bytes == {"bf16": 2.0 * read, "fp8": 1.0 * read, "fp4": 0.5 * read}
    assert c.flops_per_token == c.matmul_flops + c.attention_flops
    assert 0 < c.matmul_flops <= 2 * (pc.active + pc.vocab_matrix)
    assert c.kv_bytes_per_token == c.kv_cache_bytes / 2048
    longer = moelab.costs(name, context=4096)
    assert longer.attention_flops > c.attention_flops
    assert longer.matmul_flops == c.matmul_flops


@pytest.mark.parametrize("kw, exc, match", [
    (dict(context=0), ValueError, "context must be >= 1"),
    (dict(context=True), TypeError, "context must be an int"),
    (dict(context="4k"), TypeError, "context must be an int"),
    (dict(kv_dtype_bytes=0), ValueError, "kv_dtype_bytes must be >= 1"),
])
def test_costs_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        moelab.costs("mixtral-8x7b", **kw)


def test_costs_bad_model():
    with pytest.raises(TypeError, match="ModelConfig or a preset name"):
        moelab.costs(None)
    with pytest.raises(ValueError, match="unknown preset"):
        moelab.costs("gpt-17")


# --- compare ------------------------------------------------------------------------------
def test_compare_all_presets():
    names = moelab.list_presets()
    df = moelab.compare(names)
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == names
    for col in ("total", "active", "active_share", "experts", "top_k", "shared_experts",
                "dense_first_layers", "attention", "kv_bytes_per_token", "flops_per_token"):
        assert col in df.columns
    for name in names:
        pc, c = moelab.count_params(name), moelab.costs(name)
        row = df.loc[name]
        assert row["total"] == pc.total and row["active"] == pc.active
        assert row["active_share"] == pytest.approx(pc.active / pc.total)
        assert row["kv_bytes_per_token"] == c.kv_bytes_per_token
        assert row["flops_per_token"] == c.flops_per_token
    ds = df.loc["deepseek-v3"]
    assert (ds["experts"], ds["top_k"], ds["shared_experts"], ds["dense_first_layers"]) == (
        256, 8, 1, 3)
    assert ds["attention"].startswith("MLA")
    assert df.loc["olmo2-7b", "experts"] == 0 and df.loc["olmo2-7b", "active_share"] == 1.0
    assert "GatedDeltaNet" in df.loc["qwen3-next-80b-a3b", "attention"]
    assert "SWA128" in df.loc["gpt-oss-120b", "attention"]


def test_compare_accepts_configs_names_and_single_items():
    toy = moelab.preset("grok-2").scaled()
    df = moelab.compare(["mixtral-8x7b", toy], context=1024)
    assert list(df.index) == ["mixtral-8x7b", "grok-2-scaled"]
    assert df.loc["grok-2-scaled", "total"] == moelab.count_params(toy).total
    assert len(moelab.compare("qwen3-30b-a3b")) == 1
    assert len(moelab.compare(toy)) == 1
    assert moelab.compare(["qwen3-30b-a3b"], context=100).loc[
        "qwen3-30b-a3b", "flops_per_token"] == moelab.costs("qwen3-30b-a3b", 100).flops_per_token


def test_compare_errors():
    with pytest.raises(ValueError, match="at least one model"):
        moelab.compare([])
    with pytest.raises(TypeError, match="iterable"):
        moelab.compare(5)
    with pytest.raises(TypeError, match="ModelConfig or a preset name"):
        moelab.compare([5])
    with pytest.raises(ValueError, match="unknown preset 'x'"):
        moelab.compare(["x"])
