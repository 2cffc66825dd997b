"""Every public entry point rejects bad input with the documented exception, and the message
names the argument (and, for shapes, both the expected and the given shape).

MoEConfig's own rules are in test_config.py.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import moelab

H, E, K, I = 16, 4, 2, 8

FULL = moelab.MoEConfig(H, E, K, I, scoring="sigmoid", correction_bias=True, router_bias=True,
                        expert_bias=True, n_shared_experts=1, shared_intermediate_size=12,
                        shared_expert_gate=True)  # every optional tensor exists


@pytest.fixture
def layer() -> moelab.MoELayer:
    return moelab.MoELayer(moelab.MoEConfig(H, E, K, I), seed=0)


@pytest.fixture
def full_layer() -> moelab.MoELayer:
    return moelab.MoELayer(FULL, seed=0)


def good_x(T: int = 5) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(T, H)).astype(np.float32)


def snapshot(layer) -> dict:
    return {name: w.copy() for name, w in layer.weights.items()}


def assert_unchanged(layer, before: dict) -> None:
    after = layer.weights
    assert list(after) == list(before)
    for name, w in before.items():
        np.testing.assert_array_equal(after[name], w, err_msg=f"{name} changed by a failed load")


# --------------------------------------------------------------------------------------------
# MoELayer construction
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [None, {"hidden_size": 16}, "softmax"], ids=["None", "dict", "str"])
def test_layer_config_must_be_moeconfig(config):
    with pytest.raises(TypeError, match="config"):
        moelab.MoELayer(config)


@pytest.mark.parametrize("seed", ["1", 1.5, True, None], ids=["str", "float", "bool", "None"])
def test_layer_seed_must_be_int(seed):
    with pytest.raises(TypeError, match="seed"):
        moelab.MoELayer(moelab.MoEConfig(H, E, K, I), seed=seed)


def test_layer_seed_must_be_non_negative():
    with pytest.raises((TypeError, ValueError), match="seed"):
        moelab.MoELayer(moelab.MoEConfig(H, E, K, I), seed=-1)


@pytest.mark.parametrize("make", [
    lambda seed: moelab.MoELayer(moelab.MoEConfig(H, E, K, I), seed=seed),
    lambda seed: moelab.GatedMLP(H, I, seed=seed),
    lambda seed: moelab.build(moelab.preset("mixtral-8x7b").scaled(), seed=seed),
], ids=["MoELayer", "GatedMLP", "build"])
def test_seeds_are_unsigned_64_bit(make):
    """A seed beyond 64 bits is a ValueError naming seed and its range (once a raw pybind11
    TypeError from the core's init); the whole range and NumPy unsigned seeds work."""
    for seed in (2**64, 10**30, -1):
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\), got "):
            make(seed)
    make(2**64 - 1)
    make(np.uint64(2**64 - 1))


# --------------------------------------------------------------------------------------------
# MoELayer forward
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("shape", [(5, H), (2, 3, H)], ids=["2d", "3d"])
def test_forward_rejects_non_finite(layer, value, shape):
    x = np.zeros(shape, dtype=np.float32)
    x.flat[7] = value
    with pytest.raises(ValueError, match=r"\bx\b"):
        layer(x)


@pytest.mark.parametrize("shape", [(H,), (1, 2, 3, H), (), (5, H + 1), (5, H - 1), (2, 3, H + 2),
                                   (0, H + 1)], ids=lambda s: "x".join(map(str, s)) or "scalar")
def test_forward_rejects_wrong_shape(layer, shape):
    x = np.zeros(shape, dtype=np.float32)
    with pytest.raises(ValueError) as info:
        layer(x)
    msg = str(info.value)
    assert re.search(r"\bx\b", msg), msg
    assert f"H={H}" in msg, msg                    # the expected shape
    assert str(tuple(shape)) in msg, msg          # the given shape


@pytest.mark.parametrize("x", [
    np.array([["a"] * H]), [["a"] * H], np.zeros((2, H), dtype=object),
    np.zeros((2, H), dtype=np.complex64), np.zeros((2, H), dtype=bool), "not an array",
], ids=["str-array", "str-list", "object", "complex", "bool", "str"])
def test_forward_rejects_non_numeric(layer, x):
    with pytest.raises(TypeError, match=r"\bx\b"):
        layer(x)


