"""The shared part of `gradserve.surface.meta`'s rules: `Meta`, the rule table `RULES`, and the
helpers the rule modules (`meta_math`, `meta_shape`, `meta_nn`) are written with: reading a
tensor input (`_tensor`), broadcasting and torch's promotion (`_walk`), attribute converters
that raise `_Inexact` for a value the engine's validator would refuse or the rule does not
model, and dim wrapping. The underscored names are shared by those modules only; the public
entry point is `meta.infer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .layout import broadcast_shapes
from .memory_format import contiguous_format, preserve_format


class Meta(NamedTuple):
    """One op result's description: shape, dtype name ("float32"), requires_grad, and
    `contiguous`: True when the tensor is known to be contiguous (`meta_layout`), None when
    its layout is unknown (never False)."""

    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    contiguous: bool | None = None


# Dtype names, as ranks (indices): a rank >= FLOAT is floating, 0 is bool, the rest integral.
DTYPE_NAMES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float32", "float64")
_RANK = {name: i for i, name in enumerate(DTYPE_NAMES)}
_BOOL, _UINT8, _INT8, _INT16, _INT32, _INT64, _FLOAT32, _FLOAT64 = range(8)


def _promote_ranks(a: int, b: int) -> int:
    """torch's promoteTypes on ranks: the later one, but for uint8 with int8 (int16)."""
    if {a, b} == {_UINT8, _INT8}:
        return _INT16
    return max(a, b)


def _table_entry(a: int, b: int) -> int:
    return b if a < 0 else a if b < 0 else _promote_ranks(a, b)


# _PROMOTE_TABLE[a][b]: promoteTypes of ranks a and b, where -1 (an empty group; the last row and
# column, read as index -1) promotes to the other.
_PROMOTE_TABLE = tuple(tuple(_table_entry(a, b) for b in (*range(len(DTYPE_NAMES)), -1))
                       for a in (*range(len(DTYPE_NAMES)), -1))
_FLOAT = _FLOAT32
_DEFAULT_FLOAT = _FLOAT32  # the dtype of a Python float, and of int / int, on the server

Rule = Callable[[Sequence[Any], Mapping[str, Any], bool], "list[Meta]"]
RULES: dict[str, Rule] = {}


class _Inexact(Exception):
    """Raised inside a rule that cannot answer exactly; `infer` returns None."""


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


# The rank a Python scalar promotes as (a wrapped number); complex: no rule. A numpy scalar is
# read as torch reads it (`gradserve.surface.numbers`), by `meta.infer` before the rules.
_SCALAR_RANK = {bool: _BOOL, int: _INT64, float: _DEFAULT_FLOAT}
# Python ints every integral dtype holds; one outside is checked against the result's range
# (`_walk`): the engine wraps it for some ops and refuses it for others (`uint8 tensor + 300`,
# `clamp(uint8 tensor, 0, 300)`), which the rules do not model.
_INT8_MIN, _INT8_MAX = -128, 127
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1  # (scalar attributes: see `_scalar`)
_INT_RANGES = {_UINT8: (0, 255), _INT8: (-128, 127), _INT16: (-(2**15), 2**15 - 1),
               _INT32: (-(2**31), 2**31 - 1), _INT64: (-(2**63), 2**63 - 1)}


def _combine(higher: int, lower: int) -> int:
    """torch's combine_categories on ranks (-1: the group is empty): a lower-priority group
    counts only when its category (bool < integral < floating) is higher."""
    if higher < 0:
        return lower
    if lower < 0 or higher >= _FLOAT:
        return higher
    if higher == _BOOL or lower >= _FLOAT:
        return _PROMOTE_TABLE[higher][lower]
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
            if r == _INT64 and not _INT8_MIN <= a <= _INT8_MAX:
                big = True
            continue
        try:
            s, r, g = a.shape, _RANK[a.dtype], a.requires_grad
        except (AttributeError, KeyError, TypeError):
            raise _Inexact from None
        if type(s) is not tuple or (g is not True and g is not False):
            raise _Inexact
        if s:
            dim = _PROMOTE_TABLE[dim][r]
        else:
            zero = _PROMOTE_TABLE[zero][r]
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
        lo, hi = _INT_RANGES.get(rank, (0, 1))
        if any(type(a) is int and not lo <= a <= hi for a in args):
            raise _Inexact  # outside the integral compute dtype: see _INT_RANGES
    return shape, rank, rg, shape is not None


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """numpy's (and torch's) broadcast of two shapes; `_Inexact` when they do not broadcast."""
    if a == b:
        return a
    try:
        return broadcast_shapes(a, b)
    except ValueError:
        raise _Inexact from None


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


def _plain_layout(v: Any) -> None:
    """A `memory_format` attribute the rules know: preserve or contiguous, which every rank
    takes (a channels-last format refuses all but one rank: the server judges it)."""
    if v not in ("preserve", "contiguous", None) and v is not preserve_format and (
            v is not contiguous_format):
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


def _one(inputs: Sequence[Any], attrs: Mapping[str, Any],
         names: frozenset[str]) -> tuple[tuple[int, ...], int, bool]:
    """The one tensor input of a unary op, its attributes' names checked."""
    if len(inputs) != 1:
        raise _Inexact
    if attrs:
        _known(attrs, names)
    return _tensor(inputs[0])
