"""The C allocator's heap, tuned for a process that allocates and frees large tensors per call.

glibc returns freed memory at the top of a heap to the system as soon as more than a couple of
MiB are free, so every call that decodes, computes and encodes a 1 MiB tensor faults its pages
in anew (about 300 us per MiB here, against 20 us for reusing them). `keep_top_pad(n)` asks the
allocator (mallopt M_TOP_PAD) to keep `n` freed bytes at the top of each heap, so large tensors
reuse pages. Elsewhere (musl, macOS) it does nothing.

glibc also gives each thread that allocates concurrently a heap (arena) of its own, up to eight
per core, and memory freed in one arena is reused only by threads on that arena: a server whose
worker threads each once ran a call near its byte budget keeps about that much per thread.
`limit_arenas(n)` (mallopt M_ARENA_MAX) caps the arenas, so freed memory is shared; with the GIL,
threads rarely allocate at the same moment, so the cap costs nothing measurable here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TOP_PAD = -2  # glibc's malloc.h
M_ARENA_MAX = -8


def keep_top_pad(nbytes: int) -> bool:
    """Keep up to `nbytes` of freed memory per heap for reuse; False where not supported."""
    if nbytes <= 0:
        return False
    return _mallopt(M_TOP_PAD, min(nbytes, 2**31 - 1), "malloc top pad")


def limit_arenas(arenas: int) -> bool:
    """Let the allocator use at most `arenas` heaps (call before threads start); False where
    not supported or `arenas` is 0 (the allocator's default)."""
    if arenas <= 0:
        return False
    return _mallopt(M_ARENA_MAX, arenas, "malloc arenas")


def _mallopt(param: int, value: int, what: str) -> bool:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(param, value))
    log.debug("%s %d: %s", what, value, "set" if done else "refused")
    return done
