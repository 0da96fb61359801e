"""Custom autograd Functions and hooks in the engine, each scenario run with torch and with
`gradserve.engine` and compared (values, grads, grad_fn names, error types and texts; see
test_engine_autograd.same)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.test_engine_autograd import Raised, outcome, same


def fn_name(t: Any) -> str:
    return t.grad_fn.name()


# --- the tutorial's Function: P3, the Legendre polynomial of degree three ------------------------
# After PyTorch's tutorial "Defining New autograd Functions" (pytorch/tutorials,
# beginner_source/examples_autograd/polynomial_custom_function.py, BSD-3-Clause, at commit
# 02ed6c5cf613bbf2b631704eee62033b8bd746ef): the same Function and training loop, in float64
# and fewer steps so that it is a quick test. The tutorial's file itself is not vendored here;
# unchanged, it also needs `torch.device` and the factories' `device=` (see README).

def legendre_class(lib: Any) -> Any:
    class LegendrePolynomial3(lib.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return 0.5 * (5 * input ** 3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            input, = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input ** 2 - 1)
    return LegendrePolynomial3


def test_legendre_training_loop_matches_torch():
    """The tutorial's program (y = a + b * P3(c + d x) fitted to sin), 300 steps, float64."""
    def scenario(lib):
        P3 = legendre_class(lib).apply
        x = lib.linspace(-math.pi, math.pi, 200, dtype=lib.float64)
        y = lib.sin(x)
        a = lib.full((), 0.0, dtype=lib.float64, requires_grad=True)
        b = lib.full((), -1.0, dtype=lib.float64, requires_grad=True)
        c = lib.full((), 0.0, dtype=lib.float64, requires_grad=True)
        d = lib.full((), 0.3, dtype=lib.float64, requires_grad=True)
        losses = []
        for t in range(300):
            y_pred = a + b * P3(c + d * x)
            loss = (y_pred - y).pow(2).sum()
            if t % 100 == 99:
                losses.append(loss.item())
            loss.backward()
            with lib.no_grad():
                for p in (a, b, c, d):
                    p -= 5e-5 * p.grad
                    p.grad = None
        return losses, [p.item() for p in (a, b, c, d)], fn_name(P3(c + d * x))
    got = same(scenario)
    assert got[2] == "LegendrePolynomial3Backward"


# --- Functions: ctx features, one scenario each --------------------------------------------------

