"""torch's CPU distributions over a `random.Generator`, in numpy, value for value.

Each function takes the generator and returns a new array in the order torch fills its result:
memory order (`fill`), which for a fresh tensor is C order. The transforms are torch's
(aten/src/ATen/core/TransformationHelper.h and DistributionsHelper.h; the kernels in
aten/src/ATen/native/cpu/DistributionTemplates.h, DistributionKernels.cpp; randperm in
aten/src/ATen/native/TensorFactories.cpp); see engine/random.py for the raw stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import DTypeLike

from gradserve.surface.layout import broadcast_arrays

from . import limits
from .random import Generator

_F32 = np.float32
_MASK24 = np.uint64(2 ** 24 - 1)
_MASK53 = np.uint64(2 ** 53 - 1)
_TWO_PI = 2.0 * np.pi
_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitter for float64


# --- fused multiply-add --------------------------------------------------------------------------
# torch's kernels are compiled with FMA contraction (x86-64 AVX2 builds): `u * (b - a) + a` and
# `value * std + mean` round once. numpy has no fma ufunc, so it is emulated exactly: the product
# split error-free (Dekker), the sum error-free (Knuth), the small parts added with rounding to odd
# (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums", 2008), one final rounding.


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = a * b
    ca, cb = _SPLIT * a, _SPLIT * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _add_round_odd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b rounded to odd: the exact sum when representable, else its neighbour whose last
    mantissa bit is 1."""
    s, e = _two_sum(a, b)
    s = np.asarray(s, np.float64).copy()
    fix = (e != 0) & ((s.view(np.int64) & 1) == 0)
    if fix.any():
        s[fix] = np.nextafter(s[fix], np.copysign(np.inf, e[fix]))
    return s


def fma64(a: np.ndarray, b: float | np.ndarray, c: float | np.ndarray) -> np.ndarray:
    """Correctly rounded float64 `a * b + c` (a an array, b and c numbers or arrays that
    broadcast to a's shape)."""
    a = np.asarray(a, np.float64)
    bb, cc = np.full_like(a, b), np.full_like(a, c)
    uh, ul = _two_prod(a, bb)
    th, tl = _two_sum(cc, uh)
    with np.errstate(invalid="ignore", over="ignore"):
        out = th + _add_round_odd(tl, ul)
    finite = np.isfinite(out)
    return out if finite.all() else np.where(finite, out, a * b + c)


def fma32(a: np.ndarray | float, b: np.ndarray | float, c: np.ndarray | float) -> np.ndarray:
    """Correctly rounded float32 `a * b + c` for float32 a, b, c (arrays or numbers, broadcast).

    The product is exact in float64 and the sum rounded there once; rounding that to float32 is
    then right except where the float64 sum falls exactly halfway between two float32s (or into
    float32's subnormals): only those few are redone with the sum rounded to odd.
    """
    if (type(a) is np.ndarray and type(b) is np.ndarray and type(c) is np.ndarray and a.ndim
            and a.shape == b.shape == c.shape and a.dtype == b.dtype == c.dtype == _F32):
        # the same values without asarray and broadcast_arrays (an optimizer's buffers)
        p = np.multiply(a, b, dtype=np.float64)
        cc = c.astype(np.float64)
    else:
        p = np.asarray(a, _F32).astype(np.float64) * np.asarray(b, _F32).astype(np.float64)
        cc = np.asarray(c, _F32).astype(np.float64)
        p, cc = broadcast_arrays(p, cc)
    s = p + cc
    low = s.view(np.int64) & 0x1FFFFFFF  # the 29 mantissa bits float32 drops
    redo = (low == 0x10000000) | (np.abs(s) < 2.0 ** -125)
    out = s.astype(_F32)
    if redo.any():
        if type(out) is not np.ndarray:  # 0-d operands: numpy scalars, no item assignment
            return _add_round_odd(np.reshape(p, 1), np.reshape(cc, 1)).astype(_F32)[0]
        out[redo] = _add_round_odd(p[redo], cc[redo]).astype(_F32)
    return out


