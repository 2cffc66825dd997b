"""Train the tiny Qwen3-MoE-style checkpoint that ships in notebooks/data/tiny-moe/.

Corpus: the glosses and example sentences of WordNet 3.0 (modern English), read from the
Debian package ``wordnet-base`` (WordNet 3.0 licence: use, copy, modify and distribute for any
purpose, with Princeton's copyright notice kept; https://wordnet.princeton.edu/license-and-commercial-use).
Each synset becomes one line, ``lemma, lemma: gloss; "example"``. The script installs nothing:
when the package's files are absent it says which ``apt-get install`` to run.

What it does, seeded end to end (Python, NumPy and torch seeds; 1 torch thread by default):

1. splits the synsets 99/1 into training and validation lines (a seeded shuffle);
2. trains a byte-level BPE tokenizer (``tokenizers``) on the training lines;
3. trains a Qwen3-MoE model (transformers, eager attention) with AdamW and a cosine schedule on
   fixed-length blocks of the concatenated token stream (lines separated by <|endoftext|>);
4. measures the validation perplexity of the model and of a unigram model (token frequencies
   of the training stream, add-one smoothed) on the same validation tokens, and a greedy
   continuation of an English prompt;
5. saves the model with ``save_pretrained`` in bfloat16, the tokenizer (tokenizer.json,
   tokenizer_config.json) and training.json (the figures above, the loss curve, the settings).

Run from the repository root (see the README section on the notebooks for its time on 2 cores)::

    nice -n 10 python notebooks/data/train_tiny_moe.py

``--quick`` trains a much smaller model for 5 steps into ``--out`` (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
INSTALL_HINT = "sudo apt-get install -y wordnet-base"
EOT = "<|endoftext|>"
PROMPT = "river:"  # a lemma, then the gloss the model writes (a trailing space would split " a")
OUT_DIR = Path(__file__).resolve().parent / "tiny-moe"

#: The model: 4 layers, H = 128, 16 experts of which 2 per token, tied embeddings.
MODEL = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
             head_dim=32, num_experts=16, num_experts_per_tok=2, moe_intermediate_size=64,
             intermediate_size=512, norm_topk_prob=True, decoder_sparse_step=1,
             mlp_only_layers=[], max_position_embeddings=512, rope_theta=10000.0,
             rms_norm_eps=1e-6, tie_word_embeddings=True, router_aux_loss_coef=0.01,
             output_router_logits=True)
QUICK_MODEL = dict(MODEL, hidden_size=32, num_hidden_layers=2, head_dim=8, num_experts=4,
                   moe_intermediate_size=16, intermediate_size=64)


def read_corpus(wordnet_dir: Path = WORDNET_DIR) -> list[str]:
    """One line per WordNet synset: its lemmas, then its gloss (definition and examples)."""
    missing = [n for n in WORDNET_FILES if not (wordnet_dir / n).is_file()]
    if missing:
        sys.exit(f"WordNet data not found in {wordnet_dir} (missing {', '.join(missing)}): "
                 f"install the Debian package with `{INSTALL_HINT}`")
    lines = []
    for name in WORDNET_FILES:
        with open(wordnet_dir / name, encoding="utf-8", errors="replace") as f:
            for row in f:
                if row.startswith(" ") or " | " not in row:
                    continue                                   # the licence header
                fields, gloss = row.rstrip().split(" | ", 1)
                parts = fields.split()
                n_words = int(parts[3], 16)
                lemmas = [parts[4 + 2 * i].replace("_", " ") for i in range(n_words)]
                lemmas = [w.split("(")[0] for w in lemmas]     # adjective markers: "(a)", "(p)"
                lines.append(f"{', '.join(lemmas[:3])}: {gloss.strip()}")
    return lines


def train_tokenizer(lines: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def token_stream(tok, lines: list[str]) -> np.ndarray:
    """The lines' ids, each line followed by <|endoftext|>: (N,) int64."""
    eot = tok.token_to_id(EOT)
    ids = []
    for enc in tok.encode_batch(lines):
        ids.extend(enc.ids)
        ids.append(eot)
    return np.asarray(ids, dtype=np.int64)


def unigram_perplexity(train_ids: np.ndarray, val_ids: np.ndarray, vocab: int) -> float:
    """exp of the mean negative log-likelihood of val_ids under add-one smoothed frequencies."""
    counts = np.bincount(train_ids, minlength=vocab).astype(np.float64) + 1.0   # (V,)
    logp = np.log(counts / counts.sum())                                        # (V,)
    return float(np.exp(-logp[val_ids].mean()))


