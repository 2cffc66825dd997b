"""from_hf_config: every supported model type, preset agreement, HF defaults and error paths.

The released-config dicts below are written from copies of each model's config.json (the
sources of its preset). Tests marked ``reference`` also check against transformers 5.23: the
parameter count of the HF model built on the meta device, and the HF config class defaults.
The families, their defaults tables and parity fixtures come from the registry
(``moelab.families()``), so a family that registers is tested here.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

import moelab
from moelab import registry
from released_configs import RELEASED

SUPPORTED_MODEL_TYPES = registry.model_types()

try:  # the reference; see _hf() for what happens when it is missing
    import torch
    import transformers
except Exception as exc:  # pragma: no cover - only without the reference extra
    _REFERENCE_ERROR = f"{type(exc).__name__}: {exc}"
else:
    _REFERENCE_ERROR = None


def _hf():
    """transformers, or fail (MOELAB_REQUIRE_REFERENCE=1) / skip when it cannot be imported."""
    if _REFERENCE_ERROR is not None:
        msg = f"Hugging Face reference unavailable ({_REFERENCE_ERROR})"
        if os.environ.get("MOELAB_REQUIRE_REFERENCE", "") not in ("", "0"):
            pytest.fail(f"MOELAB_REQUIRE_REFERENCE=1 but the {msg}", pytrace=False)
        pytest.skip(msg)
    return transformers


# --- released configs: tests/released_configs.py ----------------------------------------
_KIMI, _GROK2, _MIXTRAL = RELEASED["kimi-k2"], RELEASED["grok-2"], RELEASED["mixtral-8x7b"]
_GPT_OSS_20B, _GPT_OSS_120B = RELEASED["gpt-oss-20b"], RELEASED["gpt-oss-120b"]
_QWEN3_NEXT, _GEMMA3_27B = RELEASED["qwen3-next-80b-a3b"], RELEASED["gemma3-27b"]
_MISTRAL_SMALL, _SCOUT = RELEASED["mistral-small-3.1-24b"], RELEASED["llama4-scout"]
_SCOUT_TEXT = _SCOUT["text_config"]
_QWEN1_5_MOE, _DSV2_LITE = RELEASED["qwen1.5-moe-a2.7b"], RELEASED["deepseek-v2-lite"]
_DBRX = RELEASED["dbrx-base"]
#: The released configs of the presets.
PRESET_CONFIGS = sorted(n for n in RELEASED if n in moelab.list_presets())
# The released dicts, by the model_type that from_hf_config resolves them to.
ALL_DICTS = {d["model_type"] if d["model_type"] != "git" else "grok": d for d in RELEASED.values()}


def _assert_same_model(a, b):
    """Two configs of one model: equal counts, routed layer and per-layer structure."""
    assert moelab.count_params(a) == moelab.count_params(b)
    assert a.moe == b.moe
    assert a.ffn_kinds == b.ffn_kinds
    assert a.all_layer_types == b.all_layer_types


# --- presets and their released configs agree ----------------------------------------------
def test_every_preset_has_its_released_config():
    assert PRESET_CONFIGS == sorted(moelab.list_presets())


@pytest.mark.parametrize("name", PRESET_CONFIGS)
def test_released_config_agrees_with_preset(name):
    cfg = moelab.from_hf_config(RELEASED[name])
    ref = moelab.preset(name)
    _assert_same_model(cfg, ref)
    assert cfg.model_type == ref.model_type
    assert cfg.num_nextn_predict_layers == ref.num_nextn_predict_layers
    assert cfg.intermediate_size == ref.intermediate_size or not cfg.num_dense_layers


def test_every_supported_model_type_is_covered():
    """Every registered parser meets a released config; the accepted types are the registered
    names (wrappers and other spellings included)."""
    covered = {moelab.from_hf_config(d).model_type for d in ALL_DICTS.values()}
    assert covered == {f.model_type for f in moelab.families() if f.wraps is None}
    assert set(SUPPORTED_MODEL_TYPES) == {n for f in moelab.families() for n in f.names}
    assert set(SUPPORTED_MODEL_TYPES) == set(moelab.hf_config.SUPPORTED_MODEL_TYPES)
    for required in ("mixtral", "qwen2_moe", "qwen3_moe", "qwen3_next", "deepseek_v2",
                     "deepseek_v3", "kimi_k2", "glm4_moe", "llama4", "llama4_text", "gpt_oss",
                     "olmoe", "phimoe", "dbrx", "grok", "llama", "mistral", "qwen2", "qwen3",
                     "olmo2", "gemma3_text", "gemma3", "smollm3"):
        assert required in SUPPORTED_MODEL_TYPES


def test_family_specific_fields():
    q2 = moelab.from_hf_config(_QWEN1_5_MOE)
    assert q2.moe.shared_expert_gate and q2.moe.shared_width == 5632 and not q2.moe.norm_topk_prob
    assert q2.attention.attention_bias and not q2.attention.o_proj_bias
    v2 = moelab.from_hf_config(_DSV2_LITE)
    assert v2.moe.scoring == "softmax" and v2.moe.shared_width == 2 * 1408
    assert v2.attention.q_lora_rank is None and v2.ffn_kinds[:2] == ("dense", "moe")
    assert v2.router_variant is None
    olmoe = moelab.from_hf_config(RELEASED["olmoe-1b-7b"])
    assert olmoe.attention.qk_norm == "full" and olmoe.intermediate_size == 0
    phi = moelab.from_hf_config(RELEASED["phi-3.5-moe"])
    assert phi.router_variant == "sparsemixer" and phi.norm_bias and phi.lm_head_bias
    dbrx = moelab.from_hf_config(_DBRX)
    assert dbrx.moe.norm_topk_prob and dbrx.attention.num_key_value_heads == 8
    grok = moelab.from_hf_config(_GROK2)
    assert grok.model_type == "grok" and grok.residual_moe
    assert grok.moe.router_logit_softcap == 30.0 and grok.attention.attn_logit_softcapping == 30.0
    oss = moelab.from_hf_config(_GPT_OSS_120B)
    assert oss.moe.scoring == "topk_softmax" and oss.attention.attention_sinks
    nxt = moelab.from_hf_config(_QWEN3_NEXT)
    assert nxt.attention.output_gate and nxt.attention.partial_rotary_factor == 0.25


def test_router_variants():
    d = dict(_DSV2_LITE, topk_method="group_limited_greedy", n_group=8,
             topk_group=3)
    cfg = moelab.from_hf_config(d)
    assert cfg.router_variant == "group_limited_greedy" and cfg.moe.n_group == 1
    d = dict(_DBRX, ffn_config=dict(_DBRX["ffn_config"],
                                                moe_normalize_expert_weights=2.0))
    assert moelab.from_hf_config(d).router_variant == "pnorm"
    d = dict(_DBRX, ffn_config=dict(_DBRX["ffn_config"],
                                                moe_normalize_expert_weights=None))
    cfg = moelab.from_hf_config(d)
    assert cfg.router_variant is None and not cfg.moe.norm_topk_prob


def test_qwen2_moe_without_experts_is_dense_and_sparse_step_places_moe():
    d = dict(_QWEN1_5_MOE, num_experts=0)
    assert moelab.from_hf_config(d).moe is None
    d = dict(_QWEN1_5_MOE, decoder_sparse_step=2, mlp_only_layers=[3])
    cfg = moelab.from_hf_config(d)
    assert cfg.ffn_kinds[:6] == ("dense", "moe", "dense", "dense", "dense", "moe")


def test_sliding_windows():
    q = moelab.from_hf_config(dict(RELEASED["qwen2.5-7b"], use_sliding_window=True,
                                   sliding_window=4096, max_window_layers=20))
    assert q.all_layer_types[19:21] == ("full_attention", "sliding_attention")
    m = moelab.from_hf_config(dict(_MIXTRAL, sliding_window=4096))
    assert set(m.all_layer_types) == {"sliding_attention"} and m.attention.sliding_window == 4096
    g = moelab.from_hf_config(_GEMMA3_27B)
    assert g.attention.sliding_window == 1024 and g.layer_type(5) == "full_attention"
    assert g.tie_word_embeddings  # Gemma3Config default


def test_wrapper_head_tying():
    """transformers ties Gemma 3's and Mistral 3's head by the top-level tie_word_embeddings
    (default True) whatever text_config says, and Llama 4's by text_config's (checked against
    transformers in test_wrapper_head_tying_follows_transformers)."""
    text = _MISTRAL_SMALL["text_config"]
    assert not text["tie_word_embeddings"]
    assert moelab.from_hf_config({"model_type": "mistral3", "text_config": text}
                                 ).tie_word_embeddings
    assert not moelab.from_hf_config(_MISTRAL_SMALL).tie_word_embeddings
    scout = dict(_SCOUT, text_config=dict(_SCOUT_TEXT, tie_word_embeddings=True))
    assert moelab.from_hf_config(scout).tie_word_embeddings


def test_from_path(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_MIXTRAL))
    a = moelab.from_hf_config(tmp_path)
    b = moelab.from_hf_config(str(tmp_path / "config.json"))
    assert a == b == moelab.from_hf_config(_MIXTRAL)


def test_defaults_fill_missing_keys():
    cfg = moelab.from_hf_config({"model_type": "mixtral"})
    assert moelab.count_params(cfg) == moelab.count_params("mixtral-8x7b")
    assert moelab.from_hf_config({"model_type": "deepseek_v3"}).moe == moelab.preset(
        "deepseek-v3").moe


# --- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("d, match", [
    ({"model_type": "bert"}, "unsupported model_type 'bert'"),
    ({"model_type": "git"}, "unsupported model_type 'git'"),
    ({"hidden_size": 8}, "missing required key 'model_type'"),
    ({"model_type": 7}, "model_type must be a str"),
    ({k: v for k, v in _KIMI.items() if k != "hidden_size"}, "kimi_k2 config: missing required "
                                                               "key 'hidden_size'"),
    ({k: v for k, v in _GROK2.items() if k != "num_local_experts"},
     "missing required key 'num_local_experts' or 'num_experts'"),
    ({k: v for k, v in _DSV2_LITE.items() if k != "num_experts_per_tok"},
     "deepseek_v2 config: missing required key 'num_experts_per_tok'"),
    (dict(_MIXTRAL, hidden_act="tanh"), "hidden_act='tanh' is not a supported activation"),
    (dict(_GPT_OSS_20B, swiglu_limit=10.0), "swiglu_limit=10.0 is not supported"),
    (dict(_DSV2_LITE, topk_method="noaux_tc"), "topk_method='noaux_tc'"),
    (dict(_DSV2_LITE, mlp_bias=True), "mlp_bias=True"),
    (dict(_MIXTRAL, hidden_size="4096"), "mixtral config:"),
    (dict(_MIXTRAL, num_experts_per_tok=9), "num_experts_per_tok must be in"),
    ({"model_type": "gemma3", "text_config": [1, 2]}, "text_config must be a mapping"),
    (dict(_DBRX, ffn_config=3), "ffn_config must be a mapping"),
    (dict(_DBRX, ffn_config={"ffn_act_fn": {"name": "tanh"}}), "ffn_act_fn name"),
    # values a parser divides by, loops over or converts are checked first
    ({"model_type": "llama", "num_attention_heads": 0},
     "llama config: num_attention_heads must be an integer >= 1, got 0"),
    (dict(_DBRX, n_heads=0), "dbrx config: n_heads must be an integer >= 1, got 0"),
    ({"model_type": "gemma3_text", "sliding_window_pattern": 0}, "sliding_window_pattern must be"),
    ({"model_type": "llama4_text", "no_rope_layer_interval": 0}, "no_rope_layer_interval must be"),
    ({"model_type": "smollm3", "no_rope_layer_interval": 0}, "no_rope_layer_interval must be"),
    (dict(_QWEN3_NEXT, full_attention_interval=0), "full_attention_interval must be"),
    ({"model_type": "smollm3", "no_rope_layers": [1, 0]}, "has 2 entries, expected num_hidden_"),
    (dict(_KIMI, routed_scaling_factor="2.827"),
     "kimi_k2 config: routed_scaling_factor must be a number, got '2.827'"),
    (dict(_DSV2_LITE, routed_scaling_factor=10**400), "routed_scaling_factor=1000.* is beyond"),
    (dict(_GPT_OSS_20B, swiglu_limit="7"), "swiglu_limit must be a number"),
    ({"model_type": "glm4_moe", "partial_rotary_factor": "half"},
     "partial_rotary_factor must be a number"),
    (dict(_DBRX, ffn_config={"ffn_act_fn": 4}), "ffn_config.ffn_act_fn must be a mapping"),
    # a fuzz finding: Grok-2's released model_type with architectures that are not a list
    ({"model_type": "git", "architectures": 8}, "architectures must be a list of class names"),
    ({"model_type": "git", "architectures": [8]}, "architectures must be a list of class names"),
    ({"model_type": "llama", "architectures": "LlamaForCausalLM"},
     "architectures must be a list of class names"),
])
def test_bad_configs_raise_value_error_naming_the_key(d, match):
    with pytest.raises(ValueError, match=match):
        moelab.from_hf_config(d)


@pytest.mark.parametrize("d", [
    {"model_type": "llama", "num_hidden_layers": 10**11},
    {"model_type": "qwen3", "num_hidden_layers": 10**11, "use_sliding_window": True},
    {"model_type": "dbrx", "n_layers": 2**62},
    {"model_type": "gemma3", "text_config": {"num_hidden_layers": 10**9}},
], ids=["llama", "qwen3-sliding", "dbrx", "gemma3-text_config"])
def test_an_absurd_layer_count_is_refused_before_any_per_layer_list(d):
    """Once a hang (the per-layer lists were built before any size check): now refused at once."""
    key = "n_layers" if "n_layers" in d else "num_hidden_layers"
    with pytest.raises(ValueError, match=rf"{key} must be an integer in \[1, "
                                         rf"{moelab.model_config.MAX_LAYERS}\]"):
        moelab.from_hf_config(d)


def test_model_config_bounds_the_layer_count():
    cfg = moelab.from_hf_config({"model_type": "llama"})
    limit = moelab.model_config.MAX_LAYERS
    assert cfg.replace(num_hidden_layers=limit).num_hidden_layers == limit
    with pytest.raises(ValueError, match=f"num_hidden_layers must be <= {limit}"):
        cfg.replace(num_hidden_layers=limit + 1)


def test_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="must be a mapping"):
        moelab.from_hf_config(42)
    with pytest.raises(ValueError, match="no such file"):
        moelab.from_hf_config(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="no such file"):
        moelab.from_hf_config(tmp_path)  # a folder without config.json
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        moelab.from_hf_config(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        moelab.from_hf_config(tmp_path / "list.json")


# --- against transformers 5.23 -------------------------------------------------------------
def _hf_param_count(hf, d):
    """Parameters of the HF causal LM of a config dict, built on the meta device."""
    fam = registry.family(d["model_type"])
    if fam.wraps is not None:
        text = dict(d["text_config"])
        if "tie_word_embeddings" in d:
            text["tie_word_embeddings"] = d["tie_word_embeddings"]
        d, fam = text, registry.family(fam.wraps.text_model_type)
    kwargs = {k: v for k, v in d.items() if k not in ("model_type", "architectures")}
    cfg = hf.AutoConfig.for_model(fam.hf_model_type, **kwargs)
    with torch.device("meta"):
        model = hf.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


# grok: not in transformers. dbrx: transformers 5.23 cannot build DbrxForCausalLM at all
# ("'DbrxAttentionConfig' object has no attribute 'rope_theta'");
# its count is checked against the published 132B instead.
@pytest.mark.reference
@pytest.mark.parametrize("model_type", sorted(
    t for t in ALL_DICTS if registry.family(t).hf_model_type is not None and t != "dbrx"))
def test_param_count_equals_the_hf_model(model_type):
    hf = _hf()
    d = ALL_DICTS[model_type]
    assert moelab.count_params(moelab.from_hf_config(d)).total == _hf_param_count(hf, d)


# Every defaults table of a family that transformers ships (its own model_type), and every
# nested table (DBRX's attn_config / ffn_config), against the HF config class it copies.
_DEFAULT_TABLES = [(f.model_type, None) for f in moelab.families()
                   if f.hf_model_type == f.model_type and f.defaults] + \
                  [(f.model_type, key) for f in moelab.families() for key in f.nested_defaults]


@pytest.mark.reference
@pytest.mark.parametrize("model_type, nested", _DEFAULT_TABLES,
                         ids=[t if n is None else f"{t}.{n}" for t, n in _DEFAULT_TABLES])
def test_default_tables_equal_the_hf_config_classes(model_type, nested):
    hf = _hf()
    fam = registry.family(model_type)
    cls = hf.CONFIG_MAPPING[model_type]
    table = fam.defaults
    if nested is not None:
        cls, table = cls.sub_configs[nested], fam.nested_defaults[nested]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    attribute_map = getattr(cls, "attribute_map", {})
    for key, value in table.items():
        aliases = [key, attribute_map.get(key)] + [a for a, b in attribute_map.items() if b == key]
        name = next((a for a in aliases if a in fields), key)
        assert name in fields, f"{model_type}: {key} is not a field of {cls.__name__}"
        f = fields[name]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert default == value, f"{model_type}.{key}: HF default {default!r}, ours {value!r}"


# HF computes some defaults from other keys in __post_init__ (layer_types, moe_layers,
# no_rope_layers, head_dim...): the dict HF writes and the minimal dict must give one model.
_SMALL = {
    "qwen3_next": dict(num_hidden_layers=8, hidden_size=64, num_experts=8, num_experts_per_tok=2),
    "llama4_text": dict(num_hidden_layers=8, hidden_size=64, interleave_moe_layer_step=2,
                        num_local_experts=4),
    "gpt_oss": dict(num_hidden_layers=6, hidden_size=64, num_local_experts=8),
    "gemma3_text": dict(num_hidden_layers=13, hidden_size=64),
    "smollm3": dict(num_hidden_layers=9, hidden_size=64),
    "qwen2": dict(num_hidden_layers=6, use_sliding_window=True, max_window_layers=3),
    "qwen2_moe": dict(num_hidden_layers=6, use_sliding_window=True, max_window_layers=3,
                      decoder_sparse_step=2, num_experts=6),
    "qwen3_moe": dict(num_hidden_layers=6, hidden_size=512, num_experts=8),
    "mixtral": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4,
                    num_key_value_heads=2, num_local_experts=4),
    "olmo2": dict(num_hidden_layers=2, num_key_value_heads=None),
    "deepseek_v3": dict(num_hidden_layers=5, first_k_dense_replace=2, n_routed_experts=16,
                        num_mtp_layers=2),
    "glm4_moe": dict(num_hidden_layers=3, n_routed_experts=16),
    "deepseek_v2": dict(num_hidden_layers=3, num_experts_per_tok=4, first_k_dense_replace=1,
                        n_routed_experts=8),
    "phimoe": dict(num_hidden_layers=2, num_local_experts=4),
    "olmoe": dict(num_hidden_layers=2, num_experts=8),
    "llama": dict(num_hidden_layers=2),
    "mistral": dict(num_hidden_layers=2),
    "qwen3": dict(num_hidden_layers=2),
    "dbrx": dict(n_layers=2),
}
_EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


@pytest.mark.reference
@pytest.mark.parametrize("model_type", sorted(_SMALL))
def test_hf_to_dict_and_minimal_dict_agree(model_type):
    hf = _hf()
    kw = _SMALL[model_type]
    full = moelab.from_hf_config(hf.AutoConfig.for_model(model_type, **kw).to_dict())
    minimal = moelab.from_hf_config(dict(kw, model_type=model_type))
    _assert_same_model(full, minimal)
    assert full.attention == minimal.attention
    assert full.no_rope_layers == minimal.no_rope_layers
    for key in _EXPERT_KEYS:
        if key in kw:
            assert full.moe.num_experts == kw[key]
    if "num_mtp_layers" in kw:
        assert full.num_nextn_predict_layers == kw["num_mtp_layers"]


@pytest.mark.parametrize("model_type, key", [("qwen3_moe", "num_local_experts"),
                                             ("qwen3_moe", "num_experts"),
                                             ("mixtral", "num_experts"),
                                             ("deepseek_v3", "num_local_experts"),
                                             ("olmoe", "num_local_experts"),
                                             ("gpt_oss", "num_experts")])
def test_hf_attribute_aliases(model_type, key):
    d = {"model_type": model_type, "num_hidden_layers": 4, key: 16, "num_experts_per_tok": 2}
    assert moelab.from_hf_config(d).moe.num_experts == 16


_FIXTURES = [(f.model_type, p) for f in moelab.families() for p in f.parity]


@pytest.mark.reference
@pytest.mark.parametrize("model_type, fixture", _FIXTURES, ids=[p.name for _, p in _FIXTURES])
def test_parity_fixture_to_dict_and_minimal_dict_agree(model_type, fixture):
    """Each family's tiny parity model: the dict transformers writes for it and the minimal
    config.json of the same keys give one model."""
    _hf()
    full = moelab.from_hf_config(fixture.make_config().to_dict())
    minimal = moelab.from_hf_config(fixture.config_json(model_type))
    _assert_same_model(full, minimal)
    assert full.model_type == minimal.model_type == model_type
    assert full.attention == minimal.attention


_WRAPPERS = [f for f in moelab.families() if f.wraps is not None]


@pytest.mark.reference
@pytest.mark.parametrize("wrapper", _WRAPPERS, ids=[f.model_type for f in _WRAPPERS])
def test_wrappers_equal_their_text_config(wrapper):
    """A wrapper's config is its text config's (the head's tying aside: next test)."""
    hf = _hf()
    text_cls = hf.CONFIG_MAPPING[wrapper.wraps.text_model_type]
    text = text_cls(num_hidden_layers=4).to_dict()
    a = moelab.from_hf_config(hf.CONFIG_MAPPING[wrapper.model_type](text_config=text).to_dict())
    b = moelab.from_hf_config(dict(text, tie_word_embeddings=a.tie_word_embeddings))
    assert moelab.count_params(a) == moelab.count_params(b)
    assert a.model_type == b.model_type == wrapper.wraps.text_model_type


@pytest.mark.reference
@pytest.mark.parametrize("wrapper", _WRAPPERS, ids=[f.model_type for f in _WRAPPERS])
def test_wrapper_head_tying_follows_transformers(wrapper):
    """Whether the LM head is tied, for every text / top-level tie_word_embeddings (absent,
    True, False): as transformers ties the wrapper model it builds."""
    hf = _hf()
    text_cls = hf.CONFIG_MAPPING[wrapper.wraps.text_model_type]
    for text_tie in (True, False):
        text = text_cls(num_hidden_layers=1, tie_word_embeddings=text_tie).to_dict()
        for top in ({}, {"tie_word_embeddings": True}, {"tie_word_embeddings": False}):
            config = hf.CONFIG_MAPPING[wrapper.model_type](text_config=text, **top)
            with torch.device("meta"):
                model = hf.AutoModelForImageTextToText.from_config(config)
            tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
            written = dict(model_type=wrapper.model_type, text_config=text, **top)
            for d in (written, config.to_dict()):
                assert moelab.from_hf_config(d).tie_word_embeddings == tied, (text_tie, top)
