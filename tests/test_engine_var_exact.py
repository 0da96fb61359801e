"""var and std round as torch's CPU kernels do (aten/src/ATen/native/ReduceOps.cpp): one result
is the sum of squared deviations from torch's own mean, in double, in memory order; several are
Welford's updates in double per result; the quotient (and std's square root) is rounded to the
dtype last. numpy's float32 two-pass variance differed in the last bits in most cases (a
standardised input `(x - x.mean()) / x.std()` then differs everywhere)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import torch

SHAPES = [(37,), (64, 33), (5, 70), (8, 3, 19), (130, 10), (3000,), (1,), (4, 1, 6), ()]
DIMS: list[Any] = [None, 0, -1, (0, 1), (1,)]


def _cases() -> list[tuple[tuple[int, ...], Any]]:
    return [(s, d) for s in SHAPES for d in DIMS if d is None or len(s) >= 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "dims"), _cases())
def test_var_and_std_as_torch(shape: tuple[int, ...], dims: Any, dtype: Any) -> None:
    rng = np.random.default_rng(sum(shape) + len(shape))
    a = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    t, e = torch.tensor(a), ge.tensor(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # degrees of freedom <= 0: both warn
        for name in ("var", "std"):
            for correction in (1, 0):
                for keepdim in (False, True):
                    kw = {"correction": correction}
                    if dims is not None:
                        kw["keepdim"] = keepdim
                        ref = getattr(t, name)(dims, **kw).numpy()
                        got = getattr(e, name)(dims, **kw).numpy()
                    else:
                        ref, got = getattr(t, name)(**kw).numpy(), getattr(e, name)(**kw).numpy()
                    assert got.shape == ref.shape and got.dtype == ref.dtype
                    np.testing.assert_array_equal(got, ref, strict=True)


def test_var_of_a_transposed_view_and_a_standardised_input() -> None:
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((50, 40)) * 2).astype(np.float32)
    t, e = torch.tensor(a), ge.tensor(a)
    np.testing.assert_array_equal(e.t().var().numpy(), t.t().var().numpy())
    np.testing.assert_array_equal(((e - e.mean()) / e.std()).numpy(),
                                  ((t - t.mean()) / t.std()).numpy())


def test_std_warning_names_std() -> None:
    with pytest.warns(UserWarning, match=r"^std\(\): degrees of freedom is <= 0"):
        ge.tensor([1.0]).std()
