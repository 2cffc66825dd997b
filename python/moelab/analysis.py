"""Parameter and cost accounting of a ``ModelConfig``, and the comparison table of models.

Everything is computed from the structure (the module shapes of the HF implementation), never
typed in; the building blocks' formulas are in ``moelab.params``, the attention's here. The
conventions are those of docs/semantics.md, "Parameters and costs": buffers and MTP modules
are not in the total; active = total - (E - k) x one routed expert on every MoE layer,
embedding and head included; matmul FLOPs = 2 x the active weight-matrix parameters (head in,
embedding lookup out), plus attention at ``context``; weight bytes per token at batch 1.
``expert_parallel_traffic`` / ``expert_parallel_costs``: the network bytes of the expert-parallel
layer's transport per token and the tokens/s bounds of the network and of memory bandwidth
(docs/expert_parallel.md, "Cost model").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import params
from ._checks import is_int, is_real
from .config import MoEConfig
from .model_config import AttentionConfig, ModelConfig
from .registry import as_model_config

__all__ = ["ParamCount", "Costs", "count_params", "costs", "compare", "attention_params",
           "linear_attention_flops", "ExpertParallelTraffic", "ExpertParallelCosts",
           "expert_parallel_traffic", "expert_parallel_costs", "EP_ROUTING_BYTES_PER_SLOT",
           "EP_AGREEMENT_BYTES"]


# ---------------------------------------------------------------------------------------------
# parameters of one attention layer
# ---------------------------------------------------------------------------------------------
def attention_params(cfg: ModelConfig, layer_type: str) -> Tuple[int, int]:
    """(weight-matrix params, other params) of one token-mixer layer of ``layer_type``.

    "Other" holds biases, norm weights, sinks and the Gated DeltaNet's conv / decay / dt
    parameters; they count as parameters but not as matmul work.
    """
    a: AttentionConfig = cfg.attention
    H = cfg.hidden_size
    if layer_type == "linear_attention":
        n_k, n_v = a.linear_num_key_heads, a.linear_num_value_heads
        d_k, d_v = a.linear_key_head_dim, a.linear_value_head_dim
        key_dim, value_dim = n_k * d_k, n_v * d_v
        conv_dim = 2 * key_dim + value_dim
        matrix = (H * (2 * key_dim + 2 * value_dim)  # in_proj_qkvz
                  + H * 2 * n_v                      # in_proj_ba
                  + value_dim * H)                   # out_proj
        other = (conv_dim * a.linear_conv_kernel_dim  # depthwise conv1d, no bias
                 + 2 * n_v                            # A_log, dt_bias
                 + d_v)                               # RMSNormGated weight
        return matrix, other
    n_h, n_kv = a.num_attention_heads, a.num_key_value_heads
    if a.kind == "mla":
        r_kv, d_nope, d_rope, d_v = (a.kv_lora_rank, a.qk_nope_head_dim, a.qk_rope_head_dim,
                                     a.v_head_dim)
        d_qk = d_nope + d_rope
        if a.q_lora_rank is None:
            q_matrix, q_other = H * n_h * d_qk, 0
        else:
            r_q = a.q_lora_rank
            q_matrix = H * r_q + r_q * n_h * d_qk
            q_other = r_q + (r_q if a.attention_bias else 0)  # q_a_layernorm (+ q_a bias)
        matrix = (q_matrix
                  + H * (r_kv + d_rope)            # kv_a_proj_with_mqa
                  + r_kv * n_h * (d_nope + d_v)    # kv_b_proj
                  + n_h * d_v * H)                 # o_proj
        other = q_other + r_kv                     # kv_a_layernorm
        if a.attention_bias:
            other += (r_kv + d_rope) + H           # kv_a and o_proj biases
        return matrix, other
    d = a.head_dim
    q_out = n_h * d * (2 if a.output_gate else 1)
    matrix = H * q_out + 2 * H * n_kv * d + n_h * d * H
    other = 0
    if a.attention_bias:
        other += q_out + 2 * n_kv * d
    if a.o_proj_bias:
        other += H
    if a.attention_sinks:
        other += n_h
    if a.qk_norm == "head":
        other += 2 * d
    elif a.qk_norm == "full":
        other += n_h * d + n_kv * d
    return matrix, other


def _dense_mlp(cfg: ModelConfig) -> params.Params:
    return params.gated_mlp(cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias)


def _norms(cfg: ModelConfig, count: int) -> int:
    return params.norms(cfg.hidden_size, count, cfg.norm_bias).total


# ---------------------------------------------------------------------------------------------
# count_params
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamCount:
    """Parameters of a model by component (ints). ``total`` is the sum of the components.

    embedding : V*H.
    head : V*H when untied, else 0 (+ V for an LM-head bias).
    attention : every layer's token mixer (projections, biases, QK-norms, sinks, MLA norms,
        Gated DeltaNet).
    routed_experts : all routed experts of all MoE layers.
    shared_experts : shared experts and their gates.
    dense_ffn : dense MLPs (dense layers and Grok-2's residual MLP).
    routers : router weights and biases.
    norms : the layers' RMSNorms / LayerNorms and the final norm.
    mtp : multi-token-prediction modules (NOT in ``total``).
    active : parameters a token uses (see the module docstring); active_routed_experts the
    routed-expert part of it.
    """

    embedding: int
    head: int
    attention: int
    routed_experts: int
    shared_experts: int
    dense_ffn: int
    routers: int
    norms: int
    mtp: int
    total: int
    active: int
    active_routed_experts: int
    vocab_matrix: int  # V*H, one embedding-sized matrix

    @property
    def active_no_embedding(self) -> int:
        """Active parameters without the embedding and the LM head (GLM's convention)."""
        return self.active - self.embedding - self.head

    @property
    def active_no_embedding_matrix(self) -> int:
        """Active parameters without one V x H matrix (OpenAI's gpt-oss convention)."""
        return self.active - self.vocab_matrix

    @property
    def total_no_embedding(self) -> int:
        """Total without the embedding and the LM head (Qwen's "non-embedding" figure)."""
        return self.total - self.embedding - self.head

    @property
    def total_with_mtp(self) -> int:
        """Total plus the MTP modules (their embedding and head are shared, not repeated)."""
        return self.total + self.mtp

    @property
    def active_share(self) -> float:
        """active / total."""
        return self.active / self.total

    def breakdown(self) -> Dict[str, int]:
        """The components as a dict (they sum to ``total``; ``mtp`` is listed apart)."""
        return {"embedding": self.embedding, "head": self.head, "attention": self.attention,
                "routed_experts": self.routed_experts, "shared_experts": self.shared_experts,
                "dense_ffn": self.dense_ffn, "routers": self.routers, "norms": self.norms,
                "mtp": self.mtp}

    def __repr__(self) -> str:
        return (f"ParamCount(total={self.total:,}, active={self.active:,}, "
                f"active_no_embedding={self.active_no_embedding:,})")


def _layer_parts(cfg: ModelConfig, i: int, layer_type: str, ffn: str) -> Dict[str, int]:
    """Parameters of decoder layer i by component (and its matmul weights)."""
    att_m, att_o = attention_params(cfg, layer_type)
    parts = dict(attention=att_m + att_o, routed=0, active_routed=0, shared=0, dense=0,
                 routers=0, norms=_norms(cfg, cfg.norms_per_layer), matrix=att_m)
    if ffn == "moe":
        m = cfg.moe
        parts["routed"] = m.num_experts * m.expert_params
        parts["active_routed"] = m.num_experts_per_tok * m.expert_params
        parts["shared"] = m.shared_params
        parts["routers"] = m.router_params
        parts["matrix"] += m.param_split(active=True).matrix
    if ffn == "dense" or cfg.residual_moe:
        dense = _dense_mlp(cfg)
        parts["dense"] = dense.total
        parts["matrix"] += dense.matrix
    return parts


def count_params(cfg: Union[ModelConfig, str]) -> ParamCount:
    """Parameter count of a model (a ``ModelConfig`` or a preset name) -> ``ParamCount``.

    Raises TypeError for anything else, ValueError for an unknown preset name.
    """
    cfg = as_model_config(cfg)
    V, H = cfg.vocab_size, cfg.hidden_size
    acc = dict(attention=0, routed=0, active_routed=0, shared=0, dense=0, routers=0, norms=0)
    for i in range(cfg.num_hidden_layers):
        p = _layer_parts(cfg, i, cfg.layer_type(i), cfg.ffn_kind(i))
        for key in acc:
            acc[key] += p[key]
    norms = acc["norms"] + _norms(cfg, 1)  # + final norm
    embedding = V * H
    head = (0 if cfg.tie_word_embeddings else V * H) + (V if cfg.lm_head_bias else 0)
    total = (embedding + head + acc["attention"] + acc["routed"] + acc["shared"] + acc["dense"]
             + acc["routers"] + norms)
    active = total - acc["routed"] + acc["active_routed"]
    mtp = 0
    if cfg.num_nextn_predict_layers:
        # DeepSeek-V3 MTP module: enorm + hnorm (2H), eh_proj (2H -> H), one decoder layer with
        # the routed FFN, and shared_head.norm (H); embedding and head shared with the model.
        kind = "moe" if cfg.moe is not None else "dense"
        layer = _layer_parts(cfg, cfg.num_hidden_layers, "full_attention", kind)
        per = (params.norms(H, 3).total + 2 * H * H + layer["attention"] + layer["routed"]
               + layer["shared"] + layer["dense"] + layer["routers"] + layer["norms"])
        mtp = cfg.num_nextn_predict_layers * per
    return ParamCount(embedding=embedding, head=head, attention=acc["attention"],
                      routed_experts=acc["routed"], shared_experts=acc["shared"],
                      dense_ffn=acc["dense"], routers=acc["routers"], norms=norms, mtp=mtp,
                      total=total, active=active, active_routed_experts=acc["active_routed"],
                      vocab_matrix=V * H)


# ---------------------------------------------------------------------------------------------
# costs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Costs:
    """Per-token costs of a model at a context length (module docstring for conventions).

    context : tokens in the sequence (the token costed is at position ``context``).
    matmul_flops : 2 x active weight-matrix parameters (embedding lookup excluded, head in).
    attention_flops : QK^T and AV of that token over the keys it sees (full: context; sliding:
        min(context, window); chunked: min(context, chunk), an upper bound), plus the Gated
        DeltaNet recurrence (7 n_v d_k d_v: decay, S^T k, rank-1 update, S^T q) and its conv.
    flops_per_token : matmul_flops + attention_flops.
    weight_bytes : {"bf16", "fp8", "fp4"} -> bytes of weights read per token.
    kv_cache_bytes : the cache of one sequence of ``context`` tokens: GQA 2 n_kv d per token per
        layer (sliding / chunked layers keep at most window / chunk tokens), MLA kv_lora_rank +
        qk_rope_head_dim per token per layer, Gated DeltaNet a fixed n_v d_k d_v recurrent state
        plus (kernel - 1) conv rows; ``kv_dtype_bytes`` each (2 = bf16).
    kv_bytes_per_token : kv_cache_bytes / context.
    kv_bytes_per_token_unbounded : growth per extra token at long context (full-attention
        layers only).
    linear_state_bytes : the fixed-size part of the cache (Gated DeltaNet states).
    expert_parallel : None, or with ``costs(..., num_ranks=N)`` for N >= 2 the
        ``ExpertParallelTraffic`` of one MoE layer's decode step (T = 1) on N ranks: its
        ``bytes_per_token`` is the network bytes per token per MoE layer.
    network_bytes_per_token : expert_parallel.bytes_per_token times the MoE layers (0 without
        expert parallelism).
    """

    context: int
    matmul_flops: int
    attention_flops: int
    weight_bytes: Dict[str, float] = field(hash=False)
    kv_cache_bytes: int
    kv_bytes_per_token: float
    kv_bytes_per_token_unbounded: int
    linear_state_bytes: int
    expert_parallel: Optional["ExpertParallelTraffic"] = field(default=None, hash=False)
    network_bytes_per_token: float = 0.0

    @property
    def flops_per_token(self) -> int:
        return self.matmul_flops + self.attention_flops


def linear_attention_flops(a: AttentionConfig) -> int:
    """Per-token FLOPs of one Gated DeltaNet layer besides its projections: the recurrence in
    its recurrent form, 7 n_v d_k d_v (decay d_k d_v, S^T k 2 d_k d_v, rank-1 update 2 d_k d_v,
    S^T q 2 d_k d_v), and the depthwise conv, 2 K (2 n_k d_k + n_v d_v). Independent of the
    context (the state has a fixed size)."""
    n_v, d_k, d_v = a.linear_num_value_heads, a.linear_key_head_dim, a.linear_value_head_dim
    conv_dim = 2 * a.linear_num_key_heads * d_k + n_v * d_v
    return 7 * n_v * d_k * d_v + 2 * a.linear_conv_kernel_dim * conv_dim


def _keys_seen(cfg: ModelConfig, layer_type: str, context: int) -> int:
    a = cfg.attention
    if layer_type == "sliding_attention":
        return min(context, a.sliding_window)
    if layer_type == "chunked_attention":
        return min(context, a.attention_chunk_size)
    return context


def costs(cfg: Union[ModelConfig, str], context: int = 4096, kv_dtype_bytes: int = 2,
          num_ranks: int = 1, placement: Optional[Sequence[int]] = None) -> Costs:
    """Per-token FLOPs, weight bytes and KV-cache bytes of a model at ``context`` tokens, and
    with ``num_ranks`` >= 2 the network bytes per token of its MoE layers run expert-parallel.

    cfg : a ModelConfig or a preset name. context : int >= 1. kv_dtype_bytes : bytes per cached
    value (2 = bf16, 1 = fp8). num_ranks : N >= 1 ranks the routed experts are split across
    (``moelab.expert_parallel``; 1 = one process). placement : None (contiguous blocks) or the
    owning rank of each expert, as :func:`expert_parallel_traffic` (which the fields
    ``expert_parallel`` and ``network_bytes_per_token`` come from). Raises TypeError /
    ValueError on bad arguments (N >= 2 for a model without MoE layers included).
    """
    cfg = as_model_config(cfg)
    if placement is not None and num_ranks == 1:
        raise ValueError("placement: given with num_ranks=1 (nothing to place)")
    traffic = (expert_parallel_traffic(cfg, num_ranks, tokens=1, placement=placement)
               if not (is_int(num_ranks) and num_ranks == 1) else None)
    for name, v in (("context", context), ("kv_dtype_bytes", kv_dtype_bytes)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    a = cfg.attention
    V, H = cfg.vocab_size, cfg.hidden_size
    matrix = V * H  # the LM head (tied or not) is a matmul per token
    attn_flops = 0
    kv = 0
    kv_unbounded = 0
    state = 0
    for i in range(cfg.num_hidden_layers):
        lt = cfg.layer_type(i)
        matrix += _layer_parts(cfg, i, lt, cfg.ffn_kind(i))["matrix"]
        if lt == "linear_attention":
            n_v, d_k, d_v = a.linear_num_value_heads, a.linear_key_head_dim, a.linear_value_head_dim
            conv_dim = 2 * a.linear_num_key_heads * d_k + n_v * d_v
            attn_flops += linear_attention_flops(a)
            s = (n_v * d_k * d_v + conv_dim * (a.linear_conv_kernel_dim - 1)) * kv_dtype_bytes
            state += s
            kv += s
            continue
        keys = _keys_seen(cfg, lt, context)
        n_h = a.num_attention_heads
        if a.kind == "mla":
            d_qk, d_v = a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim
            per_tok = (a.kv_lora_rank + a.qk_rope_head_dim) * kv_dtype_bytes
        else:
            d_qk = d_v = a.head_dim
            per_tok = 2 * a.num_key_value_heads * a.head_dim * kv_dtype_bytes
        attn_flops += 2 * n_h * (d_qk + d_v) * keys
        kv += per_tok * keys
        if lt == "full_attention":
            kv_unbounded += per_tok
    pc = count_params(cfg)
    read = pc.active_no_embedding + V * H
    return Costs(context=context, matmul_flops=2 * matrix, attention_flops=attn_flops,
                 weight_bytes={"bf16": 2.0 * read, "fp8": 1.0 * read, "fp4": 0.5 * read},
                 kv_cache_bytes=kv, kv_bytes_per_token=kv / context,
                 kv_bytes_per_token_unbounded=kv_unbounded, linear_state_bytes=state,
                 expert_parallel=traffic,
                 network_bytes_per_token=0.0 if traffic is None
                 else traffic.bytes_per_token * cfg.num_moe_layers)


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
_COLUMNS = ["model_type", "total", "active", "active_share", "experts", "top_k",
            "shared_experts", "moe_layers", "dense_layers", "dense_first_layers", "attention",
            "kv_bytes_per_token", "flops_per_token"]


def _attention_label(cfg: ModelConfig) -> str:
    a = cfg.attention
    kinds = set(cfg.all_layer_types)
    if a.kind == "mla":
        base = f"MLA {a.num_attention_heads}h r_kv={a.kv_lora_rank}"
    else:
        n_h, n_kv = a.num_attention_heads, a.num_key_value_heads
        base = ("MHA" if n_h == n_kv else "MQA" if n_kv == 1 else "GQA") + f" {n_h}/{n_kv}"
    extras = []
    if "linear_attention" in kinds:
        n_lin = cfg.all_layer_types.count("linear_attention")
        extras.append(f"{n_lin}x GatedDeltaNet")
    if "sliding_attention" in kinds:
        extras.append(f"{cfg.all_layer_types.count('sliding_attention')}x SWA{a.sliding_window}")
    if "chunked_attention" in kinds:
        extras.append(f"{cfg.all_layer_types.count('chunked_attention')}x "
                      f"chunk{a.attention_chunk_size}")
    return base + (" + " + ", ".join(extras) if extras else "")


def compare(models: Union[str, ModelConfig, Iterable[Union[str, ModelConfig]]],
            context: int = 4096):
    """A ``pandas.DataFrame`` comparing models, one row per model (index: display name).

    models : a preset name, a ModelConfig, or an iterable of them.
    Columns: model_type, total, active (ints), active_share (float), experts, top_k,
    shared_experts (0 for dense models), moe_layers, dense_layers, dense_first_layers
    (``first_k_dense_replace``), attention (a label), kv_bytes_per_token (bf16, averaged over
    ``context`` tokens, see ``costs``), flops_per_token (at ``context``).

    Raises TypeError (an entry that is neither) and ValueError (an unknown preset, no models,
    two entries with the same display name: the index names each row once).
    """
    import pandas as pd

    if isinstance(models, (str, ModelConfig)):
        models = [models]
    try:
        items = list(models)
    except TypeError:
        raise TypeError("models must be a preset name, a ModelConfig or an iterable of them, "
                        f"got {type(models).__name__}") from None
    if not items:
        raise ValueError("compare() needs at least one model")
    rows: List[dict] = []
    names: List[str] = []
    for item in items:
        cfg = as_model_config(item)
        pc = count_params(cfg)
        c = costs(cfg, context=context)
        m = cfg.moe
        if cfg.display_name in names:
            first = names.index(cfg.display_name)
            raise ValueError(f"compare: {cfg.display_name!r} is listed twice (entries {first} "
                             f"and {len(names)}); list each model once, or give a changed "
                             "config its own name (cfg.replace(name=...))")
        rows.append(dict(
            model_type=cfg.model_type, total=pc.total, active=pc.active,
            active_share=pc.active / pc.total,
            experts=m.num_experts if m else 0, top_k=m.num_experts_per_tok if m else 0,
            shared_experts=m.n_shared_experts if m else 0, moe_layers=cfg.num_moe_layers,
            dense_layers=cfg.num_dense_layers,
            dense_first_layers=cfg.first_k_dense_replace if m else 0,
            attention=_attention_label(cfg), kv_bytes_per_token=c.kv_bytes_per_token,
            flops_per_token=c.flops_per_token))
        names.append(cfg.display_name)
    df = pd.DataFrame(rows, index=pd.Index(names, name="model"), columns=_COLUMNS)
    return df


# ---------------------------------------------------------------------------------------------
# expert parallelism: network bytes per token and the throughput bounds they set
# ---------------------------------------------------------------------------------------------
#: Bytes per (token, slot) pair of the gathered routing: its expert id (int32) and routing
#: weight (float32), gathered from every rank so that every rank runs the same dispatch
#: (capacity) on all T tokens and knows every row count (no count exchange is needed).
EP_ROUTING_BYTES_PER_SLOT = 8
#: Bytes each rank sends every other rank once per call before any other collective: its input
#: check's outcome and its token count (two int64), so that a bad input on one rank raises on
#: all of them instead of leaving the others waiting.
EP_AGREEMENT_BYTES = 16


def _check_int(name: str, v, low: int) -> int:
    if not is_int(v):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    return int(v)


def _check_positive(name: str, v) -> float:
    if not is_real(v):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__} {v!r}")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    return float(v)


def _experts_per_rank(num_experts: int, num_ranks: int,
                      placement: Optional[Sequence[int]]) -> Tuple[int, ...]:
    """(N,) experts each rank owns: contiguous ``np.array_split`` blocks when ``placement`` is
    None (the first E mod N ranks hold one more), else a count of the length-E owning ranks."""
    if placement is None:
        base, extra = divmod(num_experts, num_ranks)
        return tuple(base + (1 if r < extra else 0) for r in range(num_ranks))
    if isinstance(placement, (str, bytes)) or not hasattr(placement, "__len__"):
        raise TypeError(f"placement must be None or a length-{num_experts} sequence of ranks, "
                        f"got {type(placement).__name__}")
    if len(placement) != num_experts:
        raise ValueError(f"placement: expected (E={num_experts},) owning ranks, got "
                         f"({len(placement)},)")
    owned = [0] * num_ranks
    for e, r in enumerate(placement):
        if not is_int(r):
            raise TypeError(f"placement[{e}] must be an int rank, got {type(r).__name__} {r!r}")
        if not 0 <= r < num_ranks:
            raise ValueError(f"placement[{e}] = {r} is not a rank in [0, {num_ranks})")
        owned[int(r)] += 1
    return tuple(owned)


def _token_slices(tokens: int, num_ranks: int) -> Tuple[int, ...]:
    """(N,) tokens each rank routes: ``np.array_split`` of T (the first T mod N get one more)."""
    base, extra = divmod(tokens, num_ranks)
    return tuple(base + (1 if r < extra else 0) for r in range(num_ranks))


def _moe_of(cfg) -> MoEConfig:
    if isinstance(cfg, MoEConfig):
        return cfg
    model = as_model_config(cfg)
    if model.moe is None or model.num_moe_layers == 0:
        raise ValueError(f"{model.display_name!r} has no MoE layers: nothing to place on ranks")
    return model.moe


@dataclass(frozen=True)
class ExpertParallelTraffic:
    """Expected network bytes of one expert-parallel MoE layer call, per token of the call.

    The transport (``moelab.expert_parallel``): the (T, H) input is replicated; the ranks first
    agree that every input is good (Allgather of EP_AGREEMENT_BYTES each); rank r routes its
    contiguous slice of ``tokens_per_rank[r]`` tokens, gathers every rank's (T, k) ids and
    weights (Allgatherv), sends one row of H activations per (token, slot) pair to the expert's
    owner (all-to-all 1) and gets one row back (all-to-all 2), combines its slice, and an
    Allgatherv of the (T, H) output gives every rank all rows. A pair whose expert is on its own rank is copied, not sent.
    With ``allgather_output=False`` (``forward_local``: data parallel over tokens, each rank
    keeps the outputs of its own tokens) the output Allgatherv is left out.

    Expectations are over uniform routing: every token's k experts are a uniformly random
    set of k distinct experts (what a router with exchangeable logits gives; DeepSeek-V3's
    group-limited selection too, by symmetry). Every pair is kept (capacity drops, which only
    lower the bytes, are not modelled), and the gathered logits that the routing losses need
    (sent only when stats are asked) are not counted.

    Node-limited routing (DeepSeek-V3's ``n_group`` 8 / ``topk_group`` 4: a token's k experts
    lie in at most 4 of 8 groups; Kimi K2 has one group) changes none of these expectations:
    each expert is still picked with probability k/E, and this transport sends one row per
    pair. What it bounds is the number of distinct ranks a token's rows go to (at most
    ``topk_group`` when each group's experts sit on one rank), which would cut the bytes of a
    transport that sends a token once per destination node and fans it out there; that
    transport is not moelab's and is not modelled.

    Fields (bytes are per token of the call and summed over all ranks, i.e. what crosses the
    network in total; a rank sends 1/N of it when the traffic is balanced):
    num_ranks : N. tokens : T, tokens in the layer call (the same on every rank).
    hidden_size : H. top_k : k. num_experts : E.
    activation_bytes : bytes per activation on the wire (4 = float32, as moelab sends them).
    experts_per_rank, tokens_per_rank : (N,) tuples of ints.
    remote_pair_fraction : expected share of the T*k pairs whose expert is on another rank
        than the one routing the token: 1 - sum_r t_r e_r / (T E) (1 - 1/N when N divides T
        and E).
    dispatch_bytes : all-to-all 1 rows, remote_pair_fraction * k * H * activation_bytes.
    combine_bytes : all-to-all 2 rows (the same count back).
    allgather_bytes : the output rows, each to the N - 1 other ranks: (N - 1) H activation_bytes
        (0 without the output allgather). With T divisible by N it exceeds dispatch + combine
        (2 k (N - 1) / N rows) once N > 2 k.
    metadata_bytes : ids and weights (N - 1) k EP_ROUTING_BYTES_PER_SLOT + the agreement
        N (N - 1) EP_AGREEMENT_BYTES / T.
    """

    num_ranks: int
    tokens: int
    hidden_size: int
    top_k: int
    num_experts: int
    activation_bytes: float
    experts_per_rank: Tuple[int, ...]
    tokens_per_rank: Tuple[int, ...]
    remote_pair_fraction: float
    dispatch_bytes: float
    combine_bytes: float
    allgather_bytes: float
    metadata_bytes: float

    @property
    def bytes_per_token(self) -> float:
        """Network bytes per token of one MoE layer call, all ranks together."""
        return self.dispatch_bytes + self.combine_bytes + self.allgather_bytes + self.metadata_bytes

    @property
    def bytes_per_token_per_rank(self) -> float:
        """``bytes_per_token`` / N: what each rank's link carries when the traffic is balanced."""
        return self.bytes_per_token / self.num_ranks

    def __repr__(self) -> str:
        return (f"ExpertParallelTraffic(N={self.num_ranks}, T={self.tokens}, E={self.num_experts},"
                f" k={self.top_k}, H={self.hidden_size}, remote_pair_fraction="
                f"{self.remote_pair_fraction:.4f}, bytes_per_token={self.bytes_per_token:,.0f})")


def expert_parallel_traffic(cfg: Union[ModelConfig, MoEConfig, str], num_ranks: int,
                            tokens: int = 1, placement: Optional[Sequence[int]] = None,
                            activation_bytes: float = 4, allgather_output: bool = True
                            ) -> ExpertParallelTraffic:
    """Expected network bytes per token of one expert-parallel MoE layer call (closed form).

    cfg : a ModelConfig, a preset name, or one layer's MoEConfig. num_ranks : N >= 1.
    tokens : T >= 1, the tokens of the call (1 for a decode step of one sequence); only the
    agreement (a fixed N (N - 1) EP_AGREEMENT_BYTES per call) and uneven slices depend on it.
    placement : None (contiguous blocks of experts) or the owning rank of each of the E experts.
    activation_bytes : bytes per activation on the wire (4 = float32 as moelab sends them; 2
    for a bf16 transport, 1 for fp8 without its scales).
    allgather_output : True for the layer's ``__call__`` (replicated tokens in and out), False
    for ``forward_local`` (each rank its own tokens; T then counts all ranks' tokens together).

    Returns ``ExpertParallelTraffic`` (its docstring has the model and every formula). Raises
    TypeError / ValueError naming the argument (N < 1, T < 1, a bad placement, a model without
    MoE layers, activation_bytes <= 0).
    """
    moe = _moe_of(cfg)
    N = _check_int("num_ranks", num_ranks, 1)
    T = _check_int("tokens", tokens, 1)
    a = _check_positive("activation_bytes", activation_bytes)
    if not isinstance(allgather_output, bool):
        raise TypeError(f"allgather_output must be a bool, got {type(allgather_output).__name__}")
    E, k, H = moe.num_experts, moe.num_experts_per_tok, moe.hidden_size
    owned = _experts_per_rank(E, N, placement)
    slices = _token_slices(T, N)
    # rank r's t_r tokens send k pairs each; a pair is local with probability e_r / E
    remote_pairs = k * sum(t * (E - e) for t, e in zip(slices, owned)) / E  # per call
    row = H * a
    return ExpertParallelTraffic(
        num_ranks=N, tokens=T, hidden_size=H, top_k=k, num_experts=E, activation_bytes=a,
        experts_per_rank=owned, tokens_per_rank=slices,
        remote_pair_fraction=remote_pairs / (T * k),
        dispatch_bytes=remote_pairs * row / T, combine_bytes=remote_pairs * row / T,
        allgather_bytes=(N - 1) * row if allgather_output else 0.0,
        metadata_bytes=((N - 1) * k * EP_ROUTING_BYTES_PER_SLOT
                        + N * (N - 1) * EP_AGREEMENT_BYTES / T))


@dataclass(frozen=True)
class ExpertParallelCosts:
    """Throughput bounds of a whole model run expert-parallel on N ranks (one per node).

    traffic : the ``ExpertParallelTraffic`` of one MoE layer call of T tokens.
    moe_layers : MoE layers in the model (each makes one such call per step).
    link_gbit_per_s : each rank's network bandwidth per direction, 1e9 bit/s.
    memory_gbyte_per_s : each rank's memory read bandwidth, 1e9 bytes/s.
    weight_dtype_bytes : bytes per weight parameter (2 = bf16, 1 = fp8).
    replicated_weight_bytes : weights every rank reads per step whatever the routing: attention,
        dense FFNs, routers, shared experts, norms and the LM head (the embedding is a lookup).
    expert_weight_bytes : expected routed-expert weights the busiest rank (the one owning the
        most experts) reads per step, all MoE layers: its e_max experts per layer, each read when
        at least one of the T tokens picks it, with probability 1 - (1 - k/E)^T.
    layer_memory_bytes : the same for one MoE layer: its router and shared experts and the
        busiest rank's expected routed experts.

    The bounds are upper bounds from one resource alone, in tokens per second:
    ``network_tokens_per_s`` = N x link bandwidth / (network bytes per token, all MoE layers):
    every link busy all the time, the traffic spread evenly, no latency (a message costs
    microseconds, which dominates at small T), no overlap with compute needed;
    ``memory_tokens_per_s`` = T x memory bandwidth / (the busiest rank's weight bytes per step):
    weights read once per step of T tokens, activations and the KV cache not counted.
    The ``layer_`` variants are the same for one MoE layer alone.
    """

    traffic: ExpertParallelTraffic
    moe_layers: int
    link_gbit_per_s: float
    memory_gbyte_per_s: float
    weight_dtype_bytes: float
    replicated_weight_bytes: float
    expert_weight_bytes: float
    layer_memory_bytes: float

    @property
    def num_ranks(self) -> int:
        return self.traffic.num_ranks

    @property
    def tokens(self) -> int:
        return self.traffic.tokens

    @property
    def network_bytes_per_token(self) -> float:
        """Network bytes per token of a whole step (all MoE layers), all ranks together."""
        return self.traffic.bytes_per_token * self.moe_layers

    @property
    def memory_bytes_per_token(self) -> float:
        """Weight bytes the busiest rank reads per step, per token of the step."""
        return (self.replicated_weight_bytes + self.expert_weight_bytes) / self.tokens

    def _network_bound(self, bytes_per_token: float) -> float:
        link_bytes_per_s = self.link_gbit_per_s * 1e9 / 8
        if bytes_per_token == 0:
            return math.inf  # one rank: nothing crosses a network
        return self.num_ranks * link_bytes_per_s / bytes_per_token

    @property
    def layer_network_tokens_per_s(self) -> float:
        """Tokens/s bound of one MoE layer from the network alone (inf for N = 1)."""
        return self._network_bound(self.traffic.bytes_per_token)

    @property
    def network_tokens_per_s(self) -> float:
        """Tokens/s bound of the whole model from the network alone (inf for N = 1)."""
        return self._network_bound(self.network_bytes_per_token)

    @property
    def layer_memory_tokens_per_s(self) -> float:
        """Tokens/s bound of one MoE layer from the busiest rank's memory bandwidth alone."""
        return self.tokens * self.memory_gbyte_per_s * 1e9 / self.layer_memory_bytes

    @property
    def memory_tokens_per_s(self) -> float:
        """Tokens/s bound of the whole model from the busiest rank's memory bandwidth alone."""
        return self.memory_gbyte_per_s * 1e9 / self.memory_bytes_per_token

    def __repr__(self) -> str:
        return (f"ExpertParallelCosts(N={self.num_ranks}, T={self.tokens}, moe_layers="
                f"{self.moe_layers}, network {self.link_gbit_per_s:g} Gb/s: "
                f"{self.network_tokens_per_s:,.0f} tokens/s, memory "
                f"{self.memory_gbyte_per_s:g} GB/s: {self.memory_tokens_per_s:,.0f} tokens/s)")


def expert_parallel_costs(cfg: Union[ModelConfig, str], num_ranks: int,
                          link_gbit_per_s: float, memory_gbyte_per_s: float, tokens: int = 1,
                          placement: Optional[Sequence[int]] = None,
                          activation_bytes: float = 4, weight_dtype_bytes: float = 2,
                          allgather_output: bool = True) -> ExpertParallelCosts:
    """Network and memory bounds on the tokens/s of a model run expert-parallel on N ranks.

    cfg : a ModelConfig or a preset name (with MoE layers). num_ranks : N >= 1, one per node.
    link_gbit_per_s : network bandwidth per rank and direction in Gb/s (25, 100, 400 ...).
    memory_gbyte_per_s : memory read bandwidth per rank in GB/s. tokens : T >= 1 per step
    (1 = decode of one sequence). placement, activation_bytes, allgather_output : as
    ``expert_parallel_traffic``.
    weight_dtype_bytes : bytes per weight (2 = bf16, 1 = fp8).

    Returns ``ExpertParallelCosts`` (its docstring states both bounds and what they leave out).
    Raises TypeError / ValueError naming the argument (N < 1, a bandwidth that is not finite and
    positive, ...).
    """
    model = as_model_config(cfg)
    traffic = expert_parallel_traffic(model, num_ranks, tokens=tokens, placement=placement,
                                      activation_bytes=activation_bytes,
                                      allgather_output=allgather_output)
    link = _check_positive("link_gbit_per_s", link_gbit_per_s)
    memory = _check_positive("memory_gbyte_per_s", memory_gbyte_per_s)
    w = _check_positive("weight_dtype_bytes", weight_dtype_bytes)
    moe = model.moe
    L = model.num_moe_layers
    pc = count_params(model)
    read = pc.active_no_embedding + pc.vocab_matrix  # as costs(): head in, embedding lookup out
    replicated = (read - pc.active_routed_experts) * w
    E, k, T = moe.num_experts, moe.num_experts_per_tok, traffic.tokens
    hit = 1.0 - (1.0 - k / E) ** T  # P(an expert is picked by at least one of T tokens)
    per_layer_experts = max(traffic.experts_per_rank) * hit * moe.expert_params * w
    return ExpertParallelCosts(
        traffic=traffic, moe_layers=L, link_gbit_per_s=link, memory_gbyte_per_s=memory,
        weight_dtype_bytes=w, replicated_weight_bytes=replicated,
        expert_weight_bytes=L * per_layer_experts,
        layer_memory_bytes=(moe.router_params + moe.shared_params) * w + per_layer_experts)
