"""Determinism across thread counts and safety under concurrent Python threads.

Outputs and stats must be bitwise equal for 1, 2 and 3 OpenMP threads (3 is more than the
2 cores of the CI machine: oversubscription must not change results), and two Python threads
sharing one layer must each get exactly the results a serial run gives.

The shapes here are small, and loops below the core's parallel threshold run on one thread: the
``every_region_parallel`` fixture lowers it to 0, and each test checks that every parallel loop
of what it calls really ran on several threads (else the comparison would prove nothing).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import moelab

CONFIGS = {
    "softmax-gated-shared": dict(num_experts=8, num_experts_per_tok=2, n_shared_experts=1,
                                 shared_expert_gate=True),
    "sigmoid-groups-capacity": dict(num_experts=8, num_experts_per_tok=3, scoring="sigmoid",
                                    n_group=4, topk_group=2, correction_bias=True,
                                    routed_scaling_factor=2.5, capacity_factor=0.8),
    "llama4-expert-bias": dict(num_experts=6, num_experts_per_tok=1, scoring="llama4",
                               expert_bias=True, n_shared_experts=1),
    "gpt-oss": dict(num_experts=8, num_experts_per_tok=4, scoring="topk_softmax",
                    router_bias=True, expert_bias=True, activation="swiglu_oai"),
}
THREAD_COUNTS = (1, 2, 3)
#: The parallel loops of every forward with statistics (the core's names).
FORWARD_LOOPS = {"router_logits", "select_experts", "experts_gate_up", "experts_down", "combine",
                 "aux_loss", "z_loss"}


def forward_loops(cfg: moelab.MoEConfig) -> set:
    """The loops a forward of ``cfg`` with statistics runs. Llama 4 copies (and scales) the
    experts' input rows in a loop of its own; the other routers let the experts read x in place,
    and their pack loop copies the rows of the dot path or packs the panels (Llama 4's pack loop
    only runs when an expert has panels to pack)."""
    return FORWARD_LOOPS | ({"copy_expert_inputs"} if cfg.scoring == "llama4" else {"experts_pack"})


def make_layer(name: str) -> moelab.MoELayer:
    cfg = moelab.MoEConfig(hidden_size=32, moe_intermediate_size=24, **CONFIGS[name])
    layer = moelab.MoELayer(cfg, seed=5)
    if cfg.correction_bias:  # a non-zero selection bias, so that it matters
        layer.weights["router.e_score_correction_bias"][:] = np.linspace(-0.05, 0.05,
                                                                          cfg.num_experts)
    return layer


def forward_all(layer: moelab.MoELayer, x: np.ndarray):
    y, st = layer(x, return_stats=True)
    return y, st


def assert_bitwise_equal(a, b, label: str) -> None:
    (y_a, st_a), (y_b, st_b) = a, b
    np.testing.assert_array_equal(y_a, y_b, err_msg=f"{label}: y")
    for field in ("topk_ids", "topk_weights", "router_logits", "tokens_per_expert"):
        np.testing.assert_array_equal(getattr(st_a, field), getattr(st_b, field),
                                      err_msg=f"{label}: {field}")
    assert st_a.aux_loss == st_b.aux_loss, f"{label}: aux_loss"
    assert st_a.z_loss == st_b.z_loss, f"{label}: z_loss"
    assert st_a.dropped == st_b.dropped, f"{label}: dropped"


def test_set_and_get_num_threads(set_threads):
    for n in (1, 2, 3):
        set_threads(n)
        assert moelab.get_num_threads() == n


@pytest.mark.parametrize("T", [1, 64, 300], ids=lambda t: f"T{t}")
@pytest.mark.parametrize("name", list(CONFIGS), ids=str)
def test_layer_bitwise_equal_across_thread_counts(name, T, set_threads,
                                                  every_region_parallel, rng):
    layer = make_layer(name)
    x = rng.normal(size=(T, 32)).astype(np.float32)
    results = {}
    for n in THREAD_COUNTS:
        set_threads(n)
        results[n], loops = every_region_parallel(forward_all, layer, x)
        if n > 1:
            assert loops >= forward_loops(layer.config), f"{n} threads: only {sorted(loops)} ran"
    for n in THREAD_COUNTS[1:]:
        assert_bitwise_equal(results[n], results[1], f"{n} threads vs 1")


@pytest.mark.parametrize("T", [1, 64, 300], ids=lambda t: f"T{t}")
def test_gated_mlp_and_route_bitwise_equal_across_thread_counts(T, set_threads,
                                                                every_region_parallel, rng):
    mlp = moelab.GatedMLP(32, 48, activation="gelu", seed=2)
    cfg = moelab.MoEConfig(32, 8, 2, 24, scoring="sigmoid", n_group=2, topk_group=1)
    x = rng.normal(size=(T, 32)).astype(np.float32)
    logits = rng.normal(size=(T, 8)).astype(np.float32)
    results = {}
    for n in THREAD_COUNTS:
        set_threads(n)
        y, mlp_loops = every_region_parallel(mlp, x)
        (ids, w), route_loops = every_region_parallel(moelab.ops.route, logits, cfg)
        results[n] = (y, ids, w)
        if n > 1:
            assert mlp_loops >= {"experts_gate_up", "experts_down"}, sorted(mlp_loops)
            assert route_loops == {"select_experts"}, sorted(route_loops)
    for n in THREAD_COUNTS[1:]:
        for a, b in zip(results[n], results[1]):
            np.testing.assert_array_equal(a, b, err_msg=f"{n} threads vs 1")


def test_random_init_bitwise_equal_across_thread_counts(set_threads, every_region_parallel):
    cfg = moelab.MoEConfig(hidden_size=32, moe_intermediate_size=24, **CONFIGS["gpt-oss"])
    weights = {}
    for n in THREAD_COUNTS:
        set_threads(n)
        layer, loops = every_region_parallel(moelab.MoELayer, cfg, 11)
        weights[n] = {name: w.copy() for name, w in layer.weights.items()}
        if n > 1:
            assert "fill_uniform" in loops
    for n in THREAD_COUNTS[1:]:
        for name in weights[1]:
            np.testing.assert_array_equal(weights[n][name], weights[1][name], err_msg=name)


@pytest.mark.parametrize("threads", [1, 2], ids=lambda n: f"omp{n}")
@pytest.mark.parametrize("name", ["softmax-gated-shared", "sigmoid-groups-capacity"], ids=str)
def test_python_threads_share_one_layer(name, threads, set_threads, every_region_parallel,
                                        rng):
    """Two Python threads run many forwards on one layer at once (the GIL is released in the
    core), each forward's loops on `threads` OpenMP threads; each result equals the serial one
    exactly."""
    set_threads(threads)
    layer = make_layer(name)
    n_workers, n_calls = 2, 25
    inputs = [[rng.normal(size=(int(rng.integers(1, 90)), 32)).astype(np.float32)
               for _ in range(n_calls)] for _ in range(n_workers)]
    serial = [[forward_all(layer, x) for x in xs] for xs in inputs]

    results = [[None] * n_calls for _ in range(n_workers)]
    errors = []
    start = threading.Barrier(n_workers)

    def work(i: int) -> None:
        try:
            start.wait()
            for j, x in enumerate(inputs[i]):
                results[i][j] = forward_all(layer, x)
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(n_workers)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a worker thread hung"
    assert not errors, errors
    for i in range(n_workers):
        for j in range(n_calls):
            assert_bitwise_equal(results[i][j], serial[i][j], f"worker {i} call {j}")


def test_load_weights_while_other_threads_forward(set_threads, rng):
    """A forward that overlaps a load sees either all old or all new weights, never a mix:
    the two weight sets give different outputs, and every result matches one of them."""
    set_threads(2)
    layer = make_layer("softmax-gated-shared")
    old = {n: w.copy() for n, w in layer.weights.items()}
    new = {n: (w * -1.5).astype(np.float32) for n, w in old.items()}
    x = rng.normal(size=(48, 32)).astype(np.float32)
    y_old = layer(x)
    layer.load_weights(new)
    y_new = layer(x)
    assert not np.array_equal(y_old, y_new)
    layer.load_weights(old)

    seen, errors = [], []
    stop = threading.Event()

    def forward_loop() -> None:
        try:
            while not stop.is_set():
                seen.append(layer(x))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=forward_loop)
    worker.start()
    try:
        for i in range(20):
            layer.load_weights(new if i % 2 == 0 else old)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert not errors, errors
    assert seen
    for y in seen:
        assert np.array_equal(y, y_old) or np.array_equal(y, y_new)


# --------------------------------------------------------------------------------------------
# the thread count's type and limits: any integer, capped at 4 x the cores, never a crash
# --------------------------------------------------------------------------------------------
class _Index:
    """An integer-like object that is neither an int nor a NumPy integer."""

    def __init__(self, value: int):
        self.value = value

    def __index__(self) -> int:
        return self.value


@pytest.mark.parametrize("n", [np.int64(2), np.uint8(2), np.int32(1), _Index(2), 1],
                         ids=["int64", "uint8", "int32", "__index__", "int"])
def test_set_num_threads_takes_any_integer(n, set_threads):
    set_threads(3)
    set_threads(n)
    assert moelab.get_num_threads() == int(n)
    assert type(moelab.get_num_threads()) is int


def test_the_limit_is_four_times_the_available_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert moelab.threads.available_cores() == cores
    assert moelab.threads.max_num_threads() == 4 * cores


@pytest.mark.parametrize("n", [10**9, 2**31, 2**63, 10**30, 100_000])
def test_a_huge_count_is_capped_with_one_warning(n, restore_threads):
    cores, limit = moelab.threads.available_cores(), moelab.threads.max_num_threads()
    with pytest.warns(RuntimeWarning) as caught:
        moelab.set_num_threads(n)
    assert len(caught) == 1
    assert str(caught[0].message) == (
        f"set_num_threads({n}): more threads than the {cores} available cores, the extra "
        f"threads only add overhead; capped at {limit} (4 x the cores)")
    assert moelab.get_num_threads() == limit


def test_a_count_above_the_cores_warns_without_capping(restore_threads):
    cores = moelab.threads.available_cores()
    with pytest.warns(RuntimeWarning, match=f"more threads than the {cores} available cores, "
                                            "the extra threads only add overhead$"):
        moelab.set_num_threads(cores + 1)
    assert moelab.get_num_threads() == cores + 1


def test_a_forward_after_a_million_threads_gives_the_bits_of_one(restore_threads,
                                                                 every_region_parallel, rng):
    """Once a segfault (100000 threads on a (4096, 64) input) or an abort in libgomp."""
    layer = moelab.MoELayer(moelab.MoEConfig(64, 8, 2, 32, n_shared_experts=1), seed=3)
    x = rng.normal(size=(4096, 64)).astype(np.float32)
    moelab.set_num_threads(1)
    one = forward_all(layer, x)
    with pytest.warns(RuntimeWarning, match="capped at"):
        moelab.set_num_threads(10**6)
    many, loops = every_region_parallel(forward_all, layer, x)
    assert "experts_gate_up" in loops  # really ran on several threads
    assert_bitwise_equal(many, one, f"{moelab.get_num_threads()} threads vs 1")


def test_cli_threads_go_through_set_num_threads(restore_threads, capsys):
    from moelab.__main__ import main

    limit = moelab.threads.max_num_threads()
    with pytest.warns(RuntimeWarning, match=f"capped at {limit}"):
        assert main(["run", "qwen3-30b-a3b", "--tokens", "64", "--hidden", "32", "--layers",
                     "1", "--repeats", "1", "--threads", "1000000000", "--no-progress"]) == 0
    assert f"threads={limit}" in capsys.readouterr().out
