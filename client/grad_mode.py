"""Grad mode on the client: thread-local, as in torch. Ops record it (`no_grad` on the wire)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class _State(threading.local):
    enabled = True


_state = _State()


def is_grad_enabled() -> bool:
    """Whether ops recorded now build an autograd graph."""
    return _state.enabled


class set_grad_enabled:  # noqa: N801 - torch's name
    """Set grad mode for a block (`with`), as a decorator, or from now on (a plain call)."""

    def __init__(self, mode: bool):
        self.prev = _state.enabled
        self.mode = bool(mode)
        _state.enabled = self.mode

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        _state.enabled = self.prev

    def __call__(self, fn: F) -> F:
        _state.enabled = self.prev  # as a decorator, the constructor call must not stick
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


class _Mode:
    mode = True

    def __enter__(self) -> None:
        self.prev = _state.enabled
        _state.enabled = self.mode

    def __exit__(self, *exc: Any) -> None:
        _state.enabled = self.prev

    def __call__(self, fn: F) -> F:
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


class no_grad(_Mode):  # noqa: N801 - torch's name
    """Disable gradient recording in a block or a decorated function."""

    mode = False


class enable_grad(_Mode):  # noqa: N801 - torch's name
    """Enable gradient recording in a block or a decorated function."""

    mode = True
