"""Indexing: select, slice, index (advanced), gather, index_select, masked_fill, take, put.

`x[...]` is not one op: `__getitem__` below decomposes a Python index into registered ops with
typed attributes, as torch's `applySlicing` does (an int is `select`, a slice `slice`, None
`unsqueeze`, `...` an `alias`; integer lists/tensors and bool masks become one `index` op), so a
client can send any index expression over the wire as ops. `__setitem__` writes through `put`
at the flat positions the same decomposition picks out of `arange(numel)`.

Backward passes of indexing scatter with `np.add.at` (repeated indices accumulate) in registered
ops (`index_backward`, `gather_backward`, `select_backward`, `slice_backward`), whose own VJPs are
the forward ops again, so every gradient here is differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradserve.surface import grad_mode, messages
from gradserve.surface.indexing import index_items
from gradserve.surface.layout import broadcast_shapes
from gradserve.surface.messages import TYPE_WORDS

from . import dtypes, errors, limits
from .api import FUNCTIONS, _inplace, public
from .ops_elementwise import broadcast_shape
from .ops_shape import _shape_str, wrap_dim
from .registry import OPS, AttrSpec, defop, fixed, is_int, names_backward, numel_of
from .tensor import Tensor

_INT_KINDS = "iu"

# --- select, slice, alias ------------------------------------------------------------------------


def _select(x: Any, dim: int, index: int) -> Any:
    if x.ndim == 0:
        raise errors.OutOfRangeIndexError("select() cannot be applied to a 0-dim tensor.")
    axis = wrap_dim(dim, x.ndim)
    n = x.shape[axis]
    if not -n <= index < n:
        raise errors.OutOfRangeIndexError(
            f"select(): index {index} out of range for tensor of size {_shape_str(x.shape)} at "
            f"dimension {axis}")
    return x[(slice(None),) * axis + (index, Ellipsis)]  # `...`: a 0-d view, not a copy


def _select_backward(g: Any, input_sizes: Sequence[int], dim: int, index: int) -> Any:
    out = np.zeros(tuple(input_sizes), dtype=np.asarray(g).dtype)
    axis = wrap_dim(dim, len(input_sizes))
    out[(slice(None),) * axis + (index,)] = g
    return out


def _select_shape(x: Any, dim: int, index: int) -> tuple[int, ...]:
    if x.ndim == 0:
        return ()  # the forward refuses it with torch's message
    axis = wrap_dim(dim, x.ndim)
    return tuple(x.shape[:axis]) + tuple(x.shape[axis + 1:])


SELECT_ATTRS = (AttrSpec("dim", "int", required=True), AttrSpec("index", "int", required=True))
defop("select", _select,
      lambda ns, g, out, x, dim, index: ns.select_backward(
          g, input_sizes=x.shape, dim=dim, index=index),
      saves="input.shape",
      attrs=SELECT_ATTRS, doc="the slice at index along dim (that dim removed)", view=True,
      out_shape=_select_shape)
defop("select_backward", _select_backward,
      lambda ns, g, out, grad, input_sizes, dim, index: ns.select(g, dim=dim, index=index),
      saves="",
      inputs=("grad",), attrs=(AttrSpec("input_sizes", "ints", required=True), *SELECT_ATTRS),
      out_shape=lambda grad, input_sizes, dim, index: tuple(input_sizes), method=False,
      backward="SelectBackwardBackward0", doc="select's gradient: grad placed in zeros")


def slice_bounds(length: int, start: int | None, end: int | None, step: int) -> slice:
    """A Python slice for torch's `slice(dim, start, end, step)` (clamped like torch's)."""
    if step <= 0:
        raise errors.InvalidArgumentError("slice step must be positive")
    return slice(*slice(start, end, step).indices(length))


def _slice(x: Any, dim: int = 0, start: int | None = None, end: int | None = None,
           step: int = 1) -> Any:
    if x.ndim == 0:
        raise errors.OutOfRangeIndexError("slice() cannot be applied to a 0-dim tensor.")
    axis = wrap_dim(dim, x.ndim)
    return x[(slice(None),) * axis + (slice_bounds(x.shape[axis], start, end, step),)]


def _slice_shape(x: Any, dim: int = 0, start: int | None = None, end: int | None = None,
                 step: int = 1) -> tuple[int, ...]:
    if x.ndim == 0 or step <= 0:
        return ()  # the forward refuses these with torch's messages
    axis = wrap_dim(dim, x.ndim)
    n = len(range(*slice(start, end, step).indices(x.shape[axis])))
    return (*x.shape[:axis], n, *x.shape[axis + 1:])


def _slice_backward(g: Any, input_sizes: Sequence[int], dim: int = 0, start: int | None = None,
                    end: int | None = None, step: int = 1) -> Any:
    out = np.zeros(tuple(input_sizes), dtype=np.asarray(g).dtype)
    axis = wrap_dim(dim, len(input_sizes))
    out[(slice(None),) * axis + (slice_bounds(input_sizes[axis], start, end, step),)] = g
    return out


SLICE_ATTRS = (AttrSpec("dim", "int", 0), AttrSpec("start", "optional_int", None),
               AttrSpec("end", "optional_int", None), AttrSpec("step", "int", 1))
defop("slice", _slice,
      lambda ns, g, out, x, dim, start, end, step: ns.slice_backward(
          g, input_sizes=x.shape, dim=dim, start=start, end=end, step=step),
      saves="input.shape",
      attrs=SLICE_ATTRS, method=False, doc="elements start:end:step along dim (a view)", view=True,
      out_shape=_slice_shape)
defop("slice_backward", _slice_backward,
      lambda ns, g, out, grad, input_sizes, dim, start, end, step: ns.slice(
          g, dim=dim, start=start, end=end, step=step),
      saves="",
      inputs=("grad",), attrs=(AttrSpec("input_sizes", "ints", required=True), *SLICE_ATTRS),
      out_shape=lambda grad, input_sizes, **kw: tuple(input_sizes), method=False,
      backward="SliceBackwardBackward0", doc="slice's gradient: grad placed in zeros")
defop("alias", lambda x: x.view() if isinstance(x, np.ndarray) else x,
      lambda ns, g, out, x: g, method=False, doc="the same tensor as a new node (x[...])",
      saves="",
      view=True,
      out_shape=lambda x: tuple(x.shape))

# --- bounds of the indexing ops ---

# Per index element, besides the result: a converted (intp) copy and the range checks' masks.
_INDEX_SCRATCH = 8 + 3


def _indexed(out_shape: Any, index_arg: int = 1) -> Any:
    """An out_bound for an op indexing with its input `index_arg`: the result, and the
    scratch its forward makes per index element."""
    def bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
        b = limits.shape_bound(out_shape(*args, **attrs), out_dtype.np.itemsize)
        index = args[index_arg]
        scratch = numel_of(index) * _INDEX_SCRATCH
        if getattr(index, "dtype", None) is dtypes.bool_:  # a mask: np.nonzero, a row per dim
            scratch = numel_of(index) * max(index.ndim, 1) * 8
        return limits.with_scratch(b, scratch)
    return bound


# --- index (advanced indexing), nonzero ----------------------------------------------------------


def _check_index_dtype(indices: Any) -> None:
    if indices.dtype != np.bool_ and indices.dtype.kind not in _INT_KINDS:
        raise errors.OutOfRangeIndexError(
            "tensors used as indices must be long, int, byte or bool tensors")


def index_key(shape: Sequence[int], indices: Any, dim: int) -> tuple[Any, ...]:
    """The numpy key for `index`: `indices` is a bool mask over dims dim.., or an int tensor
    (k, *B) holding one index array per dim dim..dim+k-1. torch's errors."""
    indices = np.asarray(indices)
    _check_index_dtype(indices)
    ndim = len(shape)
    if not 0 <= dim <= ndim:
        wrap_dim(dim, ndim)
    if indices.dtype == np.bool_:
        if dim + indices.ndim > ndim:
            raise errors.OutOfRangeIndexError(f"too many indices for tensor of dimension {ndim}")
        for j, m in enumerate(indices.shape):
            if m != shape[dim + j]:
                raise errors.OutOfRangeIndexError(
                    f"The shape of the mask {_shape_str(indices.shape)} at index {j} does not "
                    f"match the shape of the indexed tensor {_shape_str(shape)} at index "
                    f"{dim + j}")
        arrays: tuple[Any, ...] = np.nonzero(indices)
    else:
        if indices.ndim == 0:
            raise errors.InvalidArgumentError("index(): indices must have a leading dim (k, ...)")
        if dim + indices.shape[0] > ndim:
            raise errors.OutOfRangeIndexError(f"too many indices for tensor of dimension {ndim}")
        arrays = tuple(indices)
        for j, a in enumerate(arrays):
            n = shape[dim + j]
            bad = (a >= n) | (a < -n)
            if bad.any():
                raise errors.OutOfRangeIndexError(
                    f"index {int(a[bad].flat[0])} is out of bounds for dimension {j} with size {n}")
    return (slice(None),) * dim + arrays


