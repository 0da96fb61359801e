"""The server reads every legal protobuf encoding of a request as protobuf does, and writes replies
protobuf (any conformant parser) reads back as the intended message.

Clients in other languages use whatever protobuf library they have; a conformant encoder may
reorder fields, unpack repeated scalars, split a submessage into pieces that merge, repeat a
scalar or a oneof member (the last wins), write defaults, add unknown fields (groups too) and pad
varints (`tests/wire_encodings.py`). Each request here, random but seeded, is sent in several such
encodings: RunGraph's own parser (`server/graph_request.py`, which keeps large raw inputs in the
request's bytes) must give what protobuf's `FromString` gives for the same bytes, and a real
server the same reply bytes (or status and message) as for the canonical encoding. Bytes
protobuf refuses must be refused too, as INVALID_ARGUMENT ("malformed request"), never INTERNAL,
UNKNOWN, a crash or a hang. The hand-written reply encoder (`graph.Reply`, `codec.tensor_parts`)
must write protobuf's canonical bytes.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

import gradserve.engine as ge
from gradserve.server import codec, graph_request, wire_diagnosis, wire_guard
from gradserve.v1 import graph_pb2, service_pb2, session_pb2, tensor_pb2
from tests import wire_encodings
from tests.conftest import GradserveSession, gradserve_connect

RUN_GRAPH = "/gradserve.v1.AutogradService/RunGraph"
EXECUTE_BATCH = "/gradserve.v1.AutogradService/ExecuteBatch"
CREATE_SESSION = "/gradserve.v1.AutogradService/CreateSession"
LIST_OPS = "/gradserve.v1.AutogradService/ListOps"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
BIG = graph_request.MIN_RAW_BYTES // 4  # float32 elements of an input RunGraph's parser cuts

# --- random requests ------------------------------------------------------------------------------


_TYPED = {tensor_pb2.DTYPE_FLOAT32: (np.float32, "float_values"),
          tensor_pb2.DTYPE_FLOAT64: (np.float64, "double_values"),
          tensor_pb2.DTYPE_INT32: (np.int32, "int32_values"),
          tensor_pb2.DTYPE_INT64: (np.int64, "int64_values"),
          tensor_pb2.DTYPE_BOOL: (np.bool_, "bool_values"),
          tensor_pb2.DTYPE_INT16: (np.int16, "int32_values")}


def _tensor(rng: random.Random, big: bool = False) -> tensor_pb2.Tensor:
    """A random tensor message: raw or a typed list (negative ints: 10-byte varints); now and
    then one the server refuses."""
    dtype = (rng.choice([tensor_pb2.DTYPE_FLOAT32, tensor_pb2.DTYPE_FLOAT64])
             if big or rng.random() < 0.7 else rng.choice(list(_TYPED)))
    np_type, typed = _TYPED[dtype]
    shape = [BIG // 64, 64] if big else rng.choice([[], [3], [2, 3], [1, 4]])
    values = np.random.default_rng(rng.getrandbits(32)).standard_normal(shape) * 4
    arr = values.astype(np_type) if np_type is not np.bool_ else values > 0
    msg = tensor_pb2.Tensor(dtype=dtype, shape=shape)
    if big or rng.random() < 0.5:
        msg.raw = arr.tobytes()
    else:
        getattr(msg, typed).values.extend(arr.ravel().tolist())
    beyond = rng.random()
    if beyond < 0.04:
        msg.shape.append(-1)  # negative dimension
    elif beyond < 0.07:
        msg.dtype = tensor_pb2.DTYPE_UNSPECIFIED
    elif beyond < 0.09:
        msg.shape[:] = [2**40]  # past the element limit
    elif beyond < 0.11:
        msg.dtype = 99  # an enum value the server does not know
    elif beyond < 0.13 and dtype == tensor_pb2.DTYPE_INT16 and not big:
        msg.ClearField("raw")
        msg.int32_values.values[:] = [-(2**31)] * len(arr.ravel())  # outside int16's range
    return msg


def _ref(node: str) -> graph_pb2.Value:
    return graph_pb2.Value(ref=graph_pb2.NodeOutput(id=node))


def run_graph_request(rng: random.Random, big: bool = False) -> service_pb2.RunGraphRequest:
    """A random RunGraphRequest: a chain of ops on inputs x and y (large raw ones when `big`),
    scalars, constants and attributes, sometimes with an error in it."""
    req = service_pb2.RunGraphRequest()
    g = req.graph
    g.opset_version = ge.OPSET_VERSION if rng.random() < 0.95 else 9999
    for name in ("x", "y"):
        g.inputs.add(name=name)
        req.inputs[name].CopyFrom(_tensor(rng, big and rng.random() < 0.8))
    prev = "x"
    for i in range(rng.randint(1, 4)):
        node = g.nodes.add(id=f"n{i}", no_grad=rng.random() < 0.1)
        kind = rng.choice(["mul", "add", "sin", "sum", "scalar"])
        node.inputs.append(_ref(prev))
        if kind in ("sin", "sum"):
            node.op = kind
            if kind == "sum" and rng.random() < 0.5:
                node.attrs["dim"].ints_value.values.append(rng.choice([0, 1, -1, 5]))
                node.attrs["keepdim"].bool_value = rng.random() < 0.5
        elif kind == "scalar":
            node.op = "mul"
            other = node.inputs.add()
            pick = rng.random()
            if pick < 0.4:
                other.float_scalar = rng.uniform(-3, 3)
            elif pick < 0.7:
                other.int_scalar = rng.choice([-(2**40), -5, -1, 0, 3])
            else:
                other.constant.CopyFrom(_tensor(rng))
        else:
            node.op = kind
            node.inputs.append(_ref("y"))
        prev = node.id
    g.outputs.add(name="out", ref=graph_pb2.NodeOutput(id=prev))
    if rng.random() < 0.3:
        g.outputs.add(name="", ref=graph_pb2.NodeOutput(id="n0", index=rng.choice([0, 0, 3])))
    if rng.random() < 0.6:
        req.wrt.extend(rng.sample(["x", "y"], rng.randint(1, 2)))
        req.order = rng.choice([0, 1, 1, 2])
    req.allow_unused = rng.random() < 0.5
    if rng.random() < 0.2:
        req.output_grads["out"].CopyFrom(_tensor(rng))
    return req


def batch_request(rng: random.Random, session_id: str) -> session_pb2.BatchRequest:
    """A random session batch: create, ops (scalars, attributes), backward, fetch, release."""
    s = GradserveSession(None, session_id)
    shape = rng.choice([[3], [2, 2], []])
    data = np.random.default_rng(rng.getrandbits(32)).standard_normal(shape).astype(np.float32)
    ins = [s.create(1, data, requires_grad=rng.random() < 0.9),
           s.op(rng.choice(["sin", "exp", "neg"]), [("h", 1)], [2]),
           s.op("mul", [("h", 2), rng.choice([2.5, 3, -(2**40), ("h", 1), ("h", 7)])], [3]),
           s.op("sum", [("h", 3)], [4], **({"dim": [rng.choice([0, 3])]}
                                           if rng.random() < 0.3 else {}))]
    if rng.random() < 0.5:  # a tape: x * floats[0] -> handle 10, described (docs/wire.md)
        words = [0 | 2 << 32 | 2 << 40 | 1 << 52, 1 << 3 | 0, 0 << 3 | 1, 10]
        ins.append(session_pb2.Instruction(tape=session_pb2.Tape(
            ops=["mul"], code=np.array(words, "<u8").tobytes(),
            floats=np.array([rng.choice([1.5, -2.0])], "<f8").tobytes())))
    if rng.random() < 0.6:
        ins.append(s.backward(rng.choice([4, 4, 3])))
    ins.append(s.fetch(rng.choice([1, 3, 4, 9]), grad=rng.random() < 0.5))
    if rng.random() < 0.3:
        ins.append(s.release(2))
    if rng.random() < 0.5:  # the same values as a typed list
        value = ins[0].create_tensor.value
        value.ClearField("raw")
        value.float_values.values.extend(data.ravel().tolist())
    return session_pb2.BatchRequest(session_id=session_id, instructions=ins,
                                    request_id=rng.choice(["", "r-1"]))


def _legal(msg: Any, rng: random.Random) -> bytes:
    """A legal non-canonical encoding of `msg` (checked: protobuf reads it as `msg`)."""
    variations = wire_encodings.ALL if rng.random() < 0.5 else wire_encodings.ALL - {"unknown"}
    data = wire_encodings.encode(msg, rng, variations)
    again = type(msg).FromString(data)
    again.DiscardUnknownFields()
    assert again == msg, "tests/wire_encodings.py wrote an encoding of another message"
    return data


# --- RunGraph's parser against protobuf's ---------------------------------------------------------


def _outcome(data: bytes) -> tuple[str, Any]:
    """parse_run_graph's result as protobuf's would be: the message (cut raw data put back),
    or the error's type."""
    try:
        parsed = graph_request.parse_run_graph(data)
    except DecodeError:
        return "DecodeError", None
    if isinstance(parsed, graph_request.RunGraphCall):
        msg = service_pb2.RunGraphRequest()
        msg.CopyFrom(parsed.message)
        for name, raw in parsed.raw.items():
            assert msg.inputs[name].raw == b""
            msg.inputs[name].raw = bytes(raw)
        return "cut", msg
    return "whole", parsed


