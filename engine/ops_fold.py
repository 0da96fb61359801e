"""torch's im2col and col2im (F.unfold and F.fold): sliding blocks of a batch of images as
columns, and columns summed back into images.

im2col copies (no arithmetic). col2im adds each column element into the pixel it came from,
kernel offset by kernel offset, as torch's CPU `col2im` loops (for each channel and kernel
offset, every block): a pixel receives its blocks' values in kernel-offset order, from zero,
which one numpy slice addition per offset reproduces bit for bit. Each is the other's gradient
(derivatives.yaml), so every derivative order is these two ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from . import errors
from .ops_decomp import not_implemented
from .ops_shape import _shape_str
from .registry import AttrSpec, defop, temporaries

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _pairs(**given: Sequence[int]) -> list[tuple[int, int]]:
    """Each named attribute as its two ints (torch's check of their length)."""
    out = []
    for name, value in given.items():
        if len(value) != 2:
            raise errors.InvalidArgumentError(
                f"It is expected {name} equals to 2, but got size {len(value)}")
        out.append((int(value[0]), int(value[1])))
    return out


def _checks(kernel: tuple[int, int], dilation: tuple[int, int], padding: tuple[int, int],
            stride: tuple[int, int], order: str) -> None:
    """torch's checks of the block parameters, in its order for im2col ("kdps") or col2im
    ("ksdp")."""
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel, dilation, padding, stride
    for check in order:
        if check == "k" and not (kw > 0 and kh > 0):
            raise errors.InvalidArgumentError(
                f"kernel size should be greater than zero, but got kernel_height: {kh} "
                f"kernel_width: {kw}")
        if check == "d" and not (dw > 0 and dh > 0):
            raise errors.InvalidArgumentError(
                f"dilation should be greater than zero, but got dilation_height: {dh} "
                f"dilation_width: {dw}")
        if check == "p" and not (pw >= 0 and ph >= 0):
            raise errors.InvalidArgumentError(
                f"padding should be non-negative, but got pad_height: {ph} pad_width: {pw}")
        if check == "s" and not (sw > 0 and sh > 0):
            raise errors.InvalidArgumentError(
                f"stride should be greater than zero, but got stride_height: {sh} "
                f"stride_width: {sw}")


def _blocks(size: int, kernel: int, dilation: int, padding: int, stride: int) -> int:
    """Sliding blocks along one spatial dim (torch's div_rtn: floor division)."""
    return (size + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1


def _dim_size(shape: Sequence[int], dim: int) -> int:
    """`input.size(dim)` with torch's errors for a tensor of fewer dims."""
    if not shape:
        raise errors.OutOfRangeIndexError(
            f"Dimension specified as {dim} but tensor has no dimensions")
    if dim >= len(shape):
        raise errors.OutOfRangeIndexError(
            f"Dimension out of range (expected to be in range of [{-len(shape)}, "
            f"{len(shape) - 1}], but got {dim})")
    return int(shape[dim])


class _Plan(NamedTuple):
    """An im2col or col2im call, checked: its result's shape, its parameters as pairs, the
    image's spatial size and the sliding blocks along each spatial dim."""

    shape: tuple[int, ...]
    kernel: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int]
    stride: tuple[int, int]
    size: tuple[int, int]
    blocks: tuple[int, int]


def im2col_shape(shape: Sequence[int], kernel_size: Sequence[int], dilation: Sequence[int],
                 padding: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """im2col's result shape for an input of `shape`, after torch's checks (im2col_shape_check):
    (N, C * kh * kw, L) or (C * kh * kw, L)."""
    return _im2col_plan(shape, kernel_size, dilation, padding, stride).shape


def _im2col_plan(shape: Sequence[int], kernel_size: Sequence[int], dilation: Sequence[int],
                 padding: Sequence[int], stride: Sequence[int]) -> _Plan:
    kernel, dil, pad, st = _pairs(kernel_size=kernel_size, dilation=dilation, padding=padding,
                                  stride=stride)
    _checks(kernel, dil, pad, st, "kdps")
    valid = _dim_size(shape, 1) != 0 and _dim_size(shape, 2) != 0
    ndim = len(shape)
    if not ((ndim == 3 and shape[0] != 0 and valid) or (ndim == 4 and valid and shape[3] != 0)):
        raise errors.InvalidArgumentError(
            "Expected 3D or 4D (batch mode) tensor with possibly 0 batch size and other non-zero "
            f"dimensions for input, but got: {_shape_str(shape)}")
    h, w = shape[-2], shape[-1]
    oh = _blocks(h, kernel[0], dil[0], pad[0], st[0])
    ow = _blocks(w, kernel[1], dil[1], pad[1], st[1])
    if oh < 1 or ow < 1:
        raise errors.InvalidArgumentError(
            f"Given input with spatial size ({h}, {w}), kernel_size=({kernel[0]}, {kernel[1]}), "
            f"dilation=({dil[0]}, {dil[1]}), padding=({pad[0]}, {pad[1]}), calculated shape of "
            f"the array of sliding blocks as ({oh}, {ow}), but its components must be at least "
            "one.")
    rows = shape[-3] * kernel[0] * kernel[1]
    result = (shape[0], rows, oh * ow) if ndim == 4 else (rows, oh * ow)
    return _Plan(result, kernel, dil, pad, st, (h, w), (oh, ow))


def col2im_shape(shape: Sequence[int], output_size: Sequence[int], kernel_size: Sequence[int],
                 dilation: Sequence[int], padding: Sequence[int],
                 stride: Sequence[int]) -> tuple[int, ...]:
    """col2im's result shape for columns of `shape`, after torch's checks (col2im_shape_check):
    (N, C, H, W) or (C, H, W)."""
    return _col2im_plan(shape, output_size, kernel_size, dilation, padding, stride).shape


def _col2im_plan(shape: Sequence[int], output_size: Sequence[int], kernel_size: Sequence[int],
                 dilation: Sequence[int], padding: Sequence[int],
                 stride: Sequence[int]) -> _Plan:
    out, kernel, dil, pad, st = _pairs(output_size=output_size, kernel_size=kernel_size,
                                       dilation=dilation, padding=padding, stride=stride)
    _checks(kernel, dil, pad, st, "ksdp")
    ndim = len(shape)
    if not ((ndim == 2 and shape[0] != 0 and shape[1] != 0)
            or (ndim == 3 and shape[1] != 0 and shape[2] != 0)):
        raise errors.InvalidArgumentError(
            "Expected 2D or 3D (batch mode) tensor for input with possibly 0 batch size and "
            f"non-zero dimensions for input, but got: {_shape_str(shape)}")
    planes, length = shape[-2], shape[-1]
    per = kernel[0] * kernel[1]
    if planes % per:
        raise errors.InvalidArgumentError(
            "Expected size of input's dimension 1 to be divisible by the product of "
            f"kernel_size, but got input.size(1)={planes} and kernel_size=({kernel[0]}, "
            f"{kernel[1]}).")
    bh = _blocks(out[0], kernel[0], dil[0], pad[0], st[0])
    bw = _blocks(out[1], kernel[1], dil[1], pad[1], st[1])
    given = (f"Given output_size=({out[0]}, {out[1]}), kernel_size=({kernel[0]}, {kernel[1]}), "
             f"dilation=({dil[0]}, {dil[1]}), padding=({pad[0]}, {pad[1]}), stride=({st[0]}, "
             f"{st[1]}), ")
    if length != bh * bw:
        raise errors.InvalidArgumentError(
            f"{given}expected size of input's dimension 2 to match the calculated number of "
            f"sliding blocks {bh} * {bw} = {bh * bw}, but got input.size(2)={length}.")
    if bh < 1 or bw < 1:
        raise errors.InvalidArgumentError(
            f"{given}calculated shape of the array of sliding blocks as ({bh}, {bw}), which is "
            "too small (non-positive)")
    return _Plan((*shape[:-2], planes // per, out[0], out[1]), kernel, dil, pad, st, out,
                 (bh, bw))


#: Kernels of at most this many offsets are copied (added) one offset at a time, a numpy slice
#: each; larger ones (a 4096 x 4096 kernel has 16M offsets, each of a few elements) with one
#: gather (`np.add.at` for col2im, in the same order), so no Python loop grows with the kernel.
LOOPED_OFFSETS = 256


def _inside(start: int, step: int, count: int, size: int) -> tuple[int, int]:
    """The blocks [lo, hi) of `count`, `step` apart from `start`, whose row (or column) lies in
    [0, size): the others read the zero padding."""
    lo = 0 if start >= 0 else (-start + step - 1) // step
    hi = min(count, (size - 1 - start) // step + 1) if start < size else 0
    return lo, max(lo, hi)


def _looped(plan: _Plan) -> list[tuple[int, int, slice, slice, slice, slice]]:
    """Per kernel offset (i, j), in torch's order, with any block inside the image: the blocks'
    rows and columns, and the image's rows and columns they read."""
    kernel, dil, pad, st, blocks, size = (plan.kernel, plan.dilation, plan.padding, plan.stride,
                                          plan.blocks, plan.size)
    out = []
    for i in range(kernel[0]):
        top = i * dil[0] - pad[0]
        r0, r1 = _inside(top, st[0], blocks[0], size[0])
        if r0 == r1:
            continue
        for j in range(kernel[1]):
            left = j * dil[1] - pad[1]
            c0, c1 = _inside(left, st[1], blocks[1], size[1])
            if c0 == c1:
                continue
            y0, x0 = top + st[0] * r0, left + st[1] * c0
            out.append((i, j, slice(r0, r1), slice(c0, c1),
                        slice(y0, y0 + st[0] * (r1 - r0 - 1) + 1, st[0]),
                        slice(x0, x0 + st[1] * (c1 - c0 - 1) + 1, st[1])))
    return out


def _coords(plan: _Plan) -> tuple[Any, Any, Any]:
    """Every (i, j, block row, block column)'s image row and column (clipped into the image)
    and whether it lies inside: arrays broadcasting to (kh, kw, bh, bw)."""
    kernel, dil, pad, st, blocks, size = (plan.kernel, plan.dilation, plan.padding, plan.stride,
                                          plan.blocks, plan.size)
    rows = (np.arange(kernel[0]) * dil[0] - pad[0])[:, None] + np.arange(blocks[0]) * st[0]
    cols = (np.arange(kernel[1]) * dil[1] - pad[1])[:, None] + np.arange(blocks[1]) * st[1]
    inside = (((rows >= 0) & (rows < size[0]))[:, None, :, None]
              & ((cols >= 0) & (cols < size[1]))[None, :, None, :])
    return (np.clip(rows, 0, size[0] - 1)[:, None, :, None],
            np.clip(cols, 0, size[1] - 1)[None, :, None, :], inside)


def _im2col(x: Any, kernel_size: Sequence[int], dilation: Sequence[int], padding: Sequence[int],
            stride: Sequence[int]) -> Any:
    plan = _im2col_plan(x.shape, kernel_size, dilation, padding, stride)
    if x.dtype not in _FLOATS:
        raise not_implemented("im2col_out_cpu", x.dtype)
    x4 = x if x.ndim == 4 else x[None]
    n, c = x4.shape[:2]
    if plan.kernel[0] * plan.kernel[1] > LOOPED_OFFSETS:
        rows, cols, inside = _coords(plan)
        return np.where(inside, x4[:, :, rows, cols], x.dtype.type(0)).reshape(plan.shape)
    out = np.zeros((n, c, *plan.kernel, *plan.blocks), x.dtype)
    for i, j, br, bc, rows_, cols_ in _looped(plan):
        out[:, :, i, j, br, bc] = x4[:, :, rows_, cols_]
    return out.reshape(plan.shape)


def _col2im(col: Any, output_size: Sequence[int], kernel_size: Sequence[int],
            dilation: Sequence[int], padding: Sequence[int], stride: Sequence[int]) -> Any:
    plan = _col2im_plan(col.shape, output_size, kernel_size, dilation, padding, stride)
    if col.dtype not in _FLOATS:
        raise not_implemented("col2im_out_cpu", col.dtype)
    size = plan.size
    col3 = col if col.ndim == 3 else col[None]
    n, c = col3.shape[0], plan.shape[-3]
    parts = col3.reshape(n, c, *plan.kernel, *plan.blocks)
    image = np.zeros((n, c, *size), col.dtype)
    if plan.kernel[0] * plan.kernel[1] > LOOPED_OFFSETS:
        rows, cols, inside = _coords(plan)
        where = np.broadcast_to(rows * size[1] + cols, inside.shape)[inside]
        planes = np.arange(n * c)[:, None] * (size[0] * size[1])
        # added in (plane, i, j, block) order: each pixel's values kernel offset by offset
        np.add.at(image.reshape(-1), (planes + where).ravel(),
                  parts.reshape(n * c, -1)[:, inside.ravel()].ravel())
    else:
        for i, j, br, bc, rows_, cols_ in _looped(plan):
            image[:, :, rows_, cols_] += parts[:, :, i, j, br, bc]
    return image.reshape(plan.shape)


_BLOCK_ATTRS = (AttrSpec("kernel_size", "ints", required=True),
                AttrSpec("dilation", "ints", required=True),
                AttrSpec("padding", "ints", required=True),
                AttrSpec("stride", "ints", required=True))

defop("im2col", _im2col,
      lambda ns, g, out, x, kernel_size, dilation, padding, stride: ns.col2im(
          g, output_size=tuple(x.shape[-2:]), kernel_size=kernel_size, dilation=dilation,
          padding=padding, stride=stride),
      saves="input.shape", attrs=_BLOCK_ATTRS, backward="Im2ColBackward0", method=False,
      doc="F.unfold: each sliding block of (N, C, H, W) or (C, H, W) as a column of "
          "(N, C * kh * kw, L)",
      # the gather of a large kernel: its clipped coordinates (the result's size in int64)
      out_bound=temporaries(lambda x, **kw: im2col_shape(x.shape, **kw), results=1,
                            result_bytes=8))
defop("col2im", _col2im,
      lambda ns, g, out, x, output_size, kernel_size, dilation, padding, stride: ns.im2col(
          g, kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride),
      saves="", attrs=(AttrSpec("output_size", "ints", required=True), *_BLOCK_ATTRS),
      backward="Col2ImBackward0", method=False,
      doc="F.fold: columns (N, C * kh * kw, L) summed into images (N, C, *output_size), each "
          "pixel its blocks' values in kernel-offset order",
      # np.add.at's index and values taken inside the image (the columns' size, in int64)
      out_bound=temporaries(lambda x, **kw: col2im_shape(x.shape, **kw), inputs=1,
                            input_bytes=8))
