"""Gaps a fourth set of public PyTorch programs met through gradserve, each checked against torch
in process (the engine) and through a session: `torch.mv` / `Tensor.mv` (a planar normalizing
flow) and `Tensor.type_as` (k-means centroid counts)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch
from tests.reference import builtin_error as _error

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _name(fn: Any) -> str | None:
    return None if fn is None else fn.name()


# --- mv -----------------------------------------------------------------------------------------

def _mv_run(t: Any) -> list[Any]:
    a = t.tensor([[0.5, -1.25, 2.0], [3.0, 0.125, -0.75]], requires_grad=True)
    v = t.tensor([1.5, -0.5, 0.25], requires_grad=True)
    y = t.mv(a, v)
    z = a.mv(v)
    (y * t.tensor([2.0, -3.0]) + z).sum().backward()
    ints = t.mv(t.tensor([[1, 2], [3, 4]]), t.tensor([5, -6]))
    return [y.tolist(), z.tolist(), _name(y.grad_fn), a.grad.tolist(), v.grad.tolist(),
            ints.tolist(), str(ints.dtype)]


def test_mv_matches_torch(lib):
    assert _mv_run(lib) == _mv_run(torch)


@pytest.mark.parametrize("call", [
    lambda t: t.mv(t.ones(2, 3), t.ones(2, 3)),
    lambda t: t.mv(t.ones(3), t.ones(3)),
    lambda t: t.mv(t.ones(2, 3, 2), t.ones(2)),
    lambda t: t.mv(t.ones(2, 3), t.tensor(1.0)),
    lambda t: t.mv(t.ones(2, 3), t.ones(2)),
    lambda t: t.mv(t.ones(2, 3), t.ones(3, dtype=t.float64)),
    lambda t: t.mv(t.ones(2, 3, dtype=t.int64), t.ones(3)),
    lambda t: t.mv(t.ones(2, 3), 3),
    lambda t: t.mv([[1.0]], t.ones(1)),
    lambda t: t.ones(2, 3).mv(3),
    lambda t: t.ones(2, 3).mv(np.ones(3)),
    lambda t: t.ones(2, 3).mv(t.ones(4)),
])
def test_mv_errors_match_torch(lib, call):
    assert _error(call, lib) == _error(call, torch)


# --- type_as ------------------------------------------------------------------------------------

def _type_as_run(t: Any) -> list[Any]:
    x = t.tensor([1.5, -2.25, 3.0], requires_grad=True)
    same = x.type_as(t.zeros(1))
    wider = x.type_as(t.zeros(1, dtype=t.float64))
    counts = t.tensor([3, 0, 2]).type_as(x)
    (wider * 2).sum().backward()
    return [same is x, _name(same.grad_fn), str(wider.dtype), _name(wider.grad_fn),
            wider.tolist(), str(counts.dtype), counts.tolist(), x.grad.tolist(),
            str(x.type_as(t.tensor([1])).dtype), x.type_as(t.tensor([1])).tolist()]


def test_type_as_matches_torch(lib):
    assert _type_as_run(lib) == _type_as_run(torch)


class _Plain:
    """A class defined in Python: torch names it by its bare name."""


@pytest.mark.parametrize("other", [3, 1.5, None, np.zeros(2), np.float64(2.0), _Plain()])
def test_type_as_refuses_a_non_tensor_as_torch(lib, other):
    def call(t: Any) -> Any:
        return t.ones(2).type_as(other)

    assert _error(call, lib) == _error(call, torch)


# --- numpy() of a tensor that requires grad -----------------------------------------------------

def _numpy_run(t: Any) -> list[Any]:
    w = t.tensor([2.0, -3.0], requires_grad=True)
    seen = []
    with t.no_grad():  # a logistic-regression tutorial prints its learned weights so
        seen.append(w.numpy().tolist())
        seen.append(np.asarray(w).tolist())
    with t.inference_mode():
        seen.append(w.numpy().tolist())
    with t.no_grad(), t.enable_grad():
        seen.append(_error(lambda _: w.numpy(), t))
    seen.append(_error(lambda _: w.numpy(), t))
    seen.append(_error(lambda _: np.asarray(w * 2), t))
    return seen


def test_numpy_under_no_grad_gives_the_values_as_torch(lib):
    assert _numpy_run(lib) == _numpy_run(torch)


# --- the grad_fn's class ------------------------------------------------------------------------

def _grad_fn_classes(t: Any) -> list[Any]:
    class Exp(t.autograd.Function):
        @staticmethod
        def forward(ctx: Any, i: Any) -> Any:
            result = i.exp()
            ctx.save_for_backward(result)
            return result

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            result, = ctx.saved_tensors
            return grad_output * result

    x = t.tensor([1.0, 2.0], requires_grad=True)
    y = x.clone()
    y[0] = 3.0
    seen = []
    for out in (x * 2, Exp.apply(x), y, (x * 2).sum()):
        fn = out.grad_fn
        seen.append((type(fn).__name__, type(fn).__module__,
                     repr(fn).split(" object at ")[0], fn.name()))
    return seen


def test_grad_fn_class_is_named_as_torchs_node_class(gradserve_client):
    # through a session (the engine's nodes are one class for now)
    with gradserve_client.session() as session:
        assert _grad_fn_classes(session) == _grad_fn_classes(torch)


# --- nonzero(as_tuple=True) ---------------------------------------------------------------------

def _nonzero_run(t: Any) -> list[Any]:
    ratings = t.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    users, items = t.nonzero(ratings, as_tuple=True)  # a recommender's observed entries
    x = t.tensor([1.0, 0.0, -2.0], requires_grad=True)
    seen = [users.tolist(), items.tolist(), str(users.dtype), ratings[users, items].tolist(),
            [v.tolist() for v in x.nonzero(as_tuple=True)],
            x.nonzero(as_tuple=True)[0].requires_grad,
            [v.tolist() for v in t.nonzero(t.tensor(3.0), as_tuple=True)],
            [v.tolist() for v in t.nonzero(t.tensor(0.0), as_tuple=True)],
            t.nonzero(ratings, as_tuple=False).tolist(), ratings.nonzero().tolist()]
    seen.append(_error(lambda _: t.nonzero(x, as_tuple=1), t))
    return seen


def test_nonzero_as_tuple_matches_torch(lib):
    assert _nonzero_run(lib) == _nonzero_run(torch)


def test_tensor_class_shows_as_torchs(gradserve_client):
    # a tensors tutorial prints type(torch.empty(3, 4))
    with gradserve_client.session() as session:
        x = session.zeros(3, 4)
        assert repr(type(x)) == repr(type(torch.zeros(3, 4))) == "<class 'torch.Tensor'>"
        assert type(x).__name__ == "Tensor"


# --- torch.linalg.matmul ------------------------------------------------------------------------

def _linalg_matmul_run(t: Any) -> list[Any]:
    m1 = t.tensor([[0.5, 1.5], [-2.0, 0.25]], requires_grad=True)
    m2 = t.tensor([[3.0, 0.0], [0.0, 3.0]])
    m3 = t.linalg.matmul(m1, m2)  # a tensors tutorial's "Vectors & Matrices"
    v = t.linalg.matmul(m1, t.tensor([1.0, -1.0]))
    (m3.sum() + v.sum()).backward()
    return [m3.tolist(), _name(m3.grad_fn), _name(v.grad_fn), m1.grad.tolist(),
            t.linalg.matmul(input=m1, other=m2).tolist()]


def test_linalg_matmul_matches_torch(lib):
    assert _linalg_matmul_run(lib) == _linalg_matmul_run(torch)


@pytest.mark.parametrize("call", [
    lambda t: t.linalg.matmul(t.ones(2, 2), 3),
    lambda t: t.linalg.matmul([[1.0]], t.ones(1, 1)),
    lambda t: t.linalg.matmul(t.ones(2, 2), t.ones(3)).tolist(),  # a session raises on fetch
])
def test_linalg_matmul_errors_match_torch(lib, call):
    assert _error(call, lib) == _error(call, torch)
