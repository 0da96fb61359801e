"""Linear solvers, the cross product and the trace: torch's `linalg_solve`
(LinalgSolveExBackward0), `linalg_solve_triangular`, `cholesky_solve`, `linalg_cross` and
`trace`, with torch's shape rules (batch broadcasting, solve's vector case), messages and
derivatives (FunctionsManual.cpp's linalg_solve_backward, linalg_solve_triangular's and
cholesky_solve_backward; derivatives.yaml's linalg_cross and trace).

A triangular solve is substitution, row by row over the whole batch (numpy has no trsm): a zero
on the diagonal gives inf/nan as torch's trsm does, where an LU solver would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import messages
from gradserve.surface.layout import broadcast_arrays, broadcast_shapes
from gradserve.surface.messages import TYPE_WORDS

from . import dtypes, errors, limits
from .ops_decomp import (
    MATRIX_WORK,
    check_matrix,
    check_square,
    first_failing,
    floating_rule,
    linalg_error,
    not_implemented,
)
from .ops_linalg import _broadcast_batch, _mT
from .registry import AttrSpec, defop, shapes_only

# Declared work of one substitution step (a row of X over the whole batch), besides its
# multiply-adds: numpy's per-call overhead, ~3.7 us a row on this VM, up to ~90,000 multiply-adds
# of a single-threaded product's time (bench/linalg.py: a (256, 256) triangular solve for 8
# columns took 14 times its multiply-adds' time before this was counted).
ROW_WORK = 131072

# --- solve: linalg_solve(A, B, left) -------------------------------------------------------------


def _vector_case(a_shape: Sequence[int], b_shape: Sequence[int]) -> bool:
    """torch's linalg_solve_is_vector_rhs: B is a (batch of) vector(s) when 1-D, or exactly A's
    shape without its last dim."""
    return len(b_shape) == 1 or (len(a_shape) - 1 == len(b_shape)
                                 and tuple(b_shape) == tuple(a_shape[:-1]))


def _rhs_check(fn: str, a_shape: Sequence[int], b_shape: Sequence[int], left: bool) -> None:
    n = a_shape[-1]
    rows, cols = b_shape[-2], b_shape[-1]
    if (rows if left else cols) != n:
        raise errors.InvalidArgumentError(
            f"{fn}: Incompatible shapes of A and B for the equation "
            f"{'AX = B' if left else 'XA = B'} ({n}x{n} and {rows}x{cols})")


@shapes_only
def _solve_shape(a: Any, b: Any, left: bool = True) -> tuple[int, ...]:
    fn = "linalg.solve"
    check_square(fn, a.shape)
    if b.ndim < 1:
        check_matrix(fn, b.shape, "B")
    vector = _vector_case(a.shape, b.shape)
    rhs = (*b.shape, 1) if vector else tuple(b.shape)
    _rhs_check(fn, a.shape, rhs, left)
    batch = _broadcast_batch(rhs[:-2], tuple(a.shape[:-2]))
    return (*batch, *rhs[-2:-1]) if vector else (*batch, *rhs[-2:])


def _word(t: Any) -> str:
    return TYPE_WORDS[t.dtype.name]


_FLOATING_SOLVE = floating_rule("linalg.solve")


def _solve_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    a, b = args
    _FLOATING_SOLVE((a,), attrs)
    if a.dtype is not b.dtype:
        raise errors.InvalidArgumentError(
            f"linalg.solve: Expected A and B to have the same dtype, but found A of type "
            f"{_word(a)} and B of type {_word(b)} instead")
    return None, a.dtype


def _solve(a: Any, b: Any, left: bool = True) -> Any:
    _solve_shape(a, b, left)
    vector = _vector_case(a.shape, b.shape)
    rhs = b[..., None] if vector else b
    lhs = a if left else np.swapaxes(a, -1, -2)
    if not left:
        rhs = np.swapaxes(rhs, -1, -2)
    if a.size == 0 or rhs.size == 0:
        x = np.zeros(broadcast_shapes(lhs.shape[:-2], rhs.shape[:-2]) + rhs.shape[-2:],
                     a.dtype)
    else:
        try:
            x = np.linalg.solve(lhs, rhs)
        except np.linalg.LinAlgError:
            raise _singular(a) from None
    if not left:
        x = np.swapaxes(x, -1, -2)
    return x[..., 0] if vector else x


def _singular(a: Any) -> errors.LinAlgError:
    """The error naming A's first singular matrix (in A's own batch)."""
    n = a.shape[-1]
    index = first_failing(a.reshape(-1, n, n), _solve_fails)
    return linalg_error("torch.linalg.solve", index, a.ndim > 2,
                        "The solver failed because the input matrix is singular.")


def _solve_fails(matrices: Any) -> bool:
    """Whether gesv finds an exactly singular matrix in the batch."""
    try:
        np.linalg.solve(matrices, np.ones((1, matrices.shape[-1], 1), matrices.dtype))
    except np.linalg.LinAlgError:
        return True
    return False


def _solve_grad_b(ns: Any, g: Any, a: Any, b: Any, left: bool) -> Any:
    """gB = A^-H gX (left) or gX A^-H, in the matrix form (a vector case's gX made a column)."""
    g_m = ns.unsqueeze(g, dim=-1) if _vector_case(a.shape, b.shape) else g
    return ns.linalg_solve(_mT(ns, a), g_m, left=left)


def _solve_vjp_a(ns: Any, g: Any, out: Any, a: Any, b: Any, left: bool) -> Any:
    g_b = _solve_grad_b(ns, g, a, b, left)
    x = ns.unsqueeze(out, dim=-1) if _vector_case(a.shape, b.shape) else out
    return -ns.matmul(g_b, _mT(ns, x)) if left else -ns.matmul(_mT(ns, x), g_b)


def _solve_vjp_b(ns: Any, g: Any, out: Any, a: Any, b: Any, left: bool) -> Any:
    g_b = _solve_grad_b(ns, g, a, b, left)
    return ns.squeeze(g_b, dim=-1) if _vector_case(a.shape, b.shape) else g_b


def _solve_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    """X, numpy's copies of A and B broadcast to the batch, and each matrix's LU (n^3) and
    substitutions (n^2 per column) as work."""
    a, b = args
    shape = _solve_shape(a, b, **attrs)
    item = out_dtype.np.itemsize
    n = a.shape[-1]
    x = limits.numel(shape)
    batch = max(1, x // max(1, n * (1 if _vector_case(a.shape, b.shape) else shape[-1])))
    scratch = (2 * x + batch * n * n) * item
    work = batch * n * n * (n + x // max(1, batch * n)) + (batch * MATRIX_WORK if x else 0)
    return limits.work_bound(limits.with_scratch(limits.shape_bound(shape, item), scratch),
                             work, True)


_LEFT = AttrSpec("left", "bool", True)
defop("linalg_solve", _solve, _solve_vjp_a, _solve_vjp_b, inputs=("A", "B"), attrs=(_LEFT,),
      dtype=_solve_dtype, saves=("A B.shape result", "A B.shape"),
      backward="LinalgSolveExBackward0", method=False, out_shape=_solve_shape,
      out_bound=_solve_bound,
      doc="the solution X of A X = B (X A = B with left=False), batches broadcast")

# --- solve_triangular: linalg_solve_triangular(A, B, upper, left, unitriangular) -----------------


@shapes_only
def _triangular_shape(a: Any, b: Any, upper: bool, left: bool = True,
                      unitriangular: bool = False) -> tuple[int, ...]:
    fn = "linalg.solve_triangular"
    check_matrix(fn, b.shape, "B")
    check_square(fn, a.shape)
    _rhs_check(fn, a.shape, b.shape, left)
    return (*_broadcast_batch(tuple(b.shape[:-2]), tuple(a.shape[:-2])), *b.shape[-2:])


def substitute(a: Any, b: Any, lower: bool, unit: bool) -> Any:
    """X with A X = B for triangular A (its other triangle ignored), batches broadcast: one
    row of X at a time, each from the rows already solved (IEEE arithmetic throughout)."""
    n = a.shape[-1]
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    dtype = np.result_type(a, b)
    x = np.empty((*batch, *b.shape[-2:]), dtype)
    rows = range(n) if lower else range(n - 1, -1, -1)
    for i in rows:
        done = slice(0, i) if lower else slice(i + 1, n)
        acc = b[..., i, :]
        if (i if lower else n - 1 - i) > 0:
            acc = acc - np.matmul(a[..., i:i + 1, done], x[..., done, :])[..., 0, :]
        x[..., i, :] = acc if unit else acc / a[..., i, i:i + 1]
    return x


def _triangular(a: Any, b: Any, upper: bool, left: bool = True,
                unitriangular: bool = False) -> Any:
    _triangular_shape(a, b, upper, left, unitriangular)
    if left:
        return substitute(a, b, not upper, unitriangular)
    # X A = B is A^T X^T = B^T: the transpose's triangle is the other one
    x = substitute(np.swapaxes(a, -1, -2), np.swapaxes(b, -1, -2), upper, unitriangular)
    return np.swapaxes(x, -1, -2)


def _triangular_grad_b(ns: Any, g: Any, a: Any, upper: bool, left: bool,
                       unitriangular: bool) -> Any:
    return ns.linalg_solve_triangular(_mT(ns, a), g, upper=not upper, left=left,
                                      unitriangular=unitriangular)


def _triangular_vjp_a(ns: Any, g: Any, out: Any, a: Any, b: Any, upper: bool, left: bool,
                      unitriangular: bool) -> Any:
    """-gB X^H (left) or -X^H gB, kept to A's triangle (strictly, when unitriangular)."""
    g_b = _triangular_grad_b(ns, g, a, upper, left, unitriangular)
    ga = -ns.matmul(g_b, _mT(ns, out)) if left else -ns.matmul(_mT(ns, out), g_b)
    k = int(unitriangular)
    return ns.triu(ga, diagonal=k) if upper else ns.tril(ga, diagonal=-k)


def _triangular_bound(args: Sequence[Any], attrs: Mapping[str, Any],
                      out_dtype: Any) -> limits.Bound:
    """X and one row's product; n multiply-adds per element of X, and n steps."""
    a = args[0]
    shape = _triangular_shape(*args, **attrs)
    item = out_dtype.np.itemsize
    n = a.shape[-1]
    bound = limits.with_scratch(limits.shape_bound(shape, item), 2 * limits.numel(shape) * item)
    return limits.work_bound(bound, (limits.numel(shape) + ROW_WORK) * n, True)


def _triangular_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    a = args[0]
    if a.dtype.category != 2:
        raise not_implemented("triangular_solve_cpu", a.dtype)
    return a.dtype, a.dtype


defop("linalg_solve_triangular", _triangular,
      lambda ns, g, out, a, b, upper, left, unitriangular: _triangular_vjp_a(
          ns, g, out, a, b, upper, left, unitriangular),
      lambda ns, g, out, a, b, upper, left, unitriangular: _triangular_grad_b(
          ns, g, a, upper, left, unitriangular),
      inputs=("A", "B"),
      attrs=(AttrSpec("upper", "bool", required=True), _LEFT,
             AttrSpec("unitriangular", "bool", False)),
      dtype=_triangular_dtype, saves=("A result", "A"), backward="LinalgSolveTriangularBackward0",
      method=False, out_shape=_triangular_shape, out_bound=_triangular_bound,
      doc="the solution X of A X = B (X A = B with left=False) for triangular A")

# --- cholesky_solve(B, L, upper): X with (L L^H) X = B -------------------------------------------


@shapes_only
def _cholesky_solve_shape(b: Any, u: Any, upper: bool = False) -> tuple[int, ...]:
    for name, t in (("b", b), ("u", u)):
        if t.ndim < 2:
            raise errors.InvalidArgumentError(
                f"{name} should have at least 2 dimensions, but has {t.ndim} dimensions instead")
    check_square("cholesky_solve", u.shape, prefix="")
    if b.shape[-2] != u.shape[-1]:
        raise errors.InvalidArgumentError(
            f"Incompatible matrix sizes for cholesky_solve: each A matrix is {u.shape[-1]} by "
            f"{u.shape[-1]} but each b matrix is {b.shape[-2]} by {b.shape[-1]}")
    return (*_broadcast_batch(tuple(b.shape[:-2]), tuple(u.shape[:-2])), *b.shape[-2:])


def _cholesky_solve(b: Any, u: Any, upper: bool = False) -> Any:
    _cholesky_solve_shape(b, u, upper)
    if upper:  # A = U^H U
        y = substitute(np.swapaxes(u, -1, -2), b, True, False)
        return substitute(u, y, False, False)
    y = substitute(u, b, True, False)
    return substitute(np.swapaxes(u, -1, -2), y, False, False)


def _cholesky_solve_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    b, u = args
    if b.dtype is not u.dtype:
        raise errors.InvalidArgumentError(
            f"Expected b and A to have the same dtype, but found b of type {_word(b)} and A of "
            f"type {_word(u)} instead.")
    if b.dtype.category != 2:
        raise not_implemented("cholesky_solve_cpu", b.dtype)
    return None, b.dtype


def _cholesky_solve_vjp_u(ns: Any, g: Any, out: Any, b: Any, u: Any, upper: bool) -> Any:
    """torch's cholesky_solve_backward for the factor: -(C + C^H) L (or -U (C + C^H)), with
    C = (A^-1 gX) X^H."""
    common = ns.matmul(ns.cholesky_solve(g, u, upper=upper), _mT(ns, out))
    common = common + _mT(ns, common)
    return -ns.matmul(u, common) if upper else -ns.matmul(common, u)


def _cholesky_solve_bound(args: Sequence[Any], attrs: Mapping[str, Any],
                          out_dtype: Any) -> limits.Bound:
    shape = _cholesky_solve_shape(*args, **attrs)
    item = out_dtype.np.itemsize
    n = args[1].shape[-1]
    bound = limits.with_scratch(limits.shape_bound(shape, item), 3 * limits.numel(shape) * item)
    return limits.work_bound(bound, 2 * (limits.numel(shape) + ROW_WORK) * n, True)


defop("cholesky_solve", _cholesky_solve,
      lambda ns, g, out, b, u, upper: ns.cholesky_solve(g, u, upper=upper),
      _cholesky_solve_vjp_u, inputs=("input", "input2"),
      attrs=(AttrSpec("upper", "bool", False),), dtype=_cholesky_solve_dtype,
      saves=("input2", "input2 result"), out_shape=_cholesky_solve_shape,
      out_bound=_cholesky_solve_bound,
      doc="the solution X of A X = B given A's Cholesky factor (input is B, input2 the factor)")

# --- cross: linalg_cross(input, other, dim) ------------------------------------------------------


@shapes_only
def cross_shape(x: Any, y: Any, dim: int = -1) -> tuple[int, ...]:
    """The broadcast shape, with torch's checks (same number of dims, length 3 at dim)."""
    if x.ndim != y.ndim:
        raise errors.InvalidArgumentError(
            "linalg.cross: inputs must have the same number of dimensions.")
    ndim = x.ndim
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not lo <= dim <= hi:
        raise errors.OutOfRangeIndexError(messages.dim_out_of_range(dim, lo, hi))
    axis = dim % max(ndim, 1)
    if ndim == 0 or x.shape[axis] != 3 or y.shape[axis] != 3:
        sizes = (x.shape[axis], y.shape[axis]) if ndim else (1, 1)
        raise errors.InvalidArgumentError(
            f"linalg.cross: inputs dimension {dim} must have length 3. Got {sizes[0]} and "
            f"{sizes[1]}")
    return _broadcast_batch(tuple(x.shape), tuple(y.shape))


def _cross(x: Any, y: Any, dim: int = -1) -> Any:
    cross_shape(x, y, dim)
    x, y = broadcast_arrays(x, y)
    return np.cross(x, y, axis=dim)


def _cross_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    x, y = args
    if x.dtype is not y.dtype:
        raise errors.InvalidArgumentError(
            f"expected scalar type {_word(x)} but found {_word(y)}")
    if x.dtype.category == 0:
        raise not_implemented("cross", x.dtype)
    return None, x.dtype


# derivatives.yaml: self: at::linalg_cross(other, grad, dim); other: at::linalg_cross(grad, self,
# dim)
defop("linalg_cross", _cross,
      lambda ns, g, out, x, y, dim: ns.linalg_cross(y, g, dim=dim),
      lambda ns, g, out, x, y, dim: ns.linalg_cross(g, x, dim=dim),
      inputs=("input", "other"), attrs=(AttrSpec("dim", "int", -1),), dtype=_cross_dtype,
      saves=("other", "input"), method=False, out_shape=cross_shape,
      doc="the cross product of 3-vectors along dim, broadcast (torch.linalg.cross, "
          "torch.cross)")


# --- trace(input): the sum of a matrix's diagonal ------------------------------------------------


@shapes_only
def _trace_shape(x: Any) -> tuple[int, ...]:
    if x.ndim != 2:
        raise errors.InvalidArgumentError(
            f"trace: expected a matrix, but got tensor with dim {x.ndim}")
    return ()


def _trace(x: Any) -> Any:
    _trace_shape(x)
    return np.trace(x)


def _trace_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """sum's: integers accumulate in int64; bool is refused (torch's kernel has none)."""
    d = args[0].dtype
    if d.category == 0:
        raise not_implemented("trace", d)
    return (None, d) if d.category == 2 else (dtypes.int64, dtypes.int64)


# derivatives.yaml: self: trace_backward(grad, self.sizes()), g on the diagonal, zeros elsewhere
defop("trace", _trace,
      lambda ns, g, out, x: ns.triu(ns.tril(ns.expand(g, size=tuple(x.shape)))),
      saves="input.shape", dtype=_trace_dtype, out_shape=_trace_shape,
      doc="the sum of a 2-D tensor's diagonal")
