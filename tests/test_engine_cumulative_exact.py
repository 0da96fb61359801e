"""cumsum and cumprod round as torch's CPU kernels do: the running value is carried in double for
float32 (float for float16) and each element is that value rounded, and cumsum's backward is
torch's reversed cumulative sum, flip(cumsum(flip(grad))). A float32 running sum drifted from
torch's in the last bits after a few elements (a printed cumulative loss, a cumsum-based
sampler's thresholds)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import torch

CASES = [((1000,), 0), ((40, 30), 0), ((40, 30), 1), ((5, 1), 1), ((3, 4, 5), -1),
         ((3, 4, 5), 1), ((1,), 0), ((7,), 0), ((), 0)]


def _same(got: Any, ref: Any) -> None:
    got = got.detach().numpy() if hasattr(got, "detach") else np.asarray(got)
    ref = ref.detach().numpy()
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref, strict=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "dim"), CASES)
def test_cumsum_values_and_gradient_as_torch(shape: tuple[int, ...], dim: int,
                                             dtype: Any) -> None:
    rng = np.random.default_rng(len(shape) * 100 + sum(shape) + dim)
    a = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    t = torch.tensor(a, requires_grad=True)
    e = ge.tensor(a, requires_grad=True)
    yt, ye = t.cumsum(dim), e.cumsum(dim)
    _same(ye, yt)
    assert ye.grad_fn.name() == yt.grad_fn.name()
    yt.backward(torch.tensor(g))
    ye.backward(ge.tensor(g))
    _same(e.grad, t.grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "dim"), CASES)
def test_cumprod_values_as_torch(shape: tuple[int, ...], dim: int, dtype: Any) -> None:
    rng = np.random.default_rng(7 + sum(shape))
    a = (1 + 0.1 * rng.standard_normal(shape)).astype(dtype)
    _same(ge.tensor(a).cumprod(dim), torch.tensor(a).cumprod(dim))


def test_cumprod_past_float32_range_is_inf_without_warnings() -> None:
    a = np.full(100, 1e3, np.float32)
    _same(ge.tensor(a).cumprod(0), torch.tensor(a).cumprod(0))


def test_cumsum_second_order_as_torch() -> None:
    a = np.linspace(-1, 2, 12, dtype=np.float32).reshape(3, 4)
    t = torch.tensor(a, requires_grad=True)
    e = ge.tensor(a, requires_grad=True)
    (gt,) = torch.autograd.grad((t.cumsum(1) ** 3).sum(), t, create_graph=True)
    (ge_,) = ge.autograd.grad((e.cumsum(1) ** 3).sum(), e, create_graph=True)
    _same(ge_, gt)
    (ggt,) = torch.autograd.grad(gt.sum(), t)
    (gge,) = ge.autograd.grad(ge_.sum(), e)
    _same(gge, ggt)