def test_forward_converts_numeric_inputs(layer):
    """The flip side: lists, float64, int and non-contiguous arrays are converted, not refused."""
    x = good_x()
    expected = layer(x)
    np.testing.assert_array_equal(layer(x.astype(np.float64)), expected)
    np.testing.assert_array_equal(layer(x.tolist()), expected)
    x_f = np.asfortranarray(x)
    np.testing.assert_array_equal(layer(x_f), expected)
    wide = np.zeros((5, 2 * H), dtype=np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(layer(wide[:, ::2]), expected)
    ints = np.arange(5 * H).reshape(5, H) % 3
    np.testing.assert_array_equal(layer(ints), layer(ints.astype(np.float32)))


# --------------------------------------------------------------------------------------------
# load_weights: all or nothing
# --------------------------------------------------------------------------------------------
def test_load_weights_unknown_name(full_layer):
    before = snapshot(full_layer)
    weights = dict(before)
    weights["router.wieght"] = before["router.weight"]
    with pytest.raises(ValueError, match=r"router\.wieght"):
        full_layer.load_weights(weights)
    assert_unchanged(full_layer, before)


@pytest.mark.parametrize("missing", list(FULL.weight_shapes()), ids=str)
def test_load_weights_missing_name_strict(full_layer, missing):
    before = snapshot(full_layer)
    weights = {n: -w for n, w in before.items() if n != missing}
    with pytest.raises(ValueError, match=re.escape(missing)):
        full_layer.load_weights(weights)
    assert_unchanged(full_layer, before)
    full_layer.load_weights(weights, strict=False)  # a subset is fine when not strict
    assert np.array_equal(full_layer.weights[missing], before[missing])
    other = next(n for n in weights)
    np.testing.assert_array_equal(full_layer.weights[other], weights[other])


@pytest.mark.parametrize("bad", list(FULL.weight_shapes()), ids=str)
def test_load_weights_wrong_shape_leaves_layer_unchanged(full_layer, bad):
    """Each tensor in turn is the only bad one: whichever the core checks last is covered."""
    before = snapshot(full_layer)
    y_before = full_layer(good_x())
    weights = {n: (w * 0.5).astype(np.float32) for n, w in before.items()}
    right = weights[bad].shape
    wrong = right[:-1] + (right[-1] + 1,)
    weights[bad] = np.zeros(wrong, dtype=np.float32)
    with pytest.raises(ValueError) as info:
        full_layer.load_weights(weights)
    msg = str(info.value)
    assert bad in msg and str(right) in msg and str(wrong) in msg, msg
    assert_unchanged(full_layer, before)
    np.testing.assert_array_equal(full_layer(good_x()), y_before)


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("bad", list(FULL.weight_shapes()), ids=str)
def test_load_weights_non_finite_leaves_layer_unchanged(full_layer, bad, value):
    before = snapshot(full_layer)
    weights = {n: (w * 0.5).astype(np.float32) for n, w in before.items()}
    weights[bad].flat[-1] = value
    with pytest.raises(ValueError, match=re.escape(bad)):
        full_layer.load_weights(weights)
    assert_unchanged(full_layer, before)


def test_load_weights_last_tensor_bad_in_insertion_order(full_layer):
    names = list(FULL.weight_shapes())
    before = snapshot(full_layer)
    weights = {n: (before[n] * 0.5).astype(np.float32) for n in names}
    weights[names[-1]] = weights[names[-1]][..., :-1].copy()  # only the last one is bad
    with pytest.raises(ValueError, match=re.escape(names[-1])):
        full_layer.load_weights(weights)
    assert_unchanged(full_layer, before)


@pytest.mark.parametrize("weights,exc", [
    ([("router.weight", np.zeros((E, H)))], TypeError),
    ("router.weight", TypeError),
    ({1: np.zeros((E, H))}, TypeError),
    ({"router.weight": np.full((E, H), "a")}, TypeError),
    ({"router.weight": np.zeros((E, H), dtype=np.complex64)}, TypeError),
], ids=["list", "str", "int-key", "str-array", "complex"])
def test_load_weights_bad_types(layer, weights, exc):
    before = snapshot(layer)
    with pytest.raises(exc):
        layer.load_weights(weights)
    assert_unchanged(layer, before)


# --------------------------------------------------------------------------------------------
# thread count
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,exc", [(0, ValueError), (-1, ValueError), ("2", TypeError),
                                   (2.0, TypeError), (True, TypeError), (None, TypeError),
                                   (np.bool_(True), TypeError), (np.float64(2.0), TypeError),
                                   (np.int64(0), ValueError), (-(2**70), ValueError)],
                         ids=["0", "-1", "str", "float", "bool", "None", "np.bool_", "np.float64",
                              "np.int64-0", "-2**70"])
