"""nn.functional.hardtanh / relu6 and nn.Hardtanh / nn.ReLU6 against torch, in process and
through a session: torch's values (-0.0 and NaN kept), its HardtanhBackward0 node and gradient
(none at the bounds, unlike clamp's), in place, integer inputs, reprs and errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

VALUES = [-7.0, -2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 1.0, 3.0, 6.0, 6.5, float("nan")]


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _bits(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy()).view(np.int32)


@pytest.mark.parametrize("call", [
    lambda t, x: t.nn.functional.hardtanh(x),
    lambda t, x: t.nn.functional.hardtanh(x, -0.5, 2.0),
    lambda t, x: t.nn.functional.hardtanh(x, min_val=0.0, max_val=1.0),
    lambda t, x: t.nn.functional.relu6(x),
    lambda t, x: t.nn.ReLU6()(x),
    lambda t, x: t.nn.Hardtanh(-2.0, 3.0)(x),
    lambda t, x: t.nn.functional.hardtanh(x * 1, inplace=True),
    lambda t, x: t.nn.functional.relu6(x * 1, inplace=True),
    lambda t, x: t.nn.ReLU6(inplace=True)(x * 1),
    lambda t, x: t.nn.functional.hardtanh_(x * 1, -1.0, 0.5),
])
def test_values_node_and_gradient_are_torchs(lib, call):
    x = torch.tensor(VALUES, requires_grad=True)
    gx = lib.tensor(VALUES, requires_grad=True)
    y, gy = call(torch, x), call(lib, gx)
    np.testing.assert_array_equal(_bits(gy), _bits(y))
    assert gy.grad_fn.name() == type(y.grad_fn).__name__ == "HardtanhBackward0"
    w = torch.linspace(-1, 2, len(VALUES))
    (y * w).sum().backward()
    (gy * lib.tensor(w.numpy())).sum().backward()
    np.testing.assert_array_equal(_bits(gx.grad), _bits(x.grad))


def test_second_derivative_values(lib):
    x = torch.tensor([-2.0, 0.5, 0.9, 3.0], requires_grad=True)
    gx = lib.tensor(x.detach().numpy(), requires_grad=True)
    (g,) = torch.autograd.grad((torch.nn.functional.hardtanh(x) ** 2).sum(), x,
                               create_graph=True)
    (gg,) = lib.autograd.grad((lib.nn.functional.hardtanh(gx) ** 2).sum(), gx,
                              create_graph=True)
    np.testing.assert_array_equal(gg.detach().numpy(), g.detach().numpy())
    g.sum().backward()
    gg.sum().backward()
    np.testing.assert_array_equal(gx.grad.numpy(), x.grad.numpy())


def test_integer_input(lib):
    x = [1, 5, -3, 0]
    np.testing.assert_array_equal(
        lib.nn.functional.hardtanh(lib.tensor(x), 0, 3).numpy(),
        torch.nn.functional.hardtanh(torch.tensor(x), 0, 3).numpy())


def test_reprs(lib):
    for make in (lambda t: t.nn.ReLU6(), lambda t: t.nn.ReLU6(inplace=True),
                 lambda t: t.nn.Hardtanh(), lambda t: t.nn.Hardtanh(-2, 2.5, inplace=True)):
        assert repr(make(lib)) == repr(make(torch))
    assert isinstance(lib.nn.ReLU6(), lib.nn.Hardtanh)
    assert lib.nn.modules.activation.ReLU6 is lib.nn.ReLU6


def test_errors(lib):
    with pytest.raises(AssertionError) as ours:
        lib.nn.Hardtanh(2, 1)
    with pytest.raises(AssertionError) as theirs:
        torch.nn.Hardtanh(2, 1)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(RuntimeError) as ours_rt:
        lib.nn.functional.hardtanh(lib.tensor([True, False]))
    with pytest.raises(RuntimeError) as theirs_rt:
        torch.nn.functional.hardtanh(torch.tensor([True, False]))
    assert str(ours_rt.value).split("\ngradserve:")[0] == str(theirs_rt.value)
