"""Matrix decompositions on numpy.linalg (LAPACK): torch's `_linalg_svd`, `linalg_cholesky`
(and the deprecated `cholesky`), `linalg_inv`, with torch's checks, LinAlgError messages and
derivatives (FunctionsManual.cpp's svd_backward, cholesky_backward; derivatives.yaml's inverse).

Values differ from torch's by rounding (another LAPACK build), and singular vectors may differ
in sign (both are valid): compare reconstructions and sign-invariant quantities. Every op
declares its work (`limits.work_bound`, in floating multiply-adds): an O(n^3) factorization
cannot be interrupted once it runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface.messages import TYPE_WORDS

from . import errors, limits
from .ops_linalg import _mT
from .registry import AttrSpec, defop, shapes_only

# Declared work, in floating multiply-adds (a matrix product's), per m*n*min(m, n) of an SVD with
# its vectors (gesdd), per n^3 of an eigh (syevd), an inverse and a determinant (det, slogdet).
# bench/linalg.py measures each op's time per declared unit against a product's per multiply-add
# (n = 256, this loaded 2-core VM, numpy's OpenBLAS). With 16, 10, 2 and 1 the first run gave
# SVD 5.2, eigh 3.9, inverse 1.3, det 2.8 (slogdet 1.5 single-threaded); these constants leave
# room (multi-threaded OpenBLAS on a loaded machine is the slow case: SVD 17 ms with one thread,
# 95-350 ms with two).
SVD_WORK = 96
EIGH_WORK = 48
INV_WORK = 4
DET_WORK = 4
QR_WORK = 16  # per max(m, n)^2 * min(m, n): geqrf and orgqr (complete: an m x m Q)
# Declared work per matrix of a batch besides its multiply-adds: numpy calls LAPACK once per
# matrix and copies each in and out, ~30-1000 ns a matrix whatever its size (an SVD of 1x1
# matrices took 600 ns each, of 4x4 ones 1 us; an eigh of 2x2 ones 270 ns): 2**24 1x1 matrices
# made one SVD of 10.5 s of CPU, declared as 96 units each (~0.05 s). 2**15 units is ~1 us of
# a product's time, so the work limit lets ~2**21 matrices through in one op.
MATRIX_WORK = 1 << 15


# --- checks shared by the linear-algebra ops (torch's messages) ----------------------------------

def floating_rule(fn: str) -> Any:
    """A dtype rule: every input floating (torch's message naming `fn`), results in the first
    input's dtype."""
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
        for a in args:
            d = getattr(a, "dtype", None)
            if d is not None and d.category != 2:
                raise errors.InvalidArgumentError(
                    f"{fn}: Expected a floating point or complex tensor as input. Got "
                    f"{TYPE_WORDS[d.name]}")
        return None, args[0].dtype
    return rule


def check_matrix(fn: str, shape: Sequence[int], name: str = "A") -> None:
    """At least 2 dims (torch's checkIsMatrix)."""
    if len(shape) < 2:
        raise errors.InvalidArgumentError(
            f"{fn}: The input tensor {name} must have at least 2 dimensions.")


def check_square(fn: str, shape: Sequence[int], prefix: str | None = None) -> None:
    """A batch of square matrices (torch's squareCheckInputs); `prefix` replaces "fn: "."""
    check_matrix(fn, shape)
    if shape[-1] != shape[-2]:
        head = f"{fn}: " if prefix is None else prefix
        raise errors.InvalidArgumentError(
            f"{head}A must be batches of square matrices, but they are {shape[-2]} by "
            f"{shape[-1]} matrices")


def not_implemented(kernel: str, dtype: Any) -> errors.NotImplementedFunctionError:
    """torch's dispatch error for a kernel without this dtype ("linalg_eigh_cpu" for Long)."""
    return errors.NotImplementedFunctionError(
        f"\"{kernel}\" not implemented for '{TYPE_WORDS[dtype.name]}'")


def linalg_error(fn: str, index: int, batched: bool, text: str) -> errors.LinAlgError:
    """torch's _linalg_check_errors text: batch element `index` (named when `batched`)."""
    where = f"(Batch element {index}): " if batched else ""
    return errors.LinAlgError(f"{fn}: {where}{text}")


def batch_of(shape: Sequence[int]) -> int:
    """The number of matrices in a batch of this shape."""
    return limits.numel(tuple(shape[:-2]))


def lapack_work(shape: Sequence[int], per_matrix: int) -> int:
    """The declared work of an op calling LAPACK once per matrix of a batch of `shape`:
    `per_matrix` multiply-adds and `MATRIX_WORK` for each (none for an empty input: LAPACK is
    not called)."""
    if not limits.numel(tuple(shape)):
        return 0
    return batch_of(shape) * (per_matrix + MATRIX_WORK)


def first_failing(matrices: Any, fails: Any) -> int:
    """The index of the first matrix of `matrices` (a (batch, n, n) array holding at least one
    for which `fails` holds) for which `fails` holds, where `fails(block)` checks a block of
    matrices in one batched numpy call (true when any of them fails). The range known to hold
    one is halved until one matrix is left: at most one more call's work on the whole batch, in
    log2(batch) calls (a call per matrix took ~5 us each: 2**24 matrices, ~100 s in one op)."""
    lo, hi = 0, len(matrices)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(matrices[lo:mid]):
            hi = mid
        else:
            lo = mid
    return lo


def _given(g: Any) -> bool:
    """Whether an output's gradient was given: the engine hands a multi-output node zeros for an
    output that got none (a constant, all zero), where torch's formulas see an undefined
    gradient and take a shorter path (svdvals: U diag(gS) Vh, finite for repeated values)."""
    if getattr(g, "requires_grad", False):
        return True
    return bool(np.any(getattr(g, "_data", g)))


# --- svd: _linalg_svd(A, full_matrices) -> (U, S, Vh) --------------------------------------------

@shapes_only
def svd_shapes(a: Any, full_matrices: bool = True) -> tuple[tuple[int, ...], ...]:
    """The shapes of U, S and Vh."""
    check_matrix("linalg.svd", a.shape)
    *batch, m, n = a.shape
    k = min(m, n)
    if full_matrices:
        return (*batch, m, m), (*batch, k), (*batch, n, n)
    return (*batch, m, k), (*batch, k), (*batch, k, n)


def _svd(a: Any, full_matrices: bool = True) -> tuple[Any, Any, Any]:
    u_shape, s_shape, vh_shape = svd_shapes(a, full_matrices)
    if a.size == 0:  # LAPACK is not called: empty factors, identities for full square ones
        return (np.broadcast_to(np.eye(*u_shape[-2:], dtype=a.dtype), u_shape).copy(),
                np.zeros(s_shape, a.dtype),
                np.broadcast_to(np.eye(*vh_shape[-2:], dtype=a.dtype), vh_shape).copy())
    if not np.isfinite(a).all():
        raise errors.LinAlgError("linalg.svd: The algorithm failed to converge because the input "
                                 "matrix contained non-finite values.")
    try:
        u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    except np.linalg.LinAlgError:
        raise errors.LinAlgError(
            "linalg.svd: The algorithm failed to converge because the input matrix is "
            "ill-conditioned or has too many repeated singular values") from None
    return u, s, vh


def _first(ns: Any, t: Any, dim: int, k: int) -> Any:
    """The first k entries of t along dim (torch's narrow)."""
    return t if t.shape[dim] == k else ns.slice(t, dim=dim, start=0, end=k)


def _svd_vjp(ns: Any, g: Any, out: Any, a: Any, full_matrices: bool) -> Any:
    """torch's svd_backward (full_matrices: the extra columns of U and rows of Vh and their
    gradients dropped first, as derivatives.yaml narrows them)."""
    g_u, g_s, g_vh = g
    u, s, vh = out
    k = s.shape[-1]
    has_u, has_v, has_s = _given(g_u), _given(g_vh), _given(g_s)
    if full_matrices:
        u, vh = _first(ns, u, -1, k), _first(ns, vh, -2, k)
        g_u, g_vh = _first(ns, g_u, -1, k), _first(ns, g_vh, -2, k)
    m, n = u.shape[-2], vh.shape[-1]
    if not has_u and not has_v:  # svdvals' gradient: U diag(gS) Vh
        if m >= n:
            return ns.matmul(u, ns.unsqueeze(g_s, dim=-1) * vh)
        return ns.matmul(u * ns.unsqueeze(g_s, dim=-2), vh)
    s_row, s_col = ns.unsqueeze(s, dim=-2), ns.unsqueeze(s, dim=-1)
    s2 = s * s
    # E[j, k] = S_k^2 - S_j^2, 1 on the diagonal (only ever divided into zeros there)
    e = ns.unsqueeze(s2, dim=-2) - ns.unsqueeze(s2, dim=-1) + ns.diag_embed(ns.ones_like(s))
    if has_u:
        uhgu = ns.matmul(_mT(ns, u), g_u)
        uhgu = uhgu - _mT(ns, uhgu)
    if has_v:
        vhgv = ns.matmul(vh, _mT(ns, g_vh))
        vhgv = vhgv - _mT(ns, vhgv)
    if has_u and has_v:
        inner = (uhgu * s_row + s_col * vhgv) / e
    elif has_v:
        inner = s_col * vhgv / e
    else:
        inner = uhgu * s_row / e
    if has_s:
        inner = inner + ns.diag_embed(g_s)
    if m > n and has_u:  # U [inner + (I - U U^H) gU S^-1 ...] V^H
        ga = ns.matmul(u, inner)
        gu_sinv = g_u / s_row
        ga = ga + gu_sinv - ns.matmul(u, ns.matmul(_mT(ns, u), gu_sinv))
        return ns.matmul(ga, vh)
    if m < n and has_v:
        ga = ns.matmul(inner, vh)
        sinv_gvh = g_vh / s_col
        ga = ga + sinv_gvh - ns.matmul(ns.matmul(sinv_gvh, _mT(ns, vh)), vh)
        return ns.matmul(u, ga)
    if m >= n:
        return ns.matmul(u, ns.matmul(inner, vh))
    return ns.matmul(ns.matmul(u, inner), vh)


@shapes_only
def _svd_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    """U, S, Vh, LAPACK's workspace (a few copies of the input and the factors), and
    SVD_WORK * m * n * min(m, n) multiply-adds per matrix."""
    a = args[0]
    shapes = svd_shapes(a, **attrs)
    item = out_dtype.np.itemsize
    bound = limits.shapes_bound(shapes, item)
    *_, m, n = a.shape
    scratch = 3 * (limits.numel(tuple(a.shape)) + sum(limits.numel(s) for s in shapes)) * item
    work = lapack_work(a.shape, SVD_WORK * m * n * min(m, n))
    return limits.work_bound(limits.with_scratch(bound, scratch), work, True)


defop("_linalg_svd", _svd, _svd_vjp, inputs=("A",),
      attrs=(AttrSpec("full_matrices", "bool", True),), n_outputs=3,
      dtype=floating_rule("linalg.svd"), backward="LinalgSvdBackward0", saves="result",
      method=False, out_bound=_svd_bound,
      doc="singular value decomposition A = U diag(S) Vh (torch.linalg.svd, svdvals, "
          "torch.svd)")

# --- cholesky: linalg_cholesky(A, upper) and the deprecated cholesky(A, upper) -------------------


def _factors(a: Any) -> bool:
    """Whether potrf factors a matrix (every matrix of a batch): numpy raises for a pivot
    <= 0, and a NaN pivot (which potrf refuses too) leaves NaN in its factor."""
    try:
        return bool(np.isfinite(np.linalg.cholesky(a)).all())
    except np.linalg.LinAlgError:
        return False


def _leading_order(a: Any) -> int:
    """The order of the first leading minor of `a` (one matrix, not positive-definite) that is
    not positive-definite: the first pivot potrf refuses. A leading block is positive-definite
    only if every smaller one is, so a bisection over the orders finds it."""
    lo, hi = 1, a.shape[-1]  # the whole matrix fails
    while lo < hi:
        mid = (lo + hi) // 2
        if _factors(a[:mid, :mid]):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _not_positive_definite(fn: str, a: Any) -> errors.LinAlgError:
    """The error for the first matrix of the batch `a` (lower triangles read) that fails."""
    n = a.shape[-1]
    matrices = a.reshape(-1, n, n)
    if _factors(matrices):
        return errors.LinAlgError(f"{fn}: The factorization could not be completed")
    index = first_failing(matrices, lambda block: not _factors(block))
    return linalg_error(fn, index, a.ndim > 2,
                        "The factorization could not be completed because the input is not "
                        "positive-definite (the leading minor of order "
                        f"{_leading_order(matrices[index])} is not positive-definite).")


def _cholesky(fn: str) -> Any:
    def forward(a: Any, upper: bool = False) -> Any:
        check_square(fn, a.shape)
        if a.size == 0:
            return np.zeros_like(a)
        # potrf reads one triangle: the lower one, or (upper) the upper one, which is the lower
        # one of the transpose
        src = np.swapaxes(a, -1, -2) if upper else a
        try:
            low = np.linalg.cholesky(src)
        except np.linalg.LinAlgError:
            raise _not_positive_definite(fn, src) from None
        if not np.isfinite(low).all() and not np.isfinite(src).all():
            raise _not_positive_definite(fn, src)
        return np.ascontiguousarray(np.swapaxes(low, -1, -2)) if upper else low
    return forward


def _cholesky_vjp(ns: Any, g: Any, out: Any, a: Any, upper: bool = False) -> Any:
    """torch's cholesky_backward: gA = L^-H Phi(L^H gL) L^-1, Phi taking the lower triangle
    with its diagonal halved, symmetrized (the gradient is a symmetric matrix)."""
    low, g_low = (_mT(ns, out), _mT(ns, g)) if upper else (out, g)
    ga = ns.tril(ns.matmul(_mT(ns, low), g_low))
    ga = 0.5 * (ga + _mT(ns, ns.tril(ga, diagonal=-1)))
    ga = ns.linalg_solve_triangular(_mT(ns, low), ga, upper=True, left=True)
    return ns.linalg_solve_triangular(low, ga, upper=False, left=False)


def _cholesky_bound(fn: str) -> Any:
    @shapes_only
    def bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
        """The factor and a copy; n^3 multiply-adds per matrix (with the bisection that finds a
        failing minor: a few more factorizations of smaller blocks)."""
        shape = tuple(args[0].shape)
        check_square(fn, shape)
        n = shape[-1]
        item = out_dtype.np.itemsize
        result = limits.with_scratch(limits.shape_bound(shape, item),
                                     2 * limits.numel(shape) * item)
        return limits.work_bound(result, lapack_work(shape, n ** 3 * max(1, n.bit_length())),
                                 True)
    return bound


_UPPER = (AttrSpec("upper", "bool", False),)
defop("linalg_cholesky", _cholesky("linalg.cholesky"), _cholesky_vjp, inputs=("A",),
      attrs=_UPPER, dtype=floating_rule("linalg.cholesky"), saves="result",
      backward="LinalgCholeskyExBackward0", method=False,
      out_bound=_cholesky_bound("linalg.cholesky"),
      doc="the Cholesky factor L of a symmetric positive-definite A = L L^H (U^H U if upper)")
defop("cholesky", _cholesky("cholesky"), _cholesky_vjp, attrs=_UPPER,
      dtype=floating_rule("cholesky"), saves="result", backward="CholeskyBackward0",
      out_bound=_cholesky_bound("cholesky"),
      doc="torch.cholesky (deprecated by torch for linalg.cholesky): the same factor")

# --- inverse: linalg_inv(A) ----------------------------------------------------------------------


#: Columns eliminated one at a time before the rest of the matrix is updated by one product
#: (`_zero_pivot`). Eliminating each column into the whole rest, n numpy steps of O(n^2), took
#: 16.6 s for a singular (2580, 2580) matrix (its inverse, declared as ~2 s, took 0.8 s).
_PANEL = 64


def _zero_pivot(a: Any) -> int:
    """The 1-based index of the first zero diagonal element of U in getrf's A = P L U (partial
    pivoting) of one singular matrix (torch's message names it). Blocked as getrf is: each
    panel of `_PANEL` columns is eliminated column by column, then the rows it pivoted get
    their U part by substitution and the rest is updated by one matrix product (a matrix of
    at most `_PANEL` columns is eliminated exactly as one column at a time)."""
    lu = np.array(a, dtype=np.float64)
    n = lu.shape[-1]
    for j0 in range(0, n, _PANEL):
        j1 = min(n, j0 + _PANEL)
        for j in range(j0, j1):
            p = j + int(np.argmax(np.abs(lu[j:, j])))
            if lu[p, j] == 0:
                return j + 1
            if p != j:
                lu[[j, p]] = lu[[p, j]]
            lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:j1] -= np.outer(lu[j + 1:, j], lu[j, j + 1:j1])
        if j1 < n:  # U12 = L11^-1 A12 row by row (L11 unit lower), then A22 -= L21 U12
            for i in range(j0 + 1, j1):
                lu[i, j1:] -= lu[i, j0:i] @ lu[j0:i, j1:]
            lu[j1:, j1:] -= lu[j1:, j0:j1] @ lu[j0:j1, j1:]
    return n


