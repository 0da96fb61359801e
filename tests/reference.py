"""The reference implementation: torch, or on an interpreter it is not installed for, a stand-in.

torch 2.13.0 is installed (the test extra) for the main interpreter only: the CPU wheel this
machine has is for one CPython. scripts/dev.py also runs the engine, surface, client and server
tests on the other CPythons 3.10-3.13 it finds, without torch. There every test that touches
torch (calls a torch function, enters a torch context) is skipped at that point, saying why;
everything else — the engine's own semantics, finite-difference gradients, the wire — runs.

Test modules import `torch` from here instead of directly.
"""

from __future__ import annotations

from typing import Any

import pytest

MISSING_REASON = ("torch is not installed for this interpreter (the reference is installed for "
                  "the main one only)")


class _Absent:
    """`torch` (and every attribute path under it) when torch cannot be imported: using it
    skips the test, or the module when used at import time."""

    def __init__(self, path: str):
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(f"{self._path}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pytest.skip(f"{self._path}(): {MISSING_REASON}", allow_module_level=True)

    def __enter__(self) -> Any:
        pytest.skip(f"with {self._path}: {MISSING_REASON}", allow_module_level=True)

    def __exit__(self, *exc: Any) -> None:
        return None

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (_AbsentBase,)  # `class F(torch.autograd.Function)` at import time

    def __instancecheck__(self, obj: Any) -> bool:
        return False  # nothing is a torch.Tensor here

    def __subclasscheck__(self, cls: Any) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<absent {self._path}>"


class _AbsentMeta(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(f"torch class attribute {name}")  # `F.apply(...)` skips


class _AbsentBase(metaclass=_AbsentMeta):
    """The base of a class that subclasses a torch class when torch is absent."""


try:
    import torch
except ImportError:
    torch = _Absent("torch")  # type: ignore[assignment]

HAVE_TORCH = not isinstance(torch, _Absent)


def raises_like(ours: Any, theirs: Any) -> None:
    """`ours()` raises what `theirs()` (torch) raises: the same type and message."""
    with pytest.raises(Exception) as want:
        theirs()
    with pytest.raises(type(want.value)) as got:
        ours()
    assert str(got.value) == str(want.value)


def errors_alike(ours: Any, theirs: Any) -> None:
    """`ours()` (gradserve, in process or a session) fails as `theirs()` (torch) does: the same
    message (without the line a session adds naming where the op was recorded), an exception
    of torch's type or a subclass."""
    want, got = _raised(theirs), _raised(ours)
    assert got[1] == want[1]
    assert issubclass(got[0], want[0])


def _raised(fn: Any) -> tuple[type, str]:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the type and text are what is compared
        return type(exc), str(exc).split("\ngradserve:")[0]
    raise AssertionError("no error")


__all__ = ["HAVE_TORCH", "MISSING_REASON", "errors_alike", "raises_like", "torch"]


def builtin_error(fn: Any, t: Any) -> tuple[str, str]:
    """The built-in exception type `fn(t)` raises (gradserve's typed errors subclass torch's
    built-in ones) and its message, for comparing gradserve's refusals with torch's."""
    try:
        fn(t)
    except Exception as exc:  # noqa: BLE001 - the type and text are what is compared
        return _builtin(exc)
    raise AssertionError("no error")


def outcome(fn: Any, t: Any) -> tuple[str, Any]:
    """("ok", fn(t)), or, when it raises, what `builtin_error` gives: the built-in type's name
    and the message."""
    try:
        return "ok", fn(t)
    except Exception as exc:  # noqa: BLE001 - the type and text are what is compared
        return _builtin(exc)


def same_outcome(lib: Any, fn: Any) -> tuple[str, Any]:
    """fn(lib) (gradserve, in process or a session) comes out as fn(torch) does: the same
    values, or the same built-in error and message. Returns torch's outcome."""
    got, want = outcome(fn, lib), outcome(fn, torch)
    assert got == want
    return want


def _builtin(exc: BaseException) -> tuple[str, str]:
    # a session's error also names the line that recorded it
    builtin = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
    return builtin.__name__, str(exc).split("\ngradserve:")[0]


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), set())
    except OSError:
        return set()


# torch's AVX512 capability level (and oneDNN's avx512_core) needs all of these
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq"})


def torch_at_avx512(script: str, inputs: dict[str, Any], tmp_path: Any) -> Any:
    """Run `script` in a torch whose ATen and oneDNN kernels are not capped at AVX2 (the
    suite's own torch is: tests/__init__.py) and return the arrays it saved; skip the test
    without torch or where the CPU has no AVX512. The script reads its inputs from the .npz
    named by sys.argv[1], writes its results to the .npz named by sys.argv[2], and exits 3
    when torch does not run at AVX512."""
    import os
    import subprocess
    import sys

    import numpy as np

    if not HAVE_TORCH:
        pytest.skip(MISSING_REASON)
    if not AVX512_FLAGS <= cpu_flags():
        # asked of the CPU: told ATEN_CPU_CAPABILITY=avx512 on an AVX2 CPU, torch reports
        # AVX512 anyway and dies of an illegal instruction, or runs oneDNN's AVX2 code
        pytest.skip("this CPU has no AVX512 for torch")
    np.savez(tmp_path / "in.npz", **inputs)
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx512", ONEDNN_MAX_CPU_ISA="ALL")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "in.npz"),
                           str(tmp_path / "ref.npz")], env=env, timeout=300)
    if done.returncode == 3:
        pytest.skip("this CPU has no AVX512 for torch")
    assert done.returncode == 0
    return np.load(tmp_path / "ref.npz")
