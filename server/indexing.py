"""Index expressions (`x[...]`) from the wire, validated, as the Python index the engine takes.

The engine's own `Tensor.__getitem__`/`__setitem__` then do the work (torch's applySlicing over
registered ops), so the server never re-implements indexing. Every field is checked here first:
the item count is bounded, each item has exactly one kind, tensor items are handles or constants
(decoded under the element limit); integers are int64 by the schema, and the engine checks them
against the tensor's sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradserve.v1 import graph_pb2, session_pb2

from .errors import InvalidRequestError

# Items per index: a tensor has at most 64 dims (codec.MAX_DIMS), and an index with more items
# than that (even Nones) has no use a caller could need.
MAX_INDEX_ITEMS = 64


def decode_index(msg: session_pb2.TensorIndex, tensor_value: Callable[[graph_pb2.Value, str], Any],
                 what: str) -> Any:
    """The engine index for `msg`: one item, or a tuple of items.

    Args:
        msg: the wire index.
        tensor_value: decodes a handle or constant Value into an engine tensor.
        what: names the instruction in error messages.

    Raises:
        InvalidRequestError: too many items, an item without a kind, a tensor item that is not a
            handle or a constant, `single` with other than one item.
    """
    items = msg.items
    if len(items) > MAX_INDEX_ITEMS:
        raise InvalidRequestError(f"{what}: index has {len(items)} items, more than the maximum "
                                  f"of {MAX_INDEX_ITEMS}")
    if msg.single and len(items) != 1:
        raise InvalidRequestError(f"{what}: a single-item index (single = true) needs exactly one "
                                  f"item, got {len(items)}")
    out = tuple(_item(item, k, tensor_value, what) for k, item in enumerate(items))
    return out[0] if msg.single else out


def _item(item: session_pb2.IndexItem, k: int,
          tensor_value: Callable[[graph_pb2.Value, str], Any], what: str) -> Any:
    kind = item.WhichOneof("kind")
    if kind == "integer":
        return int(item.integer)
    if kind == "slice":
        s = item.slice
        return slice(s.start if s.HasField("start") else None,
                     s.stop if s.HasField("stop") else None,
                     s.step if s.HasField("step") else None)
    if kind == "new_axis":
        return None
    if kind == "ellipsis":
        return Ellipsis
    if kind == "boolean":
        return bool(item.boolean)
    if kind == "tensor":
        value_kind = item.tensor.WhichOneof("kind")
        if value_kind not in ("handle", "constant"):
            raise InvalidRequestError(
                f"{what}: index item {k} is a tensor item, which must be a handle or a constant "
                f"(got {value_kind or 'no kind'}); send numbers as integer or boolean items")
        return tensor_value(item.tensor, f"{what}: index item {k}")
    raise InvalidRequestError(f"{what}: index item {k} has no kind set")
