"""torch spellings that are not one catalogue op, as a session's functions and a Tensor's methods.

Most are written once in gradserve.surface.spellings (max/min, norm, varargs sizes, split,
chunk, flatten, broadcast_to, T, mT, gather, index_select, narrow), shared with the engine; here
they run against `RemoteBackend`, which records each op through the owner's `call(name, args,
kwargs)`, so the server's engine raises torch's errors. The client's own are `einsum` and the
creation functions' `*size`, `dtype=` / `requires_grad=` keywords. An overload is installed only
when every op it names is in the server's catalogue.

Shapes are read (`tensor.shape`, a flush when not yet known) only where torch's answer depends on
them: `chunk`, `narrow`, `flatten`, `T`, `mT`, and `requires_grad=True` on a `*_like`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import compat as _compat  # noqa: F401  (registers its spellings)
from gradserve.surface import messages
from gradserve.surface.devices import check_device
from gradserve.surface.spellings import SPELLINGS, Spelling, size_args

from . import codec
from .ops import is_int
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

    def call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        return self.owner.call(name, args, dict(kwargs))

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


OVERLOADS: dict[str, Spelling] = dict(SPELLINGS)
"""The surface's spellings, then the client's own below; each form takes a RemoteBackend."""


def _register(name: str, needs: Sequence[str], function: Fn | None = None,
              method: Fn | None = None) -> None:
    for fn in (function, method):
        if fn is not None:  # Python's own TypeErrors name the function (torch's name)
            fn.__name__ = fn.__qualname__ = name
    OVERLOADS[name] = Spelling(name, tuple(needs), function, method)


def _device(name: str, device: Any) -> None:
    check_device(device, name)


def _default(be: RemoteBackend, dtype: Any) -> Any:
    """`dtype`, or the session's default dtype for a floating factory (set_default_dtype)."""
    return dtype if dtype is not None else codec.BY_NAME[be.default_dtype()]


def available(ops: Mapping[str, Any]) -> dict[str, Spelling]:
    """The overloads whose ops are all in the catalogue `ops` (others are not installed)."""
    return {name: ov for name, ov in OVERLOADS.items() if all(n in ops for n in ov.needs)}


def functions(owner: Any, overloads: Mapping[str, Spelling]) -> dict[str, Fn]:
    """`session.<name>` for each overload with a function form, recording through `owner`."""
    be = RemoteBackend(owner)
    out: dict[str, Fn] = {}
    for name, ov in overloads.items():
        if ov.function is not None:
            out[name] = _bind_function(be, ov.function, name)
    return out


def _bind_function(be: RemoteBackend, fn: Fn, name: str) -> Fn:
    def bound(*args: Any, **kwargs: Any) -> Any:
        return fn(be, *args, **kwargs)
    bound.__name__ = bound.__qualname__ = name
    bound.__doc__ = fn.__doc__
    return bound


# The user's line, as seen from a property (the surface's T): x.T -> Tensor.__getattr__ ->
# Session.method -> method() below -> T.
_PROPERTY_STACKLEVEL = 4


def method(owner: Any, ov: Spelling, t: Tensor) -> Any:
    """`t.<name>` for an overload with a method form: a bound callable, or a property's value."""
    assert ov.method is not None
    be = RemoteBackend(owner)
    if ov.is_property:
        return ov.method(be, t, stacklevel=_PROPERTY_STACKLEVEL)
    fn = ov.method

    def bound(*args: Any, **kwargs: Any) -> Any:
        return fn(be, t, *args, **kwargs)
    bound.__name__ = bound.__qualname__ = ov.name
    bound.__doc__ = fn.__doc__
    return bound


# --- creation: *size, dtype=, requires_grad= ------------------------------------------------------

def _finish(t: Any, requires_grad: bool) -> Any:
    if requires_grad:
        t.requires_grad_(True)
    return t


