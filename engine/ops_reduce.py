"""Reductions: sum, mean, ... with torch's `dim` / `keepdim` handling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import dtypes, errors
from .registry import AttrSpec, defop


def norm_dims(dim: int | Sequence[int] | None, ndim: int) -> tuple[int, ...] | None:
    """`dim` as a sorted tuple of non-negative axes (None: all), with torch's range errors."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    out = []
    for d in dims:
        if not lo <= d <= hi:
            raise errors.OutOfRangeIndexError(
                f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {d})")
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


def unreduce(ns: Any, g: Any, shape: Sequence[int], dim: Any, keepdim: bool) -> Any:
    """Broadcast a reduction's gradient back over `shape` (the VJP of sum)."""
    if not keepdim:
        g = ns.reshape(g, shape=kept_shape(shape, dim))
    return ns.expand(g, size=tuple(shape))


def _axes(x: Any, dim: Any) -> Any:
    axes = norm_dims(dim, x.ndim)
    # torch: dim=() reduces everything; dim 0 (or -1) of a 0-dim tensor is the tensor itself.
    return None if axes == () or x.ndim == 0 else axes


def _sum(x: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Any:
    if dtype is not None:
        x = x.astype(dtype.np)
    elif x.dtype.kind in "biu":
        x = x.astype(np.int64)
    return np.sum(x, axis=_axes(x, dim), keepdims=keepdim)


def _sum_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    if attrs.get("dtype") is not None:
        return None, attrs["dtype"]
    d = args[0].dtype
    return None, d if d.is_floating_point else dtypes.int64


def _by_dim(no_dim: str, with_dim: str):  # noqa: ANN202
    return lambda args, attrs: no_dim if attrs.get("dim") is None else with_dim


REDUCE_ATTRS = (AttrSpec("dim", "dims", None), AttrSpec("keepdim", "bool", False))

defop("sum", _sum,
      lambda ns, g, out, x, dim, keepdim, dtype: unreduce(ns, g, x.shape, dim, keepdim),
      attrs=REDUCE_ATTRS + (AttrSpec("dtype", "dtype", None),), dtype=_sum_dtype,
      backward=_by_dim("SumBackward0", "SumBackward1"), doc="sum over dim (all if None)")


def _mean_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    d = attrs.get("dtype") or args[0].dtype
    if not d.is_floating_point:
        raise errors.InvalidArgumentError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point "
            f"or complex dtype. Got: {_TYPE_WORD[d.name]}")
    return d, d


_TYPE_WORD = {"float32": "Float", "float64": "Double", "int32": "Int", "int64": "Long",
              "bool": "Bool"}


def _count(shape: Sequence[int], dim: Any) -> int:
    axes = norm_dims(dim, len(shape))
    n = 1
    for i, s in enumerate(shape):
        if axes is None or axes == () or i in axes:
            n *= s
    return n


defop("mean", lambda x, dim=None, keepdim=False, dtype=None: np.mean(
          x, axis=_axes(x, dim), keepdims=keepdim),
      lambda ns, g, out, x, dim, keepdim, dtype: unreduce(
          ns, g, x.shape, dim, keepdim) / _count(x.shape, dim),
      attrs=REDUCE_ATTRS + (AttrSpec("dtype", "dtype", None),), dtype=_mean_dtype,
      backward=_by_dim("MeanBackward0", "MeanBackward1"), doc="mean over dim (all if None)")
