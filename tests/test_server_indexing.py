"""Index / IndexPut on the wire: malformed index expressions are refused with INVALID_ARGUMENT
(or NOT_FOUND, RESOURCE_EXHAUSTED) and a clear message naming the item, before anything runs;
engine refusals carry torch's text; the session keeps serving afterwards."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.server import codec
from gradserve.v1 import graph_pb2, session_pb2, tensor_pb2
from tests.conftest import gradserve_error

pb = session_pb2
X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)


def index(tensor, items, result, single=False, no_grad=False):
    return pb.Instruction(index=pb.Index(tensor=tensor, index=pb.TensorIndex(
        items=items, single=single), result=result, no_grad=no_grad))


def index_put(target, items, value, single=False):
    return pb.Instruction(index_put=pb.IndexPut(target=target, index=pb.TensorIndex(
        items=items, single=single), value=value))


def integer(i):
    return pb.IndexItem(integer=i)


def const(arr):
    return pb.IndexItem(tensor=graph_pb2.Value(constant=codec.encode_array(np.asarray(arr))))


def failing(session, *instructions):
    with pytest.raises(grpc.RpcError) as info:
        session.run(*instructions)
    return gradserve_error(info)


@pytest.fixture
def s(gradserve_session):
    positions = gradserve_session.op("zeros", [], [7], size=(2**23,), dtype=ge.int64)
    gradserve_session.run(gradserve_session.create(1, X, requires_grad=True), positions)
    return gradserve_session


def test_index_and_index_put_on_the_wire(s):
    items = [integer(1), pb.IndexItem(slice=pb.IndexSlice(start=-2)),
             pb.IndexItem(new_axis=tensor_pb2.NoneValue()), const([3, 0])]
    resp = s.run(s.op("mul", [("h", 1), 1.0], [2]), index(2, items, 3))
    info = resp.results[1].handles.tensors[0]
    assert (info.handle, list(info.shape), info.grad_fn) == (3, [2, 1, 2], "IndexBackward0")
    np.testing.assert_array_equal(s.value_of(3), X[1, -2:, None][..., [3, 0]])
    put = s.run(index_put(2, [pb.IndexItem(ellipsis=tensor_pb2.NoneValue()), integer(0)],
                          graph_pb2.Value(float_scalar=-1.0)))
    assert put.results[0].handles.tensors[0].grad_fn == "CopySlices"
    expected = X.copy()
    expected[..., 0] = -1.0
    np.testing.assert_array_equal(s.value_of(2), expected)
    # a single bare slice is torch's x[:] (a slice op); inside a tuple it is skipped (an alias)
    full = pb.IndexItem(slice=pb.IndexSlice())
    r = s.run(index(1, [full], 4, single=True), index(1, [full], 5),
              index(1, [full], 6, no_grad=True))
    assert [t.handles.tensors[0].grad_fn for t in r.results] == [
        "SliceBackward0", "AliasBackward0", ""]


MALFORMED = [
    ("no kind", lambda: index(1, [pb.IndexItem()], 2), grpc.StatusCode.INVALID_ARGUMENT,
     "index: index item 0 has no kind set"),
    ("too many items", lambda: index(1, [pb.IndexItem(new_axis=tensor_pb2.NoneValue())] * 65, 2),
     grpc.StatusCode.INVALID_ARGUMENT, "index: index has 65 items, more than the maximum of 64"),
    ("single with two items", lambda: index(1, [integer(0), integer(0)], 2, single=True),
     grpc.StatusCode.INVALID_ARGUMENT,
     "index: a single-item index (single = true) needs exactly one item, got 2"),
    ("single with no item", lambda: index(1, [], 2, single=True),
     grpc.StatusCode.INVALID_ARGUMENT,
     "index: a single-item index (single = true) needs exactly one item, got 0"),
    ("scalar as tensor item", lambda: index(
        1, [pb.IndexItem(tensor=graph_pb2.Value(int_scalar=0))], 2),
     grpc.StatusCode.INVALID_ARGUMENT, "index: index item 0 is a tensor item, which must be a "
     "handle or a constant (got int_scalar); send numbers as integer or boolean items"),
    ("empty tensor item", lambda: index(1, [integer(0), pb.IndexItem(tensor=graph_pb2.Value())],
                                        2),
     grpc.StatusCode.INVALID_ARGUMENT, "index: index item 1 is a tensor item, which must be a "
     "handle or a constant (got no kind)"),
    ("bad constant", lambda: index(1, [pb.IndexItem(tensor=graph_pb2.Value(
        constant=tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_INT64, shape=[3], raw=b"\0" * 7)))], 2),
     grpc.StatusCode.INVALID_ARGUMENT,
     "index: index item 0: raw data has 7 bytes, but shape [3] of int64 needs 24"),
    ("huge constant", lambda: index(1, [pb.IndexItem(tensor=graph_pb2.Value(
        constant=tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_INT64, shape=[2**40], raw=b"")))], 2),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "index: index item 0: dimension 1099511627776"),
    ("unknown item handle", lambda: index(1, [pb.IndexItem(tensor=graph_pb2.Value(handle=77))],
                                          2),
     grpc.StatusCode.NOT_FOUND, "unknown tensor handle 77"),
    ("unknown tensor", lambda: index(9, [integer(0)], 2), grpc.StatusCode.NOT_FOUND,
     "unknown tensor handle 9"),
    ("result 0", lambda: index(1, [integer(0)], 0), grpc.StatusCode.INVALID_ARGUMENT,
     "handle ids start at 1"),
    ("result in use", lambda: index(1, [integer(0)], 1), grpc.StatusCode.INVALID_ARGUMENT,
     "handle 1 is already in use"),
    ("put without value", lambda: index_put(1, [integer(0)], graph_pb2.Value()),
     grpc.StatusCode.INVALID_ARGUMENT, "index_put value: value has no kind set"),
    ("put graph ref", lambda: index_put(1, [integer(0)], graph_pb2.Value(
        ref=graph_pb2.NodeOutput(id="n"))),
     grpc.StatusCode.INVALID_ARGUMENT, "index_put value: graph references are not valid"),
    ("put no kind item", lambda: index_put(1, [pb.IndexItem()], graph_pb2.Value(
        float_scalar=1.0)), grpc.StatusCode.INVALID_ARGUMENT,
     "index_put: index item 0 has no kind set"),
    # engine refusals: torch's text
    ("int64 min", lambda: index(1, [integer(-(2**63))], 2), grpc.StatusCode.INVALID_ARGUMENT,
     f"index {-(2**63)} is out of bounds for dimension 0 with size 2"),
    ("zero step", lambda: index(1, [pb.IndexItem(slice=pb.IndexSlice(step=0))], 2),
     grpc.StatusCode.INVALID_ARGUMENT, "slice step cannot be zero"),
    ("float tensor", lambda: index(1, [const([0.5])], 2), grpc.StatusCode.INVALID_ARGUMENT,
     "tensors used as indices must be long, int, byte or bool tensors"),
    ("result too large", lambda: index(1, [pb.IndexItem(tensor=graph_pb2.Value(handle=7))], 2),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "100663296 elements, more than the limit of 67108864"),
    ("leaf view", lambda: index_put(1, [integer(0)], graph_pb2.Value(float_scalar=1.0)),
     grpc.StatusCode.FAILED_PRECONDITION, "a view of a leaf Variable that requires grad"),
]


@pytest.mark.parametrize("make, code, message", [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_index_is_refused_and_the_session_keeps_serving(s, make, code, message):
    got_code, got_message, trailers = failing(s, s.fetch(1, value=False), make())
    assert got_code == code
    assert message in got_message, got_message
    assert trailers["gradserve-failed-instruction"] == "1"
    # nothing bound, the leaf unchanged, and the next batch works
    assert s.describe().tensor_count == 2
    r = s.run(index(1, [integer(-1), integer(2)], 2, single=False))
    assert r.results[0].handles.tensors[0].shape == [4]
    np.testing.assert_array_equal(s.value_of(2), X[-1, 2])
    np.testing.assert_array_equal(s.value_of(1), X)


def test_int64_extremes_in_slices(s):
    big, small = 2**63 - 1, -(2**63)
    r = s.run(index(1, [pb.IndexItem(slice=pb.IndexSlice(start=small, stop=big, step=big))], 2),
              index(1, [pb.IndexItem(slice=pb.IndexSlice(start=big))], 3))
    assert [list(t.handles.tensors[0].shape) for t in r.results] == [[1, 3, 4], [0, 3, 4]]
