"""Elementwise ops: arithmetic, math functions, activations, comparisons, logic.

Each entry: name, numpy forward, one VJP rule per input (see `registry`). Broadcasting needs no
care here: the backward pass sums each gradient back to its input's shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import messages

from . import dtypes, errors, limits, parallel, vecmath
from .distributions import fma32
from .registry import (
    BOOL,
    COMPARE,
    FLOAT,
    PROMOTE,
    SAME,
    AttrSpec,
    defop,
    names_backward,
    promote_args,
    shapes_only,
    temporaries,
)


def _is_tensor(a: Any) -> bool:
    return hasattr(a, "ndim") and not isinstance(a, (bool, int, float))


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
        return tuple(np.broadcast_shapes(*shapes))
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


@shapes_only
def _alpha_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    if attrs.get("alpha", 1) == 1:
        return _UNSCALED(args, attrs, out_dtype)
    return (_fused_bound if out_dtype is dtypes.float32 else _ALPHA_SCALED)(args, attrs,
                                                                             out_dtype)


def _scaled_add(x: Any, y: Any, alpha: Any) -> Any:
    """`x + alpha * y` rounded as torch's CPU add kernel rounds it.

    torch computes a scaled add as one fused multiply-add (`vec::fmadd(y, alpha, x)`, alpha
    cast to the tensors' float32 compute type), so `p.add_(grad, alpha=-lr)` rounds once where
    `x + y * alpha` rounds twice (5,596 of 100,000 random float32 elements differed). float32
    operands take `_fma_scalar32`; other dtypes keep numpy's two roundings (float64 has no
    exact emulation here).
    """
    if alpha == 1:
        return parallel.call(np.add, x, y)  # split over threads when large
    if (isinstance(x, np.ndarray) and x.dtype == np.float32 and isinstance(alpha, (int, float))
            and (isinstance(y, (int, float)) and not isinstance(y, bool)
                 or isinstance(y, np.ndarray) and y.dtype == np.float32)):
        return _fma_scalar32(np.asarray(y, np.float32), np.float32(alpha), x)
    return np.add(x, y * alpha)


_FMA_CHUNK = 1 << 16  # elements fused at a time: bounds `_fma_scalar32`'s scratch


def _fma_scalar32(y: np.ndarray, a: np.float32, x: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 `y * a + x` (a a number, y and x broadcast), in chunks.

    The product is exact in float64 and the sum is rounded there once; rounding that to float32
    is right except where the float64 sum lies exactly halfway between two float32s or in
    float32's subnormals: those elements are redone by `fma32`. Work goes in chunks of
    `_FMA_CHUNK` elements, so the float64 scratch stays fixed whatever the size.
    """
    shape = np.broadcast_shapes(y.shape, x.shape)
    out = np.empty(shape, np.float32)
    flat = out.reshape(-1)
    ys = np.ascontiguousarray(np.broadcast_to(y, shape)).reshape(-1)
    xs = np.ascontiguousarray(np.broadcast_to(x, shape)).reshape(-1)
    a64 = np.float64(a)
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


# --- arithmetic ----------------------------------------------------------------------------------

defop("add", lambda x, y, alpha=1: _scaled_add(x, y, alpha),
      lambda ns, g, out, x, y, alpha: g,
      lambda ns, g, out, x, y, alpha: g * alpha if alpha != 1 else g,
      saves=("", ""),
      inputs=("input", "other"), attrs=(AttrSpec("alpha", "scalar", 1),), dtype=PROMOTE,
      inplace=True, doc="input + alpha * other", out_shape=broadcast_shape,
      out_bound=_alpha_bound)
defop("sub", lambda x, y, alpha=1: (np.subtract(x, y) if alpha == 1  # numpy refuses bool - bool
                                    else _scaled_add(x, y, -alpha)),
      lambda ns, g, out, x, y, alpha: g,
      lambda ns, g, out, x, y, alpha: -g * alpha if alpha != 1 else -g,
      saves=("", ""),
      inputs=("input", "other"), attrs=(AttrSpec("alpha", "scalar", 1),), dtype=PROMOTE,
      backward=_by_scalars("SubBackward0", "SubBackward0", "RsubBackward1"),
      inplace=True, doc="input - alpha * other", out_shape=broadcast_shape,
      out_bound=_alpha_bound)
defop("mul", np.multiply,
      # g * y, split over threads when large (the check inline: a 0-d gradient is a numpy
      # scalar or, with create_graph, a Tensor, and the chain of scalar ops pays no call)
      lambda ns, g, out, x, y: parallel.mul(g, y) if type(g) is np.ndarray else g * y,
      lambda ns, g, out, x, y: parallel.mul(g, x) if type(g) is np.ndarray else g * x,
      saves=("other", "input"),
      inputs=("input", "other"), dtype=PROMOTE, inplace=True, doc="input * other",
      out_shape=broadcast_shape)
