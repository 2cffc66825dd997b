"""``from_hf_config``: a Hugging Face ``config.json`` (dict or path) -> ``ModelConfig``.

The parser of each ``model_type`` lives with its family (``moelab.families.<family>``); this
module finds the family in the registry and gives its parser a :class:`Keys` reader. A key
missing from the dict takes the default of the HF config class in transformers 5.23
(``models/<type>/configuration_<type>.py``; each family's ``defaults`` table, checked against
those classes by ``tests/test_hf_config.py``). Model types that transformers does not ship
(``kimi_k2``, Grok's) have defaults only for optional features, so a missing dimension is an
error. Values HF computes from others (``head_dim = hidden_size // num_attention_heads``,
``layer_types``, ``moe_layers``...) are computed the same way by the parsers.

Also here: the toolkit the parsers share (:class:`Keys`, :func:`activation`, :func:`heads`,
:func:`gqa_attention`, :func:`mla_attention`, :func:`softmax_experts`...). Everything is plain Python: transformers is not
needed at run time.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from . import registry
from ._checks import is_int, is_real
from .io.config_json import config_dict
from .config import MoEConfig
from .model_config import MAX_LAYERS, AttentionConfig, ModelConfig

__all__ = ["from_hf_config", "SUPPORTED_MODEL_TYPES", "Keys", "decoder", "activation", "heads",
           "gqa_attention", "attention_bias", "mla_attention", "softmax_experts", "all_sliding", "ACTIVATIONS_BY_HF_NAME", "NUM_EXPERTS_ALIASES",
           "ROUTED_EXPERTS_ALIASES"]

_REQUIRED = object()

#: HF activation names -> moelab activation names.
ACTIVATIONS_BY_HF_NAME = {
    "silu": "silu", "swish": "silu",
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}

# Key aliases, as the HF config classes' ``attribute_map`` (5.23): a config.json may use either
# name (released Qwen3 configs say "num_experts", transformers 5.x writes "num_local_experts").
#: Mixtral, Qwen3-MoE, gpt-oss, OLMoE.
NUM_EXPERTS_ALIASES = (("num_experts", "num_local_experts"),)
#: The DeepSeek-style configs (DeepSeek-V2/V3, Kimi K2, GLM-4-MoE).
ROUTED_EXPERTS_ALIASES = (("n_routed_experts", "num_local_experts", "num_experts"),
                          ("num_nextn_predict_layers", "num_mtp_layers"))


def __getattr__(name: str):
    if name == "SUPPORTED_MODEL_TYPES":  # computed when asked: the registry may have grown
        return registry.model_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# the parsers' toolkit
# ---------------------------------------------------------------------------------------------
class Keys:
    """Key access to a config dict with a family's HF defaults and key aliases.

    ``k(key)`` gives the dict's value (under any alias of the key), else the default; a key
    with neither is a ValueError naming it, unless ``k(key, default)`` gives one. ``model_type``
    names the config in messages.
    """

    def __init__(self, d: Mapping[str, Any], model_type: str,
                 defaults: Mapping[str, Any] = None, key_aliases: Tuple[Tuple[str, ...], ...] = ()):
        self.d = d
        self.model_type = model_type
        self.defaults = defaults or {}
        self.aliases = {name: group for group in key_aliases for name in group}

    @classmethod
    def of(cls, d: Mapping[str, Any], fam: "registry.Family") -> "Keys":
        """The reader of ``d`` with ``fam``'s defaults and key aliases."""
        return cls(d, fam.model_type, fam.defaults, fam.key_aliases)

    def __call__(self, key: str, default: Any = _REQUIRED) -> Any:
        for name in self.aliases.get(key, (key,)):
            if name in self.d:
                return self.d[name]
        if key in self.defaults:
            return self.defaults[key]
        if default is not _REQUIRED:
            return default
        raise ValueError(f"{self.model_type} config: missing required key {key!r}")

    def need(self, key: str, *alternatives: str) -> Any:
        """A key that must end up set (not None), from the dict or an HF default."""
        for k in (key,) + alternatives:
            v = self(k, None)
            if v is not None:
                return v
        names = " or ".join(repr(k) for k in (key,) + alternatives)
        raise ValueError(f"{self.model_type} config: missing required key {names}")

    def count(self, key: str, default: Any = _REQUIRED, maximum: Optional[int] = None) -> int:
        """A key whose value must be an integer >= 1 (and <= ``maximum``): a head count, an
        interval, a layer count. Checked here, before a parser divides by it or loops over it;
        ValueError naming the key otherwise."""
        v = self(key, default)
        if not is_int(v) or v < 1 or (maximum is not None and v > maximum):
            bound = ">= 1" if maximum is None else f"in [1, {maximum}]"
            raise ValueError(f"{self.model_type} config: {key} must be an integer {bound}, "
                             f"got {v!r}")
        return int(v)

    def num_layers(self, key: str = "num_hidden_layers") -> int:
        """The decoder's layer count, at most ``model_config.MAX_LAYERS`` (a parser builds
        per-layer lists from it)."""
        return self.count(key, maximum=MAX_LAYERS)

    def real(self, key: str, default: Any = _REQUIRED) -> float:
        """A key whose value must be a real number, as a float (ValueError naming the key)."""
        return _as_float(self(key, default), f"{self.model_type} config: {key}")

    def sub(self, key: str, defaults: Mapping[str, Any]) -> "Keys":
        """The reader of a nested config dict (``None`` or absent: empty) with its own defaults."""
        v = self(key, None)
        if v is None:
            v = {}
        if not isinstance(v, Mapping):
            raise ValueError(f"{self.model_type} config: {key} must be a mapping, got "
                             f"{type(v).__name__}")
        return Keys(v, f"{self.model_type}.{key}", defaults)

    def rope_parameters(self, layer_type: Optional[str] = None,
                        fallback: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """The RoPE parameters as a new dict: ``rope_parameters`` (5.x; its ``layer_type`` entry
        when it holds one per layer type, as Gemma 3's); when that is empty, ``fallback`` if
        given, else a 4.x config's ``rope_scaling`` with ``rope_theta`` (10000 by default).
        ``rope_type`` is always set (from a 4.x ``type``, or "default")."""
        rope = self.sub("rope_parameters", {})
        if layer_type is not None and layer_type in rope.d:
            rope = rope.sub(layer_type, {})
        out = dict(rope.d)
        if not out and fallback is not None:
            out = dict(fallback)
        elif not out:
            out = dict(self.sub("rope_scaling", {}).d)
            out.setdefault("rope_theta", self.real("rope_theta", 10000.0))
        out.setdefault("rope_type", out.pop("type", "default"))
        return out

    def rope_factor(self, default: float = 1.0) -> float:
        """partial_rotary_factor: top level, or inside rope_parameters (5.x) / rope_scaling."""
        v = self.d.get("partial_rotary_factor")
        for nested in ("rope_parameters", "rope_scaling"):
            rp = self.d.get(nested)
            if v is None and isinstance(rp, Mapping):
                v = rp.get("partial_rotary_factor")
        return default if v is None else _as_float(v, f"{self.model_type} config: "
                                                      "partial_rotary_factor")


def _as_float(v: Any, what: str) -> float:
    """A JSON number as a float: ValueError (starting with ``what``) for anything else or a
    number beyond the float range."""
    if not is_real(v):
        raise ValueError(f"{what} must be a number, got {v!r}")
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"{what}={v} is beyond the float range") from None


