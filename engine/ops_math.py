"""More elementwise math: inverse trigonometric and hyperbolic functions, log10, trunc/frac,
erfc, the two-input atan2/hypot/logaddexp/xlogy, sgn, the float tests isnan/isinf/isfinite, and
tril/triu (a mask over the last two dims), addcmul/addcdiv, clamp_min/clamp_max.

Each entry as in `ops_elementwise`: name, numpy forward, one VJP rule per input written in engine
ops (so a backward is differentiable), what each rule reads (`saves`, as torch's
derivatives.yaml), the dtype rule and the result shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface.messages import TYPE_WORDS

from . import dtypes, errors, limits, mkl, vecmath
from .distributions import fma32, fma64
from .ops_elementwise import (
    _ERF_BYTES,
    _by_scalars,
    _exact32_or,
    _is_tensor,
    broadcast_shape,
    exact32_unary,
)
from .ops_index import _C_TYPE  # torch's C++ dtype names ("expected dtype float")
from .ops_shape import wrap_dim
from .registry import (
    BOOL,
    FLOAT,
    INT64,
    PROMOTE,
    SAME,
    AttrSpec,
    defop,
    names_backward,
    promote_args,
    shapes_only,
    temporaries,
)

# --- inverse trigonometric and hyperbolic ---------------------------------------------------------

defop("asin", mkl.unary("Asin", np.arcsin),
      lambda ns, g, out, x: g * ns.rsqrt(1 - x * x), dtype=FLOAT,
      saves="input", inplace=True, doc="arcsine", out_shape=broadcast_shape)
defop("acos", mkl.unary("Acos", np.arccos),
      lambda ns, g, out, x: -g * ns.rsqrt(1 - x * x), dtype=FLOAT,
      saves="input", inplace=True, doc="arccosine", out_shape=broadcast_shape)
defop("atan", mkl.unary("Atan", np.arctan), lambda ns, g, out, x: g / (x * x + 1), dtype=FLOAT,
      saves="input", inplace=True, doc="arctangent", out_shape=broadcast_shape)
# float32 sinh, cosh, atanh as torch's kernels: SLEEF's in the vector loop, glibc's in the tail
defop("sinh", exact32_unary(vecmath.sleef_sinhf, vecmath.libm_sinhf, np.sinh),
      lambda ns, g, out, x: g * ns.cosh(x), dtype=FLOAT,
      saves="input", inplace=True, doc="hyperbolic sine",
      out_bound=_exact32_or(temporaries(broadcast_shape)))
defop("cosh", exact32_unary(vecmath.sleef_coshf, vecmath.libm_coshf, np.cosh),
      lambda ns, g, out, x: g * ns.sinh(x), dtype=FLOAT,
      saves="input", inplace=True, doc="hyperbolic cosine",
      out_bound=_exact32_or(temporaries(broadcast_shape)))
# No asinh_/acosh_/atanh_: torch's in-place variants have no derivative ("the derivative for
# 'inplace version of asinh' is not implemented"); gradserve leaves them out.
defop("asinh", np.arcsinh, lambda ns, g, out, x: g * ns.rsqrt(x * x + 1), dtype=FLOAT,
      saves="input", doc="inverse hyperbolic sine", out_shape=broadcast_shape)
defop("acosh", np.arccosh, lambda ns, g, out, x: g * ns.rsqrt(x * x - 1), dtype=FLOAT,
      saves="input", doc="inverse hyperbolic cosine", out_shape=broadcast_shape)
defop("atanh", exact32_unary(vecmath.sleef_atanhf, vecmath.libm_atanhf, np.arctanh),
      lambda ns, g, out, x: g / (1 - x * x), dtype=FLOAT,
      saves="input", doc="inverse hyperbolic tangent",
      out_bound=_exact32_or(temporaries(broadcast_shape)))

# --- logarithms, rounding, error function ---------------------------------------------------------

defop("log10", mkl.unary("Log10", np.log10),
      lambda ns, g, out, x: g / (x * math.log(10.0)), dtype=FLOAT,
      saves="input", inplace=True, doc="base-10 logarithm", out_shape=broadcast_shape)
defop("trunc", np.trunc, lambda ns, g, out, x: g * 0, dtype=SAME,
      saves="", inplace=True, doc="round towards zero; zero gradient",
      out_shape=broadcast_shape)
defop("frac", lambda x: x - np.trunc(x), lambda ns, g, out, x: g, dtype=SAME,
      saves="", inplace=True, doc="input - trunc(input)",
      out_bound=temporaries(broadcast_shape, results=1))


def _erfc(x: Any) -> Any:
    # numpy has no erfc ufunc; math.erfc per element (accurate where 1 - erf(x) cancels).
    return np.vectorize(math.erfc, otypes=[np.float64])(x).astype(x.dtype)


defop("erfc", mkl.unary("Erfc", _erfc),  # derivatives.yaml's order of the products
      lambda ns, g, out, x: (-2 / math.sqrt(math.pi)) * ns.exp(-x * x) * g,
      saves="input", dtype=FLOAT, inplace=True, doc="complementary error function 1 - erf",
      out_bound=temporaries(broadcast_shape, result_bytes=_ERF_BYTES))
# torch's sgn_backward(self, grad, result) saves both (for complex inputs), so a second
# backward through a freed SgnBackward0 fails there too.
defop("sgn", np.sign, lambda ns, g, out, x: g * 0, saves="input result", inplace=True,
      doc="sign (for real inputs); zero gradient", out_shape=broadcast_shape)

# --- two inputs ----------------------------------------------------------------------------------

defop("atan2", np.arctan2,
      lambda ns, g, out, x, y: g * y / (x * x + y * y),
      lambda ns, g, out, x, y: g * -x / (x * x + y * y),
      saves=("input other", "input other"), inputs=("input", "other"), dtype=FLOAT,
      inplace=True, doc="arctangent of input / other by quadrant",
      out_bound=temporaries(broadcast_shape, results=1))
defop("hypot", np.hypot,
      lambda ns, g, out, x, y: g * x / out,
      lambda ns, g, out, x, y: g * y / out,
      saves=("input result", "other result"), inputs=("input", "other"), dtype=FLOAT,
      inplace=True, doc="sqrt(input ** 2 + other ** 2)", out_shape=broadcast_shape)
defop("logaddexp", np.logaddexp,
      lambda ns, g, out, x, y: g / (ns.exp(y - x) + 1),
      lambda ns, g, out, x, y: g / (ns.exp(x - y) + 1),
      saves=("input other", "input other"), inputs=("input", "other"), dtype=FLOAT,
      doc="log(exp(input) + exp(other))", out_bound=temporaries(broadcast_shape, results=2))


def _xlogy(x: Any, y: Any) -> Any:
    # torch: nan where other is nan, else 0 where input is 0, else input * log(other)
    with np.errstate(divide="ignore", invalid="ignore"):
        product = np.multiply(x, np.log(y))
    return np.where(np.isnan(y), y, np.where(np.equal(x, 0), 0, product)).astype(product.dtype)


def _xlogy_dx(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    # torch: xlogy(grad, other), zero where input == 0 and other <= 0
    d = ns.xlogy(g, y)
    return ns.where(ns.logical_and(x == 0, y <= 0), g * 0, d)


defop("xlogy", _xlogy, _xlogy_dx,
      lambda ns, g, out, x, y: g * x / y,
      saves=("input other", "input other"), inputs=("input", "other"), dtype=FLOAT,
      backward=_by_scalars("XlogyBackward0", "XlogyBackward2", "XlogyBackward1"),
      inplace=True, doc="input * log(other), 0 where input is 0",
      out_bound=temporaries(broadcast_shape, results=3))

# --- float tests (no gradient) --------------------------------------------------------------------

defop("isnan", np.isnan, None, dtype=BOOL, doc="input is NaN, as bool",
      out_shape=broadcast_shape)
defop("isinf", np.isinf, None, dtype=BOOL, doc="input is +-inf, as bool",
      out_shape=broadcast_shape)
defop("isfinite", np.isfinite, None, dtype=BOOL, doc="input is neither NaN nor +-inf, as bool",
      out_shape=broadcast_shape)

# --- triangles -----------------------------------------------------------------------------------


def _triangle(name: str) -> Any:
    """tril/triu's forward, refusing fewer than 2 dims (numpy would broadcast a vector)."""
    triangle = getattr(np, name)

    def forward(x: Any, diagonal: int = 0) -> Any:
        if np.ndim(x) < 2:
            raise errors.InvalidArgumentError(
                f"{name}: input tensor must have at least 2 dimensions")
        return triangle(x, diagonal)
    return forward