defop("div", np.true_divide,
      lambda ns, g, out, x, y: g / y,
      lambda ns, g, out, x, y: -g * (x / y / y),  # torch's div_tensor_other_backward
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


def _pow_forward(x: Any, y: Any) -> Any:
    if type(y) in (int, float) and _is_tensor(x):
        if y == 2:
            return parallel.call(np.square, x)  # the common x ** 2: one pass, no pow
        if x.dtype in (np.float32, np.float64) and y in _POW_SPECIAL:
            return _POW_SPECIAL[y](x)
        if y < 0 and x.dtype.kind in "iu":
            raise errors.InvalidArgumentError(
                "Integers to negative integer powers are not allowed.")
    elif _is_tensor(x) and x.dtype.kind in "iu" and np.any(np.asarray(y) < 0):
        raise errors.InvalidArgumentError("Integers to negative integer powers are not allowed.")
    return parallel.call(np.power, x, y)


def _pow_dx(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    # torch's pow_backward, grouped as torch groups it: grad * (y * x.pow(y - 1)). The grouping
    # decides float32 rounding, and the x.pow(y - 1) it records is what makes a higher
    # derivative of x ** 2 depend on x (grad_fn MulBackward0 where 2 * x would give none).
    if not _is_tensor(y):
        if y == 0:
            return g * 0
        if type(g) is np.ndarray:  # split over threads when large
            return parallel.mul(g, parallel.mul(y, ns.pow(x, y - 1)))
        return g * (y * ns.pow(x, y - 1))
    return ns.where(y == 0, 0.0, g * (y * ns.pow(x, y - 1)))


def _pow_dy(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    # torch: the exponent's gradient is 0 where the base is 0 and the exponent is >= 0.
    if not _is_tensor(x):
        return g * (out * math.log(x)) if x != 0 else g * 0
    return g * ns.where(ns.logical_and(x == 0, y >= 0), 0.0, out * ns.log(x))


defop("pow", _pow_forward, _pow_dx, _pow_dy, inputs=("input", "exponent"), dtype=PROMOTE,
      saves=("input exponent", "result input exponent"),
      backward=_by_scalars("PowBackward1", "PowBackward0", "PowBackward2"), inplace=True,
      doc="input ** exponent", out_shape=broadcast_shape,
      out_bound=temporaries(broadcast_shape, result_bytes=1))
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
      saves="",
      out_shape=broadcast_shape)
defop("floor", np.floor, lambda ns, g, out, x: g * 0, doc="round down; zero gradient",
      saves="",
      out_shape=broadcast_shape)
defop("ceil", np.ceil, lambda ns, g, out, x: g * 0, doc="round up; zero gradient",
      saves="",
      out_shape=broadcast_shape)
defop("round", lambda x, decimals=0: np.round(x, decimals),
      lambda ns, g, out, x, decimals: g * 0, attrs=(AttrSpec("decimals", "int", 0),),
      saves="",
      backward=names_backward("RoundBackward0", "RoundBackward1")(
          lambda args, attrs: "RoundBackward1" if attrs["decimals"] else "RoundBackward0"),
      doc="round half to even; zero gradient",
      out_bound=temporaries(broadcast_shape, results=1))
defop("reciprocal", np.reciprocal, lambda ns, g, out, x: -g * out * out, dtype=FLOAT,
      saves="result",
      doc="1 / input",
      out_shape=broadcast_shape)
defop("sqrt", np.sqrt, lambda ns, g, out, x: g / (2 * out), dtype=FLOAT, inplace=True,
      saves="result",
      doc="square root",
      out_shape=broadcast_shape)
defop("rsqrt", lambda x: 1 / np.sqrt(x), lambda ns, g, out, x: -0.5 * g * out * out * out,
      saves="result",
      dtype=FLOAT, doc="1 / sqrt(input)",
      out_bound=temporaries(broadcast_shape, results=1))
defop("exp", np.exp,
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
            return limits.with_scratch(_EXACT32(args, attrs, out_dtype), vecmath.KERNEL_SCRATCH)
        return other(args, attrs, out_dtype)
    return bound


def _expm1(x: Any) -> Any:
    # float32 as torch rounds it: torch maps SLEEF's expm1 over every element (`vec::map`
    # loads the tail as a partial vector), so both of the kernel's paths are SLEEF's
    if _float32(x):
        return vecmath.float32_kernel(vecmath.sleef_expm1f, vecmath.sleef_expm1f, x)
    return np.expm1(x)


defop("expm1", _expm1, lambda ns, g, out, x: g * (out + 1), dtype=FLOAT,
      saves="result",
      doc="exp(input) - 1",
      out_bound=_exact32_or(temporaries(broadcast_shape)))
defop("log", np.log, lambda ns, g, out, x: g / x, dtype=FLOAT, inplace=True,
      saves="input",
      doc="natural logarithm",
      out_shape=broadcast_shape)
def _log1p(x: Any) -> Any:
    # float32 as torch rounds it: SLEEF's log1p over every element (as expm1)
    if _float32(x):
        return vecmath.float32_kernel(vecmath.sleef_log1pf, vecmath.sleef_log1pf, x)
    return np.log1p(x)


defop("log1p", _log1p, lambda ns, g, out, x: g / (x + 1), dtype=FLOAT,
      saves="input",
      backward="Log1PBackward0", doc="log(1 + input)",
      out_bound=_exact32_or(temporaries(broadcast_shape)))
defop("log2", np.log2, lambda ns, g, out, x: g / (x * math.log(2.0)), dtype=FLOAT,
      saves="input",
      doc="base-2 logarithm",
      out_shape=broadcast_shape)
defop("sin", np.sin,
      lambda ns, g, out, x: (parallel.mul(g, ns.cos(x)) if type(g) is np.ndarray
                             else g * ns.cos(x)),
      dtype=FLOAT, inplace=True,
      doc="sine",
      saves="input",
      out_shape=broadcast_shape)
defop("cos", np.cos,
      lambda ns, g, out, x: (parallel.mul(parallel.neg(g), ns.sin(x)) if type(g) is np.ndarray
                             else -g * ns.sin(x)),
      dtype=FLOAT,
      inplace=True,
      saves="input",
      doc="cosine",
      out_shape=broadcast_shape)
defop("tan", np.tan, lambda ns, g, out, x: g * (1 + out * out), dtype=FLOAT, doc="tangent",
      saves="result",
      out_shape=broadcast_shape)
defop("tanh", np.tanh, lambda ns, g, out, x: g * (1 - out * out), dtype=FLOAT, inplace=True,
      saves="result",
      doc="hyperbolic tangent",
      out_shape=broadcast_shape)


_ONE32 = np.float32(1)


def _sigmoid_vec(x: np.ndarray) -> np.ndarray:
    return _ONE32 / (_ONE32 + vecmath.sleef_expf(-x))


def _sigmoid_scalar(x: np.ndarray) -> np.ndarray:
    return _ONE32 / (_ONE32 + vecmath.libm_expf(-x))


def _sigmoid(x: Any) -> Any:
    # torch's kernel formula: exp overflows to inf for very negative x, giving exactly 0 as torch.
    # float32 as torch rounds it: SLEEF's exp in the vector loop, glibc's in its tail (vecmath)
    if _float32(x):
        return vecmath.float32_kernel(_sigmoid_vec, _sigmoid_scalar, x)
    return 1 / (1 + np.exp(-x))


# torch's sigmoid_backward kernel: grad * (1 - y) * y, in that order (bit-exact in numpy)
defop("sigmoid", _sigmoid, lambda ns, g, out, x: g * (1 - out) * out, dtype=FLOAT,
      saves="result",
      inplace=True, doc="1 / (1 + exp(-input))",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=1)))

# --- activations ---------------------------------------------------------------------------------

# torch's rule is threshold_backward(grad, result, 0): zero where result <= 0, and recorded on
# `result` too, so a second derivative through it keeps its graph (`out * 0` records that).
defop("relu", lambda x: np.maximum(x, 0).astype(x.dtype, copy=False),
      lambda ns, g, out, x: ns.where(out > 0, g, out * 0), inplace=True, doc="max(input, 0)",
      saves="result",
      out_bound=temporaries(broadcast_shape, results=1))
defop("leaky_relu", lambda x, negative_slope=0.01: np.where(x > 0, x, x * negative_slope),
      lambda ns, g, out, x, negative_slope: ns.where(x > 0, g, g * negative_slope),
      saves="input",
      attrs=(AttrSpec("negative_slope", "float", 0.01),), dtype=FLOAT,
      doc="input if input > 0 else negative_slope * input",
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
            lambda v: np.where(v <= 0, np.expm1(v) * a, v), x)
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
      saves="input",
      attrs=(AttrSpec("alpha", "float", 1.0),), dtype=FLOAT,
      doc="input if input > 0 else alpha * (exp(input) - 1)",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=3)))

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
            # SLEEF's tanh in the vector loop, glibc's in the tail (vecmath)
            return vecmath.float32_kernel(_gelu_tanh32(vecmath.sleef_tanhf),
                                          _gelu_tanh32(vecmath.libm_tanhf), x)
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + np.tanh(inner))
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
    phi = ns.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return g * (0.5 * (1 + ns.erf(x / math.sqrt(2.0))) + x * phi)


