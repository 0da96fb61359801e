"""float32 `gelu` (approximate='none') and its gradient as torch 2.13's CPU kernels round them.

torch hands a float32 `gelu` whose input is contiguous with more than one element to oneDNN
(`eltwise_gelu_erf`), forward and backward (`use_mkldnn` in ATen's Activation.cpp); anything
else (one element, a strided view) takes torch's own kernel. oneDNN's JIT code for AVX-512
computes every element with the same vector formula (the tail through a masked load), so no
element takes a scalar path there. Its two directions use different erf approximations:

- forward with AVX-512 (`cascade.ONEDNN_AVX512`): erf(x / sqrt 2) straight from |x| by one of
  25 degree-5 polynomials, chosen by |x|'s exponent and two leading mantissa bits (integer
  arithmetic on its bits), evaluated by float32 fused multiply-adds; the sign put back, then
  `x * (1 + erf) * 0.5`;
- forward with AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, as the tests run torch) and backward with either:
  erf(r), r = x / sqrt 2, by Abramowitz and Stegun's 7.1.26 (t = 1 / (1 + p|r|), a quartic in
  t times exp(-r*r)), with oneDNN's own exp (r / ln 2 rounded down after adding 0.5, a
  degree-5 polynomial, 2**(n - 1) built in the exponent field, times 2); the forward then
  `x/2 + x/2 * erf` (one FMA), the backward's derivative `0.5 + r / sqrt(pi) * exp(-r*r) +
  0.5 * erf` times the incoming gradient.

torch's own kernel (`GeluKernelImpl`, `GeluBackwardKernelImpl`) is a `cpu_kernel_vec` loop: its
vector code takes erf from Abramowitz and Stegun's 7.1.26 as well, but with SLEEF's expf and
torch's constants (`torch_vector`, `torch_vector_backward`), its scalar tail glibc's `erff`
(`torch_scalar`, `torch_scalar_backward`); `vecmath.float32_kernel` splits the elements.

Every float32 operation is rounded as the instruction rounds it (`fma32` for the FMAs, through
`vecmath._chained`'s batched check for small arrays). The polynomial coefficients are oneDNN's
(Apache-2.0, `jit_uni_eltwise_injector`), written out as their float32 bit patterns: they come
from a minimax fit and cannot be recomputed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gradserve.surface.layout import broadcast_arrays

from . import cascade, vecmath
from .distributions import fma32
from .vecmath import CHAIN_ELEMENTS, _chained

_F32 = np.float32
Fma = Callable[[Any, Any, Any], np.ndarray]  # fma32, or a `vecmath._FmaChain`


def _bits(*words: int) -> np.ndarray:
    return np.array(words, np.uint32).view(_F32)


# --- forward: piecewise minimax erf ------------------------------------------------------------
# Polynomial k (k = 1..24, index 0 unused) holds for |x| whose bit pattern minus 0x3de00001,
# shifted right by 21 (exponent and two mantissa bits), is k; below 1 index 1, above 24 index 24;
# |x| above _RBOUND takes polynomial 23 (the constant 1). Rows: degree 0 to 5.
_ERF_POLY = np.stack([_bits(*row) for row in (
    (0xa6f2cb94, 0x32827792, 0x3381cc0c, 0x34523d4a, 0x351ac44d, 0x35f36d88, 0x36ee8229,
     0x37b8a3bb, 0x3867a213, 0x3940033b, 0x3a2a5a1d, 0x3ae35863, 0x3b7828f2, 0x3c08b14b,
     0x3c515ed3, 0xbb503236, 0xbd8d8e5e, 0xbe8abcd9, 0xbf0c19a2, 0xbeccb328, 0x3e176ced,
     0x3f470d99, 0x3f7abb28, 0x3f800000, 0x00000000),
    (0x3f4c422a, 0x3f4c421f, 0x3f4c4207, 0x3f4c41cb, 0x3f4c413b, 0x3f4c3fad, 0x3f4c3a2f,
     0x3f4c2d40, 0x3f4c146a, 0x3f4bc341, 0x3f4ad08c, 0x3f48f8cf, 0x3f45fac7, 0x3f404e07,
     0x3f3b980f, 0x3f48dff3, 0x3f78b21b, 0x3fbb0704, 0x40019c32, 0x3fe536d6, 0x3f81331e,
     0x3e6c8684, 0x3c98f936, 0x00000000, 0x3f800000),
    (0xb62173f4, 0x3735e4cf, 0x37f2ff89, 0x388c23be, 0x3917535c, 0x39ab2ab0, 0x3a60fadb,
     0x3af9b960, 0x3b6e5491, 0x3c0a4ec5, 0x3ca5aa8c, 0x3d2138d9, 0x3d8737d4, 0x3ddfb660,
     0x3e0f27ab, 0x3d94004b, 0xbe0efdeb, 0xbf1d96c3, 0xbf89db58, 0xbf6d9897, 0xbef69fb8,
     0xbdc4f8a8, 0xbbde6422, 0x00000000, 0x00000000),
    (0xbe081a19, 0xbe084570, 0xbe08639b, 0xbe089837, 0xbe08f409, 0xbe09ab95, 0xbe0b66d0,
     0xbe0e400a, 0xbe124df8, 0xbe1bde02, 0xbe2f19c9, 0xbe4931bf, 0xbe685fbc, 0xbe89c95f,
     0xbe96cbca, 0xbe8044aa, 0xbe0550f2, 0x3dcfd6a1, 0x3e94c826, 0x3e79345f, 0x3decec91,
     0x3ca46568, 0x3aa1e00a, 0x00000000, 0x00000000),
    (0xba3d61db, 0x39f097a3, 0x3a5845dc, 0x3ab1fa35, 0x3b0cefb8, 0x3b653ab6, 0x3bcae527,
     0x3c221712, 0x3c6c5840, 0x3cc0a703, 0x3d1dcc19, 0x3d63656d, 0x3d955907, 0x3dbf9910,
     0x3dd53f69, 0x3db7dcef, 0x3d639ebe, 0xba6ede48, 0xbd22be69, 0xbd041cf1, 0xbc64f5ab,
     0xbb097a32, 0xb8ebf380, 0x00000000, 0x00000000),
    (0x3cb7d80c, 0x3c9b6050, 0x3c978d11, 0x3c92e850, 0x3c8d058b, 0x3c848454, 0x3c6cd623,
     0x3c4c824b, 0x3c2a7935, 0x3be0b390, 0x3b0651ac, 0xbb232f53, 0xbbd42fa0, 0xbc2c5366,
     0xbc492c9e, 0xbc2a7aa6, 0xbbd55d04, 0xba823a76, 0x3b102aa8, 0x3ae25a7e, 0x3a31f792,
     0x38b84375, 0x3689bb5a, 0x00000000, 0x00000000))])
_INDEX_BIAS = np.int32(-0x3DE00001)  # oneDNN adds 0xc21fffff as a 32-bit integer
_RBOUND = _bits(0x40B15CEE)[0]  # ~5.54: above it erf(x / sqrt 2) is 1 in float32
_SIGN = np.uint32(0x80000000)
_HALF = _F32(0.5)
_ONE = _F32(1)


def _erf_index(a: np.ndarray) -> np.ndarray:
    """The polynomial's index for |x| = a (NaN: 24, whose polynomial is |x| itself)."""
    idx = np.clip((a.view(np.int32) + _INDEX_BIAS) >> 21, 1, 24)
    idx[a > _RBOUND] = 23
    return idx


