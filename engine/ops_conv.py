"""Convolution (1-d and 2-d) as ops: `convolution` and its two gradients, each the others' VJP.

torch records one ConvolutionBackward0 node for a conv; here too. The input's gradient is
`convolution_backward_input(g, weight)` and the weight's `convolution_backward_weight(g,
input)`; both are bilinear, so their VJPs are the three ops again and every derivative order
is written in ops. Where torch's float32 order is known (`conv_onednn`: its oneDNN path) the
forward and the input's and weight's gradients are torch's bits; elsewhere numpy's matmul over
the windows (the bias's gradient, `convolution_backward_bias` in torch's order in the weight
gradient's class, is the engine's `sum` elsewhere).
A 1-d conv runs as a 2-d one of height 1, as torch's does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import conv_onednn, errors, gemm, limits
from .conv_onednn import Pair, columns, out_size
from .registry import AttrSpec, defop, temporaries

_ATTRS = (AttrSpec("stride", "ints", required=True), AttrSpec("padding", "ints", required=True),
          AttrSpec("dilation", "ints", required=True), AttrSpec("groups", "int", 1))


def _check(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
           padding: Sequence[int], dilation: Sequence[int], groups: int,
           bias_shape: Sequence[int] | None = None) -> None:
    """torch's checks on a convolution's shapes and attributes (every op here runs them before
    it sizes anything: they come from the wire)."""
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    if len(w_shape) not in (3, 4):
        raise errors.InvalidArgumentError(
            f"gradserve's convolution takes a 3-D or 4-D weight, got {len(w_shape)}-D")
    d = len(w_shape) - 2
    if len(x_shape) != d + 2:
        raise errors.InvalidArgumentError(
            f"Expected {d + 2}-dimensional input for {d + 2}-dimensional weight "
            f"{list(w_shape)}, but got {len(x_shape)}-dimensional input of size "
            f"{list(x_shape)} instead")
    for name, values in (("stride", stride), ("padding", padding), ("dilation", dilation)):
        if len(values) != d:
            raise errors.InvalidArgumentError(
                f"expected {name} to be a single integer value or a list of {d} values to "
                f"match the convolution dimensions, but got {name}={list(values)}")
    if any(v <= 0 for v in stride):
        raise errors.InvalidArgumentError("non-positive stride is not supported")
    if any(v < 0 for v in padding):
        raise errors.InvalidArgumentError("negative padding is not supported")
    if any(v <= 0 for v in dilation):
        raise errors.InvalidArgumentError("non-positive dilation is not supported")
    if groups <= 0:
        raise errors.InvalidArgumentError("non-positive groups is not supported")
    if w_shape[0] % groups:
        raise errors.InvalidArgumentError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension "
            f"0, but got weight of size [{list(w_shape)}] instead")
    if x_shape[1] != w_shape[1] * groups:
        raise errors.InvalidArgumentError(
            f"Given groups={groups}, weight of size {list(w_shape)}, expected input"
            f"{list(x_shape)} to have {w_shape[1] * groups} channels, but got {x_shape[1]} "
            "channels instead")
    if bias_shape is not None and tuple(bias_shape) != (w_shape[0],):
        raise errors.InvalidArgumentError(
            f"Given weight of size {list(w_shape)}, expected bias to be 1-dimensional with "
            f"{w_shape[0]} elements, but got bias of size {list(bias_shape)} instead")
    if any(s + 2 * p < dl * (k - 1) + 1
           for s, p, dl, k in zip(x_shape[2:], padding, dilation, w_shape[2:])):
        raise errors.InvalidArgumentError(
            "Calculated padded input size per channel: "
            f"({' x '.join(str(s + 2 * p) for s, p in zip(x_shape[2:], padding))}). Kernel size: "
            f"({' x '.join(str(dl * (k - 1) + 1) for dl, k in zip(dilation, w_shape[2:]))}). "
            "Kernel size can't be greater than actual input size")


def _check_gradient(g_shape: Sequence[int], x_shape: Sequence[int], w_shape: Sequence[int],
                    **attrs: Any) -> None:
    """A gradient op's checks: the convolution's, and the gradient shaped as its output."""
    _check(x_shape, w_shape, attrs["stride"], attrs["padding"], attrs["dilation"],
           attrs["groups"])
    want = _out_shape(x_shape, w_shape, attrs)
    if tuple(g_shape) != want:
        raise errors.InvalidArgumentError(
            f"convolution's gradient: expected grad_output of size {list(want)}, got "
            f"{list(g_shape)}")


def _out_shape(x_shape: Sequence[int], w_shape: Sequence[int], attrs: Mapping[str, Any]
               ) -> tuple[int, ...]:
    d = len(w_shape) - 2
    st, pd, dl = _as_2d(d, attrs["stride"], attrs["padding"], attrs["dilation"])
    w2 = _shape_2d(w_shape)
    oh, ow = out_size(_shape_2d(x_shape)[2:], (w2[2], w2[3]), st, pd, dl)
    return (x_shape[0], w_shape[0], *((ow,) if d == 1 else (oh, ow)))


def _as_2d(spatial: int, stride: Sequence[int], padding: Sequence[int],
           dilation: Sequence[int]) -> tuple[Pair, Pair, Pair]:
    if spatial == 1:
        return (1, stride[0]), (0, padding[0]), (1, dilation[0])
    return ((stride[0], stride[1]), (padding[0], padding[1]), (dilation[0], dilation[1]))


def _shape_2d(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    return (*shape[:2], 1, shape[2]) if len(shape) == 3 else shape


def _windows(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
             groups: int) -> np.ndarray:
    """x's windows as (groups, N * OH * OW, C / groups * KH * KW), in x's dtype."""
    cols = columns(x, kernel, stride, padding, dilation, x.dtype)
    # contiguous per group: numpy's matmul takes BLAS only on contiguous operands
    return np.ascontiguousarray(cols.reshape(cols.shape[0], groups, -1).transpose(1, 0, 2))


def _convolution(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                 stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                 groups: int = 1) -> np.ndarray:
    _check(x.shape, weight.shape, stride, padding, dilation, groups,
           None if bias is None else bias.shape)
    d = weight.ndim - 2
    st, pd, dl = _as_2d(d, stride, padding, dilation)
    x2, w2 = x.reshape(_shape_2d(x.shape)), weight.reshape(_shape_2d(weight.shape))
    xs: tuple[int, ...] = tuple(x2.shape)
    ws: tuple[int, ...] = tuple(w2.shape)
    n, o, kernel = xs[0], ws[0], (ws[2], ws[3])
    oh, ow = out_size(xs[2:], kernel, st, pd, dl)
    slow = None
    if d == 2 and bias is not None and _torch_uses_slow_conv2d(xs, ws, groups):
        slow = _slow_conv2d(x2, w2, bias, kernel, st, pd, dl)
    if slow is not None:
        out = slow.reshape(n, o, oh, ow)
    elif conv_onednn.forward_reproducible(x2.shape, w2.shape, st, pd, dl, groups, x.dtype):
        out = conv_onednn.forward(x2, w2, bias, st, pd, dl)
    else:
        wk = w2.reshape(groups, o // groups, -1)
        flat = np.matmul(_windows(x2, kernel, st, pd, dl, groups),
                         np.ascontiguousarray(wk.transpose(0, 2, 1)))
        flat = flat.transpose(1, 0, 2).reshape(n * oh * ow, o)
        if bias is not None:
            flat = flat + bias
        out = np.ascontiguousarray(flat.reshape(n, oh, ow, o).transpose(0, 3, 1, 2))
    return out.astype(x.dtype, copy=False).reshape((n, o, ow) if d == 1 else (n, o, oh, ow))


def _torch_uses_slow_conv2d(xs: Sequence[int], ws: Sequence[int], groups: int) -> bool:
    """Whether torch 2.13's CPU float32 conv2d is slow_conv2d (im2col + gemm), not oneDNN:
    a batch of one, one group, a kernel not larger than 3 in both dims, at most 20480 input
    elements (ConvParams::use_mkldnn). One input and one output channel rounded otherwise
    (measured; not known why): left out."""
    return (xs[0] == 1 and groups == 1 and not (ws[2] > 3 and ws[3] > 3)
            and int(np.prod(xs)) <= 20480 and not (xs[1] == 1 and ws[0] == 1))


def _slow_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, kernel: Pair,
                 stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray | None:
    """A batch of one as torch's slow_conv2d computes it: im2col (rows c, kh, kw; columns oh,
    ow), then one addmm with the bias as C (beta = 1), the call torch's `cpublas::gemm` makes,
    through MKL (`gemm.mkl_addmm`): torch's bits. (O, OH * OW), or None without MKL."""
    o = weight.shape[0]
    cols = columns(x, kernel, stride, padding, dilation, x.dtype)  # (OH * OW, C, KH, KW)
    finput = np.ascontiguousarray(cols.reshape(cols.shape[0], -1).T)
    return gemm.mkl_addmm(weight.reshape(o, -1), finput, bias.reshape(o, 1), 1.0, 1.0)


