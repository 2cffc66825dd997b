"""What the fuzz harnesses share: reading decisions from bytes, and telling a documented error
from a defect.

A harness turns the fuzzer's bytes into a call of a public entry point and classifies what
happens. The call may succeed (then the harness checks what it returned) or raise one of the
exceptions the entry point documents. Everything else is a *finding*:

* an exception of a type the entry point does not document (KeyError, OverflowError,
  AttributeError, ...), or of a documented type without a message;
* a documented type that was not raised by moelab's own checks: the innermost frame must be a
  ``raise`` statement in moelab, or a call into the C++ core (whose std::invalid_argument /
  std::out_of_range pybind11 turns into ValueError / IndexError), and not pybind11's own
  "incompatible function arguments" (a conversion that was never validated);
* a broken promise after a success (a wrong shape, a value that was not kept, a layer changed
  by a failed load), checked by each harness;
* a crash or a hang, which the fuzzer itself reports (libFuzzer's -timeout).

Known defects whose fix is outside the harnesses' reach are listed per harness
(``KNOWN_DEFECTS``): the fuzzer then goes on past them, and tests/fuzz/test_fuzz_corpus.py
checks that each one's reproducer still shows it (a fixed defect must be taken off the list).

Warnings are ignored inside the harnesses: NumPy's "overflow encountered in cast" is a warning
the library lets through on purpose, and only exceptions, crashes and hangs are findings here.
"""

from __future__ import annotations

import atexit
import contextlib
import linecache
import math
import os
import re
import shutil
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Tuple, Type

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "corpus"
REPRODUCER_DIR = HERE / "reproducers"
#: the harnesses, fuzz_<target>.py, in the order run.py fuzzes them
TARGETS = ("safetensors", "hf_config", "moe_config", "load_weights", "load_model")
#: libFuzzer dictionaries: <target>.dict, or for these targets the named ones joined
DICTIONARIES = {"load_model": ("hf_config", "safetensors")}


class Finding(AssertionError):
    """A defect found by a harness: ``stage`` (what was being done) and ``reason``."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class KnownDefect:
    """A defect the harness lets pass: the stage it shows in and a regex on the finding's text.

    id : the reproducer's file name under reproducers/<target>/.
    issue : where it is tracked (the issue and item).
    stage : the finding's stage, or its beginning ("from_hf_config" covers both of its calls).
    """

    id: str
    issue: str
    stage: str
    pattern: str

    def matches(self, finding: Finding) -> bool:
        return finding.stage.startswith(self.stage) and re.search(self.pattern, finding.reason) is not None


# ---------------------------------------------------------------------------------------------
# decisions from bytes
# ---------------------------------------------------------------------------------------------
#: integers worth trying anywhere an int goes: small values, signs, and the edges of C types
INTERESTING_INTS = (0, 1, 2, 3, 4, 5, 7, 8, 16, -1, -2, 2**15, 2**31 - 1, 2**31, 2**32,
                    2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63), -(2**64))
#: floats worth trying: zeros, tiny and huge (beyond float32), non-finite
INTERESTING_FLOATS = (0.0, -0.0, 1.0, 0.5, 2.5, 30.0, 1e-300, 5e-324, 1e-45, 1e38, 3.4e38,
                      3.5e38, 1e300, -1e300, -1.0, math.nan, math.inf, -math.inf)

#: small MoE layers, one per router kind and expert feature: the configurations the MoEConfig
#: harness starts from and the layers the load_weights harness fills
MOE_LAYERS = (
    dict(hidden_size=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=4),
    dict(hidden_size=8, num_experts=8, num_experts_per_tok=4, moe_intermediate_size=4,
         scoring="sigmoid", norm_topk_prob=True, routed_scaling_factor=2.5, n_group=4,
         topk_group=2, correction_bias=True, n_shared_experts=1),
    dict(hidden_size=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=4,
         scoring="topk_softmax", router_bias=True, activation="swiglu_oai", expert_bias=True),
    dict(hidden_size=8, num_experts=4, num_experts_per_tok=1, moe_intermediate_size=4,
         scoring="llama4", n_shared_experts=1, shared_intermediate_size=6),
    dict(hidden_size=8, num_experts=6, num_experts_per_tok=2, moe_intermediate_size=4,
         norm_topk_prob=False, router_logit_softcap=30.0, activation="gelu_tanh",
         n_shared_experts=2, shared_expert_gate=True, capacity_factor=1.25),
)


class ByteReader:
    """Deterministic decisions read from the fuzzer's bytes; 0 once they run out.

    The same bytes always give the same decisions, so any input replays exactly (in the
    regression corpus, or when a finding is reproduced) without the fuzzer.
    """

    def __init__(self, data: bytes):
        self._data = bytes(data)
        self._pos = 0

    def u8(self) -> int:
        if self._pos >= len(self._data):
            return 0
        self._pos += 1
        return self._data[self._pos - 1]

    def take(self, n: int) -> bytes:
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        return out + bytes(n - len(out))

    def rest(self) -> bytes:
        out = self._data[self._pos:]
        self._pos = len(self._data)
        return out

    def below(self, n: int) -> int:
        """An int in [0, n)."""
        if n <= 1:
            return 0
        width = 1 if n <= 256 else 2 if n <= 65536 else 4
        return int.from_bytes(self.take(width), "little") % n

    def flag(self) -> bool:
        return bool(self.u8() & 1)

    def pick(self, options: Sequence):
        return options[self.below(len(options))]

    def integer(self) -> int:
        """Mostly small non-negative ints, often an interesting edge, sometimes any 64-bit int."""
        return self._edge_small_or_any(INTERESTING_INTS, lambda b: b % 40, "<q")

    def real(self) -> float:
        """An interesting float, a small one, or any double."""
        return self._edge_small_or_any(INTERESTING_FLOATS, lambda b: (b - 64) / 16.0, "<d")

    def _edge_small_or_any(self, edges: Sequence, small, any_format: str):
        """One of `edges` (1 in 4), small(a byte) (2 in 4), or any value of the 8-byte struct
        format `any_format` (1 in 4)."""
        kind = self.below(4)
        if kind == 0:
            return self.pick(edges)
        if kind == 3:
            return struct.unpack(any_format, self.take(8))[0]
        return small(self.u8())

    def text(self, vocabulary: Sequence[str] = ()) -> str:
        """A word of the vocabulary, or a short string of the bytes."""
        if vocabulary and self.below(4):
            return self.pick(vocabulary)
        return self.take(self.below(12)).decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# calling an entry point and classifying what it raised
# ---------------------------------------------------------------------------------------------
def _moelab_dir() -> str:
    import moelab

    return os.path.dirname(os.path.abspath(moelab.__file__)) + os.sep


def _frames(exc: BaseException):
    """The traceback's frames as (code, filename, line number), outermost first."""
    tb, out = exc.__traceback__, []
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append((code, os.path.abspath(code.co_filename), tb.tb_lineno))
        tb = tb.tb_next
    return out


