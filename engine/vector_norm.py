"""torch's CPU vector norm (`linalg.vector_norm`, `norm`), bit for bit, for float32 and float64.

torch's norm kernel (aten/src/ATen/native/cpu/ReduceOpsKernel.cpp) takes one of two loops, by
the order p and by how its TensorIterator sees the input (`cascade._layout`: reduced dims
innermost, in memory order, neighbours merged):

- p = 2 over one contiguous innermost dim (`is_reduce_lastdim`: a C-contiguous tensor's last
  dims, or all of them): a vectorised loop per row. Each row is read as whole vectors of
  `VEC` lanes (8 floats, 4 doubles: the AVX2 width, as cascade's `REDUCE_VECTOR_BYTES`), and
  each lane accumulates its squares in order, the product rounded before the add (no fused
  multiply-add); the lanes are then added left to right; then the elements after the last whole
  vector are added, each `fma(x, x, acc)` — except that for float32 the compiled tail takes a
  first run of four of them as four rounded squares added in order (a 4-wide multiply), then
  the rest fused. The square root is IEEE's.
- everything else (another p, a dim that is not contiguous, several dims that do not merge):
  `binary_kernel_reduce`, one scalar accumulator per output, the reduced elements in the
  iterator's order, each term added as `acc + term` (p = 2: `x * x` rounded, no fma; p = 1:
  `|x|`; p = 0: `x != 0`; other p: `pow(|x|, p)`, glibc's pow/powf), then projected (`sqrt`,
  `pow(acc, 1 / p)` with 1 / p rounded to the dtype); p = +-inf is the max / min of `|x|`.
  A single output of at least GRAIN_SIZE elements is split over torch's intra-op threads:
  one contiguous range each, summed from zero, the per-thread results then combined in thread
  order.

A reduction over dims of size 1 only is `|x|` (`x != 0` for p = 0), as torch short-cuts it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import cascade
from .distributions import fma32, fma64

# The float32 tail's first run of elements that the compiled loop squares as one vector.
_TAIL_RUN = 4


def vector_norm(x: np.ndarray, p: float, axes: Sequence[int] | None,
                keepdims: bool, threads: int | None = None) -> np.ndarray:
    """torch's `linalg.vector_norm(x, p, axes, keepdims)` of a non-empty float32/float64 array
    whose strides are the tensor's (`axes`: sorted non-negative dims, None for all).

    Args:
        x: the input (float32 or float64, at least one element).
        p: the order (any float, +-inf included).
        axes: the reduced dims (None: all).
        keepdims: keep the reduced dims as size 1.
        threads: torch's intra-op thread count (default `cascade.THREADS`).

    Returns:
        The norm, an array of x's dtype and the reduction's shape.
    """
    threads = cascade.THREADS if threads is None else threads
    red = range(x.ndim) if axes is None else axes
    if all(x.shape[d] == 1 for d in red):  # torch: abs (or != 0), nothing reduced
        out = (x != 0).astype(x.dtype) if p == 0 else np.abs(x)
        if not keepdims:
            out = out.reshape([s for d, s in enumerate(x.shape) if d not in red])
        return out
    if any(x.strides[d] <= 0 for d in range(x.ndim) if x.shape[d] > 1):
        x = np.ascontiguousarray(x)  # (as cascade.torch_sum: a flipped or broadcast view)
    layout = cascade.iterator_layout(x, axes, keepdims)
    final_shape, it = layout[1], layout[2]
    reduced = [d for d in it if d[3]]  # the iterator's reduced dims, innermost first
    size = math.prod(d[0] for d in reduced)
    # one output per row, its elements in the iterator's order
    rows = cascade.iterator_view(x, layout).reshape(-1, size)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if p == 2 and len(reduced) == 1 and reduced[0][1] == x.dtype.itemsize:
            return _lastdim_two(rows).reshape(final_shape)
        return _scalar_loop(rows, p, threads).reshape(final_shape)


def _lastdim_two(rows: np.ndarray) -> np.ndarray:
    """The vectorised p = 2 loop over each row of (B, n) (see the module docstring)."""
    dt = rows.dtype.type
    b, n = rows.shape
    if dt is np.float32 and rows.size <= SMALL_NORM:
        return np.sqrt(np.array([_small_row32(row) for row in rows], np.float32))
    lanes = cascade.REDUCE_VECTOR_BYTES // rows.dtype.itemsize
    whole = n // lanes * lanes
    if whole:
        head = rows[:, :whole]
        squares = (head * head).reshape(b, whole // lanes, lanes)
        # each lane's squares in order: as (vectors, rows, lanes), C-ordered, numpy's reduce
        # over the outer axis adds whole slices in order (3x faster than over the middle one)
        acc = cascade.seq_sum(np.ascontiguousarray(squares.transpose(1, 0, 2)), 0)
        total = acc[:, 0].copy()
        for j in range(1, lanes):
            total += acc[:, j]
    else:
        total = np.zeros(b, dt)
    k = whole
    if dt is np.float32 and n - k >= _TAIL_RUN:
        for j in range(k, k + _TAIL_RUN):
            total += rows[:, j] * rows[:, j]
        k += _TAIL_RUN
    if k < n:
        total = (_fused_tail32 if dt is np.float32 else _fused_tail64)(rows[:, k:], total)
    return np.sqrt(total)


# At most this many float32 elements, the p = 2 vector loop runs on numpy scalars (`_small_row32`):
# ~0.1 us an operation against ~1 us a numpy call of the array path's few dozen.
SMALL_NORM = 64


def _small_row32(row: np.ndarray) -> np.float32:
    """`_lastdim_two`'s sum of squares of one float32 row, on numpy float32 scalars (each
    operation rounded as float32's own); the fused steps are `_fused_tail32`'s on floats."""
    lanes = cascade.REDUCE_VECTOR_BYTES // 4
    items = list(row)
    n = len(items)
    whole = n // lanes * lanes
    acc = [np.float32(0)] * lanes
    for k in range(0, whole, lanes):
        for j in range(lanes):
            acc[j] = acc[j] + items[k + j] * items[k + j]
    total = acc[0]
    for part in acc[1:]:
        total = total + part
    k = whole
    if n - k >= _TAIL_RUN:
        for v in items[k:k + _TAIL_RUN]:
            total = total + v * v
        k += _TAIL_RUN
    for v in items[k:]:
        wide = float(v) * float(v) + float(total)  # the square is exact in a double
        rounded = np.float32(wide)
        low = np.float64(wide).view(np.int64) & 0x1FFFFFFF
        if low == 0x10000000 or abs(wide) < 2.0 ** -125:  # a tie, or subnormal: fma32
            rounded = fma32(np.array([v]), np.array([v]), np.array([total]))[0]
        total = rounded
    return total


def _fused_tail32(tail: np.ndarray, total: np.ndarray) -> np.ndarray:
    """`total = fma(x, x, total)` for each column x of float32 `tail` in turn. Each step is
    rounded from float64 (the square is exact there), which is the fused result unless the
    float64 sum fell on a float32 halfway point or below float32's normals: then the steps are
    redone with `fma32`."""
    squares = tail.astype(np.float64)
    squares *= squares
    acc = total
    suspect = False
    for j in range(tail.shape[1]):
        wide = squares[:, j] + acc
        acc = wide.astype(np.float32)
        low = wide.view(np.int64) & 0x1FFFFFFF  # the 29 mantissa bits float32 drops
        suspect = suspect or bool(((low == 0x10000000) | (np.abs(wide) < 2.0 ** -125)).any())
    if not suspect:
        return acc
    for j in range(tail.shape[1]):
        total = fma32(tail[:, j], tail[:, j], total)
    return total


def _fused_tail64(tail: np.ndarray, total: np.ndarray) -> np.ndarray:
    """`total = fma(x, x, total)` for each column x of float64 `tail` in turn."""
    for j in range(tail.shape[1]):
        total = fma64(tail[:, j], tail[:, j], total)
    return total


def _scalar_loop(rows: np.ndarray, p: float, threads: int) -> np.ndarray:
    """binary_kernel_reduce with the norm's ops over each row of (B, n)."""
    dt = rows.dtype.type
    if math.isinf(p):
        a = np.abs(rows)
        return np.max(a, axis=1) if p > 0 else np.min(a, axis=1)
    if p == 2:
        terms = rows * rows
    elif p == 1:
        terms = np.abs(rows)
    elif p == 0:
        terms = (rows != 0).astype(dt)
    else:
        terms = np.abs(rows)
        np.power(terms, _exponent(terms, p), out=terms)
    b, n = terms.shape
    if b == 1 and n >= cascade.GRAIN_SIZE and threads > 1:
        used = min(threads, -(-n // cascade.GRAIN_SIZE))
        total = np.zeros(1, dt)
        for begin, end in cascade._split(n, used):  # one range a thread, then in thread order
            total += _in_order(terms[:, begin:end])
    else:
        total = _in_order(terms)
    if p == 2:
        return np.sqrt(total)
    if p in (0, 1):
        return total
    return np.power(total, np.full(total.shape, dt(1) / dt(p), dt))  # (see `_exponent`)


def _exponent(terms: np.ndarray, p: float) -> np.ndarray:
    """`p` as an array numpy's power loop steps through with `terms`: then it calls the C
    library's pow/powf for every element, as torch does (for a scalar 2, 0.5 or -1 it would
    square, take the square root or divide). One row or column of it where `terms` is C- or
    F-ordered (numpy's inner loop then runs along it), else all of it."""
    b, n = terms.shape
    if terms.flags.c_contiguous:
        return np.full((1, n), p, terms.dtype)
    if terms.T.flags.c_contiguous:
        return np.full((b, 1), p, terms.dtype)
    return np.full(terms.shape, p, terms.dtype)


def _in_order(terms: np.ndarray) -> np.ndarray:
    """Each row's sum of (B, n) `terms` (a scratch array), left to right from +0."""
    zero = terms.dtype.type(0)
    if terms.T.flags.c_contiguous:  # (the terms of a strided reduced dim): reduce the outer axis
        return cascade.seq_sum(terms.T, 0) + zero
    # rows in memory: a running sum along each (a transposed copy costs more)
    return np.add.accumulate(terms, axis=1, out=terms)[:, -1] + zero