def _inv(a: Any) -> Any:
    check_square("linalg.inv", a.shape)
    if a.size == 0:
        return np.zeros_like(a)
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        pass
    n = a.shape[-1]
    matrices = a.reshape(-1, n, n)
    index = first_failing(matrices, _inverse_fails)
    raise linalg_error(
        "linalg.inv", index, a.ndim > 2,
        f"The diagonal element {_zero_pivot(matrices[index])} is zero, the inversion could not "
        "be completed because the input matrix is singular.")


def _inverse_fails(matrices: Any) -> bool:
    """Whether getrf finds an exactly singular matrix in the batch."""
    try:
        np.linalg.inv(matrices)
    except np.linalg.LinAlgError:
        return True
    return False


@shapes_only
def _inv_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    shape = tuple(args[0].shape)
    check_square("linalg.inv", shape)
    item = out_dtype.np.itemsize
    result = limits.with_scratch(limits.shape_bound(shape, item), 2 * limits.numel(shape) * item)
    return limits.work_bound(result, lapack_work(shape, INV_WORK * shape[-1] ** 3), True)


# derivatives.yaml: A: -at::matmul(inverse.mH(), at::matmul(grad, inverse.mH()))
defop("linalg_inv", _inv,
      lambda ns, g, out, a: -ns.matmul(_mT(ns, out), ns.matmul(g, _mT(ns, out))),
      inputs=("A",), dtype=floating_rule("linalg.inv"), saves="result",
      backward="LinalgInvExBackward0", method=False, out_bound=_inv_bound,
      doc="the inverse of each square matrix (torch.linalg.inv, torch.inverse)")

