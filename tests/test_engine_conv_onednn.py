"""The engine's float32 conv2d rounds as torch's oneDNN path (engine/conv_onednn.py).

Where `conv_onednn.forward_reproducible` holds (torch sends the conv to oneDNN's jit kernel),
the forward is compared with torch bit for bit on the same values over random shapes: channel
counts below, at and past multiples of 8, one to many output channels, strides, padding,
dilation, 1x1 kernels and batches of one with kernels above 3x3; where
`backward_data_reproducible` holds (stride 1) the input's gradient too, and where
`backward_weights_reproducible` holds (one block of 8 input and output channels) the weight's
and bias's. numpy's order differs in the last bits for most of these values.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import cascade, conv_onednn, gemm
from tests.reference import torch

pytestmark = pytest.mark.skipif(cascade.ONEDNN_AVX512,
                                reason="the order was measured with oneDNN's AVX2 kernels")

# (N, C, O, H, W, kernel, stride, padding, dilation): the corpus's nn.NLLLoss example first
SHAPES = [(5, 16, 4, 10, 10, (3, 3), (1, 1), (0, 0), (1, 1)),
          (2, 1, 1, 6, 6, (2, 1), (1, 1), (0, 0), (1, 1)),
          (3, 3, 8, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1)),
          (8, 17, 16, 12, 10, (2, 5), (1, 1), (1, 1), (2, 2)),
          (5, 24, 24, 12, 9, (1, 1), (1, 1), (0, 0), (1, 1)),
          (3, 8, 3, 8, 7, (1, 1), (2, 1), (0, 0), (1, 1)),
          (2, 33, 7, 12, 13, (5, 3), (2, 3), (2, 1), (1, 2)),
          (1, 12, 17, 8, 7, (5, 5), (2, 1), (3, 0), (1, 1)),
          (1, 3, 8, 15, 26, (5, 5), (1, 1), (1, 3), (1, 2)),
          (16, 4, 7, 8, 12, (4, 2), (2, 1), (3, 2), (1, 2)),
          (2, 9, 8, 26, 17, (5, 5), (1, 1), (0, 3), (1, 1)),
          (5, 16, 64, 23, 25, (2, 2), (2, 1), (0, 0), (2, 2)),
          # input gradients over 2-8 blocks of 8 output channels, in calls of 4, 2 and 1 blocks
          (2, 9, 24, 6, 14, (3, 3), (1, 1), (1, 1), (1, 1)),
          (3, 5, 40, 5, 17, (3, 3), (1, 1), (0, 0), (1, 1)),
          (2, 3, 16, 4, 39, (3, 2), (1, 1), (1, 1), (1, 1)),
          (2, 4, 33, 3, 44, (2, 5), (1, 1), (0, 2), (1, 1)),
          (5, 17, 64, 6, 9, (3, 3), (1, 1), (1, 1), (1, 1))]


def _random_shapes(count: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    shapes: list[tuple] = []
    while len(shapes) < count:
        n = int(rng.choice([1, 2, 3, 5, 8]))
        c, o = int(rng.choice([1, 3, 4, 8, 9, 16, 17, 24])), int(rng.choice([1, 3, 4, 7, 8, 10]))
        kernel = (int(rng.choice([1, 2, 3, 4, 5])), int(rng.choice([1, 2, 3, 5])))
        stride = (int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2, 3])))
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        dilation = (int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2])))
        h, w = int(rng.integers(4, 14)), int(rng.integers(4, 14))
        if all(s + 2 * p >= d * (k - 1) + 1
               for s, p, d, k in zip((h, w), padding, dilation, kernel)):
            shapes.append((n, c, o, h, w, kernel, stride, padding, dilation))
    return shapes


@pytest.fixture(autouse=True)
def exact_for_all(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every conv here is small enough for the exact path."""
    monkeypatch.setattr(gemm, "EXACT_WORK", 1 << 24)
    yield


def _run(shape: tuple, seed: int) -> tuple:
    n, c, o, h, w, kernel, stride, padding, dilation = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, *kernel)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tw = torch.from_numpy(wt.copy()).requires_grad_(True)
    tb = torch.from_numpy(b.copy()).requires_grad_(True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding,
                                    dilation=dilation)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(g.copy()))
    return x, wt, b, g, ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