def _index(x: Any, indices: Any, dim: int = 0) -> Any:
    return np.asarray(x)[index_key(np.shape(x), indices, dim)]


def _index_backward(g: Any, indices: Any, input_sizes: Sequence[int], dim: int = 0) -> Any:
    g = np.asarray(g)
    out = np.zeros(tuple(input_sizes), dtype=g.dtype)
    key = index_key(out.shape, indices, dim)
    rows = key[dim:]
    want = (*out.shape[:dim], *rows[0].shape, *out.shape[dim + len(rows):])
    if g.shape != want:
        raise errors.InvalidArgumentError(
            f"index_backward(): grad of shape {_shape_str(g.shape)} does not match the indexed "
            f"shape {_shape_str(want)}")
    np.add.at(out, key, g)  # repeated indices accumulate
    return out


def _index_shape(x: Any, indices: Any, dim: int = 0) -> tuple[int, ...]:
    """index's result shape, for the allocation check before the forward runs. Inputs the
    forward will refuse get `()` here, so the forward raises torch's error."""
    shape = tuple(x.shape)
    data = np.asarray(indices._data if isinstance(indices, Tensor) else indices)
    if dim < 0 or data.ndim == 0:
        return ()
    if data.dtype == np.bool_:
        if dim + data.ndim > len(shape):
            return ()
        return (*shape[:dim], int(np.count_nonzero(data)), *shape[dim + data.ndim:])
    if data.dtype.kind not in _INT_KINDS or dim + data.shape[0] > len(shape):
        return ()
    return (*shape[:dim], *data.shape[1:], *shape[dim + data.shape[0]:])


def _index_bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
    """index's result (a mask's true elements counted, so exact), and its key's scratch: one
    int64 array per mask dim of that count, or the int checks' per index element."""
    x, indices = args[0], args[1]
    shape = _index_shape(x, indices, attrs.get("dim", 0))
    b = limits.shape_bound(shape, out_dtype.np.itemsize)
    if getattr(indices, "dtype", None) is dtypes.bool_ and len(shape) > attrs.get("dim", 0) >= 0:
        return limits.with_scratch(b, shape[attrs["dim"]] * indices.ndim * 8)
    return limits.with_scratch(b, numel_of(indices) * _INDEX_SCRATCH)


def _nonzero_bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
    """nonzero's result, exact: counting reads the data without allocating. np.argwhere stacks
    np.nonzero's per-dim arrays into a new one, so its peak is twice the result."""
    x = args[0]
    count = int(np.count_nonzero(x._data))
    return limits.with_scratch(limits.shape_bound((count, x.ndim), 8),
                               count * max(x.ndim, 1) * 8)


defop("index", _index,
      lambda ns, g, out, x, indices, dim: ns.index_backward(
          g, indices, input_sizes=x.shape, dim=dim), None,
      saves=("indices input.shape", ""),
      inputs=("input", "indices"), attrs=(AttrSpec("dim", "int", 0),), method=False,
      out_shape=_index_shape,
      doc="advanced indexing along dims dim..: indices is a bool mask, or int (k, *B) with one "
          "index array per dim",
      out_bound=_index_bound)
defop("index_backward", _index_backward,
      lambda ns, g, out, grad, indices, input_sizes, dim: ns.index(g, indices, dim=dim), None,
      saves=("indices", ""),
      inputs=("grad", "indices"),
      attrs=(AttrSpec("input_sizes", "ints", required=True), AttrSpec("dim", "int", 0)),
      out_shape=lambda grad, indices, input_sizes, dim=0: tuple(input_sizes), method=False,
      backward="IndexPutBackward0",
      doc="index's gradient: grad added into zeros at the indices (repeats accumulate)",
      out_bound=_indexed(lambda grad, indices, input_sizes, dim=0: tuple(input_sizes)))
defop("nonzero", lambda x: np.argwhere(x).astype(np.int64, copy=False), None,
      dtype=fixed(dtypes.int64),
      doc="indices of the non-zero elements, one row per element",
      out_bound=_nonzero_bound)

# --- masked_select --------------------------------------------------------------------------------


def _masked_select_shapes(x: Any, mask: Any) -> tuple[tuple[int, ...], int]:
    """The broadcast shape of input and mask (torch's message, mask first, when they do not
    broadcast), and how many elements the result has (the mask's true ones, broadcast)."""
    m = mask._data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise errors.InvalidArgumentError("masked_select: expected BoolTensor for mask")
    shape = broadcast_shape(mask, x)
    return shape, int(np.count_nonzero(np.broadcast_to(m, shape)))


def _masked_select(x: Any, mask: Any) -> Any:
    shape, _ = _masked_select_shapes(x, mask)
    flat = np.broadcast_to(np.asarray(x), shape).reshape(-1)
    return flat[np.broadcast_to(np.asarray(mask), shape).reshape(-1)]


def _masked_select_vjp(ns: Any, g: Any, out: Any, x: Any, mask: Any) -> Any:
    """g into zeros of the broadcast shape at the mask's true elements (the backward pass sums
    it back to input's shape)."""
    shape = broadcast_shape(mask, x)
    flat_mask = ns.reshape(ns.expand(mask, size=shape), shape=(-1,))
    n = int(np.prod(shape))
    return ns.reshape(ns.index_backward(g, flat_mask, input_sizes=(n,)), shape=shape)


def _masked_select_bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
    """The result, exact (the mask's true elements counted), and the key's scratch: one int64
    array of that count per dim."""
    shape, count = _masked_select_shapes(args[0], args[1])
    return limits.with_scratch(limits.shape_bound((count,), out_dtype.np.itemsize),
                               count * max(len(shape), 1) * 8)


