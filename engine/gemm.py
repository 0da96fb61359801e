"""torch's CPU float32 matrix product, bit for bit, for the shapes whose order is known.

torch 2.13 sends a float32 `mm`/`addmm` (and `matmul`/`linear` when they come down to one of
them) to MKL's `sgemm`. Which kernel MKL runs, and so the order of the additions, depends on the
shape; numpy's OpenBLAS adds in yet another order, so the last bits differ. Measured against
torch 2.13.0 (MKL 2024.2, AVX2, AMD EPYC, 2 threads) with probes that reveal the summation tree
of each output element (two products of +-2**40 among ones: the result counts the terms added
after the two meet) and hundreds of random shapes (docs/internals.md "Matrix products"):

- with n rows (4 or 8, or 12 and more) and m >= 12 columns in the result, every element is a
  chain of fused multiply-adds `acc = fma(x[i, t], y[t, j], acc)` over k, from 0, in blocks:
  one block up to k = 192; two halves of k // 2 up to k = 384 (an odd k leaves its last term as
  a third block of one); beyond that, blocks of 192 and the rest. Each block starts from 0 and
  is added to the result in float32; `addmm`'s bias (beta = alpha = 1) is added to the first.
  This holds whatever the operands' strides (nn, nt, tn, tt).
- other shapes go through other kernels (non-fused sequential sums, several accumulators, gemv
  for one column), and with 5-11 rows the rows past a multiple of 4 depend on how torch's
  threads split the work; those are not reproduced and stay numpy's `matmul`.

The FMA is float64 arithmetic (a float32 product is exact there) rounded to float32, with the
rare sums that land exactly halfway between two float32s redone exactly (`distributions`' round
to odd); when products could fall below float32's normal range every step is an exact `fma32`.
The chain costs a few numpy passes over the n x m result per term of k (about 3-12 ns per
multiply-add against BLAS's 0.05-0.2), so it runs only when n * m * k is at most `EXACT_WORK`
(2**20 unless `set_exact_work` changes it; 0 turns it off): above that, numpy's BLAS, whose
last bits then differ from torch's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import cascade, mkl
from .distributions import _add_round_odd, fma32

KC = 192  # MKL's k block for these kernels, measured
_F32 = np.float32
_LOW29 = 0x1FFFFFFF  # the float64 mantissa bits float32 drops
_HALF29 = 0x10000000  # ...when they make the value a float32 midpoint
_BAND_ELEMENTS = 1 << 15  # result elements per band of rows (float64 buffers of 256 KiB)
EXACT_WORK = 1 << 20  # the largest n * m * k done exactly (set_exact_work); ~3-12 ms here


def set_exact_work(n: int) -> None:
    """Set the largest n * m * k the exact product is used for.

    Args:
        n: multiply-adds; 0 makes every product numpy's.

    Raises:
        ValueError: if n is negative.
    """
    global EXACT_WORK
    if n < 0:
        raise ValueError(f"exact matmul work must be >= 0, got {n}")
    EXACT_WORK = int(n)


def k_blocks(k: int) -> list[int]:
    """The lengths of the k blocks MKL's kernel sums separately, in order."""
    if k <= KC:
        return [k]
    if k <= 2 * KC:
        half = k // 2
        return [half, half, 1] if k % 2 else [half, half]
    return [KC] * (k // KC) + ([k % KC] if k % KC else [])


def reproducible(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether torch's order is known for x @ y (2-D float32) and within `EXACT_WORK`."""
    if x.dtype != _F32 or y.dtype != _F32 or x.ndim != 2 or y.ndim != 2:
        return False
    n, k = x.shape
    m = y.shape[1]
    if cascade.MKL_AVX512:  # measured where MKL runs no AVX-512 code path only
        return False
    rows_known = n >= 12 or (n >= 4 and n % 4 == 0)  # 5-11 rows: split over torch's threads
    return rows_known and m >= 12 and 0 < k and n * m * k <= EXACT_WORK


def _chain(x64: np.ndarray, y64: np.ndarray, acc: np.ndarray | None, tiny: bool) -> np.ndarray:
    """float32 `acc = fma(x[:, t], y[t], acc)` for every t in order (acc None: from 0)."""
    n, k = x64.shape
    m = y64.shape[1]
    buf = np.empty((n, m), np.float64)
    bits = buf.view(np.int64)
    low = np.empty((n, m), np.int64)
    out = np.zeros((n, m), _F32) if acc is None else acc
    for t in range(k):
        col, row = x64[:, t:t + 1], y64[t]
        if tiny:  # products may be subnormal in float32: the general exact FMA
            out = fma32(col.astype(_F32), row.astype(_F32), out)
            continue
        np.multiply(col, row, out=buf)
        np.add(buf, out, out=buf)
        np.bitwise_and(bits, _LOW29, out=low)
        halfway = low == _HALF29
        if halfway.any():
            p = (col * row)[halfway]
            exact = _add_round_odd(p, out[halfway].astype(np.float64))
            np.copyto(out, buf, casting="same_kind")
            out[halfway] = exact.astype(_F32)
        else:
            np.copyto(out, buf, casting="same_kind")
    return out


def _may_be_tiny(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether some product x[i, t] * y[t, j] can have bits below 2**-149: then a partial sum
    may be inexact in float64 and subnormal in float32, a double rounding the midpoint test
    misses."""
    def min_exponent(a: np.ndarray) -> int | None:
        mag = np.abs(a[(a != 0) & np.isfinite(a)])  # inf and nan propagate as in an FMA
        if mag.size == 0:
            return None
        return int(np.frexp(mag.min())[1])
    ex, ey = min_exponent(x), min_exponent(y)
    if ex is None or ey is None:
        return False
    # a float32 with exponent e (frexp) is a multiple of 2**(e - 24); the product of two such
    # is a multiple of 2**(ex + ey - 48), exact in float32 subnormals if that is >= 2**-149
    return ex + ey - 48 < -149


def torch_mm(x: np.ndarray, y: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """torch's float32 `mm(x, y)` (or `addmm(bias, x, y)`) bit for bit; call only when
    `reproducible(x, y)`.

    Args:
        x: (n, k) float32, any strides.
        y: (k, m) float32, any strides.
        bias: float32, broadcastable to (n, m), added as torch's addmm with beta = alpha = 1.

    Returns:
        The (n, m) float32 product.
    """
    n, m = x.shape[0], y.shape[1]
    out = np.empty((n, m), _F32)
    full_bias = None if bias is None else np.broadcast_to(bias, (n, m))
    rows = max(1, _BAND_ELEMENTS // m)  # a band of rows at a time: the buffers stay in cache
    with np.errstate(over="ignore", invalid="ignore"):
        tiny = _may_be_tiny(x, y)
        y64 = y.astype(np.float64)
        for r in range(0, n, rows):
            band = None if full_bias is None else full_bias[r:r + rows]
            out[r:r + rows] = _blocks(x[r:r + rows].astype(np.float64), y64, band, tiny)
    return out


def _blocks(x64: np.ndarray, y64: np.ndarray, bias: np.ndarray | None, tiny: bool) -> np.ndarray:
    """The k blocks' chains, each from 0, added in order; the bias to the first."""
    total: np.ndarray | None = None
    start = 0
    for length in k_blocks(x64.shape[1]):
        part = _chain(x64[:, start:start + length], y64[start:start + length], None, tiny)
        if total is None:
            total = part if bias is None else np.add(part, bias, dtype=_F32)
        else:
            total += part
        start += length
    assert total is not None  # k >= 1: at least one block
    return total


# --- MKL: torch's own call ------------------------------------------------------------------------


def _elem_strides(a: np.ndarray) -> tuple[int, ...] | None:
    """a's strides in elements as torch's would be, or None when torch could not have them."""
    size = a.itemsize
    if any(s % size or s < 0 for s in a.strides):
        return None
    return tuple(s // size for s in a.strides)


def _operand(a: np.ndarray, rows: int, cols: int, transpose_c: bool) -> tuple[np.ndarray, bool]:
    """torch's addmm_impl_cpu_ casting one operand (rows x cols, read through `transpose_c`):
    as it is (column-major), transposed (row-major), or a contiguous copy. Returns the array
    and whether BLAS reads it transposed."""
    st = _elem_strides(a)
    inner, outer = (1, 0) if transpose_c else (0, 1)
    if st is not None:
        if st[inner] == 1 and st[outer] >= max(1, rows):
            return a, False
        if st[outer] == 1 and st[inner] >= max(1, cols):
            return a, True
    return np.ascontiguousarray(a), not transpose_c


def mkl_addmm(x: np.ndarray, y: np.ndarray, c: np.ndarray | None, alpha: float = 1.0,
              beta: float = 0.0) -> np.ndarray | None:
    """torch's CPU `addmm` (or `mm`: c None, beta 0) through MKL with the arguments torch passes.

    torch's `addmm_impl_cpu_` copies the bias into a fresh row-major result, then calls
    `?gemm` column-major, swapping the operands (result transposed) unless the result has one
    column, and reading each operand as it is, transposed, or as a contiguous copy, from its
    strides; `cpublas::gemm` then normalises the leading dimensions of unit dims. The same
    call on the same library rounds the same way, whatever the shape.

    Args:
        x: (n, k) float32 or float64, any strides.
        y: (k, m), x's dtype.
        c: the bias, broadcastable to (n, m) (read only when beta != 0).
        alpha, beta: torch's scalars.

    Returns:
        The (n, m) result, or None when MKL is absent or BLAS would refuse the call (the
        caller then computes it another way).
    """
    if not mkl.available() or x.dtype not in (_F32, np.float64) or y.dtype != x.dtype:
        return None
    n, k = x.shape
    m = y.shape[1]
    if beta != 0 and c is not None:
        out = np.array(np.broadcast_to(c, (n, m)), dtype=x.dtype, order="C")
    else:
        out = np.empty((n, m), x.dtype)
        beta = 0.0
    if out.size == 0:
        return out
    if k == 0:  # torch: no product; beta * input (or zeros)
        return out * out.dtype.type(beta) if beta != 0 else np.zeros_like(out)
    # the arguments depend only on the operands' shapes and strides (the result is a fresh
    # row-major array): worked out once per layout (`_addmm_plan`), then looked up
    key = (x.shape, x.strides, y.shape, y.strides, out.strides, x.dtype.char)
    plan = _PLANS.get(key, _NO_PLAN)
    if plan is _NO_PLAN:
        plan = _addmm_plan(x, y, out)
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    if plan is None:
        return None  # torch's own loops (gemm_stub) or sizes BLAS cannot take
    transpose_c, copy_a, copy_b, ta, tb, bm, bn, lda, ldb, ldc = plan
    a, b = (y, x) if transpose_c else (x, y)
    if copy_a:
        a = np.ascontiguousarray(a)
    if copy_b:
        b = np.ascontiguousarray(b)
    mkl.gemm(ta, tb, bm, bn, k, alpha, a, lda, b, ldb, beta, out, ldc)
    return out


# `mkl_addmm`'s arguments by layout: (shapes, strides, dtype) -> `_addmm_plan`'s
# answer. At most MAX_PLANS entries (then it starts over), so layouts from the wire cannot grow it.
_PLANS: dict[tuple[Any, ...], tuple[Any, ...] | None] = {}
MAX_PLANS = 256
_NO_PLAN: Any = object()


def _addmm_plan(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> tuple[Any, ...] | None:
    """torch's `addmm_impl_cpu_` arguments for x @ y into the row-major `out`: (result
    transposed, copy BLAS's first operand, copy its second, their transpose flags, BLAS's m and
    n, lda, ldb, ldc), or None where torch does not call BLAS (see `mkl_addmm`)."""
    k = x.shape[1]
    m = y.shape[1]
    n = x.shape[0]
    # a row-major result is column-major when it has one column, else computed transposed
    transpose_c = m != 1
    m1, m2 = (y, x) if transpose_c else (x, y)
    bm, bn = (m, n) if transpose_c else (n, m)  # BLAS's m and n
    a, ta = _operand(m1, bm, k, transpose_c)
    b, tb = _operand(m2, k, bn, transpose_c)
    lda = a.strides[1 if ta == transpose_c else 0] // a.itemsize
    ldb = b.strides[1 if tb == transpose_c else 0] // b.itemsize
    ldc = out.strides[0 if transpose_c else 1] // out.itemsize
    # cpublas::gemm's normalize_last_dims
    if bn == 1:
        ldc = bm
    if ta:
        if bm == 1:
            lda = k
    elif k == 1:
        lda = bm
    if tb:
        if k == 1:
            ldb = bn
    elif bn == 1:
        ldb = k
    if lda < max(1, k if ta else bm) or ldb < max(1, bn if tb else k) or ldc < max(1, bm):
        return None  # torch's own loops (gemm_stub), not BLAS
    if max(bm, bn, k, lda, ldb, ldc) > 2**31 - 1:
        return None
    return (transpose_c, a is not m1, b is not m2, ta, tb, bm, bn, lda, ldb, ldc)


def _items_contiguous_or_transposed(a: np.ndarray) -> bool:
    """torch's batch_items_contiguous_or_transposed on a 3-D operand."""
    st = _elem_strides(a)
    if st is None:
        return False
    sizes = a.shape
    return (st[2] == 1 and st[1] >= sizes[2]) or (st[1] == 1 and st[2] >= sizes[1])


def _rows_contiguous(a: np.ndarray) -> bool:
    st = _elem_strides(a)
    return st is not None and st[2] == 1 and st[1] >= a.shape[2]


def small_bmm(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """torch's `baddbmm_cpu_kernel` for bmm: per element a sequential sum from 0 over k of
    products, each rounded in the dtype (compiled without FMA), as torch does below 400
    multiply-adds per matrix. The products go through one scratch buffer of at most
    `_BAND_ELEMENTS` elements (the result is the only allocation that grows with the batch)."""
    b, n, k = x.shape
    m = y.shape[2]
    out = np.zeros((b, n, m), x.dtype)
    step = max(1, _BAND_ELEMENTS // max(1, n * m))
    for start in range(0, b, step):
        xs, ys, acc = x[start:start + step], y[start:start + step], out[start:start + step]
        scratch = np.empty(acc.shape, x.dtype)
        for t in range(k):
            np.multiply(xs[:, :, t:t + 1], ys[:, t:t + 1, :], out=scratch)
            acc += scratch
    return out


def torch_bmm(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """torch's CPU float `bmm` (bmm_out_or_baddbmm_) bit for bit, or None (no MKL above 400
    multiply-adds per matrix, or a case whose order is not known).

    Below 400 multiply-adds per matrix torch runs its own loop (`small_bmm`); above, when both
    operands' matrices are contiguous or transposed, MKL's `cblas_?gemm_batch` (one `?gemm` for
    a batch of one), row-major, each operand transposed when its strides say so.
    """
    if x.dtype not in (_F32, np.float64) or y.dtype != x.dtype:
        return None
    b, n, k = x.shape
    m = y.shape[2]
    if k * n * m < 400:  # torch's own loop: no MKL needed
        return small_bmm(x, y)
    if not mkl.available():
        return None
    out = np.empty((b, n, m), x.dtype)
    if out.size == 0:
        return out
    if not (_items_contiguous_or_transposed(x) and _items_contiguous_or_transposed(y)) or (
            min(n, k, m) == 1 and not (_rows_contiguous(x) and _rows_contiguous(y))):
        # torch then splits the batch into mm calls, or for some shapes multiplies contiguous
        # copies; with a unit dim a transposed operand rounds otherwise too (measured; the
        # rules are not known): not reproduced
        return None
    if max(b, n, m, k) >= 2**31:
        return None
    sx, sy = _elem_strides(x), _elem_strides(y)
    assert sx is not None and sy is not None
    tx = sx[1] == 1 and sx[2] >= n
    ty = sy[1] == 1 and sy[2] >= k
    lda = sx[2] if tx else sx[1]
    ldb = sy[2] if ty else sy[1]
    mkl.gemm_batch_rowmajor(tx, ty, n, m, k, x, sx[0], lda, y, sy[0], ldb, out)
    return out


def mkl_mv(a: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """torch's CPU float `mv` (addmv_out_cpu with beta 0) through MKL's `?gemv`, or None.

    A column-major matrix goes as it is ('n'), a row-major one transposed ('t'), anything else
    as a contiguous copy ('t'); `cpublas::gemv` sets lda = m for a single column. A vector
    stride BLAS refuses (not positive) is torch's own loop: None.
    """
    if not mkl.available() or a.dtype not in (_F32, np.float64) or v.dtype != a.dtype:
        return None
    n, k = a.shape
    out = np.empty(n, a.dtype)
    if n == 0:
        return out
    if k == 0:
        return np.zeros_like(out)
    sa, sv = _elem_strides(a), _elem_strides(v)
    if sv is None or sv[0] <= 0 or max(n, k) >= 2**31:
        return None
    def lda_ok(rows: int, cols: int, lda: int) -> bool:
        return cols == 1 or lda >= max(1, rows)
    if sa is not None and sa[0] == 1 and lda_ok(n, k, sa[1]):
        trans, m_, n_, lda = False, n, k, sa[1]
    elif sa is not None and sa[1] == 1 and lda_ok(k, n, sa[0]):
        trans, m_, n_, lda = True, k, n, sa[0]
    else:
        a = np.ascontiguousarray(a)
        trans, m_, n_, lda = True, k, n, k
    if n_ == 1:
        lda = m_
    if lda < max(1, m_) or lda >= 2**31:
        return None
    mkl.gemv(trans, m_, n_, a, lda, v, sv[0], out)
    return out


def mkl_dot(x: np.ndarray, y: np.ndarray) -> np.generic | None:
    """torch's CPU float `dot` through MKL's `?dot` (strides as they are), or None."""
    if not mkl.available() or x.dtype not in (_F32, np.float64) or y.dtype != x.dtype:
        return None
    sx, sy = _elem_strides(x), _elem_strides(y)
    if sx is None or sy is None or x.shape[0] >= 2**31:
        return None
    incx, incy = (1, 1) if x.shape[0] == 1 else (sx[0], sy[0])
    if incx == 0 or incy == 0:  # a broadcast vector: torch's own loop
        return None
    return x.dtype.type(mkl.dot(x, incx, y, incy))  # a 0-d result: a numpy scalar
