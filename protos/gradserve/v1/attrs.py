"""Python values as `AttrValue` messages: the one encoder the server (catalogue defaults) and
the client (a call's attributes) share. Hand-written, not generated; numpy and protobuf only.

A dtype is each side's own class, so the caller says how to read one (`dtype_code`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import graph_pb2


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def encode_attr(value: Any, out: graph_pb2.AttrValue,
                dtype_code: Callable[[Any], int | None]) -> None:
    """Write a Python attribute value (None, bool, int, float, str, ints, dtype) into `out`.

    Args:
        dtype_code: the wire dtype code of `value` if it is a dtype, else None.

    Raises:
        TypeError: a value no attribute kind accepts (named by its type only: the repr of a
            client Tensor would send the half-built instruction).
    """
    if value is None:
        out.none_value.SetInParent()
    elif isinstance(value, (bool, np.bool_)):
        out.bool_value = bool(value)
    elif isinstance(value, (int, np.integer)):
        out.int_value = int(value)
    elif isinstance(value, (float, np.floating)):
        out.float_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        out.ints_value.values.extend(int(v) for v in value)
    else:
        code = dtype_code(value)
        if code is None:
            raise TypeError(f"an attribute cannot be a {type(value).__name__}")
        out.dtype_value = code
