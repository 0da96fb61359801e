"""torch.autograd.functional over the stateless call: `client.jacobian(fn)(*inputs)`,
`client.hessian`, `client.vjp/jvp/vhp/hvp` and RunGraphRequest.functional, against torch."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

import gradserve.client as gc_client
from gradserve.v1 import graph_pb2, service_pb2, service_pb2_grpc, tensor_pb2
from tests.conftest import gradserve_connect, gradserve_error
from tests.reference import torch

F = torch.autograd.functional
RNG = np.random.default_rng(7)


def _arr(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


def _counting(client: Any) -> list[service_pb2.RunGraphRequest]:
    """Record the RunGraph requests `client` sends (to count round trips)."""
    sent: list[service_pb2.RunGraphRequest] = []
    run_graph = client.run_graph

    def spy(req: service_pb2.RunGraphRequest) -> Any:
        sent.append(req)
        return run_graph(req)
    client.run_graph = spy
    return sent


def _same(ours: Any, theirs: Any) -> None:
    """Same nesting (tuples), shapes and values."""
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same(a, b)
        return
    assert isinstance(ours, np.ndarray), type(ours)
    ref = theirs.detach().numpy()
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def _torch_inputs(args: tuple[np.ndarray, ...]) -> Any:
    ts = tuple(torch.tensor(a) for a in args)
    return ts[0] if len(ts) == 1 else ts


JACOBIAN_CASES = {
    "vector->vector": (lambda x: x.sin() * x, (_arr(4),)),
    "matrix->scalar": (lambda x: (x * x).sum(), (_arr(2, 3),)),
    "scalar->matrix": (lambda x: x * x.exp() + x, (_arr(),)),
    "two inputs, matrix output": (lambda a, b: a.matmul(b).tanh(), (_arr(2, 3), _arr(3, 2))),
    "two outputs": (lambda x: (x.exp(), (x * 2.0).sum()), (_arr(3),)),
    "two inputs, two outputs": (lambda x, y: (x * y, (x + y.sum()).cos()),
                                (_arr(3, 2), _arr(2))),
    "one-tuple output": (lambda x: (x.sigmoid(),), (_arr(3),)),
    "independent input": (lambda x, y: x * 3.0, (_arr(2), _arr(2))),
}


@pytest.mark.parametrize("case", JACOBIAN_CASES)
def test_jacobian_matches_torch_in_one_call(client, case):
    fn, args = JACOBIAN_CASES[case]
    sent = _counting(client)
    ours = client.jacobian(fn)(*args)
    assert len(sent) == 1
    assert sent[0].functional.kind == service_pb2.FUNCTIONAL_KIND_JACOBIAN
    _same(ours, F.jacobian(fn, _torch_inputs(args)))


HESSIAN_CASES = {
    "vector": (lambda x: (x.sin() * x * x).sum(), (_arr(3),)),
    "matrix": (lambda x: x.matmul(x).exp().sum(), (_arr(2, 2),)),
    "two inputs": (lambda a, b: (a.unsqueeze(1) * b).pow(2).sum() + a.prod(),
                   (_arr(2), _arr(3))),
    "scalar input": (lambda x: x.cos() * x, (_arr(),)),
}


@pytest.mark.parametrize("case", HESSIAN_CASES)
def test_hessian_matches_torch_in_one_call(client, case):
    fn, args = HESSIAN_CASES[case]
    sent = _counting(client)
    ours = client.hessian(fn)(*args)
    assert len(sent) == 1
    _same(ours, F.hessian(fn, _torch_inputs(args)))


VECTOR_CASES = [
    ("vjp", lambda x: x.exp() * x, _arr(3), _arr(3)),
    ("vjp", lambda x, y: (x * y, x.sum() + y.sum()), (_arr(2), _arr(2)), (_arr(2), _arr())),
    ("vjp", lambda x: (x * x).sum(), _arr(2, 2), None),
    ("jvp", lambda x: x.exp() * x, _arr(3), _arr(3)),
    ("jvp", lambda x, y: (x * y, (x - y).tanh()), (_arr(2), _arr(2)), (_arr(2), _arr(2))),
    ("jvp", lambda x: x.sin().sum(), _arr(), None),
    ("vhp", lambda x: (x.sin() * x).sum(), _arr(3), _arr(3)),
    ("vhp", lambda x, y: (x * y * y).sum(), (_arr(2), _arr(2)), (_arr(2), _arr(2))),
    ("hvp", lambda x: (x.sin() * x).sum(), _arr(3), _arr(3)),
    ("hvp", lambda x, y: (x.exp() * y).sum(), (_arr(2), _arr(2)), (_arr(2), _arr(2))),
]


@pytest.mark.parametrize("name, fn, inputs, v", VECTOR_CASES)
def test_vector_products_match_torch(client, name, fn, inputs, v):
    sent = _counting(client)
    value, product = getattr(client, name)(fn, inputs, v)
    assert len(sent) == 1
    tv = None if v is None else _torch_inputs(v if isinstance(v, tuple) else (v,))
    tvalue, tproduct = getattr(F, name)(fn, _torch_inputs(
        inputs if isinstance(inputs, tuple) else (inputs,)), tv)
    _same(value, tvalue)
    _same(product, tproduct)


def test_torchs_refusals_come_back_as_torchs_errors(client):
    x = _arr(3)
    with pytest.raises(RuntimeError, match="of input 1. This is not allowed in strict mode"):
        client.jacobian(lambda x, y: x * 2.0, strict=True)(x, _arr(2))
    with pytest.raises(RuntimeError, match="The Tensor returned by the function given to "
                                           "hessian should contain a single element"):
        client.hessian(lambda x: x * x)(x)
    with pytest.raises(RuntimeError, match="The vector v can only be None if the user-provided "
                                           "function returns a single Tensor with a single"):
        client.vjp(lambda x: x * x, x)
    with pytest.raises(RuntimeError, match=r"^v has invalid size: should be torch.Size\(\[3\]\)"):
        client.jvp(lambda x: x * x, x, _arr(2))
    with pytest.raises(gc_client.TracingError):  # data-dependent control flow: not traceable
        client.jacobian(lambda x: x * 2.0 if x.sum().item() > 0 else x)(x)


def test_torchs_messages_are_the_servers(client):
    """The texts above are torch's own (checked here against torch directly)."""
    x = torch.tensor(_arr(3))
    with pytest.raises(RuntimeError, match="of input 1. This is not allowed in strict mode"):
        F.jacobian(lambda x, y: x * 2.0, (x, torch.tensor(_arr(2))), strict=True)
    with pytest.raises(RuntimeError, match="should contain a single element"):
        F.hessian(lambda x: x * x, x)
    with pytest.raises(RuntimeError, match="The vector v can only be None if the user-provided "
                                           "function returns a single Tensor with a single"):
        F.vjp(lambda x: x * x, x)
    with pytest.raises(RuntimeError, match=r"^v has invalid size: should be torch.Size\(\[3\]\)"):
        F.jvp(lambda x: x * x, x, torch.tensor(_arr(2)))


