"""What an op's results will be (shape, dtype, requires_grad), known before the server runs it.

The client records ops and sends them in batches; to hand back a result's `.shape`, `.dtype` and
`.requires_grad` without asking the server, it calls `infer` with the op's catalogue name, its
inputs and its attributes. `infer` answers only when it can be exact, i.e. what the engine's op
would give for inputs with these shapes, dtypes and requires_grad flags; otherwise (an op without
a rule here, an attribute it does not know, an input kind it does not model, or inputs the
engine refuses for their shapes, dtypes or attributes) it returns None, and the server describes
the result as before. It never guesses.

The rules mirror the engine's op table (`engine/ops_*.py`): broadcasting; torch's type promotion
over three priority groups (tensors with dimensions, 0-dim tensors, Python scalars as "wrapped
numbers"), so that `int64 tensor * 2.5` is float32 and `float64 0-dim * float32 tensor` is
float32; true division and math functions made floating; comparisons and logic as bool; integer
and bool sums accumulating in int64; reductions' `dim`/`keepdim`; shape ops; matrix products;
softmax and the losses with their `reduction`. `tests/test_surface_meta.py` checks every rule
against the engine on all of the op's OpInfo samples (and dtype variants and refused inputs) in
both grad modes, and the promotion rules against torch.

requires_grad follows the engine: grad mode on, some input the op differentiates requires grad,
and the result is floating (integer and bool results never require grad).

Values are not looked at: errors that depend on the data (integer division by zero, integers to
negative tensor powers, a binary_cross_entropy input outside [0, 1], a class index out of range)
are still the server's to report when it runs the op; `infer` then describes the result the op
would have had. A Python float is float32, as on the server (whose engine keeps torch's default
dtype; a client's `set_default_dtype` changes only the tensors it creates).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np


class Meta(NamedTuple):
    """One op result's description: shape, dtype name ("float32"), requires_grad."""

    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool


# Dtype names in promotion order: promoting two is the later one (torch's promoteTypes for these
# five). A rank >= FLOAT is floating, 0 is bool, the rest integral.
DTYPE_NAMES = ("bool", "int32", "int64", "float32", "float64")
_RANK = {name: i for i, name in enumerate(DTYPE_NAMES)}
_BOOL, _INT32, _INT64, _FLOAT32, _FLOAT64 = range(5)
_FLOAT = _FLOAT32
_DEFAULT_FLOAT = _FLOAT32  # the dtype of a Python float, and of int / int, on the server

Rule = Callable[[Sequence[Any], Mapping[str, Any], bool], "list[Meta]"]
RULES: dict[str, Rule] = {}


class _Inexact(Exception):
    """Raised inside a rule that cannot answer exactly; `infer` returns None."""


def infer(op: str, inputs: Sequence[Any], attrs: Mapping[str, Any],
          grad_enabled: bool) -> list[Meta] | None:
    """Each result's shape, dtype and requires_grad for catalogue op `op`, or None.

    Args:
        op: the op's catalogue name ("add", "sum", "matmul", ...).
        inputs: the op's tensor inputs in order: objects with `.shape` (a tuple of ints),
            `.dtype` (a dtype name, see `DTYPE_NAMES`) and `.requires_grad`; Python bool, int
            and float scalars as themselves; None for an omitted optional input; a list of
            tensors for a variadic op's one input (`cat`, `stack`).
        attrs: the op's attributes by name, as given (omitted ones take the op's defaults);
            a dtype attribute as its name or an object with `.name`.
        grad_enabled: whether grad mode is on where the op is recorded.

    Returns:
        One `Meta` per result, or None when the answer cannot be exact: no rule for `op`, an
        attribute or input kind the rule does not know, or inputs the engine refuses.
    """
    rule = RULES.get(op)
    if rule is None:
        return None
    try:
        return rule(inputs, attrs, grad_enabled)
    except _Inexact:
        return None


# --- inputs --------------------------------------------------------------------------------------

def _tensor(a: Any) -> tuple[tuple[int, ...], int, bool]:
    """(shape, dtype rank, requires_grad) of a tensor input; `_Inexact` for anything else."""
    try:
        shape, rank, rg = a.shape, _RANK[a.dtype], a.requires_grad
    except (AttributeError, KeyError, TypeError):
        raise _Inexact from None
    if type(shape) is not tuple or rg not in (True, False):
        raise _Inexact
    return shape, rank, rg


# The rank a Python scalar promotes as (a wrapped number); complex and numpy scalars: no rule.
_SCALAR_RANK = {bool: _BOOL, int: _INT64, float: _DEFAULT_FLOAT}


