"""Elementwise ops: arithmetic, math functions, activations, comparisons, logic.

Each entry: name, numpy forward, one VJP rule per input (see `registry`). Broadcasting needs no
care here: the backward pass sums each gradient back to its input's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from gradserve.surface import messages
from gradserve.surface.layout import broadcast_shapes
from gradserve.surface.memory_format import ATTR_CHOICES, rank_error
from gradserve.surface.messages import TYPE_WORDS

from . import dtypes, errors, gelu_erf, limits, mkl, parallel, scalarmath, strided, vecmath
from .distributions import fma32, fma64
from .dtypes import DType
from .registry import (
    BOOL,
    COMPARE,
    FLOAT,
    OPS,
    PROMOTE,
    SAME,
    AttrSpec,
    by_dtypes,
    defop,
    keeps_0d,
    names_backward,
    promote_args,
    shapes_only,
    temporaries,
)


def _is_tensor(a: Any) -> bool:
    return hasattr(a, "ndim") and not isinstance(a, (bool, int, float))


@keeps_0d
@shapes_only
def broadcast_shape(*args: Any, **attrs: Any) -> tuple[int, ...]:
    """Result shape of an elementwise op (for the allocation check).

    Raises:
        InvalidArgumentError: the shapes do not broadcast (torch's message).
    """
    shapes = [tuple(a.shape) for a in args if _is_tensor(a)]
    if not shapes:
        return ()
    first = shapes[0]
    if all(s == first for s in shapes):  # one shape (a tensor and scalars) or all equal
        return first
    try:
        return tuple(broadcast_shapes(*shapes))
    except ValueError:
        raise _broadcast_error(shapes) from None


def _broadcast_error(shapes: Sequence[tuple[int, ...]]) -> errors.InvalidArgumentError:
    """torch's infer_size message for the first pair of shapes that does not broadcast."""
    return errors.InvalidArgumentError(messages.size_mismatch(shapes))


def _by_scalars(all_tensors: str, scalar_other: str, scalar_input: str | None = None):  # noqa: ANN202
    """torch names some nodes by which operands were Python scalars (PowBackward0/1/2)."""
    def name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
        if len(args) == 2 and not _is_tensor(args[1]):
            return scalar_other
        if scalar_input is not None and len(args) == 2 and not _is_tensor(args[0]):
            return scalar_input
        return all_tensors
    return names_backward(all_tensors, scalar_other, scalar_input or "")(name)




# `y * alpha` is a temporary of (up to) the result's size before the add.
_ALPHA_SCALED = temporaries(broadcast_shape, results=1)
_UNSCALED = temporaries(broadcast_shape)


# a float32 `y * alpha` is fused (`_fma_scalar32`): contiguous copies of both operands (8 bytes
# a result element) and a fixed scratch per chunk (float64 sums, masks, `fma32` of the redone)
_FUSED = temporaries(broadcast_shape, result_bytes=8)


def _fused_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    bound = _FUSED(args, attrs, out_dtype)
    chunk = min(limits.numel(broadcast_shape(*args, **attrs)), _FMA_CHUNK)
    return limits.with_scratch(bound, 96 * chunk)


# a float64 `y * alpha` is fused (`_fma_scalar64`): contiguous copies of both operands (16 bytes
# a result element) and a fixed scratch per chunk (thirteen float64 or mask arrays)
_FUSED64 = temporaries(broadcast_shape, result_bytes=16)


def _fused_bound64(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    bound = _FUSED64(args, attrs, out_dtype)
    chunk = min(limits.numel(broadcast_shape(*args, **attrs)), _FMA_CHUNK)
    return limits.with_scratch(bound, 104 * chunk)


@shapes_only
def _alpha_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    if attrs.get("alpha", 1) == 1:
        return _UNSCALED(args, attrs, out_dtype)
    if out_dtype is dtypes.float32:
        return _fused_bound(args, attrs, out_dtype)
    if out_dtype is dtypes.float64:
        return _fused_bound64(args, attrs, out_dtype)
    return _ALPHA_SCALED(args, attrs, out_dtype)


def _scaled_add(x: Any, y: Any, alpha: Any) -> Any:
    """`x + alpha * y` rounded as torch's CPU add kernel rounds it.

    torch computes a scaled add as one fused multiply-add (`vec::fmadd(y, alpha, x)`, alpha
    cast to the tensors' float32 compute type), so `p.add_(grad, alpha=-lr)` rounds once where
    `x + y * alpha` rounds twice (5,596 of 100,000 random float32 elements differed; float64:
    23,672). float32 operands take `_fma_scalar32`, float64 ones `_fma_scalar64`; other dtypes
    keep numpy's two roundings.
    """
    if alpha == 1:
        return scalarmath.call(np.add, x, y, split=True)  # 0-d: operator; large: threads
    if not (isinstance(x, np.ndarray) and isinstance(alpha, (int, float))
            and not isinstance(alpha, bool)):
        return np.add(x, y * alpha)
    for dtype, fused in ((np.float32, _fma_scalar32), (np.float64, _fma_scalar64)):
        if x.dtype == dtype and (isinstance(y, (int, float)) and not isinstance(y, bool)
                                 or isinstance(y, np.ndarray) and y.dtype == dtype):
            return fused(np.asarray(y, dtype), dtype(alpha), x)
    return np.add(x, y * alpha)


_FMA_CHUNK = 1 << 16  # elements fused at a time: bounds `_fma_scalar32`'s scratch


def _fma_scalar32(y: np.ndarray, a: np.float32, x: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 `y * a + x` (a a number, y and x broadcast), in chunks.

    The product is exact in float64 and the sum is rounded there once; rounding that to float32
    is right except where the float64 sum lies exactly halfway between two float32s or in
    float32's subnormals: those elements are redone by `fma32`. Work goes in chunks of
    `_FMA_CHUNK` elements, so the float64 scratch stays fixed whatever the size.
    """
    a64 = np.float64(a)
    if (type(y) is np.ndarray and type(x) is np.ndarray and y.shape == x.shape and y.ndim
            and y.size <= _FMA_CHUNK and y.flags.c_contiguous and x.flags.c_contiguous):
        # one chunk of equal C-ordered shapes (an optimizer's buffers): the loop's numpy calls
        # without broadcasting, copying and slicing, which cost more than the arithmetic here
        s = np.multiply(y, a64, dtype=np.float64)
        np.add(s, x, out=s, dtype=np.float64)
        out = s.astype(np.float32)
        bits = s.view(np.uint64)
        np.bitwise_and(bits, 0x1FFFFFFF, out=bits)
        redo = bits == 0x10000000
        redo |= np.abs(out) < np.float32(2.0 ** -125)
        if redo.any():
            out[redo] = fma32(y[redo], float(a), x[redo])
        return out
    shape = broadcast_shapes(y.shape, x.shape)
    out = np.empty(shape, np.float32)
    flat = out.reshape(-1)
    ys = np.ascontiguousarray(np.broadcast_to(y, shape)).reshape(-1)
    xs = np.ascontiguousarray(np.broadcast_to(x, shape)).reshape(-1)
    for i in range(0, flat.size, _FMA_CHUNK):
        yc, xc = ys[i:i + _FMA_CHUNK], xs[i:i + _FMA_CHUNK]
        s = np.add(np.multiply(yc, a64, dtype=np.float64), xc, dtype=np.float64)
        oc = flat[i:i + _FMA_CHUNK]
        oc[...] = s
        bits = s.view(np.uint64)
        np.bitwise_and(bits, 0x1FFFFFFF, out=bits)  # the 29 mantissa bits float32 drops
        redo = bits == 0x10000000
        redo |= np.abs(oc) < np.float32(2.0 ** -125)
        if redo.any():
            oc[redo] = fma32(yc[redo], float(a), xc[redo])
    return out


_SPLIT = 134217729.0  # 2**27 + 1: Dekker's split of a float64 into two 26-bit halves
_SAFE_LOW, _SAFE_HIGH = 2.0 ** -900, 2.0 ** 900  # where the error-free steps below are exact


def _fma_scalar64(y: np.ndarray, a: np.float64, x: np.ndarray) -> np.ndarray:
    """Correctly rounded float64 `y * a + x` (a a number, y and x broadcast), in chunks.

    Boldo and Melquiond's emulation ("Emulation of a FMA and correctly-rounded sums: proved
    algorithms using rounding to odd", IEEE TC 2008): the product split exactly into
    `p + e` (Dekker), `x + p` into `s + t` (Knuth's TwoSum), then `s + RO(t + e)` rounded to
    nearest, where RO rounds to odd. Elements beyond the range where those steps are exact
    (huge or tiny magnitudes, non-finite values) are computed exactly with fractions.
    """
    shape = broadcast_shapes(y.shape, x.shape)
    out = np.empty(shape, np.float64)
    flat = out.reshape(-1)
    ys = np.ascontiguousarray(np.broadcast_to(y, shape)).reshape(-1)
    xs = np.ascontiguousarray(np.broadcast_to(x, shape)).reshape(-1)
    a = np.float64(a)
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    with np.errstate(all="ignore"):
        for i in range(0, flat.size, _FMA_CHUNK):
            yc, xc = ys[i:i + _FMA_CHUNK], xs[i:i + _FMA_CHUNK]
            cy = _SPLIT * yc
            yh = cy - (cy - yc)
            yl = yc - yh
            p = yc * a
            e = ((yh * ah - p) + yh * al + yl * ah) + yl * al  # p + e == y * a exactly
            s = xc + p
            bb = s - xc
            t = (xc - (s - bb)) + (p - bb)  # s + t == x + p exactly
            u = t + e
            bb = u - t
            v = (t - (u - bb)) + (e - bb)  # u + v == t + e exactly
            even = (u.view(np.int64) & 1) == 0
            inexact = (v != 0) & even
            u[inexact] = np.nextafter(u[inexact], np.where(v[inexact] > 0, np.inf, -np.inf))
            oc = flat[i:i + _FMA_CHUNK]
            np.add(s, u, out=oc)
            zero = oc == 0  # an exact zero: p is exact, and s has IEEE's sign for it
            oc[zero] = s[zero]
            mags = (np.abs(yc), abs(a), np.abs(xc), np.abs(p))
            unsafe = ~np.isfinite(oc) | ~np.isfinite(p)
            for m in mags:
                unsafe |= (m > _SAFE_HIGH) | ((m < _SAFE_LOW) & (m != 0))
            if unsafe.any():
                oc[unsafe] = [_exact_fma(float(yy), float(a), float(xx))
                              for yy, xx in zip(yc[unsafe], xc[unsafe])]
    return out


def _exact_fma(y: float, a: float, x: float) -> float:
    """`y * a + x` rounded once (exact rational arithmetic; IEEE results for inf and nan)."""
    if not (math.isfinite(y) and math.isfinite(a) and math.isfinite(x)):
        return y * a + x
    exact = Fraction(y) * Fraction(a) + Fraction(x)
    if exact == 0:
        return y * a + x  # the sign of a zero sum, as the hardware rounds it
    try:
        return float(exact)  # int / int is correctly rounded
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


# --- arithmetic ----------------------------------------------------------------------------------

defop("add", lambda x, y, alpha=1: _scaled_add(x, y, alpha),
      lambda ns, g, out, x, y, alpha: g,
      lambda ns, g, out, x, y, alpha: g * alpha if alpha != 1 else g,
      saves=("", ""),
      inputs=("input", "other"), attrs=(AttrSpec("alpha", "scalar", 1),), dtype=PROMOTE,
      inplace=True, doc="input + alpha * other", out_shape=broadcast_shape,
      out_bound=_alpha_bound, default_ufunc=np.add)


@by_dtypes
def _sub_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType, DType]:
    """PROMOTE, refusing a bool operand as torch's sub_check: a bool tensor or a Python bool
    (a numpy bool is a float, gradserve.surface.numbers)."""
    bools = [a.dtype is dtypes.bool_ if hasattr(a, "dtype") and not isinstance(a, np.generic)
             else type(a) is bool for a in args]
    if all(bools):
        raise errors.InvalidArgumentError(
            "Subtraction, the `-` operator, with two bool tensors is not supported. Use the "
            "`^` or `logical_xor()` operator instead.")
    if any(bools):
        raise errors.InvalidArgumentError(
            "Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
            "trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    d = promote_args(args)
    return d, d


defop("sub", lambda x, y, alpha=1: (scalarmath.call(np.subtract, x, y) if alpha == 1  # numpy
                                    # refuses bool - bool
                                    else _scaled_add(x, y, -alpha)),
      lambda ns, g, out, x, y, alpha: g,
      lambda ns, g, out, x, y, alpha: -g * alpha if alpha != 1 else -g,
      saves=("", ""),
      inputs=("input", "other"), attrs=(AttrSpec("alpha", "scalar", 1),), dtype=_sub_dtype,
      backward=_by_scalars("SubBackward0", "SubBackward0", "RsubBackward1"),
      inplace=True, doc="input - alpha * other", out_shape=broadcast_shape,
      out_bound=_alpha_bound, default_ufunc=np.subtract)
defop("mul", np.multiply,
      # g * y, split over threads when large (the check inline: a 0-d gradient is a numpy
      # scalar or, with create_graph, a Tensor, and the chain of scalar ops pays no call)
      lambda ns, g, out, x, y: parallel.mul(g, y) if type(g) is np.ndarray else g * y,
      lambda ns, g, out, x, y: parallel.mul(g, x) if type(g) is np.ndarray else g * x,
      saves=("other", "input"),
      inputs=("input", "other"), dtype=PROMOTE, inplace=True, doc="input * other",
      out_shape=broadcast_shape)
def _div_other_backward(g: Any, x: Any, y: Any) -> Any:
    # torch's div_tensor_other_backward, -grad * ((self / other) / other), with its nodes made
    # in torch's order when recorded: GCC evaluates the right operand of `*` first
    q = x / y / y
    return -g * q


defop("div", np.true_divide,
      lambda ns, g, out, x, y: g / y,
      lambda ns, g, out, x, y: _div_other_backward(g, x, y),
      saves=("other", "input other"),
      inputs=("input", "other"), dtype=FLOAT, inplace=True, doc="input / other (true division)",
      out_shape=broadcast_shape)


# torch's C++ Scalar overloads, add/mul/div(Tensor, Scalar): what its composite ops
# (cross_entropy, label smoothing) call, recording AddBackward1 / MulBackward1 / DivBackward1
# where Python's `x * 2` wraps the number as a tensor (MulBackward0). The number is an attribute,
# not an input.
def _scalar_overload_dtype(to_float: bool) -> Any:
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any]:
        d = promote_args((*args, attrs["other"]))
        d = dtypes.to_float(d) if to_float else d
        return d, d
    return rule


defop("add_scalar", lambda x, other: np.add(x, other),
      lambda ns, g, out, x, other: g,
      saves="", attrs=(AttrSpec("other", "scalar", required=True),),
      dtype=_scalar_overload_dtype(False), backward="AddBackward1", method=False,
      doc="input + other for a number other: torch's C++ add(Tensor, Scalar) (AddBackward1)",
      out_shape=lambda x, other: x.shape)
defop("mul_scalar", lambda x, other: np.multiply(x, other),
      lambda ns, g, out, x, other: ns.mul_scalar(g, other=other),
      saves="", attrs=(AttrSpec("other", "scalar", required=True),),
      dtype=_scalar_overload_dtype(False), backward="MulBackward1", method=False,
      doc="input * other for a number other: torch's C++ mul(Tensor, Scalar) (MulBackward1)",
      out_shape=lambda x, other: x.shape)
defop("div_scalar", lambda x, other: np.true_divide(x, other),
      lambda ns, g, out, x, other: ns.div_scalar(g, other=other),
      saves="", attrs=(AttrSpec("other", "scalar", required=True),),
      dtype=_scalar_overload_dtype(True), backward="DivBackward1", method=False,
      doc="input / other for a number other: torch's C++ div(Tensor, Scalar) (DivBackward1)",
      out_shape=lambda x, other: x.shape)


def _not_implemented(aten: str) -> Any:
    """torch records some ops whose derivative it lacks: backward through them fails."""
    def rule(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
        raise errors.AutogradError(f"derivative for aten::{aten} is not implemented")
    return rule


def _remainder_dy(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    if not _is_tensor(x):  # remainder(Python scalar, tensor): no derivative in torch
        raise errors.AutogradError("derivative for aten::remainder is not implemented")
    return -g * ns.floor(x / y)  # torch: div(rounding_mode="floor"), zero gradient


def _integer_zero_check(f: Any) -> Any:
    """torch raises (a RuntimeError reading "ZeroDivisionError") on integer division by zero,
    where numpy gives 0."""
    def forward(x: Any, y: Any) -> Any:
        ya = np.asarray(y)
        if ya.dtype.kind in "iu" and np.asarray(x).dtype.kind in "iu" and (ya == 0).any():
            raise errors.InvalidArgumentError("ZeroDivisionError")
        return f(x, y)
    return forward


defop("floor_divide", _integer_zero_check(np.floor_divide), _not_implemented("floor_divide"),
      _not_implemented("floor_divide"), inputs=("input", "other"), dtype=PROMOTE,
      saves=("", ""),
      backward="NotImplemented", doc="floor(input / other); torch has no derivative",
      out_shape=broadcast_shape)
defop("remainder", _integer_zero_check(np.remainder),
      lambda ns, g, out, x, y: g,
      _remainder_dy,
      saves=("", "input other"),
      inputs=("input", "other"), dtype=PROMOTE, doc="Python-style modulus (sign of other)",
      backward=_by_scalars("RemainderBackward1", "RemainderBackward0", "NotImplemented"),
      out_shape=broadcast_shape)


def _fmod_dy(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    q = x / y  # torch: -grad * input.div(other, rounding_mode="trunc"), zero gradient
    return -g * ns.where(q < 0, ns.ceil(q), ns.floor(q))


defop("fmod", _integer_zero_check(np.fmod),
      lambda ns, g, out, x, y: g,
      _fmod_dy,
      saves=("", "input other"),
      inputs=("input", "other"), dtype=PROMOTE, doc="C-style modulus (sign of input)",
      backward=_by_scalars("FmodBackward1", "FmodBackward0"),
      out_shape=broadcast_shape)


# the exponents torch's CPU pow kernel computes without pow (PowKernel.cpp), so float32 results
# round as torch's do: x ** 3 is x * x * x, not the correctly rounded power
_POW_SPECIAL = {
    3: lambda x: x * x * x,
    -2: lambda x: 1 / (x * x),
    -0.5: lambda x: 1 / np.sqrt(x),
    -1: lambda x: 1 / x,
}


def _pow_scalar_tail(e: float) -> Callable[[np.ndarray], np.ndarray]:
    # torch's scalar lambda for a Scalar exponent: std::pow(float, double), glibc's double pow
    return lambda v: np.power(v.astype(np.float64), e).astype(np.float32)


def _pow_forward(x: Any, y: Any) -> Any:
    if type(y) in (int, float) and _is_tensor(x):
        if y == 2:
            return parallel.call(np.square, x)  # the common x ** 2: one pass, no pow
        if y == 1 and x.dtype.kind == "f":
            return x.copy()  # torch's pow_Tensor_Scalar_out copies its input
        if x.dtype in (np.float32, np.float64) and y in _POW_SPECIAL:
            return _POW_SPECIAL[y](x)
        if x.dtype in (np.float32, np.float64) and y == 0.5:
            return OPS["sqrt"].forward(x)  # torch's sqrt kernel, whatever computes it
        if y < 0 and x.dtype.kind in "iu":
            raise errors.InvalidArgumentError(
                "Integers to negative integer powers are not allowed.")
        if y not in (0, 1) and _float32(x):
            # SLEEF's powf (the exponent rounded to float) in the vector loop (vecmath)
            return vecmath.float32_kernel(
                lambda v: vecmath.sleef_powf(v, np.float32(y)), _pow_scalar_tail(float(y)), x)
    elif _is_tensor(x) and x.dtype.kind in "iu" and np.any(np.asarray(y) < 0):
        raise errors.InvalidArgumentError("Integers to negative integer powers are not allowed.")
    elif _float32(y) and (_float32(x) or type(x) in (int, float)):
        # tensor ** tensor, and a number ** tensor (torch wraps the number in a 0-dim tensor,
        # into an output it allocates C-contiguous): SLEEF's powf in the vector loop, glibc's
        # powf (numpy's float32 power) in the tail
        return vecmath.float32_kernel(vecmath.sleef_powf, np.power, np.asarray(x, np.float32), y,
                                      contiguous_out=not _is_tensor(x))
    return parallel.call(np.power, x, y)


def _pow_dx(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    # torch's pow_backward, grouped as torch groups it: grad * (y * x.pow(y - 1)). The grouping
    # decides float32 rounding, and the x.pow(y - 1) it records is what makes a higher
    # derivative of x ** 2 depend on x (grad_fn MulBackward0 where 2 * x would give none).
    if not _is_tensor(y):
        if y == 0:
            return g * 0
        if type(g) is np.ndarray:  # split over threads when large, the outer product in place
            # x.pow(1) is a copy of x in torch (pow_Tensor_Scalar_out): for x ** 2, 2 * x
            return parallel.mul_into(g, parallel.mul(y, x if y == 2 else ns.pow(x, y - 1)))
        return g * (y * ns.pow(x, y - 1))
    return ns.where(y == 0, 0.0, g * (y * ns.pow(x, y - 1)))


def _pow_dy(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    # torch: the exponent's gradient is 0 where the base is 0 and the exponent is >= 0.
    if not _is_tensor(x):
        return g * (out * math.log(x)) if x != 0 else g * 0
    return g * ns.where(ns.logical_and(x == 0, y >= 0), 0.0, out * ns.log(x))


_POW_NUMPY = temporaries(broadcast_shape, result_bytes=1)


@shapes_only
def _pow_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    # float32 goes through `vecmath.float32_kernel` (see _exact32_or, defined below)
    if out_dtype is dtypes.float32:
        exact = _EXACT32(args, attrs, out_dtype)
        return limits.with_scratch(exact, vecmath.kernel_scratch(exact.elements))
    return _POW_NUMPY(args, attrs, out_dtype)


defop("pow", _pow_forward, _pow_dx, _pow_dy, inputs=("input", "exponent"), dtype=PROMOTE,
      saves=("input exponent", "result input exponent"),
      backward=_by_scalars("PowBackward1", "PowBackward0", "PowBackward2"), inplace=True,
      doc="input ** exponent", out_shape=broadcast_shape, out_bound=_pow_bound)
defop("square", np.square, lambda ns, g, out, x: g * (2 * ns.pow(x, 1)), dtype=PROMOTE,
      saves="input",
      backward="PowBackward0", doc="input ** 2",
      out_shape=broadcast_shape)

# --- unary math ----------------------------------------------------------------------------------

defop("neg", np.negative,
      lambda ns, g, out, x: parallel.neg(g) if type(g) is np.ndarray else -g,
      inplace=True, doc="-input",
      saves="",
      out_shape=broadcast_shape)
defop("abs", np.abs, lambda ns, g, out, x: g * ns.sign(x), inplace=True, doc="|input|",
      saves="input",
      out_shape=broadcast_shape)
defop("sign", np.sign, lambda ns, g, out, x: g * 0, doc="-1, 0 or 1; zero gradient",
      saves="", inplace=True,
      out_shape=broadcast_shape)
defop("floor", np.floor, lambda ns, g, out, x: g * 0, doc="round down; zero gradient",
      saves="", inplace=True,
      out_shape=broadcast_shape)
defop("ceil", np.ceil, lambda ns, g, out, x: g * 0, doc="round up; zero gradient",
      saves="", inplace=True,
      out_shape=broadcast_shape)
defop("round", lambda x, decimals=0: np.round(x, decimals),
      lambda ns, g, out, x, decimals: g * 0, attrs=(AttrSpec("decimals", "int", 0),),
      saves="", inplace=True,
      backward=names_backward("RoundBackward0", "RoundBackward1")(
          lambda args, attrs: "RoundBackward1" if attrs["decimals"] else "RoundBackward0"),
      doc="round half to even; zero gradient",
      out_bound=temporaries(broadcast_shape, results=1))
defop("reciprocal", np.reciprocal, lambda ns, g, out, x: -g * out * out, dtype=FLOAT,
      saves="result",
      doc="1 / input",
      out_shape=broadcast_shape)
defop("sqrt", mkl.unary("Sqrt", np.sqrt), lambda ns, g, out, x: g / (2 * out), dtype=FLOAT,
      inplace=True,
      saves="result",
      doc="square root",
      out_shape=broadcast_shape)
defop("rsqrt", lambda x: 1 / np.sqrt(x), lambda ns, g, out, x: -0.5 * g * out * out * out,
      saves="result",
      dtype=FLOAT, doc="1 / sqrt(input)",
      out_bound=temporaries(broadcast_shape, results=1))
defop("exp", mkl.unary("Exp", np.exp),
      lambda ns, g, out, x: parallel.mul(g, out) if type(g) is np.ndarray else g * out,
      dtype=FLOAT, inplace=True,
      doc="e ** input",
      saves="result",
      out_shape=broadcast_shape)
def _float32(*values: Any) -> bool:
    """Whether every value is float32 numpy data (an array, or the numpy scalar a 0-dim
    tensor may hold), which `vecmath.float32_kernel` computes as torch does (unless
    `vecmath.set_exact(False)`)."""
    return vecmath.EXACT and all(isinstance(v, (np.ndarray, np.float32))
                                 and v.dtype == np.float32 for v in values)


# float32 forwards through `vecmath.float32_kernel`: besides the result, a lane mask and
# contiguous copies (8 bytes a result element) and one chunk's float64 scratch (fixed)
_EXACT32 = temporaries(broadcast_shape, result_bytes=8)


def _exact32_or(other: Any) -> Any:
    """An `out_bound`: `vecmath.float32_kernel`'s for float32, `other`'s (numpy's
    temporaries) for the dtypes that keep numpy."""
    @shapes_only
    def bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
        if out_dtype is dtypes.float32:
            exact = _EXACT32(args, attrs, out_dtype)
            return limits.with_scratch(exact, vecmath.kernel_scratch(exact.elements))
        return other(args, attrs, out_dtype)
    return bound


def exact32_unary(vector: Any, scalar: Any, fallback: np.ufunc) -> Any:
    """A unary forward whose float32 is torch's kernel: `vector` where torch's vector loop runs,
    `scalar` in its scalar tail (`vecmath.float32_kernel`); `fallback` (numpy's) for the other
    dtypes."""
    def forward(x: Any) -> Any:
        if _float32(x):
            return vecmath.float32_kernel(vector, scalar, x)
        return fallback(x)
    forward.__name__ = fallback.__name__
    return forward


# float32 as torch rounds it: torch maps SLEEF's expm1 over every element (`vec::map` loads the
# tail as a partial vector), so both of the kernel's paths are SLEEF's
_expm1 = exact32_unary(vecmath.sleef_expm1f, vecmath.sleef_expm1f, np.expm1)


defop("expm1", _expm1, lambda ns, g, out, x: g * (out + 1), dtype=FLOAT,
      saves="result",
      doc="exp(input) - 1",
      out_bound=_exact32_or(temporaries(broadcast_shape)))
defop("log", mkl.unary("Ln", np.log), lambda ns, g, out, x: g / x, dtype=FLOAT, inplace=True,
      saves="input",
      doc="natural logarithm",
      out_shape=broadcast_shape)
# float32 as torch rounds it: SLEEF's log1p over every element (as expm1)
_log1p = exact32_unary(vecmath.sleef_log1pf, vecmath.sleef_log1pf, np.log1p)


defop("log1p", _log1p, lambda ns, g, out, x: g / (x + 1), dtype=FLOAT,
      saves="input",
      backward="Log1PBackward0", doc="log(1 + input)",
      out_bound=_exact32_or(temporaries(broadcast_shape)))
defop("log2", mkl.unary("Log2", np.log2),
      lambda ns, g, out, x: g / (x * math.log(2.0)), dtype=FLOAT,
      saves="input",
      doc="base-2 logarithm",
      out_shape=broadcast_shape)
defop("sin", mkl.unary("Sin", np.sin),
      # g * cos(x), into the new cos(x) array (parallel.mul_into)
      lambda ns, g, out, x: (parallel.mul_into(g, ns.cos(x)) if type(g) is np.ndarray
                             else g * ns.cos(x)),
      dtype=FLOAT, inplace=True,
      doc="sine",
      saves="input",
      out_shape=broadcast_shape)
defop("cos", mkl.unary("Cos", np.cos),
      lambda ns, g, out, x: (parallel.mul_into(parallel.neg(g), ns.sin(x))
                             if type(g) is np.ndarray
                             else -g * ns.sin(x)),
      dtype=FLOAT,
      inplace=True,
      saves="input",
      doc="cosine",
      out_shape=broadcast_shape)
defop("tan", mkl.unary("Tan", np.tan),
      lambda ns, g, out, x: g * (1 + out * out), dtype=FLOAT, doc="tangent",
      saves="result",
      out_shape=broadcast_shape)
defop("tanh", mkl.unary("Tanh", np.tanh),
      lambda ns, g, out, x: ns.tanh_backward(g, out), dtype=FLOAT, inplace=True,
      saves="result",
      doc="hyperbolic tangent",
      out_shape=broadcast_shape)


def _tanh_backward(g: Any, y: Any) -> Any:
    """torch's tanh_backward kernel, `g * (1 - y * y)` with the parenthesis one fused
    multiply-add (its AVX2 build contracts it, in the vector loop and the tail alike); g and y
    come in the one floating dtype the dtype rule promoted them to."""
    if y.dtype == np.float32:
        return g * fma32(-y, y, _ONE32)
    return g * fma64(-y, y, 1.0)


_ONE32 = np.float32(1)
_ZERO32 = np.float32(0)


def _sigmoid_vec(x: np.ndarray) -> np.ndarray:
    return _ONE32 / (_ONE32 + vecmath.sleef_expf(-x))


def _sigmoid_scalar(x: np.ndarray) -> np.ndarray:
    return _ONE32 / (_ONE32 + vecmath.libm_expf(-x))


_F32 = np.float32


def _sigmoid(x: Any) -> Any:
    # torch's kernel formula: exp overflows to inf for very negative x, giving exactly 0 as torch.
    # float32 as torch rounds it: SLEEF's exp in the vector loop, glibc's in its tail (vecmath)
    if type(x) is _F32 and vecmath.EXACT and vecmath.GLIBC_EXPF is not None:
        # a 0-d tensor's data: the scalar lambda (`_sigmoid_scalar`) without arrays. Each
        # float32 step is done in float64 and rounded once to float32, which rounds as float32
        # arithmetic does (53 >= 2 * 24 + 2 bits); Python floats raise no numpy warnings, as
        # float32_kernel's errstate raises none.
        e = vecmath.GLIBC_EXPF(-float(x))
        return _F32(1.0 / float(_F32(1.0 + e)))
    if _float32(x):
        return vecmath.float32_kernel(_sigmoid_vec, _sigmoid_scalar, x)
    return 1 / (1 + np.exp(-x))


defop("sigmoid", _sigmoid, lambda ns, g, out, x: ns.sigmoid_backward(g, out), dtype=FLOAT,
      saves="result",
      inplace=True, doc="1 / (1 + exp(-input))",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=1)))

# --- activations ---------------------------------------------------------------------------------

def _threshold_backward(g: Any, x: Any, threshold: float = 0.0) -> Any:
    """torch's threshold_backward kernel: `x <= threshold ? 0 : g` (+0.0 whatever g's sign; g
    where x is NaN)."""
    if type(g) is np.ndarray and type(x) is np.ndarray and g.dtype == x.dtype \
            and g.shape == x.shape and g.dtype.kind == "f":
        # without numpy's branching where (slow on a mask with no pattern): g's bits ANDed
        # with all ones, or with zeros (+0.0)
        keep = np.less_equal(x, threshold).astype(np.dtype(f"i{g.itemsize}"))
        np.subtract(keep, 1, out=keep)  # 0 where x <= threshold, else all ones (-1)
        return np.bitwise_and(keep, g.view(keep.dtype), out=keep).view(g.dtype)
    return np.where(x <= threshold, g.dtype.type(0), g)


# relu's rule is torch's threshold_backward(grad, result, 0), an op of its own as in torch: a
# second derivative runs through ThresholdBackwardBackward0 (grad_output's threshold_backward,
# self's zeros_like(grad): the graph keeps its edge to the result)
defop("threshold_backward", _threshold_backward,
      lambda ns, gg, out, g, x, threshold: ns.threshold_backward(gg, x, threshold=threshold),
      lambda ns, gg, out, g, x, threshold: ns.zeros_like(gg),
      saves=("self", "self"), inputs=("grad_output", "self"),  # torch saves self for both
      attrs=(AttrSpec("threshold", "float", required=True),), dtype=PROMOTE, method=False,
      doc="the gradient of relu/threshold: 0 where self <= threshold, else grad_output",
      out_bound=temporaries(broadcast_shape, results=1))


# max(0, x) in that order: numpy then keeps x where both are zero (relu(-0.0) is -0.0, as
# torch's clamp_min kernel gives) and NaN stays NaN
defop("relu", lambda x: np.maximum(x.dtype.type(0), x),
      lambda ns, g, out, x: ns.threshold_backward(g, out, threshold=0.0),
      inplace=True, doc="max(input, 0)",
      saves="result",
      out_bound=temporaries(broadcast_shape, results=1))
defop("leaky_relu", lambda x, negative_slope=0.01: np.where(x > 0, x, x * negative_slope),
      lambda ns, g, out, x, negative_slope: ns.where(x > 0, g, g * negative_slope),
      saves="input", inplace=True, inplace_op="_leaky_relu_result",
      attrs=(AttrSpec("negative_slope", "float", 0.01),), dtype=FLOAT,
      doc="input if input > 0 else negative_slope * input",
      out_bound=temporaries(broadcast_shape, results=2))

_LEAKY_INPLACE_NEGATIVE = (
    "In-place leakyReLu backward calculation is triggered with a negative slope which is not "
    "supported. This is caused by calling in-place forward function with a negative slope, "
    "please call out-of-place version instead. File an issue at "
    "https://github.com/pytorch/pytorch if you do require supporting in-place leakRelu "
    "backward calculation with negative slope")


def _leaky_relu_result_vjp(ns: Any, g: Any, out: Any, x: Any, negative_slope: float) -> Any:
    """torch's leaky_relu_backward on the result (the in-place op's LeakyReluBackward1):
    grad where result > 0, else grad * negative_slope; refused for a negative slope (the
    result's sign no longer tells the input's), as torch refuses it."""
    if negative_slope < 0:
        raise errors.InvalidArgumentError(_LEAKY_INPLACE_NEGATIVE)
    return ns.where(out > 0, g, g * negative_slope)


# the op `leaky_relu_` runs (defop's inplace_op): torch's in-place node saves the result
defop("_leaky_relu_result", lambda x, negative_slope=0.01: np.where(x > 0, x, x * negative_slope),
      _leaky_relu_result_vjp, saves="result", backward="LeakyReluBackward1",
      attrs=(AttrSpec("negative_slope", "float", 0.01),), dtype=FLOAT, method=False,
      doc="leaky_relu recording torch's in-place node (LeakyReluBackward1: its gradient reads "
          "the result)",
      out_bound=temporaries(broadcast_shape, results=2))
# torch's _prelu_kernel: F.prelu's op once the weight is shaped to broadcast over the channel
# dim (surface/nn_functional.prelu). The kernel's backward: where(input > 0, grad, weight * grad)
# for the input, where(input > 0, 0, input * grad) for the weight (summed to its shape).
defop("_prelu_kernel", lambda x, w: np.where(x > 0, x, w * x),
      lambda ns, g, out, x, w: ns.where(x > 0, g, w * g),
      lambda ns, g, out, x, w: ns.where(x > 0, 0.0, x * g),
      saves=("input weight", "input"), inputs=("input", "weight"), dtype=PROMOTE, method=False,
      doc="input if input > 0 else weight * input (weight broadcast over input)",
      out_bound=temporaries(broadcast_shape, results=2))
def _elu(x: Any, alpha: float = 1.0) -> Any:
    """torch's elu kernel (scale and input_scale 1): x if x > 0 else expm1(x) * alpha."""
    if _float32(x):
        a = np.float32(alpha)  # torch's negcoef, alpha * scale in float32
        return vecmath.float32_kernel(
            lambda v: np.where(v > 0, v, vecmath.sleef_expm1f(v) * a),
            lambda v: np.where(v <= 0, vecmath.libm_expm1f(v) * a, v), x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _elu_vjp(ns: Any, g: Any, out: Any, x: Any, alpha: float) -> Any:
    # torch's elu_backward on the input (is_result false): grad * input_scale * negcoef *
    # exp(x * input_scale) for x <= 0, else grad * scale (both scales 1 here); a NaN input
    # gives NaN in the vector loop (it blends on x > 0) and grad in the scalar tail (x <= 0)
    if _float32(g, x):
        a = np.float32(alpha)
        return vecmath.float32_kernel(
            lambda gv, xv: np.where(xv > 0, gv, gv * a * vecmath.sleef_expf(xv)),
            lambda gv, xv: np.where(xv <= 0, gv * a * vecmath.libm_expf(xv), gv), g, x)
    return ns.where(x <= 0, g * alpha * ns.exp(x), g)


defop("elu", _elu, _elu_vjp,
      saves="input", inplace=True, inplace_op="_elu_result",
      attrs=(AttrSpec("alpha", "float", 1.0),), dtype=FLOAT,
      doc="input if input > 0 else alpha * (exp(input) - 1)",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=3)))


def _floating_only(kernel: str) -> Any:
    """A dtype rule: the input's floating dtype, torch's NotImplementedError naming `kernel`
    for an integral or bool input."""
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any]:
        d = promote_args(args)
        if not d.is_floating_point:
            word = TYPE_WORDS.get(d.name, d.name)
            raise errors.NotImplementedFunctionError(
                f'"{kernel}" not implemented for \'{word}\'')
        return d, d
    return rule


# torch's sigmoid_backward kernel: grad * (1 - y) * y, in that order (bit-exact in numpy). Its
# own op, as torch's: a second derivative runs through SigmoidBackwardBackward0 with torch's
# formulas (derivatives.yaml): grad_output's sigmoid_backward(grad, output), output's
# grad * grad_output * (-2 * output + 1) (a third derivative of silu is then torch's).
defop("sigmoid_backward", lambda g, y: g * (1 - y) * y,
      lambda ns, gg, out, g, y: ns.sigmoid_backward(gg, y),
      lambda ns, gg, out, g, y: gg * g * (-2 * y + 1),
      saves=("output", "grad_output output"),
      inputs=("grad_output", "output"), dtype=_floating_only("sigmoid_backward_cpu"),
      method=False,
      doc="the gradient of sigmoid given its result `output`: grad_output * (1 - output) * output",
      out_bound=temporaries(broadcast_shape, results=2))


# Its own op, as torch's, so that a second derivative runs through TanhBackwardBackward0 with
# torch's formulas (derivatives.yaml): grad_output's is tanh_backward(grad, output), output's
# grad * (-2 * output * grad_output).
defop("tanh_backward", _tanh_backward,
      lambda ns, gg, out, g, y: ns.tanh_backward(gg, y),
      lambda ns, gg, out, g, y: gg * (-2 * y * g),
      saves=("output", "grad_output output"),
      inputs=("grad_output", "output"), dtype=_floating_only("tanh_backward_cpu"),
      method=False,
      doc="the gradient of tanh given its result `output`: grad_output * (1 - output**2)",
      # the exact fused multiply-add's float64 scratch (fma32: 3 arrays; fma64: ~10)
      out_bound=temporaries(broadcast_shape, results=2, result_bytes=96))


def _scaled_elu(x: Any, alpha: float, scale: float, input_scale: float) -> Any:
    """torch's elu kernel with all three coefficients (selu, celu): x * scale if x > 0 else
    expm1(x * input_scale) * (alpha * scale), the coefficients float32 as torch holds them."""
    if _float32(x):
        neg = np.float32(alpha) * np.float32(scale)
        pos, ipt = np.float32(scale), np.float32(input_scale)
        return vecmath.float32_kernel(
            lambda v: np.where(v > 0, v * pos, vecmath.sleef_expm1f(v * ipt) * neg),
            lambda v: np.where(v <= 0, vecmath.libm_expm1f(v * ipt) * neg, v * pos), x)
    return np.where(x > 0, x * scale, alpha * scale * np.expm1(np.minimum(x, 0) * input_scale))


def _scaled_elu_vjp(ns: Any, g: Any, x: Any, alpha: float, scale: float,
                    input_scale: float) -> Any:
    # torch's elu_backward on the input: grad * input_scale * negcoef * exp(x * input_scale)
    # for x <= 0, else grad * scale (NaN input: as `_elu_vjp`)
    if _float32(g, x):
        neg = np.float32(alpha) * np.float32(scale)
        pos, ipt = np.float32(scale), np.float32(input_scale)
        return vecmath.float32_kernel(
            lambda gv, xv: np.where(xv > 0, gv * pos,
                                    gv * ipt * neg * vecmath.sleef_expf(xv * ipt)),
            lambda gv, xv: np.where(xv <= 0, gv * ipt * neg * vecmath.libm_expf(xv * ipt),
                                    gv * pos), g, x)
    return ns.where(x <= 0, g * (input_scale * alpha * scale) * ns.exp(x * input_scale),
                    g * scale)


# torch's SELU constants (Activation.cpp)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

defop("selu", lambda x: _scaled_elu(x, _SELU_ALPHA, _SELU_SCALE, 1.0),
      lambda ns, g, out, x: _scaled_elu_vjp(ns, g, x, _SELU_ALPHA, _SELU_SCALE, 1.0),
      saves="input", backward="EluBackward0", dtype=_floating_only("elu_cpu"), method=False,
      inplace=True, inplace_op="_selu_result",
      doc="scale * elu(input, alpha) with SELU's constants",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=3)))


