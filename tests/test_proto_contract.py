"""protos/ as a contract: buf lint, buf breaking against the last release, and what ListOps says.

buf comes from npm (@bufbuild/buf, locked in scripts/proto-tools); the tests install it with
`npm ci` on first use and skip, printing why, only when it cannot be installed. The baseline of
the last release's protos is committed under tests/proto_baseline/<version>/ (gradserve 0.1.0:
main's protos when the wire API was first published); when a release changes the protos, copy
them there as the new baseline.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.node_tools import PROTO_TOOLS, ROOT, npm_ci

PROTOS = ROOT / "protos"
BASELINE = ROOT / "tests" / "proto_baseline" / "v0.1.0"


@pytest.fixture(scope="module")
def buf():
    modules = npm_ci(PROTO_TOOLS, skip_on_failure=True)
    exe = modules / ".bin" / "buf"
    if not exe.exists():
        pytest.skip(f"{exe} is missing after npm ci (no buf binary for this platform?)")

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(exe), *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        print(f"$ buf {' '.join(map(str, args))}\n{done.stdout}{done.stderr}")
        return done
    return run


def test_buf_lint(buf):
    done = buf("lint", PROTOS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_breaking_change_since_the_last_release(buf):
    done = buf("breaking", PROTOS, "--against", BASELINE)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("file, old, new, complaint", [
    ("tensor.proto", "DType dtype = 1;", "DType dtype = 9;", 'field "1" with name "dtype"'),
    ("session.proto", "  uint64 bytes_held = 3;", "  string bytes_held = 3;", "type"),
    ("catalogue.proto", "  string doc = 8;\n", "", "deleted"),
])
def test_an_incompatible_edit_is_caught(buf, tmp_path, file, old, new, complaint):
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy, ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__"))
    path = copy / "gradserve" / "v1" / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    done = buf("breaking", copy, "--against", BASELINE)
    assert done.returncode != 0
    assert re.search(complaint, done.stdout + done.stderr, re.I), done.stdout + done.stderr


def test_listops_gives_every_backward_name(gradserve_stub):
    from gradserve.v1 import catalogue_pb2

    ops = {op.name: op for op in gradserve_stub.ListOps(catalogue_pb2.ListOpsRequest(),
                                                        timeout=10).ops}
    assert list(ops["pow"].backward_names) == ["PowBackward1", "PowBackward0", "PowBackward2"]
    assert list(ops["sum"].backward_names) == ["SumBackward0", "SumBackward1"]
    assert list(ops["clamp"].inputs) == ["input", "min", "max"]
    for op in ops.values():
        assert (op.backward_name in op.backward_names) == op.differentiable, op.name
        assert op.differentiable or not op.backward_names


def test_shipped_third_party_protos_name_source_and_licence():
    for rel in ("grpc/health/v1/health.proto", "google/rpc/status.proto",
                "google/rpc/error_details.proto"):
        head = (PROTOS / rel).read_text()[:1500]
        assert "Source:" in head and "Licence: Apache License 2.0" in head, rel
        assert "Licensed under the Apache License, Version 2.0" in head, rel
