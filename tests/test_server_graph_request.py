"""RunGraph's request parser: large raw inputs stay in the request's bytes, and what it makes of a
request is what protobuf makes of it; such inputs compute as before, through the server."""

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError

from gradserve.server import codec, graph_request
from gradserve.server.graph_request import MIN_RAW_BYTES, RunGraphCall, parse_run_graph
from gradserve.v1 import graph_pb2, service_pb2, tensor_pb2
from tests.conftest import gradserve_error
from tests.reference import torch

F32 = tensor_pb2.DTYPE_FLOAT32
BIG = MIN_RAW_BYTES // 4  # float32 elements of the smallest input held apart


def tensor(n, seed=0):
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    return codec.encode_array(x)


def entry(key: bytes, value: bytes, value_first=False) -> bytes:
    """An `inputs` map entry (field 2 of RunGraphRequest), its fields in either order."""
    k = b"\x0a" + codec.varint(len(key)) + key
    v = b"\x12" + codec.varint(len(value)) + value
    body = v + k if value_first else k + v
    return b"\x12" + codec.varint(len(body)) + body


def rebuilt(parsed):
    """The request `parse_run_graph` gave, its held-apart data put back."""
    if not isinstance(parsed, RunGraphCall):
        return parsed
    msg = service_pb2.RunGraphRequest()
    msg.CopyFrom(parsed.message)
    for name, data in parsed.raw.items():
        assert msg.inputs[name].WhichOneof("data") == "raw" and msg.inputs[name].raw == b""
        msg.inputs[name].raw = bytes(data)
    return msg


def square_request(**inputs):
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name=n) for n in inputs])
    return service_pb2.RunGraphRequest(graph=g, inputs=inputs, wrt=list(inputs), order=1)