def _celu_check(x: Any, alpha: float) -> None:
    if alpha == 0:
        raise errors.InvalidArgumentError("ZeroDivisionError: alpha cannot be 0 for CELU")


def _celu(x: Any, alpha: float = 1.0) -> Any:
    _celu_check(x, alpha)
    return _scaled_elu(x, alpha, 1.0, 1.0 / alpha)


defop("celu", _celu,
      lambda ns, g, out, x, alpha: _scaled_elu_vjp(ns, g, x, alpha, 1.0, 1.0 / alpha),
      saves="input", backward="CeluBackward0", dtype=_floating_only("elu_cpu"), method=False,
      inplace=True, inplace_op="_celu_result",
      attrs=(AttrSpec("alpha", "float", 1.0),),
      doc="max(0, input) + min(0, alpha * (exp(input / alpha) - 1))",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=3)))


def _elu_result_vjp(ns: Any, g: Any, out: Any, alpha: float, scale: float,
                    input_scale: float) -> Any:
    """torch's elu_backward on the result (is_result: the in-place ops' EluBackward1 and
    CeluBackward1): grad * input_scale * (result + alpha * scale) where result <= 0, else
    grad * scale, the coefficients float32 as torch holds them (NaN: the vector loop blends on
    result > 0, the scalar tail on result <= 0)."""
    if _float32(g, out):
        neg = np.float32(alpha) * np.float32(scale)
        pos, ipt = np.float32(scale), np.float32(input_scale)
        return vecmath.float32_kernel(
            lambda gv, rv: np.where(rv > 0, gv * pos, gv * ipt * (rv + neg)),
            lambda gv, rv: np.where(rv <= 0, gv * ipt * (rv + neg), gv * pos), g, out)
    return ns.where(out <= 0, g * input_scale * (out + alpha * scale), g * scale)


