"""Type stubs of moelab's compiled core (private: use the moelab package). Kept by hand and
checked against the binary by tests/test_api.py. Read-only properties are Final attributes."""

from typing import Final, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

def build_info() -> dict: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def set_isa(name: str) -> None: ...
def get_isa() -> str: ...
def route(
    logits: npt.NDArray[np.float32],
    spec: MoESpec,
    correction_bias: Optional[npt.NDArray[np.float32]] = None,
) -> Tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...
def activation(
    kind: str, gate: npt.NDArray[np.float32], up: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]: ...
def linear(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    bias: Optional[npt.NDArray[np.float32]] = None,
    checked: bool = False,
) -> npt.NDArray[np.float32]: ...

SCORINGS: Tuple[str, ...]
ACTIVATIONS: Tuple[str, ...]

# private hooks for the tests
def _heap_probe_linked() -> bool: ...
def _heap_allocations() -> int: ...
def _get_min_parallel_work() -> float: ...
def _set_min_parallel_work(work: float) -> None: ...
def _parallel_regions() -> dict[str, int]: ...
def _linear_here(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    bias: Optional[npt.NDArray[np.float32]] = None,
) -> npt.NDArray[np.float32]: ...

class MoESpec:
    """moelab.MoEConfig's fields, checked by the core's rules (ValueError)."""
    def __init__(
        self,
        *,
        hidden_size: int,
        num_experts: int,
        num_experts_per_tok: int,
        moe_intermediate_size: int,
        scoring: str = "softmax",
        norm_topk_prob: bool = True,
        routed_scaling_factor: float = 1.0,
        n_group: int = 1,
        topk_group: int = 1,
        correction_bias: bool = False,
        router_bias: bool = False,
        router_logit_softcap: Optional[float] = None,
        activation: str = "silu",
        expert_bias: bool = False,
        n_shared_experts: int = 0,
        shared_intermediate_size: Optional[int] = None,
        shared_expert_gate: bool = False,
        capacity_factor: Optional[float] = None,
    ) -> None: ...
    hidden_size: Final[int]
    num_experts: Final[int]
    num_experts_per_tok: Final[int]
    moe_intermediate_size: Final[int]
    shared_width: Final[int]
    num_params: Final[int]
    def weight_shapes(self) -> list[Tuple[str, Tuple[int, ...]]]: ...
    def capacity(self, num_tokens: int) -> int: ...

class _LayerWeights:
    """The weights of a layer (the base of MoELayer, GatedMLP and _TokenMixer)."""
    weight_dtype: Final[str]
    def init_random(self, seed: int) -> None: ...
    def weight_names(self) -> list[str]: ...
    def weight_shapes(self) -> dict[str, tuple[int, ...]]: ...
    def weight(self, name: str) -> npt.NDArray[np.float32]: ...
    def load_weights(self, weights: dict, strict: bool = True, borrow: bool = False) -> None: ...
    @property
    def owned_weight_bytes(self) -> int: ...

