"""Grad mode on the client: thread-local, as in torch; defined once in
`gradserve.surface.grad_mode` and shared with the engine (this module keeps the client's
internal import path). Ops record it: `no_grad` on the wire."""

from gradserve.surface.grad_mode import (
    _state,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)

__all__ = ["_state", "enable_grad", "inference_mode", "is_grad_enabled",
           "is_inference_mode_enabled", "no_grad", "set_grad_enabled"]
