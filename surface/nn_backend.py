"""What `torch.nn` (gradserve.surface.nn) needs of the layer it runs in, beyond a spelling's
`Backend`: the torch-like namespace (for creation functions), parameters, dtypes, and the few
error types torch's nn raises.

The engine implements it in process (engine/nn.py), the client for a session (client/nn.py).
"""

from __future__ import annotations

from typing import Any, Protocol

from .backend import Backend


class NNBackend(Backend, Protocol):
    """The surface's nn backend: a spelling `Backend` plus parameters and the namespace."""

    torch: Any
    """The torch-like namespace: `gradserve.engine` or a client `Session`."""
    value_error: type[ValueError]
    """torch's ValueError (an unknown reduction, a dropout probability out of range)."""
    assertion_error: type[AssertionError]
    """torch's AssertionError (embedding's padding_idx out of range)."""
    remote_metadata: bool
    """Whether reading a recorded tensor's memory layout costs a round trip (a session, which
    knows shapes locally): nn then skips layout reads that only choose torch's graph, not the
    values (linear's reshape-addmm-view for an n-D input)."""

    onednn_lstm: bool
    """Whether this layer computes float32 LSTM layers as torch's oneDNN AVX-512 kernel, bit
    for bit (the op `mkldnn_rnn_layer`): nn.LSTM then calls it, else composes the cells."""

    def known_contiguous(self, tensor: Any) -> bool | None:
        """Whether the tensor's layout is contiguous when this layer knows it without a round
        trip (None when it does not)."""
        ...

    def parameter(self, data: Any, requires_grad: bool) -> Any:
        """A new leaf sharing `data`'s values that `is_parameter` (torch's Parameter(data))."""
        ...

    def is_parameter(self, value: Any) -> bool:
        """Whether `value` is a Parameter of this layer."""
        ...

    def set_data(self, tensor: Any, value: Any) -> bool:
        """torch's `tensor.data = value` (the object stays, its data and dtype become value's);
        False when the layer cannot, and the caller makes a new tensor instead."""
        ...

    def dtype_of(self, tensor: Any) -> Any:
        """The tensor's dtype (it has `is_floating_point`)."""
        ...

    def scalar_add(self, tensor: Any, scalar: float) -> Any:
        """tensor + scalar as torch's C++ add(Tensor, Scalar) (grad_fn AddBackward1: the op
        add_scalar)."""
        ...

    def scalar_mul(self, tensor: Any, scalar: float) -> Any:
        """tensor * scalar as torch's C++ mul(Tensor, Scalar) (grad_fn MulBackward1: the op
        mul_scalar)."""
        ...

    def scalar_div(self, tensor: Any, scalar: float) -> Any:
        """tensor / scalar as torch's C++ div(Tensor, Scalar) (grad_fn DivBackward1: the op
        div_scalar)."""
        ...
