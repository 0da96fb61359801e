"""Shape ops: reshape, expand, squeeze, permute, cat, split, ... and `sum_to_size`, the gradient
plumbing of broadcasting. torch's varargs spellings (`x.reshape(2, 3)`), `broadcast_to`, `split`
by size or sections, `chunk`, `T` are written once in gradserve.surface.spellings (installed by
engine/spellings.py); the engine-only alias `view` is at the end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradserve.surface import messages

from . import cascade, dtypes, errors, limits
from .registry import AttrSpec, defop, names_backward, temporaries


def _shape_str(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def infer_shape(shape: Sequence[int], numel: int) -> tuple[int, ...]:
    """Resolve one -1 in `shape` for `numel` elements, with torch's errors."""
    shape = tuple(shape)
    if shape.count(-1) > 1:
        raise errors.InvalidArgumentError("only one dimension can be inferred")
    for d in shape:
        if d < -1:
            raise errors.InvalidArgumentError(f"invalid shape dimension {d}")
    known = limits.numel([d for d in shape if d != -1])  # (past 2**64 not exact: nor equal)
    if -1 in shape:
        if known == 0 or numel % known:
            raise errors.InvalidArgumentError(
                f"shape '{_shape_str(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if d == -1 else d for d in shape)
    elif known != numel:
        raise errors.InvalidArgumentError(
            f"shape '{_shape_str(shape)}' is invalid for input of size {numel}")
    return shape


def _reshape(x: Any, shape: Sequence[int]) -> Any:
    return np.reshape(x, infer_shape(shape, x.size))


defop("reshape", _reshape, lambda ns, g, out, x, shape: ns.reshape(g, shape=x.shape),
      saves="input.shape",
      attrs=(AttrSpec("shape", "ints", required=True),), backward="ViewBackward0",
      out_shape=lambda x, shape: infer_shape(shape, x.numel()),
      doc="the same data with another shape", view=True)


def expand_shape(shape: Sequence[int], size: Sequence[int],
                 type_name: str = "torch.FloatTensor") -> tuple[int, ...]:
    """The shape `expand(size)` gives a tensor of `shape`, with torch's errors."""
    size = tuple(size)
    if len(size) < len(shape):
        raise errors.InvalidArgumentError(
            f"expand({type_name}{{{_shape_str(shape)}}}, size={_shape_str(size)}): the number of "
            f"sizes provided "
            f"({len(size)}) must be greater or equal to the number of dimensions in the tensor "
            f"({len(shape)})")
    lead = len(size) - len(shape)
    out = []
    for i, s in enumerate(size):
        have = shape[i - lead] if i >= lead else None
        if s == -1:
            if have is None:
                raise errors.InvalidArgumentError(
                    f"The expanded size of the tensor (-1) isn't allowed in a leading, "
                    f"non-existing dimension {i}")
            out.append(have)
        elif have is not None and have != 1 and have != s:
            raise errors.InvalidArgumentError(
                f"The expanded size of the tensor ({s}) must match the existing size ({have}) "
                f"at non-singleton dimension {i}.  Target sizes: {_shape_str(size)}.  Tensor "
                f"sizes: {_shape_str(shape)}")
        elif s < 0:
            raise errors.InvalidArgumentError(f"invalid size {s} in expand")
        else:
            out.append(s)
    return tuple(out)


def _expand(x: Any, size: Sequence[int]) -> Any:
    shape = expand_shape(x.shape, size, dtypes.from_numpy(x.dtype).torch_tensor_name)
    out = np.broadcast_to(x, shape)
    if isinstance(x, np.ndarray) and x.flags.writeable and out.size == x.size and all(
            st or n <= 1 for st, n in zip(out.strides, out.shape)):
        # no element repeated, only leading size-1 dims added: a writable view (torch allows
        # in-place writes there); reshape adding leading 1s never copies
        return x.reshape(shape)
    return out  # read-only: in-place ops refuse it with torch's internal-overlap message


defop("expand", _expand,
      lambda ns, g, out, x, size: ns.sum_to_size(g, size=x.shape),
      saves="input.shape",
      attrs=(AttrSpec("size", "ints", required=True),),
      out_shape=lambda x, size: expand_shape(x.shape, size, x.dtype.torch_tensor_name),
      doc="a broadcast view with the given size (-1 keeps a dimension)", view=True)


def sum_to_size(g: Any, size: Sequence[int]) -> Any:
    """Sum `g` over the dimensions broadcasting added or stretched to reach it from `size`."""
    size = tuple(size)
    if g.shape == size:
        return g
    lead = g.ndim - len(size)
    if lead < 0:
        raise errors.InvalidArgumentError(
            f"size {_shape_str(size)} is not expandable to size {_shape_str(g.shape)}")
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(size) if s == 1 and g.shape[lead + i] != 1)
    # torch's sum_to: sum(dims, keepdim=True) in its cascade order (a bias's gradient is torch's
    # to the last bit), then a view without the leading dims
    out = cascade.float_sum(g, axes, keepdims=True) if axes else g
    if lead:
        out = out.reshape(out.shape[lead:])
    if out.shape != size:
        raise errors.InvalidArgumentError(
            f"size {_shape_str(size)} is not expandable to size {_shape_str(g.shape)}")
    return out


