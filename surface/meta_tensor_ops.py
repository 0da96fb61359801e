"""`gradserve.surface.meta` rules for the tensor ops added with 0.2 (cumprod, roll, the
diagonals, unfold, nan_to_num, glu, kron, baddbmm/addbmm, index_add): each result's shape, dtype and
requires_grad from the inputs' descriptions, `_Inexact` (no answer) wherever the engine might
refuse the call or the rule does not model it. Ops whose result size depends on values
(repeat_interleave, unique) have no rule: the server describes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .meta_base import (
    _BOOL,
    _FLOAT,
    _FLOAT32,
    _FLOAT64,
    _INT32,
    _INT64,
    _PROMOTE_TABLE,
    Meta,
    _combine,
    _dims,
    _float,
    _Inexact,
    _int,
    _ints,
    _known,
    _meta,
    _one,
    _rule,
    _scalar,
    _tensor,
    _wrap,
)


@_rule("roll")
def _roll(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("shifts", "dims")))
    shifts, dims = _dims(attrs.get("shifts")), _dims(attrs.get("dims"))
    if shifts is None:
        raise _Inexact  # required
    n_shifts = 1 if type(shifts) is int else len(shifts)  # type: ignore[arg-type]
    axes = () if dims is None else (dims,) if type(dims) is int else dims
    if not n_shifts or (n_shifts != len(axes) and not (not axes and n_shifts == 1)):  # type: ignore[arg-type]
        raise _Inexact
    if axes and not shape:
        raise _Inexact
    for d in axes:  # type: ignore[union-attr]
        _wrap(d, len(shape))
    return _meta(shape, rank, grad and rg)


def _diagonal_axes(ndim: int, attrs: Mapping[str, Any], dim1: int, dim2: int) -> tuple[int, int]:
    a1, a2 = _wrap(_int(attrs.get("dim1", dim1)), ndim), _wrap(_int(attrs.get("dim2", dim2)), ndim)
    if a1 == a2 or ndim == 0:
        raise _Inexact
    return a1, a2


@_rule("diagonal", "diagonal_copy")
def _diagonal(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("offset", "dim1", "dim2")))
    a1, a2 = _diagonal_axes(len(shape), attrs, 0, 1)
    offset = _int(attrs.get("offset", 0))
    n1, n2 = shape[a1], shape[a2]
    n = max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))
    rest = tuple(s for i, s in enumerate(shape) if i not in (a1, a2))
    return _meta((*rest, n), rank, grad and rg)


@_rule("unfold")
def _unfold(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("dimension", "size", "step")))
    return _meta(_unfold_shape(shape, attrs, "dimension"), rank, grad and rg)


@_rule("unfold_backward")
def _unfold_backward(inputs: Sequence[Any], attrs: Mapping[str, Any],
                     grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("input_sizes", "dim", "size", "step")))
    given = attrs.get("input_sizes")
    if not isinstance(given, (tuple, list)):
        raise _Inexact
    sizes = tuple(_ints(given))
    if any(n < 0 for n in sizes):
        raise _Inexact
    if _unfold_shape(sizes, attrs, "dim") != tuple(shape):
        raise _Inexact  # the engine refuses a gradient of another shape
    return _meta(sizes, rank, grad and rg)


def _unfold_shape(shape: Sequence[int], attrs: Mapping[str, Any], dim: str) -> tuple[int, ...]:
    """unfold's result shape (engine/ops_shape.py `unfold_shape`), `_Inexact` where the engine
    refuses the call."""
    d = _wrap(_int(attrs.get(dim)), len(shape))
    size, step = _int(attrs.get("size")), _int(attrs.get("step"))
    length = shape[d] if shape else 1
    if not 0 <= size <= length or step <= 0:
        raise _Inexact
    if not shape:
        return (size,)
    return (*shape[:d], (length - size) // step + 1, *shape[d + 1:], size)


@_rule("im2col")
def _im2col(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(_BLOCK_ATTRS))
    kernel, dil, pad, st = (_block_pair(attrs, k) for k in _BLOCK_ATTRS)
    if len(shape) not in (3, 4) or 0 in shape[-3:] or rank not in _FLOAT_RANKS:
        raise _Inexact
    bh, bw = (_sliding_blocks(shape[-2 + d], kernel[d], dil[d], pad[d], st[d]) for d in (0, 1))
    if bh < 1 or bw < 1:
        raise _Inexact
    rows = shape[-3] * kernel[0] * kernel[1]
    return _meta((*shape[:-3], rows, bh * bw), rank, grad and rg)


@_rule("col2im")
def _col2im(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("output_size", *_BLOCK_ATTRS)))
    out = _block_pair(attrs, "output_size")
    kernel, dil, pad, st = (_block_pair(attrs, k) for k in _BLOCK_ATTRS)
    if len(shape) not in (2, 3) or 0 in shape[-2:] or rank not in _FLOAT_RANKS:
        raise _Inexact
    per = kernel[0] * kernel[1]
    bh, bw = (_sliding_blocks(out[d], kernel[d], dil[d], pad[d], st[d]) for d in (0, 1))
    if shape[-2] % per or bh < 1 or bw < 1 or shape[-1] != bh * bw:
        raise _Inexact
    return _meta((*shape[:-2], shape[-2] // per, *out), rank, grad and rg)


_BLOCK_ATTRS = ("kernel_size", "dilation", "padding", "stride")
_FLOAT_RANKS = frozenset((_FLOAT32, _FLOAT64))


def _block_pair(attrs: Mapping[str, Any], name: str) -> tuple[int, int]:
    """An im2col/col2im attribute's two ints, `_Inexact` where the engine refuses it."""
    value = _ints(attrs.get(name))
    if len(value) != 2:
        raise _Inexact
    low = 0 if name == "padding" else 1
    if name != "output_size" and (value[0] < low or value[1] < low):
        raise _Inexact
    return value[0], value[1]


