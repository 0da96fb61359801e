"""`gradserve.engine.nn`: torch.nn in process, built from gradserve.surface.nn.

    import gradserve.engine as ge
    model = ge.nn.Sequential(ge.nn.Linear(2, 8), ge.nn.ReLU(), ge.nn.Linear(8, 1))
    loss = ge.nn.functional.mse_loss(model(x), y)   # modules, functional, init, utils

Everything torch-facing (Module, the layers and losses, `functional`'s compositions such as
`cross_entropy` = `nll_loss(log_softmax(x))`, `init`, `utils`) is written once in the surface;
this module supplies the engine's side of its backend: a Parameter is an engine Tensor (so every
op and the autograd fast paths treat it as one) remembered in a registry (`engine/parameters.py`)
that `isinstance(p, nn.Parameter)` and its printed form (`Parameter containing:`) consult.
"""

from __future__ import annotations

import sys
from typing import Any

from gradserve.surface.nn import build

from . import cascade, errors, parameters
from .spellings import EngineBackend
from .tensor import Tensor


def is_parameter(value: Any) -> bool:
    """Whether `value` is an engine tensor made by `nn.Parameter` (`engine/parameters.py`)."""
    return type(value) is Tensor and parameters.is_parameter(value)


class EngineNNBackend(EngineBackend):
    """The surface's NNBackend in process: parameters are registered engine tensors."""

    value_error = errors.InvalidValueError
    assertion_error = AssertionError
    remote_metadata = False

    @property
    def onednn_lstm(self) -> bool:
        return cascade.ONEDNN_AVX512

    @property
    def torch(self) -> Any:
        return sys.modules["gradserve.engine"]

    def known_contiguous(self, tensor: Any) -> bool | None:
        return bool(tensor.is_contiguous())

    def parameter(self, data: Any, requires_grad: bool) -> Any:
        t = data.detach()
        t.requires_grad_(requires_grad)
        return parameters.register(t)

    def is_parameter(self, value: Any) -> bool:
        return is_parameter(value)

    def set_data(self, tensor: Any, value: Any) -> bool:
        tensor.data = value
        return True

    def dtype_of(self, tensor: Any) -> Any:
        return tensor.dtype

    def scalar_add(self, tensor: Any, scalar: float) -> Any:
        return self.torch.add_scalar(tensor, scalar)

    def scalar_mul(self, tensor: Any, scalar: float) -> Any:
        return self.torch.mul_scalar(tensor, scalar)

    def scalar_div(self, tensor: Any, scalar: float) -> Any:
        return self.torch.div_scalar(tensor, scalar)


_tensor_repr = Tensor.__repr__


def _repr(self: Tensor) -> str:
    text = _tensor_repr(self)
    return "Parameter containing:\n" + text if is_parameter(self) else text


# torch's Parameter prints itself with a header; here a parameter is a plain engine Tensor
# (see above), so the Tensor's printed form asks the registry.
Tensor.__repr__ = Tensor.__str__ = _repr  # type: ignore[method-assign, assignment]

BACKEND = EngineNNBackend()
_nn = build(BACKEND, __name__)
Module = _nn.Module
Parameter = _nn.Parameter
functional = _nn.functional
init = _nn.init
utils = _nn.utils
globals().update({k: v for k, v in vars(_nn).items() if not k.startswith("__")})

__all__ = sorted(k for k in vars(_nn) if not k.startswith("__"))
__getattr__ = _nn.__getattr__  # a name torch.nn has and gradserve does not (surface.compat)