def _check_requires_grad(requires_grad: bool, dtype: Any, default: Callable[[], Any]) -> None:
    """torch refuses `requires_grad=True` on a factory making a non-floating tensor, before it
    makes anything: the dtype is `dtype`, or the one the op infers (`default()`)."""
    if requires_grad:
        d = codec.as_dtype(dtype) if dtype is not None else default()
        if not d.is_floating_point:
            raise RuntimeError(messages.REQUIRES_GRAD_FACTORY_MESSAGE)


def _scalar_dtype(*values: Any) -> codec.DType:
    """torch's dtype for Python numbers: a float makes float32, else an int int64, else bool."""
    if any(isinstance(v, (float, np.floating)) for v in values):
        return codec.float32
    if any(is_int(v) for v in values):
        return codec.int64
    return codec.bool_


def _sized(name: str) -> None:
    op = "zeros" if name == "empty" else name  # torch leaves empty()'s values uninitialised

    def fn(be: RemoteBackend, *size: Any, dtype: Any = None, requires_grad: bool = False,
           device: Any = None, **kwargs: Any) -> Any:
        _device(name, device)
        shape = size_args(be, name, size, kwargs)
        if kwargs:
            raise TypeError(f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")
        dtype = _default(be, dtype)
        _check_requires_grad(requires_grad, dtype, lambda: codec.float32)
        return _finish(be.call(op, (), {"size": shape, "dtype": dtype}), requires_grad)

    fn.__doc__ = f"torch.{name}(*size, dtype=None, requires_grad=False, device=None)."
    _register(name, (op,), function=fn)


for _name in ("zeros", "ones", "rand", "randn", "empty"):
    _sized(_name)


def _full(be: RemoteBackend, size: Any, fill_value: Any, *, dtype: Any = None,
          requires_grad: bool = False, device: Any = None) -> Any:
    """torch.full(size, fill_value, dtype=None, requires_grad=False, device=None)."""
    _device("full", device)
    shape = size_args(be, "full", (size,), {})
    if dtype is None and _scalar_dtype(fill_value) is codec.float32:
        dtype = _default(be, None)
    _check_requires_grad(requires_grad, dtype, lambda: _scalar_dtype(fill_value))
    return _finish(be.call("full", (), {"size": shape, "fill_value": fill_value,
                                          "dtype": dtype}), requires_grad)


_register("full", ("full",), function=_full)


def _like(name: str) -> None:
    op = "zeros_like" if name == "empty_like" else name

    def fn(be: RemoteBackend, input: Any, *args: Any, dtype: Any = None,
           requires_grad: bool = False, device: Any = None, **kwargs: Any) -> Any:
        _device(name, device)
        _check_requires_grad(requires_grad, dtype, lambda: input.dtype)
        out = be.call(op, (input, *args), {**kwargs, "dtype": dtype})
        return _finish(out, requires_grad)

    fn.__doc__ = f"torch.{name}(input, ..., dtype=None, requires_grad=False, device=None)."
    _register(name, (op,), function=fn)


for _name in ("zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "empty_like"):
    _like(_name)


def _arange(be: RemoteBackend, start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None,
            requires_grad: bool = False, device: Any = None) -> Any:
    """torch.arange(end) or arange(start, end, step=1), dtype=None, requires_grad=False."""
    _device("arange", device)
    if dtype is None and _scalar_dtype(start, end, step, 0) is codec.float32:
        dtype = _default(be, None)
    _check_requires_grad(requires_grad, dtype, lambda: _scalar_dtype(start, end, step, 0))
    return _finish(be.call("arange", (), {"start": start, "end": end, "step": step,
                                            "dtype": dtype}), requires_grad)


_register("arange", ("arange",), function=_arange)


def _linspace(be: RemoteBackend, start: Any, end: Any, steps: int, *, dtype: Any = None,
              requires_grad: bool = False, device: Any = None) -> Any:
    """torch.linspace(start, end, steps, dtype=None, requires_grad=False)."""
    _device("linspace", device)
    dtype = _default(be, dtype)
    _check_requires_grad(requires_grad, dtype, lambda: codec.float32)
    return _finish(be.call("linspace", (), {"start": start, "end": end, "steps": steps,
                                              "dtype": dtype}), requires_grad)


_register("linspace", ("linspace",), function=_linspace)


def _eye(be: RemoteBackend, n: int, m: int | None = None, *, dtype: Any = None,
         requires_grad: bool = False, device: Any = None) -> Any:
    """torch.eye(n, m=None, dtype=None, requires_grad=False)."""
    _device("eye", device)
    dtype = _default(be, dtype)
    _check_requires_grad(requires_grad, dtype, lambda: codec.float32)
    return _finish(be.call("eye", (), {"n": n, "m": m, "dtype": dtype}), requires_grad)


_register("eye", ("eye",), function=_eye)

_RANDINT_SIGNATURES = tuple(
    f"({args}, *, {gen}Tensor out = None, torch.dtype dtype = None, torch.layout layout = None, "
    "torch.device device = None, bool pin_memory = False, bool requires_grad = False)"
    for args in ("int high, tuple of ints size", "int low, int high, tuple of ints size")
    for gen in ("torch.Generator generator, ", ""))


def _randint(be: RemoteBackend, *args: Any, size: Any = None, dtype: Any = None,
             requires_grad: bool = False, device: Any = None, **kwargs: Any) -> Any:
    """torch.randint(high, size) or randint(low, high, size), dtype=None, requires_grad=False."""
    _device("randint", device)
    given = dict(kwargs, **({} if size is None else {"size": size}))
    values = list(args)
    if size is None and values and isinstance(values[-1], (tuple, list)):
        size = values.pop()
    low = kwargs.pop("low", 0)
    high = kwargs.pop("high", None)
    if high is None and len(values) == 1:
        high = values[0]
    elif high is None and len(values) == 2:
        low, high = values
    elif high is not None and len(values) == 1:
        low = values[0]
    elif values:
        high = None
    if high is None or size is None or kwargs:
        raise TypeError(messages.invalid_combination(
            "randint", args, given, _RANDINT_SIGNATURES, lambda v: isinstance(v, Tensor)))
    shape = size_args(be, "randint", (size,), {})
    _check_requires_grad(requires_grad, dtype, lambda: codec.int64)
    return _finish(be.call("randint", (), {"low": low, "high": high, "size": shape,
                                             "dtype": dtype}), requires_grad)


_register("randint", ("randint",), function=_randint)



def _normal(be: RemoteBackend, mean: Any, std: Any = 1.0, size: Any = None, *,
            dtype: Any = None, requires_grad: bool = False) -> Any:
    """torch.normal(mean, std, size=None, *, dtype=None): tensors or numbers (two numbers need
    a size); draws from the session's generator."""
    shape = None if size is None else size_args(be, "normal", (size,), {})
    return _finish(be.call("normal_sample", (mean, std), {"size": shape, "dtype": dtype}),
                   requires_grad)


_register("normal", ("normal_sample",), function=_normal)


def _randint_like(be: RemoteBackend, input: Any, *args: int, dtype: Any = None,
                  requires_grad: bool = False) -> Any:
    """torch.randint_like(input, high) or randint_like(input, low, high), dtype=None."""
    if len(args) not in (1, 2):
        raise TypeError("randint_like() received an invalid combination of arguments - "
                        "expected (Tensor input, int high) or (Tensor input, int low, int high)")
    low, high = (0, args[0]) if len(args) == 1 else args
    return _finish(be.call("randint_like", (input,), {"low": low, "high": high,
                                                      "dtype": dtype}), requires_grad)


_register("randint_like", ("randint_like",), function=_randint_like)


def _bernoulli_(be: RemoteBackend, t: Any, p: Any = 0.5) -> Any:
    """Tensor.bernoulli_(p=0.5): p a number or a tensor of probabilities."""
    return be.owner.inplace("bernoulli_", t, (p,), {})


_register("bernoulli_", ("bernoulli",), method=_bernoulli_)
