"""The public surface: __all__, build_info, __version__, reprs, the committed type stubs of
moelab._core, and the weights property returning views."""

from __future__ import annotations

import ast
import pathlib
import re

import numpy as np
import pytest

import moelab
import moelab._core

PACKAGE_DIR = pathlib.Path(moelab.__file__).resolve().parent
STUB = PACKAGE_DIR / "_core.pyi"


def test_all_names_exist():
    assert len(moelab.__all__) == len(set(moelab.__all__))
    for name in moelab.__all__:
        assert hasattr(moelab, name), name
    for name in ("MoEConfig", "MoELayer", "RoutingStats", "GatedMLP", "ops", "reference",
                 "build_info", "set_num_threads", "get_num_threads", "__version__"):
        assert name in moelab.__all__, name  # the public API the README and docs promise


def test_version():
    assert isinstance(moelab.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.+-]?\w+)*", moelab.__version__), moelab.__version__


def test_build_info():
    info = moelab.build_info()
    assert isinstance(info, dict)
    assert isinstance(info["openmp"], bool)
    assert isinstance(info["max_threads"], int) and not isinstance(info["max_threads"], bool)
    assert info["max_threads"] >= 1
    assert isinstance(info["simd"], str)
    assert isinstance(info["eigen"], str) and re.match(r"\d+\.\d+", info["eigen"])
    info["openmp"] = "changed"  # a copy: the next call is unaffected
    assert isinstance(moelab.build_info()["openmp"], bool)


def test_get_num_threads_is_a_positive_int():
    n = moelab.get_num_threads()
    assert isinstance(n, int) and n >= 1


def test_reprs_show_dimensions():
    cfg = moelab.MoEConfig(24, 6, 2, 12, scoring="sigmoid", n_shared_experts=1)
    layer = moelab.MoELayer(cfg, seed=0)
    for text in (repr(cfg), repr(layer)):
        for part in ("H=24", "E=6", "k=2", "I=12"):
            assert part in text, text
    assert "sigmoid" in repr(layer)
    _, stats = layer(np.zeros((5, 24), dtype=np.float32), return_stats=True)
    for part in ("T=5", "k=2", "E=6"):
        assert part in repr(stats), repr(stats)
    mlp = moelab.GatedMLP(24, 40, activation="relu")
    for part in ("H=24", "I=40", "relu"):
        assert part in repr(mlp), repr(mlp)


def test_core_classes_have_reprs():
    """Every bound class has a __repr__ of its own (not pybind11's '<... object at 0x...>')."""
    spec = moelab.layer.core_spec(moelab.MoEConfig(24, 6, 2, 12))
    dn_spec = moelab._core.DeltaNetSpec(hidden_size=24, linear_num_key_heads=1,
                                        linear_num_value_heads=2, linear_key_head_dim=8,
                                        linear_value_head_dim=8, linear_conv_kernel_dim=4,
                                        rms_norm_eps=1e-6)
    deltanet = moelab._core.GatedDeltaNet(dn_spec)
    objects = [spec, moelab._core.MoELayer(spec), moelab._core.GatedMLP(24, 40), dn_spec,
               deltanet, deltanet.new_state()]
    rope = moelab._core.RopeSpec(head_dim=24)
    attn_spec = moelab._core.AttentionSpec(hidden_size=24, num_attention_heads=2,
                                           num_key_value_heads=1, head_dim=24, rope=rope,
                                           max_position_embeddings=64)
    attention = moelab._core.Attention(attn_spec)
    objects += [rope, attn_spec, attention, attention.new_cache()]
    mla_spec = moelab._core.MlaSpec(hidden_size=24, num_attention_heads=2, q_lora_rank=0,
                                    kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8,
                                    v_head_dim=8, rope=moelab._core.RopeSpec(head_dim=8),
                                    max_position_embeddings=64)
    mla = moelab._core.MultiHeadLatentAttention(mla_spec)
    objects += [mla_spec, mla, mla.new_cache()]  # the cache's row_dim: 16 + 8
    classes = {name for name in _public(dir(moelab._core))
               if isinstance(getattr(moelab._core, name), type)}
    assert classes == {type(o).__name__ for o in objects}  # a new class needs a case here
    for obj in objects:
        text = repr(obj)
        assert "object at 0x" not in text and "24" in text, text


