"""torch.autograd.functional and gradcheck (gradserve.surface.functional) on the engine, compared
with torch: values, grad_fn presence (create_graph), error types and texts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import torch
from tests.test_engine_autograd import Raised, same

A = np.array([0.5, -1.25, 2.0])
B = np.array([[1.0, 2.0], [-0.5, 0.75]])

# scalar-valued and vector-valued functions of one or two inputs, in both libraries
SCALAR_FNS = {
    "cube_sum": lambda lib: lambda x: (x ** 3).sum(),
    "sin_prod": lambda lib: lambda x: (lib.sin(x) * x).sum(),
    "exp_norm": lambda lib: lambda x: lib.exp(x * 0.5).pow(2).sum().sqrt(),
}
VECTOR_FNS = {
    "square": lambda lib: lambda x: x ** 2,
    "tanh_cumsum": lambda lib: lambda x: lib.tanh(x).cumsum(0),
    "outer": lambda lib: lambda x: (x.unsqueeze(1) * x.unsqueeze(0)).reshape(-1),
}


def arg(lib: Any, data: np.ndarray, grad: bool = False) -> Any:
    return lib.tensor(data, dtype=lib.float64, requires_grad=grad)


def F(lib: Any) -> Any:
    return lib.autograd.functional


def with_graph(result: Any) -> Any:
    """A result and, for each tensor in it, whether it has a grad_fn (create_graph's mark)."""
    flat = result if isinstance(result, (tuple, list)) else (result,)
    marks = []
    for r in flat:
        if isinstance(r, (tuple, list)):
            marks.append(with_graph(r)[1])
        else:
            marks.append(r.grad_fn is not None)
    return tuple(r.detach() if not isinstance(r, (tuple, list)) else with_graph(r)[0]
                 for r in flat), marks


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("name", sorted(VECTOR_FNS))
def test_jacobian_vjp_jvp(name, create_graph):
    def scenario(lib):
        f = VECTOR_FNS[name](lib)
        x = arg(lib, A, grad=True)
        out_n = f(x).numel()
        v_out = lib.tensor(np.linspace(-1, 1, out_n), dtype=lib.float64)
        v_in = arg(lib, np.array([1.0, -2.0, 0.5]))
        jac = F(lib).jacobian(f, x, create_graph=create_graph)
        vjp = F(lib).vjp(f, x, v_out, create_graph=create_graph)
        jvp = F(lib).jvp(f, x, v_in, create_graph=create_graph)
        return with_graph(jac), with_graph(vjp), with_graph(jvp)
    same(scenario)


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("name", sorted(SCALAR_FNS))
def test_hessian_hvp_vhp(name, create_graph):
    def scenario(lib):
        f = SCALAR_FNS[name](lib)
        x = arg(lib, A, grad=True)
        v = arg(lib, np.array([0.25, 1.0, -1.0]))
        hes = F(lib).hessian(f, x, create_graph=create_graph)
        hvp = F(lib).hvp(f, x, v, create_graph=create_graph)
        vhp = F(lib).vhp(f, x, v, create_graph=create_graph)
        return with_graph(hes), with_graph(hvp), with_graph(vhp)
    same(scenario)


def test_tuple_inputs_and_outputs():
    def scenario(lib):
        def f(x, w):
            return x @ w, (x * x).sum()
        x, w = arg(lib, A[:2], True), arg(lib, B, True)
        jac = F(lib).jacobian(f, (x, w))
        vjp = F(lib).vjp(f, (x, w), (arg(lib, np.array([1.0, 2.0])), arg(lib, np.array(3.0))))
        jvp = F(lib).jvp(f, (x, w), (arg(lib, np.array([1.0, 0.0])), arg(lib, np.ones((2, 2)))))
        hes = F(lib).hessian(lambda x, w: (x @ w @ x), (x, w))
        return jac, vjp, jvp, hes
    same(scenario)


def test_create_graph_results_can_be_differentiated_again():
    def scenario(lib):
        x = arg(lib, A, grad=True)
        h = F(lib).hvp(SCALAR_FNS["sin_prod"](lib), x, lib.ones(3, dtype=lib.float64),
                       create_graph=True)[1]
        g, = lib.autograd.grad(h.sum(), x)
        return g
    same(scenario)


def test_unused_input_is_zeros_or_refused_in_strict_mode():
    def scenario(lib):
        def f(x, y):
            return x * 2
        x, y = arg(lib, A, True), arg(lib, A, True)
        loose = F(lib).jacobian(f, (x, y))
        strict = F(lib).jacobian(f, (x, y), strict=True) if True else None
        return loose, strict
    got = same(scenario)
    assert isinstance(got, Raised)


@pytest.mark.parametrize("case", [
    "not_tensor", "tuple_not_tensor", "v_missing", "v_size", "v_length", "v_single",
    "hessian_vector", "vhp_tuple", "strict_constant", "strict_linear_hessian",
    "strict_vectorize"])
def test_functional_errors(case):
    def scenario(lib):
        x = arg(lib, A, True)
        f = F(lib)
        return {
            "not_tensor": lambda: f.vjp(lambda a: a, 3.0),
            "tuple_not_tensor": lambda: f.jacobian(lambda a, b: a, (x, 2)),
            "v_missing": lambda: f.vjp(lambda a: a * 2, x),
            "v_size": lambda: f.vjp(lambda a: a * 2, x, lib.ones(2, dtype=lib.float64)),
            "v_length": lambda: f.jvp(lambda a, b: a, (x, x), (x,)),
            "v_single": lambda: f.jvp(lambda a: a, x, (x, x)),
            "hessian_vector": lambda: f.hessian(lambda a: a * 2, x),
            "vhp_tuple": lambda: f.vhp(lambda a: (a.sum(), a.sum()), x, x),
            "strict_constant": lambda: f.vjp(lambda a: lib.ones(3), x, lib.ones(3), strict=True),
            "strict_linear_hessian": lambda: f.hessian(lambda a: (a * 2).sum(), x, strict=True),
            "strict_vectorize": lambda: f.jacobian(lambda a: a, x, strict=True,
                                                   vectorize=True),
        }[case]()
    assert isinstance(same(scenario), Raised)


def test_only_reverse_mode_is_available():
    import gradserve.engine as ge

    x = arg(ge, A, True)
    for strategy in ("sideways", "forward-mode"):
        with pytest.raises(ValueError, match="reverse-mode"):
            ge.autograd.functional.jacobian(lambda a: a, x, strategy=strategy)


# --- gradcheck / gradgradcheck -------------------------------------------------------------------

def test_gradcheck_and_gradgradcheck_pass_for_correct_functions():
    def scenario(lib):
        x = arg(lib, A, True)
        w = arg(lib, B, True)
        results = [lib.autograd.gradcheck(VECTOR_FNS[n](lib), (x,)) for n in sorted(VECTOR_FNS)]
        results.append(lib.autograd.gradcheck(lambda a, b: a[:2] @ b, (x, w)))
        results.append(lib.autograd.gradgradcheck(lambda a: lib.sin(a) * a, (x,)))
        results.append(lib.autograd.gradgradcheck(lambda a, b: a[:2] @ b @ a[:2], (x, w)))
        return results
    assert same(scenario) == [True] * 6


def test_gradcheck_finds_a_wrong_custom_backward():
    def scenario(lib):
        class Wrong(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 3
        x = arg(lib, np.array([1.0, 2.0]), True)
        quiet = lib.autograd.gradcheck(Wrong.apply, (x,), raise_exception=False)
        return quiet, lib.autograd.gradcheck(Wrong.apply, (x,))
    assert isinstance(same(scenario), Raised)


def test_gradcheck_needs_an_input_that_requires_grad():
    same(lambda lib: lib.autograd.gradcheck(lambda a: a * 2, (lib.ones(2),)))


def test_gradcheck_of_the_tutorial_function_and_its_double_backward():
    from tests.test_engine_function import legendre_class

    def scenario(lib):
        P3 = legendre_class(lib).apply
        x = arg(lib, A, True)
        return lib.autograd.gradcheck(P3, (x,)), lib.autograd.gradgradcheck(P3, (x,))
    assert same(scenario) == (True, True)


def test_surface_functional_is_shared(monkeypatch):
    """The engine binds the surface's implementation (nothing engine-specific to drift)."""
    import gradserve.engine as ge
    from gradserve.surface.functional import Functional

    assert isinstance(ge.autograd.functional, Functional)
    assert torch.autograd.functional.jacobian is not None
