"""Arrays laid out with the strides torch gives a result (surface/memory_format.py says which):
an elementwise result in its inputs' stride order, a clone or a *_like result as its input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradserve.surface import memory_format as mf
from gradserve.surface.layout import contiguous_strides

from . import errors


def element_strides(a: np.ndarray) -> tuple[int, ...]:
    """An array's strides in elements, as `Tensor.stride()` reports them (row-major ones for a
    C-contiguous array, whatever numpy holds for its dims of size 1)."""
    if a.flags.c_contiguous:
        return contiguous_strides(a.shape)
    size = a.itemsize
    return tuple(s // size for s in a.strides)


def empty_strided(shape: Sequence[int], strides: Sequence[int], dtype: Any) -> np.ndarray:
    """A new, uninitialised array of `shape` with these element strides (dense: one block of
    the shape's element count)."""
    shape = tuple(int(s) for s in shape)
    strides = tuple(int(s) for s in strides)
    if strides == contiguous_strides(shape):
        return np.empty(shape, dtype)
    dtype = np.dtype(dtype)
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else 0
    block = np.empty(max(extent, 0), dtype)
    # (an ndarray on the block's buffer: its base is the block, whose nbytes limits and
    # autograd's footprint read; as_strided's would be numpy's DummyArray)
    return np.ndarray(shape, dtype, buffer=block,
                      strides=tuple(s * dtype.itemsize for s in strides))


def relayout(data: np.ndarray, strides: Sequence[int]) -> np.ndarray:
    """`data`'s values laid out with `strides` (data itself when it already has them)."""
    if element_strides(data) == tuple(strides):
        return data
    out = empty_strided(data.shape, strides, data.dtype)
    np.copyto(out, data, casting="no")
    return out


def like(data: Any, fmt: str = "preserve", dtype: Any = None,
         refusal: str | None = None) -> Any:
    """A copy of `data` (in `dtype`: None keeps its own) laid out as torch's
    `clone(memory_format=fmt)` lays it out.

    Raises:
        InvalidArgumentError: `refusal`, torch's words for a format of the wrong rank.
    """
    if refusal is not None:
        raise errors.InvalidArgumentError(refusal)
    if dtype is None:
        dtype = data.dtype
    if fmt == "preserve":
        if np.ndim(data) <= 1 or data.flags.c_contiguous:
            return data.astype(dtype, copy=True)
        strides = mf.like_strides(data.shape, element_strides(data))
    else:
        strides = mf.format_strides(fmt, data.shape)
    out = empty_strided(data.shape, strides, dtype)
    np.copyto(out, data, casting="unsafe")
    return out


def pointwise(inputs: Sequence[Any], data: np.ndarray) -> np.ndarray:
    """An elementwise op's result `data` (of two or more dims) laid out as torch's
    TensorIterator lays it out for these inputs (Tensors and numbers): data itself when every
    input of a dim or more is C-contiguous (numpy's result then is too), else re-laid when
    numpy chose other strides."""
    for a in inputs:  # (this runs for every elementwise op of 2 or more dims: no list here)
        d = getattr(a, "_data", None)
        if type(d) is np.ndarray and d.ndim and not d.flags.c_contiguous:
            break
    else:
        if data.flags.c_contiguous:
            return data
        return np.ascontiguousarray(data)
    arrays = [d for a in inputs
              if type(d := getattr(a, "_data", None)) is np.ndarray and d.ndim]
    strides = mf.elementwise_strides(data.shape, [(d.shape, element_strides(d)) for d in arrays])
    return relayout(data, strides)


def channels_last(inputs: Sequence[Any], data: np.ndarray) -> np.ndarray:
    """A convolution's result (`data`) laid out channels-last when its input or its weight
    is (torch's `mkldnn_conv_use_channels_last`: the format each one's strides suggest)."""
    if data.ndim not in (4, 5):
        return data
    fmt = "channels_last" if data.ndim == 4 else "channels_last_3d"
    for a in inputs[:2]:
        d = getattr(a, "_data", None)
        if type(d) is np.ndarray and d.ndim == data.ndim and not d.flags.c_contiguous and (
                mf.suggest(d.shape, element_strides(d)) == fmt):
            return relayout(data, mf.channels_last_strides(data.shape))
    return data


def contiguous(inputs: Sequence[Any], data: np.ndarray) -> np.ndarray:
    """A result torch always makes contiguous (softmax's)."""
    return data if data.flags.c_contiguous else np.ascontiguousarray(data)


# the layouts `OpDef.layout` names, as functions of the op's inputs and result
RELAYOUT = {"pointwise": pointwise, "channels_last": channels_last, "contiguous": contiguous}
