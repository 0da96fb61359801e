"""Creation ops: zeros, ones, full, arange, linspace, eye, the *_like ops and the random ones.

They have no tensor inputs (the *_like ops take one only for its shape and dtype) and no
gradient. Sizes and dtypes are attributes; `out_shape` gives the result's shape so that a hostile
size is refused before anything is allocated, and the dtype rule checks sizes first (torch's
"negative dimension" message). The `@public` wrappers at the end accept torch's spellings
(`zeros(2, 3)`, `zeros((2, 3))`, `requires_grad=True`, `randint(10, (3,))`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import messages
from gradserve.surface.compat import legacy_dtype_name, parse_to
from gradserve.surface.devices import check_device
from gradserve.surface.spellings import size_args

from . import dtypes, errors
from . import random as _random
from .api import public
from .dispatch import run
from .dtypes import DType
from .registry import OPS, AttrSpec, OpDef, bind_attrs, defop, temporaries
from .spellings import BACKEND
from .tensor import Tensor

_SIZE = AttrSpec("size", "ints", required=True)
_DTYPE = AttrSpec("dtype", "dtype", None)


def _check_size(size: Sequence[int], op: str = "") -> None:
    for d in size:
        if d < 0:
            if op == "zeros":  # torch's zeros checks sizes itself, with its own message
                raise errors.InvalidArgumentError("zeros: Dimension size must be non-negative.")
            raise errors.InvalidArgumentError(
                f"Trying to create tensor with negative dimension {d}: "
                f"[{', '.join(map(str, size))}]")


def _np_dtype(dtype: DType | None, default: DType | None = None) -> Any:
    return (dtype or default or dtypes.DEFAULT_FLOAT).np


def _sized(default: DType | None, floating_only: str | None = None, op: str = "") -> Any:
    """Dtype rule of an op with a `size` (and `dtype`) attribute: check the size, then the dtype
    (`default` None: the default dtype, torch.get_default_dtype())."""
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
        _check_size(attrs["size"], op)
        d = attrs.get("dtype") or default or dtypes.DEFAULT_FLOAT
        if floating_only is not None and d.category != 2:
            raise errors.InvalidArgumentError(
                f'"{floating_only}" not implemented for \'{_type_word(d)}\'')
        return None, d
    return rule


def _like(floating_only: str | None = None) -> Any:
    """Dtype rule of a *_like op: the input's dtype unless `dtype` says otherwise."""
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
        d = attrs.get("dtype") or args[0].dtype
        if floating_only is not None and d.category != 2:
            raise errors.InvalidArgumentError(
                f'"{floating_only}" not implemented for \'{_type_word(d)}\'')
        return None, d
    return rule


def _type_word(d: DType) -> str:
    return {"float32": "Float", "float64": "Double", "int32": "Int", "int64": "Long",
            "bool": "Bool"}[d.name]


def _size_shape(**attrs: Any) -> tuple[int, ...]:
    return tuple(attrs["size"])


def _input_shape(x: Any, **attrs: Any) -> tuple[int, ...]:
    return tuple(x.shape)


# Forwards that build in a wider dtype than the result's (np.full's from the Python value,
# arange's and linspace's float64/int64 arithmetic, randint's int64 draw) declare those bytes per
# element with `temporaries(..., result_bytes=...)`.

# --- constant fills ------------------------------------------------------------------------------

defop("zeros", lambda size, dtype=None: np.zeros(size, _np_dtype(dtype)), inputs=(),
      attrs=(_SIZE, _DTYPE), dtype=_sized(None, op="zeros"), out_shape=_size_shape,
      method=False, doc="a tensor of zeros (float32 unless dtype)")
defop("ones", lambda size, dtype=None: np.ones(size, _np_dtype(dtype)), inputs=(),
      attrs=(_SIZE, _DTYPE), dtype=_sized(None), out_shape=_size_shape, method=False,
      doc="a tensor of ones (float32 unless dtype)")


def _full_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    _check_size(attrs["size"])
    return None, attrs.get("dtype") or dtypes.scalar_dtype(attrs["fill_value"])


