"""moelab: build, run and compare the Mixture-of-Experts layers of modern LLMs.

A C++17 core (Eigen + OpenMP) holds the routers, experts and MoE layers; this package is its
NumPy face. What each layer computes: docs/semantics.md. The model families moelab knows, their
presets, config parsers and checkpoint names: ``moelab.families()`` (``moelab.registry``).
"""

from __future__ import annotations

import os as _os

# OpenMP threads that spin at barriers stall every fork-join for a scheduler time slice when
# another process holds a core (a scaled model measured 119 ms instead of 6.5 ms on 2 busy
# cores). Sleeping at barriers costs microseconds per region on an idle machine. libgomp reads
# this once, when the core is loaded; a value the user has set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "moelab's compiled core (moelab._core) could not be imported. Build and install the "
        "package from its source folder with `pip install .` (needs a C++17 compiler); for "
        f"development `pip install -e .`. Original error: {exc}") from exc

_core._warn_on_unknown_isa_variable()  # MOELAB_ISA=<unknown> is ignored: say so

from . import ops, reference
from .config import MoEConfig
from .layer import MoELayer, RoutingStats
from .mlp import GatedMLP
from .deltanet import DeltaNetState, GatedDeltaNet
from .attention import Attention, AttentionSpec, KVCache
from .mla import MLACache, MLASpec, MultiHeadLatentAttention
from .model_config import AttentionConfig, ModelConfig
from .hf_config import from_hf_config
from . import families as _family_modules  # registers every family (moelab/families/*.py)
from . import registry
from .registry import families, list_presets, preset
from .analysis import compare, costs, count_params
from .analysis import (ExpertParallelCosts, ExpertParallelTraffic, expert_parallel_costs,
                       expert_parallel_traffic)
from .model import build
from . import hf
from . import designed_tokens
from . import plot  # matplotlib is imported only when a helper is called
from .tokenizer import Tokenizer
from .threads import get_num_threads, set_num_threads
from .decoder import DecoderCache, DecoderModel
from .residual_moe import ResidualMoE

__version__: str = _core.__version__

__all__ = [
    "__version__",
    "build_info",
    "get_num_threads",
    "set_num_threads",
    "MoEConfig",
    "MoELayer",
    "GatedMLP",
    "GatedDeltaNet",
    "DeltaNetState",
    "Attention",
    "AttentionSpec",
    "KVCache",
    "MultiHeadLatentAttention",
    "MLASpec",
    "MLACache",
    "AttentionConfig",
    "ModelConfig",
    "from_hf_config",
    "families",
    "registry",
    "list_presets",
    "preset",
    "count_params",
    "costs",
    "compare",
    "build",
    "RoutingStats",
    "ops",
    "reference",
    "hf",
    "plot",
    "designed_tokens",
    "Tokenizer",
    "DecoderModel",
    "DecoderCache",
    "ResidualMoE",
    "ExpertParallelTraffic",
    "ExpertParallelCosts",
    "expert_parallel_traffic",
    "expert_parallel_costs",
]


def build_info() -> dict:
    """How the core was built and what it runs.

    openmp (bool), max_threads (int), num_threads (int), simd (str: the expert kernels'
    instruction set, chosen at run time: "avx512", "avx2" or "portable"), isa_detected (str),
    avx512_bf16 (bool), eigen (str: version), eigen_simd (str: what Eigen was compiled for),
    compiler (str), build_type (str), panels (bool: experts with more than 4 rows, and
    projections of more than 4 tokens, take the token-panel kernel: AVX-512 and AVX2).
    """
    return dict(_core.build_info())

