"""The shipped checkpoint notebooks/data/tiny-moe/ against its own training record and the
README's account of it: the figures the README states are the recorded ones, and the record
shows a model that learned (perplexity far below a unigram model's, no early stop)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((ROOT / "notebooks" / "data" / "tiny-moe" / "training.json").read_text())
README = ROOT / "README.md"

#: "far below a unigram model": the validation perplexity at most this fraction of the unigram's.
MAX_PERPLEXITY_SHARE_OF_UNIGRAM = 0.1


def _checkpoint_paragraph() -> str:
    text = " ".join(README.read_text().split())
    start = text.index("**The checkpoint.**")
    return text[start:text.index("To train it again", start)]


def test_record_shows_a_model_that_learned():
    assert RECORD["stopped_early_at"] is None
    assert RECORD["val_perplexity"] <= MAX_PERPLEXITY_SHARE_OF_UNIGRAM * RECORD["unigram_val_perplexity"]
    assert RECORD["tokens_seen"] == RECORD["steps"] * RECORD["batch"] * RECORD["seq"]


def test_readme_states_the_recorded_figures():
    para = _checkpoint_paragraph()
    r = RECORD
    expected = [f"{r['val_perplexity']:.1f}", f"{r['unigram_val_perplexity']:.1f}",
                f"{r['unigram_val_perplexity'] / r['val_perplexity']:.1f} times below",
                f"{r['steps']} steps of {r['batch']} sequences of {r['seq']} tokens",
                f"{r['tokens_seen'] / 1e6:.1f} M tokens", f"{r['train_seconds'] / 60:.0f} minutes",
                f"{r['train_tokens'] / 1e6:.1f} M-token training stream",
                f"{r['vocab_size']} tokens", f"{r['parameters'] / 1e6:.1f} M parameters"]
    for figure in expected:
        assert figure in para, f"README's checkpoint paragraph lacks {figure!r}"
    thread = "1 thread" if r["threads"] == 1 else f"{r['threads']} threads"
    assert thread in para
    quoted = re.search(r'\("(river:[^"]*?) \.\.\."\)', para)
    assert quoted and r["greedy_continuation"].startswith(quoted[1])
