"""torch spellings that are not one catalogue op: overloads (`max(x)` / `max(x, dim)` /
`max(x, y)`), argument orders (`gather(x, dim, index)`), varargs sizes, properties (`x.T`) and
the creation functions' `dtype=` / `requires_grad=` keywords.

This module mirrors the engine's `@public` wrappers (engine/api.py `public()`; ops_reduce
`_extreme`/`_norm_public`, ops_shape, ops_index, ops_linalg `einsum`, ops_creation) without
importing the engine: each overload only chooses catalogue ops and sends them through the
owner's `call(name, args, kwargs)`, so the server's engine raises torch's errors. The few errors
raised here (argument combinations torch refuses before running anything) carry torch's type and
message. An overload is installed only when every op it names is in the server's catalogue.

Shapes are read (`tensor.shape`, a flush when not yet known) only where torch's answer depends on
them: `chunk`, `narrow`, `flatten`, `T`, `mT`, and `requires_grad=True` on a `*_like`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import codec
from .ops import is_int
from .tensor import Tensor

Fn = Callable[..., Any]


@dataclass(frozen=True)
class Overload:
    """One torch spelling: the catalogue ops it needs, and its function / method forms.

    `function(owner, *args, **kwargs)` is `session.<name>`; `method(owner, tensor, *args,
    **kwargs)` is `tensor.<name>` (its value, not a callable, when `is_property`).
    """

    name: str
    needs: tuple[str, ...]
    function: Fn | None = None
    method: Fn | None = None
    is_property: bool = False


OVERLOADS: dict[str, Overload] = {}


def _register(name: str, needs: Sequence[str], function: Fn | None = None,
              method: Fn | None = None, is_property: bool = False) -> None:
    OVERLOADS[name] = Overload(name, tuple(needs), function, method, is_property)


def available(ops: Mapping[str, Any]) -> dict[str, Overload]:
    """The overloads whose ops are all in the catalogue `ops` (others are not installed)."""
    return {name: ov for name, ov in OVERLOADS.items() if all(n in ops for n in ov.needs)}


def functions(owner: Any, overloads: Mapping[str, Overload]) -> dict[str, Fn]:
    """`session.<name>` for each overload with a function form, bound to `owner`."""
    out: dict[str, Fn] = {}
    for name, ov in overloads.items():
        if ov.function is not None:
            out[name] = _bind_function(owner, ov.function, name)
    return out


def _bind_function(owner: Any, fn: Fn, name: str) -> Fn:
    def bound(*args: Any, **kwargs: Any) -> Any:
        return fn(owner, *args, **kwargs)
    bound.__name__ = bound.__qualname__ = name
    bound.__doc__ = fn.__doc__
    return bound


def method(owner: Any, ov: Overload, t: Tensor) -> Any:
    """`t.<name>` for an overload with a method form: a bound callable, or a property's value."""
    assert ov.method is not None
    if ov.is_property:
        return ov.method(owner, t)
    fn = ov.method

    def bound(*args: Any, **kwargs: Any) -> Any:
        return fn(owner, t, *args, **kwargs)
    bound.__name__ = bound.__qualname__ = ov.name
    bound.__doc__ = fn.__doc__
    return bound


# --- helpers ------------------------------------------------------------------------------------


def _typename(v: Any) -> str:
    return "Tensor" if isinstance(v, Tensor) else type(v).__name__


def _got(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """torch's `got (...)` of an invalid-combination message (keywords in reverse order)."""
    pos = ", ".join(_typename(a) for a in args)
    kw = "".join(f"{k}={_typename(v)}, " for k, v in reversed(list(kwargs.items())))
    if not kw:
        return pos
    return f"{pos}, {kw[:-2]}" if pos else kw


def _invalid(name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
             signatures: Sequence[str], reasons: Mapping[int, str] | None = None) -> TypeError:
    lines = [f"{name}() received an invalid combination of arguments - got "
             f"({_got(args, kwargs)}), but expected one of:"]
    for i, sig in enumerate(signatures):
        lines.append(f" * {sig}")
        if reasons and i in reasons:
            lines.append(f"      didn't match because {reasons[i]}")
    return TypeError("\n".join(lines) + "\n")


def _wrap_dim(dim: int, ndim: int) -> int:
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], "
                         f"but got {dim})")
    return dim % ndim if ndim else 0


# --- max / min: the element, (values, indices) along dim, or the elementwise extreme ------------


