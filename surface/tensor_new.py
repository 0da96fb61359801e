"""torch's `Tensor.new_*` methods (`new_zeros`, `new_ones`, `new_empty`, `new_full`,
`new_tensor`) and `torch.numel`, written once against a `Backend` (gradserve.surface.backend).

A `new_*` result takes the tensor's dtype unless `dtype=` says otherwise (`new_full`'s too,
whatever its fill value), and is a leaf that requires grad only when asked.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from . import creation
from .backend import Backend
from .devices import check_device
from .spellings import SPELLINGS, Spelling, size_args

NEW_TENSOR_WARNING = (
    "To copy construct from a tensor, it is recommended to use sourceTensor.detach().clone() or "
    "sourceTensor.detach().clone().requires_grad_(True), rather than "
    "tensor.new_tensor(sourceTensor).")


def _method(name: str, needs: tuple[str, ...], fn: Callable[..., Any]) -> None:
    fn.__name__ = fn.__qualname__ = name
    SPELLINGS[name] = Spelling(name, needs, None, fn)


def _dtype(be: Backend, self: Any, dtype: Any) -> Any:
    return dtype if dtype is not None else be.dtype_of(self)


def _finish(be: Backend, out: Any, requires_grad: bool, dtype: Any) -> Any:
    return creation._finish(be, out, requires_grad, lambda: creation._dtype_name(dtype))


def _sized(name: str, op: str) -> None:
    def fn(be: Backend, self: Any, *size: Any, dtype: Any = None, device: Any = None,
           requires_grad: bool = False, **kwargs: Any) -> Any:
        kwargs.pop("layout", None)
        kwargs.pop("pin_memory", None)
        shape = size_args(be, name, size, kwargs)
        if kwargs:
            raise be.type_error(
                f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")
        check_device(device, name, be.type_error, be.runtime_error)
        dtype = _dtype(be, self, dtype)
        out = be.call(op, (), {"size": shape, "dtype": dtype})
        return _finish(be, out, requires_grad, dtype)

    fn.__doc__ = (f"Tensor.{name}(*size, dtype=None, device=None, requires_grad=False): a new "
                  "tensor of this tensor's dtype unless given.")
    _method(name, (op,), fn)


_sized("new_zeros", "zeros")
_sized("new_ones", "ones")
_sized("new_empty", "zeros")  # torch leaves its values uninitialised


def new_full(be: Backend, self: Any, size: Any, fill_value: Any, *, dtype: Any = None,
             device: Any = None, requires_grad: bool = False, layout: Any = None,
             pin_memory: bool = False) -> Any:
    """Tensor.new_full(size, fill_value, dtype=None, device=None, requires_grad=False)."""
    if not isinstance(size, (tuple, list)) and not be.is_size(size):
        raise be.type_error("new_full(): argument 'size' (position 1) must be tuple of ints, "
                            f"not {type(size).__name__}")
    shape = size_args(be, "new_full", (tuple(size),), {})
    check_device(device, "new_full", be.type_error, be.runtime_error)
    dtype = _dtype(be, self, dtype)
    out = be.call("full", (), {"size": shape, "fill_value": fill_value, "dtype": dtype})
    return _finish(be, out, requires_grad, dtype)


_method("new_full", ("full",), new_full)


def new_tensor(be: Backend, self: Any, data: Any, *, dtype: Any = None, device: Any = None,
               requires_grad: bool = False, layout: Any = None,
               pin_memory: bool = False) -> Any:
    """Tensor.new_tensor(data, dtype=None, device=None, requires_grad=False): a leaf copy of
    `data` of this tensor's dtype unless given (a tensor's data copied with torch's warning)."""
    check_device(device, "new_tensor", be.type_error, be.runtime_error)
    dtype = _dtype(be, self, dtype)
    if be.is_tensor(data):
        warnings.warn(NEW_TENSOR_WARNING, UserWarning, stacklevel=3)
        out = be.call("clone", (data.detach(),), {}).to(dtype)
    else:
        out = be.from_data(data, creation._dtype_name(dtype) or be.dtype_name(self))
    return _finish(be, out, requires_grad, dtype)


_method("new_tensor", ("clone",), new_tensor)


def numel(be: Backend, *args: Any, **kwargs: Any) -> int:
    """torch.numel(input): the number of elements of a tensor."""
    if len(args) + len(kwargs) > 1:
        raise be.type_error(
            f"numel() takes 1 positional argument but {len(args) + len(kwargs)} were given")
    if not args and "input" not in kwargs:
        raise be.type_error("numel() missing 1 required positional arguments: \"input\"")
    input = args[0] if args else kwargs["input"]
    if not be.is_tensor(input):
        raise be.type_error("numel(): argument 'input' (position 1) must be Tensor, not "
                            f"{type(input).__name__}")
    return int(input.numel())


numel.__name__ = numel.__qualname__ = "numel"
SPELLINGS["numel"] = Spelling("numel", (), numel, None)
