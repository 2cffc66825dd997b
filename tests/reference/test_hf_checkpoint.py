"""moelab.hf without transformers: layout conversions, safetensors reading, and every error.

These tests need neither torch nor transformers (no ``reference`` marker): the checkpoints are
written with ``safetensors.numpy`` or byte by byte, and the configs are plain dicts. The
conversions are checked against arrays assembled by hand from the documented layouts
(docs/semantics.md, "Weights"); parity with transformers itself is in test_hf_parity.py.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import safetensors.numpy

import moelab
import moelab.hf
from safetensors_writer import write_raw_safetensors

E, H, I, K = 4, 16, 8, 2

MIXTRAL = dict(model_type="mixtral", vocab_size=64, hidden_size=H, intermediate_size=I,
               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
               num_local_experts=E, num_experts_per_tok=K)
GPT_OSS = dict(model_type="gpt_oss", vocab_size=64, hidden_size=H, intermediate_size=I,
               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
               num_local_experts=E, num_experts_per_tok=K)
LLAMA4 = dict(model_type="llama4_text", vocab_size=64, hidden_size=H, intermediate_size=I,
              intermediate_size_mlp=24, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1, head_dim=8, num_local_experts=E, num_experts_per_tok=1,
              interleave_moe_layer_step=2)
DEEPSEEK = dict(model_type="deepseek_v3", vocab_size=64, hidden_size=H, intermediate_size=24,
                moe_intermediate_size=I, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, n_routed_experts=E, num_experts_per_tok=K, n_group=2,
                topk_group=1, routed_scaling_factor=2.5, norm_topk_prob=True,
                n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=8, kv_lora_rank=8,
                qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4)


def _randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def mixtral_state(rng, layer=1, prefix="model."):
    """Mixtral 4.x names for one layer, and the canonical weights they must become."""
    p = f"{prefix}layers.{layer}.block_sparse_moe."
    state = {p + "gate.weight": _randn(rng, E, H)}
    gate_up, down = np.empty((E, 2 * I, H), np.float32), np.empty((E, H, I), np.float32)
    for e in range(E):
        w1, w3, w2 = _randn(rng, I, H), _randn(rng, I, H), _randn(rng, H, I)
        state[f"{p}experts.{e}.w1.weight"] = w1     # gate
        state[f"{p}experts.{e}.w3.weight"] = w3     # up
        state[f"{p}experts.{e}.w2.weight"] = w2     # down
        gate_up[e, :I], gate_up[e, I:], down[e] = w1, w3, w2
    canonical = {"router.weight": state[p + "gate.weight"], "experts.gate_up_proj": gate_up,
                 "experts.down_proj": down}
    return state, canonical


def _assert_weights(weights, canonical):
    assert sorted(weights) == sorted(canonical)
    for name, value in canonical.items():
        assert weights[name].dtype == np.float32 and weights[name].flags.c_contiguous
        np.testing.assert_array_equal(weights[name], value, err_msg=name)


# ---------------------------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------------------------
def test_mixtral_w1_w3_w2_names(rng):
    state, canonical = mixtral_state(rng)
    cfg, weights = moelab.hf.load_moe_weights(state, 1, config=MIXTRAL)
    assert (cfg.num_experts, cfg.num_experts_per_tok, cfg.moe_intermediate_size) == (E, K, I)
    _assert_weights(weights, canonical)
    layer = moelab.hf.load_moe_layer(state, 1, config=MIXTRAL)
    _assert_weights(layer.weights, canonical)


def test_gpt_oss_interleaved_transposed_experts(rng):
    """gpt-oss stores x @ W with columns gate0, up0, gate1, up1, ... and biases alike."""
    gate, up = _randn(rng, E, H, I), _randn(rng, E, H, I)            # (E, H, I) each, x @ W
    gate_b, up_b = _randn(rng, E, I), _randn(rng, E, I)
    gu = np.stack([gate, up], axis=-1).reshape(E, H, 2 * I)           # interleaved
    gu_b = np.stack([gate_b, up_b], axis=-1).reshape(E, 2 * I)
    down, down_b = _randn(rng, E, I, H), _randn(rng, E, H)
    p = "model.layers.0.mlp."
    state = {p + "router.weight": _randn(rng, E, H), p + "router.bias": _randn(rng, E),
             p + "experts.gate_up_proj": gu, p + "experts.gate_up_proj_bias": gu_b,
             p + "experts.down_proj": down, p + "experts.down_proj_bias": down_b}
    cfg, weights = moelab.hf.load_moe_weights(state, 0, config=GPT_OSS)
    assert cfg.scoring == "topk_softmax" and cfg.activation == "swiglu_oai"
    _assert_weights(weights, {
        "router.weight": state[p + "router.weight"], "router.bias": state[p + "router.bias"],
        "experts.gate_up_proj": np.concatenate([gate, up], axis=2).transpose(0, 2, 1),
        "experts.gate_up_proj_bias": np.concatenate([gate_b, up_b], axis=1),
        "experts.down_proj": down.transpose(0, 2, 1), "experts.down_proj_bias": down_b})


def test_llama4_transposed_experts_and_shared_expert(rng):
    gu, down = _randn(rng, E, H, 2 * I), _randn(rng, E, I, H)         # x @ W, gate columns first
    p = "model.layers.1.feed_forward."
    sg, su, sd = _randn(rng, I, H), _randn(rng, I, H), _randn(rng, H, I)
    state = {p + "router.weight": _randn(rng, E, H), p + "experts.gate_up_proj": gu,
             p + "experts.down_proj": down, p + "shared_expert.gate_proj.weight": sg,
             p + "shared_expert.up_proj.weight": su, p + "shared_expert.down_proj.weight": sd}
    cfg, weights = moelab.hf.load_moe_weights(state, 1, config=LLAMA4)
    assert cfg.scoring == "llama4" and cfg.shared_width == I
    _assert_weights(weights, {
        "router.weight": state[p + "router.weight"],
        "experts.gate_up_proj": gu.transpose(0, 2, 1), "experts.down_proj": down.transpose(0, 2, 1),
        "shared_experts.gate_up_proj": np.concatenate([sg, su]), "shared_experts.down_proj": sd})
    with pytest.raises(ValueError, match="layer 0 .*dense"):
        moelab.hf.load_moe_weights(state, 0, config=LLAMA4)


def test_deepseek_per_expert_names_shared_experts_and_correction_bias(rng):
    p = "model.layers.1.mlp."
    state = {p + "gate.weight": _randn(rng, E, H),
             p + "gate.e_score_correction_bias": _randn(rng, E)}
    gate_up, down = np.empty((E, 2 * I, H), np.float32), np.empty((E, H, I), np.float32)
    for e in range(E):
        for part, rows in (("gate_proj", slice(0, I)), ("up_proj", slice(I, 2 * I))):
            gate_up[e, rows] = state[f"{p}experts.{e}.{part}.weight"] = _randn(rng, I, H)
        down[e] = state[f"{p}experts.{e}.down_proj.weight"] = _randn(rng, H, I)
    sg, su, sd = _randn(rng, I, H), _randn(rng, I, H), _randn(rng, H, I)
    state.update({p + "shared_experts.gate_proj.weight": sg,
                  p + "shared_experts.up_proj.weight": su,
                  p + "shared_experts.down_proj.weight": sd})
    cfg, weights = moelab.hf.load_moe_weights(state, 1, config=DEEPSEEK)
    assert cfg.correction_bias and cfg.n_group == 2 and cfg.routed_scaling_factor == 2.5
    _assert_weights(weights, {
        "router.weight": state[p + "gate.weight"],
        "router.e_score_correction_bias": state[p + "gate.e_score_correction_bias"],
        "experts.gate_up_proj": gate_up, "experts.down_proj": down,
        "shared_experts.gate_up_proj": np.concatenate([sg, su]), "shared_experts.down_proj": sd})


def test_float16_float64_and_prefixes(rng):
    """Any float dtype converts to float32; the model prefix may be anything, or nothing."""
    state, canonical = mixtral_state(rng, prefix="")
    state = {n: (v.astype(np.float64) if "w2" in n else v.astype(np.float16))
             for n, v in state.items()}
    _, weights = moelab.hf.load_moe_weights(state, 1, config=MIXTRAL)
    expected = {n: (v.astype(np.float16).astype(np.float32) if n != "experts.down_proj" else v)
                for n, v in canonical.items()}
    _assert_weights(weights, expected)


# ---------------------------------------------------------------------------------------------
# safetensors folders and files
# ---------------------------------------------------------------------------------------------
def _write_config(folder, config):
    (folder / "config.json").write_text(json.dumps(config))


def test_folder_single_file_and_sharded_index(rng, tmp_path):
    state, canonical = mixtral_state(rng)
    single = tmp_path / "single"
    single.mkdir()
    _write_config(single, MIXTRAL)
    safetensors.numpy.save_file(state, str(single / "model.safetensors"))
    _assert_weights(moelab.hf.load_moe_weights(single, 1)[1], canonical)
    _assert_weights(moelab.hf.load_moe_weights(single / "model.safetensors", 1,
                                               config=single / "config.json")[1], canonical)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    _write_config(sharded, MIXTRAL)
    names = sorted(state)
    weight_map = {}
    for s in range(3):
        shard = f"model-{s + 1:05d}-of-00003.safetensors"
        part = {n: state[n] for n in names[s::3]}
        safetensors.numpy.save_file(part, str(sharded / shard))
        weight_map.update({n: shard for n in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _assert_weights(moelab.hf.load_moe_weights(str(sharded), 1)[1], canonical)

    # several *.safetensors without an index
    (sharded / "model.safetensors.index.json").unlink()
    _assert_weights(moelab.hf.load_moe_weights(sharded, 1)[1], canonical)


def test_bfloat16_is_decoded_without_torch(rng, tmp_path):
    """BF16 = the high 16 bits of a float32: values with zero low bits come back exactly."""
    state, canonical = mixtral_state(rng)
    raw = {}
    for name, value in state.items():
        bits = value.view(np.uint32) & np.uint32(0xFFFF0000)
        state[name] = bits.view(np.float32)
        raw[name] = ("BF16", value.shape, (bits >> np.uint32(16)).astype("<u2").tobytes())
    write_raw_safetensors(tmp_path / "model.safetensors", raw)
    _write_config(tmp_path, MIXTRAL)
    _, expected = mixtral_state(np.random.default_rng(0))  # structure only; values below
    _, weights = moelab.hf.load_moe_weights(tmp_path, 1)
    p = "model.layers.1.block_sparse_moe."
    np.testing.assert_array_equal(weights["router.weight"], state[p + "gate.weight"])
    np.testing.assert_array_equal(weights["experts.gate_up_proj"][2, I:],
                                  state[p + "experts.2.w3.weight"])
    np.testing.assert_array_equal(weights["experts.down_proj"][3], state[p + "experts.3.w2.weight"])
    assert sorted(weights) == sorted(expected)


# ---------------------------------------------------------------------------------------------
# errors: each names the tensor, key or file; nothing is half-loaded
# ---------------------------------------------------------------------------------------------
def test_missing_tensor(rng):
    state, _ = mixtral_state(rng)
    del state["model.layers.1.block_sparse_moe.experts.3.w3.weight"]
    with pytest.raises(ValueError, match=r"missing tensor.*experts\.3\.w3\.weight"):
        moelab.hf.load_moe_layer(state, 1, config=MIXTRAL)


def test_wrong_shape_names_the_tensor_and_both_shapes(rng):
    state, _ = mixtral_state(rng)
    state["model.layers.1.block_sparse_moe.experts.1.w2.weight"] = _randn(rng, I, H)
    with pytest.raises(ValueError,
                       match=r"experts\.1\.w2\.weight: expected shape \(16, 8\), got \(8, 16\)"):
        moelab.hf.load_moe_layer(state, 1, config=MIXTRAL)


def test_unreadable_dtypes(rng, tmp_path):
    state, _ = mixtral_state(rng)
    name = "model.layers.1.block_sparse_moe.gate.weight"
    with pytest.raises(TypeError, match=r"gate\.weight: dtype int8"):
        moelab.hf.load_moe_layer({**state, name: state[name].astype(np.int8)}, 1, config=MIXTRAL)
    raw = {n: ("F32", v.shape, v.astype("<f4").tobytes()) for n, v in state.items()}
    raw[name] = ("F8_E4M3", (E, H), bytes(E * H))
    write_raw_safetensors(tmp_path / "model.safetensors", raw)
    _write_config(tmp_path, MIXTRAL)
    with pytest.raises(TypeError, match=r"gate\.weight: dtype F8_E4M3"):
        moelab.hf.load_moe_layer(tmp_path, 1)
    with pytest.raises(TypeError, match="gate.weight"):
        moelab.hf.load_moe_layer({**state, name: [[1.0] * H] * E}, 1, config=MIXTRAL)


def test_mxfp4_experts_are_named(rng):
    p = "model.layers.0.mlp."
    state = {p + "router.weight": _randn(rng, E, H), p + "router.bias": _randn(rng, E),
             p + "experts.gate_up_proj_blocks": np.zeros((E, 2 * I, 1, 16), np.uint8),
             p + "experts.gate_up_proj_scales": np.zeros((E, 2 * I, 1), np.uint8),
             p + "experts.gate_up_proj_bias": _randn(rng, E, 2 * I),
             p + "experts.down_proj": _randn(rng, E, I, H),
             p + "experts.down_proj_bias": _randn(rng, E, H)}
    with pytest.raises(TypeError, match=r"gate_up_proj: stored quantized as .*gate_up_proj_blocks"):
        moelab.hf.load_moe_layer(state, 0, config=GPT_OSS)


def test_unexpected_and_ambiguous_tensors(rng):
    state, _ = mixtral_state(rng)
    p = "model.layers.1.block_sparse_moe."
    with pytest.raises(ValueError, match=r"unexpected tensor.*experts\.0\.w1\.weight_scale_inv"):
        moelab.hf.load_moe_layer({**state, p + "experts.0.w1.weight_scale_inv": _randn(rng, 1)},
                                 1, config=MIXTRAL)
    fused = {p + "experts.gate_up_proj": _randn(rng, E, 2 * I, H)}
    with pytest.raises(ValueError, match="both fused"):
        moelab.hf.load_moe_layer({**state, **fused}, 1, config=MIXTRAL)


def test_nan_is_refused_and_no_layer_is_built(rng, monkeypatch):
    built = []

    class CountingLayer(moelab.MoELayer):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(moelab.hf, "MoELayer", CountingLayer)
    state, _ = mixtral_state(rng)
    last = f"model.layers.1.block_sparse_moe.experts.{E - 1}.w2.weight"
    state[last] = state[last].copy()
    state[last][3, 2] = np.nan
    with pytest.raises(ValueError, match=rf"experts\.{E - 1}\.w2\.weight: holds NaN"):
        moelab.hf.load_moe_layer(state, 1, config=MIXTRAL)
    assert built == []
    state[last][3, 2] = 0.0
    assert isinstance(moelab.hf.load_moe_layer(state, 1, config=MIXTRAL), CountingLayer)
    assert built == [1]


def test_model_types_moelab_does_not_load(rng):
    state, _ = mixtral_state(rng)
    llama = dict(model_type="llama", vocab_size=64, hidden_size=H, intermediate_size=I,
                 num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    with pytest.raises(ValueError, match="model_type 'llama'"):
        moelab.hf.load_moe_layer(state, 1, config=llama)
    phimoe = {**MIXTRAL, "model_type": "phimoe"}
    with pytest.raises(ValueError, match="phimoe.*sparsemixer"):
        moelab.hf.load_moe_layer(state, 1, config=phimoe)


def test_bad_arguments(rng, tmp_path):
    state, _ = mixtral_state(rng)
    with pytest.raises(ValueError, match="config is required"):
        moelab.hf.load_moe_layer(state, 1)
    with pytest.raises(TypeError, match="source must be"):
        moelab.hf.load_moe_layer([1, 2], 1, config=MIXTRAL)
    with pytest.raises(TypeError, match="config must be"):
        moelab.hf.load_moe_layer(state, 1, config=42)
    with pytest.raises(TypeError, match="layer_idx"):
        moelab.hf.load_moe_layer(state, True, config=MIXTRAL)
    with pytest.raises(TypeError, match="layer_idx"):
        moelab.hf.load_moe_layer(state, "1", config=MIXTRAL)
    with pytest.raises(IndexError, match="layer_idx=2"):
        moelab.hf.load_moe_layer(state, 2, config=MIXTRAL)
    with pytest.raises(IndexError, match="layer_idx=-1"):
        moelab.hf.load_moe_layer(state, -1, config=MIXTRAL)
    with pytest.raises(ValueError, match="no MoE router weight"):
        moelab.hf.load_moe_layer(state, 0, config=MIXTRAL)
    with pytest.raises(TypeError, match="keys must be str"):
        moelab.hf.load_moe_layer({**state, 3: state[next(iter(state))]}, 1, config=MIXTRAL)
    with pytest.raises(ValueError, match=r"source: '.*nope' does not exist \(no such file"):
        moelab.hf.load_moe_layer(tmp_path / "nope", 1, config=MIXTRAL)
    with pytest.raises(ValueError, match=r"config: '.*nope.json' does not exist \(no such file"):
        moelab.hf.load_moe_layer(state, 1, config=tmp_path / "nope.json")
    with pytest.raises(ValueError, match="no config file"):
        moelab.hf.load_moe_layer(tmp_path, 1)


def test_broken_files(rng, tmp_path):
    state, _ = mixtral_state(rng)
    _write_config(tmp_path, MIXTRAL)
    with pytest.raises(ValueError, match=r"no \*\.safetensors files"):
        moelab.hf.load_moe_layer(tmp_path, 1)
    path = tmp_path / "model.safetensors"
    safetensors.numpy.save_file(state, str(path))
    good = path.read_bytes()
    path.write_bytes(good[:5])
    with pytest.raises(ValueError, match="model.safetensors: not a safetensors file"):
        moelab.hf.load_moe_layer(tmp_path, 1)
    path.write_bytes(struct.pack("<Q", 10 ** 6) + good[8:100])
    with pytest.raises(ValueError, match="model.safetensors: not a safetensors file"):
        moelab.hf.load_moe_layer(tmp_path, 1)
    path.write_bytes(good[:-4])  # the last tensor's data is cut short
    with pytest.raises(ValueError, match="model.safetensors: broken header entry"):
        moelab.hf.load_moe_layer(tmp_path, 1)
    path.write_bytes(good)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {n: "model-00002-of-00002.safetensors" for n in state}}))
    with pytest.raises(ValueError, match="shard model-00002-of-00002.safetensors .*missing"):
        moelab.hf.load_moe_layer(tmp_path, 1)
    (tmp_path / "model.safetensors.index.json").write_text("{")
    with pytest.raises(ValueError, match="not a safetensors index"):
        moelab.hf.load_moe_layer(tmp_path, 1)


def test_moelab_hf_never_imports_torch():
    """``import moelab`` and loading a layer from a state dict leave torch unimported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys, json, numpy as np, moelab\n"
        "cfg = json.loads(sys.argv[1])\n"
        "p = 'model.layers.1.block_sparse_moe.'\n"
        f"E, H, I = {E}, {H}, {I}\n"
        "rng = np.random.default_rng(0)\n"
        "state = {p + 'gate.weight': rng.standard_normal((E, H))}\n"
        "for e in range(E):\n"
        "    for w, s in (('w1', (I, H)), ('w3', (I, H)), ('w2', (H, I))):\n"
        "        state[f'{p}experts.{e}.{w}.weight'] = rng.standard_normal(s)\n"
        "layer = moelab.hf.load_moe_layer(state, 1, config=cfg)\n"
        "print('torch' in sys.modules, layer.config.num_experts)\n")
    python_path = [str(Path(moelab.__file__).resolve().parent.parent)]
    if os.environ.get("PYTHONPATH"):
        python_path.append(os.environ["PYTHONPATH"])
    run = subprocess.run([sys.executable, "-c", script, json.dumps(MIXTRAL)], capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(python_path)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", str(E)]


def test_progress_bar_over_the_tensors_read(rng, capsys):
    state, _ = mixtral_state(rng)
    on = moelab.hf.load_moe_weights(state, 1, MIXTRAL, progress=True)[1]
    err_on = capsys.readouterr().err
    off = moelab.hf.load_moe_weights(state, 1, MIXTRAL, progress=False)[1]
    err_off = capsys.readouterr().err
    auto = moelab.hf.load_moe_weights(state, 1, MIXTRAL)[1]   # stderr is not a terminal here
    err_auto = capsys.readouterr().err
    n_tensors = 1 + 3 * MIXTRAL["num_local_experts"]          # router + w1, w2, w3 per expert
    assert "reading tensors" in err_on and f"/{n_tensors} [" in err_on
    assert err_off == "" and err_auto == ""
    for name in on:
        np.testing.assert_array_equal(on[name], off[name])
        np.testing.assert_array_equal(on[name], auto[name])
    with pytest.raises(TypeError, match="progress"):
        moelab.hf.load_moe_weights(state, 1, MIXTRAL, progress="yes")
