"""`gradserve.surface.meta` rules for the decompositions and solvers (engine/ops_decomp.py,
engine/ops_solve.py): each result's shape, dtype and requires_grad, `_Inexact` wherever the
engine refuses the call for its shapes, dtypes or attributes. Errors that depend on the values
(a singular or not positive-definite matrix: LinAlgError) are the server's to report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .meta_base import (
    _BOOL,
    _FLOAT,
    DTYPE_NAMES,
    Meta,
    _bool,
    _broadcast,
    _float,
    _Inexact,
    _int,
    _known,
    _one,
    _rule,
    _tensor,
    _wrap,
)


def _square(inputs: Sequence[Any], attrs: Mapping[str, Any],
            names: frozenset[str] = frozenset()) -> tuple[tuple[int, ...], int, bool]:
    """One floating tensor holding a batch of square matrices."""
    shape, rank, rg = _one(inputs, attrs, names)
    if rank < _FLOAT or len(shape) < 2 or shape[-1] != shape[-2]:
        raise _Inexact
    return shape, rank, rg


def _results(shapes: Sequence[tuple[int, ...]], rank: int, rg: bool) -> list[Meta]:
    return [Meta(s, DTYPE_NAMES[rank], rg) for s in shapes]


@_rule("_linalg_svd")
def _svd(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("full_matrices",)))
    if rank < _FLOAT or len(shape) < 2:
        raise _Inexact
    *batch, m, n = shape
    k = min(m, n)
    if _bool(attrs.get("full_matrices", True)):
        shapes = [(*batch, m, m), (*batch, k), (*batch, n, n)]
    else:
        shapes = [(*batch, m, k), (*batch, k), (*batch, k, n)]
    return _results(shapes, rank, grad and rg)


@_rule("linalg_cholesky", "cholesky")
def _cholesky(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _square(inputs, attrs, frozenset(("upper",)))
    _bool(attrs.get("upper", False))
    return _results([shape], rank, grad and rg)


@_rule("linalg_inv")
def _inv(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _square(inputs, attrs)
    return _results([shape], rank, grad and rg)


@_rule("linalg_det")
def _det(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _square(inputs, attrs)
    return _results([shape[:-2]], rank, grad and rg)


@_rule("linalg_slogdet")
def _slogdet(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _square(inputs, attrs)
    return _results([shape[:-2], shape[:-2]], rank, grad and rg)


@_rule("_linalg_eigh")
def _eigh(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _square(inputs, attrs, frozenset(("UPLO",)))
    if attrs.get("UPLO", "L") not in ("L", "U"):
        raise _Inexact
    return _results([shape[:-1], shape], rank, grad and rg)


def _pair(inputs: Sequence[Any]) -> tuple[tuple[int, ...], tuple[int, ...], int, bool]:
    """Two floating tensors of one dtype: (shape a, shape b, rank, either requires grad)."""
    if len(inputs) != 2:
        raise _Inexact
    (sa, ra, ga), (sb, rb, gb) = _tensor(inputs[0]), _tensor(inputs[1])
    if ra != rb or ra < _FLOAT:
        raise _Inexact
    return sa, sb, ra, ga or gb


def _solved(a: tuple[int, ...], b: tuple[int, ...], left: bool) -> tuple[int, ...]:
    """X's shape for A X = B (X A = B) with B a batch of matrices: batches broadcast."""
    if len(a) < 2 or a[-1] != a[-2] or len(b) < 2 or (b[-2] if left else b[-1]) != a[-1]:
        raise _Inexact
    return (*_broadcast(b[:-2], a[:-2]), *b[-2:])


@_rule("linalg_solve")
def _solve(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    _known(attrs, frozenset(("left",)))
    a, b, rank, rg = _pair(inputs)
    left = _bool(attrs.get("left", True))
    if len(a) < 2 or not b:
        raise _Inexact
    if len(b) == 1 or (len(a) - 1 == len(b) and b == a[:-1]):  # a (batch of) vector(s)
        return _results([_solved(a, (*b, 1), left)[:-1]], rank, grad and rg)
    return _results([_solved(a, b, left)], rank, grad and rg)


@_rule("linalg_solve_triangular")
def _solve_triangular(inputs: Sequence[Any], attrs: Mapping[str, Any],
                      grad: bool) -> list[Meta]:
    _known(attrs, frozenset(("upper", "left", "unitriangular")))
    if "upper" not in attrs:
        raise _Inexact  # required
    _bool(attrs["upper"])
    _bool(attrs.get("unitriangular", False))
    a, b, rank, rg = _pair(inputs)
    return _results([_solved(a, b, _bool(attrs.get("left", True)))], rank, grad and rg)


@_rule("cholesky_solve")
def _cholesky_solve(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    _known(attrs, frozenset(("upper",)))
    _bool(attrs.get("upper", False))
    b, u, rank, rg = _pair(inputs)
    return _results([_solved(u, b, True)], rank, grad and rg)


@_rule("linalg_cross")
def _cross(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    _known(attrs, frozenset(("dim",)))
    if len(inputs) != 2:
        raise _Inexact
    (sa, ra, ga), (sb, rb, gb) = _tensor(inputs[0]), _tensor(inputs[1])
    if ra != rb or ra == 0 or len(sa) != len(sb) or not sa:
        raise _Inexact
    axis = _wrap(_int(attrs.get("dim", -1)), len(sa))
    if sa[axis] != 3 or sb[axis] != 3:
        raise _Inexact
    return [Meta(_broadcast(sa, sb), DTYPE_NAMES[ra], grad and (ga or gb) and ra >= _FLOAT)]


@_rule("linalg_qr")
def _qr(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("mode",)))
    mode = attrs.get("mode", "reduced")
    if rank < _FLOAT or len(shape) < 2 or mode not in ("reduced", "complete", "r"):
        raise _Inexact
    *batch, m, n = shape
    k = m if mode == "complete" else min(m, n)
    q = (0,) if mode == "r" else (*batch, m, k)
    return _results([q, (*batch, k, n)], rank, grad and rg)


@_rule("linalg_pinv")
def _pinv(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset(("atol", "rtol", "hermitian")))
    for name in ("atol", "rtol"):
        if attrs.get(name) is not None:
            _float(attrs[name])
    hermitian = _bool(attrs.get("hermitian", False))
    if rank < _FLOAT or len(shape) < 2 or (hermitian and shape[-1] != shape[-2]):
        raise _Inexact
    return _results([(*shape[:-2], shape[-1], shape[-2])], rank, grad and rg)


@_rule("trace")
def _trace(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, frozenset())
    if len(shape) != 2 or rank == _BOOL:
        raise _Inexact
    if rank < _FLOAT:
        return [Meta((), "int64", False)]
    return _results([()], rank, grad and rg)