def _combine(higher: int, lower: int) -> int:
    """torch's combine_categories on ranks (-1: the group is empty): a lower-priority group
    counts only when its category (bool < integral < floating) is higher."""
    if higher < 0:
        return lower
    if lower < 0 or higher >= _FLOAT:
        return higher
    if higher == _BOOL or lower >= _FLOAT:
        return higher if higher >= lower else lower
    return higher


def _walk(args: Sequence[Any]) -> tuple[tuple[int, ...] | None, int, bool, bool]:
    """(broadcast shape, promoted rank, whether a tensor requires grad, whether every tensor has
    one shape) over elementwise inputs: tensors, Python scalars and None (skipped). The shape is
    None when there is no tensor."""
    dim = zero = wrapped = -1
    shape: tuple[int, ...] | None = None
    rg = False
    for a in args:
        if a is None:
            continue
        r = _SCALAR_RANK.get(type(a))
        if r is not None:
            wrapped = r if r > wrapped else wrapped
            continue
        s, r, g = _tensor(a)
        if s:
            dim = r if r > dim else dim
        else:
            zero = r if r > zero else zero
        shape = s if shape is None else _broadcast(shape, s)
        rg = rg or g
    return shape, _combine(dim, _combine(zero, wrapped)), rg, shape is not None


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's (and torch's) broadcast of two shapes; `_Inexact` when they do not broadcast."""
    if a == b:
        return a
    if len(a) < len(b):
        a, b = b, a
    out = list(a)
    off = len(a) - len(b)
    for i, d in enumerate(b):
        e = out[off + i]
        if e != d:
            if e == 1:
                out[off + i] = d
            elif d != 1:
                raise _Inexact
    return tuple(out)


def _meta(shape: tuple[int, ...], rank: int, rg: bool) -> list[Meta]:
    """One result; it requires grad only when it is floating (the caller has checked grad mode
    and the inputs)."""
    return [Meta(shape, DTYPE_NAMES[rank], rg and rank >= _FLOAT)]


# --- attributes ----------------------------------------------------------------------------------

_MISSING: Any = object()


def _known(attrs: Mapping[str, Any], names: frozenset[str]) -> None:
    for k in attrs:
        if k not in names:
            raise _Inexact


def _int(v: Any) -> int:
    if type(v) is int or (isinstance(v, np.integer) and not isinstance(v, np.bool_)):
        return int(v)
    raise _Inexact


def _opt_int(v: Any) -> int | None:
    return None if v is None else _int(v)


def _bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    raise _Inexact


def _float(v: Any) -> float:
    if type(v) in (int, float) or isinstance(v, (np.integer, np.floating)):
        return float(v)
    raise _Inexact


def _scalar(v: Any) -> Any:
    if type(v) in (bool, int, float):
        return v
    raise _Inexact


def _ints(v: Any) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(_int(i) for i in v)
    raise _Inexact


def _dims(v: Any) -> int | tuple[int, ...] | None:
    """A `dims` attribute: None, one int, or a sequence of ints."""
    if v is None:
        return None
    if isinstance(v, (tuple, list)):
        return _ints(v)
    return _int(v)


def _dtype(v: Any) -> int | None:
    """A dtype attribute as a rank (None: not given)."""
    if v is None:
        return None
    r = _RANK.get(v if type(v) is str else getattr(v, "name", None))  # type: ignore[arg-type]
    if r is None:
        raise _Inexact
    return r


def _choice(v: Any, choices: tuple[str, ...]) -> str:
    if type(v) is str and v in choices:
        return v
    raise _Inexact


_REDUCTIONS = ("mean", "sum", "none")


# --- dims ----------------------------------------------------------------------------------------

def _wrap(dim: int, ndim: int) -> int:
    """A dim as an axis of an `ndim`-dim tensor (a 0-dim tensor takes -1 and 0)."""
    if ndim == 0:
        if dim in (-1, 0):
            return 0
        raise _Inexact
    if not -ndim <= dim < ndim:
        raise _Inexact
    return dim % ndim


def _axes(dim: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...] | None:
    """A reduction's dims as distinct axes (None: not given), as the engine's norm_dims."""
    if dim is None:
        return None
    dims = (dim,) if type(dim) is int else dim
    out = tuple(_wrap(d, ndim) for d in dims)  # type: ignore[union-attr]
    if len(set(out)) != len(out):
        raise _Inexact
    return out


def _reduced(shape: tuple[int, ...], dim: int | tuple[int, ...] | None,
             keepdim: bool) -> tuple[int, ...]:
    """A reduction's result shape; dim None or () reduces every dim."""
    axes = _axes(dim, len(shape))
    if not axes:
        return (1,) * len(shape) if keepdim else ()
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# --- the rule table ------------------------------------------------------------------------------

