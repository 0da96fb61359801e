"""Batch normalisation (torch.nn.BatchNorm1d / BatchNorm2d and `functional.batch_norm`): one
`batch_norm` op (grad_fn NativeBatchNormBackward0, rounded as torch's CPU kernels), the running
statistics updated in place under no_grad with the values torch's kernel writes into them."""

from __future__ import annotations

from typing import Any

from . import grad_mode
from . import nn_init as init
from .nn_backend import NNBackend
from .nn_layers import _empty, _factory
from .nn_module import Module


def _verify_batch_size(be: NNBackend, size: tuple[int, ...]) -> None:
    """torch's `_verify_batch_size`: more than one value per channel (IndexError on a 0-d
    input, as torch's `size[0]`)."""
    if not size:
        raise IndexError("tuple index out of range")
    values = size[0]
    for n in size[2:]:
        values *= n
    if values == 1:
        raise be.value_error("Expected more than 1 value per channel when training, got input "
                             f"size torch.Size([{', '.join(map(str, size))}])")


def batch_norm(be: NNBackend, input: Any, running_mean: Any, running_var: Any,
               weight: Any = None, bias: Any = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Any:
    """Normalise each channel (dim 1) by the batch's statistics (training) or the running ones.

    One `batch_norm` op, rounded as torch's CPU kernel. In training the running statistics, if
    given, are then set in place (under no_grad) to `momentum * batch + (1 - momentum) *
    running` (the batch's unbiased variance for running_var), as torch's kernel sets them.

    Args:
        input: an (N, C, ...) floating tensor.
        running_mean, running_var: (C,) statistics, or None (both, and only in training).
        weight, bias: optional (C,) affine parameters.
        training: use the batch's statistics (and update the running ones).
        momentum: the running statistics' update factor.
        eps: added to the variance.

    Returns:
        The normalised tensor, of the input's shape.

    Raises:
        ValueError: training on a single value per channel; one running statistic without the
            other in training.
        RuntimeError: torch's size, evaluation-mode and dtype errors.
    """
    shape = tuple(be.shape(input))
    if training:
        _verify_batch_size(be, shape)
    if training and running_mean is not None and running_var is not None:
        # before the op, so that it saves the statistics at their new version, as torch's
        with grad_mode.no_grad():
            args = (input, weight, bias, running_mean, running_var, float(momentum))
            new_mean = be.call("batch_norm_running", (*args, False), {})
            running_var.copy_(be.call("batch_norm_running", (*args, True), {}))
            running_mean.copy_(new_mean)
    out = be.call("batch_norm", (input, weight, bias, running_mean, running_var,
                                 bool(training), float(eps)), {})
    return out


FUNCTIONS = (batch_norm,)
"""nn.functional's normalisation (bound by `gradserve.surface.nn.build`)."""


class _BatchNorm(Module):
    _dims: tuple[int, ...]

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device: Any = None,
                 dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__()
        dtype = _factory(type(self).__name__, device, dtype)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        be = self._be
        if affine:
            self.weight = be.parameter(_empty(be, (num_features,), dtype), True)
            if bias:
                self.bias = be.parameter(_empty(be, (num_features,), dtype), True)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", _empty(be, (num_features,), dtype))
            self.register_buffer("running_var", _empty(be, (num_features,), dtype))
            self.register_buffer("num_batches_tracked", be.torch.tensor(0, dtype=be.torch.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """running_mean 0, running_var 1, num_batches_tracked 0."""
        if self.track_running_stats:
            init.zeros_(self._be, self.running_mean)
            init.ones_(self._be, self.running_var)
            init.zeros_(self._be, self.num_batches_tracked)

    def reset_parameters(self) -> None:
        """The running statistics reset; weight 1, bias 0."""
        self.reset_running_stats()
        if self.affine:
            init.ones_(self._be, self.weight)
            if self.bias is not None:
                init.zeros_(self._be, self.bias)

    def forward(self, input: Any) -> Any:
        be = self._be
        ndim = len(be.shape(input))
        if ndim not in self._dims:
            raise ValueError(f"expected {' or '.join(f'{d}D' for d in self._dims)} input (got "
                             f"{ndim}D input)")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            with grad_mode.no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        training = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return batch_norm(be, input, self.running_mean if track else None,
                          self.running_var if track else None, self.weight, self.bias,
                          training, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) over each channel."""

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) over each channel."""

    _dims = (4,)


MODULES: tuple[type[Module], ...] = (BatchNorm1d, BatchNorm2d)
"""The normalisation classes `gradserve.surface.nn.build` binds to a backend."""
