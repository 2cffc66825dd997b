"""What the softmax-attention and MLA layer tests share: the layer families (FAMILIES: specs
of every kind, how a test layer is made) and the checks: cached pieces against one prefill,
bitwise determinism across thread counts, a cache left unchanged by a forward that raises (bad
x, another layer's cache, positions past the maximum), and the peak memory of a long prefill."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import moelab
from tolerances import ATTENTION, BF16_STORAGE, assert_close

#: The hidden size of every test layer.
H = 48


@dataclass(frozen=True)
class MixerFamily:
    """A token-mixer class under test: its spec arguments (``base``, then a ``kinds`` entry on
    top), the name its errors give it (``error_name``), a kind for the one-layer checks
    (``main_kind``), the kinds whose bfloat16 storage is checked, the spec arguments of the
    one-head layer of the peak-memory script (``tiny``, at max_position_embeddings T + 1), spec
    changes that raise (``bad_specs``: (change, match)) and weights that do (``bad_weights``:
    a kind and its (name, value, match, strict) loads)."""
    layer_type: type
    spec_type: type
    error_name: str
    base: dict
    kinds: dict
    main_kind: str
    bf16_kinds: tuple
    tiny: dict
    bad_specs: list
    bad_weights: tuple

    @property
    def name(self) -> str:
        return self.layer_type.__name__

    def make_layer(self, kind: str, seed: int = 0):
        """A layer of ``kind``, its norm weights and sinks away from their init values."""
        layer = self.layer_type(self.spec_type(**{**self.base, **self.kinds[kind]}), seed=seed)
        rng = np.random.default_rng(seed + 100)
        for name, w in layer.weights.items():
            if "norm" in name or name == "sinks":
                w[:] = rng.uniform(0.5, 1.5, w.shape)
        return layer

    def peak_script(self) -> str:
        """A script that prints by how much a prefill of T = argv[1] tokens raised the peak
        memory of its process (prefill_peak_growth runs it)."""
        return _PEAK_SCRIPT.format(layer=self.name, spec=self.spec_type.__name__, tiny=self.tiny)


def inputs(T: int, seed: int = 1) -> np.ndarray:
    """x (T, H) float32, standard normal."""
    return np.random.default_rng(seed).standard_normal((T, H)).astype(np.float32)


ATTENTION_FAMILY = MixerFamily(
    layer_type=moelab.Attention, spec_type=moelab.AttentionSpec, error_name="Attention",
    base=dict(hidden_size=H, num_attention_heads=6, num_key_value_heads=2, head_dim=16,
              max_position_embeddings=512),
    kinds={
        "gqa-causal": dict(),
        "mha-bias-head-norm": dict(num_key_value_heads=6, qkv_bias=True, o_bias=True,
                                   qk_norm="head"),
        "mqa-full-norm": dict(num_key_value_heads=1, qk_norm="full"),
        "sliding-sinks-yarn": dict(mask="sliding", window=11, sinks=True, qkv_bias=True,
                                   rope=dict(rope_type="yarn", rope_theta=150000.0, factor=32.0,
                                             original_max_position_embeddings=64,
                                             truncate=False)),
        "chunked-l2-interleaved": dict(mask="chunked", window=13, qk_norm="l2",
                                       rope_interleaved=True,
                                       rope=dict(rope_type="llama3", rope_theta=5e5, factor=8.0,
                                                 low_freq_factor=1.0, high_freq_factor=4.0,
                                                 original_max_position_embeddings=64)),
        "nope-temperature": dict(rope=None, temperature_tuning=True, floor_scale=8.0,
                                 attn_scale=0.1),
        "gated-partial-unit-norm": dict(output_gate=True, qk_norm="head", norm_unit_offset=True,
                                        rope=dict(rope_type="default", rope_theta=1e7,
                                                  partial_rotary_factor=0.25)),
        "softcap-scaling-linear": dict(softcap=3.0, scaling=0.5,
                                       rope=dict(rope_type="linear", rope_theta=1e6, factor=4.0)),
    },
    main_kind="sliding-sinks-yarn", bf16_kinds=("gqa-causal", "gated-partial-unit-norm"),
    tiny=dict(hidden_size=16, num_attention_heads=1, num_key_value_heads=1, head_dim=16),
    bad_specs=[
        (dict(num_key_value_heads=4), "num_attention_heads"),
        (dict(mask="sliding", window=0), "window"),
        (dict(qk_norm="rms"), "qk_norm"),
        (dict(rope=dict(rope_type="dynamic")), "rope_type"),
        (dict(rope=dict(rope_type="default", rope_theta=-1.0)), "rope_theta"),
        (dict(rope=dict(rope_type="default", partial_rotary_factor=0.01)),
         "partial_rotary_factor"),
        (dict(softcap=-1.0), "attn_logit_softcapping"),
        (dict(head_dim=0), "head_dim"),
    ],
    bad_weights=("mha-bias-head-norm", [
        ("q_norm.weight", np.zeros(17, np.float32),
         r"q_norm.weight: expected \(16,\), got \(17,\)", True),
        ("o_proj.bias", np.full(H, np.nan, np.float32), "o_proj.bias", True),
        ("sinks", np.zeros(6, np.float32), "sinks", False),
    ]))

#: MLA's YaRN rope (DeepSeek-V3's, scaled down).
MLA_YARN = dict(rope_type="yarn", rope_theta=10000.0, factor=40.0, mscale=1.0, mscale_all_dim=1.0,
                beta_fast=32.0, beta_slow=1.0, original_max_position_embeddings=64)

MLA_FAMILY = MixerFamily(
    layer_type=moelab.MultiHeadLatentAttention, spec_type=moelab.MLASpec, error_name="MLA",
    base=dict(hidden_size=H, num_attention_heads=4, q_lora_rank=24, kv_lora_rank=32,
              qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12,
              max_position_embeddings=512),
    kinds={
        "q-lora": dict(),
        "q-proj-bias": dict(q_lora_rank=None, attention_bias=True),
        "yarn-10-heads": dict(num_attention_heads=10, rope=MLA_YARN),
        "halves": dict(rope_interleave=False, rope=dict(rope_type="default", rope_theta=1e4)),
    },
    main_kind="yarn-10-heads", bf16_kinds=("q-lora", "q-proj-bias"),
    tiny=dict(hidden_size=16, num_attention_heads=1, q_lora_rank=None, kv_lora_rank=16,
              qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8),
    bad_specs=[
        (dict(qk_rope_head_dim=7), "qk_rope_head_dim"),
        (dict(kv_lora_rank=0), "kv_lora_rank"),
        (dict(q_lora_rank=0), "q_lora_rank"),
        (dict(rope=dict(rope_type="dynamic")), "rope_type"),
        (dict(rope=dict(rope_type="default", rope_theta=-1.0)), "rope_theta"),
        (dict(v_head_dim=-1), "v_head_dim"),
    ],
    bad_weights=("q-lora", [
        ("kv_b_proj.weight", np.zeros((4 * 28, 33), np.float32),
         r"kv_b_proj.weight: expected \(112, 32\), got \(112, 33\)", True),
        ("kv_a_layernorm.weight", np.full(32, np.nan, np.float32), "kv_a_layernorm.weight", True),
        ("q_proj.weight", np.zeros((96, H), np.float32), "q_proj.weight", False),
    ]))

FAMILIES = {f.name: f for f in (ATTENTION_FAMILY, MLA_FAMILY)}

_PEAK_SCRIPT = r"""
import sys, numpy as np, moelab
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
T = int(sys.argv[1])
layer = moelab.{layer}(moelab.{spec}(**{tiny}, max_position_embeddings=T + 1))
x = np.random.default_rng(0).standard_normal((T, 16)).astype(np.float32)
layer(x[:64])
before = hwm()
layer(x)
print(hwm() - before)
"""


def filled_by_prefill_then_decode(layer, x, prefill: int):
    """A new cache of ``layer`` after a prefill of x[:prefill], then x's other tokens one at a
    time; asserts it starts empty (length and nbytes 0)."""
    cache = layer.new_cache()
    assert cache.nbytes == 0 and cache.length == 0
    layer(x[:prefill], cache)
    for t in range(prefill, len(x)):
        layer(x[t:t + 1], cache)
    return cache


def assert_cached_pieces_equal_one_prefill(layer, x, pieces, what):
    """x (sum(pieces), H) run in pieces through one cache gives one prefill's outputs."""
    y_full = layer(x)
    cache = layer.new_cache()
    out, t0 = [], 0
    for n in pieces:
        assert cache.length == t0
        out.append(layer(x[t0:t0 + n], cache))
        t0 += n
    assert_close(np.concatenate(out), y_full, ATTENTION, what)


