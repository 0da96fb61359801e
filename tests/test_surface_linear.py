"""nn.functional.linear composed as torch's at::linear composes it in process: one addmm for a
2-D input with a bias (grad_fn AddmmBackward0), a contiguous input with a 1-D (or
out_features-element) bias flattened to 2-D and viewed back (ViewBackward0 over
AddmmBackward0), matmul then add otherwise; the graph's node names, values, gradients and
errors as torch's. Through a session, which knows shapes but not always layouts without a round
trip: torch's graph for a 2-D input with a bias and for a 1-D input made from data (contiguous),
the same values and gradients otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def graph(fn: Any) -> Any:
    """The node names under grad_fn `fn`, depth first (None for an input without a node)."""
    if fn is None:
        return None
    return fn.name(), tuple(graph(child) for child, _ in fn.next_functions)


# (input shape, a transpose of the input's last two dims first?, bias shape or None)
CASES = [((4,), False, (3,)), ((2, 4), False, (3,)), ((5, 2, 4), False, (3,)),
         ((2, 2, 2, 4), False, (3,)), ((2, 4), False, None), ((5, 2, 4), False, None),
         ((4,), False, None), ((2, 4, 5), True, (3,)), ((5, 2, 4), False, (1, 3)),
         ((2, 4), False, (2, 3)), ((4, 2), True, (3,)), ((2, 2, 2, 4), False, (1, 3)),
         ((5, 2, 4), False, (1, 1)), ((5, 2, 4), False, (2, 3)), ((4,), False, (1,)),
         ((5, 2, 4), False, (3, 1)), ((5, 2, 4), False, (3, 1, 1)),
         ((2, 2, 2, 4), False, (1, 1, 3)), ((4, 2, 5), True, (1, 3))]


@pytest.mark.parametrize(("shape", "transposed", "bias_shape"), CASES)
def test_linear_builds_torchs_graph(lib, shape, transposed, bias_shape):
    rng = np.random.default_rng(3)
    x_np = rng.standard_normal(shape, dtype=np.float32)
    w_np = rng.standard_normal((3, 4), dtype=np.float32)
    b_np = None if bias_shape is None else rng.standard_normal(bias_shape, dtype=np.float32)

    def run(t: Any) -> tuple[Any, ...]:
        try:
            return build(t)
        except RuntimeError as exc:  # a session's error also names the line that recorded it
            return ("error", str(exc).split("\ngradserve:")[0])

    def build(t: Any) -> tuple[Any, ...]:
        x = t.tensor(x_np, requires_grad=True)
        inp = x.transpose(-1, -2) if transposed else x
        w = t.tensor(w_np, requires_grad=True)
        b = None if b_np is None else t.tensor(b_np, requires_grad=True)
        out = t.nn.functional.linear(inp, w, b)
        out.sum().backward()
        grads = [p.grad.numpy() for p in (x, w, b) if p is not None]
        return graph(out.grad_fn), out.detach().numpy(), grads

    want, got = run(torch), run(lib)
    if lib is not ge and not (len(shape) in (1, 2) and bias_shape is not None):
        # beyond a 2-D input, or a 1-D one made from data, with a bias, a session adds the bias
        # (linear's docstring): values
        if want[0] != "error":
            np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-6)
            for g, w in zip(got[2], want[2]):
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        return
    if want[0] == "error":
        assert got == want
        return
    # the nodes linear adds; below a matmul, gradserve's one matmul op is torch's top node only
    assert got[0][0] == want[0][0]
    if want[0][0] in ("AddmmBackward0", "ViewBackward0"):
        assert got[0] == want[0]
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-6)
    for g, w in zip(got[2], want[2]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
