"""moelab.hf.load_moe_layer on checkpoints written by transformers 5.23 itself.

End to end: a tiny random model of each family is saved with ``save_pretrained``; each MoE
layer is loaded by moelab from the folder and checked against the transformers module of that
layer on the same hidden states. Also: what ``save_pretrained`` writes per family (per-expert
4.x names for the fused-on-load families, fused tensors for gpt-oss and Llama 4), sharded
checkpoints, bfloat16 / float16 files and tensors, the 4.x names as a state dict, Llama 4's
multimodal wrapper, and a checkpoint that holds a second copy of a layer (an MTP module).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import moelab
from moelab.hf_config import from_hf_config
from tolerances import OUTPUT, ROUTING_WEIGHTS, assert_close, rel_err

import _fixtures as fx

try:
    import safetensors.numpy
    import safetensors.torch
    import torch
    import transformers

    import _hf_blocks as hfb
except ImportError:  # conftest.py fails or skips every test below
    torch = hfb = transformers = safetensors = None

pytestmark = pytest.mark.reference

#: One parity fixture per family whose MoE layers moelab.hf loads (moelab.families()).
FAMILIES = fx.ONE_PER_FAMILY

#: The name transformers 5.23 ``save_pretrained`` gives the first expert tensor of layer 1 (each
#: fixture's ``saved_expert_tensor``): it reverses its load-time fusion for most families
#: (per-expert names), and keeps gpt-oss / Llama 4 fused.
SAVED_EXPERT_NAME = {f: fx.FIXTURES[f].saved_expert_tensor for f in FAMILIES}
#: One family per way of storing the fused experts (layout), and per way of naming the 4.x
#: per-expert tensors and the shared experts.
BY_LAYOUT = fx.one_per(lambda moe: moe.layout)
BY_STORAGE = fx.one_per(lambda moe: (moe.layout, moe.per_expert))
BY_PER_EXPERT_NAMES = tuple(f for f in fx.one_per(lambda moe: (moe.per_expert,
                                                               moe.shared_experts))
                            if fx.registry_moe(f).per_expert is not None)


def _saved_names(folder) -> list:
    names = []
    for f in sorted(folder.glob("*.safetensors")):
        with safetensors.safe_open(str(f), "np") as st:
            names.extend(st.keys())
    return names


def _check_layer(layer: moelab.MoELayer, block, family: str, what: str, seed: int = 0) -> float:
    """Compare a moelab layer with the transformers block on the family's hidden states;
    returns the scale-relative output error."""
    fam = fx.FIXTURES[family]
    x = hfb.hidden_states(fam, seed)                             # (B, S, H)
    ref = hfb.run_block(fam, block, x)
    y, stats = layer(x.numpy(), return_stats=True)
    y = y.reshape(ref["y"].shape)                                # (T, H)
    assert_close(y, ref["y"], OUTPUT, f"{what} output")
    ids, w = hfb.by_id(stats.topk_ids, stats.topk_weights)       # (T, k)
    ref_ids, ref_w = hfb.by_id(ref["ids"], ref["weights"])
    np.testing.assert_array_equal(ids, ref_ids, err_msg=f"{what}: selected experts differ")
    assert_close(w, ref_w, ROUTING_WEIGHTS, f"{what} routing weights")
    return rel_err(y, ref["y"])


@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_then_load_every_moe_layer(family, tmp_path):
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam, seed=5)
    model.save_pretrained(tmp_path)
    names = _saved_names(tmp_path)
    assert SAVED_EXPERT_NAME[family] in names
    saved_config = json.loads((tmp_path / "config.json").read_text())
    moe_layers = from_hf_config(saved_config).moe_layer_indices
    assert fam.moe_layer in moe_layers
    for i in moe_layers:
        layer = moelab.hf.load_moe_layer(tmp_path, i)
        err = _check_layer(layer, hfb.block_of(model, i), family, f"{family} layer {i}", seed=i)
        assert err <= OUTPUT.rtol


def test_the_selections_cover_every_storage():
    """The sharded, low-precision and per-expert tests below run one family per storage; the
    stored forms today (a family that brings a new one joins them by itself)."""
    assert {"deepseek_v3", "gpt_oss", "llama4"} <= set(BY_LAYOUT)
    assert {"mixtral", "deepseek_v3", "gpt_oss", "llama4"} <= set(BY_STORAGE)
    assert {"mixtral", "deepseek_v3"} <= set(BY_PER_EXPERT_NAMES)
    assert any(fx.registry_moe(f).shared_experts == "shared_expert" for f in BY_PER_EXPERT_NAMES)


@pytest.mark.parametrize("family", BY_LAYOUT)
def test_sharded_checkpoint(family, tmp_path):
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam, seed=2)
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("*.safetensors"))) >= 3
    layer = moelab.hf.load_moe_layer(str(tmp_path), fam.moe_layer)
    _check_layer(layer, hfb.block_of(model, fam.moe_layer), family, f"{family} sharded")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("family", BY_STORAGE)
def test_low_precision_checkpoints_and_state_dicts(family, dtype, tmp_path):
    """A bf16 / fp16 model saved to disk, and its state dict of bf16 / fp16 torch tensors, load
    as the float32 values of those weights: the same as the transformers block run in float32
    on the rounded weights."""
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam, seed=3).to(getattr(torch, dtype))
    model.save_pretrained(tmp_path)
    with safetensors.safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        router = next(n for n in f.keys() if n.endswith(("gate.weight", "router.weight"))
                      and f".{fam.moe_layer}." in n)
        assert f.get_slice(router).get_dtype() == {"bfloat16": "BF16", "float16": "F16"}[dtype]
    state = model.state_dict()
    model = model.float()                                        # the rounded weights, in fp32
    block = hfb.block_of(model, fam.moe_layer)
    from_disk = moelab.hf.load_moe_layer(tmp_path, fam.moe_layer)
    from_state = moelab.hf.load_moe_layer(state, fam.moe_layer, config=model.config)
    for name, value in from_disk.weights.items():
        np.testing.assert_array_equal(value, from_state.weights[name], err_msg=name)
    _check_layer(from_disk, block, family, f"{family} {dtype}")


@pytest.mark.parametrize("family", BY_PER_EXPERT_NAMES)
def test_per_expert_names_as_a_state_dict(family, tmp_path):
    """The 4.x per-expert names (what save_pretrained writes for these families), given as a
    dict of torch tensors and as a dict of NumPy arrays, with the config as a path."""
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam, seed=4)
    model.save_pretrained(tmp_path)
    torch_state = safetensors.torch.load_file(str(tmp_path / "model.safetensors"))
    numpy_state = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    assert SAVED_EXPERT_NAME[family] in torch_state
    block = hfb.block_of(model, fam.moe_layer)
    for state in (torch_state, numpy_state):
        layer = moelab.hf.load_moe_layer(state, fam.moe_layer, config=tmp_path / "config.json")
        _check_layer(layer, block, family, f"{family} per-expert")


def test_llama4_multimodal_checkpoint(tmp_path):
    """Llama4ForConditionalGeneration: the text layers sit under ``language_model.model.``,
    next to vision layers that also have an ``mlp``; config.json nests a ``text_config``."""
    text = fx.FIXTURES["llama4"].make_config().to_dict()
    vision = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                  image_size=28, patch_size=14, vision_output_dim=16, projector_input_dim=16,
                  projector_output_dim=16)
    torch.manual_seed(0)
    model = transformers.Llama4ForConditionalGeneration(
        transformers.Llama4Config(text_config=text, vision_config=vision)).eval()
    block = hfb.block_of(model, 1)
    hfb.randomize_block(block, 11)
    model.save_pretrained(tmp_path)
    names = _saved_names(tmp_path)
    assert "language_model.model.layers.1.feed_forward.router.weight" in names
    assert any(n.startswith("vision_model.model.layers.0.mlp.") for n in names)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llama4"
    _check_layer(moelab.hf.load_moe_layer(tmp_path, 1), block, "llama4", "llama4 multimodal file")
    layer = moelab.hf.load_moe_layer(model.state_dict(), 1, config=model.config)
    _check_layer(layer, block, "llama4", "llama4 multimodal state dict")
    with pytest.raises(ValueError, match="layer 0 .*dense"):
        moelab.hf.load_moe_layer(tmp_path, 0)


def test_a_second_copy_of_the_layer_under_another_prefix_is_ignored():
    """Qwen3-Next and DeepSeek-V3 checkpoints hold MTP modules (``mtp.layers.0.mlp...``);
    the decoder's layer is the one under ``model.``. Two unknown prefixes are ambiguous."""
    fam = fx.FIXTURES["qwen3_next"]
    model = hfb.make_model(fam, seed=6)
    state = model.state_dict()
    block_prefix = f"model.layers.{fam.moe_layer}.mlp."
    mtp = {"mtp" + n[len("model"):]: torch.zeros_like(v) for n, v in state.items()
           if n.startswith(block_prefix)}
    layer = moelab.hf.load_moe_layer({**state, **mtp}, fam.moe_layer, config=model.config)
    _check_layer(layer, hfb.block_of(model, fam.moe_layer), "qwen3_next", "qwen3_next + mtp")
    twice = {p + n[len("model."):]: v for n, v in state.items() if n.startswith(block_prefix)
             for p in ("first.", "second.")}
    with pytest.raises(ValueError, match="several MoE routers"):
        moelab.hf.load_moe_layer(twice, fam.moe_layer, config=model.config)


@pytest.mark.parametrize("family", [f for f in FAMILIES if fx.FIXTURES[f].dense_layer is not None])
def test_dense_layer_is_a_value_error_naming_it(family, tmp_path):
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam)
    model.save_pretrained(tmp_path)
    assert fam.dense_layer is not None
    with pytest.raises(ValueError, match=f"layer {fam.dense_layer} .*dense"):
        moelab.hf.load_moe_layer(tmp_path, fam.dense_layer)
    with pytest.raises(IndexError, match="layer_idx"):
        moelab.hf.load_moe_layer(tmp_path, model.config.num_hidden_layers)