# The ops `elu_`, `selu_` and `celu_` run (defop's inplace_op): the forwards above, the node
# torch's in-place variants record, whose gradient reads the result (the input is overwritten)
_RESULT_DOC = "{} recording torch's in-place node ({}: its gradient reads the result)"
defop("_elu_result", _elu,
      lambda ns, g, out, x, alpha: _elu_result_vjp(ns, g, out, alpha, 1.0, 1.0),
      saves="result", backward="EluBackward1", attrs=(AttrSpec("alpha", "float", 1.0),),
      dtype=FLOAT, method=False, doc=_RESULT_DOC.format("elu", "EluBackward1"),
      out_bound=_exact32_or(temporaries(broadcast_shape, results=3)))
defop("_selu_result", lambda x: _scaled_elu(x, _SELU_ALPHA, _SELU_SCALE, 1.0),
      lambda ns, g, out, x: _elu_result_vjp(ns, g, out, _SELU_ALPHA, _SELU_SCALE, 1.0),
      saves="result", backward="EluBackward1", dtype=_floating_only("elu_cpu"), method=False,
      doc=_RESULT_DOC.format("selu", "EluBackward1"),
      out_bound=_exact32_or(temporaries(broadcast_shape, results=3)))
defop("_celu_result", _celu,
      lambda ns, g, out, x, alpha: _elu_result_vjp(ns, g, out, alpha, 1.0, 1.0 / alpha),
      saves="result", backward="CeluBackward1", attrs=(AttrSpec("alpha", "float", 1.0),),
      dtype=_floating_only("elu_cpu"), method=False,
      doc=_RESULT_DOC.format("celu", "CeluBackward1"),
      out_bound=_exact32_or(temporaries(broadcast_shape, results=3)))