defop("tril", _triangle("tril"),
      lambda ns, g, out, x, diagonal: ns.tril(g, diagonal=diagonal), saves="",
      attrs=(AttrSpec("diagonal", "int", 0),), inplace=True,
      doc="the lower triangle (below and on `diagonal`) of the last two dims, zeros elsewhere",
      out_bound=temporaries(broadcast_shape, results=1))
defop("triu", _triangle("triu"),
      lambda ns, g, out, x, diagonal: ns.triu(g, diagonal=diagonal), saves="",
      attrs=(AttrSpec("diagonal", "int", 0),), inplace=True,
      doc="the upper triangle (above and on `diagonal`) of the last two dims, zeros elsewhere",
      out_bound=temporaries(broadcast_shape, results=1))

# --- addcmul, addcdiv: input + value * tensor1 (* or /) tensor2 ----------------------------------

_ADDCDIV_INTEGER = (
    "Integer division with addcdiv is no longer supported, and in a future  release addcdiv will "
    "perform a true division of tensor1 and tensor2. The historic addcdiv behavior can be "
    "implemented as (input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) for integer "
    "inputs and as (input + value * tensor1 / tensor2) for float inputs. The future addcdiv "
    "behavior is just the latter implementation: (input + value * tensor1 / tensor2), for all "
    "dtypes.")


