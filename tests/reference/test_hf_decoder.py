"""Whole decoders against transformers: a tiny random model per family, saved with
``save_pretrained`` and loaded with ``moelab.hf.load_model``, gives transformers' logits for a
40-token prompt (no cache, and prefilled into a cache) and for 8 cached decode steps.

Each tiny model has the layout features of its family: dense-first or interleaved MoE layers, a
shared expert, sliding and full (or chunked, NoPE) layers, tied or untied heads, Gemma 3's
sandwich norms, scaled embedding and final soft-cap, Qwen3-Next's DeltaNet layers,
DeepSeek-V3's MLA and group-limited sigmoid router, OLMoE's full-width q/k norms, the q/k/v
biases of Qwen2 and Qwen2-MoE (with its sigmoid-gated shared expert), Llama's biased attention.
The trained checkpoint that ships with the notebooks (notebooks/data/tiny-moe) is checked the
same way.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import moelab
import moelab.hf_decoder
from tolerances import (BF16_DECODER_LOGITS, DECODER_LOGITS, DECODER_LOGITS_DELTANET,
                        assert_close)

V, PROMPT, STEPS = 96, 40, 8
WINDOW = 8  # sliding window / attention chunk: below the prompt, so the masks bite

_COMMON = dict(vocab_size=V, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
               head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-6,
               intermediate_size=48, tie_word_embeddings=False, pad_token_id=0,
               bos_token_id=1, eos_token_id=2)

#: model_type -> config overrides (the family's layout in 2-4 layers).
FAMILIES = {
    "qwen3_moe": dict(num_hidden_layers=3, num_experts=4, num_experts_per_tok=2,
                      moe_intermediate_size=16, mlp_only_layers=[0], norm_topk_prob=True),
    "qwen3": dict(num_hidden_layers=2, tie_word_embeddings=True),
    "mixtral": dict(num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
                    sliding_window=None),
    "mistral": dict(num_hidden_layers=2, sliding_window=WINDOW),
    "olmo2": dict(num_hidden_layers=2),
    "glm4_moe": dict(num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=4,
                     num_experts_per_tok=2, moe_intermediate_size=16, n_shared_experts=1,
                     n_group=1, topk_group=1, attention_bias=True, use_qk_norm=True,
                     partial_rotary_factor=0.5),
    "gpt_oss": dict(num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
                    intermediate_size=16, sliding_window=WINDOW,
                    layer_types=["sliding_attention", "full_attention"],
                    rope_parameters=dict(rope_type="yarn", rope_theta=150000.0, factor=32.0,
                                         beta_fast=32.0, beta_slow=1.0, truncate=False,
                                         original_max_position_embeddings=64)),
    "smollm3": dict(num_hidden_layers=4, no_rope_layer_interval=4),
    "gemma3_text": dict(num_hidden_layers=2, sliding_window=WINDOW, query_pre_attn_scalar=24,
                        layer_types=["sliding_attention", "full_attention"],
                        final_logit_softcapping=30.0, tie_word_embeddings=True,
                        rope_parameters=dict(
                            full_attention=dict(rope_type="linear", rope_theta=1e6, factor=8.0),
                            sliding_attention=dict(rope_type="default", rope_theta=1e4))),
    "llama4_text": dict(num_hidden_layers=4, interleave_moe_layer_step=2, num_local_experts=4,
                        num_experts_per_tok=1, intermediate_size=16, intermediate_size_mlp=48,
                        attention_chunk_size=WINDOW, use_qk_norm=True, floor_scale=4,
                        attn_scale=0.1, attn_temperature_tuning=True,
                        rope_parameters=dict(rope_type="llama3", rope_theta=5e5, factor=8.0,
                                             low_freq_factor=1.0, high_freq_factor=4.0,
                                             original_max_position_embeddings=64)),
    "qwen3_next": dict(num_hidden_layers=4, partial_rotary_factor=0.25, num_experts=4,
                       num_experts_per_tok=2, moe_intermediate_size=16,
                       shared_expert_intermediate_size=16, linear_num_key_heads=2,
                       linear_num_value_heads=4, linear_key_head_dim=8,
                       linear_value_head_dim=8, mlp_only_layers=[0]),
    "deepseek_v3": dict(num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=4,
                        num_experts_per_tok=2, moe_intermediate_size=16, n_shared_experts=1,
                        n_group=2, topk_group=1, q_lora_rank=24, kv_lora_rank=32,
                        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12,
                        num_key_value_heads=4, head_dim=8),
    "olmoe": dict(num_hidden_layers=2, num_experts=4, num_experts_per_tok=2,
                  intermediate_size=16, norm_topk_prob=False),
    "qwen2_moe": dict(num_hidden_layers=3, num_experts=4, num_experts_per_tok=2,
                      moe_intermediate_size=16, shared_expert_intermediate_size=24,
                      mlp_only_layers=[0], norm_topk_prob=False, use_sliding_window=True,
                      sliding_window=WINDOW, max_window_layers=2),
    "qwen2": dict(num_hidden_layers=2, use_sliding_window=True, sliding_window=WINDOW,
                  max_window_layers=1),
    "llama": dict(num_hidden_layers=2, attention_bias=True,
                  rope_parameters=dict(rope_type="llama3", rope_theta=5e5, factor=8.0,
                                       low_freq_factor=1.0, high_freq_factor=4.0,
                                       original_max_position_embeddings=64)),
}


def _hf_model(model_type: str, seed: int = 0):
    """A tiny random transformers model: matrices uniform in ±1/sqrt(fan_in), biases small,
    norm weights spread around 1 (around 0 for Gemma's (1 + w) norms)."""
    kw = dict(_COMMON)
    kw.update(FAMILIES[model_type])
    config = transformers.CONFIG_MAPPING[model_type](**kw)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    gemma = model_type.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(-0.5, 0.5) if gemma else p.uniform_(0.5, 1.5)
            elif p.ndim == 1:
                p.uniform_(-0.1, 0.1)
            else:
                p.uniform_(-1.0, 1.0).mul_(p.shape[-1] ** -0.5)
    return model


@pytest.fixture(scope="module", params=list(FAMILIES))
def pair(request, tmp_path_factory):
    """(model_type, transformers model, moelab model loaded from its save_pretrained folder)."""
    model_type = request.param
    hf = _hf_model(model_type)
    folder = tmp_path_factory.mktemp(model_type)
    hf.save_pretrained(folder)
    return model_type, hf, moelab.hf.load_model(folder)


def _tol(model_type: str):
    return DECODER_LOGITS_DELTANET if model_type == "qwen3_next" else DECODER_LOGITS


def _ids(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, PROMPT + STEPS)


def _hf_logits(hf, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return hf(torch.from_numpy(ids)[None]).logits[0].float().numpy()


def test_prompt_logits_match_transformers(pair):
    model_type, hf, model = pair
    ids = _ids()[:PROMPT]
    got = model(ids)
    assert got.shape == (PROMPT, V) and got.dtype == np.float32
    assert_close(got, _hf_logits(hf, ids), _tol(model_type), what=f"{model_type} prompt logits")


def test_cached_decode_matches_transformers(pair):
    model_type, hf, model = pair
    ids = _ids()
    expected = _hf_logits(hf, ids)                                 # (T + 8, V)
    cache = model.new_cache()
    prefill = model(ids[:PROMPT], cache=cache)
    assert cache.length == PROMPT and cache.nbytes > 0
    assert_close(prefill, expected[:PROMPT], _tol(model_type), what=f"{model_type} prefill")
    for t in range(PROMPT, PROMPT + STEPS):
        step = model(ids[t:t + 1], cache=cache)
        assert_close(step[0], expected[t], _tol(model_type), what=f"{model_type} decode {t}")
    assert cache.length == PROMPT + STEPS


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", ["qwen3_moe", "gemma3_text", "qwen3_next", "olmoe",
                                        "qwen2_moe", "qwen2", "llama"])
