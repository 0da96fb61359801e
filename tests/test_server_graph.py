"""The stateless RunGraph call: values and gradients vs torch, and validation before running."""

import grpc
import numpy as np
import pytest

from gradserve.server import codec
from gradserve.v1 import graph_pb2, service_pb2
from tests.conftest import gradserve_attr, gradserve_error, gradserve_value
from tests.reference import torch


def node(id_, op, inputs, no_grad=False, **attrs):
    return graph_pb2.Node(id=id_, op=op, inputs=[gradserve_value(v) for v in inputs],
                          no_grad=no_grad, attrs={k: gradserve_attr(v) for k, v in attrs.items()})


def request(nodes, inputs, outputs, wrt=(), order=0, **kw):
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name=n) for n in inputs], nodes=nodes,
                        outputs=[graph_pb2.GraphOutput(name=o, ref=graph_pb2.NodeOutput(id=o))
                                 for o in outputs])
    return service_pb2.RunGraphRequest(
        graph=g, inputs={k: codec.encode_array(np.asarray(v, dtype=np.float32))
                         for k, v in inputs.items()}, wrt=list(wrt), order=order, **kw)


def decode(t):
    return codec.decode_array(t, 10**9)


def ref(name, index=0):
    return ("ref", name, index)


def test_square_gradient(gradserve_stub):
    req = request([node("y", "pow", [ref("x"), 2])], {"x": 3.0}, ["y"], wrt=["x"])
    resp = gradserve_stub.RunGraph(req, timeout=10)
    x = torch.tensor(3.0, requires_grad=True)
    y = x**2
    (g,) = torch.autograd.grad(y, x)
    assert resp.outputs[0].name == "y" and decode(resp.outputs[0].tensor) == y.item()
    assert resp.gradients[0].name == "x"
    assert decode(resp.gradients[0].derivatives[0].tensor) == g.item()
    assert decode(resp.outputs[0].tensor).dtype == np.float32


def test_higher_order_matches_torch(gradserve_stub):
    xs = [0.5, -1.0, 2.0]
    req = request([node("s", "sin", [ref("x")]), node("y", "mul", [ref("s"), ref("x")]),
                   node("l", "sum", [ref("y")])], {"x": xs}, ["l"], wrt=["x"], order=3)
    resp = gradserve_stub.RunGraph(req, timeout=10)
    x = torch.tensor(xs, requires_grad=True)
    (g,) = torch.autograd.grad((torch.sin(x) * x).sum(), x, create_graph=True)
    expected = [g]
    for _ in range(2):
        (g,) = torch.autograd.grad(g.sum(), x, create_graph=True)
        expected.append(g)
    got = [decode(d.tensor) for d in resp.gradients[0].derivatives]
    assert len(got) == 3
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_constant_derivative_becomes_zeros(gradserve_stub):
    req = request([node("y", "mul", [ref("x"), 3.0]), node("l", "sum", [ref("y")])],
                  {"x": [1.0, 2.0]}, ["l"], wrt=["x"], order=2)
    d = gradserve_stub.RunGraph(req, timeout=10).gradients[0].derivatives
    assert decode(d[0].tensor).tolist() == [3.0, 3.0]
    assert decode(d[1].tensor).tolist() == [0.0, 0.0]


def test_output_grads_and_two_inputs(gradserve_stub):
    req = request([node("y", "mul", [ref("a"), ref("b")])], {"a": [1.0, 2.0], "b": [3.0, 5.0]},
                  ["y"], wrt=["a", "b"],
                  output_grads={"y": codec.encode_array(np.array([1.0, 10.0], np.float32))})
    resp = gradserve_stub.RunGraph(req, timeout=10)
    assert [g.name for g in resp.gradients] == ["a", "b"]
    assert decode(resp.gradients[0].derivatives[0].tensor).tolist() == [3.0, 50.0]
    assert decode(resp.gradients[1].derivatives[0].tensor).tolist() == [1.0, 20.0]


