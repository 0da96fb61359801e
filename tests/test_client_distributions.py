"""A session's torch.distributions.Categorical against torch's: parameters, samples drawn from
the same seed, log_prob and its gradient, entropy, shapes, repr and the validation errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def session(gradserve_client: Any) -> Any:
    with gradserve_client.session() as s:
        yield s


def _error(fn: Any) -> tuple[str, str]:
    try:
        fn()
    except Exception as exc:  # a session's error also names the line that recorded it
        return type(exc).__name__, str(exc).split("\ngradserve:")[0]
    raise AssertionError("no error")


def _from_probs(t: Any) -> list[Any]:
    t.manual_seed(0)
    p = t.tensor([[0.25, 0.5, 0.25], [0.125, 0.125, 0.75]], requires_grad=True)
    d = t.distributions.Categorical(probs=p * 2)
    shown = [repr(d), tuple(d.batch_shape), tuple(d.event_shape), tuple(d.param_shape)]
    s1 = d.sample()
    s2 = d.sample((4,))
    lp = d.log_prob(t.tensor([2, 0]))
    ent = d.entropy()
    (lp.sum() + ent.sum()).backward()
    return shown + [repr(d), s1.tolist(), s2.tolist(), tuple(s2.shape), lp.tolist(),
                    lp.grad_fn.name(), ent.tolist(), p.grad.tolist(), d.mode.tolist(),
                    repr(d.probs)]


def test_categorical_from_probs_matches_torch(session):
    assert _from_probs(session) == _from_probs(torch)


def _from_logits(t: Any) -> list[Any]:
    t.manual_seed(3)
    logits = t.tensor([0.5, -1.0, 2.0, 0.0], requires_grad=True)
    d = t.distributions.Categorical(logits=logits)
    a = d.sample()
    lp = d.log_prob(a)
    (-lp * 3.0).backward()
    return [repr(d), tuple(d.batch_shape), a.tolist(), d.sample((2, 3)).tolist(),
            lp.item(), logits.grad.tolist(), d.entropy().item(), d.probs.tolist(),
            repr(d)]


def test_categorical_from_logits_matches_torch(session):
    got, want = _from_logits(session), _from_logits(torch)
    exact = [0, 1, 2, 3, 8]
    assert [got[i] for i in exact] == [want[i] for i in exact]
    # log-softmax's rounding is the engine's logsumexp's (exact tests live with it)
    for i in (4, 5, 6, 7):
        np.testing.assert_allclose(got[i], want[i], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("call", [
    lambda t: t.distributions.Categorical(),
    lambda t: t.distributions.Categorical(probs=t.ones(2), logits=t.ones(2)),
    lambda t: t.distributions.Categorical(probs=t.tensor(1.0)),
    lambda t: t.distributions.Categorical(logits=t.tensor(1.0)),
    lambda t: t.distributions.Categorical(probs=t.tensor([-0.5, 1.0])),
    lambda t: t.distributions.Categorical(logits=t.tensor([0.0, float("nan")])),
    lambda t: t.distributions.Categorical(logits=t.zeros(3, 2)).log_prob(t.tensor([0, 2, 1])),
    lambda t: t.distributions.Categorical(logits=t.zeros(3, 2)).log_prob(t.tensor([0, 1])),
    lambda t: t.distributions.Categorical(logits=t.zeros(2)).log_prob([1]),
])
def test_categorical_errors_match_torch(session, call):
    assert _error(lambda: call(session)) == _error(lambda: call(torch))


def test_categorical_skips_validation_when_asked(session):
    def run(t: Any) -> Any:
        d = t.distributions.Categorical(probs=t.tensor([-0.5, 1.5]), validate_args=False)
        return d.probs.tolist()

    assert run(session) == run(torch)
