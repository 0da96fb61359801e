"""The README's runnable Python examples run as printed: each block that connects to
`localhost:50051` is run against the test server (only the address rewritten), and every line
it prints is the one its `# ...` comment shows; the local-torch block prints what the session
block prints (README "What it looks like")."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
ADDRESS = '"localhost:50051"'
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _blocks() -> list[str]:
    return BLOCK.findall(README.read_text(encoding="utf-8"))


def _runnable() -> list[str]:
    """The whole programs that make their own client (the rest are fragments of a program)."""
    return [b for b in _blocks() if ADDRESS in b and b.startswith("import ")]


def _expected(block: str) -> list[str]:
    """What the block's print lines say they print (the text after `# `, up to a colon that
    starts the comment's own words: "round trip 2: tensor(...)")."""
    out = []
    for line in block.splitlines():
        if line.lstrip().startswith("print(") and "#" in line:
            comment = line.split("#", 1)[1].strip()
            out.append(comment.split(": ", 1)[1] if re.match(r"round trip \d+: ", comment)
                       else comment)
    return out


def _run(block: str, port: int | None = None) -> list[str]:
    code = block if port is None else block.replace(ADDRESS, f'"localhost:{port}"')
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    return buf.getvalue().splitlines()


def test_the_readme_has_runnable_session_examples():
    assert len(_runnable()) >= 2


@pytest.mark.parametrize("index", range(len(_runnable())))
def test_a_readme_example_prints_what_it_says(gradserve_server, index):
    block = _runnable()[index]
    printed = _run(block, gradserve_server[1])
    assert printed == _expected(block)


def test_the_local_torch_example_prints_what_the_session_example_prints(gradserve_server):
    pytest.importorskip("torch")  # the block imports it (the main interpreter's reference)
    local = next(b for b in _blocks() if b.startswith("import torch\n"))
    remote = _runnable()[0]
    assert local.split("\n\n", 1)[1] == remote.split("\n\n", 1)[1]  # only the import differs
    assert _run(local) == _expected(local) == _run(remote, gradserve_server[1])
