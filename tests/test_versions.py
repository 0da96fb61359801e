"""Versions: `gradserve --version`, ListOps' server and protocol versions, and the client's
explanation of a server that is too old or too new."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import gradserve.client as gc
from gradserve.client import connection
from gradserve.server import catalogue, package_version
from gradserve.v1 import PROTOCOL_VERSION, catalogue_pb2

ROOT = Path(__file__).resolve().parent.parent


def test_cli_version():
    done = subprocess.run([sys.executable, "-m", "gradserve.server.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    expected = f"gradserve {package_version()} (wire protocol {PROTOCOL_VERSION})"
    assert done.stdout.strip() == expected
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{package_version()}"' in pyproject


def test_listops_reports_versions(gradserve_server):
    _, port = gradserve_server
    with gc.connect(f"127.0.0.1:{port}") as client:
        assert client.server_version() == (package_version(), PROTOCOL_VERSION,
                                           client.list_ops().opset_version)


def test_changelog_names_this_release():
    assert re.search(rf"^## {re.escape(package_version())}\b", (ROOT / "CHANGELOG.md").read_text(),
                     re.M)


def _server_reporting(factory, monkeypatch, **fields):
    cat = catalogue_pb2.ListOpsResponse()
    cat.CopyFrom(catalogue.list_ops())
    for k, v in fields.items():
        setattr(cat, k, v)
    monkeypatch.setattr(catalogue, "list_ops", lambda: cat)
    _, port = factory()
    return f"127.0.0.1:{port}"


def test_a_server_too_new_is_explained(gradserve_server_factory, monkeypatch):
    target = _server_reporting(gradserve_server_factory, monkeypatch, protocol_version=99,
                               server_version="9.0.0")
    with gc.connect(target) as client, pytest.raises(gc.IncompatibleServerError) as err:
        client.session()
    assert str(err.value) == (
        f"the server at {target} (gradserve 9.0.0, op-set {catalogue.list_ops().opset_version}) "
        f"speaks wire protocol 99, newer than this client (gradserve {package_version()}) "
        f"supports (0 to {PROTOCOL_VERSION}): upgrade the client (pip install -U gradserve)")


def test_a_server_too_old_is_explained(gradserve_server_factory, monkeypatch):
    target = _server_reporting(gradserve_server_factory, monkeypatch, protocol_version=0,
                               server_version="")
    monkeypatch.setattr(connection, "MIN_PROTOCOL_VERSION", 1)  # a future client's floor
    with gc.connect(target) as client, pytest.raises(gc.IncompatibleServerError) as err:
        client.grad(lambda x: (x * x).sum())([1.0, 2.0])
    assert "(an older gradserve, op-set" in str(err.value)
    assert str(err.value).endswith("speaks wire protocol 0, older than this client (gradserve "
                                   f"{package_version()}) supports (1 to {PROTOCOL_VERSION}): "
                                   "upgrade the server")
