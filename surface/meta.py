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

from collections.abc import Callable, Iterable, Mapping, Sequence
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
    if type(shape) is not tuple or (rg is not True and rg is not False):
        raise _Inexact
    return shape, rank, rg


# The rank a Python scalar promotes as (a wrapped number); complex and numpy scalars: no rule.
_SCALAR_RANK = {bool: _BOOL, int: _INT64, float: _DEFAULT_FLOAT}
# Python ints the engine's integral ops take whatever the compute dtype (numpy refuses an int
# out of its range: `int32 tensor + 2 ** 40`).
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


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
    """(broadcast shape, promoted rank, whether a tensor requires grad, whether there is a
    tensor) over elementwise inputs: tensors, Python scalars and None (skipped). The shape is
    None when there is no tensor. The hot path of every recorded op: `_tensor` inlined."""
    dim = zero = wrapped = -1
    shape: tuple[int, ...] | None = None
    rg = big = False
    for a in args:
        if a is None:
            continue
        r = _SCALAR_RANK.get(type(a))
        if r is not None:
            if r > wrapped:
                wrapped = r
            if r == _INT64 and not _INT32_MIN <= a <= _INT32_MAX:
                big = True
            continue
        try:
            s, r, g = a.shape, _RANK[a.dtype], a.requires_grad
        except (AttributeError, KeyError, TypeError):
            raise _Inexact from None
        if type(s) is not tuple or (g is not True and g is not False):
            raise _Inexact
        if s:
            if r > dim:
                dim = r
        elif r > zero:
            zero = r
        if shape is None:
            shape = s
        elif shape != s:
            shape = _broadcast(shape, s)
        if g:
            rg = True
    if dim >= _FLOAT or (zero < 0 and wrapped < 0):
        rank = dim  # the common case: a floating tensor with dims decides alone
    else:
        rank = _combine(dim, _combine(zero, wrapped))
    if big and rank < _FLOAT:
        raise _Inexact  # numpy refuses a Python int outside the integral compute dtype
    return shape, rank, rg, shape is not None


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
    if type(v) in (bool, float) or (type(v) is int and _INT32_MIN <= v <= _INT32_MAX):
        return v
    raise _Inexact  # a large int scalar: the engine's integral ops may refuse it


def _ints(v: Any) -> tuple[int, ...]:
    if type(v) is tuple and all(type(i) is int for i in v):
        return v  # type: ignore[no-any-return]
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
    if type(dim) is int:
        return (_wrap(dim, ndim),)
    out = tuple([_wrap(d, ndim) for d in dim])  # type: ignore[union-attr]
    if len(out) > 1 and len(set(out)) != len(out):
        raise _Inexact  # "dim 0 appears multiple times in the list of dims"
    return out


def _reduced(shape: tuple[int, ...], dim: int | tuple[int, ...] | None,
             keepdim: bool) -> tuple[int, ...]:
    """A reduction's result shape; dim None or () reduces every dim."""
    axes = _axes(dim, len(shape))
    if not axes:
        return (1,) * len(shape) if keepdim else ()
    if not shape:
        return ()
    if len(axes) == 1:
        a = axes[0]
        return (*shape[:a], 1, *shape[a + 1:]) if keepdim else shape[:a] + shape[a + 1:]
    if keepdim:
        return tuple([1 if i in axes else s for i, s in enumerate(shape)])
    return tuple([s for i, s in enumerate(shape) if i not in axes])


def _numel(shape: Iterable[int]) -> int:
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
    _elementwise(_name, 2, _PROMOTE)
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
    if not any_tensor:
        raise _Inexact
    y = inputs[1]
    if type(y) is int and y < 0 and rank < _FLOAT:
        raise _Inexact  # "Integers to negative integer powers are not allowed."
    assert shape is not None
    return _meta(shape, rank, grad and rg)


# --- elementwise: unary --------------------------------------------------------------------------

# Computed in the input's dtype; which input dtypes numpy's forward takes.
for _name in ("abs", "clone", "square", "floor", "ceil", "trunc", "relu"):
    _elementwise(_name, 1, _PROMOTE)
for _name in ("neg", "sign", "frac", "sgn"):
    _elementwise(_name, 1, _PROMOTE, accepts=_not_bool)
_elementwise("round", 1, _PROMOTE, attrs={"decimals": _int})
_round = RULES["round"]