def test_set_num_threads_rejects(n, exc, restore_threads):
    before = moelab.get_num_threads()
    with pytest.raises(exc, match=r"\bn\b"):
        moelab.set_num_threads(n)
    assert moelab.get_num_threads() == before


# --------------------------------------------------------------------------------------------
# ops.route and ops.activation
# --------------------------------------------------------------------------------------------
ROUTE_CFG = moelab.MoEConfig(H, E, K, I, scoring="sigmoid", correction_bias=True)


@pytest.mark.parametrize("shape", [(E,), (3, E + 1), (3, E - 1), (2, 3, E)],
                         ids=lambda s: "x".join(map(str, s)))
def test_route_wrong_logits_shape(shape):
    with pytest.raises(ValueError, match="logits") as info:
        moelab.ops.route(np.zeros(shape, dtype=np.float32), ROUTE_CFG)
    assert str(tuple(shape)) in str(info.value)


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "+inf"])
def test_route_rejects_nan_and_plus_inf(value):
    logits = np.zeros((3, E), dtype=np.float32)
    logits[1, 2] = value
    with pytest.raises(ValueError, match="logits"):
        moelab.ops.route(logits, ROUTE_CFG)


def test_route_rejects_fewer_than_k_finite_logits():
    logits = np.zeros((3, E), dtype=np.float32)
    logits[2, 1:] = -np.inf  # one finite logit, k = 2
    with pytest.raises(ValueError, match="logits"):
        moelab.ops.route(logits, ROUTE_CFG)


@pytest.mark.parametrize("bias", [np.zeros(E + 1), np.zeros((1, E)), np.array([0, 0, np.nan, 0])],
                         ids=["long", "2d", "nan"])
def test_route_bad_correction_bias(bias):
    with pytest.raises(ValueError, match="correction_bias"):
        moelab.ops.route(np.zeros((3, E), dtype=np.float32), ROUTE_CFG, bias)


def test_route_correction_bias_only_for_sigmoid():
    cfg = moelab.MoEConfig(H, E, K, I)
    with pytest.raises(ValueError, match="correction_bias"):
        moelab.ops.route(np.zeros((3, E), dtype=np.float32), cfg, np.zeros(E))


def test_route_bad_types():
    with pytest.raises(TypeError, match="logits"):
        moelab.ops.route(np.full((3, E), "a"), ROUTE_CFG)
    with pytest.raises(TypeError, match="logits"):
        moelab.ops.route(np.zeros((3, E), dtype=np.complex64), ROUTE_CFG)
    with pytest.raises(TypeError, match="config"):
        moelab.ops.route(np.zeros((3, E), dtype=np.float32), {"num_experts": E})


def test_activation_bad_input():
    g = np.zeros((3, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="kind"):
        moelab.ops.activation("swish", g, g)
    with pytest.raises(ValueError, match="up") as info:
        moelab.ops.activation("silu", g, np.zeros((3, 6), dtype=np.float32))
    assert "(3, 5)" in str(info.value) and "(3, 6)" in str(info.value)
    with pytest.raises(TypeError, match="gate"):
        moelab.ops.activation("silu", np.full((3, 5), "a"), g)
    with pytest.raises(TypeError, match="up"):
        moelab.ops.activation("silu", g, g.astype(np.complex64))
    bad = g.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="gate"):
        moelab.ops.activation("silu", bad, g)


# --------------------------------------------------------------------------------------------
# GatedMLP
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,exc,name", [
    ((0, 8), ValueError, "hidden_size"),
    ((16, 0), ValueError, "intermediate_size"),
    ((-3, 8), ValueError, "hidden_size"),
    ((16.0, 8), TypeError, "hidden_size"),
    ((16, "8"), TypeError, "intermediate_size"),
    ((True, 8), TypeError, "hidden_size"),
], ids=["H0", "I0", "H-neg", "H-float", "I-str", "H-bool"])
def test_gated_mlp_bad_sizes(args, exc, name):
    with pytest.raises(exc, match=name):
        moelab.GatedMLP(*args)


