"""Linear algebra: matmul (and `@`), mm, bmm, dot, outer, einsum, with torch's shape errors.

The VJPs are written with these same ops; a transpose is the one-operand einsum `...ij->...ji`
(a numpy view, so the fast backward pays nothing for it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface.layout import broadcast_shapes
from gradserve.surface.messages import TYPE_WORDS

from . import dtypes, errors, gemm, limits
from .ops_elementwise import _broadcast_error
from .registry import (
    PROMOTE,
    AttrSpec,
    defop,
    names_backward,
    numel_of,
    shapes_only,
    temporaries,
)
from .tensor import Tensor

_TYPE_WORD = TYPE_WORDS
_SHORT = {"float32": "float", "float64": "double", "int32": "int", "int64": "long",
          "bool": "bool", "uint8": "unsigned char", "int8": "signed char", "int16": "short"}


def _mT(ns: Any, t: Any) -> Any:
    """The last two dims swapped."""
    return ns.einsum([t], equation="...ij->...ji")


def _column_major(t: Any) -> bool:
    """Whether a saved 2-D operand is laid out column-major (strides (1, rows) in elements):
    torch's `mm_mat1_backward`/`mm_mat2_backward` then compute its gradient transposed, e.g.
    `(g.T @ mat1).T` for a Linear's `weight.t()`, another BLAS call than `mat1.T @ g` and
    other float32 bits."""
    a = getattr(t, "_data", t)  # an engine Tensor's array, a saved array, or its `nodes._Meta`
    if len(a.shape) != 2:
        return False
    return tuple(a.strides) == (a.itemsize, a.shape[0] * a.itemsize)


def _mat1_grad(ns: Any, g: Any, x: Any, y: Any) -> Any:
    """torch's mm_mat1_backward (alpha applied by the caller)."""
    return ns.t(ns.mm(y, ns.t(g))) if _column_major(x) else ns.mm(g, ns.t(y))


def _mat2_grad(ns: Any, g: Any, x: Any, y: Any) -> Any:
    """torch's mm_mat2_backward (alpha applied by the caller)."""
    return ns.t(ns.mm(ns.t(g), x)) if _column_major(y) else ns.mm(ns.t(x), g)


def _same_dtype(message: Any) -> Any:
    """torch's mm/bmm/matmul/dot refuse mixed dtypes (no promotion)."""
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
        a, b = args
        if a.dtype is not b.dtype:
            raise errors.InvalidArgumentError(message(a.dtype.name, b.dtype.name))
        return None, a.dtype
    return rule


_MM_DTYPE = _same_dtype(lambda a, b: f"expected m1 and m2 to have the same dtype, but got: "
                                     f"{_SHORT[a]} != {_SHORT[b]}")

# --- shape checks (torch's messages) --------------------------------------------------------------


def _mm_check(a: Sequence[int], b: Sequence[int]) -> None:
    if a[1] != b[0]:
        raise errors.InvalidArgumentError(
            f"mat1 and mat2 shapes cannot be multiplied ({a[0]}x{a[1]} and {b[0]}x{b[1]})")


def _dot_check(a: Sequence[int], b: Sequence[int]) -> None:
    if a[0] != b[0]:
        raise errors.InvalidArgumentError(
            f"inconsistent tensor size, expected tensor [{a[0]}] and src [{b[0]}] to have the "
            f"same number of elements, but got {a[0]} and {b[0]} elements respectively")


def _bmm_check(a: Sequence[int], b: Sequence[int]) -> None:
    if b[0] != a[0] or b[1] != a[2]:
        raise errors.InvalidArgumentError(
            f"Expected size for first two dimensions of batch2 tensor to be: [{a[0]}, {a[2]}] "
            f"but got: [{b[0]}, {b[1]}].")


