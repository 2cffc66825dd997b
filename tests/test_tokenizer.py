"""moelab.Tokenizer without the reference: loading errors, argument errors, special tokens.

Parity with transformers' tokenizers is in tests/reference/test_hf_tokenizer.py.
"""

from __future__ import annotations

import json

import jinja2
import pytest

import moelab
from tiny_tokenizer import save_byte_level_bpe


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A checkpoint folder with a tiny byte-level BPE, a config and a chat template."""
    path = tmp_path_factory.mktemp("tok")
    save_byte_level_bpe(path, ["experts route tokens", "a router picks experts"] * 10)
    (path / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<eos>", "pad_token": "<pad>",
        "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}"}))
    return path


def test_reads_special_tokens_and_adds_missing_ones(folder):
    tok = moelab.Tokenizer.from_pretrained(folder)
    assert tok.eos_token == "<eos>" and tok.eos_token_id == 0
    assert tok.pad_token == "<pad>" and tok.pad_token_id == tok.vocab_size - 1  # added
    assert tok.bos_token is None and tok.bos_token_id is None
    assert tok.stop_ids == (0,)  # no generation_config.json, no config.json: the eos token
    assert "vocab_size=" in repr(tok) and "eos_token='<eos>'" in repr(tok)
    ids = tok.encode("experts route tokens")
    assert ids and tok.decode(ids) == "experts route tokens"


def test_chat_template_renders_and_prompts(folder):
    tok = moelab.Tokenizer.from_pretrained(folder)
    chat = [{"role": "user", "content": "hi", "name": None}]
    assert tok.apply_chat_template(chat) == "user: hi\nassistant:"
    assert tok.apply_chat_template(chat, add_generation_prompt=False) == "user: hi\n"
    assert tok.apply_chat_template(chat, tokenize=True) == tok.encode("user: hi\nassistant:",
                                                                      add_special_tokens=False)


def test_chat_template_sandboxed(tmp_path, folder):
    for name in ("tokenizer.json",):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "chat_template.jinja").write_text("{{ messages.__class__.__mro__ }}")
    tok = moelab.Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(jinja2.exceptions.SecurityError):
        tok.apply_chat_template([{"role": "user", "content": "x"}])


def test_raise_exception_in_template(tmp_path, folder):
    (tmp_path / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{{ raise_exception('roles must alternate') }}"}))
    tok = moelab.Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(jinja2.exceptions.TemplateError, match="roles must alternate"):
        tok.apply_chat_template([{"role": "user", "content": "x"}])


@pytest.mark.parametrize("bad, error, match", [
    (42, TypeError, "path: expected a str or os.PathLike"),
    (None, TypeError, "path: expected a str or os.PathLike"),
    ("Qwen/Qwen3-30B-A3B", ValueError, "is not a local folder.*does not download"),
], ids=["int", "none", "hub_id"])
def test_from_pretrained_refuses(bad, error, match):
    with pytest.raises(error, match=match):
        moelab.Tokenizer.from_pretrained(bad)


def test_from_pretrained_names_a_missing_folder_or_a_file(tmp_path):
    with pytest.raises(ValueError, match="path: .*does not exist"):
        moelab.Tokenizer.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="path: .*is a file, not a checkpoint folder"):
        moelab.Tokenizer.from_pretrained(tmp_path / "tokenizer.json")


def test_from_pretrained_needs_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"sentencepiece")
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        moelab.Tokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("name, text, match", [
    ("tokenizer.json", "{not json", "tokenizer.json: not a readable tokenizer.json"),
    ("tokenizer_config.json", "[1, 2]",
     "tokenizer_config.json: .*tokenizer_config.json holds a list, not a JSON object"),
    ("tokenizer_config.json", '{"eos_token": 7}', "eos_token must be a string"),
    ("tokenizer_config.json", '{"chat_template": 7}', "chat_template must be a string"),
    ("generation_config.json", '{"eos_token_id": "x"}', "eos_token_id: expected a token id"),
], ids=["tokenizer_json", "config_not_object", "eos_not_string", "template_not_string",
        "stop_not_int"])
def test_from_pretrained_malformed_file(tmp_path, folder, name, text, match):
    (tmp_path / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=match):
        moelab.Tokenizer.from_pretrained(tmp_path)


def test_argument_errors(folder, tmp_path):
    tok = moelab.Tokenizer.from_pretrained(folder)
    with pytest.raises(TypeError, match="text: expected a str"):
        tok.encode(b"bytes")
    with pytest.raises(IndexError, match=f"ids: {tok.vocab_size} is out of range .* V={tok.vocab_size}"):
        tok.decode([1, tok.vocab_size])
    with pytest.raises(IndexError, match="ids: -1 is out of range"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="ids: expected ints"):
        tok.decode([1.5])
    with pytest.raises(TypeError, match="ids: expected a sequence"):
        tok.decode("abc")
    with pytest.raises(ValueError, match="messages: empty"):
        tok.apply_chat_template([])
    with pytest.raises(TypeError, match="each message must be a dict"):
        tok.apply_chat_template(["hi"])
    (tmp_path / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    bare = moelab.Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no chat template"):
        bare.apply_chat_template([{"role": "user", "content": "x"}])
    with pytest.raises(AttributeError, match="no attribute 'nonsense_id'"):
        bare.nonsense_id
