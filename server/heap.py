"""The C allocator's heap, tuned for a process that allocates and frees large tensors per call.

Every call that decodes, computes and encodes a 1 MiB tensor makes about seven 1 MiB buffers.
Left alone, glibc adapts its thresholds (its "dynamic threshold"): a block from 128 KiB up gets a
mapping of its own, unmapped at free, until such a block is freed; then blocks of that size (up
to 32 MiB) come from the heap, and the heap keeps up to twice that size free at its top. The
call's ~6 MiB pass the 2 MiB kept, so the top goes back to the system after each call and the
next call faults it in again: ~1,500 page faults, ~5 ms of a 1 MiB call's ~7 ms here
(about 300 us per MiB, against 20 us for reusing pages). `keep_freed(n)` fixes the thresholds
instead (mallopt M_TRIM_THRESHOLD = n, M_MMAP_THRESHOLD = n / 2): each heap keeps up to `n`
freed bytes at its top for the next call, and a block of `n / 2` or more always gets a mapping
of its own, returned at free, so what a heap keeps is bounded by `n` (glibc's own rule lets it
grow to 64 MiB after one 32 MiB block). Setting any threshold turns the dynamic rule off:
`keep_top_pad(n)` (mallopt M_TOP_PAD) alone leaves every block from 128 KiB up mapped, and
faulted in, afresh on each allocation. Elsewhere (musl, macOS) these do nothing.

glibc also gives each thread that allocates concurrently a heap (arena) of its own, up to eight
per core, and memory freed in one arena is reused only by threads on that arena: a server whose
worker threads each once ran a call near its byte budget keeps about that much per thread.
`limit_arenas(n)` (mallopt M_ARENA_MAX) caps the arenas, so freed memory is shared; with the GIL,
threads rarely allocate at the same moment, so the cap costs nothing measurable here.

Even with few arenas, memory freed inside a heap stays resident: glibc returns only the top of a
heap, and a call that parsed a 2.7 MB graph and built millions of short-lived objects leaves
its pages spread between chunks still in use, so resident memory ratchets up by tens of MiB per
such call. `Trimmer` returns those pages (glibc malloc_trim, which releases free pages in the
middle of heaps too): after a call, when the process's resident memory has grown a step since
it last trimmed (a burst of large calls), and on the reaper's sweep when any call ended since
the last trim (a call's request is freed only after its handler returns, so the sweep is what
catches a large request's parse). Resident memory between calls stays close to what is live.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# glibc refuses a larger M_MMAP_THRESHOLD (half its 64 MiB heap size on 64-bit builds).
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


def keep_top_pad(nbytes: int) -> bool:
    """Keep up to `nbytes` of freed memory per heap for reuse; False where not supported."""
    if nbytes <= 0:
        return False
    return _mallopt(M_TOP_PAD, min(nbytes, 2**31 - 1), "malloc top pad")


def keep_freed(nbytes: int) -> bool:
    """Let each heap keep up to `nbytes` freed bytes at its top for reuse (M_TRIM_THRESHOLD),
    and give blocks of `nbytes / 2` or more a mapping of their own (M_MMAP_THRESHOLD, at most
    32 MiB), returned to the system at free; False where not supported or `nbytes` is 0 (glibc's
    dynamic thresholds stay)."""
    if nbytes <= 0:
        return False
    nbytes = min(nbytes, 2**31 - 1)
    mmap = min(nbytes // 2, MAX_MMAP_THRESHOLD)
    return (_mallopt(M_MMAP_THRESHOLD, mmap, "malloc mmap threshold")
            and _mallopt(M_TRIM_THRESHOLD, nbytes, "malloc trim threshold"))


def limit_arenas(arenas: int) -> bool:
    """Let the allocator use at most `arenas` heaps (call before threads start); False where
    not supported or `arenas` is 0 (the allocator's default)."""
    if arenas <= 0:
        return False
    return _mallopt(M_ARENA_MAX, arenas, "malloc arenas")


# A call's end looks at resident memory at most this often (seconds): reading it costs ~6 us
# (`resident_bytes`; ~45 us when the file was opened for each read), and growing it by a step
# (16 MiB: at least ~5 ms of page faults) takes far longer than this.
CHECK_INTERVAL = 0.005


class Trimmer:
    """Return the C heaps' free pages to the system: after a call once resident memory has grown
    `step` bytes since the last trim (`__call__`; looked at no more than every `CHECK_INTERVAL`
    seconds), and on each sweep that follows calls (`sweep`); a no-op where glibc's malloc_trim
    or /proc is missing.

    Args:
        step: bytes of growth that trigger a trim; 0 turns trimming off.
        keep: freed bytes to leave at the top of the main heap (`--malloc-top-pad`).
    """

    def __init__(self, step: int, keep: int = 0):
        self.step = step
        self.keep = max(0, keep)
        self.trims = 0
        trim = None
        if step > 0:
            try:
                trim = _libc().malloc_trim
            except AttributeError:  # not glibc (or no libc found: None)
                trim = None
        if trim is not None:
            trim.argtypes = (ctypes.c_size_t,)
            trim.restype = ctypes.c_int
        self._trim = trim if trim is not None and resident_bytes() is not None else None
        self._floor = resident_bytes() or 0
        self._calls = False  # a call ended since the last trim
        self._next_check = 0.0  # monotonic time from which a call's end looks at memory again
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._trim is not None

    def __call__(self) -> bool:
        """After a call: trim if resident memory grew a step since the last trim; True when it
        trimmed.

        Cheap when it does not trim: a clock read, and at most every `CHECK_INTERVAL` one read
        of /proc/self/statm (~6 us, `resident_bytes`); a trim runs outside the GIL and takes
        milliseconds (4 ms with nothing to return, 33 ms returning 76 MiB of a 206 MiB
        fragmented heap, on the loaded 2-core machine). Thread-safe: a trim already running
        elsewhere makes this call return False at once.
        """
        if self._trim is None:
            return False
        self._calls = True
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_INTERVAL
        rss = resident_bytes()
        if rss is None:
            return False
        if rss < self._floor:
            self._floor = rss  # memory went back by itself (unmapped): measure growth from here
        if rss < self._floor + self.step:
            return False
        return self._run(rss)

    def sweep(self) -> bool:
        """On a periodic sweep: trim if any call ended since the last trim (their requests and
        replies are freed by now); True when it trimmed."""
        if self._trim is None or not self._calls:
            return False
        rss = resident_bytes()
        return rss is not None and self._run(rss)

    def now(self) -> bool:
        """Trim now (after calls were dropped to relieve memory); True when it trimmed."""
        if self._trim is None:
            return False
        rss = resident_bytes()
        return rss is not None and self._run(rss)

    def _run(self, rss: int) -> bool:
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._calls = False
            self._trim(self.keep)
            self.trims += 1
            after = resident_bytes()
            self._floor = rss if after is None else after
            log.debug("malloc trim: resident %d -> %d bytes", rss, self._floor)
        finally:
            self._lock.release()
        return True


def resident_bytes() -> int | None:
    """This process's resident memory in bytes (Linux's /proc/self/statm), or None.

    Read with one `pread` of a descriptor kept open (per process: a forked child opens its
    own): opening, reading and closing the file each time cost ~45 us on the loaded 2-core VM
    against ~6 us, and the trimmer looks after most 1 MiB calls (`Trimmer.__call__`), the
    intake while requests arrive."""
    fd = _statm
    try:
        if fd is None:
            fd = _open_statm()
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc; no pread (Windows)
        return None


def _open_statm() -> int:
    """/proc/self/statm's descriptor, opened once per process (threads may race to it)."""
    global _statm
    with _statm_lock:
        if _statm is None:
            _statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        return _statm


def _forget_statm() -> None:
    """In a forked child: the inherited descriptor still reads the parent's /proc/self (and the
    lock may have been held by a thread the child does not have)."""
    global _statm, _statm_lock
    _statm_lock = threading.Lock()
    fd, _statm = _statm, None
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


# /proc/self/statm's descriptor in this process (None: not opened yet, or a forked child)
_statm: int | None = None
_statm_lock = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_statm)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _libc() -> Any:
    """The C library (its ctypes functions release the GIL), or None."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def _mallopt(param: int, value: int, what: str) -> bool:
    try:
        mallopt = _libc().mallopt
    except AttributeError:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(param, value))
    log.debug("%s %d: %s", what, value, "set" if done else "refused")
    return done
