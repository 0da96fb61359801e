"""Batch normalisation (torch.nn.BatchNorm1d / BatchNorm2d and `functional.batch_norm`): one
`batch_norm` op (grad_fn NativeBatchNormBackward0, rounded as torch's CPU kernels), the running
statistics updated in place under no_grad with the values torch's kernel writes into them."""

from __future__ import annotations

import warnings
from typing import Any

from . import grad_mode
from . import nn_init as init
from .nn_backend import NNBackend
from .nn_layers import _affine_parameters, _empty, _factory
from .nn_module import Module


def _verify_batch_size(be: NNBackend, size: tuple[int, ...], as_list: bool = False) -> None:
    """torch's `_verify_batch_size`: more than one value per channel (IndexError on a 0-d
    input, as torch's `size[0]`); `as_list` prints the size as the list group_norm passes."""
    if not size:
        raise IndexError("tuple index out of range")
    values = size[0]
    for n in size[2:]:
        values *= n
    if values == 1:
        text = f"[{', '.join(map(str, size))}]"
        raise be.value_error("Expected more than 1 value per channel when training, got input "
                             f"size {text if as_list else f'torch.Size({text})'}")


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
        # before the op, which saves the new statistics; written through `.data`, so their
        # version counters stay (torch's kernel updates them in place without a bump: a layer
        # used twice in one graph, e.g. a residual block repeated, backpropagates)
        with grad_mode.no_grad():
            args = (input, weight, bias, running_mean, running_var, float(momentum))
            new_mean = be.call("batch_norm_running", (*args, False), {})
            running_var.data.copy_(be.call("batch_norm_running", (*args, True), {}))
            running_mean.data.copy_(new_mean)
    out = be.call("batch_norm", (input, weight, bias, running_mean, running_var,
                                 bool(training), float(eps)), {})
    return out


