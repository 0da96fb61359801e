"""torch.func (grad, grad_and_value, vjp, jvp, jacrev, jacfwd, hessian, functional_call,
stack_module_state, vmap) in the engine and through a session (gradserve_lib), compared with
torch: values, requires_grad and grad_fn presence, error types and texts."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from tests.reference import torch
from tests.test_engine_autograd import Raised

# torch.func's forward mode imports torch.jit.script, deprecated in torch 2.13
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

X = [0.5, -1.25, 2.0]
W = [[0.3, -0.2, 0.1], [0.05, 0.4, -0.6]]


def outcome(scenario: Any, lib: Any) -> Any:
    try:
        return scenario(lib)
    except (RuntimeError, TypeError, ValueError, IndexError, AttributeError) as exc:
        return Raised(exc)


def assert_same(got: Any, want: Any, rtol: float, path: str = "result") -> None:
    if isinstance(want, torch.Tensor):
        assert type(got).__name__ in ("Tensor", "Parameter"), f"{path}: {got!r} vs {want!r}"
        assert tuple(got.shape) == tuple(want.shape), f"{path}: shape {got.shape}"
        assert str(got.dtype).removeprefix("torch.") == str(want.dtype).removeprefix("torch.")
        assert got.requires_grad == want.requires_grad, f"{path}: requires_grad"
        assert (got.grad_fn is None) == (want.grad_fn is None), f"{path}: grad_fn"
        a = np.asarray(got.detach().tolist(), dtype=np.float64)
        b = np.asarray(want.detach().tolist(), dtype=np.float64)
        if rtol:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=path)
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(want, Raised):
        assert isinstance(got, Raised), f"{path}: returned {got!r}, torch raised {want!r}"
        assert (got.kind, got.message) == (want.kind, want.message), f"{path}: {got!r}"
    elif isinstance(want, (tuple, list)):
        assert type(got) is type(want) and len(got) == len(want), f"{path}: {got!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, rtol, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{path}: keys"
        for k in want:
            assert_same(got[k], want[k], rtol, f"{path}[{k!r}]")
    else:
        assert got == want, f"{path}: {got!r} vs {want!r}"


def same(lib: Any, scenario: Any, rtol: float = 0.0) -> Any:
    """Run `scenario` with gradserve (engine or session) and torch; assert the same outcome.
    rtol > 0 only where forward mode is emulated by reverse mode (surface/func.py), or where
    vmap's run per index meets torch's batched kernels (surface/func_vmap.py)."""
    want = outcome(scenario, torch)
    got = outcome(scenario, lib)
    assert_same(got, want, rtol)
    return got


def t64(lib: Any, data: Any, grad: bool = False) -> Any:
    return lib.tensor(data, dtype=lib.float64, requires_grad=grad)


# --- grad, grad_and_value -------------------------------------------------------------------------

def test_grad_values_argnums_aux_and_pytrees(gradserve_lib):
    def scenario(lib):
        f = lib.func
        x, w = t64(lib, X), t64(lib, W)

        def loss(w, x):
            return (w @ x).tanh().pow(2).sum()

        def loss_aux(p, x):
            y = p["w"] @ x + p["b"]
            return y.sin().sum(), {"y": y, "n": y.norm()}
        p = {"w": w, "b": t64(lib, [0.1, -0.2])}
        return (f.grad(loss)(w, x), f.grad(loss, argnums=(0, 1))(w, x),
                f.grad(loss, argnums=-1)(w, x), f.grad_and_value(loss, argnums=1)(w, x),
                f.grad(loss_aux, has_aux=True)(p, x),
                f.grad_and_value(loss_aux, has_aux=True)(p, x))
    same(gradserve_lib, scenario)


def test_grad_composes_with_outer_autograd(gradserve_lib):
    def scenario(lib):
        f = lib.func
        x = t64(lib, X)
        p = t64(lib, [1.5, -0.5, 0.25], grad=True)
        g_p = f.grad(lambda x: (x * p).sin().sum())(x)  # captured p: keeps its graph
        g_free = f.grad(lambda x: (x.sin() + p).sum())(x)  # p only added: plain
        xr = t64(lib, X, grad=True)
        g_x = f.grad(lambda x: (x ** 3).sum())(xr)  # x itself requires grad
        (g_p.sum() + g_x.sum()).backward()
        with lib.no_grad():
            g_ng = f.grad(lambda x: (x * p).sin().sum())(x)
        return g_p, g_free, g_x, p.grad, xr.grad, g_ng
    same(gradserve_lib, scenario)


def test_nested_grad_and_pinn_style_residual(gradserve_lib):
    def scenario(lib):
        f = lib.func
        lib.manual_seed(0)
        net = lib.nn.Sequential(lib.nn.Linear(1, 4), lib.nn.Tanh(), lib.nn.Linear(4, 1)).double()

        def u(x):
            return net(x.reshape(1, 1)).squeeze()
        u_x = f.grad(u)
        u_xx = f.grad(f.grad(u))
        xs = t64(lib, [[0.1], [0.5], [-0.7]]).squeeze(1)
        res = f.vmap(lambda x: u_xx(x) + u_x(x) * u(x))(xs)
        loss = res.pow(2).mean()
        loss.backward()
        third = f.grad(f.grad(f.grad(lambda x: x.sin() * x)))(t64(lib, 0.3))
        return res, loss, net[0].weight.grad, net[2].bias.grad, third
    # backward through a recorded backward composes torch's formulas from engine ops: torch's
    # values, not its bits (tests/test_engine_batch_norm_exact.py says the same of batch norm)
    same(gradserve_lib, scenario, rtol=1e-12)


def test_grad_errors(gradserve_lib):
    cases = [
        lambda lib: lib.func.grad(lambda x: x * 2)(t64(lib, X)),
        lambda lib: lib.func.grad(lambda x: x.sum(), argnums=1)(t64(lib, X)),
        lambda lib: lib.func.grad(lambda x: x.sum(), argnums="a")(t64(lib, X)),
        lambda lib: lib.func.grad(lambda x, y: x.sum(), argnums=(0, 0))(t64(lib, X), 1),
        lambda lib: lib.func.grad(lambda x, y: x.sum(), argnums=())(t64(lib, X), 1),
        lambda lib: lib.func.grad(lambda x: x.sum(), has_aux=True)(t64(lib, X)),
        lambda lib: lib.func.grad(lambda x: (x.sum(), 1, 2), has_aux=True)(t64(lib, X)),
        lambda lib: lib.func.grad(lambda x: (x.sum(), 1.0), has_aux=True)(t64(lib, X)),
        lambda lib: lib.func.grad(lambda x: 3.0)(t64(lib, X)),
        lambda lib: lib.func.grad(lambda x: x * 2)(3.0),
        lambda lib: lib.func.grad(lambda x: x.sum())(lib.arange(3)),
        lambda lib: lib.func.grad(lambda x, y: x.sum(), argnums=1)(t64(lib, X), t64(lib, X)),
        lambda lib: lib.func.grad(lambda x: lib.tensor(1.0, dtype=lib.float64))(t64(lib, X)),
    ]
    for case in cases:
        same(gradserve_lib, case)


# --- vjp, jvp -------------------------------------------------------------------------------------

def test_vjp_and_vmap_of_vjp_fn(gradserve_lib):
    def scenario(lib):
        f = lib.func
        x, w = t64(lib, X), t64(lib, W)
        out, fn = f.vjp(lambda x: (w @ x).tanh(), x)
        first = fn(t64(lib, [1.0, -1.0]))
        rows = f.vmap(fn)(lib.eye(2, dtype=lib.float64))  # the tutorial's Jacobian
        out2, fn2, aux = f.vjp(lambda a, b: ((a * b, a.exp()), a.sum()), x, x, has_aux=True)
        grads = fn2((t64(lib, [1.0, 2.0, 3.0]), t64(lib, [0.5, 0.5, 0.5])))
        return out, first, fn(t64(lib, [0.0, 2.0])), rows, out2, aux, grads
    same(gradserve_lib, scenario)


def test_vjp_errors(gradserve_lib):
    def wrong(lib, ct):
        return lib.func.vjp(lambda x: x.sin(), t64(lib, X))[1](ct(lib))
    cases = [
        lambda lib: lib.func.vjp(lambda x: x, 3.0),
        lambda lib: lib.func.vjp(lambda x: 3.0, t64(lib, X)),
        lambda lib: lib.func.vjp(lambda x: x, t64(lib, X), has_aux=True),
        lambda lib: wrong(lib, lambda lib: t64(lib, [1.0, 2.0])),
        lambda lib: wrong(lib, lambda lib: (t64(lib, X),)),
    ]
    for case in cases:
        same(gradserve_lib, case)


def test_jvp_and_hvp(gradserve_lib):
    # forward mode emulated by the double-backward trick: torch's values up to rounding
    def scenario(lib):
        f = lib.func
        x, v = t64(lib, X), t64(lib, [1.0, 0.5, -2.0])

        def g(x):
            return x.sin().sum() * x.exp().sum()
        return (f.jvp(lambda x: x.sin() * x, (x,), (v,)),
                f.jvp(lambda a, b: (a * b, (a + b).sum()), (x, x), (v, v)),
                f.jvp(lambda x: (x.cos(), x.sum()), (x,), (v,), has_aux=True),
                f.jvp(f.grad(g), (x,), (v,)),  # hvp, forward over reverse
                f.vjp(f.grad(g), x)[1](v))  # hvp, reverse over reverse
    same(gradserve_lib, scenario, rtol=1e-12)


def test_jvp_errors(gradserve_lib):
    cases = [
        lambda lib: lib.func.jvp(lambda x: x, t64(lib, X), t64(lib, X)),
        lambda lib: lib.func.jvp(lambda x: x, (t64(lib, X),), (t64(lib, X), t64(lib, X))),
        lambda lib: lib.func.jvp(lambda x: x, (t64(lib, X),), (t64(lib, [1.0, 2.0]),)),
        lambda lib: lib.func.jvp(lambda x: x, (), ()),
        lambda lib: lib.func.jvp(lambda x: x, (3.0,), (1.0,)),
        lambda lib: lib.func.jvp(lambda x: x, (t64(lib, X),), (t64(lib, X),), has_aux=True),
    ]
    for case in cases:
        same(gradserve_lib, case)


# --- jacrev, jacfwd, hessian ----------------------------------------------------------------------

def predict(lib: Any, w: Any, b: Any, x: Any) -> Any:
    return lib.nn.functional.linear(x, w, b).tanh()


def test_jacrev_argnums_aux_chunks_and_pytrees(gradserve_lib):
    def scenario(lib):
        f = lib.func
        w, b, x = t64(lib, W), t64(lib, [0.1, -0.3]), t64(lib, X)

        def pred(w, b, x):
            return predict(lib, w, b, x)

        def two(p, x):
            y = p["w"] @ x
            return (y.exp(), y.sum()), y.detach()
        return (f.jacrev(pred, argnums=2)(w, b, x), f.jacrev(pred, argnums=(0, 1))(w, b, x),
                f.jacrev(pred, argnums=2, chunk_size=1)(w, b, x),
                f.jacrev(two, has_aux=True)({"w": w}, x),
                f.vmap(f.jacrev(pred, argnums=2), in_dims=(None, None, 0))(
                    w, b, t64(lib, [X, [1.0, 0.0, -1.0]])))
    same(gradserve_lib, scenario)


def test_jacfwd_and_hessian(gradserve_lib):
    def scenario(lib):
        f = lib.func
        w, b, x = t64(lib, W), t64(lib, [0.1, -0.3]), t64(lib, X)

        def pred(w, b, x):
            return predict(lib, w, b, x)
        return (f.jacfwd(pred, argnums=2)(w, b, x), f.jacfwd(pred, argnums=(0, 2))(w, b, x),
                f.jacfwd(lambda x: (x.sin().sum(), x), has_aux=True)(x),
                f.hessian(pred, argnums=2)(w, b, x),
                f.hessian(lambda x: (x.sin() * x.exp()).sum())(x),
                f.hessian(lambda a, c: (a * c).sin().sum(), argnums=(0, 1))(x, x.cos()),
                f.jacrev(f.jacrev(pred, argnums=2), argnums=2)(w, b, x),
                f.vmap(f.hessian(pred, argnums=2), in_dims=(None, None, 0))(
                    w, b, t64(lib, [X, [1.0, 0.0, -1.0]])))
    same(gradserve_lib, scenario, rtol=1e-12)


def test_jacobian_errors(gradserve_lib):
    cases = [
        lambda lib: lib.func.jacrev(lambda x: 3.0)(t64(lib, X)),
        lambda lib: lib.func.jacrev(lambda x: x.sin(), chunk_size=0)(t64(lib, X)),
        lambda lib: lib.func.jacrev(lambda x: x.sin(), has_aux=True)(t64(lib, X)),
        lambda lib: lib.func.jacfwd(lambda x: x.sin(), has_aux=True)(t64(lib, X)),
        lambda lib: lib.func.jacrev(lambda x: x.sin(), argnums=2)(t64(lib, X)),
    ]
    for case in cases:
        same(gradserve_lib, case)


# --- functional_call, stack_module_state ----------------------------------------------------------

class Tied:
    """A module with tied weights, for either library."""

    @staticmethod
    def make(lib: Any) -> Any:
        class T(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = lib.nn.Linear(2, 2, bias=False)
                self.b = lib.nn.Linear(2, 2, bias=False)
                self.b.weight = self.a.weight

            def forward(self, x):
                return self.b(self.a(x))
        return T()


def test_functional_call(gradserve_lib):
    def scenario(lib):
        f = lib.func
        lib.manual_seed(0)
        m = lib.nn.Linear(2, 2)
        x, z = lib.ones(1, 2), lib.zeros(2, 2)
        t = Tied.make(lib)
        results = [f.functional_call(m, {"weight": z}, x),
                   f.functional_call(m, ({"weight": z}, {"bias": z[0]}), (x,)),
                   f.functional_call(lib.nn.Linear(2, 2), {}, (), {"input": x}),
                   f.functional_call(m, {"foo": z}, (x,)), hasattr(m, "foo"),
                   f.functional_call(t, {"a.weight": z + 1}, (x,)),
                   f.functional_call(t, {"a.weight": z + 1}, (x,), tie_weights=False),
                   m.weight]
        params = {k: v.detach() for k, v in m.named_parameters()}
        xs, ys = lib.tensor([[1.0, 2.0], [3.0, -1.0]]), lib.tensor([0, 1])

        def loss(p, x, y):
            out = f.functional_call(m, p, (x.unsqueeze(0),))
            return lib.nn.functional.cross_entropy(out, y.unsqueeze(0))
        results.append(f.vmap(f.grad(loss), in_dims=(None, 0, 0))(params, xs, ys))
        return results
    same(gradserve_lib, scenario)


def test_functional_call_errors(gradserve_lib):
    def call(lib, d, **kw):
        lib.manual_seed(0)
        return lib.func.functional_call(lib.nn.Linear(2, 2), d(lib), (lib.ones(1, 2),), **kw)
    z = lambda lib: lib.zeros(2, 2)  # noqa: E731
    cases = [
        lambda lib: call(lib, lambda lib: {"weight": z(lib)}, strict=True),
        lambda lib: call(lib, lambda lib: {"weight": z(lib), "bias": z(lib)[0],
                                            "foo": z(lib)}, strict=True),
        lambda lib: call(lib, lambda lib: {"foo": z(lib), "bar": z(lib)}, strict=True),
        lambda lib: call(lib, lambda lib: ({"weight": z(lib)}, {"weight": z(lib)})),
        lambda lib: call(lib, lambda lib: 3),
        lambda lib: call(lib, lambda lib: {"weight": 3.0}),
        lambda lib: call(lib, lambda lib: {"nope.x": z(lib)}),
        lambda lib: lib.func.functional_call(Tied.make(lib), {"a.weight": z(lib),
                                                              "b.weight": z(lib) + 1},
                                             (lib.ones(1, 2),)),
    ]
    for case in cases:
        same(gradserve_lib, case)


def test_stack_module_state_and_ensemble(gradserve_lib):
    def scenario(lib, batched):
        f = lib.func
        lib.manual_seed(0)
        models = [lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.ReLU(), lib.nn.Linear(4, 2))
                  for _ in range(3)]
        params, buffers = f.stack_module_state(models)
        data = lib.randn(3, 5, 3)

        def fmodel(p, b, x):
            return f.functional_call(models[0], (p, b), (x,))
        bn = f.stack_module_state([lib.nn.BatchNorm1d(2), lib.nn.BatchNorm1d(2)])
        ensemble = f.vmap(fmodel)(params, buffers, data)
        ensemble.pow(2).sum().backward()  # an ensemble's training step reaches the stack
        norm = lib.nn.BatchNorm1d(2)
        stats = {k: v.clone() for k, v in norm.named_buffers()}
        normed = f.functional_call(norm, stats, (lib.randn(4, 2),))  # updates `stats` in place
        if batched:
            return (ensemble, params["0.weight"].grad, params["2.bias"].grad,
                    f.vmap(fmodel, in_dims=(0, 0, None))(params, buffers, data[0]))
        return (params, buffers, bn, lib.stack([m(x) for m, x in zip(models, data)]), normed,
                stats, norm.running_mean)
    same(gradserve_lib, functools.partial(scenario, batched=False))
    # vmap runs fmodel per model: each Linear is torch's addmm (MKL's sgemm), where torch's
    # batched run multiplies the small batches with its own bmm loop (no FMA). They round alike
    # on AMD EPYC; on an Intel AVX-512 Xeon MKL's small sgemm fuses multiply-adds: 1 ulp off
    same(gradserve_lib, functools.partial(scenario, batched=True), rtol=1e-6)


def test_stack_module_state_errors(gradserve_lib):
    def mixed_modes(lib):
        m = lib.nn.Linear(2, 2)
        m.eval()
        return lib.func.stack_module_state([lib.nn.Linear(2, 2), m])

    def mixed_grad(lib):
        m = lib.nn.Linear(2, 2)
        m.bias.requires_grad_(False)
        return lib.func.stack_module_state([lib.nn.Linear(2, 2), m])
    cases = [lambda lib: lib.func.stack_module_state([]), mixed_modes, mixed_grad,
             lambda lib: lib.func.stack_module_state([lib.nn.Linear(2, 2), lib.nn.ReLU()])]
    for case in cases:
        same(gradserve_lib, case)


# --- vmap -----------------------------------------------------------------------------------------

def test_vmap_dims_and_nesting(gradserve_lib):
    def scenario(lib):
        v = lib.vmap
        a = t64(lib, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        b = t64(lib, [0.5, -1.0])
        r = t64(lib, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], grad=True)
        out = v(lambda x: x * 2)(r)
        out.sum().backward()

        def mut(x):
            x.add_(1)
            return x
        c = a.clone()
        return (v(lambda x, y: x * y)(a, b), v(lambda x: x.sum(), in_dims=1)(a),
                v(lambda x: x.sum(), in_dims=-1)(a),
                v(lambda x, y: x + y, in_dims=(0, None))(a, a[0]),
                v(lambda x: x * 2, out_dims=1)(a), v(lambda d: d["p"] * d["q"])({"p": a, "q": a}),
                v(lambda x: (x, b), out_dims=(0, None))(a),
                v(v(lambda x, y: x * y), in_dims=(0, None))(a, b.repeat(3)[:3]),
                v(lambda x: lib.outer(x, x))(a), out, r.grad, v(mut)(c), c)
    same(gradserve_lib, scenario)


def test_vmap_errors(gradserve_lib):
    x = lambda lib: t64(lib, X)  # noqa: E731
    c = {}

    def mut_captured(lib):
        c["z"] = lib.zeros(())
        return lib.vmap(lambda v: v.sum().item())(lib.ones(2, 2))
    cases = [
        lambda lib: lib.vmap(lambda x: x, in_dims=1)(x(lib)),
        lambda lib: lib.vmap(lambda x: x, in_dims=(0, 0))(x(lib)),
        lambda lib: lib.vmap(lambda x, y: x + y)(x(lib), lib.ones(2)),
        lambda lib: lib.vmap(lambda x: x, in_dims=None)(x(lib)),
        lambda lib: lib.vmap(lambda: 1)(),
        lambda lib: lib.vmap(lambda x: x)(3.0),
        lambda lib: lib.vmap(lambda x: x)(lib.tensor(1.0)),
        lambda lib: lib.vmap(lambda x: 1.0)(x(lib)),
        lambda lib: lib.vmap(lambda x: x, out_dims=1)(x(lib)),
        lambda lib: lib.vmap(lambda x: x, in_dims="a")(x(lib)),
        lambda lib: lib.vmap(lambda x: x, randomness="foo")(x(lib)),
        lambda lib: lib.vmap(lambda x: x * 2, chunk_size=0)(x(lib)),
        lambda lib: lib.vmap(lambda x, y: x, in_dims=(None, None))(x(lib), x(lib)),
        lambda lib: lib.vmap(lambda x: x, out_dims="a")(x(lib)),
        lambda lib: lib.vmap(lambda x: (x, x), out_dims=(0, 0, 0))(x(lib)),
        lambda lib: lib.vmap(lambda x: (x, x * 2), out_dims=(0, None))(x(lib)),
        mut_captured,
        lambda lib: lib.vmap(lambda v: v * float(v))(x(lib)),
        lambda lib: lib.vmap(lambda v: v * int(v))(x(lib)),
        lambda lib: lib.vmap(lambda v: v + lib.rand(()))(x(lib)),
        lambda lib: lib.vmap(lambda v: lib.randn_like(v))(x(lib)),
        lambda lib: lib.vmap(lambda v: lib.nn.functional.dropout(v, 0.5))(x(lib)),
    ]
    for case in cases:
        same(gradserve_lib, case)


def test_vmap_randomness_same_is_one_unbatched_draw(gradserve_lib):
    def scenario(lib):
        lib.manual_seed(3)
        out = lib.vmap(lambda v: v + lib.rand(2), randomness="same")(lib.zeros(4, 2))
        return out, lib.rand(1)
    same(gradserve_lib, scenario)


def test_vmap_batch_bound(gradserve_lib, monkeypatch):
    from gradserve.surface import func_vmap

    monkeypatch.setattr(func_vmap, "MAX_BATCH", 2)
    with pytest.raises(ValueError, match="at most 2 indices; got 3"):
        gradserve_lib.vmap(lambda v: v * 2)(gradserve_lib.ones(3, 2))
    assert gradserve_lib.vmap(lambda v: v * 2)(gradserve_lib.ones(2, 2)).tolist() == [[2.0] * 2] * 2
