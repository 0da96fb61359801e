"""`x[index]` and `x[index] = value` for client tensors: a Python index as a wire `TensorIndex`.

The server hands the decoded index to the engine's own `__getitem__`/`__setitem__` (torch's
applySlicing), so this module only translates: ints, slices, None, `...`, bools, tensors of this
session, and lists or arrays of integers/booleans (sent as constant tensors, converted as torch
converts a list). What torch refuses before indexing (a float item, an int beyond int64) is
refused here with torch's type and text; everything else is judged by the server.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from gradserve.surface.indexing import index_items
from gradserve.v1 import graph_pb2
from gradserve.v1 import session_pb2 as spb

from . import codec
from .batch import _LIBRARY_DIRS
from .tensor import Tensor

SLICE_TRUNCATION_WARNING = (
    "Truncating the start/stop/step of slice. This is likely because of saved old models when "
    "the start/stop/step were larger.")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

EncodeValue = Callable[[Any, graph_pb2.Value, str], None]


def encode_index(index: Any, value: EncodeValue) -> spb.TensorIndex:
    """The wire form of `index` (may read a tensor used as a slice bound, i.e. flush).

    Args:
        index: what was between the brackets.
        value: writes a tensor of the owner into a Value (the owner's `_value`).

    Raises:
        IndexError, TypeError, ValueError: an item torch refuses before indexing.
    """
    msg = spb.TensorIndex()
    items, msg.single = _items(index)
    for it in items:
        _item(it, msg.items.add(), value)
    return msg


def _items(index: Any) -> tuple[tuple[Any, ...], bool]:
    """The index as items, and whether it is one item rather than a tuple (as the engine)."""
    return index_items(index, lambda v: isinstance(v, Tensor), stacklevel=_user_stacklevel())


def _item(it: Any, out: spb.IndexItem, value: EncodeValue) -> None:
    if isinstance(it, (bool, np.bool_)):
        out.boolean = bool(it)
    elif isinstance(it, (int, np.integer)):
        i = int(it)
        if not _INT64_MIN <= i <= _INT64_MAX:
            raise ValueError("Overflow when unpacking long long")
        out.integer = i
    elif isinstance(it, slice):
        out.slice.SetInParent()
        for field, bound in (("start", it.start), ("stop", it.stop), ("step", it.step)):
            if bound is not None:
                _set_bound(out.slice, field, _slice_int(bound))
    elif it is None:
        out.new_axis.SetInParent()
    elif it is Ellipsis:
        out.ellipsis.SetInParent()
    elif isinstance(it, Tensor):
        value(it, out.tensor, "index")
    elif isinstance(it, (list, tuple, range, np.ndarray)):
        # torch reads any sequence among the items (a tuple, a range) as a list of indices
        codec.encode_array(_index_array(it), out.tensor.constant)
    elif isinstance(it, str):
        raise TypeError("new(): invalid data type 'str'")
    else:
        raise IndexError(
            "only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are "
            f"valid indices (got {type(it).__name__})")


def _set_bound(msg: spb.IndexSlice, field: str, v: int) -> None:
    """Set one bound of a slice (a literal field name), clamped to int64 as torch does."""
    if not _INT64_MIN <= v <= _INT64_MAX:
        warnings.warn(SLICE_TRUNCATION_WARNING, UserWarning, stacklevel=_user_stacklevel())
        v = max(_INT64_MIN, min(_INT64_MAX, v))
    if field == "start":
        msg.start = v
    elif field == "stop":
        msg.stop = v
    else:
        msg.step = v


def _slice_int(v: Any) -> int:
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, Tensor):
        return v.__index__()
    raise TypeError("slice indices must be integers or None or have an __index__ method")


def _index_array(data: Any) -> np.ndarray:
    """A list or array used as an index, as torch converts it: bools stay a mask, numbers
    become int64 (floats truncated)."""
    arr = np.asarray(data)
    if arr.dtype == np.bool_:
        return arr
    if arr.size and arr.dtype.kind not in "iuf":
        raise TypeError(f"new(): invalid data type '{arr.dtype.kind}'")
    with np.errstate(invalid="ignore"):  # NaN/inf become an out-of-range index, refused
        return arr.astype(np.int64)


def check_assignable(value: Any, target: Tensor) -> None:
    """torch's TypeError for a value `x[i] = value` cannot take (a list, an ndarray, ...)."""
    if isinstance(value, (Tensor, bool, int, float, np.number, np.bool_)):
        return
    cls = type(value)
    name = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
    raise TypeError(f"can't assign a {name} to a {target.type()}")


def _user_stacklevel() -> int:
    """The stacklevel that points a warning at the user's line (the first frame outside this
    package)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
