"""torch's CPU float32 conv2d through oneDNN, bit for bit, for the shapes whose order is known.

torch 2.13 sends a float32 conv2d to oneDNN (its Mkldnn backend) when the batch is larger than
one or both kernel sizes exceed 3 (among other cases: see `uses_onednn`); a batch of one with a
small kernel goes to slow_conv2d (im2col and MKL's sgemm), which is not this module's. oneDNN
then picks a kernel per shape (ONEDNN_VERBOSE=1 names it). Measured against torch 2.13.0
(oneDNN v3.12.0, AVX2, the 2-core AMD EPYC the project runs on) on random shapes and values
(docs/internals.md "Convolution"):

- forward, `jit:avx2` or `jit_1x1:avx2` (chosen when the padding is at most the dilated
  kernel's extent less one, `pad <= dilation * (kernel - 1)`, in both dims, and the left and
  right padding of a row fit the kernel's unroll of 3 output columns: `_jit_kernel`; otherwise
  oneDNN's im2col + its own gemm, `x64:gemm:jit`, not reproduced): each output element is one
  chain of fused multiply-adds starting from its bias (or 0), over the input channels in blocks
  of 8 (the AVX2 vector), and within a block over the kernel rows, the kernel columns, then the
  8 channels: `for c0 in 0, 8, ...: for i: for j: for c in c0..c0+7: acc = fma(x, w, acc)`.
  Any stride, padding within the rule, dilation, channel counts, batch sizes.
- backward data (the input's gradient) with stride 1, `jit:avx2` (when the forward's is and
  the gradient's row padding, `dilation * (kernel - 1) - pad` on each side, is at most 7;
  otherwise `x64:gemm:jit`): a chain of FMAs from 0 over
  the output channels in blocks of 8, within a block over the kernel rows and columns (in
  ascending kernel index, i.e. the gradient read backwards), then the 8 channels, in calls of
  4 blocks of 8 output channels when the forward's output width is <= 14, 2 up to 39, 1 from
  40 (whatever the channels, height, kernel or padding), each call's sums from 0 and added to
  the result in order. Stride > 1 goes to `brgconv_strided:avx2` or `x64:gemm:jit`: not reproduced.
- backward weights, `jit:avx2` (where the forward is reproduced, without dilation and with a
  kernel no taller than the input; otherwise `x64:gemm:jit`): for each weight a
  chain of FMAs from 0 over the images, output rows and output columns in order; when there
  is one block of 8 input channels and one of output channels (C <= 8 and O <= 8), torch's two
  threads split the images instead, [0, ceil(N / 2)) and the rest, each a chain from 0, and
  the two sums are added. The bias's gradient is split the
  same way, each half a plain float32 sum in order (`backward_bias`).

The chains reuse `gemm._chain` (float64 products rounded to float32, exact midpoints redone).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import cascade, gemm
from .distributions import fma32

_F32 = np.float32
Pair = tuple[int, int]


def uses_onednn(n: int, kernel: Pair, groups: int) -> bool:
    """Whether torch 2.13 sends a float32 conv2d with this batch and kernel to oneDNN
    (ConvParams::use_mkldnn on a multi-threaded build), for the cases measured here."""
    return groups == 1 and (n > 1 or (kernel[0] > 3 and kernel[1] > 3))


def _jit_kernel(x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                dilation: Pair) -> bool:
    """Whether oneDNN runs its direct jit kernel (not its gemm) for this forward: padding
    within the dilated kernel's extent less one, and each row's left padding and its right
    padding (without the tail) within the kernel's unroll of 3 output columns (fitted to 945
    random shapes, none misplaced)."""
    if not all(p <= d * (k - 1) for k, p, d in zip(kernel, padding, dilation)):
        return False
    ow = out_size(x_shape[2:], kernel, stride, padding, dilation)[1]
    ur_w = min(ow, 3)
    extent = dilation[1] * (kernel[1] - 1) + 1
    right = (ow - ow % ur_w - 1) * stride[1] + extent - (x_shape[3] + padding[1])
    return padding[1] <= ur_w and max(0, right) <= ur_w


def forward_reproducible(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Pair,
                         padding: Pair, dilation: Pair, groups: int, dtype: np.dtype) -> bool:
    """Whether torch's order is known for this float32 conv2d's forward (and within the work
    limit `gemm.EXACT_WORK`). The order is oneDNN's AVX2 jit kernel's: where oneDNN runs its
    AVX-512 code (`cascade.ONEDNN_AVX512`, whatever numpy runs) the sums go otherwise (measured:
    87 of tests/test_engine_conv_onednn.py's cases differ from an uncapped torch)."""
    if dtype != _F32 or len(x_shape) != 4 or len(w_shape) != 4 or cascade.ONEDNN_AVX512:
        return False
    n, c = x_shape[:2]
    o, kernel = w_shape[0], (w_shape[2], w_shape[3])
    if not (uses_onednn(n, kernel, groups)
            and _jit_kernel(x_shape, kernel, stride, padding, dilation)):
        return False
    oh, ow = out_size(x_shape[2:], kernel, stride, padding, dilation)
    work = n * oh * ow * o * c * kernel[0] * kernel[1]
    return 0 < work <= gemm.EXACT_WORK


def backward_data_reproducible(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                               stride: Pair, padding: Pair, dilation: Pair, groups: int,
                               dtype: np.dtype) -> bool:
    """Whether torch's order is known for this float32 conv2d's input gradient."""
    if not (stride == (1, 1)
            and forward_reproducible(x_shape, w_shape, stride, padding, dilation, groups, dtype)):
        return False
    # the jit kernel (not oneDNN's gemm) runs when the gradient's padding in a row, left and
    # right (the dilated kernel's extent less one, less the forward's padding), is at most 7
    # (fitted to 818 random stride-1 shapes, none misplaced)
    ow = out_size(x_shape[2:], (w_shape[2], w_shape[3]), stride, padding, dilation)[1]
    reach = dilation[1] * (w_shape[3] - 1)
    right = ow - 1 + reach - x_shape[3] - padding[1]  # the forward's right padding
    return reach - padding[1] <= 7 and reach - right <= 7


def backward_weights_reproducible(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                                  stride: Pair, padding: Pair, dilation: Pair, groups: int,
                                  dtype: np.dtype) -> bool:
    """Whether torch's order is known for this float32 conv2d's weight gradient: its jit kernel
    runs without dilation and with a kernel no taller than the input (oneDNN's gemm otherwise;
    fitted to 591 random shapes, none misplaced)."""
    return (dilation == (1, 1) and w_shape[2] <= x_shape[2] and w_shape[0] <= 8
            and w_shape[1] <= 8 and w_shape[2] * w_shape[3] > 1
            and forward_reproducible(x_shape, w_shape, stride, padding, dilation, groups, dtype))


def out_size(spatial: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
              dilation: Pair) -> Pair:
    oh, ow = ((s + 2 * p - d * (k - 1) - 1) // st + 1
              for s, k, st, p, d in zip(spatial, kernel, stride, padding, dilation))
    return oh, ow


def columns(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
            dtype: np.dtype | type = np.float64) -> np.ndarray:
    """x (N, C, H, W) as (N * OH * OW, C, KH, KW) windows in `dtype` (zeros in the padding)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = out_size((h, w), kernel, stride, padding, dilation)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    cols = np.empty((n, oh, ow, c, kh, kw), dtype)
    for i in range(kh):
        rows = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh]
        for j in range(kw):
            cols[..., i, j] = rows[:, :, :, j * dw:j * dw + sw * (ow - 1) + 1:sw].transpose(
                0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c, kh, kw)


def _blocked_order(channels: int, kh: int, kw: int, flip: bool) -> np.ndarray:
    """Flat (channel, i, j) indices in oneDNN's order: channel blocks of 8, kernel rows, kernel
    columns, the block's channels; `flip` indexes the kernel from its end (i -> kh - 1 - i)."""
    order: list[int] = []
    for c0 in range(0, channels, 8):
        for i in range(kh):
            for j in range(kw):
                ii, jj = (kh - 1 - i, kw - 1 - j) if flip else (i, j)
                order.extend((c * kh + ii) * kw + jj for c in range(c0, min(channels, c0 + 8)))
    return np.array(order, np.intp)


def _chain(a: np.ndarray, b: np.ndarray, acc: np.ndarray,
           padding: Callable[[], np.ndarray] | None = None, padded_is_a: bool = True
           ) -> np.ndarray:
    """float32 FMA chains acc[r, o] = fma(a[r, t], b[t, o], acc[r, o]) over t.

    oneDNN skips the taps that fall in the padding instead of multiplying a zero: the same
    result unless the other operand holds an inf or nan (0 * inf is nan). Then `padding()`
    (a's, or b's with `padded_is_a=False`, shape) marks those taps and each step keeps the
    accumulator there (exact `fma32` steps: a rare, slow path).
    """
    other = b if padded_is_a else a
    with np.errstate(over="ignore", invalid="ignore"):
        if padding is None or np.isfinite(other).all():
            return gemm._chain(a, b, acc, gemm._may_be_tiny(a, b))
        skip = padding()
        a32, b32 = a.astype(_F32), b.astype(_F32)
        for t in range(a.shape[1]):
            step = fma32(a32[:, t:t + 1], b32[t], acc)
            acc = np.where(skip[:, t:t + 1] if padded_is_a else skip[t][None, :], acc, step)
        return acc


def _padding_taps(shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair,
                  dilation: Pair) -> Callable[[], np.ndarray]:
    """A function giving which window entries of an input of `shape` lie in the padding."""
    def taps() -> np.ndarray:
        ones = np.ones((1, *shape[1:]), np.float64)
        inside = columns(ones, kernel, stride, padding, dilation) != 0
        return np.tile(~inside.reshape(inside.shape[0], -1), (shape[0], 1))
    return taps


def _rows_of(taps: Callable[[], np.ndarray], lo: int, hi: int) -> Callable[[], np.ndarray]:
    return lambda: taps()[lo:hi]


def forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Pair,
            padding: Pair, dilation: Pair) -> np.ndarray:
    """torch's float32 conv2d (oneDNN's jit kernel) bit for bit; call only when
    `forward_reproducible`.

    Args:
        x: (N, C, H, W) float32.
        weight: (O, C, KH, KW) float32.
        bias: (O,) float32 or None.
        stride, padding, dilation: pairs of ints.

    Returns:
        The (N, O, OH, OW) float32 result.
    """
    n, c = x.shape[:2]
    o, _, kh, kw = weight.shape
    oh, ow = out_size(x.shape[2:], (kh, kw), stride, padding, dilation)
    order = _blocked_order(c, kh, kw, flip=False)
    cols = columns(x, (kh, kw), stride, padding, dilation).reshape(n * oh * ow, -1)[:, order]
    wk = weight.reshape(o, -1)[:, order].T.astype(np.float64)
    acc = np.zeros((n * oh * ow, o), _F32)
    if bias is not None:
        acc[...] = bias
    taps = _padding_taps(x.shape, (kh, kw), stride, padding, dilation) if any(padding) else None
    out = _chain(cols, wk, acc, None if taps is None else lambda: taps()[:, order])
    return np.ascontiguousarray(out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2))


