"""nn.functional.one_hot against torch, in process and through a session: int64 rows, the
inferred class count, empty inputs, and torch's checks in torch's order with its texts."""

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


@pytest.mark.parametrize(("values", "num_classes"), [
    ([0, 2, 1], -1), ([0, 2, 1], 5), ([[1], [0]], 3), (3, 4), ([[0, 1], [3, 3]], -1),
])
def test_values_dtype_and_shape(lib, values, num_classes):
    expected = torch.nn.functional.one_hot(torch.tensor(values), num_classes)
    got = lib.nn.functional.one_hot(lib.tensor(values), num_classes)
    assert str(got.dtype) == str(expected.dtype) == "torch.int64"
    assert not got.requires_grad
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_empty_input(lib):
    got = lib.nn.functional.one_hot(lib.zeros(0, 2, dtype=lib.int64), 3)
    expected = torch.nn.functional.one_hot(torch.zeros(0, 2, dtype=torch.int64), 3)
    assert tuple(got.shape) == tuple(expected.shape) == (0, 2, 3)


@pytest.mark.parametrize("case", [
    lambda t: t.nn.functional.one_hot(t.tensor([0.0, 1.0])),
    lambda t: t.nn.functional.one_hot(t.tensor([1], dtype=t.int32)),
    lambda t: t.nn.functional.one_hot(t.tensor([-1, 0])),
    lambda t: t.nn.functional.one_hot(t.tensor([-1, 0]), 3),
    lambda t: t.nn.functional.one_hot(t.tensor([0, 2, 1]), 2),
    lambda t: t.nn.functional.one_hot(t.tensor([0, 2, 1]), -2),
    lambda t: t.nn.functional.one_hot(t.zeros(0, dtype=t.int64)),
])
def test_errors_are_torchs(lib, case):
    with pytest.raises(RuntimeError) as theirs:
        case(torch)
    with pytest.raises(RuntimeError) as ours:
        case(lib)
    assert str(ours.value).split("\ngradserve:")[0] == str(theirs.value)
