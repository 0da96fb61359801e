"""Extract a manifest example's text from the installed torch and apply its mechanical edits.

Only the test process calls this (it imports real torch to read docstrings); the runs it feeds
(tests/corpus/run.py) get the composed code. The rules are in tests/corpus/README.md.
"""

from __future__ import annotations

import doctest
import importlib
import re
import textwrap
from typing import Any

from .manifest import Example

# every example runs after these; the docstrings use the three names without importing them
STANDARD_IMPORTS = ("import torch", "import torch.nn as nn", "import torch.nn.functional as F")
SEED = "torch.manual_seed(0)"

_PARSER = doctest.DocTestParser()
# a reST paragraph that introduces a literal block ends in "::"
_LITERAL_INTRO = re.compile(r"::\s*$")


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


def example_text(example: Example) -> str:
    """The example's text as the installed torch's docstring has it.

    Raises:
        LookupError: the docstring has no example of that kind at that index.
    """
    doc = resolve(example.obj).__doc__ or ""
    found = doctest_examples(doc) if example.kind == "doctest" else literal_examples(doc)
    if example.index >= len(found):
        raise LookupError(f"{example.obj}'s docstring has {len(found)} {example.kind} "
                          f"examples, not {example.index + 1}")
    return found[example.index]


def compose(example: Example) -> dict[str, str]:
    """The example as tests/corpus/run.py takes it: preamble (run silently), example (echoed)."""
    preamble = [*STANDARD_IMPORTS, *example.imports, SEED, *example.preamble]
    code = example_text(example)
    if example.echo:
        code += "".join(f"{expr}\n" for expr in example.echo)
    return {"preamble": "\n".join(preamble) + "\n", "example": code}