class _ValuesIndices(tuple):  # type: ignore[type-arg]
    """torch.return_types.<name>: a (values, indices) tuple with named fields."""

    __slots__ = ()
    _name = ""

    def __new__(cls, pair: Sequence[Any]) -> _ValuesIndices:
        return super().__new__(cls, pair)

    @property
    def values(self) -> Any:  # type: ignore[override]
        return self[0]

    @property
    def indices(self) -> Any:
        return self[1]

    def __repr__(self) -> str:
        return (f"torch.return_types.{self._name}(\nvalues={self[0]!r},\n"
                f"indices={self[1]!r})")

    __str__ = __repr__


class MaxResult(_ValuesIndices):
    """What `max(input, dim)` returns (torch.return_types.max)."""

    __slots__ = ()
    _name = "max"


class MinResult(_ValuesIndices):
    """What `min(input, dim)` returns (torch.return_types.min)."""

    __slots__ = ()
    _name = "min"


_EXTREME_SIGNATURES = ("(Tensor input, *, Tensor out = None)",
                       "(Tensor input, Tensor other, *, Tensor out = None)",
                       "(Tensor input, int dim, bool keepdim = False, *, tuple of Tensors out = "
                       "None)")
_EXTREME_METHOD_SIGNATURES = ("()", "(Tensor other)", "(int dim, bool keepdim = False)")


def _extreme(name: str, binary: str, result: type[_ValuesIndices]) -> None:
    def by_dim(owner: Any, input: Any, dim: Any, keepdim: Any) -> Any:
        return result(owner.call(name + "_dim", (input, dim, bool(keepdim)), {}))

    def function(owner: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) > 3:
            raise TypeError(f"{name}() takes from 2 to 3 positional arguments but {len(args)} "
                            "were given")
        bound = dict(zip(("input", "dim", "keepdim"), args))
        unknown = [k for k in kwargs if k not in ("input", "dim", "keepdim", "other")
                   or k in bound]
        bound.update(kwargs)
        x, dim, keepdim, other = (bound.get(k) for k in ("input", "dim", "keepdim", "other"))
        if isinstance(dim, Tensor) and "dim" not in kwargs and other is None:
            dim, other = None, dim  # max(x, y)
        if not unknown and isinstance(x, Tensor):
            if other is not None and dim is None and keepdim is None:
                return owner.call(binary, (x, other), {})
            if other is None and dim is None and keepdim is None:
                return owner.call(name, (x,), {})
            if other is None and is_int(dim):
                return by_dim(owner, x, dim, keepdim)
        reasons: dict[int, str] = {}
        if len(args) + len(kwargs) >= 3:  # torch explains why the first signature failed
            wrong = [k for k in reversed(list(kwargs)) if k not in ("input", "out")]
            reasons[0] = (f"some of the keywords were incorrect: {', '.join(wrong)}" if wrong
                          else "some of the arguments have invalid types: ("
                          + ", ".join([_typename(args[0])]
                                      + [f"!{_typename(a)}!" for a in args[1:]]) + ")")
        raise _invalid(name, args, kwargs, _EXTREME_SIGNATURES, reasons)

    function.__doc__ = (f"torch.{name}(input), {name}(input, dim, keepdim=False) -> (values, "
                        f"indices), or {name}(input, other): the elementwise {binary}.")

    def method(owner: Any, self: Tensor, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], Tensor):
            if len(args) > 1 or kwargs:
                raise TypeError(f"{name}(): argument 'dim' (position 1) must be int, not Tensor")
            return owner.call(binary, (self, args[0]), {})
        if "other" in kwargs:
            if args or "dim" in kwargs:
                raise TypeError(f"{name}() got an unexpected keyword argument 'other'")
            if "keepdim" in kwargs:
                raise TypeError(f'{name}() missing 1 required positional arguments: "dim"')
            return owner.call(binary, (self, kwargs["other"]), {})
        if not args and "dim" not in kwargs:
            if kwargs:
                wrong = ", ".join(k for k in reversed(list(kwargs)))
                reason = f"some of the keywords were incorrect: {wrong}"
                raise _invalid(name, args, kwargs, _EXTREME_METHOD_SIGNATURES,
                               {0: reason, 1: reason})
            return owner.call(name, (self,), {})
        return function(owner, self, *args, **kwargs)

    method.__doc__ = (f"Tensor.{name}(), {name}(dim, keepdim=False) -> (values, indices), or "
                      f"{name}(other).")
    _register(name, (name, name + "_dim", binary), function, method)


_extreme("max", "maximum", MaxResult)
_extreme("min", "minimum", MinResult)


