"""Matplotlib figures of moelab's counts, comparisons and routing statistics.

Each helper draws on an ``Axes`` you give it (``ax=``) or on a new figure, and returns what it
drew on (an ``Axes``, or a ``Figure`` for multi-panel helpers), so it can be used on its own or
inside a larger figure::

    import moelab
    ax = moelab.plot.param_bars(["qwen3-30b-a3b", "deepseek-v3", "mixtral-8x7b"])
    ax.figure.savefig("params.png")

matplotlib is imported only when a helper is called (``import moelab`` does not import it); it is
not a core dependency: ``pip install moelab[plot]``.

Helpers
-------
param_bars            stacked parameter bars per model (embeddings, attention, dense FFN, shared
                      experts, routers and norms, active routed experts, idle routed experts).
active_params_vs_k    active parameters of each model as a function of k (experts per token).
comparison_scatter    one column of ``moelab.compare`` against another, MoE and dense models marked.
layer_pattern         each model's layers drawn as a strip: token mixer above, FFN below.
load_heatmap          expert load per layer (tokens per expert / mean), from RoutingStats.
router_comparison     the (T, E) weights several routers apply to the same tokens, one panel each
                      on one colour scale.
expert_trace          the experts a generation's tokens went to: tokens x MoE layers, colour =
                      top-1 expert, or one expert's weight as a heat over the text.
param_segments, dense_weights   the data behind param_bars and router_comparison (no matplotlib).
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .analysis import ParamCount, count_params
from .model_config import LAYER_TYPES, ModelConfig
from .registry import as_model_config

__all__ = [
    "PARAM_SEGMENTS",
    "param_segments",
    "param_bars",
    "active_params_vs_k",
    "comparison_scatter",
    "COMPARE_AXES",
    "layer_pattern",
    "load_heatmap",
    "router_comparison",
    "dense_weights",
    "expert_trace",
]

#: Components of ``param_bars``, in drawing order; they sum to ``ParamCount.total``.
PARAM_SEGMENTS = ("embedding + head", "attention", "dense FFN", "shared experts",
                  "routers + norms", "active routed experts", "idle routed experts")

_SEGMENT_COLORS = ("#9e9e9e", "#4c72b0", "#8172b3", "#dd8452", "#c4ad66", "#55a868", "#d9ead3")
_MIXER_COLORS = {"full_attention": "#4c72b0", "sliding_attention": "#64b5cd",
                 "chunked_attention": "#8172b3", "linear_attention": "#dd8452"}
_FFN_COLORS = {"moe": "#55a868", "dense": "#9e9e9e"}

ModelLike = Union[str, ModelConfig]


def _pyplot():
    """matplotlib.pyplot, or an ImportError saying how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("moelab.plot needs matplotlib, which is not installed: "
                          "pip install 'moelab[plot]' (or pip install matplotlib)") from exc
    return plt


def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def _model_list(models, what: str = "models") -> List[ModelConfig]:
    if isinstance(models, (str, ModelConfig)):
        models = [models]
    try:
        items = list(models)
    except TypeError:
        raise TypeError(f"{what} must be a preset name, a ModelConfig or an iterable of them, "
                        f"got {type(models).__name__}") from None
    if not items:
        raise ValueError(f"{what}: no models given")
    return [as_model_config(m) for m in items]


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------
def param_segments(pc: ParamCount) -> Dict[str, int]:
    """``ParamCount`` -> the ``PARAM_SEGMENTS`` components (ints summing to ``pc.total``)."""
    if not isinstance(pc, ParamCount):
        raise TypeError(f"pc must be a moelab ParamCount, got {type(pc).__name__}")
    idle = pc.routed_experts - pc.active_routed_experts
    return {"embedding + head": pc.embedding + pc.head,
            "attention": pc.attention,
            "dense FFN": pc.dense_ffn,
            "shared experts": pc.shared_experts,
            "routers + norms": pc.routers + pc.norms,
            "active routed experts": pc.active_routed_experts,
            "idle routed experts": idle}


