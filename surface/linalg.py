"""`torch.linalg`'s norms (and its `matmul` alias) and `torch.norm`, written once against a
`Backend`.

torch composes them from two kernels, and so do we, so the graphs are torch's: a vector norm is
the `norm` op (LinalgVectorNormBackward0); a matrix 1/-1/inf/-inf norm is the vector 1-norm over
one dim, then `amax`/`amin` over the other (torch's linalg_matrix_norm); 'fro' is the vector
2-norm over both dims; the spectral norms (ord 2, -2, 'nuc') are the amax, amin or sum of the
singular values (`linalg.svdvals`) of the matrices moved to the last dims, as torch's.

`namespace(be)` is `torch.linalg` for one backend (the engine's, or a session's); `norm` is
registered as the spelling `torch.norm` / `Tensor.norm`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from . import messages, out_arg
from .backend import Backend
from .results import (
    LinalgEighResult,
    LinalgQrResult,
    LinalgSlogdetResult,
    LinalgSvdResult,
    QrResult,
    SlogdetResult,
    SvdResult,
)
from .spellings import _register, is_int, wrap_dim


class LinAlgError(RuntimeError):
    """torch.linalg.LinAlgError: a matrix is singular, not positive-definite, or a decomposition
    did not converge (the engine raises its subclass; a session re-raises this class)."""


def _dim_list(dim: Any) -> list[int] | None:
    if dim is None:
        return None
    return [dim] if is_int(dim) else list(dim)


def _vector(be: Backend, x: Any, ord: Any, dim: Any, keepdim: bool, dtype: Any) -> Any:
    kwargs = {} if dtype is None else {"dtype": dtype}
    return be.call("norm", (x, float(ord), dim, bool(keepdim)), kwargs)


def vector_norm(be: Backend, x: Any, ord: Any = 2, dim: Any = None, keepdim: bool = False, *,
                dtype: Any = None, out: Any = None) -> Any:
    """torch.linalg.vector_norm: the ord-norm of x's elements over dim (all if None).

    Args:
        x: a floating tensor.
        ord: a number (inf, -inf and 0 included).
        dim: an int, a sequence of ints, or None for every dim.
        keepdim: keep the reduced dims as size 1.
        dtype: compute and return in this floating dtype (the input is cast first).
        out: a tensor to write the norm into (see `out_arg`).
    Returns:
        The norm, with grad_fn LinalgVectorNormBackward0 (or `out`).
    Raises:
        TypeError: ord is not a number.
        RuntimeError: x or dtype is not floating.
    """
    if isinstance(ord, (str, bool)) or not isinstance(ord, (int, float)):
        raise be.type_error(f"linalg_vector_norm(): argument 'ord' (position 2) must be Number, "
                            f"not {type(ord).__name__}")
    if out is not None:
        return out_arg.call_with_out(be, "linalg_vector_norm", _vector, out,
                                     (be, x, ord, dim, keepdim, dtype), {})
    return _vector(be, x, ord, dim, keepdim, dtype)


def _matrix_dims(be: Backend, x: Any, dim: Any) -> tuple[list[int], int]:
    ndim = len(be.shape(x))
    if ndim < 2:
        raise be.runtime_error(
            "linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    if be.dtype_name(x) not in ("float32", "float64"):
        raise be.runtime_error("linalg.matrix_norm: Expected a floating point or complex tensor "
                               f"as input. Got {messages.TYPE_WORDS[be.dtype_name(x)]}")
    dims = _dim_list(dim) or []
    if len(dims) != 2:
        raise be.runtime_error(
            f"linalg.matrix_norm: dim must be a 2-tuple. Got {' '.join(map(str, dims))}")
    dims = [wrap_dim(be, int(d), ndim) for d in dims]
    if dims[0] == dims[1]:
        raise be.runtime_error(
            f"linalg.matrix_norm: dims must be different. Got ({dims[0]}, {dims[1]})")
    return dims, ndim


def matrix_norm(be: Backend, x: Any, ord: Any = "fro", dim: Any = (-2, -1),
                keepdim: bool = False, *, dtype: Any = None) -> Any:
    """torch.linalg.matrix_norm: the 'fro', 'nuc', 1, -1, 2, -2, inf or -inf norm of the
    matrices over dim.

    Args:
        x: a floating tensor of at least 2 dims.
        ord: 'fro', 'nuc', 1, -1, 2, -2, inf or -inf.
        dim: the two dims that hold the matrices.
        keepdim: keep the reduced dims as size 1.
        dtype: compute and return in this floating dtype.
    Returns:
        The norm (grad_fn LinalgVectorNormBackward0 for 'fro'; AmaxBackward0 or
        AminBackward0 over a LinalgVectorNormBackward0 for 1, inf, ...; over a
        LinalgSvdBackward0 for 2 and -2; SumBackward1 for 'nuc'; PermuteBackward0 with keepdim).
    Raises:
        RuntimeError: torch's errors for the input, dim and ord.
    """
    dims, _ = _matrix_dims(be, x, dim)
    if isinstance(ord, str):
        if ord == "fro":
            return _vector(be, x, 2.0, tuple(dims), keepdim, dtype)
        if ord == "nuc":
            return _spectral(be, x, "sum", dims, keepdim, dtype)
        raise be.runtime_error(f"linalg.matrix_norm: Order {ord} not supported.")
    size = abs(float(ord))
    if size == 2.0:
        return _spectral(be, x, "amax" if float(ord) > 0 else "amin", dims, keepdim, dtype)
    if size not in (1.0, math.inf):
        raise be.runtime_error(f"linalg.matrix_norm: Order {ord} not supported.")
    if size == math.inf:  # the inf norm is the 1 norm of the transpose
        dims.reverse()
    if not keepdim and dims[0] < dims[1]:
        dims[1] -= 1  # the first reduction removed a dim in front of the second
    sums = _vector(be, x, 1.0, (dims[0],), keepdim, dtype)
    return be.call("amax" if float(ord) > 0 else "amin", (sums, (dims[1],), bool(keepdim)), {})


def _spectral(be: Backend, x: Any, reduce: str, dims: list[int], keepdim: bool,
              dtype: Any) -> Any:
    """ord 2, -2 and 'nuc' as torch composes them: the matrix dims moved last (a permute, even
    an identity one), the singular values, their amax / amin / sum; keepdim puts size-1 dims
    back where the matrix dims were (the reduction's kept dim, an unsqueeze, then the inverse
    permute)."""
    if dtype is not None:
        x = be.call("to_dtype", (x,), {"dtype": dtype})
    ndim = len(be.shape(x))
    order = [d for d in range(ndim) if d not in dims] + dims
    s = be.call("_linalg_svd", (be.call("permute", (x, tuple(order)), {}),),
                {"full_matrices": False})[1]
    out = be.call(reduce, (s, (-1,), bool(keepdim)), {})
    if not keepdim:
        return out
    out = be.call("unsqueeze", (out, -1), {})  # torch's graph has one unsqueeze node
    return be.call("permute", (out, tuple(order.index(d) for d in range(ndim))), {})


def linalg_norm(be: Backend, x: Any, ord: Any = None, dim: Any = None, keepdim: bool = False, *,
                dtype: Any = None) -> Any:
    """torch.linalg.norm: a matrix norm when ord is given over two dims (or a 2-D input without
    dim), else the vector norm (ord None: the 2-norm over dim, or over everything).

    Raises:
        RuntimeError: torch's errors for the dim and ord combinations.
    """
    dims = _dim_list(dim)
    if dims is not None:
        if len(dims) not in (1, 2):
            raise be.runtime_error("linalg.norm: If dim is specified, it must be of length 1 or "
                                   f"2. Got [{', '.join(map(str, dims))}]")
    elif ord is not None:
        ndim = len(be.shape(x))
        if ndim not in (1, 2):
            raise be.runtime_error("linalg.norm: If dim is not specified but ord is, the input "
                                   f"must be 1D or 2D. Got {ndim}D.")
    if isinstance(ord, str) or ord is not None and (
            len(dims) == 2 if dims is not None else len(be.shape(x)) == 2):
        return matrix_norm(be, x, ord, dims if dims is not None else (0, 1), keepdim,
                           dtype=dtype)
    return vector_norm(be, x, 2 if ord is None else ord, dims, keepdim, dtype=dtype)


linalg_norm.__name__ = linalg_norm.__qualname__ = "norm"


def norm(be: Backend, input: Any, p: Any = "fro", dim: Any = None, keepdim: bool = False,
         out: Any = None, dtype: Any = None) -> Any:
    """torch.norm / Tensor.norm: torch's Python function, which calls linalg's norms: p 'fro' (or
    None, or a number) is the vector norm over dim; 'nuc' and any other string a matrix norm.

    Raises:
        RuntimeError: linalg's errors; out= with a matrix norm (not supported).
    """
    dims = _dim_list(dim)
    if isinstance(p, str) and not (
            p == "fro" and (dim is None or is_int(dim) or len(dims or ()) <= 2)):
        if out is not None:
            raise be.runtime_error(f"norm(): out= with p={p!r} is not supported by gradserve")
        if dims is None:
            dims = list(range(len(be.shape(input))))
        return matrix_norm(be, input, p, dims, keepdim, dtype=dtype)
    p = 2.0 if p is None or isinstance(p, str) else p
    if out is not None:
        return out_arg.call_with_out(be, "linalg_vector_norm", _vector, out,
                                     (be, input, p, dims, keepdim, dtype), {})
    return _vector(be, input, p, dims, keepdim, dtype)


def norm_method(be: Backend, self: Any, p: Any = "fro", dim: Any = None, keepdim: bool = False,
                dtype: Any = None) -> Any:
    """Tensor.norm(p='fro', dim=None, keepdim=False, dtype=None): torch.norm of this tensor."""
    return norm(be, self, p, dim, keepdim, dtype=dtype)


_register("norm", ("norm", "amax", "amin"), norm, norm_method)

def matmul(be: Backend, input: Any, other: Any) -> Any:
    """torch.linalg.matmul: an alias of torch.matmul (the same graph: MmBackward0, MvBackward0,
    ...), its TypeError naming linalg_matmul."""
    for name, value, position in (("input", input, 1), ("other", other, 2)):
        if not be.is_tensor(value):
            raise be.type_error(f"linalg_matmul(): argument '{name}' (position {position}) "
                                f"must be Tensor, not {messages.tp_name(value)}")
    return be.call("matmul", (input, other), {})


# --- decompositions and solvers (engine/ops_decomp.py, engine/ops_solve.py) ----------------------

def svd(be: Backend, A: Any, full_matrices: bool = True, *, driver: Any = None,
        out: Any = None) -> Any:
    """torch.linalg.svd: A = U diag(S) Vh, singular values descending.

    Args:
        A: a floating tensor of at least 2 dims (m, n); batches allowed.
        full_matrices: U (m, m) and Vh (n, n); else (m, k) and (k, n), k = min(m, n).
        driver: accepted for torch's signature (a CUDA option; None only).
    Returns:
        torch.return_types.linalg_svd (U, S, Vh), each with grad_fn LinalgSvdBackward0.
    Raises:
        RuntimeError: fewer than 2 dims, or not floating.
        torch.linalg.LinAlgError: non-finite values (LAPACK does not converge).
    """
    _no_out("linalg.svd", driver, out)
    return LinalgSvdResult(be.call("_linalg_svd", (A,), {"full_matrices": bool(full_matrices)}))


def svdvals(be: Backend, A: Any, *, driver: Any = None, out: Any = None) -> Any:
    """torch.linalg.svdvals: the singular values (grad_fn LinalgSvdBackward0, whose gradient is
    U diag(gS) Vh)."""
    _no_out("linalg.svdvals", driver, out)
    return be.call("_linalg_svd", (A,), {"full_matrices": False})[1]


def _no_out(fn: str, driver: Any, out: Any) -> None:
    if driver is not None:
        raise ValueError(f"{fn}: driver= is a CUDA option; gradserve computes on the CPU "
                         "(driver=None)")
    if out is not None:
        raise TypeError(f"{fn}: out= is not supported by gradserve")


def svd_legacy(be: Backend, input: Any, some: bool = True, compute_uv: bool = True, *,
               out: Any = None) -> Any:
    """torch.svd / Tensor.svd: (U, S, V) with V = Vh.mT (TransposeBackward0); U and V are
    reduced unless some=False; without compute_uv, U and V are zeros of (m, m) and (n, n)."""
    _no_out("svd", None, out)
    shape = be.shape(input)
    if len(shape) < 2:
        raise be.runtime_error("linalg.svd: input should have at least 2 dimensions, but has "
                               f"{len(shape)} dimensions instead")
    u, s, vh = be.call("_linalg_svd", (input,), {"full_matrices": not (some and compute_uv)})
    if not compute_uv:
        *batch, m, n = shape
        dtype = be.dtype_of(input)
        return SvdResult((be.call("zeros", (), {"size": (*batch, m, m), "dtype": dtype}), s,
                          be.call("zeros", (), {"size": (*batch, n, n), "dtype": dtype})))
    return SvdResult((u, s, be.call("transpose", (vh, -2, -1), {})))


svd_legacy.__name__ = svd_legacy.__qualname__ = "svd"


def svd_method(be: Backend, self: Any, some: bool = True, compute_uv: bool = True) -> Any:
    """Tensor.svd(some=True, compute_uv=True): torch.svd of this tensor."""
    return svd_legacy(be, self, some, compute_uv)


_register("svd", ("_linalg_svd", "transpose", "zeros"), svd_legacy, svd_method)


def cholesky(be: Backend, A: Any, *, upper: bool = False, out: Any = None) -> Any:
    """torch.linalg.cholesky: L with A = L L^H (upper: U with A = U^H U), grad_fn
    LinalgCholeskyExBackward0; only A's lower (upper) triangle is read.

    Raises:
        torch.linalg.LinAlgError: A is not positive-definite (torch's message names the leading
            minor, and the batch element).
    """
    _no_out("linalg.cholesky", None, out)
    return be.call("linalg_cholesky", (A,), {"upper": bool(upper)})


def inv(be: Backend, A: Any, *, out: Any = None) -> Any:
    """torch.linalg.inv (also torch.inverse): grad_fn LinalgInvExBackward0.

    Raises:
        torch.linalg.LinAlgError: A is singular.
    """
    _no_out("linalg.inv", None, out)
    return be.call("linalg_inv", (A,), {})


def inverse_method(be: Backend, self: Any) -> Any:
    """Tensor.inverse(): torch.linalg.inv of this tensor."""
    return be.call("linalg_inv", (self,), {})


def inverse(be: Backend, input: Any, *, out: Any = None) -> Any:
    """torch.inverse: torch.linalg.inv."""
    return inv(be, input, out=out)


_register("inverse", ("linalg_inv",), inverse, inverse_method)


def solve(be: Backend, A: Any, B: Any, *, left: bool = True, out: Any = None) -> Any:
    """torch.linalg.solve: X with A X = B (X A = B if not left); B a (batch of) vector(s) when
    1-D or shaped as A without its last dim; batches broadcast. grad_fn LinalgSolveExBackward0.

    Raises:
        torch.linalg.LinAlgError: A is singular.
    """
    _no_out("linalg.solve", None, out)
    return be.call("linalg_solve", (A, B), {"left": bool(left)})


def solve_triangular(be: Backend, A: Any, B: Any, *, upper: Any = None, left: bool = True,
                     unitriangular: bool = False, out: Any = None) -> Any:
    """torch.linalg.solve_triangular: X with A X = B for triangular A (the other triangle is not
    read; unitriangular: nor the diagonal, taken as ones). grad_fn
    LinalgSolveTriangularBackward0.

    Raises:
        TypeError: upper not given (torch's message).
    """
    if upper is None:
        raise be.type_error(
            'linalg_solve_triangular() missing 1 required positional arguments: "upper"')
    _no_out("linalg.solve_triangular", None, out)
    return be.call("linalg_solve_triangular", (A, B), {
        "upper": bool(upper), "left": bool(left), "unitriangular": bool(unitriangular)})


def cross(be: Backend, input: Any, other: Any, *, dim: int = -1, out: Any = None) -> Any:
    """torch.linalg.cross: the cross product of 3-vectors along dim (inputs with the same number
    of dims, broadcast), grad_fn LinalgCrossBackward0."""
    _no_out("linalg.cross", None, out)
    return be.call("linalg_cross", (input, other), {"dim": dim})


CROSS_DIM_WARNING = (
    "Using torch.cross without specifying the dim arg is deprecated.\n"
    "Please either pass the dim explicitly or simply use torch.linalg.cross.\n"
    "The default value of dim will change to agree with that of linalg.cross in a future "
    "release. (Triggered internally at /__w/pytorch/pytorch/aten/src/ATen/native/Cross.cpp:63.)")


def cross_legacy(be: Backend, input: Any, other: Any, dim: Any = None, *,
                 out: Any = None) -> Any:
    """torch.cross / Tensor.cross: linalg.cross, except that dim=None (deprecated, with torch's
    warning) takes the first dim of size 3."""
    if dim is None:
        warnings.warn(CROSS_DIM_WARNING, UserWarning, stacklevel=3)
        dim = next((i for i, d in enumerate(be.shape(input)) if d == 3), None)
        if dim is None:
            raise be.runtime_error("no dimension of size 3 in input")
    return cross(be, input, other, dim=dim, out=out)


cross_legacy.__name__ = cross_legacy.__qualname__ = "cross"


def cross_method(be: Backend, self: Any, other: Any, dim: Any = None) -> Any:
    """Tensor.cross(other, dim=None): torch.cross."""
    return cross_legacy(be, self, other, dim)


_register("cross", ("linalg_cross",), cross_legacy, cross_method)

def det(be: Backend, A: Any, *, out: Any = None) -> Any:
    """torch.linalg.det (also torch.det, Tensor.det): grad_fn LinalgDetBackward0 (its gradient
    (g det) A^-H; zero for a singular matrix, as torch's)."""
    _no_out("linalg.det", None, out)
    return be.call("linalg_det", (A,), {})


def det_method(be: Backend, self: Any) -> Any:
    """Tensor.det(): torch.linalg.det of this tensor."""
    return be.call("linalg_det", (self,), {})


def det_legacy(be: Backend, input: Any) -> Any:
    """torch.det: torch.linalg.det."""
    return be.call("linalg_det", (input,), {})


det_legacy.__name__ = det_legacy.__qualname__ = "det"
_register("det", ("linalg_det",), det_legacy, det_method)


def slogdet(be: Backend, A: Any, *, out: Any = None) -> Any:
    """torch.linalg.slogdet: (sign, logabsdet), both with grad_fn LinalgSlogdetBackward0 (the
    sign's gradient is ignored, as torch's)."""
    _no_out("linalg.slogdet", None, out)
    return LinalgSlogdetResult(be.call("linalg_slogdet", (A,), {}))


def slogdet_legacy(be: Backend, input: Any) -> Any:
    """torch.slogdet / Tensor.slogdet: torch.return_types.slogdet (sign, logabsdet)."""
    return SlogdetResult(be.call("linalg_slogdet", (input,), {}))


slogdet_legacy.__name__ = slogdet_legacy.__qualname__ = "slogdet"
_register("slogdet", ("linalg_slogdet",), slogdet_legacy, slogdet_legacy)


def logdet(be: Backend, input: Any) -> Any:
    """torch.logdet / Tensor.logdet: logabsdet where the determinant is positive, nan where it
    is negative (torch's composition: WhereBackward0 over LinalgSlogdetBackward0)."""
    if be.is_tensor(input) and be.dtype_name(input) not in ("float32", "float64"):
        raise be.runtime_error("logdet: Expected a floating point or complex tensor as input. "
                               f"Got {messages.TYPE_WORDS[be.dtype_name(input)]}")
    sign, logabsdet = be.call("linalg_slogdet", (input,), {})
    return be.call("where", (be.call("eq", (sign, -1.0), {}), math.nan, logabsdet), {})


_register("logdet", ("linalg_slogdet", "where", "eq"), logdet, logdet)


def eigh(be: Backend, A: Any, UPLO: str = "L", *, out: Any = None) -> Any:  # noqa: N803
    """torch.linalg.eigh: (eigenvalues ascending, eigenvectors) of symmetric matrices, reading
    the UPLO triangle; grad_fn LinalgEighBackward0. Eigenvectors are unique up to sign."""
    _no_out("linalg.eigh", None, out)
    return LinalgEighResult(be.call("_linalg_eigh", (A,), {"UPLO": UPLO}))


def eigvalsh(be: Backend, A: Any, UPLO: str = "L", *, out: Any = None) -> Any:  # noqa: N803
    """torch.linalg.eigvalsh: the eigenvalues (grad_fn LinalgEighBackward0, whose gradient is
    V diag(gL) V^H)."""
    _no_out("linalg.eigvalsh", None, out)
    return be.call("_linalg_eigh", (A,), {"UPLO": UPLO})[0]


def qr(be: Backend, A: Any, mode: str = "reduced", *, out: Any = None) -> Any:
    """torch.linalg.qr: (Q, R) with A = QR; mode 'reduced' (Q m x k), 'complete' (Q m x m) or
    'r' (Q empty, and no derivative). grad_fn LinalgQrBackward0.

    Raises:
        RuntimeError: an unknown mode; a backward through mode 'r', or through 'complete' with
            more rows than columns (torch's texts).
    """
    _no_out("linalg.qr", None, out)
    return LinalgQrResult(be.call("linalg_qr", (A,), {"mode": mode}))


def qr_legacy(be: Backend, input: Any, some: bool = True, *, out: Any = None) -> Any:
    """torch.qr / Tensor.qr (deprecated by torch for linalg.qr; no deprecation warning here):
    linalg.qr with mode 'reduced' (some) or 'complete'."""
    _no_out("qr", None, out)
    return QrResult(be.call("linalg_qr", (input,), {"mode": "reduced" if some else "complete"}))


qr_legacy.__name__ = qr_legacy.__qualname__ = "qr"


def qr_method(be: Backend, self: Any, some: bool = True) -> Any:
    """Tensor.qr(some=True): torch.qr of this tensor."""
    return qr_legacy(be, self, some)


_register("qr", ("linalg_qr",), qr_legacy, qr_method)


def pinv(be: Backend, A: Any, *, atol: Any = None, rtol: Any = None, hermitian: bool = False,
         out: Any = None) -> Any:
    """torch.linalg.pinv: the pseudo-inverse through an SVD (an eigh if hermitian), singular
    values at or below max(atol, rtol * the largest) dropped (rtol's default eps * max(m, n), 0
    with a positive atol). grad_fn LinalgPinvBackward0. Float tolerances only (not tensors)."""
    _no_out("linalg.pinv", None, out)
    return be.call("linalg_pinv", (A,), {"atol": atol, "rtol": rtol,
                                          "hermitian": bool(hermitian)})


def pinverse(be: Backend, input: Any, rcond: float = 1e-15) -> Any:
    """torch.pinverse / Tensor.pinverse: linalg.pinv with rtol=rcond."""
    return be.call("linalg_pinv", (input,), {"rtol": rcond})


_register("pinverse", ("linalg_pinv",), pinverse, pinverse)


FUNCTIONS: tuple[Any, ...] = (vector_norm, matrix_norm, linalg_norm, matmul, svd, svdvals,
                              cholesky, inv, solve, solve_triangular, cross, det, slogdet,
                              eigh, eigvalsh, qr, pinv)
"""What `torch.linalg` holds here."""


def namespace(be: Backend, bind: Any) -> Any:
    """`torch.linalg` over backend `be`: each of `FUNCTIONS` bound by `bind(be, fn, name)`, and
    `LinAlgError`."""
    from .compat import Namespace  # compat imports spellings, which imports this module

    return Namespace("torch.linalg", LinAlgError=LinAlgError,
                     **{fn.__name__: bind(be, fn, fn.__name__) for fn in FUNCTIONS})
