"""Keep numpy off its AVX512 kernels in a process that runs the engine.

On a CPU with AVX512, numpy dispatches some ufuncs to kernels of its own (its `X86_V4` /
`AVX512_SKX` targets: float64 `sin`, `cos`, `log`, `exp`, ... from SVML-like code) that round
differently from the C library and SLEEF, which torch uses: the engine's float64 normal draws,
and what is computed from them, then differ from torch's in the last bit. numpy reads
`NPY_DISABLE_CPU_FEATURES` once, when it is first imported, so a process must have it set before
that: `pin()` sets it to numpy's AVX512-level targets (asked of a child process, or, when numpy
is imported already, by starting the same command line again); on a CPU without AVX512, or when
the variable is set already, it does nothing. The engine's own model of torch's AVX512 kernels
(`engine/cascade.py`: vector widths) is unaffected: that follows torch, not numpy. On a CPU
without AVX512 the variable is set to "" (no target disabled), so that the processes this one
starts (the tests' servers, `--processes` workers) do not ask a child again.

Used by `gradserve serve`/`demo` (server/cli.py) and the tests (tests/__init__.py); a program
that uses `gradserve.engine` in process on such a CPU can set the variable itself
(`NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"` for numpy 2.4; `avx512_targets()`
lists them for the numpy installed).
"""

from __future__ import annotations

import os
import subprocess
import sys

ENV = "NPY_DISABLE_CPU_FEATURES"


def _is_avx512_target(name: str) -> bool:
    return name.startswith("AVX512") or name == "X86_V4"


def avx512_targets() -> list[str]:
    """numpy's dispatch targets at the AVX512 level, when this CPU runs at least one of them
    (else, or with a numpy that does not say, an empty list). Imports numpy."""
    try:
        from numpy._core import _multiarray_umath as umath  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        try:
            from numpy.core import _multiarray_umath as umath  # type: ignore[no-redef]
        except ImportError:
            return []
    dispatch = list(getattr(umath, "__cpu_dispatch__", ()))
    features = dict(getattr(umath, "__cpu_features__", {}))
    targets = [name for name in dispatch if _is_avx512_target(name)]
    if not any(features.get(name) for name in targets):
        return []
    return targets


def pin() -> None:
    """Have numpy in this process leave its AVX512 targets aside, when this CPU runs them (see
    the module's docstring). Before numpy is imported, the targets are asked of a short child
    process and `NPY_DISABLE_CPU_FEATURES` set here; after, the process starts again with it
    (`os.execv` of the same command line: call it where that is safe, before any thread, file or
    redirection of the process matters). Does nothing when the variable is set already."""
    if ENV in os.environ:
        return
    if "numpy" not in sys.modules:
        asked = _ask_child()
        if asked is not None:  # a child that failed says nothing: its children ask again
            os.environ[ENV] = " ".join(asked)
        return
    targets = avx512_targets()
    if not targets:
        os.environ[ENV] = ""
        return
    os.environ[ENV] = " ".join(targets)
    argv = list(getattr(sys, "orig_argv", ()) or [sys.executable, *sys.argv])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv[1:]])


def _ask_child() -> list[str] | None:
    """avx512_targets() of a child process (this one has not imported numpy yet, and must not
    before the variable is set); None when the child fails."""
    code = "from gradserve.server.numpy_cpu import avx512_targets; print(*avx512_targets())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=True, env={**os.environ, ENV: ""})
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.split()