def _forward_avx512(x: np.ndarray, fma: Fma) -> np.ndarray:
    a = np.abs(x)
    coef = _ERF_POLY[:, _erf_index(a)]
    pol = coef[5]
    for deg in range(4, -1, -1):
        pol = fma(pol, a, coef[deg])
    erf = (pol.view(np.uint32) ^ (x.view(np.uint32) & _SIGN)).view(_F32)
    return x * (_ONE + erf) * _HALF


def onednn_forward(x: np.ndarray) -> np.ndarray:
    """gelu(x) for float32 x as oneDNN's AVX-512 `eltwise_gelu_erf` forward computes it.

    Args:
        x: a float32 array (any shape).

    Returns:
        A new float32 array of x's shape (with AVX-512 NaN at +-inf, as oneDNN's polynomial
        gives).
    """
    x = np.asarray(x, _F32)
    forward, steps = (_forward_avx512, 5) if cascade.ONEDNN_AVX512 else (_forward_avx2, 13)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if 0 < x.ndim and x.size <= CHAIN_ELEMENTS:
            return _chained(forward, steps, x)
        return forward(x, fma32)


# --- backward: Abramowitz-Stegun erf with oneDNN's exp ---------------------------------------

_EXP_POLY = _bits(0x3F7FFFFB, 0x3EFFFEE3, 0x3E2AAD40, 0x3D2B9D0D, 0x3C07CFCE)  # degree 1 to 5
_LOG2E = _bits(0x3FB8AA3B)[0]
_LN2 = _bits(0x3F317218)[0]
_EXP_HIGH = _bits(0x42B17218)[0]  # ln(FLT_MAX)
_EXP_LOW = _bits(0xC2AEAC50)[0]  # ln(FLT_MIN): below it the result is 0
_AS_P = _bits(0x3EA7BA05)[0]  # A&S 7.1.26's p
_AS_POLY = _bits(0x3E827906, 0xBE91A98E, 0x3FB5F0E3, 0xBFBA00E3, 0x3F87DC22)  # a1 to a5
_RSQRT2 = _bits(0x3F3504F3)[0]
_RSQRTPI = _bits(0x3F106EBA)[0]


