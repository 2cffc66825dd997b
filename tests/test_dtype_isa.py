"""Every instruction-set path of the kernels and the bfloat16 weight storage, against the
float64 reference: the portable path must stay correct on every machine, and a path chosen at
run time from the CPU's features must agree with it."""

from __future__ import annotations

import numpy as np
import pytest

import moelab
from moelab import _core, reference
from tolerances import ACTIVATION, BF16_STORAGE, OUTPUT, assert_close, rel_err

ORDER = ["portable", "avx2", "avx512"]
DETECTED = _core.build_info()["isa_detected"]
#: The paths this CPU can run (the portable one always).
ISAS = ORDER[: ORDER.index(DETECTED) + 1]

CONFIGS = {
    "softmax-shared-gated": moelab.MoEConfig(48, 8, 2, 40, n_shared_experts=1,
                                             shared_expert_gate=True),
    "sigmoid-grouped": moelab.MoEConfig(64, 16, 4, 24, scoring="sigmoid", n_group=4, topk_group=2,
                                        correction_bias=True, routed_scaling_factor=2.5,
                                        n_shared_experts=1),
    "gptoss-bias": moelab.MoEConfig(40, 8, 4, 36, scoring="topk_softmax", router_bias=True,
                                    activation="swiglu_oai", expert_bias=True),
    "llama4": moelab.MoEConfig(32, 4, 1, 20, scoring="llama4", n_shared_experts=1),
}


@pytest.fixture
def isa():
    """Yields a setter of the kernels' ISA and restores the one that was active."""
    before = _core.get_isa()
    yield _core.set_isa
    _core.set_isa(before)


def _check_against_reference(layer: moelab.MoELayer, x: np.ndarray) -> None:
    y, stats = layer(x, return_stats=True)
    y_ref, st_ref = reference.moe_layer(x, layer.weights, layer.config)
    assert_close(y, y_ref, OUTPUT, "output")
    np.testing.assert_array_equal(stats.topk_ids, st_ref["topk_ids"])


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("T", [1, 5, 77])
@pytest.mark.parametrize("path", ISAS)
def test_every_isa_matches_reference(isa, path, name, T, rng):
    isa(path)
    assert moelab.build_info()["isa"] == path
    layer = moelab.MoELayer(CONFIGS[name], seed=3)
    x = rng.standard_normal((T, CONFIGS[name].hidden_size)).astype(np.float32)
    _check_against_reference(layer, x)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("path", ISAS)
def test_bfloat16_layer_matches_reference_on_its_rounded_weights(isa, path, name, rng):
    """The bf16 layer computes in float32 on the rounded weights it reports: the reference on
    those same weights agrees at the float32 tolerance."""
    isa(path)
    cfg = CONFIGS[name]
    layer = moelab.MoELayer(cfg, seed=5, weight_dtype="bfloat16")
    x = rng.standard_normal((33, cfg.hidden_size)).astype(np.float32)
    _check_against_reference(layer, x)


def _bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 -> float32, round to nearest even (written independently here)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def test_bfloat16_load_rounds_to_nearest_even():
    cfg = moelab.MoEConfig(16, 2, 1, 8)
    layer = moelab.MoELayer(cfg, weight_dtype="bfloat16")
    w = dict(layer.weights)
    gate_up = np.full(w["experts.gate_up_proj"].shape, 1.0, np.float32)
    flat = gate_up.reshape(-1)
    flat[0] = 1.0 + 2.0**-8            # a tie between 1 and 1 + 2**-7: to even -> 1.0
    flat[1] = 1.0 + 3 * 2.0**-8        # a tie between 1 + 2**-7 and 1 + 2**-6: to even -> 1 + 2**-6
    flat[2] = 1.0 + 2.0**-8 + 2.0**-20  # above the tie -> 1 + 2**-7
    flat[3] = -3.1415927
    w["experts.gate_up_proj"] = gate_up
    layer.load_weights(w)
    stored = layer.weights["experts.gate_up_proj"].reshape(-1)
    assert stored[0] == 1.0
    assert stored[1] == 1.0 + 2.0**-6
    assert stored[2] == 1.0 + 2.0**-7
    np.testing.assert_array_equal(stored, _bf16_round(flat))
    # the router stays float32 (routing runs in float32 whatever the weight dtype)
    np.testing.assert_array_equal(layer.weights["router.weight"], w["router.weight"])


