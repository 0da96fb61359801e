"""Channel-wise dropout: `nn.functional.dropout1d`/`2d`/`3d` and `nn.Dropout1d`/`2d`/`3d`.

Each zeroes whole channels: torch's CPU feature dropout draws one Bernoulli value per (sample,
channel) into a new (N, C, 1, ...) tensor (`bernoulli_(1 - p)`, then `div_(1 - p)`) and
multiplies the input by it, so the mask draws torch's numbers and the result's grad_fn is
MulBackward0; p == 1 multiplies by a 0-dim zero. The functions' checks, warnings and the
unbatched inputs (unsqueezed, then squeezed back) are torch's. Every function takes the backend
first (bound by `gradserve.surface.nn.build`).
"""

from __future__ import annotations

import warnings
from typing import Any

from .nn_backend import NNBackend
from .nn_module import Module

_PROBABILITY = "dropout probability has to be between 0 and 1, but got {}"


def _check_p(be: NNBackend, p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise be.value_error(_PROBABILITY.format(p))


def _warn_unexpected_dims(name: str, ndim: int, spatial: int) -> None:
    """torch's deprecation warning for an input of neither spatial + 1 nor spatial + 2 dims
    (the caller's caller's line, as torch's stacklevel=2 from the function)."""
    if ndim in (spatial + 1, spatial + 2):
        return
    warnings.warn(
        f"{name}: Received a {ndim}-D input to {name}, which is deprecated and will result in "
        "an error in a future release. To retain the behavior and silence this warning, please "
        f"use dropout instead. Note that {name} exists to provide channel-wise dropout on "
        f"inputs with {spatial} spatial dimensions, a channel dimension, and an optional batch "
        f"dimension (i.e. {spatial + 1}D or {spatial + 2}D inputs).", stacklevel=3)


def _feature_dropout(be: NNBackend, input: Any, p: float, training: bool,
                     inplace: bool) -> Any:
    """torch's feature_dropout: input * (a (N, C, 1, ...) bernoulli(1 - p) mask / (1 - p));
    `inplace`: torch's feature_dropout_, `input.mul_(...)`."""
    shape = tuple(be.shape(input))
    if p == 0.0 or not training or 0 in shape:
        return input
    dtype = be.dtype_of(input)
    if p == 1.0:
        noise = be.call("zeros", (), {"size": (), "dtype": dtype})
    else:
        if len(shape) < 2:
            raise be.runtime_error("Feature dropout requires at least 2 dimensions in the input")
        size = shape[:2] + (1,) * (len(shape) - 2)
        zeros = be.call("zeros", (), {"size": size, "dtype": dtype})
        noise = be.call("div", (be.call("bernoulli", (zeros, 1.0 - p), {}), 1.0 - p), {})
    return input.mul_(noise) if inplace else be.call("mul", (input, noise), {})


def _unbatched(be: NNBackend, input: Any, p: float, training: bool, batched: bool,
               inplace: bool) -> Any:
    if batched:
        return _feature_dropout(be, input, p, training, inplace)
    one = _feature_dropout(be, be.call("unsqueeze", (input,), {"dim": 0}), p, training, inplace)
    return be.call("squeeze", (one,), {"dim": 0})


def dropout1d(be: NNBackend, input: Any, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Any:
    """Zero whole channels of a (N, C, L) or (C, L) input with probability p (training only),
    scaling the others by 1 / (1 - p)."""
    _check_p(be, p)
    ndim = len(be.shape(input))
    if ndim not in (2, 3):
        raise be.runtime_error(
            f"dropout1d: Expected 2D or 3D input, but received a {ndim}D input. Note that "
            "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial "
            "dimension, a channel dimension, and an optional batch dimension (i.e. 2D or 3D "
            "inputs).")
    return _unbatched(be, input, p, training, ndim == 3, inplace)


def dropout2d(be: NNBackend, input: Any, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Any:
    """Zero whole channels of a (N, C, H, W) input with probability p (training only); a 3-D
    input is read as (N, C, L), with torch's warning."""
    _check_p(be, p)
    ndim = len(be.shape(input))
    _warn_unexpected_dims("dropout2d", ndim, 2)
    if ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D "
            "dropout behavior is desired - input is interpreted as shape (N, C, L), where C is "
            "the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2)
    return _feature_dropout(be, input, p, training, inplace)


def dropout3d(be: NNBackend, input: Any, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Any:
    """Zero whole channels of a (N, C, D, H, W) or (C, D, H, W) input with probability p
    (training only)."""
    _check_p(be, p)
    ndim = len(be.shape(input))
    _warn_unexpected_dims("dropout3d", ndim, 3)
    return _unbatched(be, input, p, training, ndim == 5, inplace)


class _DropoutNd(Module):
    """A channel-wise dropout layer: p and inplace, checked as torch's."""

    _function = staticmethod(dropout2d)

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(_PROBABILITY.format(p))
        self.p = p
        self.inplace = inplace

    def forward(self, input: Any) -> Any:
        return type(self)._function(self._be, input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(_DropoutNd):
    """Zeroes whole channels of (N, C, L) inputs in training (F.dropout1d)."""

    _function = staticmethod(dropout1d)


class Dropout2d(_DropoutNd):
    """Zeroes whole channels of (N, C, H, W) inputs in training (F.dropout2d)."""

    _function = staticmethod(dropout2d)


class Dropout3d(_DropoutNd):
    """Zeroes whole channels of (N, C, D, H, W) inputs in training (F.dropout3d)."""

    _function = staticmethod(dropout3d)


FUNCTIONS = (dropout1d, dropout2d, dropout3d)
MODULES: tuple[type[Module], ...] = (Dropout1d, Dropout2d, Dropout3d)