def _round_bool(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    out = _round(inputs, attrs, grad)
    if out[0].dtype == "bool" and attrs.get("decimals", 0):
        raise _Inexact  # numpy scales by 10 ** decimals: no bool result
    return out


RULES["round"] = _round_bool
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


# --- shape ops -----------------------------------------------------------------------------------

def _shaped(fn: Callable[[tuple[int, ...], Mapping[str, Any]], tuple[int, ...]],
            names: tuple[str, ...], *, required: tuple[str, ...] = ()) -> Rule:
    """A rule for a one-input op that keeps the dtype and computes the shape with
    `fn(shape, attrs)` (attributes `names`, of which `required` must be given)."""
    known = frozenset(names)

    def rule(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
        shape, rank, rg = _one(inputs, attrs, known)
        for k in required:
            if attrs.get(k) is None:
                raise _Inexact
        return _meta(fn(shape, attrs), rank, grad and rg)

    return rule


def _reshape_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    want = _ints(attrs["shape"])
    numel = _numel(shape)
    for d in want:
        if d < 0 and (d != -1 or want.count(-1) > 1):
            raise _Inexact  # "invalid shape dimension", "only one dimension can be inferred"
    if -1 not in want:
        if _numel(want) != numel:
            raise _Inexact
        return want
    known = -_numel(want)
    if known == 0 or numel % known:
        raise _Inexact
    return tuple(numel // known if d == -1 else d for d in want)


def _expand_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    size = _ints(attrs["size"])
    lead = len(size) - len(shape)
    if lead < 0:
        raise _Inexact
    out = []
    for i, s in enumerate(size):
        have = shape[i - lead] if i >= lead else None
        if s == -1:
            if have is None:
                raise _Inexact
            out.append(have)
        elif (have is not None and have != 1 and have != s) or s < 0:
            raise _Inexact
        else:
            out.append(s)
    return tuple(out)


def _flatten_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    start = _wrap(_int(attrs.get("start_dim", 0)), len(shape))
    end = _wrap(_int(attrs.get("end_dim", -1)), len(shape))
    if not shape:
        return (1,)
    if start > end:
        raise _Inexact
    return (*shape[:start], _numel(shape[start:end + 1]), *shape[end + 1:])


def _squeeze_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    dim = _dims(attrs.get("dim"))
    if dim is None:
        return tuple(s for s in shape if s != 1)
    dims = (dim,) if type(dim) is int else dim
    axes = tuple(_wrap(d, len(shape)) for d in dims)  # type: ignore[union-attr]
    if len(set(axes)) != len(axes):
        raise _Inexact
    return tuple(s for i, s in enumerate(shape) if not (i in axes and s == 1))


def _unsqueeze_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    axis = _wrap(_int(attrs["dim"]), len(shape) + 1)
    return (*shape[:axis], 1, *shape[axis:])


def _permute_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    dims = _ints(attrs["dims"])
    if len(dims) != len(shape):
        raise _Inexact
    axes = tuple(_wrap(d, len(shape)) for d in dims)
    if len(set(axes)) != len(axes):
        raise _Inexact
    return tuple(shape[a] for a in axes)


def _transpose_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    a, b = _int(attrs["dim0"]), _int(attrs["dim1"])
    if not shape:
        return ()  # a 0-dim input as it is, whatever the dims
    a, b = _wrap(a, len(shape)), _wrap(b, len(shape))
    out = list(shape)
    out[a], out[b] = out[b], out[a]
    return tuple(out)


def _t_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    if len(shape) > 2:
        raise _Inexact  # "t() expects a tensor with <= 2 dimensions"
    return shape[::-1]


def _flip_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    dims = _dims(attrs["dims"])
    if shape:  # a 0-dim input is copied whatever dims says
        _axes(dims, len(shape))
    return shape


def _repeat_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    repeats = _ints(attrs["repeats"])
    if len(repeats) < len(shape):
        raise _Inexact
    padded = (1,) * (len(repeats) - len(shape)) + shape
    out = tuple(r * s for r, s in zip(repeats, padded))
    if any(d < 0 for d in out):
        raise _Inexact
    return out


RULES["reshape"] = _shaped(_reshape_shape, ("shape",), required=("shape",))
RULES["expand"] = _shaped(_expand_shape, ("size",), required=("size",))
RULES["flatten"] = _shaped(_flatten_shape, ("start_dim", "end_dim"))
RULES["squeeze"] = _shaped(_squeeze_shape, ("dim",))
RULES["unsqueeze"] = _shaped(_unsqueeze_shape, ("dim",), required=("dim",))
RULES["permute"] = _shaped(_permute_shape, ("dims",), required=("dims",))
RULES["transpose"] = _shaped(_transpose_shape, ("dim0", "dim1"), required=("dim0", "dim1"))
RULES["t"] = _shaped(_t_shape, ())
RULES["flip"] = _shaped(_flip_shape, ("dims",), required=("dims",))
RULES["repeat"] = _shaped(_repeat_shape, ("repeats",), required=("repeats",))


def _tensor_list(inputs: Sequence[Any], attrs: Mapping[str, Any]
                 ) -> tuple[list[tuple[tuple[int, ...], int, bool]], int, int]:
    """cat/stack: (the tensors, promoted rank, dim)."""
    if len(inputs) != 1 or not isinstance(inputs[0], (list, tuple)) or not inputs[0]:
        raise _Inexact
    _known(attrs, frozenset(("dim",)))
    tensors = [_tensor(t) for t in inputs[0]]
    rank = max(r for _, r, _ in tensors)
    return tensors, rank, _int(attrs.get("dim", 0))


@_rule("cat")
def _cat(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    tensors, rank, dim = _tensor_list(inputs, attrs)
    rg = any(g for _, _, g in tensors)
    if any(not s for s, _, _ in tensors):
        raise _Inexact  # "zero-dimensional tensor ... cannot be concatenated"
    kept = [s for s, _, _ in tensors if s != (0,)]  # torch skips 1-D empty tensors
    if not kept:
        _wrap(dim, 1)
        return _meta((0,), rank, grad and rg)
    first = kept[0]
    axis = _wrap(dim, len(first))
    total = 0
    for s in kept:
        if len(s) != len(first) or any(i != axis and a != b
                                       for i, (a, b) in enumerate(zip(first, s))):
            raise _Inexact
        total += s[axis]
    return _meta((*first[:axis], total, *first[axis + 1:]), rank, grad and rg)


@_rule("stack")
def _stack(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    tensors, rank, dim = _tensor_list(inputs, attrs)
    first = tensors[0][0]
    if any(s != first for s, _, _ in tensors):
        raise _Inexact
    axis = _wrap(dim, len(first) + 1)
    rg = any(g for _, _, g in tensors)
    return _meta((*first[:axis], len(tensors), *first[axis:]), rank, grad and rg)


def _pieces(shape: tuple[int, ...], axis: int, sizes: Sequence[int], rank: int,
            rg: bool) -> list[Meta]:
    name = DTYPE_NAMES[rank]
    rg = rg and rank >= _FLOAT
    return [Meta((*shape[:axis], n, *shape[axis + 1:]), name, rg) for n in sizes]


@_rule("split")
def _split(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("split_size", "dim")))
    if attrs.get("split_size") is None or not shape:
        raise _Inexact
    size = _int(attrs["split_size"])
    axis = _wrap(_int(attrs.get("dim", 0)), len(shape))
    length = shape[axis]
    if size < 0 or (size == 0 and length):
        raise _Inexact
    sizes = [min(size, length - s) for s in range(0, length, size)] if size else []
    return _pieces(shape, axis, sizes or [0], rank, grad and rg)


@_rule("split_with_sizes")
def _split_with_sizes(inputs: Sequence[Any], attrs: Mapping[str, Any],
                      grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("split_sizes", "dim")))
    if attrs.get("split_sizes") is None or not shape:
        raise _Inexact
    sizes = _ints(attrs["split_sizes"])
    axis = _wrap(_int(attrs.get("dim", 0)), len(shape))
    if sum(sizes) != shape[axis] or any(s < 0 for s in sizes):
        raise _Inexact
    return _pieces(shape, axis, sizes, rank, grad and rg)


@_rule("unbind")
def _unbind(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("dim",)))
    if not shape:
        raise _Inexact
    axis = _wrap(_int(attrs.get("dim", 0)), len(shape))
    out = Meta(shape[:axis] + shape[axis + 1:], DTYPE_NAMES[rank], grad and rg and rank >= _FLOAT)
    return [out] * shape[axis]


# --- matrix products -----------------------------------------------------------------------------

def _two(inputs: Sequence[Any], attrs: Mapping[str, Any]
         ) -> tuple[tuple[int, ...], tuple[int, ...], int, bool]:
    """Two tensors of one dtype (torch's mm family does not promote), no attributes."""
    if len(inputs) != 2 or attrs:
        raise _Inexact
    a, ra, ga = _tensor(inputs[0])
    b, rb, gb = _tensor(inputs[1])
    if ra != rb:
        raise _Inexact  # "expected m1 and m2 to have the same dtype"
    return a, b, ra, ga or gb


@_rule("matmul")
def _matmul(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    a, b, rank, rg = _two(inputs, attrs)
    if not a or not b:
        raise _Inexact
    if len(a) == 1 and len(b) == 1:
        shape: tuple[int, ...] = ()
        k1, k2 = a[0], b[0]
    elif len(b) == 1:
        shape, k1, k2 = a[:-1], a[-1], b[0]
    elif len(a) == 1:
        shape, k1, k2 = (*b[:-2], b[-1]), a[0], b[-2]
    elif len(a) == 2 and len(b) == 2:
        shape, k1, k2 = (a[0], b[1]), a[1], b[0]
    elif len(b) == 2:
        shape, k1, k2 = (*a[:-1], b[1]), a[-1], b[0]
    else:
        shape = (*_broadcast(a[:-2], b[:-2]), a[-2], b[-1])
        k1, k2 = a[-1], b[-2]
    if k1 != k2:
        raise _Inexact
    return _meta(shape, rank, grad and rg)


@_rule("mm")
def _mm(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    a, b, rank, rg = _two(inputs, attrs)
    if len(a) != 2 or len(b) != 2 or a[1] != b[0]:
        raise _Inexact
    return _meta((a[0], b[1]), rank, grad and rg)


@_rule("bmm")
def _bmm(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    a, b, rank, rg = _two(inputs, attrs)
    if len(a) != 3 or len(b) != 3 or a[0] != b[0] or a[2] != b[1]:
        raise _Inexact
    return _meta((a[0], a[1], b[2]), rank, grad and rg)


@_rule("dot")
def _dot(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    a, b, rank, rg = _two(inputs, attrs)
    if len(a) != 1 or len(b) != 1 or a[0] != b[0]:
        raise _Inexact
    return _meta((), rank, grad and rg)


@_rule("outer")
def _outer(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs:
        raise _Inexact
    a, ra, ga = _tensor(inputs[0])
    b, rb, gb = _tensor(inputs[1])
    if len(a) != 1 or len(b) != 1:
        raise _Inexact
    return _meta((a[0], b[0]), max(ra, rb), grad and (ga or gb))  # both 1-D: plain promotion


@_rule("addmm")
def _addmm(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3:
        raise _Inexact
    _known(attrs, frozenset(("beta", "alpha")))
    for k in ("beta", "alpha"):
        if k in attrs:
            _scalar(attrs[k])
    bias, rb, gb = _tensor(inputs[0])
    a, ra, ga = _tensor(inputs[1])
    b, rm, gm = _tensor(inputs[2])
    if not ra == rb == rm or len(a) != 2 or len(b) != 2 or a[1] != b[0]:
        raise _Inexact
    out = (a[0], b[1])
    if len(bias) > 2 or _broadcast(bias, out) != out:
        raise _Inexact  # the bias must expand to the product's shape
    return _meta(out, ra, grad and (ga or gb or gm))


# --- softmax, losses -----------------------------------------------------------------------------

_SOFTMAX_ATTRS = frozenset(("dim", "dtype"))


@_rule("softmax", "log_softmax")
def _softmax(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _SOFTMAX_ATTRS)
    if attrs.get("dim") is None:
        raise _Inexact  # required
    _wrap(_int(attrs["dim"]), len(shape))
    out = _dtype(attrs.get("dtype"))
    out = rank if out is None else out
    if out < _FLOAT:
        raise _Inexact  # "softmax_lastdim_kernel_impl" not implemented for 'Long'
    return _meta(shape, out, grad and rg)


def _reduction(attrs: Mapping[str, Any], names: frozenset[str]) -> str:
    _known(attrs, names)
    return _choice(attrs.get("reduction", "mean"), _REDUCTIONS)


_LOSS_ATTRS = frozenset(("reduction",))


@_rule("mse_loss", "l1_loss")
def _pointwise_loss(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2:
        raise _Inexact
    reduction = _reduction(attrs, _LOSS_ATTRS)
    _tensor(inputs[0])
    _tensor(inputs[1])
    shape, rank, rg, _ = _walk(inputs)
    assert shape is not None
    out = rank if rank >= _FLOAT else _DEFAULT_FLOAT
    return _meta(shape if reduction == "none" else (), out, grad and rg)


def _binary_cross_entropy(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool,
                          n_inputs: int) -> list[Meta]:
    """binary_cross_entropy (input, target, weight?) and with_logits (..., pos_weight?): input
    and target of one shape; the weights take no gradient (the engine refuses them requiring
    one in grad mode) and broadcast into an unreduced loss."""
    if len(inputs) != n_inputs:
        raise _Inexact
    reduction = _reduction(attrs, _LOSS_ATTRS)
    x, _, gx = _tensor(inputs[0])
    t, _, gt = _tensor(inputs[1])
    if x != t:
        raise _Inexact  # "Using a target size ... that is different to the input size"
    for w in inputs[2:]:
        if w is not None and _tensor(w)[2] and grad:
            raise _Inexact  # "not differentiable with respect to argument 'weight'"
    shape, rank, _, _ = _walk(inputs)
    assert shape is not None
    out = rank if rank >= _FLOAT else _DEFAULT_FLOAT
    return _meta(shape if reduction == "none" else (), out, grad and (gx or gt))


RULES["binary_cross_entropy"] = (
    lambda inputs, attrs, grad: _binary_cross_entropy(inputs, attrs, grad, 3))
RULES["binary_cross_entropy_with_logits"] = (
    lambda inputs, attrs, grad: _binary_cross_entropy(inputs, attrs, grad, 4))

_NLL_ATTRS = frozenset(("ignore_index", "reduction"))


def _nll(x: tuple[int, ...], xr: int, t: tuple[int, ...], tr: int, w: Any, grad: bool,
         reduction: str) -> tuple[int, ...]:
    """nll_loss's checks on (input, target, weight) as the engine makes them; the result's
    shape."""
    if xr < _FLOAT or not x or tr != _INT64:
        raise _Inexact
    if len(x) <= 2:
        if len(t) > 1 or (len(x) == 2 and t != (x[0],)) or (len(x) == 1 and t not in ((), (1,))):
            raise _Inexact
    elif not t or t[0] != x[0] or t[1:] != x[2:]:
        raise _Inexact
    if w is not None:
        ws, _, wg = _tensor(w)
        if wg and grad:
            raise _Inexact  # "not differentiable with respect to argument 'weight'"
        if ws != (x[1] if len(x) >= 2 else x[0],):
            raise _Inexact
    return t if reduction == "none" else ()


@_rule("nll_loss")
def _nll_loss(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3:
        raise _Inexact
    reduction = _reduction(attrs, _NLL_ATTRS)
    if "ignore_index" in attrs:
        _int(attrs["ignore_index"])
    x, xr, gx = _tensor(inputs[0])
    t, tr, _ = _tensor(inputs[1])
    return _meta(_nll(x, xr, t, tr, inputs[2], grad, reduction), xr, grad and gx)


@_rule("cross_entropy")
def _cross_entropy(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3:
        raise _Inexact
    reduction = _reduction(attrs, _NLL_ATTRS | {"label_smoothing"})
    if "ignore_index" in attrs:
        _int(attrs["ignore_index"])
    if not 0.0 <= _float(attrs.get("label_smoothing", 0.0)) <= 1.0:
        raise _Inexact
    x, xr, gx = _tensor(inputs[0])
    t, tr, gt = _tensor(inputs[1])
    if xr < _FLOAT or not x:
        raise _Inexact
    if tr >= _FLOAT and t == x:  # class probabilities
        c = 0 if len(x) == 1 else 1
        if inputs[2] is not None and _tensor(inputs[2])[0] != (x[c],):
            raise _Inexact
        shape = x[:c] + x[c + 1:] if reduction == "none" else ()
        return _meta(shape, xr, grad and (gx or gt))
    return _meta(_nll(x, xr, t, tr, inputs[2], grad, reduction), xr, grad and gx)


# --- results shaped like the input, without gradient ---------------------------------------------

def _like(floating_only: bool, extra: tuple[str, ...] = ()) -> Rule:
    known = frozenset(("dtype", *extra))

    def rule(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
        shape, rank, _ = _one(inputs, attrs, known)
        for k in extra:
            _scalar(attrs.get(k))  # required
        out = _dtype(attrs.get("dtype"))
        out = rank if out is None else out
        if floating_only and out < _FLOAT:
            raise _Inexact
        return [Meta(shape, DTYPE_NAMES[out], False)]

    return rule


RULES["zeros_like"] = _like(False)
RULES["ones_like"] = _like(False)
RULES["full_like"] = _like(False, ("fill_value",))
RULES["rand_like"] = _like(True)
RULES["randn_like"] = _like(True)


@_rule("bernoulli")
def _bernoulli(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs:
        raise _Inexact
    shape, rank, rg = _tensor(inputs[0])
    p = inputs[1]
    if p is None:
        if rank < _FLOAT:
            raise _Inexact
    elif type(p) in (int, float):
        if not 0 <= p <= 1:
            raise _Inexact  # "bernoulli_ expects p to be in [0, 1]"
    else:
        _, p_rank, p_rg = _tensor(p)
        if p_rank < _FLOAT:
            raise _Inexact
        rg = rg or p_rg
    return _meta(shape, rank, grad and rg)


# --- indexing by attributes and index tensors ----------------------------------------------------

@_rule("select")
def _select(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("dim", "index")))
    if not shape or attrs.get("dim") is None or attrs.get("index") is None:
        raise _Inexact  # "select() cannot be applied to a 0-dim tensor", or required
    axis = _wrap(_int(attrs["dim"]), len(shape))
    if not -shape[axis] <= _int(attrs["index"]) < shape[axis]:
        raise _Inexact  # "select(): index 5 out of range for tensor of size ..."
    return _meta(shape[:axis] + shape[axis + 1:], rank, grad and rg)


@_rule("slice")
def _slice(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("dim", "start", "end", "step")))
    step = _int(attrs.get("step", 1))
    if not shape or step <= 0:
        raise _Inexact  # a 0-dim input, "slice step must be positive"
    axis = _wrap(_int(attrs.get("dim", 0)), len(shape))
    start, end = _opt_int(attrs.get("start")), _opt_int(attrs.get("end"))
    n = len(range(*slice(start, end, step).indices(shape[axis])))
    return _meta((*shape[:axis], n, *shape[axis + 1:]), rank, grad and rg)


@_rule("tril", "triu")
def _triangle(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("diagonal",)))
    _int(attrs.get("diagonal", 0))
    if len(shape) < 2:
        raise _Inexact  # "input tensor must have at least 2 dimensions"
    return _meta(shape, rank, grad and rg)


@_rule("masked_fill")
def _masked_fill(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3 or attrs:
        raise _Inexact
    shape, rank, rg = _tensor(inputs[0])
    mask, mask_rank, _ = _tensor(inputs[1])
    value = inputs[2]
    if mask_rank != _BOOL:
        raise _Inexact  # "masked_fill_ only supports boolean masks"
    if _SCALAR_RANK.get(type(value)) is None:
        v_shape, _, v_rg = _tensor(value)
        if v_shape:
            raise _Inexact  # "only supports a 0-dimensional value tensor"
        rg = rg or v_rg
    elif type(value) is int and not _INT32_MIN <= value <= _INT32_MAX:
        raise _Inexact
    return _meta(_broadcast(mask, shape), rank, grad and rg)


def _index_tensor(a: Any) -> tuple[int, ...]:
    """An index input's shape: an int32 or int64 tensor (values are the server's to check)."""
    shape, rank, _ = _tensor(a)
    if rank not in (_INT32, _INT64):
        raise _Inexact  # "Expected dtype int32 or int64 for index"
    return shape


@_rule("index_select")
def _index_select(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs.get("dim") is None:
        raise _Inexact
    _known(attrs, frozenset(("dim",)))
    shape, rank, rg = _tensor(inputs[0])
    index = _index_tensor(inputs[1])
    if len(index) > 1:
        raise _Inexact  # "Index is supposed to be a vector"
    axis = _wrap(_int(attrs["dim"]), len(shape))
    out = index if not shape else (*shape[:axis], _numel(index), *shape[axis + 1:])
    return _meta(out, rank, grad and rg)


@_rule("gather")
def _gather(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs.get("dim") is None:
        raise _Inexact
    _known(attrs, frozenset(("dim",)))
    shape, rank, rg = _tensor(inputs[0])
    index = _index_tensor(inputs[1])
    if not shape or len(index) != len(shape):
        raise _Inexact  # a 0-dim input: no rule; "Index tensor must have the same number of ..."
    axis = _wrap(_int(attrs["dim"]), len(shape))
    if any(d != axis and i > s for d, (i, s) in enumerate(zip(index, shape))):
        raise _Inexact  # "Size does not match at dimension ..."
    return _meta(index, rank, grad and rg)