defop("masked_select", _masked_select, _masked_select_vjp, None,
      saves=("mask input.shape", ""),
      inputs=("input", "mask"),
      out_shape=lambda x, mask: (_masked_select_shapes(x, mask)[1],),
      doc="the elements of input where mask (broadcast with it) is true, as a 1-D tensor",
      out_bound=_masked_select_bound)

# --- take, put (flat positions) ------------------------------------------------------------------


def _flat_positions(numel: int, index: Any, what: str) -> Any:
    index = np.asarray(index)
    if index.dtype.kind not in _INT_KINDS:
        raise errors.InvalidArgumentError(f"{what}(): Expected a long tensor for index, but got "
                                          f"{dtypes.from_numpy(index.dtype).name}")
    bad = (index >= numel) | (index < -numel)
    if bad.any():
        raise errors.OutOfRangeIndexError(
            f"out of range: tried to access index {int(index[bad].flat[0])} on a tensor of "
            f"{numel} elements.")
    return index


def _take(x: Any, index: Any) -> Any:
    x = np.asarray(x)
    return x.reshape(-1)[_flat_positions(x.size, index, "take")]


def _put(x: Any, index: Any, source: Any, accumulate: bool = False) -> Any:
    out = np.array(x, copy=True)
    flat = out.reshape(-1)
    pos = _flat_positions(out.size, index, "put_").reshape(-1)
    if isinstance(source, np.ndarray):
        if source.size != pos.size:
            raise errors.OutOfRangeIndexError(
                "put_(): Expected source and index to have the same number of elements, but got "
                f"source.numel() = {source.size}, index.numel() = {pos.size}")
        source = source.reshape(-1)
    if accumulate:
        np.add.at(flat, pos, source)
    else:
        flat[pos] = source
    return out


def _put_input_vjp(ns: Any, g: Any, out: Any, x: Any, index: Any, source: Any,
                   accumulate: bool) -> Any:
    return g if accumulate else ns.put(g, index, 0.0)


def _take_bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
    b = _indexed(lambda x, index: tuple(index.shape))(args, attrs, out_dtype)
    x = args[0]
    # reshape(-1) copies an input that is not contiguous (a transpose, an expand)
    copied = 0 if np.asarray(x._data).flags.c_contiguous else x.numel() * x.dtype.np.itemsize
    return limits.with_scratch(b, copied)


defop("take", _take,
      lambda ns, g, out, x, index: ns.reshape(ns.index_backward(
          ns.reshape(g, shape=(-1,)), ns.reshape(index, shape=(1, -1)),
          input_sizes=(int(np.prod(x.shape)),)), shape=x.shape), None,
      saves=("index input.shape", ""),
      inputs=("input", "index"), doc="elements at flat positions, in the shape of index",
      out_bound=_take_bound)
defop("put", _put, _put_input_vjp, None,
      lambda ns, g, out, x, index, source, accumulate: ns.reshape(
          ns.take(g, index), shape=source.shape),
      saves=("index", "", "index source.shape"),
      inputs=("input", "index", "source"), attrs=(AttrSpec("accumulate", "bool", False),),
      doc="a copy with source written (or added) at flat positions; a Python scalar source "
          "fills them",
      out_bound=_indexed(lambda x, index, source, accumulate=False: tuple(x.shape)))

# --- gather, index_select, masked_fill -----------------------------------------------------------


def gather_key(shape: Sequence[int], dim: int, index: Any) -> tuple[Any, ...]:
    """The numpy key for `gather(dim, index)`, with torch's errors."""
    index = np.asarray(index)
    if index.dtype.kind not in _INT_KINDS:
        raise errors.InvalidArgumentError("gather(): Expected dtype int32/int64 for index")
    ndim = len(shape)
    axis = wrap_dim(dim, ndim)
    if index.ndim != max(ndim, 1) and not (ndim == 0 and index.ndim <= 1):
        raise errors.InvalidArgumentError(
            "Index tensor must have the same number of dimensions as input tensor")
    if ndim == 0:
        bad = (index != 0)
        if bad.any():
            raise errors.InvalidArgumentError(
                f"index {int(index[bad].flat[0])} is out of bounds for dimension 0 with size 1")
        return (np.zeros(index.shape, np.intp),) if index.ndim else ()
    for d in range(ndim):
        if d != axis and index.shape[d] > shape[d]:
            raise errors.InvalidArgumentError(
                f"Size does not match at dimension {d} expected index {_shape_str(index.shape)} "
                f"to be no larger than self {_shape_str(shape)} apart from dimension {axis}")
    bad = (index >= shape[axis]) | (index < 0)
    if bad.any():
        raise errors.InvalidArgumentError(
            f"index {int(index[bad].flat[0])} is out of bounds for dimension {axis} with size "
            f"{shape[axis]}")
    grids = np.ix_(*(np.arange(n) for n in index.shape)) if index.ndim else ()
    return tuple(index if d == axis else grids[d] for d in range(ndim))


def _gather(x: Any, index: Any, dim: int) -> Any:
    x = np.asarray(x)
    key = gather_key(x.shape, dim, index)
    return x[key] if key else x.copy()


def _gather_backward(g: Any, index: Any, input_sizes: Sequence[int], dim: int) -> Any:
    out = np.zeros(tuple(input_sizes), dtype=np.asarray(g).dtype)
    key = gather_key(out.shape, dim, index)
    if key:
        np.add.at(out, key, g)
    else:
        out[...] = g
    return out


defop("gather", _gather,
      lambda ns, g, out, x, index, dim: ns.gather_backward(
          g, index, input_sizes=x.shape, dim=dim), None,
      saves=("index input.shape", ""),
      inputs=("input", "index"), attrs=(AttrSpec("dim", "int", required=True),),
      doc="values along dim at index (gather(input, dim, index))",
      out_bound=_indexed(lambda x, index, dim: tuple(index.shape)))
defop("gather_backward", _gather_backward,
      lambda ns, g, out, grad, index, input_sizes, dim: ns.gather(g, index, dim=dim), None,
      saves=("index", ""),
      inputs=("grad", "index"),
      attrs=(AttrSpec("input_sizes", "ints", required=True),
             AttrSpec("dim", "int", required=True)),
      out_shape=lambda grad, index, input_sizes, dim: tuple(input_sizes), method=False,
      backward="ScatterAddBackward0", doc="gather's gradient: grad added into zeros at index",
      out_bound=_indexed(lambda grad, index, input_sizes, dim: tuple(input_sizes)))


# --- scatter, scatter_add (gather's inverses) ---------------------------------------------------


def _scatter_key(x: Any, dim: int, index: Any, src: Any) -> tuple[Any, ...]:
    """The numpy key of scatter(dim, index, src) into x, with torch's checks and messages
    (scatter_add's name scatter too)."""
    index = np.asarray(index)
    if index.dtype.kind not in _INT_KINDS:
        raise errors.InvalidArgumentError("scatter(): Expected dtype int32/int64 for index")
    shape = tuple(np.shape(x))
    ndim = len(shape)
    if index.ndim != max(ndim, 1) and not (ndim == 0 and index.ndim <= 1):
        raise errors.InvalidArgumentError(
            "Index tensor must have the same number of dimensions as self tensor")
    axis = wrap_dim(dim, ndim)
    src_shape = tuple(np.shape(src)) if isinstance(src, np.ndarray) else None
    if ndim and index.size:
        too_big = any(d != axis and index.shape[d] > shape[d] for d in range(ndim))
        short_src = src_shape is not None and (
            len(src_shape) != ndim or any(i > n for i, n in zip(index.shape, src_shape)))
        if too_big or short_src:
            text = (f"Expected index {_shape_str(index.shape)} to be no larger than self "
                    f"{_shape_str(shape)} apart from dimension {axis}")
            if src_shape is not None:
                text += f" and to be no larger size than src {_shape_str(src_shape)}"
            raise errors.InvalidArgumentError(text)
    return gather_key(shape, dim, index)