def group_norm(be: NNBackend, input: Any, num_groups: int, weight: Any = None, bias: Any = None,
               eps: float = 1e-5) -> Any:
    """Normalise each group of num_groups channels (dim 1) of each image by its own statistics.

    One `group_norm` op (grad_fn NativeGroupNormBackward0), its forward rounded as torch's CPU
    kernel.

    Args:
        input: an (N, C, ...) floating tensor, C divisible by num_groups.
        num_groups: how many groups the channels are split into.
        weight, bias: optional (C,) affine parameters.
        eps: added to the variance.

    Returns:
        The normalised tensor, of the input's shape.

    Raises:
        RuntimeError: an input of fewer than 2 dims, torch's size and dtype errors.
        ValueError: a single value per group.
    """
    shape = tuple(be.shape(input))
    if len(shape) < 2:
        raise be.runtime_error(
            f"Expected at least 2 dimensions for input tensor but received {len(shape)}")
    _verify_batch_size(be, (shape[0] * shape[1] // num_groups, num_groups, *shape[2:]), True)
    return be.call("group_norm", (input, weight, bias, int(num_groups), float(eps)), {})


def instance_norm(be: NNBackend, input: Any, running_mean: Any = None, running_var: Any = None,
                  weight: Any = None, bias: Any = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Any:
    """Normalise each channel of each image by its own statistics (torch's composition).

    torch's `instance_norm`: the input viewed as (1, N * C, ...), the per-channel tensors
    repeated N times, one `batch_norm` (NativeBatchNormBackward0), the result viewed back
    (ViewBackward0); given running statistics, each is then set to the mean over the images of
    its repeated copy as batch norm updated it.

    Args:
        input: an (N, C, ...) floating tensor.
        running_mean, running_var: optional (C,) statistics (both needed when not
            use_input_stats).
        weight, bias: optional (C,) affine parameters.
        use_input_stats: normalise by the input's statistics (else by the running ones).
        momentum: the running statistics' update factor.
        eps: added to the variance.

    Returns:
        The normalised tensor, of the input's shape.

    Raises:
        ValueError: a single spatial element when using the input's statistics.
        RuntimeError: no running statistics without use_input_stats; torch's size errors.
    """
    shape = tuple(be.shape(input))
    if use_input_stats:
        spatial = 1
        for n in shape[2:]:
            spatial *= n
        if spatial == 1:
            raise be.value_error("Expected more than 1 spatial element when training, got input "
                                 f"size torch.Size([{', '.join(map(str, shape))}])")
    elif running_mean is None or running_var is None:
        raise be.runtime_error("Expected running_mean and running_var to be defined when "
                               "use_input_stats is false")
    b, c = shape[0], shape[1]

    def repeat(t: Any) -> Any:
        return None if t is None else t.repeat(b)

    mean_, var_ = repeat(running_mean), repeat(running_var)
    flat = input.contiguous().view(1, b * c, *shape[2:])
    out = batch_norm(be, flat, mean_, var_, repeat(weight), repeat(bias), use_input_stats,
                     momentum, eps)
    with grad_mode.no_grad():
        if running_mean is not None:
            running_mean.copy_(mean_.view(b, c).mean(0))
        if running_var is not None:
            running_var.copy_(var_.view(b, c).mean(0))
    return out.view(*shape)


FUNCTIONS = (batch_norm, group_norm, instance_norm)
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
        _affine_parameters(self, (num_features,), dtype, affine, bias)
        be = self._be
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


class _InstanceNorm(_BatchNorm):
    _no_batch_dim: int

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device: Any = None,
                 dtype: Any = None, *, bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         bias=bias)

    def _apply(self, input: Any) -> Any:
        return instance_norm(self._be, input, self.running_mean, self.running_var, self.weight,
                             self.bias, self.training or not self.track_running_stats,
                             self.momentum if self.momentum is not None else 0.0, self.eps)

    def forward(self, input: Any) -> Any:
        be = self._be
        shape = tuple(be.shape(input))
        dims = (self._no_batch_dim, self._no_batch_dim + 1)
        if len(shape) not in dims:
            raise ValueError(f"expected {dims[0]}D or {dims[1]}D input (got {len(shape)}D "
                             "input)")
        feature_dim = len(shape) - self._no_batch_dim
        if shape[feature_dim] != self.num_features:
            if self.affine:
                raise ValueError(f"expected input's size at dim={feature_dim} to match "
                                 f"num_features ({self.num_features}), but got: "
                                 f"{shape[feature_dim]}.")
            warnings.warn(f"input's size at dim={feature_dim} does not match num_features. You "
                          "can silence this warning by not passing in num_features, which is not "
                          "used because affine=False", UserWarning, stacklevel=2)
        if len(shape) == self._no_batch_dim:
            return self._apply(input.unsqueeze(0)).squeeze(0)
        return self._apply(input)

class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, C, L) or (C, L): each channel of each item by its own
    statistics."""

    _no_batch_dim = 2


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of (N, C, H, W) or (C, H, W): each channel of each image by its
    own statistics."""

    _no_batch_dim = 3


class GroupNorm(Module):
    """Group normalisation: the channels of each image in num_groups groups, each normalised by
    its own statistics, then a per-channel affine map (weight 1, bias 0)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device: Any = None, dtype: Any = None, *,
                 bias: bool = True) -> None:
        super().__init__()
        dtype = _factory("GroupNorm", device, dtype)
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _affine_parameters(self, (num_channels,), dtype, affine, bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """weight 1, bias 0."""
        if self.affine:
            init.ones_(self._be, self.weight)
            if self.bias is not None:
                init.zeros_(self._be, self.bias)

    def forward(self, input: Any) -> Any:
        return group_norm(self._be, input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


MODULES: tuple[type[Module], ...] = (BatchNorm1d, BatchNorm2d, InstanceNorm1d, InstanceNorm2d,
                                     GroupNorm)
"""The normalisation classes `gradserve.surface.nn.build` binds to a backend."""
