"""``python -m moelab generate PATH "prompt"``: text from a local checkpoint, streamed.

The model comes from :func:`moelab.hf.load_model` and the tokenizer from
:meth:`moelab.Tokenizer.from_pretrained`, both reading the folder only (nothing is downloaded).
The generated text is printed as the tokens arrive: the generated ids are decoded again after
each token and the new characters printed, held back while the text ends in an incomplete
UTF-8 sequence (a character split over byte tokens decodes to U+FFFD until its last byte).

``--trace`` then prints one line per generated token with the experts each MoE layer routed it
to when the model read it back (``ExpertTrace`` semantics: a token's experts are those of the
forward that takes it as input; the last generated token is never read back)::

    tok ' the' | L1: 3 7 | L3: 0 5

``--trace-file F`` writes the whole ``ExpertTrace`` (prompt and generated tokens) to F, CSV or
JSON by its suffix. An error (a missing folder, no tokenizer.json, a refused checkpoint, bad
options) is one line on stderr and exit status 2.

``--expert-parallel`` runs it under ``mpirun -n N`` (mpi4py's ``MPI.COMM_WORLD``): each rank
loads its share of every MoE layer's experts (``load_model(path, expert_parallel=comm)``), every
rank runs the same generation (the same tokens: the logits are the single-process model's,
bitwise), and only rank 0 prints; an error is raised on every rank alike and printed once::

    mpirun -n 4 python -m moelab generate CKPT "The capital of France is" --expert-parallel
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

__all__ = ["add_parser", "run", "TextStream", "trace_lines"]

#: What a partial UTF-8 sequence decodes to (the tokenizers library's replacement character).
_INCOMPLETE = "\ufffd"


def add_parser(sub) -> argparse.ArgumentParser:
    g = sub.add_parser("generate", help="generate text from a local Hugging Face checkpoint "
                       "folder (streamed; --trace shows the experts of each token)")
    g.add_argument("path", help="checkpoint folder: config.json, *.safetensors, tokenizer.json")
    g.add_argument("prompt", help="the prompt text")
    g.add_argument("--max-new-tokens", type=int, default=32,
                   help="tokens to generate at most (default 32)")
    g.add_argument("--temperature", type=float, default=0.0,
                   help="0 = greedy (default), else sample from softmax(logits / T)")
    g.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    g.add_argument("--top-p", type=float, default=None,
                   help="sample among the likeliest tokens whose probability reaches p")
    g.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    g.add_argument("--chat", action="store_true",
                   help="wrap the prompt as a user message in the checkpoint's chat template")
    g.add_argument("--trace", action="store_true",
                   help="print, per generated token, the experts of each MoE layer")
    g.add_argument("--trace-file", default=None,
                   help="write the expert trace of every token to this .csv or .json file")
    g.add_argument("--expert-parallel", action="store_true",
                   help="under mpirun -n N: split each MoE layer's experts across the N ranks "
                        "(MPI.COMM_WORLD, needs mpi4py); every rank generates, rank 0 prints")
    return g


class TextStream:
    """Prints the text of a growing list of token ids as it grows (``add(id)`` per token).

    ``decode`` maps a list of ids to text. The whole list is decoded after each token and only
    the characters beyond those already printed are written, held back while the text ends in
    U+FFFD (a multi-byte character whose bytes have not all arrived). ``finish()`` writes what
    is left (a text that truly ends in U+FFFD included) and returns the whole text.
    """

    def __init__(self, decode, out=sys.stdout):
        self.decode, self.out = decode, out
        self.ids = []
        self.printed = 0

    def add(self, token: int) -> None:
        self.ids.append(int(token))
        text = self.decode(self.ids)
        if not text.endswith(_INCOMPLETE):
            self._write(text)

    def finish(self) -> str:
        text = self.decode(self.ids)
        self._write(text)
        return text

    def _write(self, text: str) -> None:
        if len(text) > self.printed:
            self.out.write(text[self.printed:])
            self.out.flush()
            self.printed = len(text)


def trace_lines(trace, num_prompt: int, new_tokens, token_text) -> list:
    """One line per generated token: ``tok '<text>' | L<i>: <expert ids by weight> | ...``.

    trace : the ExpertTrace of the generation; num_prompt : prompt length; new_tokens : the
    generated ids; token_text : id -> its text. The last generated token, never read back by
    the model, has no experts.
    """
    lines = []
    for j, token in enumerate(new_tokens):
        row = num_prompt + j                                   # its position = its trace row
        head = f"tok {token_text(int(token))!r}"
        if row >= len(trace.tokens):
            lines.append(f"{head} | (last token: not read back, no experts)")
        elif not trace.layers:
            lines.append(f"{head} | (dense model: no experts)")
        else:
            parts = [f"L{layer}: " + " ".join(str(int(e)) for e in trace.ids[row, m])
                     for m, layer in enumerate(trace.layers)]
            lines.append(" | ".join([head] + parts))
    return lines


def _world():
    """mpi4py's ``MPI.COMM_WORLD`` (ValueError saying how to install mpi4py when it is not)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ValueError(f"--expert-parallel needs mpi4py ({exc}); install the 'mpi' extra "
                         "(pip install 'moelab[mpi]') and run under mpirun -n N") from None
    return MPI.COMM_WORLD


