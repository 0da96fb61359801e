"""A tensor's memory layout as torch reports it: `stride()`, `storage_offset()`, and whether
`view(shape)` can reuse the layout (torch's `computeStride`), written once for the engine and
the client (each supplies the strides it holds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

VIEW_ERROR = ("view size is not compatible with input tensor's size and stride (at least one "
              "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """numpy's (and torch's) broadcast of shapes of any rank. numpy's own `np.broadcast_shapes`
    goes through `np.broadcast`, which takes at most 32 dims: a tensor of 33-64 dims (the wire
    allows 64, torch more) made every broadcasting op fail with numpy's RuntimeError (INTERNAL
    on the wire; red team round 6).

    Raises:
        ValueError: the shapes do not broadcast (numpy's class).
    """
    out: list[int] = []
    for k, shape in enumerate(shapes):
        shape = tuple(shape)
        if len(shape) > len(out):
            out[:0] = [1] * (len(shape) - len(out))
        off = len(out) - len(shape)
        for i, d in enumerate(shape):
            e = out[off + i]
            if e != d:
                if e == 1:
                    out[off + i] = d
                elif d != 1:
                    raise ValueError(
                        "shape mismatch: objects cannot be broadcast to a single shape.  Mismatch "
                        f"is between arg {k} with shape {shape} and the shape {tuple(out)} of "
                        "the args before it")
    return tuple(out)


def broadcast_arrays(*arrays: Any) -> list[Any]:
    """`np.broadcast_arrays` (read-only views) for arrays of any rank: numpy's takes at most 32
    dims (see `broadcast_shapes`)."""
    shape = broadcast_shapes(*(a.shape for a in arrays))
    return [a if a.shape == shape else np.broadcast_to(a, shape) for a in arrays]


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The row-major strides torch gives a contiguous tensor of `shape` (a dim of size 0 or 1
    counts as 1).

    Args:
        shape: the tensor's sizes.

    Returns:
        One stride per dimension, in elements.
    """
    key = shape if type(shape) is tuple else tuple(shape)
    known = _CONTIGUOUS.get(key)
    if known is not None:
        return known
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * max(int(shape[d + 1]), 1)
    out = tuple(strides)
    if len(_CONTIGUOUS) < _CONTIGUOUS_MAX:
        _CONTIGUOUS[key] = out
    return out


# contiguous_strides' answers by shape: a program reads the strides of a few shapes (every
# x.view(...) of a tensor the server described asks twice), bounded
_CONTIGUOUS: dict[tuple[int, ...], tuple[int, ...]] = {}
_CONTIGUOUS_MAX = 4096


def pick_stride(strides: Sequence[int], dim: Any, index_error: type[IndexError]) -> Any:
    """`tensor.stride(dim)`: every stride (a tuple) when dim is None, else dim's, with torch's
    IndexError for a dim out of range.

    Args:
        strides: the tensor's strides.
        dim: None or a dimension (negative counts from the end).
        index_error: the layer's IndexError type.

    Returns:
        A tuple of ints, or an int.

    Raises:
        IndexError: dim out of range, as torch words it.
    """
    if dim is None:
        return tuple(strides)
    n = len(strides)
    if isinstance(dim, bool) or not isinstance(dim, int):
        dim = int(dim.__index__())
    if n == 0:
        raise index_error(f"Dimension specified as {dim} but tensor has no dimensions")
    if not -n <= dim < n:
        raise index_error(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                          f"but got {dim})")
    return int(strides[dim % n])


def view_strides(shape: Sequence[int], strides: Sequence[int],
                 new_shape: Sequence[int]) -> tuple[int, ...] | None:
    """The strides a view of a tensor (`shape`, `strides`) as `new_shape` has, or None when no
    view can express it (torch's `computeStride`: `view` then refuses, `reshape` copies).

    Args:
        shape: the tensor's sizes.
        strides: its strides, in elements.
        new_shape: the view's sizes (-1 already resolved; same element count).

    Returns:
        The view's strides, or None.
    """
    if not shape:
        return (1,) * len(new_shape)
    numel = 1
    for s in shape:
        numel *= int(s)
    if numel == 0:
        if tuple(shape) == tuple(new_shape):
            return tuple(strides)
        return contiguous_strides(new_shape)
    out = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base_stride = int(strides[-1])
    tensor_numel = 1
    view_numel = 1
    for tensor_d in range(len(shape) - 1, -1, -1):
        tensor_numel *= int(shape[tensor_d])
        if tensor_d == 0 or (shape[tensor_d - 1] != 1
                             and strides[tensor_d - 1] != tensor_numel * chunk_base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                out[view_d] = view_numel * chunk_base_stride
                view_numel *= int(new_shape[view_d])
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base_stride = int(strides[tensor_d - 1])
                tensor_numel = 1
                view_numel = 1
    if view_d != -1:
        return None
    return tuple(out)
