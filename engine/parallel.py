"""Large elementwise ops split over a few threads (numpy releases the GIL inside a ufunc loop).

An op whose forward is a plain numpy ufunc (`sin`, `exp`, `mul`, ...) computes each element on
its own, so cutting its arrays into row blocks and running the blocks at once gives the very
same bits as one call. `split_call` does that from `MIN_SPLIT_ELEMENTS` on (`MIN_ELEMENTS_CHEAP`
for memory-bound ufuncs such as `mul`): it allocates the result once
(no more memory than the unsplit op), runs one block in the calling thread and the others on a
small pool shared by every caller, and takes back a block the pool has not started yet, so a
busy pool never makes a caller wait idle. `call`, `mul` and `neg` split a ufunc call (a VJP
rule's product) the same way when it is large. Reductions keep torch's summation order (see
`cascade`): only a full float sum's per-thread ranges, independent in torch too, run at once
(`run_jobs`).

The thread count is `GRADSERVE_ENGINE_THREADS` (default: 2, or 1 on a process allowed one CPU;
1 turns splitting off), or `set_threads(n)` (the server's `--engine-threads`).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ENV_THREADS = "GRADSERVE_ENGINE_THREADS"

# An array this large is worth the paths below (a product written in place, `mul` through
# `call`), and other modules' in-place shortcuts.
MIN_ELEMENTS = 1 << 17
# Below this many result elements one thread is better than handing blocks to others: for a
# function like sin or exp (~1.5 ns an element for float32 here), measured on the 2-core server
# shared with gRPC's threads and other calls, a 256K-element one split over 2 threads took
# 20-100% more CPU and no less wall time (at best 370 -> 540 us for exp), a 512K one about as
# long, a 1M one ~25% less wall time for ~5% more CPU; and for the ufuncs below, which take
# about a nanosecond an element and are bound by memory, not the CPU, from `MIN_ELEMENTS_CHEAP`.
MIN_SPLIT_ELEMENTS = 1 << 20
MIN_ELEMENTS_CHEAP = 1 << 21
_CHEAP = frozenset((np.multiply, np.negative, np.absolute, np.sign, np.floor, np.ceil, np.trunc,
                    np.square, np.maximum, np.minimum, np.less, np.less_equal, np.greater,
                    np.greater_equal, np.equal, np.not_equal, np.logical_and, np.logical_or,
                    np.logical_xor, np.logical_not, np.isnan, np.isinf, np.isfinite))
# Block boundaries fall on multiples of this many rows, so every block starts at the same
# alignment (mod 64 bytes) as the whole array: numpy picks the same SIMD path for each block.
_ROW_QUANTUM = 64


def default_threads() -> int:
    """`GRADSERVE_ENGINE_THREADS` if set, else `min(2, os.cpu_count())`.

    Raises:
        ValueError: the variable is not a positive integer.
    """
    raw = os.environ.get(ENV_THREADS)
    if raw is None or raw == "":
        return min(2, _usable_cpus())
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_THREADS}={raw!r} is not a valid int") from None
    if n < 1:
        raise ValueError(f"{ENV_THREADS} must be positive, got {n}")
    return n


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. under taskset), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class _Pool:
    """The shared worker threads (created on first use) and the thread count."""

    def __init__(self, threads: int):
        self.threads = threads
        self.executor: ThreadPoolExecutor | None = None
        self.lock = threading.Lock()

    def get(self) -> ThreadPoolExecutor:
        executor = self.executor
        if executor is None:
            with self.lock:
                executor = self.executor
                if executor is None:
                    executor = self.executor = ThreadPoolExecutor(
                        max_workers=self.threads - 1, thread_name_prefix="gradserve-engine")
        return executor


def _initial_threads() -> int:
    try:
        return default_threads()
    except ValueError as exc:  # importing the engine must not fail on it: said, then ignored
        log.warning("%s; using %d thread(s)", exc, min(2, _usable_cpus()))
        return min(2, _usable_cpus())


_pool = _Pool(_initial_threads())


def threads() -> int:
    """How many threads one large elementwise op may use (1: no splitting)."""
    return _pool.threads


def set_threads(n: int) -> None:
    """Use `n` threads for large elementwise ops from now on (1 turns splitting off).

    Raises:
        ValueError: `n` is not a positive integer.
    """
    global _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"engine threads must be a positive integer, got {n!r}")
    old, _pool = _pool, _Pool(n)
    if old.executor is not None:
        old.executor.shutdown(wait=False)


def split_shape(ufunc: np.ufunc, args: Sequence[Any]) -> tuple[int, ...] | None:
    """The result shape of `ufunc(*args)` when the call is worth splitting: its array inputs
    share one shape (the others are scalars or 0-d) of at least `MIN_SPLIT_ELEMENTS` elements
    (`MIN_ELEMENTS_CHEAP` for a memory-bound ufunc) and enough rows; else None."""
    if _pool.threads < 2:
        return None
    need = MIN_ELEMENTS_CHEAP if ufunc in _CHEAP else MIN_SPLIT_ELEMENTS
    shape = None
    for a in args:
        if type(a) is np.ndarray and a.ndim:
            if shape is None:
                if a.size < need:
                    return None
                shape = a.shape
            elif a.shape != shape:
                return None  # broadcasting: left to numpy
    if shape is None or shape[0] < 2 * _ROW_QUANTUM:
        return None
    return shape


def call(ufunc: np.ufunc, *args: Any, out: np.ndarray | None = None) -> Any:
    """`ufunc(*args)`, split over threads (`split_call`) when large enough to be worth it.

    Args:
        ufunc: a numpy ufunc with one output.
        args: its inputs (arrays, numpy or Python scalars).
        out: an array to write the result into (as the ufunc's `out=`): of the result's shape
            and dtype, C-contiguous, and either one of `args` itself (in place, elementwise)
            or overlapping none of them.
    Returns:
        What `ufunc(*args)` returns, bit for bit (`out` when given).
    """
    for a in args:
        if type(a) is np.ndarray and a.size >= MIN_ELEMENTS:
            shape = split_shape(ufunc, args)
            if shape is not None:
                return split_call(ufunc, args, shape, out)
            break
    return ufunc(*args) if out is None else ufunc(*args, out=out)


def mul(a: Any, b: Any) -> Any:
    """`a * b`, split over threads (`call`) when an operand is a large array (a VJP rule's
    product in the numpy namespace); anything else, small arrays, numpy scalars (whose
    operators are much faster than a ufunc call) and engine Tensors, takes the operator.

    Returns:
        What `a * b` returns, bit for bit.
    """
    if (type(a) is np.ndarray and a.size >= MIN_ELEMENTS
            or type(b) is np.ndarray and b.size >= MIN_ELEMENTS):
        return call(np.multiply, a, b)
    return a * b


def mul_into(a: Any, fresh: Any) -> Any:
    """`a * fresh` (as `mul`), written into `fresh` when it is an array the caller has just
    made and nothing else refers to, of the product's shape and dtype: one allocation and one
    pass fewer than `mul(a, fresh)`, the same bits (an elementwise product, same operand order).

    Returns:
        What `a * fresh` returns, bit for bit.
    """
    if (type(fresh) is np.ndarray and fresh.size >= MIN_ELEMENTS and fresh.flags.writeable
            and fresh.flags.c_contiguous and fresh.base is None
            and (type(a) is not np.ndarray or a.shape == fresh.shape)
            and np.result_type(a, fresh) == fresh.dtype):
        if type(a) is np.ndarray and a.dtype == fresh.dtype and not any(a.strides) and (
                a[(0,) * a.ndim] == 1):
            # `a` is one 1 broadcast (a sum's gradient, expanded): 1 * v is v, bit for bit
            # (fresh is computed, so a NaN in it is already quiet), and no pass is needed
            return fresh
        return call(np.multiply, a, fresh, out=fresh)
    return mul(a, fresh)


def neg(a: Any) -> Any:
    """`-a`, split over threads when `a` is a large array (see `mul`)."""
    if type(a) is np.ndarray and a.size >= MIN_ELEMENTS:
        return call(np.negative, a)
    return -a


def split_call(ufunc: np.ufunc, args: Sequence[Any], shape: tuple[int, ...],
               out: np.ndarray | None = None) -> Any:
    """`ufunc(*args)` computed in row blocks on several threads, bit for bit the same.

    Args:
        ufunc: a numpy ufunc with one output.
        args: its inputs: arrays of exactly `shape`, or scalars / 0-d arrays.
        shape: the result's shape, as `split_shape(ufunc, args)` gave it.
        out: the array to write into instead of a new one (see `call`).
    Returns:
        The result array, as `ufunc(*args)` would give it.
    """
    pool = _pool
    n_blocks = pool.threads
    rows = shape[0]
    step = -(-rows // n_blocks)
    step = -(-step // _ROW_QUANTUM) * _ROW_QUANTUM
    bounds = [(lo, min(lo + step, rows)) for lo in range(0, rows, step)]
    full = tuple(type(a) is np.ndarray and a.ndim > 0 for a in args)
    # The result's dtype, from the same dtypes on one row (ufunc type resolution reads dtypes,
    # never values); a failure raises here as the unsplit call would.
    probe = ufunc(*[a[:1] if f else a for a, f in zip(args, full)])
    if out is None:
        result = np.empty(shape, dtype=probe.dtype)
    elif out.dtype != probe.dtype or out.shape != tuple(shape):
        raise ValueError(f"out is {out.dtype}{out.shape}, the result {probe.dtype}{shape}")
    else:
        result = out

    def block(lo: int, hi: int) -> Callable[[], Any]:
        parts = [a[lo:hi] if f else a for a, f in zip(args, full)]
        target = result[lo:hi]
        return lambda: ufunc(*parts, out=target)

    run_jobs([block(lo, hi) for lo, hi in bounds])
    return result


def run_jobs(jobs: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run independent `jobs` at once: the first in the calling thread, the others on the pool.

    A job the pool has not started when the caller gets to it is taken back and run in the
    caller, so a busy pool never makes the caller wait idle. Each job runs in a copy of the
    caller's context (np.errstate, a context variable, holds in the pool's threads too). With
    one thread (`threads() == 1`) or a single job they all run here, in order.

    Args:
        jobs: functions of no arguments, independent of each other.
    Returns:
        Their results, in the order of `jobs`.
    Raises:
        The first job's error (in job order) once every started job has finished.
    """
    pool = _pool
    if len(jobs) < 2 or pool.threads < 2:
        return [job() for job in jobs]
    executor = pool.get()
    futures: list[tuple[Future[Any], Callable[[], Any]]] = []
    for job in jobs[1:]:
        try:
            future = executor.submit(contextvars.copy_context().run, job)
        except RuntimeError:  # the pool was shut down (interpreter exit): run it here
            future = Future()
            try:
                future.set_result(job())
            except BaseException as exc:  # noqa: BLE001 - raised below, as a job's error
                future.set_exception(exc)
        futures.append((future, job))
    results: list[Any] = [None] * len(jobs)
    first_error: BaseException | None = None
    try:
        results[0] = jobs[0]()
    except BaseException as exc:  # noqa: BLE001 - re-raised below once the jobs are done
        first_error = exc
    for i, (future, job) in enumerate(futures, 1):
        try:
            if future.cancel():  # not started: run it here rather than wait behind others
                if first_error is None:
                    results[i] = job()
            else:
                results[i] = future.result()
        except BaseException as exc:  # noqa: BLE001 - the first error wins, as in one call
            if first_error is None:
                first_error = exc
    if first_error is not None:
        raise first_error
    return results