def run(args, parser: argparse.ArgumentParser) -> int:
    """Run ``generate`` for parsed ``args``; errors go to ``parser.error``-style one-liners.
    With ``--expert-parallel`` every rank runs this, and only rank 0 writes anything."""
    import moelab
    from .generate import TRACE_FORMATS, check_sampling
    from .rank_agreement import agreed, digest

    rank = 0

    def fail(message: str) -> int:
        if rank == 0:  # under --expert-parallel every rank fails alike: one line is enough
            print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    try:
        check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
        comm = _world() if args.expert_parallel else None
    except ValueError as exc:
        return fail(str(exc))
    rank = 0 if comm is None else comm.Get_rank()
    if args.trace_file is not None and not args.trace_file.lower().endswith(TRACE_FORMATS):
        return fail(f"--trace-file: {args.trace_file!r} must end in "
                    f"{' or '.join(TRACE_FORMATS)}")

    def read_prompt():
        tok = moelab.Tokenizer.from_pretrained(args.path)
        if args.chat:
            ids = tok.apply_chat_template([{"role": "user", "content": args.prompt}],
                                          add_generation_prompt=True, tokenize=True)
        else:
            ids = tok.encode(args.prompt)
        return (tok, ids), {"the prompt's token ids": digest([int(t) for t in ids])}

    try:
        # under MPI a tokenizer one rank cannot read fails every rank, never hangs the others
        tok, ids = read_prompt()[0] if comm is None else agreed(comm, "reading the tokenizer",
                                                               read_prompt)
        model = moelab.hf.load_model(args.path, expert_parallel=comm)
        out_text = sys.stdout if rank == 0 else io.StringIO()  # only rank 0 prints
        stream = TextStream(lambda t: tok.decode(t, skip_special_tokens=True), out_text)
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=args.max_new_tokens,
                             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                             seed=args.seed, stop=tok.stop_ids,
                             trace=args.trace or args.trace_file is not None,
                             callback=stream.add)
        seconds = time.perf_counter() - t0
        stream.finish()
        if rank != 0:
            return 0
        print()
        new = out.new_tokens
        ranks = "" if comm is None else f", {comm.Get_size()} expert-parallel ranks"
        print(f"[{len(new)} tokens in {seconds:.2f} s, {len(ids)} prompt tokens{ranks}]",
              file=sys.stderr)
        if args.trace:
            for line in trace_lines(out.trace, out.num_prompt, new,
                                    lambda t: tok.decode([t])):
                print(line)
        if args.trace_file is not None:
            out.trace.save(args.trace_file)
            print(f"[expert trace written to {os.fspath(args.trace_file)}]", file=sys.stderr)
    except (ValueError, TypeError, IndexError, OSError) as exc:
        return fail(str(exc))
    return 0
