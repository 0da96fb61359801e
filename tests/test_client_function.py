"""The functional autograd API through a session: gradserve.surface.functional bound to the
client's Session (every autograd.grad is one round trip), compared with torch."""

from __future__ import annotations

import numpy as np
import pytest

from gradserve import client as gc_client
from tests.reference import torch


@pytest.fixture
def session(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c, c.session() as s:
        yield s

A = np.array([0.5, -1.25, 2.0])
V = np.array([0.25, 1.0, -1.0])


def program(lib):
    F = lib.autograd.functional
    x = lib.tensor(A, dtype=lib.float64, requires_grad=True)
    v = lib.tensor(V, dtype=lib.float64)
    w = lib.tensor([[1.0, 2.0], [-0.5, 0.75], [0.0, 1.0]], dtype=lib.float64,
                   requires_grad=True)
    cube = lambda a: (a ** 3).sum()  # noqa: E731
    return {
        "jacobian": F.jacobian(lambda a: a.sin() * a, x),
        "jacobian_tuple": F.jacobian(lambda a, b: a @ b, (x, w)),
        "jacobian_graph": F.jacobian(lambda a: a ** 2, x, create_graph=True),
        "hessian": F.hessian(cube, x),
        "vjp": F.vjp(lambda a: a.exp(), x, v),
        "jvp": F.jvp(lambda a: a.tanh(), x, v),
        "hvp": F.hvp(cube, x, v),
        "vhp": F.vhp(cube, x, v, create_graph=True),
    }


def flat(value):
    if isinstance(value, (tuple, list)):
        return [y for v in value for y in flat(v)]
    return [value]


def test_functional_through_a_session_matches_torch(session):
    s = session
    before = s.round_trips
    got = program(s)
    trips = s.round_trips - before
    want = program(torch)
    for key in want:
        g, w = flat(got[key]), flat(want[key])
        assert len(g) == len(w), key
        for a, b in zip(g, w):
            np.testing.assert_allclose(np.array(a.tolist()), b.detach().numpy(), rtol=1e-12,
                                       err_msg=key)
            assert (a.grad_fn is None) == (b.grad_fn is None), key
    # one round trip per autograd.grad: jacobian rows, the double-backward trick's two grads
    assert trips < 60, trips


def test_gradcheck_through_a_session(session):
    s = session
    x = s.tensor(A, dtype=s.float64, requires_grad=True)
    assert s.autograd.gradcheck(lambda a: a.sin() * a, (x,))
    assert s.autograd.gradgradcheck(lambda a: a.sin() * a, (x,))
    with pytest.raises(RuntimeError, match="Jacobian mismatch for output 0 with respect to "
                                           "input 0"):
        # a "function" whose values and gradients disagree: values of 2x, gradient of 3x
        s.autograd.gradcheck(lambda a: (a * 3) - (a * 1).detach(), (x,))


def test_functional_errors_through_a_session(session):
    s = session
    x = s.tensor(A, dtype=s.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="^The vector v can only be None if the user-provided"):
        s.autograd.functional.vjp(lambda a: a * 2, x)
    with pytest.raises(TypeError, match="must be either a Tensor or a tuple of Tensors"):
        s.autograd.functional.jacobian(lambda a: a, 3.0)