def _hard_gate(x: Any) -> Any:
    """min(max(x + 3, 0), 6), NaN kept (torch's vec::minimum/maximum and std::min/max)."""
    three, six = x.dtype.type(3), x.dtype.type(6)
    return np.minimum(np.maximum(x + three, x.dtype.type(0)), six)


def _hardsigmoid_backward(g: Any, x: Any) -> Any:
    # torch's hardsigmoid_backward: grad * (1 / 6) strictly inside (-3, 3), else 0 (NaN too)
    inside = (x > -3) & (x < 3)
    return np.where(inside, g * g.dtype.type(1.0 / 6.0), g.dtype.type(0))


defop("hardsigmoid", lambda x: _hard_gate(x) / x.dtype.type(6),
      lambda ns, g, out, x: ns.hardsigmoid_backward(g, x),
      saves="input", backward="HardsigmoidBackward0", dtype=_floating_only("hardsigmoid_cpu"),
      method=False, inplace=True, doc="min(max(input + 3, 0), 6) / 6",
      out_bound=temporaries(broadcast_shape, results=3))
# its own op, as torch's: a gradient recorded under create_graph has grad_fn NotImplemented and
# a backward through it fails ("derivative for aten::hardsigmoid_backward is not implemented")
defop("hardsigmoid_backward", _hardsigmoid_backward,
      _not_implemented("hardsigmoid_backward"), _not_implemented("hardsigmoid_backward"),
      saves=("", ""), inputs=("grad_output", "self"),
      dtype=_floating_only("hardsigmoid_backward"), backward="NotImplemented", method=False,
      doc="the gradient of hardsigmoid: grad_output / 6 where -3 < self < 3, else 0",
      out_bound=temporaries(broadcast_shape, results=2))