def test_gated_mlp_bad_activation_and_seed():
    with pytest.raises(ValueError, match="activation"):
        moelab.GatedMLP(16, 8, activation="swish")
    with pytest.raises(TypeError, match="seed"):
        moelab.GatedMLP(16, 8, seed="0")
    with pytest.raises(ValueError, match="seed"):
        moelab.GatedMLP(16, 8, seed=-1)


def test_gated_mlp_bad_x():
    mlp = moelab.GatedMLP(16, 8)
    with pytest.raises(ValueError, match=r"\bx\b") as info:
        mlp(np.zeros((3, 15), dtype=np.float32))
    assert "H=16" in str(info.value) and "(3, 15)" in str(info.value)
    with pytest.raises(ValueError, match=r"\bx\b"):
        mlp(np.zeros(16, dtype=np.float32))
    nan = np.zeros((3, 16), dtype=np.float32)
    nan[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"\bx\b"):
        mlp(nan)
    with pytest.raises(TypeError, match=r"\bx\b"):
        mlp(np.zeros((3, 16), dtype=object))


def test_gated_mlp_bad_weights():
    mlp = moelab.GatedMLP(16, 8)
    before = {n: w.copy() for n, w in mlp.weights.items()}
    with pytest.raises(ValueError, match="up_proj_typo"):
        mlp.load_weights({**before, "up_proj_typo": before["down_proj"]})
    with pytest.raises(ValueError, match="down_proj"):
        mlp.load_weights({"gate_up_proj": before["gate_up_proj"]})  # strict: down_proj missing
    with pytest.raises(ValueError, match="down_proj") as info:
        mlp.load_weights({"gate_up_proj": before["gate_up_proj"],
                          "down_proj": np.zeros((8, 16), dtype=np.float32)})
    assert "(16, 8)" in str(info.value) and "(8, 16)" in str(info.value)
    bad = before["down_proj"].copy()
    bad[-1, -1] = np.inf
    with pytest.raises(ValueError, match="down_proj"):
        mlp.load_weights({"gate_up_proj": before["gate_up_proj"] * 2, "down_proj": bad})
    with pytest.raises(TypeError):
        mlp.load_weights([("down_proj", bad)])
    for n, w in before.items():
        np.testing.assert_array_equal(mlp.weights[n], w, err_msg=n)


def test_designed_tokens_reject_bad_arguments(rng):
    cfg = moelab.MoEConfig(16, 8, 2, 8)
    W = moelab.MoELayer(cfg, seed=0).weights["router.weight"]            # (E, H)
    make = moelab.designed_tokens.make_batches
    with pytest.raises(TypeError, match="cfg must be a moelab.MoEConfig"):
        make({"num_experts": 8}, W, 4, 1, rng)
    for T, min_batches in ((0, 1), (4, 0), (2.5, 1), (True, 1)):
        with pytest.raises(ValueError, match="must be an int >= 1"):
            make(cfg, W, T, min_batches, rng)
    with pytest.raises(ValueError, match=r"router_weight: expected \(E, H\)=\(8, 16\), got \(16, 8\)"):
        make(cfg, W.T, 4, 1, rng)
    design = moelab.designed_tokens.design_tokens
    for sets in (np.array([[0, 8]]), np.array([[1, 1]]), np.array([0, 1]), np.array([[0.0, 1.0]])):
        with pytest.raises(ValueError, match="sets"):
            design(W, sets, rng)


# --------------------------------------------------------------------------------------------
# moelab.hf loaders: the source itself is checked first
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("load", [moelab.hf.load_moe_layer, moelab.hf.load_moe_weights],
                         ids=["load_moe_layer", "load_moe_weights"])
