"""Allocation limits: refuse an op whose result would be too large, before allocating it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

from . import errors


class _State(threading.local):
    max_elements: int | None = None


_state = _State()


@contextlib.contextmanager
def allocation_limit(max_elements: int | None) -> Iterator[None]:
    """Limit, for this thread, how many elements one op may produce (None: unlimited)."""
    prev = _state.max_elements
    _state.max_elements = max_elements
    try:
        yield
    finally:
        _state.max_elements = prev


def numel(shape: Sequence[int]) -> int:
    """Elements in `shape` (Python ints: no overflow)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_shape(shape: Sequence[int], what: str = "result") -> None:
    """Raise `AllocationLimitError` if a tensor of `shape` exceeds this thread's limit."""
    limit = _state.max_elements
    if limit is None:
        return
    n = numel(shape)
    if n > limit:
        raise errors.AllocationLimitError(
            f"{what} of shape {list(shape)} has {n} elements, more than the limit of {limit}")
