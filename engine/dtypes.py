"""Dtypes and torch's type promotion.

Eight dtypes: bool, uint8, int8, int16, int32, int64, float32, float64. `promote` is torch's
`promoteTypes` restricted to them: bool gives way to anything, floating beats integral, the
wider of two floats or of two signed integers wins, and uint8 with a signed integer gives the
narrowest signed integer holding both (uint8 + int8 is int16). `result_type` adds torch's three
priority groups: tensors with dimensions, 0-dim tensors and Python scalars ("wrapped numbers");
a lower group only wins when it is of a higher category.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from gradserve.surface import messages
from gradserve.surface.numbers import C_TYPE_NAMES, overflow_message, overflows

from . import errors


class DType:
    """A tensor element type, printed as torch prints it (`torch.float32`)."""

    __slots__ = ("name", "np", "scalar", "rank", "category", "itemsize", "torch_tensor_name")

    def __init__(self, name: str, np_dtype: Any, rank: int, category: int, tensor_name: str):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.scalar = self.np.type  # the numpy scalar type of a 0-d result (np.float32)
        self.rank = rank
        self.category = category  # 0 bool, 1 integer, 2 floating
        self.itemsize = self.np.itemsize
        self.torch_tensor_name = tensor_name  # for torch's messages: "torch.FloatTensor"

    @property
    def is_floating_point(self) -> bool:
        return self.category == 2

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (by_name, (self.name,))


bool_ = DType("bool", np.bool_, 0, 0, "torch.BoolTensor")
uint8 = DType("uint8", np.uint8, 1, 1, "torch.ByteTensor")
int8 = DType("int8", np.int8, 1, 1, "torch.CharTensor")
int16 = DType("int16", np.int16, 2, 1, "torch.ShortTensor")
int32 = DType("int32", np.int32, 3, 1, "torch.IntTensor")
int64 = DType("int64", np.int64, 4, 1, "torch.LongTensor")
float32 = DType("float32", np.float32, 5, 2, "torch.FloatTensor")
float64 = DType("float64", np.float64, 6, 2, "torch.DoubleTensor")

DTYPES: dict[str, DType] = {d.name: d for d in (float32, float64, int32, int64, bool_, uint8,
                                                int8, int16)}
_ORDER = (bool_, uint8, int8, int16, int32, int64, float32, float64)
_BY_NP: dict[Any, DType] = {d.np: d for d in _ORDER}

DEFAULT_FLOAT = float32


def by_name(name: str) -> DType:
    """Look a dtype up by its name ("float32"); raises `InvalidTypeError` for any other name."""
    try:
        return DTYPES[name]
    except KeyError:
        raise errors.InvalidTypeError(messages.unsupported_dtype(name, list(DTYPES))) from None


def from_numpy(np_dtype: Any) -> DType:
    """The dtype for a numpy dtype; float16, complex, strings and objects are refused."""
    try:
        return _BY_NP[np.dtype(np_dtype)]
    except (KeyError, TypeError):
        raise errors.InvalidTypeError(
            f"can't convert np.ndarray of type {np.dtype(np_dtype)}. The only supported types "
            "are: float64, float32, int64, int32, int16, int8, uint8, and bool.") from None


def promote(a: DType, b: DType) -> DType:
    """torch.promote_types for the supported dtypes."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    if a is uint8 or b is uint8:  # with a signed integer: one wide enough for both
        other = b if a is uint8 else a
        return int16 if other is int8 else other
    return a if a.rank >= b.rank else b


def scalar_dtype(value: Any) -> DType:
    """The dtype a Python scalar stands for: bool, int64 or the default float (that of a
    numpy bool too, which torch reads as a float: gradserve.surface.numbers)."""
    if isinstance(value, builtins.bool):
        return bool_
    if isinstance(value, (builtins.int, np.integer)):
        return int64
    return DEFAULT_FLOAT


def fill_value(value: Any, dtype: np.dtype[Any]) -> Any:
    """`value` (a Python number, or a 0-d array: its number) to fill a `dtype` array with, as
    torch's checked conversion of a Scalar.

    Raises:
        InvalidArgumentError: torch's overflow error (`fill_(300)` on int8).
    """
    if isinstance(value, np.ndarray):
        value = value.item()
    if overflows(value, dtype.name):
        raise errors.InvalidArgumentError(overflow_message(C_TYPE_NAMES[dtype.name]))
    if type(value) is builtins.int and dtype.kind == "u":
        return np.array(value, np.int64).astype(dtype)[()]  # C's cast: uint8 takes -1 as 255
    if type(value) is builtins.float and dtype.kind in "iu":
        with np.errstate(invalid="ignore"):  # float(2**63) passes the check: C's cast
            return np.array(value).astype(dtype)[()]
    return value


def _combine(higher: DType | None, lower: DType | None) -> DType | None:
    # torch's combine_categories: a lower-priority group only counts when its category is higher.
    if higher is None:
        return lower
    if lower is None or higher.category == 2:
        return higher
    if higher.category == 0 or lower.category == 2:
        return promote(higher, lower)
    return higher


def result_type(dim: DType | None, zero: DType | None, wrapped: DType | None) -> DType:
    """Combine the promoted dtypes of the three priority groups as torch does."""
    out = _combine(dim, _combine(zero, wrapped))
    assert out is not None
    return out


def to_float(d: DType) -> DType:
    """The dtype of an op that always computes in floating point (`sin`, true division)."""
    return d if d.category == 2 else DEFAULT_FLOAT
