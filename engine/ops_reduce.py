"""Reductions: sum, mean, ... with torch's `dim` / `keepdim` handling."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import messages
from gradserve.surface.messages import TYPE_WORDS

from . import cascade, dtypes, errors, limits, vector_norm
from .registry import (
    BOOL,
    FLOAT,
    INT64,
    AttrSpec,
    defop,
    names_backward,
    shapes_only,
    temporaries,
)
from .tensor import Tensor


def norm_dims(dim: int | Sequence[int] | None, ndim: int) -> tuple[int, ...] | None:
    """`dim` as a sorted tuple of non-negative axes (None: all), with torch's range errors."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    out = []
    for d in dims:
        if not lo <= d <= hi:
            raise errors.OutOfRangeIndexError(messages.dim_out_of_range(d, lo, hi))
        out.append(d % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise errors.InvalidArgumentError(
            f"dim {out[0]} appears multiple times in the list of dims")
    return tuple(sorted(out))


def kept_shape(shape: Sequence[int], dim: Any) -> tuple[int, ...]:
    """`shape` with the reduced dims set to 1 (keepdim=True's result shape)."""
    axes = norm_dims(dim, len(shape))
    if axes is None or axes == ():
        return tuple(1 for _ in shape)
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def reduced_shape(shape: Sequence[int], dim: Any, keepdim: bool) -> tuple[int, ...]:
    """The result shape of a reduction over `dim` (None or (): all dims), for the bounds. A dim
    out of range gives `shape` itself (no reduction is larger): the forward raises torch's error."""
    try:
        axes = norm_dims(dim, len(shape))
    except errors.EngineError:
        return tuple(shape)
    if not axes:
        axes = tuple(range(len(shape)))
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


@shapes_only
def _reduce_shape(x: Any, dim: Any = None, keepdim: bool = False, **attrs: Any) -> tuple[int, ...]:
    return reduced_shape(x.shape, dim, keepdim)


def _prod_shape(x: Any, dim: Any = None, keepdim: bool = False, **attrs: Any) -> tuple[int, ...]:
    return reduced_shape(x.shape, dim, keepdim and dim is not None)


def _arg_shape(x: Any, dim: Any = None, keepdim: bool = False) -> tuple[int, ...]:
    if dim is None:
        return (1,) * x.ndim if keepdim else ()
    return reduced_shape(x.shape, dim, keepdim)


def unreduce(ns: Any, g: Any, shape: Sequence[int], dim: Any, keepdim: bool) -> Any:
    """Broadcast a reduction's gradient back over `shape` (the VJP of sum), as torch's
    sum_backward: each reduced dim unsqueezed in increasing order, then expanded (so a double
    backward names torch's nodes: SqueezeBackward1, not a view)."""
    axes = norm_dims(dim, len(shape))
    if not keepdim and shape and axes:
        for d in axes:
            g = ns.unsqueeze(g, dim=d)
    elif type(g) is np.ndarray and g.size == 1:
        return _expand_one(g, tuple(shape))
    return ns.expand(g, size=tuple(shape))


def _expand_one(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`NP.expand(g, size=shape)` of a one-element array with at most len(shape) dims (a full
    reduction's gradient), without the shape checks it cannot fail: the same view, laid out
    as `np.broadcast_to` lays out a one-element array (every stride 0), read-only, or `g`
    reshaped when nothing is repeated."""
    if g.flags.writeable and math.prod(shape) == 1:
        return g.reshape(shape)
    out = np.ndarray(shape, g.dtype, g, 0, (0,) * len(shape))
    out.flags.writeable = False
    return out


def _axes(x: Any, dim: Any) -> Any:
    axes = norm_dims(dim, x.ndim)
    # torch: dim=() reduces everything; dim 0 (or -1) of a 0-dim tensor is the tensor itself.
    return None if axes == () or x.ndim == 0 else axes


float_sum = cascade.float_sum  # torch's float sum, bit for bit (engine/cascade.py)


def _sum(x: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Any:
    if dtype is not None:
        x = x.astype(dtype.np)
    elif x.dtype.kind in "biu":
        x = x.astype(np.int64)
    return float_sum(x, _axes(x, dim), keepdim)


def _sum_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    if attrs.get("dtype") is not None:
        return None, attrs["dtype"]
    d = args[0].dtype
    return None, d if d.is_floating_point else dtypes.int64


def _by_dim(no_dim: str, with_dim: str):  # noqa: ANN202
    return names_backward(no_dim, with_dim)(
        lambda args, attrs: no_dim if attrs.get("dim") is None else with_dim)


REDUCE_ATTRS = (AttrSpec("dim", "dims", None), AttrSpec("keepdim", "bool", False))

# An integral input (or one given another dtype) is first copied into the accumulation dtype.
# The float sum (engine/cascade.py) may copy a strided input into C order once, holds its
# chunk sums (at most 1/16 of the input, so under a byte per element) and two result-sized
# arrays.
_SUM_CAST = temporaries(_reduce_shape, results=2, inputs=2, input_bytes=1)
_SUM_PLAIN = temporaries(_reduce_shape, results=2, inputs=1, input_bytes=1)


def _sum_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    cast = attrs.get("dtype") is not None or not args[0].dtype.is_floating_point
    return (_SUM_CAST if cast else _SUM_PLAIN)(args, attrs, out_dtype)


defop("sum", _sum,
      lambda ns, g, out, x, dim, keepdim, dtype: unreduce(ns, g, x.shape, dim, keepdim),
      saves="input.shape",
      attrs=REDUCE_ATTRS + (AttrSpec("dtype", "dtype", None),), dtype=_sum_dtype,
      backward=_by_dim("SumBackward0", "SumBackward1"), doc="sum over dim (all if None)",
      out_bound=_sum_bound)


def _mean_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    d = attrs.get("dtype") or args[0].dtype
    if not d.is_floating_point:
        raise errors.InvalidArgumentError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point "
            f"or complex dtype. Got: {_TYPE_WORD[d.name]}")
    return d, d


_TYPE_WORD = TYPE_WORDS


def _count(shape: Sequence[int], dim: Any) -> int:
    axes = norm_dims(dim, len(shape))
    n = 1
    for i, s in enumerate(shape):
        if axes is None or axes == () or i in axes:
            n *= s
    return n


def float_mean(x: Any, axes: Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """torch's CPU mean of a float array: its sum (`float_sum`), divided by the count."""
    count = x.size if axes is None else math.prod(x.shape[a] for a in axes)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty: 0 / 0 is torch's nan
        return float_sum(x, axes, keepdims) / x.dtype.type(count)


defop("mean", lambda x, dim=None, keepdim=False, dtype=None: float_mean(
          x, _axes(x, dim), keepdim),
      lambda ns, g, out, x, dim, keepdim, dtype: unreduce(
          ns, g, x.shape, dim, keepdim) / _count(x.shape, dim),
      saves="input.shape",
      attrs=REDUCE_ATTRS + (AttrSpec("dtype", "dtype", None),), dtype=_mean_dtype,
      backward=_by_dim("MeanBackward0", "MeanBackward1"), doc="mean over dim (all if None)",
      out_bound=_SUM_PLAIN)


def _one_dim(x: Any, dim: int) -> int:
    """A single `dim` as a non-negative axis (0 for a 0-dim tensor), with torch's range error."""
    axes = norm_dims(dim, x.ndim)
    return axes[0] if axes else 0


def _kept(ns: Any, t: Any, shape: Sequence[int], dim: Any, keepdim: bool) -> Any:
    """A reduction's result (or gradient) with the reduced dims back as size 1."""
    return t if keepdim else ns.reshape(t, shape=kept_shape(shape, dim))


def _int_to_int64(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """sum/prod/cumsum: integral and bool inputs accumulate in int64, unless `dtype` is given."""
    if attrs.get("dtype") is not None:
        return attrs["dtype"], attrs["dtype"]
    d = args[0].dtype
    return (None, d) if d.is_floating_point else (dtypes.int64, dtypes.int64)


def _floating_only(what: str) -> Any:
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
        d = args[0].dtype
        if not d.is_floating_point:
            raise errors.InvalidArgumentError(what.format(_TYPE_WORD[d.name]))
        return None, d
    return rule


def _nonempty(name: str, x: Any, dim: Any) -> None:
    """torch refuses max/min/amax/argmax over an empty reduction (there is no identity)."""
    if x.size:
        return
    if dim is None:
        raise errors.OutOfRangeIndexError(
            f"{name}(): Expected reduction dim to be specified for input.numel() == 0.")
    axes = norm_dims(dim, x.ndim) or tuple(range(x.ndim))
    for a in axes:
        if x.ndim and x.shape[a] == 0:
            raise errors.OutOfRangeIndexError(
                f"{name}(): Expected reduction dim {a} to have non-zero size.")


# --- prod ----------------------------------------------------------------------------------------

def _prod(x: Any, dim: int | None = None, keepdim: bool = False, dtype: Any = None) -> Any:
    axis = None if dim is None or x.ndim == 0 else _one_dim(x, dim)
    return np.prod(x, axis=axis, keepdims=keepdim and dim is not None)


def _prod_vjp(ns: Any, g: Any, out: Any, x: Any, dim: Any, keepdim: bool, dtype: Any) -> Any:
    # torch's prod_backward: out / x where no factor is zero. Where exactly one is, that element
    # gets the product of the others, and the rest keep out / x (zero, but its derivative in the
    # zero factor is right, so second derivatives match). Two or more zeros: zero everywhere.
    keep = keepdim and dim is not None
    g = _kept(ns, g, x.shape, dim, keep)
    out = _kept(ns, out, x.shape, dim, keep)
    zero = x == 0
    zeros = ns.sum(zero, dim=dim, keepdim=True)
    safe = ns.where(zero, 1.0, x)
    others = ns.prod(safe, dim=dim, keepdim=True) if dim is not None else ns.prod(safe)
    rest = ns.where(zeros >= 2, 0.0, out / safe)
    return g * ns.where(ns.logical_and(zero, zeros == 1), others, rest)


defop("prod", _prod, _prod_vjp,
      saves="result input",
      attrs=(AttrSpec("dim", "optional_int", None), AttrSpec("keepdim", "bool", False),
             AttrSpec("dtype", "dtype", None)),
      dtype=_int_to_int64, backward=_by_dim("ProdBackward0", "ProdBackward1"),
      doc="product over dim (all if None)",
      out_shape=_prod_shape)

# --- max / min (no dim), amax / amin: ties share the gradient evenly -----------------------------


def _selected(ns: Any, x: Any, out: Any) -> Any:
    """Where x equals the reduction's (kept-shape) result; NaN results select the NaNs."""
    return ns.logical_or(x == out, ns.logical_and(x != x, out != out))


def _even_split(ns: Any, g: Any, out: Any, x: Any, dim: Any, keepdim: bool) -> Any:
    # torch's evenly_distribute_backward / scale_grad_by_count: ties share the gradient.
    g = _kept(ns, g, x.shape, dim, keepdim)
    mask = _selected(ns, x, _kept(ns, out, x.shape, dim, keepdim))
    count = ns.sum(mask, dim=dim, keepdim=True)
    return ns.where(mask, g / count, 0.0)


def _nonempty_all(name: str) -> Any:
    def check(x: Any) -> None:
        if not x.size:
            raise errors.InvalidArgumentError(
                f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                "Specify the reduction dim with the 'dim' argument.")
    return check


def _max_all(x: Any) -> Any:
    _nonempty_all("max")(x)
    return np.max(x)


def _min_all(x: Any) -> Any:
    _nonempty_all("min")(x)
    return np.min(x)


defop("max", _max_all, lambda ns, g, out, x: _even_split(ns, g, out, x, None, False),
      saves="result input",
      backward="MaxBackward1", doc="largest element (a 0-dim tensor); ties share the gradient",
      out_shape=lambda x: ())
defop("min", _min_all, lambda ns, g, out, x: _even_split(ns, g, out, x, None, False),
      saves="result input",
      backward="MinBackward1", doc="smallest element (a 0-dim tensor); ties share the gradient",
      out_shape=lambda x: ())


def _amax(x: Any, dim: Any = (), keepdim: bool = False) -> Any:
    _nonempty("amax", x, dim if dim != () else None)
    return np.max(x, axis=_axes(x, dim), keepdims=keepdim)


def _amin(x: Any, dim: Any = (), keepdim: bool = False) -> Any:
    _nonempty("amin", x, dim if dim != () else None)
    return np.min(x, axis=_axes(x, dim), keepdims=keepdim)


def _scale_by_count(ns: Any, g: Any, out: Any, x: Any, dim: Any, keepdim: bool) -> Any:
    # torch's scale_grad_by_count: mask * (g / mask.sum()), plain equality (a NaN result
    # selects nothing, and its gradient is NaN, as torch's).
    g = _kept(ns, g, x.shape, dim, keepdim)
    mask = x == _kept(ns, out, x.shape, dim, keepdim)
    return mask * (g / ns.sum(mask, dim=dim, keepdim=True))


AMAX_ATTRS = (AttrSpec("dim", "dims", ()), AttrSpec("keepdim", "bool", False))
defop("amax", _amax,
      lambda ns, g, out, x, dim, keepdim: _scale_by_count(ns, g, out, x, dim, keepdim),
      saves="result input",
      attrs=AMAX_ATTRS, doc="largest elements over dim (all if ()); ties share the gradient",
      out_shape=_reduce_shape)
defop("amin", _amin,
      lambda ns, g, out, x, dim, keepdim: _scale_by_count(ns, g, out, x, dim, keepdim),
      saves="result input",
      attrs=AMAX_ATTRS, doc="smallest elements over dim (all if ()); ties share the gradient",
      out_shape=_reduce_shape)

# --- max / min with dim: (values, indices); the gradient goes to the returned index ---------------


def _with_indices(name: str, arg: Any) -> Any:
    def forward(x: Any, dim: int, keepdim: bool = False) -> Any:
        axis = _one_dim(x, dim)
        _nonempty(name, x, dim)
        if x.ndim == 0:
            return x.copy(), np.zeros((), np.int64)
        idx = np.expand_dims(arg(x, axis=axis), axis)
        values = np.take_along_axis(x, idx, axis)
        if not keepdim:
            values, idx = values.squeeze(axis), idx.squeeze(axis)
        return values, idx.astype(np.int64)
    return forward


def _first_selected(ns: Any, g: Any, out: Any, x: Any, dim: int, keepdim: bool) -> Any:
    # The first element equal to the result along dim (what argmax/argmin return, as torch).
    if x.ndim == 0:
        return g
    g = _kept(ns, g, x.shape, dim, keepdim)
    mask = _selected(ns, x, _kept(ns, out, x.shape, dim, keepdim))
    first = ns.logical_and(mask, ns.cumsum(mask, dim=dim) == 1)
    return ns.where(first, g, 0.0)


def _values_indices_bound(args: Sequence[Any], attrs: Mapping[str, Any],
                          out_dtype: Any) -> limits.Bound:
    """(values, int64 indices) over one dim; and scratch: the copy np.argmax makes of an input
    reduced along any dim but the last, and the index array `astype(np.int64)` copies."""
    x = args[0]
    shape = reduced_shape(x.shape, attrs["dim"], attrs["keepdim"])
    item = out_dtype.np.itemsize
    indices = limits.shape_bound(shape, 8)
    return limits.with_scratch(limits.combined(limits.shape_bound(shape, item), indices),
                               limits.numel(shape) * 8 + x.numel() * item)


VALUES_INDICES_ATTRS = (AttrSpec("dim", "int", required=True), AttrSpec("keepdim", "bool", False))
defop("max_dim", _with_indices("max", np.argmax), _first_selected,
      saves="result input",
      attrs=VALUES_INDICES_ATTRS, n_outputs=2, differentiable_outputs=(0,),
      backward="MaxBackward0", doc="(values, indices) of the largest elements along dim",
      out_bound=_values_indices_bound)
defop("min_dim", _with_indices("min", np.argmin), _first_selected,
      saves="result input",
      attrs=VALUES_INDICES_ATTRS, n_outputs=2, differentiable_outputs=(0,),
      backward="MinBackward0", doc="(values, indices) of the smallest elements along dim",
      out_bound=_values_indices_bound)


def _arg_reduce(name: str, arg: Any) -> Any:
    def forward(x: Any, dim: int | None = None, keepdim: bool = False) -> Any:
        if x.dtype == np.bool_:
            raise errors.InvalidArgumentError(f"{name}(): does not support bool input")
        _nonempty(name, x, dim)
        if dim is None:
            i = np.asarray(arg(x), dtype=np.int64)
            return i.reshape((1,) * x.ndim) if keepdim else i
        axis = _one_dim(x, dim)
        if x.ndim == 0:
            return np.zeros((), np.int64)
        return arg(x, axis=axis, keepdims=keepdim)
    return forward


# np.argmax copies an input reduced along any dim but the last (it moves that dim last).
_ARG_BOUND = temporaries(_arg_shape, inputs=1)
ARG_ATTRS = (AttrSpec("dim", "optional_int", None), AttrSpec("keepdim", "bool", False))
defop("argmax", _arg_reduce("argmax", np.argmax), None, attrs=ARG_ATTRS, dtype=INT64,
      doc="index of the largest element (of the flattened input if dim is None)",
      out_shape=_arg_shape, out_bound=_ARG_BOUND)
defop("argmin", _arg_reduce("argmin", np.argmin), None, attrs=ARG_ATTRS, dtype=INT64,
      doc="index of the smallest element (of the flattened input if dim is None)",
      out_shape=_arg_shape, out_bound=_ARG_BOUND)

# --- var / std -----------------------------------------------------------------------------------


def _correction(unbiased: bool | None, correction: float | None) -> float:
    if correction is not None:
        if unbiased is not None:
            raise errors.InvalidArgumentError(
                "var(): cannot specify both unbiased and correction")  # torch: a TypeError
        return correction
    return 0 if unbiased is False else 1


# torch's CPU var/std of float32 and float64 (aten/src/ATen/native/ReduceOps.cpp), in double:
# - one result (`std_var_all_cpu`): the mean is torch's own mean of the input, as a double; the
#   squared deviations from it are added in memory order, in one slice per intra-op thread
#   (at::parallel_reduce, GRAIN_SIZE), the slices' sums then added in order;
# - several (`std_var_kernel_impl`): Welford's update per result over its elements in order
#   (`WelfordOps<scalar_t, double>`: delta / n into the mean, delta * (x - new mean) into m2).
# var is that sum / max(0, n - correction), std its square root, rounded to the dtype last.
_WELFORD_MAX = cascade.GRAIN_SIZE  # past it torch splits a result over threads: numpy's order


_VAR_BLOCK = 4096  # elements converted to double at a time (bounds the scratch)


def _var_all64(x: np.ndarray, c: float) -> float:
    mean = float(float_mean(x))
    v = np.ravel(x, order="K")  # a view where x is dense in some order
    n = v.size
    threads = min(cascade.THREADS, -(-n // cascade.GRAIN_SIZE)) if n > cascade.GRAIN_SIZE else 1
    chunk = -(-n // threads) if n else 1
    total = 0.0
    for begin in range(0, n, chunk):  # one slice per torch thread, each summed from 0
        acc = np.zeros(1)
        for b in range(begin, min(n, begin + chunk), _VAR_BLOCK):
            dev = v[b:min(n, begin + chunk, b + _VAR_BLOCK)].astype(np.float64) - mean
            acc = np.cumsum(np.concatenate((acc, dev * dev)))[-1:]  # sequential, carried on
        total += float(acc[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(total) / np.float64(max(0.0, n - c)))


def _var_rows64(rows: np.ndarray, c: float) -> np.ndarray:
    """Welford's variance of each row of a (results, n) float array, in double."""
    mean = np.zeros(rows.shape[0])
    m2 = np.zeros(rows.shape[0])
    for j in range(rows.shape[1]):
        value = rows[:, j].astype(np.float64)
        delta = value - mean
        mean = mean + delta / float(j + 1)
        m2 = m2 + delta * (value - mean)
    n = rows.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return m2 / np.float64(n - c if n > c else 0)


def _torch_var64(x: Any, dim: Any, c: float, keepdim: bool) -> Any:
    """torch's float var in double (see above), or None where its order is not reproduced."""
    if x.dtype not in (np.float32, np.float64) or not x.size:
        return None
    axes = _axes(x, dim)
    shape = _reduce_shape(x, dim, keepdim)
    if axes is None or all(x.shape[a] == 1 for a in range(x.ndim) if a not in axes):
        return np.full(shape, _var_all64(x, c))
    n = math.prod(x.shape[a] for a in axes)
    if not x.flags.c_contiguous or n >= _WELFORD_MAX:
        return None
    keep = [a for a in range(x.ndim) if a not in axes]
    rows = np.transpose(x, keep + sorted(axes)).reshape(-1, n)
    return _var_rows64(rows, c).reshape(shape)


def _var64(x: Any, dim: Any, unbiased: bool | None, keepdim: bool,
           correction: float | None, name: str) -> tuple[Any, bool]:
    """(variance, exact): torch's double result where reproduced, else numpy's in x's dtype;
    `name` ("var" or "std") is the op torch's warning names."""
    c = _correction(unbiased, correction)
    n = _count(x.shape, dim)
    if n - c <= 0:
        warnings.warn(f"{name}(): degrees of freedom is <= 0. Correction should be strictly less "
                      "than the reduction factor (input numel divided by output numel).",
                      UserWarning, stacklevel=3)
    exact = _torch_var64(x, dim, c, keepdim)
    if exact is not None:
        return exact, True
    axes = _axes(x, dim)
    mean = np.mean(x, axis=axes, keepdims=True)
    dev = x - mean
    ss = np.sum(dev * dev, axis=axes, keepdims=keepdim)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ss / max(n - c, 0), False


def _var(x: Any, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False,
         correction: float | None = None) -> Any:
    v, exact = _var64(x, dim, unbiased, keepdim, correction, "var")
    return np.asarray(v).astype(x.dtype) if exact else v


def _std(x: Any, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False,
         correction: float | None = None) -> Any:
    v, exact = _var64(x, dim, unbiased, keepdim, correction, "std")
    with np.errstate(invalid="ignore"):
        return np.sqrt(v).astype(x.dtype) if exact else np.sqrt(v)


def _var_vjp(ns: Any, g: Any, out: Any, x: Any, dim: Any, unbiased: Any, keepdim: bool,
             correction: Any) -> Any:
    n = _count(x.shape, dim) - _correction(unbiased, correction)
    g = _kept(ns, g, x.shape, dim, keepdim)
    return g * (2.0 / n if n else math.inf) * (x - ns.mean(x, dim=dim, keepdim=True))


def _std_vjp(ns: Any, g: Any, out: Any, x: Any, dim: Any, unbiased: Any, keepdim: bool,
             correction: Any) -> Any:
    # torch: grad / (2 * std) * var's gradient, and 0 where std is 0.
    n = _count(x.shape, dim) - _correction(unbiased, correction)
    g = _kept(ns, g, x.shape, dim, keepdim)
    out = _kept(ns, out, x.shape, dim, keepdim)
    scale = ns.where(out == 0, 0.0, g / (out * 2)) * (2.0 / n if n else math.inf)
    return scale * (x - ns.mean(x, dim=dim, keepdim=True))


VAR_ATTRS = (AttrSpec("dim", "dims", None), AttrSpec("unbiased", "bool", None),
             AttrSpec("keepdim", "bool", False), AttrSpec("correction", "optional_float", None))
_VAR_DTYPE = _floating_only("std and var only support floating point and complex dtypes")
defop("var", _var, _var_vjp, attrs=VAR_ATTRS, dtype=_VAR_DTYPE,
      saves="input",
      doc="variance over dim with Bessel's correction (correction=1) by default",
      out_bound=temporaries(_reduce_shape, inputs=2))
defop("std", _std, _std_vjp,
      saves="result input",
      attrs=VAR_ATTRS, dtype=_VAR_DTYPE, doc="standard deviation: sqrt(var)",
      out_bound=temporaries(_reduce_shape, inputs=2))

# --- norm ----------------------------------------------------------------------------------------


def _norm(x: Any, p: float = 2.0, dim: Any = None, keepdim: bool = False,
          dtype: Any = None) -> Any:
    # `dtype`: the input arrives cast to it (`_norm_dtype`)
    axes = _axes(x, dim)
    if x.size and x.dtype in (np.float32, np.float64):
        return vector_norm.vector_norm(x, p, axes, keepdim)  # torch's kernel, bit for bit
    a = np.abs(x)
    if p == 2.0:
        return np.sqrt(np.sum(a * a, axis=axes, keepdims=keepdim))
    if p == 1.0:
        return np.sum(a, axis=axes, keepdims=keepdim)
    if math.isinf(p):
        if not x.size:  # torch: the empty max-norm is 0 (an empty min-norm is an error)
            if p < 0:
                raise errors.InvalidArgumentError(
                    "linalg.vector_norm cannot compute the -inf norm on an empty tensor because "
                    "the operation does not have an identity")
            return np.sum(a, axis=axes, keepdims=keepdim)
        return (np.max if p > 0 else np.min)(a, axis=axes, keepdims=keepdim)
    if p == 0.0:
        return np.sum(a != 0, axis=axes, keepdims=keepdim).astype(x.dtype)
    with np.errstate(divide="ignore"):
        return np.power(np.sum(np.power(a, p), axis=axes, keepdims=keepdim), 1.0 / p)


def _norm_vjp(ns: Any, g: Any, out: Any, x: Any, p: float, dim: Any, keepdim: bool,
              dtype: Any = None) -> Any:
    # torch's norm_backward, case by case, op for op (so a create_graph gradient has torch's
    # nodes and saved tensors), including its zeros at norm == 0. Over all dims (dim=None) torch
    # unsqueezes nothing: the 0-d gradient and norm broadcast as they are.
    axes = norm_dims(dim, x.ndim)
    if axes and not keepdim and x.ndim:
        for axis in sorted(axes):  # torch's unsqueeze_multiple
            g = ns.unsqueeze(g, dim=axis)
            out = ns.unsqueeze(out, dim=axis)
    norm = out
    if p == 0.0:
        return None  # torch: an undefined gradient (None from autograd.grad)
    if p == 1.0:
        return ns.sgn(x) * g
    if p == 2.0:
        return g * ns.masked_fill(x / norm, ns.eq(norm, 0), 0.0)
    if math.isinf(p):
        a = ns.abs(x)
        mask = ns.logical_or(ns.eq(a, norm), ns.isnan(a))
        return ns.sgn(x) * ((g / ns.sum(mask, dim=dim, keepdim=True)) * mask)
    if p < 1.0:
        scaled = ns.sgn(x) * ns.masked_fill(ns.pow(ns.abs(x), p - 1), ns.eq(x, 0), 0.0)
        return scaled * g * ns.pow(norm, 1 - p)
    scaled = (ns.sgn(x) * ns.pow(ns.abs(x), p - 1) if p < 2.0
              else x * ns.pow(ns.abs(x), p - 2))
    return scaled * ns.masked_fill(g / ns.pow(norm, p - 1), ns.eq(norm, 0), 0.0)


def _norm_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """linalg.vector_norm's checks; with `dtype` the input is cast to it first (no node)."""
    d = args[0].dtype
    if not d.is_floating_point:
        raise errors.InvalidArgumentError(
            "linalg.vector_norm: Expected a floating point or complex tensor as input. "
            f"Got {_TYPE_WORD[d.name]}")
    want = attrs.get("dtype")
    if want is None:
        return None, d
    if not want.is_floating_point:
        raise errors.InvalidArgumentError(
            "linalg.vector_norm: dtype should be floating point or complex, but got "
            f"{_TYPE_WORD[want.name]}")
    if want.itemsize < d.itemsize:
        raise errors.InvalidArgumentError(
            f"linalg.vector_norm: the dtype of the input ({_TYPE_WORD[d.name]}) should be "
            f"convertible without narrowing to the specified dtype ({_TYPE_WORD[want.name]})")
    return want, want


_NORM_ATTRS = (AttrSpec("p", "float", 2.0), AttrSpec("dim", "dims", None),
               AttrSpec("keepdim", "bool", False), AttrSpec("dtype", "dtype", None))
defop("norm", _norm, _norm_vjp,
      saves="result input", attrs=_NORM_ATTRS, dtype=_norm_dtype,
      backward="LinalgVectorNormBackward0",
      doc="vector p-norm over dim (all if None), computed in dtype if given",
      out_bound=temporaries(_reduce_shape, inputs=2))
# at::norm(input, p, dim, keepdim), which torch's own functions call (pairwise_distance): the same
# values and derivative, recorded as NormBackward1.
defop("norm_dim", _norm, _norm_vjp,
      saves="result input", attrs=_NORM_ATTRS, dtype=_norm_dtype, backward="NormBackward1",
      method=False,
      doc="vector p-norm over dim, as at::norm (torch's NormBackward1)",
      out_bound=temporaries(_reduce_shape, inputs=2))

# --- logsumexp, cumsum ---------------------------------------------------------------------------


def _logsumexp(x: Any, dim: Any, keepdim: bool = False) -> Any:
    axes = _axes(x, dim)
    if not x.size:
        return np.log(np.sum(np.exp(x), axis=axes, keepdims=keepdim))
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # torch: infinite maxima are not subtracted
    with np.errstate(divide="ignore"):
        s = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    if keepdim:
        return s
    return s.reshape(()) if axes is None else np.squeeze(s, axis=axes)


defop("logsumexp", _logsumexp,
      lambda ns, g, out, x, dim, keepdim: _kept(ns, g, x.shape, dim, keepdim) * ns.exp(
          x - _kept(ns, out, x.shape, dim, keepdim)),
      saves="result input",
      attrs=(AttrSpec("dim", "dims", required=True), AttrSpec("keepdim", "bool", False)),
      dtype=FLOAT, doc="log(sum(exp(input))) over dim, computed stably",
      out_bound=temporaries(_reduce_shape, inputs=2))


# torch's CPU cumsum/cumprod (cpu_cum_base_kernel) carry the running value in acc_type: double
# for float32, float for half; each element is that value rounded to the tensor's dtype
_CUMULATIVE_ACC = {np.dtype(np.float32): np.float64, np.dtype(np.float16): np.float32}


def _cumulative(fn: Callable[..., Any], x: Any, axis: int) -> Any:
    """np.cumsum / np.cumprod along `axis` with torch's running-value precision, in C order
    whatever x's (torch's result is contiguous; numpy's keeps a transposed input's order)."""
    acc = _CUMULATIVE_ACC.get(x.dtype)
    if acc is None:
        return np.ascontiguousarray(fn(x, axis=axis))
    with np.errstate(over="ignore"):  # a running value past the dtype's range: inf, as torch
        return np.ascontiguousarray(fn(x.astype(acc), axis=axis).astype(x.dtype))


def _cumsum(x: Any, dim: int, dtype: Any = None) -> Any:
    axis = _one_dim(x, dim)
    if x.ndim == 0:
        return x.copy()
    return _cumulative(np.cumsum, x, axis)


def _cumsum_vjp(ns: Any, g: Any, out: Any, x: Any, dim: int, dtype: Any) -> Any:
    # torch's cumsum_backward: the gradient itself for one element along dim, else the
    # reversed cumulative sum, flip(cumsum(flip(g)))
    if x.ndim == 0 or math.prod(x.shape) <= 1 or x.shape[_one_dim(x, dim)] == 1:
        return g
    return ns.flip(ns.cumsum(ns.flip(g, dims=dim), dim=dim), dims=dim)


defop("cumsum", _cumsum, _cumsum_vjp,
      saves="input.shape",
      attrs=(AttrSpec("dim", "int", required=True), AttrSpec("dtype", "dtype", None)),
      dtype=_int_to_int64, doc="cumulative sum along dim",
      out_shape=lambda x, dim, dtype=None: tuple(x.shape))

# --- cumprod: torch's cumprod_backward, zeros in the input included ------------------------------


def _cumprod(x: Any, dim: int, dtype: Any = None) -> Any:
    axis = _one_dim(x, dim)
    if x.ndim == 0:
        return x.copy()
    return _cumulative(np.cumprod, x, axis)


def _has_zero(x: Any) -> bool:
    data = x._data if isinstance(x, Tensor) else x
    return bool(np.any(np.equal(data, 0)))


def _cumprod_grad_with_zeros(ns: Any, g: Any, x: Any, axis: int) -> Any:
    """The exact gradient where input has zeros: input k gets sum over j >= k of g_j times the
    product of x_0..x_j without x_k, from the cumprods of n copies of x, each with one element
    set to 1 (O(n^2) along dim, as torch's backward under create_graph; differentiable)."""
    last = x.ndim - 1
    xt = ns.transpose(x, dim0=axis, dim1=last)
    gt = ns.transpose(g, dim0=axis, dim1=last)
    eye = ns.eye(n=x.shape[axis])
    copies = ns.where(eye > 0.5, 1.0, ns.unsqueeze(xt, dim=-2))  # [..., k, i]: x_i, 1 at i = k
    later = ns.triu(ns.ones_like(eye))  # [k, j]: j >= k
    grad = ns.sum(ns.cumprod(copies, dim=-1) * (ns.unsqueeze(gt, dim=-2) * later), dim=-1)
    return ns.transpose(grad, dim0=axis, dim1=last)


def _cumprod_vjp(ns: Any, g: Any, out: Any, x: Any, dim: int, dtype: Any) -> Any:
    # torch's cumprod_backward: the gradient itself along a dim of one element; without zeros
    # the reversed cumulative sum of result * grad, divided by input; with zeros the exact sum
    # (torch's O(n) masks without create_graph give the same values)
    if x.ndim == 0:
        return g
    axis = _one_dim(x, dim)
    if x.shape[axis] <= 1:
        return g
    if not _has_zero(x):
        w = ns.flip(out * g, dims=axis)
        return ns.flip(ns.cumsum(w, dim=axis), dims=axis) / x
    return _cumprod_grad_with_zeros(ns, g, x, axis)


defop("cumprod", _cumprod, _cumprod_vjp,
      saves="input result",
      attrs=(AttrSpec("dim", "int", required=True), AttrSpec("dtype", "dtype", None)),
      dtype=_int_to_int64, inplace=True, doc="cumulative product along dim",
      out_shape=lambda x, dim, dtype=None: tuple(x.shape))

# --- all, any ------------------------------------------------------------------------------------

defop("all", lambda x, dim=None, keepdim=False: np.all(x, axis=_axes(x, dim), keepdims=keepdim),
      None, attrs=REDUCE_ATTRS, dtype=BOOL, doc="whether every element is true (over dim)",
      out_shape=_reduce_shape)
defop("any", lambda x, dim=None, keepdim=False: np.any(x, axis=_axes(x, dim), keepdims=keepdim),
      None, attrs=REDUCE_ATTRS, dtype=BOOL, doc="whether any element is true (over dim)",
      out_shape=_reduce_shape)
