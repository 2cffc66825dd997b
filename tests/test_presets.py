"""Presets (the released configs) and the ModelConfig / AttentionConfig contracts."""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import pytest

import moelab
from moelab import AttentionConfig, ModelConfig, MoEConfig

REQUIRED = ["deepseek-v3", "kimi-k2", "glm-4.5", "glm-4.5-air", "qwen3-30b-a3b",
            "qwen3-235b-a22b", "qwen3-next-80b-a3b", "llama4-scout", "llama4-maverick",
            "gpt-oss-20b", "gpt-oss-120b", "grok-2", "mixtral-8x7b", "olmo2-7b", "olmo2-13b",
            "gemma3-27b", "mistral-small-3.1-24b", "smollm3-3b"]
MOE = REQUIRED[:13]
DENSE = REQUIRED[13:]
FAMILY_DIR = pathlib.Path(moelab.__file__).parent / "families"
_CONFIGS = ("ModelConfig", "MoEConfig", "AttentionConfig")


def _tiny(**kw) -> ModelConfig:
    base = dict(model_type="toy", vocab_size=32, hidden_size=16, num_hidden_layers=4,
                attention=AttentionConfig(num_attention_heads=2, num_key_value_heads=1,
                                          head_dim=8),
                intermediate_size=32)
    base.update(kw)
    return ModelConfig(**base)


def _moe(**kw) -> MoEConfig:
    base = dict(hidden_size=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=8)
    base.update(kw)
    return MoEConfig(**base)


# --- registry -----------------------------------------------------------------------------
def test_list_presets_has_every_required_model():
    names = moelab.list_presets()
    assert set(REQUIRED) <= set(names)
    # every preset a family registers, once; MoE models first
    assert sorted(names) == sorted(n for f in moelab.families() for n in f.presets)
    moe = [moelab.preset(n).is_moe for n in names]
    assert moe == sorted(moe, reverse=True)
    assert names[:len(MOE)] == MOE and [n for n in names if n in DENSE] == DENSE  # kept order
    assert "deepseek-r1" not in names
    assert "deepseek-r1" in moelab.list_presets(include_aliases=True)


@pytest.mark.parametrize("name", moelab.list_presets())
def test_preset_is_a_named_model_config(name):
    cfg = moelab.preset(name)
    assert isinstance(cfg, ModelConfig)
    assert cfg.name == name and cfg.display_name == name
    assert cfg.is_moe == (name in MOE) or name not in REQUIRED
    assert moelab.preset(name.upper()) is cfg  # case-insensitive, the same frozen object
    assert cfg in moelab.registry.family(cfg.model_type).presets.values()


def test_deepseek_r1_is_an_alias_of_v3():
    r1, v3 = moelab.preset("deepseek-r1"), moelab.preset("deepseek-v3")
    assert r1.name == "deepseek-r1"
    assert r1.replace(name="deepseek-v3") == v3


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="unknown preset 'gpt-5'") as info:
        moelab.preset("gpt-5")
    for name in moelab.list_presets(include_aliases=True):
        assert name in str(info.value)


def test_preset_name_must_be_str():
    with pytest.raises(TypeError, match="name must be a str"):
        moelab.preset(3)


