"""torch._dynamo, as programs run eagerly see it: the decorators and queries that mean something
without a compiler. gradserve compiles nothing, so each is what torch's is outside torch.compile:
`assume_constant_result` marks a function and returns it, `disable` runs the function as it is,
`is_compiling()` is False, `graph_break()` does nothing. Nothing that compiles (optimize, export,
explain, config) is here: a program using it fails as a missing name does.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

Fn = Callable[..., Any]


def assume_constant_result(fn: Fn) -> Fn:
    """Mark `fn` as returning a constant when compiled; eagerly it runs as it is.

    Args:
        fn: the function.

    Returns:
        `fn` itself, marked (`fn._dynamo_marked_constant` is True, as in torch).
    """
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn


def _disabled(fn: Fn, reason: str | None) -> Fn:
    if not callable(fn):
        raise AssertionError("fn must be callable")

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    run._torchdynamo_disable = True  # type: ignore[attr-defined]
    run._torchdynamo_disable_msg = reason  # type: ignore[attr-defined]
    run._torchdynamo_orig_callable = fn  # type: ignore[attr-defined]
    return run


def disable(fn: Fn | None = None, recursive: bool = True, *, reason: str | None = None,
            wrapping: bool = True) -> Fn:
    """Keep the compiler away from `fn`; eagerly, a wrapper that calls `fn` unchanged.

    Args:
        fn: the function; without it, `disable(...)` returns the decorator.
        recursive: accepted for torch's signature (nothing is compiled).
        reason: kept on the wrapper as `_torchdynamo_disable_msg`.
        wrapping: accepted for torch's signature.

    Returns:
        The wrapper (or, without `fn`, a decorator making one).

    Raises:
        AssertionError: `fn` is not callable (torch's text).
    """
    if fn is None:
        return lambda f: _disabled(f, reason)
    return _disabled(fn, reason)


def is_compiling() -> bool:
    """Whether the caller runs inside torch.compile: never, in gradserve."""
    return False


def graph_break(msg: str = "") -> None:
    """Force a graph break when compiled; eagerly nothing happens."""


def reset() -> None:
    """Clear the compile caches: gradserve keeps none."""


def namespace() -> types.SimpleNamespace:
    """torch._dynamo: assume_constant_result, disable, is_compiling, graph_break, reset."""
    return types.SimpleNamespace(
        __name__="torch._dynamo", assume_constant_result=assume_constant_result,
        disable=disable, is_compiling=is_compiling, graph_break=graph_break, reset=reset)
