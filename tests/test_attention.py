"""moelab.Attention on its own: the float64 twin, prefill vs cached decode, the KV cache's
memory and ring buffer, Python threads sharing a layer, specs from config.json (the checks it
shares with MLA, determinism and bad input among them, are test_token_mixers.py's).

The kinds cover every switch of the op; sequences are longer than the key block (64 tokens)
and than the sliding window / chunk, so block boundaries, ring wrap-around and chunk edges are
all crossed.
"""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import reference
from layer_checks import (ATTENTION_FAMILY, assert_cached_pieces_equal_one_prefill,
                          filled_by_prefill_then_decode, inputs)
from tolerances import ATTENTION, assert_close

# Determinism, T = 0, bad x, specs and weights, another layer's cache, positions past the
# maximum, bfloat16 storage and peak memory: test_token_mixers.py, over the kinds of layer_checks.ATTENTION_FAMILY.
BASE, KINDS = ATTENTION_FAMILY.base, ATTENTION_FAMILY.kinds
make_layer = ATTENTION_FAMILY.make_layer


@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_reference(kind):
    layer = make_layer(kind)
    x = inputs(150)
    assert_close(layer(x), reference.attention(x, layer.weights, layer.spec), ATTENTION, kind)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("pieces", [(150,), (1,) * 30, (37, 1, 1, 1, 80, 30), (70, 80)],
                         ids=["prefill", "decode30", "mixed", "two-prefills"])
def test_cached_pieces_equal_one_prefill(kind, pieces):
    """Token t's output from one prefill equals that from earlier tokens in the cache."""
    assert_cached_pieces_equal_one_prefill(make_layer(kind), inputs(sum(pieces)), pieces,
                                           f"{kind} {pieces}")


#: Query rows of one prefill task in the core (attention.cpp kQueryRows): a tile of
#: max(1, 64 // r) tokens of one KV group's r heads.
QUERY_ROWS = 64


@pytest.mark.parametrize("kind", ["gqa-causal", "mqa-full-norm", "sliding-sinks-yarn",
                                  "chunked-l2-interleaved"])