def test_greedy_generate_matches_transformers(model_type, tmp_path):
    hf = _hf_model(model_type, seed=3)
    hf.save_pretrained(tmp_path)
    model = moelab.hf.load_model(tmp_path)
    prompt = _ids(4)[:PROMPT]
    with torch.no_grad():
        expected = hf.generate(torch.from_numpy(prompt)[None], max_new_tokens=20,
                               do_sample=False, eos_token_id=2, pad_token_id=0)[0].numpy()
    streamed = []
    out = model.generate(prompt, max_new_tokens=20, stop=[2], callback=streamed.append)
    assert out.tokens.dtype == np.int64
    np.testing.assert_array_equal(out.tokens, expected)
    assert streamed == list(out.new_tokens)


def test_sampling_is_seeded_and_restricted(pair):
    _, _, model = pair
    prompt = _ids(5)[:8]
    a = model.generate(prompt, max_new_tokens=6, temperature=1.0, seed=7).tokens
    b = model.generate(prompt, max_new_tokens=6, temperature=1.0, seed=7).tokens
    np.testing.assert_array_equal(a, b)
    top1 = model.generate(prompt, max_new_tokens=6, temperature=0.8, top_k=1, seed=1).tokens
    np.testing.assert_array_equal(top1, model.generate(prompt, max_new_tokens=6).tokens)
    tiny_p = model.generate(prompt, max_new_tokens=6, temperature=2.0, top_p=1e-9, seed=2).tokens
    np.testing.assert_array_equal(tiny_p, top1)