def decoder(k: Keys, hidden_size: int, **fields) -> ModelConfig:
    """The ``ModelConfig`` of ``k.model_type`` with ``fields``; the fields every decoder reads
    the same way are read here unless given: ``vocab_size`` and ``num_hidden_layers``
    (required), ``tie_word_embeddings`` and ``rms_norm_eps``."""
    readers = dict(vocab_size=lambda: k.need("vocab_size"),
                   num_hidden_layers=k.num_layers,
                   tie_word_embeddings=lambda: bool(k("tie_word_embeddings")),
                   rms_norm_eps=lambda: k("rms_norm_eps"))
    for key, read in readers.items():
        if key not in fields:
            fields[key] = read()
    return ModelConfig(model_type=k.model_type, hidden_size=hidden_size, **fields)


def activation(k: Keys, key: str = "hidden_act") -> str:
    """The moelab activation named by ``key`` (ValueError when moelab has none like it)."""
    v = k(key)
    if not isinstance(v, str) or v not in ACTIVATIONS_BY_HF_NAME:
        raise ValueError(f"{k.model_type} config: {key}={v!r} is not a supported activation; "
                         f"supported: {sorted(ACTIVATIONS_BY_HF_NAME)}")
    return ACTIVATIONS_BY_HF_NAME[v]


def heads(k: Keys, head_dim_key: Optional[str] = "head_dim") -> Tuple[int, int, int, int]:
    """(H, n_h, n_kv, d): kv heads default to the heads, head_dim to H // n_h (as HF)."""
    H = k.need("hidden_size")
    n_h = k.count("num_attention_heads")  # HF divides by it
    n_kv = k("num_key_value_heads", None)
    n_kv = n_h if n_kv is None else n_kv
    d = k(head_dim_key, None) if head_dim_key else None
    d = H // n_h if not d else d
    return H, n_h, n_kv, d


def gqa_attention(k: Keys, *, n_h, n_kv, d, bias_qkv=False, bias_o=False, **kw) -> AttentionConfig:
    """A grouped-query attention with the config's partial rotary factor; ``kw`` are further
    ``AttentionConfig`` fields."""
    return AttentionConfig(num_attention_heads=n_h, num_key_value_heads=n_kv, head_dim=d,
                           attention_bias=bool(bias_qkv), o_proj_bias=bool(bias_o),
                           partial_rotary_factor=k.rope_factor(), **kw)


def attention_bias(k: Keys) -> dict:
    """``gqa_attention``'s bias switches where one key, ``attention_bias``, sets the biases of
    q, k, v and o alike (most families)."""
    b = bool(k("attention_bias"))
    return dict(bias_qkv=b, bias_o=b)