def _hardswish_backward_vec(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    # torch's vector code: 0 from x <= -3, grad from x >= 3, else grad * (x / 3 + 0.5); NaN: NaN
    q = g * (x / x.dtype.type(3) + x.dtype.type(0.5))
    return np.where(x <= -3, x.dtype.type(0), np.where(x >= 3, g, q))


def _hardswish_backward_scalar(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    # its scalar lambda: 0 from x <= -3, grad * (x / 3 + 0.5) below 3, else grad (NaN: grad)
    q = g * (x / x.dtype.type(3) + x.dtype.type(0.5))
    return np.where(x <= -3, x.dtype.type(0), np.where(x < 3, q, g))


def _hardswish_vjp(ns: Any, g: Any, out: Any, x: Any) -> Any:
    if _float32(g, x):
        return vecmath.float32_kernel(_hardswish_backward_vec, _hardswish_backward_scalar, g, x)
    if isinstance(g, (np.ndarray, np.generic)):
        return _hardswish_backward_scalar(np.asarray(g), x)
    # recorded (create_graph=True): the same formula from engine ops
    return ns.where(x <= -3, 0.0, ns.where(x < 3, g * (x / 3 + 0.5), g))


defop("hardswish", lambda x: x * _hard_gate(x) / x.dtype.type(6), _hardswish_vjp,
      saves="input", backward="HardswishBackward0", dtype=_floating_only("hardswish_cpu"),
      method=False, inplace=True, doc="input * min(max(input + 3, 0), 6) / 6",
      out_bound=temporaries(broadcast_shape, results=3))

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# np.vectorize goes through an object array of Python floats (8-byte pointers, 32 bytes a float
# as allocated) and float64 copies before the cast: far more than the result's own bytes per
# element (72 measured with tracemalloc; tests/test_engine_bounds.py checks it).
_ERF_BYTES = 8 + 32 + 8 + 8 + 16


def _erf(x: Any) -> Any:
    # numpy has no erf ufunc; math.erf per element, vectorized (exact to float64 rounding).
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


# torch's tanh-approximation constants, float32 as its kernels hold them
_GELU_BETA32 = np.float32(1.41421356237309504880 * 1.12837916709551257390 * 0.5)  # M_SQRT2 *
_GELU_KAPPA32 = np.float32(0.044715)                                           # M_2_SQRTPI / 2


def _gelu_tanh32(tanh: Any) -> Any:
    def kernel(x: np.ndarray) -> np.ndarray:
        # torch's kernel, `x + kappa * x**3` fused by its build
        inner = _GELU_BETA32 * fma32(_GELU_KAPPA32, x * x * x, x)
        return np.float32(0.5) * x * (_ONE32 + tanh(inner))
    return kernel


def _gelu_tanh_backward32(tanh: Any) -> Any:
    def kernel(g: np.ndarray, x: np.ndarray) -> np.ndarray:
        # torch's gelu_backward (tanh): dy * (0.5 * (1 + t) + 0.5 x (1 - t*t) * beta *
        # (1 + 3 kappa x*x)), its `1 - t*t` and `1 + 3 kappa x*x` fused by its build
        x_sq = x * x
        t = tanh(_GELU_BETA32 * fma32(_GELU_KAPPA32, x_sq * x, x))
        left_derivative = np.float32(0.5) * (_ONE32 + t)
        tanh_derivative = fma32(-t, t, _ONE32)
        inner_derivative = _GELU_BETA32 * fma32(np.float32(3) * _GELU_KAPPA32, x_sq, _ONE32)
        return g * (left_derivative + np.float32(0.5) * x * tanh_derivative * inner_derivative)
    return kernel


def _gelu(x: Any, approximate: str = "none") -> Any:
    if approximate == "tanh":
        if _float32(x):
            # SLEEF's tanh in the vector loop, glibc's in the tail (vecmath), split over
            # threads as gelu's kernel splits them
            return vecmath.float32_kernel(_gelu_tanh32(vecmath.sleef_tanhf),
                                          _gelu_tanh32(vecmath.libm_tanhf), x,
                                          grain=gelu_erf.forward_grain(np.size(x)))
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + np.tanh(inner))
    if _float32(x):
        # oneDNN's polynomial erf or torch's own kernel, by x's layout (gelu_erf)
        return gelu_erf.forward(x)
    return (0.5 * x * (1 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)


def _gelu_vjp(ns: Any, g: Any, out: Any, x: Any, approximate: str) -> Any:
    if approximate == "tanh":
        if _float32(g, x):
            return vecmath.float32_kernel(_gelu_tanh_backward32(vecmath.sleef_tanhf),
                                          _gelu_tanh_backward32(vecmath.libm_tanhf), g, x)
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        t = ns.tanh(inner)
        d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner)
    if _float32(g, x):
        return gelu_erf.backward(g, x)
    phi = ns.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return g * (0.5 * (1 + ns.erf(x / math.sqrt(2.0))) + x * phi)


_GELU_ERF = temporaries(broadcast_shape, results=3, result_bytes=_ERF_BYTES)
_GELU_TANH = temporaries(broadcast_shape, results=3)


_GELU_TANH_EXACT = _exact32_or(_GELU_TANH)


_GELU_ERF_EXACT = _exact32_or(_GELU_ERF)


def _gelu_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    tanh = attrs.get("approximate") == "tanh"
    return (_GELU_TANH_EXACT if tanh else _GELU_ERF_EXACT)(args, attrs, out_dtype)


# derivatives.yaml's order, so the float32 products round as torch's
defop("erf", mkl.unary("Erf", _erf),
      lambda ns, g, out, x: (2 / math.sqrt(math.pi)) * ns.exp(-x * x) * g,
      saves="input",
      dtype=FLOAT, doc="Gauss error function",
      out_bound=temporaries(broadcast_shape, result_bytes=_ERF_BYTES))
defop("gelu", _gelu, _gelu_vjp,
      saves="input",
      attrs=(AttrSpec("approximate", "str", "none", choices=("none", "tanh")),), dtype=FLOAT,
      doc="Gaussian error linear unit",
      out_bound=_gelu_bound)
def _silu_vec(x: np.ndarray) -> np.ndarray:
    return x / (_ONE32 + vecmath.sleef_expf(-x))


def _silu_scalar(x: np.ndarray) -> np.ndarray:
    return x / (_ONE32 + vecmath.libm_expf(-x))


def _silu(x: Any) -> Any:
    """torch's silu kernel: x / (1 + exp(-x)) (float32 rounded as torch, see `_sigmoid`)."""
    if _float32(x):
        return vecmath.float32_kernel(_silu_vec, _silu_scalar, x)
    return x / (1 + np.exp(-x))


def _silu_backward_with(exp: Any) -> Any:
    def kernel(g: np.ndarray, x: np.ndarray) -> np.ndarray:
        # torch's silu_backward kernel, compiled with its `x * (1 - s) + 1` fused
        s = _ONE32 / (_ONE32 + exp(-x))
        return g * s * fma32(x, _ONE32 - s, _ONE32)
    return kernel


_SILU_BACKWARD = (_silu_backward_with(vecmath.sleef_expf), _silu_backward_with(vecmath.libm_expf))


def _silu_vjp(ns: Any, g: Any, out: Any, x: Any) -> Any:
    if _float32(g, x):
        return vecmath.float32_kernel(*_SILU_BACKWARD, g, x)
    # recorded (create_graph=True) or another dtype: torch's infinitely_differentiable_silu_
    # backward, op for op: grad * s * (1.0 + x * (1.0 - s)), whose `1.0 - s` is C++'s
    # empty_like(s).fill_(1.0).sub_(s) (SubBackward0) and `1.0 + ...` an add with a Scalar
    # (AddBackward1); torch's build (GCC) evaluates the right operand of the outer `*` before
    # `grad * s`, so those nodes are made first (sequence numbers order a later backward's
    # gradient accumulations: a third derivative's bits depend on it)
    s = ns.sigmoid(x)
    right = ns.add_scalar(x * ns.sub(ns.ones_like(s), s), other=1.0)
    return (g * s) * right


defop("silu", _silu, _silu_vjp, dtype=FLOAT,
      saves="input", inplace=True,
      doc="input * sigmoid(input)",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=2)))