def assert_bitwise_equal_across_thread_counts(layer, x, set_threads, every_region_parallel):
    """A prefill of x[:80] then a decode of x[80:81] into one cache gives bitwise the same
    output at 1, 2 and 3 threads, and the attention loops really ran in parallel."""
    results = []
    for threads in (1, 2, 3):
        set_threads(threads)
        cache = layer.new_cache()
        (y, loops) = every_region_parallel(lambda: (layer(x[:80], cache), layer(x[80:81], cache)))
        if threads > 1:
            assert {"attention_prepare", "attention_scores"} <= loops, loops
        results.append(np.concatenate(y))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def snapshot(cache):
    """(length, copies of every array ``cache.read()`` gives)."""
    held = cache.read()
    arrays = held if isinstance(held, tuple) else (held,)
    return cache.length, tuple(a.copy() for a in arrays)


def assert_unchanged(cache, snap):
    length, arrays = snap
    assert cache.length == length
    now = snapshot(cache)[1]
    assert len(now) == len(arrays)
    for a, b in zip(arrays, now):
        np.testing.assert_array_equal(a, b)


def filled_cache(layer, x):
    """A cache of ``layer`` after x, and its snapshot."""
    cache = layer.new_cache()
    layer(x, cache)
    return cache, snapshot(cache)


