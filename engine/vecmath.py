"""float32 exponentials rounded as torch's CPU kernels round them, element for element.

torch 2.13's CPU kernels for `sigmoid` and `silu` (and their backwards) are `cpu_kernel_vec`
loops: `Vectorized<float>` code (two vectors a step; 8 lanes with AVX2, 16 on an AVX512 CPU:
torch builds these kernels for AVX512 too, `cascade.VECTOR_BYTES`) whose `exp()` is SLEEF's
(`Sleef_expf8_u10`, `Sleef_expf16_u10`: the same bits), and, for what the vector loop leaves
over, the scalar lambda, whose `std::exp` is glibc's `expf`. The two round differently from
each other and from numpy's `np.exp` (about 1 element in 8 of normal inputs, 1 ulp). This
module computes both in numpy:

- `sleef_expf`: SLEEF's algorithm (round `x / ln 2` to an integer q, reduce with a two-part
  ln 2, a degree-6 polynomial by float32 fused multiply-adds, scale by 2**q in two steps),
  every float32 operation rounded as the AVX2 instruction rounds it (`fma32` for the FMAs);
- `libm_expf`: glibc's table-driven `expf` (2**(k/32) from a 32-entry table, a cubic in double,
  one final rounding to float32), in float64;
- `vector_lanes`: which elements torch's loop hands to the vector code, from the operands'
  strides, the vector width and torch's thread split (`TensorIterator`'s dim order and
  coalescing, `at::parallel_for`'s chunks, `vectorized_loop`'s two-vector steps);
- `float32_kernel`: a kernel's vector and scalar formulas applied to those two sets.

Measured against torch 2.13 on an AMD EPYC (2 threads, glibc 2.36), at AVX2 and at AVX512:
bit-exact on the probe sets of tests/test_engine_vecmath.py and test_engine_avx512_width.py.
Only float32 takes this path; other dtypes use numpy.
`sleef_powf` (SLEEF's `xpowf`: `logkf` and `expkf` in double-floats) serves float32 `pow`.
The algorithms are written here from their published descriptions (SLEEF's `xexpf`, Arm's
optimized-routines `expf` as in glibc >= 2.27); the 2**(i/32) table is computed, not copied.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

import numpy as np

from gradserve.surface.layout import broadcast_arrays
from gradserve.surface.memory_format import sorted_order

from . import cascade, limits
from .distributions import fma32, fma64

_F32 = np.float32

EXACT = True  # whether the ops take this module's path for float32 (set_exact)


def set_exact(on: bool) -> None:
    """Turn the torch-exact float32 exponentials on or off for every op that uses them.

    Off, `sigmoid`, `silu`, `elu`, `softplus`, `gelu` (both forms; approximate='none' by
    engine/gelu_erf.py), `expm1`, `log1p`, `pow`, `logsigmoid`, `mish` and their gradients
    and `binary_cross_entropy`'s log compute
    with numpy's functions: 5-100x faster, but 1-3 ulp off torch's values in 10-40 % of
    elements.

    Args:
        on: True (the default) for torch's roundings, False for numpy's.
    """
    global EXACT
    EXACT = bool(on)


# --- glibc itself, for a few elements ----------------------------------------------------------
# torch's scalar tail calls glibc's expf/tanhf; where glibc is this process's libm too, a tail of
# at most SMALL_TAIL elements calls it directly (one ctypes call an element, far cheaper than the
# ~100 numpy calls of the emulation below); larger sets take the vectorised emulation.

SMALL_TAIL = 32


def _libm_function(name: str) -> Any:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6"), name)
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    return fn


_GLIBC_EXPF = _libm_function("expf")
_GLIBC_TANHF = _libm_function("tanhf")
_GLIBC_EXPM1F = _libm_function("expm1f")
_GLIBC_LOG1PF = _libm_function("log1pf")
_GLIBC_SINHF = _libm_function("sinhf")
_GLIBC_COSHF = _libm_function("coshf")
_GLIBC_ATANHF = _libm_function("atanhf")
GLIBC_EXPF = _GLIBC_EXPF  # glibc's expf (Python float in and out), or None: 0-d fast paths


def _call_libm(fn: Any, x: np.ndarray) -> np.ndarray:
    """fn (a float -> float libm function) on each of x's (few) elements."""
    return np.array([fn(v) for v in x.reshape(-1).tolist()], _F32).reshape(x.shape)


def _libm_or_numpy(fn: Any, ufunc: np.ufunc, x: np.ndarray) -> np.ndarray:
    """glibc's `fn` on float32 x: called directly for at most SMALL_TAIL elements, numpy's
    float32 `ufunc` for more. numpy calls glibc for these only where it has no SIMD kernel of
    its own: on a CPU with AVX-512, numpy 2's float32 expm1 and log1p are its own and differ
    from glibc's in ~17% of random inputs (measured, numpy 2.4), so larger sets keep that
    difference there."""
    x = np.asarray(x, _F32)
    if x.size <= SMALL_TAIL and fn is not None:
        return _call_libm(fn, x)
    return ufunc(x)  # type: ignore[no-any-return]


def libm_expm1f(x: np.ndarray) -> np.ndarray:
    """e**x - 1 for float32 x as glibc's `expm1f` (torch's scalar tails: elu, selu, celu)."""
    return _libm_or_numpy(_GLIBC_EXPM1F, np.expm1, x)


def libm_log1pf(x: np.ndarray) -> np.ndarray:
    """log(1 + x) for float32 x as glibc's `log1pf` (torch's scalar tails: softplus, mish)."""
    return _libm_or_numpy(_GLIBC_LOG1PF, np.log1p, x)


def libm_sinhf(x: np.ndarray) -> np.ndarray:
    """sinh(x) for float32 x as glibc's `sinhf` (torch's scalar tail of sinh)."""
    return _libm_or_numpy(_GLIBC_SINHF, np.sinh, x)


def libm_coshf(x: np.ndarray) -> np.ndarray:
    """cosh(x) for float32 x as glibc's `coshf` (torch's scalar tail of cosh)."""
    return _libm_or_numpy(_GLIBC_COSHF, np.cosh, x)


def libm_atanhf(x: np.ndarray) -> np.ndarray:
    """atanh(x) for float32 x as glibc's `atanhf` (torch's scalar tail of atanh)."""
    return _libm_or_numpy(_GLIBC_ATANHF, np.arctanh, x)


# --- SLEEF's expf (Sleef_expf8_u10) ---------------------------------------------------------------

_R_LN2 = _F32(1.4426950408889634)  # 1 / ln 2, float32
_L2U = _F32(0.693145751953125)  # ln 2, upper part (exact product with small integers)
_L2L = _F32(1.428606765330187045e-06)  # ln 2 - _L2U
# exp(s) ~ 1 + s + s*s * P(s), P's coefficients highest degree first (SLEEF's, float32)
_EXP_POLY = tuple(_F32(c) for c in (0.000198527617612853646278381, 0.00139304355252534151077271,
                                    0.00833336077630519866943359, 0.0416664853692054748535156,
                                    0.166666671633720397949219, 0.5))


def _pow2i(q: np.ndarray) -> np.ndarray:
    """2.0**q as float32 for int32 q in float32's normal exponent range (bits built directly)."""
    return ((q + 127) << 23).astype(np.int32).view(_F32)


