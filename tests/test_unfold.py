"""Tensor.unfold (sliding windows as a view) and its gradient, against torch: values, gradients
(overlapping windows sum in torch's order), torch's errors, the view's sharing of its input's
data, in the engine and through a session."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import same_outcome, torch


def _values(t):
    return np.asarray(t.detach().tolist(), dtype=np.float64)


CASES = [((7,), 0, 3, 2), ((7,), 0, 3, 1), ((2, 9), 1, 4, 1), ((2, 9), -1, 2, 3),
         ((3, 5, 4), 0, 2, 1), ((3, 5, 4), 1, 5, 1), ((3, 5, 4), 2, 1, 3), ((3, 5, 4), 2, 0, 1),
         ((), 0, 1, 1), ((), -1, 0, 3), ((0, 5), 0, 0, 1), ((10,), 0, 4, 3), ((16,), 0, 5, 1)]


@pytest.mark.parametrize("shape, dim, size, step", CASES)
def test_values_and_gradients_are_torchs(gradserve_lib, shape, dim, size, step):
    rng = np.random.default_rng(len(shape) * 100 + size * 10 + step)
    data = rng.standard_normal(shape).astype(np.float32)
    results = {}
    for name, lib in (("gradserve", gradserve_lib), ("torch", torch)):
        x = lib.tensor(data, requires_grad=True)
        u = x.unfold(dim, size, step)
        w = lib.tensor(np.random.default_rng(1).standard_normal(tuple(u.shape))
                       .astype(np.float32))
        (u * w).sum().backward()
        results[name] = (tuple(u.shape), _values(u), _values(x.grad), u.grad_fn.name(),
                         u.is_contiguous(), u.requires_grad)
    got, want = results["gradserve"], results["torch"]
    assert got[0] == want[0] and got[3:] == want[3:]
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])  # bit for bit: the same order of sums


@pytest.mark.parametrize("size, step", [(16, 1), (16, 2)])  # (more windows than offsets, fewer)
def test_overlapping_windows_sum_in_torchs_order(gradserve_lib, size, step):
    # many windows over each element, with values whose sum depends on the order
    data = np.ldexp(np.random.default_rng(3).standard_normal(64),
                    np.random.default_rng(4).integers(-20, 20, 64)).astype(np.float32)
    grads = []
    for lib in (gradserve_lib, torch):
        x = lib.tensor(np.zeros(40, np.float32), requires_grad=True)
        u = x.unfold(0, size, step)
        u.backward(lib.tensor(np.resize(data, tuple(u.shape)).astype(np.float32)))
        grads.append(_values(x.grad))
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.parametrize("args", [(1, 6, 1), (1, 2, 0), (1, 2, -1), (1, -1, 1), (2, 1, 1),
                                  (-3, 1, 1)])
def test_errors_are_torchs(gradserve_lib, args):
    assert same_outcome(gradserve_lib, lambda t: t.zeros(2, 5).unfold(*args).tolist())[0] != "ok"


def test_a_0d_tensor_unfolds_to_its_one_element_or_none(gradserve_lib):
    for args in [(0, 1, 1), (-1, 1, 2), (0, 0, 1)]:
        same_outcome(gradserve_lib, lambda t, a=args: t.tensor(3.0).unfold(*a).tolist())
    assert same_outcome(gradserve_lib, lambda t: t.tensor(3.0).unfold(0, 2, 1).tolist()) == (
        "RuntimeError", "maximum size for tensor at dimension 0 is 1 but size is 2")


def test_the_windows_are_a_view_of_the_input(gradserve_lib):
    states = []
    for lib in (gradserve_lib, torch):
        x = lib.arange(12.0).reshape(3, 4).t()  # (4, 3), not contiguous
        u = x.unfold(0, 2, 2)
        u.mul_(10.0)  # writes through to x
        states.append((x.tolist(), u.tolist(), u._base is not None, x._version))
    assert states[0] == states[1]


def test_non_overlapping_windows_take_in_place_writes_as_torch(gradserve_lib):
    def run(t):
        a = t.tensor(np.arange(8, dtype=np.float32) / 3, requires_grad=True)
        b = a * 1.0
        v = b.unfold(0, 2, 2)
        v.mul_(3.0)
        b.square().sum().backward()
        return b.tolist(), a.grad.tolist(), b.grad_fn.name(), v.grad_fn.name()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_an_in_place_write_to_overlapping_windows_is_refused(gradserve_lib):
    # torch writes shared elements once per window, in its loop's order; gradserve refuses
    x = gradserve_lib.arange(8.0)
    with pytest.raises(RuntimeError, match="refers to a single memory location"):
        x.unfold(0, 3, 1).mul_(3.0)
        x.tolist()
    assert x.tolist() == list(range(8))
    y = gradserve_lib.arange(8.0)
    y.unfold(0, 3, 1).clone().mul_(3.0)  # a copy takes it
    y.unfold(0, 3, 8).mul_(2.0)  # one window overlaps nothing
    assert y.tolist() == [0.0, 2.0, 4.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_second_derivatives_are_torchs(gradserve_lib):
    outs = []
    for lib in (gradserve_lib, torch):
        x = lib.tensor(np.arange(7, dtype=np.float64), requires_grad=True)
        u = x.unfold(0, 3, 2)
        (g,) = lib.autograd.grad((u ** 3).sum(), x, create_graph=True)
        (gg,) = lib.autograd.grad((g * g).sum(), x)
        outs.append((g.tolist(), gg.tolist(), g.grad_fn.name()))
    assert outs[0] == outs[1]


def test_common_programs(gradserve_lib):
    # a moving average (audio framing, rolling statistics) and a ViT's patches
    def moving_average(t):
        x = t.tensor(np.sin(np.arange(50, dtype=np.float32) / 3), requires_grad=True)
        avg = x.unfold(0, 5, 1).mean(-1)
        avg.pow(2).sum().backward()
        return avg.tolist(), x.grad.tolist()

    def patches(t):
        t.manual_seed(0)
        img = t.randn(2, 3, 8, 8, requires_grad=True)
        p = img.unfold(2, 4, 4).unfold(3, 4, 4)  # (2, 3, 2, 2, 4, 4)
        flat = p.permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 48)
        flat.square().sum().backward()
        return tuple(p.shape), flat.tolist(), img.grad.tolist()

    for program in (moving_average, patches):
        assert same_outcome(gradserve_lib, program)[0] == "ok"
