"""Adam's update on arrays (engine/optim.py `_adam_arrays`) against the op-by-op path it
replaces and against torch.

The array path makes the same numpy calls as the engine ops of the general path, so both give
the same bits; the general path is what the torch comparisons of tests/test_optim_programs.py
and tests/test_surface_extras.py pin to torch. Here: bit for bit against the general path over
many steps, for float32 and float64, hyperparameters that take and that skip the array path,
with version counters; and within torch's sqrt differences against torch itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import optim as engine_optim
from tests.reference import torch


def _train(monkeypatch, fast: bool, dtype: str, shape, steps: int, **hyper):
    if not fast:
        monkeypatch.setattr(engine_optim, "_adam_arrays", lambda *a, **k: False)
    rng = np.random.default_rng(7)
    p = ge.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
    opt = ge.optim.Adam([p], **hyper)
    for _ in range(steps):
        p.grad = ge.tensor(rng.standard_normal(shape).astype(dtype))
        opt.step()
    monkeypatch.undo()
    st = opt.state[p]
    return (p.detach().numpy().copy(), st["exp_avg"].numpy().copy(),
            st["exp_avg_sq"].numpy().copy(), p._version, st["exp_avg"]._version,
            st["exp_avg_sq"]._version)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hyper", [{}, {"lr": 0.3, "betas": (0.8, 0.95), "eps": 1e-3},
                                   {"betas": (0.3, 0.5)},  # lerp's other formula: not fast
                                   {"weight_decay": 0.1}, {"maximize": True},
                                   {"amsgrad": True}, {"weight_decay": 0.01,
                                                       "decoupled_weight_decay": True}])
@pytest.mark.parametrize("shape", [(1,), (4, 3), (0,), (2, 1, 5)])
def test_the_array_path_is_the_op_path_bit_for_bit(monkeypatch, dtype, hyper, shape):
    fast = _train(monkeypatch, True, dtype, shape, 25, **hyper)
    slow = _train(monkeypatch, False, dtype, shape, 25, **hyper)
    for a, b in zip(fast[:3], slow[:3]):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert fast[3:] == slow[3:]


def test_the_array_path_is_taken(monkeypatch):
    calls: list[bool] = []
    real = engine_optim._adam_arrays
    monkeypatch.setattr(engine_optim, "_adam_arrays", lambda *a: calls.append(real(*a)) or
                        calls[-1])
    p = ge.tensor(np.ones(3, np.float32), requires_grad=True)
    p.grad = ge.tensor(np.ones(3, np.float32))
    ge.optim.Adam([p]).step()
    assert calls == [True]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adam_matches_torch(dtype):
    rng = np.random.default_rng(3)
    init = rng.standard_normal((6, 5)).astype(dtype)
    grads = [rng.standard_normal((6, 5)).astype(dtype) for _ in range(30)]
    results = []
    for lib in (ge, torch):
        p = lib.tensor(init.copy(), requires_grad=True)
        opt = lib.optim.Adam([p], lr=0.05, betas=(0.85, 0.99))
        for g in grads:
            p.grad = lib.tensor(g.copy())
            opt.step()
        results.append(p.detach().numpy().copy())
    # torch's float32 sqrt (MKL) is not correctly rounded: 1-ulp differences can grow a little
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5 if dtype == "float32" else 1e-12)