def _sliding_blocks(size: int, kernel: int, dilation: int, padding: int, stride: int) -> int:
    return (size + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1


@_rule("reflection_pad", "replication_pad")
def _mode_pad(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("padding",)))
    if rank == _BOOL:
        raise _Inexact  # refused
    return _meta(_mode_pad_shape(shape, _ints(attrs.get("padding"))), rank, grad and rg)


@_rule("reflection_pad_backward", "replication_pad_backward")
def _mode_pad_backward(inputs: Sequence[Any], attrs: Mapping[str, Any],
                       grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("input_size", "padding")))
    given = attrs.get("input_size")
    if not isinstance(given, (tuple, list)):
        raise _Inexact
    size = tuple(_ints(given))
    if _mode_pad_shape(size, _ints(attrs.get("padding"))) != tuple(shape):
        raise _Inexact
    return _meta(size, rank, grad and rg)


def _mode_pad_shape(shape: Sequence[int], padding: Sequence[int]) -> tuple[int, ...]:
    """A reflection or replication padding's result, `_Inexact` wherever the engine might refuse
    it (engine/ops_pad.py `pad_shape`: a pad past a reflected dim is left to the server)."""
    k = len(padding) // 2
    if len(padding) not in (2, 4, 6) or len(shape) not in (k + 1, k + 2) or (
            0 in shape[len(shape) - k - 1:]):
        raise _Inexact
    out = list(shape)
    for d in range(k):
        lo, hi = padding[2 * d], padding[2 * d + 1]
        n = shape[len(shape) - 1 - d]
        if lo >= n or hi >= n or n + lo + hi < 1:
            raise _Inexact
        out[len(shape) - 1 - d] = n + lo + hi
    return tuple(out)


