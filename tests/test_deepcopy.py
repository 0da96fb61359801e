"""copy.deepcopy of tensors and modules as torch's, in process and through a session: a leaf's
copy (data, requires_grad, `.grad`), Parameters as new Parameters without `.grad`, shared
tensors copied once (the memo), torch's refusal for a non-leaf, and a deep-copied module (a
DQN-style target network) independent of its original."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _both(lib: Any, fn: Any) -> tuple[Any, Any]:
    return fn(torch), fn(lib)


def test_a_leaf_is_copied_with_its_grad(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, -2.0, 3.5], requires_grad=True)
        x.grad = t.tensor([0.5, 0.25, 1.0])
        y = copy.deepcopy(x)
        y.grad.add_(1)
        with t.no_grad():
            y.mul_(2)
        return (y is not x, y.requires_grad, y.is_leaf, y.grad_fn is None, repr(y), repr(y.grad),
                repr(x), repr(x.grad))
    expected, got = _both(lib, run)
    assert got == expected


def test_shared_tensors_are_copied_once_and_plain_tensors_keep_no_grad(lib):
    def run(t: Any) -> Any:
        x = t.ones(2)
        d = copy.deepcopy({"a": x, "b": [x, x]})
        return d["a"] is d["b"][0] is d["b"][1], d["a"] is not x, d["a"].requires_grad
    expected, got = _both(lib, run)
    assert got == expected


def test_a_non_leaf_is_refused_as_torch_refuses_it(lib):
    messages = []
    for t in (torch, lib):
        x = t.ones(2, requires_grad=True)
        with pytest.raises(RuntimeError) as info:
            copy.deepcopy(x * 2)
        messages.append(str(info.value))
    assert messages[1] == messages[0]


def test_a_parameter_is_copied_as_a_parameter_without_its_grad(lib):
    def run(t: Any) -> Any:
        p = t.nn.Parameter(t.tensor([1.0, 2.0]))
        p.grad = t.tensor([3.0, 4.0])
        q = copy.deepcopy(p)
        return isinstance(q, t.nn.Parameter), q.requires_grad, q.grad, repr(q)
    expected, got = _both(lib, run)
    assert got == expected


def test_a_deep_copied_module_is_independent(lib):
    def run(t: Any) -> Any:
        t.manual_seed(0)
        net = t.nn.Sequential(t.nn.Linear(3, 4), t.nn.ReLU(), t.nn.Linear(4, 2))
        target = copy.deepcopy(net)
        x = t.tensor(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
        before = target(x).detach().numpy().tobytes()
        opt = t.optim.SGD(net.parameters(), lr=0.5)
        net(x).pow(2).sum().backward()
        opt.step()
        after = target(x).detach().numpy().tobytes()
        target.load_state_dict(net.state_dict())
        synced = target(x).detach().numpy().tobytes() == net(x).detach().numpy().tobytes()
        weight = target[0].weight
        return (before == after, synced, weight is not net[0].weight, weight.grad is None,
                isinstance(weight, t.nn.Parameter), repr(target))
    expected, got = _both(lib, run)
    assert got == expected
