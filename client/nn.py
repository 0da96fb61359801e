"""`session.nn`: torch.nn for a session, built from gradserve.surface.nn.

A module's parameters are session tensors (the server holds their values and gradients); its
forward records ops like any other code, so a forward, loss and backward cost a round trip or
two. A Parameter is a client Tensor of the subclass below (its handle is the detached copy that
`nn.Parameter(data)` makes on the server, with requires_grad set).
"""

from __future__ import annotations

import types
from typing import Any

from gradserve.surface.nn import build as build_nn

from .overloads import RemoteBackend
from .tensor import Tensor


class Parameter(Tensor):
    """A session tensor registered as a module parameter (torch.nn.Parameter)."""

    __slots__ = ()
    # shown as torch's class: `print(name, type(p))` is "<class 'torch.nn.parameter.Parameter'>"
    __module__ = "torch.nn.parameter"

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__


class SessionNNBackend(RemoteBackend):
    """The surface's NNBackend for a session: ops are recorded, parameters are session tensors."""

    __slots__ = ()
    value_error = ValueError
    assertion_error = AssertionError
    # a recorded op's shape is known here (Session.meta), its memory layout only after a
    # round trip (is_contiguous)
    remote_metadata = True

    @property
    def torch(self) -> Any:
        return self.owner

    @property
    def onednn_lstm(self) -> bool:
        return bool(self.owner._onednn_lstm)

    def known_contiguous(self, tensor: Any) -> bool | None:
        # known from a description the server sent, inferred with the result's shape
        # (`Meta.contiguous`: made here from data, or an op the layout rules know), or for a
        # 1-D tensor made here from data (no in-place op of a session gives a 1-D tensor gaps)
        if tensor._info is not None:
            return not tensor._info.non_contiguous
        meta = tensor._meta
        if meta is not None and (meta.contiguous or (
                len(meta.shape) == 1 and tensor._handle in self.owner._made_from_data)):
            return True
        return None

    def parameter(self, data: Any, requires_grad: bool) -> Any:
        t = data.detach()
        t.__class__ = Parameter  # same slots: the handle becomes a Parameter
        t.requires_grad_(requires_grad)
        return t

    def is_parameter(self, value: Any) -> bool:
        return isinstance(value, Parameter) and value._owner is self.owner

    def set_data(self, tensor: Any, value: Any) -> bool:
        # No wire instruction swaps a handle's data for another dtype's: Module.to() makes new
        # Parameters instead.
        return False

    def dtype_of(self, tensor: Any) -> Any:
        return tensor.dtype

    def scalar_add(self, tensor: Any, scalar: float) -> Any:
        return self.owner.add_scalar(tensor, scalar)

    def scalar_mul(self, tensor: Any, scalar: float) -> Any:
        return self.owner.mul_scalar(tensor, scalar)

    def scalar_div(self, tensor: Any, scalar: float) -> Any:
        return self.owner.div_scalar(tensor, scalar)


def build(session: Any) -> types.ModuleType:
    """torch.nn for `session`; `nn.functional` also keeps every catalogue op by name."""
    return build_nn(SessionNNBackend(session), "gradserve.client.nn",
                    functional_extra=dict(session._functions))
