"""The in-place variants of engine/ops_math.py's ops (`x.asin_()`, `x.atan2_(y)`, ...) against
torch through the engine and a session: values, the node recorded, gradients."""

from __future__ import annotations

import numpy as np
import pytest

import gradserve.client as gc_client
import gradserve.engine as ge
from tests.reference import torch

X = [[0.2, -0.5, 0.7], [0.4, -0.3, 0.9]]
Y = [[0.6, 0.1, -0.8], [0.3, 0.5, 0.2]]
# (asinh_, acosh_, atanh_: torch's have no derivative; gradserve does not have them)
UNARY = ["asin", "acos", "atan", "sinh", "cosh", "log10", "trunc", "frac", "erfc", "sgn"]
BINARY = ["atan2", "hypot", "xlogy"]


def _inputs(mod, name):
    x = np.abs(X) if name in ("log10", "xlogy") else X
    y = np.abs(Y) if name == "xlogy" else Y
    return (mod.tensor(np.asarray(x).tolist(), requires_grad=True),
            mod.tensor(np.asarray(y).tolist(), requires_grad=True))


def _run(mod, name):
    x, y = _inputs(mod, name)
    target = x * 1  # a non-leaf, as torch requires for an in-place op under grad
    out = getattr(target, name + "_")(*(() if name in UNARY else (y,)))
    assert out is target
    node = out.grad_fn.name()
    (out * out).sum().backward()
    return [_values(t) for t in (out, x.grad, y.grad)], node


def _values(t):
    if t is None:
        return None
    if getattr(t, "_is_zerotensor", lambda: False)():  # torch's zero gradient (sgn's) has no data
        return np.zeros(tuple(t.shape))
    return np.asarray(t.detach().tolist())


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.mark.parametrize("side", ["engine", "client"])
@pytest.mark.parametrize("name", UNARY + BINARY)
def test_inplace_matches_torch(client, side, name):
    if side == "engine":
        ours, our_node = _run(ge, name)
    else:
        with client.session() as s:
            ours, our_node = _run(s, name)
    theirs, their_node = _run(torch, name)
    assert our_node == their_node
    for a, b in zip(ours, theirs):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