def _protobuf(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", service_pb2.RunGraphRequest.FromString(data)
    except DecodeError:
        return "DecodeError", None


def test_run_graph_parser_reads_every_legal_encoding_as_protobuf():
    rng = random.Random(20261207)
    kinds = {"cut": 0, "whole": 0}
    for i in range(120):
        req = run_graph_request(rng, big=i % 2 == 0)
        for data in (req.SerializeToString(), _legal(req, rng), _legal(req, rng)):
            kind, msg = _outcome(data)
            assert kind != "DecodeError", f"request {i}: a legal encoding refused"
            kinds[kind] += 1
            assert msg == service_pb2.RunGraphRequest.FromString(data), f"request {i}"
    assert kinds["cut"] >= 60 and kinds["whole"] >= 60  # both paths taken


def _large_request(raw_pad: int = 0, tensor_pad: int = 0, entry_pad: int = 0,
                   key: bytes = b"x") -> bytes:
    """A RunGraphRequest holding one large raw input, its three lengths padded as asked."""
    v = wire_encodings.varint
    data = bytes(BIG * 4)
    shape = v(BIG // 64) + v(64)
    tensor = (b"\x08\x01" + b"\x12" + v(len(shape)) + shape
              + b"\x1a" + v(len(data), raw_pad) + data)
    entry = b"\x0a" + v(len(key)) + key + b"\x12" + v(len(tensor), tensor_pad) + tensor
    return b"\x12" + v(len(entry), entry_pad) + entry


@pytest.mark.parametrize("pads", [
    {"raw_pad": 1}, {"raw_pad": 2}, {"raw_pad": 3}, {"raw_pad": 7}, {"tensor_pad": 2},
    {"tensor_pad": 3}, {"tensor_pad": 6}, {"entry_pad": 2}, {"entry_pad": 3}, {"entry_pad": 7},
])
def test_run_graph_parser_reads_padded_lengths_as_protobuf(pads):
    # protobuf reads a length of at most 5 bytes, padded or not, and refuses a longer one; the
    # parser rewrites these three lengths, so it once accepted what protobuf refuses
    data = _large_request(**pads)
    kind, msg = _outcome(data)
    expected, want = _protobuf(data)
    if expected == "DecodeError":
        assert kind == "DecodeError", f"{pads}: protobuf refuses these bytes, the parser took them"
    else:
        assert kind == "cut" and msg == want


def _entry(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return b"\x12" + wire_encodings.varint(len(body)) + body


def _ld(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + wire_encodings.varint(len(body)) + body


_SHAPE = _ld(0x12, wire_encodings.varint(BIG // 64) + wire_encodings.varint(64))
_BIG_TENSOR = b"\x08\x01" + _SHAPE + _ld(0x1a, bytes(BIG * 4))


@pytest.mark.parametrize("data", [
    _entry(_ld(0x12, _BIG_TENSOR), _ld(0x0a, b"x")),  # the value before the key
    _entry(_ld(0x0a, b"a"), _ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR)),  # the key twice
    _entry(_ld(0x0a, b"x"), _ld(0x12, b"\x08\x02"), _ld(0x12, _BIG_TENSOR)),  # values merge
    _entry(_ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR), _ld(0x12, b"\x08\x02")),
    _entry(_ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR))
    + _entry(_ld(0x0a, b"x"), _ld(0x12, b"\x08\x02")),  # one key twice: the last wins
    _entry(_ld(0x0a, b"x"), _ld(0x12, b"\x08\x02"))
    + _entry(_ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR)),
    _entry(_ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR), b"\xf8\x01\x01"),  # unknown in the entry
    _entry(_ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR + b"\x20\x00")),  # a wire type for field 4
    _entry(_ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR + _ld(0x1a, b"\x00" * 4))),  # raw twice
    _entry(_ld(0x0a, b"x"), _ld(0x12, _ld(0x1a, b"") + _BIG_TENSOR)),
    _entry(_ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR + _ld(0x22, b"\x0d\x00\x00\x80\x3f"))),
    _entry(_ld(0x0a, b"x"), _ld(0x12, b"\xbb\x3e\xbc\x3e" + _BIG_TENSOR)),  # a group
    _entry(_ld(0x0a, b"x"), _ld(0x12, _BIG_TENSOR)) + b"\x3a\x00" + b"\x12\x00",
], ids=["value-first", "key-twice", "value-merges", "value-merges-after", "key-repeats",
        "key-repeats-large-last", "unknown-in-entry", "wrong-wire-type", "raw-twice",
        "empty-raw-first", "typed-after-raw", "group", "empty-entry"])
