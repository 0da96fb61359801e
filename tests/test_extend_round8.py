"""Gaps an eighth set of public programs that extend autograd met through gradserve, each checked
against torch: `torch.autograd.backward` of several tensors as one pass (a session sent one pass
per tensor, so gradients meeting at a shared node were summed in another order)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import gradserve_error
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _caught(run: Any, t: Any) -> Any:
    """`run(t)`, or how it failed: whether as a RuntimeError, and the message's first line."""
    try:
        return run(t)
    except Exception as exc:  # the comparison is of the error's kind and text
        return "raised", isinstance(exc, RuntimeError), str(exc).splitlines()[0]


# --- torch.autograd.backward of several tensors: one pass -------------------------------------

def _shared_losses(t: Any) -> Any:
    # three losses that meet at `h`: torch sums their gradients at h's node in one pass; one
    # pass per loss sums them into w.grad instead, which rounds differently
    t.manual_seed(0)
    w = t.randn(4, requires_grad=True)
    h = (w * 0.1).sin()
    losses = [(h * 3.3).sum(), (h * 0.7).exp().sum(), h.pow(2).mean()]
    t.autograd.backward(losses, [t.tensor(0.3), t.tensor(1.7), t.tensor(2.9)])
    return w.grad.tolist()


def test_several_tensors_are_one_pass(lib):
    assert _shared_losses(lib) == _shared_losses(torch)


def test_several_tensors_with_implicit_and_given_gradients(lib):
    def run(t: Any) -> Any:
        x = t.tensor([0.3, -1.2, 2.5], requires_grad=True)
        y = t.tanh(x * 1.7)
        z = (y * 0.41).exp()
        t.autograd.backward([z, y.sum(), y], [t.tensor([0.1, 0.7, 1.3]), None,
                                              t.tensor([2.2, -0.9, 0.33])])
        return x.grad.tolist()
    assert run(lib) == run(torch)


def test_several_tensors_with_retain_and_create_graph(lib):
    def run(t: Any) -> Any:
        x = t.tensor([0.5, 1.5], requires_grad=True)
        y = x.pow(3)
        t.autograd.backward([y.sum(), (y * 0.3).sum()], create_graph=True)
        g = x.grad
        out = [g.tolist(), g.requires_grad]
        x.grad = None
        g.sum().backward()
        out.append(x.grad.tolist())
        t.autograd.backward([y.sum(), y.mean()], retain_graph=True)
        t.autograd.backward([y.sum(), y.mean()])
        out.append(x.grad.tolist())
        return out
    assert run(lib) == run(torch)


def test_several_tensors_reach_a_custom_function_once(lib):
    def run(t: Any) -> Any:
        calls = []

        class Scale(t.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2.5

            @staticmethod
            def backward(ctx, g):
                calls.append(g.tolist())
                return g * 2.5

        x = t.tensor([1.0, -2.0], requires_grad=True)
        y = Scale.apply(x)
        t.autograd.backward([y.sin().sum(), (y * 0.1).cos().sum()])
        return calls, x.grad.tolist()
    assert run(lib) == run(torch)


def test_several_tensors_with_inputs(lib):
    def run(t: Any) -> Any:
        a = t.tensor([1.0, 2.0], requires_grad=True)
        b = t.tensor([0.5, -1.0], requires_grad=True)
        h = a * b
        t.autograd.backward([h.sum(), (h * h).sum()], inputs=[a])
        return a.grad.tolist(), b.grad
    assert run(lib) == run(torch)


@pytest.mark.parametrize("grads", [
    lambda t: [t.tensor(1.0)],                       # fewer than the tensors
    lambda t: [t.tensor(1.0), None, t.tensor(3.0)],  # more: torch zips them
    lambda t: t.tensor(2.0),                         # one tensor for two
    lambda t: [None, None],
])
def test_gradient_count_as_torch(lib, grads):
    def run(t: Any) -> Any:
        a = t.tensor(1.5, requires_grad=True)
        t.autograd.backward([a * 2, a * 3], grads(t))
        return a.grad.item()
    assert _caught(run, lib) == _caught(run, torch)


def test_no_tensors_does_nothing(lib):
    def run(t: Any) -> Any:
        t.autograd.backward([])
        return "done"
    assert run(lib) == run(torch)


def test_root_without_grad_fn_is_named_by_its_position(lib):
    def run(t: Any) -> Any:
        a = t.tensor(1.5, requires_grad=True)
        t.autograd.backward([a * 2, t.tensor(1.0)])
    assert _caught(run, lib) == _caught(run, torch)


def test_an_older_server_gets_one_pass_per_tensor(gradserve_client):
    # a server that does not list "backward_roots" would ignore more_tensors: the client then
    # sends one Backward per tensor, as before
    with gradserve_client.session() as s:
        s._backward_roots = False
        x = s.tensor([1.0, 2.0], requires_grad=True)
        y = x * x
        s.autograd.backward([y.sum(), (y * 2).sum()])
        assert x.grad.tolist() == [6.0, 12.0]


def test_wire_more_gradients_count_is_checked(gradserve_session):
    from gradserve.server import codec
    from gradserve.v1 import graph_pb2
    from gradserve.v1 import session_pb2 as pb

    s = gradserve_session
    s.run(s.create(1, np.array([1.0, 2.0], np.float32), requires_grad=True),
          s.op("sum", [("h", 1)], [2]), s.op("mul", [("h", 1), 3.0], [3]))
    one = graph_pb2.Value(float_scalar=1.0)
    with pytest.raises(grpc.RpcError) as err:
        s.run(pb.Instruction(backward=pb.Backward(tensor=2, more_tensors=[3],
                                                  more_gradients=[one, one])))
    code, text, _ = gradserve_error(err)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "2 more_gradients for 1 more_tensors" in text
    grad = graph_pb2.Value(constant=codec.encode_array(np.array([0.5, 2.0], np.float32)))
    s.run(pb.Instruction(backward=pb.Backward(tensor=2, more_tensors=[3], more_gradients=[grad])))
    r = s.run(pb.Instruction(fetch=pb.Fetch(handle=1, grad=True, grad_repr=True)))
    assert r.results[0].fetch.grad_repr == "tensor([2.5000, 7.0000])"