# --- determinants: linalg_det(A), linalg_slogdet(A) -> (sign, logabsdet) -------------------------


@shapes_only
def _det_shape(a: Any) -> tuple[int, ...]:
    check_square("linalg.det", a.shape)
    return tuple(a.shape[:-2])


def _det(a: Any) -> Any:
    _det_shape(a)
    return np.linalg.det(a) if a.size else np.ones(a.shape[:-2], a.dtype)


def _except_each(ns: Any, s: Any) -> Any:
    """prod_{j != i} s_j for each i (zeros kept: no division)."""
    eye = ns.diag_embed(ns.ones_like(s))
    return ns.prod(ns.unsqueeze(s, dim=-2) * (1.0 - eye) + eye, dim=-1)


def _det_vjp(ns: Any, g: Any, out: Any, a: Any) -> Any:
    """torch's linalg_det_backward: (g det) A^-H, by a solve when every matrix is invertible,
    else by an SVD, U diag(g det det(U) det(Vh) prod_{j != i} s_j) Vh (zero for a singular
    matrix, whose det is 0, as torch's)."""
    scale = g * out
    if np.all(getattr(out, "_data", out) != 0):
        n = a.shape[-1]
        eye = ns.diag_embed(ns.expand(ns.unsqueeze(scale, dim=-1), size=(*scale.shape, n)))
        return ns.linalg_solve(_mT(ns, a), eye)
    u, s, vh = ns._linalg_svd(a, full_matrices=False)
    alpha = ns.linalg_det(u) * ns.linalg_det(vh)
    d = ns.unsqueeze(scale * alpha, dim=-1) * _except_each(ns, s)
    return ns.matmul(u * ns.unsqueeze(d, dim=-2), vh)