def test_run_graph_parser_reads_map_entries_as_protobuf(data):
    kind, msg = _outcome(data)
    expected, want = _protobuf(data)
    assert expected == "ok" and kind != "DecodeError" and msg == want


@pytest.mark.parametrize("key", [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"a\xf4\x90\x80\x80"])
def test_run_graph_parser_refuses_keys_that_are_not_utf8(key):
    assert _outcome(_large_request(key=key))[0] == "DecodeError"
    assert _protobuf(_large_request(key=key))[0] == "DecodeError"


def _mutations(rng: random.Random, data: bytes) -> list[bytes]:
    """Bytes that may or may not parse: truncated, a bit flipped, junk after, a length past
    the end, unknown groups nested past protobuf's depth limit, lengths padded past 5 bytes."""
    p = rng.randrange(len(data))
    q = rng.randrange(len(data))
    depth = rng.choice([99, 100, 101, 3000])
    return [data[:p],
            data[:q] + bytes([data[q] ^ (1 << rng.randrange(8))]) + data[q + 1:],
            data + rng.randbytes(rng.randint(1, 5)),
            data + b"\x0a\xff\xff\xff\xff\x07",
            data + b"\xbb\x3e" * depth + b"\xbc\x3e" * depth]


def test_run_graph_parser_refuses_what_protobuf_refuses():
    rng = random.Random(7)
    refused = 0
    for i in range(60):
        req = run_graph_request(rng, big=True)
        overpadded = wire_encodings.encode(req, rng, {"overpad_lengths"})
        for data in [overpadded, *_mutations(rng, req.SerializeToString())]:
            kind, msg = _outcome(data)
            expected, want = _protobuf(data)
            if expected == "DecodeError":
                refused += 1
                assert kind == "DecodeError", f"request {i}: protobuf refuses these bytes"
            else:
                assert kind != "DecodeError" and msg == want, f"request {i}"
    assert refused > 100