class MoELayer(_LayerWeights):
    def __init__(self, spec: MoESpec, weight_dtype: str = "float32") -> None: ...
    spec: Final[MoESpec]
    def forward(
        self, x: npt.NDArray[np.float32], return_stats: bool = False
    ) -> Tuple[npt.NDArray[np.float32], Optional[dict]]: ...
    def route(
        self, x: npt.NDArray[np.float32]
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...
    def dispatch(
        self, ids: npt.NDArray[np.int32]
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]: ...
    def expert_inputs(
        self, x: npt.NDArray[np.float32], tokens: npt.NDArray[np.int64],
        weights: Optional[npt.NDArray[np.float32]] = None,
    ) -> npt.NDArray[np.float32]: ...
    def run_experts(
        self, rows: npt.NDArray[np.float32], experts: npt.NDArray[np.int32],
        counts: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.float32]: ...
    def combine(
        self, x: npt.NDArray[np.float32], weights: npt.NDArray[np.float32],
        row_of_pair: npt.NDArray[np.int64], expert_output: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float32]: ...
    def routing_losses(
        self, logits: npt.NDArray[np.float32], tokens_per_expert: npt.NDArray[np.int64]
    ) -> Tuple[float, float]: ...
    @property
    def held_experts(self) -> npt.NDArray[np.bool_]: ...

class GatedMLP(_LayerWeights):
    def __init__(
        self, hidden_size: int, intermediate_size: int, activation: str = "silu",
        weight_dtype: str = "float32",
    ) -> None: ...
    hidden_size: Final[int]
    intermediate_size: Final[int]
    activation: Final[str]
    def forward(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

class _TokenMixer(_LayerWeights):
    """The base of the token mixers (Attention, MultiHeadLatentAttention, GatedDeltaNet)."""
    id: Final[int]

class _SequenceState:
    """The base of a token mixer's per-sequence object (KvCache, MlaCache, DeltaNetState)."""
    length: Final[int]
    nbytes: Final[int]
    owner: Final[int]
    def reset(self) -> None: ...

DELTA_CHUNK: int

class DeltaNetSpec:
    def __init__(
        self,
        *,
        hidden_size: int,
        linear_num_key_heads: int,
        linear_num_value_heads: int,
        linear_key_head_dim: int,
        linear_value_head_dim: int,
        linear_conv_kernel_dim: int,
        rms_norm_eps: float,
    ) -> None: ...
    hidden_size: Final[int]
    linear_num_key_heads: Final[int]
    linear_num_value_heads: Final[int]
    linear_key_head_dim: Final[int]
    linear_value_head_dim: Final[int]
    linear_conv_kernel_dim: Final[int]
    rms_norm_eps: Final[float]

class DeltaNetState(_SequenceState):
    def recurrent_state(self) -> npt.NDArray[np.float32]: ...
    def conv_state(self) -> npt.NDArray[np.float32]: ...

class GatedDeltaNet(_TokenMixer):
    def __init__(self, spec: DeltaNetSpec, weight_dtype: str = "float32") -> None: ...
    spec: Final[DeltaNetSpec]
    def new_state(self) -> DeltaNetState: ...
    def forward(
        self, x: npt.NDArray[np.float32], state: Optional[DeltaNetState] = None
    ) -> npt.NDArray[np.float32]: ...

def all_finite(array: np.ndarray) -> bool: ...
def rms_norm(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    eps: float,
    offset: float = 0.0,
    math: str = "float32",
) -> npt.NDArray[np.float32]: ...
def embedding(
    ids: npt.NDArray[np.int64],
    table: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    scale: Optional[float] = None,
    checked: bool = False,
) -> npt.NDArray[np.float32]: ...
def logit_softcap(logits: npt.NDArray[np.float32], cap: float) -> npt.NDArray[np.float32]: ...

class RopeSpec:
    def __init__(
        self,
        *,
        rope_type: str = "default",
        rope_theta: float = 10000.0,
        head_dim: int,
        partial_rotary_factor: float = 1.0,
        interleaved: bool = False,
        factor: float = 1.0,
        low_freq_factor: float = 1.0,
        high_freq_factor: float = 4.0,
        original_max_position_embeddings: float = 0.0,
        beta_fast: float = 32.0,
        beta_slow: float = 1.0,
        mscale: float = 0.0,
        mscale_all_dim: float = 0.0,
        attention_factor: float = 0.0,
        truncate: bool = True,
    ) -> None: ...
    @property
    def rope_type(self) -> str: ...
    @property
    def rope_theta(self) -> float: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def partial_rotary_factor(self) -> float: ...
    @property
    def interleaved(self) -> bool: ...
    def inv_freq(self) -> npt.NDArray[np.float32]: ...
    def attention_scaling(self) -> float: ...
    def apply(self, x: npt.NDArray[np.float32], pos0: int = 0) -> npt.NDArray[np.float32]: ...

class AttentionSpec:
    def __init__(
        self,
        *,
        hidden_size: int,
        num_attention_heads: int,
        num_key_value_heads: int,
        head_dim: int,
        qkv_bias: bool = False,
        o_bias: bool = False,
        qk_norm: str = "none",
        norm_unit_offset: bool = False,
        rms_norm_eps: float = 1e-6,
        rope: Optional[RopeSpec] = None,
        mask: str = "causal",
        window: int = 0,
        sinks: bool = False,
        softcap: float = 0.0,
        scaling: float = 0.0,
        output_gate: bool = False,
        temperature_tuning: bool = False,
        attn_scale: float = 0.1,
        floor_scale: float = 8192.0,
        max_position_embeddings: int,
    ) -> None: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def num_attention_heads(self) -> int: ...
    @property
    def num_key_value_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def window(self) -> int: ...
    @property
    def max_position_embeddings(self) -> int: ...
    @property
    def mask(self) -> str: ...
    @property
    def qk_norm(self) -> str: ...
    @property
    def use_rope(self) -> bool: ...

class KvCache(_SequenceState):
    @property
    def tokens_held(self) -> int: ...
    @property
    def window(self) -> int: ...
    def read(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

class Attention(_TokenMixer):
    def __init__(self, spec: AttentionSpec, weight_dtype: str = "float32") -> None: ...
    @property
    def spec(self) -> AttentionSpec: ...
    def new_cache(self) -> KvCache: ...
    def forward(
        self, x: npt.NDArray[np.float32], cache: Optional[KvCache] = None
    ) -> npt.NDArray[np.float32]: ...

class MlaSpec:
    def __init__(
        self,
        *,
        hidden_size: int,
        num_attention_heads: int,
        q_lora_rank: int,
        kv_lora_rank: int,
        qk_nope_head_dim: int,
        qk_rope_head_dim: int,
        v_head_dim: int,
        attention_bias: bool = False,
        rms_norm_eps: float = 1e-6,
        rope: RopeSpec,
        rope_interleave: bool = True,
        scaling: float = 0.0,
        max_position_embeddings: int,
    ) -> None: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def kv_lora_rank(self) -> int: ...
    @property
    def qk_rope_head_dim(self) -> int: ...
    @property
    def logit_scale(self) -> float: ...

class MlaCache(_SequenceState):
    @property
    def row_dim(self) -> int: ...
    def read(self) -> npt.NDArray[np.float32]: ...

class MultiHeadLatentAttention(_TokenMixer):
    def __init__(self, spec: MlaSpec, weight_dtype: str = "float32") -> None: ...
    @property
    def spec(self) -> MlaSpec: ...
    def new_cache(self) -> MlaCache: ...
    def forward(
        self, x: npt.NDArray[np.float32], cache: Optional[MlaCache] = None, form: str = "auto"
    ) -> npt.NDArray[np.float32]: ...
