"""torch.linalg's decompositions and solvers against torch, in process and through a session.

The OpInfos (tests/opinfo_linalg.py) compare values, singular values' gradients and second
derivatives op by op; here: singular vectors through sign-invariant quantities (LAPACK builds may
pick other signs), the spellings (torch.svd, torch.linalg.svdvals, torch.cross's default dim),
torch's errors (LinAlgError and its texts), gradients along the directions a one-triangle
factorization is differentiable in, and whole programs (Gaussian-process regression, PCA).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import torch

from .opinfo_linalg import spd


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


def _tensor(lib: Any, a: Any, grad: bool = False) -> Any:
    return lib.tensor(np.asarray(a), requires_grad=grad)


def _close(got: Any, want: Any, rtol: float = 1e-4, atol: float = 1e-5, what: str = "") -> None:
    np.testing.assert_allclose(_np(got) if hasattr(got, "detach") else got,
                               _np(want) if hasattr(want, "detach") else want,
                               rtol=rtol, atol=atol, err_msg=what)


def _matrix(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- svd: singular vectors through sign-invariant quantities ------------------------------------

def _svd_invariants(lib: Any, a: np.ndarray, full: bool, create_graph: bool) -> list[Any]:
    """Sign-invariant functions of U, S, Vh, the gradient of a weighted sum of them, and (with
    create_graph) a second derivative."""
    x = _tensor(lib, a, True)
    u, s, vh = lib.linalg.svd(x, full_matrices=full)
    k = s.shape[-1]
    uk, vk = u[..., :, :k], vh[..., :k, :]  # the extra columns of a full U are any basis
    recon = (uk * s.unsqueeze(-2)) @ vk
    left = uk @ uk.transpose(-2, -1)  # projectors onto the singular subspaces
    right = vk.transpose(-2, -1) @ vk
    pairs = uk.unsqueeze(-1) * vk.unsqueeze(-3)  # u_j v_j^T: a sign flip of both cancels
    rng = np.random.default_rng(1)
    terms = [recon, left, right, pairs]
    loss = s.sum()
    for t in terms:
        loss = loss + (t * _tensor(lib, rng.standard_normal(tuple(t.shape)).astype(
            np.float32))).sum()
    (g,) = lib.autograd.grad(loss, x, create_graph=create_graph)
    out = [s, *terms, g]
    if create_graph:
        w = _tensor(lib, rng.standard_normal(a.shape).astype(np.float32))
        out += list(lib.autograd.grad((g * w).sum(), x))
    return out


@pytest.mark.parametrize(("shape", "full"), [((4, 3), True), ((3, 5), True), ((3, 5), False),
                                             ((2, 4, 4), False), ((5, 2), False),
                                             ((2, 3, 2), True)])
def test_svd_vectors_match_torch_up_to_sign(gradserve_lib, shape, full):
    a = _matrix(shape)
    create_graph = len(shape) == 2  # second derivatives on the unbatched cases
    want = _svd_invariants(torch, a, full, create_graph)
    got = _svd_invariants(gradserve_lib, a, full, create_graph)
    names = ["S", "U S Vh", "U U^T", "V V^T", "u_j v_j^T", "gradient", "second derivative"]
    for name, g, w in zip(names, got, want):
        _close(g, w, rtol=2e-3, atol=2e-4, what=name)


def _eigh_invariants(lib: Any, a: np.ndarray, uplo: str) -> list[Any]:
    x = _tensor(lib, a, True)
    values, vectors = lib.linalg.eigh(x, UPLO=uplo)
    recon = (vectors * values.unsqueeze(-2)) @ vectors.transpose(-2, -1)
    pairs = vectors.unsqueeze(-2) * vectors.unsqueeze(-3)  # [i, k, j] = v_j[i] v_j[k]
    rng = np.random.default_rng(2)
    loss = (recon * _tensor(lib, rng.standard_normal(a.shape).astype(np.float32))).sum() + (
        pairs * _tensor(lib, rng.standard_normal(tuple(pairs.shape)).astype(np.float32))).sum()
    (g,) = lib.autograd.grad(loss, x, create_graph=True)
    (g2,) = lib.autograd.grad((g * g).sum(), x)
    return [values, recon, pairs, g, g2]


@pytest.mark.parametrize(("shape", "uplo"), [((3, 3), "L"), ((2, 4, 4), "U")])
def test_eigh_vectors_match_torch_up_to_sign(gradserve_lib, shape, uplo):
    a = _matrix(shape, seed=4)
    want = _eigh_invariants(torch, a, uplo)
    got = _eigh_invariants(gradserve_lib, a, uplo)
    for name, g, w in zip(["eigenvalues", "V L V^T", "v_i v_i^T", "gradient", "second"], got,
                          want):
        _close(g, w, rtol=2e-3, atol=2e-4, what=name)


def test_svd_gradient_matches_finite_differences():
    a = np.random.default_rng(3).standard_normal((4, 3))
    w = np.random.default_rng(4).standard_normal((4, 3))

    def loss(m: np.ndarray, grad: bool = False) -> Any:
        x = ge.tensor(m, requires_grad=grad)
        u, s, vh = ge.linalg.svd(x, full_matrices=False)
        value = (((u * s.unsqueeze(-2)) @ vh) * ge.tensor(w)).sum() + (u[:, :2] @ u[:, :2].T
                                                                      ).sum() + s.max()
        return x, value

    x, value = loss(a, True)
    (g,) = ge.autograd.grad(value, x)
    rng = np.random.default_rng(5)
    for _ in range(3):
        d = rng.standard_normal(a.shape)
        fd = (loss(a + 1e-6 * d)[1].item() - loss(a - 1e-6 * d)[1].item()) / 2e-6
        assert abs(fd - float(np.sum(_np(g) * d))) < 1e-5 * max(1.0, abs(fd))


def test_svdvals_gradient_is_finite_for_repeated_singular_values(gradserve_lib):
    # torch's svd_backward takes U diag(gS) Vh when U and Vh get no gradient; the full formula
    # divides by S_k^2 - S_j^2, zero here
    a = (2 * np.eye(3)).astype(np.float32)
    results = []
    for lib in (torch, gradserve_lib):
        x = _tensor(lib, a, True)
        lib.linalg.svdvals(x).sum().backward()
        y = _tensor(lib, a, True)
        lib.svd(y).S.sum().backward()
        results.append((x.grad, y.grad))
    for got, want in zip(results[1], results[0]):
        _close(got, want)
        assert np.isfinite(_np(got)).all()


def test_svd_spellings_match_torch(gradserve_lib):
    a = _matrix((4, 3))
    for some in (True, False):
        t, g = (lib.svd(_tensor(lib, a, True), some=some) for lib in (torch, gradserve_lib))
        assert [tuple(x.shape) for x in g] == [tuple(x.shape) for x in t]
        assert [x.grad_fn.name() for x in g] == [x.grad_fn.name() for x in t]
        k = 3
        _close((g.U[:, :k] * g.S) @ g.V[:, :k].T, a, atol=1e-5)
    t, g = (lib.svd(_tensor(lib, a, True), compute_uv=False) for lib in (torch, gradserve_lib))
    for x, y in zip(g, t):
        _close(x, y)
        assert (x.grad_fn is None) == (y.grad_fn is None)
    x = _tensor(gradserve_lib, a)
    r = gradserve_lib.linalg.svd(x)
    assert (r.U.shape, r.S.shape, r.Vh.shape) == ((4, 4), (3,), (3, 3))
    assert repr(gradserve_lib.linalg.svd(gradserve_lib.eye(2))) == repr(
        torch.linalg.svd(torch.eye(2)))
    assert repr(x.svd(compute_uv=False)).startswith("torch.return_types.svd(\nU=tensor([[0.")
    empty = gradserve_lib.linalg.svd(gradserve_lib.zeros(0, 3))
    assert [tuple(e.shape) for e in empty] == [(0, 0), (0,), (3, 3)]
    _close(empty.Vh, np.eye(3, dtype=np.float32))


# --- errors: type and text as torch's ----------------------------------------------------------

def _raised(fn: Callable[[Any], Any], lib: Any) -> BaseException:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            out = fn(lib)
            for t in out if isinstance(out, tuple) else (out,):
                if hasattr(t, "tolist"):
                    t.tolist()  # a session runs the op when a value is needed
        except Exception as exc:  # noqa: BLE001 - the test compares what was raised
            return exc
    raise AssertionError(f"{lib.__name__ if hasattr(lib, '__name__') else lib} raised nothing")


def _m(lib: Any, *shape: int, dtype: str = "float32") -> Any:
    return lib.ones(*shape, dtype=getattr(lib, dtype))


def _builtin(exc: BaseException) -> str:
    """The built-in exception class `exc` is (the engine raises typed subclasses)."""
    return next(k.__name__ for k in type(exc).__mro__ if k.__module__ == "builtins")


_SINGULAR = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 4.0]]]
_NOT_PD = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]]

ERRORS: list[tuple[str, Callable[[Any], Any]]] = [
    ("svd of an integer tensor", lambda t: t.linalg.svd(_m(t, 2, 2, dtype="long"))),
    ("svd of a vector", lambda t: t.linalg.svd(_m(t, 3))),
    ("torch.svd of a vector", lambda t: t.svd(_m(t, 3))),
    ("svdvals of an integer tensor", lambda t: t.linalg.svdvals(_m(t, 2, 2, dtype="long"))),
    ("svd of nan", lambda t: t.linalg.svd(t.full((2, 2), float("nan")))),
    ("cholesky not positive-definite", lambda t: t.linalg.cholesky(t.tensor(_NOT_PD[1]))),
    ("cholesky batch element", lambda t: t.linalg.cholesky(t.tensor(_NOT_PD))),
    ("cholesky negative", lambda t: t.linalg.cholesky(t.tensor([[-1.0, 0.0], [0.0, 1.0]]))),
    ("cholesky order 3", lambda t: t.linalg.cholesky(t.tensor(
        [[4.0, 2.0, 0.0], [2.0, 2.0, 3.0], [0.0, 3.0, 1.0]]))),
    ("cholesky upper reads the upper triangle", lambda t: t.linalg.cholesky(t.tensor(
        [[1.0, 2.0], [0.0, 1.0]]), upper=True)),
    ("cholesky of nan", lambda t: t.linalg.cholesky(t.full((2, 2), float("nan")))),
    ("cholesky not square", lambda t: t.linalg.cholesky(_m(t, 2, 3))),
    ("cholesky of a vector", lambda t: t.linalg.cholesky(_m(t, 3))),
    ("cholesky of integers", lambda t: t.linalg.cholesky(_m(t, 2, 2, dtype="long"))),
    ("torch.cholesky not positive-definite", lambda t: t.cholesky(t.tensor(_NOT_PD[1]))),
    ("torch.cholesky not square", lambda t: t.cholesky(_m(t, 2, 3))),
    ("inv singular", lambda t: t.linalg.inv(t.tensor(_SINGULAR[1]))),
    ("inv zeros", lambda t: t.linalg.inv(t.zeros(3, 3))),
    ("inv batch element", lambda t: t.linalg.inv(t.tensor(_SINGULAR))),
    ("inverse not square", lambda t: t.inverse(_m(t, 2, 3))),
    ("inv of integers", lambda t: t.linalg.inv(_m(t, 2, 2, dtype="long"))),
    ("solve singular", lambda t: t.linalg.solve(t.zeros(3, 3), _m(t, 3))),
    ("solve batch element", lambda t: t.linalg.solve(t.tensor(_SINGULAR), _m(t, 2, 2))),
    ("solve rows", lambda t: t.linalg.solve(_m(t, 3, 3), _m(t, 4, 2))),
    ("solve vector", lambda t: t.linalg.solve(_m(t, 3, 3), _m(t, 4))),
    ("solve left=False vector", lambda t: t.linalg.solve(_m(t, 3, 3), _m(t, 3), left=False)),
    ("solve batch of vectors, wrong size", lambda t: t.linalg.solve(_m(t, 2, 3, 3), _m(t, 4, 3))),
    ("solve not square", lambda t: t.linalg.solve(_m(t, 2, 3), _m(t, 2))),
    ("solve dtypes", lambda t: t.linalg.solve(_m(t, 3, 3), _m(t, 3, 2, dtype="float64"))),
    ("solve integers", lambda t: t.linalg.solve(_m(t, 3, 3, dtype="long"),
                                                _m(t, 3, dtype="long"))),
    ("solve 0-d B", lambda t: t.linalg.solve(_m(t, 3, 3), t.tensor(1.0))),
    ("solve batches", lambda t: t.linalg.solve(_m(t, 2, 3, 3), _m(t, 4, 3, 1))),
    ("solve_triangular vector", lambda t: t.linalg.solve_triangular(_m(t, 3, 3), _m(t, 3),
                                                                    upper=True)),
    ("solve_triangular without upper", lambda t: t.linalg.solve_triangular(_m(t, 3, 3),
                                                                           _m(t, 3, 2))),
    ("solve_triangular rows", lambda t: t.linalg.solve_triangular(_m(t, 3, 3), _m(t, 4, 2),
                                                                  upper=True)),
    ("solve_triangular not square", lambda t: t.linalg.solve_triangular(
        _m(t, 3, 4), _m(t, 3, 2), upper=True)),
    ("solve_triangular integers", lambda t: t.linalg.solve_triangular(
        _m(t, 3, 3, dtype="long"), _m(t, 3, 2, dtype="long"), upper=True)),
    ("solve_triangular batches", lambda t: t.linalg.solve_triangular(
        _m(t, 2, 3, 3), _m(t, 4, 3, 2), upper=True)),
    ("cholesky_solve vector", lambda t: t.cholesky_solve(_m(t, 3), _m(t, 3, 3))),
    ("cholesky_solve rows", lambda t: t.cholesky_solve(_m(t, 4, 2), _m(t, 3, 3))),
    ("cholesky_solve not square", lambda t: t.cholesky_solve(_m(t, 3, 2), _m(t, 3, 4))),
    ("cholesky_solve dtypes", lambda t: t.cholesky_solve(_m(t, 3, 2),
                                                         _m(t, 3, 3, dtype="float64"))),
    ("cholesky_solve integers", lambda t: t.cholesky_solve(_m(t, 3, 2, dtype="long"),
                                                           _m(t, 3, 3, dtype="long"))),
    ("cross length", lambda t: t.linalg.cross(_m(t, 4, 2), _m(t, 4, 2))),
    ("cross dims", lambda t: t.linalg.cross(_m(t, 4, 3), _m(t, 3))),
    ("cross dtypes", lambda t: t.linalg.cross(_m(t, 4, 3), _m(t, 4, 3, dtype="float64"))),
    ("cross bool", lambda t: t.linalg.cross(_m(t, 4, 3, dtype="bool"), _m(t, 4, 3, dtype="bool"))),
    ("cross dim out of range", lambda t: t.linalg.cross(_m(t, 3, 4), _m(t, 3, 4), dim=2)),
    ("torch.cross without a dim of 3", lambda t: t.cross(_m(t, 2, 4), _m(t, 2, 4))),
    ("torch.cross dim", lambda t: t.cross(_m(t, 3, 2), _m(t, 3, 2), dim=1)),
    ("det of integers", lambda t: t.linalg.det(_m(t, 2, 2, dtype="long"))),
    ("det of a vector", lambda t: t.linalg.det(_m(t, 3))),
    ("det not square", lambda t: t.det(_m(t, 2, 3))),
    ("slogdet not square", lambda t: t.linalg.slogdet(_m(t, 2, 3))),
    ("slogdet of integers", lambda t: t.slogdet(_m(t, 2, 2, dtype="long"))),
    ("logdet of integers", lambda t: t.logdet(_m(t, 2, 2, dtype="long"))),
    ("eigh of integers", lambda t: t.linalg.eigh(_m(t, 2, 2, dtype="long"))),
    ("eigvalsh of integers", lambda t: t.linalg.eigvalsh(_m(t, 2, 2, dtype="long"))),
    ("eigh of a vector", lambda t: t.linalg.eigh(_m(t, 3))),
    ("eigh not square", lambda t: t.linalg.eigh(_m(t, 2, 3))),
    ("eigh UPLO", lambda t: t.linalg.eigh(_m(t, 3, 3), UPLO="X")),
    ("pinv of a vector", lambda t: t.linalg.pinv(_m(t, 3))),
    ("pinv of integers", lambda t: t.linalg.pinv(_m(t, 3, 3, dtype="long"))),
    ("pinv hermitian not square", lambda t: t.linalg.pinv(_m(t, 2, 3), hermitian=True)),
    ("trace of a vector", lambda t: t.trace(_m(t, 3))),
    ("trace of 3 dims", lambda t: _m(t, 2, 2, 2).trace()),
    ("trace of bools", lambda t: t.trace(_m(t, 2, 2, dtype="bool"))),
    ("qr mode", lambda t: t.linalg.qr(_m(t, 3, 2), mode="x")),
    ("qr of integers", lambda t: t.linalg.qr(_m(t, 2, 2, dtype="long"))),
    ("qr of a vector", lambda t: t.linalg.qr(_m(t, 3))),
    ("qr backward without Q", lambda t: t.linalg.qr(
        t.ones(3, 2, requires_grad=True), mode="r").R.sum().backward()),
    ("qr complete backward, more rows", lambda t: t.linalg.qr(
        t.eye(3, 2, requires_grad=True), mode="complete").Q.sum().backward()),
]


@pytest.mark.parametrize(("what", "fn"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_match_torch(gradserve_lib, what, fn):
    want = _raised(fn, torch)
    got = _raised(fn, gradserve_lib)
    assert str(got).split("\n")[0] == str(want).split("\n")[0]
    if isinstance(want, torch.linalg.LinAlgError):
        assert isinstance(got, gradserve_lib.linalg.LinAlgError)
        assert isinstance(got, RuntimeError)
    else:
        assert _builtin(got) == _builtin(want)  # RuntimeError, TypeError, ...
        assert not isinstance(got, gradserve_lib.linalg.LinAlgError)


def test_linalg_error_is_a_runtime_error(gradserve_lib):
    with pytest.raises(gradserve_lib.linalg.LinAlgError, match="not positive-definite"):
        gradserve_lib.linalg.cholesky(-gradserve_lib.eye(2)).tolist()
    with pytest.raises(RuntimeError, match="singular"):
        gradserve_lib.linalg.inv(gradserve_lib.zeros(2, 2)).tolist()


# --- what torch computes where the input is not what the function assumes -----------------------

EDGES: list[tuple[str, Callable[[Any, Any], Any]]] = [
    # only one triangle is read
    ("cholesky of a non-symmetric matrix", lambda t, a: t.linalg.cholesky(a)),
    ("cholesky upper of a non-symmetric matrix", lambda t, a: t.linalg.cholesky(a, upper=True)),
    ("solve_triangular ignores the other triangle",
     lambda t, a: t.linalg.solve_triangular(a, a[:, :2], upper=True)),
    ("solve_triangular unitriangular ignores the diagonal",
     lambda t, a: t.linalg.solve_triangular(a * 5, a[:, :2], upper=False, unitriangular=True)),
    ("cholesky_solve reads one triangle", lambda t, a: t.cholesky_solve(a[:, :2], a)),
    # a zero on the diagonal: substitution gives inf and nan, as torch's trsm
    ("solve_triangular with a zero pivot", lambda t, a: t.linalg.solve_triangular(
        a * t.tensor([1.0, 0.0, 1.0]), a[:, :1], upper=False)),
    ("solve of vectors in a batch", lambda t, a: t.linalg.solve(
        a.expand(2, 3, 3), a[:, 0].expand(2, 3))),
    ("solve left=False", lambda t, a: t.linalg.solve(a, a[:2], left=False)),
    ("torch.cross default dim", lambda t, a: t.cross(a, a.flip(0))),
    ("Tensor.cross", lambda t, a: a[:2].cross(a[1:], dim=1)),
    ("Tensor.cholesky_solve", lambda t, a: a[:, :1].cholesky_solve(a, upper=True)),
    ("Tensor.inverse", lambda t, a: a.inverse()),
    ("torch.inverse", lambda t, a: t.inverse(a)),
    ("empty cholesky", lambda t, a: t.linalg.cholesky(a[:0, :0])),
    ("eigvalsh reads the lower triangle", lambda t, a: t.linalg.eigvalsh(a)),
    ("eigvalsh UPLO='U'", lambda t, a: t.linalg.eigvalsh(a, UPLO="U")),
    ("det", lambda t, a: t.det(a - 1)),
    ("slogdet", lambda t, a: t.stack(list(t.linalg.slogdet(a - 2)))),
    ("Tensor.slogdet", lambda t, a: (a - 2).slogdet().logabsdet),
    ("logdet", lambda t, a: t.logdet(a + 1)),
    ("logdet of a negative determinant", lambda t, a: (a[[1, 0, 2]]).logdet()),
    ("det of a singular matrix", lambda t, a: t.linalg.det(a[[0, 0, 1]])),
    ("svd of a singular matrix, values", lambda t, a: t.linalg.svdvals(a[[0, 0, 1]])),
    ("spectral norm", lambda t, a: t.linalg.matrix_norm(a, 2)),
    ("pinv of a singular matrix", lambda t, a: t.linalg.pinv(a[[0, 0, 1]])),
    ("pinverse", lambda t, a: t.pinverse(a[:2], rcond=1e-2)),
    ("Tensor.pinverse", lambda t, a: a.T[:2].pinverse()),
    ("pinv atol", lambda t, a: t.linalg.pinv(a, atol=3.5)),
    ("trace", lambda t, a: t.trace(a[:2])),
    ("Tensor.trace", lambda t, a: (a @ a).trace()),
    ("torch.qr", lambda t, a: t.cat([m.flatten() for m in t.qr(a[:, :2])])),
    ("Tensor.qr complete", lambda t, a: t.cat(list(a[:2].qr(some=False)), 1)),
    ("linalg.qr R", lambda t, a: t.linalg.qr(a.T[:2], mode="r").R.detach()),
]


@pytest.mark.parametrize(("what", "fn"), EDGES, ids=[e[0] for e in EDGES])
def test_values_and_gradients_match_torch(gradserve_lib, what, fn):
    a = (spd(3)(np.random.default_rng(2)) + np.triu(np.ones((3, 3)), 1)).astype(np.float32)
    outs = []
    for lib in (torch, gradserve_lib):
        x = _tensor(lib, a, True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            y = fn(lib, x)
        grad = None
        if y.requires_grad and y.numel() and np.isfinite(_np(y)).all():
            (grad,) = lib.autograd.grad((y * y).sum(), x)
        outs.append((y, grad, y.grad_fn.name() if y.grad_fn is not None else None))
    (want, want_grad, want_name), (got, got_grad, got_name) = outs
    assert got_name == want_name
    assert tuple(got.shape) == tuple(want.shape)
    _close(got, want, rtol=1e-4, atol=1e-4, what="values")
    if want_grad is not None:
        _close(got_grad, want_grad, rtol=1e-3, atol=1e-3, what="gradient")


def test_cross_without_dim_warns_as_torch(gradserve_lib):
    a = _tensor(gradserve_lib, _matrix((2, 3)))
    with pytest.warns(UserWarning, match="Using torch.cross without specifying the dim arg is "
                                         "deprecated") as record:
        gradserve_lib.cross(a, a)
    assert record[0].filename == __file__


def test_cholesky_gradient_along_symmetric_directions():
    """cholesky reads one triangle; its (symmetric) gradient is the derivative along symmetric
    perturbations, the ones that keep the input a valid one."""
    a = spd(4)(np.random.default_rng(6)).astype(np.float64)
    w = np.random.default_rng(7).standard_normal((4, 4))
    for upper in (False, True):
        def loss(m: np.ndarray, grad: bool = False, up: bool = upper) -> Any:
            x = ge.tensor(m, requires_grad=grad)
            factor = ge.linalg.cholesky(x, upper=up)
            return x, (factor * ge.tensor(w)).sum() + factor.diagonal().log().sum()

        x, value = loss(a, True)
        (g,) = ge.autograd.grad(value, x)
        np.testing.assert_allclose(_np(g), _np(g).T, rtol=1e-12, atol=1e-12)
        rng = np.random.default_rng(8)
        for _ in range(3):
            d = rng.standard_normal(a.shape)
            d = d + d.T
            fd = (loss(a + 1e-6 * d)[1].item() - loss(a - 1e-6 * d)[1].item()) / 2e-6
            assert abs(fd - float(np.sum(_np(g) * d))) < 1e-6 * max(1.0, abs(fd))


# --- whole programs ------------------------------------------------------------------------------

def _gp_regression(lib: Any, steps: int = 4) -> list[Any]:
    """Exact Gaussian-process regression: fit an RBF kernel's length scale and the noise by the
    marginal likelihood (cholesky, solve_triangular, cholesky_solve), then predict."""
    rng = np.random.default_rng(11)
    x = lib.tensor(np.sort(rng.uniform(-3, 3, 12)).astype(np.float32)).unsqueeze(-1)
    y = lib.sin(x).squeeze(-1) + 0.1 * lib.tensor(rng.standard_normal(12).astype(np.float32))
    test = lib.linspace(-3.0, 3.0, 5).unsqueeze(-1)
    log_scale = lib.tensor(0.0, requires_grad=True)
    log_noise = lib.tensor(-2.0, requires_grad=True)
    optimizer = lib.optim.Adam([log_scale, log_noise], lr=0.05)

    def kernel(a: Any, b: Any) -> Any:
        d2 = (a - b.T) ** 2
        return lib.exp(-0.5 * d2 / lib.exp(2 * log_scale))

    trace = []
    for _ in range(steps):
        optimizer.zero_grad()
        k = kernel(x, x) + lib.exp(log_noise) * lib.eye(12)
        chol = lib.linalg.cholesky(k)
        alpha = lib.linalg.solve_triangular(chol, y.unsqueeze(-1), upper=False)
        nll = 0.5 * (alpha ** 2).sum() + chol.diagonal().log().sum()
        nll.backward()
        optimizer.step()
        trace += [nll.detach(), log_scale.grad.clone(), log_noise.grad.clone()]
    with lib.no_grad():
        k = kernel(x, x) + lib.exp(log_noise) * lib.eye(12)
        chol = lib.linalg.cholesky(k)
        mean = kernel(test, x) @ lib.cholesky_solve(y.unsqueeze(-1), chol)
        ks = kernel(test, x)
        v = lib.linalg.solve(k, ks.T)
        var = 1.0 - (ks * v.T).sum(-1)
    return [*trace, mean, var]


def _pca(lib: Any) -> list[Any]:
    """PCA by SVD: the explained variance, a rank-2 reconstruction's error and its gradient with
    respect to the data (sign-invariant), and cross products of the first components."""
    rng = np.random.default_rng(12)
    data = lib.tensor((rng.standard_normal((20, 4)) @ np.diag([3.0, 2.0, 0.5, 0.1])
                       ).astype(np.float32), requires_grad=True)
    centered = data - data.mean(0)
    u, s, v = lib.svd(centered)
    explained = s ** 2 / (s ** 2).sum()
    low_rank = (u[:, :2] * s[:2]) @ v[:, :2].T
    error = ((centered - low_rank) ** 2).mean()
    error.backward()
    _, s2, vh = lib.linalg.svd(centered.detach(), full_matrices=False)
    axes = lib.linalg.cross(vh[0, :3], vh[1, :3]).abs()
    return [explained, error.detach(), data.grad, lib.linalg.svdvals(centered.detach()) - s2,
            axes]


@pytest.mark.parametrize("program", [_gp_regression, _pca])
def test_programs_match_torch(gradserve_lib, program):
    want = program(torch)
    got = program(gradserve_lib)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        _close(g, w, rtol=1e-3, atol=1e-4, what=f"{program.__name__} result {i}")


# --- bounds: a factorization cannot be interrupted, so its work is declared ---------------------

def test_factorization_work_is_bounded():
    n = 200
    a = ge.ones(n, n) + n * ge.eye(n)
    with ge.limits.allocation_limit(n * n):  # 40,000 elements: 41M units of work for one op
        ge.linalg.solve(a, ge.ones(n, 1))  # an LU and a substitution, ~n^3: admitted
        for call in (lambda: ge.linalg.svd(a), lambda: ge.linalg.cholesky(a)):
            with pytest.raises(ge.errors.AllocationLimitError, match="units of work"):
                call()