# ---------------------------------------------------------------------------------------------
# bad input: refused with the key, tensor or argument named, nothing half-built
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen3_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen3_bad")
    _hf_model("qwen3").save_pretrained(folder)
    return folder


def _copy_with(src, dst, edit_config=None, edit_tensors=None):
    import json
    import shutil

    from safetensors.numpy import load_file, save_file
    shutil.copytree(src, dst)
    if edit_config is not None:
        cfg = json.loads((dst / "config.json").read_text())
        edit_config(cfg)
        (dst / "config.json").write_text(json.dumps(cfg))
    if edit_tensors is not None:
        tensors = load_file(dst / "model.safetensors")
        edit_tensors(tensors)
        save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_refuses_a_missing_tensor(qwen3_folder, tmp_path):
    name = "model.layers.1.self_attn.k_proj.weight"
    bad = _copy_with(qwen3_folder, tmp_path / "m", edit_tensors=lambda t: t.pop(name))
    with pytest.raises(ValueError, match=name.replace(".", r"\.") + ": missing"):
        moelab.hf.load_model(bad)


@pytest.mark.parametrize("name", ["model.layers.1.self_attn.q_proj.weight",
                                  "model.layers.0.mlp.down_proj.weight"])
def test_refuses_nan_in_a_tensor_read_in_place(qwen3_folder, tmp_path, name):
    """The layers check the mapped tensors they borrow; the error names the checkpoint's."""
    _assert_refuses_non_finite(qwen3_folder, tmp_path, name, np.nan)


def _assert_refuses_non_finite(folder, tmp_path, name: str, value: float) -> None:
    """A copy of ``folder`` with ``value`` (NaN or Inf) in tensor ``name`` is refused, the
    tensor named."""
    def poison(t):
        t[name] = t[name].copy()
        t[name].flat[1] = value
    bad = _copy_with(folder, tmp_path / "poisoned", edit_tensors=poison)
    with pytest.raises(ValueError, match=name.replace(".", r"\.") + ": holds NaN or Inf"):
        moelab.hf.load_model(bad)


def test_experts_are_read_in_place_and_a_nan_names_the_expert_tensor(tmp_path):
    folder = tmp_path / "moe"
    _hf_model("qwen3_moe").save_pretrained(folder)
    model = moelab.hf.load_model(folder)
    moe = [layer.ffn for layer in model.layers if isinstance(layer.ffn, moelab.MoELayer)]
    assert moe and all(f.owned_weight_bytes == 0 for f in moe)  # float32 file: all borrowed
    assert all(layer.mixer.owned_weight_bytes == 0 for layer in model.layers)
    with moelab.io.open_checkpoint(folder) as ckpt:
        name = next(n for n in ckpt.names() if n.endswith("experts.1.up_proj.weight"))
    _assert_refuses_non_finite(folder, tmp_path, name, np.inf)


