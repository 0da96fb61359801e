"""How torch reads a numpy scalar given where it takes a number (an op's operand, a fill
value): as a Python number, but not always the one it holds. `t * np.float64(0.1)` is
`t * 0.1` (float32 stays float32), `t * np.int32(3)` is `t * 3`, and `t * np.bool_(True)` is
`t * 1.0` (torch 2.13 reads a numpy bool as a float: an int64 tensor times it is float32)."""

from __future__ import annotations

from typing import Any

import numpy as np

NUMPY_NUMBERS = (np.bool_, np.integer, np.floating)
"""The numpy scalar types torch takes as numbers (complex ones gradserve does not have)."""


def python_number(v: Any) -> Any:
    """The Python number torch reads numpy scalar `v` as (see the module); None when `v` is
    not a numpy bool, integer or floating scalar."""
    if isinstance(v, np.bool_):
        return float(v)
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return None


# --- converting a number to a dtype, checked (c10::checked_convert) ------------------------------

_INT_LIMITS = {name: (int(np.iinfo(name).min), int(np.iinfo(name).max))
               for name in ("uint8", "int8", "int16", "int32", "int64")}
_FLOAT_MAX = {name: float(np.finfo(name).max) for name in ("float32", "float64")}

C_TYPE_NAMES = {"uint8": "uint8_t", "int8": "int8_t", "int16": "int16_t", "int32": "int",
                "int64": "int64_t", "float32": "float", "float64": "double"}
"""The C++ type names torch's scalar conversions print (`fill_`, `full`, `masked_fill`)."""


def overflow_message(type_name: str) -> str:
    """torch's RuntimeError text for a number out of a dtype's range; `type_name` is the C++
    name (`C_TYPE_NAMES`) for a scalar conversion, the dtype's name for `torch.tensor`."""
    return f"value cannot be converted to type {type_name} without overflow"


def overflows(value: Any, dtype: str) -> bool:
    """Whether torch refuses to convert Python number `value` to dtype `dtype` (by name), as
    c10::overflows: never into bool; an int outside an integral dtype's range (but uint8
    takes -255..-1, wrapping them); a float outside it, or NaN or an infinity, for an integral
    dtype (compared as doubles: float(2**63) fits int64); a finite float beyond float32's
    largest for float32."""
    if type(value) is bool or dtype not in C_TYPE_NAMES:
        return False
    limits = _INT_LIMITS.get(dtype)
    if type(value) is int:
        if limits is None:
            return False
        lo, hi = limits
        if lo == 0:
            return value > hi or -value > hi
        return not lo <= value <= hi
    value = float(value)
    if limits is None:
        return value == value and abs(value) != float("inf") and abs(value) > _FLOAT_MAX[dtype]
    return not float(limits[0]) <= value <= float(limits[1])  # NaN: not in range


def array_overflows(arr: np.ndarray, dtype: str) -> bool:
    """Whether some element of `arr` (the numbers of a Python list, as numpy read them)
    `overflows` dtype `dtype`."""
    if not arr.size or arr.dtype.kind not in "iuf" or dtype not in _INT_LIMITS:
        return False  # (a float64 list into float32: torch rounds, to inf if need be)
    lo, hi = _INT_LIMITS[dtype]
    if arr.dtype.kind == "f":
        return bool(np.isnan(arr).any()) or not (float(lo) <= float(arr.min())
                                                 and float(arr.max()) <= float(hi))
    low, high = int(arr.min()), int(arr.max())
    return high > hi or (-low > hi if lo == 0 else low < lo)
