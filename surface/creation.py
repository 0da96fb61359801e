"""torch's creation functions, written once against a `Backend` (gradserve.surface.backend):
`zeros`/`ones`/`empty`/`rand`/`randn(*size)`, `full`, `arange`'s 1/2/3-argument forms,
`linspace`, `eye`, `randint`'s two forms, `normal`, `randint_like` and the `*_like` functions.

Each parses torch's arguments (`*size` in every form, `dtype=`, `requires_grad=`, `device=`,
`generator=` for the random ones), resolves a floating result's dtype to the layer's default
dtype (`torch.set_default_dtype`, per session on the client), runs one op through `be.call`
(whose own checks raise torch's other errors), then refuses `requires_grad=True` on a
non-floating result as torch does: after making it (a refused random call has drawn its numbers,
as torch's), judged from the arguments, so the client need not ask the server for the dtype.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import memory_format, messages
from .backend import Backend
from .devices import check_device
from .spellings import SPELLINGS, Spelling, is_int, size_args

FLOATING = frozenset({"float16", "bfloat16", "float32", "float64", "complex64", "complex128"})
"""torch's dtypes that can require gradients (by name)."""


def keeps_numpy_scalar_dtype(data: Any) -> bool:
    """Whether `torch.tensor(data)` takes a numpy scalar's own dtype (`np.float64(0.5)`:
    float64; `np.int32(3)`: int32) among the dtypes gradserve has; other numpy scalars convert
    as the Python number they hold."""
    return isinstance(data, np.generic) and data.dtype in _NUMPY_SCALAR_DTYPES


_NUMPY_SCALAR_DTYPES = frozenset(np.dtype(t) for t in (np.float64, np.float32, np.int64,
                                                       np.int32, np.int16, np.int8, np.uint8,
                                                       np.bool_))


def sequence_dtype(data: Any, default_float: np.dtype) -> np.dtype | None:
    """The dtype `torch.tensor(data)` infers for a (nested) list or tuple holding numpy scalars
    or arrays (a nested tensor's value is one, see `nested_values`): torch promotes over its
    elements, each numpy value counting with its own dtype (`[np.float64(1), 2.0]`: float64;
    `[np.int32(1), np.int8(2)]`: int32), a Python float as `default_float`, an int as int64.

    Returns None for other data, a list without numpy values (numpy's own inference, floats
    then made the default dtype, is torch's) or one with a dtype gradserve does not have.
    """
    if not isinstance(data, (list, tuple)):
        return None
    kinds = set(map(type, data))
    if kinds <= _PY_NUMBERS:
        return None  # the common list: Python numbers only, one pass in C
    arrays: list[np.dtype] = []
    kinds = _leaf_kinds(data, kinds, arrays)
    found = [np.dtype(k) for k in kinds if issubclass(k, np.generic)] + arrays
    if not found or any(d not in _NUMPY_SCALAR_DTYPES for d in found):
        return None
    for k in kinds:  # Python numbers (np.float64 is a float too: counted above)
        if issubclass(k, np.generic):
            continue
        if not issubclass(k, (bool, int, float)):
            return None  # not a number: numpy's inference refuses it as before
        found.append(np.dtype(np.bool_) if issubclass(k, bool) else np.dtype(np.int64)
                     if issubclass(k, int) else default_float)
    floats = [d for d in found if d.kind == "f"]
    if floats:
        return max(floats, key=lambda d: d.itemsize)
    ints = [d for d in found if d.kind in "iu"]  # numpy's promotion is torch's here
    return np.result_type(*ints) if ints else np.dtype(np.bool_)


_PY_NUMBERS = frozenset((float, int, bool))


def _leaf_kinds(data: list[Any] | tuple[Any, ...], level: set[type],
                arrays: list[np.dtype]) -> set[type]:
    """The types of `data`'s leaves, given `level`, the types of its elements; the dtypes of
    its arrays are added to `arrays` (a level without lists or arrays costs one pass in C)."""
    if list not in level and tuple not in level and np.ndarray not in level:
        return level
    leaves = level - {list, tuple, np.ndarray}
    for d in data:
        t = type(d)
        if t is list or t is tuple:
            leaves |= _leaf_kinds(d, set(map(type, d)), arrays)
        elif t is np.ndarray:
            arrays.append(d.dtype)
    return leaves