def _request(kind: int, n_rows: int, **functional: Any) -> service_pb2.RunGraphRequest:
    req = service_pb2.RunGraphRequest(wrt=["x"])
    req.graph.inputs.add(name="x")
    node = req.graph.nodes.add(id="y", op="sin")
    node.inputs.add(ref=graph_pb2.NodeOutput(id="x"))
    req.graph.outputs.add(name="out", ref=graph_pb2.NodeOutput(id="y"))
    req.inputs["x"].CopyFrom(tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=[n_rows],
                                               raw=np.zeros(n_rows, np.float32).tobytes()))
    req.functional.kind = kind
    for k, v in functional.items():
        setattr(req.functional, k, v)
    return req


def test_too_many_rows_are_refused_naming_the_limit(gradserve_server_factory):
    _, port = gradserve_server_factory(max_jacobian_rows=8)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    ok = stub.RunGraph(_request(service_pb2.FUNCTIONAL_KIND_JACOBIAN, 8), timeout=10)
    assert len(ok.functional_result) == 1
    assert list(ok.functional_result[0].tensor.shape) == [8, 8]
    for kind in (service_pb2.FUNCTIONAL_KIND_JACOBIAN, service_pb2.FUNCTIONAL_KIND_HESSIAN):
        req = _request(kind, 9)
        if kind == service_pb2.FUNCTIONAL_KIND_HESSIAN:  # a scalar output
            node = req.graph.nodes.add(id="s", op="sum")
            node.inputs.add(ref=graph_pb2.NodeOutput(id="y"))
            req.graph.outputs[0].ref.id = "s"
        with pytest.raises(grpc.RpcError) as exc:
            stub.RunGraph(req, timeout=10)
        code, message, trailers = gradserve_error(exc)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "9 rows" in message and "--max-jacobian-rows" in message
        assert trailers["gradserve-error-class"] == "LimitExceededError"
    with gc_client.connect(f"localhost:{port}") as c, pytest.raises(
            RuntimeError, match="more than the limit of 8"):
        c.jacobian(lambda x: x.exp())(_arr(3, 3))


