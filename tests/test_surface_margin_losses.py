"""nn.functional's and nn's margin-ranking, hinge-embedding, cosine-embedding, triplet-margin,
soft-margin, multilabel-soft-margin, Poisson and Gaussian NLL losses against torch, in process
and through a session: values, grad_fns, gradients, reductions, reprs and errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

A = [[0.5, -1.2, 2.0], [0.1, 0.7, -0.3]]
B = [[1.5, 0.2, -2.0], [0.4, 0.7, 1.3]]
C = [[-0.5, 1.1, 0.0], [2.0, -0.6, 0.9]]
SIGN = [1.0, -1.0]
SIGNS = [[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]]
LABELS = [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
COUNTS = [[0.0, 1.0, 3.0], [2.0, 0.0, 5.0]]
POSITIVE = [[0.5, 1.2, 2.0], [0.1, 0.7, 0.3]]

# (call, its tensor inputs: (data, requires grad)); ours matches torch exactly unless "close"
CASES = {
    "margin_ranking": (lambda t, a, b, y: t.nn.functional.margin_ranking_loss(a[0], b[0], y),
                       [(A, True), (B, True), (SIGNS[0], False)]),
    "margin_ranking_none": (lambda t, a, b, y: t.nn.functional.margin_ranking_loss(
        a, b, y, margin=0.3, reduction="none"), [(A, True), (B, True), (SIGNS, False)]),
    "margin_ranking_module": (lambda t, a, b, y: t.nn.MarginRankingLoss(0.5, reduction="sum")(
        a, b, y), [(A, True), (B, True), (SIGNS, False)]),
    "hinge": (lambda t, a, y: t.nn.functional.hinge_embedding_loss(a, y),
              [(A, True), (SIGNS, False)]),
    "hinge_none": (lambda t, a, y: t.nn.HingeEmbeddingLoss(0.5, reduction="none")(a, y),
                   [(A, True), (SIGNS, False)]),
    "cosine": (lambda t, a, b, y: t.nn.functional.cosine_embedding_loss(a, b, y),
               [(A, True), (B, True), (SIGN, False)]),
    "cosine_module": (lambda t, a, b, y: t.nn.CosineEmbeddingLoss(0.1, reduction="none")(
        a, b, y), [(A, True), (C, True), (SIGN, False)]),
    "cosine_1d": (lambda t, a, b, y: t.nn.functional.cosine_embedding_loss(a[0], b[0], y[0]),
                  [(A, True), (B, True), (SIGN, False)]),
    "triplet": (lambda t, a, p, n: t.nn.functional.triplet_margin_loss(a, p, n),
                [(A, True), (B, True), (C, True)]),
    "triplet_module": (lambda t, a, p, n: t.nn.TripletMarginLoss(
        margin=0.5, p=1, swap=True, reduction="none")(a, p, n),
        [(A, True), (B, True), (C, True)]),
    "soft_margin": (lambda t, a, y: t.nn.functional.soft_margin_loss(a, y),
                    [(A, True), (SIGNS, False)]),
    "soft_margin_module": (lambda t, a, y: t.nn.SoftMarginLoss(reduction="none")(a, y),
                           [(A, True), (SIGNS, False)]),
    "multilabel": (lambda t, a, y: t.nn.functional.multilabel_soft_margin_loss(a, y),
                   [(A, True), (LABELS, False)]),
    "multilabel_module": (lambda t, a, y, w: t.nn.MultiLabelSoftMarginLoss(
        weight=w, reduction="none")(a, y), [(A, True), (LABELS, False), ([1.0, 0.5, 2.0], False)]),
    "poisson": (lambda t, a, y: t.nn.functional.poisson_nll_loss(a, y),
                [(A, True), (COUNTS, False)]),
    "poisson_full": (lambda t, a, y: t.nn.PoissonNLLLoss(log_input=False, full=True,
                                                         reduction="none")(a, y),
                     [(POSITIVE, True), (COUNTS, False)]),
    "gaussian": (lambda t, a, y, v: t.nn.functional.gaussian_nll_loss(a, y, v),
                 [(A, True), (B, False), (POSITIVE, True)]),
    "gaussian_module": (lambda t, a, y, v: t.nn.GaussianNLLLoss(full=True, reduction="sum")(
        a, y, v[:, :1]), [(A, True), (B, False), (POSITIVE, True)]),
    "gaussian_float_var": (lambda t, a, y: t.nn.functional.gaussian_nll_loss(
        a, y, 0.5, reduction="none"), [(A, True), (B, False)]),
    "gaussian_var_one_less_dim": (lambda t, a, y, v: t.nn.functional.gaussian_nll_loss(
        a, y, v[:, 0]), [(A, True), (B, False), (POSITIVE, True)]),
    "multi_margin": (lambda t, a, y: t.nn.functional.multi_margin_loss(a, y.long()),
                     [(A, True), ([2.0, 0.0], False)]),
    "multi_margin_p2_none": (lambda t, a, y: t.nn.functional.multi_margin_loss(
        a, y.long(), p=2, margin=0.5, reduction="none"), [(A, True), ([1.0, 2.0], False)]),
    "multi_margin_module": (lambda t, a, y, w: t.nn.MultiMarginLoss(weight=w, reduction="sum")(
        a, y.long()), [(A, True), ([2.0, 1.0], False), ([1.0, 0.5, 2.0], False)]),
    "multi_margin_unbatched": (lambda t, a, y: t.nn.functional.multi_margin_loss(
        a[0], y.long()[0], reduction="none"), [(A, True), ([1.0], False)]),
}
# torch's own kernels (SoftMarginLossBackward0, MultiMarginLossBackward0): here their
# arithmetic as ops, so the nodes differ
OWN_KERNELS = ("soft_margin", "multi_margin")


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _arr(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_node_and_gradients(lib, name):
    call, inputs = CASES[name]
    theirs = [torch.tensor(d, requires_grad=g) for d, g in inputs]
    ours = [lib.tensor(d, requires_grad=g) for d, g in inputs]
    y, gy = call(torch, *theirs), call(lib, *ours)
    if name.startswith(OWN_KERNELS):
        np.testing.assert_allclose(_arr(gy), _arr(y), rtol=3e-7)
    else:
        np.testing.assert_array_equal(_arr(gy), _arr(y))
        assert gy.grad_fn.name() == type(y.grad_fn).__name__
    w = torch.linspace(0.5, 1.5, y.numel()).reshape(y.shape)
    (y * w).sum().backward()
    (gy * lib.tensor(w.numpy())).sum().backward()
    for o, t in zip(ours, theirs, strict=True):
        if t.requires_grad:
            np.testing.assert_allclose(_arr(o.grad), _arr(t.grad), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda t: t.nn.MarginRankingLoss(0.5),
    lambda t: t.nn.HingeEmbeddingLoss(),
    lambda t: t.nn.CosineEmbeddingLoss(reduction="sum"),
    lambda t: t.nn.TripletMarginLoss(swap=True),
    lambda t: t.nn.SoftMarginLoss(),
    lambda t: t.nn.MultiLabelSoftMarginLoss(),
    lambda t: t.nn.PoissonNLLLoss(full=True),
    lambda t: t.nn.GaussianNLLLoss(eps=1e-3),
    lambda t: t.nn.MultiMarginLoss(p=2, margin=0.5),
])
def test_modules(lib, make):
    ours, theirs = make(lib), make(torch)
    assert repr(ours) == repr(theirs)
    assert ours.reduction == theirs.reduction
    assert isinstance(ours, lib.nn.Module)


@pytest.mark.parametrize("call", [
    lambda t: t.nn.functional.margin_ranking_loss(t.zeros(2), t.zeros(2, 1), t.zeros(2)),
    lambda t: t.nn.functional.cosine_embedding_loss(t.zeros(2, 3), t.zeros(2, 3),
                                                    t.zeros(2, 1)),
    lambda t: t.nn.functional.cosine_embedding_loss(t.zeros(2, 3), t.zeros(2, 3), t.zeros(())),
    lambda t: t.nn.functional.triplet_margin_loss(t.zeros(2, 3), t.zeros(2, 3), t.zeros(3)),
])
def test_runtime_errors(lib, call):
    with pytest.raises(RuntimeError) as theirs:
        call(torch)
    with pytest.raises(RuntimeError) as ours:
        call(lib)
    assert str(ours.value).split("\ngradserve:")[0] == str(theirs.value)


@pytest.mark.parametrize("call", [
    lambda t: t.nn.functional.hinge_embedding_loss(t.zeros(2), t.ones(2), reduction="avg"),
    lambda t: t.nn.functional.multilabel_soft_margin_loss(t.zeros(2, 2), t.ones(2, 2),
                                                          reduction="avg"),
    lambda t: t.nn.functional.poisson_nll_loss(t.zeros(2), t.ones(2), reduction="avg"),
    lambda t: t.nn.functional.gaussian_nll_loss(t.zeros(2), t.ones(2), -1.0),
    lambda t: t.nn.functional.gaussian_nll_loss(t.zeros(2), t.ones(2), t.tensor([1.0, -1.0])),
    lambda t: t.nn.functional.gaussian_nll_loss(t.zeros(2, 3), t.ones(2, 3), t.ones(3, 3)),
    lambda t: t.nn.functional.gaussian_nll_loss(t.zeros(2), t.ones(2), t.ones(2),
                                                reduction="avg"),
    lambda t: t.nn.TripletMarginLoss(margin=0.0),
    lambda t: t.nn.MultiMarginLoss(p=3),
    lambda t: t.nn.MultiMarginLoss(weight=t.ones(2, 2)),
    lambda t: t.nn.functional.multi_margin_loss(t.zeros(2, 3), t.tensor([0, 1]), p=3),
    lambda t: t.nn.functional.multi_margin_loss(t.zeros(2, 3), t.tensor([0, 1]),
                                                weight=t.ones(3, 1)),
])
def test_value_errors(lib, call):
    with pytest.raises(ValueError) as theirs:
        call(torch)
    with pytest.raises(ValueError) as ours:
        call(lib)
    assert str(ours.value) == str(theirs.value)