def _backward_input(grad: np.ndarray, weight: np.ndarray, input_shape: Sequence[int],
                    stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                    groups: int = 1) -> np.ndarray:
    _check_gradient(grad.shape, input_shape, weight.shape, stride=stride, padding=padding,
                    dilation=dilation, groups=groups)
    d = weight.ndim - 2
    st, pd, dl = _as_2d(d, stride, padding, dilation)
    x_shape = _shape_2d(input_shape)
    g2, w2 = grad.reshape(_shape_2d(grad.shape)), weight.reshape(_shape_2d(weight.shape))
    if conv_onednn.backward_data_reproducible(x_shape, w2.shape, st, pd, dl, groups, grad.dtype):
        out = conv_onednn.backward_data(g2, w2, x_shape, pd, dl)
    else:
        out = _scatter_windows(g2, w2, x_shape, st, pd, dl, groups)
    return out.astype(grad.dtype, copy=False).reshape(tuple(input_shape))


def _scatter_windows(g: np.ndarray, w: np.ndarray, x_shape: tuple[int, ...], stride: Pair,
                     padding: Pair, dilation: Pair, groups: int) -> np.ndarray:
    """Each window's gradient (g times the weight) added back where the window read x."""
    n, c, h, wd = x_shape
    o, cg, kh, kw = w.shape
    oh, ow = g.shape[2:]
    gm = np.ascontiguousarray(
        g.transpose(0, 2, 3, 1).reshape(n * oh * ow, groups, o // groups).transpose(1, 0, 2))
    per_window = np.matmul(gm, w.reshape(groups, o // groups, -1))  # (groups, M, cg*kh*kw)
    per_window = per_window.transpose(1, 0, 2).reshape(n, oh, ow, c, kh, kw)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    padded = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), g.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                   j * dw:j * dw + sw * (ow - 1) + 1:sw] += per_window[..., i, j].transpose(
                       0, 3, 1, 2)
    return padded[:, :, ph:ph + h, pw:pw + wd]


def _backward_weight(grad: np.ndarray, x: np.ndarray, weight_shape: Sequence[int],
                     stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                     groups: int = 1) -> np.ndarray:
    _check_gradient(grad.shape, x.shape, weight_shape, stride=stride, padding=padding,
                    dilation=dilation, groups=groups)
    d = len(weight_shape) - 2
    st, pd, dl = _as_2d(d, stride, padding, dilation)
    w_shape = _shape_2d(weight_shape)
    x2, g2 = x.reshape(_shape_2d(x.shape)), grad.reshape(_shape_2d(grad.shape))
    if conv_onednn.backward_weights_reproducible(tuple(x2.shape), w_shape, st, pd, dl, groups,
                                                 grad.dtype):
        exact = conv_onednn.backward_weights(g2, x2, w_shape, st, pd, dl)
        return exact.reshape(tuple(weight_shape))
    o = w_shape[0]
    cols = _windows(x2, (w_shape[2], w_shape[3]), st, pd, dl, groups)
    gm = np.ascontiguousarray(
        g2.transpose(0, 2, 3, 1).reshape(-1, groups, o // groups).transpose(1, 2, 0))
    return np.matmul(gm, cols).astype(grad.dtype, copy=False).reshape(tuple(weight_shape))


# --- shapes and bounds ---------------------------------------------------------------------------

def _conv_shape(x: Any, weight: Any, bias: Any = None, **attrs: Any) -> tuple[int, ...]:
    _check(x.shape, weight.shape, attrs["stride"], attrs["padding"], attrs["dilation"],
           attrs["groups"], None if bias is None else bias.shape)
    return _out_shape(tuple(x.shape), tuple(weight.shape), attrs)


def _input_shape(g: Any, weight: Any, **attrs: Any) -> tuple[int, ...]:
    _check_gradient(g.shape, attrs["input_shape"], weight.shape, **attrs)
    return tuple(attrs["input_shape"])


def _weight_shape(g: Any, x: Any, **attrs: Any) -> tuple[int, ...]:
    _check_gradient(g.shape, x.shape, attrs["weight_shape"], **attrs)
    return tuple(attrs["weight_shape"])


def _conv_bound(result_shape: Any, shapes: Any, data_windows: bool = False) -> Any:
    """The result, plus the largest scratch of either path: the windows (float64, gathered and
    reordered, and `gemm._may_be_tiny`'s masks and magnitudes of them: 40 bytes an element),
    the padded source, the chains' float64 buffers and a reordered weight. Every path takes
    windows of the input over the output's positions; `data_windows` (the input's gradient,
    and conv_transpose's forward, which is one) adds conv_onednn's `backward_data`, which takes
    windows of the gradient over the input's positions."""
    def bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
        shape = tuple(result_shape(*args, **attrs))
        x, w, g = (_shape_2d(s) for s in shapes(args, attrs))
        kernel, channels = w[2] * w[3], max(x[1], g[1])
        rows = x[0] * max(x[2] * x[3], g[2] * g[3])
        windows = x[0] * g[2] * g[3] * x[1]
        if data_windows:
            windows = max(windows, x[0] * x[2] * x[3] * g[1])
        reach = max(attrs["padding"]) + max(attrs["dilation"]) * max(w[2:])
        padded = x[0] * channels * (max(x[2], g[2]) + 2 * reach) * (max(x[3], g[3]) + 2 * reach)
        scratch = 40 * windows * kernel + 8 * padded + 24 * rows * channels
        scratch += 16 * limits.numel(w)
        bound = limits.with_scratch(limits.shape_bound(shape, out_dtype.np.itemsize), scratch)
        # each element of the forward's result sums (channels / groups) * kernel products, and
        # each gradient is a product of that size too: the work (limits.WORK_PER_ELEMENT)
        return limits.work_bound(bound, limits.numel(g) * w[1] * kernel,
                                 out_dtype.category == 2)
    return bound


def _forward_shapes(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return args[0].shape, args[1].shape, _conv_shape(args[0], args[1], **attrs)


def _input_grad_shapes(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return attrs["input_shape"], args[1].shape, args[0].shape


def _weight_grad_shapes(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return args[1].shape, attrs["weight_shape"], args[0].shape


# --- the ops -------------------------------------------------------------------------------------

def _conv_vjp_input(ns: Any, g: Any, out: Any, x: Any, weight: Any, bias: Any,
                    **attrs: Any) -> Any:
    return ns.convolution_backward_input(g, weight, input_shape=tuple(x.shape), **attrs)


def _conv_vjp_weight(ns: Any, g: Any, out: Any, x: Any, weight: Any, bias: Any,
                     **attrs: Any) -> Any:
    return ns.convolution_backward_weight(g, x, weight_shape=tuple(weight.shape), **attrs)


def _conv_vjp_bias(ns: Any, g: Any, out: Any, x: Any, weight: Any, bias: Any,
                   **attrs: Any) -> Any:
    d = len(weight.shape) - 2
    st, pd, dl = _as_2d(d, attrs["stride"], attrs["padding"], attrs["dilation"])
    if conv_onednn.backward_weights_reproducible(
            _shape_2d(x.shape), _shape_2d(weight.shape), st, pd, dl, attrs["groups"],
            np.dtype(getattr(g.dtype, "np", g.dtype))):
        return ns.convolution_backward_bias(g, weight_shape=tuple(weight.shape))
    return ns.sum(g, dim=(0, *range(2, len(g.shape))))


def _bias_shape(g: Any, weight_shape: Sequence[int]) -> tuple[int, ...]:
    if len(weight_shape) not in (3, 4) or len(g.shape) != len(weight_shape) or (
            g.shape[1] != weight_shape[0]):
        raise errors.InvalidArgumentError(
            f"convolution's bias gradient: grad_output of size {list(g.shape)} does not match "
            f"a weight of size {list(weight_shape)}")
    return (weight_shape[0],)


def _backward_bias(grad: np.ndarray, weight_shape: Sequence[int]) -> np.ndarray:
    _bias_shape(grad, weight_shape)
    if grad.dtype == np.float32:
        g2 = grad.reshape(_shape_2d(grad.shape))
        return conv_onednn.backward_bias(g2, _shape_2d(weight_shape))
    return grad.sum(axis=(0, *range(2, grad.ndim)))


defop("convolution", _convolution, _conv_vjp_input, _conv_vjp_weight, _conv_vjp_bias,
      saves=("weight input.shape", "input weight.shape", "input weight"),  # torch saves both
      inputs=("input", "weight", "bias?"), attrs=_ATTRS, method=False,
      doc="1-d or 2-d cross-correlation of (N, C, *spatial) with (O, C / groups, *kernel)",
      out_bound=_conv_bound(_conv_shape, _forward_shapes))
defop("convolution_backward_input", _backward_input,
      lambda ns, gg, out, g, weight, input_shape, **attrs: ns.convolution(
          gg, weight, None, **attrs),
      lambda ns, gg, out, g, weight, input_shape, **attrs: ns.convolution_backward_weight(
          g, gg, weight_shape=tuple(weight.shape), **attrs),
      saves=("weight", "grad_output weight.shape"),
      inputs=("grad_output", "weight"),
      attrs=(AttrSpec("input_shape", "ints", required=True), *_ATTRS), method=False,
      backward="ConvolutionBackwardBackward0",
      doc="the gradient of convolution's input of `input_shape` (convolution is its VJP)",
      out_bound=_conv_bound(_input_shape, _input_grad_shapes, data_windows=True))
defop("convolution_backward_weight", _backward_weight,
      lambda ns, gw, out, g, x, weight_shape, **attrs: ns.convolution(x, gw, None, **attrs),
      lambda ns, gw, out, g, x, weight_shape, **attrs: ns.convolution_backward_input(
          g, gw, input_shape=tuple(x.shape), **attrs),
      saves=("input", "grad_output input.shape"),
      inputs=("grad_output", "input"),
      attrs=(AttrSpec("weight_shape", "ints", required=True), *_ATTRS), method=False,
      backward="ConvolutionBackwardBackward0",
      doc="the gradient of convolution's weight of `weight_shape`",
      out_bound=_conv_bound(_weight_shape, _weight_grad_shapes))
defop("convolution_backward_bias", _backward_bias,
      lambda ns, gb, out, g, weight_shape: ns.expand(
          ns.reshape(gb, shape=(1, -1, *([1] * (len(g.shape) - 2)))), size=tuple(g.shape)),
      saves="grad_output",  # as torch's ConvolutionBackwardBackward0 (a second pass fails)
      inputs=("grad_output",),
      attrs=(AttrSpec("weight_shape", "ints", required=True),), method=False,
      backward="ConvolutionBackwardBackward0",
      doc="the gradient of convolution's bias, the sum of grad_output over all but dim 1, in "
          "torch's order where conv_onednn knows it (a float32 conv in its weight-gradient class)",
      out_bound=temporaries(lambda g, **attrs: _bias_shape(g, attrs["weight_shape"]), inputs=2))


# --- transposed convolution ----------------------------------------------------------------------
# torch's conv_transpose1d/2d is `convolution(..., transposed=True)`, one ConvolutionBackward0
# node: its forward is the input gradient of the convolution that maps the result's shape onto
# the input's (`_backward_input`, with the weight (C_in, C_out / groups, *kernel) read as that
# convolution's (O, C / groups, *kernel)), and its VJPs are that convolution (the input's) and
# its weight gradient with the roles of input and grad_output exchanged (the weight's).

_T_ATTRS = (AttrSpec("stride", "ints", required=True), AttrSpec("padding", "ints", required=True),
            AttrSpec("output_padding", "ints", required=True),
            AttrSpec("dilation", "ints", required=True), AttrSpec("groups", "int", 1))


def _transpose_shape(x: Any, weight: Any, bias: Any = None, **attrs: Any) -> tuple[int, ...]:
    """The result's shape, after torch's checks (the attributes come from the wire: nothing is
    sized before this has passed)."""
    xs, ws = tuple(x.shape), tuple(weight.shape)
    stride, padding = list(attrs["stride"]), list(attrs["padding"])
    output_padding, dilation = list(attrs["output_padding"]), list(attrs["dilation"])
    groups = attrs["groups"]
    if len(ws) not in (3, 4):
        raise errors.InvalidArgumentError(
            f"gradserve's conv_transpose takes a 3-D or 4-D weight, got {len(ws)}-D")
    d = len(ws) - 2
    if len(xs) != d + 2:
        raise errors.InvalidArgumentError(
            f"Expected {d + 2}-dimensional input for {d + 2}-dimensional weight {list(ws)}, but "
            f"got {len(xs)}-dimensional input of size {list(xs)} instead")
    for name, values in (("stride", stride), ("padding", padding),
                         ("output_padding", output_padding), ("dilation", dilation)):
        if len(values) != d:
            raise errors.InvalidArgumentError(
                f"expected {name} to be a single integer value or a list of {d} values to "
                f"match the convolution dimensions, but got {name}={values}")
    if any(v <= 0 for v in stride):
        raise errors.InvalidArgumentError("non-positive stride is not supported")
    if any(v < 0 for v in padding):
        raise errors.InvalidArgumentError("negative padding is not supported")
    if any(v < 0 for v in output_padding):
        raise errors.InvalidArgumentError("negative output_padding is not supported")
    if any(v <= 0 for v in dilation):
        raise errors.InvalidArgumentError("non-positive dilation is not supported")
    if groups <= 0:
        raise errors.InvalidArgumentError("non-positive groups is not supported")
    if xs[1] != ws[0]:
        raise errors.InvalidArgumentError(
            f"Given transposed=1, weight of size {list(ws)}, expected input{list(xs)} to have "
            f"{ws[0]} channels, but got {xs[1]} channels instead")
    if ws[0] % groups:
        raise errors.InvalidArgumentError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size [{list(ws)}] instead")
    if bias is not None and tuple(bias.shape) != (ws[1] * groups,):
        raise errors.InvalidArgumentError(
            f"Given transposed=1, weight of size {list(ws)}, expected bias to be 1-dimensional "
            f"with {ws[1] * groups} elements, but got bias of size {list(bias.shape)} instead")
    if any(op >= s and op >= dl for op, s, dl in zip(output_padding, stride, dilation)):
        names = ("height", "width")[2 - d:]
        raise errors.InvalidArgumentError(
            "output padding must be smaller than either stride or dilation, but got "
            + " ".join(f"{word}_{name}: {v}" for word, values in (
                ("output_padding", output_padding), ("stride", stride), ("dilation", dilation))
                for name, v in zip(names, values)))
    if any(op >= s for op, s in zip(output_padding, stride)):
        # torch also takes output_padding < dilation; the result's last rows are then beyond
        # every window (zero before the bias): not reproduced here
        raise errors.InvalidArgumentError(
            f"gradserve's conv_transpose takes output_padding smaller than stride, got "
            f"output_padding={output_padding} and stride={stride}")
    spatial = tuple((s - 1) * st - 2 * p + dl * (k - 1) + op + 1 for s, st, p, dl, k, op in zip(
        xs[2:], stride, padding, dilation, ws[2:], output_padding))
    if any(s <= 0 for s in spatial):
        raise errors.InvalidArgumentError(
            f"Given input size per channel: ({' x '.join(map(str, xs[2:]))}). Calculated output "
            f"size per channel: ({' x '.join(map(str, spatial))}). Output size is too small")
    return (xs[0], ws[1] * groups, *spatial)


def _conv_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of the convolution a transposed one is the input gradient of."""
    return {k: attrs[k] for k in ("stride", "padding", "dilation", "groups")}


def _convolution_transpose(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                           **attrs: Any) -> np.ndarray:
    shape = _transpose_shape(x, weight, bias, **attrs)
    out = _backward_input(x, weight, shape, **_conv_attrs(attrs))
    if bias is not None:
        out = (out + bias.reshape(1, -1, *([1] * (out.ndim - 2)))).astype(x.dtype, copy=False)
    return out


def _transpose_shapes(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return _transpose_shape(args[0], args[1], **attrs), args[1].shape, args[0].shape


defop("convolution_transpose", _convolution_transpose,
      lambda ns, g, out, x, weight, bias, **attrs: ns.convolution(
          g, weight, None, **_conv_attrs(attrs)),
      lambda ns, g, out, x, weight, bias, **attrs: ns.convolution_backward_weight(
          x, g, weight_shape=tuple(weight.shape), **_conv_attrs(attrs)),
      lambda ns, g, out, x, weight, bias, **attrs: ns.sum(g, dim=(0, *range(2, len(g.shape)))),
      saves=("weight", "input weight.shape", "input weight"),  # torch saves both
      inputs=("input", "weight", "bias?"), attrs=_T_ATTRS, method=False,
      backward="ConvolutionBackward0",
      doc="1-d or 2-d transposed convolution of (N, C_in, *spatial) with (C_in, C_out / groups, "
          "*kernel): the gradient of the convolution from the result's shape to the input's",
      out_bound=_conv_bound(_transpose_shape, _transpose_shapes, data_windows=True))