def _exp(v: np.ndarray, fma: Fma) -> np.ndarray:
    """e**v as oneDNN's injector computes it (NaN becomes e**ln(FLT_MAX): its minps takes the
    bound when either operand is NaN)."""
    zero = v < _EXP_LOW
    v = np.where(v < _EXP_HIGH, v, _EXP_HIGH)
    v = np.where(v > _EXP_LOW, v, _EXP_LOW)
    fx = np.floor(v * _LOG2E + _HALF)
    r = fma(-fx, _LN2, v)
    scale = ((fx - _ONE).astype(np.int32) + 127) << 23
    scale[zero] = 0
    p = fma(r, _EXP_POLY[4], _EXP_POLY[3])
    for c in (_EXP_POLY[2], _EXP_POLY[1], _EXP_POLY[0], _ONE):
        p = fma(p, r, c)
    return p * scale.view(_F32) * _F32(2)


def _as_erf(r: np.ndarray, fma: Fma) -> tuple[np.ndarray, np.ndarray]:
    """(erf(r), exp(-r*r)) as oneDNN's Abramowitz-Stegun code computes them (12 FMAs)."""
    q = _exp(-(r * r), fma)
    w = _ONE / fma(_AS_P, np.abs(r), _ONE)
    p = fma(_AS_POLY[4], w, _AS_POLY[3])
    for c in (_AS_POLY[2], _AS_POLY[1], _AS_POLY[0]):
        p = fma(p, w, c)
    erf = fma(-q * w, p, _ONE)
    return (erf.view(np.uint32) ^ (r.view(np.uint32) & _SIGN)).view(_F32), q


def _forward_avx2(x: np.ndarray, fma: Fma) -> np.ndarray:
    erf, _ = _as_erf(x * _RSQRT2, fma)
    half = x * _HALF
    return fma(erf, half, half)


def _derivative(x: np.ndarray, g: np.ndarray,
                fma: Fma) -> np.ndarray:
    r = x * _RSQRT2
    erf, q = _as_erf(r, fma)
    return fma(erf, _HALF, r * _RSQRTPI * q + _HALF) * g


