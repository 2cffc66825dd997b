"""``moelab.hf.moe_weights_in_place(..., held=mask)``: what an expert-parallel rank reads of an
MoE layer, on checkpoints written by transformers 5.23 in every stored form (per-expert 4.x
tensors, gpt-oss's and Llama 4's transposed fused stacks, the fused names of a state dict
written as it is), float32 and bfloat16.

Each held expert's parts are exactly that expert's slice of the canonical weights
(``load_moe_weights``); every other expert is ``None`` parts; and the tensors (or fused slices)
of the experts not held are neither checked nor read: deleting them or filling them with NaN
changes nothing, while the same damage to a held expert is reported naming its tensor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import moelab
from moelab.hf import load_moe_weights, moe_weights_in_place

import _fixtures as fx

try:
    import safetensors.torch
    import torch

    import _hf_blocks as hfb
except ImportError:  # conftest.py fails or skips every test below
    torch = hfb = safetensors = None

pytestmark = pytest.mark.reference

#: One family per stored form of the routed experts (layout and per-expert names).
BY_STORAGE = fx.one_per(lambda moe: (moe.layout, moe.per_expert))
#: Written as save_pretrained writes it ("saved"), or the in-memory state dict's fused names
#: written as they are ("fused").
FORMS = ("saved", "fused")


def _checkpoint(family: str, form: str, dtype: str, folder):
    """(folder, layer index, E) of a tiny checkpoint of ``family`` in ``form`` and ``dtype``."""
    fam = fx.FIXTURES[family]
    model = hfb.make_model(fam, seed=7).to(getattr(torch, dtype))
    if form == "saved":
        model.save_pretrained(folder)
    else:
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
        state = {n: t.contiguous() for n, t in model.state_dict().items()}
        safetensors.torch.save_file(state, str(folder / "model.safetensors"))
    E = moelab.hf.load_moe_weights(folder, fam.moe_layer)[0].num_experts
    return folder, fam.moe_layer, E


def _as_float32(part: np.ndarray) -> np.ndarray:
    return moelab.io.bf16_to_float32(part) if part.dtype == np.uint16 else np.asarray(part)


def _held(E: int) -> np.ndarray:
    held = np.zeros(E, dtype=bool)
    held[1::2] = True                                          # experts 1, 3, ...
    return held


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("family", BY_STORAGE)
def test_held_experts_are_their_slices_and_the_others_none(family, form, dtype, tmp_path):
    folder, i, E = _checkpoint(family, form, dtype, tmp_path / "ckpt")
    held = _held(E)
    _, full = load_moe_weights(folder, i)
    hf_config = json.loads((folder / "config.json").read_text())
    with moelab.io.open_checkpoint(folder) as tensors:
        cfg, weights, sources = moe_weights_in_place(tensors, hf_config, i, held)
        I = cfg.moe_intermediate_size
        for name, per_expert in (("experts.gate_up_proj", 2), ("experts.down_proj", 1)):
            parts = weights[name]
            assert len(parts) == E * per_expert, name
            for e in range(E):
                mine = parts[e * per_expert:(e + 1) * per_expert]
                if not held[e]:
                    assert all(p is None for p in mine), (name, e)
                    continue
                got = np.concatenate([_as_float32(p) for p in mine])  # (2I, H) or (H, I)
                np.testing.assert_array_equal(got, full[name][e], err_msg=f"{name}[{e}]")
                assert mine[0].shape == ((I, cfg.hidden_size) if per_expert == 2
                                         else (cfg.hidden_size, I))
        for name in weights:  # everything else as without held: the whole weight
            if not name.startswith(("experts.gate_up_proj", "experts.down_proj")):
                value = weights[name]
                assert all(p is not None for p in (value if isinstance(value, list) else [value])), name
        per_expert_files = not any(s.endswith(("gate_up_proj", "down_proj")) for s in sources)
        if per_expert_files:  # per-expert tensors: only the held experts' are sources
            for e in np.flatnonzero(~held):
                assert not any(f"experts.{e}." in s for s in sources), (e, sources)


def _rewrite(folder, change) -> None:
    """Rewrite model.safetensors with ``change(dict of torch tensors)`` applied."""
    path = str(folder / "model.safetensors")
    state = safetensors.torch.load_file(path)
    change(state)
    safetensors.torch.save_file(state, path)


@pytest.mark.parametrize("family", BY_STORAGE)
def test_a_damaged_expert_is_seen_only_by_its_holder(family, tmp_path):
    """NaN in one expert (its own tensor, or its slice of a fused stack) and, for per-expert
    files, a deleted tensor of another: reading the other experts never notices; reading
    the damaged one names it (NaN in a view is for the layer's load to find: that is
    checked on the whole model under MPI)."""
    folder, i, E = _checkpoint(family, "saved", "float32", tmp_path / "ckpt")
    hf_config = json.loads((folder / "config.json").read_text())
    bad = E - 1

    def damage(state):
        for name in [n for n in state if f"layers.{i}." in n and "experts" in n
                     and "shared" not in n and "bias" not in n]:
            if f"experts.{bad}." in name:
                state[name] = torch.full_like(state[name], float("nan"))
            elif f"experts.{bad - 1}.down" in name or f"experts.{bad - 1}.w2" in name:
                del state[name]
            elif name.endswith(("gate_up_proj", "down_proj")):  # a fused (E, ...) stack
                state[name][bad] = float("nan")

    _rewrite(folder, damage)
    with moelab.io.open_checkpoint(folder) as tensors:
        fused = any(n.endswith("experts.gate_up_proj") for n in tensors.names())
    others = np.ones(E, dtype=bool)
    others[bad] = False
    if not fused:
        others[bad - 1] = False
    with moelab.io.open_checkpoint(folder) as tensors:
        _, weights, _ = moe_weights_in_place(tensors, hf_config, i, others)
        parts = [p for p in weights["experts.down_proj"] if p is not None]
        assert all(np.isfinite(_as_float32(p)).all() for p in parts)
        held_bad = np.zeros(E, dtype=bool)
        held_bad[bad] = True
        if fused and fx.registry_moe(family).layout.transposed:
            # converted slice by slice: the NaN is found at once, naming the slice
            with pytest.raises(ValueError, match=rf"experts\.(gate_up|down)_proj\[{bad}\]: holds NaN"):
                moe_weights_in_place(tensors, hf_config, i, held_bad)
        else:  # read in place: views of the NaN values, for the layer's load to find
            _, weights, _ = moe_weights_in_place(tensors, hf_config, i, held_bad)
            down = [p for p in weights["experts.down_proj"] if p is not None]
            assert len(down) == 1 and np.isnan(_as_float32(down[0])).all()
        if not fused:
            held_missing = np.zeros(E, dtype=bool)
            held_missing[bad - 1] = True
            with pytest.raises(ValueError, match=rf"missing tensor\(s\) .*experts\.{bad - 1}\."):
                moe_weights_in_place(tensors, hf_config, i, held_missing)
