"""Hostile sizes and malformed input, sent to a real server in a subprocess.

Each request must be refused with RESOURCE_EXHAUSTED or INVALID_ARGUMENT before anything large
is allocated: the server's peak resident memory (VmHWM, which also catches short-lived
allocations) must not jump, and the server must keep serving afterwards. The server runs with
a 64 MiB session byte budget so that a budget overrun is measurable in its RSS.
"""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gradserve.server import codec
from gradserve.v1 import graph_pb2, service_pb2, session_pb2, tensor_pb2
from tests.conftest import gradserve_attr, gradserve_open_session, gradserve_value
from tests.server_process import MiB, ServerProcess

F32 = tensor_pb2.DTYPE_FLOAT32
BUDGET = 64 * MiB
# Peak RSS may grow this much per hostile request (parsing a large message, caches); a refused
# allocation of the sizes below would add hundreds of MiB to GiBs.
SLACK = 48 * MiB
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
SERVICE = "/gradserve.v1.AutogradService/"


@pytest.fixture(scope="module")
def server():
    with ServerProcess(["--max-session-bytes", str(BUDGET), "--workers", "4"]) as proc:
        yield proc


def refused(server, call, codes=(INVALID, EXHAUSTED), text=None, slack=SLACK):
    """Run `call`, expect one of `codes`; the peak RSS must not move by more than `slack`."""
    before = server.peak_rss()
    with pytest.raises(grpc.RpcError) as err:
        call()
    grown = server.peak_rss() - before
    assert err.value.code() in codes, (err.value.code(), err.value.details())
    if text is not None:
        assert text in err.value.details()
    assert grown < slack, f"peak RSS grew by {grown / MiB:.0f} MiB: {err.value.details()}"
    assert server.alive()
    return err.value


def still_serving(stub):
    s = gradserve_open_session(stub)
    s.run(s.create(1, 3.0, requires_grad=True), s.op("pow", [("h", 1), 2], [2]), s.backward(2))
    assert s.grad_of(1) == 6.0
    s.close()


def create(handle, tensor, requires_grad=False):
    return session_pb2.Instruction(create_tensor=session_pb2.CreateTensor(
        handle=handle, value=tensor, requires_grad=requires_grad))


# --- tensors on the wire -------------------------------------------------------------------------

HOSTILE_TENSORS = [
    ("10^12 elements", tensor_pb2.Tensor(dtype=F32, shape=[10**6, 10**6], raw=b""), EXHAUSTED),
    ("10^12 elements as a typed list", tensor_pb2.Tensor(
        dtype=F32, shape=[10**6, 10**6], float_values=tensor_pb2.FloatList(values=[1.0])),
     EXHAUSTED),
    ("int64-overflowing product", tensor_pb2.Tensor(dtype=F32, shape=[2**32, 2**32, 4], raw=b""),
     EXHAUSTED),
    ("overflow hidden behind a zero", tensor_pb2.Tensor(dtype=F32, shape=[0, 2**62, 2**62],
                                                        raw=b""), EXHAUSTED),
    ("largest int64 dim", tensor_pb2.Tensor(dtype=F32, shape=[2**63 - 1], raw=b""), EXHAUSTED),
    ("negative dim", tensor_pb2.Tensor(dtype=F32, shape=[4, -1], raw=b""), INVALID),
    ("most negative dim", tensor_pb2.Tensor(dtype=F32, shape=[-(2**63)], raw=b""), INVALID),
    ("negative dims whose product is positive",
     tensor_pb2.Tensor(dtype=F32, shape=[-2, -2], raw=b"\0" * 16), INVALID),
    ("byte length short of the shape", tensor_pb2.Tensor(dtype=F32, shape=[4], raw=b"\0" * 15),
     INVALID),
    ("byte length past the shape", tensor_pb2.Tensor(dtype=F32, shape=[1], raw=b"\0" * 8 * MiB),
     INVALID),
    ("small shape, huge claimed dims elsewhere", tensor_pb2.Tensor(
        dtype=tensor_pb2.DTYPE_FLOAT64, shape=[1, 2**40], raw=b"\0" * 8), EXHAUSTED),
    ("dtype of the bytes differs", tensor_pb2.Tensor(
        dtype=tensor_pb2.DTYPE_FLOAT64, shape=[3], raw=np.ones(3, np.float32).tobytes()), INVALID),
    ("typed list of another dtype", tensor_pb2.Tensor(
        dtype=tensor_pb2.DTYPE_INT32, shape=[2],
        double_values=tensor_pb2.DoubleList(values=[1.0, 2.0])), INVALID),
    ("unspecified dtype", tensor_pb2.Tensor(shape=[2], raw=b"\0" * 8), INVALID),
    ("unknown dtype", tensor_pb2.Tensor(dtype=1234, shape=[2], raw=b"\0" * 8), INVALID),
    ("10,000 dims of 1", tensor_pb2.Tensor(dtype=F32, shape=[1] * 10_000, raw=b"\0" * 4),
     INVALID),
    ("no encoding", tensor_pb2.Tensor(dtype=F32, shape=[10**9]), EXHAUSTED),
]