def _sum_to_size_shape(x: Any, size: Sequence[int]) -> tuple[int, ...]:
    # A sum has no more elements than its input, but for a sum over an empty dim (a 0 summed
    # to 1: a (0, 2**31) tensor to (1, 2**31) makes 2**31 zeros): `size` then, and a bigger
    # `size` that is not expandable to the input is the forward's error.
    size = tuple(size)
    if limits.numel(size) <= x.numel():
        return size
    lead = len(x.shape) - len(size)
    if lead >= 0 and all(s in (d, 1) for s, d in zip(size, x.shape[lead:])):
        return size
    return tuple(x.shape)


@names_backward("SumBackward1", "ViewBackward0")
def _sum_to_size_name(args: Sequence[Any], attrs: Any) -> str:
    # torch sums with keepdim (SumBackward1), then views away leading dims (ViewBackward0).
    return "ViewBackward0" if args and len(attrs["size"]) < args[0].ndim else "SumBackward1"


defop("sum_to_size", sum_to_size, lambda ns, g, out, x, size: ns.expand(g, size=x.shape),
      saves="input.shape",
      attrs=(AttrSpec("size", "ints", required=True),), backward=_sum_to_size_name,
      doc="sum over broadcast dimensions down to size",
      # the cascade sum's scratch, as sum's (ops_reduce._SUM_PLAIN)
      out_bound=temporaries(_sum_to_size_shape, results=2, inputs=1, input_bytes=1))


# --- dims ----------------------------------------------------------------------------------------

def wrap_dim(dim: int, ndim: int) -> int:
    """A possibly negative dim as an axis of an `ndim`-dim tensor, or torch's IndexError."""
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not lo <= dim <= hi:
        raise errors.OutOfRangeIndexError(messages.dim_out_of_range(dim, lo, hi))
    return dim % ndim if ndim else 0


