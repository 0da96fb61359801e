"""OpInfos for engine/ops_linalg.py: matmul, mm, addmm, bmm, dot, outer, einsum."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from tests.reference import torch

from .opinfo import OpInfo, Sample


def ints(shape: tuple[int, ...]) -> Any:
    return lambda rng: np.asarray(rng.integers(-3, 4, size=shape), dtype=np.int64)


# Every matmul case: 1-D with 1-D, 2-D, 1-D with 2-D both ways, folded 3-D+ with 1-D/2-D, and
# batched with broadcasting batch dims (size-1 and missing).
MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)),
                 ((2, 2, 3), (3, 4)), ((2, 3), (2, 3, 4)), ((3,), (2, 3, 4)),
                 ((2, 2, 3), (3,)), ((2, 2, 3), (2, 3, 4)), ((1, 2, 3), (2, 3, 4)),
                 ((5, 1, 2, 3), (2, 3, 4)), ((2, 2, 3), (1, 3, 4)), ((2, 3), (5, 2, 3, 4)),
                 ((1, 3), (2, 3, 4)), ((2, 3), (2, 3, 1)), ((2, 2, 3), (5, 2, 3, 4))]

MATMUL_SAMPLES = [Sample((a, b)) for a, b in MATMUL_SHAPES] + [
    # which operand requires grad changes torch's node name in the folded cases
    Sample(((2, 3), (2, 3, 4)), requires_grad=(False, True)),
    Sample(((2, 3), (2, 3, 4)), requires_grad=(True, False)),
    Sample(((1, 2, 3), (2, 3, 4)), requires_grad=(False, True)),
    Sample((ints((2, 3)), ints((3, 2))))]

EINSUM_SAMPLES = [
    Sample(([(2, 3), (3, 4)],), {"equation": "ij,jk->ik"}),
    Sample(([(2, 3), (3, 4)],), {"equation": "ij,jk"}),
    Sample(([(5, 2, 3), (5, 3, 4)],), {"equation": "bij,bjk->bik"}),
    Sample(([(2, 3)],), {"equation": "ij->ji"}),
    Sample(([(2, 3)],), {"equation": "ij->i"}),
    Sample(([(2, 3)],), {"equation": "ij->"}),
    Sample(([(3, 3)],), {"equation": "ii->i"}),
    Sample(([(3, 3)],), {"equation": "ii"}),
    Sample(([(2, 3, 3)],), {"equation": "...ii->...i"}),
    Sample(([(3,), (3,)],), {"equation": "i,i->"}),
    Sample(([(3,), (4,)],), {"equation": "i,j->ij"}),
    Sample(([(2, 3), (2, 3)],), {"equation": "ij,ij->ij"}),
    Sample(([(2, 3), (3,)],), {"equation": "ij,j->i"}),
    Sample(([(2, 3), (3, 4), (4, 5)],), {"equation": "ij,jk,kl->il"}),
    Sample(([(2, 3), (4, 5)],), {"equation": "ij,kl->ijkl"}),
    Sample(([(2, 3, 4), (4, 5)],), {"equation": "...j,jk->...k"}),
    Sample(([(2, 1, 3, 4), (5, 4, 2)],), {"equation": "...ij,...jk->...ik"}),
    Sample(([(2, 3), (3, 4)],), {"equation": "ij,jk->ijk"}),
    Sample(([(2, 3), (4,)],), {"equation": "ij,k->i"}),
    Sample(([(2, 3), (3, 3)],), {"equation": "ij,jj->i"}),
    Sample(([(2, 3), (3, 4)],), {"equation": " i j , j k -> k i "}),
    Sample(([(2, 3), (3, 4)],), {"equation": "ij,jk->ik"}, requires_grad=([False, True],)),
]


def _einsum(tensors: list[Any], equation: str) -> Any:
    return torch.einsum(equation, *tensors)


OPINFOS = [
    OpInfo("matmul", torch.matmul, MATMUL_SAMPLES),
    OpInfo("mm", torch.mm, [Sample(((2, 3), (3, 4))), Sample(((1, 3), (3, 1))),
                            Sample(((4, 1), (1, 2))), Sample((ints((2, 3)), ints((3, 2))))]),
    # bias shapes: a row (nn.Linear's), the product's shape, a scalar-like [1] and a column
    OpInfo("addmm", torch.addmm, [Sample(((4,), (2, 3), (3, 4))), Sample(((2, 4), (2, 3), (3, 4))),
                                  Sample(((1,), (2, 3), (3, 4))), Sample(((2, 1), (2, 3), (3, 4))),
                                  Sample(((4,), (2, 3), (3, 4)), {"beta": 0.5, "alpha": 2.0}),
                                  Sample(((4,), (2, 3), (3, 4)), {"beta": 0, "alpha": 1}),
                                  Sample((ints((2,)), ints((2, 3)), ints((3, 2))))]),
    OpInfo("bmm", torch.bmm, [Sample(((2, 2, 3), (2, 3, 4))), Sample(((1, 3, 1), (1, 1, 2))),
                              Sample(((3, 2, 2), (3, 2, 2)))]),
    OpInfo("dot", torch.dot, [Sample(((3,), (3,))), Sample(((1,), (1,))),
                              Sample((ints((4,)), ints((4,))))]),
    OpInfo("outer", torch.outer, [Sample(((3,), (4,))), Sample(((1,), (2,))),
                                  Sample((ints((3,)), (2,)))]),
    OpInfo("einsum", _einsum, EINSUM_SAMPLES),
    OpInfo("baddbmm", lambda x, b1, b2, beta=1, alpha=1: torch.baddbmm(x, b1, b2, beta=beta,
                                                                       alpha=alpha),
           [Sample(((2, 3, 5), (2, 3, 4), (2, 4, 5))),
            Sample(((3, 1), (2, 3, 4), (2, 4, 5)), {"beta": 0.5, "alpha": -2}),
            Sample(((5,), (1, 3, 4), (1, 4, 5)), {"beta": 0}),
            Sample((ints((2, 2, 2)), ints((2, 2, 3)), ints((2, 3, 2))), {"alpha": 2})]),
    OpInfo("addbmm", lambda x, b1, b2, beta=1, alpha=1: torch.addbmm(x, b1, b2, beta=beta,
                                                                     alpha=alpha),
           [Sample(((3, 5), (2, 3, 4), (2, 4, 5))),
            Sample(((5,), (4, 3, 2), (4, 2, 5)), {"beta": 2, "alpha": 0.5}),
            Sample(((1, 1), (1, 3, 4), (1, 4, 2)), {"beta": 0})]),
    OpInfo("kron", torch.kron,
           [Sample(((2, 3), (3, 2))), Sample(((2,), (2, 3, 2))), Sample(((), (3,))),
            Sample((ints((2, 2)), (2,))), Sample(((2, 1, 3), (1, 2)))]),
    OpInfo("_cdist_forward",
           lambda x1, x2, p=2.0, compute_mode=None: torch.ops.aten._cdist_forward(x1, x2, p,
                                                                         compute_mode),
           [Sample(((3, 4), (5, 4))), Sample(((2, 3, 2), (2, 4, 2)), {"p": 1.0}),
            Sample(((1, 3, 2), (2, 4, 2)), {"p": 3.0}), Sample(((3, 2), (2, 2)), {"p": 0.5}),
            Sample(((3, 2), (2, 2)), {"p": float("inf")}),
            Sample(((3, 2), (2, 2)), {"p": 0.0})],
           check_second_order=False),
    OpInfo("_cdist_backward",
           lambda g, x1, x2, dist, p=2.0: torch.ops.aten._cdist_backward(g, x1, x2, p, dist),
           [Sample(((3, 5), (3, 4), (5, 4), lambda rng: np.full((3, 5), 1.5, np.float32)),
                   requires_grad=(False, False, False, False))],
           check_grad=False),
    OpInfo("_euclidean_dist", torch.ops.aten._euclidean_dist,
           [Sample(((3, 4), (5, 4))), Sample(((2, 3, 2), (2, 30, 2)))], atol=1e-4),
]

# --- decompositions and solvers (engine/ops_decomp.py, engine/ops_solve.py) ----------------------


def spd(n: int, batch: tuple[int, ...] = ()) -> Any:
    """A well-conditioned symmetric positive-definite (batch of) n x n matrix (float32, as the
    random inputs: the tests cast it)."""
    def make(rng: np.random.Generator) -> np.ndarray:
        m = rng.uniform(-1, 1, size=(*batch, n, n))
        return (m @ np.swapaxes(m, -1, -2) + n * np.eye(n)).astype(np.float32)
    return make


def cholesky_factor(n: int, batch: tuple[int, ...] = (), upper: bool = False) -> Any:
    """A Cholesky factor of `spd(n, batch)` (upper: its transpose)."""
    def make(rng: np.random.Generator) -> np.ndarray:
        low = np.linalg.cholesky(spd(n, batch)(rng))
        return np.ascontiguousarray(np.swapaxes(low, -1, -2) if upper else low)
    return make


def well_conditioned(n: int, batch: tuple[int, ...] = ()) -> Any:
    """A random (batch of) n x n matrix with n added to its diagonal (every triangle of it is
    well-conditioned too)."""
    return lambda rng: (rng.uniform(-1, 1, size=(*batch, n, n)) + n * np.eye(n)).astype(
        np.float32)


def _deprecated_cholesky(a: Any, upper: bool = False) -> Any:
    with warnings.catch_warnings():  # torch's deprecation warning (gradserve does not warn)
        warnings.simplefilter("ignore", UserWarning)
        return torch.cholesky(a, upper=upper)


def _svd_s(a: Any, full_matrices: bool = True) -> Any:
    return torch.linalg.svd(a, full_matrices=full_matrices)


OPINFOS += [
    # S only: singular vectors are unique up to sign, and LAPACK builds may pick other signs
    # (tests/test_engine_linalg_decomp.py compares U and Vh through sign-invariant quantities)
    OpInfo("_linalg_svd", _svd_s,
           [Sample(((3, 3),)), Sample(((4, 2),)), Sample(((2, 5),), {"full_matrices": False}),
            Sample(((2, 3, 2),)), Sample(((3, 4),), {"full_matrices": False})],
           outputs=(1,)),
    # the gradient is symmetric though only one triangle is read: finite differences along
    # non-symmetric directions disagree by design (the test file checks symmetric ones)
    OpInfo("linalg_cholesky", lambda a, upper=False: torch.linalg.cholesky(a, upper=upper),
           [Sample((spd(3),)), Sample((spd(2, (2,)),)), Sample((spd(4),), {"upper": True}),
            Sample((spd(1),))],
           check_finite_differences=False),
    OpInfo("cholesky", _deprecated_cholesky,
           [Sample((spd(3),)), Sample((spd(3, (2,)),), {"upper": True})],
           check_finite_differences=False),
    OpInfo("linalg_inv", torch.linalg.inv,
           [Sample((well_conditioned(3),)), Sample((well_conditioned(2, (2,)),))]),
    OpInfo("linalg_solve", lambda a, b, left=True: torch.linalg.solve(a, b, left=left),
           [Sample((well_conditioned(3), (3,))), Sample((well_conditioned(3), (3, 2))),
            Sample((well_conditioned(3, (2,)), (2, 3))),  # a batch of vectors
            Sample((well_conditioned(3, (2,)), (3, 2))),  # B broadcast over A's batch
            Sample((well_conditioned(2), (4, 1, 2, 3))),
            Sample((well_conditioned(3), (2, 3)), {"left": False}),
            Sample((well_conditioned(3), (3, 2)), requires_grad=(False, True)),
            Sample((well_conditioned(3), (3, 2)), requires_grad=(True, False))]),
    OpInfo("linalg_solve_triangular",
           lambda a, b, upper, left=True, unitriangular=False: torch.linalg.solve_triangular(
               a, b, upper=upper, left=left, unitriangular=unitriangular),
           [Sample((well_conditioned(3), (3, 2)), {"upper": True}),
            Sample((well_conditioned(3), (3, 2)), {"upper": False}),
            Sample((well_conditioned(3), (2, 3)), {"upper": True, "left": False}),
            Sample((well_conditioned(3), (2, 3)), {"upper": False, "left": False}),
            Sample((well_conditioned(3), (3, 1)), {"upper": False, "unitriangular": True}),
            Sample((well_conditioned(2, (2, 1)), (3, 2, 2)), {"upper": True})]),
    # torch's gradient for the factor is a full matrix though one triangle is read (as
    # linalg_cholesky): no finite differences
    OpInfo("cholesky_solve",
           lambda b, u, upper=False: torch.cholesky_solve(b, u, upper=upper),
           [Sample(((3, 2), cholesky_factor(3))),
            Sample(((3, 2), cholesky_factor(3, upper=True)), {"upper": True}),
            Sample(((2, 1, 3, 1), cholesky_factor(3, (3, 1, 1)))),
            Sample(((3, 2), cholesky_factor(3)), requires_grad=(True, False))],
           check_finite_differences=False),
    OpInfo("linalg_cross", lambda a, b, dim=-1: torch.linalg.cross(a, b, dim=dim),
           [Sample(((4, 3), (4, 3))), Sample(((3,), (3,))), Sample(((4, 3), (1, 3))),
            Sample(((3, 2), (3, 2)), {"dim": 0}), Sample(((2, 3, 4), (2, 3, 1)), {"dim": -2}),
            Sample((ints((2, 3)), ints((2, 3))))]),
]

OPINFOS += [
    OpInfo("linalg_det", torch.linalg.det,
           [Sample((well_conditioned(3),)), Sample((well_conditioned(2, (3,)),)),
            Sample(((1, 1),))]),
    # the sign has no derivative: the log of the absolute value is compared and differentiated
    OpInfo("linalg_slogdet", torch.linalg.slogdet,
           [Sample((well_conditioned(3),)), Sample((well_conditioned(2, (2,)),)),
            Sample((lambda rng: -well_conditioned(3)(rng),))],
           outputs=(1,)),
    # eigenvalues only (eigenvectors are unique up to sign); one triangle is read and the
    # gradient is symmetric: no finite differences (see tests/test_linalg_decomp.py)
    OpInfo("_linalg_eigh", lambda a, UPLO="L": torch.linalg.eigh(a, UPLO=UPLO),  # noqa: N803
           [Sample((spd(3),)), Sample(((3, 3),)), Sample(((2, 4, 4),), {"UPLO": "U"})],
           outputs=(0,), check_finite_differences=False),
]

OPINFOS += [
    # numpy's LAPACK and torch's make the same Householder choices: Q and R compare as they are
    OpInfo("linalg_qr", lambda a, mode="reduced": torch.linalg.qr(a, mode=mode),
           [Sample(((4, 3),)), Sample(((3, 3),)), Sample(((3, 5),)), Sample(((2, 4, 2),)),
            Sample(((3, 4),), {"mode": "complete"}), Sample(((2, 3),), {"mode": "r"},
                                                             requires_grad=(False,))]),
]

def _pinv(a: Any, atol: Any = None, rtol: Any = None, hermitian: bool = False) -> Any:
    return torch.linalg.pinv(a, atol=atol, rtol=rtol, hermitian=hermitian)


OPINFOS += [
    OpInfo("linalg_pinv", _pinv,
           [Sample(((4, 3),)), Sample(((2, 5),)), Sample((well_conditioned(3),)),
            Sample(((2, 3, 2),)), Sample(((4, 3),), {"rtol": 1e-3}),
            Sample(((3, 4),), {"atol": 1e-4})]),
    # hermitian reads one triangle (an eigh) and the gradient is pinv_backward's full matrix:
    # no finite differences along non-symmetric directions
    OpInfo("linalg_pinv", _pinv, [Sample((spd(3),), {"hermitian": True})],
           check_finite_differences=False),
]

OPINFOS += [
    OpInfo("trace", torch.trace,
           [Sample(((3, 3),)), Sample(((3, 5),)), Sample(((4, 2),)), Sample(((0, 2),)),
            Sample((ints((3, 3)),)),
            Sample((lambda rng: np.arange(4, dtype=np.int32).reshape(2, 2),))]),
]
