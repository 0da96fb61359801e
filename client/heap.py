"""The client process's C heap, for programs that move large tensors (opt-in).

Sending a 1 MiB tensor and reading its 1 MiB gradient back makes several 1 MiB buffers in the
client per step (the request's bytes, the reply's, the decoded arrays). Left alone, glibc adapts
its thresholds to the largest block freed so far (a 1 MiB block: the heap keeps 2 MiB free at
its top), so the step's ~4-6 MiB go back to the system at every step and the next step faults
them in again: on the 2-core reference machine ~1,250 page faults a step, 5.3-6.2 ms of the
client's CPU of a step's 10.6-11.3 ms (x = tensor(1 MiB, requires_grad=True); (x ** 2).sum()
.backward(); x.grad.numpy()), against ~2 faults, 2.5-2.9 ms and 7.2-8.1 ms with
`keep_freed_memory()` (2026-12-07). The servers keep their heaps so by default
(`gradserve serve --malloc-keep`); a client process's heap is the program's own, so this is
asked for, never done on import.

The same without code, for any process started from a shell (glibc 2.26 or newer):
`GLIBC_TUNABLES=glibc.malloc.trim_threshold=8388608:glibc.malloc.mmap_threshold=4194304`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import operator
from typing import Any

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses a larger M_MMAP_THRESHOLD (half its 64 MiB heap size on 64-bit builds).
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
_MAX_KEEP = 2**31 - 1  # mallopt takes an int

DEFAULT_KEEP = 8 * 1024 * 1024


def keep_freed_memory(nbytes: int = DEFAULT_KEEP) -> bool:
    """Let this process's C heap keep up to `nbytes` of freed memory for reuse instead of
    returning it to the system after each large tensor (glibc's `mallopt` M_TRIM_THRESHOLD),
    and give blocks of `nbytes / 2` or more (at most 32 MiB) a mapping of their own, returned
    at free (M_MMAP_THRESHOLD), as `gradserve serve --malloc-keep` does for the server.

    Process-wide and for the rest of the process's life (glibc's adaptive thresholds do not
    come back). It bounds what each heap keeps at its top by `nbytes`, where glibc's own rule
    keeps up to 64 MiB after a 32 MiB block; the trade: arrays of `nbytes / 2` or more that
    the program itself allocates again and again are then mapped afresh each time.

    Returns:
        True when glibc took both settings; False where the C library has no `mallopt` (musl,
        macOS, Windows: nothing changes).

    Raises:
        TypeError: `nbytes` is not an integer.
        ValueError: `nbytes` is not positive.
    """
    nbytes = operator.index(nbytes)
    if nbytes <= 0:
        raise ValueError(f"keep_freed_memory: nbytes must be positive, got {nbytes}")
    keep = min(nbytes, _MAX_KEEP)
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, min(keep // 2, _MAX_MMAP_THRESHOLD))
                and mallopt(_M_TRIM_THRESHOLD, keep))


def _mallopt() -> Any:
    """The C library's `mallopt`, or None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