PLAIN = {
    "one large input": square_request(x=tensor(BIG)),
    "large and small inputs": square_request(x=tensor(BIG + 3), y=tensor(3, 1)),
    "two large inputs": square_request(a=tensor(BIG, 2), b=tensor(2 * BIG, 3)),
    "2-d, a long name": square_request(**{"x" * 300: codec.encode_array(
        np.ones((64, BIG // 64 + 1), np.float32))}),
}


@pytest.mark.parametrize("msg", PLAIN.values(), ids=PLAIN.keys())
def test_large_raw_inputs_are_held_apart(msg):
    data = msg.SerializeToString()
    parsed = parse_run_graph(data)
    assert isinstance(parsed, RunGraphCall)
    big = {k for k, t in msg.inputs.items() if len(t.raw) >= MIN_RAW_BYTES}
    assert set(parsed.raw) == big
    for name in big:
        assert parsed.raw[name].readonly and parsed.raw[name].obj is data  # no copy
    assert rebuilt(parsed) == service_pb2.RunGraphRequest.FromString(data)
    assert len(parsed.message.SerializeToString()) < len(data) - len(big) * MIN_RAW_BYTES


def test_an_entry_with_its_value_first_and_fields_after_the_inputs():
    value = tensor(BIG).SerializeToString()
    data = (square_request().SerializeToString() + entry(b"x", value, value_first=True)
            + b"\x1a\x01x" + b"\x28\x02")  # wrt "x", order 2 after the map
    parsed = parse_run_graph(data)
    assert isinstance(parsed, RunGraphCall) and set(parsed.raw) == {"x"}
    assert rebuilt(parsed) == service_pb2.RunGraphRequest.FromString(data)
    assert parsed.message.order == 2 and list(parsed.message.wrt) == ["x"]


def unplain():
    value = tensor(BIG).SerializeToString()
    small = tensor(4).SerializeToString()
    typed = tensor_pb2.Tensor(dtype=F32, shape=[BIG], float_values=tensor_pb2.FloatList(
        values=np.ones(BIG, np.float32))).SerializeToString()
    return {
        # the last entry of a key wins, in protobuf's map; a large one first must not survive
        "a key twice, the small value last": entry(b"x", value) + entry(b"x", small),
        "raw, then a typed list (the oneof's last wins)": entry(b"x", value + typed[
            typed.index(b"\x22"):]),
        "raw twice in one tensor": entry(b"x", value + b"\x1a\x04" + b"\0" * 4),
        "a typed list": entry(b"x", typed),
        "an unknown field in the tensor": entry(b"x", value + b"\x48\x01"),
        "a map entry without its key": b"\x12" + codec.varint(len(value) + 4) + b"\x12"
        + codec.varint(len(value)) + value,
    }


@pytest.mark.parametrize("data", unplain().values(), ids=unplain().keys())
def test_other_encodings_go_to_protobuf_whole(data):
    parsed = parse_run_graph(data)
    assert type(parsed) is service_pb2.RunGraphRequest
    assert parsed == service_pb2.RunGraphRequest.FromString(data)


def test_a_request_of_many_fields_goes_to_protobuf_whole():
    """The walk stops at MAX_FIELDS fields (a request of many small fields would cost it a
    Python tuple each): such a request is parsed by protobuf whole, large input or not."""
    msg = square_request(x=tensor(BIG))
    data = msg.SerializeToString() + b"\x1a\x00" * graph_request.MAX_FIELDS  # empty wrt names
    parsed = parse_run_graph(data)
    assert type(parsed) is service_pb2.RunGraphRequest
    assert parsed == service_pb2.RunGraphRequest.FromString(data)
    shape = tensor_pb2.Tensor(dtype=F32, shape=[1] * graph_request.MAX_FIELDS)
    many = entry(b"x", shape.SerializeToString() + tensor(BIG).SerializeToString())  # packed
    assert isinstance(parse_run_graph(many), RunGraphCall)
    unpacked = b"".join(b"\x10\x01" for _ in range(graph_request.MAX_FIELDS))  # shape, unpacked
    data = entry(b"x", unpacked + tensor(BIG).SerializeToString())
    parsed = parse_run_graph(data)
    assert type(parsed) is service_pb2.RunGraphRequest
    assert parsed == service_pb2.RunGraphRequest.FromString(data)


def test_a_small_request_is_not_walked(monkeypatch):
    def walked(data):
        raise AssertionError("walked")
    monkeypatch.setattr(graph_request, "_cut", walked)
    data = square_request(x=tensor(4)).SerializeToString()
    assert parse_run_graph(data) == service_pb2.RunGraphRequest.FromString(data)


MALFORMED = {
    "truncated": square_request(x=tensor(BIG)).SerializeToString()[:-7],
    "a key that is not UTF-8": entry(b"\xff\xfe", tensor(BIG).SerializeToString()),
    "an entry longer than the request": b"\x12\xff\xff\x7f" + tensor(BIG).SerializeToString(),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_fail_as_protobuf_fails(data):
    with pytest.raises(DecodeError):
        service_pb2.RunGraphRequest.FromString(data)
    with pytest.raises(DecodeError):
        parse_run_graph(data)


def graph_request_of(nodes, out, x, **kw):
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=nodes,
                        outputs=[graph_pb2.GraphOutput(name=o, ref=graph_pb2.NodeOutput(id=o))
                                 for o in out])
    return service_pb2.RunGraphRequest(graph=g, inputs={"x": codec.encode_array(x)}, **kw)


def aligned_request(build, x, aligned):
    """`build(pad)` (a request with an unused node of id `pad`) for the `pad` that puts the
    input's data at a multiple of 16 bytes into the request (as the server receives it: bytes
    objects' data is 16-byte aligned), or not: the server shares the one and copies the other
    once (`graph.ALIGNMENT`)."""
    for n in range(1, 17):
        req = build("p" * n)
        if (req.SerializeToString().index(x.tobytes()) % 16 == 0) == aligned:
            return req
    raise AssertionError("no such pad")


def op(id_, name, *inputs):
    values = [graph_pb2.Value(ref=graph_pb2.NodeOutput(id=i)) if isinstance(i, str)
              else graph_pb2.Value(int_scalar=i) for i in inputs]
    return graph_pb2.Node(id=id_, op=name, inputs=values)


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "unaligned"])
def test_a_large_input_computes_as_torch_through_the_server(gradserve_stub, aligned):
    x = np.random.default_rng(5).standard_normal((512, BIG // 256)).astype(np.float32)

    nodes = [op("t", "t", "x"), op("y", "pow", "x", 2), op("s", "sum", "y"),
             op("e", "exp", "x"), op("l", "sum", "e")]
    # the input itself and a view of it as outputs
    req = aligned_request(lambda pad: graph_request_of(
        [*nodes[:1], op(pad, "neg", "x")], ["x", "t"], x), x, aligned)
    resp = gradserve_stub.RunGraph(req, timeout=30)
    out = {o.name: codec.decode_array(o.tensor, 10**9) for o in resp.outputs}
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["t"], x.T)
    # x ** 2 and exp(x) summed, and their gradient
    req = aligned_request(lambda pad: graph_request_of(
        [*nodes, op(pad, "neg", "x")], ["s", "l"], x, wrt=["x"]), x, aligned)
    resp = gradserve_stub.RunGraph(req, timeout=30)
    xt = torch.tensor(x, requires_grad=True)
    s = (xt ** 2).sum()
    lt = torch.exp(xt).sum()
    (g,) = torch.autograd.grad([s, lt], [xt])
    out = {o.name: codec.decode_array(o.tensor, 10**9) for o in resp.outputs}
    assert out["s"].tobytes() == s.detach().numpy().tobytes()
    assert out["l"].tobytes() == lt.detach().numpy().tobytes()
    got = codec.decode_array(resp.gradients[0].derivatives[0].tensor, 10**9)
    assert got.tobytes() == g.numpy().tobytes()


def test_a_held_apart_input_is_checked_as_any(gradserve_stub):
    x = np.ones(BIG, np.float32)
    req = graph_request_of([op("s", "sum", "x")], ["s"], x, wrt=["x"])
    req.inputs["x"].shape[:] = [BIG + 1]
    assert isinstance(parse_run_graph(req.SerializeToString()), RunGraphCall)
    with pytest.raises(grpc.RpcError) as info:
        gradserve_stub.RunGraph(req, timeout=30)
    code, message, _ = gradserve_error(info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert (f"input 'x': raw data has {4 * BIG} bytes, but shape [{BIG + 1}] of float32 "
            f"needs {4 * BIG + 4}") in message


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "unaligned"])
def test_a_held_apart_input_is_never_written(gradserve_stub, aligned):
    """The ops behind torch's in-place writes (zero_, fill_, copy_), and gradients summed from
    several uses of a large input (a broadcast one among them), leave the input as sent: its
    leaf is a read-only view of the request's bytes (aligned: a write would fail the call) or a
    copy of its own (unaligned: a write would show in the outputs read after it)."""
    x = np.random.default_rng(9).standard_normal(BIG).astype(np.float32)
    fill = graph_pb2.Node(id="f", op="fill", inputs=[graph_pb2.Value(
        ref=graph_pb2.NodeOutput(id="x"))], attrs={"value": graph_pb2.AttrValue(float_value=2.5)})
    writes = [op("z", "zero", "x"), fill, op("c", "copy", "x", "f")]
    req = aligned_request(lambda pad: graph_request_of(
        [*writes, op(pad, "neg", "x"), op("n", "neg", "x")], ["z", "f", "c", "x", "n"], x), x,
        aligned)
    resp = gradserve_stub.RunGraph(req, timeout=30)
    out = {o.name: codec.decode_array(o.tensor, 10**9) for o in resp.outputs}
    np.testing.assert_array_equal(out["z"], np.zeros_like(x))
    np.testing.assert_array_equal(out["f"], np.full_like(x, 2.5))
    np.testing.assert_array_equal(out["c"], np.full_like(x, 2.5))
    assert out["x"].tobytes() == x.tobytes() and out["n"].tobytes() == (-x).tobytes()

    sums = [op("y", "mul", "x", "x"), op("s1", "sum", "y"), op("s2", "sum", "x"), *writes,
            op("s3", "sum", "c"), op("s4", "sum", "z")]
    req = aligned_request(lambda pad: graph_request_of(
        [*sums, op(pad, "neg", "x")], ["s1", "s2", "s3", "s4"], x, wrt=["x"]), x, aligned)
    resp = gradserve_stub.RunGraph(req, timeout=30)
    xt = torch.tensor(x, requires_grad=True)
    ct = torch.empty_like(xt).copy_(torch.full_like(xt, 2.5))
    roots = [(xt * xt).sum(), xt.sum(), ct.sum(), torch.zeros_like(xt).sum()]
    (g,) = torch.autograd.grad([r for r in roots if r.requires_grad], [xt])
    got = codec.decode_array(resp.gradients[0].derivatives[0].tensor, 10**9)
    assert got.tobytes() == g.numpy().tobytes()
