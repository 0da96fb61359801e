"""torch spellings that are not one op: overloads (`max(x)` / `max(x, dim)` / `max(x, y)`),
argument orders (`gather(x, dim, index)`), varargs sizes (`x.reshape(2, 3)`), properties
(`x.T`), views (`x.view(-1)`, `view_as`), einsum's forms, each written once against a `Backend`
(gradserve.surface.backend).

A spelling only chooses ops and sends them through `be.call(name, args, kwargs)`, so the
backend's op raises torch's errors; the few errors raised here (argument combinations torch
refuses before running anything) carry torch's text and the backend's error types. Shapes are
read (`be.shape`) only where torch's answer depends on them: `chunk`, `narrow`, `flatten`, `T`,
`mT`.

`SPELLINGS` lists them: the engine installs each as a function of `gradserve.engine` and a
Tensor method or property; the client installs those whose ops are all in a server's catalogue.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import layout, messages
from .backend import Backend
from .results import MaxResult, MinResult, SortResult, TopkResult, ValuesIndices

Fn = Callable[..., Any]


@dataclass(frozen=True)
class Spelling:
    """One torch spelling: the ops it needs, and its function / method forms.

    `function(be, *args, **kwargs)` is `torch.<name>`; `method(be, tensor, *args, **kwargs)` is
    `tensor.<name>` (its value, not a callable, when `is_property`: then the method also takes
    `stacklevel` for its warnings, as `warnings.warn` would from the method's caller: 1 names
    the line that called the method).
    """

    name: str
    needs: tuple[str, ...]
    function: Fn | None = None
    method: Fn | None = None
    is_property: bool = False


SPELLINGS: dict[str, Spelling] = {}


def _register(name: str, needs: Sequence[str], function: Fn | None = None,
              method: Fn | None = None, is_property: bool = False) -> None:
    SPELLINGS[name] = Spelling(name, tuple(needs), function, method, is_property)


def is_int(v: Any) -> bool:
    """A Python or numpy integer, not a bool (torch's int arguments)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def wrap_dim(be: Backend, dim: int, ndim: int) -> int:
    """A possibly negative dim as an axis of an `ndim`-dim tensor, or torch's IndexError."""
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not lo <= dim <= hi:
        raise be.index_error(messages.dim_out_of_range(dim, lo, hi))
    return dim % ndim if ndim else 0


# --- max / min: the element, (values, indices) along dim, or the elementwise extreme ------------

EXTREME_SIGNATURES = ("(Tensor input, *, Tensor out = None)",
                      "(Tensor input, Tensor other, *, Tensor out = None)",
                      "(Tensor input, int dim, bool keepdim = False, *, tuple of Tensors out = "
                      "None)")
EXTREME_METHOD_SIGNATURES = ("()", "(Tensor other)", "(int dim, bool keepdim = False)")


def _extreme(name: str, binary: str, result: type[ValuesIndices]) -> None:
    """torch.max/min and Tensor.max/min: the element, (values, indices) along dim, or the
    elementwise `binary` with another tensor; bad combinations raise torch's TypeError texts
    (the function's and the method's differ, as torch's)."""
    def function(be: Backend, *args: Any, **kwargs: Any) -> Any:
        if len(args) > 3:
            raise be.type_error(
                f"{name}() takes from 2 to 3 positional arguments but {len(args)} were given")
        bound = dict(zip(("input", "dim", "keepdim"), args))
        unknown = [k for k in kwargs if k not in ("input", "dim", "keepdim", "other")
                   or k in bound]
        bound.update(kwargs)
        x, dim, keepdim, other = (bound.get(k) for k in ("input", "dim", "keepdim", "other"))
        if be.is_tensor(dim) and "dim" not in kwargs and other is None:
            dim, other = None, dim  # max(x, y)
        if not unknown and be.is_tensor(x):
            if other is not None and dim is None and keepdim is None:
                return be.call(binary, (x, other), {})
            if other is None and dim is None and keepdim is None:
                return be.call(name, (x,), {})
            if other is None and is_int(dim):
                return result(be.call(name + "_dim", (x, dim, bool(keepdim)), {}))
        reasons: dict[int, str] = {}
        if len(args) + len(kwargs) >= 3:  # torch explains why the first signature failed
            wrong = [k for k in reversed(list(kwargs)) if k not in ("input", "out")]
            typename = "Tensor" if be.is_tensor(args[0]) else type(args[0]).__name__
            reasons[0] = (f"some of the keywords were incorrect: {', '.join(wrong)}" if wrong
                          else "some of the arguments have invalid types: ("
                          + ", ".join([typename] + [
                              "!Tensor!" if be.is_tensor(a) else f"!{type(a).__name__}!"
                              for a in args[1:]]) + ")")
        raise be.type_error(messages.invalid_combination(
            name, args, kwargs, EXTREME_SIGNATURES, be.is_tensor, reasons))

    def method(be: Backend, self: Any, *args: Any, **kwargs: Any) -> Any:
        if args and be.is_tensor(args[0]):
            if len(args) > 1 or kwargs:
                raise be.type_error(
                    f"{name}(): argument 'dim' (position 1) must be int, not Tensor")
            return be.call(binary, (self, args[0]), {})
        if "other" in kwargs:
            if args or "dim" in kwargs:
                raise be.type_error(f"{name}() got an unexpected keyword argument 'other'")
            if "keepdim" in kwargs:
                raise be.type_error(f'{name}() missing 1 required positional arguments: "dim"')
            return be.call(binary, (self, kwargs["other"]), {})
        if not args and "dim" not in kwargs:
            if kwargs:
                reason = f"some of the keywords were incorrect: {', '.join(reversed(kwargs))}"
                raise be.type_error(messages.invalid_combination(
                    name, args, kwargs, EXTREME_METHOD_SIGNATURES, be.is_tensor,
                    {0: reason, 1: reason}))
            return be.call(name, (self,), {})
        return function(be, self, *args, **kwargs)

    for fn, what in ((function, f"torch.{name}(input), {name}(input, dim, keepdim=False)"),
                     (method, f"Tensor.{name}(), {name}(dim, keepdim=False)")):
        fn.__name__ = fn.__qualname__ = name
        fn.__doc__ = (f"{what} -> (values, indices), or {name}(other): the elementwise "
                      f"{binary}.")
    _register(name, (name, name + "_dim", binary), function, method)


_extreme("max", "maximum", MaxResult)
_extreme("min", "minimum", MinResult)



def tensor_arguments(be: Backend, name: str, params: Sequence[str], args: Sequence[Any],
                     kwargs: dict[str, Any], first: int) -> list[Any]:
    """The values of a torch signature of tensors only (`maximum(Tensor input, Tensor other)`)
    from a call, as torch's argument parser takes them: too many positional arguments, then
    each parameter in order (missing: it and every later one named; not a tensor: its position
    named when given positionally, counted from `first`), then an unknown keyword.

    Raises:
        TypeError (be.type_error): torch's text for the first of those that fails.
    """
    n = len(params)
    if len(args) > n:
        raise be.type_error(f"{name}() takes {n} positional argument{'s' if n != 1 else ''} "
                            f"but {len(args)} were given")
    values = []
    for i, param in enumerate(params):
        if i < len(args):
            value = args[i]
        elif param in kwargs:
            value = kwargs[param]
        else:
            missing = params[i:]  # torch's own wording, its plurals included
            raise be.type_error(
                f"{name}() missing {len(missing)} required positional argument"
                f"{'s' if len(missing) == 1 else ''}: {', '.join(f'{m!r}' for m in missing)}"
                .replace("'", '"'))
        if not be.is_tensor(value):
            raise be.type_error(messages.must_be_tensor(
                name, param, value, first + i if i < len(args) else None))
        values.append(value)
    for k in kwargs:
        if k not in params[len(args):]:
            raise be.type_error(f"{name}() got an unexpected keyword argument '{k}'")
    return values


def _tensors_only(name: str) -> None:
    """torch.maximum/minimum/fmax/fmin(input, other) and their methods: two tensors, a Python
    number refused with torch's TypeError (`maximum(x, 2.0)`; `clamp` takes numbers)."""
    def function(be: Backend, *args: Any, **kwargs: Any) -> Any:
        input, other = tensor_arguments(be, name, ("input", "other"), args, kwargs, 1)
        return be.call(name, (input, other), {})

    def method(be: Backend, self: Any, *args: Any, **kwargs: Any) -> Any:
        other, = tensor_arguments(be, name, ("other",), args, kwargs, 1)
        return be.call(name, (self, other), {})

    for fn in (function, method):
        fn.__name__ = fn.__qualname__ = name
        fn.__doc__ = f"torch.{name}(input, other): the elementwise {name} of two tensors."
    _register(name, (name,), function, method)


for _name in ("maximum", "minimum", "fmax", "fmin"):
    _tensors_only(_name)

# --- shape: varargs sizes, split, chunk, flatten, broadcast_to, T, mT ---------------------------


def sizes(be: Backend, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
          key: str) -> Any:
    """`f(2, 3)`, `f((2, 3))`, `f([2, 3])` and `f(key=(2, 3))` as one tuple (`key=` as given:
    flip(dims=-1) takes one int too); pops `key` from kwargs."""
    if key in kwargs:
        if args:
            raise be.type_error(f"{name}() got multiple values for argument '{key}'")
        value = kwargs.pop(key)
        return tuple(value) if isinstance(value, list) else value
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return tuple(args[0])
    return args


_INTEGRAL = frozenset(("uint8", "int8", "int16", "int32", "int64"))


def _size_item(be: Backend, v: Any) -> Any:
    """A size element as torch reads it: a one-element integral tensor (`lengths.max()`) as its
    value (read from the backend), anything else as it is."""
    if (be.is_tensor(v) and be.dtype_name(v) in _INTEGRAL
            and math.prod(be.shape(v)) == 1):
        return int(v.item())
    return v


def size_args(be: Backend, name: str, size: tuple[Any, ...],
              kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """torch's `*size` forms: zeros(2, 3), zeros((2, 3)), zeros([2, 3]), zeros(size=(2, 3)) (pops
    `size` from kwargs), with torch's TypeError texts for anything else."""
    if "size" in kwargs:
        if size:
            raise be.type_error(f"{name}() got multiple values for argument 'size'")
        size = (kwargs.pop("size"),)
    if not size:
        raise be.type_error(f'{name}() missing 1 required positional arguments: "size"')
    nested = len(size) == 1 and isinstance(size[0], (tuple, list))
    size = tuple(_size_item(be, v) for v in (size[0] if nested else size))
    if not nested and len(size) == 1 and not is_int(size[0]):
        raise be.type_error(f"{name}(): argument 'size' (position 1) must be tuple of ints, "
                            f"not {type(size[0]).__name__}")
    for i, v in enumerate(size):
        if is_int(v):
            continue
        kind = type(v).__name__
        if i == 0:  # torch words the first element's failure differently from later ones
            raise be.type_error(f"{name}(): argument 'size' (position 1) must be tuple of ints, "
                                f"but found element of type {kind} at pos 0")
        raise be.type_error(f"{name}(): argument 'size' failed to unpack the object at pos "
                            f'{i + 1} with error "type must be tuple of ints,but got {kind}"')
    return tuple(size)



VARARGS_DOC = {"reshape": "The same data with another shape (`x.reshape(2, 3)` or `((2, 3))`).",
               "expand": "A broadcast view (`x.expand(2, -1)` or `((2, -1))`).",
               "permute": "The dims reordered (`x.permute(2, 0, 1)` or `((2, 0, 1))`).",
               "repeat": "The tensor tiled (`x.repeat(2, 1)` or `((2, 1))`).",
               "flip": "Elements reversed along dims (`x.flip(0, 1)` or `((0, 1))`)."}


def _varargs(name: str, key: str) -> None:
    def fn(be: Backend, input: Any, *args: Any, **kwargs: Any) -> Any:
        value = sizes(be, name, args, kwargs, key)
        if kwargs:
            raise be.type_error(
                f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")
        return be.call(name, (input, value), {})

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = VARARGS_DOC[name]
    _register(name, (name,), fn, fn)


for _name, _key in (("reshape", "shape"), ("expand", "size"), ("permute", "dims"),
                    ("repeat", "repeats"), ("flip", "dims")):
    _varargs(_name, _key)


def split(be: Backend, tensor: Any, split_size_or_sections: Any = None, dim: int = 0,
          **kwargs: Any) -> Any:
    """torch.split: pieces of one size (an int) or of the given sizes (a list)."""
    if "split_size" in kwargs:  # Tensor.split's own name for it
        split_size_or_sections = kwargs.pop("split_size")
    if kwargs:
        raise be.type_error(f"split() got an unexpected keyword argument '{next(iter(kwargs))}'")
    if isinstance(split_size_or_sections, (list, tuple)):
        return be.call("split_with_sizes", (tensor, tuple(split_size_or_sections), dim), {})
    return be.call("split", (tensor, split_size_or_sections, dim), {})


_register("split", ("split", "split_with_sizes"), split, split)


def chunk(be: Backend, input: Any, chunks: int, dim: int = 0) -> Any:
    """torch.chunk: `chunks` pieces of ceil(size / chunks) (fewer if the size runs out)."""
    if chunks <= 0:
        raise be.runtime_error(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    shape = be.shape(input)
    if not shape:
        raise be.runtime_error("chunk expects at least a 1-dimensional tensor")
    length = shape[wrap_dim(be, dim, len(shape))]
    if length == 0:
        return be.call("split_with_sizes", (input, (0,) * chunks, dim), {})
    return be.call("split", (input, -(-length // chunks), dim), {})


_register("chunk", ("split", "split_with_sizes"), chunk, chunk)


def flatten(be: Backend, input: Any, start_dim: int = 0, end_dim: int = -1) -> Any:
    """torch.flatten: dims start_dim..end_dim merged; the tensor itself if that changes nothing."""
    n = len(be.shape(input))
    if n and -n <= start_dim < n and -n <= end_dim < n and start_dim % n == end_dim % n:
        return input
    return be.call("flatten", (input, start_dim, end_dim), {})


_register("flatten", ("flatten",), flatten, flatten)


def unflatten(be: Backend, input: Any, dim: int, sizes: Any) -> Any:
    """torch.unflatten: dim `dim` split into `sizes` (one entry may be -1), a view
    (ViewBackward0), with torch's checks and texts."""
    shape = tuple(be.shape(input))
    if not shape:
        raise be.runtime_error("unflatten: Dimension specified as 0 but tensor has no "
                               "dimensions")
    d = wrap_dim(be, dim, len(shape))
    sizes = [int(s) for s in sizes]
    if not sizes:
        raise be.runtime_error("unflatten: sizes must be non-empty")
    if sizes.count(-1) > 1:
        raise be.runtime_error("only one dimension can be inferred")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes and known and shape[d] % known == 0:
        sizes[sizes.index(-1)] = shape[d] // known
    elif -1 in sizes or known != shape[d]:
        raise be.runtime_error(
            f"unflatten: Provided sizes [{', '.join(map(str, sizes))}] don't multiply up to the "
            f"size of dim {dim} ({shape[d]}) in the input tensor")
    return be.call("reshape", (input, (*shape[:d], *sizes, *shape[d + 1:])), {})


_register("unflatten", ("reshape",), unflatten, unflatten)


def broadcast_to(be: Backend, input: Any, size: Any) -> Any:
    """torch.broadcast_to: `expand` to `size`."""
    return be.call("expand", (input, tuple(size)), {})


_register("broadcast_to", ("expand",), broadcast_to, broadcast_to)


def T(be: Backend, self: Any, stacklevel: int = 1) -> Any:
    """torch's Tensor.T: the dims reversed (PermuteBackward0); warns on other than 2-D, as torch."""
    n = len(be.shape(self))
    if n == 0:
        warnings.warn(messages.T_SCALAR_WARNING, UserWarning, stacklevel=stacklevel + 1)
    elif n != 2:
        warnings.warn(messages.T_WARNING, UserWarning, stacklevel=stacklevel + 1)
    return be.call("permute", (self, tuple(range(n - 1, -1, -1))), {})


def mT(be: Backend, self: Any, stacklevel: int = 1) -> Any:
    """torch's Tensor.mT: the last two dims swapped (0-D: the tensor itself, with a warning)."""
    n = len(be.shape(self))
    if n == 0:
        warnings.warn(messages.MT_SCALAR_WARNING, UserWarning, stacklevel=stacklevel + 1)
        return self
    if n < 2:
        raise be.runtime_error("tensor.mT is only supported on matrices or batches of matrices. "
                               f"Got {n}-D tensor.")
    return be.call("transpose", (self, -2, -1), {})


_register("T", ("permute",), method=T, is_property=True)
_register("mT", ("transpose",), method=mT, is_property=True)


def view(be: Backend, self: Any, *args: Any, **kwargs: Any) -> Any:
    """Tensor.view(*shape): reshape's result (ViewBackward0), `x.view(2, 3)`, `x.view((2, 3))`,
    `x.view(-1)` or `x.view(size=...)`, with torch's stride check where the tensor's strides are
    known without a round trip (always in the engine; in a session, once the server described
    the tensor): a shape no view of that layout can take is refused as torch refuses it.
    `x.view(dtype)` (reinterpreting the bytes) is not supported."""
    if "dtype" in kwargs or (len(args) == 1 and hasattr(args[0], "is_floating_point")):
        raise be.runtime_error("view(dtype) is not supported: gradserve does not reinterpret a "
                               "tensor's bytes as another dtype (use .to(dtype) to convert)")
    shape = sizes(be, "view", args, kwargs, "size")
    if kwargs:
        raise be.type_error(f"view() got an unexpected keyword argument '{next(iter(kwargs))}'")
    strides = be.known_strides(self)
    if strides is not None:
        _check_view(be, be.shape(self), strides, shape)
    return be.call("reshape", (self, shape), {})


def _check_view(be: Backend, shape: tuple[int, ...], strides: tuple[int, ...],
                new: Any) -> None:
    """torch's view refusal for a layout that `new` (with at most one -1) cannot view."""
    if strides == layout.contiguous_strides(shape):
        return
    numel = 1
    for s in shape:
        numel *= s
    dims = [int(d) for d in new]
    if dims.count(-1) == 1:
        rest = 1
        for d in dims:
            if d != -1:
                rest *= d
        if rest == 0 or numel % rest:
            return  # reshape's own shape error says it
        dims[dims.index(-1)] = numel // rest
    total = 1
    for d in dims:
        total *= d
    if total != numel or any(d < 0 for d in dims):
        return  # reshape's own shape error says it
    if layout.view_strides(shape, strides, dims) is None:
        raise be.runtime_error(layout.VIEW_ERROR)


_register("view", ("reshape",), method=view)


def view_as(be: Backend, self: Any, other: Any) -> Any:
    """Tensor.view_as(other): `self.view(other.size())`."""
    if not be.is_tensor(other):
        raise be.type_error("view_as(): argument 'other' (position 1) must be Tensor, not "
                            f"{type(other).__name__}")
    return be.call("reshape", (self, be.shape(other)), {})


_register("view_as", ("reshape",), method=view_as)


# --- einsum --------------------------------------------------------------------------------------


def _subscript(n: Any) -> str:
    """torch's letter for a sublist subscript: 0-25 are A-Z, 26-51 a-z, Ellipsis '...'."""
    if n is Ellipsis:
        return "..."
    if is_int(n) and 0 <= n < 26:
        return chr(ord("A") + n)
    if is_int(n) and 26 <= n < 52:
        return chr(ord("a") + n - 26)
    raise ValueError("einsum(): subscript in subscript list is not within the valid range "
                     "[0, 52)")


def einsum(be: Backend, *args: Any) -> Any:
    """torch.einsum(equation, *operands), the operands also as one list or tuple, or torch's
    sublist form einsum(op1, [0, 1], op2, [1, 2], [0, 2])."""
    if len(args) < 2:
        raise ValueError("einsum(): must specify the equation string and at least one operand, "
                         "or at least one operand and its subscripts list")
    if be.is_tensor(args[0]):  # the sublist form: operand, subscripts, ..., [output]
        equation = ",".join("".join(_subscript(s) for s in sub) for sub in args[1::2])
        if len(args) % 2 == 1:
            equation += "->" + "".join(_subscript(s) for s in args[-1])
            operands = args[:-1:2]
        else:
            operands = args[::2]
    else:
        equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str):
        raise be.type_error("einsum(): argument 'equation' (position 1) must be str, not "
                            f"{type(equation).__name__}")
    return be.call("einsum", (list(operands),), {"equation": equation})


_register("einsum", ("einsum",), function=einsum)


# --- indexing by (dim, index), narrow ------------------------------------------------------------


def _by_dim_index(name: str) -> None:
    def fn(be: Backend, input: Any, dim: int, index: Any) -> Any:
        return be.call(name, (input, index, dim), {})

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"torch.{name}(input, dim, index) (the op takes index before dim)."
    _register(name, (name,), fn, fn)


_by_dim_index("gather")
_by_dim_index("index_select")


def _scatter_args(be: Backend, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> tuple[Any, Any, Any, Any]:
    """(dim, index, src or value, reduce) from torch's scatter forms: (dim, index, src),
    (dim, index, value), the keywords dim=, index=, src=, value=, reduce=."""
    names = ("dim", "index", "src")
    bound = dict(zip(names, args))
    if len(args) > 3:
        raise be.type_error(f"{name}() takes at most 4 positional arguments")
    for key, v in kwargs.items():
        key = "src" if key == "value" else key
        if key not in (*names, "reduce") or key in bound:
            raise be.type_error(f"{name}() got an unexpected keyword argument '{key}'")
        bound[key] = v
    missing = [k for k in names if k not in bound]
    if missing:
        raise be.type_error(f"{name}() missing required argument '{missing[0]}'")
    return bound["dim"], bound["index"], bound["src"], bound.get("reduce")


def _scatter_op(be: Backend, name: str, reduce: Any) -> str:
    if reduce is None:
        return name
    if reduce == "add":
        return "scatter_add"
    raise be.runtime_error(f"{name}(): reduce={reduce!r} is not supported by gradserve "
                           "(reduce='add' is)")


def scatter(be: Backend, input: Any, *args: Any, **kwargs: Any) -> Any:
    """torch.scatter(input, dim, index, src) / (..., value): a copy of input with src written
    at index along dim (ScatterBackward0, or ScatterBackward1 for a value); reduce='add' adds
    (as scatter_add)."""
    dim, index, src, reduce = _scatter_args(be, "scatter", args, kwargs)
    return be.call(_scatter_op(be, "scatter", reduce), (input, index, src), {"dim": dim})


def scatter_(be: Backend, self: Any, *args: Any, **kwargs: Any) -> Any:
    """Tensor.scatter_(dim, index, src) / (..., value): scatter's result written into self
    (through copy_, so self's grad_fn is CopyBackwards where torch's is ScatterBackward0; the
    gradients are the same)."""
    return self.copy_(scatter(be, self, *args, **kwargs))


def scatter_add(be: Backend, input: Any, dim: Any, index: Any, src: Any) -> Any:
    """torch.scatter_add(input, dim, index, src): src added at index along dim (repeats
    accumulate; ScatterAddBackward0)."""
    return be.call("scatter_add", (input, index, src), {"dim": dim})


def scatter_add_(be: Backend, self: Any, dim: Any, index: Any, src: Any) -> Any:
    """Tensor.scatter_add_(dim, index, src): scatter_add's result written into self (through
    copy_, as scatter_)."""
    return self.copy_(scatter_add(be, self, dim, index, src))


_register("scatter", ("scatter", "scatter_add"), scatter, scatter)
_register("scatter_", ("scatter", "scatter_add", "copy"), None, scatter_)
_register("scatter_add", ("scatter_add",), scatter_add, scatter_add)
_register("scatter_add_", ("scatter_add", "copy"), None, scatter_add_)


def narrow(be: Backend, input: Any, dim: int, start: int, length: int) -> Any:
    """torch.narrow: `length` elements from `start` along dim (a `slice`, SliceBackward0)."""
    shape = be.shape(input)
    axis = wrap_dim(be, dim, len(shape))
    n = shape[axis]
    if not -n <= start <= n:
        raise be.index_error(
            f"start out of range (expected to be in range of [{-n}, {n}], but got {start})")
    if length < 0:
        raise be.runtime_error("narrow(): length must be non-negative.")
    start = start % n if start < 0 else start
    if start + length > n:
        raise be.runtime_error(
            f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return be.call("slice", (input, axis, start, start + length, 1), {})


_register("narrow", ("slice",), narrow, narrow)


# --- sort, topk: the argsort order, the values gathered by it -----------------------------------


def sort(be: Backend, input: Any, dim: int = -1, descending: bool = False, *,
         stable: bool = False) -> Any:
    """torch.sort -> (values, indices): the `argsort` op's order (stable: ties keep their index
    order, where torch's default CPU sort may not), the values gathered by it (grad_fn
    GatherBackward0 where torch's is SortBackward0; the same gradient)."""
    indices = be.call("argsort", (input, dim, bool(descending), bool(stable)), {})
    if not be.shape(input):
        return SortResult((be.call("clone", (input,), {}), indices))
    return SortResult((be.call("gather", (input, indices, dim), {}), indices))


def topk(be: Backend, input: Any, k: int, dim: int = -1, largest: bool = True,
         sorted: bool = True) -> Any:
    """torch.topk -> (values, indices): the k largest (smallest) along dim in sorted order, by
    the `argsort` op (ties in index order; torch's CPU topk orders ties its own way) and a
    gather (grad_fn GatherBackward0 where torch's is TopkBackward0; the same gradient)."""
    shape = be.shape(input)
    axis = wrap_dim(be, dim, len(shape))
    n = shape[axis] if shape else 1
    if not 0 <= k <= n:
        raise be.runtime_error("selected index k out of range")
    order = be.call("argsort", (input, axis if shape else -1, bool(largest), True), {})
    if not shape:
        return TopkResult((be.call("clone", (input,), {}), order))
    indices = be.call("slice", (order, axis, 0, k, 1), {})
    return TopkResult((be.call("gather", (input, indices, axis), {}), indices))


_register("sort", ("argsort", "gather", "clone"), sort, sort)
_register("topk", ("argsort", "gather", "slice", "clone"), topk, topk)


# --- dropout: torch's CPU composition, so the mask draws torch's numbers -------------------------

def dropout(be: Backend, input: Any, p: float, train: bool, inplace: bool = False) -> Any:
    """torch.dropout(input, p, train): `input * empty_like(input).bernoulli_(1 - p).div_(1 - p)`
    (grad_fn MulBackward0), as torch's CPU kernel composes it; the input itself when not
    training or p == 0; `input * 0` when p == 1 (a 0-dim zero, as torch's). `inplace`:
    torch.dropout_, the product written into input (`input.mul_(...)`)."""
    if not 0.0 <= p <= 1.0:
        raise be.runtime_error(f"dropout probability has to be between 0 and 1, but got {p}")
    if not train or p == 0.0:
        return input
    if p == 1.0:
        noise = be.call("zeros", (), {"size": (), "dtype": be.dtype_of(input)})
    else:
        zeros = be.call("zeros_like", (input,), {})
        noise = be.call("div", (be.call("bernoulli", (zeros, 1.0 - p), {}), 1.0 - p), {})
    return input.mul_(noise) if inplace else be.call("mul", (input, noise), {})


_register("dropout", ("zeros", "zeros_like", "bernoulli", "div", "mul"), dropout)


def dropout_(be: Backend, input: Any, p: float, train: bool) -> Any:
    """torch.dropout_(input, p, train): `dropout` written into input."""
    return dropout(be, input, p, train, inplace=True)


_register("dropout_", ("zeros", "zeros_like", "bernoulli", "div", "mul"), dropout_)


# --- movedim, hstack, vstack ---------------------------------------------------------------------

MOVEDIM_SIGNATURES = ("(Tensor input, int source, int destination)",
                      "(Tensor input, tuple of ints source, tuple of ints destination)")
MOVEDIM_METHOD_SIGNATURES = ("(int source, int destination)",
                             "(tuple of ints source, tuple of ints destination)")


def _dims(value: Any) -> list[Any] | None:
    """An int or a sequence of ints as a list; None for anything else."""
    if is_int(value):
        return [value]
    if isinstance(value, (list, tuple)) and all(is_int(v) for v in value):
        return list(value)
    return None


def movedim(be: Backend, input: Any, source: Any, destination: Any) -> Any:
    """The dims at `source` moved to `destination` (ints or sequences of ints), the others kept in
    their order: one `permute` (grad_fn PermuteBackward0, as torch's)."""
    src, dst = _dims(source), _dims(destination)
    if src is None or dst is None:
        raise be.type_error(messages.invalid_combination(
            "movedim", (input, source, destination), {}, MOVEDIM_SIGNATURES, be.is_tensor))
    if len(src) != len(dst):
        raise be.runtime_error(
            f"movedim: Invalid source or destination dims: source ({src} dims) should contain "
            f"the same number of dims as destination ({dst} dims)")
    ndim = len(be.shape(input))
    wsrc = [wrap_dim(be, d, ndim) for d in src]
    wdst = [wrap_dim(be, d, ndim) for d in dst]
    for what, given, wrapped in (("source", src, wsrc), ("destination", dst, wdst)):
        if len(set(wrapped)) != len(wrapped):
            raise be.runtime_error(f"movedim: repeated dim in `{what}` ({given})")
    order: list[int | None] = [None] * max(ndim, 1)
    for s, d in zip(wsrc, wdst):
        order[d] = s
    rest = iter(d for d in range(ndim) if d not in wsrc)
    perm = [d if d is not None else next(rest) for d in order][:ndim]
    return be.call("permute", (input, tuple(perm)), {})


def _movedim_method(be: Backend, self: Any, *args: Any, **kwargs: Any) -> Any:
    bound = dict(zip(("source", "destination"), args))
    bound.update(kwargs)
    if len(args) > 2 or set(bound) != {"source", "destination"}:
        raise be.type_error(messages.invalid_combination(
            "movedim", args, kwargs, MOVEDIM_METHOD_SIGNATURES, be.is_tensor))
    return movedim(be, self, bound["source"], bound["destination"])


_register("movedim", ("permute",), movedim, _movedim_method)


def _tensor_list(be: Backend, name: str, tensors: Any) -> list[Any]:
    """hstack/vstack's `tensors`: a non-empty list or tuple of tensors, with torch's errors."""
    if not isinstance(tensors, (list, tuple)):
        kind = "Tensor" if be.is_tensor(tensors) else type(tensors).__name__
        raise be.type_error(
            f"{name}(): argument 'tensors' (position 1) must be tuple of Tensors, not {kind}")
    if not tensors:
        raise be.runtime_error(f"{name} expects a non-empty TensorList")
    return list(tensors)


def hstack(be: Backend, tensors: Any) -> Any:
    """The tensors joined column-wise: `cat` along dim 0 for 1-d (and 0-d) tensors, else dim 1."""
    ts = [be.call("reshape", (t, (1,)), {}) if be.is_tensor(t) and not be.shape(t) else t
          for t in _tensor_list(be, "hstack", tensors)]
    first = ts[0]
    return be.call("cat", (ts,), {"dim": 0 if be.is_tensor(first) and len(be.shape(first)) == 1
                                  else 1})


def vstack(be: Backend, tensors: Any) -> Any:
    """The tensors joined row-wise: each at least 2-d (a 1-d tensor as one row), then `cat`
    along dim 0."""
    ts = []
    for t in _tensor_list(be, "vstack", tensors):
        ndim = len(be.shape(t)) if be.is_tensor(t) else 2
        if ndim == 0:
            t = be.call("reshape", (t, (1, 1)), {})
        elif ndim == 1:
            t = be.call("unsqueeze", (t, 0), {})
        ts.append(t)
    return be.call("cat", (ts,), {"dim": 0})


_register("hstack", ("cat", "reshape"), function=hstack)
_register("vstack", ("cat", "reshape", "unsqueeze"), function=vstack)


MESHGRID_WARNING = ("torch.meshgrid: in an upcoming release, it will be required to pass the "
                    "indexing argument.")


def meshgrid(be: Backend, *tensors: Any, indexing: str | None = None) -> tuple[Any, ...]:
    """torch.meshgrid(*tensors, indexing=): each 0-d or 1-d tensor viewed along a dim of its own
    and expanded to the grid of all their sizes (ExpandBackward0); "xy" swaps the first two dims
    (the first tensor varies along the columns). The tensors also as one list or tuple; without
    `indexing`, "ij" with torch's warning."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        warnings.warn(MESHGRID_WARNING, UserWarning, stacklevel=3)
        indexing = "ij"
    if indexing not in ("xy", "ij"):
        raise be.runtime_error('torch.meshgrid: indexing must be one of "xy" or "ij", but '
                               f"received: {indexing}")
    if not tensors:
        raise be.runtime_error("meshgrid expects a non-empty TensorList")
    sizes = []
    for t in tensors:
        if not be.is_tensor(t):
            raise be.type_error("meshgrid(): argument 'tensors' (position 1) must be tuple of "
                                f"Tensors, not {type(t).__name__}")
        shape = be.shape(t)
        if len(shape) > 1:
            raise be.runtime_error("torch.meshgrid: Expected 0D or 1D tensor in the tensor "
                                   f"list but got a {len(shape)}-D tensor")
        sizes.append(shape[0] if shape else 1)
    if len({be.dtype_name(t) for t in tensors}) > 1:
        raise be.runtime_error("meshgrid expects all tensors to have the same dtype")
    dims = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) > 1:
        dims[0], dims[1] = 1, 0
        sizes[0], sizes[1] = sizes[1], sizes[0]
    grids = []
    for t, dim in zip(tensors, dims):
        view = [1] * len(tensors)
        view[dim] = -1
        grids.append(be.call("expand", (be.call("reshape", (t, tuple(view)), {}),
                                        tuple(sizes)), {}))
    return tuple(grids)


_register("meshgrid", ("expand", "reshape"), function=meshgrid)


# --- small compositions --------------------------------------------------------------------------


def type_as(be: Backend, self: Any, other: Any) -> Any:
    """Tensor.type_as(other): self converted to other's dtype (self itself when already of it,
    as torch: a leaf stays that leaf; else ToCopyBackward0)."""
    if not be.is_tensor(other):
        raise be.type_error("type_as(): argument 'other' (position 1) must be Tensor, not "
                            f"{messages.tp_name(other)}")
    if be.dtype_name(self) == be.dtype_name(other):
        return self
    return be.call("to_dtype", (self,), {"dtype": be.dtype_of(other)})


_register("type_as", ("to_dtype",), method=type_as)


def _mv(be: Backend, input: Any, vec: Any, first: int) -> Any:
    """torch.mv's checks (addmv's, in its order), then `matmul` (a matrix @ a vector is
    MvBackward0 there); `first` is the position torch's TypeError gives `input` (1 for the
    function, 0 for the method, which names only `vec`)."""
    for name, value, position in (("input", input, first), ("vec", vec, first + 1)):
        if not be.is_tensor(value):
            raise be.type_error(f"mv(): argument '{name}' (position {position}) must be "
                                f"Tensor, not {messages.tp_name(value)}")
    mat_shape, vec_shape = be.shape(input), be.shape(vec)
    if len(mat_shape) != 2 or len(vec_shape) != 1:
        raise be.runtime_error("vector + matrix @ vector expected, got 1, "
                               f"{len(mat_shape)}, {len(vec_shape)}")
    if mat_shape[1] != vec_shape[0]:
        raise be.runtime_error(f"size mismatch, got input ({mat_shape[0]}), mat "
                               f"({mat_shape[0]}x{mat_shape[1]}), vec ({vec_shape[0]})")
    mat_dtype, vec_dtype = be.dtype_name(input), be.dtype_name(vec)
    if mat_dtype != vec_dtype:
        v, m = messages.TYPE_WORDS.get(vec_dtype, vec_dtype), messages.TYPE_WORDS.get(
            mat_dtype, mat_dtype)
        raise be.runtime_error(
            f"addmv input tensors must have the same dtype, but got {v}, {m}, and {v}")
    return be.call("matmul", (input, vec), {})


def mv(be: Backend, input: Any, vec: Any) -> Any:
    """torch.mv(input, vec): the matrix-vector product (MvBackward0), with torch's errors."""
    return _mv(be, input, vec, 1)


def _mv_method(be: Backend, self: Any, vec: Any) -> Any:
    return _mv(be, self, vec, 0)


_register("mv", ("matmul",), mv, _mv_method)



def nonzero(be: Backend, input: Any, *, as_tuple: bool = False) -> Any:
    """torch.nonzero(input, as_tuple=False): the (n, ndim) indices of the non-zero elements; with
    as_tuple, one index tensor per dim (`nonzero(x).unbind(1)`; a 0-d input counts as 1-d)."""
    if not isinstance(as_tuple, (bool, np.bool_)):
        raise be.type_error("nonzero(): argument 'as_tuple' must be bool, not "
                            f"{messages.tp_name(as_tuple)}")
    if not as_tuple:
        return be.call("nonzero", (input,), {})
    if be.is_tensor(input) and not be.shape(input):
        input = be.call("reshape", (input, (1,)), {})
    return tuple(be.call("unbind", (be.call("nonzero", (input,), {}), 1), {}))


_register("nonzero", ("nonzero", "unbind", "reshape"), nonzero, nonzero)


from . import linalg as _linalg  # noqa: E402,F401  (registers torch.norm; it imports this module)
