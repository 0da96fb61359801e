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


# --- a whole group at once (engine/optim.py `_adam_group`) ---------------------------------------

GROUP_SHAPES = [(4, 1), (1,), (3, 5), (0,), (2, 2, 2)]


def _grads(rng: np.random.Generator, shapes, kind: int) -> list[np.ndarray]:
    out = []
    for s in shapes:
        g = rng.standard_normal(s)
        if kind == 1:  # subnormal and tiny float32 sums: the fused adds redone one by one
            g = g * 10.0 ** rng.integers(-44, -30, s)
        elif kind == 2:
            g = g * 10.0 ** rng.integers(-3, 4, s)
            g.flat[::3] = 0.0
            g.flat[1::4] = -0.0
        out.append(g.astype(np.float32))
    return out


def _train_group(monkeypatch, batched: bool, shapes, steps: int, kind: int = 0, skip=None,
                 **hyper):
    if not batched:
        monkeypatch.setattr(engine_optim.Adam, "_update_group", lambda self, group: False)
    rng = np.random.default_rng(11)
    params = [ge.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
              for s in shapes]
    opt = ge.optim.Adam(params, **hyper)
    for i in range(steps):
        for j, (p, g) in enumerate(zip(params, _grads(rng, shapes, kind))):
            p.grad = None if skip == (i, j) else ge.tensor(g)
        opt.step()
    monkeypatch.undo()
    out = []
    for p in params:
        st = opt.state[p]
        out += [p.detach().numpy().copy(), st["exp_avg"].numpy().copy(),
                st["exp_avg_sq"].numpy().copy(), p._version, st["exp_avg"]._version,
                st["exp_avg_sq"]._version, st["step"]]
    return out, opt


def _same_bits(a: list, b: list) -> None:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        else:
            assert x == y


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("hyper", [{}, {"lr": 0.3, "betas": (0.8, 0.95), "eps": 1e-3},
                                   {"betas": (0.3, 0.5)}, {"weight_decay": 0.1},
                                   {"maximize": True}, {"amsgrad": True}])
def test_the_group_path_is_the_parameter_path_bit_for_bit(monkeypatch, kind, hyper):
    batched, opt = _train_group(monkeypatch, True, GROUP_SHAPES, 12, kind, **hyper)
    one_by_one, _ = _train_group(monkeypatch, False, GROUP_SHAPES, 12, kind, **hyper)
    _same_bits(batched, one_by_one)
    taken = not hyper or "lr" in hyper  # the others leave the group path
    bases = [opt.state[p]["exp_avg"].numpy().base for p in opt.param_groups[0]["params"]]
    assert (bases[0] is not None and all(b is bases[0] for b in bases)) is taken


@pytest.mark.parametrize("skip", [(3, 1), (0, 2)])
def test_a_parameter_without_gradient_leaves_the_group_path(monkeypatch, skip):
    batched, _ = _train_group(monkeypatch, True, GROUP_SHAPES, 8, skip=skip)
    one_by_one, _ = _train_group(monkeypatch, False, GROUP_SHAPES, 8, skip=skip)
    _same_bits(batched, one_by_one)


def test_group_path_state_dict_round_trip_and_aliased_gradient(monkeypatch):
    rng = np.random.default_rng(3)
    data = [rng.standard_normal(s).astype(np.float32) for s in ((3,), (3,))]
    results = []
    for batched in (True, False):
        if not batched:
            monkeypatch.setattr(engine_optim.Adam, "_update_group", lambda self, group: False)
        a, b = (ge.tensor(d, requires_grad=True) for d in data)
        opt = ge.optim.Adam([a, b], lr=0.1)
        a.grad, b.grad = ge.tensor(data[1]), ge.tensor(data[0])
        opt.step()
        saved = opt.state_dict()
        opt2 = ge.optim.Adam([a, b], lr=0.1)
        opt2.load_state_dict(saved)
        a.grad, b.grad = ge.tensor(data[0]), a.detach()  # b's gradient is a's data
        opt2.step()
        opt2.step()
        results.append([a.detach().numpy().copy(), b.detach().numpy().copy()]
                       + [opt2.state[p][k].numpy().copy() for p in (a, b)
                          for k in ("exp_avg", "exp_avg_sq")])
        monkeypatch.undo()
    _same_bits(results[0], results[1])


def test_group_path_matches_torch():
    rng = np.random.default_rng(5)
    shapes = [(4, 1), (1,), (3, 5)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [_grads(rng, shapes, i % 3) for i in range(10)]
    ours = [ge.tensor(a, requires_grad=True) for a in init]
    theirs = [torch.tensor(a, requires_grad=True) for a in init]
    opt, ref = ge.optim.Adam(ours, lr=0.05), torch.optim.Adam(theirs, lr=0.05)
    for gs in grads:
        for p, q, g in zip(ours, theirs, gs):
            p.grad, q.grad = ge.tensor(g), torch.tensor(g)
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy(), strict=True)
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(opt.state[p][k].numpy(), ref.state[q][k].numpy(),
                                          strict=True)


def test_a_zero_dim_parameter_with_a_zero_gradient():
    # fma32 of 0-d operands whose sum is redone (a zero is below float32's normal range)
    p, q = ge.tensor(1.5, requires_grad=True), torch.tensor(1.5, requires_grad=True)
    opt, ref = ge.optim.Adam([p], lr=0.1), torch.optim.Adam([q], lr=0.1)
    p.grad, q.grad = ge.tensor(0.0), torch.tensor(0.0)
    opt.step()
    ref.step()
    assert p.item() == q.item()
    np.testing.assert_array_equal(opt.state[p]["exp_avg_sq"].numpy(),
                                  ref.state[q]["exp_avg_sq"].numpy())
