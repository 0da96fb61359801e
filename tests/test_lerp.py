"""torch.lerp / Tensor.lerp / Tensor.lerp_ (the ops lerp_scalar and lerp) against torch: values
bit for bit (one fused multiply-add, torch's two formulas either side of |weight| = 0.5),
gradients of both overloads, in place (a model EMA), errors, in the engine and through a
session."""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import same_outcome


def _data(n, seed, dtype):
    rng = np.random.default_rng(seed)
    return np.ldexp(rng.standard_normal(n), rng.integers(-10, 10, n)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weight", [0.3, 0.5, 0.49999997, 0.7, -0.2, 1.0, 0.0, 2.5, -3.0, 1e-8])
def test_a_number_weight(gradserve_lib, dtype, weight):
    a, b = _data(500, 1, dtype), _data(500, 2, dtype)

    def run(t):
        x = t.tensor(a, requires_grad=True)
        e = t.tensor(b, requires_grad=True)
        y = t.lerp(x, e, weight)
        y.backward(t.ones_like(y) * 1.5)
        return y.tolist(), x.grad.tolist(), e.grad.tolist(), y.grad_fn.name()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_tensor_weight_that_broadcasts(gradserve_lib, dtype):
    a, b = _data(6, 3, dtype).reshape(2, 3), _data(3, 4, dtype)
    w = np.random.default_rng(5).uniform(-1, 2, (4, 1, 1)).astype(dtype)

    def run(t):
        x = t.tensor(a, requires_grad=True)
        e = t.tensor(b, requires_grad=True)
        wt = t.tensor(w, requires_grad=True)
        y = x.lerp(e, wt)
        y.backward(t.ones_like(y) * 1.5)
        return (tuple(y.shape), y.tolist(), x.grad.tolist(), e.grad.tolist(), wt.grad.tolist(),
                y.grad_fn.name())
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_second_derivatives_and_a_second_backward(gradserve_lib):
    def run(t):
        x = t.tensor(np.arange(4, dtype=np.float64), requires_grad=True)
        e = t.tensor(np.full(4, 3.0), requires_grad=True)
        w = t.tensor(np.full(4, 0.3), requires_grad=True)
        y = t.lerp(x, e, w)
        g = t.autograd.grad((y ** 2).sum(), [x, e, w], create_graph=True)
        gg = t.autograd.grad(sum((v ** 2).sum() for v in g), [x, e, w])
        z = t.lerp(x, e, 0.25).sum()  # lerp.Scalar keeps only the number: twice is fine
        z.backward(retain_graph=False)
        z2 = t.lerp(x, e, 0.25).sum()
        first = t.autograd.grad(z2, x, retain_graph=False)
        return [v.tolist() for v in g], [v.tolist() for v in gg], first[0].tolist()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_a_model_ema_in_place(gradserve_lib):
    # timm's and diffusion training loops: ema.lerp_(param, 1 - decay) under no_grad
    def run(t):
        t.manual_seed(0)
        model = t.nn.Linear(4, 3)
        ema = [p.detach().clone() for p in model.parameters()]
        opt = t.optim.SGD(model.parameters(), lr=0.1)
        x = t.randn(8, 4)
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            with t.no_grad():
                for e, p in zip(ema, model.parameters()):
                    e.lerp_(p, 1 - 0.9)
        return [e.tolist() for e in ema]
    assert same_outcome(gradserve_lib, run)[0] == "ok"


def test_a_0d_weight_of_another_dtype_is_cast(gradserve_lib):
    def run(t):
        x = t.tensor(np.arange(4, dtype=np.float32))
        x.lerp_(t.tensor(np.full(4, 10.0, np.float32)), t.tensor(0.9, dtype=t.float64))
        return x.tolist(), t.lerp(x, x * 2, t.tensor(1)).tolist()
    assert same_outcome(gradserve_lib, run)[0] == "ok"


@pytest.mark.parametrize("case", [
    lambda t: t.lerp(t.zeros(3), t.zeros(3, dtype=t.float64), 0.3),
    lambda t: t.lerp(t.zeros(3), t.zeros(3), t.zeros(3, dtype=t.float64)),
    lambda t: t.lerp(t.zeros(3), t.zeros(3), t.zeros(3, dtype=t.int64)),
    lambda t: t.lerp(t.arange(3), t.arange(3), 0.5),
    lambda t: t.lerp(t.arange(3), t.arange(3), t.arange(3)),
    lambda t: t.zeros(3).lerp_(t.zeros(2, 3), 0.5),
])
def test_errors(gradserve_lib, case):
    assert same_outcome(gradserve_lib, lambda t: case(t).tolist())[0] != "ok"


def test_out(gradserve_lib):
    def run(t):
        out = t.empty(3)
        r = t.lerp(t.zeros(3), t.ones(3), 0.25, out=out)
        return r.tolist(), out.tolist()
    assert same_outcome(gradserve_lib, run)[0] == "ok"
