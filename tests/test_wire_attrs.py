"""gradserve.v1.attrs: the attribute encoder and decoder the server and the client share."""

import pytest

from gradserve.client import codec as client_codec
from gradserve.client.ops import _default
from gradserve.server import codec as server_codec
from gradserve.server.errors import InvalidRequestError
from gradserve.v1 import attrs, graph_pb2

VALUES = [None, True, False, 0, -3, 2.5, "ij,jk->ik", (), (2, -1)]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip_through_both_sides(value):
    msg = graph_pb2.AttrValue()
    attrs.encode_attr(value, msg, lambda v: None)
    assert server_codec.decode_attr(msg) == value
    assert _default(msg) == value
    assert type(_default(msg)) is type(value)


def test_a_dtype_is_each_sides_own():
    msg = graph_pb2.AttrValue()
    attrs.encode_attr(client_codec.float64, msg,
                      lambda v: v.wire if isinstance(v, client_codec.DType) else None)
    assert _default(msg) is client_codec.float64
    assert server_codec.decode_attr(msg) == "float64"


def test_an_unset_value_is_refused_by_the_server_and_none_to_a_client():
    with pytest.raises(attrs.UnsetAttrError):
        attrs.decode_attr(graph_pb2.AttrValue(), lambda code: code)
    with pytest.raises(InvalidRequestError, match="^sum\\(\\) attribute 'dim': value has no kind"):
        server_codec.decode_attr(graph_pb2.AttrValue(), "sum() attribute 'dim'")
    assert _default(graph_pb2.AttrValue()) is None