def test_bfloat16_expert_weights_are_read_only_copies():
    layer = moelab.MoELayer(moelab.MoEConfig(16, 4, 2, 8), weight_dtype="bfloat16")
    assert layer.weight_dtype == "bfloat16"
    gate_up = layer.weights["experts.gate_up_proj"]
    with pytest.raises(ValueError):
        gate_up[0, 0, 0] = 1.0
    layer.weights["router.weight"][0, 0] = 0.25  # still a view: writable, changes the layer
    assert layer.weights["router.weight"][0, 0] == 0.25


def test_bfloat16_is_close_to_float32(rng):
    cfg = moelab.MoEConfig(256, 16, 4, 128)
    f32 = moelab.MoELayer(cfg, seed=11)
    b16 = moelab.MoELayer(cfg, seed=11, weight_dtype="bfloat16")
    x = rng.standard_normal((64, 256)).astype(np.float32)
    y32, s32 = f32(x, return_stats=True)
    y16, s16 = b16(x, return_stats=True)
    np.testing.assert_array_equal(s16.topk_ids, s32.topk_ids)  # the router is float32 in both
    assert_close(y16, y32, BF16_STORAGE, "bf16 output vs float32")
    assert rel_err(y16, y32) > 0.0  # the weights really are stored differently


@pytest.mark.parametrize("path", ISAS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_thread_count_never_changes_a_bit(isa, set_threads, every_region_parallel, path,
                                          dtype, rng):
    isa(path)
    layer = moelab.MoELayer(CONFIGS["sigmoid-grouped"], seed=2, weight_dtype=dtype)
    x = rng.standard_normal((200, 64)).astype(np.float32)
    outs = []
    for n in (1, 2, 3):
        set_threads(n)
        y, loops = every_region_parallel(layer, x)
        outs.append(y)
        if n > 1:  # the experts' loops ran on several threads (every loop, below 2^20 work)
            assert loops >= {"experts_pack", "experts_gate_up", "experts_down"}, sorted(loops)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


@pytest.mark.parametrize("path", ISAS)
def test_thread_count_never_changes_a_bit_when_every_region_runs_parallel(isa, set_threads,
                                                                           path, rng):
    """Small work runs serially (moelab's threads_for threshold, left as it is here): this size
    is large enough that every parallel region of the forward (router logits, selection,
    experts, combine, losses) really runs on several threads."""
    from moelab import _core

    isa(path)
    cfg = moelab.MoEConfig(128, 32, 4, 64, scoring="sigmoid", n_group=4, topk_group=2,
                           correction_bias=True, n_shared_experts=1, shared_expert_gate=True)
    layer = moelab.MoELayer(cfg, seed=9)
    x = rng.standard_normal((2048, 128)).astype(np.float32)
    results = []
    for n in (1, 2, 4):
        set_threads(n)
        before = _core._parallel_regions()
        results.append(layer(x, return_stats=True))
        after = _core._parallel_regions()
        if n > 1:
            ran = {name for name in after if after[name] > before[name]}
            assert ran >= {"router_logits", "select_experts", "experts_pack", "experts_gate_up",
                           "experts_down", "combine", "aux_loss", "z_loss"}, sorted(ran)
    for y, st in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(st.topk_weights, results[0][1].topk_weights)
        assert st.aux_loss == results[0][1].aux_loss and st.z_loss == results[0][1].z_loss


def test_gated_mlp_bfloat16_and_isas(isa, rng):
    x = rng.standard_normal((9, 24)).astype(np.float32)
    for path in ISAS:
        isa(path)
        mlp = moelab.GatedMLP(24, 40, "gelu_tanh", seed=1, weight_dtype="bfloat16")
        w = mlp.weights
        assert_close(mlp(x), reference.gated_mlp(x, w["gate_up_proj"], w["down_proj"], "gelu_tanh"),
                     OUTPUT, f"GatedMLP bf16 on {path}")


def test_isa_cannot_exceed_the_cpu_or_be_unknown(isa):
    with pytest.raises(ValueError, match="isa"):
        isa("sse9")
    if DETECTED != "avx512":
        with pytest.raises(ValueError, match="not supported"):
            isa("avx512")
    isa("portable")
    assert _core.get_isa() == "portable"


def test_weight_dtype_is_validated():
    with pytest.raises(ValueError, match="weight_dtype"):
        moelab.MoELayer(moelab.MoEConfig(8, 2, 1, 4), weight_dtype="float16")
    with pytest.raises(ValueError, match="weight_dtype"):
        moelab.GatedMLP(8, 4, weight_dtype="int8")


# Shapes that reach every branch of the AVX-512 kernels: K above the bf16 widening chunk (256)
# and not a multiple of 16, experts with three token panels (32 + 32 + a partial one) in one
# task, decode rows (T = 2) with K above the prefill K chunk (1024).
LONG_K = moelab.MoEConfig(300, 4, 2, 270, activation="swiglu_oai", expert_bias=True,
                          scoring="topk_softmax")
DECODE_LONG_K = moelab.MoEConfig(1100, 4, 2, 1030)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
@pytest.mark.parametrize("cfg, T", [(LONG_K, 150), (DECODE_LONG_K, 2)], ids=["panels", "decode"])
def test_long_rows_and_multi_panel_experts_match_reference(isa, path, dtype, cfg, T, rng):
    isa(path)
    layer = moelab.MoELayer(cfg, seed=7, weight_dtype=dtype)
    x = rng.standard_normal((T, cfg.hidden_size)).astype(np.float32)
    y, stats = layer(x, return_stats=True)
    if T > 64:
        assert stats.tokens_per_expert.max() > 64  # an expert with 3 panels
    _check_against_reference(layer, x)


# Every token goes to both experts (k = E), so each expert has exactly T rows: past one or more
# full 32-token panels, a tail of 1-10 rows takes the dot kernel after the panels (with biases,
# the clamped SwiGLU and the shared expert's own tail), 11 or more a partial panel.
# LONG_I: an intermediate size above the down projection's K chunk (4096), whose panels are
# computed chunk by chunk of K. LONG_H: the same for gate/up's K chunk (2048, float32), groups of 4
# panels (T = 150: two groups, 4 panels and 1 partial) and a last chunk of 104.
EVERY_EXPERT = moelab.MoEConfig(300, 2, 2, 40, activation="swiglu_oai", expert_bias=True,
                                scoring="topk_softmax", n_shared_experts=1)
LONG_I = moelab.MoEConfig(24, 2, 2, 8200, activation="swiglu_oai", expert_bias=True,
                          scoring="topk_softmax")
LONG_H = moelab.MoEConfig(4200, 2, 2, 40, activation="swiglu_oai", expert_bias=True,
                          scoring="topk_softmax", n_shared_experts=1)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
@pytest.mark.parametrize("cfg, T", [(EVERY_EXPERT, T) for T in (33, 42, 43, 48, 70, 100)]
                         + [(LONG_I, T) for T in (40, 64, 75)]
                         + [(LONG_H, T) for T in (40, 75, 150)])
def test_panel_tails_match_reference(isa, path, dtype, cfg, T, rng):
    isa(path)
    layer = moelab.MoELayer(cfg, seed=11, weight_dtype=dtype)
    x = rng.standard_normal((T, cfg.hidden_size)).astype(np.float32)
    _, stats = layer(x, return_stats=True)
    assert list(stats.tokens_per_expert) == [T, T]
    _check_against_reference(layer, x)


@pytest.mark.parametrize("kind", ["silu", "swiglu_oai", "gelu", "gelu_tanh", "relu"])
@pytest.mark.parametrize("path", ISAS[1:])
def test_vector_activation_matches_the_portable_one(isa, path, kind, rng):
    """The AVX-512 activations (vector exp) agree with the scalar libm path to a few ulp, on
    every tail length and on values where exp saturates or the gpt-oss clamps act."""
    edge = np.array([0.0, -0.0, 1e-30, -1e-30, 7.0, -7.0, 7.5, -7.5, 30.0, -30.0, 88.0, -88.0,
                     95.0, -95.0, 110.0, -110.0], np.float32)
    for n in list(range(1, 40)) + [257]:
        g = np.concatenate([edge, 6 * rng.standard_normal(n).astype(np.float32)])[None, :n]
        u = np.concatenate([edge[::-1], 6 * rng.standard_normal(n).astype(np.float32)])[None, :n]
        isa("portable")
        scalar = moelab.ops.activation(kind, g, u)
        isa(path)
        vector = moelab.ops.activation(kind, g, u)
        assert_close(vector, scalar, ACTIVATION, f"{kind} on {path}, n={n}",
                     scale=(1 + np.abs(g)) * (1 + np.abs(u)))
        assert np.array_equal(vector == 0, scalar == 0)