def _scatter_src(src: Any, index: Any) -> Any:
    """The part of src that index covers (its leading corner), or the scalar value."""
    if not isinstance(src, np.ndarray) or src.ndim == 0:
        return src
    return src[tuple(slice(0, n) for n in np.shape(index))]


def _scatter(x: Any, index: Any, src: Any, dim: int) -> Any:
    out = np.array(x, copy=True)
    key = _scatter_key(out, dim, index, src)
    if key:
        out[key] = _scatter_src(src, index)
    elif np.size(index):
        out[...] = _scatter_src(src, index)
    return out


def _scatter_add(x: Any, index: Any, src: Any, dim: int) -> Any:
    out = np.array(x, copy=True)
    key = _scatter_key(out, dim, index, src)
    if key:
        np.add.at(out, key, _scatter_src(src, index))
    elif np.size(index):
        out += _scatter_src(src, index).reshape(out.shape)
    return out


def _scatter_dtype(args: Sequence[Any], attrs: Any) -> tuple[Any, Any]:
    """input's dtype; a src tensor must have it (torch's message, scatter_add's too)."""
    x, src = args[0], args[2]
    if isinstance(src, Tensor) and src.dtype is not x.dtype:
        raise errors.InvalidArgumentError("scatter(): Expected self.dtype to be equal to src.dtype")
    return None, x.dtype


@names_backward("ScatterBackward0", "ScatterBackward1")
def _scatter_name(args: Sequence[Any], attrs: Any) -> str:
    return ("ScatterBackward1" if len(args) > 2 and not isinstance(args[2], Tensor)
            else "ScatterBackward0")


_SCATTER_SHAPE = _indexed(lambda x, index, src, dim: tuple(x.shape))

defop("scatter", _scatter,
      lambda ns, g, out, x, index, src, dim: ns.scatter(g, index, 0.0, dim=dim), None,
      lambda ns, g, out, x, index, src, dim: ns.gather(g, index, dim=dim),
      saves=("index", "", "index"),
      inputs=("input", "index", "src"), attrs=(AttrSpec("dim", "int", required=True),),
      dtype=_scatter_dtype, backward=_scatter_name, method=False,
      out_shape=lambda x, index, src, dim: tuple(x.shape),
      doc="a copy of input with src (a tensor, or a value) written at index along dim "
          "(scatter(input, dim, index, src))",
      out_bound=_SCATTER_SHAPE)
defop("scatter_add", _scatter_add,
      lambda ns, g, out, x, index, src, dim: g, None,
      lambda ns, g, out, x, index, src, dim: ns.gather(g, index, dim=dim),
      saves=("", "", "index"),
      inputs=("input", "index", "src"), attrs=(AttrSpec("dim", "int", required=True),),
      dtype=_scatter_dtype, method=False,
      out_shape=lambda x, index, src, dim: tuple(x.shape),
      doc="a copy of input with src added at index along dim, repeats accumulating "
          "(scatter_add(input, dim, index, src))",
      out_bound=_SCATTER_SHAPE)


def _index_select(x: Any, index: Any, dim: int) -> Any:
    x = np.asarray(x)
    index = np.asarray(index)
    if index.dtype.kind not in _INT_KINDS:
        raise errors.InvalidArgumentError("index_select(): Expected dtype int32 or int64 for index")
    if index.ndim > 1:
        raise errors.OutOfRangeIndexError("index_select(): Index is supposed to be a vector")
    axis = wrap_dim(dim, x.ndim)
    n = x.shape[axis] if x.ndim else 1
    bad = (index < 0) | (index >= n)
    if bad.any():
        if axis != 1:
            raise errors.OutOfRangeIndexError("index out of range in self")
        # torch's CPU kernel has a separate path (and message) for dim 1
        raise errors.InvalidArgumentError(
            f"INDICES element is out of DATA bounds, id={int(index[bad].flat[0])} axis_dim={n}")
    if x.ndim == 0:
        return x.reshape(1)[index.reshape(-1)].reshape(index.shape)
    return np.take(x, index.reshape(-1), axis=axis)


def _index_select_vjp(ns: Any, g: Any, out: Any, x: Any, index: Any, dim: int) -> Any:
    if x.ndim == 0:
        return ns.sum(g)
    return ns.index_backward(g, ns.reshape(index, shape=(1, -1)), input_sizes=x.shape,
                             dim=wrap_dim(dim, x.ndim))


def _index_select_shape(x: Any, index: Any, dim: int) -> tuple[int, ...]:
    if x.ndim == 0:
        return tuple(index.shape)
    if index.ndim > 1:
        return ()  # the forward refuses it with torch's message
    axis = wrap_dim(dim, x.ndim)
    return (*x.shape[:axis], index.numel(), *x.shape[axis + 1:])


defop("index_select", _index_select, _index_select_vjp, None,
      saves=("index input.shape", ""),
      inputs=("input", "index"), attrs=(AttrSpec("dim", "int", required=True),),
      doc="the slices at index along dim (index_select(input, dim, index))",
      out_bound=_indexed(_index_select_shape))


# --- embedding -----------------------------------------------------------------------------------

# how torch's embedding names an index dtype it refuses
_EMBEDDING_TYPE_NAMES = {"float32": "torch.FloatTensor", "float64": "torch.DoubleTensor",
                         "bool": "CPUBoolType"}


def _embedding(weight: Any, indices: Any, padding_idx: int = -1,
               scale_grad_by_freq: bool = False) -> Any:
    weight, indices = np.asarray(weight), np.asarray(indices)
    if indices.dtype.kind not in _INT_KINDS:
        name = _EMBEDDING_TYPE_NAMES.get(dtypes.from_numpy(indices.dtype).name, "")
        raise errors.InvalidArgumentError(
            "Expected tensor for argument #1 'indices' to have one of the following scalar "
            f"types: Long, Int; but got {name} instead (while checking arguments for embedding)")
    if weight.ndim != 2:
        raise errors.InvalidArgumentError("'weight' must be 2-D")
    if ((indices < 0) | (indices >= weight.shape[0])).any():
        raise errors.OutOfRangeIndexError("index out of range in self")
    return np.take(weight, indices, axis=0)


def _embedding_vjp(ns: Any, g: Any, out: Any, weight: Any, indices: Any,
                   padding_idx: int, scale_grad_by_freq: bool) -> Any:
    return ns.embedding_dense_backward(g, indices, num_weights=weight.shape[0],
                                       padding_idx=padding_idx,
                                       scale_grad_by_freq=scale_grad_by_freq)


def _embedding_shape(weight: Any, indices: Any, padding_idx: int = -1,
                     scale_grad_by_freq: bool = False) -> tuple[int, ...]:
    if weight.ndim != 2:
        return ()  # the forward refuses it with torch's message
    return (*indices.shape, weight.shape[1])