def _softplus(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    if _float32(x):
        # torch's kernel: x if x * beta > threshold else log1p(exp(x * beta)) / beta, beta
        # and threshold in float32; SLEEF's exp and log1p in the vector loop, glibc's
        # (libm_expf, libm_log1pf) in the scalar tail
        b, th = np.float32(beta), np.float32(threshold)
        return vecmath.float32_kernel(
            lambda v: np.where(v * b > th, v, vecmath.sleef_log1pf(vecmath.sleef_expf(v * b)) / b),
            lambda v: np.where(v * b > th, v, vecmath.libm_log1pf(vecmath.libm_expf(v * b)) / b),
            x)
    bx = x * beta
    soft = np.log1p(np.exp(-np.abs(bx))) / beta + np.maximum(x, 0)
    return np.where(bx > threshold, x, soft).astype(x.dtype)


def _softplus_vjp(ns: Any, g: Any, out: Any, x: Any, beta: float, threshold: float) -> Any:
    if _float32(g, x):
        # torch's softplus_backward: z = exp(x * beta); grad * z / (z + 1) unless over threshold
        b, th = np.float32(beta), np.float32(threshold)

        def kernel(exp: Any) -> Any:
            def run(gv: np.ndarray, xv: np.ndarray) -> np.ndarray:
                z = exp(xv * b)
                return np.where(xv * b > th, gv, gv * z / (z + _ONE32))
            return run
        return vecmath.float32_kernel(kernel(vecmath.sleef_expf), kernel(vecmath.libm_expf), g, x)
    return ns.where(x * beta > threshold, g, g * ns.sigmoid(x * beta))


defop("softplus", _softplus, _softplus_vjp,
      saves="input",
      attrs=(AttrSpec("beta", "float", 1.0), AttrSpec("threshold", "float", 20.0)), dtype=FLOAT,
      doc="log(1 + exp(beta * input)) / beta, linear above threshold",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=4)))