def assert_cache_of_another_layer_raises(a, b, x, kind):
    """b refuses a's cache (ValueError naming the layer ``kind``), and a refuses a non-cache
    (TypeError); the cache is unchanged. Returns the cache and its snapshot."""
    cache, snap = filled_cache(a, x[:5])
    with pytest.raises(ValueError, match=f"cache: belongs to another {kind} layer"):
        b(x[5:7], cache)
    assert_unchanged(cache, snap)
    with pytest.raises(TypeError, match="cache"):
        a(x[5:7], cache=object())
    return cache, snap


def assert_positions_past_the_maximum_raise(layer, x):
    """For a layer of max_position_embeddings=40 and x (41, H): tokens past position 39
    raise, in a cache (left unchanged) and without one."""
    cache, snap = filled_cache(layer, x[:39])
    with pytest.raises(ValueError, match="max_position_embeddings=40"):
        layer(x[:2], cache)
    assert_unchanged(cache, snap)
    layer(x[:1], cache)  # position 39 is the last one
    with pytest.raises(ValueError, match="max_position_embeddings"):
        layer(x)


def assert_bf16_storage_is_the_float32_layer_on_rounded_weights(layer_type, layer, x, what):
    """A bfloat16 copy of ``layer`` (prefill of x[:60], then the rest through its cache) gives
    the float32 layer's outputs on its rounded weights, and stays close to ``layer`` itself.
    Returns the bfloat16 layer."""
    layer16 = layer_type(layer.spec, weights=layer.weights, weight_dtype="bfloat16")
    assert layer16.weight_dtype == "bfloat16" and "bfloat16" in repr(layer16)
    rounded = layer_type(layer.spec, weights=layer16.weights)  # stored values, float32
    cache = layer16.new_cache()
    y16 = np.concatenate([layer16(x[:60], cache), layer16(x[60:], cache)])
    assert_close(y16, rounded(x), ATTENTION, f"{what}: bf16 vs float32 on rounded weights")
    assert_close(y16, layer(x), BF16_STORAGE, f"{what}: bf16 vs float32")
    return layer16


def bad_x_cases(H):
    """(bad x, exception, match) for x of the wrong shape, non-finite, non-numeric or
    overflowing the layer (hidden size H = 48), with their ids."""
    cases = [
        (np.zeros((3, H + 1), np.float32), ValueError, r"x: expected \(T, H=48\)"),
        (np.zeros(H, np.float32), ValueError, r"x: expected \(T, H=48\)"),
        (np.full((2, H), np.nan, np.float32), ValueError, r"x"),
        (np.full((1, H), np.inf, np.float32), ValueError, r"x"),
        (np.array([["a"] * H]), TypeError, r"x"),
        (np.full((2, H), 3e38, np.float32), ValueError, r"not finite"),
    ]
    return cases, ["width", "1d", "nan", "inf", "strings", "overflow"]


def prefill_peak_growth(script: str, T: int) -> int:
    """Bytes by which ``script`` (run with argument T in a fresh process, 2 threads) says a
    prefill of T tokens raised the process's peak memory (its last printed line)."""
    out = subprocess.run([sys.executable, "-c", script, str(T)], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    return int(out.stdout.strip().splitlines()[-1])