# --------------------------------------------------------------------------------------------
# the committed stubs
# --------------------------------------------------------------------------------------------
def _public(names) -> set:
    return {n for n in names if not n.startswith("_")}


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def _stub_module_names(tree: ast.Module) -> set:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_stub_and_py_typed_are_committed():
    assert STUB.is_file()
    assert (PACKAGE_DIR / "py.typed").is_file()


def test_stub_lists_exactly_the_public_names_of_core():
    tree = _stub_tree()
    in_stub = _public(_stub_module_names(tree))
    in_core = {n for n in dir(moelab._core) if not (n.startswith("__") and n.endswith("__"))}
    assert in_stub == _public(in_core), (
        f"only in the stub: {sorted(in_stub - in_core)}; "
        f"only in the binary: {sorted(_public(in_core) - in_stub)}")
    assert "__version__" in _stub_module_names(tree)  # declared, since the module has it


def test_stub_classes_list_exactly_the_public_members():
    tree = _stub_tree()
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}

    def members(node: ast.ClassDef) -> set:
        """The class's own members and those of its bases in the stub."""
        own = {item.name if isinstance(item, ast.FunctionDef) else item.target.id
               for item in node.body
               if isinstance(item, ast.FunctionDef)
               or (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name))}
        for base in node.bases:
            assert isinstance(base, ast.Name) and base.id in classes, ast.dump(base)
            own |= members(classes[base.id])
        return own

    for node in classes.values():
        in_stub = _public(members(node))
        in_core = _public(dir(getattr(moelab._core, node.name)))
        assert in_stub == in_core, (
            f"{node.name}: only in the stub: {sorted(in_stub - in_core)}; "
            f"only in the binary: {sorted(in_core - in_stub)}")


# --------------------------------------------------------------------------------------------
# weights are views
# --------------------------------------------------------------------------------------------
def test_weights_are_views_into_the_layer():
    cfg = moelab.MoEConfig(16, 4, 2, 8, n_shared_experts=1)
    layer = moelab.MoELayer(cfg, seed=0)
    x = np.random.default_rng(0).normal(size=(6, 16)).astype(np.float32)
    y0 = layer(x)
    w = layer.weights
    assert list(w) == list(cfg.weight_shapes())
    for name, arr in w.items():
        assert arr.dtype == np.float32 and arr.flags.c_contiguous, name
        assert np.shares_memory(arr, layer.weights[name]), name  # the same memory every time
    w["shared_experts.down_proj"][...] *= 2.0
    y1 = layer(x)
    assert not np.array_equal(y1, y0)
    w["shared_experts.down_proj"][...] /= 2.0  # exact: a power of two
    np.testing.assert_array_equal(layer(x), y0)
    w["router.weight"][...] = 0.0  # all logits 0: ties -> experts 0..k-1 for every token
    _, st = layer(x, return_stats=True)
    np.testing.assert_array_equal(st.topk_ids, np.tile([0, 1], (6, 1)))


def test_weights_view_keeps_layer_memory_alive():
    layer = moelab.MoELayer(moelab.MoEConfig(16, 4, 2, 8), seed=3)
    view = layer.weights["router.weight"]
    expected = view.copy()
    del layer
    np.testing.assert_array_equal(view, expected)  # still valid: the view owns a reference


def test_routing_stats_is_frozen():
    layer = moelab.MoELayer(moelab.MoEConfig(16, 4, 2, 8), seed=0)
    _, st = layer(np.zeros((2, 16), dtype=np.float32), return_stats=True)
    with pytest.raises(AttributeError):
        st.dropped = 3  # type: ignore[misc]


def test_openmp_wait_policy_defaults_to_passive_and_respects_the_user():
    """Spinning OpenMP threads stall on a busy machine: moelab asks libgomp to sleep at barriers
    unless the user chose otherwise (checked in fresh interpreters, before the core loads)."""
    import os
    import subprocess
    import sys

    code = "import os, moelab; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "ACTIVE"


def test_build_info_simd_names_the_kernels_instruction_set():
    info = moelab.build_info()
    assert info["simd"] == info["isa"] == moelab._core.get_isa()
    assert info["simd"] in ("portable", "avx2", "avx512")
    assert isinstance(info["eigen_simd"], str) and info["eigen_simd"]