def test_refuses_a_wrong_shape(qwen3_folder, tmp_path):
    name = "model.layers.0.mlp.up_proj.weight"

    def shrink(t):
        t[name] = t[name][:-1].copy()
    bad = _copy_with(qwen3_folder, tmp_path / "m", edit_tensors=shrink)
    with pytest.raises(ValueError, match=name.replace(".", r"\.") + ": expected shape"):
        moelab.hf.load_model(bad)


def test_refuses_a_config_that_contradicts_the_weights(qwen3_folder, tmp_path):
    bad = _copy_with(qwen3_folder, tmp_path / "m",
                     edit_config=lambda c: c.update(intermediate_size=40))
    with pytest.raises(ValueError, match=r"gate_proj\.weight: expected shape \(40, 64\)"):
        moelab.hf.load_model(bad)


def test_refuses_quantized_and_unsupported_models(qwen3_folder, tmp_path):
    quant = _copy_with(qwen3_folder, tmp_path / "q", edit_config=lambda c: c.update(
        quantization_config={"quant_method": "fp8"}))
    with pytest.raises(ValueError, match="quantization_config"):
        moelab.hf.load_model(quant)
    with pytest.raises(ValueError, match="'grok'.*residual MoE.*transformers has no Grok"
                                         ".*supported: "):
        moelab.hf_decoder._check_supported(moelab.preset("grok-2"))
    with pytest.raises(ValueError, match="dtype"):
        moelab.hf.load_model(qwen3_folder, dtype="float16")


def test_refuses_phimoe_naming_its_missing_features(tmp_path):
    """PhiMoE's LayerNorms have a bias and its router is sparsemixer: neither is in the core."""
    config = transformers.PhimoeConfig(vocab_size=V, hidden_size=64, intermediate_size=16,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, num_local_experts=4)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'phimoe'.*LayerNorm with a bias.*'sparsemixer' router"):
        moelab.hf.load_model(tmp_path)


def test_refuses_olmoe_clip_qkv(tmp_path):
    """OLMoE's optional clamp of q, k and v is not in the core: refused by its key."""
    _hf_model("olmoe").save_pretrained(tmp_path / "m")
    bad = _copy_with(tmp_path / "m", tmp_path / "clip", edit_config=lambda c: c.update(
        clip_qkv=8.0))
    with pytest.raises(ValueError, match="clip_qkv=8.0"):
        moelab.hf.load_model(bad)


def test_bad_ids(pair):
    _, _, model = pair
    with pytest.raises(ValueError, match="ids: the prompt is empty"):
        model([])
    with pytest.raises(IndexError, match="ids"):
        model([0, V])
    with pytest.raises(TypeError, match="cache"):
        model([0], cache=object())


# ---------------------------------------------------------------------------------------------
# bfloat16 checkpoints: read in place where the kernels allow
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", ["qwen3", "qwen3_moe", "mixtral", "gpt_oss", "olmoe",
                                        "qwen2_moe", "llama"])
def test_bfloat16_checkpoint_matches_its_float32_values(model_type, tmp_path):
    """A bfloat16 checkpoint loads with bfloat16 storage (dtype=None) and gives the logits of
    transformers' float32 model holding the same (bfloat16-rounded) values: the math is float32
    either way, so the float32 tolerance holds. Embedding, LM head and norms are views into the
    file (uint16 bfloat16 bits), not copies."""
    hf = _hf_model(model_type)
    with torch.no_grad():
        for p in hf.parameters():       # parameters only: RoPE's inv_freq stays float32
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    copy.deepcopy(hf).to(torch.bfloat16).save_pretrained(tmp_path)
    model = moelab.hf.load_model(tmp_path)
    for arr in (model.embed, model.lm_head, model.final_norm, *model.layers[0].norms.values()):
        assert arr.dtype == np.uint16 and not arr.flags.owndata
    assert {layer.mixer.weight_dtype for layer in model.layers} == {"bfloat16"}
    assert {layer.ffn.weight_dtype for layer in model.layers} == {"bfloat16"}
    ids = _ids()
    assert_close(model(ids), _hf_logits(hf, ids), DECODER_LOGITS, what=f"{model_type} bf16")


