"""torch.scatter / scatter_add and Tensor.scatter_ / scatter_add_ against torch (engine and
session): the one-hot idiom, values and tensors as src, keyword forms, reduce='add', gradients,
grad_fn names and torch's errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


def _story(lib: Any) -> list[str]:
    y = lib.tensor([2, 0, 1, 2])
    one_hot = lib.zeros(4, 3).scatter_(1, y.view(-1, 1), 1)
    out = [repr(one_hot), repr(lib.zeros(2, 4).scatter_(dim=1, index=lib.tensor([[3], [1]]),
                                                        value=7.0))]
    a = lib.ones(2, 3, requires_grad=True)
    s = lib.tensor([[2.0, 3.0], [4.0, 5.0]], requires_grad=True)
    idx = lib.tensor([[0, 0], [2, 1]])
    r = a.scatter(1, idx, s)
    r2 = lib.scatter_add(a, 1, idx, s)
    r3 = lib.scatter(a, 1, idx, 9.0)
    out += [repr(r), repr(r2), repr(r3), r.grad_fn.name(), r2.grad_fn.name(), r3.grad_fn.name()]
    (r * lib.arange(6.0).view(2, 3)).sum().backward(retain_graph=True)
    out += [repr(a.grad), repr(s.grad)]
    a.grad = None
    s.grad = None
    (r2 * lib.arange(6.0).view(2, 3)).sum().backward()
    out += [repr(a.grad), repr(s.grad)]
    acc = lib.zeros(3).scatter_add_(0, lib.tensor([0, 2, 0, 0]), lib.tensor([1.0, 2.0, 3.0, 4.0]))
    out.append(repr(acc))
    out.append(repr(lib.zeros(2, 3).scatter(1, idx, lib.tensor([[1.0, 2.0], [3.0, 4.0]]),
                                            reduce="add")))
    return out


def _errors(lib: Any) -> list[str]:
    x = lib.zeros(3, 5)
    found = []
    for fn in (lambda: x.scatter(1, lib.tensor([[0, 9]]), 1.0),
               lambda: x.scatter(1, lib.zeros(4, 2, dtype=lib.int64), 1.0),
               lambda: x.scatter(1, lib.zeros(2, 6, dtype=lib.int64), lib.ones(2, 2)),
               lambda: x.scatter(1, lib.zeros(2, 2), 1.0),
               lambda: x.scatter(1, lib.zeros(2, dtype=lib.int64), 1.0),
               lambda: x.scatter_add(1, lib.zeros(2, 2, dtype=lib.int64),
                                     lib.ones(2, 2, dtype=lib.float64))):
        try:
            fn().tolist()  # a session raises once the op runs
        except RuntimeError as exc:
            found.append(str(exc).split("\ngradserve:")[0])
    return found


def test_scatter_as_torch(gradserve_lib: Any) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: reduce= is deprecated
        assert _story(gradserve_lib) == _story(torch)


def test_scatter_errors_as_torch(gradserve_lib: Any) -> None:
    assert _errors(gradserve_lib) == _errors(torch)


def test_one_hot_by_scatter_matches_one_hot(gradserve_lib: Any) -> None:
    y = np.array([3, 1, 0, 2, 3])
    t = gradserve_lib.zeros(5, 4).scatter_(1, gradserve_lib.tensor(y).unsqueeze(1), 1.0)
    assert np.array_equal(t.numpy(), np.eye(4, dtype=np.float32)[y])
