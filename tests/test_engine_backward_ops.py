"""Gradients that are ops of their own, as in torch (engine/ops_elementwise.py).

tanh's and sigmoid's gradients are torch's to the last bit: `tanh_backward`
(TanhBackwardBackward0) computes `grad * fma(-y, y, 1)` as torch's kernel does, `sigmoid_backward`
(SigmoidBackwardBackward0) `grad * (1 - y) * y`, and second and third derivatives run through
torch's formulas for those ops. hardsigmoid's, `hardsigmoid_backward`, has no derivative in torch: a
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


def _run(lib: Any, op: str, data: np.ndarray, weight: np.ndarray,
         transpose: bool) -> tuple[np.ndarray, ...]:
    x = lib.tensor(data, requires_grad=True)
    y = getattr(lib, op)((x.t() if transpose else x) * 1.5)
    (g,) = lib.autograd.grad((y * lib.tensor(weight)).sum(), x, create_graph=True)
    (gg,) = lib.autograd.grad((g * g).sum(), x, create_graph=True)
    (ggg,) = lib.autograd.grad((gg * gg).sum(), x)
    return y.detach().numpy(), g.detach().numpy(), gg.detach().numpy(), ggg.numpy()


# float64 sigmoid itself is numpy's, not torch's (its SLEEF double exp), so float32 only there
@pytest.mark.parametrize("op, dtype", [("tanh", np.float32), ("tanh", np.float64),
                                       ("sigmoid", np.float32)])
@pytest.mark.parametrize("transpose", [False, True])
def test_derivatives_bit_exact(op: str, dtype: Any, transpose: bool) -> None:
    rng = np.random.default_rng(7)
    data = (rng.standard_normal((131, 77)) * 2).astype(dtype)
    data.flat[:len(SPECIAL)] = SPECIAL
    weight = rng.standard_normal((77, 131) if transpose else (131, 77)).astype(dtype)
    mine, ref = _run(ge, op, data, weight, transpose), _run(torch, op, data, weight, transpose)
    for a, b in zip(mine, ref):
        _equal(a, b)


@pytest.mark.parametrize("op", ["tanh", "sigmoid"])
def test_graph_matches_torch(op: str) -> None:
    nodes = []
    for lib in (ge, torch):
        x = lib.tensor([0.3, -0.2], requires_grad=True)
        (g,) = lib.autograd.grad(getattr(x, op)(), x, lib.ones(2), create_graph=True)
        nodes.append((g.grad_fn.name(),
                      [(type(n).__name__ if n is None else n.name(), i)
                       for n, i in g.grad_fn.next_functions]))
    name = op.capitalize()
    assert nodes[0] == nodes[1] == (f"{name}BackwardBackward0",
                                    [("NoneType", 0), (f"{name}Backward0", 0)])


@pytest.mark.parametrize("op", ["tanh_backward", "sigmoid_backward"])
def test_direct_call_promotes_and_refuses_integers(op: str) -> None:
    g64, y32 = np.array([1.5, -2.0]), np.array([0.25, 0.75], np.float32)
    mine = getattr(ge, op)(ge.tensor(g64), ge.tensor(y32))
    ref = getattr(torch.ops.aten, op)(torch.tensor(g64), torch.tensor(y32))
    _equal(mine.numpy(), ref.numpy())
    ints = np.array([1, 2])
    raises_like(lambda: getattr(ge, op)(ge.tensor(ints), ge.tensor(ints)),
                lambda: getattr(torch.ops.aten, op)(torch.tensor(ints), torch.tensor(ints)))


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


def _names(fn: Any) -> list[str]:
    out: list[str] = []
    stack = [fn]
    while stack:
        f = stack.pop()
        if f is not None:
            out.append(f.name())
            stack.extend(n for n, _ in f.next_functions)
    return out


def test_silu_create_graph_records_torchs_composite() -> None:
    """Under create_graph silu's gradient is torch's infinitely_differentiable_silu_backward,
    op for op (its `1.0 - s` a SubBackward0, its `1.0 + ...` an AddBackward1); the values of
    first and second derivatives are torch's."""
    data = np.array([0.3, -0.7, 2.5, -4.0], np.float32)
    got = []
    for lib in (ge, torch):
        x = lib.tensor(data, requires_grad=True)
        (g,) = lib.autograd.grad(lib.nn.functional.silu(x).sum(), x, create_graph=True)
        (gg,) = lib.autograd.grad(g.sum(), x)
        got.append((_names(g.grad_fn), g.detach().numpy(), gg.numpy()))
    assert got[0][0] == got[1][0]
    _equal(got[0][1], got[1][1])
    _equal(got[0][2], got[1][2])


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 1.5, 0.5, float("inf")])
@pytest.mark.parametrize("dim", [None, 1])
def test_norm_create_graph_records_torchs_composite(p: float, dim: Any) -> None:
    """Under create_graph a norm's gradient is torch's norm_backward op for op (masked_fill_ at
    norm == 0, the max-norm's `grad / count * mask`), and over all dims its 0-d gradient is not
    reshaped: a gradient modified in place after it was saved is named with torch's shape (a
    Hessian by rows, `grad_y[i] = 0.` after `autograd.grad(..., grad_y, create_graph=True)`)."""
    data = np.array([[1.0, -2.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    got, again = [], []
    for lib in (ge, torch):
        x = lib.tensor(data, requires_grad=True)
        y = x.norm(p=p) if dim is None else x.norm(p=p, dim=dim)
        flat = y.reshape(-1)
        grad_y = lib.ones_like(flat)
        (g,) = lib.autograd.grad(flat, x, grad_y, create_graph=True)
        (gg,) = lib.autograd.grad((g * g).sum(), x, retain_graph=True)
        grad_y[0] = 2.0
        try:  # torch saves grad_y where its formula needs it: then the pass refuses
            (ggg,) = lib.autograd.grad(g.sum(), x)
            again.append((ggg + 0).numpy())
        except RuntimeError as e:
            again.append(str(e))
        # torch's ZeroTensor (a gradient known to be zero) refuses .numpy(): read it by copy
        got.append((_names(g.grad_fn), g.detach().numpy(), (gg + 0).numpy()))
    assert got[0][0] == got[1][0]
    _equal(got[0][1], got[1][1])
    _equal(got[0][2], got[1][2])
    if isinstance(again[1], str):
        assert again[0] == again[1]
    else:
        _equal(again[0], again[1])


ACTIVATIONS = {
    "silu": lambda lib, h: lib.nn.functional.silu(h),
    "mish": lambda lib, h: lib.nn.functional.mish(h),
    "tanh": lambda lib, h: lib.tanh(h),
    "sigmoid": lambda lib, h: lib.sigmoid(h),
    "tanh_log1p": lambda lib, h: lib.tanh(lib.log1p(h * h)),
    "x_div": lambda lib, h: h / (h * h + 1),
}


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_third_derivatives_through_composite_backwards(act: str) -> None:
    """A PINN's pattern: d2u/dt2 of a small net by create_graph, then its gradient with respect
    to the weights: the sums of a later pass run in the order of the nodes the recorded
    backwards made, so the rules make them in torch's order (its composites' operands right
    first, as GCC evaluates them; several inputs' gradients sorted by the inputs' names, as its
    generated nodes compute them)."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 3, 30, dtype=np.float32)[:, None]
    params = [(rng.standard_normal(s) * 0.7).astype(np.float32)
              for s in ((8, 1), (8,), (1, 8), (1,))]
    got = []
    for lib in (ge, torch):
        w = [lib.tensor(p, requires_grad=True) for p in params]
        x = lib.tensor(t).requires_grad_(True)
        f = lib.nn.functional
        u = f.linear(ACTIVATIONS[act](lib, f.linear(x, w[0], w[1])), w[2], w[3])
        (du,) = lib.autograd.grad(u, x, lib.ones_like(u), create_graph=True)
        (ddu,) = lib.autograd.grad(du, x, lib.ones_like(du), create_graph=True)
        grads = lib.autograd.grad((ddu * ddu).sum(), w[:3])
        got.append([g.numpy() for g in grads])
    for mine, ref in zip(*got):
        _equal(mine, ref)


def _order(lib: Any, fn: Any, n: int) -> list[int]:
    """The ranks of the sequence numbers of the nodes a recorded backward makes for each of
    fn's n inputs' gradients (which gradient's node was made first)."""
    xs = [lib.tensor([1.5], requires_grad=True) for _ in range(n)]
    g = lib.tensor([1.0], requires_grad=True)
    grads = lib.autograd.grad(fn(lib, *xs), xs, g, create_graph=True, allow_unused=True)
    nrs = [gr.grad_fn._sequence_nr() if lib is torch else gr.grad_fn.sequence_nr
           for gr in grads if gr is not None and gr.grad_fn is not None]
    return sorted(range(len(nrs)), key=nrs.__getitem__)


@pytest.mark.parametrize("case", ["mul", "div", "where", "clamp", "addcmul", "pow"])
def test_recorded_gradients_made_in_torchs_order(case: str) -> None:
    fn, n = {"mul": (lambda lib, a, b: a * b, 2), "div": (lambda lib, a, b: a / b, 2),
             "where": (lambda lib, a, b: lib.where(a > 0, a * 2, b * 3), 2),
             "clamp": (lambda lib, a, b, c: lib.clamp(a, b - 1, c + 1), 3),
             "addcmul": (lambda lib, a, b, c: lib.addcmul(a, b, c, value=2.0), 3),
             "pow": (lambda lib, a, b: a.abs() ** b, 2)}[case]
    assert _order(ge, fn, n) == _order(torch, fn, n)
