"""torch.sort / topk / argsort (functions and methods) against torch, in process and through a
session, on inputs without ties: torch's values, indices, return types and gradients (grad_fn
GatherBackward0 where torch's is SortBackward0 / TopkBackward0); NaN placed as torch places it;
ties in index order (torch's stable order); torch's errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _data() -> np.ndarray:
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    x[1, 2] = np.nan
    return x


CASES = [
    lambda t, x: t.sort(x), lambda t, x: t.sort(x, 0), lambda t, x: t.sort(x, descending=True),
    lambda t, x: x.sort(dim=0, descending=True), lambda t, x: t.topk(x, 3),
    lambda t, x: t.topk(x, 2, dim=0), lambda t, x: x.topk(4, largest=False),
    lambda t, x: t.topk(x.flatten(), 5), lambda t, x: x.topk(k=2, dim=1, largest=True),
]


@pytest.mark.parametrize("case", CASES)
def test_values_indices_and_gradient(lib, case):
    data = _data()
    x = torch.tensor(data, requires_grad=True)
    gx = lib.tensor(data, requires_grad=True)
    out, gout = case(torch, x), case(lib, gx)
    assert type(gout).__name__ == type(out).__name__ or repr(gout).split("(")[0] == \
        repr(out).split("(")[0]
    assert repr(gout).split("\n")[0] == repr(out).split("\n")[0]  # torch.return_types.<name>(
    np.testing.assert_array_equal(gout.indices.numpy(), out.indices.numpy())
    np.testing.assert_array_equal(gout.values.detach().numpy(), out.values.detach().numpy())
    w = torch.linspace(-1, 1, out.values.numel()).reshape(out.values.shape)
    torch.nan_to_num(out.values * w).sum().backward()
    lib.where(gout.values == gout.values, gout.values * lib.tensor(w.numpy()), 0.0).sum() \
        .backward()
    np.testing.assert_array_equal(np.nan_to_num(gx.grad.numpy()), np.nan_to_num(x.grad.numpy()))


@pytest.mark.parametrize("kwargs", [{}, {"dim": 0}, {"descending": True},
                                    {"dim": 0, "descending": True, "stable": True}])
def test_argsort(lib, kwargs):
    data = _data()
    np.testing.assert_array_equal(lib.argsort(lib.tensor(data), **kwargs).numpy(),
                                  torch.argsort(torch.tensor(data), **kwargs).numpy())


def test_ties_in_index_order(lib):
    data = [1.0, 0.0, 1.0, -0.0, 1.0, 0.0]
    expected = torch.sort(torch.tensor(data), stable=True)
    got = lib.sort(lib.tensor(data), stable=True)
    np.testing.assert_array_equal(got.indices.numpy(), expected.indices.numpy())
    np.testing.assert_array_equal(got.values.numpy().view(np.int32),
                                  expected.values.numpy().view(np.int32))


def test_topk_k_out_of_range(lib):
    with pytest.raises(RuntimeError) as theirs:
        torch.topk(torch.zeros(3), 4)
    with pytest.raises(RuntimeError) as ours:
        lib.topk(lib.zeros(3), 4)
    assert str(ours.value).split("\ngradserve:")[0] == str(theirs.value)
