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

import numpy as np

from . import cascade
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
    if cascade.VECTOR_BYTES != 32:  # measured with torch's AVX2 kernels only
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
