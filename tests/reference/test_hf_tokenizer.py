"""moelab.Tokenizer vs transformers' AutoTokenizer on tokenizers built and saved in the test.

Three checkpoint folders, each a byte-level BPE trained here with the `tokenizers` library on a
few lines of text (no network):

- "qwen_like": tokenizer_config.json with eos/pad and no bos, the chat template inside it
  (``raise_exception`` on a bad role, ``add_generation_prompt``, ``loop.first``, ``tojson``),
  generation_config.json stopping on two ids.
- "llama_like": the legacy layout: no ``added_tokens_decoder``, so special_tokens_map.json
  overrides tokenizer_config.json; ``add_bos_token`` true (which transformers ignores when
  tokenizer.json is there: its post-processor decides); a pad token that is not in the
  vocabulary (added as a special token); the template in chat_template.jinja; stop ids from
  config.json.
- "named_templates": ``chat_template`` as a list of named templates ("default" is used) and a
  tokenizer.json whose post-processor adds bos/eos itself.

Ids, decoded text, special tokens and chat renderings must be identical.
"""

from __future__ import annotations

import json

import pytest

import moelab

try:
    import jinja2
    import transformers
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers
except ImportError:  # conftest.py fails or skips every test below
    transformers = None

pytestmark = pytest.mark.reference

CORPUS = [
    "The experts of a mixture are chosen per token by a router.",
    "Qwen3, DeepSeek-V3 and Kimi K2 route each token to a few experts out of many.",
    "Sparse models: 128 experts, 8 active; the shared expert sees every token.",
    "Unicode: naïve café, Straße, 東京, emoji 🙂 and tabs\tand  double  spaces.",
    "def forward(x):\n    return router(x) @ experts\n",
] * 20

TEXTS = [
    "",
    "Hello world",
    "  leading and trailing spaces  ",
    "The router picks experts: 東京 café 🙂",
    "<|im_start|>user\nhi<|im_end|>\n",
    "line one\nline two\n\n\tindented",
    "unseen words: zyxwvut qqqq",
]

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Which experts fire for 東京?"},
    {"role": "assistant", "content": "Experts 3 and 17.", "tool_calls": None},
    {"role": "user", "content": "And for café?"},
    {"role": "assistant", "content": "", "tool_calls": [{"name": "route", "arguments": {"city": "東京"}}]},
    {"role": "user", "content": "Thanks."},
]

QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role: ' + message['role']) }}"
    "{% endif %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nDefault system.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "{% if message.tool_calls is defined %}{{ message.tool_calls | tojson }}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LLAMA_TEMPLATE = """{{ bos_token }}
{%- for message in messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) and message['role'] != 'system' %}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {{- '[INST] ' + message['content'] | trim + ' [/INST]' }}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] | trim + eos_token }}
    {%- else %}
        {{- '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ ' ' }}{% endif %}
"""


