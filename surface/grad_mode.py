"""Grad mode in every form torch offers, written once for the engine and the client.

The mode is thread-local, as in torch (the server runs requests on a thread pool; a client
program may record from several threads). The engine reads it when it records a node; the
client reads it when it records an op (it travels as `no_grad` on the wire).

Forms, as torch 2.13's: `with no_grad():`, `@no_grad()`, `@no_grad` (no parentheses), the same
for `enable_grad` and `inference_mode` (which also takes `mode=`), `set_grad_enabled(mode)` as a
plain call (sticks), a context manager or a decorator, `is_grad_enabled()`,
`is_inference_mode_enabled()`. A decorated generator function runs each of its steps under
the mode, as torch's do.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class _State(threading.local):
    enabled = True  # whether ops record a graph
    inference = False  # inside inference_mode(True)


_state = _State()


def is_grad_enabled() -> bool:
    """Whether ops record an autograd graph in this thread."""
    return _state.enabled


def is_inference_mode_enabled() -> bool:
    """Whether this thread is inside `inference_mode()`."""
    return _state.inference


def _decorate(factory: Callable[[], Any], fn: F) -> F:
    """`fn` run under a fresh context from `factory` on every call (every step, for a
    generator function)."""
    if inspect.isgeneratorfunction(fn):
        return _decorate_generator(factory, fn)  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with factory():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _decorate_generator(factory: Callable[[], Any],
                        fn: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        gen = fn(*args, **kwargs)
        try:
            with factory():
                response = gen.send(None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    with factory():
                        gen.close()
                    raise
                except BaseException as thrown:  # noqa: BLE001 - from the caller: pass it on
                    with factory():
                        response = gen.throw(thrown)
                else:
                    with factory():
                        response = gen.send(request)
        except StopIteration as stop:
            return stop.value
    return generator


class _NoParamMode:
    """A mode switch usable as `with cls():`, `@cls()` and `@cls` (no parentheses)."""

    mode = True

    def __new__(cls, orig_func: Callable[..., Any] | None = None) -> Any:
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)  # `@no_grad` without parentheses decorates directly

    def __enter__(self) -> None:
        self.prev = _state.enabled
        _state.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        _state.enabled = self.prev

    def __call__(self, fn: F) -> F:
        return _decorate(type(self), fn)

    def clone(self) -> Any:
        """A fresh copy (torch's API for reusing a decorator's context)."""
        return type(self)()


class no_grad(_NoParamMode):  # noqa: N801 - torch's name
    """Disable graph recording in this thread, for a block or a decorated function."""

    mode = False


class enable_grad(_NoParamMode):  # noqa: N801 - torch's name
    """Enable graph recording in this thread, for a block or a decorated function."""

    mode = True


class set_grad_enabled:  # noqa: N801 - torch's name
    """Set grad mode: from now on (a plain call), for a block (`with`), or per call of a
    decorated function."""

    def __init__(self, mode: bool) -> None:
        self.prev = _state.enabled
        self.mode = bool(mode)
        _state.enabled = self.mode

    def __enter__(self) -> None:
        _state.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        _state.enabled = self.prev

    def __call__(self, fn: F) -> F:
        _state.enabled = self.prev  # as a decorator, the constructor's switch must not stick
        mode = self.mode
        return _decorate(lambda: set_grad_enabled(mode), fn)

    def clone(self) -> set_grad_enabled:
        """A fresh copy with the same mode."""
        return type(self)(self.mode)

    def __repr__(self) -> str:
        return f"torch.autograd.grad_mode.set_grad_enabled(mode={self.mode})"


class inference_mode:  # noqa: N801 - torch's name
    """torch.inference_mode: no graph recording inside (`mode=True`), as a context manager or a
    decorator with or without parentheses. gradserve has no separate inference tensors: inside
    it, ops behave as under `no_grad()` and `is_inference_mode_enabled()` is True."""

    def __new__(cls, mode: Any = True) -> Any:
        if isinstance(mode, bool):
            return super().__new__(cls)
        return cls()(mode)  # `@inference_mode` without parentheses

    def __init__(self, mode: bool = True) -> None:
        self.mode = mode

    def __enter__(self) -> None:
        self.prev = (_state.enabled, _state.inference)
        if self.mode:
            _state.enabled, _state.inference = False, True
        else:
            _state.inference = False

    def __exit__(self, *exc: object) -> None:
        _state.enabled, _state.inference = self.prev

    def __call__(self, fn: F) -> F:
        mode = self.mode
        return _decorate(lambda: inference_mode(mode), fn)

    def clone(self) -> inference_mode:
        """A fresh copy with the same mode."""
        return type(self)(self.mode)
