"""torch.distributions.Normal / Bernoulli / Uniform and kl_divergence against torch, in process
and through a session: samples drawn from torch's stream after the same seed, rsample's
gradients, log_prob, entropy, cdf, moments, reprs and torch's validation errors."""

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


def _bits(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


def _both(lib: Any, run: Any) -> None:
    """run(t) with torch and with lib after the same seed: every returned tensor equal."""
    torch.manual_seed(7)
    theirs = run(torch)
    lib.manual_seed(7)
    ours = run(lib)
    assert len(ours) == len(theirs)
    for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        if isinstance(t, torch.Tensor):
            assert str(o.dtype) == str(t.dtype), i
            np.testing.assert_array_equal(_bits(o), _bits(t), err_msg=str(i))
        else:
            assert o == t, i


def test_normal(lib):
    def run(t: Any) -> list[Any]:
        loc = t.tensor([0.5, -1.0, 2.0], requires_grad=True)
        scale = t.tensor([1.5, 0.25, 3.0], requires_grad=True)
        d = t.distributions.Normal(loc, scale)
        s, r = d.sample((3,)), d.rsample((2,))
        lp = d.log_prob(r)
        kl = t.distributions.kl_divergence(d, t.distributions.Normal(0.0, 1.0))
        (lp.sum() + d.entropy().sum() + kl.sum() + d.cdf(t.tensor(0.5)).sum()).backward()
        return [s, r, lp, d.entropy(), kl, d.mean, d.stddev, d.variance, d.mode,
                d.cdf(t.tensor([0.0, 1.0, -3.0])), loc.grad, scale.grad, repr(d),
                tuple(d.batch_shape), s.requires_grad, r.requires_grad,
                type(lp.grad_fn).__name__ if t is torch else lp.grad_fn.name()]
    _both(lib, run)


def test_normal_of_numbers(lib):
    def run(t: Any) -> list[Any]:
        d = t.distributions.Normal(0.0, 2.0)
        return [d.sample(), d.sample((4,)), d.rsample((2, 2)), d.loc, d.log_prob(t.tensor(1.5)),
                repr(d), tuple(d.batch_shape),
                repr(t.distributions.Normal(t.tensor([0.0, 1.0]), 1.0))]
    _both(lib, run)


def test_bernoulli(lib):
    def run(t: Any) -> list[Any]:
        p = t.tensor([0.2, 0.7, 0.5])
        b = t.distributions.Bernoulli(probs=p)
        lg = t.distributions.Bernoulli(logits=t.tensor([[0.3, -2.0], [1.0, 0.0]]))
        return [b.sample(), b.sample((4,)), b.log_prob(t.tensor([1.0, 0.0, 1.0])), b.entropy(),
                b.logits, b.mean, b.variance, lg.probs, lg.sample((2,)),
                repr(b), repr(lg), repr(t.distributions.Bernoulli(0.3)),
                tuple(b.param_shape)]
    _both(lib, run)
    # binary_cross_entropy_with_logits of the engine rounds one element of these a bit apart
    # from torch's vectorised kernel: entropy to float32 rounding
    logits = [[0.3, -2.0], [1.0, 0.0]]
    np.testing.assert_allclose(
        _bits(lib.distributions.Bernoulli(logits=lib.tensor(logits)).entropy()),
        _bits(torch.distributions.Bernoulli(logits=torch.tensor(logits)).entropy()),
        rtol=2e-7, atol=0)


def test_uniform(lib):
    def run(t: Any) -> list[Any]:
        low = t.tensor([0.0, 1.0], requires_grad=True)
        u = t.distributions.Uniform(low, 3.0)
        r = u.rsample((3,))
        (r.sum() + u.entropy().sum()).backward()
        return [u.sample((2,)), r, u.log_prob(t.tensor([0.5, 2.0])), u.entropy(), u.mean,
                u.stddev, u.variance, u.cdf(t.tensor([0.5, 2.0])), low.grad, repr(u),
                repr(t.distributions.Uniform(-1.0, 1.0))]
    _both(lib, run)


@pytest.mark.parametrize("call", [
    lambda t: t.distributions.Normal(t.tensor([0.0, 1.0]), t.tensor([1.0, -1.0])),
    lambda t: t.distributions.Normal(t.tensor([0.0, float("nan")]), 1.0),
    lambda t: t.distributions.Uniform(2.0, 1.0),
    lambda t: t.distributions.Uniform(t.tensor([0.0, 3.0]), 2.0),
    lambda t: t.distributions.Uniform(0.0, 2.0).log_prob(t.tensor([5.0, 1.0])),
    lambda t: t.distributions.Bernoulli(probs=t.tensor([1.5])),
    lambda t: t.distributions.Bernoulli(),
    lambda t: t.distributions.Bernoulli(t.tensor([0.5])).log_prob(t.tensor([0.5])),
    lambda t: t.distributions.Normal(0.0, 1.0).log_prob(1.0),
    lambda t: t.distributions.Normal("a", 1.0),
])
def test_value_errors(lib, call):
    with pytest.raises(ValueError) as theirs:
        call(torch)
    with pytest.raises(ValueError) as ours:
        call(lib)
    assert str(ours.value) == str(theirs.value)


def test_kl_of_an_unknown_pair(lib):
    def call(t: Any) -> Any:
        return t.distributions.kl_divergence(t.distributions.Categorical(t.tensor([0.5, 0.5])),
                                             t.distributions.Normal(0.0, 1.0))
    with pytest.raises(NotImplementedError) as theirs:
        call(torch)
    with pytest.raises(NotImplementedError) as ours:
        call(lib)
    assert str(ours.value) == str(theirs.value)
    assert lib.distributions.kl.kl_divergence is lib.distributions.kl_divergence
    assert lib.distributions.normal.Normal is lib.distributions.Normal
