"""torch.diff, tensordot, block_diag, cartesian_prod, tril_indices/triu_indices and
trapezoid/trapz against torch, in process and through a session: values bit for bit, dtypes,
grad_fns, gradients and errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

X = [[1.0, 4.0, 9.0, 16.0], [2.0, -1.0, 0.5, 3.0]]
Y = [[0.5, 1.0], [2.0, -1.0], [1.5, 0.0], [3.0, 1.0]]

CASES = {
    "diff": lambda t, x, y: t.diff(x),
    "diff_method_n2": lambda t, x, y: x.diff(n=2, dim=1),
    "diff_dim0": lambda t, x, y: t.diff(x, dim=0),
    "diff_prepend_append": lambda t, x, y: t.diff(x, prepend=x[:, :1], append=x[:, :2] * 2),
    "diff_n0": lambda t, x, y: t.diff(x, n=0),
    "diff_n_past_length": lambda t, x, y: t.diff(x, n=5),
    "tensordot_1": lambda t, x, y: t.tensordot(x, y, dims=1),
    "tensordot_lists": lambda t, x, y: t.tensordot(x, y, dims=([1], [0])),
    "tensordot_2": lambda t, x, y: t.tensordot(x, x, dims=2),
    "tensordot_0": lambda t, x, y: t.tensordot(x[0], y[:, 0], dims=0),
    "tensordot_3d": lambda t, x, y: t.tensordot(x.reshape(2, 2, 2), y.reshape(2, 2, 2),
                                                dims=([0, 2], [1, 0])),
    "tensordot_broadcast_dim": lambda t, x, y: t.tensordot(x.reshape(2, 4, 1),
                                                           y.reshape(1, 4, 2), dims=([0], [0])),
    "block_diag": lambda t, x, y: t.block_diag(x, y, t.tensor(5.0), t.tensor([1.0, 2.0])),
    "cartesian_prod": lambda t, x, y: t.cartesian_prod(x[0], y[:, 0], x[1, :2]),
    "cartesian_prod_one": lambda t, x, y: t.cartesian_prod(x[0]),
    "trapezoid": lambda t, x, y: t.trapezoid(x),
    "trapezoid_dx": lambda t, x, y: t.trapezoid(x, dx=0.5, dim=0),
    "trapezoid_x": lambda t, x, y: t.trapezoid(x, t.tensor([0.0, 1.0, 3.0, 4.5])),
    "trapz_x_tensor": lambda t, x, y: t.trapz(x, x),
    "trapz_dx": lambda t, x, y: t.trapz(y, dx=2, dim=0),
}


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _arr(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_nodes_and_gradients(lib, name):
    call = CASES[name]
    x, y = torch.tensor(X, requires_grad=True), torch.tensor(Y, requires_grad=True)
    gx, gy = lib.tensor(X, requires_grad=True), lib.tensor(Y, requires_grad=True)
    out, gout = call(torch, x, y), call(lib, gx, gy)
    assert str(gout.dtype) == str(out.dtype)
    np.testing.assert_array_equal(_arr(gout), _arr(out))
    if name != "block_diag":  # torch's own node there (BlockDiagBackward0); ours CopySlices
        assert gout.grad_fn.name() == out.grad_fn.name()
    w = torch.linspace(0.5, 1.5, out.numel()).reshape(out.shape)
    (out * w).sum().backward()
    (gout * lib.tensor(w.numpy())).sum().backward()
    for ours, theirs in ((gx, x), (gy, y)):
        if theirs.grad is None:
            assert ours.grad is None
        else:
            np.testing.assert_array_equal(_arr(ours.grad), _arr(theirs.grad))


@pytest.mark.parametrize("call", [
    lambda t: t.diff(t.tensor([True, False, False, True])),
    lambda t: t.diff(t.tensor([[1, 5, 2], [0, 0, 7]]), dim=0),
    lambda t: t.block_diag(t.tensor([[1, 2]]), t.tensor([[0.5], [1.5]])),
    lambda t: t.block_diag(),
    lambda t: t.cartesian_prod(t.tensor([1, 2, 3]), t.tensor([4, 5])),
    lambda t: t.tril_indices(3, 4),
    lambda t: t.tril_indices(4, 3, 1),
    lambda t: t.tril_indices(3, 3, -1, dtype=t.int32),
    lambda t: t.triu_indices(4, 3, 1),
    lambda t: t.triu_indices(3, 5, -2),
    lambda t: t.triu_indices(0, 3),
])
def test_non_differentiable_values(lib, call):
    ours, theirs = call(lib), call(torch)
    assert str(ours.dtype) == str(theirs.dtype)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_array_equal(_arr(ours), _arr(theirs))


@pytest.mark.parametrize("call", [
    lambda t: t.diff(t.tensor(1.0)),
    lambda t: t.diff(t.zeros(3), n=-1),
    lambda t: t.diff(t.zeros(2, 3), prepend=t.zeros(3)),
    lambda t: t.diff(t.zeros(2, 3), append=t.zeros(3, 3)),
    lambda t: t.tensordot(t.zeros(2, 3), t.zeros(3, 2), dims=-1),
    lambda t: t.tensordot(t.zeros(2, 3), t.zeros(3, 2), dims=3),
    lambda t: t.tensordot(t.zeros(2, 3), t.zeros(2, 2), dims=([1], [0])),
    lambda t: t.block_diag(t.zeros(1, 1, 1)),
    lambda t: t.cartesian_prod(t.zeros(2, 2)),
    lambda t: t.trapezoid(t.zeros(2, 3), t.zeros(2)),
])
def test_errors(lib, call):
    with pytest.raises(RuntimeError) as theirs:
        call(torch)
    with pytest.raises(RuntimeError) as ours:
        call(lib)
    assert str(ours.value).split("\ngradserve:")[0] == str(theirs.value)
