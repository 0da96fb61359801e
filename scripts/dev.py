#!/usr/bin/env python3
"""The README's two commands: run the service, or run every test.

    python3 scripts/dev.py serve [gradserve serve flags...]
    python3 scripts/dev.py test  [pytest args...]

Each creates (or reuses) the virtual environment `.venv` beside this checkout and installs
what the command needs into it, so a fresh machine with only Python >= 3.10 and pip suffices.
The install is skipped when pyproject.toml has not changed since the last one.

`test` without pytest arguments first runs the engine, surface, client and server tests on every
other CPython 3.10-3.13 it finds (on PATH as python3.X, or in pyenv's versions folder), each in
its own `.venv-3.X` with the `compat` extra (no torch: the reference wheel exists for the main
interpreter only, so comparisons with torch skip there; see tests/reference.py; and no MKL, so
the engine's numpy fallback is what they test; and their sessions as a user's, without the
descriptions the main run checks), then ruff,
mypy and the whole suite on this interpreter. It says which interpreters it ran, and fails if
any run failed.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("GRADSERVE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(*cmd: str, env: dict[str, str] | None = None) -> int:
    return subprocess.call(list(cmd), cwd=ROOT, env=env)


def ensure_venv(extra: str | None, venv_dir: Path = VENV, python: str | None = None) -> Path:
    """Create `venv_dir` (with `python`, default this interpreter) if needed and install
    gradserve (editable) with `extra`, once per change of pyproject.toml. Returns its bin dir."""
    bin_dir = venv_dir / ("Scripts" if os.name == "nt" else "bin")
    if not (bin_dir / "python").exists():
        print(f"dev: creating virtual environment {venv_dir}", file=sys.stderr)
        if python is None:
            venv.EnvBuilder(with_pip=True).create(venv_dir)
        else:
            code = _run(python, "-m", "venv", str(venv_dir))
            if code:
                sys.exit(code)
    spec = f".[{extra}]" if extra else "."
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + spec.encode()).hexdigest()
    stamp = venv_dir / f".gradserve-installed-{extra or 'runtime'}"
    if stamp.exists() and stamp.read_text() == digest:
        return bin_dir
    print(f"dev: installing gradserve{spec[1:]} into {venv_dir}", file=sys.stderr)
    code = _run(str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", "-e", spec)
    if code:
        sys.exit(code)
    stamp.write_text(digest)
    return bin_dir


SUPPORTED = ("3.10", "3.11", "3.12", "3.13")
# What runs on the other interpreters: everything but the slow subprocess suites (fuzzing,
# soak, hardening, faults, container, scale-out), which do not depend on the interpreter.
COMPAT_TESTS = ("tests/test_engine_*.py", "tests/test_surface_*.py", "tests/test_client_*.py",
                "tests/test_server_*.py", "tests/test_layout.py", "tests/test_formatting.py")


# The other interpreters' sessions run as a user's do: the server leaves out the descriptions
# of results the client infers itself (the main run has every session check them instead:
# GRADSERVE_VERIFY_META=1, tests/conftest.py).
COMPAT_ENV = {**os.environ, "GRADSERVE_VERIFY_META": "0"}


def other_pythons() -> dict[str, str]:
    """CPython 3.10-3.13 interpreters other than this one: version -> executable."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found: dict[str, str] = {}
    for version in SUPPORTED:
        if version == here:
            continue
        want = str(tuple(int(part) for part in version.split(".")))
        candidates = [shutil.which(f"python{version}") or ""]
        candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
        for exe in filter(None, candidates):
            # a pyenv shim exists for every installed version but runs only the selected ones
            probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == want:
                found[version] = exe
                break
    return found


def test_other_pythons() -> list[str]:
    """Run COMPAT_TESTS on every other supported CPython found; returns the failed versions."""
    pythons = other_pythons()
    if not pythons:
        print("dev: no other CPython 3.10-3.13 found; testing the main interpreter only",
              file=sys.stderr)
        return []
    failed = []
    for version, exe in pythons.items():
        bin_dir = ensure_venv("compat", ROOT / f".venv-{version}", exe)
        tests = sorted(p for pattern in COMPAT_TESTS for p in glob.glob(str(ROOT / pattern)))
        print(f"dev: CPython {version} ({exe}): engine, surface, client and server tests",
              file=sys.stderr, flush=True)
        code = _run(str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-o", "addopts=", *tests, env=COMPAT_ENV)
        if code:
            failed.append(version)
        print(f"dev: CPython {version}: {'FAILED' if code else 'passed'}", file=sys.stderr,
              flush=True)
    return failed


def serve(args: list[str]) -> int:
    ensure_venv("mkl")  # the mkl extra (Linux x86-64 only): torch's bits for products and VML
    return _run(str(BIN / "gradserve"), "serve", *args)


def test(args: list[str]) -> int:
    ensure_venv("test")
    failed = [] if args else test_other_pythons()  # pytest arguments: this interpreter only
    py = str(BIN / "python")
    for step in ([py, "-m", "ruff", "check", "."],
                 [py, "-m", "mypy"]):
        code = _run(*step)
        if code:
            print(f"dev: {' '.join(step[2:])} failed", file=sys.stderr)
            return code
    if failed:
        print(f"dev: the tests failed on CPython {', '.join(failed)} (output above)",
              file=sys.stderr)
    code = _run(py, "-m", "pytest", *args)
    # pytest exits 5 when it collected nothing: that is a failure of the suite, not a pass.
    code = 1 if code == 5 else code
    return code or (1 if failed else 0)


def main(argv: list[str]) -> int:
    commands = {"serve": serve, "test": test}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
