"""`dim=None` given to sum/mean is torch's `*.dim_IntList` overload (SumBackward1,
MeanBackward1), not the argument left out (SumBackward0): engine, session, torch alike
(surface/signature.GIVEN_NONE)."""

from __future__ import annotations

import pytest

import gradserve.client as gc_client
import gradserve.engine as engine
from tests.reference import torch

CALLS = [
    "x.sum()", "x.sum(None)", "x.sum(dim=None)", "x.sum(dim=None, keepdim=True)",
    "x.sum(None, True)", "t.sum(x, None)", "t.sum(x, dim=None, dtype=t.float64)",
    "x.sum(dtype=t.float64)", "x.mean()", "x.mean(None)", "x.mean(dim=None)",
    "t.mean(x, dim=None, keepdim=True)", "x.mean(None, False, dtype=t.float64)",
    "x.sum(0)", "x.mean(dim=[])", "x.sum(dim=(), keepdim=True)",
]


def _run(t, call):
    x = t.arange(6.0).reshape(2, 3).requires_grad_()
    r = eval(call, {"t": t, "x": x})
    r.backward(t.ones_like(r))
    return tuple(r.shape), str(r.dtype), r.grad_fn.name(), r.tolist(), x.grad.tolist()


@pytest.mark.parametrize("call", CALLS)
def test_in_process_as_torch(call):
    assert _run(engine, call) == _run(torch, call)


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.mark.parametrize("verify", [False, True], ids=["inferred", "verified"])
@pytest.mark.parametrize("call", CALLS)
def test_through_a_session_as_torch(client, call, verify):
    # inferred: the client's own node name; verified: the server's, compared with it
    with client.session(verify_meta=verify) as session:
        assert _run(session, call) == _run(torch, call)


def test_a_function_passing_its_dim_on_records_torchs_node(client):
    def total(x, dim=None):  # library code passes its own default on
        return x.sum(dim=dim)

    with client.session() as session:
        for t in (torch, engine, session):
            x = t.ones(2, 2, requires_grad=True)
            assert total(x).grad_fn.name() == "SumBackward1"
            assert total(x, 0).grad_fn.name() == "SumBackward1"