def param_bars(models: Union[ModelLike, Iterable[ModelLike], Mapping[str, ParamCount]],
               ax=None, unit: float = 1e9, normalize: bool = False, sort: bool = True,
               legend: bool = True):
    """Horizontal stacked bars of each model's parameters by component (``PARAM_SEGMENTS``).

    models : preset name(s) / ModelConfig(s), counted with ``moelab.count_params``, or a mapping
        display name -> ``ParamCount``.
    unit : bars in parameters / unit (default billions). normalize : bars as % of each total.
    sort : largest total at the top. Returns the Axes; it holds ``len(models) * 7`` bar patches
    (zero-width where a model lacks a component), one ``BarContainer`` per segment.

    Raises TypeError (an entry that is not a model) and ValueError (no models, unit <= 0).
    """
    if not unit > 0:
        raise ValueError(f"unit must be > 0, got {unit!r}")
    if isinstance(models, Mapping):
        counts = dict(models)
        for name, pc in counts.items():
            if not isinstance(pc, ParamCount):
                raise TypeError(f"models[{name!r}] must be a ParamCount, got {type(pc).__name__}")
        if not counts:
            raise ValueError("models: no models given")
    else:
        counts = {c.display_name: count_params(c) for c in _model_list(models)}
    names = list(counts)
    if sort:
        names.sort(key=lambda n: counts[n].total)          # barh draws bottom-up: largest on top
    else:
        names = names[::-1]                                # first model on top
    segs = np.array([[param_segments(counts[n])[s] for s in PARAM_SEGMENTS] for n in names],
                    dtype=np.float64)                      # (M, 7)
    if normalize:
        segs = 100.0 * segs / segs.sum(axis=1, keepdims=True)
    else:
        segs = segs / unit
    ax = _new_axes(ax, (9, 0.45 * len(names) + 1.5))
    left = np.zeros(len(names))
    y = np.arange(len(names))
    for j, seg in enumerate(PARAM_SEGMENTS):
        ax.barh(y, segs[:, j], left=left, color=_SEGMENT_COLORS[j], label=seg,
                edgecolor="white", linewidth=0.4)
        left += segs[:, j]
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    if normalize:
        ax.set_xlabel("share of total parameters (%)")
        ax.set_xlim(0, 100)
    else:
        ax.set_xlabel("parameters (billions)" if unit == 1e9 else f"parameters / {unit:g}")
    ax.grid(axis="x", alpha=0.3)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return ax


