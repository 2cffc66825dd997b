"""Weights read where they lie: a layer loaded from arrays it can read in place (memory-mapped
safetensors views, float32 or bfloat16 bits, whole or one array per expert and projection)
borrows them instead of copying, keeps them alive, and computes bitwise what a layer loaded by
copy computes."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import moelab
from moelab._core_weights import NO_INIT
from moelab.io import open_checkpoint
from safetensors_writer import write_raw_safetensors

H, I, E = 64, 48, 6
# T: enough rows that some experts take the panel path and some the dot path.
T = 160


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounded to nearest even (finite values)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def frozen(a) -> np.ndarray:
    """A read-only float32 copy (as a memory-mapped file's views are): what a layer borrows."""
    out = np.array(a, np.float32)
    out.flags.writeable = False
    return out


def moe_config(**kw) -> moelab.MoEConfig:
    return moelab.MoEConfig(hidden_size=H, num_experts=E, num_experts_per_tok=2,
                            moe_intermediate_size=I, **kw)


def per_expert(weights: dict) -> dict:
    """The stacked expert matrices as parts: [gate_0, up_0, gate_1, up_1, ...] and
    [down_0, down_1, ...] (as checkpoints store them), the rest as they are."""
    out = dict(weights)
    gu = weights["experts.gate_up_proj"]                      # (E, 2I, H)
    out["experts.gate_up_proj"] = [frozen(gu[e, h * I:(h + 1) * I])
                                   for e in range(E) for h in (0, 1)]  # (I, H) each
    out["experts.down_proj"] = [frozen(d) for d in weights["experts.down_proj"]]
    return out


def write_checkpoint(path, weights: dict, dtype: str) -> dict:
    """Writes each weight (each part of a list) into one safetensors file; returns the same
    mapping with memory-mapped views of the file in place of the arrays."""
    tensors, names = {}, {}
    for name, value in weights.items():
        arrays = value if isinstance(value, list) else [value]
        names[name] = []
        for i, a in enumerate(arrays):
            key = f"{name}.{i}"
            if dtype == "bfloat16" and a.ndim >= 2:
                tensors[key] = ("BF16", a.shape, bf16_bits(a).tobytes())
            else:
                tensors[key] = ("F32", a.shape, np.ascontiguousarray(a, np.float32).tobytes())
            names[name].append(key)
    write_raw_safetensors(path, tensors)
    ckpt = open_checkpoint(path)
    return {name: [ckpt.view(k) for k in keys] if isinstance(weights[name], list)
            else ckpt.view(keys[0]) for name, keys in names.items()}


def float32_of(weights: dict) -> dict:
    """Owned float32 copies of the (possibly bfloat16-bit, possibly parted) weights."""
    out = {}
    for name, value in weights.items():
        arrays = value if isinstance(value, list) else [value]
        conv = [moelab.io.bf16_to_float32(a) if a.dtype == np.uint16 else np.array(a, np.float32)
                for a in arrays]
        out[name] = conv if isinstance(value, list) else conv[0]
    return out


def stacked(weights: dict) -> dict:
    """Parts joined back into the stacked canonical layout (copies)."""
    out = dict(weights)
    if isinstance(weights["experts.gate_up_proj"], list):
        out["experts.gate_up_proj"] = np.stack(weights["experts.gate_up_proj"]).reshape(E, 2 * I, H)
        out["experts.down_proj"] = np.stack(weights["experts.down_proj"])
    return out


@pytest.fixture(scope="module")
def reference_weights():
    cfg = moe_config(n_shared_experts=1)
    layer = moelab.MoELayer(cfg, seed=3)
    return cfg, {n: np.array(w) for n, w in layer.weights.items()}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("parts", [False, True], ids=["stacked", "per-expert"])
def test_memory_mapped_load_is_bitwise_the_copy_load(tmp_path, reference_weights, dtype, parts):
    cfg, weights = reference_weights
    given = per_expert(weights) if parts else weights
    mapped = write_checkpoint(tmp_path / "w.safetensors", given, dtype)
    in_place = moelab.MoELayer(cfg, seed=NO_INIT, weight_dtype=dtype)
    in_place.load_weights(mapped)
    copied = moelab.MoELayer(cfg, seed=0, weight_dtype=dtype)
    copied._core.load_weights(stacked(float32_of(mapped)), True, borrow=False)  # copied
    x = np.random.default_rng(0).standard_normal((T, H)).astype(np.float32)
    before = moelab.get_num_threads()
    try:
        for threads in (1, 2):
            moelab.set_num_threads(threads)
            assert np.array_equal(in_place(x), copied(x))
    finally:
        moelab.set_num_threads(before)
    # Everything is borrowed but what the core keeps in float32 (the router's matrix) when the
    # file holds it in bfloat16: that is converted into storage of the layer's own.
    kept_f32 = sum(w.size for n, w in weights.items()
                   if w.ndim == 2 and not n.startswith(("experts.", "shared_experts.")))
    assert in_place.owned_weight_bytes == (0 if dtype == "float32" else 4 * kept_f32)
    matrices = 3 * I * H * E + 3 * I * H  # routed and shared experts
    itemsize = 4 if dtype == "float32" else 2
    assert copied.owned_weight_bytes >= matrices * itemsize


def test_the_layer_keeps_borrowed_arrays_alive(reference_weights):
    cfg, weights = reference_weights
    x = np.random.default_rng(1).standard_normal((T, H)).astype(np.float32)
    expected = moelab.MoELayer(cfg, seed=NO_INIT)
    expected.load_weights({n: np.array(w) for n, w in weights.items()})
    y = expected(x)
    layer = moelab.MoELayer(cfg, seed=NO_INIT)
    given = per_expert({n: frozen(w) for n, w in weights.items()})
    layer.load_weights(given)
    assert layer.owned_weight_bytes == 0  # every array read-only float32: all borrowed
    del given
    gc.collect()
    for _ in range(3):  # fresh allocations would reuse freed memory
        np.full((1 << 16,), np.nan, np.float32)
    assert np.array_equal(layer(x), y)


def test_a_borrowed_weight_is_a_read_only_view_of_the_array(reference_weights):
    cfg, weights = reference_weights
    router = frozen(weights["router.weight"])
    layer = moelab.MoELayer(cfg, seed=0)
    layer.load_weights({"router.weight": router}, strict=False)
    view = layer.weights["router.weight"]
    assert np.shares_memory(view, router) and not view.flags.writeable
    layer._core.init_random(0)  # the borrow ends: the layer's own storage again
    assert layer.weights["router.weight"].flags.writeable
    assert layer.owned_weight_bytes == moelab.MoELayer(cfg, seed=0).owned_weight_bytes


def test_a_misaligned_float32_array_is_copied(reference_weights):
    cfg, weights = reference_weights
    router = weights["router.weight"]
    buf = np.zeros(router.nbytes + 2, np.uint8)
    misaligned = np.frombuffer(buf, np.float32, count=router.size, offset=2).reshape(router.shape)
    misaligned.flags.writeable = True
    misaligned[...] = router
    misaligned.flags.writeable = False
    assert misaligned.ctypes.data % 4 != 0
    layer = moelab.MoELayer(cfg, seed=NO_INIT)
    given = {n: frozen(w) for n, w in weights.items()}
    given["router.weight"] = misaligned
    layer.load_weights(given)
    assert layer.owned_weight_bytes == router.nbytes  # that one copied, the rest borrowed
    assert not np.shares_memory(layer.weights["router.weight"], buf)
    assert np.array_equal(layer.weights["router.weight"], router)


def test_gate_up_given_as_one_block_per_expert(reference_weights):
    cfg, weights = reference_weights
    x = np.random.default_rng(2).standard_normal((T, H)).astype(np.float32)
    whole = moelab.MoELayer(cfg, seed=NO_INIT)
    whole.load_weights(weights)
    blocks = dict(weights, **{"experts.gate_up_proj": list(weights["experts.gate_up_proj"])})
    by_block = moelab.MoELayer(cfg, seed=NO_INIT)
    by_block.load_weights(blocks)
    assert np.array_equal(by_block(x), whole(x))


def test_gated_mlp_reads_gate_and_up_as_two_parts():
    mlp = moelab.GatedMLP(H, I, seed=4)
    gate_up = np.array(mlp.weights["gate_up_proj"])
    down = np.array(mlp.weights["down_proj"])
    x = np.random.default_rng(3).standard_normal((T, H)).astype(np.float32)
    y = mlp(x)
    parts = moelab.GatedMLP(H, I, seed=NO_INIT)
    parts.load_weights({"gate_up_proj": [frozen(gate_up[:I]), frozen(gate_up[I:])],
                        "down_proj": frozen(down)})
    assert parts.owned_weight_bytes == 0
    assert np.array_equal(parts(x), y)


def test_a_bad_part_changes_nothing_and_names_the_tensor(reference_weights):
    cfg, weights = reference_weights
    layer = moelab.MoELayer(cfg, seed=1)
    before = {n: np.array(w) for n, w in layer.weights.items()}
    bad = per_expert(weights)
    bad["experts.down_proj"][3] = bad["experts.down_proj"][3].copy()
    bad["experts.down_proj"][3][1, 2] = np.nan
    with pytest.raises(ValueError, match=r"^experts\.down_proj: contains NaN or Inf"):
        layer.load_weights(bad)
    wrong = per_expert(weights)
    wrong["experts.down_proj"] = wrong["experts.down_proj"][:4]
    with pytest.raises(ValueError, match=r"experts\.down_proj: expected the whole tensor "
                       r"\(6, 64, 48\) or its 6 parts \(64, 48\)"):
        layer.load_weights(wrong)
    shape = per_expert(weights)
    shape["experts.gate_up_proj"][0] = shape["experts.gate_up_proj"][0][:, :10]
    with pytest.raises(ValueError, match=r"^experts\.gate_up_proj: the parts must share one "
                       r"shape and dtype: \[0\] is \(48, 10\) float32, \[1\] is \(48, 64\)"):
        layer.load_weights(shape)
    for n, w in layer.weights.items():
        assert np.array_equal(w, before[n]), n


def test_a_layer_without_weights_refuses_to_run(reference_weights):
    cfg, weights = reference_weights
    layer = moelab.MoELayer(cfg, seed=NO_INIT)
    with pytest.raises(ValueError, match="has no weights yet"):
        layer(np.zeros((2, H), np.float32))
    with pytest.raises(ValueError, match="missing, and the layer has no value for it yet"):
        layer.load_weights({"router.weight": weights["router.weight"]}, strict=False)
    mlp = moelab.GatedMLP(H, I, seed=NO_INIT)
    with pytest.raises(ValueError, match="has no weights yet"):
        mlp(np.zeros((2, H), np.float32))


def test_a_writable_array_is_copied(reference_weights):
    """Its holder could change it after the load's checks: the layer takes a copy, and its
    weight views stay writable."""
    cfg, weights = reference_weights
    given = {n: np.array(w) for n, w in weights.items()}
    layer = moelab.MoELayer(cfg, seed=NO_INIT)
    layer.load_weights(given)
    assert layer.owned_weight_bytes == sum(w.nbytes for w in given.values())
    given["router.weight"][:] = np.nan
    assert np.array_equal(layer.weights["router.weight"], weights["router.weight"])
    assert layer.weights["router.weight"].flags.writeable
