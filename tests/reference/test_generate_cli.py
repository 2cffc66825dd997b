"""``python -m moelab generate`` as a user runs it: a tiny random Qwen3-MoE checkpoint saved with
transformers' ``save_pretrained`` beside a byte-level BPE ``tokenizer.json``, then the command in
a subprocess. Its text, its per-token trace lines and its trace file must be those of
moelab's own ``generate`` on the same folder; its errors one line and exit status 2.
"""

from __future__ import annotations

import io
import re
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import moelab
from moelab.generate_cli import TextStream
from tiny_tokenizer import save_byte_level_bpe

try:
    import torch
    import transformers
except ImportError:  # conftest.py fails or skips every test below
    transformers = None

pytestmark = pytest.mark.reference

ROOT = Path(moelab.__file__).resolve().parent.parent  # the folder holding moelab/
PROMPT = "experts route tokens"
#: multi-byte characters, so that byte-level tokens split them
CORPUS = ["experts route tokens to a router", "Grüße aus München: 日本語のテキスト",
          "a router picks experts, ñandú"] * 10
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A folder with config.json, model.safetensors (qwen3_moe: a dense layer, then MoE),
    tokenizer.json and tokenizer_config.json (eos token, chat template)."""
    path = tmp_path_factory.mktemp("generate_ckpt")
    save_byte_level_bpe(path, CORPUS)
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<eos>", "chat_template": CHAT_TEMPLATE}))
    config = transformers.Qwen3MoeConfig(
        vocab_size=moelab.Tokenizer.from_pretrained(path).vocab_size, hidden_size=32, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=48,
        moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2, mlp_only_layers=[0],
        max_position_embeddings=256, tie_word_embeddings=False, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.uniform_(-1.0, 1.0).mul_(p.shape[-1] ** -0.5)
    model.save_pretrained(path)
    return path


def _cli(*args, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "moelab", "generate", *map(str, args)],
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          env=env)


def _expected(folder, ids, **kw):
    model = moelab.hf.load_model(folder)
    tok = moelab.Tokenizer.from_pretrained(folder)
    out = model.generate(ids, stop=tok.stop_ids, trace=True, **kw)
    return tok, out


def _trace_line(tok, trace, row, token):
    """The documented line: the token's text, then per MoE layer its experts by weight."""
    head = f"tok {tok.decode([int(token)])!r}"
    if row == len(trace.tokens):
        return f"{head} | (last token: not read back, no experts)"
    return " | ".join([head] + [f"L{layer}: {' '.join(map(str, trace.ids[row, m]))}"
                                for m, layer in enumerate(trace.layers)])


def test_greedy_text_trace_lines_and_json_trace(checkpoint, tmp_path):
    trace_file = tmp_path / "trace.json"
    r = _cli(checkpoint, PROMPT, "--max-new-tokens", 12, "--trace", "--trace-file", trace_file)
    assert r.returncode == 0, r.stderr
    tok, out = _expected(checkpoint, moelab.Tokenizer.from_pretrained(checkpoint).encode(PROMPT),
                         max_new_tokens=12)
    new = out.new_tokens
    assert len(new) >= 2 and out.trace.layers == (1, 2)
    text = tok.decode(new, skip_special_tokens=True)
    lines = [_trace_line(tok, out.trace, out.num_prompt + j, t) for j, t in enumerate(new)]
    assert r.stdout == text + "\n" + "\n".join(lines) + "\n"
    assert f"{len(new)} tokens in" in r.stderr and "Traceback" not in r.stderr
    saved = json.loads(trace_file.read_text())
    assert saved["layers"] == [1, 2]
    np.testing.assert_array_equal(saved["tokens"], out.trace.tokens)
    np.testing.assert_array_equal(saved["ids"], out.trace.ids)
    np.testing.assert_allclose(saved["weights"], out.trace.weights, rtol=1e-6)
    np.testing.assert_array_equal(out.trace.tokens, out.tokens[:-1])


def test_sampled_chat_and_csv_trace(checkpoint, tmp_path):
    trace_file = tmp_path / "trace.csv"
    r = _cli(checkpoint, PROMPT, "--chat", "--max-new-tokens", 10, "--temperature", 0.9,
             "--top-k", 50, "--top-p", 0.95, "--seed", 3, "--trace-file", trace_file)
    assert r.returncode == 0, r.stderr
    tok = moelab.Tokenizer.from_pretrained(checkpoint)
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=True)
    assert ids == tok.encode(f"user: {PROMPT}\nassistant:", add_special_tokens=False)
    _, out = _expected(checkpoint, ids, max_new_tokens=10, temperature=0.9, top_k=50,
                       top_p=0.95, seed=3)
    assert r.stdout == tok.decode(out.new_tokens, skip_special_tokens=True) + "\n"
    frame = pd.read_csv(trace_file)
    expected = out.trace.to_frame()
    assert list(frame.columns) == list(expected.columns) and len(frame) == len(expected)
    for column in ("position", "token", "layer", "rank", "expert"):
        np.testing.assert_array_equal(frame[column], expected[column])
    np.testing.assert_allclose(frame["weight"], expected["weight"], rtol=1e-6)


def test_streamed_text_never_splits_a_character(checkpoint):
    """Byte tokens of a multi-byte character decode to U+FFFD until the last one arrives: the
    stream holds them back and prints whole characters, in pieces as the tokens come."""
    tok = moelab.Tokenizer.from_pretrained(checkpoint)
    text = "日本語 experts ñ"
    ids = tok.encode(text)
    partial = [tok.decode(ids[:n]) for n in range(1, len(ids) + 1)]
    assert any(p.endswith("\ufffd") for p in partial)  # the case the stream must handle
    pieces = []

    class Out(io.StringIO):
        def write(self, s):
            pieces.append(s)
            return len(s)

    stream = TextStream(tok.decode, out=Out())
    for i in ids:
        stream.add(i)
    assert stream.finish() == text and "".join(pieces) == text
    assert len(pieces) > 2 and not any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("case", ["missing_path", "no_tokenizer", "no_weights", "bad_top_p",
                                  "bad_trace_suffix", "empty_prompt"])
def test_errors_are_one_line_exit_2(checkpoint, tmp_path, case):
    folder, prompt, extra = checkpoint, PROMPT, []
    partial = {"no_tokenizer": (("config.json", "model.safetensors"), "no tokenizer.json"),
               "no_weights": (("config.json", "tokenizer.json"), "safetensors")}
    if case == "missing_path":
        folder = tmp_path / "nothing_here"
        match = "does not exist"
    elif case in partial:  # a folder with some of the checkpoint's files
        names, match = partial[case]
        folder = tmp_path / case
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes((checkpoint / name).read_bytes())
    elif case == "bad_top_p":
        extra, match = ["--top-p", "1.5"], r"top_p must be None or in \(0, 1\]"
    elif case == "bad_trace_suffix":
        extra, match = ["--trace-file", str(tmp_path / "t.txt")], "must end in .csv or .json"
    else:
        prompt, match = "", "empty"
    r = _cli(folder, prompt, *extra)
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("python -m moelab generate: error: ")
    assert re.search(match, err), err
