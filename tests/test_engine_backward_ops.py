"""Gradients that are ops of their own, as in torch (engine/ops_elementwise.py).

tanh's gradient is torch's to the last bit: `tanh_backward` (TanhBackwardBackward0) computes
`grad * fma(-y, y, 1)` as torch's kernel does, and a second derivative runs through torch's
formulas for that op. hardsigmoid's, `hardsigmoid_backward`, has no derivative in torch: a
gradient recorded under create_graph has grad_fn NotImplemented and a backward through it fails
with torch's message."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import raises_like, torch

SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 1e-300, 0.5, -0.5, 9.0, -9.0, 20.0, np.inf, -np.inf, np.nan]


def _equal(mine: np.ndarray, ref: np.ndarray) -> None:
    assert mine.dtype == ref.dtype and mine.shape == ref.shape
    differ = (mine != ref) & ~(np.isnan(mine) & np.isnan(ref))
    assert not differ.any(), f"{int(differ.sum())} of {mine.size} differ"


def _run(lib: Any, data: np.ndarray, weight: np.ndarray,
         transpose: bool) -> tuple[np.ndarray, ...]:
    x = lib.tensor(data, requires_grad=True)
    y = lib.tanh((x.t() if transpose else x) * 1.5)
    (g,) = lib.autograd.grad((y * lib.tensor(weight)).sum(), x, create_graph=True)
    (gg,) = lib.autograd.grad((g * g).sum(), x)
    return y.detach().numpy(), g.detach().numpy(), gg.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose", [False, True])
def test_first_and_second_derivatives_bit_exact(dtype: Any, transpose: bool) -> None:
    rng = np.random.default_rng(7)
    data = (rng.standard_normal((131, 77)) * 2).astype(dtype)
    data.flat[:len(SPECIAL)] = SPECIAL
    weight = rng.standard_normal((77, 131) if transpose else (131, 77)).astype(dtype)
    for mine, ref in zip(_run(ge, data, weight, transpose), _run(torch, data, weight, transpose)):
        _equal(mine, ref)


def test_graph_matches_torch() -> None:
    nodes = []
    for lib in (ge, torch):
        x = lib.tensor([0.3, -0.2], requires_grad=True)
        (g,) = lib.autograd.grad(x.tanh(), x, lib.ones(2), create_graph=True)
        nodes.append((g.grad_fn.name(),
                      [(type(n).__name__ if n is None else n.name(), i)
                       for n, i in g.grad_fn.next_functions]))
    assert nodes[0] == nodes[1] == ("TanhBackwardBackward0",
                                    [("NoneType", 0), ("TanhBackward0", 0)])


def test_direct_call_promotes_and_refuses_integers() -> None:
    g64, y32 = np.array([1.5, -2.0]), np.array([0.25, 0.75], np.float32)
    mine = ge.tanh_backward(ge.tensor(g64), ge.tensor(y32))
    ref = torch.ops.aten.tanh_backward(torch.tensor(g64), torch.tensor(y32))
    _equal(mine.numpy(), ref.numpy())
    ints = np.array([1, 2])
    raises_like(lambda: ge.tanh_backward(ge.tensor(ints), ge.tensor(ints)),
                lambda: torch.ops.aten.tanh_backward(torch.tensor(ints), torch.tensor(ints)))


def test_hardsigmoid_second_derivative_refused_as_torch() -> None:
    data = np.array([0.5, 1.0, -4.0, 3.0, -3.0, 2.9], np.float32)
    got = []
    for lib in (ge, torch):
        x = lib.tensor(data, requires_grad=True)
        (g,) = lib.autograd.grad(lib.nn.functional.hardsigmoid(x).sum(), x, create_graph=True)
        got.append((g.detach().numpy(), g.grad_fn.name()))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    assert got[0][1] == got[1][1] == "torch::autograd::NotImplemented"

    def second(lib: Any) -> Any:
        x = lib.tensor(data, requires_grad=True)
        (g,) = lib.autograd.grad(lib.nn.functional.hardsigmoid(x).sum(), x, create_graph=True)
        return g.sum().backward()

    raises_like(lambda: second(ge), lambda: second(torch))