def test_presets_are_frozen():
    cfg = moelab.preset("qwen3-30b-a3b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hidden_size = 8
    assert hash(cfg) == hash(moelab.preset("qwen3-30b-a3b"))


def _is_config_call(node) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
        node.func.id in _CONFIGS


def _preset_definitions(tree: ast.Module):
    """{name: value} of the module-level assignments that define presets (``X = ModelConfig(
    name=..., ...)``) and of the constants they use (``_NO_ROPE = ...``)."""
    assigned = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    presets = {n: v for n, v in assigned.items() if _is_config_call(v) and v.func.id ==
               "ModelConfig" and any(k.arg == "name" for k in v.keywords)}
    used = {n.id for v in presets.values() for n in ast.walk(v) if isinstance(n, ast.Name)}
    while True:  # the constants they use, and those these use
        more = {n.id for c in used & set(assigned) for n in ast.walk(assigned[c])
                if isinstance(n, ast.Name)} - used
        if not more:
            break
        used |= more
    return presets, {n: assigned[n] for n in used if n in assigned and n not in presets}


def _data_problems(node, lines, where) -> list:
    """What in a preset value is not data, or has no source comment."""
    if isinstance(node, ast.Constant) or (isinstance(node, ast.Name) and node.id in _CONFIGS):
        return []
    if isinstance(node, ast.Name):
        return [] if node.id.startswith("_") else [f"{where}: uses {node.id}, not a constant"]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [p for e in node.elts for p in _data_problems(e, lines, where)]
    if isinstance(node, ast.BinOp):
        return _data_problems(node.left, lines, where) + _data_problems(node.right, lines, where)
    if isinstance(node, ast.UnaryOp):
        return _data_problems(node.operand, lines, where)
    if not _is_config_call(node):
        return [f"{where}:{node.lineno}: {ast.unparse(node)} is code, not data"]
    problems = [f"{where}:{node.lineno}: positional arguments"] if node.args else []
    for kw in node.keywords:
        problems += _data_problems(kw.value, lines, where)
        sourced = kw.arg in ("name", "model_type") or _is_config_call(kw.value) or (
            isinstance(kw.value, ast.Name) and kw.value.id.startswith("_"))
        if not sourced and "#" not in lines[kw.lineno - 1]:
            problems.append(f"{where}:{kw.lineno}: {lines[kw.lineno - 1].strip()} has no source")
    return problems


_PRESET_FILES = sorted(p.name for p in FAMILY_DIR.glob("*.py")
                       if _preset_definitions(ast.parse(p.read_text()))[0])


def test_every_preset_is_defined_in_a_family_module():
    names = set()
    for path in _PRESET_FILES:
        presets, _ = _preset_definitions(ast.parse((FAMILY_DIR / path).read_text()))
        names |= {next(k.value.value for k in v.keywords if k.arg == "name")
                  for v in presets.values()}
    assert names == set(moelab.list_presets())


@pytest.mark.parametrize("path", _PRESET_FILES)
def test_preset_files_are_data_with_a_source_for_every_value(path):
    """Each family module's presets (and the constants they use) are data, every value with
    its source in a comment."""
    text = (FAMILY_DIR / path).read_text()
    lines = text.splitlines()
    presets, constants = _preset_definitions(ast.parse(text))
    problems = [p for name, value in {**presets, **constants}.items()
                for p in _data_problems(value, lines, f"{path} {name}")]
    assert not problems, "presets that are not data with sources:\n" + "\n".join(problems)


# --- structure of each preset --------------------------------------------------------------
def test_deepseek_v3_structure():
    cfg = moelab.preset("deepseek-v3")
    assert cfg.ffn_kinds[:4] == ("dense", "dense", "dense", "moe")
    assert cfg.num_moe_layers == 58 and cfg.num_dense_layers == 3
    m = cfg.moe
    assert (m.scoring, m.n_group, m.topk_group, m.routed_scaling_factor) == ("sigmoid", 8, 4, 2.5)
    assert m.correction_bias and m.norm_topk_prob and m.shared_width == 2048
    assert cfg.attention.kind == "mla" and cfg.num_nextn_predict_layers == 1
    assert cfg.model_type == "deepseek_v3"


def test_kimi_k2_structure():
    cfg = moelab.preset("kimi-k2")
    assert cfg.ffn_kinds[:2] == ("dense", "moe") and cfg.num_moe_layers == 60
    assert (cfg.moe.num_experts, cfg.moe.n_group, cfg.moe.routed_scaling_factor) == (384, 1, 2.827)
    assert cfg.attention.num_attention_heads == 64 and cfg.num_nextn_predict_layers == 0


@pytest.mark.parametrize("name, dense_first, qk_norm", [("glm-4.5", 3, "head"),
                                                         ("glm-4.5-air", 1, None)])
def test_glm_structure(name, dense_first, qk_norm):
    cfg = moelab.preset(name)
    assert cfg.first_k_dense_replace == dense_first
    assert cfg.ffn_kinds.index("moe") == dense_first
    assert cfg.attention.qk_norm == qk_norm and cfg.attention.attention_bias
    assert not cfg.attention.o_proj_bias and cfg.attention.partial_rotary_factor == 0.5
    assert cfg.moe.scoring == "sigmoid" and cfg.moe.n_shared_experts == 1


def test_qwen3_next_layer_pattern():
    cfg = moelab.preset("qwen3-next-80b-a3b")
    types = cfg.all_layer_types
    assert types.count("linear_attention") == 36 and types.count("full_attention") == 12
    assert [i for i, t in enumerate(types) if t == "full_attention"] == list(range(3, 48, 4))
    assert cfg.attention.output_gate and cfg.moe.shared_expert_gate
    assert cfg.moe.shared_width == 512 and cfg.num_moe_layers == 48


def test_llama4_placement():
    scout, mav = moelab.preset("llama4-scout"), moelab.preset("llama4-maverick")
    assert scout.num_moe_layers == 48
    assert mav.moe_layer_indices == tuple(range(1, 48, 2))
    assert mav.ffn_kind(0) == "dense" and mav.ffn_kind(1) == "moe"
    assert [i for i, r in enumerate(scout.no_rope_layers) if r == 0] == list(range(3, 48, 4))
    assert scout.layer_type(3) == "full_attention" and scout.layer_type(0) == "chunked_attention"
    assert scout.attention.qk_norm == "l2" and mav.attention.qk_norm is None
    assert scout.moe.scoring == "llama4" and scout.moe.shared_width == 8192
    assert scout.intermediate_size == 16384  # intermediate_size_mlp: the dense width


@pytest.mark.parametrize("name, layers, experts", [("gpt-oss-20b", 24, 32),
                                                   ("gpt-oss-120b", 36, 128)])
def test_gpt_oss_structure(name, layers, experts):
    cfg = moelab.preset(name)
    assert cfg.num_hidden_layers == layers and cfg.moe.num_experts == experts
    assert cfg.layer_type(0) == "sliding_attention" and cfg.layer_type(1) == "full_attention"
    a = cfg.attention
    assert a.attention_sinks and a.attention_bias and a.o_proj_bias and a.sliding_window == 128
    m = cfg.moe
    assert (m.scoring, m.activation, m.router_bias, m.expert_bias) == (
        "topk_softmax", "swiglu_oai", True, True)


def test_grok2_structure():
    cfg = moelab.preset("grok-2")
    assert cfg.residual_moe and cfg.intermediate_size == 32768
    assert cfg.norm_placement == "sandwich"
    m = cfg.moe
    assert (m.scoring, m.norm_topk_prob, m.router_logit_softcap) == ("softmax", False, 30.0)
    assert m.moe_intermediate_size == 16384 and m.activation == "gelu_tanh"


def test_gemma3_pattern():
    cfg = moelab.preset("gemma3-27b")
    types = cfg.all_layer_types
    assert [i for i, t in enumerate(types) if t == "full_attention"] == list(range(5, 62, 6))
    assert cfg.tie_word_embeddings and cfg.hidden_act == "gelu_tanh"


@pytest.mark.parametrize("name", DENSE)
def test_dense_presets_have_no_moe(name):
    cfg = moelab.preset(name)
    assert cfg.moe is None and set(cfg.ffn_kinds) == {"dense"} and cfg.intermediate_size > 0


# --- ModelConfig interface -----------------------------------------------------------------
def test_ffn_kind_rules_combine():
    moe = _moe()
    cfg = _tiny(num_hidden_layers=8, moe=moe, first_k_dense_replace=1, mlp_only_layers=[5],
                decoder_sparse_step=1, interleave_moe_layer_step=2)
    assert cfg.ffn_kinds == ("dense", "moe", "dense", "moe", "dense", "dense", "dense", "moe")
    cfg2 = _tiny(num_hidden_layers=6, moe=moe, moe_layers=[0, 4])
    assert cfg2.moe_layer_indices == (0, 4)
    cfg3 = _tiny(num_hidden_layers=6, moe=moe, decoder_sparse_step=3)
    assert cfg3.moe_layer_indices == (2, 5)


def test_ffn_kind_errors():
    cfg = _tiny()
    assert cfg.ffn_kind(0) == "dense"
    with pytest.raises(IndexError, match=r"layer index 4 out of range \[0, 4\)"):
        cfg.ffn_kind(4)
    with pytest.raises(IndexError):
        cfg.ffn_kind(-1)
    with pytest.raises(TypeError, match="layer index must be an int"):
        cfg.ffn_kind(1.0)
    with pytest.raises(IndexError):
        cfg.layer_type(7)
    with pytest.raises(TypeError):
        cfg.layer_type("0")


def test_lists_become_tuples():
    cfg = _tiny(moe=_moe(), moe_layers=[1, 3], mlp_only_layers=[0],
                layer_types=["full_attention"] * 4, no_rope_layers=[1, 1, 1, 0])
    assert cfg.moe_layers == (1, 3) and cfg.mlp_only_layers == (0,)
    assert cfg.layer_types == ("full_attention",) * 4 and cfg.no_rope_layers == (1, 1, 1, 0)
    hash(cfg)


def test_replace_validates_again():
    cfg = _tiny()
    assert cfg.replace(vocab_size=64).vocab_size == 64
    with pytest.raises(ValueError, match="vocab_size must be >= 1"):
        cfg.replace(vocab_size=0)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(vocab_size=1.5), TypeError, "vocab_size must be an int"),
    (dict(hidden_size=True), TypeError, "hidden_size must be an int"),
    (dict(num_hidden_layers=0), ValueError, "num_hidden_layers must be >= 1"),
    (dict(intermediate_size=-1), ValueError, "intermediate_size must be >= 0"),
    (dict(intermediate_size=0), ValueError, "4 dense layer.* need intermediate_size"),
    (dict(model_type=""), TypeError, "model_type must be a non-empty str"),
    (dict(name=3), TypeError, "name must be a str"),
    (dict(attention="gqa"), TypeError, "attention must be an AttentionConfig"),
    (dict(moe={"num_experts": 4}), TypeError, "moe must be a MoEConfig"),
    (dict(hidden_act="swish"), ValueError, "hidden_act must be one of"),
    (dict(norm_placement="middle"), ValueError, "norm_placement must be one of"),
    (dict(router_variant="sparsemixer"), ValueError, "no moe config"),
    (dict(router_variant="magic"), ValueError, "router_variant must be one of"),
    (dict(residual_moe=True), ValueError, "residual_moe=True needs a moe config"),
    (dict(mlp_bias=1), TypeError, "mlp_bias must be a bool"),
    (dict(decoder_sparse_step=0), ValueError, "decoder_sparse_step must be >= 1"),
    (dict(first_k_dense_replace=-1), ValueError, "first_k_dense_replace"),
    (dict(rms_norm_eps=0.0), ValueError, "rms_norm_eps must be > 0"),
    (dict(moe_layers=[0, 9]), ValueError,
     r"moe_layers holds layer indices outside \[0, 4\): \[9\]"),
    (dict(mlp_only_layers="01"), TypeError, "mlp_only_layers must be a sequence"),
    (dict(moe_layers=[0.5]), TypeError, "moe_layers must hold int"),
    (dict(layer_types=["full_attention"] * 3), ValueError, "layer_types has 3 entries"),
    (dict(layer_types=["full_attention"] * 3 + ["mamba"]), ValueError, "unknown kinds"),
    (dict(layer_types=["sliding_attention"] * 4), ValueError, "need attention.sliding_window"),
    (dict(layer_types=["chunked_attention"] * 4), ValueError, "attention_chunk_size"),
    (dict(layer_types=["linear_attention"] * 4), ValueError, "Gated DeltaNet dims"),
    (dict(no_rope_layers=[1, 1, 1]), ValueError, "no_rope_layers has 3 entries"),
    (dict(no_rope_layers=[1, 1, 1, 2]), ValueError, "0 \\(NoPE\\) or 1"),
    (dict(vocab_size=10**9, hidden_size=10**5), ValueError, "dimensions are absurd"),
])
def test_model_config_rejects(kw, exc, match):
    with pytest.raises(exc, match=match):
        _tiny(**kw)