# --- a real server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_channel(gradserve_server):
    channel = gradserve_connect(gradserve_server[1])
    yield channel
    channel.close()


def _call(channel: grpc.Channel, method: str, data: bytes,
          metadata: tuple[tuple[str, str], ...] = ()) -> tuple[Any, ...]:
    """("ok", reply bytes) or ("error", status code, message)."""
    stub = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        return "ok", stub(data, metadata=metadata, timeout=60)
    except grpc.RpcError as err:
        return "error", err.code(), err.details()


def _session(channel: grpc.Channel) -> str:
    reply = _call(channel, CREATE_SESSION, b"")
    assert reply[0] == "ok"
    return session_pb2.CreateSessionResponse.FromString(reply[1]).session_id


def test_run_graph_answers_every_encoding_alike(raw_channel):
    rng = random.Random(11)
    outcomes = set()
    for i in range(40):
        req = run_graph_request(rng, big=i % 4 == 0)
        want = _call(raw_channel, RUN_GRAPH, req.SerializeToString())
        outcomes.add(want[0] if want[0] == "ok" else want[1])
        for _ in range(2):
            assert _call(raw_channel, RUN_GRAPH, _legal(req, rng)) == want, f"request {i}"
        if want[0] == "ok":  # the hand-written reply is protobuf's canonical encoding
            reply = service_pb2.RunGraphResponse.FromString(want[1])
            assert reply.SerializeToString(deterministic=True) == want[1]
    assert "ok" in outcomes and grpc.StatusCode.INVALID_ARGUMENT in outcomes


