"""How torch reads the index of `x[index]` before it indexes: which items it holds."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from . import messages
from .layout import contiguous_strides


def index_items(index: Any, is_tensor: Callable[[Any], bool],
                stacklevel: int = 1) -> tuple[tuple[Any, ...], bool]:
    """The items of `index`, and whether it was one item (not a tuple, nor a list read as one).

    torch 2.13 still reads a short list holding a tensor, list, tuple, slice, None or Ellipsis
    as a tuple, with a deprecation warning (`stacklevel` as `warnings.warn` would take it from
    this function's caller).
    """
    if isinstance(index, tuple):
        return index, False
    if isinstance(index, list) and len(index) < 32 and any(
            is_tensor(i) or isinstance(i, (list, tuple, slice)) or i is None or i is Ellipsis
            for i in index):
        warnings.warn(messages.SEQUENCE_WARNING, UserWarning, stacklevel=stacklevel + 1)
        return tuple(index), False
    return (index,), True


def basic_index_result(shape: tuple[int, ...], contiguous: bool,
                       items: tuple[Any, ...]) -> tuple[tuple[int, ...], bool] | None:
    """The shape of `x[items]` for an index of ints, slices (int or None bounds, positive
    step), None and one `...` (torch's view: select, slice and unsqueeze in turn), and whether
    the view is contiguous (when `x` is, judged as torch's `is_contiguous`: size-1 dims
    skipped); None for any other index, or one torch refuses (an int out of range, too many
    indices, a step that is not positive): the server then describes or reports it.

    Args:
        shape: `x`'s shape.
        contiguous: whether `x` is known contiguous (else the view's layout is not judged).
        items: the index's items (`index_items`).
    """
    if sum(it is Ellipsis for it in items) > 1:
        return None
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    if consumed > len(shape):
        return None
    sizes: list[int] = []
    strides: list[int] = []
    full = contiguous_strides(shape)  # x's, when contiguous
    d = 0
    for it in items:
        kind = type(it)
        if it is None:
            sizes.append(1)
            strides.append(1)  # a size-1 dim: its stride does not count
        elif it is Ellipsis:
            skip = len(shape) - consumed
            sizes += shape[d:d + skip]
            strides += full[d:d + skip]
            d += skip
        elif kind is int:
            n = shape[d]
            if not -n <= it < n:
                return None
            d += 1
        elif kind is slice and all(type(v) is int or v is None
                                   for v in (it.start, it.stop, it.step)):
            if it.step is not None and it.step <= 0:
                return None
            sizes.append(len(range(*it.indices(shape[d]))))
            strides.append(full[d] * (it.step or 1))
            d += 1
        else:
            return None
    sizes += shape[d:]
    strides += full[d:]
    return tuple(sizes), contiguous and _row_major(sizes, strides)


def _row_major(sizes: list[int], strides: list[int]) -> bool:
    """torch's is_contiguous of these sizes and strides: empty, or each dim of size > 1 with
    the stride of the dims after it."""
    if 0 in sizes:
        return True
    expected = 1
    for size, stride in zip(reversed(sizes), reversed(strides)):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True
