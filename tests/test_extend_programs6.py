"""Gaps a sixth set of public programs that extend autograd met through gradserve (custom
Functions, hooks, gradcheck), each checked against torch in process (the engine) and through a
session: a dirty input returned as the same tensor and torch's dirty refusals raised in apply,
None gradients for non-tensor outputs, instantiating or calling a Function, gradgradcheck's
random grad_outputs drawn as torch's, `torch.autograd.graph.Node`, `torch.cuda.empty_cache`."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch
from tests.reference import builtin_error as _error

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _doubling(t: Any, mark: bool = True) -> Any:
    """A Function that doubles its input in place (and marks it dirty when `mark`)."""
    class Doubling(t.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            x.mul_(2)
            if mark:
                ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g * 2
    return Doubling


# --- mark_dirty ----------------------------------------------------------------------------------

def test_dirty_input_is_returned_as_the_same_tensor(lib):
    def run(t: Any) -> Any:
        a = t.tensor([1.0, -2.0, 3.0], requires_grad=True)
        x = a.clone()
        v0 = x._version
        y = _doubling(t).apply(x)
        (y * t.tensor([1.0, 2.0, 3.0])).sum().backward()
        return y is x, x._version - v0, y.grad_fn.name(), x.tolist(), a.grad.tolist()
    assert run(lib) == run(torch)


@pytest.mark.parametrize("make", [
    lambda t: t.tensor([1.0, 2.0], requires_grad=True),             # a leaf
    lambda t: t.tensor([1.0, 2.0], requires_grad=True).view(2),     # a view of a leaf
])
def test_dirty_leaf_is_refused_in_apply(lib, make):
    # refused by apply itself, before any value of the result is read
    def run(t: Any) -> None:
        _doubling(t).apply(make(t))
    assert _error(run, lib) == _error(run, torch)


def test_dirty_input_not_returned_is_refused_in_apply(lib):
    def run(t: Any) -> None:
        class Hidden(t.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any) -> Any:
                ctx.mark_dirty(x)
                return x * 2

            @staticmethod
            def backward(ctx: Any, g: Any) -> Any:
                return g
        Hidden.apply(t.tensor([1.0], requires_grad=True).clone())
    assert _error(run, lib) == _error(run, torch)


# --- outputs that are not tensors ---------------------------------------------------------------

def test_non_tensor_outputs_get_none_gradients(lib):
    def run(t: Any) -> Any:
        seen = []

        class WithCount(t.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any) -> Any:
                return x * 3, 7, x.sum(), "label"

            @staticmethod
            def backward(ctx: Any, g: Any, g_count: Any, g_sum: Any, g_label: Any) -> Any:
                seen.append((g_count, g_label, g_sum.tolist()))
                return g * 3 + g_sum

        x = t.tensor([1.0, 2.0], requires_grad=True)
        y, n, s, label = WithCount.apply(x)
        (y.sum() + 2 * s).backward()
        return seen, n, label, x.grad.tolist()
    assert run(lib) == run(torch)


# --- Function instances --------------------------------------------------------------------------

def test_instantiating_a_function_warns_and_calling_it_raises(lib):
    def run(t: Any) -> Any:
        class Legacy(t.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any) -> Any:
                return x

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = Legacy()
        texts = [(w.category.__name__, str(w.message).split("'")[-1]) for w in caught]
        return texts, _error(lambda _: f(t.ones(2)), t)
    assert run(lib) == run(torch)


# --- gradgradcheck -------------------------------------------------------------------------------

def test_gradgradcheck_draws_grad_outputs_as_torch(lib):
    # torch's grad_outputs come from make_tensor (uniform_(-1, 1) per differentiable output), so
    # a program's later random draws depend on them
    def run(t: Any) -> Any:
        t.manual_seed(3)
        x = t.rand(2, 3, dtype=t.float64, requires_grad=True)
        k = t.rand(3, dtype=t.float64)
        ok = t.autograd.gradgradcheck(lambda a: (a * a * k, (a * 2).detach()), (x,))
        return ok, t.rand(4).tolist()
    assert run(lib) == run(torch)


# --- torch.autograd.graph, torch.cuda ------------------------------------------------------------

def test_grad_fns_are_autograd_graph_nodes(lib):
    def run(t: Any) -> Any:
        class Twice(t.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any) -> Any:
                return x * 2

            @staticmethod
            def backward(ctx: Any, g: Any) -> Any:
                return g * 2

        node = t.autograd.graph.Node
        a = t.tensor([1.0, 2.0], requires_grad=True)
        b = a.clone()
        y = Twice.apply(b)
        return (isinstance(b.grad_fn, node), isinstance(y.grad_fn, node),
                isinstance(b.grad_fn.next_functions[0][0], node), isinstance(a, node),
                issubclass(type(y.grad_fn), node))
    assert run(lib) == run(torch)


def test_autograd_graph_names_what_gradserve_lacks(lib):
    with pytest.raises(AttributeError, match="torch.autograd.graph.register_multi_grad_hook"):
        lib.autograd.graph.register_multi_grad_hook  # noqa: B018


def test_cuda_empty_cache_does_nothing_without_cuda(lib):
    assert lib.cuda.empty_cache() is torch.cuda.empty_cache() is None