def backward_data(grad: np.ndarray, weight: np.ndarray, x_shape: tuple[int, ...],
                  padding: Pair, dilation: Pair) -> np.ndarray:
    """torch's float32 conv2d input gradient (oneDNN's jit kernel, stride 1) bit for bit; call
    only when `backward_data_reproducible`.

    Args:
        grad: (N, O, OH, OW) float32, the output's gradient.
        weight: (O, C, KH, KW) float32.
        x_shape: the input's shape (N, C, H, W).
        padding, dilation: the forward's pairs (stride 1).

    Returns:
        The (N, C, H, W) float32 gradient.
    """
    n, c, h, w = x_shape
    o, _, kh, kw = weight.shape
    # the input gradient is a stride-1 correlation of the gradient, padded by the dilated
    # kernel's extent less the forward padding, with the kernel flipped
    pad = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
    order = _blocked_order(o, kh, kw, flip=True)
    cols = columns(grad, (kh, kw), (1, 1), pad, dilation).reshape(n * h * w, -1)[:, order]
    flipped = weight[:, :, ::-1, ::-1].transpose(0, 2, 3, 1).reshape(o * kh * kw, c)
    taps = _padding_taps(grad.shape, (kh, kw), (1, 1), pad, dilation)
    weights = flipped[order].astype(np.float64)
    # the kernel takes `chunk` blocks of 8 output channels per call, each call's sums from 0
    # added to the result
    chunk = 8 * kh * kw * _oc_blocks_per_call(grad.shape[3])
    out: np.ndarray | None = None
    for lo in range(0, len(order), chunk):
        part = _chain(cols[:, lo:lo + chunk], weights[lo:lo + chunk],
                      np.zeros((n * h * w, c), _F32), _columns_of(taps, order[lo:lo + chunk]))
        out = part if out is None else np.add(out, part, dtype=_F32)
    assert out is not None
    return np.ascontiguousarray(out.reshape(n, h, w, c).transpose(0, 3, 1, 2))