@shapes_only
def _det_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    shape = tuple(args[0].shape)
    item = out_dtype.np.itemsize
    result = limits.with_scratch(limits.shape_bound(_det_shape(args[0]), item),
                                 2 * limits.numel(shape) * item)
    return limits.work_bound(result, lapack_work(shape, DET_WORK * shape[-1] ** 3), True)


defop("linalg_det", _det, _det_vjp, inputs=("A",), dtype=floating_rule("linalg.det"),
      saves="A result", backward="LinalgDetBackward0", method=False, out_bound=_det_bound,
      doc="the determinant of each square matrix (torch.linalg.det, torch.det)")


@shapes_only
def _slogdet_bound(args: Sequence[Any], attrs: Mapping[str, Any],
                   out_dtype: Any) -> limits.Bound:
    shape = tuple(args[0].shape)
    check_square("linalg.slogdet", shape)
    item = out_dtype.np.itemsize
    result = limits.with_scratch(limits.shapes_bound((shape[:-2], shape[:-2]), item),
                                 2 * limits.numel(shape) * item)
    return limits.work_bound(result, lapack_work(shape, DET_WORK * shape[-1] ** 3), True)


def _slogdet(a: Any) -> tuple[Any, Any]:
    check_square("linalg.slogdet", a.shape)
    if a.size == 0:
        return np.ones(a.shape[:-2], a.dtype), np.zeros(a.shape[:-2], a.dtype)
    sign, logabsdet = np.linalg.slogdet(a)
    return sign.astype(a.dtype, copy=False), logabsdet.astype(a.dtype, copy=False)


