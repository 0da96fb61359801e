"""Malformed tensors are refused before allocation; good ones round-trip in every encoding."""

import grpc
import numpy as np
import pytest

from gradserve.server import codec
from gradserve.server.errors import InvalidRequestError, LimitExceededError
from gradserve.v1 import session_pb2, tensor_pb2
from tests.conftest import gradserve_error

F32 = tensor_pb2.DTYPE_FLOAT32


def raw_tensor(shape, nbytes, dtype=F32):
    return tensor_pb2.Tensor(dtype=dtype, shape=shape, raw=b"\0" * nbytes)


MALFORMED = [
    ("byte length != shape x item size", raw_tensor([2, 3], 20), InvalidRequestError,
     "raw data has 20 bytes, but shape [2, 3] of float32 needs 24"),
    ("negative dim", raw_tensor([2, -3], 0), InvalidRequestError, "negative dimension -3"),
    ("overflowing dims", raw_tensor([2**62, 2**62, 4], 0), LimitExceededError,
     "above the element limit"),
    ("too many elements", raw_tensor([1000, 1000, 1000], 0), LimitExceededError,
     "more elements than the limit"),
    ("unspecified dtype", tensor_pb2.Tensor(shape=[1], raw=b"\0" * 4), InvalidRequestError,
     "dtype is unspecified"),
    ("unknown dtype", tensor_pb2.Tensor(dtype=99, shape=[1], raw=b"\0" * 4), InvalidRequestError,
     "unknown dtype enum value 99"),
    ("no encoding", tensor_pb2.Tensor(dtype=F32, shape=[1]), InvalidRequestError, "no data"),
    ("typed list of the wrong dtype",
     tensor_pb2.Tensor(dtype=F32, shape=[1], int64_values=tensor_pb2.Int64List(values=[1])),
     InvalidRequestError, "int64_values does not match dtype float32"),
    ("typed list of the wrong length",
     tensor_pb2.Tensor(dtype=F32, shape=[3], float_values=tensor_pb2.FloatList(values=[1])),
     InvalidRequestError, "float_values has 1 elements, but shape [3] needs 3"),
    ("bool bytes other than 0/1",
     tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_BOOL, shape=[2], raw=b"\x01\x07"),
     InvalidRequestError, "must be 0 or 1"),
    ("too many dims", raw_tensor([1] * 65, 4), InvalidRequestError, "65 dims"),
]


@pytest.mark.parametrize("msg, error, text", [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_decode_rejects_malformed(msg, error, text):
    with pytest.raises(error, match=None) as info:
        codec.decode_array(msg, max_elements=10**6)
    assert text in str(info.value)


def test_two_encodings_at_once_cannot_be_sent():
    # A oneof keeps only the last field set, on the wire too: the decoder sees one encoding.
    msg = tensor_pb2.Tensor(dtype=F32, shape=[1], raw=b"\0" * 4)
    msg.float_values.values.append(1.0)
    assert msg.WhichOneof("data") == "float_values"
    wire = tensor_pb2.Tensor(dtype=F32, shape=[1], raw=b"\0" * 4).SerializeToString() + \
        tensor_pb2.Tensor(float_values=tensor_pb2.FloatList(values=[2.0])).SerializeToString()
    decoded = tensor_pb2.Tensor.FromString(wire)
    assert decoded.WhichOneof("data") == "float_values"
    assert codec.decode_array(decoded, 10).tolist() == [2.0]


@pytest.mark.parametrize("case", MALFORMED[:7], ids=[m[0] for m in MALFORMED[:7]])
def test_malformed_tensor_through_the_service(gradserve_session, case):
    _, msg, error, text = case
    s = gradserve_session
    ins = session_pb2.Instruction(create_tensor=session_pb2.CreateTensor(handle=1, value=msg))
    with pytest.raises(grpc.RpcError) as info:
        s.run(ins)
    code, message, meta = gradserve_error(info)
    expected = (grpc.StatusCode.RESOURCE_EXHAUSTED if error is LimitExceededError
                else grpc.StatusCode.INVALID_ARGUMENT)
    assert code == expected and text in message
    assert meta["gradserve-failed-instruction"] == "0"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3), (2, 0, 4)])
