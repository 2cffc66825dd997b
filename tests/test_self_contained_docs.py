"""Everything a user or contributor is pointed to lives in the repository.

No source, test, benchmark, notebook or doc may cite design notes kept outside it (by their file
names, or by section signs into them): point to the repository's own docs (``docs/``, the
README, docstrings) or state the fact where it is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: what is scanned: every text file under these, and these files
SCANNED = ("cpp", "python", "tests", "docs", "benchmarks", "notebooks", "README.md",
           "pyproject.toml", "CMakeLists.txt", ".ci")
TEXT_SUFFIXES = {".py", ".pyi", ".cpp", ".hpp", ".h", ".md", ".ipynb", ".toml", ".txt", ".json",
                 ".cfg", ".dict", ""}
#: the notes' names and the section sign (written escaped, so this file does not match itself)
OUTSIDE = re.compile(r"\b(?:DESIGN|STYLE|ARCHITECTURES)\.md\b|\u00a7")


def _text_files():
    for entry in SCANNED:
        path = ROOT / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            parts = set(f.relative_to(ROOT).parts)
            if (parts & {"__pycache__", "build", ".ipynb_checkpoints"}
                    or f.suffix not in TEXT_SUFFIXES
                    or f.name == "tokenizer.json"):  # a vocabulary: every byte's character
                continue
            yield f


def test_the_scan_sees_the_repository():
    names = {f.relative_to(ROOT).as_posix() for f in _text_files()}
    for expected in ("README.md", "docs/semantics.md", "python/moelab/config.py",
                     "cpp/src/moe_layer.cpp", "tests/test_self_contained_docs.py"):
        assert expected in names, expected


def test_the_pattern_finds_a_citation():
    assert OUTSIDE.search("the router of " + "DESIGN" + ".md " + "\u00a7" + "3")
    assert OUTSIDE.search("see ARCHITECTURES" + ".md")
    assert not OUTSIDE.search("docs/semantics.md, \"Routers\"")


def test_no_file_cites_notes_outside_the_repository():
    hits = []
    for path in _text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: "
                 f"{m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not hits, "\n".join(hits)
