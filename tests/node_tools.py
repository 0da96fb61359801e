"""npm packages the tests need, installed from the project's own package.json + package-lock.json.

`npm_ci(folder)` runs `npm ci` in `folder` when its node_modules is missing or older than its
lock file (the lock file's hash is stamped into node_modules), so a fresh clone needs no manual
step and later runs reuse the cache. Tests skip, saying why, only when node or npm is absent.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_CLIENT = ROOT / "examples" / "node"
PROTO_TOOLS = ROOT / "scripts" / "proto-tools"


def node_or_skip() -> tuple[str, str]:
    """Paths of node and npm, or skip the test naming what is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"{'node' if node is None else 'npm'} is not installed (the Node.js client "
                    "and the proto linter need Node.js >= 18 with npm)")
    return node, npm


def npm_ci(folder: Path, skip_on_failure: bool = False) -> Path:
    """Install `folder`'s locked dependencies (once per lock file); returns node_modules.

    A failed install fails the test, or skips it saying why with `skip_on_failure` (a tool
    whose binary may not exist for this platform).
    """
    _, npm = node_or_skip()
    modules = folder / "node_modules"
    stamp = modules / ".gradserve-lock-sha256"
    digest = hashlib.sha256((folder / "package-lock.json").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return modules
    # --ignore-scripts: nothing we use needs an install script (protobufjs' only checks versions)
    done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund",
                           "--loglevel=error"], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        why = f"npm ci in {folder} failed:\n{done.stdout}\n{done.stderr}"
        if skip_on_failure:
            pytest.skip(why[-1000:])
        raise AssertionError(why)
    stamp.write_text(digest)
    return modules