def _hf_logits_and_experts(hf, ids: np.ndarray, k: int):
    """transformers' logits (T, V) for ``ids`` and the experts it picked, (T, MoE layers, k)
    sorted per row (None without MoE layers): read from the ids each experts module is called
    with (Llama 4 scales its experts' inputs instead: the top-k of its router's logits)."""
    picks, hooks = [], []
    for module in hf.modules():
        name = type(module).__name__
        if name == "Llama4Router":     # forward -> (scores, logits)
            hooks.append(module.register_forward_hook(lambda m, args, out: picks.append(
                torch.topk(out[1].float(), k, dim=-1).indices.numpy())))
        elif name.endswith("Experts") and name != "Llama4TextExperts":  # (x, top_k_index, ...)
            hooks.append(module.register_forward_pre_hook(lambda m, args: picks.append(
                args[1].reshape(len(ids), k).numpy())))
    try:
        logits = _hf_logits(hf, ids)
    finally:
        for h in hooks:
            h.remove()
    return logits, np.sort(np.stack(picks, axis=1), axis=-1) if picks else None


@pytest.mark.parametrize("model_type", [t for t in FAMILIES if t != "qwen3_next"])
def test_bfloat16_checkpoint_matches_transformers_bfloat16(model_type, tmp_path):
    """The same bfloat16 checkpoint in transformers (``dtype=torch.bfloat16``) and in moelab:
    logits within BF16_DECODER_LOGITS (transformers' activation rounding) on every token both
    route to the same experts (at most 1 in 10 may differ: near-ties that transformers' rounded
    router scores reorder), and the same greedy tokens up to the first step where transformers'
    two best logits are closer than the logits of the two models may differ, 2 rtol of the scale
    (bfloat16 logits tie exactly there often: transformers takes the lower id).

    Qwen3-Next is left out: transformers' bfloat16 chunked delta rule departs from its own
    float32 model by 0.12 .. 0.62 of the logit scale (3 seeds), so it is no oracle at this
    precision; its float32 tests hold the DeltaNet layers."""
    _hf_model(model_type).to(torch.bfloat16).save_pretrained(tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, dtype=torch.bfloat16, attn_implementation="eager").eval()
    model = moelab.hf.load_model(tmp_path)
    ids = _ids()
    k = model.config.moe.num_experts_per_tok if model.config.moe is not None else 0
    expected, hf_experts = _hf_logits_and_experts(hf, ids, k)        # (T, V), (T, M, k)
    got = model(ids)
    same = np.ones(len(ids), dtype=bool)
    if hf_experts is not None:
        trace = model.generate(ids, max_new_tokens=1, stop=[], trace=True).trace
        ours = np.sort(trace.ids, axis=-1)                               # (T, M, k)
        assert ours.shape == hf_experts.shape
        same = (ours == hf_experts).all(axis=(1, 2))
    assert np.sum(~same) <= len(ids) // 10, f"{model_type}: {np.sum(~same)} tokens rerouted"
    scale = float(np.max(np.abs(expected)))
    assert_close(got[same], expected[same], BF16_DECODER_LOGITS, scale=scale,
                 what=f"{model_type} bf16 vs transformers bf16")

    prompt = ids[:PROMPT]
    with torch.no_grad():
        gen = hf.generate(torch.from_numpy(prompt)[None], max_new_tokens=20, do_sample=False,
                          eos_token_id=2, pad_token_id=0, output_logits=True,
                          return_dict_in_generate=True)
    theirs = gen.sequences[0].numpy()
    ours = model.generate(prompt, max_new_tokens=20, stop=[2]).tokens
    n = min(len(theirs), len(ours))
    differ = np.flatnonzero(theirs[:n] != ours[:n])
    if differ.size == 0:
        assert len(theirs) == len(ours)
        return
    step = gen.logits[differ[0] - PROMPT][0].float().numpy()         # (V,) at the divergence
    second, best = np.sort(step)[-2:]
    assert best - second <= 2 * BF16_DECODER_LOGITS.rtol * np.max(np.abs(step)), (
        f"{model_type}: greedy tokens differ at step {differ[0] - PROMPT}, where transformers' "
        f"two best logits are {best - second:.3g} apart (no near-tie)")


