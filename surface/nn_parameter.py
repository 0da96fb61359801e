"""`torch.nn.Parameter` for every backend, and torch.typename (which Module's messages use).

A backend's `Parameter` is a class whose metaclass makes the backend's parameter tensor when
called and asks the backend for `isinstance` (as torch's `_ParameterMeta` does), so the tensor
itself can stay the backend's own Tensor type.
"""

from __future__ import annotations

from typing import Any

from . import messages
from .nn_backend import NNBackend

_TYPE_NAMES = {"float32": "torch.FloatTensor", "float64": "torch.DoubleTensor",
               "int32": "torch.IntTensor", "int64": "torch.LongTensor",
               "bool": "torch.BoolTensor", "uint8": "torch.ByteTensor",
               "int8": "torch.CharTensor", "int16": "torch.ShortTensor"}


def typename(be: NNBackend, obj: Any) -> str:
    """torch.typename: 'torch.FloatTensor' for a float32 tensor, else the qualified class name."""
    if be.is_tensor(obj):
        return _TYPE_NAMES.get(be.dtype_of(obj).name, "torch.Tensor")
    return class_typename(obj)


def class_typename(obj: Any) -> str:
    """torch.typename of a value that is not a tensor: its class's qualified name."""
    cls = type(obj)
    module = cls.__module__
    return cls.__qualname__ if module in ("", "builtins") else f"{module}.{cls.__qualname__}"


class ParameterMeta(type):
    """The metaclass of each backend's `Parameter`: calling it makes the backend's parameter
    tensor; `isinstance(x, Parameter)` asks the backend (as torch's `_ParameterMeta` does)."""

    _be: NNBackend

    def __call__(cls, data: Any = None, requires_grad: bool = True) -> Any:
        be = cls._be
        if data is None:
            data = be.torch.zeros(0)
        elif not be.is_tensor(data):  # torch 2.x detaches `data` first
            raise AttributeError(f"'{type(data).__name__}' object has no attribute 'detach'")
        if requires_grad and not be.dtype_of(data).is_floating_point:
            raise be.runtime_error(messages.REQUIRES_GRAD_FACTORY_MESSAGE)
        return be.parameter(data, bool(requires_grad))

    def __instancecheck__(cls, instance: Any) -> bool:
        return cls._be.is_parameter(instance)


def parameter_class(be: NNBackend) -> type:
    """torch.nn.Parameter for backend `be`."""
    return ParameterMeta("Parameter", (), {
        "_be": be, "__module__": "torch.nn",
        "__doc__": "Parameter(data=None, requires_grad=True): a leaf tensor that a Module "
                   "registers as a parameter when assigned as an attribute."})


_UNINITIALIZED_USE = (
    "Attempted to use an uninitialized parameter in <method '{}' of 'torch._C.TensorBase' "
    "objects>. This error happens when you are using a `LazyModule` or explicitly manipulating "
    "`torch.nn.parameter.UninitializedParameter` objects. When using LazyModules Call `forward` "
    "with a dummy batch to initialize the parameters before calling torch functions")
_UNINITIALIZED_SHAPE = (
    "Can't access the shape of an uninitialized parameter or buffer. This error usually happens "
    "in `load_state_dict` when trying to load an uninitialized parameter into an initialized "
    "one. Call `forward` to initialize the parameters before accessing their attributes.")


class UninitializedParameter:
    """torch.nn.UninitializedParameter: a lazy module's parameter before its first forward (or
    a `load_state_dict`) gives it a shape. It holds no tensor: the module replaces it with a
    Parameter of that shape (`nn_lazy.materialize`), so it is a new object afterwards (torch
    changes the same object's class; hold parameters only after the first forward, as torch's
    documentation asks)."""

    def __init__(self, requires_grad: bool = True, device: Any = None, dtype: Any = None
                 ) -> None:
        self.requires_grad = requires_grad
        self.dtype = dtype
        self.grad = None

    def __repr__(self) -> str:
        return "<UninitializedParameter>"

    @property
    def shape(self) -> Any:
        raise RuntimeError(_UNINITIALIZED_SHAPE)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise ValueError(_UNINITIALIZED_USE.format(name))
        return refuse