def save_tokenizer(tok, out: Path) -> None:
    tok.save(str(out / "tokenizer.json"))
    eot_id = tok.token_to_id(EOT)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
              "eos_token": EOT, "pad_token": EOT, "model_max_length": MODEL["max_position_embeddings"],
              "added_tokens_decoder": {str(eot_id): {"content": EOT, "lstrip": False, "rstrip": False,
                                                     "normalized": False, "single_word": False,
                                                     "special": True}}}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT_DIR, help="checkpoint folder (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64, help="sequences per step")
    p.add_argument("--seq", type=int, default=64, help="tokens per sequence")
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--max-minutes", type=float, default=90.0,
                   help="stop training early (recorded in training.json) past this wall time")
    p.add_argument("--lr", type=float, default=6e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: steadier than 2 on a shared 2-core machine)")
    p.add_argument("--wordnet-dir", type=Path, default=WORDNET_DIR,
                   help="where wordnet-base put the WordNet database (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="tiny model, 5 steps of 8 sequences, 2000 lines, into --out (a smoke run)")
    args = p.parse_args(argv)

    import torch
    import transformers

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t_start = time.time()

    lines = read_corpus(args.wordnet_dir)
    random.Random(args.seed).shuffle(lines)
    if args.quick:
        lines = lines[:2000]
        args.steps, args.vocab, args.batch = 5, 300, 8
    n_val = max(1, len(lines) // 100)
    val_lines, train_lines = lines[:n_val], lines[n_val:]

    tok = train_tokenizer(train_lines, args.vocab)
    vocab = tok.get_vocab_size()
    eot_id = tok.token_to_id(EOT)
    train_ids, val_ids = token_stream(tok, train_lines), token_stream(tok, val_lines)
    print(f"corpus: {len(train_lines)} training lines ({train_ids.size} tokens), "
          f"{len(val_lines)} validation lines ({val_ids.size} tokens), vocab {vocab}", flush=True)

    config = transformers.Qwen3MoeConfig(vocab_size=vocab, bos_token_id=None, eos_token_id=eot_id,
                                         pad_token_id=eot_id, **(QUICK_MODEL if args.quick else MODEL))
    config._attn_implementation = "eager"
    config._experts_implementation = "grouped_mm"        # fewer small ops than the eager loop
    model = transformers.AutoModelForCausalLM.from_config(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters", flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:                       # linear warm-up, cosine to 10%
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    rng = np.random.default_rng(args.seed)
    n_blocks = (train_ids.size - 1) // args.seq
    losses = []
    model.train()
    stopped_early_at = None
    for step in range(args.steps):
        if time.time() - t_start > 60 * args.max_minutes:
            stopped_early_at = step
            print(f"stopping early at step {step}: past --max-minutes", flush=True)
            break
        starts = rng.integers(0, n_blocks, args.batch) * args.seq                  # (B,)
        batch = torch.from_numpy(np.stack([train_ids[s:s + args.seq] for s in starts]))  # (B, S)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        out = model(input_ids=batch, labels=batch)       # loss = LM loss + coef * aux loss
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lm_loss = float(out.loss.detach()) - config.router_aux_loss_coef * float(out.aux_loss.detach())
        losses.append(round(lm_loss, 4))
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {lm_loss:.3f}  lr {lr_at(step):.2e}  "
                  f"{time.time() - t_start:.0f} s", flush=True)

    model.eval()
    n_val_blocks = (val_ids.size - 1) // args.seq
    inputs = val_ids[:n_val_blocks * args.seq].reshape(n_val_blocks, args.seq)            # (N, S)
    targets = val_ids[1:n_val_blocks * args.seq + 1].reshape(n_val_blocks, args.seq)      # (N, S)
    nll = 0.0
    with torch.no_grad():
        for b in range(0, n_val_blocks, 32):
            logits = model(input_ids=torch.from_numpy(inputs[b:b + 32])).logits.float()  # (b, S, V)
            nll += float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, vocab), torch.from_numpy(targets[b:b + 32]).reshape(-1),
                reduction="sum"))
        val_ppl = math.exp(nll / targets.size)
        prompt = torch.tensor([tok.encode(PROMPT).ids])
        greedy = model.generate(prompt, max_new_tokens=40, do_sample=False,
                                eos_token_id=eot_id, pad_token_id=eot_id)[0].tolist()
    continuation = tok.decode(greedy)
    uni_ppl = unigram_perplexity(train_ids, targets.reshape(-1), vocab)
    print(f"validation perplexity {val_ppl:.1f} (unigram {uni_ppl:.1f})", flush=True)
    print(f"greedy: {continuation!r}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(args.out)
    save_tokenizer(tok, args.out)
    record = {
        "corpus": "WordNet 3.0 glosses and examples (Debian package wordnet-base, WordNet 3.0 licence)",
        "train_lines": len(train_lines), "train_tokens": int(train_ids.size),
        "val_lines": len(val_lines), "val_tokens": int(targets.size),
        "vocab_size": vocab, "parameters": n_params,
        "steps": args.steps, "stopped_early_at": stopped_early_at, "batch": args.batch, "seq": args.seq, "lr": args.lr,
        "seed": args.seed, "threads": args.threads,
        "tokens_seen": len(losses) * args.batch * args.seq,
        "final_train_loss": float(np.mean(losses[-50:])),
        "val_perplexity": round(val_ppl, 3), "unigram_val_perplexity": round(uni_ppl, 3),
        "prompt": PROMPT, "greedy_continuation": continuation,
        "train_seconds": round(time.time() - t_start, 1),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "train_loss": losses,
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"saved to {args.out} in {time.time() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