def _log_sigmoid32(x: np.ndarray) -> np.ndarray:
    # torch's log_sigmoid_cpu_kernel: every element in Vectorized<float> code (the last
    # partial vector loaded as one), min(x, 0) - log1p(exp(-|x|)) with SLEEF's exp and log1p
    return np.minimum(x, _ZERO32) - vecmath.sleef_log1pf(vecmath.sleef_expf(-np.abs(x)))


def _log_sigmoid(x: Any) -> Any:
    if _float32(x):
        return vecmath.float32_kernel(_log_sigmoid32, _log_sigmoid32, x)
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _log_sigmoid_backward32(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    # torch's log_sigmoid_backward kernel on the forward's buffer b = exp(-|x|) (SLEEF's):
    # (max_deriv - sign * (b / (1 + b))) * grad, max_deriv 1 and sign 1 for x < 0, else 0, -1
    b = vecmath.sleef_expf(-np.abs(x))
    q = b / (_ONE32 + b)
    return np.where(x < 0, _ONE32 - q, q) * g


def _log_sigmoid_vjp(ns: Any, g: Any, out: Any, x: Any) -> Any:
    if _float32(g, x):
        return vecmath.float32_kernel(_log_sigmoid_backward32, _log_sigmoid_backward32, g, x)
    # recorded (create_graph=True) or float64: the same formula from engine ops
    b = ns.exp(-ns.abs(x))
    q = b / (1 + b)
    return ns.where(x < 0, 1 - q, q) * g


defop("log_sigmoid", _log_sigmoid, _log_sigmoid_vjp, dtype=_floating_only("log_sigmoid_cpu"),
      saves="input", backward="LogSigmoidBackward0", method=False,
      doc="log(sigmoid(input)) (nn.functional.logsigmoid)",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=4)))


def _mish_with(exp: Any, log1p: Any, tanh: Any) -> Any:
    def kernel(x: np.ndarray) -> np.ndarray:
        return x * tanh(log1p(exp(x)))  # torch's mish kernel: x * tanh(log1p(exp(x)))
    return kernel


_MISH = (_mish_with(vecmath.sleef_expf, vecmath.sleef_log1pf, vecmath.sleef_tanhf),
         _mish_with(vecmath.libm_expf, vecmath.libm_log1pf, vecmath.libm_tanhf))


def _mish(x: Any) -> Any:
    if _float32(x):
        # SLEEF's exp, log1p, tanh in the vector loop; glibc's in the scalar tail
        return vecmath.float32_kernel(*_MISH, x)
    return x * np.tanh(np.log1p(np.exp(x)))


def _mish_backward_with(exp: Any, log1p: Any, tanh: Any) -> Any:
    def kernel(g: np.ndarray, x: np.ndarray) -> np.ndarray:
        # torch's mish_backward kernel, compiled with both multiply-adds of
        # t + x * s * (1 - t * t) fused (found against torch, in both paths)
        s = _ONE32 / (_ONE32 + exp(-x))
        t = tanh(log1p(exp(x)))
        return g * fma32(x * s, fma32(-t, t, _ONE32), t)
    return kernel


_MISH_BACKWARD = (
    _mish_backward_with(vecmath.sleef_expf, vecmath.sleef_log1pf, vecmath.sleef_tanhf),
    _mish_backward_with(vecmath.libm_expf, vecmath.libm_log1pf, vecmath.libm_tanhf))


def _mish_vjp(ns: Any, g: Any, out: Any, x: Any) -> Any:
    if _float32(g, x):
        return vecmath.float32_kernel(*_MISH_BACKWARD, g, x)
    # recorded (create_graph=True) or float64: torch's infinitely_differentiable_mish_backward,
    # op for op (log1p of exp, not softplus), so its values are torch's where the ops' are
    s = ns.sigmoid(x)
    t = ns.tanh(ns.log1p(ns.exp(x)))
    return g * (t + x * s * (1 - t * t))


