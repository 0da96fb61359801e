"""Named autograd regressions, each run twice — with `torch` and with `gradserve.engine` — and
compared: values, dtypes, gradients, grad_fn names, warnings, exception types and messages.

A scenario is a function of the module (`lib`): it builds tensors with `lib.tensor`, runs
`lib.autograd`, `lib.no_grad`... and returns whatever it wants compared (tensors, numbers,
strings, None, tuples of those). `same(scenario)` runs it on both and compares the outcomes; an
exception is part of the outcome (its built-in type and message).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import errors
from tests.reference import torch

# --- comparing the two runs ----------------------------------------------------------------------


class Raised:
    """An exception as the outcome of a scenario: built-in type name and message."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        if isinstance(exc, errors.EngineError):
            self.kind = exc.builtin_name
        else:
            self.kind = next(k.__name__ for k in type(exc).__mro__ if k.__module__ == "builtins")
        self.message = str(exc)

    def __repr__(self) -> str:
        return f"{self.kind}({self.message!r})"


def outcome(scenario: Callable[[Any], Any], lib: Any) -> Any:
    try:
        return scenario(lib)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        if lib is ge and not isinstance(exc, errors.EngineError):
            raise  # the engine raised something untyped: a bug, show its traceback
        return Raised(exc)


def assert_same(got: Any, want: Any, path: str = "result") -> None:
    if isinstance(want, torch.Tensor):
        assert isinstance(got, ge.Tensor), f"{path}: {got!r} is not a tensor like torch's {want!r}"
        assert got.dtype.name == str(want.dtype).removeprefix("torch."), f"{path}: dtype"
        assert tuple(got.shape) == tuple(want.shape), f"{path}: shape {got.shape} vs {want.shape}"
        assert got.requires_grad == want.requires_grad, f"{path}: requires_grad"
        assert got.is_leaf == want.is_leaf, f"{path}: is_leaf"
        want_fn = None if want.grad_fn is None else want.grad_fn.name()
        got_fn = None if got.grad_fn is None else got.grad_fn.name()
        assert got_fn == want_fn, f"{path}: grad_fn {got_fn} vs torch's {want_fn}"
        np.testing.assert_allclose(np.asarray(got.detach().numpy(), dtype=np.float64),
                                   want.detach().numpy().astype(np.float64), rtol=1e-5,
                                   atol=1e-6, err_msg=path)
    elif isinstance(want, Raised):
        assert isinstance(got, Raised), f"{path}: engine returned {got!r}, torch raised {want!r}"
        assert (got.kind, got.message) == (want.kind, want.message), (
            f"{path}: engine raised {got!r}, torch raised {want!r}")
    elif isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), (
            f"{path}: {got!r} vs torch's {want!r}")
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{path}: keys"
        for k in want:
            assert_same(got[k], want[k], f"{path}[{k!r}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), f"{path}: {got} vs {want}"
    else:
        assert isinstance(got, type(want)) and got == want, f"{path}: {got!r} vs torch's {want!r}"


def same(scenario: Callable[[Any], Any]) -> Any:
    """Run `scenario` with torch and with the engine; assert the outcomes match."""
    want = outcome(scenario, torch)
    got = outcome(scenario, ge)
    assert_same(got, want)
    return got


def caught_warnings(fn: Callable[[], Any]) -> tuple[Any, list[tuple[str, str]]]:
    """fn's result and its warnings (torch's C++ ones lose their "(Triggered internally...)")."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = fn()
    return result, [(w.category.__name__, str(w.message).split(" (Triggered internally")[0])
                    for w in seen]


def values(*tensors: Any) -> list[Any]:
    """Tensors compared by value and requires_grad only, not by grad_fn name."""
    return [(t.detach(), t.requires_grad) for t in tensors]


def leaf(lib: Any, data: Any, dtype: Any = None) -> Any:
    return lib.tensor(data, dtype=dtype, requires_grad=True)


# --- gradients: shapes, unused inputs, implicit gradients ---------------------------------------

@pytest.mark.parametrize("shapes", [((3,), (2, 3)), ((2, 1, 3), (4, 1)), ((), (2, 3)),
                                    ((1, 3), (2, 1))])
def test_broadcasting_sums_gradients_back_to_each_input_shape(shapes):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)

    def scenario(lib):
        x, y = leaf(lib, a), leaf(lib, b)
        (x * y + x - y / 2).sum().backward()
        return x.grad, y.grad

    same(scenario)


def test_iterating_a_tensor_unbinds_it_as_torch():
    def scenario(lib):
        x = lib.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
        rows = list(x * 1)
        (rows[0] * rows[2]).sum().backward()
        return [r.grad_fn.name() if lib is ge else type(r.grad_fn).__name__ for r in rows], x.grad
    same(scenario)
    same(lambda lib: list(lib.tensor(1.0)))


@pytest.mark.parametrize("op", [
    lambda lib, a, b: a + b, lambda lib, a, b: a * b, lambda lib, a, b: a - b,
    lambda lib, a, b: a / b, lambda lib, a, b: a ** b, lambda lib, a, b: lib.maximum(a, b),
    lambda lib, a, b: lib.minimum(a, b), lambda lib, a, b: a < b,
    lambda lib, a, b: lib.where(a > 0, a, b)])
@pytest.mark.parametrize("shapes", [((2,), (3,)), ((2, 3), (3, 2)), ((4, 1, 3), (2, 2))])
def test_shapes_that_do_not_broadcast_fail_with_torchs_message(op, shapes):
    # without an allocation limit the op runs unchecked: numpy's complaint must not leak
    same(lambda lib: op(lib, lib.ones(shapes[0]), lib.ones(shapes[1])))


def test_broadcast_reduction_inside_the_graph():
    def scenario(lib):
        x = leaf(lib, [[1.0, 2.0, 3.0]])
        y = leaf(lib, [[0.5], [2.0]])
        z = (x * y).sum(dim=0, keepdim=True) * x
        z.mean().backward()
        return z, x.grad, y.grad

    same(scenario)


def test_unused_input_without_allow_unused_raises():
    def scenario(lib):
        x, y = leaf(lib, 2.0), leaf(lib, 3.0)
        return lib.autograd.grad(x * 2, [x, y])

    got = same(scenario)
    assert isinstance(got.exc, errors.AutogradError)


def test_unused_input_with_allow_unused_is_none_or_zeros():
    def scenario(lib):
        x, y = leaf(lib, 2.0), leaf(lib, [3.0, 4.0])
        unused = lib.autograd.grad(x * 2, [x, y], allow_unused=True, retain_graph=True)
        zeros = lib.autograd.grad(x * 2, [x, y], allow_unused=True, materialize_grads=True)
        return unused, zeros

    same(scenario)


def test_unused_input_with_backward_leaves_grad_none():
    def scenario(lib):
        x, y = leaf(lib, 2.0), leaf(lib, 3.0)
        (x * 2).backward()
        return x.grad, y.grad

    same(scenario)


def test_non_scalar_backward_needs_a_gradient():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        (x * 2).backward()

    got = same(scenario)
    assert got.message == "grad can be implicitly created only for scalar outputs"


def test_non_scalar_backward_with_a_gradient():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        (x * x).backward(lib.tensor([1.0, -3.0]))
        return x.grad

    same(scenario)


def test_one_element_non_scalar_backward_is_implicit():
    def scenario(lib):
        x = leaf(lib, [2.0])
        (x * x).backward()
        return x.grad

    same(scenario)


@pytest.mark.parametrize("case", ["constant", "int", "detached", "no_grad"])
def test_backward_of_a_tensor_without_graph(case):
    def scenario(lib):
        x = leaf(lib, 2.0)
        if case == "constant":
            t = lib.tensor(1.0)
        elif case == "int":
            t = lib.tensor([1, 2]).sum()
        elif case == "detached":
            t = (x * 2).detach()
        else:
            with lib.no_grad():
                t = x * 2
        t.backward()

    got = same(scenario)
    assert got.message == "element 0 of tensors does not require grad and does not have a grad_fn"


def test_backward_of_a_leaf_that_requires_grad():
    def scenario(lib):
        x = leaf(lib, 2.0)
        x.backward()
        x.backward()
        return x.grad

    same(scenario)


def test_grad_of_an_input_that_does_not_require_grad():
    def scenario(lib):
        x, c = leaf(lib, 2.0), lib.tensor(3.0)
        return lib.autograd.grad(x * c, [c])

    same(scenario)


# --- retain_graph --------------------------------------------------------------------------------

def test_second_backward_without_retain_graph_fails():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = (x.exp() * x).sum()
        y.backward()
        first = x.grad.clone()
        try:
            y.backward()
        except RuntimeError as exc:
            return first, str(exc)

    got = same(scenario)
    assert got[1].startswith("Trying to backward through the graph a second time")


def test_retain_graph_allows_a_second_backward_and_accumulates():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = (x.sin() * x).sum()
        y.backward(retain_graph=True)
        first = x.grad.clone()
        y.backward(retain_graph=True)
        y.backward()  # the last one frees
        return first, x.grad

    same(scenario)


def test_autograd_grad_frees_the_graph_too():
    def scenario(lib):
        x = leaf(lib, 3.0)
        y = x * x
        g1 = lib.autograd.grad(y, [x])
        return g1, lib.autograd.grad(y, [x])

    same(scenario)


# Which nodes save tensors (and so refuse a second backward), as torch's derivatives.yaml says.
SECOND_BACKWARD = {
    "add_scalar": lambda lib, x: x + 2, "sub_scalar": lambda lib, x: x - 2,
    "rsub": lambda lib, x: 2 - x, "div_scalar": lambda lib, x: x / 2,
    "mul_scalar": lambda lib, x: 2 * x, "pow_scalar": lambda lib, x: x ** 2,
    "clamp": lambda lib, x: lib.clamp(x, 0, 1), "sin": lambda lib, x: x.sin(),
    "where": lambda lib, x: lib.where(x > 1, x, 0.0), "remainder": lambda lib, x: x % 2,
    "sum": lambda lib, x: x.sum(), "mean": lambda lib, x: x.mean(),
    "reshape": lambda lib, x: x.reshape((2, 1)), "expand": lambda lib, x: x.expand((3, 2)),
    "neg": lambda lib, x: -x, "abs": lambda lib, x: x.abs(), "relu": lambda lib, x: x.relu(),
    "to_float64": lambda lib, x: (x.to(lib.float64) if lib is torch
                                  else lib.to_dtype(x, dtype=lib.float64)),
    "clone": lambda lib, x: x.clone(), "exp": lambda lib, x: x.exp(),
    "add_tensors": lambda lib, x: x + x, "mul_const_tensor": lambda lib, x: x * lib.tensor(3.0),
}


@pytest.mark.parametrize("name", list(SECOND_BACKWARD))
def test_second_backward_fails_exactly_where_torch_saved_tensors(name):
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = SECOND_BACKWARD[name](lib, x).sum()
        y.backward()
        try:
            y.backward()
        except RuntimeError:
            return "freed", x.grad
        return "ok", x.grad

    same(scenario)


# --- higher order --------------------------------------------------------------------------------

THIRD_ORDER = {
    "sin_x_cubed": lambda lib, x: x.sin() * x ** 3,
    "exp_times_x": lambda lib, x: x.exp() * x,
    "tanh": lambda lib, x: x.tanh(),
    "sigmoid": lambda lib, x: x.sigmoid(),
    "log_x_squared": lambda lib, x: x.log() * x * x,
    "x_pow_x": lambda lib, x: x ** x,
    "reciprocal_sqrt": lambda lib, x: 1 / x.sqrt() + 2.0 ** x,
    "broadcast_mean": lambda lib, x: (x.reshape((3, 1)) * x).mean(dim=0).exp(),
}


@pytest.mark.parametrize("name", list(THIRD_ORDER))
def test_third_order_derivatives(name):
    def scenario(lib):
        x = leaf(lib, [0.5, 1.0, 1.5])
        y = THIRD_ORDER[name](lib, x).sum()
        (g1,) = lib.autograd.grad(y, x, create_graph=True)
        (g2,) = lib.autograd.grad(g1.sum(), x, create_graph=True)
        (g3,) = lib.autograd.grad((g2 * lib.tensor([1.0, -2.0, 0.5])).sum(), x)
        # torch's double-backward nodes (TanhBackwardBackward0, ...) are fused kernels the
        # engine composes from ops: compare values and whether each result requires grad.
        return values(g1, g2, g3)

    same(scenario)


def test_backward_with_create_graph_then_grad_of_grad():
    def scenario(lib):
        x = leaf(lib, 1.5)
        y = x ** 3
        _, seen = caught_warnings(lambda: y.backward(create_graph=True))
        g = x.grad
        x.grad = None
        g.backward()
        return values(g, x.grad), seen

    same(scenario)


# --- .grad, accumulation, zeroing -----------------------------------------------------------------

def test_grad_is_none_before_the_first_backward():
    same(lambda lib: (leaf(lib, [1.0]).grad, lib.tensor([1.0]).grad))


def test_gradients_accumulate_across_backward_calls():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        (x * x).sum().backward()
        first = x.grad.clone()
        (x * 3).sum().backward()
        return first, x.grad

    same(scenario)


def test_grad_zero_then_backward():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        (x * x).sum().backward()
        g = x.grad
        g.zero_()
        (x ** 3).sum().backward()
        return g is x.grad, x.grad

    same(scenario)


def test_grad_set_to_none_then_backward():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        (x * x).sum().backward()
        x.grad = None
        (x * 5).sum().backward()
        return x.grad

    same(scenario)


def test_non_leaf_grad_is_none_with_torch_warning():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = x * 2
        y.sum().backward()
        return caught_warnings(lambda: y.grad)

    got = same(scenario)
    assert got[0] is None and got[1][0][0] == "UserWarning"


def test_non_leaf_grad_warning_with_pytest_warns():
    x = ge.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.warns(UserWarning, match="is not a leaf Tensor is being accessed"):
        assert y.grad is None


def test_retain_grad_populates_a_non_leaf_without_warning():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = x * 2
        y.retain_grad()
        z = y * y
        z.sum().backward()
        return caught_warnings(lambda: (y.grad, y.retains_grad, x.retains_grad))

    same(scenario)


def test_retain_grad_accumulates():
    def scenario(lib):
        x = leaf(lib, 1.0)
        y = x * 2
        y.retain_grad()
        (y * y).backward(retain_graph=True)
        (y * y).backward()
        return y.grad, x.grad

    same(scenario)


# --- requires_grad rules, detach ------------------------------------------------------------------

def test_requires_grad_false_on_a_non_leaf_fails():
    def scenario(lib):
        y = leaf(lib, [1.0]) * 2
        y.requires_grad_(False)

    same(scenario)


def test_requires_grad_true_on_a_non_leaf_is_a_no_op():
    def scenario(lib):
        y = leaf(lib, [1.0]) * 2
        return y.requires_grad_(True) is y, y

    same(scenario)


def test_requires_grad_false_on_a_leaf_stops_recording():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        x.requires_grad_(False)
        y = x * 2
        return x, y

    same(scenario)


@pytest.mark.parametrize("how", ["tensor", "requires_grad_", "attribute"])
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_only_floating_tensors_can_require_grad(how, dtype):
    def scenario(lib):
        d = getattr(lib, dtype)
        if how == "tensor":
            return lib.tensor([1, 0], dtype=d, requires_grad=True)
        t = lib.tensor([1, 0], dtype=d)
        if how == "requires_grad_":
            return t.requires_grad_()
        t.requires_grad = True
        return t

    got = same(scenario)  # torch words it three ways, one per spelling
    assert "of floating point" in got.message


def test_detach_shares_data_and_never_requires_grad():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = x * 3
        d = y.detach()
        before = d.requires_grad, d.is_leaf, d.grad_fn is None
        d.add_(1.0)  # changes y too
        dx = x.detach()
        dx.zero_()  # and the leaf
        return before, y, x, d

    same(scenario)


def test_detached_in_place_invalidates_the_saved_original():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = x.exp()
        y.detach().mul_(2)
        y.sum().backward()

    got = same(scenario)
    assert "modified by an inplace operation" in got.message


def test_detach_in_place():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = x * 2
        y.detach_()
        return y, y.is_leaf, (y * x)

    same(scenario)


# --- grad mode ------------------------------------------------------------------------------------

def test_no_grad_context_and_nesting():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        with lib.no_grad():
            a = x * 2
            inner = lib.is_grad_enabled()
            with lib.enable_grad():
                b = x * 2
                enabled = lib.is_grad_enabled()
            c = x * 2
        return a, b, c, inner, enabled, lib.is_grad_enabled()

    same(scenario)


def test_set_grad_enabled_as_function_and_context():
    def scenario(lib):
        x = leaf(lib, [1.0])
        with lib.set_grad_enabled(False):
            a = x * 2
        lib.set_grad_enabled(False)
        b = x * 2
        off = lib.is_grad_enabled()
        lib.set_grad_enabled(True)
        with lib.set_grad_enabled(True):
            c = x * 2
        return a, b, off, c, lib.is_grad_enabled()

    same(scenario)


def test_grad_mode_decorators():
    def scenario(lib):
        x = leaf(lib, [1.0])

        @lib.no_grad()
        def f():
            return x * 2, lib.is_grad_enabled()

        @lib.no_grad
        def g():
            return x * 2, lib.is_grad_enabled()

        @lib.enable_grad()
        def h():
            return x * 2, lib.is_grad_enabled()

        @lib.set_grad_enabled(False)
        def k():
            return x * 2, lib.is_grad_enabled()

        after_decorating = lib.is_grad_enabled()
        with lib.no_grad():
            inside = h()
        return f(), g(), inside, k(), after_decorating, lib.is_grad_enabled(), f.__name__

    same(scenario)


def test_grad_mode_is_restored_after_an_exception():
    def scenario(lib):
        try:
            with lib.no_grad():
                raise KeyError("boom")
        except KeyError:
            pass
        return lib.is_grad_enabled()

    same(scenario)


@pytest.mark.parametrize("lib", [torch, ge], ids=["torch", "engine"])
def test_grad_mode_is_thread_local(lib):
    x = lib.tensor([1.0], requires_grad=True)
    in_no_grad = threading.Event()
    other_done = threading.Event()
    seen: dict[str, Any] = {}

    def quiet():
        with lib.no_grad():
            in_no_grad.set()
            other_done.wait(10)
            seen["quiet"] = (x * 2).requires_grad, lib.is_grad_enabled()

    def busy():
        in_no_grad.wait(10)
        seen["busy"] = (x * 2).requires_grad, lib.is_grad_enabled()
        other_done.set()

    threads = [threading.Thread(target=quiet), threading.Thread(target=busy)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"quiet": (False, False), "busy": (True, True)}
    # A new thread starts with grad mode on, whatever the starting thread's mode.
    with lib.no_grad():
        t = threading.Thread(target=lambda: seen.update(fresh=lib.is_grad_enabled()))
        t.start()
        t.join(10)
    assert seen["fresh"] is True


def test_no_grad_results_have_no_grad_fn_but_keep_data():
    def scenario(lib):
        x = leaf(lib, [1.0, -2.0])
        with lib.no_grad():
            # (Not reshape: torch's no_grad views of a leaf still say requires_grad=True.)
            outs = (x * 2, x.sin(), x.sum(), x.relu(), x.exp().reshape((2, 1)))
        return outs

    same(scenario)


# --- in-place -------------------------------------------------------------------------------------

def test_in_place_on_a_leaf_that_requires_grad_fails():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        x.add_(1.0)

    got = same(scenario)
    assert got.message == ("a leaf Variable that requires grad is being used in an in-place "
                           "operation.")


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/=", "zero_", "fill_", "copy_", "mul_",
                                "clamp_"])
def test_every_in_place_form_checks_the_leaf(op):
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        if op == "+=":
            x += 1
        elif op == "-=":
            x -= 1
        elif op == "*=":
            x *= 2
        elif op == "/=":
            x /= 2
        elif op == "fill_":
            x.fill_(3.0)
        elif op == "copy_":
            x.copy_(lib.tensor([5.0, 6.0]))
        elif op == "mul_":
            x.mul_(2.0)
        elif op == "clamp_":
            x.clamp_(0.0, 1.0)
        else:
            x.zero_()

    same(scenario)


def test_in_place_on_a_leaf_under_no_grad_is_allowed():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        (x * x).sum().backward()
        with lib.no_grad():
            x -= 0.1 * x.grad
            x.mul_(2.0)
        return x, x.grad, x.requires_grad, x.is_leaf

    same(scenario)


def test_in_place_on_a_non_leaf_records_the_op():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = x * 1
        y += 2
        y *= x
        y.sub_(1.0)
        y.sum().backward()
        return y, x.grad

    same(scenario)


@pytest.mark.parametrize("case", ["result_saved", "input_saved", "leaf_saved", "twice"])
def test_modifying_a_saved_tensor_fails_backward_with_torch_message(case):
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0, 3.0])
        if case == "result_saved":  # exp saves its result
            y = x.exp()
            y.add_(1)
            out = y
        elif case == "input_saved":  # mul saves both inputs; a is output 0 of MulBackward0
            a = x * 2
            out = a * a
            a.mul_(3)
        elif case == "leaf_saved":  # a constant leaf saved by mul
            c = lib.tensor([1.0, 2.0, 3.0])
            out = x * c
            c.add_(1)
        else:
            a = x.sin()
            out = a.cos()
            a.add_(1)
            a.add_(1)
        out.sum().backward()

    got = same(scenario)
    assert "modified by an inplace operation" in got.message


def test_in_place_on_an_unsaved_tensor_is_fine():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        a = x + 1  # add saves nothing
        b = a + 2
        a.mul_(2)
        b.sum().backward()
        return a, b, x.grad

    same(scenario)


def test_in_place_version_counter():
    def version(lib, t):
        return t._version if lib is torch else t._version_counter

    def scenario(lib):
        x = lib.tensor([1.0, 2.0])
        v0 = version(lib, x)
        x.add_(1)
        x += 1
        x.zero_()
        return v0, version(lib, x), version(lib, x.detach())

    same(scenario)


def test_grad_zero_and_in_place_on_grad():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        (x * x).sum().backward()
        x.grad *= 0.5
        x.grad += 1
        (x * 1).sum().backward()
        return x.grad

    same(scenario)


def test_fill_and_zero_on_a_non_leaf_give_torch_nodes():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        a, b, c = x * 1, x * 1, x * 1
        a.fill_(3.0)
        b.zero_()
        c.copy_(lib.tensor([4.0, 5.0]))
        (a + b + c * x).sum().backward()
        return a, b, c, x.grad

    same(scenario)


# --- backward(inputs=...), autograd.grad(grad_outputs=...) --------------------------------------

def test_backward_inputs_only_accumulates_into_those():
    def scenario(lib):
        x, y = leaf(lib, [1.0, 2.0]), leaf(lib, [3.0, 4.0])
        z = (x * y).sum()
        z.backward(inputs=[x], retain_graph=True)
        first = (x.grad, y.grad)
        z.backward(inputs=[y, x])
        return first, x.grad, y.grad

    same(scenario)


def test_backward_inputs_non_leaf():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = x * 2
        (y * y).sum().backward(inputs=[y])
        return y.grad, x.grad

    same(scenario)


def test_autograd_grad_with_grad_outputs():
    def scenario(lib):
        x, y = leaf(lib, [1.0, 2.0, 3.0]), leaf(lib, 2.0)
        a, b = x * y, (x * x).sum()
        return lib.autograd.grad([a, b], [x, y],
                                 grad_outputs=[lib.tensor([1.0, 0.5, -1.0]), lib.tensor(2.0)])

    same(scenario)


def test_autograd_grad_does_not_touch_dot_grad():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        g = lib.autograd.grad((x * x).sum(), x)
        return g, x.grad

    same(scenario)


def test_autograd_grad_outputs_shape_mismatch():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        lib.autograd.grad(x * 2, x, grad_outputs=lib.tensor([1.0, 2.0, 3.0]))

    same(scenario)


# --- deep graphs ----------------------------------------------------------------------------------

def test_100000_op_chain_backward():
    x = ge.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0000001
    y.backward()
    factor = float(np.float32(1.0000001))  # the Python float becomes float32, as in torch
    assert x.grad.item() == pytest.approx(factor ** 100_000, rel=1e-3)
    assert x.grad.dtype is ge.float32


def test_10000_op_chain_with_create_graph():
    x = ge.tensor(0.5, requires_grad=True)
    y = x * x
    for _ in range(10_000):
        y = y * 1.0001
    (g,) = ge.autograd.grad(y, x, create_graph=True)
    (g2,) = ge.autograd.grad(g, x)
    scale = 1.0001 ** 10_000
    assert g.item() == pytest.approx(2 * 0.5 * scale, rel=1e-2)
    assert g2.item() == pytest.approx(2 * scale, rel=1e-2)


def test_deep_graph_is_freed_without_recursion_error():
    x = ge.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    del y  # dropping the last reference to a 100,000-node chain


# --- dtypes ---------------------------------------------------------------------------------------

def test_float32_is_preserved_through_forward_and_backward():
    def scenario(lib):
        x = leaf(lib, [0.5, 1.5])
        w = leaf(lib, [[1.0, -1.0], [2.0, 0.5]])
        y = (w * x).sum(dim=1).sigmoid() * 2.5 + x.exp() / 3 - 1.5 ** x
        y = y.clamp(0.1, 10.0).log().mean()
        y.backward()
        return y, x.grad, w.grad, x.grad.dtype == lib.float32

    same(scenario)


_DTYPE_CASES = {
    "int64 * float32": lambda lib: lib.tensor([1, 2]) * lib.tensor([1.5, 2.5]),
    "int + python float": lambda lib: lib.tensor([1, 2]) + 1.5,
    "python float + int": lambda lib: 1.5 + lib.tensor([1, 2]),
    "float32 + float64 0-dim": lambda lib: lib.tensor([1.0]) + lib.tensor(2.0, dtype=lib.float64),
    "float64 0-dim + int64": lambda lib: lib.tensor(2.0, dtype=lib.float64) + lib.tensor([1, 2]),
    "bool + int": lambda lib: lib.tensor([True, False]) + lib.tensor([1, 2]),
    "bool + python int": lambda lib: lib.tensor([True, False]) + 3,
    "bool + bool": lambda lib: lib.tensor([True, False]) + lib.tensor([True, True]),
    "int / int": lambda lib: lib.tensor([1, 2]) / lib.tensor([2, 2]),
    "int32 + int64": lambda lib: lib.tensor([1], dtype=lib.int32) + lib.tensor([1]),
    "int32 + python int": lambda lib: lib.tensor([1], dtype=lib.int32) + 5,
    "int32 * int64 0-dim": lambda lib: lib.tensor([1], dtype=lib.int32) * lib.tensor(5),
    "float32 * python int": lambda lib: lib.tensor([1.5]) * 2,
    "float64 * python float": lambda lib: lib.tensor([1.5], dtype=lib.float64) * 2.5,
    "int ** python float": lambda lib: lib.tensor([1, 2]) ** 0.5,
    "int // int": lambda lib: lib.tensor([7, -7]) // lib.tensor([2, 2]),
    "int < python float": lambda lib: lib.tensor([1, 2]) < 1.5,
    "int sqrt": lambda lib: lib.tensor([1, 4]).sqrt(),
    "int32 sum": lambda lib: lib.tensor([1, 4], dtype=lib.int32).sum(),
    "bool sum": lambda lib: lib.tensor([True, True]).sum(),
    "0-dim int64 + 0-dim float32": lambda lib: lib.tensor(1) + lib.tensor(2.5),
    "python float / int 0-dim": lambda lib: 3.0 / lib.tensor(2),
    "where float32 python float": lambda lib: lib.where(lib.tensor([True, False]),
                                                        lib.tensor([1.0, 2.0]), 0.0),
    "maximum int float": lambda lib: lib.maximum(lib.tensor([1, 5]), lib.tensor([2.5, 2.5])),
}


@pytest.mark.parametrize("case", list(_DTYPE_CASES))
def test_dtype_promotion_table(case):
    same(_DTYPE_CASES[case])


def test_gradient_dtype_follows_each_input():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = leaf(lib, [3.0, 4.0], dtype=lib.float64)
        z = (x * y).sum()
        z.backward()
        return z, x.grad, y.grad

    same(scenario)


# --- printing -------------------------------------------------------------------------------------

_REPRS = {
    "leaf": lambda lib: leaf(lib, 3.0),
    "pow": lambda lib: leaf(lib, 3.0) ** 2,
    "vector": lambda lib: leaf(lib, [1.0, 2.0, 3.0]) * (2 / 3),
    "matrix": lambda lib: leaf(lib, [[1.0, -2.5], [3.25, 4.0]]).sigmoid(),
    "float64": lambda lib: leaf(lib, [1.0, 2.0], dtype=lib.float64).exp(),
    "int": lambda lib: lib.tensor([1, 2, 3]),
    "bool": lambda lib: lib.tensor([True, False]) & lib.tensor([True, True]),
    "detached": lambda lib: (leaf(lib, [1.0]) * 2).detach(),
    "no_grad": lambda lib: _under_no_grad(lib),
    "sum": lambda lib: leaf(lib, [1.0, 2.0]).sum(),
    "mean": lambda lib: leaf(lib, [1.0, 2.0]).mean(),
    "grad": lambda lib: _grad_of_square(lib),
}


def _under_no_grad(lib: Any) -> Any:
    with lib.no_grad():
        return leaf(lib, [1.0, 2.0]) * 2


def _grad_of_square(lib: Any) -> Any:
    x = leaf(lib, [1.0, 2.0])
    (x * x).sum().backward()
    return x.grad


@pytest.mark.parametrize("case", list(_REPRS))
def test_repr_matches_torch(case):
    same(lambda lib: (repr(_REPRS[case](lib)), str(_REPRS[case](lib))))


def test_grad_fn_graph_matches_torch():
    def scenario(lib):
        x = leaf(lib, 2.0)
        y = (x * 3).sin()
        fn = y.grad_fn
        mul = fn.next_functions[0][0]
        acc = mul.next_functions[0][0]
        return (fn.name(), mul.name(), acc.name(), len(mul.next_functions),
                mul.next_functions[1][0], acc.variable is x)

    same(scenario)


# --- nodes torch records without a derivative, and node names that depend on the call ----------

@pytest.mark.parametrize("case", ["floor_divide", "floor_divide_scalar", "remainder_scalar_first"])
def test_backward_through_an_op_without_derivative_fails_as_torch(case):
    def scenario(lib):
        x = leaf(lib, [1.5, -2.5])
        if case == "floor_divide":
            y = x // lib.tensor([2.0, 0.5])
        elif case == "floor_divide_scalar":
            y = x // 2
        else:
            y = 5.0 % x
        described = repr(y)
        y.sum().backward()
        return described

    got = same(scenario)
    assert got.message.startswith("derivative for aten::")


def test_fill_names_its_node_by_spelling():
    def scenario(lib):
        x = leaf(lib, [1.0, 2.0])
        y = x * 1
        y.fill_(3.0)
        return y, lib.fill(x, 2.0)

    same(scenario)


def test_clamp_with_crossing_tensor_bounds():
    def scenario(lib):
        x = leaf(lib, [-1.0, 0.25, 0.5, 2.0])
        lo, hi = leaf(lib, [0.0, 0.6, 0.6, 0.0]), leaf(lib, [1.0, 0.4, 0.4, 1.0])
        y = lib.clamp(x, lo, hi)
        y.backward(lib.tensor([1.0, 2.0, 3.0, 4.0]))
        return y, x.grad, lo.grad, hi.grad

    same(scenario)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_is_torchs_threshold_backward_bit_for_bit(dtype):
    # threshold_backward(grad, result, 0): `result <= 0 ? 0 : grad` (+0.0, whatever grad's
    # sign; grad where the result is NaN), for a contiguous and a transposed gradient, and the
    # create_graph rule the same
    rng = np.random.default_rng(7)
    data = rng.standard_normal((300, 257)).astype(dtype)
    data.flat[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-40]
    grad = rng.standard_normal((300, 257)).astype(dtype)
    grad.flat[:12] = [3, -np.inf, np.nan, -0.0, 5, np.inf, np.nan, -0.0, 0.0, np.inf, -np.inf,
                      -1e-40]
    got = {}
    for lib in (ge, torch):
        bits = []
        for g in (lib.tensor(grad), lib.tensor(grad.T.copy()).t()):
            x = lib.tensor(data, requires_grad=True)
            x.relu().backward(g)
            bits.append(x.grad.numpy().tobytes())
        x = lib.tensor(data, requires_grad=True)
        (gx,) = lib.autograd.grad(x.relu(), x, lib.tensor(grad), create_graph=True)
        bits.append(gx.detach().numpy().tobytes())
        got[lib.__name__] = bits
    assert got["gradserve.engine"] == got["torch"]