def all_sliding(window: Optional[int], num_layers: int) -> Optional[Tuple[str, ...]]:
    """``layer_types`` of a model whose every layer slides over ``window`` (None: no window,
    every layer full attention): Mistral's and Mixtral's ``sliding_window``."""
    return None if window is None else ("sliding_attention",) * num_layers


def softmax_experts(k: Keys, hidden_size: int, num_experts_key: str,
                    norm_topk_prob: bool) -> MoEConfig:
    """A softmax top-k router over experts each ``intermediate_size`` wide, with the model's
    ``hidden_act`` (Mixtral, PhiMoE, OLMoE)."""
    return MoEConfig(hidden_size=hidden_size, num_experts=k(num_experts_key),
                     num_experts_per_tok=k("num_experts_per_tok"),
                     moe_intermediate_size=k("intermediate_size"), scoring="softmax",
                     norm_topk_prob=norm_topk_prob, activation=activation(k))


def mla_attention(k: Keys, n_h: int, n_kv: int) -> AttentionConfig:
    """DeepSeek's multi-head latent attention (DeepSeek-V2/V3, Kimi K2)."""
    return AttentionConfig(
        kind="mla", num_attention_heads=n_h, num_key_value_heads=n_kv,
        head_dim=k.need("qk_rope_head_dim"), attention_bias=bool(k("attention_bias")),
        o_proj_bias=bool(k("attention_bias")),
        q_lora_rank=k("q_lora_rank"), kv_lora_rank=k.need("kv_lora_rank"),
        qk_nope_head_dim=k.need("qk_nope_head_dim"), qk_rope_head_dim=k.need("qk_rope_head_dim"),
        v_head_dim=k.need("v_head_dim"))


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------
def _family_of(d: Mapping[str, Any]) -> "registry.Family":
    mt = d.get("model_type")
    if mt is None:
        raise ValueError("config: missing required key 'model_type'")
    if not isinstance(mt, str):
        raise ValueError(f"config: model_type must be a str, got {mt!r}")
    architectures = d.get("architectures") or ()
    if not isinstance(architectures, (list, tuple)) or not all(
            isinstance(a, str) for a in architectures):
        raise ValueError(f"config: architectures must be a list of class names (str), got "
                         f"{architectures!r}")
    for fam in registry.families():
        if any(mt == t and a in architectures for t, a in fam.released_as):
            return fam
    fam = registry.lookup(mt)
    if fam is None:
        raise ValueError(f"config: unsupported model_type {mt!r}; supported: "
                         f"{', '.join(registry.model_types())}")
    return fam


def _text_part(d: Dict[str, Any], wrapper: "registry.Family") -> Dict[str, Any]:
    """A wrapper's ``text_config`` (or the text config its class builds without one), with the
    head tying transformers applies (``TextWrapper.tie_from_top_level``)."""
    text = d.get("text_config")
    if text is None:
        text = dict(wrapper.wraps.text_defaults)
    if not isinstance(text, Mapping):
        raise ValueError(f"{wrapper.model_type} config: text_config must be a mapping, got "
                         f"{type(text).__name__}")
    text = dict(text)
    if wrapper.wraps.tie_from_top_level:
        top = Keys.of(d, wrapper)("tie_word_embeddings", None)
        if top is not None:
            text["tie_word_embeddings"] = top
    text["model_type"] = wrapper.wraps.text_model_type
    return text


def from_hf_config(config) -> ModelConfig:
    """A ``ModelConfig`` from a Hugging Face config.

    config : a ``dict`` (a parsed ``config.json`` or ``PretrainedConfig.to_dict()``), a path to
        a ``config.json`` or to the folder holding one, or a ``transformers`` config object.

    Supported ``model_type`` values: ``moelab.registry.model_types()`` (MoE: mixtral,
    qwen2_moe, qwen3_moe, qwen3_next, deepseek_v2, deepseek_v3, kimi_k2, glm4_moe, llama4 /
    llama4_text, gpt_oss, olmoe, phimoe, dbrx, grok; dense: llama, mistral, mistral3, qwen2,
    qwen3, olmo2, gemma3 / gemma3_text, smollm3). A multimodal wrapper gives its text model's
    config. Grok-2's released config says ``"model_type": "git"``; it is recognised by
    ``architectures == ["Grok1ForCausalLM"]``.

    Raises TypeError (not a mapping, path or config object) and ValueError (no such file,
    invalid JSON, an unknown or missing ``model_type``, a missing required key, an unsupported
    feature, or values ``ModelConfig`` rejects), each naming the key.
    """
    d = config_dict(config)
    fam = _family_of(d)
    if fam.wraps is not None:
        d = _text_part(d, fam)
        fam = registry.family(fam.wraps.text_model_type)
    try:
        return fam.parse(Keys.of(d, fam))
    except TypeError as exc:  # a value of the wrong type in the JSON
        raise ValueError(f"{fam.model_type} config: {exc}") from exc
