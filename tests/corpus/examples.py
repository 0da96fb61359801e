"""Extract a manifest example's text from the installed torch and apply its mechanical edits.

Only the test process calls this (it imports real torch to read docstrings); the runs it feeds
(tests/corpus/run.py) get the composed code. The rules are in tests/corpus/README.md.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import re
import textwrap
from pathlib import Path
from typing import Any

from .manifest import Example

# every example runs after these; the docstrings use the three names without importing them
STANDARD_IMPORTS = ("import torch", "import torch.nn as nn", "import torch.nn.functional as F")
SEED = "torch.manual_seed(0)"

_PARSER = doctest.DocTestParser()
# a reST paragraph that introduces a literal block ends in "::"
_LITERAL_INTRO = re.compile(r"::\s*$")
CORPUS = Path(__file__).resolve().parent
# the kinds whose text is a whole file, run as a program (the others are docstring examples)
PROGRAMS = ("module", "pypi")
# ExportDB's export metadata (torch/_export/db/examples): which names a file assigns for
# torch.export only, and the imports only those assignments use
_EXPORT_METADATA = {"tags", "support_level", "dynamic_shapes"}
_EXPORT_IMPORTS = {"torch._export.db.case", "torch.export"}


def resolve(dotted: str) -> Any:
    """The object at a dotted path: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def doctest_examples(doc: str) -> list[str]:
    """The docstring's runs of `>>>` lines (prose between two starts a new one), as code."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for piece in _PARSER.parse(doc):
        if isinstance(piece, str):
            if piece.strip() and current:
                blocks.append(current)
                current = []
        else:
            current.append(piece.source)
    if current:
        blocks.append(current)
    return ["".join(block) for block in blocks]


def literal_examples(doc: str) -> list[str]:
    """The docstring's reST literal blocks (the indented text after a line ending in `::`)."""
    lines = textwrap.dedent(doc).splitlines()
    # a docstring's first line is not indented like the rest: dedent the rest on its own
    lines = [*lines[:1], *textwrap.dedent("\n".join(lines[1:])).splitlines()]
    blocks = []
    for i, line in enumerate(lines):
        if not _LITERAL_INTRO.search(line) or ">>>" in line:
            continue
        intro_indent = len(line) - len(line.lstrip())
        body: list[str] = []
        for following in lines[i + 1:]:
            indent = len(following) - len(following.lstrip())
            if following.strip() and indent <= intro_indent:
                break
            body.append(following)
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if code and ">>>" not in code:
            blocks.append(code + "\n")
    return blocks


def without_export_metadata(code: str) -> str:
    """An ExportDB example file without its torch.export metadata (the mechanical edit).

    Removes the top-level statements that only describe the example to torch.export: the
    `tags`, `support_level` and `dynamic_shapes` assignments, `Dim(...)` assignments, and the
    imports of `torch._export.db.case` and `torch.export`; the program's own code is untouched.
    """
    lines = code.splitlines(keepends=True)
    drop: set[int] = set()
    for node in ast.parse(code).body:
        metadata = (
            isinstance(node, ast.ImportFrom) and node.module in _EXPORT_IMPORTS
            or isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id in _EXPORT_METADATA
                for target in node.targets)
            or isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "Dim")
        if metadata:
            drop.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def program_path(example: Example) -> Path:
    """The file an example's text is in: in the installed torch, or vendored under tests/corpus."""
    if example.kind == "pypi":
        return CORPUS / example.vendored
    return Path(resolve("torch").__file__).resolve().parent.parent / example.file


def example_text(example: Example) -> str:
    """The example's text as the installed torch's docstring (or the program's file) has it.

    Raises:
        LookupError: the docstring has no example of that kind at that index.
    """
    if example.kind == "module":
        return without_export_metadata(program_path(example).read_text())
    if example.kind == "pypi":
        return program_path(example).read_text()
    doc = resolve(example.obj).__doc__ or ""
    found = doctest_examples(doc) if example.kind == "doctest" else literal_examples(doc)
    if example.index >= len(found):
        raise LookupError(f"{example.obj}'s docstring has {len(found)} {example.kind} "
                          f"examples, not {example.index + 1}")
    return found[example.index]


def compose(example: Example) -> dict[str, str]:
    """The example as tests/corpus/run.py takes it: preamble (run silently), example (echoed).

    A program (kind "module" or "pypi") runs whole as part of the preamble, as a script runs
    (what it prints is compared; its expression statements are not echoed); its `echo`
    expressions are the echoed part.
    """
    preamble = [*STANDARD_IMPORTS, *example.imports, SEED, *example.preamble]
    echo = "".join(f"{expr}\n" for expr in example.echo)
    if example.kind in PROGRAMS:
        return {"preamble": "\n".join(preamble) + "\n" + example_text(example),
                "example": echo}
    return {"preamble": "\n".join(preamble) + "\n", "example": example_text(example) + echo}
