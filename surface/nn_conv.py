"""Convolution and pooling (1-d and 2-d): convolution is the engine's `convolution` op, pooling
is composed from existing ops.

`convolution` records torch's ConvolutionBackward0 node, and where torch's float32 order is
known (its oneDNN kernels: engine/conv_onednn.py) rounds as torch does. For pooling each input
window is gathered with one `index_select` over the flattened spatial dims (an index computed
here with numpy; positions in the padding point at one appended element that holds the padding
value), then max pooling is a `gather` at each window's `argmax` (the first maximum gets the
gradient, as torch's kernel) and average pooling a sum. Values and gradients are torch's; the
pooling grad_fns are those ops' (torch records one MaxPool2DWithIndicesBackward0 node). Memory:
the windows tensor holds every input element once per kernel position it falls in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import nn_init as init
from .nn_backend import NNBackend
from .nn_layers import _empty, _factory
from .nn_module import Module


def _tuple(value: Any, d: int, name: str) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        if len(value) != d:
            raise ValueError(f"{name} must have {d} elements, got {tuple(value)}")
        return tuple(int(v) for v in value)
    return (int(value),) * d


def _window_index(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                  padding: Sequence[int], dilation: Sequence[int]
                  ) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flat indices into the spatial dims (numel = padding's slot) of every (out, kernel)
    position, shaped (*out, *kernel); and the output sizes."""
    out = tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                for s, k, st, p, d in zip(spatial, kernel, stride, padding, dilation))
    pad_slot = math.prod(spatial)
    flat = np.zeros((*out, *kernel), dtype=np.int64)
    valid = np.ones((*out, *kernel), dtype=bool)
    n = len(spatial)
    stride_of = [math.prod(spatial[i + 1:]) for i in range(n)]
    for i in range(n):
        o = np.arange(out[i]) * stride[i] - padding[i]
        k = np.arange(kernel[i]) * dilation[i]
        pos = o[:, None] + k[None, :]  # (out_i, kernel_i)
        shape = [1] * (2 * n)
        shape[i], shape[n + i] = out[i], kernel[i]
        pos = pos.reshape(shape)
        valid = valid & (pos >= 0) & (pos < spatial[i])
        flat = flat + np.clip(pos, 0, spatial[i] - 1) * stride_of[i]
    return np.where(valid, flat, pad_slot), out


def _check_kernel_fits(be: NNBackend, spatial: Sequence[int], kernel: Sequence[int],
                       padding: Sequence[int], dilation: Sequence[int]) -> None:
    if any(s + 2 * p < dl * (k - 1) + 1 for s, p, dl, k in zip(spatial, padding, dilation,
                                                                 kernel)):
        raise be.runtime_error(
            f"Calculated padded input size per channel: "
            f"({' x '.join(str(s + 2 * p) for s, p in zip(spatial, padding))}). Kernel size: "
            f"({' x '.join(str(dl * (k - 1) + 1) for dl, k in zip(dilation, kernel))}). "
            "Kernel size can't be greater than actual input size")


def _windows(be: NNBackend, x: Any, d: int, kernel: tuple[int, ...], stride: tuple[int, ...],
             padding: tuple[int, ...], dilation: tuple[int, ...], pad_value: float
             ) -> tuple[Any, tuple[int, ...]]:
    """x (N, C, *spatial) as (N, C, *out, *kernel) windows; and the output sizes."""
    shape = tuple(be.shape(x))
    n, c, spatial = shape[0], shape[1], shape[2:]
    _check_kernel_fits(be, spatial, kernel, padding, dilation)
    index, out = _window_index(spatial, kernel, stride, padding, dilation)
    flat = be.call("reshape", (x, (n, c, math.prod(spatial))), {})
    if any(padding):
        fill = be.call("full", (), {"size": (n, c, 1), "fill_value": pad_value,
                                    "dtype": be.dtype_of(x)})
        flat = be.call("cat", ((flat, fill),), {"dim": 2})
    picked = be.call("index_select", (flat, be.torch.tensor(index.reshape(-1))), {"dim": 2})
    return be.call("reshape", (picked, (n, c, *out, *kernel)), {}), out


