"""moelab.GatedDeltaNet (C++ core) against its float64 twin, and its state: prefill, decode and
continued prefill, chunked = recurrent, constant state size, determinism across thread counts,
two Python threads, and errors that leave the state as it was."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import moelab
from moelab import _core, reference
from moelab.analysis import attention_params
from moelab.deltanet import CHUNK_SIZE, DeltaNetState, GatedDeltaNet
from tolerances import DELTANET, assert_close


def config(H: int = 32, n_k: int = 2, n_v: int = 6, d_k: int = 8, d_v: int = 12,
           K: int = 4) -> moelab.ModelConfig:
    """Qwen3-Next's structure (layers 0-2 linear attention) at toy dims, all different."""
    cfg = moelab.preset("qwen3-next-80b-a3b").scaled(hidden_size=H)
    return cfg.replace(attention=cfg.attention.replace(
        linear_num_key_heads=n_k, linear_num_value_heads=n_v, linear_key_head_dim=d_k,
        linear_value_head_dim=d_v, linear_conv_kernel_dim=K))


def make_layer(cfg: moelab.ModelConfig, layer_idx: int = 0, seed: int = 0,
               weight_dtype: str = "float32") -> GatedDeltaNet:
    """Random weights, with decays e^g from ~0.99 (the state spans several chunks) to ~0.6."""
    layer = GatedDeltaNet(cfg, layer_idx, seed=seed, weight_dtype=weight_dtype)
    a = cfg.attention
    rng = np.random.default_rng(seed)
    layer.load_weights({
        "A_log": np.log(np.linspace(0.02, 2.0, a.linear_num_value_heads)),
        "dt_bias": rng.uniform(-2.5, -1.5, a.linear_num_value_heads),
        "norm.weight": rng.uniform(0.5, 1.5, a.linear_value_head_dim)}, strict=False)
    return layer


