"""Creating tensors from data: `tensor`, and the torch-style conversion rules it follows."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradserve.surface import messages
from gradserve.surface.creation import keeps_numpy_scalar_dtype, nested_values, sequence_dtype
from gradserve.surface.devices import check_device
from gradserve.surface.numbers import array_overflows, overflow_message

from . import dtypes, errors
from .dtypes import DType
from .tensor import Tensor


def _resolve_dtype(dtype: DType | str | None) -> DType | None:
    if dtype is None or isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, str):
        return dtypes.by_name(dtype)
    raise errors.InvalidTypeError(
        f"tensor(): argument 'dtype' must be torch.dtype, not {type(dtype).__name__}")


def as_array(data: Any, dtype: DType | str | None = None) -> np.ndarray:
    """Convert Python scalars, nested lists, numpy arrays or Tensors to an ndarray, as torch does.

    Python floats give float32 (the default dtype), ints int64, bools bool; a numpy array keeps
    its dtype when supported, and so does a numpy scalar of a supported dtype
    (`np.float64(0.5)`: float64).
    """
    want = _resolve_dtype(dtype)
    if isinstance(data, Tensor):
        arr = data._data.copy()
    elif isinstance(data, np.ndarray) or keeps_numpy_scalar_dtype(data):
        dtypes.from_numpy(data.dtype) if want is None else None
        arr = np.array(data, copy=True)
    else:
        if isinstance(data, (str, bytes, dict, set)) or data is None:
            raise errors.InvalidTypeError(
                f"Could not infer dtype of {type(data).__name__}")
        data = nested_values(data, Tensor, lambda t: t._data)
        try:
            arr = np.array(data)
        except ValueError as exc:
            raise errors.InvalidValueError(
                f"expected a rectangular nested sequence: {exc}") from None
        kind = arr.dtype.kind
        if kind not in "fiub":
            raise errors.InvalidTypeError(f"Could not infer dtype of {arr.dtype}")
        if want is None and (
                inferred := sequence_dtype(data, dtypes.DEFAULT_FLOAT.np)) is not None:
            arr = arr.astype(inferred)  # numpy values in a list: torch promotes their dtypes
        elif kind == "f":
            if want is None:  # with a dtype, Python floats convert straight to it
                arr = arr.astype(dtypes.DEFAULT_FLOAT.np)
        elif kind in "iu":
            arr = arr.astype(np.int64)
        if want is not None and array_overflows(arr, want.name):  # torch checks each number
            raise errors.InvalidArgumentError(overflow_message(want.name))
    if want is not None and arr.dtype != want.np:
        with np.errstate(over="ignore", invalid="ignore"):  # 1e300 into float32 is inf
            arr = arr.astype(want.np)
    elif want is None:
        dtypes.from_numpy(arr.dtype)
    return arr


def tensor(data: Any, dtype: DType | str | None = None, requires_grad: bool = False,
           device: Any = None, pin_memory: bool = False) -> Tensor:
    """A new leaf tensor holding a copy of `data` (torch.tensor).

    Args:
        data: a Python scalar, a (nested) list, a numpy array or a Tensor.
        dtype: the dtype; inferred as torch infers it when None.
        requires_grad: record operations on it (floating dtypes only).
        device: None or the CPU, as a CPU-only torch takes it ("cuda" is refused).
    Raises:
        InvalidTypeError: data of an unsupported type; AutogradError: requires_grad on a
        non-floating dtype; AssertionError: a CUDA device.
    """
    check_device(device, "tensor", errors.InvalidTypeError, errors.InvalidArgumentError)
    arr = as_array(data, dtype)
    # 0-d data is kept as a numpy scalar (fast arithmetic) until something writes to it.
    t = Tensor._make(arr[()] if arr.ndim == 0 else arr)
    if requires_grad:
        t._set_requires_grad(True, messages.REQUIRES_GRAD_FACTORY_MESSAGE)
    return t


def shared_leaf(array: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A leaf tensor holding `array` itself, not a copy (for the server's inputs, which it
    decodes as views of the request's bytes).

    The caller leaves `array` unchanged while the tensor lives; a read-only array stays
    read-only, so only data nothing writes into belongs here (an in-place op on the tensor is
    refused as on an expanded view). Not torch API.

    Args:
        array: an ndarray of a gradserve dtype, of at least one dimension.
        requires_grad: record operations on it (floating dtypes only).
    Raises:
        InvalidTypeError: a dtype gradserve does not have; AutogradError: requires_grad on a
        non-floating dtype.
    """
    dtypes.from_numpy(array.dtype)
    t = Tensor._make(array)
    if requires_grad:
        t._set_requires_grad(True, messages.REQUIRES_GRAD_FACTORY_MESSAGE)
    return t


def as_tensor(data: Any, dtype: DType | str | None = None, device: Any = None) -> Tensor:
    """torch.as_tensor: `data` itself when it is a Tensor of that dtype, else `tensor(data)`.

    Raises:
        as `tensor`.
    """
    check_device(device, "as_tensor", errors.InvalidTypeError, errors.InvalidArgumentError)
    if isinstance(data, Tensor) and (dtype is None or _resolve_dtype(dtype) is data.dtype):
        return data
    return tensor(data, dtype=dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """torch.from_numpy: a tensor of the array's dtype (a copy here: torch shares its memory).

    Raises:
        InvalidTypeError: not an ndarray, or of a dtype gradserve does not have.
    """
    if not isinstance(array, np.ndarray):
        raise errors.InvalidTypeError(f"expected np.ndarray (got {type(array).__name__})")
    return tensor(array)