def _with_k(cfg: ModelConfig, k: int) -> ModelConfig:
    """cfg with k experts per token (group-limited routing opens enough groups for k)."""
    m = cfg.moe
    tg = m.topk_group
    if m.n_group > 1:
        tg = max(tg, min(m.n_group, math.ceil(k / (m.num_experts // m.n_group))))
    return cfg.replace(moe=m.replace(num_experts_per_tok=k, topk_group=tg))


def _line_styles(n: int) -> List[Tuple[Tuple[float, ...], str, str]]:
    """n distinct (colour, line style, marker): the 10 ``tab10`` colours, solid, then dashed,
    then dotted, each pass with other markers, so that no two lines look alike."""
    colors = _pyplot().get_cmap("tab10").colors
    linestyles, markers = ("-", "--", ":"), ("o", "s", "^", "D", "v", "P")
    return [(colors[i % 10], linestyles[(i // 10) % 3], markers[i % len(markers)])
            for i in range(n)]


def active_params_vs_k(models: Union[ModelLike, Iterable[ModelLike]],
                       ks: Optional[Sequence[int]] = None, ax=None, unit: float = 1e9,
                       relative: bool = False):
    """Active parameters of each MoE model as a function of k, the experts per token.

    models : preset name(s) / ModelConfig(s) with a MoE; dense models are refused.
    ks : the k values (default 1, 2, 3, 4, 6, 8, 12, 16, ... up to each model's E).
    relative : plot active / total instead of active / unit.
    Returns the Axes: one line per model, the released k marked by a point on it (one extra
    ``Line2D`` per model). Counts come from ``moelab.count_params``. The k axis is logarithmic,
    and so is the count axis unless ``relative`` (its label says which); each model gets its own
    combination of colour, line style and marker (``tab10`` colours, dashed past the tenth).

    Raises TypeError (not a model), ValueError (a dense model, k outside [1, E]).
    """
    if not unit > 0:
        raise ValueError(f"unit must be > 0, got {unit!r}")
    cfgs = _model_list(models)
    for c in cfgs:
        if c.moe is None:
            raise ValueError(f"active_params_vs_k: {c.display_name!r} is a dense model")
    ax = _new_axes(ax, (7, 4.5))
    styles = _line_styles(len(cfgs))
    for c, (color, linestyle, marker) in zip(cfgs, styles):
        E = c.moe.num_experts
        if ks is None:
            grid = sorted({k for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192,
                                       256, 384, 512) if k <= E} | {E})
        else:
            grid = sorted({int(k) for k in ks})
            bad = [k for k in grid if not 1 <= k <= E]
            if bad:
                raise ValueError(f"ks: {bad} outside [1, E={E}] for {c.display_name!r}")
        total = count_params(c).total
        scale = total if relative else unit
        vals = [count_params(_with_k(c, k)).active / scale for k in grid]
        ax.plot(grid, vals, marker=marker, markersize=3.5, color=color, linestyle=linestyle,
                label=c.display_name)
        k0 = c.moe.num_experts_per_tok
        ax.plot([k0], [count_params(c).active / scale], "o", color=color, markersize=8,
                markeredgecolor="black")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("experts per token k (log scale; the released k circled)")
    if relative:
        ax.set_ylabel("active / total (linear scale)")
    else:
        ax.set_yscale("log")
        ax.set_ylabel(("active parameters (billions" if unit == 1e9
                       else f"active parameters (/ {unit:g}") + ", log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------------
# comparisons of architectures
# ---------------------------------------------------------------------------------------------
def _plain_log_ticks(axis) -> None:
    """Tick labels of a log axis as plain numbers (300, not 3 x 10^2)."""
    from matplotlib.ticker import LogFormatter

    axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


#: Axis label and unit of the ``moelab.compare`` columns that have one: column -> (label, the
#: unit's name, its size). Points are plotted in that unit.
COMPARE_AXES = {
    "total": ("total parameters", "billions", 1e9),
    "active": ("active parameters", "billions", 1e9),
    "flops_per_token": ("FLOPs per token", "GFLOP", 1e9),
    "kv_bytes_per_token": ("KV cache per token, bf16", "KiB", 1024.0),
    "active_share": ("active / total", "%", 0.01),
}


def comparison_scatter(df, x: str = "total", y: str = "flops_per_token", ax=None,
                       annotate: bool = True, logx: bool = True, logy: bool = True):
    """Scatter of two columns of a ``moelab.compare`` table, MoE models and dense models apart.

    df : the DataFrame of ``moelab.compare`` (index = model names; needs ``x``, ``y`` and
    ``experts``). Columns of ``COMPARE_AXES`` are plotted in their unit (parameters in billions,
    FLOPs in GFLOP, KV bytes in KiB) and the axes are labelled with name and unit.
    annotate : name each point: the names stand in a column right of the axes, evenly spaced in
    the order of the points' y values, each joined to its point by a thin line, so that no two
    names overlap however close the points are.
    Returns the Axes with two PathCollections (MoE, dense; an empty one when there is none) and
    one annotation per row when annotating.

    Raises ValueError when a column is missing or the table is empty.
    """
    for col in (x, y, "experts"):
        if col not in getattr(df, "columns", ()):
            raise ValueError(f"df has no column {col!r} (expected a moelab.compare table)")
    if len(df) == 0:
        raise ValueError("df is empty")
    ax = _new_axes(ax, (7, 5))
    (x_label, x_unit, x_size), (y_label, y_unit, y_size) = (
        COMPARE_AXES.get(col, (col, None, 1.0)) for col in (x, y))
    moe = np.asarray(df["experts"]) > 0                                 # (M,)
    xs = np.asarray(df[x], dtype=np.float64) / x_size                   # (M,)
    ys = np.asarray(df[y], dtype=np.float64) / y_size                   # (M,)
    ax.scatter(xs[moe], ys[moe], s=45, color="#55a868", edgecolor="black", linewidth=0.5,
               label="MoE", zorder=3)
    ax.scatter(xs[~moe], ys[~moe], s=45, marker="s", color="#9e9e9e", edgecolor="black",
               linewidth=0.5, label="dense", zorder=3)
    if logx:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    if logy:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    scale = {True: ", log scale", False: ""}
    ax.set_xlabel(f"{x_label}" + (f" ({x_unit}{scale[logx]})" if x_unit else ""))
    ax.set_ylabel(f"{y_label}" + (f" ({y_unit}{scale[logy]})" if y_unit else ""))
    if annotate:
        order = np.argsort(ys, kind="stable")                           # bottom to top
        slots = np.linspace(0.02, 0.98, len(order)) if len(order) > 1 else [0.5]
        for slot, i in zip(slots, order):
            ax.annotate(str(df.index[i]), (xs[i], ys[i]), xytext=(1.03, slot),
                        textcoords="axes fraction", va="center", fontsize="x-small",
                        arrowprops=dict(arrowstyle="-", color="0.6", linewidth=0.5,
                                        shrinkA=0, shrinkB=3))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return ax


def layer_pattern(models: Union[ModelLike, Iterable[ModelLike]], ax=None):
    """Each model's decoder layers as a strip of cells, one row per model, layer 0 on the left.

    The upper half of a cell is the token mixer (full / sliding / chunked attention, Gated
    DeltaNet), the lower half the FFN (MoE or dense), so dense-first layers, interleaved MoE and
    hybrid attention are visible at a glance. Returns the Axes; it holds one RGBA image of shape
    ``(3 * len(models) - 1, max layers, 4)`` (rows: mixer, FFN, gap per model; transparent past
    a model's last layer).

    Raises TypeError (not a model) and ValueError (no models).
    """
    _pyplot()  # the ImportError that says how to install matplotlib
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch

    cfgs = _model_list(models)
    n, L = len(cfgs), max(c.num_hidden_layers for c in cfgs)
    img = np.zeros((3 * n - 1, L, 4))                                   # (rows, L, RGBA)
    for r, c in enumerate(cfgs):
        for i in range(c.num_hidden_layers):
            img[3 * r, i] = to_rgba(_MIXER_COLORS[c.layer_type(i)])
            img[3 * r + 1, i] = to_rgba(_FFN_COLORS[c.ffn_kind(i)])
    ax = _new_axes(ax, (10, 0.42 * n + 1.4))
    ax.imshow(img, aspect="auto", interpolation="nearest",
              extent=(-0.5, L - 0.5, 3 * n - 1.5, -0.5))
    ax.set_yticks([3 * r + 0.5 for r in range(n)])
    ax.set_yticklabels([f"{c.display_name} ({c.num_hidden_layers})" for c in cfgs],
                       fontsize="small")
    ax.set_xlabel("decoder layer")
    for spine in ax.spines.values():
        spine.set_visible(False)
    used_mixers = [t for t in LAYER_TYPES if any(t in c.all_layer_types for c in cfgs)]
    used_ffn = [f for f in ("moe", "dense") if any(f in c.ffn_kinds for c in cfgs)]
    handles = ([Patch(color=_MIXER_COLORS[t], label=t.replace("_", " ")) for t in used_mixers]
               + [Patch(color=_FFN_COLORS[f], label=f"{f} FFN") for f in used_ffn])
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small",
              title="upper: mixer / lower: FFN", title_fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------------------------
def _loads_matrix(loads) -> Tuple[np.ndarray, List[str]]:
    """(L, E) float64 loads and row labels from an array or a list of RoutingStats / None."""
    if isinstance(loads, np.ndarray) and loads.dtype != object:
        arr = np.asarray(loads, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"loads: expected an (L, E) array, got shape {arr.shape}")
        return arr, [str(i) for i in range(arr.shape[0])]
    rows, labels = [], []
    for i, item in enumerate(loads):
        if item is None:                                   # a dense layer of MoEModel stats
            continue
        tpe = getattr(item, "tokens_per_expert", item)
        rows.append(np.asarray(tpe, dtype=np.float64).reshape(-1))
        labels.append(str(i))
    if not rows:
        raise ValueError("loads: no MoE layer (every entry is None or the sequence is empty)")
    widths = {r.shape[0] for r in rows}
    if len(widths) != 1:
        raise ValueError(f"loads: layers have different expert counts {sorted(widths)}")
    return np.stack(rows), labels


def load_heatmap(loads, ax=None, relative: bool = True, labels: Optional[Sequence[str]] = None,
                 cmap: str = "magma", vmax: Optional[float] = None, colorbar: bool = True,
                 ylabel: str = "layer"):
    """Heatmap of expert loads: one row per layer (or step), one column per expert.

    loads : an (L, E) array of tokens per expert, or a sequence with one ``RoutingStats`` (or
        (E,) array) per layer, ``None`` entries (dense layers) skipped; rows keep the layer index
        as their label.
    relative : show load / mean load of the row (1 = perfectly balanced, 0 = idle expert).
    labels : row labels (default the layer indices). Returns the Axes with one image of shape
    (rows, E) and a colorbar.

    Raises ValueError (not 2-D, no MoE layer, unequal expert counts, wrong number of labels).
    """
    _pyplot()  # the ImportError that says how to install matplotlib
    from matplotlib.ticker import MaxNLocator

    arr, default_labels = _loads_matrix(loads)                          # (L, E)
    if relative:
        mean = arr.mean(axis=1, keepdims=True)                          # (L, 1)
        arr = np.divide(arr, mean, out=np.zeros_like(arr), where=mean > 0)
    labels = default_labels if labels is None else [str(s) for s in labels]
    if len(labels) != arr.shape[0]:
        raise ValueError(f"labels: expected {arr.shape[0]} labels, got {len(labels)}")
    ax = _new_axes(ax, (8, 0.3 * arr.shape[0] + 2))
    im = ax.imshow(arr, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0,
                   vmax=vmax if vmax is not None else max(2.0 if relative else 0.0,
                                                          float(arr.max()) if arr.size else 1.0))
    ax.set_xlabel("expert")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    step = max(1, arr.shape[0] // 16)
    ax.set_yticks(np.arange(0, arr.shape[0], step))
    ax.set_yticklabels(labels[::step])
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="load / mean load" if relative else "tokens")
    return ax


def dense_weights(ids, weights, num_experts: int) -> np.ndarray:
    """Scatter (T, k) expert ids and weights into a (T, E) float64 matrix (0 where unselected).

    Raises ValueError on unequal shapes or an id outside [0, E).
    """
    ids = np.asarray(ids)
    w = np.asarray(weights, dtype=np.float64)
    if ids.shape != w.shape or ids.ndim != 2:
        raise ValueError(f"ids and weights: expected equal (T, k) shapes, got {ids.shape} and "
                         f"{w.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_experts):
        raise ValueError(f"ids: values must be in [0, {num_experts}), got "
                         f"[{ids.min()}, {ids.max()}]")
    out = np.zeros((ids.shape[0], num_experts))                         # (T, E)
    np.add.at(out, (np.arange(ids.shape[0])[:, None], ids), w)          # (T, k) -> (T, E)
    return out


def router_comparison(routings: Mapping[str, object], num_experts: Optional[int] = None,
                      ncols: int = 3, cmap: str = "viridis", fig=None):
    """The weights each router applies to the same tokens, one (tokens x experts) panel each.

    routings : name -> ``RoutingStats`` or ``(ids (T, k), weights (T, k))``; all with the same T.
    num_experts : E (default: the RoutingStats' E, else the largest id + 1).
    Each panel is an image of ``dense_weights``; experts not selected are left blank (light grey)
    and every panel uses one colour scale, from 0 to the largest weight of all panels, with one
    colorbar, so that colours compare across routers. The title gives the weight sum per token
    (range over tokens). Returns the Figure; its first ``len(routings)`` axes are the panels,
    in the mapping's order.

    Raises ValueError (no routings, unequal T, bad shapes) and TypeError (an entry of neither
    form).
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    if not isinstance(routings, Mapping) or not routings:
        raise ValueError("routings must be a non-empty mapping name -> RoutingStats or (ids, weights)")
    pairs = {}
    E = num_experts
    for name, r in routings.items():
        if hasattr(r, "topk_ids") and hasattr(r, "topk_weights"):
            ids, w = r.topk_ids, r.topk_weights
            if E is None:
                E = int(np.asarray(r.tokens_per_expert).shape[0])
        elif isinstance(r, (tuple, list)) and len(r) == 2:
            ids, w = r
        else:
            raise TypeError(f"routings[{name!r}] must be a RoutingStats or (ids, weights), got "
                            f"{type(r).__name__}")
        pairs[name] = (np.asarray(ids), np.asarray(w))
    if E is None:
        E = 1 + max(int(ids.max()) for ids, _ in pairs.values() if ids.size)
    Ts = {ids.shape[0] for ids, _ in pairs.values()}
    if len(Ts) != 1:
        raise ValueError(f"routings: unequal token counts {sorted(Ts)}")
    n = len(pairs)
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    if fig is None:
        fig = plt.figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    dense = {name: dense_weights(ids, w, E) for name, (ids, w) in pairs.items()}  # (T, E) each
    selected = {name: dense_weights(ids, np.ones(ids.shape), E) > 0
                for name, (ids, _) in pairs.items()}                    # (T, E) each
    vmax = max(max(float(d.max()) for d in dense.values()), 1e-12)
    colors = plt.get_cmap(cmap).with_extremes(bad="0.92")
    for ax, name in zip(axes, pairs):
        shown = np.ma.masked_where(~selected[name], dense[name])        # (T, E)
        im = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=colors, vmin=0,
                       vmax=vmax)
        sums = dense[name].sum(axis=1)                                  # (T,)
        rng = (f"{sums.min():.3g}" if np.isclose(sums.min(), sums.max())
               else f"{sums.min():.3g}..{sums.max():.3g}")
        ax.set_title(f"{name}\nweight sum per token: {rng}", fontsize="small")
        ax.set_xlabel("expert")
        ax.set_ylabel("token")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.colorbar(im, ax=list(axes[:n]), shrink=0.9,
                 label="weight applied (blank: expert not selected)")
    return fig


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------
def _token_labels(tokens, ids: np.ndarray) -> List[str]:
    """Tick labels for the trace's token ids: the ids, a tokenizer's text of each, or given."""
    if tokens is None:
        return [str(int(t)) for t in ids]
    if hasattr(tokens, "decode") and not isinstance(tokens, (str, bytes)):
        labels = [tokens.decode([int(t)]) for t in ids]
    elif isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise TypeError(f"tokens must be None, a moelab.Tokenizer or a sequence of str, got "
                        f"{type(tokens).__name__}")
    else:
        labels = [str(t) for t in tokens]
        if len(labels) != len(ids):
            raise ValueError(f"tokens: expected {len(ids)} labels (one per traced token), got "
                             f"{len(labels)}")
    return [repr(s)[1:-1] for s in labels]  # newlines and spaces visible


def expert_trace(trace, tokens=None, ax=None, expert: Optional[int] = None,
                 num_experts: Optional[int] = None, cmap: Optional[str] = None,
                 annotate: Optional[bool] = None):
    """The experts each token of a generation went to: one column per token (in order), one
    row per MoE layer.

    trace : a ``moelab.generate.ExpertTrace`` (``model.generate(..., trace=True).trace``).
    tokens : None (tick labels are token ids), a ``moelab.Tokenizer`` (each token's text), or
        one label per traced token.
    expert : None: the colour is each token's top-1 expert in that layer (a qualitative
        colormap, one colour per expert id, a colorbar of ids); an expert id e: the colour is
        the weight the router gave e (0 where e was not chosen), a heat of e over the text.
    num_experts : E, for the colour scale of top-1 ids (default: the largest id + 1).
    annotate : write the top-1 id in each cell of the top-1 view (default: when there are at
        most 600 cells).
    Returns the Axes (an image of shape (MoE layers, tokens)); nothing is shown, so it works
    inline in Jupyter and with any backend.

    Raises TypeError (trace not an ExpertTrace, tokens of another kind) or ValueError (a
    trace without MoE layers or tokens, labels of the wrong count, an expert out of range).
    """
    _pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.ticker import MaxNLocator

    from .generate import ExpertTrace

    if not isinstance(trace, ExpertTrace):
        raise TypeError(f"trace must be a moelab.generate.ExpertTrace, got {type(trace).__name__}")
    N, M, k = trace.ids.shape
    if M == 0 or N == 0:
        raise ValueError(f"trace: nothing to draw ({N} tokens, {M} MoE layers: a dense model "
                         "routes no token)")
    labels = _token_labels(tokens, trace.tokens)
    top1 = trace.ids[:, :, 0].T                                          # (M, N)
    E = int(num_experts) if num_experts is not None else int(trace.ids.max()) + 1
    if E <= int(trace.ids.max()):
        raise ValueError(f"num_experts: {E} but the trace holds expert {int(trace.ids.max())}")
    ax = _new_axes(ax, (min(24.0, 2.0 + 0.32 * N), 1.2 + 0.4 * M))
    if expert is None:
        base = _pyplot().get_cmap(cmap or ("tab20" if E <= 20 else "turbo"))
        colors = ListedColormap([base(i / max(E - 1, 1)) if base.N > 20 else base(i % base.N)
                                 for i in range(E)])
        norm = BoundaryNorm(np.arange(-0.5, E + 0.5), E)
        im = ax.imshow(top1, aspect="auto", interpolation="nearest", cmap=colors, norm=norm)
        bar = ax.figure.colorbar(im, ax=ax, label="top-1 expert", pad=0.01)
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
        title = "top-1 expert of each token per MoE layer"
    else:
        if isinstance(expert, bool) or not isinstance(expert, (int, np.integer)) \
                or not 0 <= expert < E:
            raise ValueError(f"expert: expected an id in [0, {E}), got {expert!r}")
        heat = np.where(trace.ids == expert, trace.weights, 0.0).sum(axis=2).T  # (M, N)
        im = ax.imshow(heat, aspect="auto", interpolation="nearest", cmap=cmap or "magma",
                       vmin=0.0)
        ax.figure.colorbar(im, ax=ax, label=f"weight of expert {expert}", pad=0.01)
        title = f"expert {expert}: its routing weight for each token per MoE layer"
    if annotate is None:
        annotate = N * M <= 600
    if annotate and expert is None:
        for (m, n), e in np.ndenumerate(top1):
            ax.text(n, m, str(int(e)), ha="center", va="center", fontsize="x-small")
    step = max(1, math.ceil(N / 80))
    ax.set_xticks(np.arange(0, N, step))
    ax.set_xticklabels(labels[::step], rotation=90, fontsize="small")
    ax.set_yticks(np.arange(M))
    ax.set_yticklabels([str(i) for i in trace.layers])
    ax.set_xlabel("token")
    ax.set_ylabel("MoE layer")
    ax.set_title(title, fontsize="small")
    return ax
