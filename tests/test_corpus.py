"""The corpus: PyTorch's documentation examples print through a gradserve session what they print
with torch.

Each example of tests/corpus/manifest.py is extracted from the installed torch's docstrings at
test time (tests/corpus/examples.py; the text is never committed), edited by the documented
mechanical rules (tests/corpus/README.md), and run by tests/corpus/run.py twice: with real torch,
and with a session on the shared test server standing in for `torch`. All examples run in one
subprocess per side (start-up dominates a run otherwise), each in a fresh namespace, and on the
gradserve side in a fresh session. Their output must be identical line by line (the only
rewrite: the address in `<... at 0x...>`, which torch prints), and so must the exception an
example ends with, if any.

An example that does not match yet is a strict xfail whose reason (in the manifest) names the
missing feature and the first differing line; the test fails the day it passes.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.examples import (
    PROGRAMS,
    compose,
    example_text,
    program_path,
    resolve,
    without_export_metadata,
)
from tests.corpus.manifest import (
    EXAMPLES,
    FUNCTION,
    HIGHER,
    HOOKS,
    LICENCE,
    NN,
    OPTIM,
    RANDOM,
    SOURCE,
    TORCH_VERSION,
)
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

CORPUS = Path(__file__).resolve().parent / "corpus"
RUNNER = CORPUS / "run.py"
# one side's whole batch may take this long on a loaded machine
BATCH_TIMEOUT = 600
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


def site_packages() -> Path:
    """The directory the torch package is installed in."""
    return Path(torch.__file__).resolve().parent.parent


def test_the_manifest_names_thirty_examples_covering_issue_11s_areas():
    assert len(EXAMPLES) >= 30
    assert len({e.name for e in EXAMPLES}) == len(EXAMPLES)
    covered = {area for e in EXAMPLES for area in e.covers}
    assert {NN, OPTIM, RANDOM, FUNCTION, HOOKS, HIGHER} <= covered
    for e in EXAMPLES:
        assert e.kind in ("doctest", "literal", *PROGRAMS), e.name
        if e.kind == "pypi":
            assert e.source == f"PyPI {e.package}, {e.file}" and e.licence, e.name
        else:
            assert e.source == f"{SOURCE}, {e.file}, {e.obj}" and e.licence == LICENCE


def test_the_corpus_holds_twenty_whole_programs():
    assert len([e for e in EXAMPLES if e.kind in PROGRAMS]) >= 20


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "pypi"],
                         ids=lambda e: e.name)
def test_each_vendored_program_names_its_distribution_version_path_and_licence(example):
    header = program_path(example).read_text().split("\n\n", 1)[0]
    package, version = example.package.split()[0].split("==")
    assert f"Source: PyPI {package}=={version}" in header
    assert f"path {example.file}" in header and f"Licence: {example.licence}" in header


def test_the_exportdb_edit_drops_only_the_export_metadata():
    code = ("import torch\nfrom torch.export import Dim\nclass M(torch.nn.Module):\n"
            "    tags = 1\nd = Dim('d')\nexample_args = (torch.randn(2),)\n"
            "tags = {\n    'a',\n}\nsupport_level = 1\ndynamic_shapes = {}\nmodel = M()\n")
    assert without_export_metadata(code) == (
        "import torch\nclass M(torch.nn.Module):\n    tags = 1\n"
        "example_args = (torch.randn(2),)\nmodel = M()\n")


def test_the_installed_torch_is_the_one_the_manifest_indexes():
    assert torch.__version__.split("+")[0] == TORCH_VERSION
    licence = next(site_packages().glob(f"torch-{TORCH_VERSION}*.dist-info/licenses/LICENSE"))
    assert "From PyTorch:" in licence.read_text()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_each_example_is_written_in_the_file_its_source_names(example):
    text = program_path(example).read_text()
    if example.kind != "pypi":
        assert program_path(example) == site_packages() / example.file
        resolve(example.obj)
    for line in example_text(example).splitlines():
        if line.strip():
            assert line.strip() in text, (example.name, line)


def run_side(batch_file: Path, results_file: Path, target: str | None) -> subprocess.Popen:
    """Start one side's batch: real torch, or sessions on `target`."""
    args = [sys.executable, str(RUNNER), *(["--gradserve", target] if target else []),
            str(batch_file), str(results_file)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def corpus_runs(gradserve_server, tmp_path_factory) -> dict[str, Any]:
    """Both sides' results for every example: {"torch": {...}, "gradserve": {...}, "seconds"}."""
    tmp = tmp_path_factory.mktemp("corpus")
    batch_file = tmp / "batch.json"
    batch_file.write_text(json.dumps({e.name: compose(e) for e in EXAMPLES}, indent=1))
    start = time.perf_counter()
    sides = {"torch": None, "gradserve": f"localhost:{gradserve_server[1]}"}
    procs = {side: run_side(batch_file, tmp / f"{side}.json", target)
             for side, target in sides.items()}
    runs: dict[str, Any] = {}
    for side, proc in procs.items():
        _, stderr = proc.communicate(timeout=BATCH_TIMEOUT)
        assert proc.returncode == 0, f"the {side} batch failed:\n{stderr[-3000:]}"
        runs[side] = json.loads((tmp / f"{side}.json").read_text())
        runs[f"{side} stderr"] = stderr
    runs["seconds"] = time.perf_counter() - start
    return runs


def lines_of(result: dict[str, Any]) -> list[str]:
    return [ADDRESS.sub(" at 0x...", ln) for ln in result["stdout"].splitlines()]


def mismatch_report(name: str, want: dict[str, Any], got: dict[str, Any]) -> str:
    """The first differing line, a unified diff (first 80 lines) and how each run ended."""
    a, b = lines_of(want), lines_of(got)
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    diff = list(difflib.unified_diff(a, b, "torch", "gradserve", n=2, lineterm=""))
    return "\n".join([f"{name}: output differs from torch's at line {first + 1}",
                      *diff[:80], *(["..."] if len(diff) > 80 else []),
                      f"torch run ended with {want['error']!r}",
                      f"gradserve run ended with {got['error']!r}"])


@pytest.mark.timeout(2 * BATCH_TIMEOUT + 60)
@pytest.mark.parametrize("example", [
    pytest.param(e, id=e.name, marks=[pytest.mark.xfail(strict=True, reason=e.xfail)]
                 if e.xfail else []) for e in EXAMPLES])
def test_example_prints_through_a_session_what_it_prints_with_torch(example, corpus_runs):
    want, got = corpus_runs["torch"][example.name], corpus_runs["gradserve"][example.name]
    # the example runs with torch as written: it must neither fail nor print nothing
    assert not want["error"] and want["stdout"].strip(), (example.name, want)
    same = lines_of(got) == lines_of(want) and got["error"] == want["error"]
    assert same, mismatch_report(example.name, want, got)