def _addc_dtype(name: str) -> Any:
    def rule(args: Any, attrs: Any) -> tuple[Any, Any]:
        d = promote_args(args)
        if d is dtypes.bool_:
            raise errors.NotImplementedFunctionError(
                f"\"{name}_cpu_out\" not implemented for 'Bool'")
        if name == "addcdiv" and not (args[1].dtype.is_floating_point
                                      or args[2].dtype.is_floating_point):
            raise errors.InvalidArgumentError(_ADDCDIV_INTEGER)
        return d, d
    return rule


def _kernel_value(x: Any, value: Any) -> Any:
    """`value` as torch's kernel holds it: cast to the tensors' dtype (0.5 is 0 for int64)."""
    return x.dtype.type(value)


def _addcmul(x: Any, t1: Any, t2: Any, value: Any = 1) -> Any:
    # torch's float32 and float64 kernels are `self + value * t1 * t2` with the last multiply
    # and the add one fused multiply-add (checked bit for bit on 100,000 random elements,
    # contiguous, strided and broadcast); other dtypes round each operation.
    scaled = np.multiply(t1, _kernel_value(t1, value))
    if x.dtype == np.float32:
        return fma32(scaled, t2, x)
    if x.dtype == np.float64 and scaled.dtype == np.float64:
        return fma64(*np.broadcast_arrays(scaled, t2, x))
    return np.add(x, np.multiply(scaled, t2))


def _addcdiv(x: Any, t1: Any, t2: Any, value: Any = 1) -> Any:
    # torch's kernel: `self + value * t1 / t2`, each operation rounded in the tensors' dtype.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.add(x, np.divide(np.multiply(t1, _kernel_value(t1, value)), t2))


_ADDC_ATTRS = (AttrSpec("value", "scalar", 1),)

# derivatives.yaml: grad; grad * (tensor2 * value); grad * (tensor1 * value)
defop("addcmul", _addcmul,
      lambda ns, g, out, x, t1, t2, value: g,
      lambda ns, g, out, x, t1, t2, value: g * (t2 * value),
      lambda ns, g, out, x, t1, t2, value: g * (t1 * value),
      saves=("", "tensor2", "tensor1"), inputs=("input", "tensor1", "tensor2"),
      attrs=_ADDC_ATTRS, dtype=_addc_dtype("addcmul"), inplace=True,
      doc="input + value * tensor1 * tensor2 (float32: fused as torch's kernel)",
      out_bound=temporaries(broadcast_shape, results=3))