@pytest.mark.parametrize("tensor, code", [c[1:] for c in HOSTILE_TENSORS],
                         ids=[c[0] for c in HOSTILE_TENSORS])
def test_hostile_tensor_in_a_batch(server, session, tensor, code):
    refused(server, lambda: session.run(create(1, tensor)), (code,))
    assert session.describe().tensor_count == 0


@pytest.mark.parametrize("tensor, code", [c[1:] for c in HOSTILE_TENSORS],
                         ids=[c[0] for c in HOSTILE_TENSORS])
def test_hostile_tensor_in_a_stateless_graph(server, stub, tensor, code):
    req = service_pb2.RunGraphRequest(
        graph=graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")],
                              nodes=[graph_pb2.Node(id="y", op="neg", inputs=[
                                  graph_pb2.Value(ref=graph_pb2.NodeOutput(id="x"))])],
                              outputs=[graph_pb2.GraphOutput(
                                  name="y", ref=graph_pb2.NodeOutput(id="y"))]),
        inputs={"x": tensor})
    refused(server, lambda: stub.RunGraph(req, timeout=30), (code,))
    # the same tensor as an inline constant and as an output gradient
    req2 = service_pb2.RunGraphRequest(graph=graph_pb2.Graph(
        nodes=[graph_pb2.Node(id="y", op="neg", inputs=[graph_pb2.Value(constant=tensor)])],
        outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y"))]))
    refused(server, lambda: stub.RunGraph(req2, timeout=30), (code,))
    still_serving(stub)


# --- ops whose results would be huge -------------------------------------------------------------

def test_expand_to_10_10_elements(server, session, stub):
    refused(server, lambda: session.run(
        session.create(1, 1.0), session.op("expand", [("h", 1)], [2], size=(10**5, 10**5))),
        (EXHAUSTED,), "elements")
    req = service_pb2.RunGraphRequest(graph=graph_pb2.Graph(
        nodes=[graph_pb2.Node(id="y", op="expand", inputs=[gradserve_value(np.float32(1.0))],
                              attrs={"size": gradserve_attr((10**5, 10**5))})],
        outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y"))]))
    refused(server, lambda: stub.RunGraph(req, timeout=30), (EXHAUSTED,))
    still_serving(stub)


def test_expand_with_overflowing_and_negative_sizes(server, session):
    session.run(session.create(1, 1.0))
    for size in [(2**62, 2**62, 4), (2**63 - 1,), (-5, 3), (-(2**63),)]:
        refused(server, lambda size=size: session.run(
            session.op("expand", [("h", 1)], [2], size=size)))
    assert session.describe().tensor_count == 1


def test_broadcast_result_past_the_session_budget_is_refused_before_allocation(server, session):
    # (8192, 1) * (1, 8192) float32 = 256 MiB: under the element limit (64 Mi elements), four
    # times the session's 64 MiB budget. It must be refused before numpy allocates it.
    session.run(session.create(1, np.ones((8192, 1), np.float32)),
                session.create(2, np.ones((1, 8192), np.float32)))
    err = refused(server, lambda: session.run(session.op("mul", [("h", 1), ("h", 2)], [3])),
                  (EXHAUSTED,))
    assert "budget" in err.details() or "limit" in err.details()
    assert session.describe().tensor_count == 2


def test_matmul_past_the_session_budget(server, session):
    from gradserve.engine import registry

    if "matmul" not in registry.OPS:
        pytest.skip("the engine has no matmul yet")
    session.run(session.create(1, np.ones((8192, 1), np.float32)),
                session.create(2, np.ones((1, 8192), np.float32)))
    refused(server, lambda: session.run(session.op("matmul", [("h", 1), ("h", 2)], [3])),
            (EXHAUSTED,))


def test_stateless_graph_past_the_byte_budget(server, stub):
    # Each node is under the element limit; together they would hold GiBs.
    x = graph_pb2.Value(constant=codec.encode_array(np.ones((1,), np.float32)))
    nodes = [graph_pb2.Node(id="e", op="expand", inputs=[x],
                            attrs={"size": gradserve_attr((16 * MiB,))})]
    for i in range(40):
        nodes.append(graph_pb2.Node(id=f"n{i}", op="neg", inputs=[
            graph_pb2.Value(ref=graph_pb2.NodeOutput(id="e" if i == 0 else f"n{i - 1}"))]))
    req = service_pb2.RunGraphRequest(graph=graph_pb2.Graph(nodes=nodes, outputs=[
        graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="n39"))]))
    # The first node's 64 MiB result fits the per-call budget and is made; the second is refused
    # before allocation. Peak RSS may grow by the budget (the test's first call on a fresh server
    # shows all of it), never by the GiBs the 40 nodes would take.
    refused(server, lambda: stub.RunGraph(req, timeout=60), (EXHAUSTED,), slack=BUDGET + SLACK)
    still_serving(stub)


def test_session_cannot_grow_past_its_budget_one_tensor_at_a_time(server, session):
    # 1 MiB per tensor: 62 are held one call at a time, then a batch of three would pass the
    # 64 MiB budget (each tensor also costs its per-handle overhead). The chunks are small so the
    # refused request's own bytes (received, parsed, decoded: about 3x its size) stay well inside
    # SLACK; with 16 MiB chunks a 32 MiB batch alone could raise the peak by ~60 MiB.
    chunk = codec.encode_array(np.zeros(MiB // 4, np.float32))
    for h in range(1, 63):
        session.run(create(h, chunk))
    refused(server, lambda: session.run(create(63, chunk), create(64, chunk), create(65, chunk)),
            (EXHAUSTED,))
    assert session.describe().bytes_held <= BUDGET


# --- huge graphs and batches ---------------------------------------------------------------------

def _ref(node_id):
    return graph_pb2.Value(ref=graph_pb2.NodeOutput(id=node_id))


def test_a_million_node_graph(server, stub):
    nodes = [graph_pb2.Node(id=str(i), op="neg", inputs=[_ref(str(i - 1) if i else "x")])
             for i in range(10**6)]
    req = service_pb2.RunGraphRequest(
        graph=graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=nodes),
        inputs={"x": codec.encode_array(np.float32(1.0))})
    # Parsing the request is the one cost the server cannot refuse: it is bounded by the message
    # size limit (--max-message-bytes). Here 10^6 nodes are ~15 MB on the wire.
    size = req.ByteSize()
    refused(server, lambda: stub.RunGraph(req, timeout=60), (EXHAUSTED,), "nodes",
            slack=SLACK + 8 * size)
    still_serving(stub)


# Parsing a message takes up to ~20 times its size before any check can run (docs/security.md,
# "Many large requests at once"; --max-message-bytes bounds the message); ~11 times for the
# ~25-byte instructions below (24 MiB, +263 MiB).
PARSE_FACTOR = 16


def test_a_million_instruction_batch():
    # A server of its own: a module server's peak RSS, raised by earlier tests, would hide the
    # parse.
    from gradserve.v1 import service_pb2_grpc

    with ServerProcess(["--max-session-bytes", str(BUDGET), "--workers", "4"]) as server:
        channel = server.channel()
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        session = gradserve_open_session(stub)
        ins = [session.op("neg", [1.0], [i + 1]) for i in range(10**6)]
        size = session.pb.BatchRequest(session_id=session.id, instructions=ins).ByteSize()
        refused(server, lambda: session.run(*ins, timeout=60), (EXHAUSTED,), "instructions",
                slack=SLACK + PARSE_FACTOR * size)
        assert session.describe().tensor_count == 0
        still_serving(stub)
        channel.close()


def test_a_deep_chain_runs_iteratively(gradserve_stub):
    # The default node limit's worth of nodes in one chain: forward and backward without
    # recursion, within the default --max-call-ops (one op and one backward step per node).
    # On the default server: its graph nodes and tensor objects take more than this module's
    # 64 MiB per-call budget now that they are counted.
    from gradserve.server.config import ServerConfig

    stub = gradserve_stub
    n = ServerConfig.max_nodes
    nodes = [graph_pb2.Node(id=str(i), op="mul", inputs=[_ref(str(i - 1) if i else "x"),
                                                         graph_pb2.Value(float_scalar=1.0)])
             for i in range(n)]
    req = service_pb2.RunGraphRequest(
        graph=graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=nodes,
                              outputs=[graph_pb2.GraphOutput(name="y", ref=_ref(str(n - 1)).ref)]),
        inputs={"x": codec.encode_array(np.float32(2.0))}, wrt=["x"])
    resp = stub.RunGraph(req, timeout=120)
    assert codec.decode_array(resp.gradients[0].derivatives[0].tensor, 1) == 1.0


def test_many_attributes_and_long_names(server, stub):
    attrs = {f"a{i}": gradserve_attr(i) for i in range(100_000)}
    req = service_pb2.RunGraphRequest(graph=graph_pb2.Graph(
        nodes=[graph_pb2.Node(id="y", op="sum", inputs=[gradserve_value(np.ones(3, np.float32))],
                              attrs=attrs)]))
    refused(server, lambda: stub.RunGraph(req, timeout=30), (INVALID,))
    req = service_pb2.RunGraphRequest(graph=graph_pb2.Graph(
        nodes=[graph_pb2.Node(id="y" * (8 * MiB), op="x" * (8 * MiB))]))
    refused(server, lambda: stub.RunGraph(req, timeout=30), (INVALID,))
    still_serving(stub)


def test_huge_int_list_attribute(server, session):
    session.run(session.create(1, 1.0))
    refused(server, lambda: session.run(
        session.op("reshape", [("h", 1)], [2], shape=tuple([1] * 1_000_000))))
    refused(server, lambda: session.run(
        session.op("sum", [("h", 1)], [2], dim=tuple(range(1_000_000)))))
    assert session.describe().tensor_count == 1


# --- malformed and deeply nested protobuf bytes --------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field, wire_type):
    return _varint(field << 3 | wire_type)


NESTED = 100_000
MALFORMED_BYTES = [
    ("deeply nested groups", _tag(99, 3) * NESTED + _tag(99, 4) * NESTED),
    ("deeply nested length-delimited", b"".join(
        [_tag(99, 2) + _varint(2 * (NESTED - i)) for i in range(NESTED)])),
    ("truncated varint", b"\x08" + b"\xff" * 20),
    ("length past the end", _tag(1, 2) + _varint(10**9) + b"abc"),
    ("bad wire type", bytes([0x0F])),
    ("invalid utf-8 in a string field", _tag(1, 2) + _varint(2) + b"\xff\xfe"),
    ("a field of number 0", b"\x00\x01"),
    ("a packed int64 list cut short", _tag(2, 2) + _varint(20) + b"\xff" * 5),
    ("ten thousand unknown fields", b"".join(
        _tag(1000 + i, 0) + _varint(i) for i in range(10_000))),
    ("end group without start", _tag(5, 4)),
]
METHODS = ["RunGraph", "CreateSession", "CloseSession", "DescribeSession", "ExecuteBatch",
           "ListOps"]


@pytest.mark.parametrize("payload", [m[1] for m in MALFORMED_BYTES],
                         ids=[m[0] for m in MALFORMED_BYTES])
def test_malformed_bytes_to_every_rpc(server, channel, stub, payload):
    for method in METHODS:
        call = channel.unary_unary(SERVICE + method)
        try:
            call(payload, timeout=30, metadata=(("x-session-id", "x"),))
        except grpc.RpcError as err:
            # A caller's mistake: never INTERNAL or UNKNOWN. (Unparsable bytes are refused as
            # INVALID_ARGUMENT; bytes that parse to a request that makes no sense get the
            # request's own error.)
            assert err.code() in (INVALID, grpc.StatusCode.NOT_FOUND, EXHAUSTED), \
                (method, err.code(), err.details())
    assert server.alive()
    still_serving(stub)


@pytest.mark.parametrize("payload", [m[1] for m in MALFORMED_BYTES],
                         ids=[m[0] for m in MALFORMED_BYTES])
def test_malformed_bytes_to_the_event_loops_services(server, channel, stub, payload):
    """Health and reflection run on the event loop as asyncio handlers (server/app.py): their
    unparsable requests are INVALID_ARGUMENT too, whatever the method's streaming kind (those
    above `LOOP_REQUEST_BYTES` are RESOURCE_EXHAUSTED before any parse)."""
    from google.protobuf.message import DecodeError
    from grpc_health.v1 import health_pb2

    from gradserve.server.wire_guard import LOOP_REQUEST_BYTES

    try:
        health_pb2.HealthCheckRequest.FromString(payload)
        parses = True  # (unknown fields are skipped): Watch would then stream until cancelled
    except DecodeError:
        parses = False
    calls = [
        lambda: channel.unary_unary("/grpc.health.v1.Health/Check")(payload, timeout=30),
        lambda: parses or list(
            channel.unary_stream("/grpc.health.v1.Health/Watch")(payload, timeout=30)),
        lambda: list(channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")(
                iter([payload]), timeout=30)),
    ]
    for call in calls:
        try:
            call()
        except grpc.RpcError as err:
            expected = EXHAUSTED if len(payload) > LOOP_REQUEST_BYTES else INVALID
            assert err.code() == expected, (err.code(), err.details())
        # (bytes that happen to parse get the service's own answer)
    assert server.alive()
    still_serving(stub)


def test_nested_data_in_the_client(gradserve_server):
    # Ragged or absurdly nested Python data is refused by the SDK before anything is sent.
    import gradserve.client as gc

    nested: list = [1.0]
    for _ in range(10_000):
        nested = [nested]
    with gc.connect(f"localhost:{gradserve_server[1]}") as client, client.session() as torch:
        with pytest.raises((ValueError, TypeError, RecursionError)):
            torch.tensor([[1.0, 2.0], [3.0]])
        try:
            t = torch.tensor(nested)
        except (ValueError, TypeError, RecursionError):
            pass  # refused locally: fine
        else:
            with pytest.raises(Exception):  # noqa: B017 - anything but a hang or a crash
                t.item() if t.numel() == 1 and t.dim() <= 64 else None
                raise ValueError("refused")
        x = torch.tensor(2.0, requires_grad=True)
        (x * x).backward()
        assert x.grad.item() == 4.0


def test_packed_shape_of_a_million_dims(server, session):
    shape = b"".join(_varint(1) for _ in range(10**6))
    tensor = (_tag(1, 0) + _varint(F32) + _tag(2, 2) + _varint(len(shape)) + shape
              + _tag(3, 2) + _varint(4) + struct.pack("<f", 1.0))
    refused(server, lambda: session.run(create(1, tensor_pb2.Tensor.FromString(tensor))),
            (INVALID,), "dims")


# --- instruction tapes (docs/wire.md) -------------------------------------------------------------

def test_tapes_past_the_batch_word_limit_are_refused_before_decoding(server, stub):
    # 3 tapes of 63 ops of 4095 inputs each (~2**18 words, 2 MiB of code per tape): each is
    # within a tape's limits, the batch's 2**19 words are not: the third tape is refused before
    # it is decoded (the first two cost 8 bytes a word, plus their slices)
    s = gradserve_open_session(stub)
    header = 0 | 1 << 40 | 1 << 52  # op 0 ("neg"), 1 input, 1 output
    wide = struct.pack("<Q", 0 | 4095 << 40 | 1 << 52) + struct.pack("<Q", 1 << 3) * 4095
    tape = session_pb2.Instruction(tape=session_pb2.Tape(
        ops=["neg"], code=b"".join(wide + struct.pack("<Q", 100 + k) for k in range(63))))
    err = refused(server, lambda: s.run(*[tape] * 3, timeout=60), (EXHAUSTED,),
                  text="more than 524288 words")
    assert dict(err.trailing_metadata())["gradserve-failed-instruction"] == "2"
    info = error_details_pb2.ErrorInfo()
    assert next(d for d in rpc_status.from_call(err).details
                if d.Is(info.DESCRIPTOR)).Unpack(info)
    # the fixed word limit, not the session's max_instructions (which this batch is well within)
    assert info.metadata["limit"] == "max_batch_tape_words"
    # a well-formed tape of many ops runs: y = -(-(...(x)))
    s.run(create(1, tensor_pb2.Tensor(dtype=F32, shape=[], raw=struct.pack("<f", 0.5))))
    words = []
    for k in range(20_000):
        words += [header, (k + 1) << 3, k + 2]
    s.run(session_pb2.Instruction(tape=session_pb2.Tape(
        ops=["neg"], code=struct.pack(f"<{len(words)}Q", *words))), timeout=60)
    assert s.describe().tensor_count == 20_001
    s.close()
    still_serving(stub)