def fill_order(shape: Sequence[int], strides: Sequence[int] | None) -> list[int] | None:
    """The axes in the order torch's TensorIterator visits a tensor of `shape` and `strides`
    (outermost memory dimension first), or None for C order (strides None: C-contiguous)."""
    if strides is None or len(shape) < 2:
        return None
    perm = sorted(range(len(shape)), key=lambda d: -abs(strides[d]) if shape[d] > 1 else 0)
    return None if perm == sorted(perm) else perm


def fill(shape: Sequence[int], strides: Sequence[int] | None,
         draw: Callable[[tuple[int, ...]], np.ndarray]) -> np.ndarray:
    """`draw(shape')` in the order torch fills a tensor of `shape` and `strides` (see
    `fill_order`), returned in `shape`'s logical order."""
    shape = tuple(shape)
    perm = fill_order(shape, strides)
    if perm is None:
        return draw(shape)
    return draw(tuple(shape[d] for d in perm)).transpose(np.argsort(perm))


def uniform01(gen: Generator, n: int, dtype: DTypeLike) -> np.ndarray:
    """`n` of torch's `uniform_real_distribution(0, 1)` in `dtype` (float32: one 32-bit draw
    each; float64: one 64-bit draw each)."""
    if np.dtype(dtype) == np.float64:
        return (gen.random64(n) & _MASK53).astype(np.float64) * 2.0 ** -53
    return (gen.random(n) & _MASK24).astype(_F32) * _F32(2.0 ** -24)


def uniform(gen: Generator, shape: tuple[int, ...], dtype: DTypeLike, low: float = 0.0,
            high: float = 1.0) -> np.ndarray:
    """torch's `uniform_(low, high)`: `u * (high - low) + low` in `dtype`."""
    n = int(np.prod(shape, dtype=np.int64))
    ft = np.float64 if np.dtype(dtype) == np.float64 else _F32
    u = uniform01(gen, n, ft).reshape(shape)
    if low == 0.0 and high == 1.0:
        return u
    lo, hi = ft(low), ft(high)
    if ft is _F32:
        return fma32(u, hi - lo, lo)
    return fma64(u, float(hi - lo), float(lo))


def _normal_serial(gen: Generator, n: int, mean: float, std: float) -> np.ndarray:
    """`n` draws of torch's `normal_distribution<double>` (Box-Muller in double, the sine half
    cached in the generator), as float64 `value * std + mean`."""
    out = np.empty(n, np.float64)
    start = 0
    if n and gen._normal is not None:
        out[0] = gen._normal
        gen._normal = None
        start = 1
    pairs = (n - start + 1) // 2
    if pairs:
        u = uniform01(gen, 2 * pairs, np.float64)
        u1, u2 = u[0::2], u[1::2]
        r = np.sqrt(-2.0 * np.log1p(-u2))
        theta = _TWO_PI * u1
        both = np.empty(2 * pairs, np.float64)
        both[0::2] = r * np.cos(theta)
        both[1::2] = r * np.sin(theta)
        out[start:] = both[:n - start]
        if (n - start) % 2:
            gen._normal = float(both[-1])
    return out if mean == 0.0 and std == 1.0 else fma64(out, std, mean)


# --- the AVX2 float32 kernel's math (aten/src/ATen/native/cpu/avx_mathfun.h), op for op ---------

_SQRTHF = _F32(0.707106781186547524)
_LOG_P = [_F32(c) for c in (7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1,
                            -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1,
                            2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1)]
_LOG_Q1, _LOG_Q2 = _F32(-2.12194440e-4), _F32(0.693359375)
_DP = [_F32(c) for c in (-0.78515625, -2.4187564849853515625e-4, -3.77489497744594108e-8)]
_SINCOF = [_F32(c) for c in (-1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1)]
_COSCOF = [_F32(c) for c in (2.443315711809948E-005, -1.388731625493765E-003,
                             4.166664568298827E-002)]
_FOPI = _F32(1.27323954473516)
_ONE, _HALF = _F32(1.0), _F32(0.5)