def test_a_prefill_that_is_not_a_multiple_of_the_query_tile(kind, set_threads,
                                                            every_region_parallel):
    """After 7 cached tokens, a prefill of 2 tiles + 5 tokens (the last tile short, its tokens
    straddling a key block and the window / chunk edges) matches the float64 twin and gives the
    same bits at 1, 2 and 3 threads."""
    layer = make_layer(kind)
    spec = layer.spec
    tile = max(1, QUERY_ROWS // (spec.num_attention_heads // spec.num_key_value_heads))
    T = 2 * tile + 5
    x = inputs(7 + T)
    results = []
    for threads in (1, 2, 3):
        set_threads(threads)
        cache = layer.new_cache()
        layer(x[:7], cache)
        y, loops = every_region_parallel(layer, x[7:], cache)
        if threads > 1:
            assert "attention_scores" in loops, loops
        results.append(y)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    y_ref = reference.attention(x, layer.weights, spec)[7:]
    assert_close(results[0], y_ref, ATTENTION, f"{kind} T={T}")


def test_the_comparisons_can_fail():
    """A different mask, window, sink or norm weight moves outputs far beyond ATTENTION."""
    x = inputs(40)
    layer = make_layer("sliding-sinks-yarn")
    y = layer(x)
    for change in (dict(window=12), dict(mask="causal", window=0), dict(sinks=False)):
        other = moelab.Attention(layer.spec.replace(**change))
        other.load_weights({k: v for k, v in layer.weights.items()
                            if k in other.weights}, strict=True)
        with pytest.raises(AssertionError):
            assert_close(other(x), y, ATTENTION, str(change))


@pytest.mark.parametrize("kind", ["gqa-causal", "sliding-sinks-yarn", "chunked-l2-interleaved"])
def test_cache_memory_and_ring(kind):
    layer = make_layer(kind)
    spec = layer.spec
    per_token = 2 * spec.num_key_value_heads * spec.head_dim * 4
    x = inputs(100)
    cache = filled_by_prefill_then_decode(layer, x, 30)
    held = 100 if spec.mask == "causal" else spec.window
    assert cache.length == 100 and cache.tokens_held == held
    assert cache.nbytes == held * per_token
    assert cache.window == (None if spec.mask == "causal" else spec.window)
    keys, values = cache.read()
    assert keys.shape == values.shape == (held, spec.num_key_value_heads * spec.head_dim)
    # the values held are v_proj of the last `held` tokens, oldest first
    v_ref = reference.linear(x[100 - held:], layer.weights["v_proj.weight"],
                             layer.weights.get("v_proj.bias"))
    assert_close(values, v_ref, ATTENTION, "cached values")
    cache.reset()
    assert cache.length == 0 and cache.nbytes == 0


def test_repr():
    layer = make_layer("gqa-causal")
    assert "n_h=6" in repr(layer) and "n_kv=2" in repr(layer)
    assert "length=0" in repr(layer.new_cache())


# ---- memory: the caches of a whole model hold what moelab.costs predicts ----------------------
GQA_PRESETS = [name for name in moelab.list_presets()
               if moelab.preset(name).attention.kind == "gqa"]


@pytest.mark.parametrize("name", GQA_PRESETS)
@pytest.mark.parametrize("context", [5, 40])
def test_caches_hold_what_costs_predicts(name, context):
    """Per family (sliding, chunked and linear-attention layers included): the KV caches of
    every softmax-attention layer after `context` tokens hold costs' kv_cache_bytes at 4 bytes
    per value, less the DeltaNet states (their own objects)."""
    cfg = moelab.preset(name).scaled(hidden_size=32)
    a = cfg.attention
    # windows and chunks below the context, so that ring buffers are at their limit
    cfg = cfg.replace(attention=a.replace(
        sliding_window=None if a.sliding_window is None else 16,
        attention_chunk_size=None if a.attention_chunk_size is None else 12))
    total = 0
    for i in range(cfg.num_hidden_layers):
        if cfg.layer_type(i) == "linear_attention":
            continue
        layer = moelab.Attention(moelab.AttentionSpec.from_config(cfg, i), seed=i)
        cache = layer.new_cache()
        layer(np.random.default_rng(i).standard_normal((context, cfg.hidden_size)), cache)
        total += cache.nbytes
    c = moelab.costs(cfg, context=context, kv_dtype_bytes=4)
    assert total == c.kv_cache_bytes - c.linear_state_bytes


def test_python_threads_share_one_layer(restore_threads):
    """Two Python threads run one layer at once (the GIL is released), each with its own cache:
    each gets exactly what a serial run gives."""
    import threading
    layer = make_layer("sliding-sinks-yarn")
    xs = [inputs(60, seed=s) for s in (1, 2)]

    def run(x):
        cache = layer.new_cache()
        return np.concatenate([layer(x[:50], cache)] + [layer(x[t:t + 1], cache)
                                                        for t in range(50, 60)])

    expected = [run(x) for x in xs]
    got = [None, None]

    def worker(i):
        for _ in range(5):
            got[i] = run(xs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_from_hf_reads_a_config_json_dict():
    """A config.json in the 4.x style (rope_theta and rope_scaling at the top level): gpt-oss's
    keys give an alternating sliding / full layer pair with sinks and YaRN."""
    config = {"model_type": "gpt_oss", "hidden_size": 64, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2,
              "attention_bias": True, "sliding_window": 8, "max_position_embeddings": 512,
              "layer_types": ["sliding_attention", "full_attention"], "rope_theta": 150000,
              "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                               "beta_slow": 1.0, "truncate": False,
                               "original_max_position_embeddings": 64}}
    s0 = moelab.AttentionSpec.from_hf(config, 0)
    s1 = moelab.AttentionSpec.from_hf(config, 1)
    assert (s0.mask, s0.window, s1.mask) == ("sliding", 8, "causal")
    assert s0.sinks and s0.qkv_bias and s0.o_bias
    assert s0.rope["rope_type"] == "yarn" and s0.rope["rope_theta"] == 150000
    assert s0.rope_spec().attention_scaling() == pytest.approx(0.1 * np.log(32.0) + 1.0)
    with pytest.raises(ValueError, match="layer_idx"):
        moelab.AttentionSpec.from_hf(config, 2)
    with pytest.raises(ValueError, match="MLA"):
        moelab.AttentionSpec.from_hf({**config, "model_type": "deepseek_v3"}, 0)