defop("embedding", _embedding, _embedding_vjp, None,
      saves=("indices weight.shape", ""),
      inputs=("weight", "indices"),
      attrs=(AttrSpec("padding_idx", "int", -1), AttrSpec("scale_grad_by_freq", "bool", False)),
      method=False, doc="the rows of weight that indices pick (nn.functional.embedding; the "
      "padding_idx row gets no gradient; scale_grad_by_freq divides each row's gradient by "
      "how often indices picked it)", out_bound=_indexed(_embedding_shape))


def _embedding_dense_backward(g: Any, indices: Any, num_weights: int,
                              padding_idx: int = -1, scale_grad_by_freq: bool = False) -> Any:
    # torch's CPU kernel: each weight row adds the rows of g that picked it, in index order
    # (np.add.at's order), the padding row's never
    g, indices = np.asarray(g), np.asarray(indices)
    if indices.dtype.kind not in _INT_KINDS:
        raise errors.InvalidArgumentError(
            "embedding_dense_backward(): Expected dtype int32 or int64 for indices")
    if g.ndim == 0 or g.shape[:-1] != indices.shape:
        raise errors.InvalidArgumentError(
            f"embedding_dense_backward(): grad of shape {_shape_str(g.shape)} does not match "
            f"indices of shape {_shape_str(indices.shape)}")
    if num_weights < 0 or ((indices < 0) | (indices >= num_weights)).any():
        raise errors.OutOfRangeIndexError("index out of range in self")
    indices = indices.reshape(-1)
    rows = g.reshape(indices.size, g.shape[-1])
    keep = indices != padding_idx
    if scale_grad_by_freq:  # torch's kernel: each picked row's gradient over its count
        counts = np.bincount(indices, minlength=num_weights)[indices]
        rows = rows / counts.astype(g.dtype)[:, None]
    out = np.zeros((num_weights, rows.shape[1]), dtype=g.dtype)
    np.add.at(out, indices[keep], rows[keep])
    return out


def _embedding_double_backward(ns: Any, gg: Any, out: Any, g: Any, indices: Any,
                               num_weights: int, padding_idx: int,
                               scale_grad_by_freq: bool) -> Any:
    # torch's embedding_dense_double_backward, which ignores scale_grad_by_freq
    picked = ns.embedding(gg, indices)  # the rows each position added, padding positions none
    if padding_idx >= 0:
        picked = ns.masked_fill(picked, ns.unsqueeze(ns.eq(indices, padding_idx), dim=-1), 0.0)
    return ns.reshape(picked, shape=g.shape)


def _embedding_dense_backward_shape(g: Any, indices: Any, num_weights: int,
                                    padding_idx: int = -1,
                                    scale_grad_by_freq: bool = False) -> tuple[int, ...]:
    if num_weights < 0 or not g.ndim:
        return ()  # the forward refuses it
    return (num_weights, g.shape[-1])


defop("embedding_dense_backward", _embedding_dense_backward, _embedding_double_backward, None,
      saves=("indices grad_output.shape", ""), inputs=("grad_output", "indices"),
      attrs=(AttrSpec("num_weights", "int", required=True),
             AttrSpec("padding_idx", "int", -1), AttrSpec("scale_grad_by_freq", "bool", False)),
      method=False, doc="embedding's gradient: the rows of grad_output added into the weight "
      "rows that indices picked (the padding row's never)",
      out_bound=_indexed(_embedding_dense_backward_shape))


def _masked_fill(x: Any, mask: Any, value: Any) -> Any:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise errors.InvalidArgumentError(
            "masked_fill_ only supports boolean masks, but got mask with dtype "
            f"{_C_TYPE[dtypes.from_numpy(mask.dtype).name]}")
    if isinstance(value, np.ndarray) and value.ndim:
        raise errors.InvalidArgumentError(
            "masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
            f"{value.ndim} dimension(s).")
    x = np.asarray(x)
    broadcast_shape(mask, x)
    return np.where(mask, np.asarray(dtypes.fill_value(value, x.dtype)).astype(x.dtype), x)


_C_TYPE = {"float32": "float", "float64": "double", "int32": "int", "int64": "long int",
           "bool": "bool", "uint8": "unsigned char", "int8": "signed char", "int16": "short int"}


@names_backward("MaskedFillBackward0", "MaskedFillBackward1")
def _masked_fill_name(args: Sequence[Any], attrs: Any) -> str:
    return "MaskedFillBackward1" if len(args) > 2 and isinstance(args[2], Tensor) else (
        "MaskedFillBackward0")


defop("masked_fill", _masked_fill,
      lambda ns, g, out, x, mask, value: ns.where(mask, 0.0, g), None,
      lambda ns, g, out, x, mask, value: ns.where(mask, g, 0.0),
      saves=("mask", "", "mask"),
      inputs=("input", "mask", "value"), backward=_masked_fill_name, inplace=True,
      out_shape=broadcast_shape,
      doc="value where mask is true (mask broadcasts)")

# --- x[index]: torch's applySlicing over the registered ops --------------------------------------


def _items(index: Any) -> tuple[tuple[Any, ...], bool]:
    """The index as a tuple of items, and whether it was a bare slice (torch keeps `x[:]`)."""
    items, single = index_items(index, _is_tensor, stacklevel=3)
    return items, single and isinstance(index, slice)


def _is_tensor(v: Any) -> bool:
    return isinstance(v, Tensor)


def _as_index_tensor(item: Any) -> Tensor:
    if isinstance(item, Tensor):
        if item.dtype.is_floating_point:
            raise errors.OutOfRangeIndexError(
                "tensors used as indices must be long, int, byte or bool tensors")
        return item
    data = np.asarray(item)
    if data.dtype != np.bool_:
        if data.dtype.kind not in "iuf" and data.size:
            raise errors.InvalidTypeError(f"new(): invalid data type '{data.dtype.kind}'")
        data = data.astype(np.int64)  # torch truncates a list of floats to longs
    return Tensor._make(data)


def _invalid_item(item: Any) -> errors.EngineError:
    if isinstance(item, str):
        return errors.InvalidTypeError("new(): invalid data type 'str'")
    return errors.OutOfRangeIndexError(
        "only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are "
        f"valid indices (got {type(item).__name__})")


def _specified(items: Sequence[Any]) -> int:
    n = 0
    for it in items:
        if isinstance(it, Tensor):
            n += it.ndim if it.dtype is dtypes.bool_ else 1
        elif not (it is None or it is Ellipsis or isinstance(it, (bool, np.bool_))):
            n += 1
    return n


def _scalar_index(item: Any) -> int | None:
    if is_int(item):
        return int(item)
    if (isinstance(item, Tensor) and item.ndim == 0 and item.dtype.category == 1):
        return int(item.item())
    return None


def _advanced(x: Tensor, adv: list[tuple[int, Tensor]]) -> Tensor:
    """One `index` op for the collected index tensors (at their dims of `x`)."""
    if len(adv) == 1 and adv[0][1].dtype is dtypes.bool_:
        return FUNCTIONS["index"](x, adv[0][1], adv[0][0])
    dims: list[int] = []
    rows: list[Tensor] = []
    for d, t in adv:
        if t.dtype is dtypes.bool_:
            index_key(x.shape, t._data, d)  # torch's mask shape errors
            pos = FUNCTIONS["nonzero"](t)
            rows.extend(FUNCTIONS["select"](pos, 1, j) for j in range(t.ndim))
            dims.extend(range(d, d + t.ndim))
        else:
            rows.append(t)
            dims.append(d)
    try:
        shape = broadcast_shapes(*(r.shape for r in rows))
    except ValueError:
        raise errors.OutOfRangeIndexError(
            "shape mismatch: indexing tensors could not be broadcast together with shapes "
            + ", ".join(_shape_str(r.shape) for r in rows)) from None
    stacked = FUNCTIONS["stack"]([FUNCTIONS["expand"](r, shape) for r in rows], 0)
    if dims == list(range(dims[0], dims[0] + len(dims))):
        return FUNCTIONS["index"](x, stacked, dims[0])
    # Not adjacent: torch (like numpy) puts the indexed dims first.
    rest = [d for d in range(x.ndim) if d not in dims]
    moved = FUNCTIONS["permute"](x, (*dims, *rest))
    return FUNCTIONS["index"](moved, stacked, 0)


