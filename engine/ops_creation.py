"""Creation ops: zeros, ones, full, arange, linspace, eye, the *_like ops and the random ones.

They have no tensor inputs (the *_like ops take one only for its shape and dtype) and no
gradient. Sizes and dtypes are attributes; `out_shape` gives the result's shape so that a hostile
size is refused before anything is allocated, and the dtype rule checks sizes first (torch's
"negative dimension" message). torch's spellings of them (`zeros(2, 3)`, `zeros((2, 3))`,
`requires_grad=True`, `randint(10, (3,))`) are gradserve.surface.creation, shared with the
client; here only the in-place `bernoulli_` method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface.compat import legacy_dtype_name, parse_to
from gradserve.surface.creation import arange_length
from gradserve.surface.layout import broadcast_shapes, contiguous_strides
from gradserve.surface.memory_format import (
    ATTR_CHOICES,
    attr_name,
    format_strides,
    keeps_layout,
    like_strides,
    rank_error,
)
from gradserve.surface.messages import TYPE_WORDS

from . import cascade as _cascade
from . import distributions as _dist
from . import dtypes, errors, limits, strided
from . import random as _random
from .api import apply_inplace, public
from .dispatch import run
from .dtypes import DType
from .registry import OPS, AttrSpec, defop, names_backward, temporaries
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
    return TYPE_WORDS[d.name]


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


defop("full", lambda size, fill_value, dtype=None: np.full(size, dtypes.fill_value(
          fill_value, (dtype or dtypes.scalar_dtype(fill_value)).np)),
      inputs=(), attrs=(_SIZE, AttrSpec("fill_value", "scalar", required=True), _DTYPE),
      dtype=_full_dtype, out_shape=_size_shape, method=False,
      doc="a tensor filled with fill_value (dtype inferred from it: bool, int64 or float32)",
      out_bound=temporaries(_size_shape, result_bytes=8))

def _like_dtype(x: Any, dtype: DType | None) -> Any:
    return dtype.np if dtype is not None else x.dtype


def _filled_like(x: Any, value: Any, d: Any, memory_format: str) -> Any:
    """A *_like result: `value` in x's shape, laid out as torch's empty_like lays it out."""
    refusal = rank_error(memory_format, np.ndim(x))
    if refusal is not None:
        raise errors.InvalidArgumentError(refusal)
    if memory_format == "preserve":
        if np.ndim(x) <= 1 or x.flags.c_contiguous:
            return np.full(x.shape, value, d)
        strides = like_strides(x.shape, strided.element_strides(x))
    else:
        strides = format_strides(memory_format, x.shape)
    out = strided.empty_strided(x.shape, strides, d)
    out.fill(value)
    return out


_MEMORY_FORMAT = AttrSpec("memory_format", "str", "preserve", choices=ATTR_CHOICES)

defop("zeros_like", lambda x, dtype=None, memory_format="preserve": _filled_like(
          x, 0, _like_dtype(x, dtype), memory_format), None,
      attrs=(_DTYPE, _MEMORY_FORMAT), dtype=_like(), out_shape=_input_shape, method=False,
      doc="zeros with input's shape (and dtype unless dtype)")
defop("ones_like", lambda x, dtype=None, memory_format="preserve": _filled_like(
          x, 1, _like_dtype(x, dtype), memory_format), None,
      attrs=(_DTYPE, _MEMORY_FORMAT), dtype=_like(), out_shape=_input_shape, method=False,
      doc="ones with input's shape (and dtype unless dtype)")
defop("full_like", lambda x, fill_value, dtype=None, memory_format="preserve": _filled_like(
          x, fill_value, None, memory_format), None,
      attrs=(AttrSpec("fill_value", "scalar", required=True), _DTYPE, _MEMORY_FORMAT),
      dtype=_like(), out_shape=_input_shape, method=False,
      doc="fill_value with input's shape (and dtype unless dtype)",
      out_bound=temporaries(_input_shape, result_bytes=8))

# --- ranges --------------------------------------------------------------------------------------


_ARANGE_ERRORS = {"value": errors.InvalidValueError, "runtime": errors.InvalidArgumentError,
                  "not_implemented": errors.NotImplementedFunctionError}


def _arange_length(start: Any, end: Any, step: Any, dtype: DType) -> int:
    """arange's length (start is the end when end is None), or torch's error."""
    if end is None:
        start, end = 0, start
    n, kind, message = arange_length(start, end, step, dtype.name)
    if kind:
        raise _ARANGE_ERRORS[kind](message)
    return n


# torch's arange kernel fills its output through `cpu_serial_kernel_vec` in each of
# at::parallel_for's ranges: blocks of two vectors, then one element at a time. An element alone
# is `start + step * i` in double (one fused multiply-add), a vector's lanes `base + k * step`
# (again fused) from `base`, its first index's value rounded to the result's dtype. The vectors
# hold 32 bytes (8 float32, 4 float64) even where torch dispatches to AVX512 (measured with
# torch 2.13: arange(-1, 1, 0.1)[10] is -2.98e-09 = float(-0.2) + 2 * 0.1, not 0).
_ARANGE_VECTOR_BYTES = 32


def _arange_floating(start: float, step: float, n: int, np_dtype: Any) -> np.ndarray:
    """torch's floating arange values, bit for bit (see `_ARANGE_VECTOR_BYTES`)."""
    lanes = _ARANGE_VECTOR_BYTES // np_dtype.itemsize
    out = np.empty(n, np_dtype)
    chunks = max(1, min(_cascade.THREADS, -(-n // _cascade.GRAIN_SIZE)))
    for begin, end in (_cascade._split(n, chunks) if n else ()):
        vec_end = begin + (end - begin) // (2 * lanes) * (2 * lanes)
        if vec_end > begin:
            bases = _dist.fma64(np.arange(begin, vec_end, lanes, dtype=np.float64), step, start)
            bases = bases.astype(np_dtype).astype(np.float64)
            k = np.arange(lanes, dtype=np.float64)
            lanes_at = _dist.fma64(np.broadcast_to(k, (len(bases), lanes)), step, bases[:, None])
            out[begin:vec_end] = lanes_at.reshape(-1)
        if end > vec_end:
            out[vec_end:end] = _dist.fma64(np.arange(vec_end, end, dtype=np.float64), step, start)
    return out


def _arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None) -> Any:
    out = _arange_dtype((), {"start": start, "end": end, "step": step, "dtype": dtype})[1]
    n = _arange_length(start, end, step, out)
    if end is None:
        start = 0
    if out.category == 1:
        # in int64 (start and step truncated toward zero), wrapped into a narrower dtype
        start, step = math.trunc(start), math.trunc(step)
        return (start + np.arange(n, dtype=np.int64) * step).astype(out.np)
    return _arange_floating(float(start), float(step), n, out.np)


def _arange_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if attrs.get("dtype") is not None:
        return None, attrs["dtype"]
    values = (attrs["start"], attrs.get("end"), attrs.get("step", 1))
    floating = any(isinstance(v, float) for v in values)
    return None, dtypes.DEFAULT_FLOAT if floating else dtypes.int64


def _arange_shape(**attrs: Any) -> tuple[int, ...]:
    out = _arange_dtype((), attrs)[1]
    return (_arange_length(attrs["start"], attrs["end"], attrs["step"], out),)


defop("arange", _arange, inputs=(),
      attrs=(AttrSpec("start", "scalar", required=True), AttrSpec("end", "optional_scalar"),
             AttrSpec("step", "scalar", 1), _DTYPE),
      dtype=_arange_dtype, out_shape=_arange_shape, method=False,
      doc="values from start (0 without end) to end, by step; int64 unless a bound is a float",
      # the float64 fused multiply-add's exact emulation keeps ~6 arrays of the result's size
      out_bound=temporaries(_arange_shape, result_bytes=64))


def _linspace(start: Any, end: Any, steps: int, dtype: Any = None) -> Any:
    # torch's kernel: from both ends toward the middle, so the last value is exactly `end`.
    np_dtype = _np_dtype(dtype)
    if steps == 1:
        return np.asarray([start], dtype=np.float64).astype(np_dtype)
    i = np.arange(steps)
    half = steps // 2
    if np_dtype not in (np.float32, np.float64):  # integers: the step in double, then truncated
        step = (end - start) / (steps - 1)
        f = i.astype(np.float64)
        return np.where(i < half, start + f * step, end - (steps - 1 - f) * step).astype(np_dtype)
    # floats: start, end and the step in the result's dtype, and each value one fused
    # multiply-add (start + step * i, or end - step * (steps - 1 - i)) as torch's build computes
    # them (bit for bit with torch 2.13 on CPU, tests/test_engine_random_torch.py)
    t = np_dtype.type
    lo_end, hi_end = t(start), t(end)
    step = t((hi_end - lo_end) / t(steps - 1))
    low = i < half
    out = np.empty(steps, np_dtype)
    fma = _dist.fma32 if np_dtype == np.float32 else _dist.fma64
    out[low] = fma(i[low].astype(np_dtype), step, lo_end)
    out[~low] = fma((steps - 1 - i[~low]).astype(np_dtype), -step, hi_end)
    return out


def _linspace_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if attrs["steps"] < 0:
        raise errors.InvalidArgumentError("number of steps must be non-negative")
    return None, attrs.get("dtype") or dtypes.DEFAULT_FLOAT


defop("linspace", _linspace, inputs=(),
      attrs=(AttrSpec("start", "scalar", required=True), AttrSpec("end", "scalar", required=True),
             AttrSpec("steps", "int", required=True), _DTYPE),
      dtype=_linspace_dtype, out_shape=lambda **a: (a["steps"],), method=False,
      doc="steps evenly spaced values from start to end (float32 unless dtype)",
      # the float64 fused multiply-add's exact emulation keeps ~10 arrays of the result's size
      out_bound=temporaries(lambda **a: (a["steps"],), result_bytes=160))


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
# Every value is torch's for the same seed and calls: engine/distributions.py. The in-place ones
# (`uniform_`, `normal_`, `bernoulli_`, `random_`, `exponential_`) are ops whose input is the
# target: they read its shape, dtype and layout, and `_inplace` writes the result into it.


def _strides(x: Any) -> Any:
    """The target's strides, for torch's fill order, or None when it is C-contiguous."""
    return None if x.flags.c_contiguous else x.strides


def _like_strides(x: Any) -> Any:
    """The strides torch's `empty_like` gives a *_like result (`like_strides`: the input's when
    it is dense, e.g. a transpose, else its stride order), or None for C order."""
    if x.ndim < 2 or x.flags.c_contiguous:
        return None
    strides = like_strides(x.shape, strided.element_strides(x))
    return None if strides == contiguous_strides(x.shape) else strides


def _like_draw(draw: Any) -> Any:
    """The forward of a *_like op: `draw(gen, shape, np_dtype, contiguous, **attrs)` laid out
    as torch's empty_like lays out the result."""
    def forward(x: Any, dtype: Any = None, generator: Any = None,
                memory_format: str = "preserve", **attrs: Any) -> Any:
        refusal = rank_error(memory_format, np.ndim(x))
        if refusal is not None:
            raise errors.InvalidArgumentError(refusal)
        gen = _random.resolve(generator)
        d = dtype.np if dtype is not None else x.dtype
        if memory_format == "preserve":
            strides = _like_strides(x)
        elif memory_format == "contiguous":
            strides = None
        else:  # (fill_order reads the order alone: strides in elements will do)
            strides = format_strides(memory_format, x.shape)
        return _dist.fill(x.shape, strides, lambda shape: draw(
            gen, shape, d, strides is None, **attrs))
    return forward


def _rand(size: Sequence[int], dtype: Any = None, generator: Any = None) -> Any:
    return _dist.uniform(_random.resolve(generator), tuple(size), _np_dtype(dtype))


def _randn(size: Sequence[int], dtype: Any = None, generator: Any = None) -> Any:
    return _dist.normal(_random.resolve(generator), tuple(size), _np_dtype(dtype))


def _randint_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if args:  # randint_like
        d = attrs.get("dtype") or args[0].dtype
    else:
        _check_size(attrs["size"])
        d = attrs.get("dtype") or dtypes.int64
    low, high = attrs["low"], attrs["high"]
    if low >= high:
        raise errors.InvalidArgumentError(
            f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    _check_int_range(low, high, d)
    return None, d


_INT_RANGE = {"int32": (-(2 ** 31), 2 ** 31 - 1), "int64": (-(2 ** 63), 2 ** 63 - 1),
              "bool": (0, 1), "uint8": (0, 255), "int8": (-128, 127),
              "int16": (-(2 ** 15), 2 ** 15 - 1)}
_C_TYPE = {"int32": "int", "int64": "long", "bool": "bool", "float32": "float",
           "float64": "double", "uint8": "unsigned char", "int8": "signed char", "int16": "short"}


def _check_int_range(low: int, high: int, d: DType) -> None:
    """torch's bounds check of random_(from, to) against the result dtype."""
    lo, hi = _INT_RANGE.get(d.name, (-(2 ** 63), 2 ** 63))
    if not lo <= low <= hi:
        raise errors.InvalidArgumentError(f"from is out of bounds for {_C_TYPE[d.name]}")
    if not lo <= high - 1 <= hi:
        raise errors.InvalidArgumentError(f"to - 1 is out of bounds for {_C_TYPE[d.name]}")


def _randint(low: int, high: int, size: Sequence[int], dtype: Any = None,
             generator: Any = None) -> Any:
    return _dist.randint(_random.resolve(generator), tuple(size), low, high,
                         _np_dtype(dtype, dtypes.int64))


def _randperm_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    n = attrs["n"]
    if n < 0:
        raise errors.InvalidArgumentError(
            f"Trying to create tensor with negative dimension {n}: [{n}]")
    if n >= (2 ** 32 - 1) // 20:
        raise errors.InvalidArgumentError(
            f"randperm: n={n} is beyond what gradserve reproduces (n < {(2 ** 32 - 1) // 20})")
    return None, attrs.get("dtype") or dtypes.int64


def _uniform(x: Any, generator: Any = None, **kw: Any) -> Any:
    low, high = kw.get("from", 0.0), kw.get("to", 1.0)
    gen = _random.resolve(generator)
    return _dist.fill(x.shape, _strides(x),
                      lambda shape: _dist.uniform(gen, shape, x.dtype, low, high))


def _uniform_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    low, high = attrs["from"], attrs["to"]
    d = attrs.get("dtype") or (args[0].dtype if args and isinstance(args[0], Tensor) else None)
    if d is not None and d.category == 2:
        big = float(np.finfo(d.np).max)
        for what, v in (("from", low), ("to", high)):
            if not -big <= v <= big:
                raise errors.InvalidArgumentError(
                    f"{what} is out of bounds for {_C_TYPE[d.name]}")
    if low > high:
        raise errors.InvalidArgumentError(
            f"uniform_ expects to return a [from, to) range, but found from={low:g} > to="
            f"{high:g}")
    return _like("check_uniform_bounds")(args, {})


def _normal_fill(x: Any, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Any:
    gen = _random.resolve(generator)
    strides = _strides(x)
    return _dist.fill(x.shape, strides, lambda shape: _dist.normal(
        gen, shape, x.dtype, mean, std, contiguous=strides is None))


def _check_std(std: float) -> None:
    if not std >= 0:  # nan too
        raise errors.InvalidArgumentError(f"normal expects std >= 0.0, but found std {std:g}")


def _normal_fill_dtype(args: Sequence[Any],
                       attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    _check_std(attrs["std"])
    return _like("normal_kernel_cpu")(args, {})


def _as_size(size: Any) -> tuple[int, ...]:
    return (size,) if isinstance(size, int) else tuple(size or ())


def _normal(mean: Any, std: Any, size: Sequence[int] | None = None, dtype: Any = None,
            generator: Any = None) -> Any:
    """torch.normal's four overloads, as torch composes them (normal_out_impl)."""
    gen = _random.resolve(generator)
    m_t, s_t = isinstance(mean, np.ndarray), isinstance(std, np.ndarray)
    if not m_t and not s_t:
        return _dist.normal(gen, _as_size(size), _np_dtype(dtype), mean, std)
    if m_t and not s_t:  # normal_(0, std) on mean's shape, then + mean
        out = _dist.normal(gen, mean.shape, mean.dtype, 0.0, std)
        return (out + mean).astype(mean.dtype, copy=False)
    like = mean if m_t else std
    shape = broadcast_shapes(mean.shape, std.shape) if m_t else std.shape
    out = _dist.normal(gen, shape, like.dtype)
    out = (out * std).astype(like.dtype, copy=False)
    return (out + (mean if m_t else like.dtype.type(mean))).astype(like.dtype, copy=False)


def _normal_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    mean, std = args
    if isinstance(std, Tensor):
        if std.numel() and (std._data < 0).any():
            raise errors.InvalidArgumentError("normal expects all elements of std >= 0.0")
    else:
        _check_std(float(std))
    if isinstance(mean, Tensor):
        d = mean.dtype
    elif isinstance(std, Tensor):
        d = std.dtype
    else:
        if attrs.get("size") is None:
            raise errors.InvalidTypeError(
                "normal() received an invalid combination of arguments - got (float, float), "
                "but expected a size for two numbers: normal(mean, std, size)")
        _check_size(_as_size(attrs["size"]))
        d = attrs.get("dtype") or dtypes.float32
    if d.category != 2:
        raise errors.InvalidArgumentError(f'"normal_kernel_cpu" not implemented for '
                                          f"'{_type_word(d)}'")
    return None, d


def _normal_shape(mean: Any, std: Any, size: Any = None, **attrs: Any) -> tuple[int, ...]:
    shapes = [tuple(np.shape(a)) for a in (mean, std) if isinstance(a, Tensor)]
    if not shapes:
        return _as_size(size)
    return tuple(broadcast_shapes(*shapes))


def _bernoulli(x: Any, p: Any = None, generator: Any = None) -> Any:
    gen = _random.resolve(generator)
    if p is None or isinstance(p, np.ndarray):
        probs = x if p is None else np.broadcast_to(p, x.shape)
        perm = _dist.fill_order(x.shape, _strides(x))
        if perm is None:
            return _dist.bernoulli_tensor(gen, probs, x.dtype)
        out = _dist.bernoulli_tensor(gen, probs.transpose(perm), x.dtype)
        return out.transpose(np.argsort(perm))
    return _dist.fill(x.shape, _strides(x),
                      lambda shape: _dist.bernoulli_scalar(gen, shape, float(p), x.dtype))


def _bernoulli_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    x, p = args
    if p is None or isinstance(p, Tensor):
        probs = x if p is None else p
        if probs.dtype.category != 2:
            raise errors.InvalidArgumentError(
                f'"bernoulli_tensor_cpu_p_" not implemented for \'{_type_word(probs.dtype)}\'')
        data = probs._data
        if np.size(data) and ((data < 0) | (data > 1) | np.isnan(data)).any():
            raise errors.InvalidArgumentError(
                "Expected p_in >= 0 && p_in <= 1 to be true, but got false.  (Could this error "
                "message be improved?  If so, please report an enhancement request to PyTorch.)")
    elif not 0 <= float(p) <= 1:
        raise errors.InvalidArgumentError(
            f"bernoulli_ expects p to be in [0, 1], but got p={float(p):g}")
    return None, x.dtype


def _random_fill(x: Any, low: int | None = None, high: int | None = None,
                 generator: Any = None) -> Any:
    gen = _random.resolve(generator)
    if low is None and high is None:
        return _dist.fill(x.shape, _strides(x), lambda shape: _dist.random_full(gen, shape,
                                                                                x.dtype))
    if high is None:  # random_(to)
        low, high = 0, low
    return _dist.fill(x.shape, _strides(x), lambda shape: _dist.randint(
        gen, shape, int(low), int(high), x.dtype))  # type: ignore[arg-type]


def _random_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    low, high = attrs.get("low"), attrs.get("high")
    if low is not None and high is None:
        low, high = 0, low
    if low is not None and high is not None:
        if low >= high:
            raise errors.InvalidArgumentError(
                f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
        _check_int_range(low, high, args[0].dtype)
    return None, args[0].dtype


def _geometric(x: Any, p: float, generator: Any = None) -> Any:
    gen = _random.resolve(generator)
    return _dist.fill(x.shape, _strides(x), lambda shape: _dist.geometric(gen, shape, p, x.dtype))


def _geometric_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    p = attrs["p"]
    if not 0 < p < 1:
        raise errors.InvalidArgumentError(
            f"geometric_ expects p to be in (0, 1), but got p={p:g}")
    if args[0].dtype.name == "bool":
        raise errors.NotImplementedFunctionError('"geometric_cpu" not implemented for \'Bool\'')
    return None, args[0].dtype


def _cauchy(x: Any, median: float = 0.0, sigma: float = 1.0, generator: Any = None) -> Any:
    gen = _random.resolve(generator)
    return _dist.fill(x.shape, _strides(x),
                      lambda shape: _dist.cauchy(gen, shape, median, sigma, x.dtype))


def _cauchy_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if not attrs["sigma"] > 0:
        raise errors.InvalidArgumentError(
            f"cauchy_ expects sigma > 0.0, but found sigma={attrs['sigma']:g}")
    d = args[0].dtype
    if d.category != 2:
        raise errors.InvalidArgumentError(
            "Cauchy distribution is a continuous probability distribution. dtype must be a "
            "floating point but you specified "
            + {"int64": "long int", "int32": "int", "bool": "bool", "uint8": "unsigned char",
               "int8": "signed char", "int16": "short int"}[d.name])
    return None, d


def _log_normal(x: Any, mean: float = 1.0, std: float = 2.0, generator: Any = None) -> Any:
    gen = _random.resolve(generator)
    return _dist.fill(x.shape, _strides(x),
                      lambda shape: _dist.log_normal(gen, shape, mean, std, x.dtype))


def _log_normal_dtype(args: Sequence[Any],
                      attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if not attrs["std"] > 0:
        raise errors.InvalidArgumentError(
            f"log_normal_ expects std > 0.0, but found std={attrs['std']:g}")
    d = args[0].dtype
    if d.category != 2:
        raise errors.NotImplementedFunctionError(
            f'"log_normal_cpu" not implemented for \'{_type_word(d)}\'')
    return None, d


def _multinomial(x: Any, num_samples: int, replacement: bool = False,
                 generator: Any = None) -> Any:
    gen = _random.resolve(generator)
    if x.size == 0:
        return np.zeros((*x.shape[:-1], num_samples), np.int64)
    try:
        return _dist.multinomial(gen, np.ascontiguousarray(x), num_samples, replacement)
    except ValueError as exc:  # a row found invalid while drawing (with replacement)
        raise errors.InvalidArgumentError(str(exc)) from None


def _multinomial_dtype(args: Sequence[Any],
                       attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """torch's checks, in its order; without replacement (or for one sample) the values too,
    before anything is drawn."""
    x = args[0]
    n, replacement = attrs["num_samples"], attrs.get("replacement", False)
    if not 0 < x.ndim <= 2:
        raise errors.InvalidArgumentError("prob_dist must be 1 or 2 dim")
    if x.dtype.category != 2:
        raise errors.InvalidArgumentError(
            f"multinomial only supports floating-point dtypes for input, got: "
            f"{_type_word(x.dtype)}")
    if n <= 0:
        raise errors.InvalidArgumentError("cannot sample n_sample <= 0 samples")
    if not replacement and n > x.shape[-1]:
        raise errors.InvalidArgumentError(
            "cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    if x.shape[-1] > 2 ** 24:
        raise errors.InvalidArgumentError("number of categories cannot exceed 2^24")
    data = x._data
    if (not replacement or n == 1) and data.size:
        if not (data.max() < np.inf and data.min() >= 0):
            raise errors.InvalidArgumentError(
                "probability tensor contains either `inf`, `nan` or element < 0")
        if (data.sum(axis=-1) == 0).any():
            raise errors.InvalidArgumentError(
                "invalid multinomial distribution (sum of probabilities <= 0)")
    return None, dtypes.int64


def _multinomial_shape(x: Any, num_samples: int, **attrs: Any) -> tuple[int, ...]:
    return (*tuple(x.shape)[:-1], num_samples)


_MULTINOMIAL_TEMPORARIES = temporaries(_multinomial_shape, result_bytes=16, input_bytes=32)


def _multinomial_bound(args: Sequence[Any], attrs: Mapping[str, Any],
                       out_dtype: DType) -> limits.Bound:
    """The result and temporaries; without replacement (more than one sample) the work of
    sorting every row whole, with it a binary search of each row's cumulative sums per sample
    (`distributions.multinomial`)."""
    bound = _MULTINOMIAL_TEMPORARIES(args, attrs, out_dtype)
    x = args[0]
    if not x.ndim or attrs["num_samples"] == 1:
        return bound
    if not attrs.get("replacement", False):
        return limits.sort_work(bound, limits.numel(x.shape), x.shape[-1])
    samples = limits.numel(x.shape[:-1]) * max(attrs["num_samples"], 0)
    search = limits.sort_work(bound, samples, x.shape[-1])
    # a row past the caches makes every step of every search a cache miss: 2**24 samples in
    # 2**24 categories took 30 s of CPU in one numpy searchsorted (~70 ns a step)
    return search if x.shape[-1] <= _CACHED_CATEGORIES else search._replace(
        work=search.work * _MISS_WORK)


# Categories whose float64 cumulative sums stay in a core's cache (256 KiB), and what a search
# step costs beyond them against one within (~70 ns against under 10 ns, measured).
_CACHED_CATEGORIES = 1 << 15
_MISS_WORK = 8


def _exponential(x: Any, lambd: float = 1.0, generator: Any = None) -> Any:
    gen = _random.resolve(generator)
    return _dist.fill(x.shape, _strides(x),
                      lambda shape: _dist.exponential(gen, shape, lambd, x.dtype))


def _exponential_dtype(args: Sequence[Any],
                       attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if not attrs["lambd"] > 0:
        raise errors.InvalidArgumentError(
            f"exponential_ expects lambda > 0.0, but found lambda={attrs['lambd']:g}")
    return _like("exponential_cpu")(args, {})


def _no_grad(ns: Any, g: Any, out: Any, *args: Any, **attrs: Any) -> Any:
    """torch's derivative of a random draw with respect to its parameters or target: zero."""
    return g * 0


@names_backward("NormalBackward1", "NormalBackward2", "NormalBackward3")
def _normal_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    mean_t = bool(args) and isinstance(args[0], Tensor)
    std_t = len(args) > 1 and isinstance(args[1], Tensor)
    return "NormalBackward3" if mean_t and std_t else (
        "NormalBackward1" if mean_t else "NormalBackward2")


@names_backward("BernoulliBackward0", "BernoulliBackward1", "BernoulliBackward2")
def _bernoulli_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    # torch.bernoulli(x): 0; a tensor p (x.bernoulli_(p)): 1; a number p: 2 (x.bernoulli_(0.5);
    # torch.bernoulli(x, 0.5) has no derivative in torch 2.13, its grad_fn is NotImplemented)
    p = args[1] if len(args) > 1 else None
    return "BernoulliBackward0" if p is None else (
        "BernoulliBackward1" if isinstance(p, Tensor) else "BernoulliBackward2")


_FLOAT = "float"
_RANDOM = [
    defop("rand", _rand, inputs=(), attrs=(_SIZE, _DTYPE),
          dtype=_sized(None, "check_uniform_bounds"), method=False,
          doc="uniform random values in [0, 1) (float32 unless dtype)",
          out_bound=temporaries(_size_shape, result_bytes=24)),
    defop("randn", _randn, inputs=(), attrs=(_SIZE, _DTYPE),
          dtype=_sized(None, "normal_kernel_cpu"), method=False,
          doc="standard normal random values (float32 unless dtype)",
          out_bound=temporaries(_size_shape, result_bytes=160)),
    defop("randint", _randint, inputs=(),
          attrs=(AttrSpec("low", "int", required=True), AttrSpec("high", "int", required=True),
                 _SIZE, _DTYPE),
          dtype=_randint_dtype, method=False,
          doc="uniform random integers in [low, high) (int64 unless dtype)",
          out_bound=temporaries(_size_shape, result_bytes=40)),
    defop("randperm", lambda n, dtype=None, generator=None: _dist.randperm(
          _random.resolve(generator), n, _np_dtype(dtype, dtypes.int64)), inputs=(),
          attrs=(AttrSpec("n", "int", required=True), _DTYPE), dtype=_randperm_dtype,
          method=False, doc="a random permutation of 0..n-1 (int64 unless dtype)",
          out_bound=temporaries(lambda **a: (a["n"],), result_bytes=120)),
    defop("rand_like", _like_draw(lambda g, shape, d, contiguous: _dist.uniform(g, shape, d)),
          None, attrs=(_DTYPE, _MEMORY_FORMAT), dtype=_like("check_uniform_bounds"),
          method=False,
          doc="uniform random values in [0, 1) with input's shape (and dtype unless dtype)",
          out_bound=temporaries(_input_shape, result_bytes=24)),
    defop("randn_like", _like_draw(lambda g, shape, d, contiguous: _dist.normal(
          g, shape, d, contiguous=contiguous)), None, attrs=(_DTYPE, _MEMORY_FORMAT),
          dtype=_like("normal_kernel_cpu"), method=False,
          doc="standard normal random values with input's shape (and dtype unless dtype)",
          out_bound=temporaries(_input_shape, result_bytes=160)),
    defop("randint_like", _like_draw(lambda g, shape, d, contiguous, low, high: _dist.randint(
          g, shape, low, high, d)), None,
          attrs=(AttrSpec("low", "int", required=True), AttrSpec("high", "int", required=True),
                 _DTYPE, _MEMORY_FORMAT),
          dtype=_randint_dtype, method=False,
          doc="uniform random integers in [low, high) with input's shape (and dtype unless "
              "dtype)", out_bound=temporaries(_input_shape, result_bytes=40)),
    defop("normal_sample", _normal, _no_grad, _no_grad, inputs=("mean", "std"),
          attrs=(AttrSpec("size", "dims"), _DTYPE), dtype=_normal_dtype, method=False,
          backward=_normal_name, saves=("", ""),
          doc="torch.normal: normal values of mean and std (tensors or numbers; a size for two "
              "numbers)", out_bound=temporaries(_normal_shape, result_bytes=176)),
    defop("bernoulli", _bernoulli, _no_grad, _no_grad, inputs=("input", "p?"),
          dtype=_bernoulli_dtype, backward=_bernoulli_name, saves=("", ""),
          inplace=True, doc="0/1 draws: probability p (a number or tensor), else input's values",
          out_bound=temporaries(lambda x, p=None, **a: tuple(x.shape), result_bytes=48)),
    defop("uniform", _uniform, _no_grad, backward="UniformBackward0", saves="",
          attrs=(AttrSpec("from", _FLOAT, 0.0), AttrSpec("to", _FLOAT, 1.0)),
          dtype=_uniform_dtype, inplace=True, method=False,
          doc="uniform values in [from, to) with input's shape and dtype (Tensor.uniform_)",
          out_bound=temporaries(_input_shape, result_bytes=48)),
    defop("normal", _normal_fill, _no_grad, backward="NormalBackward0", saves="",
          attrs=(AttrSpec("mean", _FLOAT, 0.0), AttrSpec("std", _FLOAT, 1.0)),
          dtype=_normal_fill_dtype, inplace=True, method=False,
          doc="normal values of mean and std with input's shape and dtype (Tensor.normal_)",
          out_bound=temporaries(_input_shape, result_bytes=176)),
    defop("random", _random_fill, _no_grad, backward="RandomBackward0", saves="",
          attrs=(AttrSpec("low", "optional_int"), AttrSpec("high", "optional_int")),
          dtype=_random_dtype, inplace=True, method=False,
          doc="random integers: random_(), random_(to), random_(from, to) (Tensor.random_)",
          out_bound=temporaries(_input_shape, result_bytes=40)),
    defop("exponential", _exponential, _no_grad, backward="ExponentialBackward0", saves="",
          attrs=(AttrSpec("lambd", _FLOAT, 1.0),),
          dtype=_exponential_dtype, inplace=True, method=False,
          doc="exponential values of rate lambd with input's shape and dtype "
              "(Tensor.exponential_)", out_bound=temporaries(_input_shape, result_bytes=40)),
    defop("geometric", _geometric, _no_grad, backward="GeometricBackward0", saves="",
          attrs=(AttrSpec("p", _FLOAT, required=True),), dtype=_geometric_dtype, inplace=True,
          method=False, doc="geometric values of success probability p with input's shape and "
          "dtype (Tensor.geometric_)", out_bound=temporaries(_input_shape, result_bytes=40)),
    defop("cauchy", _cauchy, _no_grad, backward="CauchyBackward0", saves="",
          attrs=(AttrSpec("median", _FLOAT, 0.0), AttrSpec("sigma", _FLOAT, 1.0)),
          dtype=_cauchy_dtype, inplace=True, method=False,
          doc="Cauchy values of median and sigma with input's shape and dtype (Tensor.cauchy_)",
          out_bound=temporaries(_input_shape, result_bytes=56)),
    defop("log_normal", _log_normal, _no_grad, backward="LogNormalBackward0", saves="",
          attrs=(AttrSpec("mean", _FLOAT, 1.0), AttrSpec("std", _FLOAT, 2.0)),
          dtype=_log_normal_dtype, inplace=True, method=False,
          doc="log-normal values (exp of normal(mean, std)) with input's shape and dtype "
              "(Tensor.log_normal_)", out_bound=temporaries(_input_shape, result_bytes=176)),
    defop("multinomial", _multinomial, None,
          attrs=(AttrSpec("num_samples", "int", required=True),
                 AttrSpec("replacement", "bool", False)),
          dtype=_multinomial_dtype,
          doc="indices drawn from each row's categories with the row's weights (torch."
              "multinomial)",
          out_bound=_multinomial_bound),
]
for _op in _RANDOM:
    _op.random = True  # type: ignore[attr-defined]  # the server passes the session's generator


# --- Tensor.bernoulli_ (the creation functions' spellings: gradserve.surface.creation) --------


@public("bernoulli_", function=False)
def bernoulli_(self: Tensor, p: Any = 0.5, *, generator: Any = None) -> Tensor:
    """Tensor.bernoulli_(p=0.5, *, generator=None): p a number or a tensor of probabilities."""
    if generator is not None:
        _random.resolve(generator, "bernoulli_")
    return apply_inplace("bernoulli", self, (p,), None, generator)


# --- conversions: Tensor.to(dtype), .float(), ... (one op, `to_dtype`) ---------------------------

_TENSOR_TYPES = {d.torch_tensor_name: d for d in dtypes.DTYPES.values()}


def _convert(t: Tensor, dtype: DType, copy: bool = False, memory_format: Any = None) -> Tensor:
    fmt = attr_name(memory_format, "to", errors.InvalidTypeError)
    if t.dtype is dtype and not copy and keeps_layout(fmt, t._data.shape, t.stride):
        return t  # torch returns the tensor itself
    return run(OPS["to_dtype"], (t,), {"dtype": dtype, "memory_format": fmt})


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
    return _convert(self, target, copy, kwargs.get("memory_format"))


def _fixed_conversion(name: str, dtype: DType) -> None:
    def method(self: Tensor) -> Tensor:
        return _convert(self, dtype)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Tensor.{name}(): self as {dtype} (self itself when already {dtype})."
    public(name, function=False)(method)


for _name, _d in (("float", dtypes.float32), ("double", dtypes.float64), ("int", dtypes.int32),
                  ("long", dtypes.int64), ("bool", dtypes.bool_), ("byte", dtypes.uint8),
                  ("char", dtypes.int8), ("short", dtypes.int16)):
    _fixed_conversion(_name, _d)


@public("type", function=False)
def type_(self: Tensor, dtype: Any = None, non_blocking: bool = False) -> Any:
    """Tensor.type(): 'torch.FloatTensor'...; type(dtype or 'torch.DoubleTensor'): converted."""
    if dtype is None:
        return self.dtype.torch_tensor_name
    name = legacy_dtype_name(dtype)
    return _convert(self, dtypes.by_name(name) if name else _as_dtype(dtype, "type()"))