@pytest.mark.parametrize("shape", SHAPES + _random_shapes(40, 0) + _random_shapes(40, 1), ids=str)
def test_forward_and_input_grad_bitwise(shape: tuple) -> None:
    n, c, o, h, w, kernel, stride, padding, dilation = shape
    x, wt, b, g, want, want_dx, want_dw, want_db = _run(shape, seed=sum(shape[:5]))
    x_shape, w_shape = (n, c, h, w), (o, c, *kernel)
    if not conv_onednn.forward_reproducible(x_shape, w_shape, stride, padding, dilation, 1,
                                            np.dtype(np.float32)):
        pytest.skip("torch's order for this shape is not reproduced (another kernel)")
    got = conv_onednn.forward(x, wt, b, stride, padding, dilation)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    no_bias = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(wt), None,
                                         stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_array_equal(conv_onednn.forward(x, wt, None, stride, padding, dilation),
                                  no_bias.numpy())
    if conv_onednn.backward_data_reproducible(x_shape, w_shape, stride, padding, dilation, 1,
                                              np.dtype(np.float32)):
        dx = conv_onednn.backward_data(g, wt, x_shape, padding, dilation)
        np.testing.assert_array_equal(dx, want_dx)
    if conv_onednn.backward_weights_reproducible(x_shape, w_shape, stride, padding, dilation, 1,
                                                 np.dtype(np.float32)):
        dw = conv_onednn.backward_weights(g, x, w_shape, stride, padding, dilation)
        np.testing.assert_array_equal(dw, want_dw)
        np.testing.assert_array_equal(conv_onednn.backward_bias(g, w_shape), want_db)


def test_numpy_order_differs() -> None:
    """The check can fail: a plain float32 product-sum misses torch's bits on the corpus's
    shapes."""
    x, wt, b, _, want, *_ = _run(SHAPES[0], seed=1)
    cols = conv_onednn.columns(x, (3, 3), (1, 1), (0, 0), (1, 1)).reshape(5 * 64, -1)
    plain = (cols.astype(np.float32) @ wt.reshape(4, -1).T + b).reshape(5, 8, 8, 4)
    assert (plain.transpose(0, 3, 1, 2) != want).any()


def test_reproducible_classes() -> None:
    """Batch 1 with a small kernel (slow_conv2d), groups, padding past the kernel (oneDNN's
    gemm), float64, an input gradient padded by more than 7 (oneDNN's gemm) and stride 2 are
    outside the classes."""
    f32 = np.dtype(np.float32)
    assert conv_onednn.forward_reproducible((5, 16, 10, 10), (4, 16, 3, 3), (1, 1), (0, 0),
                                            (1, 1), 1, f32)
    assert not conv_onednn.forward_reproducible((1, 16, 10, 10), (4, 16, 3, 3), (1, 1), (0, 0),
                                                (1, 1), 1, f32)
    assert not conv_onednn.forward_reproducible((5, 16, 10, 10), (4, 8, 3, 3), (1, 1), (0, 0),
                                                (1, 1), 2, f32)
    assert not conv_onednn.forward_reproducible((5, 16, 10, 10), (4, 16, 1, 3), (1, 1), (1, 1),
                                                (1, 1), 1, f32)
    assert not conv_onednn.forward_reproducible((5, 16, 10, 10), (4, 16, 3, 3), (1, 1), (0, 0),
                                                (1, 1), 1, np.dtype(np.float64))
    assert not conv_onednn.backward_data_reproducible((5, 16, 10, 10), (9, 16, 3, 5), (1, 1),
                                                      (0, 0), (1, 4), 1, f32)
    assert not conv_onednn.backward_data_reproducible((5, 16, 10, 10), (4, 16, 3, 3), (2, 2),
                                                      (0, 0), (1, 1), 1, f32)