def test_round_trip_every_dtype(dtype, shape):
    arr = (np.arange(int(np.prod(shape))) % 2 == 1).astype(dtype).reshape(shape) \
        if dtype is np.bool_ else np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    msg = codec.encode_array(arr)
    back = codec.decode_array(tensor_pb2.Tensor.FromString(msg.SerializeToString()), 100)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    t = codec.decode_tensor(msg, 100)  # the engine tensor owns a writable copy
    assert t.numpy().flags.writeable and t.shape == arr.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_])
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3), (2, 0, 4), (200, 3)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "expanded"])
def test_tensor_parts_are_protobufs_own_bytes(dtype, shape, layout):
    # RunGraph's reply is written directly (codec.tensor_parts, graph.Reply) so that a tensor's
    # data is copied once: byte for byte what protobuf serializes, whatever the array's layout.
    n = int(np.prod(shape))
    arr = (np.arange(n) % 3 == 1) if dtype is np.bool_ else np.arange(n) - 150
    arr = arr.astype(dtype).reshape(shape)
    if layout == "transposed":
        arr = arr.T
    elif layout == "expanded":  # a 0-stride view, as expand() makes
        arr = np.broadcast_to(arr, (2, *shape))
    parts, size = codec.tensor_parts(arr)
    wire = codec.encode_array(arr).SerializeToString()
    assert b"".join(parts) == wire and size == len(wire)
    taken, _ = codec.tensor_parts(arr, snapshot=True)  # the bytes as they are now
    if n and layout == "contiguous":
        arr[...] = ~arr if dtype is np.bool_ else arr + 1
        assert b"".join(taken) == wire and b"".join(parts) != wire  # the other holds `arr`


def test_reply_bytes_are_protobufs_own():
    # Every field of a RunGraphResponse the reply writes: names (empty ones are left out, as
    # proto3 does; non-ASCII ones in UTF-8), outputs, gradients with None slots, functional
    # results, tensor views.
    import gradserve.engine as ge
    from gradserve.server import graph
    from gradserve.v1 import service_pb2

    t = ge.tensor(np.arange(600, dtype=np.float32).reshape(200, 3))
    view = t.t()
    reply = graph.Reply()
    expected = service_pb2.RunGraphResponse()
    for name, tensor in (("y", t), ("", view), ("\u00e9\u4e2d", ge.tensor(np.int64(7)))):
        reply.output(name, tensor)
        codec.encode_array(tensor.numpy(), expected.outputs.add(name=name).tensor)
    reply.gradients("x", [t, None, view])
    entry = expected.gradients.add(name="x")
    codec.encode_array(t.numpy(), entry.derivatives.add().tensor)
    entry.derivatives.add().none.SetInParent()
    codec.encode_array(view.numpy(), entry.derivatives.add().tensor)
    reply.gradients("", [])
    expected.gradients.add(name="")
    reply.functional_result(None)
    expected.functional_result.add().none.SetInParent()
    reply.functional_result(view)
    codec.encode_array(view.numpy(), expected.functional_result.add().tensor)
    wire = expected.SerializeToString()
    assert reply.serialize() == wire and reply.size == len(wire)


def test_varint_is_protobufs():
    for n in (0, 1, 127, 128, 300, 2**31, 2**62, 2**64 - 1):
        msg = tensor_pb2.Tensor(shape=[n % 2**63])
        assert msg.SerializeToString() == b"\x12" + codec.varint(
            len(codec.varint(n % 2**63))) + codec.varint(n % 2**63)
    assert codec.varint(-1) == tensor_pb2.Tensor(shape=[-1]).SerializeToString()[2:]


def test_typed_lists_decode():
    msg = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT64, shape=[2],
                            double_values=tensor_pb2.DoubleList(values=[1.5, -2.0]))
    assert codec.decode_array(msg, 10).tolist() == [1.5, -2.0]
    msg = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_BOOL, shape=[2],
                            bool_values=tensor_pb2.BoolList(values=[True, False]))
    assert codec.decode_array(msg, 10).tolist() == [True, False]


def test_raw_is_little_endian():
    msg = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_INT32, shape=[1], raw=b"\x01\x00\x00\x00")
    assert codec.decode_array(msg, 1).tolist() == [1]


def test_zero_sized_tensors():
    msg = tensor_pb2.Tensor(dtype=F32, shape=[0, 7], raw=b"")
    assert codec.decode_array(msg, 10).shape == (0, 7)
    with pytest.raises(LimitExceededError, match="dimension 4611686018427387904"):
        codec.decode_array(tensor_pb2.Tensor(dtype=F32, shape=[0, 2**62], raw=b""), 10)