def test_loader_names_a_source_path_that_does_not_exist(load, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no" / "such" / "folder"
    for source in (missing, str(missing), "no/such/folder"):
        with pytest.raises(ValueError, match=rf"^source: '{re.escape(str(source))}' does not "
                                             r"exist \(no such file or folder\)$"):
            load(source, 1)


@pytest.mark.parametrize("hub_id", ["Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V3",
                                    "openai/gpt-oss-20b"])
def test_loader_says_hub_ids_are_not_downloaded(hub_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that no such folder exists here
    name = hub_id.split("/")[1]
    with pytest.raises(ValueError) as info:
        moelab.hf.load_moe_layer(hub_id, 1)
    message = str(info.value)
    assert message.startswith(f"source: {hub_id!r} is not a local folder"), message
    assert "does not download from the Hugging Face Hub" in message
    assert f"hf download {hub_id} --local-dir {name}" in message and f"{name!r}" in message
    with pytest.raises(ValueError, match=f"config: {hub_id!r} is not a local folder"):
        moelab.from_hf_config(hub_id)


@pytest.mark.parametrize("source", [["model.safetensors"], ("a", "b"), 42, None, b"folder"],
                         ids=["list", "tuple", "int", "None", "bytes"])
def test_loader_names_the_accepted_source_types(source):
    with pytest.raises(TypeError, match=r"^source must be a state dict \(a mapping of tensor "
                                        r"names .*\) or a checkpoint folder or \.safetensors "
                                        rf"file \(a str or os\.PathLike\), got "
                                        rf"{type(source).__name__}$"):
        moelab.hf.load_moe_layer(source, 1)


def test_loader_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match="neither a checkpoint folder nor a .safetensors file"):
        moelab.hf.load_moe_layer(tmp_path / "pytorch_model.bin", 1)


# --------------------------------------------------------------------------------------------
# smaller gaps (issue 19.5): each error says what is wrong, where
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1e300, -1e39, np.finfo(np.float64).max], ids=str)
def test_float64_beyond_float32_is_reported_as_an_overflow(layer, value):
    """Once reported as "NaN or Inf" (the cast made it inf)."""
    x = np.zeros((3, H))
    x[1, 2] = value
    with pytest.raises(ValueError, match=rf"^x: overflows float32 \(first at flat index "
                                         rf"{H + 2}: .*float32 holds magnitudes up to 3.403e\+38\)"):
        layer(x)
    with pytest.raises(ValueError, match="experts.down_proj: overflows float32"):
        layer.load_weights({"experts.down_proj": np.full((E, H, I), value)}, strict=False)
    with pytest.raises(ValueError, match="x: overflows float32"):
        moelab.GatedMLP(H, I)(x)


def test_float64_inf_and_nan_are_still_reported_as_such(layer):
    for bad in (np.inf, np.nan):
        with pytest.raises(ValueError, match="x: contains NaN or Inf"):
            layer(np.full((2, H), bad))


@pytest.mark.parametrize("name, value, kind", [
    ("router.weight", np.nan, "NaN"), ("router.weight", np.inf, "Inf"),
    ("router.bias", np.nan, "NaN")])
def test_nan_router_weights_written_through_a_view_are_named(full_layer, name, value, kind):
    """Once reported as "router logits overflow float32" (as if x were too large)."""
    view = full_layer.weights[name]
    view.reshape(-1)[3] = value
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}: contains NaN or Inf \(first at "
                                         rf"flat index 3: {kind}\)$"):
        full_layer(np.ones((2, H), np.float32))


@pytest.mark.parametrize("max_bytes, exc", [(-1, ValueError), (0, ValueError),
                                            (float("nan"), ValueError), ("4GB", TypeError),
                                            (None, TypeError)],
                         ids=["-1", "0", "nan", "str", "None"])
def test_build_checks_max_bytes(max_bytes, exc):
    """Once "limit max_bytes=-0.0 GiB"."""
    cfg = moelab.preset("mixtral-8x7b").scaled()
    with pytest.raises(exc, match="max_bytes must be"):
        moelab.build(cfg, max_bytes=max_bytes)
    assert moelab.build(cfg, max_bytes=1e12).config == cfg


def test_an_unknown_isa_variable_warns_naming_the_accepted_values():
    """MOELAB_ISA=bogus was ignored silently."""
    import subprocess
    import sys

    code = "import moelab; print(moelab.build_info()['isa'])"
    env = {**os.environ, "MOELAB_ISA": "bogus"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert ("RuntimeWarning: MOELAB_ISA is ignored: isa must be one of ('portable', 'avx2', "
            "'avx512'), got 'bogus'; the kernels use " + run.stdout.strip()) in run.stderr
    env["MOELAB_ISA"] = "portable"
    run = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "portable", run.stderr


def test_compare_refuses_a_model_listed_twice():
    with pytest.raises(ValueError, match="'mixtral-8x7b' is listed twice"):
        moelab.compare(["mixtral-8x7b", "mixtral-8x7b"])