# derivatives.yaml: grad; grad * (value / tensor2); -grad * value * tensor1 / (tensor2 * tensor2)
defop("addcdiv", _addcdiv,
      lambda ns, g, out, x, t1, t2, value: g,
      lambda ns, g, out, x, t1, t2, value: g * (value / t2),
      lambda ns, g, out, x, t1, t2, value: -g * value * t1 / (t2 * t2),
      # torch's node saves both tensors whichever input needs a gradient (a second backward
      # fails even when only input requires grad)
      saves=("tensor1 tensor2", "tensor2", "tensor1 tensor2"),
      inputs=("input", "tensor1", "tensor2"),
      attrs=_ADDC_ATTRS, dtype=_addc_dtype("addcdiv"), inplace=True,
      doc="input + value * tensor1 / tensor2",
      out_bound=temporaries(broadcast_shape, results=2))


# --- lerp: input + weight * (end - input) -------------------------------------------------------

def _lerp_dtype(args: Any, attrs: Any) -> tuple[Any, Any]:
    """torch's lerp checks: `end`, and a weight tensor of one or more dims, of input's dtype;
    floating types only. The result is input's dtype. (`lerp` takes a weight tensor,
    `lerp_scalar` a number: torch's lerp.Tensor and lerp.Scalar.)"""
    x, end = args[0], args[1]
    weight = args[2] if len(args) > 2 else None
    d = x.dtype
    if end.dtype is not d:
        raise errors.InvalidArgumentError(
            f"expected dtype {_C_TYPE[d.name]} for `end` but got dtype "
            f"{_C_TYPE[end.dtype.name]}")
    if len(args) > 2 and not _is_tensor(weight):
        raise errors.InvalidTypeError("lerp(): weight must be a tensor (lerp_scalar takes a "
                                      "number)")
    if weight is not None and weight.ndim and weight.dtype is not d:
        raise errors.InvalidArgumentError(
            f"expected dtype {_C_TYPE[d.name]} for `weight` but got dtype "
            f"{_C_TYPE[weight.dtype.name]}")
    if not d.is_floating_point:
        kernel = "lerp_kernel_tensor" if weight is not None else "lerp_kernel_scalar"
        raise errors.NotImplementedFunctionError(
            f"\"{kernel}\" not implemented for '{TYPE_WORDS[d.name]}'")
    return d, d


def _lerp(x: Any, end: Any, weight: Any) -> Any:
    """torch's lerp kernel: `fmadd(coeff, end - input, base)`, coeff and base weight and input
    where |weight| < 0.5, else weight - 1 and end (so a weight of 1 gives `end` exactly); one
    fused multiply-add, in the input's dtype (a number or 0-d weight cast to it)."""
    dtype = x.dtype.type
    w = np.asarray(weight).astype(x.dtype) if np.ndim(weight) else dtype(np.asarray(weight))
    diff = np.subtract(end, x)
    small = np.abs(w) < dtype(0.5)
    coeff = np.where(small, w, w - dtype(1))
    base = np.where(small, x, end)
    if x.dtype == np.float32:
        return np.asarray(fma32(coeff, diff, base), np.float32).reshape(
            np.broadcast_shapes(np.shape(x), np.shape(end), np.shape(w)))
    return fma64(*np.broadcast_arrays(coeff, diff, base))


_LERP_DOC = ("input + weight * (end - input), one fused multiply-add as torch's kernel (weight "
             "a tensor{}")
# coefficient, difference and base, then the float64 sums of the fused multiply-add
_LERP_BOUND = temporaries(broadcast_shape, results=3, result_bytes=16)

# derivatives.yaml, lerp.Tensor: self grad * (1 - weight), end grad * weight, weight
# grad * (end - self)
defop("lerp", _lerp,
      lambda ns, g, out, x, end, weight: g * (1 - weight),
      lambda ns, g, out, x, end, weight: g * weight,
      lambda ns, g, out, x, end, weight: g * (end - x),
      saves=("weight", "weight", "input end"), inputs=("input", "end", "weight"),
      dtype=_lerp_dtype, backward="LerpBackward1", inplace=True,
      doc=_LERP_DOC.format("; lerp_scalar: a number)"), out_bound=_LERP_BOUND)