@pytest.mark.parametrize("model_type,edit", [
    ("qwen2_moe", dict(use_sliding_window=False)),  # sliding_window=8 stays: HF ignores it
    ("qwen2", dict(use_sliding_window=False)),
    ("qwen2_moe", {}), ("qwen2", {}), ("llama4_text", {}),
    ("gemma3_text", dict(sliding_window_pattern=2, rope_theta=1e6, rope_local_base_freq=1e4,
                         rope_scaling=dict(rope_type="linear", factor=8.0)))])
def test_config_without_layer_types_loads_as_transformers_reads_it(model_type, edit, tmp_path):
    """A 4.x-style config.json has no ``layer_types`` (or null): the layer types are the ones the
    family's rule gives (the sliding window only with use_sliding_window; Llama 4's chunked
    layers; Gemma 3's sliding_window_pattern, its RoPE in rope_theta / rope_scaling for the full
    layers and rope_local_base_freq for the sliding ones), as transformers computes them when
    it reads the same file."""
    _hf_model(model_type).save_pretrained(tmp_path / "m")

    def legacy(c):  # layer_types absent (Llama 4) or null (the others): both read as unset
        if model_type == "llama4_text":
            del c["layer_types"]
        else:
            c["layer_types"] = None
        if "rope_local_base_freq" in edit:
            c.pop("rope_parameters")
        c.update(edit)
    folder = _copy_with(tmp_path / "m", tmp_path / "legacy", edit_config=legacy)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        folder, attn_implementation="eager").eval()
    ids = _ids()
    assert_close(moelab.hf.load_model(folder)(ids), _hf_logits(hf, ids), DECODER_LOGITS,
                 what=f"{model_type} without layer_types {edit}")


def test_refuses_a_tensor_the_decoder_would_ignore(qwen3_folder, tmp_path):
    name = "model.layers.1.self_attn.o_proj.bias"

    def add_bias(t):
        t[name] = np.ones(64, dtype=np.float32)
    bad = _copy_with(qwen3_folder, tmp_path / "m", edit_tensors=add_bias)
    with pytest.raises(ValueError, match=name.replace(".", r"\.") + ": a tensor this qwen3"):
        moelab.hf.load_model(bad)


def test_expert_trace_is_transformers_routing(tmp_path):
    """trace=True records, per processed token and MoE layer, the top-k of transformers' router
    logits (qwen3_moe: layer 0 dense, layers 1 and 2 MoE)."""
    hf = _hf_model("qwen3_moe", seed=5)
    hf.save_pretrained(tmp_path)
    model = moelab.hf.load_model(tmp_path)
    out = model.generate(_ids(6)[:PROMPT], max_new_tokens=5, stop=[], trace=True)
    trace = out.trace
    assert trace.layers == (1, 2)
    np.testing.assert_array_equal(trace.tokens, out.tokens[:-1])
    with torch.no_grad():
        router = hf(torch.from_numpy(trace.tokens)[None], output_router_logits=True).router_logits
    for m, logits in enumerate(router):
        probs = torch.softmax(logits.float(), -1).numpy()                  # (N, E)
        expected = np.argsort(-probs, axis=1, kind="stable")[:, :2]
        np.testing.assert_array_equal(trace.ids[:, m], expected)
        top = np.take_along_axis(probs, expected, 1)
        assert_close(trace.weights[:, m], top / top.sum(1, keepdims=True), DECODER_LOGITS,
                     what=f"layer {trace.layers[m]} routing weights")
    frame = trace.to_frame()
    assert len(frame) == trace.ids.size and list(frame.columns) == [
        "position", "token", "layer", "rank", "expert", "weight"]


def test_sharded_checkpoint_loads_the_same_model(tmp_path):
    hf = _hf_model("qwen3_moe", seed=8)
    hf.save_pretrained(tmp_path / "one")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ids = _ids(9)
    np.testing.assert_array_equal(moelab.hf.load_model(tmp_path / "sharded")(ids),
                                  moelab.hf.load_model(tmp_path / "one")(ids))


