"""Binding a torch-style call's arguments to an op's tensor inputs, as the engine's functions
and the client's catalogue signatures both do."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Container, Sequence
from typing import Any

import numpy as np

from . import messages

NUMPY_NAMES = {"axis": "dim", "keepdims": "keepdim", "x": "input", "a": "input", "x1": "input",
               "x2": "other"}
"""The numpy names torch's argument parser takes for its own (`x.sum(axis=0)` is
`x.sum(dim=0)`; python_arg_parser.cpp's numpy_compatibility_arg_names)."""


def torch_keywords(kwargs: dict[str, Any], params: Container[str]) -> dict[str, Any]:
    """`kwargs` with numpy's names (`axis=`, `keepdims=`, ...) renamed to torch's, where the
    function has that parameter (among `params`) and it was not also given by torch's name.

    Args:
        kwargs: a call's keyword arguments (not changed).
        params: the function's parameter names.
    Returns:
        `kwargs` itself when nothing is renamed, else a new dict.
    """
    if not any(k in NUMPY_NAMES for k in kwargs):
        return kwargs
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        name = NUMPY_NAMES.get(k)
        out[name if name is not None and name in params and name not in kwargs else k] = v
    return out


def parameter_names(fn: Callable[..., Any]) -> Container[str]:
    """The keyword names a Python function takes: its parameters, or every name when it takes
    `**kwargs` (a spelling that forwards them to an op)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return _Everything()
    return frozenset(params)


class _Everything:
    def __contains__(self, name: object) -> bool:
        return True


def take_inputs(name: str, inputs: Sequence[str], optional: Sequence[bool],
                given: Sequence[Any], kwargs: dict[str, Any],
                type_error: type[TypeError] = TypeError) -> list[Any]:
    """The op's tensor inputs: the positional `given`, then each later one by name from
    `kwargs` (popped), or None if it is optional.

    Raises:
        type_error: a required input is missing, or a numpy array is given by keyword (torch's
            text, naming the function `name`).
    """
    ins = list(given)
    for j in range(len(ins), len(inputs)):
        key = inputs[j]
        if key in kwargs:
            value = kwargs.pop(key)
            if isinstance(value, np.ndarray):  # torch takes no array for a Tensor argument
                raise type_error(messages.must_be_tensor(name, key, value))
            ins.append(value)
        elif optional[j]:
            ins.append(None)
        else:
            raise type_error(f"{name}() missing required argument '{key}'")
    return ins