@_rule("diag_embed")
def _diag_embed(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("offset", "dim1", "dim2")))
    if not shape:
        raise _Inexact
    a1, a2 = _diagonal_axes(len(shape) + 1, attrs, -2, -1)
    n = shape[-1] + abs(_int(attrs.get("offset", 0)))
    rest = iter(shape[:-1])
    return _meta(tuple(n if i in (a1, a2) else next(rest) for i in range(len(shape) + 1)),
                 rank, grad and rg)


@_rule("nan_to_num")
def _nan_to_num(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("nan", "posinf", "neginf")))
    for k in ("nan", "posinf", "neginf"):
        if attrs.get(k) is not None:
            _float(attrs[k])
    return _meta(shape, rank, grad and rg)


@_rule("glu")
def _glu(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("dim",)))
    if rank < _FLOAT or not shape:
        raise _Inexact
    axis = _wrap(_int(attrs.get("dim", -1)), len(shape))
    if shape[axis] % 2:
        raise _Inexact
    return _meta((*shape[:axis], shape[axis] // 2, *shape[axis + 1:]), rank, grad and rg)


@_rule("kron")
def _kron(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs:
        raise _Inexact
    (sa, ra, ga), (sb, rb, gb) = _tensor(inputs[0]), _tensor(inputs[1])
    if ra == _BOOL or rb == _BOOL:
        raise _Inexact
    if bool(sa) == bool(sb):
        rank = _PROMOTE_TABLE[ra][rb]
    else:
        rank = _combine(ra if sa else rb, rb if sa else ra)
    n = max(len(sa), len(sb))
    pa, pb = (1,) * (n - len(sa)) + sa, (1,) * (n - len(sb)) + sb
    return _meta(tuple(x * y for x, y in zip(pa, pb)), rank, grad and (ga or gb))


def _fits(bias: tuple[int, ...], out: tuple[int, ...]) -> None:
    """`bias` expands to `out` (torch's expand rule), or `_Inexact`."""
    if len(bias) > len(out):
        raise _Inexact
    for b, o in zip(bias[::-1], out[::-1]):
        if b not in (1, o):
            raise _Inexact


def _batched_products(batched: bool) -> Any:
    """baddbmm's rule (batched) or addbmm's: three tensors of one floating dtype."""
    def rule(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
        if len(inputs) != 3:
            raise _Inexact
        _known(attrs, frozenset(("beta", "alpha")))
        for k in ("beta", "alpha"):
            if k in attrs:
                _scalar(attrs[k])
        (sb, rb, gb), (s1, r1, g1), (s2, r2, g2) = (_tensor(t) for t in inputs)
        if not rb == r1 == r2 or r1 == _BOOL or len(s1) != 3 or len(s2) != 3:
            raise _Inexact
        if s1[0] != s2[0] or s1[2] != s2[1]:
            raise _Inexact
        out = (s1[0], s1[1], s2[2]) if batched else (s1[1], s2[2])
        _fits(sb, out)
        return _meta(out, r1, grad and (gb or g1 or g2))
    return rule


_rule("baddbmm")(_batched_products(True))
_rule("addbmm")(_batched_products(False))


@_rule("index_add")
def _index_add(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3:
        raise _Inexact
    _known(attrs, frozenset(("dim", "alpha")))
    (sx, rx, gx), (si, ri, _), (ss, rs, gs) = (_tensor(t) for t in inputs)
    if ri not in (_INT32, _INT64) or len(si) > 1 or rs != rx or attrs.get("dim") is None:
        raise _Inexact
    alpha = _scalar(attrs.get("alpha", 1))
    if rx < _FLOAT and type(alpha) is float:
        raise _Inexact
    axis = _wrap(_int(attrs["dim"]), len(sx))
    if not (axis == 0 or axis < len(ss)):
        raise _Inexact
    count = ss[axis] if ss else 1
    if (si[0] if si else 1) != count:
        raise _Inexact
    rest, source_rest = list(sx), list(ss)
    if ss and rest:
        del rest[axis], source_rest[axis]
    if rest != source_rest:
        raise _Inexact
    return _meta(sx, rx, grad and (gx or gs))
