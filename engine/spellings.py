"""torch's spellings that are not one op (gradserve.surface.spellings), installed in process:
each as a function of `gradserve.engine` and as a Tensor method or property."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradserve.surface import compat as _compat  # (also registers its spellings)
from gradserve.surface import compositions as _compositions  # noqa: F401  (registers its spellings)
from gradserve.surface import creation as _creation  # noqa: F401  (registers its spellings)
from gradserve.surface import tensor_new as _tensor_new  # noqa: F401  (registers its spellings)
from gradserve.surface import tensor_ops as _tensor_ops  # noqa: F401  (registers its spellings)
from gradserve.surface.binding import parameter_names, torch_keywords
from gradserve.surface.spellings import SPELLINGS, Spelling

from . import creation, dtypes, errors
from .api import FUNCTIONS, apply_inplace, public
from .tensor import Size, Tensor


class EngineBackend:
    """The surface's Backend in process: an op runs now; errors are the engine's typed ones."""

    type_error = errors.InvalidTypeError
    runtime_error = errors.InvalidArgumentError
    index_error = errors.OutOfRangeIndexError

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self  # the layer itself: copy.deepcopy(module) shares it, as torch's functions

    def call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        return FUNCTIONS[name](*args, **kwargs)

    def call_inplace(self, name: str, target: Any, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any]) -> Any:
        return apply_inplace(name, target, args, kwargs)

    def is_tensor(self, value: Any) -> bool:
        return isinstance(value, Tensor)

    def shape(self, tensor: Any) -> tuple[int, ...]:
        return tuple(tensor.shape)

    def dtype_name(self, tensor: Any) -> str:
        return str(tensor.dtype.name)

    def dtype_of(self, tensor: Any) -> Any:
        return tensor.dtype

    def dtype(self, name: str) -> Any:
        return dtypes.by_name(name)

    def default_dtype(self) -> str:
        return dtypes.DEFAULT_FLOAT.name

    def from_data(self, data: Any, dtype: str) -> Any:
        return creation.tensor(data, dtype=dtypes.by_name(dtype))

    def is_size(self, value: Any) -> bool:
        return isinstance(value, Size)

    def is_contiguous(self, tensor: Any) -> bool:
        return bool(np.asarray(tensor._data).flags.c_contiguous)

    def known_strides(self, tensor: Any) -> tuple[int, ...] | None:
        return tuple(tensor.stride())

    def contiguous_copy(self, tensor: Any) -> Any:
        return self.call("clone", (tensor,), {"memory_format": "contiguous"})

    def adopt(self, tensor: Any, value: Any) -> None:
        tensor._data = value._array()  # value is a view of tensor's data when it can be
        tensor._vc[0] += 1  # written in place, as torch's resize_ bumps the version


BACKEND = EngineBackend()


def _legacy_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """torch.Tensor(...), the legacy constructor: sizes (zeros), data (the default dtype) or a
    tensor (an alias); see gradserve.surface.compat.legacy_new."""
    return _compat.legacy_new(BACKEND, None, args, kwargs)


Tensor.__new__ = staticmethod(_legacy_new)  # type: ignore[assignment]


def bound(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Surface function `fn(be, ...)` as the engine's function `name` (the backend bound)."""
    params = parameter_names(fn)

    def bound(*args: Any, **kwargs: Any) -> Any:
        return fn(BACKEND, *args, **torch_keywords(kwargs, params))
    bound.__name__ = bound.__qualname__ = name
    bound.__doc__ = fn.__doc__
    # the spelling's own parameters without the backend (help(), tensor_methods.pyi)
    sig = inspect.signature(fn)
    bound.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=list(sig.parameters.values())[1:])
    return bound


def _property(sp: Spelling) -> property:
    fn = sp.method
    assert fn is not None

    def get(self: Tensor) -> Any:
        return fn(BACKEND, self, stacklevel=2)  # the user's line reads the property
    get.__name__ = get.__qualname__ = sp.name
    get.__doc__ = fn.__doc__
    return property(get)


def install() -> None:
    """Register every surface spelling with `public` (before `api.build()` runs)."""
    for sp in SPELLINGS.values():
        if sp.is_property:
            public(sp.name, function=False)(_property(sp))  # type: ignore[arg-type]
            continue
        if sp.function is not None and sp.function is sp.method:
            public(sp.name)(bound(sp.function, sp.name))
            continue
        if sp.function is not None:
            public(sp.name, method=False)(bound(sp.function, sp.name))
        if sp.method is not None:
            public(sp.name, function=False)(bound(sp.method, sp.name))


install()