def _log_ps(x: np.ndarray) -> np.ndarray:
    """`log256_ps`: Cephes' float32 natural log, as torch's AVX2 build computes it (the compiler
    fuses each `a * b + c` whose product is inexact into one FMA; measured against torch)."""
    invalid = x <= 0
    x = np.maximum(x, np.array(0x00800000, np.int32).view(_F32))
    bits = x.view(np.int32)
    e = ((bits >> 23) - 0x7F).astype(_F32) + _ONE
    x = ((bits & ~0x7F800000) | np.array(_HALF).view(np.int32)).view(_F32)
    mask = x < _SQRTHF
    tmp = np.where(mask, x, _F32(0))
    x = x - _ONE
    e = e - np.where(mask, _ONE, _F32(0))
    x = x + tmp
    z = x * x
    y = np.full_like(x, _LOG_P[0])
    for c in _LOG_P[1:]:
        y = fma32(y, x, c)
    y = y * x
    y = fma32(y, z, e * _LOG_Q1)
    y = y - z * _HALF  # exact products from here on: fused or not, the same
    x = x + y
    return np.where(invalid, _F32(np.nan), x + e * _LOG_Q2)


def _sincos_ps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`sincos256_ps` for x >= 0: Cephes' float32 sine and cosine, as torch's AVX2 build
    computes them (with the compiler's FMAs, as `_log_ps`)."""
    j = (x * _FOPI).astype(np.int32)  # truncation, as cvttps
    j = (j + 1) & ~1
    y = j.astype(_F32)
    sin_sign = ((j & 4) << 29).astype(np.int32)
    poly = (j & 2) == 0
    for c in _DP:
        x = x + y * c  # y is a small even integer: exact products
    cos_sign = ((~(j - 2) & 4) << 29).astype(np.int32)
    z = x * x
    y = fma32(z, _COSCOF[0], _COSCOF[1])
    y = fma32(y, z, _COSCOF[2])
    y = y * z
    y = fma32(y, z, -(z * _HALF))
    y = y + _ONE
    y2 = fma32(z, _SINCOF[0], _SINCOF[1])
    y2 = fma32(y2, z, _SINCOF[2])
    y2 = fma32(y2 * z, x, x)
    zero = _F32(0)
    ysin2 = np.where(poly, y2, zero)
    ysin1 = np.where(poly, zero, y)
    y2 = y2 - ysin2
    y = y - ysin1
    s = ((ysin1 + ysin2).view(np.int32) ^ sin_sign).view(_F32)
    c = ((y + y2).view(np.int32) ^ cos_sign).view(_F32)
    return s, c


def _fill16_f32(data: np.ndarray, mean: float, std: float) -> None:
    """`normal_fill_16_AVX2` on rows of 16 uniforms (shape (k, 16)), in place."""
    u1 = _ONE - data[:, :8]
    u2 = data[:, 8:]
    radius = np.sqrt(_F32(-2.0) * _log_ps(u1))
    s, c = _sincos_ps(_F32(_TWO_PI) * u2)
    n1, n2 = radius * c, radius * s
    if mean == 0.0 and std == 1.0:
        data[:, :8], data[:, 8:] = n1, n2
    else:  # _mm256_fmadd_ps
        data[:, :8] = fma32(n1, std, mean)
        data[:, 8:] = fma32(n2, std, mean)


def _fill16_f64(data: np.ndarray, mean: float, std: float) -> None:
    """`normal_fill_16<double>` on rows of 16 uniforms (shape (k, 16)), in place."""
    u1 = 1.0 - data[:, :8]
    u2 = data[:, 8:]
    radius = np.sqrt(-2.0 * np.log(u1))
    theta = _TWO_PI * u2
    data[:, :8] = fma64(radius * np.cos(theta), std, mean)
    data[:, 8:] = fma64(radius * np.sin(theta), std, mean)


def _normal_blocks(gen: Generator, n: int, dtype: DTypeLike, mean: float,
                   std: float) -> np.ndarray:
    """torch's `normal_fill` for a contiguous tensor of n >= 16 elements: uniforms for all, each
    block of 16 transformed, then the last 16 redrawn and transformed when n % 16 != 0."""
    f64 = np.dtype(dtype) == np.float64
    ft = np.float64 if f64 else _F32
    transform = _fill16_f64 if f64 else _fill16_f32
    data = uniform01(gen, n, ft)
    full = n // 16 * 16
    transform(data[:full].reshape(-1, 16), mean, std)
    if n % 16:
        tail = uniform01(gen, 16, ft).reshape(1, 16)
        transform(tail, mean, std)
        data[n - 16:] = tail[0]
    return data


def normal(gen: Generator, shape: tuple[int, ...], dtype: DTypeLike, mean: float = 0.0,
           std: float = 1.0, contiguous: bool = True) -> np.ndarray:
    """torch's `normal_(mean, std)` on a tensor of `shape` and `dtype`."""
    n = int(np.prod(shape, dtype=np.int64))
    if n >= 16 and contiguous:
        out = _normal_blocks(gen, n, dtype, mean, std)
    else:
        out = _normal_serial(gen, n, mean, std)
    return out.reshape(shape).astype(dtype, copy=False)


def randint(gen: Generator, shape: tuple[int, ...], low: int, high: int,
            dtype: DTypeLike) -> np.ndarray:
    """torch's `random_(low, high)`: `draw % (high - low) + low`, a 64-bit draw when the range
    is 2**28 or more (torch 2.13 on CPU, measured for int64 and int32), else a 32-bit one."""
    n = int(np.prod(shape, dtype=np.int64))
    span = high - low
    wide = span >= 2 ** 28
    raw = gen.random64(n) if wide else gen.random(n)
    vals = (raw % np.uint64(span)).astype(np.int64) + np.int64(low)  # |low| < 2**63
    return vals.reshape(shape).astype(dtype)


def random_full(gen: Generator, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """torch's `random_()`: [0, 2**mantissa] for floating dtypes, [0, max] for integers."""
    n = int(np.prod(shape, dtype=np.int64))
    d = np.dtype(dtype)
    if d == np.bool_:
        return (gen.random(n) & np.uint64(1)).astype(np.bool_).reshape(shape)
    if d in (np.float64, np.int64):
        raw = gen.random64(n)
        mod = 2 ** 53 + 1 if d == np.float64 else 2 ** 63
    else:
        raw = gen.random(n)
        mod = 2 ** 24 + 1 if d == np.float32 else int(np.iinfo(d).max) + 1
    return (raw % np.uint64(mod)).astype(dtype).reshape(shape)


def randperm(gen: Generator, n: int, dtype: DTypeLike) -> np.ndarray:
    """torch's `randperm(n)` on CPU: Fisher-Yates from the front, swap i with
    `i + random() % (n - i)` (for n < 2**32 / 20, where torch switches to 64-bit draws).

    The swaps depend on each other, so they run as a loop over Python ints (about 1 s per
    million elements on the 2-core VM); the draws are one vectorised call.
    """
    if n >= (2 ** 32 - 1) // 20:
        raise ValueError(f"randperm({n}) is beyond the sizes gradserve reproduces")
    perm = list(range(n))
    if n > 1:
        zs = (gen.random(n - 1) % np.arange(n, 1, -1, dtype=np.uint64)).tolist()
        for start in range(0, n - 1, _SWAPS_PER_CHECK):
            # a deadline, a cancel or a waiting caller is honoured between chunks, each counted
            # as an op: the loop is ~1 s per million swaps
            limits.tick()
            for i in range(start, min(start + _SWAPS_PER_CHECK, n - 1)):
                j = i + zs[i]
                perm[i], perm[j] = perm[j], perm[i]
    return np.array(perm, dtype=dtype)


# Swaps between interrupt checks: ~60 us of them (~1 us a swap on the 2-core VM), about an op's
# time, as each check counts one op of a stateless call's --max-call-ops (with 65,536 a check,
# one RunGraph randperm of 8 million elements ran ~8 s of CPU counted as 128 ops)
_SWAPS_PER_CHECK = 64


def bernoulli_scalar(gen: Generator, shape: tuple[int, ...], p: float,
                     dtype: DTypeLike) -> np.ndarray:
    """torch's `bernoulli_(p)` for a number p (the default, non-MKL kernel): one float64 uniform
    per element, 1 where it is below p."""
    n = int(np.prod(shape, dtype=np.int64))
    return (uniform01(gen, n, np.float64) < p).reshape(shape).astype(dtype)


def bernoulli_tensor(gen: Generator, p: np.ndarray, dtype: DTypeLike) -> np.ndarray:
    """torch's `bernoulli_(p)` for a tensor p already broadcast to the result's shape: a uniform
    of p's precision (float64 for a float64 p, else float32) per element, 1 where below p."""
    if p.dtype == np.float64:
        u = uniform01(gen, p.size, np.float64)
    else:
        u = uniform01(gen, p.size, _F32)
        p = p.astype(_F32, copy=False)
    return (u.reshape(p.shape) < p).astype(dtype)


def _uniform64(gen: Generator, shape: tuple[int, ...]) -> np.ndarray:
    return uniform01(gen, int(np.prod(shape, dtype=np.int64)), np.float64).reshape(shape)


def geometric(gen: Generator, shape: tuple[int, ...], p: float, dtype: DTypeLike) -> np.ndarray:
    """torch's `geometric_(p)`: `ceil(log(u) / log1p(-p))` in double, u a float64 uniform."""
    return np.ceil(np.log(_uniform64(gen, shape)) / np.log1p(-p)).astype(dtype)


def cauchy(gen: Generator, shape: tuple[int, ...], median: float, sigma: float,
           dtype: DTypeLike) -> np.ndarray:
    """torch's `cauchy_(median, sigma)`: `median + sigma * tan(pi * (u - 0.5))` in double, the
    multiply-add fused (measured against torch 2.13)."""
    t = np.tan(np.pi * (_uniform64(gen, shape) - 0.5))
    return fma64(t, sigma, median).astype(dtype)


def log_normal(gen: Generator, shape: tuple[int, ...], mean: float, std: float,
               dtype: DTypeLike) -> np.ndarray:
    """torch's `log_normal_(mean, std)`: `exp` of a double normal drawn one at a time (the
    cached Box-Muller half included)."""
    n = int(np.prod(shape, dtype=np.int64))
    return np.exp(_normal_serial(gen, n, mean, std)).reshape(shape).astype(dtype)


def multinomial(gen: Generator, p: np.ndarray, n: int, replacement: bool) -> np.ndarray:
    """torch's `multinomial(p, n, replacement)` on CPU (aten/src/ATen/native/Distributions.cpp
    and native/cpu/MultinomialKernel.cpp) for a checked 1-D or 2-D p of floats: without
    replacement, or for one sample, the top n of `p / q` with q ~ Exp(1) drawn over p's shape
    (ties, e.g. zero probabilities, in index order, as torch's topk gives them); with
    replacement, row by row, the cumulative sums normalised in p's dtype and one float64
    uniform per sample looked up in them (the first bucket not below it).

    Raises:
        ValueError: with replacement, a row with a negative, infinite or NaN entry, or summing
            to zero (torch's messages; the rows before it have drawn, as in torch).
    """
    rows = p.reshape(-1, p.shape[-1])
    if not replacement or n == 1:
        q = exponential(gen, p.shape, 1.0, p.dtype).reshape(rows.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (rows / q).astype(p.dtype, copy=False)
        out = (np.argmax(ratio, axis=1)[:, None] if n == 1
               else np.argsort(-ratio, axis=1, kind="stable")[:, :n])
        return out.astype(np.int64).reshape(*p.shape[:-1], n)
    out = np.empty((rows.shape[0], n), np.int64)
    for i, row in enumerate(rows):
        if i % 1024 == 0:
            limits.tick()
        bad = ~(row >= 0) | ~np.isfinite(row)
        if bad.any():
            first = row[int(np.argmax(bad))]
            raise ValueError("invalid multinomial distribution (encountering probability entry "
                             + ("< 0)" if not first >= 0 else "= infinity or NaN)"))
        cum = np.cumsum(row, dtype=row.dtype)  # sequential, as torch's loop
        if not cum[-1] > 0:
            raise ValueError("invalid multinomial distribution (sum of probabilities <= 0)")
        cum = (cum / cum[-1]).astype(row.dtype, copy=False)
        cum[-1] = 1
        out[i] = np.searchsorted(cum.astype(np.float64), uniform01(gen, n, np.float64),
                                 side="left")
    return out.reshape(*p.shape[:-1], n)


def exponential(gen: Generator, shape: tuple[int, ...], lambd: float,
                dtype: DTypeLike) -> np.ndarray:
    """torch's `exponential_(lambd)`: `-1 / lambd * log1p(-u)` in double (measured against
    torch 2.13: log1p, not the `log(1 - u)` of older sources)."""
    n = int(np.prod(shape, dtype=np.int64))
    u = uniform01(gen, n, np.float64)
    return (-1.0 / lambd * np.log1p(-u)).reshape(shape).astype(dtype)
