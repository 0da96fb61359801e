"""torch functions ATen composes from other ops, composed the same way: F.softmin, F.softsign,
F.tanhshrink (and nn.Softmin, nn.Softsign, nn.Tanhshrink), torch.nanmean, torch.count_nonzero,
torch.flipud and torch.fliplr, against torch (values, gradients, grad_fn, errors), in the engine
and through a session."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import same_outcome

X = np.linspace(-3, 3, 12).astype(np.float32).reshape(3, 4)
WITH_NAN = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, 2.0], [0.5, -1.0, 4.0]], np.float32)


# (softmin over the last dim: torch's float32 softmax is reproduced bit for bit there only)
@pytest.mark.parametrize("name, kw", [("softsign", {}), ("tanhshrink", {}),
                                      ("softmin", {"dim": 1}), ("softmin", {"dim": -1})])
def test_activations(gradserve_lib, name, kw):
    def run(t):
        x = t.tensor(X, requires_grad=True)
        y = getattr(t.nn.functional, name)(x, **kw)
        y.backward(t.tensor(X[::-1].copy()))
        return y.tolist(), x.grad.tolist(), y.grad_fn.name()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_activation_modules(gradserve_lib):
    def run(t):
        mods = [t.nn.Softsign(), t.nn.Tanhshrink(), t.nn.Softmin(dim=1), t.nn.Softmin(dim=-1)]
        x = t.tensor(X)
        return [repr(m) for m in mods], [m(x).tolist() for m in mods]
    assert same_outcome(gradserve_lib, run)[0] == "ok"


@pytest.mark.parametrize("dim, keepdim", [(None, False), (0, False), (1, True), ((0, 1), False),
                                          (-1, False)])
def test_nanmean(gradserve_lib, dim, keepdim):
    def run(t):
        x = t.tensor(WITH_NAN, requires_grad=True)
        y = t.nanmean(x, dim, keepdim)
        y.sum().backward()
        return y.tolist(), x.grad.tolist(), y.grad_fn.name(), x.nanmean(dim, keepdim).tolist()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_nanmean_dtype_and_error(gradserve_lib):
    assert same_outcome(gradserve_lib, lambda t: t.nanmean(
        t.tensor(WITH_NAN), dtype=t.float64).tolist())[0] == "ok"
    assert same_outcome(gradserve_lib, lambda t: t.nanmean(t.arange(3)).tolist()) == (
        "RuntimeError",
        "nanmean(): expected input to have floating point or complex dtype but got Long")


@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1), (0, 0)])
def test_count_nonzero(gradserve_lib, dim):
    y = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -3.0]], np.float32)
    same_outcome(gradserve_lib, lambda t: (
        t.count_nonzero(t.tensor(y), dim).tolist(), str(t.count_nonzero(t.tensor(y), dim).dtype),
        t.tensor(y).count_nonzero(dim).tolist()))


@pytest.mark.parametrize("name", ["flipud", "fliplr"])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 3, 2)])
def test_flips(gradserve_lib, name, shape):
    data = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)

    def run(t):
        x = t.tensor(data, requires_grad=True)
        y = getattr(t, name)(x)
        y.backward(t.tensor(data * 2))
        return y.tolist(), x.grad.tolist(), y.grad_fn.name(), getattr(x, name)().tolist()
    same_outcome(gradserve_lib, run)