# --- norm ----------------------------------------------------------------------------------------


def _norm(owner: Any, input: Any, p: Any = "fro", dim: Any = None, keepdim: bool = False,
          dtype: Any = None) -> Any:
    """torch.norm: the vector p-norm; 'fro' (and None) is the 2-norm over the reduced dims."""
    if p is None or p == "fro":
        p = 2.0
    elif isinstance(p, str):
        raise RuntimeError(f"norm(): p={p!r} is not supported (only numbers and 'fro')")
    out = owner.call("norm", (input, p, dim, keepdim), {})
    return out if dtype is None else owner.call("to_dtype", (out,), {"dtype": dtype})


_register("norm", ("norm", "to_dtype"), _norm, _norm)


# --- shape: varargs sizes, split, chunk, flatten, broadcast_to, T, mT ---------------------------


def _varargs(name: str, key: str) -> None:
    def fn(owner: Any, input: Any, *sizes: Any, **kwargs: Any) -> Any:
        if key in kwargs:
            if sizes:
                raise TypeError(f"{name}() got multiple values for argument '{key}'")
            value = kwargs.pop(key)  # as given: flip(dims=-1) takes one int too
        elif len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
            value = tuple(sizes[0])
        else:
            value = sizes
        if kwargs:
            raise TypeError(f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")
        return owner.call(name, (input, tuple(value) if isinstance(value, list) else value), {})

    fn.__doc__ = f"torch's {name}, the sizes as varargs (`x.{name}(2, 3)`) or one sequence."
    _register(name, (name,), fn, fn)


for _name, _key in (("reshape", "shape"), ("expand", "size"), ("permute", "dims"),
                    ("repeat", "repeats"), ("flip", "dims")):
    _varargs(_name, _key)


def _split(owner: Any, tensor: Any, split_size_or_sections: Any = None, dim: int = 0,
           **kwargs: Any) -> Any:
    """torch.split: pieces of one size (an int) or of the given sizes (a list)."""
    if "split_size" in kwargs:  # Tensor.split's own name for it
        split_size_or_sections = kwargs.pop("split_size")
    if kwargs:
        raise TypeError(f"split() got an unexpected keyword argument '{next(iter(kwargs))}'")
    if isinstance(split_size_or_sections, (list, tuple)):
        return owner.call("split_with_sizes", (tensor, tuple(split_size_or_sections), dim), {})
    return owner.call("split", (tensor, split_size_or_sections, dim), {})


_register("split", ("split", "split_with_sizes"), _split, _split)


def _chunk(owner: Any, input: Any, chunks: int, dim: int = 0) -> Any:
    """torch.chunk: `chunks` pieces of ceil(size / chunks) (fewer if the size runs out)."""
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    shape = input.shape
    if not shape:
        raise RuntimeError("chunk expects at least a 1-dimensional tensor")
    length = shape[_wrap_dim(dim, len(shape))]
    if length == 0:
        return owner.call("split_with_sizes", (input, (0,) * chunks, dim), {})
    return owner.call("split", (input, -(-length // chunks), dim), {})


_register("chunk", ("split", "split_with_sizes"), _chunk, _chunk)


def _flatten(owner: Any, input: Any, start_dim: int = 0, end_dim: int = -1) -> Any:
    """torch.flatten: dims start_dim..end_dim merged; the tensor itself if that changes nothing."""
    n = input.dim()
    if n and -n <= start_dim < n and -n <= end_dim < n and start_dim % n == end_dim % n:
        return input
    return owner.call("flatten", (input, start_dim, end_dim), {})


_register("flatten", ("flatten",), _flatten, _flatten)


def _broadcast_to(owner: Any, input: Any, size: Any) -> Any:
    """torch.broadcast_to: `expand` to `size`."""
    return owner.call("expand", (input, tuple(size)), {})


_register("broadcast_to", ("expand",), _broadcast_to, _broadcast_to)

T_WARNING = (
    "The use of `x.T` on tensors of dimension other than 2 to reverse their shape is deprecated "
    "and it will throw an error in a future release. Consider `x.mT` to transpose batches of "
    "matrices or `x.permute(*torch.arange(x.ndim - 1, -1, -1))` to reverse the dimensions of a "
    "tensor.")
T_SCALAR_WARNING = (
    "Tensor.T is deprecated on 0-D tensors. This function is the identity in these cases.")
MT_SCALAR_WARNING = (
    "Tensor.mT is deprecated on 0-D tensors. This function is the identity in these cases.")

# x.T -> Tensor.__getattr__ -> Session.method -> overloads.method -> _T: the user's line.
_PROPERTY_STACKLEVEL = 5


def _T(owner: Any, self: Tensor) -> Any:
    """torch's Tensor.T: the dims reversed (PermuteBackward0); warns on other than 2-D, as torch."""
    n = self.dim()
    if n == 0:
        warnings.warn(T_SCALAR_WARNING, UserWarning, stacklevel=_PROPERTY_STACKLEVEL)
    elif n != 2:
        warnings.warn(T_WARNING, UserWarning, stacklevel=_PROPERTY_STACKLEVEL)
    return owner.call("permute", (self, tuple(range(n - 1, -1, -1))), {})


def _mT(owner: Any, self: Tensor) -> Any:
    """torch's Tensor.mT: the last two dims swapped (0-D: the tensor itself, with a warning)."""
    n = self.dim()
    if n == 0:
        warnings.warn(MT_SCALAR_WARNING, UserWarning, stacklevel=_PROPERTY_STACKLEVEL)
        return self
    if n < 2:
        raise RuntimeError("tensor.mT is only supported on matrices or batches of matrices. Got "
                           f"{n}-D tensor.")
    return owner.call("transpose", (self, -2, -1), {})


_register("T", ("permute",), method=_T, is_property=True)
_register("mT", ("transpose",), method=_mT, is_property=True)


# --- indexing by (dim, index), narrow, einsum -----------------------------------------------------


def _by_dim_index(name: str) -> None:
    def fn(owner: Any, input: Any, dim: int, index: Any) -> Any:
        return owner.call(name, (input, index, dim), {})

    fn.__doc__ = f"torch.{name}(input, dim, index) (the catalogue op takes index before dim)."
    _register(name, (name,), fn, fn)


_by_dim_index("gather")
_by_dim_index("index_select")


def _narrow(owner: Any, input: Any, dim: int, start: int, length: int) -> Any:
    """torch.narrow: `length` elements from `start` along dim (a `slice`, SliceBackward0)."""
    shape = input.shape
    axis = _wrap_dim(dim, len(shape))
    n = shape[axis]
    if not -n <= start <= n:
        raise IndexError(
            f"start out of range (expected to be in range of [{-n}, {n}], but got {start})")
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    start = start % n if start < 0 else start
    if start + length > n:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return owner.call("slice", (input, axis, start, start + length, 1), {})


_register("narrow", ("slice",), _narrow, _narrow)


def _einsum(owner: Any, *args: Any) -> Any:
    """torch.einsum(equation, *operands), also with the operands as one list."""
    if len(args) < 2:
        raise ValueError("einsum(): must specify the equation string and at least one operand, "
                         "or at least one operand and its subscripts list")
    equation, operands = args[0], args[1:]
    if not isinstance(equation, str):
        raise TypeError("einsum(): argument 'equation' (position 1) must be str, not "
                        f"{type(equation).__name__}")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return owner.call("einsum", (list(operands),), {"equation": equation})


_register("einsum", ("einsum",), function=_einsum)


# --- creation: *size, dtype=, requires_grad= ------------------------------------------------------

REQUIRES_GRAD_FACTORY_MESSAGE = (
    "Only Tensors of floating point and complex dtype can require gradients")


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
            raise RuntimeError(REQUIRES_GRAD_FACTORY_MESSAGE)


def _scalar_dtype(*values: Any) -> codec.DType:
    """torch's dtype for Python numbers: a float makes float32, else an int int64, else bool."""
    if any(isinstance(v, (float, np.floating)) for v in values):
        return codec.float32
    if any(is_int(v) for v in values):
        return codec.int64
    return codec.bool_


def _size_args(name: str, size: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """torch's `*size` forms: zeros(2, 3), zeros((2, 3)), zeros([2, 3]), zeros(size=(2, 3))."""
    if "size" in kwargs:
        if size:
            raise TypeError(f"{name}() got multiple values for argument 'size'")
        size = (kwargs.pop("size"),)
    if not size:
        raise TypeError(f'{name}() missing 1 required positional arguments: "size"')
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    elif len(size) == 1 and not is_int(size[0]):
        raise TypeError(f"{name}(): argument 'size' (position 1) must be tuple of ints, not "
                        f"{type(size[0]).__name__}")
    for i, v in enumerate(size):
        if is_int(v):
            continue
        kind = type(v).__name__
        if i == 0:  # torch words the first element's failure differently from later ones
            raise TypeError(f"{name}(): argument 'size' (position 1) must be tuple of ints, but "
                            f"found element of type {kind} at pos 0")
        raise TypeError(f"{name}(): argument 'size' failed to unpack the object at pos {i + 1} "
                        f'with error "type must be tuple of ints,but got {kind}"')
    return tuple(size)


def _sized(name: str) -> None:
    def fn(owner: Any, *size: Any, dtype: Any = None, requires_grad: bool = False,
           **kwargs: Any) -> Any:
        shape = _size_args(name, size, kwargs)
        if kwargs:
            raise TypeError(f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")
        _check_requires_grad(requires_grad, dtype, lambda: codec.float32)
        return _finish(owner.call(name, (), {"size": shape, "dtype": dtype}), requires_grad)

    fn.__doc__ = f"torch.{name}(*size, dtype=None, requires_grad=False)."
    _register(name, (name,), function=fn)


for _name in ("zeros", "ones", "rand", "randn"):
    _sized(_name)


def _full(owner: Any, size: Any, fill_value: Any, *, dtype: Any = None,
          requires_grad: bool = False) -> Any:
    """torch.full(size, fill_value, dtype=None, requires_grad=False)."""
    shape = _size_args("full", (size,), {})
    _check_requires_grad(requires_grad, dtype, lambda: _scalar_dtype(fill_value))
    return _finish(owner.call("full", (), {"size": shape, "fill_value": fill_value,
                                          "dtype": dtype}), requires_grad)


_register("full", ("full",), function=_full)


def _like(name: str) -> None:
    def fn(owner: Any, input: Any, *args: Any, dtype: Any = None, requires_grad: bool = False,
           **kwargs: Any) -> Any:
        _check_requires_grad(requires_grad, dtype, lambda: input.dtype)
        out = owner.call(name, (input, *args), {**kwargs, "dtype": dtype})
        return _finish(out, requires_grad)

    fn.__doc__ = f"torch.{name}(input, ..., dtype=None, requires_grad=False)."
    _register(name, (name,), function=fn)


for _name in ("zeros_like", "ones_like", "full_like", "rand_like", "randn_like"):
    _like(_name)


def _arange(owner: Any, start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None,
            requires_grad: bool = False) -> Any:
    """torch.arange(end) or arange(start, end, step=1), dtype=None, requires_grad=False."""
    _check_requires_grad(requires_grad, dtype, lambda: _scalar_dtype(start, end, step, 0))
    return _finish(owner.call("arange", (), {"start": start, "end": end, "step": step,
                                            "dtype": dtype}), requires_grad)


_register("arange", ("arange",), function=_arange)


def _linspace(owner: Any, start: Any, end: Any, steps: int, *, dtype: Any = None,
              requires_grad: bool = False) -> Any:
    """torch.linspace(start, end, steps, dtype=None, requires_grad=False)."""
    _check_requires_grad(requires_grad, dtype, lambda: codec.float32)
    return _finish(owner.call("linspace", (), {"start": start, "end": end, "steps": steps,
                                              "dtype": dtype}), requires_grad)


_register("linspace", ("linspace",), function=_linspace)


def _eye(owner: Any, n: int, m: int | None = None, *, dtype: Any = None,
         requires_grad: bool = False) -> Any:
    """torch.eye(n, m=None, dtype=None, requires_grad=False)."""
    _check_requires_grad(requires_grad, dtype, lambda: codec.float32)
    return _finish(owner.call("eye", (), {"n": n, "m": m, "dtype": dtype}), requires_grad)


_register("eye", ("eye",), function=_eye)

_RANDINT_SIGNATURES = tuple(
    f"({args}, *, {gen}Tensor out = None, torch.dtype dtype = None, torch.layout layout = None, "
    "torch.device device = None, bool pin_memory = False, bool requires_grad = False)"
    for args in ("int high, tuple of ints size", "int low, int high, tuple of ints size")
    for gen in ("torch.Generator generator, ", ""))


def _randint(owner: Any, *args: Any, size: Any = None, dtype: Any = None,
             requires_grad: bool = False, **kwargs: Any) -> Any:
    """torch.randint(high, size) or randint(low, high, size), dtype=None, requires_grad=False."""
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
        raise _invalid("randint", args, given, _RANDINT_SIGNATURES)
    shape = _size_args("randint", (size,), {})
    _check_requires_grad(requires_grad, dtype, lambda: codec.int64)
    return _finish(owner.call("randint", (), {"low": low, "high": high, "size": shape,
                                             "dtype": dtype}), requires_grad)


_register("randint", ("randint",), function=_randint)
