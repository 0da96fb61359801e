"""Adaptive pooling, interpolation (`F.interpolate`, nn.Upsample), padding (`F.pad`:
nn.ConstantPad*d / ZeroPad*d are the op `constant_pad_nd`, nn.ReflectionPad*d and
ReplicationPad*d the ops `reflection_pad` and `replication_pad`) and pixel shuffling.

- Adaptive average pooling to 1 x 1 is torch's own composition, `mean` over the spatial dims
  (MeanBackward1). Other sizes gather each window with one `index_select` (torch's windows:
  start floor(i * in / out), end ceil((i + 1) * in / out); positions beyond a shorter window read
  an appended padding element, 0 for the average, -inf for the maximum), then the average is
  the window's sum in order (a `cumsum`'s last element) `/ kh / kw`, as torch's kernel, and the
  maximum a `gather` at the window's `argmax` (the first maximum, as torch's kernel). The 1-d
  forms run as 2-d ones of height 1 and squeeze it away (SqueezeBackward1), as torch's do.
- Nearest interpolation is the engine's `upsample_nearest` op (its indices: `nearest_index`
  here). Linear interpolation is separable: each spatial dim in turn, two `index_select`s at
  torch's source indices weighted by torch's lambdas (the innermost dim first, and each
  `addcmul(x1 * lambda1, x0, lambda0)`: for float32 the one fused multiply-add torch's kernel
  rounds), indices and lambdas computed in the input's float type as torch's `upsample`
  kernels compute them.
- pixel_shuffle / pixel_unshuffle are a reshape, a permute and a reshape.
- F.unfold / F.fold (nn.Unfold, nn.Fold) are the engine's `im2col` / `col2im` (torch's nodes,
  Im2ColBackward0 and Col2ImBackward0, and its errors).

Values are torch's; the grad_fns are those of the composing ops, where torch records one node
(AdaptiveAvgPool2DBackward0, AdaptiveMaxPool2DBackward0, UpsampleBilinear2DBackward0,
PixelShuffleBackward0). Index arrays are built here with numpy, one per spatial dim (the size
of that dim of the result, or result times window for the adaptive pools), and sent as ordinary
tensors: the server validates them and bounds the results as for any op.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .nn_backend import NNBackend
from .nn_module import Module

# --- adaptive pooling ----------------------------------------------------------------------------


def _list_with_default(be: NNBackend, out_size: Any, defaults: tuple[int, ...]) -> Any:
    """torch's `_list_with_default`: None entries of output_size take the input's size."""
    if isinstance(out_size, int):
        return out_size
    if len(defaults) <= len(out_size):
        raise be.value_error(f"Input dimension should be at least {len(out_size) + 1}")
    return [v if v is not None else d for v, d in zip(out_size, defaults[-len(out_size):])]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _adaptive_index(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive windows over one dim: positions (out, longest window) (-1 past a
    window's end) and each window's length."""
    i = np.arange(out, dtype=np.int64)
    # torch: floor((float)(i * in) / out) and ceil((float)((i + 1) * in) / out)
    start = np.floor(np.float32(1) * (i * size).astype(np.float32) / np.float32(out)).astype(
        np.int64)
    end = np.ceil((((i + 1) * size).astype(np.float32)) / np.float32(out)).astype(np.int64)
    k = int((end - start).max()) if out else 0
    pos = start[:, None] + np.arange(k, dtype=np.int64)[None, :]
    return np.where(pos < end[:, None], pos, -1), end - start


def _adaptive_windows(be: NNBackend, x: Any, out: tuple[int, int], pad_value: float
                      ) -> tuple[Any, np.ndarray, np.ndarray]:
    """x (N, C, H, W) as (N, C, OH, OW, KH * KW) windows; and the windows' heights and widths."""
    n, c, h, w = tuple(be.shape(x))
    rows, kh = _adaptive_index(h, out[0])
    cols, kw = _adaptive_index(w, out[1])
    valid = (rows[:, None, :, None] >= 0) & (cols[None, :, None, :] >= 0)
    flat_index = np.where(valid, rows[:, None, :, None] * w + cols[None, :, None, :], h * w)
    flat = be.call("reshape", (x, (n, c, h * w)), {})
    fill = be.call("full", (), {"size": (n, c, 1), "fill_value": pad_value,
                                "dtype": be.dtype_of(x)})
    flat = be.call("cat", ((flat, fill),), {"dim": 2})
    picked = be.call("index_select", (flat, be.torch.tensor(flat_index.reshape(-1))), {"dim": 2})
    windows = be.call("reshape", (picked, (n, c, out[0], out[1], -1)), {})
    return windows, kh, kw


