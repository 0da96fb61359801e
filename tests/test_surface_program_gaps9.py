"""Gaps found by running public PyTorch programs unchanged through a session (round 9).

pytorch/examples' forward-forward MNIST overlays a label on each row with
`x_[range(x.shape[0]), y] = x.max()`: torch reads a range (or a tuple) among an index's items as
a list of indices. Each case runs on torch and on gradserve (in process and through a session)
and compares.
"""

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


def _data(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _message(exc: BaseException) -> str:
    return str(exc).split("\ngradserve:")[0]


# --- a range or a tuple among an index's items (pytorch/examples mnist_forward_forward) --------

SEQUENCE_INDICES = [
    pytest.param(lambda t: range(2), id="range"),
    pytest.param(lambda t: range(0), id="empty-range"),
    pytest.param(lambda t: (range(3), [0, 1, 2]), id="range-and-list"),
    pytest.param(lambda t: ((0, 2),), id="tuple-item"),
    pytest.param(lambda t: ((0, 2), 1), id="tuple-and-int"),
    pytest.param(lambda t: (slice(None), range(1, 4, 2)), id="slice-and-range"),
    pytest.param(lambda t: (range(3), t.tensor([3, 0, 1])), id="range-and-tensor"),
]


@pytest.mark.parametrize("index", SEQUENCE_INDICES)
def test_a_sequence_among_the_index_items_reads_as_torchs(lib, index):
    def run(t: Any) -> tuple[Any, ...]:
        x = t.tensor(_data((3, 4), 0), requires_grad=True)
        y = x[index(t)]
        (y * y).sum().backward()
        return y.detach().numpy(), x.grad.numpy(), y.grad_fn.name()

    got, want = run(lib), run(torch)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]


@pytest.mark.parametrize("index", SEQUENCE_INDICES)
def test_assigning_through_a_sequence_among_the_index_items_is_torchs(lib, index):
    def run(t: Any) -> np.ndarray:
        x = t.tensor(_data((3, 4), 1))
        x[index(t)] = x.max()
        return x.numpy()

    np.testing.assert_array_equal(run(lib), run(torch))


def test_a_range_of_strings_position_still_refuses_as_torchs(lib):
    def run(t: Any) -> Any:
        return t.zeros(3, 4)[range(2), "a"]

    with pytest.raises(TypeError) as theirs:
        run(torch)
    with pytest.raises(TypeError) as ours:
        run(lib)
    assert _message(ours.value) == _message(theirs.value)


def test_forward_forward_label_overlay_is_torchs(lib):
    """The program's own overlay: the first 10 pixels zeroed, the label's pixel set to the max."""
    def run(t: Any) -> np.ndarray:
        x = t.tensor(_data((5, 16), 2))
        y = t.tensor([3, 1, 4, 1, 5])
        x_ = x.clone()
        x_[:, :10] *= 0.0
        x_[range(x.shape[0]), y] = x.max()
        return x_.numpy()

    np.testing.assert_array_equal(run(lib), run(torch))
