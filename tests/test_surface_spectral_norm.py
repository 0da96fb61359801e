"""nn.utils.spectral_norm / remove_spectral_norm (torch's hooks-based API) against torch, in
process and through a session: the parameters and buffers it makes (u and v drawn as torch
draws them), the power iteration in training and not in eval, values and gradients bit for
bit, removal and errors."""

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


def _equal(ours: Any, theirs: Any, exact: bool, err_msg: str = "") -> None:
    if exact:
        np.testing.assert_array_equal(ours, theirs, err_msg=err_msg)
    else:  # the engine's conv1d rounds apart from torch's kernel here, spectral norm or not
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=err_msg)


def _state(t: Any, m: Any) -> list[np.ndarray]:
    return [_arr(v) for v in m.state_dict().values()]


@pytest.mark.parametrize("make, kwargs, x", [
    (lambda t: t.nn.Linear(3, 2), {}, [[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]),
    (lambda t: t.nn.Linear(4, 3), {"n_power_iterations": 3, "eps": 1e-6},
     [[1.0, 2.0, -1.0, 0.25]]),
    (lambda t: t.nn.Conv1d(2, 3, 2), {}, [[[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]]),
    (lambda t: t.nn.ConvTranspose1d(2, 3, 2), {}, [[[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]]),
    (lambda t: t.nn.Linear(3, 2), {"dim": 1}, [[1.0, 2.0, -1.0]]),
])
def test_training_eval_and_removal(lib, make, kwargs, x):
    torch.manual_seed(0)
    theirs = torch.nn.utils.spectral_norm(make(torch), **kwargs)
    lib.manual_seed(0)
    ours = lib.nn.utils.spectral_norm(make(lib), **kwargs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    exact = "Conv" not in type(theirs).__name__
    for a, b in zip(_state(lib, ours), _state(torch, theirs), strict=True):
        np.testing.assert_array_equal(a, b)
    for _ in range(2):  # each training forward runs the power iteration
        y, gy = theirs(torch.tensor(x)), ours(lib.tensor(x))
        _equal(_arr(gy), _arr(y), exact)
        (y * y).sum().backward()
        (gy * gy).sum().backward()
    for (n, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        _equal(_arr(q.grad), _arr(p.grad), exact, err_msg=n)
    for a, b in zip(_state(lib, ours), _state(torch, theirs), strict=True):
        _equal(a, b, exact)
    ours.eval()
    theirs.eval()
    _equal(_arr(ours(lib.tensor(x))), _arr(theirs(torch.tensor(x))), exact)
    lib.nn.utils.remove_spectral_norm(ours)
    torch.nn.utils.remove_spectral_norm(theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _equal(_arr(ours.weight), _arr(theirs.weight), exact)


def test_errors(lib):
    messages = []
    for t in (torch, lib):
        m = t.nn.utils.spectral_norm(t.nn.Linear(2, 2))
        with pytest.raises(RuntimeError) as twice:
            t.nn.utils.spectral_norm(m)
        with pytest.raises(ValueError) as missing:
            t.nn.utils.remove_spectral_norm(m, "bias")
        with pytest.raises(ValueError) as iterations:
            t.nn.utils.spectral_norm(t.nn.Linear(2, 2), n_power_iterations=0)
        messages.append((str(twice.value), str(missing.value), str(iterations.value)))
    assert messages[0] == messages[1]