def onednn_backward(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The gradient of gelu at float32 x for incoming gradient g, as oneDNN's AVX-512
    `eltwise_gelu_erf` backward computes it.

    Args:
        g: the incoming float32 gradient (broadcasts to x's shape).
        x: the forward's float32 input.

    Returns:
        A new float32 array of the broadcast shape.
    """
    g, x = (np.ascontiguousarray(a) for a in broadcast_arrays(np.asarray(g, _F32),
                                                                  np.asarray(x, _F32)))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if 0 < x.ndim and x.size <= CHAIN_ELEMENTS:
            return _chained(_derivative, 13, x, g)
        return _derivative(x, g, fma32)


# --- torch's own kernel ------------------------------------------------------------------------
# Abramowitz and Stegun's 7.1.26 constants as torch's vector erf holds them (float literals)
_TORCH_P = _F32(0.3275911)
_TORCH_POLY = tuple(_F32(c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736,
                                      0.254829592))  # a5 down to a1
_ALPHA = _F32(np.sqrt(0.5))  # M_SQRT1_2
_BETA = _F32(2 / np.sqrt(np.pi) * np.sqrt(0.5) * 0.5)  # M_2_SQRTPI * M_SQRT1_2 * 0.5, in double
_GLIBC_ERFF = vecmath._libm_function("erff")


def _torch_erf(v: np.ndarray) -> np.ndarray:
    """erf(v) as torch's AVX-512 `Vectorized<float>::erf`: 1 - t * P(t) * exp(-v*v) with
    t = 1 / (1 + p|v|), the exp SLEEF's, the sign put back."""
    t = _ONE / fma32(_TORCH_P, np.abs(v), _ONE)
    r = fma32(_TORCH_POLY[0], t, _TORCH_POLY[1])
    for c in _TORCH_POLY[2:]:
        r = fma32(r, t, c)
    e = vecmath.sleef_expf(-(v * v))
    erf = fma32(-e * t, r, _ONE)
    return (erf.view(np.uint32) ^ (v.view(np.uint32) & _SIGN)).view(_F32)


def _libm_erf(v: np.ndarray) -> np.ndarray:
    """glibc's erff (torch's `std::erf` of a float) on each element; without glibc, erf
    rounded from float64 (the same but for rare last-bit cases)."""
    if _GLIBC_ERFF is not None:
        return vecmath._call_libm(_GLIBC_ERFF, v)
    return np.vectorize(math.erf, otypes=[np.float64])(v).astype(_F32)


def torch_vector(x: np.ndarray) -> np.ndarray:
    """gelu(x) as torch's vector loop computes it: `x * 0.5 * (1 + erf(x * M_SQRT1_2))`."""
    return x * _HALF * (_ONE + _torch_erf(x * _ALPHA))


def torch_scalar(x: np.ndarray) -> np.ndarray:
    """gelu(x) as torch's scalar lambda computes it (glibc's erff)."""
    return x * _HALF * (_ONE + _libm_erf(x * _ALPHA))


def _torch_backward(erf: Callable[[np.ndarray], np.ndarray],
                    exp: Callable[[np.ndarray], np.ndarray],
                    fused: bool) -> Callable[..., np.ndarray]:
    def kernel(g: np.ndarray, x: np.ndarray) -> np.ndarray:
        # dy * (cdf + x * pdf); torch's build fuses `cdf + x * pdf` in the vector code
        # (GCC contracts the Vectorized operators), not in the scalar lambda (measured)
        cdf = _HALF * (_ONE + erf(x * _ALPHA))
        pdf = _BETA * exp(x * x * _F32(-0.5))
        return g * (fma32(x, pdf, cdf) if fused else x * pdf + cdf)
    return kernel


torch_vector_backward = _torch_backward(_torch_erf, vecmath.sleef_expf, fused=True)
torch_scalar_backward = _torch_backward(_libm_erf, vecmath.libm_expf, fused=False)


def takes_onednn(x: Any) -> bool:
    """Whether torch hands gelu (approximate='none') of float32 x to oneDNN: a contiguous
    tensor of more than one element (`use_mkldnn`; numpy's contiguity, like torch's, ignores
    the strides of size-1 dims)."""
    return isinstance(x, np.ndarray) and x.size > 1 and x.flags.c_contiguous


# torch's own gelu forward kernel (`GeluKernelImpl`, both forms; not its backward) gives its
# loop a grain of numel / threads above this many elements, so from 16385 elements on it splits
# them over its threads where other kernels wait for GRAIN_SIZE (32768): each thread's piece
# then leaves its own scalar tail (measured: 20008 elements at AVX2, 20000 at AVX512)
_GELU_MIN_ELEMENTS_FOR_MULTI_THREADING = 16384


def forward_grain(n: int) -> int:
    """The grain size torch's own gelu forward kernel splits n elements with."""
    if n > _GELU_MIN_ELEMENTS_FOR_MULTI_THREADING:
        return max(1, n // cascade.THREADS)
    return vecmath.GRAIN_SIZE


def forward(x: Any) -> Any:
    """float32 gelu(x) (approximate='none') as torch 2.13 computes it on this layout."""
    if takes_onednn(x):
        return vecmath.float32_kernel(onednn_forward, onednn_forward, x)
    return vecmath.float32_kernel(torch_vector, torch_scalar, x, grain=forward_grain(x.size))


def backward(g: Any, x: Any) -> Any:
    """The float32 gradient of gelu (approximate='none') for incoming g at x, as torch 2.13
    computes it (oneDNN's or its own kernel, by x's layout as in the forward)."""
    if takes_onednn(x):
        return vecmath.float32_kernel(onednn_backward, onednn_backward, g, x)
    return vecmath.float32_kernel(torch_vector_backward, torch_scalar_backward, g, x)