def _random_1d(count: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    shapes: list[tuple] = []
    while len(shapes) < count:
        n, c = int(rng.choice([2, 3, 5])), int(rng.choice([1, 3, 8, 9, 17]))
        o, k = int(rng.choice([1, 4, 8])), int(rng.choice([1, 2, 3, 5]))
        s, p, d = int(rng.choice([1, 2])), int(rng.integers(0, 3)), int(rng.choice([1, 2]))
        length = int(rng.integers(6, 40))
        if length + 2 * p >= d * (k - 1) + 1:
            shapes.append((n, c, o, length, k, s, p, d))
    return shapes


@pytest.mark.parametrize("shape", _random_1d(30, 2) + [(3, 1, 8, 12, 5, 1, 0, 2)], ids=str)
def test_engine_conv1d_through_the_op(shape: tuple) -> None:
    """nn.functional.conv1d runs the `convolution` op as a conv2d of height 1, as torch's does:
    torch's bits where the classes hold (the last shape's input gradient is oneDNN's gemm, a
    gradient padding of 8: outside), its values elsewhere, and its grad_fn."""
    n, c, o, length, k, s, p, d = shape
    rng = np.random.default_rng(length)
    x = rng.standard_normal((n, c, length)).astype(np.float32)
    wt = rng.standard_normal((o, c, k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = torch.nn.functional.conv1d(tx, torch.from_numpy(wt.copy()), torch.from_numpy(b.copy()),
                                    stride=s, padding=p, dilation=d)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(g.copy()))
    ex = ge.tensor(x, requires_grad=True)
    ey = ge.nn.functional.conv1d(ex, ge.tensor(wt), ge.tensor(b), stride=s, padding=p,
                                 dilation=d)
    ey.backward(ge.tensor(g))
    assert ey.grad_fn.name() == ty.grad_fn.name() == "ConvolutionBackward0"
    f32 = np.dtype(np.float32)
    args = ((n, c, 1, length), (o, c, 1, k), (1, s), (0, p), (1, d), 1, f32)
    for exact, got, want in ((conv_onednn.forward_reproducible(*args), ey.detach().numpy(),
                              ty.detach().numpy()),
                             (conv_onednn.backward_data_reproducible(*args), ex.grad.numpy(),
                              tx.grad.numpy())):
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("where", ["weight", "grad"])
def test_padding_taps_are_skipped_not_multiplied(where: str) -> None:
    """oneDNN skips the taps in the padding: an inf weight (or gradient) meets no padded zero,
    so no nan appears where torch has none (forward, input and weight gradients)."""
    shape = (3, 5, 8, 8, 7, (3, 3), (1, 1), (1, 1), (1, 1))
    x, wt, b, g, *_ = _run(shape, seed=7)
    if where == "weight":
        wt[1, 2, 0, 0], wt[3, 4, 2, 1] = np.inf, -np.inf
    else:
        g[0, 1, 0, 0], g[2, 0, 7, 6] = np.inf, np.nan
    tx, tw = torch.from_numpy(x.copy()).requires_grad_(True), torch.from_numpy(
        wt.copy()).requires_grad_(True)
    ty = torch.nn.functional.conv2d(tx, tw, torch.from_numpy(b.copy()), padding=1)
    ty.backward(torch.from_numpy(g.copy()))
    f32 = np.dtype(np.float32)
    args = ((3, 5, 8, 7), (8, 5, 3, 3), (1, 1), (1, 1), (1, 1), 1, f32)
    assert conv_onednn.backward_data_reproducible(*args)
    assert conv_onednn.backward_weights_reproducible(*args)
    pair = ((1, 1), (1, 1))
    np.testing.assert_array_equal(conv_onednn.forward(x, wt, b, (1, 1), *pair),
                                  ty.detach().numpy())
    np.testing.assert_array_equal(conv_onednn.backward_data(g, wt, (3, 5, 8, 7), *pair),
                                  tx.grad.numpy())
    np.testing.assert_array_equal(
        conv_onednn.backward_weights(g, x, (8, 5, 3, 3), (1, 1), *pair), tw.grad.numpy())


def test_engine_conv2d_gradients_bitwise() -> None:
    """Through nn.functional.conv2d: the forward, and the input, weight and bias gradients of
    a layer in every class (C, O <= 8, stride 1) are torch's bits; the graph is torch's."""
    shape = (6, 3, 8, 12, 11, (3, 3), (1, 1), (1, 1), (1, 1))
    x, wt, b, g, want, want_dx, want_dw, want_db = _run(shape, seed=11)
    ex, ew, eb = (ge.tensor(a, requires_grad=True) for a in (x, wt, b))
    ey = ge.nn.functional.conv2d(ex, ew, eb, padding=1)
    ey.backward(ge.tensor(g))
    assert ey.grad_fn.name() == "ConvolutionBackward0"
    for got, expected in ((ey.detach(), want), (ex.grad, want_dx), (ew.grad, want_dw),
                          (eb.grad, want_db)):
        np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", [
    ((2, 3, 5, 5), (4, 3, 3, 3), (0, 1), (0, 0), (1, 1), 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), (1, 1), (-1, 0), (1, 1), 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), (1, 1), (0, 0), (0, 1), 1),
    ((2, 3, 5, 5), (4, 2, 3, 3), (1, 1), (0, 0), (1, 1), 1),
    ((2, 4, 5, 5), (3, 2, 3, 3), (1, 1), (0, 0), (1, 1), 2),
    ((2, 3, 5, 5), (4, 3, 7, 7), (1, 1), (0, 0), (1, 1), 1)])
def test_convolution_op_refuses_what_torch_refuses(x_shape, w_shape, stride, padding, dilation,
                                                   groups) -> None:
    """The op checks its shapes and attributes itself (they come from the wire), with torch's
    messages."""
    with pytest.raises(RuntimeError) as want:
        torch.convolution(torch.zeros(x_shape), torch.zeros(w_shape), None, list(stride),
                          list(padding), list(dilation), False, [0, 0], groups)
    with pytest.raises(RuntimeError) as got:
        ge.apply("convolution", [ge.zeros(*x_shape), ge.zeros(*w_shape), None],
                 {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})
    assert str(got.value) == str(want.value).split("\n")[0]