class _FmaChain:
    """float32 fused multiply-adds whose float64 sums are kept and checked once at the end.

    `fma32` rounds `a * b + c` through float64 (exact product, one rounding) and redoes the
    rare sums that land on a float32 midpoint or in float32's subnormal range; it checks each
    call. An elementwise kernel of a dozen dependent FMAs over a few hundred elements spends
    most of its time in those checks, so here each sum goes to a row of one float64 buffer and
    `redo()` checks them at once: where a sum is one `fma32` would redo (exact zeros are not:
    their sign is the float64 sum's, as in `fma32`), that step is computed by `fma32` for
    those elements, and where its value differs the element is reported, for the caller to
    recompute with `fma32` throughout. Every other element is `fma32`'s, step for step.
    """

    def __init__(self, steps: int, shape: tuple[int, ...]):
        self.sums = np.empty((steps, *shape))
        self.shape = shape
        self.operands: list[tuple[Any, Any, Any]] = []

    def __call__(self, a: Any, b: Any, c: Any) -> np.ndarray:
        s = self.sums[len(self.operands)]
        self.operands.append((a, b, c))
        np.multiply(a, b, out=s, dtype=np.float64)
        np.add(s, c, out=s)
        return s.astype(_F32)

    def redo(self) -> np.ndarray | None:
        """A mask of the elements whose value differs from `fma32`'s, or None for none."""
        bad = None
        with np.errstate(all="ignore"):  # suspects only: NaN or inf sums are none
            for i, where in self._suspects():
                differ = self._settle(i, where)
                if differ.size:
                    if bad is None:
                        bad = np.zeros(self.shape, bool)
                    bad.reshape(-1)[differ] = True
        return bad

    def _suspects(self) -> list[tuple[int, np.ndarray]]:
        """(step, mask) for each step with sums `fma32` would redo."""
        sums = self.sums[:len(self.operands)]
        if sums.nbytes <= _SMALL_CHECK:  # all rows at once: the fewest calls
            suspect = _redone(sums, sums.view(np.int64) & 0x1FFFFFFF, np.abs(sums))
            if suspect is None:
                return []
            return [(i, suspect[i]) for i in range(len(sums)) if suspect[i].any()]
        # row by row through two reused rows: the temporaries of all rows at once would be
        # large allocations, fresh pages (faults) on every call
        low = np.empty(self.shape, np.int64)
        size = low.view(np.float64)
        rows = []
        for i, row in enumerate(sums):
            np.bitwise_and(row.view(np.int64), 0x1FFFFFFF, out=low)
            row_suspect = _redone(row, low, np.abs(row, out=size))
            if row_suspect is not None:
                rows.append((i, row_suspect))
        return rows

    def _settle(self, i: int, where: np.ndarray) -> np.ndarray:
        """The flat indices, among step i's suspects `where`, whose rounded sum is not
        `fma32`'s."""
        a, b, c = (v[where] if type(v) is np.ndarray and v.shape == self.shape
                   else np.broadcast_to(v, self.shape)[where] if np.ndim(v) else v
                   for v in self.operands[i])
        # most suspects are exact float64 sums (a float32 midpoint is then a true tie, which
        # the cast rounds to even as the FMA does): Knuth's two-sum error tells them
        p = np.multiply(a, b, dtype=np.float64)
        cc = np.asarray(c, np.float64)
        s = self.sums[i][where]
        back = s - p
        inexact = (p - (s - back)) + (cc - back) != 0
        flat = np.flatnonzero(where)[inexact]
        if not flat.size:
            return flat
        exact = fma32(*(x[inexact] if np.ndim(x) else x for x in (a, b, c)))
        return flat[exact.view(np.int32) != s[inexact].astype(_F32).view(np.int32)]


_SMALL_CHECK = 1 << 17  # bytes of sums `_FmaChain.redo` checks in one go (below mmap's threshold)
# Up to this many elements a kernel's FMAs go through one `_FmaChain` (measured: 2-3x faster
# than `fma32` per step at a few hundred elements, about even at 16K, slower above, where the
# float64 rows (8-9 of them, 1 MiB at 16K) are fresh pages on every call). Within
# KERNEL_SCRATCH: the rows take 72 bytes an element.
CHAIN_ELEMENTS = 1 << 14


def _redone(s: np.ndarray, low: np.ndarray, size: np.ndarray) -> np.ndarray | None:
    """Where `fma32` redoes a float64 sum s (low: its 29 low mantissa bits, size: |s|): a
    float32 midpoint, or below float32's normal range but not 0; None for nowhere."""
    mid = low == 0x10000000
    tiny = size < 2.0 ** -125
    if not (mid.any() or tiny.any()):
        return None
    suspect = mid | (tiny & (s != 0))
    return suspect if suspect.any() else None


def _chained(kernel: Callable[..., np.ndarray], steps: int, *xs: np.ndarray) -> np.ndarray:
    """`kernel(*xs, fma)` for same-shaped float32 arrays, its FMAs by one `_FmaChain`, the
    elements that need it recomputed with `fma32`: `kernel(*xs, fma32)`'s values."""
    chain = _FmaChain(steps, xs[0].shape)
    out = kernel(*xs, chain)
    redo = chain.redo()
    if redo is not None:
        out[redo] = kernel(*(x[redo] for x in xs), fma32)
    return out


def _fma_unchecked(a: Any, b: Any, c: Any) -> np.ndarray:
    """`a * b + c` for float32 operands, rounded through float64 (an exact product, the sum
    rounded there, then to float32): `fma32` without its checks for the rare sums that land
    on a float32 midpoint by double rounding. Only for kernels verified to meet none on any
    float32 input (scripts/verify_small_math.py)."""
    s = np.multiply(a, b, dtype=np.float64)
    s += c
    return s.astype(_F32)


def sleef_expf(x: np.ndarray) -> np.ndarray:
    """e**x for float32 x as SLEEF's `xexpf` (AVX2 build, FMA) computes it.

    Args:
        x: a float32 array (any shape).

    Returns:
        A new float32 array of x's shape: 0 below -104, inf above 100, NaN for NaN.
    """
    x = np.asarray(x, _F32)
    if x.ndim == 0:
        return _fast_expf(x.reshape(1))[0]  # type: ignore[no-any-return]
    return _fast_expf(x)


# Adding then subtracting _grid(e) rounds a float64 in [2**e, 2**(e + 1)) to float32's grid
# there (nearest, ties to even): the sum's float64 ulp is that grid's spacing. A float32 FMA
# whose result stays in one binade is then one float64 multiply (exact: two float32s) and one
# add of c + _grid(e) (exact: c lies on the grid) -- a single correct rounding, fma32's value.
def _grid(e: int) -> float:
    return 1.5 * 2.0 ** (e + 29)


_L2 = float(_L2U) + float(_L2L)  # exact in float64 (43 bits), and so is q * _L2 (|q| <= 159)
# the polynomial's first four Horner steps, each result's binade for |s| <= ln 2 / 2
_EXP_STEPS = tuple((float(c), _grid(e)) for c, e in zip(_EXP_POLY[1:5], (-10, -7, -5, -3)))