def _oc_blocks_per_call(ow: int) -> int:
    """How many blocks of 8 output channels oneDNN's input-gradient kernel sums per call, by
    the forward's output width (measured: independent of channels, height, kernel, padding)."""
    return 4 if ow <= 14 else 2 if ow <= 39 else 1


def _columns_of(taps: Callable[[], np.ndarray], order: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: taps()[:, order]


def backward_weights(grad: np.ndarray, x: np.ndarray, w_shape: tuple[int, ...], stride: Pair,
                     padding: Pair, dilation: Pair) -> np.ndarray:
    """torch's float32 conv2d weight gradient (oneDNN's jit kernel, 2 threads) bit for bit;
    call only when `backward_weights_reproducible`.

    Args:
        grad: (N, O, OH, OW) float32, the output's gradient.
        x: (N, C, H, W) float32, the forward's input.
        w_shape: the weight's shape (O, C, KH, KW).
        stride, padding, dilation: the forward's pairs.

    Returns:
        The (O, C, KH, KW) float32 gradient.
    """
    n, o = grad.shape[:2]
    cols = columns(x, (w_shape[2], w_shape[3]), stride, padding, dilation)
    cols = cols.reshape(cols.shape[0], -1)
    rows = grad.transpose(0, 2, 3, 1).reshape(cols.shape[0], o).T.astype(np.float64)
    # one block of input and output channels: torch's 2 threads split the images
    split = (n + 1) // 2 if w_shape[0] <= 8 and w_shape[1] <= 8 and n > 1 else n
    per_image = cols.shape[0] // n
    parts = [(0, split * per_image), (split * per_image, cols.shape[0])]
    taps = (_padding_taps(x.shape, (w_shape[2], w_shape[3]), stride, padding, dilation)
            if any(padding) else None)
    total: np.ndarray | None = None
    for lo, hi in parts:
        if hi > lo:
            part = _chain(rows[:, lo:hi], cols[lo:hi], np.zeros((o, cols.shape[1]), _F32),
                          None if taps is None else _rows_of(taps, lo, hi), padded_is_a=False)
            total = part if total is None else np.add(total, part, dtype=_F32)
    assert total is not None
    return total.reshape(w_shape)


def backward_bias(grad: np.ndarray, w_shape: tuple[int, ...]) -> np.ndarray:
    """torch's float32 conv2d bias gradient (oneDNN's jit weight-gradient kernel, 2 threads)
    bit for bit; call only when `backward_weights_reproducible`.

    Args:
        grad: (N, O, OH, OW) float32, the output's gradient.
        w_shape: the weight's shape (O, C, KH, KW).

    Returns:
        The (O,) float32 gradient: a plain float32 sum in order over (image, row, column), in
        the images' two halves when the weight gradient splits them, the halves added.
    """
    n, o = grad.shape[:2]
    rows = grad.transpose(0, 2, 3, 1).reshape(n, -1, o)
    split = (n + 1) // 2 if w_shape[0] <= 8 and w_shape[1] <= 8 and n > 1 else n
    total = np.zeros(o, _F32)
    for part in (rows[:split], rows[split:]):
        if part.size:  # add.accumulate is a sequential sum, in float32 here
            total = total + np.add.accumulate(part.reshape(-1, o), axis=0, dtype=_F32)[-1]
    return total