def _batched(be: NNBackend, input: Any, d: int, name: str) -> tuple[Any, bool]:
    ndim = len(be.shape(input))
    if ndim == d + 1:
        return be.call("unsqueeze", (input, 0), {}), True
    if ndim != d + 2:
        raise be.runtime_error(
            f"Expected {d + 1}D (unbatched) or {d + 2}D (batched) input to {name}, but got "
            f"input of size: {list(be.shape(input))}")
    return input, False


def _conv(be: NNBackend, d: int, input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
          dilation: Any, groups: int) -> Any:
    name = f"conv{d}d"
    x, unbatched = _batched(be, input, d, name)
    ws = tuple(be.shape(weight))
    kernel = ws[2:]
    stride, dilation = _tuple(stride, d, "stride"), _tuple(dilation, d, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * d
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise be.runtime_error("padding='same' is not supported for strided "
                                       "convolutions")
            total = [dl * (k - 1) for dl, k in zip(dilation, kernel)]
            if any(t % 2 for t in total):
                raise be.runtime_error("padding='same' with an even total padding (an "
                                       "asymmetric pad) is not supported by gradserve")
            padding = tuple(t // 2 for t in total)
        else:
            raise be.runtime_error(f"Invalid padding string: '{padding}'")
    padding = _tuple(padding, d, "padding")
    c = be.shape(x)[1]
    if c != ws[1] * groups:
        raise be.runtime_error(
            f"Given groups={groups}, weight of size {list(ws)}, expected input"
            f"{list(be.shape(x))} to have {ws[1] * groups} channels, but got {c} channels "
            "instead")
    _check_kernel_fits(be, tuple(be.shape(x))[2:], kernel, padding, dilation)
    y = be.call("convolution", (x, weight, bias),
                {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})
    return be.call("squeeze", (y, 0), {}) if unbatched else y


def conv1d(be: NNBackend, input: Any, weight: Any, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Any:
    """1-d cross-correlation of (N, C, L) (or (C, L)) with weight (O, C/groups, K)."""
    return _conv(be, 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(be: NNBackend, input: Any, weight: Any, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Any:
    """2-d cross-correlation of (N, C, H, W) (or (C, H, W)) with weight (O, C/groups, KH, KW)."""
    return _conv(be, 2, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(be: NNBackend, d: int, input: Any, weight: Any, bias: Any, stride: Any,
                    padding: Any, output_padding: Any, groups: int, dilation: Any) -> Any:
    x, unbatched = _batched(be, input, d, f"conv_transpose{d}d")
    y = be.call("convolution_transpose", (x, weight, bias), {
        "stride": _tuple(stride, d, "stride"), "padding": _tuple(padding, d, "padding"),
        "output_padding": _tuple(output_padding, d, "output_padding"),
        "dilation": _tuple(dilation, d, "dilation"), "groups": groups})
    return be.call("squeeze", (y, 0), {}) if unbatched else y


def conv_transpose1d(be: NNBackend, input: Any, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1) -> Any:
    """1-d transposed convolution of (N, C_in, L) (or (C_in, L)) with weight
    (C_in, C_out / groups, K): torch's `convolution(..., transposed=True)`, grad_fn
    ConvolutionBackward0."""
    return _conv_transpose(be, 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation)


def conv_transpose2d(be: NNBackend, input: Any, weight: Any, bias: Any = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1) -> Any:
    """2-d transposed convolution of (N, C_in, H, W) (or (C_in, H, W)) with weight
    (C_in, C_out / groups, KH, KW): torch's `convolution(..., transposed=True)`, grad_fn
    ConvolutionBackward0."""
    return _conv_transpose(be, 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation)


def _pool_args(be: NNBackend, d: int, kernel_size: Any, stride: Any, padding: Any,
               dilation: Any, ceil_mode: bool) -> tuple[tuple[int, ...], ...]:
    if ceil_mode:
        raise be.runtime_error("pooling with ceil_mode=True is not supported by gradserve")
    kernel = _tuple(kernel_size, d, "kernel_size")
    stride = kernel if stride is None or stride == [] or stride == () else _tuple(stride, d,
                                                                                   "stride")
    padding, dilation = _tuple(padding, d, "padding"), _tuple(dilation, d, "dilation")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise be.runtime_error("pad should be at most half of effective kernel size, but got "
                               f"pad={padding[0]}, kernel_size={kernel[0]} and dilation="
                               f"{dilation[0]}")
    return kernel, stride, padding, dilation


def _max_pool(be: NNBackend, d: int, input: Any, kernel_size: Any, stride: Any, padding: Any,
              dilation: Any, ceil_mode: bool, return_indices: bool) -> Any:
    if return_indices:
        raise be.runtime_error("max_pool: return_indices=True is not supported by gradserve")
    kernel, stride, padding, dilation = _pool_args(be, d, kernel_size, stride, padding,
                                                   dilation, ceil_mode)
    x, unbatched = _batched(be, input, d, f"max_pool{d}d")
    windows, out = _windows(be, x, d, kernel, stride, padding, dilation, -math.inf)
    shape = tuple(be.shape(windows))
    flat = be.call("reshape", (windows, (*shape[:2 + d], math.prod(kernel))), {})
    first = be.call("argmax", (flat,), {"dim": -1, "keepdim": True})
    y = be.call("squeeze", (be.call("gather", (flat, first), {"dim": 2 + d}), -1), {})
    return be.call("squeeze", (y, 0), {}) if unbatched else y


def max_pool1d(be: NNBackend, input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """The maximum of each window of (N, C, L)."""
    return _max_pool(be, 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool2d(be: NNBackend, input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """The maximum of each window of (N, C, H, W)."""
    return _max_pool(be, 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def _avg_pool(be: NNBackend, d: int, input: Any, kernel_size: Any, stride: Any, padding: Any,
              ceil_mode: bool, count_include_pad: bool, divisor_override: Any) -> Any:
    kernel, stride, padding, dilation = _pool_args(be, d, kernel_size, stride, padding, 1,
                                                   ceil_mode)
    x, unbatched = _batched(be, input, d, f"avg_pool{d}d")
    windows, out = _windows(be, x, d, kernel, stride, padding, dilation, 0.0)
    dims = tuple(range(2 + d, 2 + 2 * d))
    total = be.call("sum", (windows,), {"dim": dims})
    if divisor_override:
        y = total / divisor_override
    elif count_include_pad or not any(padding):
        y = total / math.prod(kernel)
    else:  # the in-bounds elements of each window
        spatial = tuple(be.shape(x))[2:]
        index, _ = _window_index(spatial, kernel, stride, padding, dilation)
        counts = (index != math.prod(spatial)).sum(axis=tuple(range(d, 2 * d)))
        y = total / be.torch.tensor(counts.astype(np.float64), dtype=be.dtype_of(x))
    return be.call("squeeze", (y, 0), {}) if unbatched else y


def avg_pool1d(be: NNBackend, input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> Any:
    """The mean of each window of (N, C, L)."""
    return _avg_pool(be, 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     None)


def avg_pool2d(be: NNBackend, input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Any:
    """The mean of each window of (N, C, H, W)."""
    return _avg_pool(be, 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


FUNCTIONS = (conv1d, conv2d, conv_transpose1d, conv_transpose2d, max_pool1d, max_pool2d,
             avg_pool1d, avg_pool2d)
"""nn.functional's convolution and pooling (bound by `gradserve.surface.nn.build`)."""


# --- modules -------------------------------------------------------------------------------------

class _ConvNd(Module):
    _d: int

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None, *,
                 output_padding: Any = 0, transposed: bool = False) -> None:
        super().__init__()
        d = self._d
        dtype = _factory(type(self).__name__, device, dtype)
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if transposed and padding_mode != "zeros":  # torch's _ConvTransposeNd's check
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode={padding_mode!r} is not supported by gradserve "
                             "(only 'zeros')")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _tuple(kernel_size, d, "kernel_size")
        self.stride = _tuple(stride, d, "stride")
        self.padding = padding if isinstance(padding, str) else _tuple(padding, d, "padding")
        self.dilation = _tuple(dilation, d, "dilation")
        self.transposed = transposed
        self.output_padding = _tuple(output_padding, d, "output_padding")
        self.groups = groups
        self.padding_mode = padding_mode
        be = self._be
        channels = ((in_channels, out_channels // groups) if transposed
                    else (out_channels, in_channels // groups))
        self.weight = be.parameter(_empty(be, (*channels, *self.kernel_size), dtype), True)
        if bias:
            self.bias = be.parameter(_empty(be, (out_channels,), dtype), True)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's: kaiming_uniform_(weight, a=sqrt(5)), bias U(+-1/sqrt(fan_in))."""
        be = self._be
        fan_in, _ = init._calculate_fan_in_and_fan_out(be, self.weight)  # before: see Linear
        init.kaiming_uniform_(be, self.weight, a=math.sqrt(5))
        if self.bias is not None and fan_in != 0:
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(be, self.bias, -bound, bound)

    def forward(self, input: Any) -> Any:
        return _conv(self._be, self._d, input, self.weight, self.bias, self.stride,
                     self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv1d(_ConvNd):
    """1-d convolution over (N, C, L): weight (out, in / groups, k)."""

    _d = 1


class Conv2d(_ConvNd):
    """2-d convolution over (N, C, H, W): weight (out, in / groups, kh, kw)."""

    _d = 2


class _ConvTransposeNd(_ConvNd):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype,
                         output_padding=output_padding, transposed=True)

    def _output_padding(self, input: Any, output_size: Any) -> tuple[int, ...]:
        """torch's `_ConvTransposeNd._output_padding`: the output_padding that gives
        `output_size` (or the module's own without one)."""
        if output_size is None:
            return self.output_padding
        d = self._d
        shape = tuple(self._be.shape(input))
        non_spatial = 2 if len(shape) == d + 2 else 1
        output_size = list(output_size)
        if len(output_size) == non_spatial + d:
            output_size = output_size[non_spatial:]
        if len(output_size) != d:
            raise ValueError(f"ConvTranspose{d}D: for {len(shape)}D input, output_size must "
                             f"have {d} or {non_spatial + d} elements (got {len(output_size)})")
        padding = _tuple(self.padding, d, "padding")
        low = [(shape[i + non_spatial] - 1) * self.stride[i] - 2 * padding[i]
               + self.dilation[i] * (self.kernel_size[i] - 1) + 1 for i in range(d)]
        high = [low[i] + self.stride[i] - 1 for i in range(d)]
        for size, lo, hi in zip(output_size, low, high):
            if size < lo or size > hi:
                raise ValueError(
                    f"requested an output size of {output_size}, but valid sizes range from "
                    f"{low} to {high} (for an input of torch.Size({list(shape[non_spatial:])}))")
        return tuple(int(output_size[i]) - low[i] for i in range(d))

    def forward(self, input: Any, output_size: Any = None) -> Any:
        return _conv_transpose(self._be, self._d, input, self.weight, self.bias, self.stride,
                               self.padding, self._output_padding(input, output_size),
                               self.groups, self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    """1-d transposed convolution over (N, C, L): weight (in, out / groups, k)."""

    _d = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2-d transposed convolution over (N, C, H, W): weight (in, out / groups, kh, kw)."""

    _d = 2


class _MaxPoolNd(Module):
    _d: int

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Any) -> Any:
        return _max_pool(self._be, self._d, input, self.kernel_size, self.stride, self.padding,
                         self.dilation, self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """Max pooling over (N, C, L)."""

    _d = 1


class MaxPool2d(_MaxPoolNd):
    """Max pooling over (N, C, H, W)."""

    _d = 2


class AvgPool1d(Module):
    """Average pooling over (N, C, L)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = _tuple(kernel_size, 1, "kernel_size")
        self.stride = _tuple(stride if stride is not None else kernel_size, 1, "stride")
        self.padding = _tuple(padding, 1, "padding")
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input: Any) -> Any:
        return _avg_pool(self._be, 1, input, self.kernel_size, self.stride, self.padding,
                         self.ceil_mode, self.count_include_pad, None)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """Average pooling over (N, C, H, W)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Any) -> Any:
        return _avg_pool(self._be, 2, input, self.kernel_size, self.stride, self.padding,
                         self.ceil_mode, self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


MODULES: tuple[type[Module], ...] = (Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, MaxPool1d,
                                     MaxPool2d, AvgPool1d, AvgPool2d)
"""The convolution and pooling classes `gradserve.surface.nn.build` binds to a backend."""