def _fast_expf(x: np.ndarray) -> np.ndarray:
    """`_expf(x, fma32)` for float32 x (at least 1-d) in fewer and cheaper numpy calls: the
    same roundings, done in float64 without `fma32`'s double-rounding checks (2-3x faster at
    640 elements, where the call count is the cost, and at 1M). Verified equal to it, bit for
    bit, on every float32 input by scripts/verify_small_math.py."""
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.minimum(np.maximum(x, _F32(-110)), _F32(110))  # as _expf
        q = x * _R_LN2
        np.rint(q, out=q)
        s = q.astype(np.float64)
        s *= _L2
        np.subtract(x, s, out=s)  # exact: x - q * _L2U - q * _L2L, unrounded
        s32 = s.astype(_F32)  # SLEEF's s, rounded once
        s[...] = s32
        u = s * float(_EXP_POLY[0])
        for i, (c, grid) in enumerate(_EXP_STEPS):
            if i:
                u *= s
            u += c + grid
            u -= grid
        u *= s  # the last step's result straddles 0.5: rounded by a cast
        u += float(_EXP_POLY[5])
        u[...] = u.astype(_F32)
        w = (s32 * s32).astype(np.float64)
        w *= u
        w += s
        out = w.astype(_F32)
        out += _F32(1)
        return np.ldexp(out, q.astype(np.int32))


def _expf(x: np.ndarray, fma: Callable[[Any, Any, Any], np.ndarray]) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        # SLEEF masks e**x to 0 below -104 and to inf above 100; the formula itself gives
        # those there (e**-104 < 2**-150 rounds to 0; 2**144 overflows), so x is clamped to
        # +-110 instead, which keeps q in int32 (NaN stays NaN, its q is masked by ldexp)
        x = np.minimum(np.maximum(x, _F32(-110)), _F32(110))  # (np.clip: a slow wrapper)
        qf = np.rint(x * _R_LN2)  # cvtps_epi32 rounds to nearest even
        # q * _L2U has at most 22 bits and x - q * _L2U is exact (|x| >= 0.35 where q != 0):
        # SLEEF's first FMA is that subtraction, rounded nowhere
        s = fma(qf, -_L2L, x - qf * _L2U)
        u = fma(s, _EXP_POLY[0], _EXP_POLY[1])  # the polynomial's first step: P0 * s + P1
        for c in _EXP_POLY[2:]:
            u = fma(u, s, c)
        u = _F32(1) + fma(s * s, u, s)
        # SLEEF's vldexp2 scales in two exact steps, so its only rounding is the last one
        # (below float32's normal range): ldexp's single correct rounding, the same bits
        return np.ldexp(u, qf.astype(np.int32))


