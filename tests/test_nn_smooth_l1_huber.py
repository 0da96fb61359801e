"""smooth_l1_loss and huber_loss are engine ops with torch's backward nodes
(SmoothL1LossBackward0, HuberLossBackward0) and torch's kernels' rounding: values and gradients
bit for bit, double backward to rounding, beta=0 as torch's l1_loss, in process and through a
session."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from tests.reference import raises_like, torch

CASES = [("smooth_l1_loss", {"beta": 1.0}), ("smooth_l1_loss", {"beta": 0.25}),
         ("smooth_l1_loss", {"beta": 3.0}), ("huber_loss", {"delta": 1.0}),
         ("huber_loss", {"delta": 0.3}), ("huber_loss", {"delta": 2.5})]
NODES = {"smooth_l1_loss": "SmoothL1LossBackward0", "huber_loss": "HuberLossBackward0"}


def _data(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2.0).astype(np.float32)
    t = (rng.standard_normal(shape) * 2.0).astype(np.float32)
    t.reshape(-1)[:3] = x.reshape(-1)[:3] + np.float32(0.25)  # on the boundary for beta 0.25
    return x, t


def _run(lib: Any, name: str, kw: dict[str, Any], x: np.ndarray, t: np.ndarray,
         reduction: str) -> list[Any]:
    tx, tt = lib.tensor(x, requires_grad=True), lib.tensor(t, requires_grad=True)
    loss = getattr(lib.nn.functional, name)(tx, tt, reduction=reduction, **kw)
    gout = lib.ones_like(loss) * 0.7
    loss.backward(gout)
    return [loss, tx.grad, tt.grad, loss.grad_fn.name()]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("name", "kw"), CASES, ids=str)
def test_values_gradients_and_node_are_torchs(gradserve_lib: Any, name: str,
                                              kw: dict[str, Any], reduction: str):
    # 96 values: whole pairs of 8 or 16 lanes, all in the backward kernels' vector form
    x, t = _data((8, 12), len(name) + len(reduction))
    got, want = _run(gradserve_lib, name, kw, x, t, reduction), _run(torch, name, kw, x, t,
                                                                     reduction)
    assert got[3] == want[3] == NODES[name]
    for i, (a, b) in enumerate(zip(got[:3], want[:3])):
        a, b = np.asarray(a.detach().numpy()), b.detach().numpy()
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b), f"result {i}: {np.max(np.abs(a - b))}"


def test_modules_and_beta_zero_are_torchs(gradserve_lib: Any):
    x, t = _data((5, 4), 3)
    for make in (lambda L: L.nn.SmoothL1Loss(beta=0.5), lambda L: L.nn.HuberLoss(delta=0.5),
                 lambda L: L.nn.SmoothL1Loss(beta=0.0, reduction="sum"),
                 lambda L: L.nn.SmoothL1Loss(beta=0.0)):
        outs = []
        for lib in (gradserve_lib, torch):
            tx = lib.tensor(x, requires_grad=True)
            loss = make(lib)(tx, lib.tensor(t))
            loss.backward()
            outs.append((loss.grad_fn.name(), loss.item(), tx.grad.numpy()))
        assert outs[0][:2] == outs[1][:2]
        assert np.array_equal(outs[0][2], outs[1][2])


def test_broadcast_target_is_torchs(gradserve_lib: Any):
    x, t = _data((4, 3), 5)
    outs = []
    for lib in (gradserve_lib, torch):
        tx, tt = lib.tensor(x, requires_grad=True), lib.tensor(t[:1], requires_grad=True)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            loss = lib.nn.functional.huber_loss(tx, tt, delta=0.8)
        loss.backward()
        outs.append(([str(w.message) for w in seen], loss.item(), tx.grad.numpy(),
                     tt.grad.numpy(), loss.grad_fn.next_functions[1][0].name()))
    assert outs[0][0] == outs[1][0] and outs[0][1] == outs[1][1]
    assert outs[0][4] == outs[1][4] == "ExpandBackward0"
    for a, b in zip(outs[0][2:4], outs[1][2:4]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(("name", "kw"), CASES, ids=str)
def test_odd_sizes_are_torchs_to_rounding(name: str, kw: dict[str, Any]):
    # the kernels' scalar tails round the gradient in another order: a last-bit difference
    import gradserve.engine as ge

    x, t = _data((7, 13), 4)
    got, want = _run(ge, name, kw, x, t, "mean"), _run(torch, name, kw, x, t, "mean")
    assert got[0].item() == want[0].item()
    for a, b in zip(got[1:3], want[1:3]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=3e-7, atol=0)


@pytest.mark.parametrize(("name", "kw"), CASES[:2] + CASES[3:5], ids=str)
def test_double_backward_matches_torch(name: str, kw: dict[str, Any]):
    import gradserve.engine as ge

    rng = np.random.default_rng(8)
    x, t, v = (rng.standard_normal((4, 5)) for _ in range(3))
    res = []
    for lib in (ge, torch):
        tx, tt = lib.tensor(x, requires_grad=True), lib.tensor(t, requires_grad=True)
        loss = getattr(lib.nn.functional, name)(tx, tt, **kw)
        gx, gt = lib.autograd.grad(loss, (tx, tt), create_graph=True)
        total = (gx * lib.tensor(v)).sum() + (gt * gt).sum()
        res.append([a.detach().numpy() for a in lib.autograd.grad(total, (tx, tt))])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_errors_are_torchs(gradserve_lib: Any):
    x = np.ones((2, 3), np.float32)
    lib = gradserve_lib
    raises_like(lambda: lib.nn.functional.smooth_l1_loss(lib.tensor(x), lib.tensor(x),
                                                          beta=-1.0),
                lambda: torch.nn.functional.smooth_l1_loss(torch.tensor(x), torch.tensor(x),
                                                           beta=-1.0))
    for delta in (0.0, -2.0):
        raises_like(lambda: lib.nn.functional.huber_loss(  # noqa: B023
                        lib.tensor(x), lib.tensor(x), delta=delta),  # noqa: B023
                    lambda: torch.nn.functional.huber_loss(  # noqa: B023
                        torch.tensor(x), torch.tensor(x), delta=delta))  # noqa: B023
