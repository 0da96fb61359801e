"""Layer norm rounds exactly as torch's CPU kernels do (engine/ops_norm.py).

Every case runs `nn.functional.layer_norm` (and its backward) with torch and with the engine on
the same float32 (and some float64) values and compares the results bit for bit: the saved
moments (torch's `native_layer_norm` returns them), the output, and the gradients of input,
weight and bias.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import cascade, ops_norm
from tests.reference import raises_like, torch

F = ge.nn.functional
EPS = (1e-5, 1e-3, 1e-12, 0.1)


@pytest.fixture(autouse=True)
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """torch's intra-op thread count: it splits the rows of dgamma / dbeta's first pass."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(cascade, "THREADS", threads)
    yield threads


def _rows(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    scale, shift = rng.uniform(0.01, 100.0), rng.uniform(-5.0, 5.0)
    return (rng.standard_normal((m, n)) * scale + shift).astype(np.float32)


@pytest.mark.parametrize("start", range(1, 301, 50))
def test_moments_are_torchs_for_every_row_length(start: int):
    # lengths 1..300: every tail length, one to three chunks; then a few cascades deep
    rng = np.random.default_rng(start)
    lengths = list(range(start, start + 50)) + ([1000, 2051, 4099] if start == 1 else [])
    for n in lengths:
        x = _rows(rng, int(rng.integers(1, 65)), n)
        eps = EPS[n % 4]
        _, mean, rstd = torch.native_layer_norm(torch.from_numpy(x), [n], None, None, eps)
        m, var = ops_norm.row_moments(x)
        np.testing.assert_array_equal(m, mean.numpy().ravel(), err_msg=f"mean, N={n}")
        ours = np.float32(1) / np.sqrt(var + np.float32(eps))
        np.testing.assert_array_equal(ours, rstd.numpy().ravel(), err_msg=f"rstd, N={n}")


def _pair(a: np.ndarray | None, grad: bool) -> tuple[Any, Any]:
    if a is None:
        return None, None
    return ge.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
@pytest.mark.parametrize("shape, normalized", [((5, 1), (1,)), ((3, 7), (7,)), ((16, 9), (9,)),
                                               ((2, 4, 15), (15,)), ((4, 3, 8), (3, 8)),
                                               ((64, 31), (31,)), ((9, 100), (100,)),
                                               ((20, 5, 10, 10), (5, 10, 10)),
                                               ((3, 300), (300,)), ((1, 257), (257,))])
def test_forward_and_backward_are_torchs_bit_for_bit(shape: tuple[int, ...],
                                                     normalized: tuple[int, ...], affine: str):
    rng = np.random.default_rng(sum(shape) * 7 + len(affine))
    x = _rows(rng, 1, int(np.prod(shape))).reshape(shape)
    w = b = None
    if affine in ("both", "weight"):
        w = rng.standard_normal(normalized).astype(np.float32)
    if affine in ("both", "bias"):
        b = rng.standard_normal(normalized).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    eps = EPS[len(shape) % 4]
    (ex, tx), (ew, tw), (eb, tb) = _pair(x, True), _pair(w, True), _pair(b, True)
    ours = F.layer_norm(ex, normalized, ew, eb, eps)
    want = torch.nn.functional.layer_norm(tx, normalized, tw, tb, eps)
    assert ours.grad_fn.name() == want.grad_fn.name() == "NativeLayerNormBackward0"
    np.testing.assert_array_equal(ours.numpy(force=True), want.detach().numpy())
    ours.backward(ge.tensor(g))
    want.backward(torch.from_numpy(g))
    for name, e, t in (("input", ex, tx), ("weight", ew, tw), ("bias", eb, tb)):
        if t is not None:
            np.testing.assert_array_equal(e.grad.numpy(), t.grad.numpy(), err_msg=name)


@pytest.mark.parametrize("n", [3, 4, 5, 17, 64, 130, 301])
def test_float64_is_torchs_too(n: int):
    # 4 lanes, float64 fmas (`_fma64`), lanes reduced in order
    rng = np.random.default_rng(n)
    x = _rows(rng, 7, n).astype(np.float64) * np.pi
    w, b = rng.standard_normal(n), rng.standard_normal(n)
    g = rng.standard_normal((7, n))
    (ex, tx), (ew, tw), (eb, tb) = _pair(x, True), _pair(w, True), _pair(b, True)
    ours, want = F.layer_norm(ex, (n,), ew, eb), torch.nn.functional.layer_norm(tx, (n,), tw, tb)
    np.testing.assert_array_equal(ours.numpy(force=True), want.detach().numpy())
    ours.backward(ge.tensor(g))
    want.backward(torch.from_numpy(g))
    for e, t in ((ex, tx), (ew, tw), (eb, tb)):
        np.testing.assert_array_equal(e.grad.numpy(), t.grad.numpy())


def test_a_reduced_output_and_many_rows_split_over_threads():
    # the gradient of a mean (one value broadcast), and more rows than torch has threads
    rng = np.random.default_rng(5)
    x = _rows(rng, 301, 37)
    w = rng.standard_normal(37).astype(np.float32)
    (ex, tx), (ew, tw), (eb, tb) = _pair(x, True), _pair(w, True), _pair(w + 1, True)
    F.layer_norm(ex, (37,), ew, eb).mean().backward()
    torch.nn.functional.layer_norm(tx, (37,), tw, tb).mean().backward()
    for e, t in ((ex, tx), (ew, tw), (eb, tb)):
        np.testing.assert_array_equal(e.grad.numpy(), t.grad.numpy())


def test_double_backward_matches_torch_closely():
    # create_graph composes the formula from engine ops: torch's values, not its bits
    rng = np.random.default_rng(6)
    x, w, b = _rows(rng, 4, 6), rng.standard_normal(6).astype(np.float32), np.ones(6, np.float32)
    v = rng.standard_normal((4, 6)).astype(np.float32)
    got, want = [], []
    for lib, out in ((ge, got), (torch, want)):
        leaves = [lib.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = lib.nn.functional.layer_norm(leaves[0], (6,), leaves[1], leaves[2])
        grads = lib.autograd.grad((y * lib.tensor(v)).sum(), leaves, create_graph=True)
        total = (grads[0] * grads[0]).sum() + (grads[1] * lib.tensor(w)).sum()
        out += [np.asarray(a.detach().numpy()) for a in lib.autograd.grad(total, leaves[:2])]
    for a, c in zip(got, want):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)


def test_errors_are_torchs():
    x = np.ones((3, 4), np.float32)
    cases = [((4,), np.ones(3, np.float32), None), ((4,), None, np.ones((2, 2), np.float32)),
             ((5,), None, None), ((2, 3, 4), None, None), ((), None, None),
             ((4,), np.ones(4, np.float64), None)]
    for normalized, w, b in cases:
        ours = [None if a is None else ge.tensor(a) for a in (w, b)]
        theirs = [None if a is None else torch.tensor(a) for a in (w, b)]
        raises_like(lambda: F.layer_norm(ge.tensor(x), normalized, *ours),  # noqa: B023
                     lambda: torch.nn.functional.layer_norm(  # noqa: B023
                         torch.tensor(x), normalized, *theirs))  # noqa: B023
    raises_like(lambda: F.layer_norm(ge.tensor([[1, 2]]), (2,)),
                 lambda: torch.nn.functional.layer_norm(torch.tensor([[1, 2]]), (2,)))
