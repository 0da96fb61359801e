"""torch's `out=` keyword on the functions programs call with it, written once for the engine
and sessions: the result is computed, checked against `out` and copied into it, and `out` is
returned, as torch does.

torch's rules, in its order: with grad mode on, no argument (out included) may require grad
("functions with out=... arguments don't support automatic differentiation"); the result's dtype
must cast to out's (a float result into an integral out is refused); out of the result's shape is
written in place. torch resizes an out of another shape (with a deprecation warning unless it is
empty); a gradserve tensor cannot change its shape in place, so that case raises a RuntimeError
that says so, rather than leaving `out` untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from . import aliases, grad_mode, messages
from .backend import Backend

OUT_FUNCTIONS = frozenset((
    # arithmetic and elementwise math
    "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "log1p", "expm1", "sqrt",
    "rsqrt", "sin", "cos", "tan", "tanh", "sigmoid", "clamp", "clamp_min", "clamp_max",
    "maximum", "minimum", "floor", "ceil", "round", "trunc", "sign", "reciprocal", "remainder",
    "fmod", "atan2", "hypot", "logaddexp", "xlogy", "erf", "addcmul", "addcdiv", "square",
    # reductions
    "sum", "mean", "prod", "amax", "amin", "cumsum", "logsumexp", "std", "var",
    # linear algebra and joining
    "matmul", "mm", "bmm", "addmm", "dot", "outer", "cat", "stack",
    # added with the 0.2 tensor ops (index_add and diag take out= in their spellings)
    "cumprod", "nan_to_num", "kron", "baddbmm", "addbmm",
))
"""The functions (where the op exists) that take `out=`, as torch's do."""

# torch's canCast: no floating result into an integral or bool out, no integral into bool.
_KIND = {"bool": 0, "uint8": 1, "int8": 1, "int16": 1, "int32": 1, "int64": 1, "float32": 2,
         "float64": 2}


def _tensors(be: Backend, value: Any) -> list[Any]:
    if be.is_tensor(value):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if be.is_tensor(v)]
    return []


def call_with_out(be: Backend, name: str, fn: Callable[..., Any], out: Any,
                  args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """`fn(*args, **kwargs)` written into `out`, as torch's `name(..., out=out)`.

    Returns:
        `out` itself, holding the result.
    Raises:
        TypeError: out is not a tensor.
        RuntimeError: an argument requires grad with grad mode on; the result's dtype does not
            cast to out's; out's shape is not the result's (torch would resize it).
    """
    if not be.is_tensor(out):
        raise be.type_error(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if grad_mode.is_grad_enabled():
        given = [out, *(t for a in (*args, *kwargs.values()) for t in _tensors(be, a))]
        if any(t.requires_grad for t in given):
            raise be.runtime_error(
                f"{name}(): functions with out=... arguments don't support automatic "
                "differentiation, but one of the arguments requires grad.")
    result = fn(*args, **kwargs)
    got, want = be.dtype_name(result), be.dtype_name(out)
    if _KIND[got] > _KIND[want]:
        words = messages.TYPE_WORDS
        raise be.runtime_error(f"result type {words[got]} can't be cast to the desired output "
                               f"type {words[want]}")
    shape, out_shape = tuple(be.shape(result)), tuple(be.shape(out))
    if shape != out_shape:
        raise be.runtime_error(
            f"{name}(): out= has shape {list(out_shape)}, the result {list(shape)}: torch would "
            "resize out, and gradserve cannot resize a tensor in place; pass an out of the "
            "result's shape, or use the returned tensor")
    with grad_mode.no_grad():
        out.copy_(result)
    return out


def with_out(be: Backend, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (the function `name` of a backend) also taking torch's `out=` keyword."""
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if "out" not in kwargs:
            return fn(*args, **kwargs)
        out = kwargs.pop("out")
        if out is None:
            return fn(*args, **kwargs)
        return call_with_out(be, name, fn, out, args, kwargs)
    return call


def wrap(be: Backend, functions: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
    """The functions of `functions` named in `OUT_FUNCTIONS` (or torch's aliases of them), each
    taking `out=`; an alias and its target stay one function."""
    wrapped: dict[int, Callable[..., Any]] = {}
    out: dict[str, Any] = {}
    for name, fn in functions.items():
        target = aliases.ALIASES.get(name, name)
        if target in OUT_FUNCTIONS:
            if id(fn) not in wrapped:
                wrapped[id(fn)] = with_out(be, target, fn)
            out[name] = wrapped[id(fn)]
    return out
