"""gradserve.client: the SDK. A remote session that stands in for `torch`.

    import gradserve.client as gc
    with gc.connect("localhost:50051") as client, client.session() as torch:
        x = torch.tensor(3.0, requires_grad=True)
        y = x ** 2
        y.backward()
        print(x.grad)  # tensor(6.)

Needs only grpcio, protobuf and numpy: the client never imports the engine.
"""

from __future__ import annotations

from gradserve.surface.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)

from .codec import DType
from .connection import TLS, Client, connect
from .dot import to_dot
from .errors import (
    CancelledError,
    DeadlineExceededError,
    GradserveError,
    IncompatibleServerError,
    InternalServerError,
    MetaMismatchError,
    NotFoundError,
    RemoteError,
    TracingError,
    UnauthenticatedError,
    UnavailableError,
)
from .heap import keep_freed_memory
from .optim import Optimizer
from .session import Session
from .tensor import Size, Tensor

__all__ = ["TLS", "CancelledError", "Client", "DType", "DeadlineExceededError",
           "GradserveError", "IncompatibleServerError", "InternalServerError", "MetaMismatchError",
           "NotFoundError",
           "Optimizer", "RemoteError", "Session", "Size",
           "Tensor", "TracingError", "UnauthenticatedError", "UnavailableError", "connect",
           "enable_grad", "inference_mode", "is_grad_enabled", "is_inference_mode_enabled",
           "keep_freed_memory", "no_grad", "set_grad_enabled", "to_dot"]
