#!/usr/bin/env python3
"""The README's two commands: run the service, or run every test.

    python3 scripts/dev.py serve [gradserve serve flags...]
    python3 scripts/dev.py test  [pytest args...]

Each creates (or reuses) the virtual environment `.venv` beside this checkout and installs
what the command needs into it, so a fresh machine with only Python >= 3.10 and pip suffices.
The install is skipped when pyproject.toml has not changed since the last one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("GRADSERVE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(*cmd: str) -> int:
    return subprocess.call(list(cmd), cwd=ROOT)


def ensure_venv(extra: str | None) -> None:
    """Create `.venv` if needed and install gradserve (editable) with `extra`, once per change."""
    if not (BIN / "python").exists():
        print(f"dev: creating virtual environment {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    spec = f".[{extra}]" if extra else "."
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + spec.encode()).hexdigest()
    stamp = VENV / f".gradserve-installed-{extra or 'runtime'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"dev: installing gradserve{spec[1:]} into {VENV}", file=sys.stderr)
    code = _run(str(BIN / "python"), "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", "-e", spec)
    if code:
        sys.exit(code)
    stamp.write_text(digest)


def serve(args: list[str]) -> int:
    ensure_venv(None)
    return _run(str(BIN / "gradserve"), "serve", *args)


def test(args: list[str]) -> int:
    ensure_venv("test")
    py = str(BIN / "python")
    for step in ([py, "-m", "ruff", "check", "."],
                 [py, "-m", "mypy"]):
        code = _run(*step)
        if code:
            print(f"dev: {' '.join(step[2:])} failed", file=sys.stderr)
            return code
    code = _run(py, "-m", "pytest", *args)
    # pytest exits 5 when it collected nothing: that is a failure of the suite, not a pass.
    return 1 if code == 5 else code


def main(argv: list[str]) -> int:
    commands = {"serve": serve, "test": test}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
