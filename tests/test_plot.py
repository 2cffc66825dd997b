"""moelab.plot: each helper draws what it says on small data and returns its Axes / Figure;
``import moelab`` does not import matplotlib; a missing matplotlib says how to install it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import moelab
from moelab import plot

import matplotlib  # the plot extra (in the test extra too): a missing one fails these tests

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.text import Text  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def small_model_stats():
    """RoutingStats of a scaled DeepSeek-V3 (3 dense layers, then MoE) on 64 tokens."""
    cfg = moelab.preset("deepseek-v3").scaled(hidden_size=32, num_layers=5)
    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)  # (T, H)
    _, stats = moelab.build(cfg, seed=0).ffn_stack()(x, return_stats=True, progress=False)
    return cfg, stats


# -- import behaviour ------------------------------------------------------------------------
def test_import_moelab_does_not_import_matplotlib():
    code = ("import sys, moelab; assert moelab.plot.param_bars; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "plot" in moelab.__all__ and moelab.plot is plot


@pytest.mark.parametrize("call", [
    lambda: plot.param_bars("mixtral-8x7b"),
    lambda: plot.layer_pattern("mixtral-8x7b"),
    lambda: plot.load_heatmap(np.ones((2, 4))),
    lambda: plot.router_comparison({"a": (np.zeros((2, 1), int), np.ones((2, 1)))}),
], ids=["param_bars", "layer_pattern", "load_heatmap", "router_comparison"])
def test_missing_matplotlib_says_how_to_install(monkeypatch, call):
    for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.colors", "matplotlib.ticker",
                 "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)  # import of it raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'moelab\[plot\]'"):
        call()


# -- parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", moelab.list_presets())
def test_param_segments_sum_to_total(name):
    pc = moelab.count_params(name)
    seg = plot.param_segments(pc)
    assert list(seg) == list(plot.PARAM_SEGMENTS)
    assert sum(seg.values()) == pc.total
    assert seg["active routed experts"] + seg["idle routed experts"] == pc.routed_experts
    assert all(v >= 0 for v in seg.values())


def test_param_bars_stack_to_totals():
    names = ["qwen3-30b-a3b", "mixtral-8x7b", "olmo2-7b"]
    ax = plot.param_bars(names, sort=False)
    assert len(ax.patches) == len(names) * len(plot.PARAM_SEGMENTS)
    assert len(ax.containers) == len(plot.PARAM_SEGMENTS)
    widths = np.array([[bar.get_width() for bar in c] for c in ax.containers])  # (7, M)
    # sort=False draws the first model on top, i.e. at the last y position
    totals = [moelab.count_params(n).total / 1e9 for n in reversed(names)]
    np.testing.assert_allclose(widths.sum(axis=0), totals, rtol=1e-12)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(reversed(names))
    # the dense model has no routed experts at all
    idle = ax.containers[plot.PARAM_SEGMENTS.index("idle routed experts")]
    assert idle[0].get_width() == 0.0 and idle[2].get_width() > 0


def test_param_bars_normalized_and_mapping_input():
    counts = {"a": moelab.count_params("deepseek-v3"), "b": moelab.count_params("smollm3-3b")}
    ax = plot.param_bars(counts, normalize=True)
    widths = np.array([[bar.get_width() for bar in c] for c in ax.containers])
    np.testing.assert_allclose(widths.sum(axis=0), [100.0, 100.0])
    # sorted: the larger model (deepseek, "a") on top
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]


def test_param_bars_errors():
    with pytest.raises(TypeError):
        plot.param_bars({"a": 3})
    with pytest.raises(TypeError):
        plot.param_bars(42)
    with pytest.raises(ValueError):
        plot.param_bars([])
    with pytest.raises(ValueError):
        plot.param_bars("no-such-model")
    with pytest.raises(ValueError):
        plot.param_bars("mixtral-8x7b", unit=0)


def test_active_params_vs_k_lines_hold_the_counts():
    cfg = moelab.preset("deepseek-v3")
    ax = plot.active_params_vs_k(["mixtral-8x7b", cfg], ks=[1, 2, 8])
    assert len(ax.lines) == 4  # a curve and a released-k marker per model
    mixtral_curve, mixtral_mark, ds_curve, ds_mark = ax.lines
    assert list(mixtral_curve.get_xdata()) == [1, 2, 8]
    m = moelab.preset("mixtral-8x7b")
    expected = [moelab.count_params(m.replace(moe=m.moe.replace(num_experts_per_tok=k))).active
                / 1e9 for k in (1, 2, 8)]
    np.testing.assert_allclose(mixtral_curve.get_ydata(), expected)
    assert mixtral_curve.get_ydata()[-1] == pytest.approx(moelab.count_params(m).total / 1e9)
    assert list(mixtral_mark.get_xdata()) == [2]
    # k grows by one expert in every MoE layer
    step = cfg.num_moe_layers * cfg.moe.expert_params / 1e9
    np.testing.assert_allclose(np.diff(ds_curve.get_ydata()), [step, 6 * step])
    assert list(ds_mark.get_xdata()) == [8]


def test_active_params_vs_k_says_its_scales_and_tells_every_line_apart():
    names = [n for n in moelab.list_presets() if moelab.preset(n).is_moe]
    assert len(names) > 10
    ax = plot.active_params_vs_k(names)
    curves = ax.lines[::2]
    styles = {(to_rgba(c.get_color()), c.get_linestyle(), c.get_marker()) for c in curves}
    assert len(styles) == len(names)
    colors = [to_rgba(c.get_color()) for c in curves]
    assert all(colors.count(c) <= 2 for c in colors)  # a shared colour differs in line style
    assert "log scale" in ax.get_xlabel() and "log scale" in ax.get_ylabel()
    rel = plot.active_params_vs_k(names, relative=True)
    assert rel.get_yscale() == "linear" and "linear" in rel.get_ylabel()


def test_active_params_vs_k_relative_and_errors():
    ax = plot.active_params_vs_k("qwen3-30b-a3b", relative=True)
    curve = ax.lines[0]
    assert curve.get_xdata()[-1] == 128 and curve.get_ydata()[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="dense"):
        plot.active_params_vs_k("olmo2-7b")
    with pytest.raises(ValueError, match="outside"):
        plot.active_params_vs_k("mixtral-8x7b", ks=[1, 9])


# -- comparisons ------------------------------------------------------------------------------
def test_comparison_scatter_marks_moe_and_dense():
    df = moelab.compare(["mixtral-8x7b", "olmo2-7b", "qwen3-30b-a3b"])
    ax = plot.comparison_scatter(df, x="active", y="flops_per_token")
    moe_pts, dense_pts = ax.collections[:2]
    assert moe_pts.get_offsets().shape == (2, 2) and dense_pts.get_offsets().shape == (1, 2)
    np.testing.assert_allclose(dense_pts.get_offsets()[0],              # billions, GFLOP
                               [df.loc["olmo2-7b", "active"] / 1e9,
                                df.loc["olmo2-7b", "flops_per_token"] / 1e9])
    assert sorted(t.get_text() for t in ax.texts) == sorted(df.index)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "active parameters (billions, log scale)"
    assert ax.get_ylabel() == "FLOPs per token (GFLOP, log scale)"
    ax2 = plot.comparison_scatter(df, annotate=False, logx=False, logy=False)
    assert len(ax2.texts) == 0 and ax2.get_xscale() == "linear"
    with pytest.raises(ValueError, match="no column"):
        plot.comparison_scatter(df, y="nope")


def test_comparison_scatter_names_never_overlap_and_kv_is_in_kib():
    df = moelab.compare(moelab.list_presets())
    fig, axes = plt.subplots(1, 3, figsize=(19, 6), layout="constrained")
    for ax, (x, y) in zip(axes, (("total", "flops_per_token"), ("active", "flops_per_token"),
                                 ("total", "kv_bytes_per_token"))):
        plot.comparison_scatter(df, x=x, y=y, ax=ax)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]   # the names alone
        assert len(boxes) == len(df)
        overlapping = [(a.get_text(), b.get_text())
                       for i, (a, box_a) in enumerate(zip(ax.texts, boxes))
                       for b, box_b in zip(ax.texts[i + 1:], boxes[i + 1:])
                       if box_a.overlaps(box_b)]
        assert overlapping == [], (ax.get_xlabel(), ax.get_ylabel())
    kv = axes[2].collections[0].get_offsets()[:, 1]                     # MoE points
    np.testing.assert_allclose(sorted(kv), sorted(df.loc[df["experts"] > 0,
                                                         "kv_bytes_per_token"] / 1024))
    assert axes[2].get_ylabel() == "KV cache per token, bf16 (KiB, log scale)"


def test_layer_pattern_image():
    ds, mav = moelab.preset("deepseek-v3"), moelab.preset("llama4-maverick")
    ax = plot.layer_pattern([ds, mav])
    assert len(ax.images) == 1
    img = np.asarray(ax.images[0].get_array())
    assert img.shape == (5, ds.num_hidden_layers, 4)  # mixer, FFN, gap, mixer, FFN
    dense, moe = to_rgba("#9e9e9e"), to_rgba("#55a868")
    for i in range(ds.num_hidden_layers):  # DeepSeek-V3: 3 dense layers first
        assert tuple(img[1, i]) == (dense if i < 3 else moe)
    for i in range(mav.num_hidden_layers):  # Maverick: odd layers MoE
        assert tuple(img[4, i]) == (moe if i % 2 else dense)
        assert tuple(img[3, i]) == to_rgba("#4c72b0" if i % 4 == 3 else "#8172b3")
    assert np.all(img[2, :, 3] == 0)                               # the gap row is transparent
    assert np.all(img[3:, mav.num_hidden_layers:, 3] == 0)         # past Maverick's last layer
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["deepseek-v3 (61)", "llama4-maverick (48)"]


# -- routing ----------------------------------------------------------------------------------
def test_load_heatmap_from_model_stats(small_model_stats):
    cfg, stats = small_model_stats
    moe_idx = cfg.moe_layer_indices
    ax = plot.load_heatmap(stats)
    arr = np.asarray(ax.images[0].get_array())
    assert arr.shape == (len(moe_idx), cfg.moe.num_experts)
    np.testing.assert_allclose(arr.mean(axis=1), 1.0)               # load / mean load
    raw = np.stack([stats[i].tokens_per_expert for i in moe_idx])
    np.testing.assert_allclose(arr, raw / raw.mean(axis=1, keepdims=True))
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(i) for i in moe_idx]
    assert len(ax.figure.axes) == 2                                 # the heatmap and its colorbar


def test_load_heatmap_from_array_and_errors():
    loads = np.array([[4, 0, 2, 2], [1, 1, 1, 1]])
    ax = plot.load_heatmap(loads, relative=False, labels=["a", "b"], colorbar=False)
    np.testing.assert_array_equal(ax.images[0].get_array(), loads)
    assert len(ax.figure.axes) == 1
    with pytest.raises(ValueError):
        plot.load_heatmap(np.ones(4))
    with pytest.raises(ValueError, match="no MoE layer"):
        plot.load_heatmap([None, None])
    with pytest.raises(ValueError, match="labels"):
        plot.load_heatmap(loads, labels=["only one"])
    with pytest.raises(ValueError, match="different expert counts"):
        plot.load_heatmap([np.ones(4), np.ones(5)])


def test_dense_weights():
    ids = np.array([[2, 0], [1, 2]])
    w = np.array([[0.7, 0.3], [0.6, 0.4]])
    np.testing.assert_array_equal(plot.dense_weights(ids, w, 3),
                                  [[0.3, 0.0, 0.7], [0.0, 0.6, 0.4]])
    with pytest.raises(ValueError):
        plot.dense_weights(ids, w, 2)
    with pytest.raises(ValueError):
        plot.dense_weights(ids, w[:, :1], 3)


def test_router_comparison_panels(small_model_stats):
    cfg, stats = small_model_stats
    st = stats[cfg.moe_layer_indices[0]]
    E = cfg.moe.num_experts
    fig = plot.router_comparison({"layer": st, "doubled": (st.topk_ids, 2 * st.topk_weights),
                                  "third": st}, ncols=2)
    panels = fig.axes[:3]
    np.testing.assert_allclose(panels[0].images[0].get_array(),
                               plot.dense_weights(st.topk_ids, st.topk_weights, E))
    np.testing.assert_allclose(panels[1].images[0].get_array(),
                               2 * plot.dense_weights(st.topk_ids, st.topk_weights, E))
    assert panels[0].get_title().startswith("layer") and "weight sum" in panels[0].get_title()
    assert not fig.axes[3].get_visible()                            # the unused 4th cell of 2x2
    assert len(fig.axes) == 4 + 1                                   # 2x2 panels + 1 colorbar
    vmax = 2 * float(st.topk_weights.max())                         # the largest of any panel
    for panel in panels:
        assert panel.images[0].get_clim() == pytest.approx((0.0, vmax))
    shown = panels[0].images[0].get_array()                         # unselected: masked
    assert np.ma.count_masked(shown) == shown.size - np.count_nonzero(
        plot.dense_weights(st.topk_ids, np.ones(st.topk_ids.shape), E))
    with pytest.raises(TypeError):
        plot.router_comparison({"x": 3})
    with pytest.raises(ValueError, match="unequal token counts"):
        plot.router_comparison({"a": st, "b": (st.topk_ids[:3], st.topk_weights[:3])})
    with pytest.raises(ValueError):
        plot.router_comparison({})


# -- the README figure ------------------------------------------------------------------------
def test_docs_make_figures(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "make_figures.py"
    spec = importlib.util.spec_from_file_location("make_figures", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path)]) == 0
    for name in ("active_parameters.png", "kv_cache_vs_context.png", "experts_on_real_text.png"):
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 10_000 < png.stat().st_size < 200_000                # small enough for the README
        committed = script.parent / name
        assert committed.is_file() and committed.stat().st_size < 200_000


# -- expert_trace ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generation():
    """A greedy generation with trace=True on a built (random) Qwen3-MoE: 3 MoE layers."""
    cfg = moelab.preset("qwen3-30b-a3b").scaled(num_layers=3, num_experts=8)
    model = moelab.build(cfg, seed=0)
    return cfg, model.generate(np.arange(5) * 7, max_new_tokens=6, trace=True)


def test_expert_trace_top1(generation):
    cfg, out = generation
    trace = out.trace
    N, M = len(trace.tokens), len(trace.layers)
    assert (N, M) == (10, 3)
    ax = plot.expert_trace(trace)
    (image,) = ax.get_images()
    np.testing.assert_array_equal(image.get_array(), trace.ids[:, :, 0].T)   # (M, N)
    assert ax.get_xlabel() == "token" and ax.get_ylabel() == "MoE layer"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(t) for t in trace.tokens]
    cells = [t.get_text() for t in ax.texts]
    assert cells == [str(e) for e in trace.ids[:, :, 0].T.ravel()]          # annotated
    assert len(ax.figure.axes) == 2                                          # + the colorbar
    # two ids get two colours, one id one colour, whatever the other ids
    cmap, norm = image.get_cmap(), image.norm
    colours = {int(e): cmap(norm(e)) for e in np.unique(trace.ids[:, :, 0])}
    assert len(set(colours.values())) == len(colours)


def test_expert_trace_heat_labels_and_own_axes(generation):
    cfg, out = generation
    trace = out.trace
    fig, ax = plt.subplots()
    labels = [f"<{t}>" for t in trace.tokens]
    e = int(trace.ids[0, 0, 0])
    assert plot.expert_trace(trace, tokens=labels, ax=ax, expert=e) is ax
    heat = ax.get_images()[0].get_array()                                    # (M, N)
    assert heat.shape == (3, 10) and heat[0, 0] == pytest.approx(trace.weights[0, 0, 0])
    chosen = (trace.ids == e).any(axis=2).T                                  # (M, N)
    assert (heat[~chosen] == 0).all() and (heat[chosen] > 0).all()
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert len(ax.texts) == 0 and f"expert {e}" in ax.get_title()


def test_expert_trace_tokenizer_labels(tmp_path, generation):
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(1, 512)}
    vocab[" \n"] = 0  # a label with a newline and a space is drawn escaped
    backend = Backend(models.WordLevel(vocab, unk_token="w1"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.save(str(tmp_path / "tokenizer.json"))
    tok = moelab.Tokenizer.from_pretrained(tmp_path)
    _, out = generation
    ax = plot.expert_trace(out.trace, tokens=tok)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [repr(tok.decode([int(t)]))[1:-1] for t in out.trace.tokens]
    assert labels[0] == " \\n"


def test_expert_trace_errors(generation):
    _, out = generation
    trace = out.trace
    with pytest.raises(TypeError, match="ExpertTrace"):
        plot.expert_trace(trace.ids)
    with pytest.raises(ValueError, match="expected 10 labels"):
        plot.expert_trace(trace, tokens=["a", "b"])
    with pytest.raises(TypeError, match="tokens must be"):
        plot.expert_trace(trace, tokens="abc")
    with pytest.raises(ValueError, match=r"expert: expected an id in \[0, 8\)"):
        plot.expert_trace(trace, expert=8, num_experts=8)
    with pytest.raises(ValueError, match="num_experts"):
        plot.expert_trace(trace, num_experts=1)
    dense = moelab.build(moelab.preset("olmo2-7b").scaled(num_layers=1)).generate(
        [1, 2], max_new_tokens=2, trace=True).trace
    with pytest.raises(ValueError, match="dense model"):
        plot.expert_trace(dense)