def test_a_jacobian_too_large_for_the_byte_budget_is_refused(gradserve_server_factory):
    # 2048 rows of a 2048-element input: a 16 MiB Jacobian, more than a 4 MiB call budget
    _, port = gradserve_server_factory(max_session_bytes=4 * 2**20)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    stub.RunGraph(_request(service_pb2.FUNCTIONAL_KIND_JACOBIAN, 256), timeout=30)
    with pytest.raises(grpc.RpcError) as exc:
        stub.RunGraph(_request(service_pb2.FUNCTIONAL_KIND_JACOBIAN, 2048), timeout=60)
    code, message, _ = gradserve_error(exc)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-session-bytes" in message


@pytest.mark.parametrize("change, text", [
    (lambda r: setattr(r.functional, "kind", 0), "is not a FunctionalKind"),
    (lambda r: setattr(r.functional, "kind", 99), "is not a FunctionalKind"),
    (lambda r: r.ClearField("wrt"), "needs the inputs to differentiate"),
    (lambda r: setattr(r, "order", 2), "cannot be combined with order"),
    (lambda r: setattr(r, "allow_unused", True), "cannot be combined with allow_unused"),
    (lambda r: r.output_grads["out"].CopyFrom(r.inputs["x"]),
     "cannot be combined with output_grads"),
    (lambda r: r.functional.v.add().CopyFrom(r.inputs["x"]), "takes no v, got 1"),
    (lambda r: (setattr(r.functional, "kind", service_pb2.FUNCTIONAL_KIND_VJP),
                [r.functional.v.add() for _ in range(2)]), "takes 1 tensor(s) in v"),
])
def test_malformed_functional_requests_are_invalid(gradserve_stub, change, text):
    req = _request(service_pb2.FUNCTIONAL_KIND_JACOBIAN, 3)
    change(req)
    with pytest.raises(grpc.RpcError) as exc:
        gradserve_stub.RunGraph(req, timeout=10)
    code, message, _ = gradserve_error(exc)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert text in message


def test_a_server_without_functional_is_named_not_misread(gradserve_server):
    """A server older than RunGraphRequest.functional ignores the field (proto3) and answers
    plain gradients; the client refuses that answer instead of building a wrong result."""
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        run_graph = c.run_graph

        def old_server(req: service_pb2.RunGraphRequest) -> Any:
            req = service_pb2.RunGraphRequest.FromString(req.SerializeToString())
            req.ClearField("functional")
            return run_graph(req)
        c.run_graph = old_server
        with pytest.raises(gc_client.IncompatibleServerError, match="predates"):
            c.hessian(lambda x: (x * x).sum())(_arr(3))