def wrap_dims(dims: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """Several dims wrapped, in the order given, with torch's error for repeats."""
    out = tuple(wrap_dim(d, ndim) for d in ((dims,) if isinstance(dims, int) else dims))
    for i, d in enumerate(out):
        if d in out[:i]:
            raise errors.InvalidArgumentError(f"dim {d} appears multiple times in the list of dims")
    return out


def _back_to_shape(ns: Any, g: Any, out: Any, x: Any, **attrs: Any) -> Any:
    return ns.reshape(g, shape=x.shape)


# --- flatten, squeeze, unsqueeze -----------------------------------------------------------------

def flatten_shape(shape: Sequence[int], start_dim: int, end_dim: int) -> tuple[int, ...]:
    """The shape `flatten(start_dim, end_dim)` gives, with torch's errors."""
    if not shape:
        wrap_dim(start_dim, 0)
        wrap_dim(end_dim, 0)
        return (1,)
    start, end = wrap_dim(start_dim, len(shape)), wrap_dim(end_dim, len(shape))
    if start > end:
        raise errors.InvalidArgumentError(
            "flatten() has invalid args: start_dim cannot come after end_dim")
    n = 1
    for s in shape[start:end + 1]:
        n *= s
    return (*shape[:start], n, *shape[end + 1:])


defop("flatten", lambda x, start_dim=0, end_dim=-1: np.reshape(
          x, flatten_shape(x.shape, start_dim, end_dim)), _back_to_shape,
      saves="input.shape",
      attrs=(AttrSpec("start_dim", "int", 0), AttrSpec("end_dim", "int", -1)),
      backward="ViewBackward0", doc="dims start_dim..end_dim merged into one", view=True,
      out_shape=lambda x, start_dim=0, end_dim=-1: flatten_shape(x.shape, start_dim, end_dim))


def _squeeze_axes(shape: Sequence[int], dim: Any) -> tuple[int, ...]:
    if dim is None:
        return tuple(i for i, s in enumerate(shape) if s == 1)
    return tuple(a for a in wrap_dims(dim, len(shape)) if shape and shape[a] == 1)


def squeeze_shape(shape: Sequence[int], dim: Any) -> tuple[int, ...]:
    """The shape `squeeze(dim)` gives, with torch's errors."""
    axes = _squeeze_axes(shape, dim)
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def unsqueeze_shape(shape: Sequence[int], dim: int) -> tuple[int, ...]:
    """The shape `unsqueeze(dim)` gives, with torch's errors."""
    axis = wrap_dim(dim, len(shape) + 1)
    return (*shape[:axis], 1, *shape[axis:])


@names_backward("SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2")
def _squeeze_name(args: Sequence[Any], attrs: Any) -> str:
    dim = attrs.get("dim")
    return "SqueezeBackward0" if dim is None else (
        "SqueezeBackward1" if isinstance(dim, int) else "SqueezeBackward2")


defop("squeeze", lambda x, dim=None: np.squeeze(x, axis=_squeeze_axes(x.shape, dim)),
      _back_to_shape, attrs=(AttrSpec("dim", "dims", None),), backward=_squeeze_name,
      saves="input.shape",
      doc="size-1 dims removed (all, or those among dim)", view=True,
      out_shape=lambda x, dim=None: squeeze_shape(x.shape, dim))
defop("unsqueeze", lambda x, dim: np.expand_dims(x, wrap_dim(dim, x.ndim + 1)),
      # torch: grad.squeeze(dim), so a double backward through it is a SqueezeBackward1
      lambda ns, g, out, x, dim: ns.squeeze(g, dim=wrap_dim(dim, len(x.shape) + 1)),
      saves="input.shape",
      attrs=(AttrSpec("dim", "int", required=True),), doc="a size-1 dim inserted at dim", view=True,
      out_shape=lambda x, dim: unsqueeze_shape(x.shape, dim))

# --- permute, transpose, t -----------------------------------------------------------------------


def permutation(dims: Sequence[int], ndim: int) -> tuple[int, ...]:
    """`dims` checked as a permutation of an `ndim`-dim tensor's axes, with torch's errors."""
    if len(dims) != ndim:
        raise errors.InvalidArgumentError(
            "permute(sparse_coo): number of dimensions in the tensor input does not match the "
            "length of the desired ordering of dimensions i.e. input.dim() = "
            f"{ndim} is not equal to len(dims) = {len(dims)}")
    axes = tuple(wrap_dim(d, ndim) for d in dims)
    if len(set(axes)) != len(axes):
        raise errors.InvalidArgumentError("permute(): duplicate dims are not allowed.")
    return axes


def _permute_vjp(ns: Any, g: Any, out: Any, x: Any, dims: Sequence[int]) -> Any:
    return ns.permute(g, dims=tuple(np.argsort(permutation(dims, x.ndim)).tolist()))


defop("permute", lambda x, dims: np.transpose(x, permutation(dims, x.ndim)), _permute_vjp,
      saves="input.shape",
      attrs=(AttrSpec("dims", "ints", required=True),), doc="the dims reordered", view=True,
      out_shape=lambda x, dims: tuple(x.shape[a] for a in permutation(dims, x.ndim)))


def transpose_shape(shape: Sequence[int], dim0: int, dim1: int) -> tuple[int, ...]:
    """The shape `transpose(dim0, dim1)` gives, with torch's errors."""
    out = list(shape)
    if out:
        a, b = wrap_dim(dim0, len(out)), wrap_dim(dim1, len(out))
        out[a], out[b] = out[b], out[a]
    return tuple(out)


def _transpose(x: Any, dim0: int, dim1: int) -> Any:
    return np.swapaxes(x, wrap_dim(dim0, x.ndim), wrap_dim(dim1, x.ndim)) if x.ndim else x


defop("transpose", _transpose,
      lambda ns, g, out, x, dim0, dim1: ns.transpose(g, dim0=dim0, dim1=dim1),
      saves="",
      attrs=(AttrSpec("dim0", "int", required=True), AttrSpec("dim1", "int", required=True)),
      doc="dims dim0 and dim1 swapped", view=True,
      out_shape=lambda x, dim0, dim1: transpose_shape(x.shape, dim0, dim1))


def _t(x: Any) -> Any:
    if x.ndim > 2:
        raise errors.InvalidArgumentError(
            f"t() expects a tensor with <= 2 dimensions, but self is {x.ndim}D")
    return np.transpose(x)


defop("t", _t, lambda ns, g, out, x: ns.t(g), backward="TBackward0",
      saves="",
      doc="a matrix transposed (tensors with fewer dims unchanged)", view=True,
      out_shape=lambda x: tuple(reversed(x.shape)))

# --- flip, repeat --------------------------------------------------------------------------------

defop("flip", lambda x, dims: np.flip(x, wrap_dims(dims, x.ndim)) if x.ndim else x.copy(),
      lambda ns, g, out, x, dims: ns.flip(g, dims=dims),
      saves="",
      attrs=(AttrSpec("dims", "dims", required=True),),
      doc="the order of elements along dims reversed",
      out_shape=lambda x, dims: tuple(x.shape))


def repeat_shape(shape: Sequence[int], repeats: Sequence[int]) -> tuple[int, ...]:
    """The shape `repeat(repeats)` gives, with torch's errors."""
    if len(repeats) < len(shape):
        raise errors.InvalidArgumentError(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions "
            "of tensor")
    padded = (1,) * (len(repeats) - len(shape)) + tuple(shape)
    out = tuple(r * s for r, s in zip(repeats, padded))
    for d in out:
        if d < 0:
            raise errors.InvalidArgumentError(
                f"Trying to create tensor with negative dimension {d}: {_shape_str(out)}")
    return out


def _repeat(x: Any, repeats: Sequence[int]) -> Any:
    out = repeat_shape(x.shape, repeats)
    if 0 in out:
        # np.tile repeats one dim at a time: [2**31, 0] on one element made 2**31 of them
        # before the 0 emptied them (its bound, the empty result's, knew nothing of them)
        return np.empty(out, x.dtype)
    return np.tile(x, tuple(repeats))


def _repeat_vjp(ns: Any, g: Any, out: Any, x: Any, repeats: Sequence[int]) -> Any:
    # Each output dim r*s splits into (r, s); summing over the r's folds the copies together.
    padded = (1,) * (len(repeats) - x.ndim) + tuple(x.shape)
    split = tuple(v for r, s in zip(repeats, padded) for v in (r, s))
    total = ns.sum(ns.reshape(g, shape=split), dim=tuple(range(0, len(split), 2)))
    return ns.reshape(total, shape=x.shape)


defop("repeat", _repeat, _repeat_vjp, attrs=(AttrSpec("repeats", "ints", required=True),),
      saves="input.shape",
      out_shape=lambda x, repeats: repeat_shape(x.shape, repeats),
      doc="the tensor tiled repeats[i] times along each dim")

# --- cat, stack ----------------------------------------------------------------------------------


def _promote_all(args: Sequence[Any], what: str, empty: errors.EngineError) -> Any:
    if not args:
        raise empty
    d = args[0].dtype
    for t in args[1:]:
        d = d if t.dtype is d else dtypes.promote(d, t.dtype)
    return d, d


def _cat_dtype(args: Sequence[Any], attrs: Any) -> Any:
    return _promote_all(args, "cat", errors.InvalidValueError(
        "torch.cat(): expected a non-empty list of Tensors"))


def _is_legacy_empty(shape: Sequence[int]) -> bool:
    return tuple(shape) == (0,)  # torch skips 1-D empty tensors in cat, whatever the other shapes


def cat_shape(shapes: Sequence[Sequence[int]], dim: int) -> tuple[int, ...]:
    """The shape `cat` gives tensors of `shapes` along `dim`, with torch's errors."""
    for i, s in enumerate(shapes):
        if not s:
            raise errors.InvalidArgumentError(
                f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    kept = [(i, tuple(s)) for i, s in enumerate(shapes) if not _is_legacy_empty(s)]
    if not kept:
        wrap_dim(dim, 1)
        return (0,)
    first = kept[0][1]
    axis = wrap_dim(dim, len(first))
    total = 0
    for i, s in kept:
        if len(s) != len(first):
            raise errors.InvalidArgumentError(
                f"Tensors must have same number of dimensions: got {len(first)} and {len(s)}")
        for d, (a, b) in enumerate(zip(first, s)):
            if d != axis and a != b:
                raise errors.InvalidArgumentError(
                    f"Sizes of tensors must match except in dimension {axis}. Expected size {a} "
                    f"but got size {b} for tensor number {i} in the list.")
        total += s[axis]
    return (*first[:axis], total, *first[axis + 1:])


def _joined_layout(out: Any, input_dims: int) -> Any:
    """`cat`/`stack`'s result `out` in torch's layout: row-major for inputs of up to three
    dims, which cannot suggest the channels-last format (`compute_output_memory_format`; a
    stack's inputs are unsqueezed to four); numpy's keeps the inputs' order (the cat of
    transposes would be a transpose)."""
    return np.ascontiguousarray(out) if input_dims <= 3 else out


def _cat(arrays: Sequence[Any], dim: int = 0) -> Any:
    shape = cat_shape([a.shape for a in arrays], dim)
    kept = [a for a in arrays if not _is_legacy_empty(a.shape)]
    if not kept:
        return np.concatenate([np.asarray(a) for a in arrays])
    return _joined_layout(np.concatenate(kept, axis=wrap_dim(dim, len(shape))), len(shape))


def _cat_vjp(ns: Any, g: Any, out: Any, tensors: Any, dim: int) -> Any:
    shapes = tensors.shape
    parts: list[Any] = []
    kept = [s for s in shapes if not _is_legacy_empty(s)]
    axis = wrap_dim(dim, len(kept[0])) if kept else 0
    start = 0
    for s in shapes:
        if _is_legacy_empty(s) and kept:
            parts.append(None)  # a skipped empty input: no gradient flows to it
            continue
        parts.append(ns.slice(g, dim=axis, start=start, end=start + s[axis], step=1))
        start += s[axis]
    return parts


defop("cat", _cat, _cat_vjp, inputs=("tensors",), variadic=True,
      saves="tensors.shape",
      attrs=(AttrSpec("dim", "int", 0),), dtype=_cat_dtype,
      out_shape=lambda *tensors, dim=0: cat_shape([t.shape for t in tensors], dim),
      doc="tensors joined along an existing dim (promoted to a common dtype)")


def _stack_dtype(args: Sequence[Any], attrs: Any) -> Any:
    return _promote_all(args, "stack", errors.InvalidArgumentError(
        "stack expects a non-empty TensorList"))


def stack_shape(shapes: Sequence[Sequence[int]], dim: int) -> tuple[int, ...]:
    """The shape `stack` gives tensors of `shapes` along `dim`, with torch's errors."""
    first = tuple(shapes[0])
    for i, s in enumerate(shapes):
        if tuple(s) != first:
            raise errors.InvalidArgumentError(
                f"stack expects each tensor to be equal size, but got {_shape_str(first)} at "
                f"entry 0 and {_shape_str(s)} at entry {i}")
    axis = wrap_dim(dim, len(first) + 1)
    return (*first[:axis], len(shapes), *first[axis:])


def _stack(arrays: Sequence[Any], dim: int = 0) -> Any:
    shape = stack_shape([a.shape for a in arrays], dim)
    return _joined_layout(np.stack(arrays, axis=wrap_dim(dim, len(shape))), len(shape) - 1)


def _stack_vjp(ns: Any, g: Any, out: Any, tensors: Any, dim: int) -> Any:
    shapes = tensors.shape
    axis = wrap_dim(dim, len(shapes[0]) + 1)
    return [ns.select(g, dim=axis, index=i) for i in range(len(shapes))]


defop("stack", _stack, _stack_vjp, inputs=("tensors",), variadic=True,
      saves="tensors.shape",
      attrs=(AttrSpec("dim", "int", 0),), dtype=_stack_dtype,
      out_shape=lambda *tensors, dim=0: stack_shape([t.shape for t in tensors], dim),
      doc="tensors of one shape joined along a new dim")

# --- split, unbind: several outputs --------------------------------------------------------------


def _grads(g: Any) -> tuple[Any, ...]:
    # A node with one output gets its gradient bare, with several a tuple.
    return g if isinstance(g, tuple) else (g,)


def split_sizes(length: int, split_size: int) -> list[int]:
    """The pieces `split(split_size)` cuts a dim of `length` into, with torch's errors."""
    if split_size < 0:
        raise errors.InvalidArgumentError(
            f"split expects split_size be non-negative, but got split_size={split_size}")
    if split_size == 0:
        if length:
            raise errors.InvalidArgumentError(
                "split_size can only be 0 if dimension size is 0, but got dimension size of "
                f"{length}")
        return [0]
    return [min(split_size, length - s) for s in range(0, length, split_size)] or [0]


def _with_dim(shape: Sequence[int], axis: int, n: int) -> tuple[int, ...]:
    return (*shape[:axis], n, *shape[axis + 1:])


def _split_bound(x: Any, attrs: Any, item: int) -> limits.Bound:
    """split's pieces, counted without listing them (split_size 1 of a long dim is many)."""
    if x.ndim == 0 or attrs["split_size"] < 0:
        return limits.Bound(0, 0, 0)  # the forward refuses these with torch's message
    axis = wrap_dim(attrs["dim"], x.ndim)
    length, size = x.shape[axis], attrs["split_size"]
    if size == 0 or length == 0:
        return limits.shape_bound(_with_dim(x.shape, axis, 0), item)
    full, rest = divmod(length, size)
    return limits.combined(limits.repeated_bound(full, _with_dim(x.shape, axis, size), item),
                           limits.repeated_bound(1 if rest else 0,
                                                 _with_dim(x.shape, axis, rest), item))


def _split_with_sizes_bound(x: Any, attrs: Any, item: int) -> limits.Bound:
    if x.ndim == 0:
        return limits.Bound(0, 0, 0)
    axis = wrap_dim(attrs["dim"], x.ndim)
    # shapes_bound's figures without a shape per piece: a request's 8 KiB can list 8,000
    # pieces, whose shapes took 14 ms to list (on the event loop, for a session batch)
    sizes = attrs["split_sizes"]
    rest = limits.numel(_with_dim(x.shape, axis, 1))
    return limits.Bound(max(sizes, default=0) * rest,
                        sum(sizes) * rest * item + limits.TENSOR_BYTES * len(sizes), len(sizes))


def _unbind_bound(x: Any, attrs: Any, item: int) -> limits.Bound:
    if x.ndim == 0:
        return limits.Bound(0, 0, 0)
    axis = wrap_dim(attrs["dim"], x.ndim)
    shape = tuple(x.shape)
    return limits.repeated_bound(shape[axis], shape[:axis] + shape[axis + 1:], item)


def _pieces(rule: Any) -> Any:
    """An out_bound from `rule(x, attrs, itemsize)` (split, split_with_sizes, unbind)."""
    return lambda args, attrs, out_dtype: rule(args[0], attrs, out_dtype.np.itemsize)


def _split_at(x: Any, sizes: Sequence[int], axis: int) -> tuple[Any, ...]:
    bounds = np.cumsum(sizes)[:-1].tolist()
    return tuple(np.split(x, bounds, axis=axis))


def _split(x: Any, split_size: int, dim: int = 0) -> Any:
    if x.ndim == 0:
        raise errors.InvalidArgumentError("split expects at least a 1-dimensional tensor")
    axis = wrap_dim(dim, x.ndim)
    return _split_at(x, split_sizes(x.shape[axis], split_size), axis)


def _split_vjp(ns: Any, g: Any, out: Any, x: Any, dim: int, **attrs: Any) -> Any:
    return ns.cat(list(_grads(g)), dim=dim)


defop("split", _split, _split_vjp, n_outputs=None, output_count="split_size",
      saves="",
      attrs=(AttrSpec("split_size", "int", required=True), AttrSpec("dim", "int", 0)),
      doc="pieces of split_size along dim (the last may be smaller)", view=True,
      out_bound=_pieces(_split_bound))


def _split_with_sizes(x: Any, split_sizes: Sequence[int], dim: int = 0) -> Any:
    if x.ndim == 0:
        raise errors.InvalidArgumentError("split expects at least a 1-dimensional tensor")
    axis = wrap_dim(dim, x.ndim)
    if sum(split_sizes) != x.shape[axis] or any(s < 0 for s in split_sizes):
        raise errors.InvalidArgumentError(
            f"split_with_sizes expects split_sizes to sum exactly to {x.shape[axis]} (input "
            f"tensor's size at dimension {axis}), but got split_sizes={list(split_sizes)}")
    return _split_at(x, split_sizes, axis)


defop("split_with_sizes", _split_with_sizes, _split_vjp, n_outputs=None,
      output_count="split_sizes",
      saves="",
      attrs=(AttrSpec("split_sizes", "ints", required=True), AttrSpec("dim", "int", 0)),
      doc="pieces of the given sizes along dim", view=True,
      out_bound=_pieces(_split_with_sizes_bound))


def _unbind(x: Any, dim: int = 0) -> Any:
    if x.ndim == 0:
        raise errors.OutOfRangeIndexError(
            "Dimension specified as 0 but tensor has no dimensions")
    axis = wrap_dim(dim, x.ndim)
    return tuple(np.moveaxis(x, axis, 0))


defop("unbind", _unbind, lambda ns, g, out, x, dim: ns.stack(list(_grads(g)), dim=dim),
      saves="",
      n_outputs=None, output_count="dim_size", attrs=(AttrSpec("dim", "int", 0),),
      doc="the slices along dim, as a tuple", view=True,
      out_bound=_pieces(_unbind_bound))

# --- roll ----------------------------------------------------------------------------------------


def _roll_dims(x: Any, shifts: Any, dims: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shifts, axes) of roll, each a tuple, with torch's checks (no axes: the flattened input)."""
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = () if dims is None else (dims,) if isinstance(dims, int) else tuple(dims)
    if not shifts:
        raise errors.InvalidArgumentError("`shifts` required")
    if len(shifts) != len(dims) and not (not dims and len(shifts) == 1):
        raise errors.InvalidArgumentError(
            f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    if dims and x.ndim == 0:
        raise errors.OutOfRangeIndexError("Dimension specified as 0 but tensor has no dimensions")
    return shifts, tuple(wrap_dim(d, x.ndim) for d in dims)


def _roll(x: Any, shifts: Any, dims: Any = None) -> Any:
    shifts, axes = _roll_dims(x, shifts, dims)
    if not axes:  # torch rolls the flattened tensor and restores the shape
        return np.roll(x, shifts[0]).reshape(x.shape) if x.ndim else np.array(x, copy=True)
    return np.roll(x, shifts, axes)


def _roll_vjp(ns: Any, g: Any, out: Any, x: Any, shifts: Any, dims: Any) -> Any:
    back = -shifts if isinstance(shifts, int) else tuple(-s for s in shifts)
    return ns.roll(g, shifts=back, dims=dims)


defop("roll", _roll, _roll_vjp, saves="",
      attrs=(AttrSpec("shifts", "dims", required=True), AttrSpec("dims", "dims", None)),
      doc="elements shifted cyclically by shifts along dims (the flattened input without dims)",
      out_bound=temporaries(lambda x, shifts, dims=None: tuple(x.shape), results=1))

# --- diagonal, diagonal_copy, diag_embed and diagonal's gradient ---------------------------------


def _diagonal_axes(ndim: int, offset: int, dim1: int, dim2: int) -> tuple[int, int]:
    """dim1, dim2 wrapped (torch's errors: out of range, identical)."""
    a1, a2 = wrap_dim(dim1, ndim), wrap_dim(dim2, ndim)
    if a1 == a2:
        raise errors.InvalidArgumentError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return a1, a2


def diagonal_shape(shape: Sequence[int], offset: int = 0, dim1: int = 0,
                   dim2: int = 1) -> tuple[int, ...]:
    """The shape of `diagonal(offset, dim1, dim2)` of a tensor of `shape` (torch's errors)."""
    a1, a2 = _diagonal_axes(len(shape), offset, dim1, dim2)
    n1, n2 = shape[a1], shape[a2]
    n = max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))
    return (*(s for i, s in enumerate(shape) if i not in (a1, a2)), n)


def _diagonal(x: Any, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Any:
    """The diagonal as a view of x, writable where x is (np.diagonal's is read-only; torch's
    is a view that in-place ops write through)."""
    shape = diagonal_shape(x.shape, offset, dim1, dim2)  # torch's errors
    if shape[-1] == 0:  # an offset past the dims (numpy's C int could not even hold it)
        return np.zeros(shape, x.dtype)
    a1, a2 = _diagonal_axes(x.ndim, offset, dim1, dim2)
    view = np.diagonal(x, offset, a1, a2)
    if x.flags.writeable:
        view.flags.writeable = True
    return view


def _diagonal_backward(g: Any, input_sizes: Sequence[int], offset: int = 0, dim1: int = 0,
                       dim2: int = 1) -> Any:
    g = np.asarray(g)
    out = np.zeros(tuple(input_sizes), dtype=g.dtype)
    _diagonal(out, offset, dim1, dim2)[...] = g
    return out


_DIAGONAL_ATTRS = (AttrSpec("offset", "int", 0), AttrSpec("dim1", "int", 0),
                   AttrSpec("dim2", "int", 1))


def _diagonal_vjp(ns: Any, g: Any, out: Any, x: Any, offset: int, dim1: int, dim2: int) -> Any:
    return ns.diagonal_backward(g, input_sizes=x.shape, offset=offset, dim1=dim1, dim2=dim2)


defop("diagonal", _diagonal, _diagonal_vjp, saves="input.shape", attrs=_DIAGONAL_ATTRS,
      doc="the diagonal (offset) of the dims dim1, dim2, as the last dim (a view)", view=True,
      out_shape=lambda x, offset=0, dim1=0, dim2=1: diagonal_shape(x.shape, offset, dim1, dim2))
defop("diagonal_copy", lambda x, offset=0, dim1=0, dim2=1: np.array(
          _diagonal(x, offset, dim1, dim2), copy=True),
      _diagonal_vjp, saves="input.shape", attrs=_DIAGONAL_ATTRS,
      backward="DiagonalBackward0_copy", method=False,
      doc="diagonal's values as a new tensor (torch.diag of a matrix)",
      out_shape=lambda x, offset=0, dim1=0, dim2=1: diagonal_shape(x.shape, offset, dim1, dim2))
defop("diagonal_backward", _diagonal_backward,
      lambda ns, g, out, grad, input_sizes, offset, dim1, dim2: ns.diagonal(
          g, offset=offset, dim1=dim1, dim2=dim2),
      saves="", inputs=("grad_output",),
      attrs=(AttrSpec("input_sizes", "ints", required=True), *_DIAGONAL_ATTRS),
      backward="DiagonalBackwardBackward0", method=False,
      doc="diagonal's gradient: grad_output placed on the diagonal of zeros",
      out_shape=lambda g, input_sizes, **kw: tuple(input_sizes))


# --- unfold (sliding windows, a view) and its gradient --------------------------------------------


def unfold_shape(shape: Sequence[int], dimension: int, size: int,
                 step: int) -> tuple[int, ...]:
    """The shape of `unfold(dimension, size, step)` of a tensor of `shape` (torch's errors):
    the windows along `dimension`, each as the new last dim."""
    d = wrap_dim(dimension, len(shape))
    if size < 0:
        raise errors.InvalidArgumentError(f"size is {size} but must be >= 0")
    length = shape[d] if shape else 1
    if size > length:
        raise errors.InvalidArgumentError(
            f"maximum size for tensor at dimension {d} is {length} but size is {size}")
    if step <= 0:
        raise errors.InvalidArgumentError(f"step is {step} but must be > 0")
    if not shape:
        return (size,)
    return (*shape[:d], (length - size) // step + 1, *shape[d + 1:], size)


def _unfold(x: Any, dimension: int, size: int, step: int) -> Any:
    """The windows as a view of x (overlapping ones share elements, as torch's), writable where
    x is and the windows do not overlap."""
    shape = unfold_shape(x.shape, dimension, size, step)
    if x.ndim == 0:  # (size,) of its one element: size is 0 or 1
        strides: tuple[int, ...] = (x.itemsize,)
    else:
        d = wrap_dim(dimension, x.ndim)
        strides = (*x.strides[:d], x.strides[d] * step, *x.strides[d + 1:], x.strides[d])
    # an ndarray on the memory's owner, whose base it then is, as a numpy view's (the limits
    # and autograd's footprint read the owner; as_strided's base would be numpy's DummyArray)
    owner = x if x.base is None else x.base
    view = np.ndarray(shape, x.dtype, buffer=owner, offset=x.ctypes.data - owner.ctypes.data,
                      strides=strides)
    # Overlapping windows (step < size, two or more of them) are read-only, so an in-place
    # write to them is refused (as to an expanded tensor): torch runs one, writing shared
    # elements several times in its loop's order, with values no rule gives.
    overlapping = x.ndim and step < size and shape[wrap_dim(dimension, x.ndim)] > 1
    view.flags.writeable = bool(x.flags.writeable and not overlapping)
    return view


def _unfold_backward(g: Any, input_sizes: Sequence[int], dim: int, size: int,
                     step: int) -> Any:
    """torch's unfold_backward: each input element the sum, from zero in window order, of the
    window elements it was. One numpy addition per window (first to last), or, when windows
    outnumber their size, per offset in a window (last to first: every element still receives
    its windows' gradients first window first): at most sqrt(g.size) Python steps."""
    g = np.asarray(g)
    sizes = tuple(input_sizes)
    if unfold_shape(sizes, dim, size, step) != g.shape:
        raise errors.InvalidArgumentError(
            f"unfold_backward: grad of shape {list(g.shape)} is not the unfold of a tensor of "
            f"shape {list(sizes)} (dim {dim}, size {size}, step {step})")
    out = np.zeros(sizes or (1,), dtype=g.dtype)
    d = wrap_dim(dim, len(sizes))
    n = g.shape[d] if sizes else 1
    if not sizes:
        g = g.reshape(1, size)
    lead = (slice(None),) * d
    if n <= size:
        for w in range(n):
            out[lead + (slice(w * step, w * step + size),)] += np.moveaxis(g[lead + (w,)], -1, d)
    else:
        for j in reversed(range(size)):
            at = lead + (slice(j, j + step * (n - 1) + 1, step),)
            out[at] += g[..., j]
    return out.reshape(sizes)


_UNFOLD_ATTRS = (AttrSpec("dimension", "int", required=True),
                 AttrSpec("size", "int", required=True), AttrSpec("step", "int", required=True))

defop("unfold", _unfold,
      lambda ns, g, out, x, dimension, size, step: ns.unfold_backward(
          g, input_sizes=x.shape, dim=dimension, size=size, step=step),
      saves="input.shape", attrs=_UNFOLD_ATTRS, view=True,
      doc="the windows of size elements, step apart, along dimension, as a new last dim (a view)",
      out_shape=lambda x, dimension, size, step: unfold_shape(x.shape, dimension, size, step))
defop("unfold_backward", _unfold_backward,
      lambda ns, g, out, grad, input_sizes, dim, size, step: ns.unfold(
          g, dimension=dim, size=size, step=step),
      saves="", inputs=("grad_in",),
      attrs=(AttrSpec("input_sizes", "ints", required=True), AttrSpec("dim", "int", required=True),
             AttrSpec("size", "int", required=True), AttrSpec("step", "int", required=True)),
      backward="UnfoldBackwardBackward0", method=False,
      doc="unfold's gradient: each element the sum of the window elements it was",
      out_shape=lambda g, input_sizes, **kw: tuple(input_sizes))


def diag_embed_shape(shape: Sequence[int], offset: int = 0, dim1: int = -2,
                     dim2: int = -1) -> tuple[int, ...]:
    """The shape of `diag_embed(offset, dim1, dim2)` of a tensor of `shape` (torch's errors)."""
    ndim = len(shape) + 1
    a1, a2 = _diagonal_axes(ndim, offset, dim1, dim2)
    n = (shape[-1] if shape else 1) + abs(offset)
    rest = iter(shape[:-1])
    return tuple(n if i in (a1, a2) else next(rest) for i in range(ndim))


def _diag_embed(x: Any, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Any:
    if x.ndim == 0:  # torch wraps dim1 against the input's dims first
        wrap_dim(dim1, 0)
    shape = diag_embed_shape(x.shape, offset, dim1, dim2)
    out = np.zeros(shape, dtype=x.dtype)
    _diagonal(out, offset, dim1, dim2)[...] = x
    return out


defop("diag_embed", _diag_embed,
      lambda ns, g, out, x, offset, dim1, dim2: ns.diagonal(
          g, offset=offset, dim1=dim1, dim2=dim2),
      saves="",
      attrs=(AttrSpec("offset", "int", 0), AttrSpec("dim1", "int", -2),
             AttrSpec("dim2", "int", -1)),
      doc="a tensor whose diagonals (of dims dim1, dim2) hold input's last dim, zeros elsewhere",
      out_shape=lambda x, offset=0, dim1=-2, dim2=-1: diag_embed_shape(x.shape, offset, dim1,
                                                                       dim2))