def test_saved_input_and_non_tensor_argument():
    def scenario(lib):
        class Scale(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.save_for_backward(x)
                ctx.k = k  # a non-tensor ctx attribute
                return x * x * k

            @staticmethod
            def backward(ctx, g):
                x, = ctx.saved_tensors
                assert ctx.needs_input_grad == (True, False)
                return 2 * x * g * ctx.k, None
        x = lib.tensor([1.0, -2.0, 0.5], requires_grad=True)
        y = Scale.apply(x, 3.0)
        node = y.grad_fn
        before = (node.k, node.saved_tensors[0], len(node.next_functions))
        y.sum().backward()
        return y, x.grad, before, outcome(lambda _: node.saved_tensors, lib)
    same(scenario)


def test_saved_intermediate_and_output():
    def scenario(lib):
        class Cube(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                sq = x * x  # an intermediate (made under no_grad) saved for backward
                out = sq * x
                ctx.save_for_backward(sq, out)
                return out

            @staticmethod
            def backward(ctx, g):
                sq, out = ctx.saved_tensors
                return g * 3 * sq + 0 * out
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = Cube.apply(x)
        saved_out = y.grad_fn.saved_tensors[1]
        y.backward(lib.ones(2))
        return x.grad, saved_out, fn_name(saved_out)
    same(scenario)


def test_mark_dirty_in_place_function():
    def scenario(lib):
        class Double_(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                x.mul_(2)
                ctx.mark_dirty(x)
                return x

            @staticmethod
            def backward(ctx, g):
                return g * 2
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        a = x * 1
        b = Double_.apply(a)
        version = a._version_counter if lib is ge else a._version
        b.sum().backward()
        leaf = lib.tensor([1.0], requires_grad=True)
        return b is a, version, b, x.grad, outcome(lambda _: Double_.apply(leaf), lib)
    same(scenario)


def test_dirty_input_must_be_returned():
    def scenario(lib):
        class Bad(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                x.add_(1)
                ctx.mark_dirty(x)
                return x * 1

            @staticmethod
            def backward(ctx, g):
                return g
        return Bad.apply(lib.tensor([1.0], requires_grad=True) * 1)
    assert isinstance(same(scenario), Raised)


def test_returned_input_is_a_new_output():
    def scenario(lib):
        class Ident(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x

            @staticmethod
            def backward(ctx, g):
                return g * 3
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = Ident.apply(x)
        y.sum().backward()
        return y is x, y, x.grad, x.is_leaf
    same(scenario)


def test_non_differentiable_output_and_integer_gradient():
    def scenario(lib):
        seen = []

        class Top(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                v, i = x.max(0)
                ctx.mark_non_differentiable(i)
                ctx.save_for_backward(i)
                return v, i

            @staticmethod
            def backward(ctx, gv, gi):
                seen.append(gi)
                i, = ctx.saved_tensors
                r = lib.zeros_like(gv.expand(3)).clone()
                r[i] = gv
                return r
        x = lib.tensor([3.0, 1.0, 2.0], requires_grad=True)
        v, i = Top.apply(x)
        (v * 5).backward()
        return v, i, x.grad, seen
    same(scenario)


def test_multiple_outputs_materialized_or_not():
    def scenario(lib):
        seen = []

        def make(materialize):
            class Two(lib.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    ctx.set_materialize_grads(materialize)
                    return x * 2, x * 3

                @staticmethod
                def backward(ctx, g1, g2):
                    seen.append((g1, g2))
                    r = g2 * 3
                    return r if g1 is None else r + g1 * 2
            return Two
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        for m in (True, False):
            p, q = make(m).apply(x)
            q.sum().backward()
        return p.output_nr, q.output_nr, p.grad_fn is q.grad_fn, x.grad, seen
    same(scenario)


def test_setup_context_form():
    def scenario(lib):
        class Mul(lib.autograd.Function):
            @staticmethod
            def forward(x, k):
                return x * k

            @staticmethod
            def setup_context(ctx, inputs, output):
                x, k = inputs
                ctx.k = k
                ctx.save_for_backward(x)

            @staticmethod
            def backward(ctx, g):
                return g * ctx.k, None
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = Mul.apply(x, 4.0)
        y.sum().backward()
        return y, fn_name(y), x.grad
    same(scenario)


def test_none_gradients_and_needs_input_grad():
    def scenario(lib):
        seen = []

        class Prod(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, y):
                seen.append(ctx.needs_input_grad)
                return x * y

            @staticmethod
            def backward(ctx, g):
                return None, g * 2
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        w = lib.tensor([3.0, 4.0], requires_grad=True)
        Prod.apply(x, w).sum().backward()
        with lib.no_grad():
            off = Prod.apply(x, w)
        plain = Prod.apply(lib.ones(2), lib.ones(2))
        return x.grad, w.grad, seen, off, plain
    same(scenario)


def test_integer_and_non_tensor_outputs():
    def scenario(lib):
        seen = []

        class Mixed(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.argmax(), x * 2, 5

            @staticmethod
            def backward(ctx, gi, g, gn):
                seen.append((gi, gn))
                return g * 2
        x = lib.tensor([1.0, 3.0], requires_grad=True)
        i, y, n = Mixed.apply(x)
        y.sum().backward()
        return i, y, n, x.grad, seen
    same(scenario)


def test_double_backward_through_a_differentiable_backward():
    def scenario(lib):
        P3 = legendre_class(lib).apply
        x = lib.tensor([0.5, -1.0, 2.0], dtype=lib.float64, requires_grad=True)
        g, = lib.autograd.grad(P3(x).sum(), x, create_graph=True)
        gg, = lib.autograd.grad(g.sum(), x, create_graph=True)
        ggg, = lib.autograd.grad(gg.sum(), x)
        return g, gg, ggg
    same(scenario)


def test_once_differentiable_refuses_double_backward():
    def scenario(lib):
        once = lib.autograd.function.once_differentiable

        class Sq(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x ** 2

            @staticmethod
            @once
            def backward(ctx, g):
                x, = ctx.saved_tensors
                return 2 * x * g
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        plain, = lib.autograd.grad(Sq.apply(x).sum(), x, create_graph=True)
        v = lib.ones(2, requires_grad=True)
        g, = lib.autograd.grad(Sq.apply(x), x, v, create_graph=True)
        name = fn_name(g) if lib is ge else g.grad_fn.name()
        return plain, g.detach(), name, outcome(lambda _: g.sum().backward(), lib)
    got = same(scenario)
    assert got[2] == "torch::autograd::Error"


@pytest.mark.parametrize("case", ["count", "shape", "non_tensor_input", "non_tensor_grad",
                                  "save_int", "no_backward", "no_forward"])
def test_function_errors(case):
    def scenario(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                if case == "save_int":
                    ctx.save_for_backward(3)
                return x * k

            @staticmethod
            def backward(ctx, g):
                return {"count": (g,), "shape": (lib.ones(3), None),
                        "non_tensor_input": (g, g), "non_tensor_grad": (3.0, None)}[case]

        class NoBackward(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                return x * k

        class NoForward(lib.autograd.Function):
            pass
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        cls = {"no_backward": NoBackward, "no_forward": NoForward}.get(case, F)
        cls.apply(x, 2.0).sum().backward()
    assert isinstance(same(scenario), Raised)


@pytest.mark.parametrize("which", ["input", "output", "leaf"])
def test_saved_tensor_version_checks(which):
    def scenario(lib):
        class Saves(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = x * 2
                ctx.save_for_backward(x, y)
                return y

            @staticmethod
            def backward(ctx, g):
                _ = ctx.saved_tensors
                return g * 2
        leaf = lib.tensor([1.0, 2.0], requires_grad=True)
        a = leaf if which == "leaf" else leaf * 1
        o = Saves.apply(a)
        with lib.no_grad():
            (o if which == "output" else a).add_(1)
        o.sum().backward()
    assert isinstance(same(scenario), Raised)


def test_function_backward_errors_carry_the_users_line():
    class Broken(ge.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            raise ValueError("user backward failed")
    x = ge.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="user backward failed") as info:
        Broken.apply(x).sum().backward()
    assert any(entry.name == "backward" and "raise ValueError" in str(entry.statement)
               for entry in info.traceback)


def test_function_nodes_are_accounted():
    """A custom node and what it saves count in the footprint, as built-in nodes do."""
    P3 = legendre_class(ge).apply
    x = ge.tensor(np.ones(1000), requires_grad=True)
    y = P3(x)
    fp = ge.autograd.footprint([y])
    assert fp.nodes == 2  # LegendrePolynomial3Backward and AccumulateGrad
    assert fp.saved == 8000
    with ge.limits.byte_budget(100):
        with pytest.raises(ge.errors.BudgetExceededError):
            P3(x)


# --- hooks ---------------------------------------------------------------------------------------

def test_tensor_hooks_modify_inspect_and_remove():
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        seen = []
        y = x * 2
        h = y.register_hook(lambda g: g * 10)
        y.register_hook(lambda g: seen.append(g.clone()))
        y.retain_grad()
        (y ** 2).sum().backward()
        first = (x.grad, y.grad)
        h.remove()
        h.remove()
        x.grad = None
        y = x * 2
        y.retain_grad()
        (y ** 2).sum().backward()
        return first, x.grad, y.grad, seen
    same(scenario)


def test_leaf_hooks_apply_to_backward_and_grad():
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        with x.register_hook(lambda g: g + 1):
            (x * 3).sum().backward()
            got = lib.autograd.grad((x * 3).sum(), x)
        x.grad = None
        (x * 3).sum().backward()
        return got, x.grad
    same(scenario)


def test_post_accumulate_grad_hook():
    def scenario(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        seen = []
        w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.clone()))
        (w * w).sum().backward()
        (w * 3).sum().backward()
        return seen, outcome(lambda _: (w * 2).register_post_accumulate_grad_hook(print), lib)
    same(scenario)


@pytest.mark.parametrize("bad", ["size", "dtype", "float", "no_grad"])
def test_tensor_hook_errors(bad):
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        if bad == "no_grad":
            return lib.tensor([1.0]).register_hook(lambda g: g)
        y = x * 2
        y.register_hook({"size": lambda g: lib.ones(2), "dtype": lambda g: g.double(),
                         "float": lambda g: 3.0}[bad])
        y.sum().backward()
    assert isinstance(same(scenario), Raised)


def test_node_pre_and_post_hooks():
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        seen = []
        y = x * 2
        y.grad_fn.register_prehook(lambda go: (go[0] * 5,))
        y.grad_fn.register_hook(lambda gi, go: seen.append((gi, go)))
        y.sum().backward()
        first = x.grad
        x.grad = None
        y = x * 2
        y.grad_fn.register_hook(lambda gi, go: (gi[0] * 7, None))
        y.sum().backward()
        return first, x.grad, seen
    same(scenario)


@pytest.mark.parametrize("bad", ["count", "none", "not_tuple"])
def test_node_hook_errors(bad):
    def scenario(lib):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2
        if bad == "count":
            y.grad_fn.register_hook(lambda gi, go: (gi[0],))
        elif bad == "none":
            y.grad_fn.register_hook(lambda gi, go: (gi[0], gi[0]))
        else:
            y.grad_fn.register_prehook(lambda go: 5)
        y.sum().backward()
    assert isinstance(same(scenario), Raised)


def test_hooks_on_a_custom_function_node():
    def scenario(lib):
        P3 = legendre_class(lib).apply
        x = lib.tensor([0.5, 2.0], requires_grad=True)
        y = P3(x)
        y.register_hook(lambda g: g * 2)
        y.grad_fn.register_hook(lambda gi, go: (gi[0] + 1,))
        y.sum().backward()
        return x.grad
    same(scenario)


def test_removed_hooks_do_not_run_and_dropped_nodes_forget_theirs():
    import gc

    x = ge.tensor([1.0], requires_grad=True)
    calls = []
    handles = [x.register_hook(lambda g: calls.append(1)),
               (x * 1).register_hook(lambda g: calls.append(2))]
    for h in handles:
        h.remove()
    (x * 2).sum().backward()
    assert calls == []
    gc.collect()
    assert not ge.autograd.hooks._NODES  # the dropped `x * 1` took its hook table with it