def test_execute_batch_answers_every_encoding_alike(raw_channel):
    rng = random.Random(12)
    outcomes = set()
    for i in range(20):
        sessions = [_session(raw_channel) for _ in range(3)]
        req = batch_request(rng, sessions[0])
        replies = []
        for k, sid in enumerate(sessions):
            req.session_id = sid
            data = req.SerializeToString() if k == 0 else _legal(req, rng)
            replies.append(_call(raw_channel, EXECUTE_BATCH, data, (("x-session-id", sid),)))
        outcomes.add(replies[0][0] if replies[0][0] == "ok" else replies[0][1])
        assert replies[1] == replies[0] and replies[2] == replies[0], f"batch {i}"
    assert "ok" in outcomes and len(outcomes) > 1


def test_unparsable_requests_are_invalid_argument(raw_channel):
    rng = random.Random(13)
    sid = _session(raw_channel)
    requests = [(RUN_GRAPH, run_graph_request(rng, big=True), ()),
                (RUN_GRAPH, run_graph_request(rng), ()),
                (EXECUTE_BATCH, batch_request(rng, sid), (("x-session-id", sid),)),
                (LIST_OPS, None, ()),
                (HEALTH_CHECK, health_pb2.HealthCheckRequest(service=""),
                 ())]
    refused = 0
    for method, req, metadata in requests:
        data = req.SerializeToString() if req is not None else b""
        cls = type(req) if req is not None else None
        for bad in [*_mutations(rng, data or b"\x08\x01"), *_mutations(rng, data or b"\x08\x01")]:
            reply = _call(raw_channel, method, bad, metadata)
            assert reply[0] == "ok" or reply[1] not in (grpc.StatusCode.INTERNAL,
                                                        grpc.StatusCode.UNKNOWN), reply
            if cls is not None:
                try:
                    cls.FromString(bad)
                except DecodeError:
                    refused += 1
                    assert reply[:2] == ("error", grpc.StatusCode.INVALID_ARGUMENT)
                    assert reply[2].startswith(f"malformed request: the bytes sent to {method}")
    assert refused > 10


@pytest.mark.parametrize("pads", [{"raw_pad": 5}, {"tensor_pad": 4}, {"entry_pad": 8}])
def test_run_graph_refuses_lengths_protobuf_refuses(raw_channel, pads):
    reply = _call(raw_channel, RUN_GRAPH, _large_request(**pads))
    assert reply[:2] == ("error", grpc.StatusCode.INVALID_ARGUMENT)
    assert "malformed request" in reply[2]


def test_run_graph_reply_encoder_writes_canonical_bytes(raw_channel):
    # every dtype, 0-d and empty tensors, empty and non-ASCII names, None gradients
    arrays = [np.float32(3.0), np.arange(6.0).reshape(2, 3), np.zeros((0, 3), np.float32),
              np.arange(5) - 2, np.array([True, False]), np.arange(4, dtype=np.int32),
              np.arange(4, dtype=np.uint8), np.arange(3, dtype=np.int8),
              np.arange(3, dtype=np.int16)]
    for i, arr in enumerate(arrays):
        floating = arr.dtype.kind == "f"
        req = service_pb2.RunGraphRequest()
        g = req.graph
        g.opset_version = ge.OPSET_VERSION
        g.inputs.add(name="x")
        g.inputs.add(name="y")
        req.inputs["x"].CopyFrom(codec.encode_array(np.asarray(arr)))
        req.inputs["y"].CopyFrom(codec.encode_array(np.float32(2.0)))
        g.nodes.add(id="n", op="sum" if floating else "neg" if arr.dtype != bool else
                    "logical_not", inputs=[_ref("x")])
        g.outputs.add(name=["", "out", "é x"][i % 3], ref=graph_pb2.NodeOutput(id="n"))
        if floating:
            req.wrt.extend(["x", "y"])
            req.allow_unused = True  # y's gradient is None
        reply = _call(raw_channel, RUN_GRAPH, req.SerializeToString())
        assert reply[0] == "ok", reply
        parsed = service_pb2.RunGraphResponse.FromString(reply[1])
        assert parsed.SerializeToString(deterministic=True) == reply[1]
        assert codec.decode_array(parsed.outputs[0].tensor, 10**6).tolist() == (
            np.sum(arr) if floating else ~arr if arr.dtype == bool else -arr).tolist()
        if floating:
            assert parsed.gradients[1].derivatives[0].HasField("none")


