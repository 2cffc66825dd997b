"""The registry of model families: the one list of families that the rest of moelab consults.

A family is one Hugging Face ``model_type`` with its transformers modeling file. Each module of
``moelab.families`` describes one family, and may describe close variants that share its parser
(Kimi K2 beside DeepSeek-V3, the multimodal wrappers beside their text models), in a
:class:`Family` record that it passes to :func:`register` when it is imported:

* ``defaults`` / ``key_aliases`` / ``nested_defaults``: the HF config class's defaults and
  ``attribute_map``, used by its ``config.json`` parser ``parse``;
* ``presets`` / ``preset_aliases``: released models as ``ModelConfig`` (data, every value with
  its source);
* ``checkpoint``: how its checkpoints name and lay out the weights (:class:`CheckpointNames`),
  what ``moelab.hf`` reads; None when moelab cannot load its layers;
* ``parity``: tiny transformers configs the tests compare moelab against
  (:class:`ParityFixture`; transformers is imported only when one is built).

    moelab.families()                     # every Family, in registration order
    moelab.registry.family("qwen3_moe")   # one, by model_type (or another name of it)
    moelab.list_presets(); moelab.preset("olmoe-1b-7b")

Nothing in here imports torch or transformers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .model_config import ModelConfig

__all__ = ["Family", "TextWrapper", "CheckpointNames", "MoEBlockNames", "ExpertLayout",
           "ParityFixture", "STACKED", "TRANSPOSED", "TRANSPOSED_INTERLEAVED",
           "DECODER_PREFIXES", "PARITY_BASE", "register", "families", "family", "lookup",
           "model_types", "loadable_model_types", "list_presets", "preset", "as_model_config",
           "DecoderNames"]


# ---------------------------------------------------------------------------------------------
# checkpoint names and layouts (what moelab.hf reads)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpertLayout:
    """How a checkpoint stores the fused expert tensors ``experts.gate_up_proj`` and
    ``experts.down_proj`` (and their biases) relative to moelab's canonical (E, 2I, H) /
    (E, H, I), gate rows before up rows.

    transposed : stored for ``x @ W``: (E, H, 2I) and (E, I, H) (Llama 4, gpt-oss).
    interleaved : gate and up alternate along the 2I axis (gate0, up0, gate1, ...; gpt-oss),
        for the weight and its bias.
    """

    transposed: bool = False
    interleaved: bool = False


STACKED = ExpertLayout()
TRANSPOSED = ExpertLayout(transposed=True)
TRANSPOSED_INTERLEAVED = ExpertLayout(transposed=True, interleaved=True)

#: Where the decoder's ``layers.{i}`` may sit in a file, in order of preference when a layer
#: index appears under several (e.g. Qwen3-Next's ``mtp.layers.0``).
DECODER_PREFIXES = ("model.", "", "model.language_model.", "language_model.model.",
                    "language_model.")


@dataclass(frozen=True)
class MoEBlockNames:
    """How a family's checkpoints name the tensors of one MoE block, found under
    ``<prefix>layers.{i}.<block>.`` (the prefix is anything, see ``DECODER_PREFIXES``).

    blocks : the block's module name(s): ``mlp`` | ``block_sparse_moe`` (Mixtral files) |
        ``feed_forward`` (Llama 4).
    router : the router module: ``gate.weight`` (and ``gate.e_score_correction_bias``) or
        ``router.weight`` / ``router.bias``.
    layout : the fused experts' :class:`ExpertLayout` (transformers 5.x names
        ``experts.gate_up_proj``, ``experts.down_proj``, ``..._bias``).
    per_expert : the module names (gate, up, down) of the 4.x per-expert files
        (``experts.{e}.<name>.weight``), or None when the family only has fused tensors.
    shared_experts : the shared expert module (``shared_expert`` / ``shared_experts``), or None.
    shared_projections : its (gate, up, down) module names.
    shared_expert_gate : the module of the shared expert's sigmoid gate.
    """

    blocks: Tuple[str, ...] = ("mlp",)
    router: str = "gate"
    layout: ExpertLayout = STACKED
    per_expert: Optional[Tuple[str, str, str]] = ("gate_proj", "up_proj", "down_proj")
    shared_experts: Optional[str] = None
    shared_projections: Tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    shared_expert_gate: str = "shared_expert_gate"


@dataclass(frozen=True)
class CheckpointNames:
    """Everything ``moelab.hf`` needs to find a family's weights in a checkpoint.

    moe : the MoE block's names (:class:`MoEBlockNames`).
    decoder_prefixes : where ``layers.{i}`` may sit, in order of preference.

    The whole-model loader adds the attention, norm, embedding and head names here, per family.
    """

    moe: MoEBlockNames
    decoder_prefixes: Tuple[str, ...] = DECODER_PREFIXES


@dataclass(frozen=True)
class DecoderNames:
    """Where a family's checkpoints keep the rest of a whole decoder (``moelab.hf.load_model``),
    under the model prefix; per-layer names sit under ``layers.{i}.``.

    embedding, final_norm : ``embed_tokens.weight``, ``norm.weight``.
    lm_head : at the top level (beside the model prefix); absent when tied.
    attention, linear_attention : the token mixer's module (``self_attn``; ``linear_attn`` for
        Gated DeltaNet layers); the weights in it have the names of ``moelab.Attention`` /
        ``moelab.GatedDeltaNet``.
    dense_blocks : the dense FFN's module, first found wins (``gate_proj``/``up_proj``/
        ``down_proj``); MoE blocks are named by ``CheckpointNames.moe``.
    norms : per norm placement, each norm slot of ``moelab.decoder.NORM_SLOTS`` -> its module.
    """

    embedding: str = "embed_tokens.weight"
    final_norm: str = "norm.weight"
    lm_head: str = "lm_head.weight"
    attention: str = "self_attn"
    linear_attention: str = "linear_attn"
    dense_blocks: Tuple[str, ...] = ("mlp",)
    norms: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({
        "pre": MappingProxyType({"mixer_in": "input_layernorm",
                                 "ffn_in": "post_attention_layernorm"}),
        "sandwich": MappingProxyType({"mixer_in": "input_layernorm",
                                      "mixer_out": "post_attention_layernorm",
                                      "ffn_in": "pre_feedforward_layernorm",
                                      "ffn_out": "post_feedforward_layernorm"}),
        "post": MappingProxyType({"mixer_out": "post_attention_layernorm",
                                  "ffn_out": "post_feedforward_layernorm"})}))


# ---------------------------------------------------------------------------------------------
# the Hugging Face parity fixture
# ---------------------------------------------------------------------------------------------
#: Keys every tiny parity model shares (a fixture's own ``config`` overrides them).
PARITY_BASE = MappingProxyType(dict(vocab_size=64, hidden_size=32, num_attention_heads=4,
                                    num_key_value_heads=2))


@dataclass(frozen=True)
class ParityFixture:
    """A tiny random transformers model of the family, to compare a moelab MoE layer against.

    name : the fixture's id in the tests (the family's model_type, or a variant's name).
    config_class : the transformers config class (``"MixtralConfig"``).
    config : its keyword arguments, over ``PARITY_BASE``.
    moe_layer : the decoder layer under test (an MoE layer); dense_layer : a dense one, or None.
    routing : how to read the routing out of the HF block: ``"gate"``
        (``block.gate(x) -> (logits, weights, ids)``), ``"router"`` (the same from
        ``block.router``), ``"llama4"`` (``block.router(x) -> (scores, logits)``).
    input_scale : the scale of the test's unit-normal inputs (gpt-oss: large, so that its
        clamps act).
    decorated : the experts use transformers' ``@use_experts_implementation``.
    aux_loss : the transformers module defines ``load_balancing_loss_func``.
    saved_expert_tensor : the name ``save_pretrained`` gives the first expert tensor of layer 1.
    """

    name: str
    config_class: str
    config: Mapping[str, Any]
    moe_layer: int = 1
    dense_layer: Optional[int] = None
    routing: str = "gate"
    input_scale: float = 1.0
    decorated: bool = True
    aux_loss: bool = False
    saved_expert_tensor: Optional[str] = None

    def make_config(self):
        """The transformers config of the tiny model (imports transformers, only here)."""
        import transformers

        return getattr(transformers, self.config_class)(**{**PARITY_BASE, **self.config})

    def config_json(self, model_type: str) -> Dict[str, Any]:
        """The same model as the minimal ``config.json`` dict a user would write."""
        return {**PARITY_BASE, **self.config, "model_type": model_type}


# ---------------------------------------------------------------------------------------------
# the family record
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextWrapper:
    """A multimodal ``model_type`` whose ``config.json`` nests its text model under
    ``text_config`` (Llama 4, Gemma 3, Mistral 3).

    text_model_type : the family that parses the text part.
    text_defaults : the text config the wrapper class builds when ``text_config`` is absent.
    tie_from_top_level : transformers ties the LM head by the wrapper's top-level
        ``tie_word_embeddings`` (its default: the wrapper family's ``defaults``) whatever the
        text config says (Gemma 3, Mistral 3); False: by the text config's (Llama 4).
    """

    text_model_type: str
    text_defaults: Mapping[str, Any] = field(default_factory=dict)
    tie_from_top_level: bool = True


_SAME = "same as model_type"


@dataclass(frozen=True)
class Family:
    """One model family (or a close variant): everything moelab knows of it, in one record.

    model_type : the HF ``model_type``, the registry key.
    parse : ``config.json`` parser, ``(moelab.hf_config.Keys) -> ModelConfig``; None for a wrapper.
    defaults : the HF config class's defaults (transformers 5.23), used for missing keys.
    key_aliases : groups of names one key may have in a ``config.json`` (HF ``attribute_map``).
    nested_defaults : defaults of nested config dicts, by key (DBRX ``attn_config``).
    presets : preset name -> ModelConfig (released models; every value with its source).
    preset_aliases : other preset names -> a preset name of this family.
    checkpoint : :class:`CheckpointNames`, or None when ``moelab.hf`` cannot load its layers.
    parity : :class:`ParityFixture` s, the first the family's own, the others variants.
    wraps : a :class:`TextWrapper` for a multimodal wrapper type, else None.
    other_names : other ``model_type`` spellings that mean this family (Grok's).
    released_as : ``(model_type, architecture)`` pairs of released ``config.json`` files that
        name another type (Grok-2: ``("git", "Grok1ForCausalLM")``).
    hf_model_type : the transformers ``model_type`` that builds this family's models (Kimi K2:
        ``"deepseek_v3"``), or None when transformers has none (Grok).
    decoder : the names of the whole decoder's other weights (:class:`DecoderNames`).
    """

    model_type: str
    parse: Optional[Callable[..., ModelConfig]] = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    key_aliases: Tuple[Tuple[str, ...], ...] = ()
    nested_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    presets: Mapping[str, ModelConfig] = field(default_factory=dict)
    preset_aliases: Mapping[str, str] = field(default_factory=dict)
    checkpoint: Optional[CheckpointNames] = None
    parity: Tuple[ParityFixture, ...] = ()
    wraps: Optional[TextWrapper] = None
    other_names: Tuple[str, ...] = ()
    released_as: Tuple[Tuple[str, str], ...] = ()
    hf_model_type: Optional[str] = _SAME
    decoder: DecoderNames = field(default_factory=DecoderNames)

    def __post_init__(self) -> None:
        if self.hf_model_type == _SAME:
            object.__setattr__(self, "hf_model_type", self.model_type)

    @property
    def names(self) -> Tuple[str, ...]:
        """``model_type`` and ``other_names``: every ``model_type`` value that means this family."""
        return (self.model_type,) + tuple(self.other_names)

    def __repr__(self) -> str:
        parts = [repr(self.model_type)]
        if self.wraps is not None:
            parts.append(f"wraps={self.wraps.text_model_type!r}")
        if self.presets:
            parts.append(f"presets={list(self.presets)}")
        parts.append(f"checkpoint={'yes' if self.checkpoint is not None else 'no'}")
        if self.parity:
            parts.append(f"parity={[p.name for p in self.parity]}")
        return f"Family({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------
_FAMILIES: List[Family] = []
_BY_NAME: Dict[str, Family] = {}


def register(fam: Family) -> Family:
    """Add a family (at its module's import); returns it.

    Raises TypeError (not a Family) or ValueError: a ``model_type`` or other name already
    registered, a preset name already taken, a preset whose ``name`` or ``model_type`` differs
    from its key or its family, a preset alias to another family's preset, a wrapper that
    parses, or a family that neither parses nor wraps.
    """
    if not isinstance(fam, Family):
        raise TypeError(f"register() takes a moelab.registry.Family, got {type(fam).__name__}")
    taken = [n for n in fam.names if n in _BY_NAME]
    if taken:
        raise ValueError(f"model_type {taken[0]!r} is already registered")
    if (fam.parse is None) == (fam.wraps is None):
        raise ValueError(f"family {fam.model_type!r}: give either a parser or a TextWrapper")
    known = set(_preset_index()) | set(_alias_index())
    for name, cfg in fam.presets.items():
        if name in known:
            raise ValueError(f"family {fam.model_type!r}: preset {name!r} is already registered")
        if not isinstance(cfg, ModelConfig) or cfg.name != name or cfg.model_type != fam.model_type:
            raise ValueError(f"family {fam.model_type!r}: preset {name!r} must be a ModelConfig "
                             f"with name={name!r} and model_type={fam.model_type!r}")
    for alias, target in fam.preset_aliases.items():
        if alias in known or alias in fam.presets or target not in fam.presets:
            raise ValueError(f"family {fam.model_type!r}: preset alias {alias!r} -> {target!r} "
                             "must be a new name for one of its own presets")
    _FAMILIES.append(fam)
    for n in fam.names:
        _BY_NAME[n] = fam
    return fam


def families() -> Tuple[Family, ...]:
    """Every registered :class:`Family`, in registration order (MoE families with presets
    first, then the dense comparators, then families without presets)."""
    return tuple(_FAMILIES)


def lookup(model_type: str) -> Optional[Family]:
    """The family of a ``model_type`` (or of another name of it), or None."""
    return _BY_NAME.get(model_type)


def family(model_type: str) -> Family:
    """The family of a ``model_type`` (or another name of it). Raises ValueError when unknown."""
    fam = lookup(model_type)
    if fam is None:
        raise ValueError(f"unknown model_type {model_type!r}; registered: "
                         f"{', '.join(model_types())}")
    return fam


def model_types() -> Tuple[str, ...]:
    """Every ``model_type`` that ``moelab.from_hf_config`` accepts (wrappers and other names
    included), sorted."""
    return tuple(sorted(_BY_NAME))


def _checkpoint_family(fam: Family) -> Family:
    """The family whose checkpoint names serve ``fam`` (a wrapper's text family)."""
    if fam.wraps is None:
        return fam
    return lookup(fam.wraps.text_model_type) or fam


def loadable_model_types() -> Tuple[str, ...]:
    """Every ``model_type`` whose MoE layers ``moelab.hf`` reads (a wrapper when its text family
    is loadable), sorted."""
    return tuple(sorted(n for fam in _FAMILIES if _checkpoint_family(fam).checkpoint is not None
                        for n in fam.names))


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------
def _preset_index() -> Dict[str, ModelConfig]:
    """Preset name -> config, MoE models first, then dense ones, each in registration order."""
    items = [(n, c) for fam in _FAMILIES for n, c in fam.presets.items()]
    return dict([(n, c) for n, c in items if c.is_moe] + [(n, c) for n, c in items
                                                          if not c.is_moe])


def _alias_index() -> Dict[str, str]:
    return {a: t for fam in _FAMILIES for a, t in fam.preset_aliases.items()}


def list_presets(include_aliases: bool = False) -> List[str]:
    """Names of every preset, in a fixed order (MoE models first, then dense comparators).

    include_aliases : also list alternative names (e.g. ``"deepseek-r1"``).
    """
    names = list(_preset_index())
    if include_aliases:
        names += list(_alias_index())
    return names


def preset(name: str) -> ModelConfig:
    """The ``ModelConfig`` of a released model by preset name (case-insensitive).

    An alias (``deepseek-r1`` -> ``deepseek-v3``) gives the same architecture with the alias as
    its name. Raises TypeError (name not a str) or ValueError (unknown name; the message lists
    them all).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    presets = _preset_index()
    if key in presets:
        return presets[key]
    aliases = _alias_index()
    if key in aliases:
        return dataclasses.replace(presets[aliases[key]], name=key)
    raise ValueError(f"unknown preset {name!r}; available: "
                     f"{', '.join(list_presets(include_aliases=True))}")


def as_model_config(cfg) -> ModelConfig:
    """A ``ModelConfig`` as is, or a preset name's config.

    Raises TypeError for anything else, ValueError for an unknown preset name.
    """
    if isinstance(cfg, ModelConfig):
        return cfg
    if isinstance(cfg, str):
        return preset(cfg)
    raise TypeError(f"expected a ModelConfig or a preset name, got {type(cfg).__name__}")