def nested_values(data: Any, tensor_type: type, value_of: Callable[[Any], Any]) -> Any:
    """`data` for torch.tensor with each tensor in its nested lists and tuples replaced by
    `value_of(tensor)` (torch reads the values of the tensors a nested list holds).

    Args:
        data: torch.tensor's data argument.
        tensor_type: the layer's Tensor class.
        value_of: the tensor's value as an ndarray, outside autograd.
    Returns:
        `data` with the tensors replaced (lists for tuples), or `data` itself when not a list.
    Raises:
        ValueError: a tensor of more than one element (torch reads each as a scalar).
    """
    if isinstance(data, tensor_type):
        value = np.asarray(value_of(data))
        if value.size != 1:
            raise ValueError(messages.SCALAR_CONVERSION_MESSAGE)
        return value.reshape(())
    if isinstance(data, (list, tuple)):
        return [nested_values(d, tensor_type, value_of) for d in data]
    return data


def _register(name: str, needs: tuple[str, ...], fn: Callable[..., Any]) -> None:
    fn.__name__ = fn.__qualname__ = name
    SPELLINGS[name] = Spelling(name, needs, fn, None)


def _dtype_name(dtype: Any) -> str | None:
    """The name of a dtype argument (a layer's dtype object or its name), None if not one."""
    name = getattr(dtype, "name", dtype)
    return name if isinstance(name, str) else None


def _finish(be: Backend, out: Any, requires_grad: bool, dtype: Callable[[], str | None]) -> Any:
    """`out`, made a leaf that requires grad if asked: only a floating one can (`dtype()` is its
    dtype name, None when unknown), else torch's RuntimeError."""
    if requires_grad:
        d = dtype()
        if d is not None and d not in FLOATING:
            raise be.runtime_error(messages.REQUIRES_GRAD_FACTORY_MESSAGE)
        out.requires_grad_(True)
    return out


def _resolved(be: Backend, dtype: Any) -> Any:
    """`dtype`, or the layer's default floating dtype (a floating factory's)."""
    return dtype if dtype is not None else be.dtype(be.default_dtype())


def scalar_dtype(be: Backend, *values: Any) -> str:
    """torch's dtype for Python numbers: a float makes the default dtype, else an int int64,
    else bool (a numpy bool is read as a float: gradserve.surface.numbers)."""
    if any(isinstance(v, (float, np.floating, np.bool_)) for v in values):
        return be.default_dtype()
    if any(is_int(v) for v in values):
        return "int64"
    return "bool"


def _generator(generator: Any) -> dict[str, Any]:
    """`generator=` passed on to a random op only when given (a layer without generators then
    refuses it with its own TypeError)."""
    return {} if generator is None else {"generator": generator}


# --- *size ---------------------------------------------------------------------------------------

RANDOM = frozenset({"rand", "randn", "rand_like", "randn_like", "randint", "randint_like",
                    "normal"})


def _laid_out(be: Backend, out: Any, layout: Any) -> Any:
    """`torch.empty(..., memory_format=...)`'s result: `out` laid out in that format (a
    channels-last copy: its values are zeros all the same)."""
    fmt = memory_format.attr_name(layout, "empty", be.type_error)
    if fmt == "preserve":
        raise be.runtime_error("unsupported memory format Preserve")
    if fmt == "contiguous":
        return out
    return be.call("clone", (out,), {"memory_format": fmt})