def test_non_scalar_output_needs_a_gradient(gradserve_stub):
    req = request([node("y", "mul", [ref("x"), 2.0])], {"x": [1.0, 2.0]}, ["y"], wrt=["x"])
    with pytest.raises(grpc.RpcError) as info:
        gradserve_stub.RunGraph(req, timeout=10)
    code, message, _ = gradserve_error(info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # an argument error, not autograd state
    assert message == "grad can be implicitly created only for scalar outputs"


def test_no_grad_node_and_unused_input(gradserve_stub):
    nodes = [node("y", "mul", [ref("x"), 2.0], no_grad=True), node("z", "mul", [ref("w"), 2.0]),
             node("l", "sum", [ref("z")])]
    req = request(nodes, {"x": 1.0, "w": 1.0}, ["l", "y"], wrt=["x", "w"], allow_unused=True)
    resp = gradserve_stub.RunGraph(req, timeout=10)
    assert resp.gradients[0].derivatives[0].HasField("none")  # y was computed under no_grad
    assert decode(resp.gradients[1].derivatives[0].tensor) == 2.0
    req.allow_unused = False
    with pytest.raises(grpc.RpcError) as info:
        gradserve_stub.RunGraph(req, timeout=10)
    code, message, _ = gradserve_error(info)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "allow_unused=True" in message


def test_values_only_and_python_scalar_promotion(gradserve_stub):
    # int64 tensor * 2.5 (a Python float) is float32 in torch, not float64
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="i")],
                        nodes=[node("y", "mul", [ref("i"), 2.5])],
                        outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y"))])
    req = service_pb2.RunGraphRequest(graph=g, inputs={"i": codec.encode_array(np.array([1, 2]))})
    out = decode(gradserve_stub.RunGraph(req, timeout=10).outputs[0].tensor)
    expected = torch.tensor([1, 2]) * 2.5
    assert out.dtype == np.float32 and str(expected.dtype) == "torch.float32"
    assert out.tolist() == expected.tolist()