def _check_zero_dim(index: Any) -> None:
    """torch's refusals of a lone int or slice indexing a 0-dim tensor (its applySelect and
    applySlice checks, before the count of indices)."""
    if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
        if index == 0:
            raise errors.OutOfRangeIndexError(
                "invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
                "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number")
        raise errors.OutOfRangeIndexError(
            f"index {int(index)} is out of bounds for dimension 0 with size 0")
    if isinstance(index, slice):
        raise errors.OutOfRangeIndexError("slice() cannot be applied to a 0-dim tensor.")


def _apply_index(self: Tensor, index: Any) -> tuple[Tensor, bool]:
    """x[index] as registered ops; also whether an advanced (tensor) index was involved."""
    if self.ndim == 0:
        _check_zero_dim(index)
    items, bare_slice = _items(index)
    # torch reads any sequence among the items (a list, a tuple, a range) as a list of indices
    items = tuple(_as_index_tensor(it) if isinstance(it, (list, tuple, range, np.ndarray)) else it
                  for it in items)
    ndim = self.ndim
    specified = _specified(items)
    if specified > ndim:
        raise errors.OutOfRangeIndexError(f"too many indices for tensor of dimension {ndim}")
    result = self
    dim = real_dim = 0
    adv: list[tuple[int, Tensor]] = []
    for it in items:
        i = _scalar_index(it)
        if i is not None:
            # several ellipses each skip ndim - specified dims (torch's rule), which can pass the
            # last dim: torch then reports a size of 0
            n = result.shape[dim] if dim < result.ndim else 0
            if not -n <= i < n:
                raise errors.OutOfRangeIndexError(
                    f"index {i} is out of bounds for dimension {real_dim} with size {n}")
            result = FUNCTIONS["select"](result, dim, i)
            real_dim += 1
        elif isinstance(it, slice):
            start, stop, step = (None if v is None else _slice_int(v)
                                 for v in (it.start, it.stop, it.step))
            if step == 0:
                raise errors.InvalidValueError("slice step cannot be zero")
            if step is not None and step < 0:
                raise errors.InvalidValueError("step must be greater than zero")
            if dim >= result.ndim:  # past the last dim (several ellipses): torch ignores it
                dim += 1
                real_dim += 1
                continue
            n = result.shape[dim]
            # torch skips a slice that keeps everything, unless it is the whole index (x[:])
            full = (start or 0) == 0 and (stop is None or stop >= n) and (step or 1) == 1
            if bare_slice or not full:
                result = FUNCTIONS["slice"](result, dim, start, stop, step or 1)
            dim += 1
            real_dim += 1
        elif it is None:
            result = FUNCTIONS["unsqueeze"](result, dim)
            dim += 1
        elif it is Ellipsis:
            dim += ndim - specified
            real_dim += ndim - specified
        elif isinstance(it, (bool, np.bool_)) or (
                isinstance(it, Tensor) and it.ndim == 0 and it.dtype is dtypes.bool_):
            result = FUNCTIONS["unsqueeze"](result, dim)
            adv.append((dim, Tensor._make(np.array([bool(it)]))))
            dim += 1
        elif isinstance(it, Tensor):
            adv.append((dim, it))
            step_dims = it.ndim if it.dtype is dtypes.bool_ else 1
            dim += step_dims
            real_dim += step_dims
        else:
            raise _invalid_item(it)
    if adv:
        return _advanced(result, adv), True
    if result is self:
        result = FUNCTIONS["alias"](self)
    return result, False


def _slice_int(v: Any) -> int:
    if is_int(v) or isinstance(v, Tensor):
        return int(v)
    raise errors.InvalidTypeError(
        "slice indices must be integers or None or have an __index__ method")


@public("__getitem__", function=False)
def getitem(self: Tensor, index: Any) -> Tensor:
    """x[index]: ints, slices (step > 0), None, `...`, int lists/tensors and bool masks."""
    return _apply_index(self, index)[0]


@public("__setitem__", function=False)
def setitem(self: Tensor, index: Any, value: Any) -> None:
    """x[index] = value, in place: `put` at the flat positions x[index] selects."""
    with grad_mode.no_grad():
        numbering = Tensor._make(np.arange(self.numel(), dtype=np.int64).reshape(self.shape))
        positions, advanced = _apply_index(numbering, index)
    if (not advanced and grad_mode.is_grad_enabled() and self._rg and self.grad_fn is None):
        raise errors.InplaceError(messages.VIEW_OF_LEAF_INPLACE)
    source = value
    if isinstance(value, Tensor):
        vshape = tuple(value.shape)
        while len(vshape) > positions.ndim and vshape[0] == 1:
            vshape = vshape[1:]  # torch drops leading size-1 dims of the value
        if vshape != tuple(value.shape):
            value = FUNCTIONS["reshape"](value, vshape)
        if advanced:
            try:
                broadcast_shapes(vshape, tuple(positions.shape))
                if len(vshape) > positions.ndim:
                    raise ValueError
            except ValueError:
                raise errors.InvalidArgumentError(
                    f"shape mismatch: value tensor of shape {_shape_str(value.shape)} cannot be "
                    f"broadcast to indexing result of shape {_shape_str(positions.shape)}"
                ) from None
        source = FUNCTIONS["expand"](value, tuple(positions.shape))
    elif not isinstance(value, (bool, int, float, np.generic)):
        raise errors.InvalidTypeError(
            f"can't assign a {type(value).__name__} to a {self.dtype.torch_tensor_name}")
    _inplace(OPS["put"], self, (positions, source), {"accumulate": False})
    if self.grad_fn is not None and self.grad_fn.op is OPS["put"]:
        self.grad_fn._name = "IndexPutBackward0" if advanced else "CopySlices"

# --- index_add -----------------------------------------------------------------------------------


def _index_add_dtype(args: Sequence[Any], attrs: Any) -> tuple[Any, Any]:
    """input's dtype; source must have it, and alpha must be integral for integral tensors."""
    x, source = args[0], args[2]
    sd = source.dtype if isinstance(source, Tensor) else None
    if sd is not None and sd is not x.dtype:
        raise errors.InvalidArgumentError(
            f"index_add_(): self ({TYPE_WORDS[x.dtype.name]}) and source "
            f"({TYPE_WORDS[sd.name]}) must have the same scalar type")
    if not x.dtype.is_floating_point and isinstance(attrs.get("alpha"), float):
        raise errors.InvalidArgumentError(
            "For integral input tensors, argument alpha must not be a floating point number.")
    return None, x.dtype


