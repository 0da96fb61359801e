"""`gradserve.surface.meta`'s rules for shape ops, matrix products and indexing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .meta_base import (
    _BOOL,
    _FLOAT,
    _INT32,
    _INT32_MAX,
    _INT32_MIN,
    _INT64,
    _PROMOTE_TABLE,
    _SCALAR_RANK,
    DTYPE_NAMES,
    RULES,
    Meta,
    Rule,
    _axes,
    _broadcast,
    _dims,
    _Inexact,
    _int,
    _ints,
    _known,
    _meta,
    _numel,
    _one,
    _opt_int,
    _rule,
    _scalar,
    _tensor,
    _wrap,
)
from .packed_shape import packed_data_shape

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


def _packed_shape(shape: tuple[int, ...], attrs: Mapping[str, Any]) -> tuple[int, ...]:
    try:
        return packed_data_shape(shape, _ints(attrs["batch_sizes"]),
                                 bool(attrs.get("batch_first", False)))
    except (IndexError, ValueError):
        raise _Inexact from None


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
RULES["_pack_padded_sequence"] = _shaped(_packed_shape, ("batch_sizes", "batch_first"),
                                         required=("batch_sizes",))


def _tensor_list(inputs: Sequence[Any], attrs: Mapping[str, Any]
                 ) -> tuple[list[tuple[tuple[int, ...], int, bool]], int, int]:
    """cat/stack: (the tensors, promoted rank, dim)."""
    if len(inputs) != 1 or not isinstance(inputs[0], (list, tuple)) or not inputs[0]:
        raise _Inexact
    _known(attrs, frozenset(("dim",)))
    tensors = [_tensor(t) for t in inputs[0]]
    rank = -1
    for _, r, _ in tensors:
        rank = _PROMOTE_TABLE[rank][r]
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
    # both 1-D: plain promotion
    return _meta((a[0], b[0]), _PROMOTE_TABLE[ra][rb], grad and (ga or gb))


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


@_rule("index")
def _index(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    """`x[idx]` by an int tensor (k, *B) of k index arrays over dims dim..dim+k-1; a bool
    mask's result depends on its values (no rule)."""
    if len(inputs) != 2:
        raise _Inexact
    _known(attrs, frozenset(("dim",)))
    shape, rank, rg = _tensor(inputs[0])
    index = _index_tensor(inputs[1])
    dim = _int(attrs.get("dim", 0))
    if not index or index[0] == 0 or not 0 <= dim <= len(shape) - index[0]:
        raise _Inexact  # "indices must have a leading dim", "too many indices"
    return _meta((*shape[:dim], *index[1:], *shape[dim + index[0]:]), rank, grad and rg)


# --- the in-place targets' ops: zero_(), fill_(), copy_() -----------------------------------------

@_rule("zero")
def _zero(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset())
    return _meta(shape, rank, grad and rg)


@_rule("fill")
def _fill(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("value",)))
    _scalar(attrs.get("value"))  # required
    return _meta(shape, rank, grad and rg)


@_rule("copy")
def _copy(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs:
        raise _Inexact
    shape, rank, rg = _tensor(inputs[0])
    src, _, src_rg = _tensor(inputs[1])
    if len(src) > len(shape) or _broadcast(src, shape) != shape:
        raise _Inexact  # src does not broadcast to input's shape
    return _meta(shape, rank, grad and (rg or src_rg))
