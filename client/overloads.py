"""torch spellings that are not one catalogue op, as a session's functions and a Tensor's methods.

They are written once in gradserve.surface (spellings: max/min, norm, varargs sizes, split,
chunk, flatten, broadcast_to, T, mT, gather, index_select, narrow, view, view_as, einsum;
compat; creation: zeros/ones/full/arange/randint/... with torch's keywords), shared with the
engine; here they run against `RemoteBackend`, which records each op through the owner's
`call(name, args, kwargs)`, so the server's engine raises torch's errors. The client's own is
`bernoulli_` (an in-place op the session applies). An overload is installed only when every op
it names is in the server's catalogue.

Shapes are read (`tensor.shape`, a flush when not yet known) only where torch's answer depends on
them: `chunk`, `narrow`, `flatten`, `T`, `mT`, `view_as`.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from gradserve.surface import compat as _compat  # noqa: F401  (registers its spellings)
from gradserve.surface import compositions as _compositions  # noqa: F401  (registers its spellings)
from gradserve.surface import creation as _creation  # noqa: F401  (registers its spellings)
from gradserve.surface import layout
from gradserve.surface import tensor_new as _tensor_new  # noqa: F401  (registers its spellings)
from gradserve.surface import tensor_ops as _tensor_ops  # noqa: F401  (registers its spellings)
from gradserve.surface.binding import parameter_names, torch_keywords
from gradserve.surface.spellings import SPELLINGS, Spelling

from . import codec
from .tensor import Tensor

Fn = Callable[..., Any]


class RemoteBackend:
    """The surface's Backend for a session or trace: an op is recorded (and runs on the server);
    errors are the built-in types torch raises."""

    __slots__ = ("owner",)
    type_error = TypeError
    runtime_error = RuntimeError
    index_error = IndexError

    def __init__(self, owner: Any):
        self.owner = owner

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self  # the session's layer: copy.deepcopy(module) shares it

    def call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        return self.owner.call(name, args, dict(kwargs))

    def call_inplace(self, name: str, target: Any, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any]) -> Any:
        return self.owner.inplace(name + "_", target, args, dict(kwargs))

    def is_tensor(self, value: Any) -> bool:
        return isinstance(value, Tensor)

    def shape(self, tensor: Any) -> tuple[int, ...]:
        return tuple(tensor.shape)  # a flush when not yet known

    def dtype_name(self, tensor: Any) -> str:
        return str(tensor.dtype.name)

    def dtype_of(self, tensor: Any) -> Any:
        return tensor.dtype

    def dtype(self, name: str) -> Any:
        return codec.BY_NAME[name]

    def default_dtype(self) -> str:
        return str(getattr(self.owner, "_default_dtype", codec.float32).name)

    def from_data(self, data: Any, dtype: str) -> Any:
        return self.owner.tensor(data, dtype=codec.BY_NAME[dtype])

    def is_size(self, value: Any) -> bool:
        from .tensor import Size

        return isinstance(value, Size)

    def is_contiguous(self, tensor: Any) -> bool:
        return bool(tensor.is_contiguous())

    def known_strides(self, tensor: Any) -> tuple[int, ...] | None:
        # known once the server described the tensor, or when the client inferred the result
        # contiguous (`Meta.contiguous`)
        info = tensor._info
        if info is None and tensor._known_contiguous():
            return layout.contiguous_strides(tensor._meta.shape)
        if info is None or tensor._error is not None:
            return None
        if info.non_contiguous:
            return tuple(info.strides)
        return layout.contiguous_strides(tuple(info.shape))

    def adopt(self, tensor: Any, value: Any) -> None:
        adopt = getattr(self.owner, "adopt", None)
        if adopt is None:
            raise NotImplementedError("gradserve: a trace cannot change a tensor's shape in place "
                                      "(resize_); use reshape")
        adopt(tensor, value)

    def contiguous_copy(self, tensor: Any) -> Any:
        out = self.call("clone", (tensor,), {"memory_format": "contiguous"})
        if out._meta is not None:
            out._meta = out._meta._replace(contiguous=True)
        return out


OVERLOADS: dict[str, Spelling] = dict(SPELLINGS)
"""The surface's spellings, then the client's own below; each form takes a RemoteBackend."""


def _register(name: str, needs: Sequence[str], function: Fn | None = None,
              method: Fn | None = None) -> None:
    for fn in (function, method):
        if fn is not None:  # Python's own TypeErrors name the function (torch's name)
            fn.__name__ = fn.__qualname__ = name
    OVERLOADS[name] = Spelling(name, tuple(needs), function, method)


def available(ops: Mapping[str, Any]) -> dict[str, Spelling]:
    """The overloads whose ops are all in the catalogue `ops` (others are not installed)."""
    return {name: ov for name, ov in OVERLOADS.items() if all(n in ops for n in ov.needs)}


def functions(owner: Any, overloads: Mapping[str, Spelling]) -> dict[str, Fn]:
    """`session.<name>` for each overload with a function form, recording through `owner`."""
    be = RemoteBackend(owner)
    out: dict[str, Fn] = {}
    for name, ov in overloads.items():
        if ov.function is not None:
            out[name] = bind_function(be, ov.function, name)
    return out


def bind_function(be: RemoteBackend, fn: Fn, name: str) -> Fn:
    """Surface function `fn(be, ...)` as the session's function `name` (`be` bound)."""
    params = parameter_names(fn)

    def bound(*args: Any, **kwargs: Any) -> Any:
        return fn(be, *args, **torch_keywords(kwargs, params))
    bound.__name__ = bound.__qualname__ = name
    bound.__doc__ = fn.__doc__
    return bound


# The user's line, as seen from a property (the surface's T): x.T -> Tensor.__getattr__ ->
# Session.method -> method() below -> T.
_PROPERTY_STACKLEVEL = 4


# parameter_names of each overload's method, found once (inspect.signature is slow)
_PARAMETERS: dict[Fn, Container[str]] = {}


def _parameters(fn: Fn) -> Container[str]:
    params = _PARAMETERS.get(fn)
    if params is None:
        params = _PARAMETERS[fn] = parameter_names(fn)
    return params


def method(owner: Any, ov: Spelling, t: Tensor) -> Any:
    """`t.<name>` for an overload with a method form: a bound callable, or a property's value."""
    assert ov.method is not None
    be = RemoteBackend(owner)
    if ov.is_property:
        return ov.method(be, t, stacklevel=_PROPERTY_STACKLEVEL)
    fn = ov.method

    def bound(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            kwargs = torch_keywords(kwargs, _parameters(fn))
        return fn(be, t, *args, **kwargs)
    bound.__name__ = bound.__qualname__ = ov.name
    bound.__doc__ = fn.__doc__
    return bound


def _bernoulli_(be: RemoteBackend, t: Any, p: Any = 0.5, *, generator: Any = None) -> Any:
    """Tensor.bernoulli_(p=0.5, *, generator=None): p a number or a tensor of probabilities."""
    return be.owner.inplace("bernoulli_", t, (p,),
                            {} if generator is None else {"generator": generator})


_register("bernoulli_", ("bernoulli",), method=_bernoulli_)