defop("full", lambda size, fill_value, dtype=None: np.full(size, fill_value),
      inputs=(), attrs=(_SIZE, AttrSpec("fill_value", "scalar", required=True), _DTYPE),
      dtype=_full_dtype, out_shape=_size_shape, method=False,
      doc="a tensor filled with fill_value (dtype inferred from it: bool, int64 or float32)",
      out_bound=temporaries(_size_shape, result_bytes=8))

def _like_dtype(x: Any, dtype: DType | None) -> Any:
    return dtype.np if dtype is not None else x.dtype


defop("zeros_like", lambda x, dtype=None: np.zeros(x.shape, _like_dtype(x, dtype)), None,
      attrs=(_DTYPE,), dtype=_like(), out_shape=_input_shape, method=False,
      doc="zeros with input's shape (and dtype unless dtype)")
defop("ones_like", lambda x, dtype=None: np.ones(x.shape, _like_dtype(x, dtype)), None,
      attrs=(_DTYPE,), dtype=_like(), out_shape=_input_shape, method=False,
      doc="ones with input's shape (and dtype unless dtype)")
defop("full_like", lambda x, fill_value, dtype=None: np.full(x.shape, fill_value), None,
      attrs=(AttrSpec("fill_value", "scalar", required=True), _DTYPE), dtype=_like(),
      out_shape=_input_shape, method=False,
      doc="fill_value with input's shape (and dtype unless dtype)",
      out_bound=temporaries(_input_shape, result_bytes=8))

# --- ranges --------------------------------------------------------------------------------------


def _arange_bounds(start: Any, end: Any, step: Any) -> tuple[Any, Any, int]:
    """(start, end, length) of arange, with torch's checks."""
    if end is None:
        start, end = 0, start
    if not (step > 0 or step < 0):  # torch's wording for NaN too
        raise errors.InvalidArgumentError("step must be nonzero")
    if not (math.isfinite(start) and math.isfinite(end)):
        raise errors.InvalidArgumentError(f"unsupported range: {start} -> {end}")
    if (step > 0 and end < start) or (step < 0 and end > start):
        raise errors.InvalidArgumentError("upper bound and lower bound inconsistent with step sign")
    return start, end, max(0, math.ceil((end - start) / step))


def _arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None) -> Any:
    start, end, n = _arange_bounds(start, end, step)
    out_np = _arange_dtype((), {"start": start, "end": end, "step": step, "dtype": dtype})[1].np
    if out_np.kind in "iub" and all(isinstance(v, (bool, int)) for v in (start, step)):
        return start + np.arange(n, dtype=np.int64) * step
    return (start + np.arange(n, dtype=np.float64) * step).astype(out_np)


def _arange_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if attrs.get("dtype") is not None:
        return None, attrs["dtype"]
    values = (attrs["start"], attrs.get("end"), attrs.get("step", 1))
    floating = any(isinstance(v, float) for v in values)
    return None, dtypes.DEFAULT_FLOAT if floating else dtypes.int64


def _arange_shape(**attrs: Any) -> tuple[int, ...]:
    return (_arange_bounds(attrs["start"], attrs["end"], attrs["step"])[2],)


defop("arange", _arange, inputs=(),
      attrs=(AttrSpec("start", "scalar", required=True), AttrSpec("end", "optional_scalar"),
             AttrSpec("step", "scalar", 1), _DTYPE),
      dtype=_arange_dtype, out_shape=_arange_shape, method=False,
      doc="values from start (0 without end) to end, by step; int64 unless a bound is a float",
      out_bound=temporaries(_arange_shape, result_bytes=24))


def _linspace(start: Any, end: Any, steps: int, dtype: Any = None) -> Any:
    # torch's kernel: from both ends toward the middle, so the last value is exactly `end`.
    if steps == 1:
        return np.asarray([start], dtype=np.float64).astype(_np_dtype(dtype))
    i = np.arange(steps, dtype=np.float64)
    step = (end - start) / (steps - 1)
    half = steps // 2
    out = np.where(i < half, start + i * step, end - (steps - 1 - i) * step)
    return out.astype(_np_dtype(dtype))