def _batch(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@shapes_only
def matmul_shape(x: Any, y: Any, **attrs: Any) -> tuple[int, ...]:
    """torch.matmul's result shape, with torch's error for each way the shapes can disagree."""
    a, b = tuple(x.shape), tuple(y.shape)
    if not a or not b:
        raise errors.InvalidArgumentError(
            f"both arguments to matmul need to be at least 1D, but they are {len(a)}D and "
            f"{len(b)}D")
    if len(a) == 1 and len(b) == 1:
        _dot_check(a, b)
        return ()
    if len(a) == 2 and len(b) == 1:
        if a[1] != b[0]:
            raise errors.InvalidArgumentError(
                f"size mismatch, got input ({a[0]}), mat ({a[0]}x{a[1]}), vec ({b[0]})")
        return (a[0],)
    if len(a) == 1 and len(b) == 2:
        _mm_check((1, a[0]), b)
        return (b[1],)
    if len(a) <= 2 and len(b) <= 2:
        _mm_check(a, b)
        return (a[0], b[1])
    if len(b) == 1:  # (..., n, k) @ (k,): folded into one matrix-vector product
        if a[-1] != b[0]:
            rows = _batch(a[:-1])
            raise errors.InvalidArgumentError(
                f"size mismatch, got input ({rows}), mat ({rows}x{a[-1]}), vec ({b[0]})")
        return a[:-1]
    if len(a) >= 3 and len(b) == 2:  # folded into one mm
        _mm_check((_batch(a[:-1]), a[-1]), b)
        return (*a[:-1], b[1])
    # batched: broadcast the batch dims, then bmm over their product
    rows = a[-2] if len(a) >= 2 else 1
    k1 = a[-1]
    k2, cols = (b[-2], b[-1])
    try:
        batch = tuple(broadcast_shapes(a[:-2], b[:-2]))
    except ValueError:
        raise _broadcast_error([a[:-2], b[:-2]]) from None
    if k1 != k2:
        n = _batch(batch)
        raise errors.InvalidArgumentError(
            f"Expected size for first two dimensions of batch2 tensor to be: [{n}, {k1}] "
            f"but got: [{n}, {k2}].")
    return (*batch, rows, cols) if len(a) >= 2 else (*batch, cols)


def _product(x: Any, y: Any) -> Any:
    """x @ y for 2-D x and y: torch's own MKL call when MKL is loaded, else torch's MKL order
    where `gemm` knows it, else numpy's."""
    out = gemm.mkl_addmm(x, y, None)
    if out is not None:
        return out
    if gemm.reproducible(x, y):
        return gemm.torch_mm(x, y)
    return np.matmul(x, y)


def _foldable(x: Any) -> bool:
    """torch's should_fold stride test: x.view(-1, x.size(-1)) is a view (the leading dims are
    contiguous among themselves)."""
    if x.size == 0:
        return True
    st, sh = x.strides, x.shape
    return all(st[i] == st[i + 1] * sh[i + 1] for i in range(x.ndim - 2))


def _matmul(x: Any, y: Any) -> Any:
    shape = matmul_shape(x, y)
    if x.ndim == 2 and y.ndim == 2:
        return _product(x, y)
    if x.ndim >= 3 and y.ndim == 2:  # torch folds it into one mm (should_fold): as a view when
        # the batch dims allow it, else (a transposed sequence into a layer's weight) from a
        # contiguous copy, torch's choice when y requires grad (without, torch runs a bmm)
        if not _foldable(x):
            x = np.ascontiguousarray(x)
        return _product(x.reshape(-1, x.shape[-1]), y).reshape(shape)
    out: Any = None  # torch's dot, mv (N-D @ 1-D folded, when a view), 1-D @ 2-D as mm
    if x.ndim >= 3 and y.ndim >= 3:
        return _batched(x, y, shape)
    if y.ndim == 1:
        if x.ndim == 1:
            out = gemm.mkl_dot(x, y)
        elif x.ndim == 2:
            out = gemm.mkl_mv(x, y)  # as it is: a reshape may restride unit dims
        elif x.flags.c_contiguous:
            out = gemm.mkl_mv(x.reshape(-1, x.shape[-1]), y)
    elif x.ndim == 1 and y.ndim == 2:
        out = gemm.mkl_addmm(x[None], y, None)
    return np.matmul(x, y) if out is None else np.reshape(out, shape)


def _batched(x: Any, y: Any, shape: tuple[int, ...]) -> Any:
    """x @ y for two operands of 3 or more dims, as torch's matmul runs it: both expanded to the
    broadcast batch dims and reshaped (a view where the strides allow, else a copy) into one
    batch, then one `bmm` (torch's bits through `gemm.torch_bmm` where it knows them)."""
    batch = shape[:-2]
    n = math.prod(batch)
    xs = np.broadcast_to(x, (*batch, *x.shape[-2:])).reshape(n, *x.shape[-2:])
    ys = np.broadcast_to(y, (*batch, *y.shape[-2:])).reshape(n, *y.shape[-2:])
    out = gemm.torch_bmm(xs, ys)
    return np.matmul(x, y) if out is None else out.reshape(shape)


def _bmm_operand(ns: Any, t: Any, batch: tuple[int, ...]) -> Any:
    """An operand of the `bmm` torch's matmul runs for N-D @ N-D (`_batched`), made as torch
    makes it: expanded to the batch dims, then reshaped into one batch (a view or a copy)."""
    n = math.prod(batch)
    return ns.reshape(ns.expand(t, size=(*batch, *t.shape[-2:])), shape=(n, *t.shape[-2:]))


def _matmul_dx(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    # Batch dims that broadcasting added or stretched are summed back by the engine.
    if x.ndim == 1:
        if y.ndim == 1:
            return g * y
        return ns.einsum([y, g], equation="...km,...m->...k")
    if y.ndim == 1:
        return ns.einsum([g, y], equation="...n,k->...nk")
    if x.ndim == 2 and y.ndim == 2:  # torch's mm, and its layout rule
        return _mat1_grad(ns, g, x, y)
    if x.ndim == 3 == y.ndim and x.shape[0] == 1 != y.shape[0]:
        # x requires grad (its gradient is asked for): torch then runs x[0] @ y folded, as
        # (y^T folded) @ x[0]^T, one mm, transposed back (the grad_fn `_matmul_name` gives)
        # (x itself is not saved: its layout picks mm_mat2_backward's form, as _mat2_grad)
        b, k, m = y.shape
        n = x.shape[1]
        t1f = ns.reshape(ns.transpose(y, dim0=1, dim1=2), shape=(b * m, k))
        gf = ns.reshape(ns.transpose(g, dim0=1, dim1=2), shape=(b * m, n))
        a = getattr(x, "_data", x)
        if tuple(a.strides[1:]) == (k * a.itemsize, a.itemsize):  # x[0].t() column-major
            dx = ns.mm(ns.t(gf), t1f)
        else:
            dx = ns.t(ns.mm(ns.t(t1f), gf))
        return ns.reshape(dx, shape=(1, n, k))
    if x.ndim >= 3 and y.ndim >= 3:  # BmmBackward0's, on torch's operands
        batch = tuple(g.shape[:-2])
        g3 = ns.reshape(g, shape=(math.prod(batch), *g.shape[-2:]))
        dx = ns.bmm(g3, ns.transpose(_bmm_operand(ns, y, batch), dim0=1, dim1=2))
        return ns.reshape(dx, shape=(*batch, *x.shape[-2:]))  # the engine sums the expanded
    return ns.matmul(g, _mT(ns, y))


def _matmul_dy(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    if y.ndim == 1:
        if x.ndim == 1:
            return g * x
        return ns.einsum([x, g], equation="...nk,...n->k")
    if x.ndim == 1:
        return ns.einsum([x, g], equation="k,...m->...km")
    if x.ndim >= 3 and y.ndim == 2:  # torch folds x into one (rows, k) matrix: one mm, so
        flat_x = ns.reshape(x, shape=(-1, x.shape[-1]))  # its sum over the batch is the mm's
        return _mat2_grad(ns, ns.reshape(g, shape=(-1, g.shape[-1])), flat_x, y)
    if x.ndim == 2 and y.ndim == 2:
        return _mat2_grad(ns, g, x, y)
    if x.ndim >= 3 and y.ndim >= 3:
        batch = tuple(g.shape[:-2])
        g3 = ns.reshape(g, shape=(math.prod(batch), *g.shape[-2:]))
        dy = ns.bmm(ns.transpose(_bmm_operand(ns, x, batch), dim0=1, dim1=2), g3)
        return ns.reshape(dy, shape=(*batch, *y.shape[-2:]))
    return ns.matmul(_mT(ns, x), g)


@names_backward("MmBackward0", "DotBackward0", "SqueezeBackward4", "MvBackward0",
                "TransposeBackward0", "CloneBackward0", "UnsafeViewBackward0")
def _matmul_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    """The node torch's composite matmul ends with (it is several ops there, one here)."""
    if len(args) != 2 or not all(isinstance(a, Tensor) for a in args):
        return "MmBackward0"
    x, y = args
    dims = (x.ndim, y.ndim)
    simple = {(1, 1): "DotBackward0", (2, 2): "MmBackward0", (1, 2): "SqueezeBackward4",
              (2, 1): "MvBackward0"}
    if dims in simple:
        return simple[dims]
    # torch folds the 3-D+ operand into a matrix. When the matrix (2-D, or a single-batch 3-D
    # against a 3-D) requires grad it computes (y^T x^T)^T and copies the transpose back:
    # CloneBackward0, or TransposeBackward0 when that transpose is already contiguous.
    transposed = y.ndim >= 3 and x.requires_grad and (
        x.ndim == 2 or (x.ndim == 3 == y.ndim and x.shape[0] == 1 and y.shape[0] != 1))
    if transposed:
        n, m = x.shape[-2], y.shape[-1]
        return "TransposeBackward0" if n <= 1 or m <= 1 else "CloneBackward0"
    return "UnsafeViewBackward0"


def _product_bound(out_shape: Callable[..., Sequence[int]],
                   depth: Callable[..., int]) -> Callable[..., limits.Bound]:
    """The `out_bound` of a matrix product shaped by `out_shape` whose result elements each
    sum `depth(*args)` products: its result, and those multiply-adds as its work (its time,
    which its tensors' sizes do not tell: `limits.WORK_PER_ELEMENT`)."""
    @shapes_only
    def bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
        shape = out_shape(*args, **attrs)
        return limits.work_bound(limits.shape_bound(shape, out_dtype.np.itemsize),
                                 limits.numel(shape) * depth(*args), out_dtype.category == 2)
    return bound


def _with_products(rule: Callable[..., limits.Bound],
                   multiply_adds: Callable[..., int]) -> Callable[..., limits.Bound]:
    """`rule`'s bound with the work of the `multiply_adds(*args)` multiply-adds of the matrix
    products the op runs (an op that adds or scales around a product: baddbmm, addbmm, cdist's
    mm path), as `_product_bound` declares a plain product's. A 100-byte baddbmm of expanded
    (1, 2048, 2048) int64 batches ran 9 s of CPU in one op past its deadline without it."""
    def bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
        return limits.work_bound(rule(args, attrs, out_dtype), multiply_adds(*args),
                                 out_dtype.category == 2)
    if getattr(rule, "shapes_only", False) is True:
        shapes_only(bound)
    return bound


def _batched_products(bias: Any, x: Any, y: Any) -> int:
    """The multiply-adds of `x @ y` batch by batch (3-D operands; a bad shape is the forward's
    error, counted as nothing)."""
    if len(x.shape) != 3 or len(y.shape) != 3:
        return 0
    return limits.numel(x.shape) * y.shape[2]


defop("matmul", _matmul, _matmul_dx, _matmul_dy, inputs=("input", "other"),
      saves=("other input.shape input.strides", "input other.shape other.strides"),
      dtype=_MM_DTYPE, backward=_matmul_name, out_shape=matmul_shape,
      out_bound=_product_bound(matmul_shape, lambda x, y: x.shape[-1]),
      doc="matrix product with torch's 1-D and batched broadcasting rules (input @ other)")


@shapes_only
def _mm_shape(x: Any, y: Any) -> tuple[int, ...]:
    if x.ndim != 2:
        raise errors.InvalidArgumentError("self must be a matrix")
    if y.ndim != 2:
        raise errors.InvalidArgumentError("mat2 must be a matrix")
    _mm_check(x.shape, y.shape)
    return (x.shape[0], y.shape[1])


def _mm(x: Any, y: Any) -> Any:
    _mm_shape(x, y)
    return _product(x, y)


defop("mm", _mm,
      lambda ns, g, out, x, y: _mat1_grad(ns, g, x, y),
      lambda ns, g, out, x, y: _mat2_grad(ns, g, x, y),
      saves=("mat2 input.strides", "input mat2.strides"),
      inputs=("input", "mat2"), dtype=_MM_DTYPE, out_shape=_mm_shape,
      out_bound=_product_bound(_mm_shape, lambda x, y: x.shape[1]),
      doc="matrix product of two 2-D tensors")


@shapes_only
def _addmm_shape(bias: Any, x: Any, y: Any, beta: Any = 1, alpha: Any = 1) -> tuple[int, ...]:
    for name, m in (("mat1", x), ("mat2", y)):
        if m.ndim != 2:
            raise errors.InvalidArgumentError(f"{name} must be a matrix, got {m.ndim}-D tensor")
    _mm_check(x.shape, y.shape)
    out = (x.shape[0], y.shape[1])
    _expand_check(tuple(bias.shape), out, bias.dtype)
    return out


def _expand_check(shape: tuple[int, ...], target: tuple[int, ...], dtype: Any) -> None:
    """torch's expand() messages for `shape` that does not expand to `target`."""
    words = ", ".join(map(str, target))
    if len(shape) > len(target):
        kind = _TYPE_WORD.get(getattr(dtype, "name", ""), "Float")
        raise errors.InvalidArgumentError(
            f"expand(torch.{kind}Tensor{{[{', '.join(map(str, shape))}]}}, size=[{words}]): the "
            f"number of sizes provided ({len(target)}) must be greater or equal to the number of "
            f"dimensions in the tensor ({len(shape)})")
    for dim in range(1, len(shape) + 1):
        if shape[-dim] not in (1, target[-dim]):
            raise errors.InvalidArgumentError(
                f"The expanded size of the tensor ({target[-dim]}) must match the existing size "
                f"({shape[-dim]}) at non-singleton dimension {len(target) - dim}.  Target sizes: "
                f"[{words}].  Tensor sizes: [{', '.join(map(str, shape))}]")


def _addmm(bias: Any, x: Any, y: Any, beta: Any = 1, alpha: Any = 1) -> Any:
    out = _addmm_shape(bias, x, y)
    exact = gemm.mkl_addmm(x, y, bias, alpha, beta) if bias.dtype == x.dtype else None
    if exact is not None:
        return exact
    if beta == 1 and alpha == 1 and bias.dtype == x.dtype and gemm.reproducible(x, y):
        return gemm.torch_mm(x, y, bias)  # MKL adds the bias to the first k block's sum
    # beta = 0 is torch's plain product; another alpha or beta is not in MKL's known order
    product = _product(x, y) if alpha == 1 and beta == 0 else np.matmul(x, y)
    if alpha != 1:
        product = product * np.asarray(alpha, product.dtype)
    if beta == 0:  # torch ignores input then, NaN and inf included
        return np.broadcast_to(product, out).copy()
    scaled = bias if beta == 1 else bias * np.asarray(beta, bias.dtype)
    return np.add(scaled, product)


def _addmm_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    bias, x, y = args
    for a, b in ((bias, y), (x, y)):
        if a.dtype is not b.dtype:
            raise errors.InvalidArgumentError(
                f"self and mat2 must have the same dtype, but got {_TYPE_WORD[a.dtype.name]} "
                f"and {_TYPE_WORD[b.dtype.name]}")
    return None, x.dtype


defop("addmm", _addmm,
      lambda ns, g, out, bias, x, y, beta, alpha: g if beta == 1 else g * beta,
      lambda ns, g, out, bias, x, y, beta, alpha: (
          _mat1_grad(ns, g, x, y) if alpha == 1 else _mat1_grad(ns, g, x, y) * alpha),
      lambda ns, g, out, bias, x, y, beta, alpha: (
          _mat2_grad(ns, g, x, y) if alpha == 1 else _mat2_grad(ns, g, x, y) * alpha),
      saves=("", "mat2 mat1.strides", "mat1 mat2.strides"),
      inputs=("input", "mat1", "mat2"),
      attrs=(AttrSpec("beta", "scalar", 1), AttrSpec("alpha", "scalar", 1)),
      dtype=_addmm_dtype, out_shape=_addmm_shape,
      out_bound=_product_bound(_addmm_shape, lambda bias, x, y: x.shape[1]),
      doc="beta * input + alpha * (mat1 @ mat2): input broadcast to the product's shape "
          "(nn.Linear's forward on a 2-D input)")


def _bmm_shape(x: Any, y: Any) -> tuple[int, ...]:
    if x.ndim != 3:
        raise errors.InvalidArgumentError("batch1 must be a 3D tensor")
    if y.ndim != 3:
        raise errors.InvalidArgumentError("batch2 must be a 3D tensor")
    _bmm_check(x.shape, y.shape)
    return (x.shape[0], x.shape[1], y.shape[2])


def _bmm(x: Any, y: Any) -> Any:
    _bmm_shape(x, y)
    out = gemm.torch_bmm(x, y)  # torch's own kernel or MKL call, when known
    return np.matmul(x, y) if out is None else out


defop("bmm", _bmm,
      lambda ns, g, out, x, y: ns.bmm(g, ns.transpose(y, dim0=1, dim1=2)),
      lambda ns, g, out, x, y: ns.bmm(ns.transpose(x, dim0=1, dim1=2), g),
      saves=("mat2", "input"),
      inputs=("input", "mat2"), dtype=_MM_DTYPE, out_shape=_bmm_shape,
      out_bound=_product_bound(_bmm_shape, lambda x, y: x.shape[2]),
      doc="batched matrix product of two 3-D tensors with the same batch size")


def _dot(x: Any, y: Any) -> Any:
    if x.ndim != 1 or y.ndim != 1:
        raise errors.InvalidArgumentError(
            f"1D tensors expected, but got {x.ndim}D and {y.ndim}D tensors")
    _dot_check(x.shape, y.shape)
    out = gemm.mkl_dot(x, y)
    return np.dot(x, y) if out is None else out


defop("dot", _dot,
      lambda ns, g, out, x, y: g * y,
      lambda ns, g, out, x, y: g * x,
      saves=("tensor", "input"),
      inputs=("input", "tensor"),
      dtype=_same_dtype(lambda a, b: f"dot : expected both vectors to have same dtype, but "
                                     f"found {_TYPE_WORD[a]} and {_TYPE_WORD[b]}"),
      doc="inner product of two 1-D tensors",
      out_shape=lambda x, y: ())


def _outer_shape(x: Any, y: Any) -> tuple[int, ...]:
    for name, t in (("self", x), ("vec2", y)):
        if t.ndim != 1:
            raise errors.InvalidArgumentError(
                f"outer: Expected 1-D argument {name}, but got {t.ndim}-D")
    return (x.shape[0], y.shape[0])


def _outer(x: Any, y: Any) -> Any:
    _outer_shape(x, y)
    return np.multiply.outer(x, y)


defop("outer", _outer,
      lambda ns, g, out, x, y: ns.sum(g * y, dim=1),
      lambda ns, g, out, x, y: ns.sum(g * ns.reshape(x, shape=(-1, 1)), dim=0),
      saves=("vec2", "input"),
      inputs=("input", "vec2"), dtype=PROMOTE, out_shape=_outer_shape,
      backward="MulBackward0", doc="outer product of two 1-D tensors")

# --- einsum --------------------------------------------------------------------------------------

MAX_EQUATION = 256
# Operands of one einsum. numpy's optimize=True path search takes ~n^3 steps (all pairs at every
# contraction when they share a subscript): "a,a,...->" with 127 one-element operands, a 1.2 KB
# request, took 2-3.6 s in one op, and its backward runs n such einsums (numpy's own einsum
# refuses 64 operands in one step: "too many operands"). torch has no such limit.
MAX_OPERANDS = 32
# The interrupt check runs once per this many steps of the path search before it (so a call's
# --max-call-ops and the event loop's try count the search as the ops it costs: ~1-2.5 us a
# step on the loaded 2-core VM).
_PATH_STEPS_PER_TICK = 4
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Equation:
    """A parsed, validated einsum equation with every ellipsis spelled out as letters."""

    __slots__ = ("inputs", "output")

    def __init__(self, inputs: Sequence[str], output: str):
        self.inputs = tuple(inputs)  # immutable: parses are cached and shared
        self.output = output

    def text(self) -> str:
        return ",".join(self.inputs) + "->" + self.output


def _parse_operand(term: str, index: int, offset: int) -> tuple[list[str], bool]:
    labels: list[str] = []
    ellipsis = False
    i = 0
    while i < len(term):
        c = term[i]
        if c == ".":
            if term[i:i + 3] != "..." or ellipsis:
                raise errors.InvalidArgumentError(
                    f"einsum(): found '.' for operand {index} that is not part of any ellipsis")
            ellipsis = True
            labels.append("...")
            i += 3
            continue
        if c not in _LETTERS:
            raise errors.InvalidArgumentError(
                f"einsum(): invalid subscript given at index {offset + i} in the equation "
                f"string, subscripts must be in [a-zA-Z]")
        labels.append(c)
        i += 1
    return labels, ellipsis


def parse_equation(equation: str, shapes: Sequence[Sequence[int]]) -> Equation:
    """`_parse_equation`, cached: the backward and the node name parse the same equations."""
    if len(equation) > MAX_EQUATION:  # checked before hashing a hostile string
        raise errors.InvalidArgumentError(
            f"einsum(): equation has {len(equation)} characters, more than {MAX_EQUATION}")
    return _parse_cached(equation, tuple(tuple(int(d) for d in s) for s in shapes))


@functools.lru_cache(maxsize=512)
def _parse_cached(equation: str, shapes: tuple[tuple[int, ...], ...]) -> Equation:
    return _parse_equation(equation, shapes)


def _parse_equation(equation: str, shapes: Sequence[Sequence[int]]) -> Equation:
    """Check `equation` against the operand shapes (torch's messages) and expand ellipses.

    The equation arrives from the network, so everything is checked before numpy sees it:
    length, characters, operand count, subscript counts, sizes.
    """
    if len(equation) > MAX_EQUATION:
        raise errors.InvalidArgumentError(
            f"einsum(): equation has {len(equation)} characters, more than {MAX_EQUATION}")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    if arrow and "->" in rhs:
        raise errors.InvalidArgumentError(
            f"einsum(): invalid subscript given at index {len(lhs) + 2 + rhs.index('->')} in "
            "the equation string, subscripts must be in [a-zA-Z]")
    terms = lhs.split(",")
    if len(shapes) < len(terms):
        raise errors.InvalidArgumentError(
            "einsum(): fewer operands were provided than specified in the equation")
    if len(shapes) > len(terms):
        raise errors.InvalidArgumentError(
            "einsum(): more operands were provided than specified in the equation")
    if len(shapes) > MAX_OPERANDS:
        raise errors.InvalidArgumentError(
            f"einsum(): {len(shapes)} operands, more than this server's {MAX_OPERANDS} (its "
            "contraction path search grows with the cube of their number)")
    parsed: list[list[str]] = []
    offset = 0
    ell_dims = 0
    ell_shapes: list[tuple[int, ...]] = []
    sizes: dict[str, int] = {}
    for k, (term, shape) in enumerate(zip(terms, shapes)):
        labels, has_ell = _parse_operand(term, k, offset)
        offset += len(term) + 1
        named = len(labels) - has_ell
        if (not has_ell and named != len(shape)) or (has_ell and named > len(shape)):
            if has_ell:
                raise errors.InvalidArgumentError(
                    f"einsum(): the number of subscripts in the equation ({named}) is more than "
                    f"the number of dimensions ({len(shape)}) for operand {k}")
            raise errors.InvalidArgumentError(
                f"einsum(): the number of subscripts in the equation ({named}) does not match "
                f"the number of dimensions ({len(shape)}) for operand {k} and no ellipsis was "
                "given")
        if has_ell:
            e = labels.index("...")
            n_ell = len(shape) - named
            ell_dims = max(ell_dims, n_ell)
            ell_shapes.append(tuple(shape[e:e + n_ell]))
        dims = iter(shape)
        for lab in labels:
            if lab == "...":
                for _ in range(len(shape) - named):
                    next(dims)
                continue
            size = next(dims)
            seen = sizes.get(lab)
            if seen is not None and seen != size and seen != 1 and size != 1:
                raise errors.InvalidArgumentError(
                    f"einsum(): subscript {lab} has size {size} for operand {k} which does not "
                    f"broadcast with previously seen size {seen}")
            sizes[lab] = size if seen is None or seen == 1 else seen
        parsed.append(labels)
    try:
        broadcast_shapes(*ell_shapes)
    except ValueError:
        raise errors.InvalidArgumentError(
            f"einsum(): operands do not broadcast with remapped shapes (original->remapped): "
            f"{[tuple(s) for s in shapes]}") from None
    # Spell each ellipsis with unused letters (right-aligned, as broadcasting aligns them).
    free = [c for c in sorted(_LETTERS) if c not in sizes]
    if ell_dims > len(free):
        raise errors.InvalidArgumentError("einsum(): too many dimensions in the ellipsis")
    ell = free[:ell_dims]
    inputs = []
    for labels, shape in zip(parsed, shapes):
        n_ell = len(shape) - (len(labels) - ("..." in labels))
        inputs.append("".join("".join(ell[ell_dims - n_ell:]) if lab == "..." else lab
                              for lab in labels))
    if arrow:
        out_labels, has_ell = _parse_operand(rhs, -1, len(lhs) + 2)
        seen_out: set[str] = set()
        for lab in out_labels:
            if lab == "...":
                continue
            if lab in seen_out:
                raise errors.InvalidArgumentError(
                    f"einsum(): output subscript {lab} appears more than once in the output")
            if lab not in sizes:
                raise errors.InvalidArgumentError(
                    f"einsum(): output subscript {lab} does not appear in the equation for any "
                    "input operand")
            seen_out.add(lab)
        # An output without "..." sums the ellipsis dims.
        output = "".join("".join(ell) if lab == "..." else lab for lab in out_labels)
    else:  # implicit output: the ellipsis, then the letters that appear once, sorted
        counts: dict[str, int] = {}
        for s in inputs:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        once = sorted(c for c, n in counts.items() if n == 1 and c not in ell)  # A-Z, a-z
        output = "".join(ell) + "".join(once)
    return Equation(inputs, output)


def _einsum_sizes(operands: Sequence[Any], equation: str) -> tuple[Any, dict[str, int]]:
    """The parsed equation and each subscript's size."""
    eq = parse_equation(equation, [tuple(t.shape) for t in operands])
    sizes: dict[str, int] = {}
    for s, t in zip(eq.inputs, operands):
        for c, d in zip(s, t.shape):
            if sizes.get(c, 1) == 1:  # a size-1 subscript broadcasts
                sizes[c] = d
    return eq, sizes


def _einsum_shape(*operands: Any, equation: str) -> tuple[int, ...]:
    eq, sizes = _einsum_sizes(operands, equation)
    return tuple(sizes[c] for c in eq.output)


def _einsum_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    """einsum's result, and its contraction's intermediates: numpy's optimize=True never makes
    an intermediate larger than the largest operand or the result (its default memory limit),
    and at any time holds fewer than one per operand besides the transposed copies tensordot
    makes of the pair it contracts."""
    eq, sizes = _einsum_sizes(args, attrs["equation"])
    shape = tuple(sizes[c] for c in eq.output)
    item = out_dtype.np.itemsize
    largest = max([limits.numel(shape), *(numel_of(t) for t in args)])
    scratch = (len(args) + 1) * largest * item if len(args) > 1 else 0
    bound = limits.with_scratch(limits.shape_bound(shape, item), scratch)
    if len(args) == 1:
        return bound
    # Its work: one multiply-add per combination of every subscript's values, what a product
    # of two operands does and what numpy does when its memory limit keeps it from splitting
    # more operands into smaller products (so at most that: an upper bound, not a guess).
    return limits.work_bound(bound, limits.numel(tuple(sizes.values())), out_dtype.category == 2)


def _einsum(operands: Sequence[Any], equation: str) -> Any:
    eq = parse_equation(equation, [np.shape(t) for t in operands])
    if len(operands) == 1:
        return np.einsum(eq.text(), operands[0])
    if len(operands) > 3:  # the path search is counted as the ops it costs (MAX_OPERANDS)
        for _ in range(len(operands) ** 3 // _PATH_STEPS_PER_TICK):
            limits.tick()
    return np.einsum(eq.text(), *operands, optimize=True)


def _einsum_vjp(ns: Any, g: Any, out: Any, operands: Sequence[Any], equation: str) -> list[Any]:
    # d/d operand i: contract g with the other operands onto operand i's subscripts. Labels
    # found nowhere else (summed out of operand i alone) are broadcast back; labels repeated in
    # operand i (a diagonal) get the gradient on the diagonal and zero elsewhere.
    eq = parse_equation(equation, [tuple(t.shape) for t in operands])
    grads: list[Any] = []
    for i, sub in enumerate(eq.inputs):
        others = [s for j, s in enumerate(eq.inputs) if j != i]
        available = set(eq.output).union(*others)
        have = "".join(dict.fromkeys(c for c in sub if c in available))
        tensors = [g, *(t for j, t in enumerate(operands) if j != i)]
        gi = ns.einsum(tensors, equation=",".join([eq.output, *others]) + "->" + have)
        if have != sub:
            gi = _place(ns, gi, have, sub, operands[i])
        grads.append(gi)
    return grads


def _place(ns: Any, gi: Any, have: str, sub: str, like: Any) -> Any:
    """`gi` (distinct subscripts `have`) laid out on operand subscripts `sub`."""
    first = {c: sub.index(c) for c in reversed(sub)}
    order = "".join(c for k, c in enumerate(sub) if c in have and first[c] == k)
    if order != have:
        gi = ns.einsum([gi], equation=f"{have}->{order}")
    dims = dict(zip(order, gi.shape))
    shape = tuple(dims[c] if c in dims and first[c] == k else 1 for k, c in enumerate(sub))
    full = tuple(dims.get(c, d) if first[c] == k else d
                 for k, (c, d) in enumerate(zip(sub, like.shape)))
    gi = ns.expand(ns.reshape(gi, shape=shape), size=full)
    if len(first) == len(sub):
        return gi
    # Positions along each axis are cumulative sums of ones; the diagonal is where they agree.
    ones = ns.fill(like, value=1)
    mask = None
    for k, c in enumerate(sub):
        if first[c] != k:
            same = ns.cumsum(ones, dim=first[c]) == ns.cumsum(ones, dim=k)
            mask = same if mask is None else ns.logical_and(mask, same)
    return ns.where(mask, gi, 0.0)


@names_backward("ViewBackward0", "MulBackward0", "SumBackward1", "PermuteBackward0",
                "EinsumBackward0")
def _einsum_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    """The node torch's einsum ends with: a permute or sum (one operand), else a mul or bmm."""
    operands = args[0] if args and isinstance(args[0], (list, tuple)) else args
    try:
        eq = parse_equation(attrs["equation"], [tuple(t.shape) for t in operands])
    except (errors.EngineError, KeyError, AttributeError, TypeError):  # no equation (catalogue)
        return "EinsumBackward0"
    if len(eq.inputs) == 1:
        summed = set(eq.inputs[0]) - set(eq.output)
        return "SumBackward1" if summed else "PermuteBackward0"
    # torch's einsum ends by viewing away the size-1 places of summed labels; with none, the
    # last pairwise product is a plain mul.
    contracted = set().union(*eq.inputs) - set(eq.output)
    return "ViewBackward0" if contracted else "MulBackward0"


def _einsum_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    if not args:
        raise errors.InvalidArgumentError("einsum(): must provide at least one operand")
    d = args[0].dtype
    for t in args[1:]:
        if t.dtype is not d:
            raise errors.InvalidArgumentError(
                f"expected scalar type {_TYPE_WORD[d.name]} but found {_TYPE_WORD[t.dtype.name]}")
    return None, d


defop("einsum", _einsum, _einsum_vjp, inputs=("tensors",), variadic=True,
      saves="tensors",
      attrs=(AttrSpec("equation", "str", required=True),), dtype=_einsum_dtype,
      backward=_einsum_name, out_shape=_einsum_shape, method=False,
      doc="Einstein summation over the operands (letters, ',', '->', '...')",
      out_bound=_einsum_bound)

# --- baddbmm, addbmm: beta * input + alpha * (batched product, or its sum over the batch) --------


def _baddbmm_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    bias, x, y = args
    if x.dtype is not y.dtype:
        raise errors.InvalidArgumentError(
            f"expected scalar type {_TYPE_WORD[x.dtype.name]} but found "
            f"{_TYPE_WORD[y.dtype.name]}")
    if bias.dtype is not x.dtype:
        raise errors.InvalidArgumentError(
            f"Input dtypes must be the same, got: input {_SHORT[bias.dtype.name]}, batch1: "
            f"{_SHORT[x.dtype.name]}, batch2: {_SHORT[y.dtype.name]}")
    _no_bool("baddbmm", x.dtype)
    return None, x.dtype


def _no_bool(name: str, dtype: Any) -> None:
    if dtype.name == "bool":
        raise errors.NotImplementedFunctionError(f"\"{name}\" not implemented for 'Bool'")


def _addbmm_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    bias, x, y = args
    for a, b in ((bias, y), (x, y)):
        if a.dtype is not b.dtype:
            raise errors.InvalidArgumentError(
                f"expected scalar type {_TYPE_WORD[b.dtype.name]} but found "
                f"{_TYPE_WORD[a.dtype.name]}")
    _no_bool("addmm_impl_cpu_", x.dtype)
    return None, x.dtype


def _batches_check(x: Any, y: Any) -> None:
    for name, m in (("batch1", x), ("batch2", y)):
        if m.ndim != 3:
            raise errors.InvalidArgumentError(f"{name} must be a 3D tensor")


@shapes_only
def _baddbmm_shape(bias: Any, x: Any, y: Any, beta: Any = 1, alpha: Any = 1) -> tuple[int, ...]:
    if x.ndim >= 2 and y.ndim >= 3:  # torch expands input before it checks the batches
        _expand_check(tuple(bias.shape), (x.shape[0], x.shape[1], y.shape[2]), bias.dtype)
    _batches_check(x, y)
    _bmm_check(x.shape, y.shape)
    out = (x.shape[0], x.shape[1], y.shape[2])
    _expand_check(tuple(bias.shape), out, bias.dtype)
    return out


@shapes_only
def _addbmm_shape(bias: Any, x: Any, y: Any, beta: Any = 1, alpha: Any = 1) -> tuple[int, ...]:
    _batches_check(x, y)
    if x.shape[0] != y.shape[0]:
        raise errors.InvalidArgumentError(
            f"batch1 and batch2 must have same number of batches, got {x.shape[0]} and "
            f"{y.shape[0]}")
    if x.shape[2] != y.shape[1]:
        raise errors.InvalidArgumentError(
            f"Incompatible matrix sizes for bmm ({x.shape[1]}x{x.shape[2]} and "
            f"{y.shape[1]}x{y.shape[2]})")
    out = (x.shape[1], y.shape[2])
    _expand_check(tuple(bias.shape), out, bias.dtype)
    return out


def _scaled_sum(bias: Any, product: Any, out: Sequence[int], beta: Any, alpha: Any) -> Any:
    """beta * bias + alpha * product as torch's kernels: bias ignored (NaN too) when beta is 0."""
    if alpha != 1:
        product = product * np.asarray(alpha, product.dtype)
    if beta == 0:
        return np.broadcast_to(product, out).astype(product.dtype, copy=True)
    scaled = bias if beta == 1 else bias * np.asarray(beta, bias.dtype)
    return np.add(scaled, product).astype(product.dtype, copy=False)


def _baddbmm(bias: Any, x: Any, y: Any, beta: Any = 1, alpha: Any = 1) -> Any:
    out = _baddbmm_shape(bias, x, y)
    return _scaled_sum(bias, _bmm(x, y), out, beta, alpha)


def _addbmm(bias: Any, x: Any, y: Any, beta: Any = 1, alpha: Any = 1) -> Any:
    out = _addbmm_shape(bias, x, y)
    return _scaled_sum(bias, np.sum(_bmm(x, y), axis=0) if x.shape[0] else np.zeros(
        out, x.dtype), out, beta, alpha)


def _scaled(g: Any, factor: Any) -> Any:
    return g if factor == 1 else g * factor


def _batched_grad(ns: Any, g: Any, x: Any) -> Any:
    """addbmm's gradient as one matrix per batch (the sum over the batch broadcast back)."""
    return ns.expand(ns.unsqueeze(g, dim=0), size=(x.shape[0], *g.shape))


# derivatives.yaml: self: maybe_multiply(grad, beta); batch1: grad.bmm(batch2.mT) * alpha;
# batch2: batch1.mT.bmm(grad) * alpha (addbmm: grad expanded over the batch first)
defop("baddbmm", _baddbmm,
      lambda ns, g, out, bias, x, y, beta, alpha: _scaled(g, beta),
      lambda ns, g, out, bias, x, y, beta, alpha: _scaled(
          ns.bmm(g, ns.transpose(y, dim0=1, dim1=2)), alpha),
      lambda ns, g, out, bias, x, y, beta, alpha: _scaled(
          ns.bmm(ns.transpose(x, dim0=1, dim1=2), g), alpha),
      saves=("", "batch2", "batch1"), inputs=("input", "batch1", "batch2"),
      attrs=(AttrSpec("beta", "scalar", 1), AttrSpec("alpha", "scalar", 1)),
      dtype=_baddbmm_dtype, out_shape=_baddbmm_shape, inplace=True,
      doc="beta * input + alpha * (batch1 @ batch2), batch by batch (input broadcast)",
      out_bound=_with_products(temporaries(_baddbmm_shape, results=2), _batched_products))
def _addbmm_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    """The result, and the batched product summed into it (one matrix per batch)."""
    out = _addbmm_shape(*args, **attrs)
    item = out_dtype.np.itemsize
    return limits.with_scratch(limits.shape_bound(out, item),
                               args[1].shape[0] * limits.numel(out) * item)


defop("addbmm", _addbmm,
      lambda ns, g, out, bias, x, y, beta, alpha: _scaled(g, beta),
      lambda ns, g, out, bias, x, y, beta, alpha: _scaled(
          ns.bmm(_batched_grad(ns, g, x), ns.transpose(y, dim0=1, dim1=2)), alpha),
      lambda ns, g, out, bias, x, y, beta, alpha: _scaled(
          ns.bmm(ns.transpose(x, dim0=1, dim1=2), _batched_grad(ns, g, x)), alpha),
      saves=("", "batch1.shape batch2", "batch1"), inputs=("input", "batch1", "batch2"),
      attrs=(AttrSpec("beta", "scalar", 1), AttrSpec("alpha", "scalar", 1)),
      dtype=_addbmm_dtype, out_shape=_addbmm_shape, inplace=True,
      doc="beta * input + alpha * the sum over the batch of batch1 @ batch2 (input broadcast)",
      out_bound=_with_products(_addbmm_bound, _batched_products))

# --- kron ----------------------------------------------------------------------------------------


def _kron_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...],
                                                             tuple[int, ...]]:
    """torch's kron: (a's interleaved shape, b's interleaved shape, the result's shape)."""
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    a_view = tuple(v for d in pa for v in (d, 1))
    b_view = tuple(v for d in pb for v in (1, d))
    return a_view, b_view, tuple(x * y for x, y in zip(pa, pb))


def _kron_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Promoted, as mul; both operands must be tensors (torch's TypeError)."""
    for position, (name, a) in enumerate(zip(("input", "other"), args), 1):
        if not isinstance(a, Tensor):
            raise errors.InvalidTypeError(
                f"kron(): argument '{name}' (position {position}) must be Tensor, not "
                f"{type(a).__name__}")
    return PROMOTE(args, attrs)


def _kron(a: Any, b: Any) -> Any:
    a_view, b_view, out = _kron_shapes(np.shape(a), np.shape(b))
    return np.multiply(np.reshape(a, a_view), np.reshape(b, b_view)).reshape(out)


def _kron_grad(ns: Any, g: Any, mine: Any, other: Any, first: bool) -> Any:
    a_shape, b_shape = (mine.shape, other.shape) if first else (other.shape, mine.shape)
    a_view, b_view, _ = _kron_shapes(a_shape, b_shape)
    g_view = ns.reshape(g, shape=tuple(max(x, y) for x, y in zip(a_view, b_view)))
    other_view = ns.reshape(other, shape=b_view if first else a_view)
    axes = tuple(range(1 if first else 0, len(a_view), 2))  # the other operand's places
    summed = ns.sum(g_view * other_view, dim=axes) if axes else g_view * other_view
    return ns.reshape(summed, shape=mine.shape)


defop("kron", _kron,
      lambda ns, g, out, a, b: _kron_grad(ns, g, a, b, True),
      lambda ns, g, out, a, b: _kron_grad(ns, g, b, a, False),
      saves=("input.shape other", "input other.shape"), inputs=("input", "other"),
      dtype=_kron_dtype, backward="UnsafeViewBackward0",
      doc="the Kronecker product (torch's composition ends with an _unsafe_view)",
      out_bound=lambda args, attrs, out_dtype: limits.shape_bound(
          _kron_shapes(getattr(args[0], "shape", ()), getattr(args[1], "shape", ()))[2],
          out_dtype.np.itemsize))

# --- cdist: torch's _cdist_forward (CdistBackward0) and _euclidean_dist (its mm path) ------------


def _dtype_name(t: Any) -> str:
    return t.dtype.name if isinstance(t, Tensor) else dtypes.from_numpy(t.dtype).name


def cdist_check(x1: Any, x2: Any, p: float = 2.0) -> tuple[int, ...]:
    """cdist's result shape, with torch's checks in its order (Tensors or arrays)."""
    for name, t in (("X1", x1), ("X2", x2)):
        if t.ndim < 2:
            raise errors.InvalidArgumentError(
                f"cdist only supports at least 2D tensors, {name} got: {t.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise errors.InvalidArgumentError(
            f"X1 and X2 must have the same number of columns. X1: {x1.shape[-1]} X2: "
            f"{x2.shape[-1]}")
    d1, d2 = _dtype_name(x1), _dtype_name(x2)
    for name, d in (("X1", d1), ("X2", d2)):
        if not d.startswith("float"):
            raise errors.InvalidArgumentError(
                f"cdist only supports floating-point dtypes, {name} got: {_TYPE_WORD[d]}")
    if p < 0:
        raise errors.InvalidArgumentError("cdist only supports non-negative p values")
    if d1 != d2:
        raise errors.InvalidArgumentError(
            f"expected scalar type {_TYPE_WORD[d1]} but found {_TYPE_WORD[d2]}")
    batch = _broadcast_batch(tuple(x1.shape[:-2]), tuple(x2.shape[:-2]))
    return (*batch, x1.shape[-2], x2.shape[-2])


def _broadcast_batch(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(broadcast_shapes(a, b))
    except ValueError:
        raise _broadcast_error((a, b)) from None


def _cdist_diff(x1: Any, x2: Any) -> Any:
    return x1[..., :, None, :] - x2[..., None, :, :]


def _cdist(x1: Any, x2: Any, p: float = 2.0, compute_mode: int | None = None) -> Any:
    cdist_check(x1, x2, p)
    diff = np.abs(_cdist_diff(x1, x2))
    if p == 0:
        return np.sum(diff != 0, axis=-1).astype(x1.dtype)
    if p == 1:
        return np.sum(diff, axis=-1)
    if p == 2:
        return np.sqrt(np.sum(diff * diff, axis=-1))
    if np.isinf(p):
        return np.max(diff, axis=-1, initial=0).astype(x1.dtype)
    kind = x1.dtype.type
    with np.errstate(over="ignore", divide="ignore"):
        return np.power(np.sum(np.power(diff, kind(p)), axis=-1), kind(1 / p))


def _cdist_backward(g: Any, x1: Any, x2: Any, dist: Any, p: float = 2.0) -> Any:
    """torch's _cdist_backward: the gradient for x1 (x2's is this with the roles swapped)."""
    diff = _cdist_diff(x1, x2)
    g, dist = np.asarray(g)[..., None], np.asarray(dist)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if p == 0:
            each = np.zeros_like(diff)
        elif p == 1:
            each = np.sign(diff) * g
        elif p == 2:
            each = np.where(dist == 0, 0, diff / dist) * g
        elif np.isinf(p):
            each = np.where(np.abs(diff) == dist, np.sign(diff), 0) * g
        else:
            kind = diff.dtype.type
            ratio = (np.sign(diff) * np.power(np.abs(diff), kind(p - 1))
                     / np.power(dist, kind(p - 1)))
            zero = (dist == 0) | ((diff == 0) & (p < 1))
            each = np.where(zero, 0, ratio) * g
    return np.sum(each, axis=-2).astype(x1.dtype, copy=False)


def _cdist_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    """The distances, and the differences of every pair of rows (a few arrays of them)."""
    shape = cdist_check(args[0], args[1], attrs.get("p", 2.0))
    item = out_dtype.np.itemsize
    pairs = limits.numel(shape) * args[0].shape[-1]
    return limits.with_scratch(limits.shape_bound(shape, item), 3 * pairs * item)


def _cdist_backward_bound(args: Sequence[Any], attrs: Mapping[str, Any],
                          out_dtype: Any) -> limits.Bound:
    g, x1, x2 = args[:3]
    item = out_dtype.np.itemsize
    pairs = limits.numel(tuple(g.shape)) * x1.shape[-1]
    shape = (*g.shape[:-1], x1.shape[-1])
    return limits.with_scratch(limits.shape_bound(shape, item), 4 * pairs * item)


def _t(ns: Any, t: Any) -> Any:
    return ns.transpose(t, dim0=-1, dim1=-2)


defop("_cdist_forward", _cdist,
      lambda ns, g, out, x1, x2, p, compute_mode: ns._cdist_backward(g, x1, x2, out, p=p),
      lambda ns, g, out, x1, x2, p, compute_mode: ns._cdist_backward(
          _t(ns, g), x2, x1, _t(ns, out), p=p),
      saves=("input x2 result", "input x2 result"), inputs=("input", "x2"),
      attrs=(AttrSpec("p", "float", 2.0), AttrSpec("compute_mode", "optional_int", None)),
      backward="CdistBackward0", method=False,
      doc="p-norm distances between the rows of input and x2 (torch.cdist without the mm "
          "path)",
      out_bound=_cdist_bound)


def _no_double(ns: Any, g: Any, out: Any, *args: Any, **attrs: Any) -> Any:
    raise errors.NotImplementedFunctionError(
        "the derivative for '_cdist_backward' is not implemented.")


defop("_cdist_backward", _cdist_backward, _no_double, _no_double, _no_double, _no_double,
      saves=("", "", "", ""), inputs=("grad", "x1", "x2", "cdist"),
      attrs=(AttrSpec("p", "float", 2.0),), method=False,
      doc="cdist's gradient for x1; torch has no derivative of it",
      out_bound=_cdist_backward_bound)


def _euclidean_dist(x1: Any, x2: Any) -> Any:
    cdist_check(x1, x2)
    # torch's composition: one matmul of padded operands, clamped and square-rooted
    n1 = np.sum(x1 * x1, axis=-1, keepdims=True)
    n2 = np.sum(x2 * x2, axis=-1, keepdims=True)
    a = np.concatenate([x1 * x1.dtype.type(-2), n1, np.ones_like(n1)], axis=-1)
    b = np.concatenate([x2, np.ones_like(n2), n2], axis=-1)
    return np.sqrt(np.maximum(np.matmul(a, np.swapaxes(b, -1, -2)), x1.dtype.type(1e-30)))


def _euclidean_ratio(ns: Any, g: Any, out: Any) -> Any:
    return ns.masked_fill(g / out, out == 0, 0.0)


# torch's _euclidean_dist_backward: ratio = grad / result (0 where result is 0);
# x1 * ratio.sum(-1, keepdim) - ratio @ x2, and x2 * ratio.sum(-2).unsqueeze(-1) - ratio.mT @ x1
defop("_euclidean_dist", _euclidean_dist,
      lambda ns, g, out, x1, x2: x1 * ns.sum(_euclidean_ratio(ns, g, out), dim=-1,
                                             keepdim=True)
      - ns.matmul(_euclidean_ratio(ns, g, out), x2),
      lambda ns, g, out, x1, x2: x2 * ns.unsqueeze(ns.sum(_euclidean_ratio(ns, g, out),
                                                          dim=-2), dim=-1)
      - ns.matmul(_t(ns, _euclidean_ratio(ns, g, out)), x1),
      saves=("input x2 result", "input x2 result"), inputs=("input", "x2"),
      backward="EuclideanDistBackward0", method=False,
      doc="Euclidean distances between rows by one matrix product (cdist's mm path)",
      out_bound=_with_products(lambda args, attrs, out_dtype: limits.with_scratch(
          limits.shape_bound(cdist_check(args[0], args[1]), out_dtype.np.itemsize),
          2 * (numel_of(args[0]) + numel_of(args[1])) * out_dtype.np.itemsize),
          lambda x1, x2: limits.numel(cdist_check(x1, x2)) * (x1.shape[-1] + 2)))
