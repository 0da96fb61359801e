"""float32 sinh, cosh and atanh as torch computes them, bit for bit, in process and through a
session: SLEEF's xsinhf/xcoshf (u10, double-float e**|x|) and xatanhf (its double-float logk2f)
in torch's vector loop, glibc's sinhf/coshf/atanhf in its scalar tail (a tensor under two
vector steps, the last elements of others), and their gradients. numpy's float32 functions
differed in 1-37% of random inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

SPECIALS = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 89.0, 89.5, -89.5, 1e-30,
            -1e-30, 88.7, -88.7, 1e-4, -3.0, 20.0, 0.3, 1.0, -1.0, 0.9999999, -0.5]


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _bits(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy()).view(np.uint32)


@pytest.mark.parametrize("n", [1, 7, 33, 45, 1003])
@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0, 40.0])
@pytest.mark.parametrize("name", ["sinh", "cosh", "atanh"])
def test_values_and_gradients_are_torchs(lib, name, scale, n):
    data = (np.random.default_rng(n).standard_normal(n) * scale).astype(np.float32)
    if name == "atanh":
        data = np.tanh(data)
    x = torch.tensor(data, requires_grad=True)
    gx = lib.tensor(data, requires_grad=True)
    y, gy = getattr(torch, name)(x), getattr(lib, name)(gx)
    np.testing.assert_array_equal(_bits(gy), _bits(y))
    y.sum().backward()
    gy.sum().backward()
    np.testing.assert_array_equal(_bits(gx.grad), _bits(x.grad))


@pytest.mark.parametrize("repeat", [1, 3])  # all in the scalar tail; mostly vector lanes
@pytest.mark.parametrize("name", ["sinh", "cosh", "atanh"])
def test_special_values_are_torchs(lib, name, repeat):
    data = np.array(SPECIALS * repeat, np.float32)
    y = getattr(torch, name)(torch.tensor(data))
    gy = getattr(lib, name)(lib.tensor(data))
    np.testing.assert_array_equal(_bits(gy), _bits(y))  # NaN's bits too


def test_strided_and_in_place(lib):
    data = (np.random.default_rng(1).standard_normal((40, 6)) * 2).astype(np.float32)
    y = torch.sinh(torch.tensor(data).t())
    gy = lib.sinh(lib.tensor(data).t())
    np.testing.assert_array_equal(_bits(gy), _bits(y))
    t, g = torch.tensor(data), lib.tensor(data)
    t.cosh_()
    g.cosh_()
    np.testing.assert_array_equal(_bits(g), _bits(t))