def undocumented_reason(exc: BaseException, allowed: Tuple[Type[BaseException], ...]
                        ) -> Optional[str]:
    """Why ``exc`` is not one of the documented errors, or None when it is one.

    The reason names where moelab was when it happened (``<file>.py:<line>``, the innermost
    frame in the package), which known-defect patterns may match on.
    """
    name = type(exc).__name__
    message = str(exc).strip()
    frames = _frames(exc)
    package = _moelab_dir()
    ours = [(f, n) for _, f, n in frames if f.startswith(package)]
    at = f" at {os.path.relpath(ours[-1][0], package)}:{ours[-1][1]}" if ours else ""
    if not isinstance(exc, allowed):
        return f"undocumented {name}{at}: {exc!r}"
    if not message:
        return f"{name} without a message{at}"
    if "incompatible function arguments" in message:
        return f"raw pybind11 {name} (an argument was not validated): {message.splitlines()[0]}"
    if not frames:
        return None
    code, filename, lineno = frames[-1]
    if code in _CALLERS and isinstance(exc, TypeError) and _SIGNATURE.search(message):
        return None  # Python's own check of the arguments against the signature
    line = linecache.getline(filename, lineno).strip()
    if not filename.startswith(package):
        return (f"{name} raised outside moelab ({os.path.basename(filename)}:{lineno}: {line})"
                f"{at}: {message}")
    if line.startswith("raise ") or "_core." in line:
        return None
    return f"{name} raised by a library call{at} ({line}), not by a check: {message}"


_SIGNATURE = re.compile(r"missing \d+ required|unexpected keyword argument|takes \d+ positional|"
                        r"got multiple values for argument")


def _quietly(fn: Callable, args, kwargs):
    """fn(*args, **kwargs) with warnings ignored (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


#: the frame an argument-binding TypeError of the called entry point is raised in
_CALLERS = {_quietly.__code__}


def call(stage: str, fn: Callable, *args, allowed: Tuple[Type[BaseException], ...], **kwargs):
    """(True, fn(...)) on success; (False, exc) for a documented error; Finding otherwise."""
    try:
        return True, _quietly(fn, args, kwargs)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - classifying every exception is the point
        reason = undocumented_reason(exc, allowed)
        if reason is not None:
            raise Finding(stage, reason) from exc
        return False, exc


def succeed(stage: str, fn: Callable, *args, **kwargs):
    """fn(...), which must not raise: anything it raises is a Finding."""
    try:
        return _quietly(fn, args, kwargs)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise Finding(stage, f"raised {type(exc).__name__}: {exc}") from exc


def expect(stage: str, condition: bool, reason: str) -> None:
    """A promise kept after a success, or a Finding."""
    if not condition:
        raise Finding(stage, reason)


def run_checked(body: Callable[[bytes], None], known: Iterable[KnownDefect], data: bytes
                ) -> Optional[str]:
    """Run a harness body: None if all is well, a known defect's id if it showed, else raise."""
    try:
        body(data)
    except Finding as finding:
        for defect in known:
            if defect.matches(finding):
                return defect.id
        raise
    return None


_scratch = None


def scratch_folder() -> Path:
    """A folder of this process's own, for the files a harness writes (removed at exit)."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="moelab-fuzz-"))
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


# ---------------------------------------------------------------------------------------------
# the fuzzer's entry point
# ---------------------------------------------------------------------------------------------
def instrumented(fuzzing: bool):
    """A context in which ``import moelab`` is instrumented for coverage when fuzzing."""
    if not fuzzing:
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["moelab"])


def fuzz(test_one_input: Callable[[bytes], object]) -> None:
    """Hand the harness to atheris (libFuzzer); its options come from the command line."""
    import sys

    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