def _check_adaptive_input(be: NNBackend, name: str, shape: tuple[int, ...]) -> None:
    if len(shape) not in (3, 4):
        colon = ":" if "max" in name else ""
        raise be.runtime_error(f"{name}(): Expected 3D or 4D tensor, but got{colon} "
                               f"[{', '.join(map(str, shape))}]")
    for i in range(1, len(shape)):
        if shape[i] == 0:
            raise be.runtime_error(
                f"{name}(): Expected input to have non-zero size for non-batch dimensions, but "
                f"input has sizes [{', '.join(map(str, shape))}] with dimension {i} being empty")


def _as_batched(be: NNBackend, x: Any) -> tuple[Any, bool]:
    if len(be.shape(x)) == 3:
        return be.call("unsqueeze", (x, 0), {}), True
    return x, False


def adaptive_avg_pool2d(be: NNBackend, input: Any, output_size: Any) -> Any:
    """The mean of each of output_size (OH, OW) adaptive windows of (N, C, H, W) or (C, H, W).

    Args:
        input: the tensor.
        output_size: an int or a pair (None entries keep the input's size).

    Returns:
        (N, C, OH, OW): torch's values; a 1 x 1 output is torch's `mean` (MeanBackward1).

    Raises:
        RuntimeError: torch's size errors.
    """
    shape = tuple(be.shape(input))
    out = _pair(_list_with_default(be, output_size, shape))
    if out[0] < 0 or out[1] < 0:
        raise be.runtime_error("adaptive_avg_pool2d: elements of output_size must be greater "
                               f"than or equal to 0 but received {{{out[0]}, {out[1]}}}")
    if out == (1, 1):  # torch's own shortcut
        return be.call("mean", (input,), {"dim": (-1, -2), "keepdim": True})
    _check_adaptive_input(be, "adaptive_avg_pool2d", shape)
    x, unbatched = _as_batched(be, input)
    windows, kh, kw = _adaptive_windows(be, x, out, 0.0)
    # torch's kernel sums each window in order from 0, in the input's dtype: the window's
    # elements added one after another (not cumsum's last: a float32 cumsum accumulates in
    # float64, as torch's)
    total = be.call("select", (windows, -1, 0), {}) + 0.0
    for j in range(1, tuple(be.shape(windows))[-1]):
        total = total + be.call("select", (windows, -1, j), {})
    dtype = be.dtype_of(x)
    # torch's kernel: sum / kh / kw
    y = total / be.torch.tensor(kh.reshape(-1, 1).astype(np.float64), dtype=dtype)
    y = y / be.torch.tensor(kw.reshape(1, -1).astype(np.float64), dtype=dtype)
    return be.call("squeeze", (y, 0), {}) if unbatched else y


def adaptive_max_pool2d(be: NNBackend, input: Any, output_size: Any,
                        return_indices: bool = False) -> Any:
    """The maximum of each of output_size (OH, OW) adaptive windows of (N, C, H, W) or
    (C, H, W) (return_indices=True is not supported)."""
    if return_indices:
        raise be.runtime_error("adaptive_max_pool2d: return_indices=True is not supported by "
                               "gradserve")
    shape = tuple(be.shape(input))
    out = _pair(_list_with_default(be, output_size, shape))
    _check_adaptive_input(be, "adaptive_max_pool2d", shape)
    x, unbatched = _as_batched(be, input)
    windows, _, _ = _adaptive_windows(be, x, out, -math.inf)
    first = be.call("argmax", (windows,), {"dim": -1, "keepdim": True})
    y = be.call("squeeze", (be.call("gather", (windows, first), {"dim": 4}), -1), {})
    return be.call("squeeze", (y, 0), {}) if unbatched else y


