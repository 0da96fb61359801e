"""The C allocator's heap, tuned for a process that allocates and frees large tensors per call.

glibc returns freed memory at the top of a heap to the system as soon as more than a couple of
MiB are free, so every call that decodes, computes and encodes a 1 MiB tensor faults its pages
in anew (about 300 us per MiB here, against 20 us for reusing them). `keep_top_pad(n)` asks the
allocator (mallopt M_TOP_PAD) to keep `n` freed bytes at the top of each heap, so large tensors
reuse pages. Elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TOP_PAD = -2  # glibc's malloc.h


def keep_top_pad(nbytes: int) -> bool:
    """Keep up to `nbytes` of freed memory per heap for reuse; False where not supported."""
    if nbytes <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_TOP_PAD, min(nbytes, 2**31 - 1)))
    log.debug("malloc top pad %d bytes: %s", nbytes, "set" if done else "refused")
    return done