def _linspace_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if attrs["steps"] < 0:
        raise errors.InvalidArgumentError("number of steps must be non-negative")
    return None, attrs.get("dtype") or dtypes.DEFAULT_FLOAT


defop("linspace", _linspace, inputs=(),
      attrs=(AttrSpec("start", "scalar", required=True), AttrSpec("end", "scalar", required=True),
             AttrSpec("steps", "int", required=True), _DTYPE),
      dtype=_linspace_dtype, out_shape=lambda **a: (a["steps"],), method=False,
      doc="steps evenly spaced values from start to end (float32 unless dtype)",
      out_bound=temporaries(lambda **a: (a["steps"],), result_bytes=48))


def _eye_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if attrs["n"] < 0:
        raise errors.InvalidArgumentError(f"n must be greater or equal to 0, got {attrs['n']}")
    m = attrs.get("m")
    if m is not None and m < 0:
        raise errors.InvalidArgumentError(f"m must be greater or equal to 0, got {m}")
    return None, attrs.get("dtype") or dtypes.DEFAULT_FLOAT


defop("eye", lambda n, m=None, dtype=None: np.eye(n, m, dtype=_np_dtype(dtype)), inputs=(),
      attrs=(AttrSpec("n", "int", required=True), AttrSpec("m", "optional_int"), _DTYPE),
      dtype=_eye_dtype, out_shape=lambda **a: (a["n"], a["n"] if a["m"] is None else a["m"]),
      method=False, doc="an n x m identity matrix (m = n unless given)")

# --- random --------------------------------------------------------------------------------------


def _rand(size: Sequence[int], dtype: Any = None, generator: Any = None) -> Any:
    d = _np_dtype(dtype)
    return _random.resolve(generator).random(tuple(size), dtype=d)


def _randn(size: Sequence[int], dtype: Any = None, generator: Any = None) -> Any:
    d = _np_dtype(dtype)
    return _random.resolve(generator).standard_normal(tuple(size), dtype=d)


