"""F.pad's "reflect" and "replicate" modes and nn.ReflectionPad1d/2d/3d, ReplicationPad1d/2d/3d
(the ops reflection_pad and replication_pad) against torch: values, gradients (edge positions
read by several outputs sum in torch's order, bit for bit), second derivatives, torch's errors
and reprs, in the engine and through a session."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import outcome, same_outcome, torch


def _data(shape, seed):
    rng = np.random.default_rng(seed)
    # values of wide range: a sum in another order would differ
    return np.ldexp(rng.standard_normal(shape), rng.integers(-12, 12, shape)).astype(np.float32)


CASES = [((1, 2, 4, 5), (2, 1, 3, 0)), ((2, 3, 5), (2, 3)), ((3, 5), (2, 3)),
         ((3, 4, 5), (2, 1, 1, 1)), ((1, 2, 3, 4, 5), (1, 1, 1, 1, 2, 2)),
         ((2, 3, 4, 5), (1, 2, 0, 1, 1, 1)), ((1, 2, 4, 5), (-2, -3, 0, 0)),
         ((1, 2, 4, 5), (-1, 2, 3, -1)), ((0, 3, 5), (1, 1)), ((1, 1, 3, 3), (2, 2, 2, 2)),
         ((1, 1, 2, 2), (1, 1, 1, 1)), ((2, 2, 6), (5, 5))]


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("shape, pad", CASES)
def test_values_and_gradients(gradserve_lib, mode, shape, pad):
    data = _data(shape, len(shape))

    def run(t):
        x = t.tensor(data, requires_grad=True)
        y = t.nn.functional.pad(x, pad, mode=mode)
        w = t.tensor(_data(tuple(y.shape), 5))
        (y * w).sum().backward()
        return tuple(y.shape), y.tolist(), x.grad.tolist(), y.grad_fn.name(), y.is_contiguous()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_second_derivatives(gradserve_lib, mode):
    def run(t):
        x = t.tensor(np.arange(20, dtype=np.float64).reshape(1, 4, 5) / 3, requires_grad=True)
        y = t.nn.functional.pad(x, (2, 1, 1, 2), mode=mode)
        (g,) = t.autograd.grad((y ** 2).sum(), x, create_graph=True)
        (gg,) = t.autograd.grad((g ** 2).sum(), x)
        return g.tolist(), gg.tolist(), g.grad_fn.name()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("shape, pad", [
    ((1, 2, 4, 5), (5, 0, 0, 0)), ((1, 2, 4, 5), (0, 0, 4, 0)), ((2, 3, 5), (5, 1)),
    ((2, 3, 5), (-3, -2)), ((2, 0, 5), (1, 1)), ((1, 2, 4, 5), (-3, -3, -2, -2)),
    ((1, 2, 3, 4, 5), (-3, -3, -2, -2, -2, -2)), ((1, 2, 3, 4, 5), (-1, -1, -1, -1, -2, -2)),
    ((1, 2, 3, 4, 5), (1, 1, 1, 1, 3, 0)), ((2, 3, 0), (1, 1)), ((5,), (1, 1)),
    ((1, 2, 5), (1, 1, 1)), ((5,), (1, 1, 1, 1)), ((1, 2, 3, 4, 5), (1, 1, 1, 1))])
def test_errors(gradserve_lib, mode, shape, pad):
    got = same_outcome(gradserve_lib, lambda t: t.nn.functional.pad(
        t.zeros(*shape), pad, mode=mode).tolist())
    if mode == "reflect":  # (replicate takes pads as wide as it likes)
        assert got[0] != "ok"


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_dtypes(gradserve_lib, mode):
    for dtype in ("bool", "int64", "uint8", "float64"):
        same_outcome(gradserve_lib, lambda t, d=dtype: t.nn.functional.pad(
            t.ones(1, 2, 4, 5, dtype=getattr(t, d)), (1, 1, 1, 1), mode=mode).tolist())


def test_the_value_argument_and_unknown_modes(gradserve_lib):
    x = np.ones((1, 2, 5), np.float32)
    for mode, value in (("reflect", 1.0), ("reflect", 0.0), ("bogus", None)):
        same_outcome(gradserve_lib, lambda t, m=mode, v=value: t.nn.functional.pad(
            t.tensor(x), (1, 1), mode=m, value=v).tolist())


def test_modules_and_reprs(gradserve_lib):
    def run(t):
        mods = [t.nn.ReflectionPad1d(2), t.nn.ReflectionPad2d((1, 2, 0, 1)),
                t.nn.ReflectionPad3d(1), t.nn.ReplicationPad1d((3, 0)),
                t.nn.ReplicationPad2d(2), t.nn.ReplicationPad3d((1, 0, 0, 1, 2, 0))]
        x1, x2, x3 = (t.tensor(_data(s, i)) for i, s in enumerate(
            [(2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 3, 4)]))
        outs = [m(x) for m, x in zip(mods, (x1, x2, x3, x1, x2, x3))]
        return [repr(m) for m in mods], [o.tolist() for o in outs]
    assert same_outcome(gradserve_lib, run)[0] == "ok"
    same_outcome(gradserve_lib, lambda t: t.nn.ReflectionPad2d(1)(t.zeros(3, 4)).tolist())


def test_a_cyclegan_residual_block(gradserve_lib):
    # CycleGAN's and fast neural style's block: reflection padding around each convolution
    def run(t):
        t.manual_seed(0)
        block = t.nn.Sequential(
            t.nn.ReflectionPad2d(1), t.nn.Conv2d(4, 4, 3), t.nn.InstanceNorm2d(4), t.nn.ReLU(),
            t.nn.ReflectionPad2d(1), t.nn.Conv2d(4, 4, 3), t.nn.InstanceNorm2d(4))
        x = t.tensor(_data((2, 4, 6, 6), 3) / 4096, requires_grad=True)
        y = x + block(x)
        y.square().mean().backward()
        return (tuple(y.shape), y.grad_fn.name(), np.asarray(y.tolist()),
                np.asarray(x.grad.tolist()), np.asarray(block[1].weight.grad.tolist()))
    got, want = outcome(run, gradserve_lib), outcome(run, torch)
    assert got[0] == want[0] == "ok"
    assert got[1][:2] == want[1][:2]
    for a, b in zip(got[1][2:], want[1][2:]):
        np.testing.assert_array_equal(a, b)
