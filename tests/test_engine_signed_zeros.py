"""Signed zeros, NaN and infinities where torch's kernels pick one: relu's forward keeps -0.0
(clamp_min), clamp's gradients are where(predicate, grad, +0) (clamp_backward), not grad * mask
(which gave -0.0 for a negative grad and NaN for an infinite one)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import torch

VALUES = np.float32([-5, 0.5, -0.0, 0.0, np.nan, 3, 2, 1, np.inf, -np.inf])
GRADS = np.float32([-2, -2, -2, 2, -2, -2, np.inf, -np.inf, 1, -1])


def _same(mine: np.ndarray, ref: np.ndarray) -> None:
    assert mine.dtype == ref.dtype
    np.testing.assert_array_equal(mine, ref)
    assert (np.signbit(mine) == np.signbit(ref))[~np.isnan(ref)].all(), (mine, ref)


@pytest.mark.parametrize("case", ["scalars", "min_only", "max_only", "tensors"])
def test_clamp_gradients(case: str) -> None:
    got = []
    for lib in (ge, torch):
        x = lib.tensor(VALUES, requires_grad=True)
        lo = lib.tensor(np.float32([0] * 9 + [5]), requires_grad=True)
        hi = lib.tensor(np.float32([1] * 9 + [4]), requires_grad=True)
        args: dict[str, Any] = {"scalars": {"min": 0.0, "max": 1.0}, "min_only": {"min": 0.0},
                                "max_only": {"max": 1.0}, "tensors": {"min": lo, "max": hi}}[case]
        lib.clamp(x, **args).backward(lib.tensor(GRADS))
        grads = [x.grad.numpy()]
        if case == "tensors":
            grads += [lo.grad.numpy(), hi.grad.numpy()]
        got.append(grads)
    for mine, ref in zip(*got):
        _same(mine, ref)


def test_relu_forward_and_backward() -> None:
    got = []
    for lib in (ge, torch):
        x = lib.tensor(VALUES, requires_grad=True)
        y = lib.relu(x)
        y.backward(lib.tensor(GRADS))
        got.append((y.detach().numpy(), x.grad.numpy(),
                    lib.relu(lib.tensor(np.float32(-0.0))).numpy(),
                    lib.relu(lib.tensor(np.float32(-0.0)[None].repeat(40)[::2])).numpy()))
    for mine, ref in zip(*got):
        _same(mine, ref)