def _sized(name: str) -> None:
    op = "zeros" if name == "empty" else name  # torch leaves empty()'s values uninitialised
    random = name in RANDOM

    def fn(be: Backend, *size: Any, dtype: Any = None, requires_grad: bool = False,
           device: Any = None, **kwargs: Any) -> Any:
        generator = kwargs.pop("generator", None) if random else None
        layout = kwargs.pop("memory_format", None) if name == "empty" else None
        shape = size_args(be, name, size, kwargs)
        if kwargs:
            raise be.type_error(
                f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")
        dtype = _resolved(be, dtype)
        check_device(device, name, be.type_error, be.runtime_error)
        out = be.call(op, (), {"size": shape, "dtype": dtype, **_generator(generator)})
        if layout is not None:
            out = _laid_out(be, out, layout)
        return _finish(be, out, requires_grad, lambda: _dtype_name(dtype))

    fn.__doc__ = (f"torch.{name}(*size, dtype=None, requires_grad=False, device=None"
                  f"{', generator=None' if random else ''}).")
    _register(name, (op,), fn)


for _name in ("zeros", "ones", "rand", "randn", "empty"):
    _sized(_name)


def full(be: Backend, size: Any, fill_value: Any, *, dtype: Any = None,
         requires_grad: bool = False, device: Any = None) -> Any:
    """torch.full(size, fill_value, dtype=None, requires_grad=False, device=None): the dtype
    follows the fill value (float: the default dtype, int: int64, bool: bool) unless given."""
    shape = size_args(be, "full", (size,), {})
    if dtype is None:
        dtype = be.dtype(scalar_dtype(be, fill_value))
    check_device(device, "full", be.type_error, be.runtime_error)
    out = be.call("full", (), {"size": shape, "fill_value": fill_value, "dtype": dtype})
    return _finish(be, out, requires_grad, lambda: _dtype_name(dtype))


_register("full", ("full",), full)


def _like(name: str) -> None:
    op = "zeros_like" if name == "empty_like" else name  # uninitialised in torch
    random = name in RANDOM

    def fn(be: Backend, input: Any, *args: Any, dtype: Any = None, requires_grad: bool = False,
           device: Any = None, **kwargs: Any) -> Any:
        if name == "empty_like" and args:
            raise be.type_error(
                f"empty_like() takes 1 positional argument but {1 + len(args)} were given")
        generator = kwargs.pop("generator", None) if random else None
        check_device(device, name, be.type_error, be.runtime_error)
        out = be.call(op, (input, *args), {**kwargs, "dtype": dtype, **_generator(generator)})
        return _finish(be, out, requires_grad,
                       lambda: _dtype_name(dtype) if dtype is not None else be.dtype_name(input))

    fn.__doc__ = (f"torch.{name}(input, ..., dtype=None, requires_grad=False, device=None"
                  f"{', generator=None' if random else ''}).")
    _register(name, (op,), fn)


for _name in ("zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "empty_like"):
    _like(_name)


# --- ranges --------------------------------------------------------------------------------------


def arange_length(start: Any, end: Any, step: Any, dtype: str) -> tuple[int, str, str]:
    """torch.arange's length for its Python-number bounds (`end` given) and result dtype, with
    torch's checks: on the numbers as given, then for int64 on the int64s (each truncated toward
    zero); int64's length is integer arithmetic, the other dtypes' a double's ceil.

    Returns:
        (length, "", "") or (0, kind, message) for a call torch refuses: kind "value",
        "runtime" or "not_implemented" (torch's ValueError, RuntimeError, NotImplementedError).
    """
    if dtype == "bool":
        return 0, "not_implemented", "\"arange_cpu\" not implemented for 'Bool'"
    if not (step > 0 or step < 0):  # torch's wording for NaN too
        return 0, "runtime", "step must be nonzero"
    if not (math.isfinite(start) and math.isfinite(end)):
        return 0, "runtime", f"unsupported range: {start} -> {end}"
    if (step > 0 and end < start) or (step < 0 and end > start):
        return 0, "runtime", "upper bound and lower bound inconsistent with step sign"
    if dtype == "int64":  # checked again as int64s (truncation keeps the bounds' order)
        start, end, step = math.trunc(start), math.trunc(end), math.trunc(step)
        if step == 0:
            return 0, "value", "step must be nonzero"
        # (end - start + step - sign(step)) / step in C's truncating division
        span = end - start + step - (1 if step > 0 else -1)
        n = abs(span) // abs(step) * (1 if (span >= 0) == (step > 0) else -1)
    else:
        n = math.ceil((float(end) - float(start)) / float(step))
    return max(0, n), "", ""


def arange(be: Backend, start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None,
           requires_grad: bool = False, device: Any = None) -> Any:
    """torch.arange(end), arange(start, end) or arange(start, end, step); dtype=None (from the
    numbers: a float makes the default dtype, else int64), requires_grad=False, device=None."""
    if dtype is None:
        dtype = be.dtype(scalar_dtype(be, start, end, step, 0))
    check_device(device, "arange", be.type_error, be.runtime_error)
    out = be.call("arange", (), {"start": start, "end": end, "step": step, "dtype": dtype})
    return _finish(be, out, requires_grad, lambda: _dtype_name(dtype))


_register("arange", ("arange",), arange)

RANGE_DEPRECATED = (
    "torch.range is deprecated and will be removed in a future release because its behavior is "
    "inconsistent with Python's range builtin. Instead, use torch.arange, which produces values "
    "in [start, end).")


def range_(be: Backend, start: Any, end: Any, step: Any = 1, *, dtype: Any = None,
           requires_grad: bool = False, device: Any = None) -> Any:
    """torch.range(start, end, step=1) (deprecated): start to end inclusive, in the default
    floating dtype unless dtype; each value `start + i * step` in double (int64 for integer
    dtypes), as torch's range_out."""
    warnings.warn(RANGE_DEPRECATED, UserWarning, stacklevel=3)
    dtype = _resolved(be, dtype)
    name = _dtype_name(dtype) or be.default_dtype()
    check_device(device, "range", be.type_error, be.runtime_error)
    if name == "bool":
        raise NotImplementedError("\"range_cpu\" not implemented for 'Bool'")
    integral = name not in FLOATING
    if integral:
        start, end, step = math.trunc(start), math.trunc(end), math.trunc(step)
    if not (step > 0 or step < 0):
        raise be.runtime_error("step must be nonzero")
    if not (math.isfinite(start) and math.isfinite(end)):
        raise be.runtime_error(f"unsupported range: {start:g} -> {end:g}")
    if (step > 0 and end < start) or (step < 0 and end > start):
        raise be.runtime_error("upper bound and lower bound inconsistent with step sign")
    if integral:
        n = (end - start) // step + 1 if step > 0 else (start - end) // -step + 1
        values = start + np.arange(n, dtype=np.int64) * step
    else:
        n = int((float(end) - float(start)) / float(step) + 1)
        values = float(start) + np.arange(n, dtype=np.float64) * float(step)
    out = be.from_data(values.astype(name), name)
    return _finish(be, out, requires_grad, lambda: name)


_register("range", ("arange",), range_)


def linspace(be: Backend, start: Any, end: Any, steps: int, *, dtype: Any = None,
             requires_grad: bool = False, device: Any = None) -> Any:
    """torch.linspace(start, end, steps, dtype=None, requires_grad=False, device=None)."""
    dtype = _resolved(be, dtype)
    check_device(device, "linspace", be.type_error, be.runtime_error)
    out = be.call("linspace", (), {"start": start, "end": end, "steps": steps, "dtype": dtype})
    return _finish(be, out, requires_grad, lambda: _dtype_name(dtype))


_register("linspace", ("linspace",), linspace)


def eye(be: Backend, n: int, m: int | None = None, *, dtype: Any = None,
        requires_grad: bool = False, device: Any = None) -> Any:
    """torch.eye(n, m=None, dtype=None, requires_grad=False, device=None)."""
    dtype = _resolved(be, dtype)
    check_device(device, "eye", be.type_error, be.runtime_error)
    out = be.call("eye", (), {"n": n, "m": m, "dtype": dtype})
    return _finish(be, out, requires_grad, lambda: _dtype_name(dtype))


_register("eye", ("eye",), eye)


# --- random integers and normal ------------------------------------------------------------------

_KEYWORDS = ("torch.memory_format memory_format = None, torch.dtype dtype = None, "
             "torch.layout layout = None, torch.device device = None, bool pin_memory = False, "
             "bool requires_grad = False)")
RANDINT_SIGNATURES = tuple(
    f"({args}, *, {gen}Tensor out = None, torch.dtype dtype = None, torch.layout layout = None, "
    "torch.device device = None, bool pin_memory = False, bool requires_grad = False)"
    for args in ("int high, tuple of ints size", "int low, int high, tuple of ints size")
    for gen in ("torch.Generator generator, ", ""))
RANDINT_LIKE_SIGNATURES = tuple(
    f"(Tensor input, {args}, *, {gen}{_KEYWORDS}"
    for args in ("int low, int high", "Tensor high", "int high")
    for gen in ("torch.Generator generator, ", ""))


NORMAL_SIGNATURES = (
    "(Tensor mean, Tensor std, *, torch.Generator generator = None, Tensor out = None)",
    "(Tensor mean, float std = 1, *, torch.Generator generator = None, Tensor out = None)",
    "(float mean, Tensor std, *, torch.Generator generator = None, Tensor out = None)",
    "(float mean, float std, tuple of ints size, *, torch.Generator generator = None, Tensor out "
    "= None, torch.dtype dtype = None, torch.layout layout = None, torch.device device = None, "
    "bool pin_memory = False, bool requires_grad = False)")


def randint(be: Backend, *args: Any, size: Any = None, dtype: Any = None,
            requires_grad: bool = False, device: Any = None, generator: Any = None,
            **kwargs: Any) -> Any:
    """torch.randint(high, size) or randint(low, high, size) (also by keyword), dtype=None
    (int64), requires_grad=False, device=None, generator=None."""
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
        raise be.type_error(messages.invalid_combination(
            "randint", args, given, RANDINT_SIGNATURES, be.is_tensor))
    shape = size_args(be, "randint", (size,), {})
    check_device(device, "randint", be.type_error, be.runtime_error)
    out = be.call("randint", (), {"low": low, "high": high, "size": shape, "dtype": dtype,
                                  **_generator(generator)})
    return _finish(be, out, requires_grad,
                   lambda: _dtype_name(dtype) if dtype is not None else "int64")


_register("randint", ("randint",), randint)


def randint_like(be: Backend, input: Any, *args: Any, low: Any = None, high: Any = None,
                 dtype: Any = None, requires_grad: bool = False, device: Any = None,
                 generator: Any = None) -> Any:
    """torch.randint_like(input, high) or randint_like(input, low, high) (also by keyword),
    dtype=None (input's), requires_grad=False, device=None, generator=None."""
    if high is None and len(args) == 1:
        high = args[0]
    elif high is None and len(args) == 2:
        low, high = args
    elif high is not None and len(args) == 1 and low is None:
        low = args[0]
    elif args or high is None:
        given = {k: v for k, v in (("low", low), ("high", high)) if v is not None}
        raise be.type_error(messages.invalid_combination(
            "randint_like", (input, *args), given, RANDINT_LIKE_SIGNATURES, be.is_tensor))
    check_device(device, "randint_like", be.type_error, be.runtime_error)
    out = be.call("randint_like", (input,), {"low": 0 if low is None else low, "high": high,
                                             "dtype": dtype, **_generator(generator)})
    return _finish(be, out, requires_grad,
                   lambda: _dtype_name(dtype) if dtype is not None else be.dtype_name(input))


_register("randint_like", ("randint_like",), randint_like)


def normal(be: Backend, mean: Any, std: Any = 1.0, size: Any = None, *, dtype: Any = None,
           requires_grad: bool = False, generator: Any = None) -> Any:
    """torch.normal(mean, std=1.0, size=None, *, generator=None, dtype=None,
    requires_grad=False): tensors or numbers for mean and std (two numbers need a size; only
    that form takes dtype= and requires_grad=, as torch)."""
    if (dtype is not None or requires_grad) and (be.is_tensor(mean) or be.is_tensor(std)):
        given = {k: v for k, v in (("size", size), ("generator", generator), ("dtype", dtype),
                                   ("requires_grad", requires_grad)) if v not in (None, False)}
        raise be.type_error(messages.invalid_combination(
            "normal", (mean, std), given, NORMAL_SIGNATURES, be.is_tensor,
            typename=lambda v: "torch.dtype" if v is dtype else None))
    shape = None if size is None else size_args(be, "normal", (size,), {})
    out = be.call("normal_sample", (mean, std), {"size": shape, "dtype": dtype,
                                                 **_generator(generator)})
    return _finish(be, out, requires_grad, lambda: None)  # always floating


_register("normal", ("normal_sample",), normal)