_GELU_ERF = temporaries(broadcast_shape, results=3, result_bytes=_ERF_BYTES)
_GELU_TANH = temporaries(broadcast_shape, results=3)


_GELU_TANH_EXACT = _exact32_or(_GELU_TANH)


def _gelu_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    tanh = attrs.get("approximate") == "tanh"
    return (_GELU_TANH_EXACT if tanh else _GELU_ERF)(args, attrs, out_dtype)


defop("erf", _erf, lambda ns, g, out, x: g * (2 / math.sqrt(math.pi)) * ns.exp(-x * x),
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
    # recorded (create_graph=True) or another dtype: the same formula from engine ops
    s = ns.sigmoid(x)
    return g * s * (1 + x * (1 - s))


defop("silu", _silu, _silu_vjp, dtype=FLOAT,
      saves="input",
      doc="input * sigmoid(input)",
      out_bound=_exact32_or(temporaries(broadcast_shape, results=2)))


def _softplus(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    if _float32(x):
        # torch's kernel: x if x * beta > threshold else log1p(exp(x * beta)) / beta, beta
        # and threshold in float32; SLEEF's exp and log1p in the vector loop, glibc's
        # (libm_expf, numpy's float32 np.log1p) in the scalar tail
        b, th = np.float32(beta), np.float32(threshold)
        return vecmath.float32_kernel(
            lambda v: np.where(v * b > th, v, vecmath.sleef_log1pf(vecmath.sleef_expf(v * b)) / b),
            lambda v: np.where(v * b > th, v, np.log1p(vecmath.libm_expf(v * b)) / b), x)
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


def _clamp_dx(ns: Any, g: Any, out: Any, x: Any, lo: Any, hi: Any) -> Any:
    keep = None
    if lo is not None:
        keep = x >= lo
    if hi is not None:
        keep = (x <= hi) if keep is None else ns.logical_and(keep, x <= hi)
    return g * keep


def _clamp_dmin(ns: Any, g: Any, out: Any, x: Any, lo: Any, hi: Any) -> Any:
    # torch: where min > max the result is max, so min gets no gradient there.
    if hi is None:
        return g * (x < lo)
    return g * ns.logical_and(x < lo, lo < hi)


def _clamp_dmax(ns: Any, g: Any, out: Any, x: Any, lo: Any, hi: Any) -> Any:
    if lo is None:
        return g * (x > hi)
    return g * ns.logical_or(x > hi, hi < lo)


@names_backward("ClampBackward1", "ClampBackward0")
def _clamp_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    return "ClampBackward0" if any(_is_tensor(a) for a in args[1:]) else "ClampBackward1"


defop("clamp", _clamp, _clamp_dx, _clamp_dmin, _clamp_dmax,
      saves=("input min max", "input min max", "input min max"),
      inputs=("input", "min?", "max?"), dtype=PROMOTE, backward=_clamp_name, inplace=True,
      doc="limit input to [min, max]", out_shape=broadcast_shape,
      out_bound=temporaries(broadcast_shape, results=1))


def _tie_split(ns: Any, g: Any, x: Any, y: Any, wins: Any) -> Any:
    # torch splits the gradient evenly between tied operands of maximum/minimum.
    return ns.where(x == y, g / 2, ns.where(wins, g, 0.0))


defop("maximum", np.maximum,
      lambda ns, g, out, x, y: _tie_split(ns, g, x, y, x > y),
      lambda ns, g, out, x, y: _tie_split(ns, g, x, y, y > x),
      saves=("input other", "input other"),
      inputs=("input", "other"), dtype=PROMOTE, doc="elementwise max", out_shape=broadcast_shape)
defop("minimum", np.minimum,
      lambda ns, g, out, x, y: _tie_split(ns, g, x, y, x < y),
      lambda ns, g, out, x, y: _tie_split(ns, g, x, y, y < x),
      saves=("input other", "input other"),
      inputs=("input", "other"), dtype=PROMOTE, doc="elementwise min", out_shape=broadcast_shape)


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

defop("to_dtype", lambda x, dtype: x.astype(dtype.np), lambda ns, g, out, x, dtype: g,
      saves="",
      attrs=(AttrSpec("dtype", "dtype", required=True),),
      dtype=lambda args, attrs: (None, attrs["dtype"]), backward="ToCopyBackward0",
      method=False, doc="convert to dtype (Tensor.to(dtype), .float(), .double(), ...)",
      out_shape=broadcast_shape)
defop("clone", lambda x: x.copy(), lambda ns, g, out, x: g, dtype=SAME, doc="a copy",
      saves="",
      out_shape=broadcast_shape)

# --- in-place targets: the ops behind zero_(), fill_() and copy_() --------------------------------

defop("zero", np.zeros_like, lambda ns, g, out, x: g * 0, method=False, inplace=True,
      saves="",
      doc="zeros shaped like input (Tensor.zero_())",
      out_shape=broadcast_shape)
defop("fill", lambda x, value: np.full_like(x, value), lambda ns, g, out, x, value: g * 0,
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