def _train(specials, post_processor=None) -> "Backend":
    tok = Backend(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if post_processor is not None:
        tok.post_processor = post_processor(tok)
    return tok


def _write(folder, name, data):
    with open(folder / name, "w", encoding="utf-8") as f:
        if isinstance(data, str):
            f.write(data)
        else:
            json.dump(data, f, ensure_ascii=False)


def _qwen_like(folder):
    tok = _train(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.save(str(folder / "tokenizer.json"))
    decoder = {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "rstrip": False,
                                         "normalized": False, "single_word": False, "special": True}
               for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")}
    _write(folder, "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "added_tokens_decoder": decoder,
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "chat_template": QWEN_TEMPLATE, "model_max_length": 4096})
    _write(folder, "generation_config.json",
           {"eos_token_id": [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]})
    _write(folder, "config.json", {"eos_token_id": 0})  # generation_config.json wins


def _llama_like(folder):
    tok = _train(["<unk>", "<s>", "</s>"])
    tok.save(str(folder / "tokenizer.json"))
    _write(folder, "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": True,
        "add_eos_token": False, "bos_token": "<s>", "eos_token": "<unk>"})
    _write(folder, "special_tokens_map.json", {
        "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False},
        "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
    _write(folder, "chat_template.jinja", LLAMA_TEMPLATE)
    _write(folder, "config.json", {"eos_token_id": tok.token_to_id("</s>")})


def _named_templates(folder):
    def post(tok):
        return processors.TemplateProcessing(
            single="[BOS] $A [EOS]", pair="[BOS] $A [EOS] $B:1 [EOS]:1",
            special_tokens=[("[BOS]", tok.token_to_id("[BOS]")), ("[EOS]", tok.token_to_id("[EOS]"))])

    tok = _train(["[BOS]", "[EOS]", "[PAD]"], post)
    tok.save(str(folder / "tokenizer.json"))
    _write(folder, "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "[BOS]", "eos_token": "[EOS]",
        "pad_token": "[PAD]",
        "chat_template": [{"name": "default", "template": QWEN_TEMPLATE},
                          {"name": "tool_use", "template": "{{ raise_exception('tools') }}"}]})


LAYOUTS = {"qwen_like": _qwen_like, "llama_like": _llama_like, "named_templates": _named_templates}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def both(request, tmp_path_factory):
    """(moelab.Tokenizer, transformers tokenizer, layout name) of one saved folder."""
    folder = tmp_path_factory.mktemp(request.param)
    LAYOUTS[request.param](folder)
    ours = moelab.Tokenizer.from_pretrained(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return ours, theirs, request.param


@pytest.mark.parametrize("add_special_tokens", [True, False], ids=["special", "plain"])
def test_encode_matches_transformers(both, add_special_tokens):
    ours, theirs, _ = both
    for text in TEXTS:
        expected = theirs(text, add_special_tokens=add_special_tokens)["input_ids"]
        assert ours.encode(text, add_special_tokens=add_special_tokens) == expected, text


@pytest.mark.parametrize("skip_special_tokens", [True, False], ids=["skip", "keep"])
def test_decode_matches_transformers(both, skip_special_tokens):
    ours, theirs, _ = both
    for text in TEXTS:
        ids = theirs(text, add_special_tokens=True)["input_ids"]
        expected = theirs.decode(ids, skip_special_tokens=skip_special_tokens)
        assert ours.decode(ids, skip_special_tokens=skip_special_tokens) == expected, text
    every_id = list(range(ours.vocab_size))
    assert ours.vocab_size == len(theirs)
    assert ours.decode(every_id, skip_special_tokens=skip_special_tokens) == \
        theirs.decode(every_id, skip_special_tokens=skip_special_tokens)


def test_special_tokens_match_transformers(both):
    ours, theirs, _ = both
    assert ours.special_tokens_map == theirs.special_tokens_map
    for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{name}_token") == getattr(theirs, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id"), name


def test_stop_ids_as_generate_resolves_them(both):
    ours, theirs, layout = both
    expected = {"qwen_like": (theirs.convert_tokens_to_ids("<|im_end|>"),
                              theirs.convert_tokens_to_ids("<|endoftext|>")),
                "llama_like": (theirs.convert_tokens_to_ids("</s>"),),
                "named_templates": (theirs.eos_token_id,)}[layout]
    assert ours.stop_ids == expected


@pytest.mark.parametrize("add_generation_prompt", [True, False], ids=["prompt", "no_prompt"])
def test_chat_template_matches_transformers(both, add_generation_prompt):
    ours, theirs, layout = both
    chat = CHAT[1:] if layout == "llama_like" else CHAT  # llama: user first, then alternate
    chat = chat[:3] if layout == "llama_like" else chat
    expected = theirs.apply_chat_template(chat, add_generation_prompt=add_generation_prompt,
                                          tokenize=False)
    text = ours.apply_chat_template(chat, add_generation_prompt=add_generation_prompt)
    assert text == expected
    assert ("assistant\n" in text[-12:] or text.endswith(" ")) == add_generation_prompt
    ids = ours.apply_chat_template(chat, add_generation_prompt=add_generation_prompt, tokenize=True)
    assert ids == theirs.apply_chat_template(chat, add_generation_prompt=add_generation_prompt,
                                             tokenize=True, return_dict=False)


def test_chat_template_raise_exception_matches_transformers(both):
    ours, theirs, layout = both
    bad = ([{"role": "assistant", "content": "first"}] if layout == "llama_like"
           else [{"role": "robot", "content": "beep"}])
    with pytest.raises(jinja2.exceptions.TemplateError) as theirs_error:
        theirs.apply_chat_template(bad, tokenize=False)
    with pytest.raises(jinja2.exceptions.TemplateError) as ours_error:
        ours.apply_chat_template(bad)
    assert str(ours_error.value) == str(theirs_error.value)


def test_shipped_tiny_moe_tokenizer_round_trips_and_matches_transformers():
    """notebooks/data/tiny-moe's tokenizer.json (byte-level BPE trained by its script):
    moelab.Tokenizer gives transformers' ids, and decoding them gives the text back exactly,
    for English, code, numbers, other scripts and whitespace."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "tiny-moe"
    ours = moelab.Tokenizer.from_pretrained(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert ours.eos_token == "<|endoftext|>" and ours.stop_ids == (ours.eos_token_id,)
    for text in TEXTS + ['a small dog: a domestic animal; "the dog barked all night"',
                         "def f(x):\n    return x ** 2  # 3.14, 1,024 and 2024-06-01\n"]:
        ids = ours.encode(text)
        assert ids == theirs(text)["input_ids"], text
        assert ours.decode(ids) == text
    assert len(ours.encode("the quality of being kind to other people")) < 12  # learned merges
