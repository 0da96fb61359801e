"""The torch-facing surface shared by the engine (in process) and the client (remote).

Pure Python and numpy: it imports neither grpc nor any other gradserve layer, and both the
engine and the client build their torch-like API from it, so a torch spelling, a grad-mode form
or a message text is written once.
"""

from .grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)

__all__ = ["enable_grad", "inference_mode", "is_grad_enabled", "is_inference_mode_enabled",
           "no_grad", "set_grad_enabled"]
