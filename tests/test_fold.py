"""F.unfold / F.fold and nn.Unfold / nn.Fold (the ops im2col and col2im) against torch: values,
gradients (overlapping blocks add in torch's order, bit for bit), second derivatives, torch's
errors and module reprs, in the engine and through a session."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import same_outcome


def _data(shape, seed):
    rng = np.random.default_rng(seed)
    # values of wide range: a sum in another order would differ
    return np.ldexp(rng.standard_normal(shape), rng.integers(-12, 12, shape)).astype(np.float32)


UNFOLDS = [((2, 3, 5, 6), (2, 3), {"padding": 1, "stride": 2}),
           ((3, 5, 6), 2, {}),
           ((1, 2, 7, 7), 3, {"dilation": (2, 1), "padding": (2, 0), "stride": (1, 2)}),
           ((2, 1, 6, 6), 3, {}),  # overlapping blocks: each pixel in up to 9
           ((0, 1, 5, 6), 2, {}),
           ((1, 1, 4, 4), 4, {}),
           # more kernel offsets than LOOPED_OFFSETS: one gather (and np.add.at back)
           ((2, 2, 6, 7), (17, 17), {"padding": 6, "stride": (2, 3)}),
           ((1, 1, 5, 5), (16, 17), {"padding": (6, 7), "dilation": (1, 1)})]


@pytest.mark.parametrize("shape, kernel, kw", UNFOLDS)
def test_unfold_values_and_gradients(gradserve_lib, shape, kernel, kw):
    data = _data(shape, len(shape))

    def run(t):
        x = t.tensor(data, requires_grad=True)
        u = t.nn.functional.unfold(x, kernel, **kw)
        w = t.tensor(_data(tuple(u.shape), 7))
        (u * w).sum().backward()
        return tuple(u.shape), u.tolist(), x.grad.tolist(), u.grad_fn.name(), u.is_contiguous()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


@pytest.mark.parametrize("shape, out, kernel, kw", [
    ((2, 18, 9), (5, 6), (2, 3), {"padding": 1, "stride": 2}),
    ((8, 12), (4, 5), 2, {}),
    ((1, 9, 16), (6, 6), 3, {}),  # overlapping: each pixel sums up to 9 values
    ((1, 18, 21), (7, 7), 3, {"dilation": (2, 1), "padding": (2, 0), "stride": (1, 2)}),
    ((2, 289 * 2, 1), (6, 7), (17, 17), {"padding": 6, "stride": (2, 3)}),  # gathered
    ((1, 272, 6), (5, 5), (16, 17), {"padding": (6, 7)})])
def test_fold_values_and_gradients(gradserve_lib, shape, out, kernel, kw):
    data = _data(shape, 3)

    def run(t):
        x = t.tensor(data, requires_grad=True)
        f = t.nn.functional.fold(x, out, kernel, **kw)
        w = t.tensor(_data(tuple(f.shape), 8))
        (f * w).sum().backward()
        return tuple(f.shape), f.tolist(), x.grad.tolist(), f.grad_fn.name()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_a_huge_padding_allocates_no_padded_image(gradserve_lib):
    # torch reads the padding as zeros without making it; so does the engine (a padded copy
    # would be 2**42 elements here)
    def run(t):
        x = t.tensor(_data((1, 1, 3, 3), 9), requires_grad=True)
        u = t.nn.functional.unfold(x, 1, padding=2**20, stride=2**21)
        u.sum().backward()
        return tuple(u.shape), u.tolist(), x.grad.tolist()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_second_derivatives(gradserve_lib):
    def run(t):
        x = t.tensor(np.arange(1 * 2 * 4 * 5, dtype=np.float64).reshape(1, 2, 4, 5) / 7,
                     requires_grad=True)
        u = t.nn.functional.unfold(x, 2)
        f = t.nn.functional.fold(u ** 2, (4, 5), 2)
        (g,) = t.autograd.grad(f.pow(2).sum(), x, create_graph=True)
        (gg,) = t.autograd.grad(g.sum(), x)
        return g.tolist(), gg.tolist(), g.grad_fn.name()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


@pytest.mark.parametrize("shape, args", [
    ((5, 6), (2,)), ((1, 1, 2, 5, 6), (2,)), ((1, 1, 5, 6), (7,)), ((1, 1, 5, 6), (0,)),
    ((1, 1, 5, 6), (2, 0)), ((1, 1, 5, 6), (2, 1, -1)), ((1, 1, 5, 6), (2, 1, 0, 0)),
    ((1, 1, 5, 6), ((2, 2, 2),)), ((1, 0, 5, 6), (2,)), ((0, 5, 6), (2,))])
def test_unfold_errors(gradserve_lib, shape, args):
    got = same_outcome(gradserve_lib,
                       lambda t: t.nn.functional.unfold(t.zeros(*shape), *args).tolist())
    assert got[0] != "ok"


@pytest.mark.parametrize("shape, args", [
    ((1, 5, 9), ((4, 4), 2)), ((1, 4, 10), ((4, 4), 2)), ((4, 9, 1, 1), ((4, 4), 2)),
    ((1, 4, 9), ((4, 4), 2, 1, 0, 0)), ((1, 4, 9), ((4, 4), 2, 0)),
    ((1, 4, 9), ((4, 4), 2, 1, -1)), ((1, 4, 1), ((1, 1), 2)), ((1, 4, 9), ((4, 4, 4), 2))])
def test_fold_errors(gradserve_lib, shape, args):
    got = same_outcome(gradserve_lib,
                       lambda t: t.nn.functional.fold(t.ones(*shape), *args).tolist())
    assert got[0] != "ok"


def test_integer_inputs_are_refused_as_torch_refuses_them(gradserve_lib):
    got = same_outcome(gradserve_lib, lambda t: t.nn.functional.unfold(
        t.zeros(1, 1, 4, 4, dtype=t.int64), 2).tolist())
    assert got == ("NotImplementedError", "\"im2col_out_cpu\" not implemented for 'Long'")


def test_modules_and_their_reprs(gradserve_lib):
    def run(t):
        unf = t.nn.Unfold(kernel_size=(2, 3), padding=1, stride=2)
        fold = t.nn.Fold(output_size=(5, 6), kernel_size=(2, 3), padding=1, stride=2)
        x = t.tensor(_data((2, 3, 5, 6), 4))
        return repr(unf), repr(fold), fold(unf(x)).tolist()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_the_convolution_of_torchs_unfold_docs(gradserve_lib):
    # nn.Unfold's documented example: a convolution as unfold, matmul and fold
    def run(t):
        inp = t.tensor(_data((1, 3, 10, 12), 5), requires_grad=True)
        w = t.tensor(_data((2, 3, 4, 5), 6), requires_grad=True)
        inp_unf = t.nn.functional.unfold(inp, (4, 5))
        out_unf = inp_unf.transpose(1, 2).matmul(w.view(w.size(0), -1).t()).transpose(1, 2)
        out = t.nn.functional.fold(out_unf, (7, 8), (1, 1))
        out.sum().backward()
        conv = t.nn.functional.conv2d(inp, w)
        return (tuple(out.shape), out.tolist(), inp.grad.tolist(), w.grad.tolist(),
                (out - conv).abs().max().item() < 1e-3)
    assert same_outcome(gradserve_lib, run)[0] == "ok"