def _index_add_key(shape: Sequence[int], index: Any, source_shape: Sequence[int],
                   dim: int) -> tuple[int, Any]:
    """(axis, index as intp) of index_add(dim, index, source) into a tensor of `shape`, with
    torch's checks and messages in torch's order."""
    index = np.asarray(index)
    axis = wrap_dim(dim, len(shape))
    if index.ndim > 1:
        kind = TYPE_WORDS.get(dtypes.from_numpy(index.dtype).name, str(index.dtype))
        raise errors.OutOfRangeIndexError(
            f"index_add_(): Index is supposed to be a vector, but got dim: {index.ndim} with type: "
            f"{kind} and size: {_shape_str(index.shape)}")
    if index.dtype.kind not in _INT_KINDS:
        kind = TYPE_WORDS.get(dtypes.from_numpy(index.dtype).name, str(index.dtype))
        raise errors.InvalidArgumentError(
            f"index_add_(): Expected dtype int32/int64 for index but got: {kind}")
    ndim = len(source_shape)
    if not (axis == 0 or axis < ndim):
        raise errors.OutOfRangeIndexError(
            f"index_add_(): Indexing dim {axis} is out of bounds of the source tensor with dim "
            f"{ndim}")
    count = 1 if ndim == 0 else source_shape[axis]
    if index.size != count:
        raise errors.InvalidArgumentError(
            f"index_add_(): Number of indices ({index.size}) should be equal to "
            f"source.size(dim): ({count}), for dim: {axis}")
    rest, source_rest = list(shape), list(source_shape)
    if ndim and rest:
        del rest[axis], source_rest[axis]
    if rest != source_rest:
        raise errors.InvalidArgumentError(
            "source tensor shape must match self tensor shape, excluding the specified "
            f"dimension. Got self.shape = {_shape_str(shape)} source.shape = "
            f"{_shape_str(source_shape)}")
    n = shape[axis] if shape else 1
    bad = (index < 0) | (index >= n)
    if bad.any():
        raise errors.InvalidArgumentError(
            f"index {int(index[bad].flat[0])} is out of bounds for dimension {axis} with size {n}")
    return axis, index.reshape(-1).astype(np.intp)


def _index_add(x: Any, index: Any, source: Any, dim: int, alpha: Any = 1) -> Any:
    x, source = np.asarray(x), np.asarray(source)
    axis, rows = _index_add_key(x.shape, index, source.shape, dim)
    out = np.array(x, copy=True)
    values = source if alpha == 1 else source * np.asarray(alpha, x.dtype)
    if x.ndim == 0:  # then source is 0-d too, and index one element
        return (out + values).astype(x.dtype, copy=False)
    np.add.at(out, (slice(None),) * axis + (rows,), values)  # in index order, as torch's loop
    return out


def _index_add_source_vjp(ns: Any, g: Any, out: Any, x: Any, index: Any, source: Any, dim: int,
                          alpha: Any) -> Any:
    picked = ns.index_select(g, index, dim=dim)
    if len(source.shape) == 0:
        picked = ns.reshape(picked, shape=())
    return picked if alpha == 1 else picked * alpha


defop("index_add", _index_add,
      lambda ns, g, out, x, index, source, dim, alpha: g, None, _index_add_source_vjp,
      saves=("", "", "index source.shape"),
      inputs=("input", "index", "source"),
      attrs=(AttrSpec("dim", "int", required=True), AttrSpec("alpha", "scalar", 1)),
      dtype=_index_add_dtype, inplace=True, method=False,
      doc="a copy of input with alpha * source added at index along dim, repeats accumulating "
          "(index_add(input, dim, index, source))",
      out_bound=_indexed(lambda x, index, source, dim, alpha=1: tuple(x.shape)))

# --- repeat_interleave's indices, unique ---------------------------------------------------------


def _repeats(repeats: Any) -> Any:
    """repeats as a 1-D int64 array (to count with), with torch's checks."""
    r = np.asarray(repeats)
    if r.dtype.kind not in _INT_KINDS:
        raise errors.NotImplementedFunctionError(
            f"\"repeat_interleave_cpu\" not implemented for "
            f"'{TYPE_WORDS.get(dtypes.from_numpy(r.dtype).name, str(r.dtype))}'")
    if r.ndim != 1:
        raise errors.InvalidArgumentError("repeat_interleave only accept 1D vector as repeat")
    if (r < 0).any():
        raise errors.InvalidArgumentError("repeats can not be negative")
    return r.astype(np.int64, copy=False)


def _repeat_count(repeats: Any) -> int:
    """How many indices repeats makes (exact, as a Python int: an int64 sum may overflow)."""
    r = np.asarray(repeats._data if isinstance(repeats, Tensor) else repeats)
    if r.dtype.kind not in _INT_KINDS or r.ndim != 1 or (r < 0).any():
        return 0  # the forward refuses it
    if r.size and int(r.max()) * r.size >= 2 ** 62:
        return int(np.sum(r.astype(object)))  # an int64 sum could overflow
    return int(np.sum(r, dtype=np.int64))


def _repeat_interleave_indices(repeats: Any, output_size: int | None = None) -> Any:
    r = _repeats(repeats)
    total = _repeat_count(r)
    if output_size is not None and output_size != total:
        raise errors.InvalidArgumentError("allocated size does not match required size")
    return np.repeat(np.arange(r.size, dtype=np.asarray(repeats).dtype), r)


def _repeat_interleave_bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
    """The indices, counted before anything is allocated (sizes from the wire are checked
    against the limits here), and np.repeat's arange of the repeats' length."""
    count = _repeat_count(args[0])
    return limits.with_scratch(limits.shape_bound((count,), 8), numel_of(args[0]) * 8)


defop("repeat_interleave", _repeat_interleave_indices, None,
      inputs=("repeats",), attrs=(AttrSpec("output_size", "optional_int", None),),
      method=False,
      doc="i repeated repeats[i] times, for each i (torch.repeat_interleave(repeats); the "
          "input forms are surface spellings over index_select)",
      out_bound=_repeat_interleave_bound)


