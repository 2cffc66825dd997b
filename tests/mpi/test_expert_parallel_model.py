"""Whole models across ranks: ``moelab.hf.load_model(path, expert_parallel=MPI.COMM_WORLD)``
under ``mpirun -n N`` (N = 1, 2, 3, 4; 3 splits the 4 experts unevenly).

A tiny Qwen3-MoE and a tiny DeepSeek-V3 (MLA, group-limited sigmoid router, a shared expert)
are saved by transformers with random weights, in float32 and in bfloat16, and a tiny gpt-oss
and Llama 4 (fused, transposed expert stacks) in float32, into a folder rank 0 writes and every
rank reads. On every rank, the expert-parallel model (each rank holding its
block of every MoE layer's experts) must give the single-process model's bits: the logits of a
prompt, its routing statistics, the logits of cached decode steps, greedy ``generate``'s
tokens, and ``python -m moelab generate --expert-parallel``'s output (printed by rank 0 only).

Robustness: a checkpoint lacking one expert's tensor, or with NaN in one expert (only the
rank that holds it reads it), a broken file on one rank, and ranks given different configs,
dtypes or placements: every rank raises one ValueError naming the failing rank(s) or what
differs; the watchdog of conftest.py makes a hang fail the run instead of blocking it.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

import moelab
from moelab.expert_parallel import ExpertParallelMoE, placement_of
from moelab.rank_agreement import agreed

_TESTS = Path(__file__).resolve().parents[1]
for _p in (str(_TESTS), str(_TESTS / "reference")):
    if _p not in sys.path:
        sys.path.append(_p)

from require_reference import require_torch_and_transformers  # noqa: E402

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
FAMILIES = ("qwen3_moe", "deepseek_v3")
DTYPES = ("float32", "bfloat16")
#: (model_type, dtype) of every checkpoint: also the fused, transposed expert stacks that each
#: rank reads slice by slice (gpt-oss's gate/up interleaved, with expert biases; Llama 4's).
CHECKPOINTS = [(t, d) for t in FAMILIES for d in DTYPES] + [("gpt_oss", "float32"),
                                                             ("llama4_text", "float32")]
PROMPT, STEPS, NEW_TOKENS = 12, 4, 8
#: RoutingStats fields that the expert-parallel layer must reproduce (its own ``comm`` aside).
STATS_FIELDS = ("topk_ids", "topk_weights", "router_logits", "tokens_per_expert", "aux_loss",
                "z_loss", "dropped")


def on_rank_0(what: str, step) -> None:
    """``step()`` on rank 0 only, every rank waiting for it: an error there is raised on every
    rank (``rank_agreement.agreed``), never a hang."""
    agreed(COMM, what, lambda: (step() if RANK == 0 else None, {}))


@pytest.fixture(scope="module")
def shared():
    """A folder every rank sees (rank 0 makes it), removed after the module."""
    path = Path(COMM.bcast(tempfile.mkdtemp(prefix="moelab-ep-") if RANK == 0 else None))
    yield path
    COMM.Barrier()
    if RANK == 0:
        shutil.rmtree(path, ignore_errors=True)


def _save(model_type: str, dtype: str, folder: Path) -> None:
    import torch
    from test_hf_decoder import _hf_model  # the tiny configs checked against transformers

    _hf_model(model_type, seed=11).to(getattr(torch, dtype)).save_pretrained(folder)


@pytest.fixture(scope="module")
def checkpoints(shared):
    """(model_type, dtype) -> a checkpoint folder written by transformers."""
    require_torch_and_transformers()
    folders = {(t, d): shared / f"{t}-{d}" for t, d in CHECKPOINTS}
    on_rank_0("writing the checkpoints",
              lambda: [_save(t, d, f) for (t, d), f in folders.items()])
    return folders


@pytest.fixture(scope="module", params=CHECKPOINTS, ids=lambda p: f"{p[0]}-{p[1]}")
def models(request, checkpoints):
    """(expert-parallel model, the single-process model of the same folder)."""
    folder = checkpoints[request.param]
    return moelab.hf.load_model(folder, expert_parallel=COMM), moelab.hf.load_model(folder)


def _prompt(vocab: int, n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, vocab, n)  # (n,), the same on every rank


def test_each_rank_holds_its_block_of_every_moe_layer(models):
    ep, one = models
    moe = [i for i, layer in enumerate(one.layers) if isinstance(layer.ffn, moelab.MoELayer)]
    assert moe and moe == list(ep.config.moe_layer_indices)
    E = ep.config.moe.num_experts
    mine = np.array_split(np.arange(E), SIZE)[RANK]
    for i, layer in enumerate(ep.layers):
        if i not in moe:
            assert type(layer.ffn) is type(one.layers[i].ffn)
            continue
        assert isinstance(layer.ffn, ExpertParallelMoE)
        np.testing.assert_array_equal(layer.ffn.owned_experts, mine)
        np.testing.assert_array_equal(layer.ffn.placement, placement_of(E, SIZE))
    assert ep.num_params == one.num_params


def test_prompt_logits_and_routing_equal_one_process(models):
    ep, one = models
    ids = _prompt(ep.config.vocab_size, PROMPT)
    got, want = {}, {}
    np.testing.assert_array_equal(ep(ids, routing=got), one(ids, routing=want))
    assert sorted(got) == sorted(want) == list(ep.config.moe_layer_indices)
    for i in want:
        for field in STATS_FIELDS:
            np.testing.assert_array_equal(getattr(got[i], field), getattr(want[i], field),
                                          err_msg=f"layer {i} {field}")


def test_cached_decode_steps_equal_one_process(models):
    ep, one = models
    ids = _prompt(ep.config.vocab_size, PROMPT + STEPS, seed=4)
    ep_cache, one_cache = ep.new_cache(), one.new_cache()
    np.testing.assert_array_equal(ep(ids[:PROMPT], cache=ep_cache),
                                  one(ids[:PROMPT], cache=one_cache))
    for t in range(PROMPT, PROMPT + STEPS):
        np.testing.assert_array_equal(ep(ids[t:t + 1], cache=ep_cache),
                                      one(ids[t:t + 1], cache=one_cache), err_msg=f"step {t}")
    assert ep_cache.length == one_cache.length == PROMPT + STEPS


def test_greedy_generate_equals_one_process_on_every_rank(models):
    ep, one = models
    ids = _prompt(ep.config.vocab_size, 5, seed=5)
    got = ep.generate(ids, max_new_tokens=NEW_TOKENS).tokens
    np.testing.assert_array_equal(got, one.generate(ids, max_new_tokens=NEW_TOKENS).tokens)
    assert len(got) == 5 + NEW_TOKENS
    for other in COMM.allgather(got):
        np.testing.assert_array_equal(other, got)


def test_a_dense_model_loads_replicated_across_ranks(shared):
    """No MoE layer: nothing to split, every layer replicated, the same logits; a placement
    is refused on every rank alike."""
    require_torch_and_transformers()
    folder = shared / "dense"
    on_rank_0("writing the dense checkpoint", lambda: _save("qwen3", "float32", folder))
    ep, one = moelab.hf.load_model(folder, expert_parallel=COMM), moelab.hf.load_model(folder)
    assert not any(isinstance(layer.ffn, ExpertParallelMoE) for layer in ep.layers)
    ids = _prompt(ep.config.vocab_size, PROMPT)
    np.testing.assert_array_equal(ep(ids), one(ids))
    with pytest.raises(ValueError, match=r"failed on rank\(s\) .*placement: this model has no "
                                         "MoE layer"):
        moelab.hf.load_model(folder, placement=[0], expert_parallel=COMM)


# ---------------------------------------------------------------------------------------------
# a failed or inconsistent load: every rank raises, naming who and what
# ---------------------------------------------------------------------------------------------
def _variant(checkpoints, shared, name: str, change=None, config=None) -> Path:
    """A copy of the float32 Qwen3-MoE folder (rank 0 writes it): ``change(state)`` applied to
    its tensors (a dict of torch tensors), ``config(dict)`` to its config.json."""
    src, folder = checkpoints[("qwen3_moe", "float32")], shared / name

    def write():
        import safetensors.torch

        shutil.copytree(src, folder, dirs_exist_ok=True)
        if change is not None:
            path = str(folder / "model.safetensors")
            state = safetensors.torch.load_file(path)
            change(state)
            safetensors.torch.save_file(state, path, metadata={"format": "pt"})
        if config is not None:
            cfg = json.loads((folder / "config.json").read_text())
            config(cfg)
            (folder / "config.json").write_text(json.dumps(cfg))

    on_rank_0(f"writing {name}", write)
    return folder


def _owner(expert: int, E: int = 4) -> int:
    return int(placement_of(E, SIZE)[expert])


EXPERT = "model.layers.1.mlp.experts.3.down_proj.weight"


def test_a_missing_expert_tensor_fails_every_rank_naming_its_owner(checkpoints, shared):
    folder = _variant(checkpoints, shared, "missing-expert", change=lambda s: s.pop(EXPERT))
    owner = _owner(3)
    with pytest.raises(ValueError, match=rf"^load_model failed on rank\(s\) {owner}: rank "
                                         rf"{owner}: ValueError: layer 1: missing tensor\(s\) "
                                         rf"{EXPERT.replace('.', '[.]')}$"):
        moelab.hf.load_model(folder, expert_parallel=COMM)


def test_nan_in_one_expert_is_read_by_its_owner_only(checkpoints, shared):
    """Only the rank holding expert 3 reads its weights, so only it can see the NaN."""
    def poison(state):
        state[EXPERT] = state[EXPERT].clone().fill_(float("nan"))

    folder = _variant(checkpoints, shared, "nan-expert", change=poison)
    owner = _owner(3)
    with pytest.raises(ValueError, match=rf"^load_model failed on rank\(s\) {owner}: rank "
                                         rf"{owner}: ValueError: {EXPERT.replace('.', '[.]')}: "
                                         "holds NaN or Inf$"):
        moelab.hf.load_model(folder, expert_parallel=COMM)


def test_a_broken_file_on_the_last_rank_fails_every_rank(checkpoints, shared):
    def truncate():
        path = broken / "model.safetensors"
        path.write_bytes(path.read_bytes()[:4096])

    good = checkpoints[("qwen3_moe", "float32")]
    broken = _variant(checkpoints, shared, "broken-file")
    on_rank_0("truncating the file", truncate)
    last = SIZE - 1
    with pytest.raises(ValueError, match=rf"^load_model failed on rank\(s\) {last}: rank "
                                         rf"{last}: ValueError: .*model\.safetensors"):
        moelab.hf.load_model(broken if RANK == last else good, expert_parallel=COMM)


def _two_ranks_at_least():
    if SIZE < 2:
        pytest.skip("ranks can only disagree when there are two of them (CI runs -n 2 and -n 4)")


def test_ranks_given_different_configs_fail_naming_config_json(checkpoints, shared):
    _two_ranks_at_least()
    other = _variant(checkpoints, shared, "other-config",
                     config=lambda c: c.update(rms_norm_eps=1e-5))
    folder = checkpoints[("qwen3_moe", "float32")] if RANK % 2 == 0 else other
    odd = ", ".join(str(r) for r in range(1, SIZE, 2))
    with pytest.raises(ValueError, match=r"^load_model: the ranks disagree on config\.json "
                                         rf"\(rank\(s\) [0-9, ]+: [0-9a-f]+; rank\(s\) {odd}: "
                                         r"[0-9a-f]+\)$"):
        moelab.hf.load_model(folder, expert_parallel=COMM)


def test_ranks_given_different_dtypes_or_placements_fail_naming_them(checkpoints):
    _two_ranks_at_least()
    folder = checkpoints[("qwen3_moe", "float32")]
    with pytest.raises(ValueError, match=r"^load_model: the ranks disagree on dtype \(rank\(s\) "
                                         r"0: 'bfloat16'; rank\(s\) [0-9, ]+: 'float32'\)$"):
        moelab.hf.load_model(folder, dtype="bfloat16" if RANK == 0 else "float32",
                             expert_parallel=COMM)
    reversed_blocks = placement_of(4, SIZE)[::-1].copy()
    with pytest.raises(ValueError, match=r"^load_model: the ranks disagree on placement "):
        moelab.hf.load_model(folder, placement=None if RANK == 0 else reversed_blocks,
                             expert_parallel=COMM)


def test_a_given_placement_is_used_and_still_exact(checkpoints):
    folder = checkpoints[("qwen3_moe", "float32")]
    owners = np.arange(4) % SIZE                                  # round robin
    ep = moelab.hf.load_model(folder, placement=owners, expert_parallel=COMM)
    for layer in ep.layers[1:]:
        np.testing.assert_array_equal(layer.ffn.owned_experts, np.flatnonzero(owners == RANK))
    ids = _prompt(ep.config.vocab_size, PROMPT)
    np.testing.assert_array_equal(ep(ids), moelab.hf.load_model(folder)(ids))


# ---------------------------------------------------------------------------------------------
# python -m moelab generate --expert-parallel
# ---------------------------------------------------------------------------------------------
def test_generate_cli_prints_on_rank_0_what_one_process_prints(shared):
    """The command's ``main`` in each rank (mpirun starts the ranks; this is what each runs)."""
    require_torch_and_transformers()
    import torch
    import transformers
    from tiny_tokenizer import save_byte_level_bpe

    from moelab.__main__ import main

    folder = shared / "cli"

    def write():
        folder.mkdir()
        save_byte_level_bpe(folder, ["experts route tokens to a router"] * 8)
        vocab = moelab.Tokenizer.from_pretrained(folder).vocab_size
        config = transformers.Qwen3MoeConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, intermediate_size=48, moe_intermediate_size=16,
            num_experts=4, num_experts_per_tok=2, mlp_only_layers=[0],
            max_position_embeddings=128, tie_word_embeddings=False)
        torch.manual_seed(0)
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)

    on_rank_0("writing the CLI checkpoint", write)
    args = ["generate", str(folder), "experts route", "--max-new-tokens", "6", "--trace"]

    def run(extra):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            status = main(args + extra)
        return status, out.getvalue(), err.getvalue()

    status, out, err = run(["--expert-parallel"])
    assert status == 0, err
    if RANK == 0:
        one_status, one_out, _ = run([])
        assert one_status == 0 and out == one_out and out.count("tok ") == 6
        assert f"{SIZE} expert-parallel ranks" in err
    else:
        assert out == "" and err == ""