def test_positions_past_the_limit_leave_the_cache_unchanged(pair):
    _, _, model = pair
    cache = model.new_cache()
    model(_ids()[:PROMPT], cache=cache)
    before = [c.nbytes for c in cache.layers]
    too_many = np.zeros(model.max_positions - PROMPT + 1, dtype=np.int64)
    with pytest.raises(ValueError, match="max_position_embeddings=256"):
        model(too_many, cache=cache)
    assert cache.length == PROMPT and [c.nbytes for c in cache.layers] == before
    assert all(c.length == PROMPT for c in cache.layers)


#: What a ModelConfig does not hold, so moelab.build takes a default for it (moelab.model).
_BUILD_DEFAULTS = {"rope", "max_position_embeddings", "scaling", "attn_scale", "floor_scale"}


def _spec_fields(spec) -> dict:
    return {k: v for k, v in vars(spec).items() if k not in _BUILD_DEFAULTS}


def test_build_makes_the_loaded_architecture(pair):
    """moelab.build(config of a loaded checkpoint) has the same layers: the same mixer classes
    and specs (but for what ModelConfig does not hold: RoPE parameters, the position limit,
    Gemma's query scale, Llama 4's attention scales), RoPE and NoPE layers, FFNs, norms,
    weight names and shapes, embedding scale, norm offset and head tying."""
    model_type, _, loaded = pair
    built = moelab.build(loaded.config, seed=1)
    assert type(built) is type(loaded)
    assert (built.embed_scale, built.norm_offset) == (loaded.embed_scale, loaded.norm_offset)
    assert (built.lm_head is built.embed) == loaded.config.tie_word_embeddings
    for i, (b, l) in enumerate(zip(built.layers, loaded.layers)):
        assert type(b.mixer) is type(l.mixer), (model_type, i)
        if hasattr(l.mixer, "spec"):
            assert _spec_fields(b.mixer.spec) == _spec_fields(l.mixer.spec), (model_type, i)
            if isinstance(l.mixer, moelab.Attention):
                assert (b.mixer.spec.rope is None) == (l.mixer.spec.rope is None)
        assert type(b.ffn) is type(l.ffn), (model_type, i)
        for part in ("mixer", "ffn"):
            shapes = {n: w.shape for n, w in getattr(b, part).weights.items()}
            assert shapes == {n: w.shape for n, w in getattr(l, part).weights.items()}, (
                model_type, i, part)
        assert set(b.norms) == set(l.norms)
    assert built.num_params == loaded.num_params


# ---------------------------------------------------------------------------------------------
# the trained checkpoint that ships with the notebooks
# ---------------------------------------------------------------------------------------------
TINY_MOE = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "tiny-moe"


def test_shipped_tiny_moe_matches_transformers():
    """notebooks/data/tiny-moe (Qwen3-MoE, trained, bfloat16 as stored) loads in moelab with
    bfloat16 storage and gives the logits of transformers' float32 model holding the same
    bfloat16 values, for an English prompt (no cache) and for cached decode steps after it."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        TINY_MOE, dtype=torch.float32, attn_implementation="eager").eval()
    model = moelab.hf.load_model(TINY_MOE)
    assert model.config.model_type == "qwen3_moe" and model.config.moe.num_experts == 16
    assert {layer.ffn.weight_dtype for layer in model.layers} == {"bfloat16"}
    tok = moelab.Tokenizer.from_pretrained(TINY_MOE)
    ids = np.asarray(tok.encode('a large boat that carries people across a river; "we took the '
                                'ferry to the island"'), dtype=np.int64)
    expected = _hf_logits(hf, ids)                                           # (T, V)
    assert_close(model(ids), expected, DECODER_LOGITS, what="tiny-moe logits")
    cache = model.new_cache()
    model(ids[:-4], cache=cache)
    for t in range(ids.size - 4, ids.size):
        assert_close(model(ids[t:t + 1], cache=cache)[0], expected[t], DECODER_LOGITS,
                     what=f"tiny-moe decode {t}")
