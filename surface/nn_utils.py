"""`torch.nn.utils`: gradient clipping and flattening parameters, against an `NNBackend`.

Written as torch's (`clip_grad_norm_` takes the norm of the per-gradient norms, scales by
`clamp(max_norm / (total + 1e-6), max=1)` in place), all under no_grad.
"""

from __future__ import annotations

import math
from typing import Any

from . import grad_mode
from .nn_backend import NNBackend


def _tensors(be: NNBackend, parameters: Any) -> list[Any]:
    return [parameters] if be.is_tensor(parameters) else list(parameters)


def clip_grad_norm_(be: NNBackend, parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Any:
    """Scale the gradients in place so that their total `norm_type`-norm is at most max_norm.

    Returns:
        The total norm of the gradients before clipping (a 0-d tensor).

    Raises:
        RuntimeError: the total norm is not finite and error_if_nonfinite.
    """
    grads = [g for g in (p.grad for p in _tensors(be, parameters)) if g is not None]
    max_norm, norm_type = float(max_norm), float(norm_type)
    with grad_mode.no_grad():
        if not grads:
            return be.torch.tensor(0.0)
        norms = [be.call("norm", (g, norm_type), {}) for g in grads]
        total = be.call("norm", (be.call("stack", (norms,), {}), norm_type), {})
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise be.runtime_error(
                f"The total norm of order {norm_type} for gradients from `parameters` is "
                "non-finite, so it cannot be clipped. To disable this error and scale the "
                "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
        coef = be.call("clamp", (max_norm / (total + 1e-6),), {"max": 1.0})
        for g in grads:
            g.mul_(coef)
    return total


def clip_grad_value_(be: NNBackend, parameters: Any, clip_value: float,
                     foreach: bool | None = None) -> None:
    """Clamp every gradient to [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    with grad_mode.no_grad():
        for p in _tensors(be, parameters):
            g = p.grad
            if g is not None:
                g.clamp_(min=-clip_value, max=clip_value)


def parameters_to_vector(be: NNBackend, parameters: Any) -> Any:
    """The parameters flattened and concatenated into one 1-D tensor."""
    return be.call("cat", ([be.call("reshape", (p, (-1,)), {}) for p in parameters],), {})


def vector_to_parameters(be: NNBackend, vec: Any, parameters: Any) -> None:
    """Copy consecutive slices of the 1-D `vec` into the parameters (under no_grad).

    Raises:
        TypeError: `vec` is not a tensor.
    """
    if not be.is_tensor(vec):
        raise be.type_error(f"expected torch.Tensor, but got: {type(vec).__name__}")
    pointer = 0
    with grad_mode.no_grad():
        for p in parameters:
            n = math.prod(be.shape(p))
            p.copy_(be.call("reshape", (vec[pointer:pointer + n], tuple(be.shape(p))), {}))
            pointer += n


FUNCTIONS = (clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters)
"""What `nn.utils` holds (each bound to a backend by `gradserve.surface.nn.build`)."""