INVALID = [
    ("unknown op", [node("y", "frobnicate", [ref("x")])], "unknown op 'frobnicate'",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong arity", [node("y", "mul", [ref("x")])], "mul() takes 2 input(s) (input, other), got 1",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong attribute type", [node("y", "sum", [ref("x")], dim="zero")],
     "attribute 'dim' of kind dims cannot take string_value", grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown attribute", [node("y", "sum", [ref("x")], axis=0)],
     "sum() got an unexpected keyword argument 'axis'", grpc.StatusCode.INVALID_ARGUMENT),
    ("dangling reference", [node("y", "neg", [ref("nowhere")])],
     "refers to 'nowhere', which is not defined (dangling reference)",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("cycle", [node("a", "neg", [ref("b")]), node("b", "neg", [ref("a")]),
               node("y", "neg", [ref("b")])],
     "refers to 'b', which is not defined before it", grpc.StatusCode.INVALID_ARGUMENT),
    ("self reference", [node("y", "neg", [ref("y")])], "refers to 'y', which is not defined before",
     grpc.StatusCode.INVALID_ARGUMENT),
    ("duplicate id", [node("x", "neg", [ref("x")]), node("y", "neg", [ref("x")])],
     "node id 'x' is defined twice (single assignment)", grpc.StatusCode.INVALID_ARGUMENT),
    ("output index out of range", [node("y", "neg", [ref("x", 1)])],
     "refers to output 1 of 'x', which has 1 output(s)", grpc.StatusCode.INVALID_ARGUMENT),
    ("handle without session", [node("y", "neg", [("h", 1)])], "handle inputs need a session",
     grpc.StatusCode.INVALID_ARGUMENT),
]


@pytest.mark.parametrize("nodes, text, code", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_graphs_are_refused(gradserve_stub, nodes, text, code):
    req = request(nodes, {"x": 1.0}, ["y"], wrt=["x"])
    with pytest.raises(grpc.RpcError) as info:
        gradserve_stub.RunGraph(req, timeout=10)
    got_code, message, _ = gradserve_error(info)
    assert got_code == code
    assert text in message


def test_request_level_validation(gradserve_stub):
    base = request([node("y", "neg", [ref("x")])], {"x": 1.0}, ["y"])
    cases = []
    r = service_pb2.RunGraphRequest()
    r.CopyFrom(base)
    r.wrt.append("y")
    cases.append((r, "wrt names 'y', which is not a graph input"))
    r = service_pb2.RunGraphRequest()
    r.CopyFrom(base)
    del r.inputs["x"]
    cases.append((r, "graph input 'x' has no value"))
    r = service_pb2.RunGraphRequest()
    r.CopyFrom(base)
    r.graph.opset_version = 10**6
    cases.append((r, "op-set version 1000000"))
    for req, text in cases:
        with pytest.raises(grpc.RpcError) as info:
            gradserve_stub.RunGraph(req, timeout=10)
        code, message, _ = gradserve_error(info)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and text in message


def test_failed_node_is_named(gradserve_stub):
    req = request([node("a", "neg", [ref("x")]), node("bad", "reshape", [ref("a")], shape=(5,))],
                  {"x": [1.0, 2.0]}, ["bad"])
    with pytest.raises(grpc.RpcError) as info:
        gradserve_stub.RunGraph(req, timeout=10)
    code, _, meta = gradserve_error(info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert meta["gradserve-failed-node"] == "bad"


def test_graph_limits(gradserve_server_factory):
    from gradserve.v1 import service_pb2_grpc
    from tests.conftest import gradserve_connect

    _, port = gradserve_server_factory(max_nodes=3, max_order=2)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    nodes = [node("n0", "neg", [ref("x")])] + [node(f"n{i}", "neg", [ref(f"n{i-1}")])
                                               for i in range(1, 4)]
    for req, text in [(request(nodes, {"x": 1.0}, ["n3"]), "4 nodes, more than the limit of 3"),
                      (request(nodes[:1], {"x": 1.0}, ["n0"], wrt=["x"], order=3),
                       "order 3 is above the limit of 2")]:
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(req, timeout=10)
        code, message, _ = gradserve_error(info)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and text in message


def test_graph_reads_session_handles(gradserve_session, gradserve_stub):
    s = gradserve_session
    s.run(s.create(1, [2.0, 3.0]))
    req = request([node("y", "mul", [ref("x"), ("h", 1)]), node("l", "sum", [ref("y")])],
                  {"x": [1.0, 1.0]}, ["l"], wrt=["x"], session_id=s.id)
    resp = gradserve_stub.RunGraph(req, metadata=s.metadata, timeout=10)
    assert decode(resp.gradients[0].derivatives[0].tensor).tolist() == [2.0, 3.0]


def _edited(base, edit):
    r = service_pb2.RunGraphRequest()
    r.CopyFrom(base)
    edit(r)
    return r


def _no_kind_input(r):
    r.graph.nodes[0].inputs[0].Clear()


def _output_out_of_range(r):
    r.graph.outputs[0].ref.index = 1


# validate() reads each field once and builds its messages only on error: every refusal it can
# make, with its text, still comes before anything runs.
_BASE = request([node("y", "neg", [ref("x")])], {"x": 1.0}, ["y"])
REQUEST_ERRORS = [
    ("unknown input value", lambda r: r.inputs["z"].CopyFrom(r.inputs["x"]),
     "values given for unknown graph inputs ['z']"),
    ("input defined twice", lambda r: r.graph.inputs.add(name="x"),
     "graph input 'x' is defined twice (single assignment)"),
    ("empty input name", lambda r: r.graph.inputs.add(name=""), "a graph input has an empty name"),
    ("empty node id", lambda r: setattr(r.graph.nodes[0], "id", ""), "a node id has an empty name"),
    ("input without kind", _no_kind_input, "node 'y' (neg): an input has no kind set"),
    ("dangling output", lambda r: setattr(r.graph.outputs[0].ref, "id", "w"),
     "output 'y' refers to 'w', which is not defined (dangling reference)"),
    ("output index", _output_out_of_range,
     "output 'y' refers to output 1 of 'y', which has 1 output(s)"),
    ("duplicate output", lambda r: r.graph.outputs.add(name="y", ref=graph_pb2.NodeOutput(id="x")),
     "duplicate output names in ['y', 'y']"),
    ("duplicate wrt", lambda r: r.wrt.extend(["x", "x"]), "duplicate names in wrt ['x', 'x']"),
    ("unknown output_grads", lambda r: r.output_grads["q"].CopyFrom(r.inputs["x"]),
     "output_grads names unknown outputs ['q']"),
]


@pytest.mark.parametrize("edit, text", [c[1:] for c in REQUEST_ERRORS],
                         ids=[c[0] for c in REQUEST_ERRORS])
def test_every_request_error_is_kept(gradserve_stub, edit, text):
    with pytest.raises(grpc.RpcError) as info:
        gradserve_stub.RunGraph(_edited(_BASE, edit), timeout=10)
    code, message, _ = gradserve_error(info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == text