# lerp.Scalar: self grad * (1 - weight) (the factor in double), end grad * weight; the node
# keeps the number only (a second backward through it works, as torch's)
defop("lerp_scalar", _lerp,
      lambda ns, g, out, x, end, weight: g * (1 - weight),
      lambda ns, g, out, x, end, weight: g * weight,
      saves=("", ""), inputs=("input", "end"), attrs=(AttrSpec("weight", "scalar", required=True),),
      dtype=_lerp_dtype, backward="LerpBackward0", inplace=True, method=False,
      doc=_LERP_DOC.format(" of a number; lerp: a tensor)"), out_bound=_LERP_BOUND)

# --- clamp_min, clamp_max: clamp with one bound, torch's own nodes --------------------------------


def _one_bound(name: str, pick: Any, keep: Any) -> None:
    @names_backward(f"Clamp{name}Backward0", f"Clamp{name}Backward1")
    def node(args: Any, attrs: Any) -> str:
        tensor_bound = len(args) > 1 and _is_tensor(args[1])
        return f"Clamp{name}Backward1" if tensor_bound else f"Clamp{name}Backward0"

    defop(f"clamp_{name.lower()}", pick,  # numpy's maximum/minimum propagate NaN as torch's
          lambda ns, g, out, x, b: g * keep(x, b),
          lambda ns, g, out, x, b: g * ns.logical_not(keep(x, b)),
          saves=("input " + name.lower(), "input " + name.lower()),
          inputs=("input", name.lower()), dtype=PROMOTE, backward=node, inplace=True,
          doc=f"clamp with only a {name.lower()}imum (torch's Clamp{name}Backward nodes)",
          out_shape=broadcast_shape, out_bound=temporaries(broadcast_shape, results=1))


_one_bound("Min", np.maximum, lambda x, b: x >= b)
_one_bound("Max", np.minimum, lambda x, b: x <= b)

# --- hardtanh: clamp to [min_val, max_val] with torch's own node and gradient --------------------


def _hardtanh(x: Any, min_val: float = -1.0, max_val: float = 1.0) -> Any:
    if x.dtype == np.bool_:
        raise errors.InvalidArgumentError("Bool inputs not supported for hardtanh")
    # torch's CPU hardtanh is clamp: max then min, keeping the input where it ties a bound
    # (-0.0 against 0.0; numpy's maximum/minimum keep their second operand) and NaN
    lo, hi = x.dtype.type(min_val), x.dtype.type(max_val)
    return np.minimum(hi, np.maximum(lo, x))


# torch's hardtanh_backward kernel: +0 where input <= min_val or input >= max_val, else grad (so
# 0 at the bounds, where clamp's gradient is grad, and grad at a NaN)
defop("hardtanh", _hardtanh,
      lambda ns, g, out, x, min_val, max_val: ns.where(
          ns.logical_or(x <= min_val, x >= max_val), 0.0, g),
      saves="input", attrs=(AttrSpec("min_val", "float", -1.0), AttrSpec("max_val", "float", 1.0)),
      backward="HardtanhBackward0", inplace=True, method=False,
      doc="input clamped to [min_val, max_val] (nn.functional.hardtanh, relu6)",
      out_shape=lambda x, min_val=-1.0, max_val=1.0: tuple(x.shape),
      out_bound=temporaries(broadcast_shape, results=1))


# --- argsort: the order sort and topk (surface/spellings) gather by -------------------------------


def _argsort(x: Any, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    if x.ndim == 0:
        if dim not in (-1, 0):
            raise errors.OutOfRangeIndexError(
                f"Dimension out of range (expected to be in range of [-1, 0], but got {dim})")
        return np.zeros((), np.int64)
    if not -x.ndim <= dim < x.ndim:
        raise errors.OutOfRangeIndexError(
            f"Dimension out of range (expected to be in range of [{-x.ndim}, {x.ndim - 1}], "
            f"but got {dim})")
    axis = dim % x.ndim
    if not descending:  # numpy's stable sort: NaN last, ties (-0.0 and 0.0 too) in index order
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64)
    # descending and stable: the ascending stable order of the reversed input, reversed (NaN
    # first, as torch's descending sort)
    idx = np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    return (x.shape[axis] - 1 - idx).astype(np.int64)


def _sorting(bound_rule: Any) -> Any:
    """An `out_bound`: `bound_rule`'s, with the work of sorting the input along `dim`
    (`limits.sort_work`)."""
    @shapes_only
    def bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
        shape, dim = tuple(args[0].shape), attrs.get("dim", -1)
        length = shape[dim] if -len(shape) <= dim < len(shape) else 1  # else forward's error
        return limits.sort_work(bound_rule(args, attrs, out_dtype), limits.numel(shape), length)
    return bound


