"""torch.masked_select / Tensor.masked_select against torch: values, broadcasting, the 0-d
input, the gradient (summed back over broadcast dims), grad_fn and torch's errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 3


def _story(lib: Any) -> list[str]:
    x = lib.tensor(X, requires_grad=True)
    out = [repr(lib.masked_select(x.detach(), x.detach() > 1.5))]
    r = x.masked_select(lib.tensor([True, False, True, True]))
    out.append(repr(r))
    (r * lib.arange(float(r.numel()))).sum().backward()
    out.append(repr(x.grad))
    s = lib.tensor(2.0, requires_grad=True)
    picked = lib.masked_select(s, lib.tensor([[True, False], [True, True]]))
    picked.sum().backward()
    out += [repr(picked), repr(s.grad), repr(lib.masked_select(lib.tensor(5.0), lib.tensor(False)))]
    return out


def _errors(lib: Any) -> list[tuple[str, str]]:
    x = lib.zeros(2, 3)
    found = []
    for mask in (lib.tensor([1, 0, 1]), lib.tensor([[True], [False], [True]])):
        try:
            lib.masked_select(x, mask).tolist()  # a session raises once it runs
        except RuntimeError as exc:
            found.append((type(exc).__mro__[-3].__name__, str(exc).split("\ngradserve:")[0]))
    return found


def test_masked_select_as_torch(gradserve_lib: Any) -> None:
    assert _story(gradserve_lib) == _story(torch)


def test_masked_select_errors_as_torch(gradserve_lib: Any) -> None:
    assert [m for _, m in _errors(gradserve_lib)] == [m for _, m in _errors(torch)]
