"""Smoke test of notebooks/data/train_tiny_moe.py, the script that trained the checkpoint the
notebooks ship with: its WordNet reader, its refusal without the corpus, and a --quick run on a
small WordNet-format corpus written here (tiny model, 5 steps) whose output loads in moelab.
CI does not train the real checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import moelab

SCRIPT_DIR = Path(__file__).resolve().parents[2] / "notebooks" / "data"
if str(SCRIPT_DIR) not in sys.path:
    sys.path.insert(0, str(SCRIPT_DIR))

import train_tiny_moe as ttm  # noqa: E402

pytestmark = pytest.mark.reference

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
SYNSETS = [
    ("n", ["dog", "domestic_dog"], 'a member of the genus Canis; "the dog barked all night"'),
    ("n", ["boat"], "a small vessel for travel on water"),
    ("a", ["kind(a)"], 'having or showing a tender and considerate nature; "a kind person"'),
    ("v", ["run"], "move fast by using one's feet"),
    ("r", ["quickly"], "with rapid movements"),
]


def _write_wordnet(folder: Path, copies: int = 60) -> None:
    """data.noun/verb/adj/adv in WordNet's format: offset, lex file, pos, word count (hex),
    word/lex-id pairs, pointers, then `| gloss`."""
    folder.mkdir()
    files = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
    rows = {name: [HEADER] for name in files.values()}
    for i in range(copies):
        for pos, words, gloss in SYNSETS:
            pairs = " ".join(f"{w} 0" for w in words)
            rows[files[pos]].append(f"{i:08d} 05 {pos} {len(words):02x} {pairs} 000 | {gloss}  \n")
    for name, lines in rows.items():
        (folder / name).write_text("".join(lines))


def test_reads_lemmas_and_glosses(tmp_path):
    _write_wordnet(tmp_path / "wn", copies=1)
    lines = ttm.read_corpus(tmp_path / "wn")
    assert sorted(lines) == sorted([
        'dog, domestic dog: a member of the genus Canis; "the dog barked all night"',
        "boat: a small vessel for travel on water",
        'kind: having or showing a tender and considerate nature; "a kind person"',
        "run: move fast by using one's feet", "quickly: with rapid movements"])


def test_says_which_package_to_install(tmp_path):
    with pytest.raises(SystemExit, match=r"apt-get install -y wordnet-base"):
        ttm.read_corpus(tmp_path / "nowhere")


def test_unigram_perplexity():
    train = np.array([0, 0, 0, 1])                 # add-one counts (4, 2, 1): p = (4/7, 2/7, 1/7)
    assert ttm.unigram_perplexity(train, np.array([0, 1, 2]), 3) == pytest.approx(
        np.exp(-(np.log(4 / 7) + np.log(2 / 7) + np.log(1 / 7)) / 3))


def test_quick_run_writes_a_checkpoint_moelab_loads(tmp_path, capsys):
    import torch

    _write_wordnet(tmp_path / "wn")
    threads = torch.get_num_threads()
    try:
        assert ttm.main(["--quick", "--out", str(tmp_path / "ckpt"), "--threads", "1",
                         "--wordnet-dir", str(tmp_path / "wn")]) == 0
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "ckpt"
    record = json.loads((out / "training.json").read_text())
    assert len(record["train_loss"]) == record["steps"] == 5
    assert record["val_perplexity"] > 1 and record["unigram_val_perplexity"] > 1
    assert record["greedy_continuation"].startswith(ttm.PROMPT)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    model = moelab.hf.load_model(out)
    tok = moelab.Tokenizer.from_pretrained(out)
    assert model(np.asarray(tok.encode("a small dog"))).shape[1] == record["vocab_size"]
    assert "validation perplexity" in capsys.readouterr().out
