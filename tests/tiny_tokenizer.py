"""A tiny byte-level BPE ``tokenizer.json`` for tests that need a checkpoint's tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence


def save_byte_level_bpe(folder: Path, corpus: Iterable[str], vocab_size: int = 300,
                        special_tokens: Sequence[str] = ("<eos>",)) -> None:
    """Train a byte-level BPE of ``vocab_size`` ids on ``corpus`` (the special tokens first,
    then the 256 byte symbols) and save it as ``folder/tokenizer.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus), trainer=trainer)
    tok.save(str(Path(folder) / "tokenizer.json"))