def inputs(T: int, H: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((T, H)).astype(np.float32)


def run_reference(layer: GatedDeltaNet, segments, H: int, seed: int = 0):
    """The same calls through the layer (one state) and through the twin: outputs, states."""
    state = layer.new_state()
    ref_state = None
    for i, n in enumerate(segments):
        x = inputs(n, H, seed + i)
        y = layer(x, state)
        y_ref, ref_state = reference.gated_deltanet(x, layer.weights, layer.config, ref_state)
        yield i, n, y, y_ref, state, ref_state


# --------------------------------------------------------------------------------------------
# against the float64 twin
# --------------------------------------------------------------------------------------------
PREFILLS = (0, 1, 2, 7, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 150, 4 * CHUNK_SIZE + 30)


@pytest.mark.parametrize("T", PREFILLS, ids=[f"T{t}" for t in PREFILLS])
def test_prefill_decode_prefill_matches_reference(T):
    """A prefill of T (several blocks at the largest T), 6 decode steps, a prefill of 9."""
    cfg = config()
    layer = make_layer(cfg, seed=T)
    for i, n, y, y_ref, state, ref_state in run_reference(layer, [T] + [1] * 6 + [9], 32,
                                                           seed=10 * T):
        assert y.shape == (n, 32) and y.dtype == np.float32
        assert_close(y, y_ref, DELTANET, f"call {i} (n={n})")
    assert_close(state.recurrent_state(), ref_state["recurrent"], DELTANET, "recurrent state")
    assert_close(state.conv_state(), ref_state["conv"], DELTANET, "conv state")
    assert state.length == T + 6 + 9


@pytest.mark.parametrize("dims", [dict(n_k=1, n_v=1, d_k=4, d_v=4, K=1),
                                  dict(n_k=3, n_v=3, d_k=16, d_v=5, K=2),
                                  dict(n_k=1, n_v=4, d_k=12, d_v=8, K=6)],
                         ids=["one-head-K1", "nk=nv", "r4-K6"])
def test_other_dims_match_reference(dims):
    cfg = config(H=24, **dims)
    layer = make_layer(cfg, seed=1)
    for i, n, y, y_ref, state, ref_state in run_reference(layer, [70, 1, 3], 24):
        assert_close(y, y_ref, DELTANET, f"{dims} call {i}")
    assert_close(state.recurrent_state(), ref_state["recurrent"], DELTANET, "recurrent state")


ISA_ORDER = ["portable", "avx2", "avx512"]
#: The kernel paths this CPU can run (the portable one always).
ISAS = ISA_ORDER[: ISA_ORDER.index(_core.build_info()["isa_detected"]) + 1]


@pytest.fixture
def isa():
    """Yields a setter of the kernels' ISA and restores the one that was active."""
    before = _core.get_isa()
    yield _core.set_isa
    _core.set_isa(before)


@pytest.mark.parametrize("weight_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
def test_every_isa_matches_reference(isa, path, weight_dtype):
    """Each instruction-set path of the projections and the delta rule (token panels at 16+
    tokens, dot kernels below; register tiles of 16, 8 or 4 lanes, d_v = 20 leaving a remainder
    for the scalar columns)."""
    isa(path)
    cfg = config(H=40, n_k=2, n_v=4, d_k=16, d_v=20)
    layer = make_layer(cfg, seed=6, weight_dtype=weight_dtype)
    for i, n, y, y_ref, state, ref_state in run_reference(layer, [100, 1, 20], 40):
        assert_close(y, y_ref, DELTANET, f"{path}/{weight_dtype} call {i}")
    assert_close(state.recurrent_state(), ref_state["recurrent"], DELTANET, "recurrent state")


@pytest.mark.parametrize("decay", ["slow", "strong"])
def test_extreme_decays_match_reference(decay):
    """e^g ~ 0.9999 (the state remembers every chunk) and e^g ~ e^-250 (the state is wiped by
    every token: the chunked form's decay factors underflow and are flushed to 0)."""
    cfg = config()
    layer = make_layer(cfg, seed=9)
    a_log, dt_bias = (np.log(1e-3), -5.0) if decay == "slow" else (np.log(50.0), 5.0)
    layer.load_weights({"A_log": np.full(6, a_log), "dt_bias": np.full(6, dt_bias)},
                       strict=False)
    for i, n, y, y_ref, state, ref_state in run_reference(layer, [150, 1, 7], 32):
        assert_close(y, y_ref, DELTANET, f"{decay} call {i}")
    assert_close(state.recurrent_state(), ref_state["recurrent"], DELTANET, "recurrent state")


def test_without_state_each_call_is_a_fresh_sequence():
    cfg = config()
    layer = make_layer(cfg)
    x = inputs(40, 32, 3)
    y_ref, _ = reference.gated_deltanet(x, layer.weights, cfg)
    assert_close(layer(x), y_ref, DELTANET, "stateless")
    np.testing.assert_array_equal(layer(x), layer(x, layer.new_state()))


def test_bfloat16_weights_match_reference_on_the_rounded_weights():
    cfg = config()
    layer = make_layer(cfg, seed=4, weight_dtype="bfloat16")
    w = layer.weights
    stored = w["in_proj_qkvz.weight"]
    assert not stored.flags.writeable                                 # a copy of the bf16 values
    bits = stored.view(np.uint32)
    assert np.all(bits & 0xFFFF == 0)                                 # bf16-representable
    for i, n, y, y_ref, _, _ in run_reference(layer, [100, 1, 5], 32):
        assert_close(y, y_ref, DELTANET, f"bf16 call {i}")


# --------------------------------------------------------------------------------------------
# chunked prefill = recurrent steps
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [2, CHUNK_SIZE + 9, 2 * CHUNK_SIZE + 22])
def test_chunked_prefill_equals_step_by_step(T):
    """One call of T tokens (the chunked form) vs T one-token calls (the recurrent step)."""
    cfg = config()
    layer = make_layer(cfg, seed=7)
    x = inputs(T, 32, 8)
    chunked = layer.new_state()
    y_chunked = layer(x, chunked)
    steps = layer.new_state()
    y_steps = np.vstack([layer(x[t:t + 1], steps) for t in range(T)])
    assert_close(y_chunked, y_steps, DELTANET, "outputs")
    assert_close(chunked.recurrent_state(), steps.recurrent_state(), DELTANET, "recurrent")
    assert_close(chunked.conv_state(), steps.conv_state(), DELTANET, "conv")
    assert chunked.length == steps.length == T


# --------------------------------------------------------------------------------------------
# the state
# --------------------------------------------------------------------------------------------
def test_state_size_is_constant_and_what_costs_counts():
    cfg = config()
    layer = make_layer(cfg)
    short, long = layer.new_state(), layer.new_state()
    layer(inputs(10, 32, 0), short)
    layer(inputs(10_000, 32, 1), long)
    assert short.length == 10 and long.length == 10_000
    assert short.nbytes == long.nbytes
    a = cfg.attention
    n_v, d_k, d_v, K = (a.linear_num_value_heads, a.linear_key_head_dim,
                        a.linear_value_head_dim, a.linear_conv_kernel_dim)
    conv_dim = 2 * a.linear_num_key_heads * d_k + n_v * d_v
    assert short.nbytes == 4 * (n_v * d_k * d_v + (K - 1) * conv_dim)
    n_linear = cfg.all_layer_types.count("linear_attention")
    per_layer = moelab.costs(cfg, kv_dtype_bytes=4).linear_state_bytes / n_linear  # float32
    assert short.nbytes == per_layer
    assert np.all(np.isfinite(long.recurrent_state()))


def test_state_copies_reset_and_repr():
    cfg = config()
    layer = make_layer(cfg, layer_idx=1)
    state = layer.new_state()
    assert isinstance(state, DeltaNetState) and state.layer_idx == 1 and state.length == 0
    assert not np.any(state.recurrent_state()) and not np.any(state.conv_state())
    layer(inputs(5, 32, 0), state)
    snapshot = state.recurrent_state()
    snapshot[...] = 0.0                                     # a copy: the state is unaffected
    assert np.any(state.recurrent_state())
    assert "length=5" in repr(state) and "layer_idx=1" in repr(state)
    state.reset()
    assert state.length == 0 and not np.any(state.recurrent_state())
    assert not np.any(state.conv_state())
    np.testing.assert_array_equal(layer(inputs(5, 32, 0), state), layer(inputs(5, 32, 0)))


def test_layer_surface():
    cfg = config()
    layer = make_layer(cfg, layer_idx=2)
    text = repr(layer)
    for part in ("layer_idx=2", "H=32", "n_k=2", "n_v=6", "d_k=8", "d_v=12", "K=4"):
        assert part in text, text
    matrix, other = attention_params(cfg, "linear_attention")
    assert layer.num_params == matrix + other
    shapes = {name: w.shape for name, w in layer.weights.items()}
    assert shapes == {"in_proj_qkvz.weight": (2 * 16 + 2 * 72, 32), "in_proj_ba.weight": (12, 32),
                      "conv1d.weight": (16 + 16 + 72, 1, 4), "dt_bias": (6,), "A_log": (6,),
                      "norm.weight": (12,), "out_proj.weight": (32, 72)}
    fresh = GatedDeltaNet(cfg, 0, seed=3)
    np.testing.assert_array_equal(fresh.weights["norm.weight"], 1.0)   # HF's init
    np.testing.assert_array_equal(GatedDeltaNet(cfg, 0, seed=3).weights["in_proj_qkvz.weight"],
                                  fresh.weights["in_proj_qkvz.weight"])  # deterministic


def test_weights_are_views():
    cfg = config()
    layer = make_layer(cfg)
    x = inputs(9, 32, 0)
    y0 = layer(x)
    layer.weights["out_proj.weight"][...] *= 2.0
    np.testing.assert_array_equal(layer(x), 2.0 * y0)       # exact: a power of two


# --------------------------------------------------------------------------------------------
# determinism and threads
# --------------------------------------------------------------------------------------------
def test_bitwise_equal_for_any_thread_count(set_threads):
    """Shapes above the parallel threshold (2^20 operations) in the projections and the heads:
    T = 300 spans two blocks; then one decode step and a short prefill."""
    cfg = config(H=128, n_k=2, n_v=4, d_k=32, d_v=32)
    layer = make_layer(cfg, seed=2)
    x = [inputs(n, 128, 50 + n) for n in (300, 1, 20)]
    results = []
    for threads in (1, 2, 3):
        set_threads(threads)
        state = layer.new_state()
        ys = [layer(xi, state) for xi in x]
        results.append((ys, state.recurrent_state(), state.conv_state()))
    for threads, (ys, rec, conv) in zip((2, 3), results[1:]):
        for y, y1 in zip(ys, results[0][0]):
            np.testing.assert_array_equal(y, y1, err_msg=f"{threads} threads")
        np.testing.assert_array_equal(rec, results[0][1])
        np.testing.assert_array_equal(conv, results[0][2])


def test_two_python_threads_share_a_layer():
    cfg = config(H=64, d_k=16, d_v=16)
    layer = make_layer(cfg, seed=5)
    xs = [inputs(130, 64, s) for s in (0, 1)]
    expected = []
    for x in xs:
        state = layer.new_state()
        expected.append([layer(x, state), layer(x[:1], state)])
    got = [None, None]

    def run(i):
        out = []
        for _ in range(4):
            state = layer.new_state()
            out = [layer(xs[i], state), layer(xs[i][:1], state)]
        got[i] = out

    workers = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for i in (0, 1):
        for a, b in zip(got[i], expected[i]):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
def _snapshot(state: DeltaNetState):
    return state.length, state.recurrent_state(), state.conv_state()


def _assert_unchanged(state: DeltaNetState, snap) -> None:
    length, rec, conv = snap
    assert state.length == length
    np.testing.assert_array_equal(state.recurrent_state(), rec)
    np.testing.assert_array_equal(state.conv_state(), conv)


def _layer_with_history():
    """A layer, a state that has seen 20 tokens, and a snapshot of that state."""
    layer = make_layer(config())
    state = layer.new_state()
    layer(inputs(20, 32, 0), state)
    return layer, state, _snapshot(state)


def test_bad_inputs_raise_and_leave_the_state_unchanged():
    layer, state, snap = _layer_with_history()
    nan = inputs(4, 32, 1)
    nan[2, 5] = np.nan
    inf = inputs(4, 32, 1)
    inf[0, 0] = -np.inf
    cases = [(np.zeros((4, 31), np.float32), ValueError, r"x: expected \(T, H=32\)"),
             (np.zeros((2, 4, 32), np.float32), ValueError, r"x: expected \(T, H=32\)"),
             (np.zeros(32, np.float32), ValueError, r"x: expected"),
             (nan, ValueError, "x: contains NaN or Inf"),
             (inf, ValueError, "x: contains NaN or Inf"),
             (np.array([["a"] * 32]), TypeError, "x"),
             (np.zeros((2, 32), complex), TypeError, "x")]
    for x, exc, match in cases:
        with pytest.raises(exc, match=match):
            layer(x, state)
        _assert_unchanged(state, snap)


@pytest.mark.parametrize("where", ["output", "state"])
def test_float32_overflow_raises_and_leaves_the_state_unchanged(where):
    """Finite inputs whose result overflows float32: in out_proj (the state stays finite), or
    in the in_proj (NaN reaches the state through the norms)."""
    layer, state, snap = _layer_with_history()
    x = inputs(3, 32, 1)
    if where == "output":
        layer.weights["out_proj.weight"][...] *= 1e30
        x *= 1e15
    else:
        layer.weights["in_proj_qkvz.weight"][...] *= 1e30
        x *= 1e15
    for T in (3, 1):  # the chunked form and the recurrent step
        with pytest.raises(ValueError, match="x: the result is not finite"):
            layer(x[:T], state)
        _assert_unchanged(state, snap)


def test_a_state_of_another_layer_is_refused():
    cfg = config()
    layer0, layer1 = make_layer(cfg, 0), make_layer(cfg, 1)
    twin = make_layer(cfg, 0)                          # same config and index, another model
    state = layer0.new_state()
    layer0(inputs(3, 32, 0), state)
    snap = _snapshot(state)
    for other in (layer1, twin):
        with pytest.raises(ValueError, match="state: belongs to another GatedDeltaNet layer"):
            other(inputs(3, 32, 1), state)
        _assert_unchanged(state, snap)
    with pytest.raises(TypeError, match="state: expected a moelab.DeltaNetState"):
        layer0(inputs(3, 32, 1), state._core)
    with pytest.raises(TypeError, match="state: expected a moelab.DeltaNetState"):
        layer0(inputs(3, 32, 1), {"recurrent": 0})


def test_bad_construction():
    cfg = config()
    with pytest.raises(TypeError, match="config must be a moelab.ModelConfig"):
        GatedDeltaNet(cfg.attention, 0)
    with pytest.raises(ValueError, match="layer 3 .* is 'full_attention'"):
        GatedDeltaNet(cfg, 3)
    with pytest.raises(IndexError, match="out of range"):
        GatedDeltaNet(cfg, 4)
    with pytest.raises(TypeError, match="layer index must be an int"):
        GatedDeltaNet(cfg, 0.0)
    with pytest.raises(ValueError, match="hidden_act"):
        GatedDeltaNet(cfg.replace(hidden_act="gelu"), 0)
    with pytest.raises(ValueError, match="weight_dtype"):
        GatedDeltaNet(cfg, 0, weight_dtype="float16")
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        GatedDeltaNet(cfg, 0, seed=-1)
    with pytest.raises(ValueError, match="rms_norm_eps"):
        GatedDeltaNet(cfg.replace(rms_norm_eps=0.0), 0)


def test_bad_weights_leave_the_layer_unchanged():
    cfg = config()
    layer = make_layer(cfg)
    x = inputs(9, 32, 0)
    y0 = layer(x)
    bad = {"A_log": np.zeros(6), "out_proj.weight": np.zeros((72, 32))}
    with pytest.raises(ValueError, match=r"out_proj.weight: expected \(32, 72\), got \(72, 32\)"):
        layer.load_weights(bad, strict=False)
    with pytest.raises(ValueError, match="dt_bias: contains NaN"):
        layer.load_weights({"dt_bias": np.full(6, np.nan)}, strict=False)
    with pytest.raises(ValueError, match="missing weights"):
        layer.load_weights({"A_log": np.zeros(6)})
    with pytest.raises(ValueError, match="unknown weight 'conv.weight'"):
        layer.load_weights({"conv.weight": np.zeros((104, 1, 4))}, strict=False)
    np.testing.assert_array_equal(layer(x), y0)
