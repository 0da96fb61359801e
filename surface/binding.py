"""Binding a torch-style call's arguments to an op's tensor inputs, as the engine's functions
and the client's catalogue signatures both do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def take_inputs(name: str, inputs: Sequence[str], optional: Sequence[bool],
                given: Sequence[Any], kwargs: dict[str, Any],
                type_error: type[TypeError] = TypeError) -> list[Any]:
    """The op's tensor inputs: the positional `given`, then each later one by name from
    `kwargs` (popped), or None if it is optional.

    Raises:
        type_error: a required input is missing (torch's text, naming the function `name`).
    """
    ins = list(given)
    for j in range(len(ins), len(inputs)):
        key = inputs[j]
        if key in kwargs:
            ins.append(kwargs.pop(key))
        elif optional[j]:
            ins.append(None)
        else:
            raise type_error(f"{name}() missing required argument '{key}'")
    return ins