def test_model_config_moe_consistency():
    with pytest.raises(ValueError, match="moe.hidden_size=32 differs from hidden_size=16"):
        _tiny(moe=_moe(hidden_size=32))
    with pytest.raises(ValueError, match="leave no MoE layer"):
        _tiny(moe=_moe(), first_k_dense_replace=4)
    # an all-MoE model needs no dense width
    assert _tiny(moe=_moe(), intermediate_size=0).num_dense_layers == 0
    with pytest.raises(ValueError, match="residual_moe need intermediate_size"):
        _tiny(moe=_moe(), intermediate_size=0, residual_moe=True)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(num_attention_heads=0), ValueError, "must be >= 1"),
    (dict(num_attention_heads=3), ValueError, "not a multiple of num_key_value_heads=2"),
    (dict(head_dim=0), ValueError, "head_dim must be >= 1 for kind='gqa'"),
    (dict(head_dim=8.0), TypeError, "head_dim must be an int"),
    (dict(kind="linear"), ValueError, "kind must be one of"),
    (dict(qk_norm="rms"), ValueError, "qk_norm must be one of"),
    (dict(attention_bias=1), TypeError, "attention_bias must be a bool"),
    (dict(sliding_window=0), ValueError, "sliding_window must be None or >= 1"),
    (dict(partial_rotary_factor=1.5), ValueError, "partial_rotary_factor"),
    (dict(attn_logit_softcapping=-1.0), ValueError, "attn_logit_softcapping"),
    (dict(kind="mla"), ValueError, "kv_lora_rank must be >= 1 for kind='mla'"),
    (dict(kind="mla", kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
          qk_norm="head"), ValueError, "GQA features"),
    (dict(linear_num_key_heads=2), ValueError, "must all be set or all 0"),
    (dict(linear_num_key_heads=2, linear_num_value_heads=3, linear_key_head_dim=4,
          linear_value_head_dim=4, linear_conv_kernel_dim=4), ValueError, "not a multiple"),
])
def test_attention_config_rejects(kw, exc, match):
    base = dict(num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    base.update(kw)
    with pytest.raises(exc, match=match):
        AttentionConfig(**base)


def test_repr_names_the_model():
    r = repr(moelab.preset("deepseek-v3"))
    assert "deepseek-v3" in r and "mla(128/128)" in r and "E256/k8" in r
