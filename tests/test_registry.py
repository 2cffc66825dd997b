"""The family registry: what it lists, what it refuses, and that a family which registers is
used by every part of moelab that asks it (config parsing, presets, the checkpoint loader)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import moelab
from moelab import registry
from moelab.hf_config import Keys, decoder, gqa_attention, heads
from moelab.registry import (CheckpointNames, Family, MoEBlockNames, ParityFixture, TextWrapper,
                             register)


def test_families_is_the_registry():
    fams = moelab.families()
    assert callable(moelab.families) and fams == registry.families()
    assert all(isinstance(f, Family) for f in fams)
    assert len({f.model_type for f in fams}) == len(fams)
    for f in fams:
        for name in f.names:
            assert registry.family(name) is f and registry.lookup(name) is f
        if f.wraps is not None:
            assert registry.family(f.wraps.text_model_type).parse is not None
        assert all(isinstance(p, ParityFixture) for p in f.parity)
    assert registry.lookup("bert") is None
    with pytest.raises(ValueError, match="unknown model_type 'bert'; registered: .*mixtral"):
        registry.family("bert")


def test_model_types_and_loadable_model_types():
    types = registry.model_types()
    assert list(types) == sorted(types) and {"grok-2", "llama4", "mistral3"} <= set(types)
    loadable = registry.loadable_model_types()
    assert set(loadable) <= set(types)
    for t in types:
        fam = registry.family(t)
        text = registry.family(fam.wraps.text_model_type) if fam.wraps else fam
        assert (t in loadable) == (text.checkpoint is not None), t
    assert moelab.hf.LOADABLE_MODEL_TYPES == loadable
    assert {"mixtral", "deepseek_v3", "kimi_k2", "gpt_oss", "llama4"} <= set(loadable)
    assert not {"grok", "phimoe", "dbrx", "llama"} & set(loadable)


def test_presets_belong_to_their_family():
    for fam in moelab.families():
        for name, cfg in fam.presets.items():
            assert cfg.name == name and cfg.model_type == fam.model_type
            assert moelab.preset(name) is cfg
        for alias, target in fam.preset_aliases.items():
            assert moelab.preset(alias).replace(name=target) == fam.presets[target]


def test_register_refuses_what_would_break_the_registry():
    mixtral = registry.family("mixtral")
    before = (moelab.families(), registry.model_types(), moelab.list_presets(True))
    cases = [
        (Family("mixtral", parse=mixtral.parse), "model_type 'mixtral' is already registered"),
        (Family("toy", parse=mixtral.parse, other_names=("grok-1",)), "'grok-1' is already"),
        (Family("toy"), "give either a parser or a TextWrapper"),
        (Family("toy", parse=mixtral.parse, wraps=TextWrapper("mixtral")), "either a parser"),
        (Family("toy", parse=mixtral.parse, presets={"mixtral-8x7b": mixtral.presets[
            "mixtral-8x7b"]}), "preset 'mixtral-8x7b' is already registered"),
        (Family("toy", parse=mixtral.parse, presets={"toy-1": mixtral.presets["mixtral-8x7b"]}),
         "must be a ModelConfig with name='toy-1' and model_type='toy'"),
        (Family("toy", parse=mixtral.parse, preset_aliases={"toy-2": "mixtral-8x7b"}),
         "preset alias 'toy-2' -> 'mixtral-8x7b' must be a new name for one of its own"),
    ]
    for fam, match in cases:
        with pytest.raises(ValueError, match=match):
            register(fam)
    with pytest.raises(TypeError, match="takes a moelab.registry.Family"):
        register("toy")
    assert (moelab.families(), registry.model_types(), moelab.list_presets(True)) == before


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry, restored after the test (so that a test may register a family)."""
    monkeypatch.setattr(registry, "_FAMILIES", list(registry._FAMILIES))
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))


def _toy_parse(k: Keys) -> moelab.ModelConfig:
    H, n_h, n_kv, d = heads(k)
    moe = moelab.MoEConfig(hidden_size=H, num_experts=k("num_experts"),
                           num_experts_per_tok=k("num_experts_per_tok"),
                           moe_intermediate_size=k("moe_intermediate_size"))
    return decoder(k, H, attention=gqa_attention(k, n_h=n_h, n_kv=n_kv, d=d), moe=moe)


def test_a_registered_family_is_used_everywhere(scratch_registry, rng, tmp_path):
    """A family is one record: once registered, from_hf_config parses it, its preset is listed,
    moelab.hf loads its layers by its names, and the supported types list it."""
    toy = moelab.ModelConfig(
        name="toy-1", model_type="toy", vocab_size=32, hidden_size=8, num_hidden_layers=2,
        attention=moelab.AttentionConfig(num_attention_heads=2, num_key_value_heads=1,
                                         head_dim=4),
        moe=moelab.MoEConfig(hidden_size=8, num_experts=4, num_experts_per_tok=2,
                             moe_intermediate_size=4))
    register(Family("toy", parse=_toy_parse, defaults=dict(rms_norm_eps=1e-6,
                                                           tie_word_embeddings=False),
                    presets={"toy-1": toy},
                    checkpoint=CheckpointNames(MoEBlockNames(blocks=("moe",), router="route",
                                                             per_expert=None))))
    assert "toy" in moelab.hf_config.SUPPORTED_MODEL_TYPES and "toy" in registry.model_types()
    assert "toy" in moelab.hf.LOADABLE_MODEL_TYPES
    assert moelab.list_presets()[-1] != "toy-1" and "toy-1" in moelab.list_presets()
    config = dict(model_type="toy", vocab_size=32, hidden_size=8, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, num_experts=4,
                  num_experts_per_tok=2, moe_intermediate_size=4)
    cfg = moelab.from_hf_config(config)
    assert moelab.count_params(cfg) == moelab.count_params("toy-1")
    weights = {n: rng.standard_normal(s).astype("float32")
               for n, s in cfg.moe.weight_shapes().items()}
    state = {"model.layers.1.moe.route.weight": weights["router.weight"],
             "model.layers.1.moe.experts.gate_up_proj": weights["experts.gate_up_proj"],
             "model.layers.1.moe.experts.down_proj": weights["experts.down_proj"]}
    layer = moelab.hf.load_moe_layer(state, 1, config=config)
    for name, value in weights.items():
        assert (layer.weights[name] == value).all(), name
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert moelab.from_hf_config(tmp_path) == cfg


def test_importing_moelab_and_listing_families_needs_neither_torch_nor_transformers():
    script = ("import sys, moelab\n"
              "fixtures = [p.config for f in moelab.families() for p in f.parity]\n"
              "print(len(fixtures) > 0, 'torch' in sys.modules, 'transformers' in sys.modules)\n")
    python_path = [str(Path(moelab.__file__).resolve().parent.parent)]
    if os.environ.get("PYTHONPATH"):
        python_path.append(os.environ["PYTHONPATH"])
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(python_path)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "False", "False"]
