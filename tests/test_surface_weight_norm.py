"""nn.utils.weight_norm / remove_weight_norm (torch's hooks-based API) against torch, in
process and through a session: the parameters it makes, their values, the forward and the
gradients (to float32 rounding: torch's fused weight-norm kernel), its warning and errors."""

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


def _arr(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


def _close(ours: Any, theirs: Any) -> None:
    np.testing.assert_allclose(_arr(ours), _arr(theirs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make, dim, x", [
    (lambda t: t.nn.Linear(3, 2), 0, [[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]),
    (lambda t: t.nn.Linear(4, 3), None, [[1.0, 2.0, -1.0, 0.25]]),
    (lambda t: t.nn.Linear(4, 3), 1, [[1.0, 2.0, -1.0, 0.25]]),
    (lambda t: t.nn.Conv1d(2, 3, 2), 0, [[[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]]),
    (lambda t: t.nn.Conv1d(2, 3, 2), 1, [[[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]]),
])
def test_weight_norm_training_step(lib, make, dim, x):
    torch.manual_seed(0)
    with pytest.warns(FutureWarning) as theirs_w:
        theirs = torch.nn.utils.weight_norm(make(torch), dim=dim)
    lib.manual_seed(0)
    with pytest.warns(FutureWarning) as ours_w:
        ours = lib.nn.utils.weight_norm(make(lib), dim=dim)
    assert str(ours_w[0].message) == str(theirs_w[0].message)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for (n, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        assert tuple(q.shape) == tuple(p.shape), n
        _close(q, p)
    y, gy = theirs(torch.tensor(x)), ours(lib.tensor(x))
    _close(gy, y)
    (y * y).sum().backward()
    (gy * gy).sum().backward()
    for (n, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        np.testing.assert_allclose(_arr(q.grad), _arr(p.grad), rtol=1e-5, atol=1e-5,
                                   err_msg=n)
    lib.nn.utils.remove_weight_norm(ours)
    torch.nn.utils.remove_weight_norm(theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert isinstance(ours.weight, lib.nn.Parameter)
    _close(ours.weight, theirs.weight)


def test_errors(lib):
    for t in (torch, lib):
        with pytest.warns(FutureWarning):
            t.nn.utils.weight_norm(t.nn.Linear(2, 2))
    messages = []
    for t in (torch, lib):
        m = t.nn.Linear(2, 2)
        with pytest.warns(FutureWarning):
            t.nn.utils.weight_norm(m)
            with pytest.raises(RuntimeError) as twice:
                t.nn.utils.weight_norm(m)
        with pytest.raises(ValueError) as missing:
            t.nn.utils.remove_weight_norm(m, "bias")
        messages.append((str(twice.value), str(missing.value)))
    assert messages[0] == messages[1]
