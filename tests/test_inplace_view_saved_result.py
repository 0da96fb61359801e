"""An in-place op on a view whose node saves its result (exp_, sigmoid_, tanh_, ...): torch's
node saves the view it wrote, so a later write to the view or its base fails the backward with
torch's version error; without such a write the gradients are torch's. Before, the engine's
node kept the out-of-place result, which nothing wrote again: the backward returned gradients
computed from overwritten values, silently."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

VERSION_ERROR = ("one of the variables needed for gradient computation has been modified by an "
                 "inplace operation")


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _run(t: Any, op: str, view: Any, write: str | None) -> Any:
    x = t.tensor([1.0, 2.0, 3.0, -0.5], requires_grad=True)
    b = x * 1
    v = view(b)
    getattr(v, op)()
    if write == "base":
        b.mul_(2)
    elif write == "view":
        v.mul_(2)
    (b * t.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    return x.grad.numpy().tolist()


VIEWS = [lambda b: b[0], lambda b: b[1:3], lambda b: b.view(2, 2)[0]]


@pytest.mark.parametrize("op", ["exp_", "sigmoid_", "tanh_", "sqrt_"])
@pytest.mark.parametrize("view", range(len(VIEWS)))
@pytest.mark.parametrize("write", ["base", "view"])
def test_a_later_write_fails_the_backward(lib, op, view, write):
    with pytest.raises(RuntimeError) as expected:
        _run(torch, op, VIEWS[view], write)
    with pytest.raises(RuntimeError) as got:
        _run(lib, op, VIEWS[view], write)
    assert str(expected.value).startswith(VERSION_ERROR)
    assert str(got.value).startswith(VERSION_ERROR)
    if write == "view":  # (after a write to the base, torch names the view's AsStrided node)
        assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("op", ["exp_", "sigmoid_", "tanh_"])
@pytest.mark.parametrize("view", range(len(VIEWS)))
def test_without_a_later_write_the_gradients_are_torchs(lib, op, view):
    expected = _run(torch, op, VIEWS[view], None)
    got = _run(lib, op, VIEWS[view], None)
    np.testing.assert_array_equal(np.array(got, np.float32), np.array(expected, np.float32))