def _slogdet_vjp(ns: Any, g: Any, out: Any, a: Any) -> Any:
    """torch's slogdet_backward for real A: g_logabsdet A^-H (the sign has no derivative)."""
    g_log = g[1]
    n = a.shape[-1]
    eye = ns.diag_embed(ns.expand(ns.unsqueeze(g_log, dim=-1), size=(*g_log.shape, n)))
    return ns.linalg_solve(_mT(ns, a), eye)


defop("linalg_slogdet", _slogdet, _slogdet_vjp, inputs=("A",), n_outputs=2,
      dtype=floating_rule("linalg.slogdet"), saves="A", backward="LinalgSlogdetBackward0",
      method=False, out_bound=_slogdet_bound,
      doc="the sign and the log of the absolute value of each determinant (torch.linalg.slogdet, "
          "torch.slogdet, torch.logdet)")

# --- eigh: _linalg_eigh(A, UPLO) -> (eigenvalues, eigenvectors) ----------------------------------

@shapes_only
def _eigh_shapes(a: Any, UPLO: str = "L") -> tuple[tuple[int, ...], tuple[int, ...]]:  # noqa: N803
    if UPLO not in ("L", "U"):
        raise errors.InvalidArgumentError(
            f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")
    check_square("linalg.eigh", a.shape)
    return tuple(a.shape[:-1]), tuple(a.shape)


def _eigh(a: Any, UPLO: str = "L") -> tuple[Any, Any]:  # noqa: N803
    values_shape, _ = _eigh_shapes(a, UPLO)
    if a.size == 0:
        return np.zeros(values_shape, a.dtype), np.zeros_like(a)
    try:
        values, vectors = np.linalg.eigh(a, UPLO="L" if UPLO == "L" else "U")
        return values, vectors
    except np.linalg.LinAlgError:
        raise errors.LinAlgError(
            "linalg.eigh: The algorithm failed to converge because the input matrix is "
            "ill-conditioned or has too many repeated eigenvalues") from None


def _eigh_vjp(ns: Any, g: Any, out: Any, a: Any, UPLO: str) -> Any:  # noqa: N803
    """torch's linalg_eig_backward for a Hermitian A: V (skew(V^H gV) / 2 / E, gL on the
    diagonal) V^H with E[i, j] = L_j - L_i; V diag(gL) V^H without an eigenvector gradient."""
    g_values, g_vectors = g
    values, vectors = out
    vt = _mT(ns, vectors)
    if not _given(g_vectors):
        return ns.matmul(vectors * ns.unsqueeze(g_values, dim=-2), vt)
    vhgv = ns.matmul(vt, g_vectors)
    vhgv = 0.5 * (vhgv - _mT(ns, vhgv))
    eye = ns.diag_embed(ns.ones_like(values))
    e = ns.unsqueeze(values, dim=-2) - ns.unsqueeze(values, dim=-1) + eye
    inner = vhgv / e
    if _given(g_values):  # the diagonal (zero: skew) replaced by gL
        inner = inner + ns.diag_embed(g_values)
    return ns.matmul(vectors, ns.matmul(inner, vt))


@shapes_only
def _eigh_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    shapes = _eigh_shapes(args[0], **attrs)
    item = out_dtype.np.itemsize
    shape = shapes[1]
    result = limits.with_scratch(limits.shapes_bound(shapes, item), 3 * limits.numel(shape) * item)
    return limits.work_bound(result, lapack_work(shape, EIGH_WORK * shape[-1] ** 3), True)


def _eigh_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    d = args[0].dtype
    if d.category != 2:
        raise not_implemented("linalg_eigh_cpu", d)
    return None, d


defop("_linalg_eigh", _eigh, _eigh_vjp, inputs=("A",), n_outputs=2,
      attrs=(AttrSpec("UPLO", "str", "L"),), dtype=_eigh_dtype, saves="result",
      backward="LinalgEighBackward0", method=False, out_bound=_eigh_bound,
      doc="eigenvalues (ascending) and eigenvectors of symmetric matrices, one triangle read "
          "(torch.linalg.eigh, eigvalsh)")

# --- qr: linalg_qr(A, mode) -> (Q, R) ------------------------------------------------------------

QR_MODES = ("reduced", "complete", "r")


@shapes_only
def _qr_shapes(a: Any, mode: str = "reduced") -> tuple[tuple[int, ...], tuple[int, ...]]:
    if mode not in QR_MODES:
        raise errors.InvalidArgumentError(
            f"qr received unrecognized mode '{mode}' but expected one of 'reduced' (default), "
            "'r', or 'complete'")
    check_matrix("linalg.qr", a.shape)
    *batch, m, n = a.shape
    k = m if mode == "complete" else min(m, n)
    q = (0,) if mode == "r" else (*batch, m, k)
    return q, (*batch, k, n)


def _qr(a: Any, mode: str = "reduced") -> tuple[Any, Any]:
    q_shape, r_shape = _qr_shapes(a, mode)
    if a.size == 0:  # no reflectors: Q is the identity's first columns, R empty or zeros
        q = np.zeros(q_shape, a.dtype)
        if mode != "r":
            q = np.broadcast_to(np.eye(*q_shape[-2:], dtype=a.dtype), q_shape).copy()
        return q, np.zeros(r_shape, a.dtype)
    if mode == "r":
        return np.zeros((0,), a.dtype), np.linalg.qr(a, mode="r")
    q, r = np.linalg.qr(a, mode="complete" if mode == "complete" else "reduced")
    return q, r


def _qr_tall(ns: Any, g_q: Any, g_r: Any, q: Any, r: Any) -> Any:
    """A = QR with as many columns as R: gA = (gQ + Q copyltu(M)) R^-H, M = R gR^H - gQ^H Q,
    copyltu(M) the lower triangle mirrored to the upper one."""
    m = ns.matmul(r, _mT(ns, g_r)) - ns.matmul(_mT(ns, g_q), q)
    sym = ns.tril(m) + _mT(ns, ns.tril(m, diagonal=-1))
    return ns.linalg_solve_triangular(_mT(ns, r), g_q + ns.matmul(q, sym), upper=False,
                                      left=False)


def _qr_vjp(ns: Any, g: Any, out: Any, a: Any, mode: str) -> Any:
    """torch's linalg_qr_backward: the tall case above; a wide A = Q [R1 | R2] is its first m
    columns X = Q R1 (Q's gradient gaining Y gR2^H, Y = Q R2 the other columns) and Y."""
    if mode == "r":
        raise errors.InvalidArgumentError(
            "The derivative of linalg.qr depends on Q, which is not computed when mode='r'. "
            "Please use linalg.qr(A, mode='reduced') if you are going to differentiate through "
            "linalg.qr.")
    g_q, g_r = g
    q, r = out
    m, n = q.shape[-2], r.shape[-1]
    if mode == "complete" and m > n:
        raise errors.InvalidArgumentError(
            "The QR decomposition is not differentiable when mode='complete' and nrows > ncols.")
    if m >= n:
        return _qr_tall(ns, g_q, g_r, q, r)
    r1, r2 = ns.slice(r, dim=-1, start=0, end=m), ns.slice(r, dim=-1, start=m, end=n)
    g_r1, g_r2 = ns.slice(g_r, dim=-1, start=0, end=m), ns.slice(g_r, dim=-1, start=m, end=n)
    y = ns.matmul(q, r2)
    g_x = _qr_tall(ns, g_q + ns.matmul(y, _mT(ns, g_r2)), g_r1, q, r1)
    return ns.cat([g_x, ns.matmul(q, g_r2)], dim=-1)


@shapes_only
def _qr_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    shapes = _qr_shapes(args[0], **attrs)
    shape = tuple(args[0].shape)
    item = out_dtype.np.itemsize
    *_, m, n = shape
    result = limits.with_scratch(limits.shapes_bound(shapes, item),
                                 3 * (limits.numel(shape) + limits.numel(shapes[0])) * item)
    return limits.work_bound(result, lapack_work(shape, QR_WORK * max(m, n) ** 2 * min(m, n)),
                             True)


defop("linalg_qr", _qr, _qr_vjp, inputs=("A",), n_outputs=2,
      attrs=(AttrSpec("mode", "str", "reduced"),), dtype=floating_rule("linalg.qr"),
      saves="result", backward="LinalgQrBackward0", method=False, out_bound=_qr_bound,
      doc="QR decomposition A = QR, Q with orthonormal columns, R upper triangular "
          "(torch.linalg.qr, torch.qr)")

# --- pinv: linalg_pinv(A, atol, rtol, hermitian) -------------------------------------------------


def _pinv(a: Any, atol: float | None = None, rtol: float | None = None,
          hermitian: bool = False) -> Any:
    """torch's linalg_pinv: through an SVD (an eigh if hermitian), singular values at or below
    max(atol, rtol * the largest) dropped; rtol defaults to eps * max(m, n), or to 0 when a
    positive atol is given."""
    *batch, m, n = a.shape
    if a.size == 0:
        return np.zeros((*batch, n, m), a.dtype)
    if rtol is None:
        rtol = 0.0 if atol is not None and atol > 0 else float(np.finfo(a.dtype).eps) * max(m, n)
    if hermitian:
        s, u = np.linalg.eigh(a)
        largest = np.abs(s).max(axis=-1, keepdims=True)
        kept = np.abs(s) > np.maximum(atol or 0.0, rtol * largest)
        with np.errstate(divide="ignore"):
            s_inv = np.where(kept, 1 / s, 0).astype(a.dtype)
        return np.matmul(u * s_inv[..., None, :], np.swapaxes(u, -1, -2))
    u, s, vh = _svd(a, False)
    kept = s > np.maximum(atol or 0.0, rtol * s[..., :1])
    with np.errstate(divide="ignore"):
        s_inv = np.where(kept, 1 / s, 0).astype(a.dtype)
    return np.matmul(np.swapaxes(vh, -1, -2) * s_inv[..., None, :], np.swapaxes(u, -1, -2))


def _pinv_vjp(ns: Any, g: Any, out: Any, a: Any, atol: Any, rtol: Any, hermitian: bool) -> Any:
    """torch's pinv_backward, its products arranged to keep the smaller dimension inside."""
    m, n = a.shape[-2], a.shape[-1]
    p, p_t, g_t = out, _mT(ns, out), _mT(ns, g)
    if m <= n:
        k = ns.matmul(g_t, p)
        k_pt = ns.matmul(k, p_t)
        return (-_mT(ns, ns.matmul(p, k)) + k_pt - ns.matmul(ns.matmul(a, p), k_pt)
                + ns.matmul(ns.matmul(p_t, p), g_t - ns.matmul(k, a)))
    k = ns.matmul(p, g_t)
    pt_k = ns.matmul(p_t, k)
    return (-_mT(ns, ns.matmul(k, p)) + ns.matmul(ns.matmul(g_t - ns.matmul(a, k), p), p_t)
            + pt_k - ns.matmul(ns.matmul(pt_k, p), a))


@shapes_only
def _pinv_shape(a: Any, atol: Any = None, rtol: Any = None,
                hermitian: bool = False) -> tuple[int, ...]:
    if hermitian:
        check_square("linalg.eigh", a.shape)
    return (*a.shape[:-2], a.shape[-1], a.shape[-2])


@shapes_only
def _pinv_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    """The result, the SVD's factors and workspace, and the SVD's work and one product's."""
    a = args[0]
    shape = _pinv_shape(a, **attrs)
    item = out_dtype.np.itemsize
    *_, m, n = a.shape
    scratch = 6 * (limits.numel(tuple(a.shape)) + batch_of(a.shape) * min(m, n) ** 2) * item
    work = lapack_work(a.shape, (SVD_WORK + 1) * m * n * min(m, n))
    return limits.work_bound(limits.with_scratch(limits.shape_bound(shape, item), scratch), work,
                             True)


def _pinv_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    a = args[0]
    if a.dtype.category != 2 or a.ndim < 2:
        raise errors.InvalidArgumentError(
            f"linalg.pinv({TYPE_WORDS[a.dtype.name]}{{[{', '.join(map(str, a.shape))}]}}): "
            "expected a tensor with 2 or more dimensions of float, double, cfloat or cdouble "
            "types")
    return None, a.dtype


defop("linalg_pinv", _pinv, _pinv_vjp, inputs=("A",),
      attrs=(AttrSpec("atol", "optional_float", None), AttrSpec("rtol", "optional_float", None),
             AttrSpec("hermitian", "bool", False)),
      dtype=_pinv_dtype, saves="A result", backward="LinalgPinvBackward0", method=False,
      out_shape=_pinv_shape, out_bound=_pinv_bound,
      doc="the Moore-Penrose pseudo-inverse (torch.linalg.pinv, torch.pinverse)")
