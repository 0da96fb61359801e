"""Grad mode: thread-local, as in torch, since the server runs requests on a thread pool."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


class _State(threading.local):
    enabled = True


_state = _State()


def is_grad_enabled() -> bool:
    """Whether ops record a graph in this thread."""
    return _state.enabled


class set_grad_enabled:
    """Set grad mode for this thread; usable as a function, context manager or decorator."""

    def __init__(self, mode: bool) -> None:
        self.prev = _state.enabled
        self.mode = bool(mode)
        _state.enabled = self.mode

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        _state.enabled = self.prev

    def __call__(self, fn: _F) -> _F:
        # Decorator use: undo the switch done in __init__, apply the mode per call instead.
        _state.enabled = self.prev
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def clone(self) -> set_grad_enabled:
        return self.__class__(self.mode)


class _GradModeContext:
    mode = True

    def __new__(cls, orig_func: Callable[..., Any] | None = None) -> Any:
        # As torch: `@no_grad` without parentheses decorates directly.
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)

    def __enter__(self) -> None:
        self.prev = _state.enabled
        _state.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        _state.enabled = self.prev

    def __call__(self, fn: _F) -> _F:
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_GradModeContext):
    """Disable graph recording in this thread (context manager or decorator)."""

    mode = False


class enable_grad(_GradModeContext):
    """Enable graph recording in this thread (context manager or decorator)."""

    mode = True