def _randint_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    _check_size(attrs["size"])
    low, high = attrs["low"], attrs["high"]
    if low >= high:
        raise errors.InvalidArgumentError(
            f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    return None, attrs.get("dtype") or dtypes.int64


def _randint(low: int, high: int, size: Sequence[int], dtype: Any = None,
             generator: Any = None) -> Any:
    return _random.resolve(generator).integers(low, high, tuple(size), dtype=np.int64)


_RANDOM = [
    defop("rand", _rand, inputs=(), attrs=(_SIZE, _DTYPE),
          dtype=_sized(None, "check_uniform_bounds"), out_shape=_size_shape,
          method=False, doc="uniform random values in [0, 1) (float32 unless dtype)"),
    defop("randn", _randn, inputs=(), attrs=(_SIZE, _DTYPE),
          dtype=_sized(None, "normal_kernel_cpu"), out_shape=_size_shape,
          method=False, doc="standard normal random values (float32 unless dtype)"),
    defop("randint", _randint, inputs=(),
          attrs=(AttrSpec("low", "int", required=True), AttrSpec("high", "int", required=True),
                 _SIZE, _DTYPE),
          dtype=_randint_dtype, out_shape=_size_shape, method=False,
          doc="uniform random integers in [low, high) (int64 unless dtype)",
      out_bound=temporaries(_size_shape, result_bytes=8)),
    defop("rand_like", lambda x, dtype=None, generator=None: _rand(
          x.shape, dtype or dtypes.from_numpy(x.dtype), generator), None, attrs=(_DTYPE,),
          dtype=_like("check_uniform_bounds"), out_shape=_input_shape, method=False,
          doc="uniform random values in [0, 1) with input's shape (and dtype unless dtype)"),
    defop("randn_like", lambda x, dtype=None, generator=None: _randn(
          x.shape, dtype or dtypes.from_numpy(x.dtype), generator), None, attrs=(_DTYPE,),
          dtype=_like("normal_kernel_cpu"), out_shape=_input_shape, method=False,
          doc="standard normal random values with input's shape (and dtype unless dtype)"),
]
for _op in _RANDOM:
    _op.random = True  # type: ignore[attr-defined]  # the server passes the session's generator


# --- torch's spellings ---------------------------------------------------------------------------


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    if requires_grad:
        t._set_requires_grad(True, messages.REQUIRES_GRAD_FACTORY_MESSAGE)
    return t


def _call(op: OpDef, attrs: dict[str, Any], generator: Any = None) -> Tensor:
    return run(op, (), bind_attrs(op, (), attrs), generator=generator)


def _sized_public(name: str) -> None:
    op = OPS[name]

    def fn(*size: Any, dtype: Any = None, requires_grad: bool = False,
           generator: Any = None, device: Any = None, **kw: Any) -> Tensor:
        _device(name, device)
        shape = size_args(BACKEND, name, size, kw)
        if kw:
            raise errors.InvalidTypeError(
                f"{name}() got an unexpected keyword argument '{next(iter(kw))}'")
        return _finish(_call(op, {"size": shape, "dtype": dtype}, generator), requires_grad)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"torch.{name}(*size, dtype=None, requires_grad=False): {op.doc}."
    public(name, method=False)(fn)


def _device(name: str, device: Any) -> None:
    check_device(device, name, errors.InvalidTypeError, errors.InvalidArgumentError)


for _name in ("zeros", "ones", "rand", "randn"):
    _sized_public(_name)


@public("empty", method=False)
def empty(*size: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None,
          **kw: Any) -> Tensor:
    """torch.empty(*size): zeros (torch leaves the values uninitialised; any values will do)."""
    _device("empty", device)
    shape = size_args(BACKEND, "empty", size, kw)
    if kw:
        raise errors.InvalidTypeError(
            f"empty() got an unexpected keyword argument '{next(iter(kw))}'")
    return _finish(_call(OPS["zeros"], {"size": shape, "dtype": dtype}), requires_grad)


@public("empty_like", method=False)
def empty_like(input: Any, *, dtype: Any = None, requires_grad: bool = False,
               device: Any = None) -> Tensor:
    """torch.empty_like(input): zeros_like (uninitialised in torch)."""
    _device("empty_like", device)
    return _finish(run(OPS["zeros_like"], (input,), bind_attrs(OPS["zeros_like"], (),
                                                                 {"dtype": dtype})),
                   requires_grad)


@public("full", method=False)
def full(size: Any, fill_value: Any, *, dtype: Any = None, requires_grad: bool = False,
         device: Any = None) -> Tensor:
    """torch.full(size, fill_value, dtype=None, requires_grad=False, device=None)."""
    _device("full", device)
    shape = size_args(BACKEND, "full", (size,), {})
    return _finish(_call(OPS["full"], {"size": shape, "fill_value": fill_value, "dtype": dtype}),
                   requires_grad)


def _like_public(name: str) -> None:
    op = OPS[name]

    def fn(input: Any, *args: Any, dtype: Any = None, requires_grad: bool = False,
           generator: Any = None, device: Any = None, **kw: Any) -> Tensor:
        _device(name, device)
        attrs = bind_attrs(op, args, {**kw, "dtype": dtype})
        return _finish(run(op, (input,), attrs, generator=generator), requires_grad)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"torch.{name}(input, ..., dtype=None, requires_grad=False): {op.doc}."
    public(name, method=False)(fn)


for _name in ("zeros_like", "ones_like", "full_like", "rand_like", "randn_like"):
    _like_public(_name)


@public("arange", method=False)
def arange(start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None,
           requires_grad: bool = False, device: Any = None) -> Tensor:
    """torch.arange(end) or arange(start, end, step=1), dtype=None, requires_grad=False."""
    _device("arange", device)
    return _finish(_call(OPS["arange"], {"start": start, "end": end, "step": step,
                                         "dtype": dtype}), requires_grad)


@public("linspace", method=False)
def linspace(start: Any, end: Any, steps: int, *, dtype: Any = None,
             requires_grad: bool = False, device: Any = None) -> Tensor:
    """torch.linspace(start, end, steps, dtype=None, requires_grad=False)."""
    _device("linspace", device)
    return _finish(_call(OPS["linspace"], {"start": start, "end": end, "steps": steps,
                                           "dtype": dtype}), requires_grad)


@public("eye", method=False)
def eye(n: int, m: int | None = None, *, dtype: Any = None, requires_grad: bool = False,
        device: Any = None) -> Tensor:
    """torch.eye(n, m=None, dtype=None, requires_grad=False)."""
    _device("eye", device)
    return _finish(_call(OPS["eye"], {"n": n, "m": m, "dtype": dtype}), requires_grad)


@public("randint", method=False)
def randint(*args: Any, size: Any = None, dtype: Any = None, generator: Any = None,
            requires_grad: bool = False, low: int = 0, high: int | None = None,
            device: Any = None) -> Tensor:
    """torch.randint(high, size) or randint(low, high, size), dtype=None, generator=None."""
    _device("randint", device)
    args = list(args)  # type: ignore[assignment]
    if size is None and args and isinstance(args[-1], (tuple, list)):
        size = args.pop()  # type: ignore[attr-defined]
    if high is None:
        if len(args) == 1:
            high = args[0]
        elif len(args) == 2:
            low, high = args
        else:
            raise errors.InvalidTypeError(
                "randint() received an invalid combination of arguments - expected (int high, "
                "tuple of ints size) or (int low, int high, tuple of ints size)")
    elif args:
        low = args[0]
    if size is None:
        raise errors.InvalidTypeError("randint() missing required argument 'size'")
    shape = size_args(BACKEND, "randint", (size,), {})
    return _finish(_call(OPS["randint"], {"low": low, "high": high, "size": shape,
                                          "dtype": dtype}, generator), requires_grad)



# --- conversions: Tensor.to(dtype), .float(), ... (one op, `to_dtype`) ---------------------------

_TENSOR_TYPES = {d.torch_tensor_name: d for d in dtypes.DTYPES.values()}


def _convert(t: Tensor, dtype: DType, copy: bool = False) -> Tensor:
    if t.dtype is dtype and not copy:
        return t  # torch returns the tensor itself
    return run(OPS["to_dtype"], (t,), {"dtype": dtype})


def _as_dtype(value: Any, what: str) -> DType:
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        if value in _TENSOR_TYPES:
            return _TENSOR_TYPES[value]
        return dtypes.by_name(value.removeprefix("torch."))
    raise errors.InvalidTypeError(f"{what}: expected a dtype, not {type(value).__name__}")


@public("to", function=False)
def to(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """Tensor.to(dtype), to(device), to(other), to(device, dtype); copy=True forces a copy."""
    dtype, copy = parse_to(BACKEND, args, kwargs, lambda v: isinstance(v, DType))
    target = self.dtype if dtype is None else _as_dtype(dtype, "to()")
    return _convert(self, target, copy)


def _fixed_conversion(name: str, dtype: DType) -> None:
    def method(self: Tensor) -> Tensor:
        return _convert(self, dtype)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Tensor.{name}(): self as {dtype} (self itself when already {dtype})."
    public(name, function=False)(method)


for _name, _d in (("float", dtypes.float32), ("double", dtypes.float64), ("int", dtypes.int32),
                  ("long", dtypes.int64), ("bool", dtypes.bool_)):
    _fixed_conversion(_name, _d)


@public("type", function=False)
def type_(self: Tensor, dtype: Any = None, non_blocking: bool = False) -> Any:
    """Tensor.type(): 'torch.FloatTensor'...; type(dtype or 'torch.DoubleTensor'): converted."""
    if dtype is None:
        return self.dtype.torch_tensor_name
    name = legacy_dtype_name(dtype)
    return _convert(self, dtypes.by_name(name) if name else _as_dtype(dtype, "type()"))
