"""torch's C++ Scalar overloads inside its composite ops (add/mul/div(Tensor, Scalar): grad_fn
AddBackward1, MulBackward1, DivBackward1, where Python's `x * 2` gives MulBackward0): the graphs
of cross_entropy with class probabilities and label smoothing, node for node as torch's, in
process and through a session."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import torch

RNG = np.random.default_rng(3)
LOGITS = RNG.standard_normal((4, 3)).astype(np.float32)
PROBS = RNG.dirichlet([1.0, 1.0, 1.0], 4).astype(np.float32)
LABELS = np.array([0, 2, 1, 0])


def _graph(out: Any) -> list[str]:
    """The node names behind `out`, breadth first."""
    names, queue, seen = [], [out.grad_fn], set()
    while queue:
        node = queue.pop(0)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.append(node.name() if hasattr(node, "name") else type(node).__name__)
        queue.extend(f for f, _ in node.next_functions)
    return names


def _run(lib: Any, target: str, smoothing: float, reduction: str) -> tuple[list[str], Any, Any]:
    x = lib.tensor(LOGITS, requires_grad=True)
    t = (lib.tensor(PROBS, requires_grad=True) if target == "probs" else lib.tensor(LABELS))
    out = lib.nn.functional.cross_entropy(x, t, label_smoothing=smoothing, reduction=reduction)
    out.sum().backward()
    grads = [np.array(v.grad.numpy()) for v in (x, t) if v.requires_grad]
    return _graph(out), np.array(out.detach().numpy()), grads


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("target", ["probs", "labels"])
def test_cross_entropy_graph_names_torchs_scalar_overloads(gradserve_lib: Any, target: str,
                                                           smoothing: float, reduction: str):
    names, value, grads = _run(gradserve_lib, target, smoothing, reduction)
    want_names, want_value, want_grads = _run(torch, target, smoothing, reduction)
    assert names == want_names
    np.testing.assert_allclose(value, want_value, rtol=1e-6, atol=1e-7)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