def _unique_groups(keys: Any) -> tuple[Any, Any, Any]:
    """(order, starts, inverse) for the rows of 2-D `keys` (one row per element or slice):
    the stable lexicographic order, where each group of equal rows starts in it, and each row's
    group. NaN equals nothing, as torch's unique (each NaN its own group)."""
    n = keys.shape[0]
    if n == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0, np.int64)
    order = _lexsort_rows(keys)
    ranked = keys[order]
    differs = np.ones(n, dtype=bool)
    if n > 1:
        with np.errstate(invalid="ignore"):
            differs[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    starts = np.flatnonzero(differs)
    group = np.cumsum(differs) - 1
    inverse = np.empty(n, np.int64)
    inverse[order] = group
    return order, starts, inverse


# Columns numpy's lexsort sorts by at once (~2.7 KB of its memory each, whatever the rows).
_KEYS_PER_SORT = 1024


def _lexsort_rows(keys: Any) -> Any:
    """The stable lexicographic order of 2-D `keys`' rows: numpy's lexsort of at most
    `_KEYS_PER_SORT` columns at a time, the last ones first (each pass stable, so the order is
    the whole lexsort's), the interrupt check between passes. One lexsort of every column kept
    an iterator per column: 2 rows of 2**25 columns took 23 GB."""
    n, k = keys.shape
    if k <= _KEYS_PER_SORT:
        return np.lexsort(keys.T[::-1]) if k else np.arange(n)
    order = np.arange(n)
    for end in range(k, 0, -_KEYS_PER_SORT):
        limits.tick()
        block = keys[order, max(0, end - _KEYS_PER_SORT):end]
        order = order[np.lexsort(block.T[::-1])]
    return order


def _unique(x: Any, sorted: bool = True) -> Any:
    # CPU torch sorts whether or not sorted=True is asked (gradserve does the same)
    flat = np.asarray(x).reshape(-1)
    order, starts, inverse = _unique_groups(flat.reshape(-1, 1))
    counts = np.diff(np.append(starts, flat.size)).astype(np.int64)
    return flat[order][starts], inverse.reshape(np.shape(x)), counts


def _unique_dim(x: Any, dim: int, sorted: bool = True) -> Any:
    x = np.asarray(x)
    axis = wrap_dim(dim, x.ndim)
    if x.ndim and any(n == 0 for i, n in enumerate(x.shape) if i != axis):
        raise errors.InvalidArgumentError(
            "There are 0 sized dimensions, and they aren't selected, so unique cannot be applied")
    moved = np.moveaxis(x, axis, 0) if x.ndim else x.reshape(1)
    rows = moved.reshape(moved.shape[0], int(np.prod(moved.shape[1:])))
    order, starts, inverse = _unique_groups(rows)
    counts = np.diff(np.append(starts, rows.shape[0])).astype(np.int64)
    values = np.moveaxis(moved[order[starts]], 0, axis) if x.ndim else moved[order[starts]]
    return values, inverse, counts


def _unique_bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
    """_unique2's results: at most input's elements as values and counts, its inverse (int64),
    exact in the largest (the inverse); and the sort's scratch (order, ranked copy, marks)."""
    x = args[0]
    n = numel_of(x)
    item = out_dtype.np.itemsize
    results = limits.combined(limits.shape_bound((n,), item), limits.combined(
        limits.shape_bound(tuple(x.shape), 8), limits.shape_bound((n,), 8)))
    return limits.sort_work(limits.with_scratch(results, n * (item + 8 * 4)), n, n)


def _unique_dim_bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
    """unique_dim's results, exact: the unique slices are counted first (the sort's work, in
    scratch no larger than the input's), then the values, inverse and counts they make."""
    x = args[0]
    data = np.asarray(x._data)
    try:
        axis = wrap_dim(attrs["dim"], data.ndim)
    except errors.EngineError:
        return limits.shape_bound((), 8)  # the forward refuses it
    moved = np.moveaxis(data, axis, 0) if data.ndim else data.reshape(1)
    rest = int(np.prod(moved.shape[1:]))
    # the sort's work, refused before the sort that counts the groups runs here
    work = limits.sort_work(limits.Bound(0, 0, 0), data.size, moved.shape[0], rest).work
    limits.check_work(work, "unique_dim() result")
    groups = 0
    if rest or not moved.shape[0]:
        groups = len(_unique_groups(moved.reshape(moved.shape[0], rest))[1])
    values = (groups, *moved.shape[1:])
    results = limits.combined(limits.shape_bound(values, out_dtype.np.itemsize),
                              limits.combined(limits.shape_bound((moved.shape[0],), 8),
                                              limits.shape_bound((groups,), 8)))
    return limits.with_scratch(results, data.nbytes * 2 + moved.shape[0] * 8 * 4)._replace(
        work=work)


def _no_derivative(name: str) -> Any:
    def rule(ns: Any, g: Any, out: Any, x: Any, **attrs: Any) -> Any:
        raise errors.NotImplementedFunctionError(f"the derivative for '{name}' is not implemented.")
    return rule


defop("_unique2", _unique, _no_derivative("_unique2"), saves="",
      attrs=(AttrSpec("sorted", "bool", True),), n_outputs=3, differentiable_outputs=(0,),
      method=False, backward="Unique2Backward0",
      doc="(sorted unique values, each element's index into them, their counts); no "
          "derivative (torch's)",
      out_bound=_unique_bound)
defop("unique_dim", _unique_dim, _no_derivative("unique_dim"), saves="",
      attrs=(AttrSpec("dim", "int", required=True), AttrSpec("sorted", "bool", True)),
      n_outputs=3, differentiable_outputs=(0,), method=False, backward="UniqueDimBackward0",
      doc="(the unique slices along dim, sorted, each slice's index into them, their counts); "
          "no derivative (torch's)",
      out_bound=_unique_dim_bound)

# --- bincount ------------------------------------------------------------------------------------


def _bincount_check(x: Any, weights: Any, minlength: int) -> None:
    """torch's checks of bincount's arguments, in its order."""
    if x.dtype.kind not in _INT_KINDS:
        raise errors.NotImplementedFunctionError(
            f"\"bincount_cpu\" not implemented for "
            f"'{TYPE_WORDS.get(dtypes.from_numpy(x.dtype).name, str(x.dtype))}'")
    if minlength < 0:
        raise errors.InvalidArgumentError("minlength should be >= 0")
    if x.ndim != 1 or (x.size and int(x.min()) < 0):
        raise errors.InvalidArgumentError(
            "bincount only supports 1-d non-negative integral inputs.")
    if weights is not None and (np.ndim(weights) != 1 or np.shape(weights)[0] != x.shape[0]):
        raise errors.InvalidArgumentError(
            "weights should be 1-d and have the same length as input")


def _bincount(x: Any, weights: Any = None, minlength: int = 0) -> Any:
    x = np.asarray(x)
    _bincount_check(x, weights, minlength)
    if weights is None:
        return np.bincount(x, minlength=minlength).astype(np.int64, copy=False)
    w = np.asarray(weights)
    counts = np.bincount(x, weights=w.astype(np.float64), minlength=minlength)
    return counts.astype(w.dtype if w.dtype.kind == "f" else np.float64, copy=False)


def _bincount_dtype(args: Sequence[Any], attrs: Any) -> tuple[Any, Any]:
    weights = args[1] if len(args) > 1 else None
    if not isinstance(weights, Tensor):
        return None, dtypes.int64
    return None, weights.dtype if weights.dtype.is_floating_point else dtypes.float64


def _bincount_bound(args: Sequence[Any], attrs: Any, out_dtype: Any) -> limits.Bound:
    """The counts, exact: the largest value read before anything is allocated (a value from
    the wire can ask for any size, and the limits judge it here); float64 scratch of the
    weights."""
    x = np.asarray(args[0]._data if isinstance(args[0], Tensor) else args[0])
    minlength = attrs.get("minlength", 0)
    n = 0
    if x.dtype.kind in _INT_KINDS and x.ndim == 1 and minlength >= 0:
        n = max(int(x.max()) + 1 if x.size else 0, minlength)
    return limits.with_scratch(limits.shape_bound((max(n, 0),), out_dtype.np.itemsize),
                               max(n, 0) * 8 + numel_of(args[0]) * 8)


def _bincount_no_derivative(ns: Any, g: Any, out: Any, x: Any, weights: Any,
                            minlength: int) -> Any:
    raise errors.AutogradError("derivative for aten::bincount is not implemented")


defop("bincount", _bincount, None, _bincount_no_derivative, saves=("", ""),
      inputs=("input", "weights?"), attrs=(AttrSpec("minlength", "int", 0),),
      dtype=_bincount_dtype, backward="NotImplemented",
      doc="how often each value 0..max (at least minlength) occurs in input, or the sum of its "
          "weights; no derivative (torch's)",
      out_bound=_bincount_bound)