# ---------------------------------------------------------------------------------------------
# benchmarks/bench_ep_memory.py, smoke test: each rank's figures on a tiny checkpoint
# ---------------------------------------------------------------------------------------------
def test_bench_ep_memory_measures_every_rank(shared):
    """What the benchmark's ranks run (mpirun starts them; here the test's ranks are they):
    every figure produced and consistent, every expert touched; no memory figure asserted."""
    require_torch_and_transformers()
    bench_dir = str(_TESTS.parent / "benchmarks")
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    import bench_ep_memory as bench

    folder = shared / "bench-tiny"
    on_rank_0("writing the benchmark's checkpoint",
              lambda: bench.make_checkpoint(folder, bench.TINY))
    result = bench.report(folder, COMM.allgather(bench.measure(str(folder), 32, COMM)))
    assert result["ranks"] == SIZE and result["goals"]["every expert touched"]
    assert result["replicated_bytes"] + result["expert_bytes"] < result["file_bytes"]
    held = [e for r in result["per_rank"] for e in r["owned_experts"]]
    assert sorted(held) == list(range(bench.TINY["num_experts"]))
    assert sum(r["held_expert_bytes"] for r in result["per_rank"]) == result["expert_bytes"]
    for r in result["per_rank"]:
        assert set(r["rss_after_forward"]) == set(bench.RSS_KEYS)
    assert bench.summary(dict(result, tokens=32)).count("\n| ") == SIZE + 1