def neg_expf_fma(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """`fma32(-sleef_expf(x), y, z)`: log_softmax's backward, `grad - exp(output) * sum`, as
    torch's vector kernel computes it (one fused multiply-add).

    Args:
        x: a float32 array.
        y: a float32 array that broadcasts to x's shape.
        z: a float32 array of x's shape.

    Returns:
        A new float32 array of x's shape.
    """
    e = -sleef_expf(x)
    return fma32(e, np.broadcast_to(y, e.shape), z)  # (same shapes: fma32's quicker path)


# --- SLEEF's expm1f (Sleef_expm1f8_u10): double-float arithmetic ---------------------------------
# A double-float is a pair (hi, lo) of float32s whose sum carries ~48 bits. The helpers are the
# error-free sums and FMA-based products SLEEF's AVX2 build uses (its df.h with FMA).


def _df_add_f(xh: np.ndarray, xl: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xh, xl) + y, y a float (SLEEF's dfadd2_vf2_vf2_vf)."""
    s = xh + y
    v = s - xh
    return s, ((xh - (s - v)) + (y - v)) + xl


def _df_add_df(xh: np.ndarray, xl: np.ndarray, yh: np.ndarray,
               yl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xh, xl) + (yh, yl) (dfadd2_vf2_vf2_vf2)."""
    s = xh + yh
    v = s - xh
    return s, ((xh - (s - v)) + (yh - v)) + (xl + yl)


def _df_mul_f(xh: np.ndarray, xl: np.ndarray, y: np.ndarray,
              fma: Callable[[Any, Any, Any], np.ndarray] = fma32) -> tuple[np.ndarray, np.ndarray]:
    """(xh, xl) * y (dfmul_vf2_vf2_vf, FMA)."""
    s = xh * y
    return s, fma(xl, y, fma(xh, y, -s))


def _df_mul_df(xh: np.ndarray, xl: np.ndarray, yh: np.ndarray,
               yl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xh, xl) * (yh, yl) (dfmul_vf2_vf2_vf2, FMA)."""
    s = xh * yh
    return s, fma32(xh, yl, fma32(xl, yh, fma32(xh, yh, -s)))


def _df_square(xh: np.ndarray, xl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xh, xl) ** 2 (dfsqu_vf2_vf2, FMA)."""
    s = xh * xh
    return s, fma32(xh + xh, xl, fma32(xh, xh, -s))


_EXPM1_POLY = tuple(_F32(c) for c in (0.1980960224e-3, 0.1394256484e-2, 0.8333456703e-2,
                                      0.4166637361e-1))
_EXPM1_SIXTH = _F32(0.166666659414234244790680580464)
_EXPM1_HIGH = _F32(88.72283172607421875)  # above: inf
_EXPM1_LOW = _F32(-16.635532333438687426013570)  # below: -1


def _expk2f(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e**x as a double-float (SLEEF's expk2f of (x, 0)): the reduction, polynomial and
    scaling carried in two floats; 0 below -104."""
    u = x * _R_LN2
    qf = np.rint(np.where(np.abs(u) < 2.0 ** 30, u, _F32(0))).astype(_F32)
    q = qf.astype(np.int32)
    sh, sl = _df_add_f(x, np.zeros_like(x), qf * -_L2U)
    sh, sl = _df_add_f(sh, sl, qf * -_L2L)
    p = np.full(x.shape, _EXPM1_POLY[0], _F32)
    for c in _EXPM1_POLY[1:]:
        p = fma32(p, sh, c)
    th, tl = _df_add_f(*_df_mul_f(sh, sl, p), _EXPM1_SIXTH)
    th, tl = _df_add_f(*_df_mul_df(sh, sl, th, tl), _F32(0.5))
    th, tl = _df_add_df(sh, sl, *_df_mul_df(*_df_square(sh, sl), th, tl))
    one = _F32(1)
    th, tl = one + th, ((one - (one + th)) + th) + tl  # SLEEF's dfadd_vf2_vf_vf2(1, t)
    half = q >> 1
    th = (th * _pow2i(half)) * _pow2i(q - half)
    tl = (tl * _pow2i(half)) * _pow2i(q - half)
    tiny = x < -104
    th[tiny] = 0
    tl[tiny] = 0
    return th, tl


def sleef_expm1f(x: np.ndarray) -> np.ndarray:
    """e**x - 1 for float32 x as SLEEF's `xexpm1f` (AVX2 build, FMA) computes it: e**x as a
    double-float (`_expk2f`), minus 1, the pair's sum rounded once.

    Args:
        x: a float32 array (any shape).

    Returns:
        A new float32 array of x's shape.
    """
    x = np.asarray(x, _F32)
    with np.errstate(invalid="ignore", over="ignore"):
        dh, dl = _df_add_f(*_expk2f(x), _F32(-1))
        out = dh + dl
        out[x > _EXPM1_HIGH] = np.inf
        out[x < _EXPM1_LOW] = -1
        out[(x == 0) & np.signbit(x)] = -0.0
    return out


def _df_rec(xh: np.ndarray, xl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1 / (xh, xl) (SLEEF's dfrec_vf2_vf2, FMA)."""
    one = _F32(1)
    s = one / xh
    return s, s * fma32(-xl, s, fma32(-xh, s, one))


def _sleef_cosh_sinh(x: np.ndarray, sign: int) -> np.ndarray:
    """(d + sign / d) / 2 in double-floats, d = e**|x| (SLEEF's `xcoshf`, `xsinhf` with its
    dfsub), inf beyond |x| > 89 and where that overflows."""
    x = np.asarray(x, _F32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        y = np.abs(x)
        dh, dl = _expk2f(y)
        rh, rl = _df_rec(dh, dl)
        if sign > 0:  # dfadd_vf2_vf2_vf2
            sh = dh + rh
            sl = (((dh - sh) + rh) + dl) + rl
        else:  # dfsub_vf2_vf2_vf2
            sh = dh - rh
            sl = (((dh - sh) - rh) + dl) - rl
        out = (sh + sl) * _F32(0.5)
        out[(y > _F32(89)) | np.isnan(out)] = np.inf
        if sign < 0:
            out = np.copysign(out, x)  # SLEEF's vmulsign
        out.view(np.uint32)[np.isnan(x)] = 0xFFFFFFFF  # a NaN input's lane: all bits set
    return out


def sleef_sinhf(x: np.ndarray) -> np.ndarray:
    """sinh(x) for float32 x as SLEEF's `xsinhf` (the u10 one, FMA) computes it: torch's
    vector loop. Verified against torch's sinh on random inputs of every scale (tests)."""
    return _sleef_cosh_sinh(x, -1)


def sleef_coshf(x: np.ndarray) -> np.ndarray:
    """cosh(x) for float32 x as SLEEF's `xcoshf` (the u10 one, FMA) computes it: torch's
    vector loop."""
    return _sleef_cosh_sinh(x, 1)


def _df_add_ff(x: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x + y as a double-float, x and y floats (SLEEF's dfadd2_vf2_vf_vf)."""
    s = x + y
    v = s - x
    return s, (x - (s - v)) + (y - v)


def _df_add_big(xh: np.ndarray, xl: np.ndarray, yh: np.ndarray,
                yl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xh, xl) + (yh, yl) for |x| >= |y| (SLEEF's dfadd_vf2_vf2_vf2)."""
    s = xh + yh
    return s, (((xh - s) + yh) + xl) + yl


_LOGK2_POLY = tuple(_F32(c) for c in (0.2392828464508056640625, 0.28518211841583251953125,
                                      0.400005877017974853515625, 0.666666686534881591796875))
_LOGK2_LN2 = (_F32(0.69314718246459960938), _F32(-1.904654323148236017e-09))


def _logk2f(dh: np.ndarray, dl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log of the double-float (dh, dl) > 0 as a double-float (SLEEF's logk2f, its AVX-512
    build: the exponent from getexp): e + log(m), m = d / 2**e in [0.75, 1.5), log(m) as
    2 atanh((m - 1) / (m + 1)) by a polynomial in double-floats."""
    v = dh * _F32(1.0 / 0.75)
    e = (np.frexp(np.where(np.isfinite(v) & (v != 0), v, _F32(1)))[1] - 1).astype(np.int32)
    scale = _pow2i(-e)
    mh, ml = dh * scale, dl * scale
    xh, xl = _df_div(*_df_add_f(mh, ml, _F32(-1)), *_df_add_f(mh, ml, _F32(1)))
    x2h, x2l = _df_square(xh, xl)
    t = np.full(xh.shape, _LOGK2_POLY[0], _F32)
    for c in _LOGK2_POLY[1:]:
        t = fma32(t, x2h, c)
    hi, lo = (np.full(xh.shape, c, _F32) for c in _LOGK2_LN2)
    sh, sl = _df_add_big(*_df_mul_f(hi, lo, e.astype(_F32)), xh * _F32(2), xl * _F32(2))
    return _df_add_big(sh, sl, *_df_mul_f(*_df_mul_df(x2h, x2l, xh, xl), t))


def sleef_atanhf(x: np.ndarray) -> np.ndarray:
    """atanh(x) for float32 x as SLEEF's `xatanhf` (u10, FMA, AVX-512 build) computes it:
    log((1 + |x|) / (1 - |x|)) / 2 in double-floats; inf at |x| == 1, NaN (all bits set, the
    sign flipped by x's) beyond and for infinities: torch's vector loop."""
    x = np.asarray(x, _F32)
    with np.errstate(all="ignore"):
        y = np.abs(x)
        qh, ql = _df_div(*_df_add_ff(_F32(1), y), *_df_add_ff(_F32(1), -y))
        rh, rl = _logk2f(qh, ql)
        out = (rh + rl) * _F32(0.5)
        out[y == 1] = np.inf
        bits = out.view(np.uint32)
        bits[(y > 1) | np.isinf(x) | np.isnan(out)] = 0xFFFFFFFF
        bits ^= x.view(np.uint32) & np.uint32(0x80000000)  # SLEEF's vmulsign
        bits[np.isnan(x)] = 0xFFFFFFFF
    return out


def sleef_tanhf(x: np.ndarray) -> np.ndarray:
    """tanh(x) for float32 x as SLEEF's `xtanhf` (the u10 one; AVX2 build, FMA) computes it:
    (d - 1/d) / (d + 1/d) in double-floats, d = e**|x|, 1 beyond |x| > 8.664339742.

    Args:
        x: a float32 array (any shape).

    Returns:
        A new float32 array of x's shape.
    """
    x = np.asarray(x, _F32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        dh, dl = _expk2f(np.abs(x))
        eh, el = _df_rec(dh, dl)
        nh = dh + -eh
        nl = (((dh - nh) + -eh) + dl) + -el  # dfadd_vf2_vf2_vf2(d, -e)
        ph = dh + eh
        pl = (((dh - ph) + eh) + dl) + el  # dfadd_vf2_vf2_vf2(d, e)
        qh, ql = _df_div(nh, nl, ph, pl)
        y = qh + ql
        y[(np.abs(x) > _F32(8.664339742)) | np.isnan(y)] = 1
        y = np.copysign(y, x)  # SLEEF's vmulsign: |y| carries x's sign
        y[np.isnan(x)] = np.nan
    return y


def libm_tanhf(x: np.ndarray) -> np.ndarray:
    """tanh(x) for float32 x as glibc's `tanhf` (fdlibm's float algorithm, on glibc's
    `expm1f`: numpy's float32 `np.expm1` past SMALL_TAIL elements, glibc's own only where numpy
    has no AVX-512 kernel, see `_libm_or_numpy`): 1 - 2 / (expm1(2|x|) + 2) from |x| >= 1,
    -t / (t + 2) with t = expm1(-2|x|) below, 1 from 22 on, x * (1 + x) below 2**-55.

    Args:
        x: a float32 array (any shape).

    Returns:
        A new float32 array of x's shape.
    """
    x = np.asarray(x, _F32)
    if x.size <= SMALL_TAIL and _GLIBC_TANHF is not None:
        return _call_libm(_GLIBC_TANHF, x)
    one, two = _F32(1), _F32(2)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        a = np.abs(x)
        t = np.expm1(np.where(a >= one, two * a, -two * a))
        z = np.where(a >= one, one - two / (t + two), -t / (t + two))
        z[a >= _F32(22)] = one
        z = np.copysign(z, x)
        tiny = a < _F32(2.0 ** -55)
        z[tiny] = (x * (one + x))[tiny]  # also keeps the sign of a zero
        nan = np.isnan(x)
        z[nan] = x[nan]
    return z


# --- SLEEF's log1pf (Sleef_log1pf8_u10) ----------------------------------------------------------

_LN2_HI = _F32(0.69314718246459960938)  # ln 2 as a double-float
_LN2_LO = _F32(-1.904654323148236017e-09)
_LOG_POLY = tuple(_F32(c) for c in (0.3027294874, 0.3996108174, 0.6666694880))
_LOG1P_BOUND = _F32(float.fromhex("0x1.2ced32p+126"))  # 1e38: above, log(x) instead
_FLT_MIN = _F32(2.0 ** -126)


def _df_div(nh: np.ndarray, nl: np.ndarray, dh: np.ndarray, dl: np.ndarray,
            fma: Callable[[Any, Any, Any], np.ndarray] = fma32) -> tuple[np.ndarray, np.ndarray]:
    """(nh, nl) / (dh, dl) (SLEEF's dfdiv_vf2_vf2_vf2, FMA)."""
    one = _F32(1)
    t = one / dh
    s = nh * t
    u = fma(t, nh, -s)
    v = fma(-dl, t, fma(-dh, t, one))
    return s, fma(s, v, fma(nl, t, u))


def _exponent(d: np.ndarray) -> np.ndarray:
    """SLEEF's vilogb2k: the biased exponent field minus 127 (int32)."""
    return ((d.view(np.int32) >> 23) & 0xFF) - 0x7F


def _log_tail(sh: np.ndarray, sl: np.ndarray, xh: np.ndarray, xl: np.ndarray,
              fma: Callable[[Any, Any, Any], np.ndarray] = fma32) -> np.ndarray:
    """s + 2 x + x**3 t(x**2) rounded once: the common end of SLEEF's logf_u1 and log1pf
    (s = e ln 2 as a double-float, x = (m - 1) / (m + 1))."""
    x2 = xh * xh
    t = fma(x2, _LOG_POLY[0], _LOG_POLY[1])  # the polynomial's first step: P0 * x2 + P1
    for c in _LOG_POLY[2:]:
        t = fma(t, x2, c)
    two = _F32(2)
    xh2 = xh * two
    sum_h = sh + xh2
    sh, sl = sum_h, (((sh - sum_h) + xh2) + sl) + xl * two
    rest = (x2 * xh) * t
    s = sh + rest
    return s + (((sh - s) + rest) + sl)


def _sleef_logf_u1(d: np.ndarray) -> np.ndarray:
    """log(d) as SLEEF's xlogf_u1 (used by log1pf above 1e38, and by log_softmax)."""
    low, high = (d.min(), d.max()) if d.size else (_F32(1), _F32(1))
    normal = low >= _FLT_MIN and high < np.inf  # (False for NaN)
    # the normal kernel's FMAs never meet a double rounding (scripts/verify_small_math.py)
    r = _logf_normal(d, _fma_unchecked) if normal else _logf_u1(d, fma32)
    if not (low > 0 and high < np.inf):
        # SLEEF's special cases: log(+inf) = inf, of a negative or NaN NaN, of +-0 -inf
        r = np.where(d == np.inf, _F32(np.inf), r)
        r = np.where((d < 0) | np.isnan(d), _F32(np.nan), r)
        r = np.where(d == 0, _F32(-np.inf), r)
    return r


def _ln2_times() -> np.ndarray:
    """(hi, lo) rows of SLEEF's double-float e * ln 2 (`dfmul_vf2_vf2_vf`) for every exponent
    e `_logf_u1` meets: -127 - 64 (zero, scaled) to 128 (inf, NaN), from _LN2_TIMES_FROM."""
    return np.stack(_df_mul_f(_LN2_HI, _LN2_LO, np.arange(_LN2_TIMES_FROM, 129, dtype=_F32)))


_LN2_TIMES_FROM = -191
_LN2_TIMES = _ln2_times()


def _logf_normal(d: np.ndarray, fma: Callable[[Any, Any, Any], np.ndarray]) -> np.ndarray:
    """`_logf_u1` for positive normal finite d, the same bits in fewer steps: the mantissa m is
    in [0.75, 1.5), so m - 1 is exact (the numerator's low part is +0), 1 + m's rounding error
    is m - (dh - 1) (both exact), and the two FMAs that make an error term (t * nh - s, the
    product's error; 1 - dh * t, the reciprocal's residual) are exact: float64 differences."""
    e = ((d * _F32(1.0 / 0.75)).view(np.int32) >> 23) - 0x7F
    m = (d.view(np.int32) - (e << 23)).view(_F32)
    sh, sl = _LN2_TIMES[:, e - _LN2_TIMES_FROM]
    one = _F32(1)
    nh = m - one
    dh = m + one
    dl = m - (dh - one)
    # _df_div((nh, +0), (dh, dl))
    t = one / dh
    s = nh * t
    u = (np.multiply(t, nh, dtype=np.float64) - s).astype(_F32)
    v = fma(-dl, t, (1.0 - np.multiply(dh, t, dtype=np.float64)).astype(_F32))
    return _log_tail(sh, sl, s, fma(s, v, u), fma)


def _logf_u1(d: np.ndarray, fma: Callable[[Any, Any, Any], np.ndarray]) -> np.ndarray:
    small = d < _FLT_MIN
    scaled = small.any()  # subnormals and zeros (and negatives): scaled up by 2**64 first
    if scaled:
        d = np.where(small, d * _F32(2.0 ** 64), d)
    e = _exponent(d * _F32(1.0 / 0.75))
    m = (d.view(np.int32) - (e << 23)).view(_F32)
    if scaled:
        e = np.where(small, e - 64, e)
    sh, sl = _LN2_TIMES[:, e - _LN2_TIMES_FROM]  # e * ln 2 as SLEEF's double-float product
    one = _F32(1)
    nh = -one + m
    nv = nh - (-one)
    nl = (-one - (nh - nv)) + (m - nv)
    dh = one + m
    dv = dh - one
    dl = (one - (dh - dv)) + (m - dv)
    xh, xl = _df_div(nh, nl, dh, dl, fma)
    return _log_tail(sh, sl, xh, xl, fma)


def sleef_log1pf(x: np.ndarray) -> np.ndarray:
    """log(1 + x) for float32 x as SLEEF's `xlog1pf` (AVX2 build, FMA) computes it.

    Args:
        x: a float32 array (any shape).

    Returns:
        A new float32 array of x's shape: NaN below -1, -inf at -1.
    """
    x = np.asarray(x, _F32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        one = _F32(1)
        dp1 = x + one
        small = dp1 < _FLT_MIN
        dp1 = np.where(small, dp1 * _F32(2.0 ** 64), dp1)
        e = _exponent(dp1 * _F32(1.0 / 0.75))
        t = ((one.view(np.int32) - (e << 23)).astype(np.int32)).view(_F32)  # 2**-e
        m = fma32(x, t, t - one)
        e = np.where(small, e - 64, e)
        sh, sl = _df_mul_f(np.full(x.shape, _LN2_HI), np.full(x.shape, _LN2_LO),
                           e.astype(_F32))
        two = _F32(2)
        dh = two + m
        dl = (two - dh) + m
        xh, xl = _df_div(m, np.zeros_like(m), dh, dl)
        # SLEEF adds s + 2x with dfadd_vf2_vf2_vf2 in log1pf (|s| >= |2x| not assumed there)
        r = _log_tail(sh, sl, xh, xl)
        big = x > _LOG1P_BOUND
        if big.any():
            r[big] = _sleef_logf_u1(x[big])
        r[x < -1] = np.nan
        r[x == -1] = -np.inf
        r[(x == 0) & np.signbit(x)] = -0.0
        r[np.isnan(x)] = np.nan
        r[x == np.inf] = np.inf
    return r


# --- SLEEF's powf (Sleef_powf8_u10): log and exp in double-floats ---------------------------------

_LOGK_POLY = tuple(_F32(c) for c in (0.240320354700088500976562, 0.285112679004669189453125,
                                     0.400007992982864379882812))
_LOGK_C = (_F32(0.66666662693023681640625), _F32(3.69183861259614332084311e-09))
_EXPK_POLY = tuple(_F32(c) for c in (0.00136324646882712841033936, 0.00836596917361021041870117,
                                     0.0416710823774337768554688, 0.166665524244308471679688,
                                     0.499999850988388061523438))
_INT_MIN = np.int32(-2 ** 31)  # what cvtps_epi32 gives for a float out of int32's range or NaN


def _df_add_any(xh: np.ndarray, xl: np.ndarray, yh: np.ndarray,
                yl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xh, xl) + (yh, yl) assuming |x| >= |y| (SLEEF's dfadd_vf2_vf2_vf2)."""
    s = xh + yh
    return s, (((xh - s) + yh) + xl) + yl


def _logkf(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(d) as a double-float, d >= 0 (SLEEF's logkf; zero and inf are settled by the caller)."""
    one = _F32(1)
    small = d < _FLT_MIN
    d = np.where(small, d * _F32(2.0 ** 64), d)
    e = _exponent(d * _F32(1.0 / 0.75))
    m = (d.view(np.int32) - (e << 23)).astype(np.int32).view(_F32)
    e = np.where(small, e - 64, e)
    # x = (m - 1) / (m + 1), numerator and denominator as exact sums (dfadd2_vf2_vf_vf)
    nh = -one + m
    nv = nh - (-one)
    nl = (-one - (nh - nv)) + (m - nv)
    dh = one + m
    dv = dh - one
    dl = (one - (dh - dv)) + (m - dv)
    xh, xl = _df_div(nh, nl, dh, dl)
    x2h, x2l = _df_square(xh, xl)
    t = np.full(d.shape, _LOGK_POLY[0], _F32)
    for c in _LOGK_POLY[1:]:
        t = fma32(t, x2h, c)
    sh, sl = _df_mul_f(np.full(d.shape, _LN2_HI), np.full(d.shape, _LN2_LO), e.astype(_F32))
    two = _F32(2)
    sh, sl = _df_add_any(sh, sl, xh * two, xl * two)
    ph, pl = _df_mul_f(x2h, x2l, t)
    # dfadd2_vf2_vf2_vf2(x2 t, c)
    s2 = ph + _LOGK_C[0]
    v = s2 - ph
    l2 = ((ph - (s2 - v)) + (_LOGK_C[0] - v)) + (pl + _LOGK_C[1])
    qh, ql = _df_mul_df(*_df_mul_df(x2h, x2l, xh, xl), s2, l2)
    return _df_add_any(sh, sl, qh, ql)


def _ldexpf(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """x * 2**q (SLEEF's vldexp_vf_vf_vi2: four steps of 2**m, then 2**(q - 4 m))."""
    m = q >> 31
    m = (((m + q) >> 6) - m) << 4
    q = q - (m << 2)
    m = np.clip(m + 127, 0, 255)
    u = (m << 23).astype(np.int32).view(_F32)
    x = x * u * u * u * u
    return x * ((q + 127) << 23).astype(np.int32).view(_F32)


def _expkf(dh: np.ndarray, dl: np.ndarray) -> np.ndarray:
    """e**(dh + dl) rounded to float32 (SLEEF's expkf), 0 where dh < -104."""
    u = (dh + dl) * _R_LN2
    inside = np.abs(u) < _F32(2.0 ** 31)
    q = np.where(inside, np.rint(np.where(inside, u, _F32(0))).astype(np.int32), _INT_MIN)
    qf = q.astype(_F32)
    sh, sl = _df_add_f(dh, dl, qf * -_L2U)
    sh, sl = _df_add_f(sh, sl, qf * -_L2L)
    sh, sl = sh + sl, (sh - (sh + sl)) + sl  # dfnormalize
    p = np.full(dh.shape, _EXPK_POLY[0], _F32)
    for c in _EXPK_POLY[1:]:
        p = fma32(p, sh, c)
    th, tl = _df_add_any(sh, sl, *_df_mul_f(*_df_square(sh, sl), p))
    one = _F32(1)
    th, tl = one + th, ((one - (one + th)) + th) + tl  # dfadd_vf2_vf_vf2(1, t)
    out = _ldexpf(th + tl, q)
    out[dh < _F32(-104)] = 0
    return out


def sleef_powf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x**y for float32 x and y as SLEEF's `xpowf` (the u10 one; AVX2 build, FMA) computes it:
    exp(y log|x|) in double-floats, then C99's special cases (negative x to integer powers,
    zeros, infinities, NaN, y == 0 and x == 1 give 1).

    Args:
        x: a float32 array.
        y: a float32 array or number broadcasting with x.

    Returns:
        A new float32 array of the broadcast shape.
    """
    x, y = broadcast_arrays(np.asarray(x, _F32), np.asarray(y, _F32))
    with np.errstate(all="ignore"):
        ay = np.abs(y)
        ty = np.trunc(y)
        yisint = (ty == y) | (ay > _F32(2 ** 24))
        small = ay < _F32(2 ** 24)
        yisodd = small & yisint & ((np.where(small, ty, _F32(0)).astype(np.int32) & 1) == 1)
        ax = np.abs(x)
        lh, ll = _logkf(ax)
        r = _expkf(*_df_mul_f(lh, ll, y))
        r[np.isnan(r)] = np.inf
        sign = np.where(x > 0, _F32(1), np.where(yisint, np.where(yisodd, _F32(-1), _F32(1)),
                                                  _F32(np.nan)))
        r = r * sign
        efx = np.where(np.signbit(y), -(ax - _F32(1)), ax - _F32(1))  # vmulsign(|x| - 1, y)
        inf_y = np.where(efx < 0, _F32(0), np.where(efx == 0, _F32(1), _F32(np.inf)))
        r = np.where(np.isinf(y), inf_y, r)
        zero_x = x == 0
        edge = np.where(np.signbit(y) ^ zero_x, _F32(0), _F32(np.inf))
        odd_sign = np.signbit(np.where(yisodd, x, _F32(1)))
        edge = np.where(odd_sign, -edge, edge)
        r = np.where(np.isinf(x) | zero_x, edge, r)
        r = np.where(np.isnan(x) | np.isnan(y), _F32(np.nan), r)
        r = np.where((y == 0) | (x == 1), _F32(1), r)
    return r.astype(_F32, copy=False)


# --- glibc's expf (std::exp of a float) -----------------------------------------------------------

def _exp2_table() -> np.ndarray:
    """2**(i/32), i < 32, correctly rounded to float64, minus i << 47 in its bits (the index's
    contribution to the exponent field is added back from k)."""
    with localcontext() as ctx:
        ctx.prec = 50
        vals = [float(Decimal(2) ** (Decimal(i) / 32)) for i in range(32)]
    bits = np.array(vals, np.float64).view(np.uint64)
    return bits - (np.arange(32, dtype=np.uint64) << np.uint64(47))


_EXP2_TAB = _exp2_table()
_INV_LN2_N = float.fromhex("0x1.71547652b82fep+0") * 32
# 2**(r/32) ~ 1 + C2 r + C1 r**2 + C0 r**3 (Arm optimized-routines' exp2f cubic, scaled by 1/32)
_C0 = float.fromhex("0x1.c6af84b912394p-5") / 32 ** 3
_C1 = float.fromhex("0x1.ebfce50fac4f3p-3") / 32 ** 2
_C2 = float.fromhex("0x1.62e42ff0c52d6p-1") / 32
_SHIFT = float.fromhex("0x1.8p+52")  # adding it rounds a double to an integer (nearest even)
_OVERFLOW = _F32(float.fromhex("0x1.62e42ep6"))  # above: inf
_UNDERFLOW = _F32(-float.fromhex("0x1.9fe368p6"))  # below: 0


def libm_expf(x: np.ndarray) -> np.ndarray:
    """e**x for float32 x as glibc's `expf` (>= 2.27, x86-64 FMA variant) computes it.

    Args:
        x: a float32 array (any shape).

    Returns:
        A new float32 array of x's shape.
    """
    x = np.asarray(x, _F32)
    if x.size <= SMALL_TAIL and _GLIBC_EXPF is not None:
        return _call_libm(_GLIBC_EXPF, x)
    xd = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        xd[~(np.abs(xd) < 150.0)] = 0.0  # NaN and +-inf: settled below
        z = _INV_LN2_N * xd
        kd = z + _SHIFT
        ki = kd.view(np.uint64)
        r = z - (kd - _SHIFT)
        scale = (_EXP2_TAB[ki & np.uint64(31)] + (ki << np.uint64(47))).view(np.float64)
        y = fma64(fma64(r, _C0, _C1), r * r, fma64(r, _C2, 1.0))
        out = (y * scale).astype(_F32)
        out[x > _OVERFLOW] = np.inf
        out[x < _UNDERFLOW] = 0
        nan = np.isnan(x)
        out[nan] = x[nan]
    return out


# --- glibc's logf (std::log of a float: torch's scalar kernels, e.g. binary_cross_entropy) --------

# (1/c, log c) for 16 subintervals of [0x1.66p-1, 0x1.66p0): the table of Arm's optimized-routines
# `logf` (MIT), which glibc has used since 2.28 (its e_logf_data.c); the values are chosen by a
# search (see there), so they are written out rather than computed; checked against this
# machine's libm (tests/test_engine_vecmath.py compares with glibc's logf itself).
_LOGF_TAB = np.array([[float.fromhex(h) for h in pair.split()] for pair in (
    "0x1.661ec79f8f3bep+0 -0x1.57bf7808caadep-2", "0x1.571ed4aaf883dp+0 -0x1.2bef0a7c06ddbp-2",
    "0x1.49539f0f010bp+0 -0x1.01eae7f513a67p-2", "0x1.3c995b0b80385p+0 -0x1.b31d8a68224e9p-3",
    "0x1.30d190c8864a5p+0 -0x1.6574f0ac07758p-3", "0x1.25e227b0b8eap+0 -0x1.1aa2bc79c81p-3",
    "0x1.1bb4a4a1a343fp+0 -0x1.a4e76ce8c0e5ep-4", "0x1.12358f08ae5bap+0 -0x1.1973c5a611cccp-4",
    "0x1.0953f419900a7p+0 -0x1.252f438e10c1ep-5", "0x1p+0 0x0p+0",
    "0x1.e608cfd9a47acp-1 0x1.aa5aa5df25984p-5", "0x1.ca4b31f026aap-1 0x1.c5e53aa362eb4p-4",
    "0x1.b2036576afce6p-1 0x1.526e57720db08p-3", "0x1.9c2d163a1aa2dp-1 0x1.bc2860d22477p-3",
    "0x1.886e6037841edp-1 0x1.1058bc8a07ee1p-2", "0x1.767dcf5534862p-1 0x1.4043057b6ee09p-2")])
_LOGF_LN2 = float.fromhex("0x1.62e42fefa39efp-1")
_LOGF_POLY = tuple(float.fromhex(h) for h in (
    "-0x1.00ea348b88334p-2", "0x1.5575b0be00b6ap-2", "-0x1.ffffef20a4123p-2"))
_LOGF_OFF = 0x3F330000
_GLIBC_LOGF = _libm_function("logf")


def libm_logf(x: np.ndarray) -> np.ndarray:
    """log(x) for float32 x as glibc's `logf` (>= 2.28) computes it: x = 2**k z with z in
    [0x1.66p-1, 0x1.66p0), log(z) = log1p(z/c - 1) + log(c) from a 16-entry table of c and a
    cubic in double, one final rounding to float32. Not numpy's float32 `np.log` (SIMD,
    1 ulp off it on ~20 % of inputs) nor float64 `np.log` rounded (off on ~0.02 %). The
    rounding is the same with or without fused multiply-adds (double's margin), so plain
    float64 arithmetic serves.

    Args:
        x: a float32 array (any shape).

    Returns:
        A new float32 array of x's shape.
    """
    x = np.asarray(x, _F32)
    if x.size <= SMALL_TAIL and _GLIBC_LOGF is not None:
        return _call_libm(_GLIBC_LOGF, x)
    ix = x.view(np.uint32)
    special = (ix - np.uint32(0x00800000)) >= np.uint32(0x7F800000 - 0x00800000)
    if special.any():  # zeros, subnormals, negatives, inf, NaN
        ix = ix.copy()
        sub = special & (ix > 0) & (ix < 0x00800000)  # normalised: x * 2**23, k - 23
        ix[sub] = (x[sub] * _F32(2.0 ** 23)).view(np.uint32) - np.uint32(23 << 23)
    tmp = ix - np.uint32(_LOGF_OFF)
    tab = _LOGF_TAB[(tmp >> np.uint32(19)) & np.uint32(15)]
    k = (tmp.view(np.int32) >> 23).astype(np.float64)
    z = (ix - (tmp & np.uint32(0xFF800000))).view(_F32).astype(np.float64)
    r = z * tab[..., 0] - 1
    y0 = tab[..., 1] + k * _LOGF_LN2
    r2 = r * r
    a0, a1, a2 = _LOGF_POLY
    y = (a0 * r2 + (a1 * r + a2)) * r2 + (y0 + r)
    out = y.astype(_F32)
    if special.any():
        rest = special & ~sub  # log(0) = -inf, log(inf) = inf, NaN for NaN and negatives
        with np.errstate(divide="ignore", invalid="ignore"):
            out[rest] = np.log(x[rest])
    out[ix == 0x3F800000] = 0  # +0 whatever the rounding mode (glibc's special case)
    return out


# --- which elements torch's loop vectorises ------------------------------------------------------

GRAIN_SIZE = 32768  # at::internal::GRAIN_SIZE: below it TensorIterator runs on one thread


def _iteration_order(shape: tuple[int, ...], strides: list[list[int]]) -> list[int]:
    """The dims (of size > 1) outermost first, as `TensorIterator::reorder_dimensions` orders
    them (`surface.memory_format.sorted_order` of those dims, the rule the result layouts
    follow too)."""
    keep = [d for d in range(len(shape)) if shape[d] > 1]
    order = sorted_order([shape[d] for d in keep], [[st[d] for d in keep] for st in strides])
    return [keep[i] for i in reversed(order)]


def _rows(ops: list[np.ndarray]) -> tuple[int, bool, list[int]]:
    """(inner length, vectorisable, dims): `TensorIterator`'s view of a kernel's operands
    (one shape, torch's operand order) with a fresh output — the dims outermost first
    (`_iteration_order`), coalesced while every operand allows, the inner run's length, and
    whether `cpu_kernel_vec` may load the runs as vectors (every operand's inner stride one
    element, or zero for at most one operand: `is_contiguous_scalar` also counts the output,
    so a unary kernel on a stride-0 input is vectorised too)."""
    shape = ops[0].shape
    strides = [[abs(s) // a.itemsize for s in a.strides] for a in ops]
    dims = _iteration_order(shape, strides)
    if not dims:
        return ops[0].size, True, dims
    last = dims[-1]
    inner_strides = [st[last] for st in strides]
    vectorisable = (all(s in (0, 1) for s in inner_strides)
                    and sum(s == 0 for s in inner_strides) <= 1)
    inner = shape[last]
    for outer, nxt in zip(reversed(dims[:-1]), reversed(dims[1:])):
        if any(st[outer] != st[nxt] * shape[nxt] for st in strides):
            break
        inner *= shape[outer]
    return inner, vectorisable, dims


def _vector_steps(n: int, step: int) -> np.ndarray:
    """Of a run of n elements, the ones `vectorized_loop` takes in whole steps."""
    run = np.zeros(n, bool)
    run[:n // step * step] = True
    return run


def _c_layout(shape: tuple[int, ...]) -> np.ndarray:
    """A read-only float32 view with a C-contiguous array's strides and no storage of its own
    (only its strides are read)."""
    strides, step = [], 4
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return np.lib.stride_tricks.as_strided(np.zeros(1, _F32), shape, tuple(reversed(strides)),
                                           writeable=False)


def vector_lanes(*ops: np.ndarray, contiguous_out: bool = False,
                 grain: int = GRAIN_SIZE) -> np.ndarray:
    """A bool array of the operands' (common) shape: True where torch's `cpu_kernel_vec`
    computes the element in its vector loop, False where the scalar lambda does (the tail of
    each run, or all of them when the vector loop cannot load the operands' inner strides).

    torch's loop visits the elements in memory order in runs of the coalesced inner dims;
    with at least `grain` elements and several threads it first splits them into
    `ceil(numel / tasks)`-element chunks, `tasks = min(threads, ceil(numel / grain))`; within
    each piece of a run, `vectorized_loop` takes whole steps of two vectors and leaves the rest
    to the scalar lambda.

    Args:
        ops: the kernel's input arrays in torch's operand order, all of one shape.
        contiguous_out: the op allocates a C-contiguous output before the loop (as
            `pow(Scalar, Tensor)` does) instead of TensorIterator's in the inputs' order: its
            strides lead the dim order and must allow the vector loads too.
        grain: the kernel's grain size (`cpu_kernel_vec`'s last argument): GRAIN_SIZE unless
            the kernel passes its own, as gelu's forward does (engine/gelu_erf.py).

    Returns:
        A new bool array of that shape.
    """
    shape = ops[0].shape
    if contiguous_out:
        ops = (_c_layout(shape), *ops)
    n = ops[0].size
    step = 2 * cascade.VECTOR_BYTES // 4
    if n < step:  # not one whole step anywhere, whatever the layout
        return np.zeros(shape, bool)
    inner, vectorisable, dims = _rows(list(ops))
    if not vectorisable:
        return np.zeros(shape, bool)
    threads = min(cascade.THREADS, -(-n // grain)) if n >= grain else 1
    chunk = -(-n // threads)
    lanes = np.empty(n, bool)  # in iteration order
    for begin in range(0, n, chunk):  # one piece per thread
        end = min(begin + chunk, n)
        head = min(end, -(-begin // inner) * inner)  # the first run's remainder
        lanes[begin:head] = _vector_steps(head - begin, step)
        rows = (end - head) // inner
        lanes[head:head + rows * inner] = np.tile(_vector_steps(inner, step), rows)
        lanes[head + rows * inner:end] = _vector_steps(end - head - rows * inner, step)
    rest = [d for d in range(len(shape)) if d not in dims]
    if dims + rest == sorted(dims + rest):
        return lanes.reshape(shape)
    iter_shape = tuple(shape[d] for d in dims + rest)
    return lanes.reshape(iter_shape).transpose(np.argsort(dims + rest))


_CHUNK = 1 << 16  # elements computed at a time: bounds the float64 scratch


def float32_kernel(vec: Callable[..., np.ndarray], scalar: Callable[..., np.ndarray],
                   *operands: np.ndarray, contiguous_out: bool = False,
                   grain: int = GRAIN_SIZE) -> np.ndarray:
    """A float32 elementwise kernel as torch runs it: `vec(*operands)` where torch's vector
    loop computes the element, `scalar(*operands)` where its scalar lambda does. The loop's
    vector width is `cascade.VECTOR_BYTES`, that of torch's ALSO_REGISTER_AVX512_DISPATCH
    kernels on this CPU: every caller's kernel is one (measured on an AVX512 CPU).

    Args:
        vec: the kernel's vector formula on float32 arrays (same-shaped 1-D operands).
        scalar: its scalar formula, likewise.
        operands: the float32 inputs in torch's operand order (they broadcast together; their
            strides decide the split).
        contiguous_out: the op's output is C-contiguous whatever the inputs' layout (see
            `vector_lanes`).
        grain: the kernel's grain size for torch's thread split (see `vector_lanes`).

    Returns:
        A new float32 array of the broadcast shape (a numpy float32 for 0-dim operands).
    """
    arrays = [np.asarray(a, _F32) for a in operands]
    if len(arrays) > 1:
        arrays = list(broadcast_arrays(*arrays))
    shape = arrays[0].shape
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    n = flat[0].size
    if n < 2 * cascade.VECTOR_BYTES // 4:
        # Not one whole vector step (a 0-dim tensor, say): torch's scalar lambda does them all,
        # as `vector_lanes` would say; skipped here, it costs more than the formula.
        out = np.empty(n, _F32)
        with np.errstate(all="ignore"):
            out[...] = scalar(*flat)
        result = out.reshape(shape)
        return result[()] if result.ndim == 0 else result
    lanes = vector_lanes(*arrays, contiguous_out=contiguous_out, grain=grain).reshape(-1)
    out = np.empty(lanes.size, _F32)
    with np.errstate(all="ignore"):
        for i in range(0, lanes.size, _CHUNK):
            if i:
                # the deadline, a cancel or a waiting caller between chunks (~10-20 ms each
                # for the costliest formulas): mish of 64 Mi elements ran 21 s in one op
                limits.tick()
            part = slice(i, i + _CHUNK)
            mask = lanes[part]
            ops = [a[part] for a in flat]
            piece = out[part]
            if mask.all():
                piece[...] = vec(*ops)
            elif not mask.any():
                piece[...] = scalar(*ops)
            else:
                piece[mask] = vec(*(a[mask] for a in ops))
                piece[~mask] = scalar(*(a[~mask] for a in ops))
    result = out.reshape(shape)
    return result[()] if result.ndim == 0 else result  # a numpy scalar, as a ufunc gives


# scratch of `float32_kernel` per element of a chunk: the float64 temporaries of `fma32`/`fma64`
# and the formulas' float32 intermediates (powf's double-float log and exp, about 180 bytes, is
# the largest measured with tracemalloc; softplus's exp then log1p about 100)
KERNEL_SCRATCH = 256 * _CHUNK


def kernel_scratch(elements: int) -> int:
    """`float32_kernel`'s scratch for a result of `elements` elements: `KERNEL_SCRATCH` for one
    of a chunk or more, less for a smaller one (a 256-element mish charged 16 MiB, so a
    stateless call could run only 63 of them, whatever their size)."""
    return 256 * min(elements, _CHUNK)
