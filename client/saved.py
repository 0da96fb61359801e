"""A grad_fn's `_saved_*` attributes through a session (torch's `y.grad_fn._saved_self`):
one GetSaved instruction, one round trip. The server answers with the handle the saved tensor
already has in the session (so `y.grad_fn._saved_self is x`, as in torch), a new handle (a
saved output: a new tensor each time, as torch's), a number, or None."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradserve.surface import compat
from gradserve.v1 import attrs as wire_attrs

from . import codec

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session
    from .tensor import Tensor


def read(session: Session, t: Tensor, name: str) -> Any:
    """`t.grad_fn.<name>` for a `_saved_*` name.

    Raises:
        AttributeError: the server cannot read saved tensors (older than the "get_saved"
            feature), or the node has no such attribute (torch's text).
        RuntimeError: the graph was freed, or a saved tensor was modified in place since.
    """
    if not session._get_saved:
        raise compat.missing_name("torch.autograd.graph.Node", name,
                                  "the server's features (it predates grad_fn._saved_*)")
    out = session._new_tensor()
    box: list[Any] = []
    with session._recorder.lock:
        m = session._record(lambda r: box.append(r.saved), [out]).get_saved
        m.handle = t._handle
        m.name = name
        m.result = out._handle
        session._recorder.flush()
    v = box[0]
    kind = v.WhichOneof("value")
    if kind == "bound":
        out._info = v.bound
        return out
    if kind == "same_as":
        return session.live_tensor(v.same_as)
    if kind == "number":
        return wire_attrs.decode_attr(v.number, codec.BY_WIRE.get)
    return None