def _rule(*names: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for name in names:
            if name in RULES:
                raise ValueError(f"meta rule for {name!r} defined twice")
            RULES[name] = fn
        return fn
    return register


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


def _floating(rank: int) -> bool:
    return rank >= _FLOAT


def _integral_or_floating(rank: int) -> bool:
    return rank != _BOOL


_ALPHA = {"alpha": _scalar}

# --- elementwise: binary -------------------------------------------------------------------------

_elementwise("add", 2, _PROMOTE, attrs=_ALPHA)
_elementwise("sub", 2, _PROMOTE, attrs=_ALPHA, accepts=_not_bool)  # numpy: no bool subtract
_elementwise("mul", 2, _PROMOTE)
_elementwise("div", 2, _TO_FLOAT)
for _name in ("floor_divide", "remainder", "fmod"):
    _elementwise(_name, 2, _PROMOTE, accepts=_not_bool)
for _name in ("maximum", "minimum"):
    _elementwise(_name, 2, _PROMOTE)
for _name in ("atan2", "hypot", "logaddexp", "xlogy"):
    _elementwise(_name, 2, _TO_FLOAT)
for _name in ("lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_xor"):
    _elementwise(_name, 2, _TO_BOOL)


@_rule("pow")
def _pow(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs:
        raise _Inexact
    shape, rank, rg, any_tensor = _walk(inputs)
    if not any_tensor or rank == _BOOL:
        raise _Inexact
    y = inputs[1]
    if type(y) is int and y < 0 and rank < _FLOAT:
        raise _Inexact  # "Integers to negative integer powers are not allowed."
    assert shape is not None
    return _meta(shape, rank, grad and rg)


# --- elementwise: unary --------------------------------------------------------------------------

# Computed in the input's dtype; which input dtypes numpy's forward takes.
for _name in ("abs", "clone"):
    _elementwise(_name, 1, _PROMOTE)
_elementwise("neg", 1, _PROMOTE, accepts=_not_bool)
_elementwise("square", 1, _PROMOTE, accepts=_not_bool)
for _name in ("sign", "floor", "ceil", "trunc", "frac", "sgn", "relu"):
    _elementwise(_name, 1, _PROMOTE, accepts=_not_bool)
_elementwise("round", 1, _PROMOTE, attrs={"decimals": _int}, accepts=_floating)
# Computed in floating point (an integral or bool input is cast to float32 first).
for _name in ("reciprocal", "sqrt", "rsqrt", "exp", "expm1", "log", "log1p", "log2", "log10",
              "sin", "cos", "tan", "tanh", "sigmoid", "asin", "acos", "atan", "sinh", "cosh",
              "asinh", "acosh", "atanh", "erf", "erfc", "silu"):
    _elementwise(_name, 1, _TO_FLOAT)
_elementwise("leaky_relu", 1, _TO_FLOAT, attrs={"negative_slope": _float})
_elementwise("elu", 1, _TO_FLOAT, attrs={"alpha": _float})
_elementwise("softplus", 1, _TO_FLOAT, attrs={"beta": _float, "threshold": _float})
_elementwise("gelu", 1, _TO_FLOAT, attrs={"approximate": lambda v: _choice(v, ("none", "tanh"))})
for _name in ("logical_not", "isnan", "isinf", "isfinite"):
    _elementwise(_name, 1, _TO_BOOL)


@_rule("clamp")
def _clamp(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3 or attrs or (inputs[1] is None and inputs[2] is None):
        raise _Inexact  # both None: "At least one of 'min' or 'max' must not be None"
    if _SCALAR_RANK.get(type(inputs[0])) is not None:
        raise _Inexact
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
    _known(attrs, frozenset(("dtype",)))
    rank = _dtype(attrs.get("dtype"))
    if rank is None:
        raise _Inexact  # required
    shape, _, rg = _tensor(inputs[0])
    return _meta(shape, rank, grad and rg)


# --- reductions ----------------------------------------------------------------------------------

def _one(inputs: Sequence[Any], attrs: Mapping[str, Any],
         names: frozenset[str]) -> tuple[tuple[int, ...], int, bool]:
    """The one tensor input of a unary op, its attributes' names checked."""
    if len(inputs) != 1:
        raise _Inexact
    if attrs:
        _known(attrs, names)
    return _tensor(inputs[0])


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


@_rule("norm")
def _norm(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("p", "dim", "keepdim")))
    if rank < _FLOAT:
        raise _Inexact  # "linalg.vector_norm: Expected a floating point or complex tensor"
    p = _float(attrs.get("p", 2.0))
    if p == -np.inf and _numel(shape) == 0:
        raise _Inexact  # "cannot compute the -inf norm on an empty tensor"
    dim = _dims(attrs.get("dim"))
    return _meta(_reduced(shape, dim, _bool(attrs.get("keepdim", False))), rank, grad and rg)


@_rule("cumsum")
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