defop("mish", _mish, _mish_vjp, dtype=_floating_only("mish_cpu"),
      saves="input", backward="MishBackward0", method=False, inplace=True,
      doc="input * tanh(softplus(input))",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=4)))

# --- clamp, maximum, minimum, where ---------------------------------------------------------------


def _clamp(x: Any, lo: Any, hi: Any) -> Any:
    if lo is None and hi is None:
        raise errors.InvalidArgumentError(
            "torch.clamp: At least one of 'min' or 'max' must not be None")
    out = x
    if lo is not None:
        out = np.maximum(out, lo)
    if hi is not None:
        out = np.minimum(out, hi)
    return out


# torch's clamp_backward and clamp_backward_min_max: where(predicate, grad, 0) (a +0 where the
# predicate fails, whatever grad's sign, and no inf * 0); where min > max the result is max, so
# min gets no gradient there.
def _clamp_dx(ns: Any, g: Any, out: Any, x: Any, lo: Any, hi: Any) -> Any:
    keep = None
    if lo is not None:
        keep = x >= lo
    if hi is not None:
        keep = (x <= hi) if keep is None else ns.logical_and(keep, x <= hi)
    return ns.where(keep, g, 0.0)


def _clamp_dmin(ns: Any, g: Any, out: Any, x: Any, lo: Any, hi: Any) -> Any:
    return ns.where(x < lo if hi is None else ns.logical_and(x < lo, lo < hi), g, 0.0)


def _clamp_dmax(ns: Any, g: Any, out: Any, x: Any, lo: Any, hi: Any) -> Any:
    return ns.where(x > hi if lo is None else ns.logical_or(x > hi, hi < lo), g, 0.0)


@names_backward("ClampBackward1", "ClampBackward0")
def _clamp_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    return "ClampBackward0" if any(_is_tensor(a) for a in args[1:]) else "ClampBackward1"


defop("clamp", _clamp, _clamp_dx, _clamp_dmin, _clamp_dmax,
      saves=("input min max", "input min max", "input min max"),
      inputs=("input", "min?", "max?"), dtype=PROMOTE, backward=_clamp_name, inplace=True,
      doc="limit input to [min, max]", out_shape=broadcast_shape,
      out_bound=temporaries(broadcast_shape, results=1))


def _tie_split(ns: Any, g: Any, x: Any, y: Any, loses: Any) -> Any:
    # torch splits the gradient evenly between tied operands of maximum/minimum and zeroes it
    # only where the operand loses: a NaN on either side gives both the whole gradient.
    return ns.where(x == y, g / 2, ns.where(loses, 0.0, g))


defop("maximum", np.maximum,
      lambda ns, g, out, x, y: _tie_split(ns, g, x, y, x < y),
      lambda ns, g, out, x, y: _tie_split(ns, g, x, y, y < x),
      saves=("input other", "input other"),
      inputs=("input", "other"), dtype=PROMOTE, doc="elementwise max", out_shape=broadcast_shape)
defop("minimum", np.minimum,
      lambda ns, g, out, x, y: _tie_split(ns, g, x, y, x > y),
      lambda ns, g, out, x, y: _tie_split(ns, g, x, y, y > x),
      saves=("input other", "input other"),
      inputs=("input", "other"), dtype=PROMOTE, doc="elementwise min", out_shape=broadcast_shape)

# torch's fmax/fmin backward: the gradient goes to input where input >= other (<= for fmin) or
# other is NaN, else to other (no even split at ties, unlike maximum's).
def _fmax_wins(ns: Any, x: Any, y: Any) -> Any:
    return ns.logical_or(x >= y, ns.isnan(y))


def _fmin_wins(ns: Any, x: Any, y: Any) -> Any:
    return ns.logical_or(x <= y, ns.isnan(y))


for _name, _fn, _wins in (("fmax", np.fmax, _fmax_wins), ("fmin", np.fmin, _fmin_wins)):
    defop(_name, _fn,
          lambda ns, g, out, x, y, _wins=_wins: ns.where(_wins(ns, x, y), g, 0.0),
          lambda ns, g, out, x, y, _wins=_wins: ns.where(_wins(ns, x, y), 0.0, g),
          saves=("input other", "input other"), inputs=("input", "other"), dtype=PROMOTE,
          doc=f"elementwise {_name[1:]}, NaN only where both are", out_shape=broadcast_shape)

def _where_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    if not isinstance(args[0], np.ndarray) and getattr(args[0], "dtype", None) is not None:
        if args[0].dtype.name != "bool":
            raise errors.InvalidArgumentError(
                f"where expected condition to be a boolean tensor, but got a tensor with dtype "
                f"{args[0].dtype.name.capitalize()}")
    return PROMOTE(args[1:], attrs)


defop("where", lambda c, x, y: np.where(c, x, y),
      None,
      lambda ns, g, out, c, x, y: ns.where(c, g, 0.0),
      lambda ns, g, out, c, x, y: ns.where(c, 0.0, g),
      saves=("", "condition", "condition"),
      inputs=("condition", "input", "other"), dtype=_where_dtype,
      doc="input where condition else other", out_shape=broadcast_shape)

# --- comparisons and logic (no gradient) ----------------------------------------------------------

_CMP: Any = (("lt", np.less, "<"), ("le", np.less_equal, "<="),
                         ("gt", np.greater, ">"), ("ge", np.greater_equal, ">="),
                         ("eq", np.equal, "=="), ("ne", np.not_equal, "!="))
for _name, _fn, _doc in _CMP:
    defop(_name, _fn, None, None, inputs=("input", "other"), dtype=COMPARE,
          doc=f"input {_doc} other, as bool", out_shape=broadcast_shape)

_LOGIC: Any = (("logical_and", np.logical_and), ("logical_or", np.logical_or),
               ("logical_xor", np.logical_xor))
for _name, _fn in _LOGIC:
    defop(_name, _fn, None, None, inputs=("input", "other"), dtype=BOOL,
          doc=f"{_name.split('_')[1]} of truth values, as bool", out_shape=broadcast_shape)
defop("logical_not", np.logical_not, None, dtype=BOOL, doc="not input, as bool",
      out_shape=broadcast_shape)

# --- dtype conversion ----------------------------------------------------------------------------

MEMORY_FORMAT = AttrSpec("memory_format", "str", "preserve", choices=ATTR_CHOICES)


def _to_dtype(x: Any, dtype: DType, memory_format: str = "preserve") -> Any:
    """torch's `_to_copy`: x's values in `dtype`, laid out as empty_like(x, memory_format)."""
    if memory_format == "preserve" and (np.ndim(x) <= 1 or x.flags.c_contiguous):
        return x.astype(dtype.np)
    return strided.like(x, memory_format, dtype.np, rank_error(memory_format, np.ndim(x)))


defop("to_dtype", _to_dtype, lambda ns, g, out, x, dtype, memory_format="preserve": g,
      saves="",
      attrs=(AttrSpec("dtype", "dtype", required=True), MEMORY_FORMAT),
      dtype=lambda args, attrs: (None, attrs["dtype"]), backward="ToCopyBackward0",
      method=False, doc="convert to dtype (Tensor.to(dtype), .float(), .double(), ...), laid "
      "out as memory_format says",
      out_shape=broadcast_shape)


defop("clone", lambda x, memory_format="preserve": strided.like(
          x, memory_format, None, rank_error(memory_format, np.ndim(x))),
      lambda ns, g, out, x, memory_format="preserve": g, dtype=SAME,
      attrs=(MEMORY_FORMAT,), doc="a copy (laid out as memory_format says: torch's clone)",
      saves="",
      out_shape=broadcast_shape)

# --- in-place targets: the ops behind zero_(), fill_() and copy_() --------------------------------

defop("zero", np.zeros_like, lambda ns, g, out, x: g * 0, method=False, inplace=True,
      saves="",
      doc="zeros shaped like input (Tensor.zero_())",
      out_shape=broadcast_shape)
defop("fill", lambda x, value: np.full_like(x, dtypes.fill_value(value, x.dtype)),
      lambda ns, g, out, x, value: g * 0,
      saves="",
      attrs=(AttrSpec("value", "scalar", required=True),), method=False, inplace=True,
      inplace_backward="FillBackward2", doc="input's shape filled with value (Tensor.fill_(value))",
      out_shape=broadcast_shape)
defop("copy", lambda x, src: np.broadcast_to(src, x.shape).astype(x.dtype),
      lambda ns, g, out, x, src: g * 0,
      lambda ns, g, out, x, src: g,
      saves=("", ""),
      inputs=("input", "src"), method=False, inplace=True, backward="CopyBackwards",
      doc="src broadcast to input's shape and dtype (Tensor.copy_(src))",
      out_shape=lambda x, src: tuple(x.shape))
