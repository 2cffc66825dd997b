"""No per-call allocation: once a forward of T or more tokens has run on a
thread, a forward of up to T tokens on that thread allocates nothing on the heap.

The core keeps its scratch in a workspace per calling thread that a planning step sizes before
anything runs. ``moelab._core`` counts the heap allocations its own code makes inside each
kernel call, on any thread (OpenMP workers included): calls of operator new and of the malloc
family from the core, the bindings and what they inline (std::vector, Eigen) are routed through
counting wrappers when the module is linked (Linux). ``allocations(call)`` is the difference of
that count across a call: the core's allocations alone, not NumPy's output arrays.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import moelab
from moelab import _core

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the heap probe is linked on Linux builds only")

ORDER = ["portable", "avx2", "avx512"]
ISAS = ORDER[: ORDER.index(_core.build_info()["isa_detected"]) + 1]

CONFIGS = {
    "softmax-shared-gated": moelab.MoEConfig(64, 8, 2, 40, n_shared_experts=1,
                                             shared_expert_gate=True),
    "sigmoid-groups-capacity": moelab.MoEConfig(64, 16, 4, 24, scoring="sigmoid", n_group=4,
                                                topk_group=2, correction_bias=True,
                                                routed_scaling_factor=2.5, capacity_factor=0.9),
    "gpt-oss": moelab.MoEConfig(48, 8, 4, 36, scoring="topk_softmax", router_bias=True,
                                activation="swiglu_oai", expert_bias=True),
    "llama4": moelab.MoEConfig(32, 4, 1, 20, scoring="llama4", n_shared_experts=1),
    "grok-softcap": moelab.MoEConfig(40, 8, 2, 32, router_logit_softcap=30.0,
                                     norm_topk_prob=False),
    # rows long enough that a general GEMM library would want heap buffers for its blocks
    "long-rows": moelab.MoEConfig(512, 2, 1, 256),
}
#: The largest T of a test (run first, to size the workspace), then smaller ones; 150 tokens
#: give experts of ~37 rows: panels with a dot tail on AVX-512 and AVX2.
T_MAX = 150
T_AFTER = (T_MAX, 77, 33, 5, 1, 0)


def allocations(call) -> int:
    """Heap allocations the core made during call()."""
    before = _core._heap_allocations()
    call()
    return _core._heap_allocations() - before


@pytest.fixture
def isa():
    before = _core.get_isa()
    yield _core.set_isa
    _core.set_isa(before)


def test_the_probe_is_linked_and_sees_a_workspace_grow():
    """The probe can fail: a Python thread starts with an empty workspace, so its first forward
    must allocate (and be seen to), its second of the same size must not."""
    assert _core._heap_probe_linked()
    layer = moelab.MoELayer(CONFIGS["softmax-shared-gated"], seed=0)
    x = np.random.default_rng(1).standard_normal((20, 64)).astype(np.float32)
    counts = []
    worker = threading.Thread(target=lambda: counts.extend(
        [allocations(lambda: layer(x)), allocations(lambda: layer(x))]))
    worker.start()
    worker.join(timeout=120)
    assert len(counts) == 2
    assert counts[0] > 0, "the first forward on a new thread must grow its workspace"
    assert counts[1] == 0


@pytest.mark.parametrize("threads", [1, 2], ids=lambda n: f"omp{n}")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_allocates_nothing_once_sized(isa, set_threads, every_region_parallel, name,
                                              path, dtype, threads, rng):
    """Every loop on `threads` threads (OpenMP workers allocate nothing either), new inputs at
    every call (the routing, hence the experts' row counts and tasks, change), with and
    without statistics."""
    isa(path)
    set_threads(threads)
    cfg = CONFIGS[name]
    layer = moelab.MoELayer(cfg, seed=1, weight_dtype=dtype)
    layer(rng.standard_normal((T_MAX, cfg.hidden_size)).astype(np.float32), return_stats=True)
    for T in T_AFTER:
        x = rng.standard_normal((T, cfg.hidden_size)).astype(np.float32)  # (T, H)
        assert allocations(lambda: layer(x)) == 0, f"T={T}"
        assert allocations(lambda: layer(x, return_stats=True)) == 0, f"T={T}, stats"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
def test_gated_mlp_allocates_nothing_once_sized(isa, set_threads, every_region_parallel,
                                                path, dtype, rng):
    isa(path)
    set_threads(2)
    mlp = moelab.GatedMLP(48, 72, activation="gelu", seed=2, weight_dtype=dtype)
    mlp(rng.standard_normal((T_MAX, 48)).astype(np.float32))
    for T in T_AFTER:
        x = rng.standard_normal((T, 48)).astype(np.float32)  # (T, H)
        assert allocations(lambda: mlp(x)) == 0, f"T={T}"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
def test_linear_allocates_nothing_once_sized(isa, set_threads, every_region_parallel, path,
                                             dtype, rng):
    isa(path)
    set_threads(2)
    w = rng.standard_normal((200, 77)).astype(np.float32)  # (N, K)
    if dtype == "bfloat16":
        w = (w.view(np.uint32) >> 16).astype(np.uint16)  # bfloat16 bits (truncated)
    b = rng.standard_normal(200).astype(np.float32)
    moelab.ops.linear(rng.standard_normal((T_MAX, 77)).astype(np.float32), w, b)
    for T in T_AFTER:
        x = rng.standard_normal((T, 77)).astype(np.float32)  # (T, K)
        assert allocations(lambda: moelab.ops.linear(x, w, b)) == 0, f"T={T}"


def test_single_ops_allocate_nothing_inside_the_core(set_threads, every_region_parallel,
                                                     rng):
    """route and activation size their scratch before the kernel call."""
    set_threads(2)
    cfg = CONFIGS["sigmoid-groups-capacity"]
    logits = rng.standard_normal((60, cfg.num_experts)).astype(np.float32)
    gate, up = rng.standard_normal((2, 60, 24)).astype(np.float32)
    assert allocations(lambda: moelab.ops.route(logits, cfg)) == 0
    assert allocations(lambda: moelab.ops.activation("silu", gate, up)) == 0


def deltanet_layer(dtype: str) -> moelab.GatedDeltaNet:
    """Qwen3-Next's Gated DeltaNet at toy dims (r = n_v / n_k = 2, conv kernel 4)."""
    cfg = moelab.preset("qwen3-next-80b-a3b").scaled(hidden_size=48)
    cfg = cfg.replace(attention=cfg.attention.replace(
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
        linear_value_head_dim=12, linear_conv_kernel_dim=4))
    return moelab.GatedDeltaNet(cfg, 0, seed=3, weight_dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", ISAS)
def test_gated_deltanet_prefill_and_decode_allocate_nothing_once_sized(
        isa, set_threads, every_region_parallel, path, dtype, rng):
    """Prefill (several token blocks at T_MAX, the chunked delta rule), then decode steps (the
    recurrent step) and shorter prefills, continuing one state and without one."""
    isa(path)
    set_threads(2)
    layer = deltanet_layer(dtype)
    H = layer.config.hidden_size
    state = layer.new_state()
    layer(rng.standard_normal((T_MAX, H)).astype(np.float32), state)  # sizes the workspace
    layer(rng.standard_normal((1, H)).astype(np.float32), state)      # and the decode scratch
    for T in T_AFTER + (1, 1, 1):
        x = rng.standard_normal((T, H)).astype(np.float32)  # (T, H)
        assert allocations(lambda: layer(x, state)) == 0, f"T={T}, with a state"
        assert allocations(lambda: layer(x)) == 0, f"T={T}, a fresh sequence"


def test_gated_deltanet_probe_sees_a_fresh_thread_grow_its_workspace():
    """The DeltaNet cases can fail: a new thread's first prefill must be seen to allocate."""
    layer = deltanet_layer("float32")
    x = np.random.default_rng(2).standard_normal((70, layer.config.hidden_size)).astype(np.float32)
    counts = []
    worker = threading.Thread(target=lambda: counts.extend(
        [allocations(lambda: layer(x)), allocations(lambda: layer(x))]))
    worker.start()
    worker.join(timeout=120)
    assert counts[0] > 0 and counts[1] == 0, counts
