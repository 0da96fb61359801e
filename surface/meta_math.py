"""`gradserve.surface.meta`'s rules for elementwise ops and reductions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .meta_base import (
    _BOOL,
    _DEFAULT_FLOAT,
    _FLOAT,
    _INT64,
    _MISSING,
    DTYPE_NAMES,
    RULES,
    Meta,
    _axes,
    _bool,
    _broadcast,
    _choice,
    _dims,
    _dtype,
    _float,
    _Inexact,
    _int,
    _known,
    _meta,
    _numel,
    _one,
    _opt_int,
    _plain_layout,
    _reduced,
    _rule,
    _scalar,
    _tensor,
    _walk,
    _wrap,
)

# What an elementwise op's result dtype is, from the promoted rank of its inputs.
_PROMOTE, _TO_FLOAT, _TO_BOOL = "promote", "float", "bool"


def _elementwise(name: str, n_inputs: int, result: str, *,
                 attrs: Mapping[str, Callable[[Any], Any]] | None = None,
                 accepts: Callable[[int], bool] | None = None) -> None:
    """Register an elementwise op of `n_inputs` inputs: broadcast shape, `result` dtype
    (`_PROMOTE`: the promoted dtype; `_TO_FLOAT`: that made floating; `_TO_BOOL`: bool),
    attributes checked by `attrs` (name -> converter raising `_Inexact`), and `accepts(rank)`
    saying which promoted dtypes the engine computes in (None: all)."""
    attr_names = frozenset(attrs or ())
    checks = tuple((attrs or {}).items())

    def rule(inputs: Sequence[Any], given: Mapping[str, Any], grad: bool) -> list[Meta]:
        if len(inputs) != n_inputs:
            raise _Inexact
        if given:
            _known(given, attr_names)
            for k, check in checks:
                v = given.get(k, _MISSING)
                if v is not _MISSING:
                    check(v)
        shape, rank, rg, any_tensor = _walk(inputs)
        if not any_tensor or (accepts is not None and not accepts(rank)):
            raise _Inexact
        assert shape is not None
        if result == _TO_FLOAT and rank < _FLOAT:
            rank = _DEFAULT_FLOAT
        elif result == _TO_BOOL:
            return [Meta(shape, "bool", False)]
        return _meta(shape, rank, grad and rg)

    _rule(name)(rule)


def _not_bool(rank: int) -> bool:
    return rank != _BOOL


_ALPHA = {"alpha": _scalar}


# --- elementwise: binary -------------------------------------------------------------------------

_elementwise("add", 2, _PROMOTE, attrs=_ALPHA)
_elementwise("sub", 2, _PROMOTE, attrs=_ALPHA)
_sub_promoted = RULES.pop("sub")


@_rule("sub")
def _sub(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if any(a is True or a is False or getattr(a, "dtype", None) == "bool" for a in inputs):
        raise _Inexact  # torch's sub_check: "Subtraction, the `-` operator, with a bool tensor"
    return _sub_promoted(inputs, attrs, grad)


_elementwise("mul", 2, _PROMOTE)
_elementwise("div", 2, _TO_FLOAT)
for _name in ("floor_divide", "remainder", "fmod"):
    _elementwise(_name, 2, _PROMOTE)
for _name in ("maximum", "minimum", "fmax", "fmin"):
    _elementwise(_name, 2, _PROMOTE)
for _name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    _elementwise(_name, 2, _PROMOTE, accepts=lambda rank: rank < _FLOAT)
for _name in ("bitwise_left_shift", "bitwise_right_shift"):
    _elementwise(_name, 2, _PROMOTE, accepts=lambda rank: _BOOL < rank < _FLOAT)
_elementwise("bitwise_not", 1, _PROMOTE, accepts=lambda rank: rank < _FLOAT)
for _name in ("atan2", "hypot", "logaddexp", "xlogy"):
    _elementwise(_name, 2, _TO_FLOAT)
for _name in ("lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_xor"):
    _elementwise(_name, 2, _TO_BOOL)

for _name in ("clamp_min", "clamp_max"):
    _elementwise(_name, 2, _PROMOTE)
_elementwise("addcmul", 3, _PROMOTE, attrs={"value": _scalar}, accepts=_not_bool)


@_rule("lerp", "lerp_scalar")
def _lerp(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    # engine/ops_math.py `_lerp_dtype`: end, and a weight tensor of any dims, of input's
    # floating dtype (a 0-d weight of another dtype is cast); the result is input's dtype
    if len(inputs) not in (2, 3) or (len(inputs) == 3) == ("weight" in attrs):
        raise _Inexact
    (xs, xr, xg), (es, er, eg) = _tensor(inputs[0]), _tensor(inputs[1])
    if er != xr or xr < _FLOAT:
        raise _Inexact
    ws: tuple[int, ...] = ()
    wg = False
    if len(inputs) == 3:
        ws, wr, wg = _tensor(inputs[2])
        if ws and wr != xr:
            raise _Inexact
    else:
        _known(attrs, frozenset(("weight",)))
        if type(attrs["weight"]) not in (bool, int, float):
            raise _Inexact
    return _meta(_broadcast(_broadcast(xs, es), ws), xr, grad and (xg or eg or wg))


@_rule("addcdiv")
def _addcdiv(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3 or max(_tensor(inputs[1])[1], _tensor(inputs[2])[1]) < _FLOAT:
        raise _Inexact  # "Integer division with addcdiv is no longer supported, ..."
    return RULES["addcmul"](inputs, attrs, grad)


def _scalar_overload(name: str, tensor_op: str) -> None:
    """add_scalar / mul_scalar / div_scalar: `tensor_op`'s rule with the number attribute
    `other` as its second operand (a Python scalar)."""
    @_rule(name)
    def rule(inputs: Sequence[Any], given: Mapping[str, Any], grad: bool) -> list[Meta]:
        other = given.get("other", _MISSING)
        if len(inputs) != 1 or other is _MISSING:
            raise _Inexact
        _known(given, frozenset(("other",)))
        return RULES[tensor_op]([inputs[0], _scalar(other)], {}, grad)


_scalar_overload("add_scalar", "add")
_scalar_overload("mul_scalar", "mul")
_scalar_overload("div_scalar", "div")


@_rule("pow")
def _pow(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs:
        raise _Inexact
    shape, rank, rg, any_tensor = _walk(inputs)
    if not any_tensor:
        raise _Inexact
    y = inputs[1]
    if type(y) is int and y < 0 and rank < _FLOAT:
        raise _Inexact  # "Integers to negative integer powers are not allowed."
    assert shape is not None
    return _meta(shape, rank, grad and rg)


# --- elementwise: unary --------------------------------------------------------------------------

# Computed in the input's dtype; which input dtypes numpy's forward takes.
for _name in ("abs", "square", "floor", "ceil", "trunc", "relu"):
    _elementwise(_name, 1, _PROMOTE)
_elementwise("clone", 1, _PROMOTE, attrs={"memory_format": _plain_layout})
for _name in ("neg", "sign", "frac", "sgn"):
    _elementwise(_name, 1, _PROMOTE, accepts=_not_bool)


@_rule("round")
def _round(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("decimals",)))
    if _int(attrs.get("decimals", 0)) and rank == _BOOL:
        raise _Inexact  # numpy scales by 10 ** decimals: no bool result
    return _meta(shape, rank, grad and rg)


# Computed in floating point (an integral or bool input is cast to float32 first).
for _name in ("reciprocal", "sqrt", "rsqrt", "exp", "expm1", "log", "log1p", "log2", "log10",
              "sin", "cos", "tan", "tanh", "sigmoid", "asin", "acos", "atan", "sinh", "cosh",
              "asinh", "acosh", "atanh", "erf", "erfc", "silu"):
    _elementwise(_name, 1, _TO_FLOAT)
for _name in ("leaky_relu", "_leaky_relu_result"):  # (the op the in-place variant runs)
    _elementwise(_name, 1, _TO_FLOAT, attrs={"negative_slope": _float})
# hardtanh computes in the input's dtype; a bool input is refused
_elementwise("hardtanh", 1, _PROMOTE, attrs={"min_val": _float, "max_val": _float},
             accepts=_not_bool)
_elementwise("_prelu_kernel", 2, _PROMOTE)
for _name in ("elu", "_elu_result"):
    _elementwise(_name, 1, _TO_FLOAT, attrs={"alpha": _float})
_elementwise("softplus", 1, _TO_FLOAT, attrs={"beta": _float, "threshold": _float})
def _nonzero_float(v: Any) -> float:
    f = _float(v)
    if f == 0:
        raise _Inexact  # the op raises
    return f


# floating inputs only (torch raises for the others)
for _name in ("log_sigmoid", "mish", "selu", "_selu_result", "hardsigmoid", "hardswish"):
    _elementwise(_name, 1, _PROMOTE, accepts=lambda rank: rank >= _FLOAT)
for _name in ("tanh_backward", "sigmoid_backward", "hardsigmoid_backward"):
    _elementwise(_name, 2, _PROMOTE, accepts=lambda rank: rank >= _FLOAT)
_elementwise("threshold_backward", 2, _PROMOTE, attrs={"threshold": _float})
for _name in ("celu", "_celu_result"):
    _elementwise(_name, 1, _PROMOTE, accepts=lambda rank: rank >= _FLOAT,
                 attrs={"alpha": _nonzero_float})
_elementwise("gelu", 1, _TO_FLOAT, attrs={"approximate": lambda v: _choice(v, ("none", "tanh"))})
for _name in ("logical_not", "isnan", "isinf", "isfinite"):
    _elementwise(_name, 1, _TO_BOOL)


@_rule("clamp")
def _clamp(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3 or attrs or (inputs[1] is None and inputs[2] is None):
        raise _Inexact  # both None: "At least one of 'min' or 'max' must not be None"
    _tensor(inputs[0])
    shape, rank, rg, _ = _walk(inputs)
    assert shape is not None
    return _meta(shape, rank, grad and rg)


@_rule("where")
def _where(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3 or attrs:
        raise _Inexact
    cond_shape, cond_rank, _ = _tensor(inputs[0])
    if cond_rank != _BOOL:
        raise _Inexact  # "where expected condition to be a boolean tensor"
    shape, rank, rg, any_tensor = _walk(inputs[1:])
    shape = cond_shape if shape is None else _broadcast(cond_shape, shape)
    return _meta(shape, rank, grad and rg)


@_rule("to_dtype")
def _to_dtype(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 1:
        raise _Inexact
    _known(attrs, frozenset(("dtype", "memory_format")))
    if "memory_format" in attrs:
        _plain_layout(attrs["memory_format"])
    rank = _dtype(attrs.get("dtype"))
    if rank is None:
        raise _Inexact  # required
    shape, _, rg = _tensor(inputs[0])
    return _meta(shape, rank, grad and rg)


# --- reductions ----------------------------------------------------------------------------------


_SUM_ATTRS = frozenset(("dim", "keepdim", "dtype"))


@_rule("sum")
def _sum(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _SUM_ATTRS)
    out = _dtype(attrs.get("dtype"))
    if out is None:
        out = rank if rank >= _FLOAT else _INT64
    shape = _reduced(shape, _dims(attrs.get("dim")), _bool(attrs.get("keepdim", False)))
    return _meta(shape, out, grad and rg)


@_rule("mean")
def _mean(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _SUM_ATTRS)
    out = _dtype(attrs.get("dtype"))
    if out is None:
        out = rank
    if out < _FLOAT:
        raise _Inexact  # "mean(): could not infer output dtype ..."
    shape = _reduced(shape, _dims(attrs.get("dim")), _bool(attrs.get("keepdim", False)))
    return _meta(shape, out, grad and rg)


@_rule("prod")
def _prod(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _SUM_ATTRS)
    out = _dtype(attrs.get("dtype"))
    if out is None:
        out = rank if rank >= _FLOAT else _INT64
    dim = _opt_int(attrs.get("dim"))
    keepdim = _bool(attrs.get("keepdim", False))
    if not shape:
        return _meta((), out, grad and rg)  # a 0-dim input: any dim, no keepdim
    if dim is None:
        return _meta((), out, grad and rg)  # keepdim only counts with a dim
    return _meta(_reduced(shape, dim, keepdim), out, grad and rg)


@_rule("max", "min")
def _extreme(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset())
    if _numel(shape) == 0:
        raise _Inexact  # "Expected reduction dim to be specified for input.numel() == 0."
    return _meta((), rank, grad and rg)


def _nonempty(shape: tuple[int, ...], axes: tuple[int, ...] | None) -> None:
    """The engine refuses max-like reductions of nothing: all of an empty tensor, or an
    empty dim."""
    if _numel(shape):
        return
    if not axes:
        raise _Inexact
    if shape and any(shape[a] == 0 for a in axes):
        raise _Inexact


_KEEPDIM_ATTRS = frozenset(("dim", "keepdim"))


@_rule("amax", "amin")
def _amax(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _KEEPDIM_ATTRS)
    dim = _dims(attrs.get("dim", ()))
    _nonempty(shape, _axes(dim, len(shape)))
    return _meta(_reduced(shape, dim, _bool(attrs.get("keepdim", False))), rank, grad and rg)


@_rule("max_dim", "min_dim")
def _extreme_dim(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _KEEPDIM_ATTRS)
    dim = attrs.get("dim")
    if dim is None:
        raise _Inexact  # required
    axis = _wrap(_int(dim), len(shape))
    keepdim = _bool(attrs.get("keepdim", False))
    if shape:
        _nonempty(shape, (axis,))
        out = _reduced(shape, axis, keepdim)
    else:
        out = ()
    values = Meta(out, DTYPE_NAMES[rank], grad and rg)
    return [values, Meta(out, "int64", False)]


@_rule("argmax", "argmin")
def _arg_extreme(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, _ = _one(inputs, attrs, _KEEPDIM_ATTRS)
    if rank == _BOOL:
        raise _Inexact  # "does not support bool input"
    dim = _opt_int(attrs.get("dim"))
    keepdim = _bool(attrs.get("keepdim", False))
    if dim is None:
        _nonempty(shape, None)
        return [Meta((1,) * len(shape) if keepdim else (), "int64", False)]
    axis = _wrap(dim, len(shape))
    _nonempty(shape, (axis,))
    return [Meta(_reduced(shape, axis, keepdim) if shape else (), "int64", False)]


@_rule("argsort")
def _argsort(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, _, _ = _one(inputs, attrs, frozenset(("dim", "descending", "stable")))
    _wrap(_int(attrs.get("dim", -1)), len(shape))
    _bool(attrs.get("descending", False))
    _bool(attrs.get("stable", False))
    return [Meta(shape, "int64", False)]


_VAR_ATTRS = frozenset(("dim", "unbiased", "keepdim", "correction"))


@_rule("var", "std")
def _var(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _VAR_ATTRS)
    if rank < _FLOAT:
        raise _Inexact  # "std and var only support floating point and complex dtypes"
    unbiased = attrs.get("unbiased")
    correction = attrs.get("correction")
    if unbiased is not None:
        _bool(unbiased)
    if correction is not None:
        _float(correction)
        if unbiased is not None:
            raise _Inexact  # "cannot specify both unbiased and correction"
    dim = _dims(attrs.get("dim"))
    return _meta(_reduced(shape, dim, _bool(attrs.get("keepdim", False))), rank, grad and rg)


@_rule("logsumexp")
def _logsumexp(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _KEEPDIM_ATTRS)
    if "dim" not in attrs:
        raise _Inexact  # required
    dim = _dims(attrs["dim"])
    if dim is None:
        raise _Inexact
    out = rank if rank >= _FLOAT else _DEFAULT_FLOAT
    return _meta(_reduced(shape, dim, _bool(attrs.get("keepdim", False))), out, grad and rg)


@_rule("norm", "norm_dim")
def _norm(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("p", "dim", "keepdim", "dtype")))
    if rank < _FLOAT:
        raise _Inexact  # "linalg.vector_norm: Expected a floating point or complex tensor"
    want = _dtype(attrs.get("dtype"))
    if want is not None:
        if want < rank:
            raise _Inexact  # not floating, or narrowing: linalg.vector_norm's errors
        rank = want
    p = _float(attrs.get("p", 2.0))
    if p == -np.inf and _numel(shape) == 0:
        raise _Inexact  # "cannot compute the -inf norm on an empty tensor"
    dim = _dims(attrs.get("dim"))
    return _meta(_reduced(shape, dim, _bool(attrs.get("keepdim", False))), rank, grad and rg)


@_rule("cumsum", "cumprod")
def _cumsum(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("dim", "dtype")))
    if attrs.get("dim") is None:
        raise _Inexact  # required
    _wrap(_int(attrs["dim"]), len(shape))
    out = _dtype(attrs.get("dtype"))
    if out is None:
        out = rank if rank >= _FLOAT else _INT64
    return _meta(shape, out, grad and rg)


@_rule("all", "any")
def _all(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, _, _ = _one(inputs, attrs, _KEEPDIM_ATTRS)
    out = _reduced(shape, _dims(attrs.get("dim")), _bool(attrs.get("keepdim", False)))
    return [Meta(out, "bool", False)]