# --- where unparsable bytes go wrong --------------------------------------------------------------


def test_diagnosis_agrees_with_protobuf():
    # a fault exactly when protobuf refuses (never one in bytes protobuf reads)
    rng = random.Random(17)
    refused = 0
    for i in range(80):
        if i % 2:
            req: Any = run_graph_request(rng, big=i % 10 == 1)
        else:
            req = batch_request(rng, "s" * 20)
        cls = type(req)
        data = wire_encodings.encode(req, rng, wire_encodings.ALL | (
            wire_encodings.OVERPAD if i % 5 == 0 else frozenset()))
        for bad in [data, *_mutations(rng, data)]:
            try:
                cls.FromString(bad)
                parses = True
            except DecodeError:
                parses = False
            fault = wire_diagnosis.diagnose(bad, cls.DESCRIPTOR)
            assert (fault is None) == parses, (i, fault)
            refused += not parses
    assert refused > 150


@pytest.mark.parametrize("data, message", [
    (b"\x0a\x05\x08\x01", "at byte 0, field graph: a length of 5 bytes with 2 left in its message"),
    (b"\x0a\x05\x1a\x03\x0a\x01\xff",
     "at byte 4, field graph.nodes[0].id: a string that is not valid UTF-8 (byte 6 of the "
     "request)"),
    (b"\x3a\x01\xc3", "at byte 0, field session_id: a string that is not valid UTF-8"),
    (b"\x12\x07\x0a\x01x\x12\x02\x00\x01", "at byte 7, field inputs[0].value: field number 0"),
    (b"\x28\x81\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00",
     "at byte 0, field order: a varint that is truncated or longer than 10 bytes"),
    (b"\x3a\x81\x80\x80\x80\x80\x00", "field session_id: a length that is truncated or longer"),
    (b"\xbb\x3e" * 101 + b"\xbc\x3e" * 101, "nested more than 100 deep"),
    (b"\xbb\x3e\xc4\x3e", "field <field 999>.<field 1000>: an end-group tag without its start"),
    (b"\x0f", "the message itself: wire type 7 does not exist"),
    (b"\x0a\x02\x12", "at byte 0, field graph: a length of 2 bytes with 1 left"),
    (b"\x0a\x02\x12\x01", "at byte 2, field graph.inputs[0]: a length of 1 byte with 0 left"),
])
def test_unparsable_request_names_the_place(raw_channel, data, message):
    with pytest.raises(DecodeError):
        service_pb2.RunGraphRequest.FromString(data)
    reply = _call(raw_channel, RUN_GRAPH, data)
    assert reply[:2] == ("error", grpc.StatusCode.INVALID_ARGUMENT)
    assert reply[2].startswith(f"malformed request: the bytes sent to {RUN_GRAPH} do not parse")
    assert message in reply[2]


def test_unparsable_request_names_the_field_in_bad_request(raw_channel):
    from google.rpc import error_details_pb2, status_pb2

    stub = raw_channel.unary_unary(RUN_GRAPH, request_serializer=None,
                                   response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        stub(b"\x0a\x05\x1a\x03\x0a\x01\xff", timeout=30)
    trailers = dict(info.value.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    violations = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            violations += [(v.field, v.reason) for v in bad.field_violations]
    assert violations == [("graph.nodes[0].id", "INVALID_REQUEST")]


def test_a_diagnosis_on_the_event_loop_walks_a_few_fields_only():
    """The event loop parses health and reflection requests and tries stateless calls: the
    walk that names a malformed request's fault stops after `LOOP_FIELDS` fields there (a
    worker walks up to `MAX_FIELDS`), so that malformed requests cannot hold the loop."""
    unknown = bytes([0xF8, 0x06, 0x01])  # field 111, varint 1: skipped as protobuf skips it
    data = unknown * 1000 + b"\x00"  # then a tag of field number 0, which does not exist
    descriptor = service_pb2.RunGraphRequest.DESCRIPTOR
    on_worker = wire_guard._diagnose(data, descriptor)
    assert on_worker is not None and on_worker.offset == 3000

    async def on_loop() -> Any:
        return wire_guard._diagnose(data, descriptor)

    assert asyncio.run(on_loop()) is None
    assert wire_diagnosis.LOOP_FIELDS < 1000 < wire_diagnosis.MAX_FIELDS
