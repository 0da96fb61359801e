"""`torch.nn.init`, written once against an `NNBackend`.

Each function fills its tensor in place under no_grad, as torch's: `uniform_` and `normal_`
are the tensor's own in-place random ops (torch's kernels, engine/distributions.py), from
`generator` or the backend's default generator (the layers call these in torch's order, so
values follow the backend's random stream).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from . import grad_mode
from .nn_backend import NNBackend


def uniform_(be: NNBackend, tensor: Any, a: float = 0.0, b: float = 1.0,
             generator: Any = None) -> Any:
    """Fill `tensor` with values drawn uniformly from [a, b); returns it."""
    kwargs: dict[str, Any] = {} if generator is None else {"generator": generator}
    with grad_mode.no_grad():
        return tensor.uniform_(a, b, **kwargs)


def normal_(be: NNBackend, tensor: Any, mean: float = 0.0, std: float = 1.0,
            generator: Any = None) -> Any:
    """Fill `tensor` with values drawn from N(mean, std**2); returns it."""
    kwargs: dict[str, Any] = {} if generator is None else {"generator": generator}
    with grad_mode.no_grad():
        return tensor.normal_(mean, std, **kwargs)


def constant_(be: NNBackend, tensor: Any, val: float) -> Any:
    """Fill `tensor` with `val`; returns it."""
    with grad_mode.no_grad():
        return tensor.fill_(val)


def zeros_(be: NNBackend, tensor: Any) -> Any:
    """Fill `tensor` with 0; returns it."""
    with grad_mode.no_grad():
        return tensor.zero_()


def ones_(be: NNBackend, tensor: Any) -> Any:
    """Fill `tensor` with 1; returns it."""
    return constant_(be, tensor, 1.0)


def calculate_gain(be: NNBackend, nonlinearity: str, param: Any = None) -> float:
    """The recommended gain for a nonlinearity (torch's table).

    Raises:
        ValueError: an unknown nonlinearity or a non-numeric leaky_relu slope.
    """
    linear_fns = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d")
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            negative_slope = param
        else:
            raise be.value_error(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise be.value_error(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(be: NNBackend, tensor: Any) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: size(1) and size(0) times the receptive field.

    Raises:
        ValueError: fewer than 2 dims.
    """
    shape = be.shape(tensor)
    if len(shape) < 2:
        raise be.value_error("Fan in and fan out can not be computed for tensor with fewer than "
                             "2 dimensions")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _calculate_correct_fan(be: NNBackend, tensor: Any, mode: str) -> int:
    mode = mode.lower()
    valid = ["fan_in", "fan_out"]
    if mode not in valid:
        raise be.value_error(f"Mode {mode} not supported, please use one of {valid}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(be, tensor)
    return fan_in if mode == "fan_in" else fan_out


def xavier_uniform_(be: NNBackend, tensor: Any, gain: float = 1.0,
                    generator: Any = None) -> Any:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot); returns the tensor."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(be, tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return uniform_(be, tensor, -a, a, generator)


def xavier_normal_(be: NNBackend, tensor: Any, gain: float = 1.0, generator: Any = None) -> Any:
    """N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out)); returns the tensor."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(be, tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(be, tensor, 0.0, std, generator)


def _empty(be: NNBackend, tensor: Any) -> bool:
    if 0 in be.shape(tensor):
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return True
    return False


def kaiming_uniform_(be: NNBackend, tensor: Any, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator: Any = None) -> Any:
    """U(-b, b) with b = gain * sqrt(3 / fan) (He); returns the tensor."""
    if _empty(be, tensor):
        return tensor
    fan = _calculate_correct_fan(be, tensor, mode)
    std = calculate_gain(be, nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(be, tensor, -bound, bound, generator)


def kaiming_normal_(be: NNBackend, tensor: Any, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator: Any = None) -> Any:
    """N(0, std**2) with std = gain / sqrt(fan) (He); returns the tensor."""
    if _empty(be, tensor):
        return tensor
    fan = _calculate_correct_fan(be, tensor, mode)
    std = calculate_gain(be, nonlinearity, a) / math.sqrt(fan)
    return normal_(be, tensor, 0.0, std, generator)


FUNCTIONS = (uniform_, normal_, constant_, zeros_, ones_, calculate_gain,
             _calculate_fan_in_and_fan_out, xavier_uniform_, xavier_normal_, kaiming_uniform_,
             kaiming_normal_)
"""What `nn.init` holds (each bound to a backend by `gradserve.surface.nn.build`)."""