defop("argsort", _argsort, None,
      attrs=(AttrSpec("dim", "int", -1), AttrSpec("descending", "bool", False),
             AttrSpec("stable", "bool", False)),
      dtype=INT64, doc="the indices that sort input along dim (ties in index order)",
      out_shape=lambda x, dim=-1, descending=False, stable=False: tuple(x.shape),
      out_bound=_sorting(temporaries(lambda x, dim=-1, descending=False, stable=False:
                                     tuple(x.shape), results=2, inputs=1)))


# --- nan_to_num ----------------------------------------------------------------------------------


def _nan_to_num(x: Any, nan: Any = 0.0, posinf: Any = None, neginf: Any = None) -> Any:
    if x.dtype.kind not in "f":  # integral and bool tensors hold no NaN or inf: a copy
        return np.array(x, copy=True)
    info = np.finfo(x.dtype)
    kind = x.dtype.type
    with np.errstate(over="ignore"):  # a value beyond the dtype's range is inf, as torch's cast
        values = [kind(0.0 if nan is None else nan), kind(info.max if posinf is None else posinf),
                  kind(info.min if neginf is None else neginf)]
    out = np.where(np.isnan(x), values[0], x)
    out = np.where(np.isposinf(x), values[1], out)
    return np.where(np.isneginf(x), values[2], out).astype(x.dtype, copy=False)


defop("nan_to_num", _nan_to_num, lambda ns, g, out, x, nan, posinf, neginf: g * ns.isfinite(x),
      saves="input",
      attrs=(AttrSpec("nan", "optional_float", 0.0), AttrSpec("posinf", "optional_float", None),
             AttrSpec("neginf", "optional_float", None)),
      inplace=True,
      doc="NaN, +inf and -inf replaced by nan, posinf and neginf (the dtype's extremes by "
          "default)",
      out_bound=temporaries(broadcast_shape, results=3))

# --- glu: the first half along dim gated by the sigmoid of the second ----------------------------


def _glu_halves(shape: Any, dim: int) -> tuple[int, int]:
    """(axis, half size) of glu along dim, with torch's errors."""
    if not len(shape):
        raise errors.InvalidArgumentError(
            "glu does not support scalars because halving size must be even")
    axis = wrap_dim(dim, len(shape))
    if shape[axis] % 2:
        raise errors.InvalidArgumentError(
            f"Halving dimension must be even, but dimension {axis} is size {shape[axis]}")
    return axis, shape[axis] // 2


def _glu(x: Any, dim: int = -1) -> Any:
    if x.dtype.kind not in "f":
        raise errors.NotImplementedFunctionError(
            f"\"glu_cpu\" not implemented for '{TYPE_WORDS[dtypes.from_numpy(x.dtype).name]}'")
    axis, half = _glu_halves(x.shape, dim)
    a, b = np.split(x, 2, axis=axis)
    with np.errstate(over="ignore"):
        return (a * (1 / (1 + np.exp(-b)))).astype(x.dtype, copy=False)


def _glu_vjp(ns: Any, g: Any, out: Any, x: Any, dim: int) -> Any:
    # torch's glu_backward: grad * sigmoid(b) for the first half, grad * a * s * (1 - s) for
    # the second, written in engine ops so that it is differentiable (glu_double_backward)
    axis, half = _glu_halves(x.shape, dim)
    a = ns.slice(x, dim=axis, start=0, end=half)
    s = ns.sigmoid(ns.slice(x, dim=axis, start=half, end=2 * half))
    return ns.cat([g * s, g * a * s * (1 - s)], dim=axis)


def _glu_shape(x: Any, dim: int = -1) -> tuple[int, ...]:
    axis, half = _glu_halves(x.shape, dim)
    return (*x.shape[:axis], half, *x.shape[axis + 1:])


defop("glu", _glu, _glu_vjp, saves="input", attrs=(AttrSpec("dim", "int", -1),),
      method=False, doc="the gated linear unit: a * sigmoid(b), a and b input's halves along dim",
      out_bound=temporaries(_glu_shape, results=3))
