"""How torch reads the index of `x[index]` before it indexes: which items it holds."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from . import messages


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