def _pool1d(be: NNBackend, name: str, input: Any, output_size: Any) -> tuple[Any, int]:
    shape = tuple(be.shape(input))
    if len(shape) not in (2, 3):
        raise be.runtime_error(f"Expected 2 to 3 dimensions, but got {len(shape)}-dimensional "
                               f"tensor for argument #1 'self' (while checking arguments for "
                               f"{name})")
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 1:
            raise be.runtime_error(f"{name}() argument 'output_size' should contain one int "
                                   f"(got {len(output_size)})")
        output_size = output_size[0]
    return be.call("unsqueeze", (input, -2), {}), int(output_size)


def adaptive_avg_pool1d(be: NNBackend, input: Any, output_size: Any) -> Any:
    """The mean of each of output_size adaptive windows of (N, C, L) or (C, L) (torch's: the
    2-d pool of a height-1 input, squeezed)."""
    x, out = _pool1d(be, "adaptive_avg_pool1d", input, output_size)
    return be.call("squeeze", (adaptive_avg_pool2d(be, x, (1, out)), -2), {})


def adaptive_max_pool1d(be: NNBackend, input: Any, output_size: Any,
                        return_indices: bool = False) -> Any:
    """The maximum of each of output_size adaptive windows of (N, C, L) or (C, L)."""
    x, out = _pool1d(be, "adaptive_max_pool1d", input, output_size)
    return be.call("squeeze", (adaptive_max_pool2d(be, x, (1, out), return_indices), -2), {})


# --- interpolation -------------------------------------------------------------------------------

_MODES = ("nearest", "linear", "bilinear")


def _scale_value(dt: Any, scale: float | None, size: int, out: int) -> Any:
    """torch's `compute_scales_value`: 1 / scale_factor when given, else in / out."""
    if scale is not None and scale > 0:
        return dt(1.0 / scale)
    return dt(size) / dt(out)


def nearest_index(size: int, out: int, scale: float | None) -> np.ndarray:
    """torch's `nearest_idx` (float arithmetic, as its kernel)."""
    i = np.arange(out, dtype=np.int64)
    if out == size:
        return i
    if out == 2 * size:
        return i >> 1
    s = _scale_value(np.float32, scale, size, out)
    return np.minimum(np.floor(i.astype(np.float32) * s).astype(np.int64), size - 1)


def _linear_weights(dt: Any, size: int, out: int, scale: float | None, align_corners: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's `compute_source_index_and_lambda` for every output index: (index0, index1,
    lambda0, lambda1), the lambdas in the input's float type."""
    i = np.arange(out, dtype=np.int64)
    if out == size:
        return i, i, np.ones(out, dt), np.zeros(out, dt)
    if align_corners:
        ratio = dt(size - 1) / dt(out - 1) if out > 1 else dt(0)
        real = ratio * i.astype(dt)
    else:
        ratio = _scale_value(dt, scale, size, out)
        real = _fma(ratio, i.astype(dt) + dt(0.5), dt(-0.5), dt)
        real = np.where(real < 0, dt(0), real)
    index0 = np.minimum(np.floor(real).astype(np.int64), size - 1)
    lambda1 = np.minimum(np.maximum(real - index0.astype(dt), dt(0)), dt(1)).astype(dt)
    index1 = index0 + (index0 < size - 1)
    return index0, index1, (dt(1) - lambda1).astype(dt), lambda1


def _fma(a: Any, b: Any, c: Any, dt: Any) -> Any:
    """a * b + c as torch's kernel computes the source index: fused (one rounding) for float32
    (the product is exact in float64; rounding the float64 sum to float32 differs from a true
    fused multiply-add only on rare double-rounding ties); float64 unfused."""
    if dt is np.float32:
        return (np.float64(a) * np.asarray(b, np.float64) + np.float64(c)).astype(np.float32)
    return a * b + c


def _float_type(be: NNBackend, x: Any) -> Any:
    return np.float64 if be.dtype_name(x) == "float64" else np.float32


def interpolate(be: NNBackend, input: Any, size: Any = None, scale_factor: Any = None,
                mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False) -> Any:
    """Resize (N, C, L) or (N, C, H, W) to `size` or by `scale_factor` (torch's
    F.interpolate, modes nearest, linear and bilinear).

    Args:
        input: a 3-D (linear, nearest) or 4-D (bilinear, nearest) tensor.
        size: the output's spatial size (an int or one per spatial dim).
        scale_factor: a multiplier for the spatial size (one, or one per spatial dim).
        mode: "nearest", "linear" (3-D) or "bilinear" (4-D).
        align_corners: for the linear modes, whether the corner pixels' centres align.
        recompute_scale_factor: compute the output size from scale_factor and then use that
            size's own scale (torch's meaning).
        antialias: not supported (False).

    Returns:
        The resized tensor: torch's values (composed of index_select, mul and add).

    Raises:
        ValueError: torch's argument errors.
        RuntimeError: an output size of 0.
        NotImplementedError: other modes and dims, antialias.
    """
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise be.value_error("align_corners option can only be set with the interpolating "
                                 "modes: linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    shape = tuple(be.shape(input))
    dim = len(shape) - 2
    if size is not None and scale_factor is not None:
        raise be.value_error("only one of size or scale_factor should be defined")
    scales: list[float] | None = None
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise be.value_error(
                    "Input and output must have the same number of spatial dimensions, but got "
                    f"input with spatial dimensions of {list(shape[2:])} and output size of "
                    f"{size}. Please provide input tensor in (N, C, d1, d2, ...,dK) format and "
                    "output size in (o1, o2, ...,oK) format.")
            output_size = [int(s) for s in size]
        else:
            output_size = [int(size)] * dim
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != dim:
                raise be.value_error(
                    "Input and scale_factor must have the same number of spatial dimensions, but "
                    f"got input with spatial dimensions of {list(shape[2:])} and scale_factor of "
                    f"shape {scale_factor}. Please provide input tensor in (N, C, d1, d2, ...,dK) "
                    "format and scale_factor in (s1, s2, ...,sK) format.")
            scales = [float(s) for s in scale_factor]
        else:
            scales = [float(scale_factor)] * dim
        output_size = [int(float(shape[i + 2]) * scales[i]) for i in range(dim)]
    else:
        raise be.value_error("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise be.value_error("recompute_scale_factor is not meaningful with an explicit size.")
    if recompute_scale_factor and scales is not None:
        output_size = [math.floor(float(shape[i + 2]) * scales[i]) for i in range(dim)]
        scales = None
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported by gradserve")
    if (dim, mode) not in ((1, "nearest"), (2, "nearest"), (1, "linear"), (2, "bilinear")):
        if dim == 1 and mode == "bilinear":
            raise NotImplementedError("Got 3D input, but bilinear mode needs 4D input")
        if dim == 2 and mode == "linear":
            raise NotImplementedError("Got 4D input, but linear mode needs 3D input")
        raise NotImplementedError(f"interpolate: mode {mode!r} on {len(shape)}D input is not "
                                  "supported by gradserve (nearest on 3D and 4D, linear on 3D, "
                                  "bilinear on 4D)")
    if any(s <= 0 for s in shape[2:]) or any(o <= 0 for o in output_size):
        names = ("H", "W")[2 - dim:]
        given = ", ".join(f"{n}: {s}" for n, s in zip(names, shape[2:]))
        wanted = ", ".join(f"{n}: {o}" for n, o in zip(names, output_size))
        joint = " and " if dim == 1 else " "
        raise be.runtime_error("Input and output sizes should be greater than 0, but got input "
                               f"({given}){joint}output ({wanted})")
    if mode == "nearest":
        scale_h, scale_w = (None, None) if scales is None else (
            (None, scales[0]) if dim == 1 else (scales[0], scales[1]))
        return be.call("upsample_nearest", (input,), {
            "output_size": tuple(output_size), "scale_h": scale_h, "scale_w": scale_w})
    y = input
    dt = _float_type(be, input)
    for axis in reversed(range(dim)):  # the innermost dim first: torch's nesting
        d, n, out = 2 + axis, shape[2 + axis], output_size[axis]
        scale = None if scales is None else scales[axis]
        if mode == "nearest":  # one op for all dims, below
            continue
        i0, i1, l0, l1 = _linear_weights(dt, n, out, scale, bool(align_corners))
        view = [1] * len(shape)
        view[d] = out
        dtype = be.dtype_of(input)
        w0 = be.torch.tensor(l0.reshape(view), dtype=dtype)
        w1 = be.torch.tensor(l1.reshape(view), dtype=dtype)
        # torch's float32 kernel: fma(x0, lambda0, x1 * lambda1), addcmul's own rounding
        y = be.call("addcmul", (
            be.call("index_select", (y, be.torch.tensor(i1)), {"dim": d}) * w1,
            be.call("index_select", (y, be.torch.tensor(i0)), {"dim": d}), w0), {})
    return y


# --- pixel shuffle -------------------------------------------------------------------------------


def _check_shuffle_dims(be: NNBackend, name: str, shape: tuple[int, ...]) -> None:
    if len(shape) < 3:
        raise be.runtime_error(f"{name} expects input to have at least 3 dimensions, but got "
                               f"input with {len(shape)} dimension(s)")


def pixel_shuffle(be: NNBackend, input: Any, upscale_factor: int) -> Any:
    """(*, C * r * r, H, W) to (*, C, H * r, W * r) (torch's pixel_shuffle's values)."""
    shape = tuple(be.shape(input))
    _check_shuffle_dims(be, "pixel_shuffle", shape)
    r = int(upscale_factor)
    if r <= 0:
        raise be.runtime_error(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    batch, (c, h, w) = shape[:-3], shape[-3:]
    if c % (r * r):
        raise be.runtime_error(
            "pixel_shuffle expects its input's 'channel' dimension to be divisible by the square "
            f"of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    k = len(batch)
    x = be.call("reshape", (input, (*batch, c // (r * r), r, r, h, w)), {})
    x = be.call("permute", (x, (*range(k), k, k + 3, k + 1, k + 4, k + 2)), {})
    return be.call("reshape", (x, (*batch, c // (r * r), h * r, w * r)), {})


def pixel_unshuffle(be: NNBackend, input: Any, downscale_factor: int) -> Any:
    """(*, C, H * r, W * r) to (*, C * r * r, H, W) (torch's pixel_unshuffle's values)."""
    shape = tuple(be.shape(input))
    _check_shuffle_dims(be, "pixel_unshuffle", shape)
    r = int(downscale_factor)
    if r <= 0:
        raise be.runtime_error(
            f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    batch, (c, h, w) = shape[:-3], shape[-3:]
    for side, name in ((h, "height"), (w, "width")):
        if side % r:
            raise be.runtime_error(
                f"pixel_unshuffle expects {name} to be divisible by downscale_factor, but "
                f"input.size({-2 if name == 'height' else -1})={side} is not divisible by {r}")
    k = len(batch)
    x = be.call("reshape", (input, (*batch, c, h // r, r, w // r, r)), {})
    x = be.call("permute", (x, (*range(k), k, k + 2, k + 4, k + 1, k + 3)), {})
    return be.call("reshape", (x, (*batch, c * r * r, h // r, w // r)), {})


# --- padding -------------------------------------------------------------------------------------


def pad(be: NNBackend, input: Any, pad: Any, mode: str = "constant", value: float | None = None
        ) -> Any:
    """input padded by `pad` ((left, right) pairs from the last dim backwards; negative entries
    crop): torch's F.pad. The constant mode is the op `constant_pad_nd` (grad_fn
    ConstantPadNdBackward0); "reflect" and "replicate" of the last 1, 2 or 3 dims the ops
    `reflection_pad` and `replication_pad` (ReflectionPad2DBackward0, ...).

    Args:
        input: the tensor.
        pad: an even number of ints, at most two per dim (2, 4 or 6 for the other modes).
        mode: "constant", "reflect" or "replicate" ("circular" is not supported).
        value: the fill value (default 0; the constant mode's only).

    Returns:
        The padded tensor.

    Raises:
        RuntimeError: torch's pad-length and value errors.
        NotImplementedError: torch's for an unknown mode or a pad length the input's dims do
            not take; "circular".
    """
    pads = tuple(int(p) for p in pad)
    if mode == "constant":
        return be.call("constant_pad_nd", (input,), {
            "pad": pads, "value": 0 if value is None else value})
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    ndim = len(be.shape(input))
    if len(pads) % 2:
        raise be.runtime_error("Padding length must be divisible by 2")
    if len(pads) > 2 * ndim:
        raise be.runtime_error(
            "Padding length should be less than or equal to two times the input dimension but "
            f"got padding length {len(pads)} and input of dimension {ndim}")
    if value is not None and value != 0:
        raise be.runtime_error(f'Padding mode "{mode}" doesn\'t take in value argument')
    if len(pads) not in (2, 4, 6) or ndim not in (len(pads) // 2 + 1, len(pads) // 2 + 2):
        raise NotImplementedError(
            f"Padding size {len(pads)} is not supported for {ndim}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")
    if mode == "circular":
        raise NotImplementedError("F.pad: mode='circular' is not supported by gradserve ("
                                  "'constant', 'reflect' and 'replicate' are)")
    op = "reflection_pad" if mode == "reflect" else "replication_pad"
    return be.call(op, (input,), {"padding": pads})


# --- sliding blocks: F.unfold, F.fold ------------------------------------------------------------


def _two(value: Any) -> tuple[int, ...]:
    """torch's `_pair`: a sequence as it is (the engine checks that it holds two), a number
    twice."""
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return int(value), int(value)


def unfold(be: NNBackend, input: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
           stride: Any = 1) -> Any:
    """Each sliding block of (N, C, H, W) or (C, H, W) as a column of (N, C * kh * kw, L): the
    engine's `im2col` (Im2ColBackward0, torch's values and errors)."""
    return be.call("im2col", (input,), {
        "kernel_size": _two(kernel_size), "dilation": _two(dilation), "padding": _two(padding),
        "stride": _two(stride)})


def fold(be: NNBackend, input: Any, output_size: Any, kernel_size: Any, dilation: Any = 1,
         padding: Any = 0, stride: Any = 1) -> Any:
    """Columns (N, C * kh * kw, L) or (C * kh * kw, L) summed into images of output_size: the
    engine's `col2im` (Col2ImBackward0; overlapping blocks add in torch's order)."""
    return be.call("col2im", (input,), {
        "output_size": _two(output_size), "kernel_size": _two(kernel_size),
        "dilation": _two(dilation), "padding": _two(padding), "stride": _two(stride)})


FUNCTIONS = (pad, adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool1d,
             adaptive_max_pool2d, interpolate, pixel_shuffle, pixel_unshuffle, unfold, fold)
"""nn.functional's padding, adaptive pooling, interpolation and pixel shuffling (bound by
`gradserve.surface.nn.build`)."""


# --- modules -------------------------------------------------------------------------------------


class _AdaptivePool(Module):
    _fn: Any

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Any) -> Any:
        return type(self)._fn(self._be, input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptivePool):
    """Adaptive average pooling of (N, C, L) to output_size."""

    _fn = adaptive_avg_pool1d


class AdaptiveAvgPool2d(_AdaptivePool):
    """Adaptive average pooling of (N, C, H, W) to output_size."""

    _fn = adaptive_avg_pool2d


class _AdaptiveMaxPool(_AdaptivePool):
    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__(output_size)
        self.return_indices = return_indices

    def forward(self, input: Any) -> Any:
        return type(self)._fn(self._be, input, self.output_size, self.return_indices)


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    """Adaptive max pooling of (N, C, L) to output_size."""

    _fn = adaptive_max_pool1d


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    """Adaptive max pooling of (N, C, H, W) to output_size."""

    _fn = adaptive_max_pool2d


class Upsample(Module):
    """Resizes its input with `F.interpolate` (size or scale_factor, mode, align_corners)."""

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None) -> None:
        super().__init__()
        self.name = type(self).__name__
        self.size = size
        if isinstance(scale_factor, tuple):
            self.scale_factor: Any = tuple(float(factor) for factor in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input: Any) -> Any:
        return interpolate(self._be, input, self.size, self.scale_factor, self.mode,
                           self.align_corners, recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            info = "scale_factor=" + repr(self.scale_factor)
        else:
            info = "size=" + repr(self.size)
        return info + ", mode=" + repr(self.mode)


class UpsamplingNearest2d(Upsample):
    """Nearest-neighbour upsampling of (N, C, H, W)."""

    def __init__(self, size: Any = None, scale_factor: Any = None) -> None:
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """Bilinear upsampling of (N, C, H, W) with aligned corners."""

    def __init__(self, size: Any = None, scale_factor: Any = None) -> None:
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class PixelShuffle(Module):
    """(*, C * r * r, H, W) to (*, C, H * r, W * r)."""

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input: Any) -> Any:
        return pixel_shuffle(self._be, input, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """(*, C, H * r, W * r) to (*, C * r * r, H, W)."""

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input: Any) -> Any:
        return pixel_unshuffle(self._be, input, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class _ConstantPadNd(Module):
    _d: int

    def __init__(self, padding: Any, value: float) -> None:
        super().__init__()
        self.padding = tuple(padding) if isinstance(padding, (tuple, list)) else (
            (int(padding),) * (2 * self._d))
        self.value = value

    def forward(self, input: Any) -> Any:
        return pad(self._be, input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pads the last dim with a constant: padding (left, right) or one int."""

    _d = 1


class ConstantPad2d(_ConstantPadNd):
    """Pads the last two dims with a constant: padding (left, right, top, bottom) or one int."""

    _d = 2


class ZeroPad1d(ConstantPad1d):
    """Pads the last dim with zeros."""

    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad2d(ConstantPad2d):
    """Pads the last two dims with zeros."""

    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _PadNd(Module):
    _d: int
    _mode: str

    def __init__(self, padding: Any) -> None:
        super().__init__()
        self.padding = tuple(padding) if isinstance(padding, (tuple, list)) else (
            (int(padding),) * (2 * self._d))

    def forward(self, input: Any) -> Any:
        return pad(self._be, input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ReflectionPad1d(_PadNd):
    """Pads the last dim with its reflection about the edge: padding (left, right) or one int."""

    _d, _mode = 1, "reflect"


class ReflectionPad2d(_PadNd):
    """Pads the last two dims with their reflection: (left, right, top, bottom) or one int."""

    _d, _mode = 2, "reflect"


class ReflectionPad3d(_PadNd):
    """Pads the last three dims with their reflection: six ints or one."""

    _d, _mode = 3, "reflect"


class ReplicationPad1d(_PadNd):
    """Pads the last dim with copies of its edge: padding (left, right) or one int."""

    _d, _mode = 1, "replicate"


class ReplicationPad2d(_PadNd):
    """Pads the last two dims with copies of their edges: (left, right, top, bottom) or one."""

    _d, _mode = 2, "replicate"


class ReplicationPad3d(_PadNd):
    """Pads the last three dims with copies of their edges: six ints or one."""

    _d, _mode = 3, "replicate"


class Unfold(Module):
    """F.unfold as a module: sliding blocks as columns."""

    def __init__(self, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
                 stride: Any = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: Any) -> Any:
        return unfold(self._be, input, self.kernel_size, self.dilation, self.padding,
                      self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")


class Fold(Module):
    """F.fold as a module: columns summed into images."""

    def __init__(self, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0,
                 stride: Any = 1) -> None:
        super().__init__()
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: Any) -> Any:
        return fold(self._be, input, self.output_size, self.kernel_size, self.dilation,
                    self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding}, stride={self.stride}")


MODULES: tuple[type[Module], ...] = (
    ConstantPad1d, ConstantPad2d, ZeroPad1d, ZeroPad2d,
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, Upsample,
    UpsamplingNearest2d, UpsamplingBilinear2d, PixelShuffle, PixelUnshuffle, Unfold, Fold,
    ReflectionPad1d, ReflectionPad2d, ReflectionPad3d, ReplicationPad1d, ReplicationPad2d,
    ReplicationPad3d)
"""The adaptive pooling, upsampling and pixel-shuffle classes `gradserve.surface.nn.build` binds
to a backend."""
