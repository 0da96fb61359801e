"""Named regressions for reductions and linear algebra, each run with torch and with the engine.

`both(fn, arrays)` calls `fn(lib, *tensors)` with lib = torch and lib = the engine on the same
values (leaves that require grad) and compares outputs, grad_fn names, reprs and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import torch
from tests.test_client_overloads import EXTREME_ERRORS, SHAPE_ERRORS, SHAPE_SPELLINGS, X

Fn = Callable[..., Any]


def _leaf(lib: Any, a: Any, grad: bool) -> Any:
    a = np.asarray(a)
    if lib is torch:
        t = torch.from_numpy(a.copy())
        return t.requires_grad_(True) if grad and a.dtype.kind == "f" else t
    return ge.tensor(a, requires_grad=grad and a.dtype.kind == "f")


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t.detach().numpy()


def _name(t: Any) -> str | None:
    if t.grad_fn is None:
        return None
    return t.grad_fn.name() if isinstance(t, ge.Tensor) else type(t.grad_fn).__name__


def both(fn: Fn, *arrays: Any, grad: bool = True, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Run fn with torch and the engine; compare results, dtypes, grad_fn, repr and grads."""
    results = []
    for lib in (torch, ge):
        leaves = [_leaf(lib, a, grad) for a in arrays]
        out = fn(lib, *leaves)
        outs = tuple(out) if isinstance(out, tuple) else (out,)
        grads = None
        first = outs[0]
        if grad and first.requires_grad:
            v = np.linspace(-1, 1, first.numel()).reshape(tuple(first.shape))
            vt = (torch.from_numpy(v.astype(_np(first).dtype)) if lib is torch
                  else ge.tensor(v.astype(_np(first).dtype)))
            first.backward(vt)
            grads = [None if t.grad is None else _np(t.grad) for t in leaves]
        results.append((outs, grads, [t.dtype for t in leaves]))
    (t_outs, t_grads, _), (e_outs, e_grads, _) = results
    assert len(t_outs) == len(e_outs)
    for t, e in zip(t_outs, e_outs):
        assert tuple(e.shape) == tuple(t.shape)
        assert e.dtype.name == str(t.dtype).removeprefix("torch."), (e.dtype, t.dtype)
        assert e.requires_grad == t.requires_grad
        assert _name(e) == _name(t)
        np.testing.assert_allclose(_np(e), _np(t), rtol=rtol, atol=atol, equal_nan=True)
    if t_grads is not None or e_grads is not None:
        assert t_grads is not None and e_grads is not None
        for tg, eg in zip(t_grads, e_grads):
            assert (tg is None) == (eg is None)
            if tg is not None:
                assert eg.dtype == tg.dtype
                np.testing.assert_allclose(eg, tg, rtol=rtol, atol=atol, equal_nan=True)


def same_error(fn: Fn, *arrays: Any) -> None:
    """fn raises the same built-in exception type with the same message in torch and here."""
    with pytest.raises(Exception) as t_exc:
        fn(torch, *[_leaf(torch, a, False) for a in arrays])
    with pytest.raises(Exception) as e_exc:
        fn(ge, *[_leaf(ge, a, False) for a in arrays])
    assert isinstance(e_exc.value, t_exc.type), (e_exc.value, t_exc.value)
    assert str(e_exc.value) == str(t_exc.value).split("\n(Triggered internally")[0]


RNG = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# --- broadcasting reductions: gradients sum back to each input's shape ---------------------------

@pytest.mark.parametrize("fn", [
    lambda lib, x, y: (x + y).sum(1),
    lambda lib, x, y: (x * y).prod(0),
    lambda lib, x, y: (x - y).amax((0, 2)),
    lambda lib, x, y: (x * y).var(-1),
    lambda lib, x, y: (x + y).std(0, keepdim=True),
    lambda lib, x, y: (x * y).norm(dim=1),
    lambda lib, x, y: (x + y).logsumexp(2),
    lambda lib, x, y: (x * y).cumsum(-1),
    lambda lib, x, y: lib.max(x + y, 1).values,
    lambda lib, x, y: lib.min(x * y),
], ids=["sum", "prod", "amax", "var", "std", "norm", "logsumexp", "cumsum", "max_dim", "min"])
def test_broadcasting_reductions_sum_back_to_input_shape(fn: Fn):
    both(fn, randn(2, 1, 4), randn(3, 1))


@pytest.mark.parametrize("a, b", [((5, 1, 2, 3), (4, 3, 2)), ((2, 3), (6, 3, 4)),
                                  ((3,), (2, 3, 4)), ((2, 2, 3), (3,)), ((1, 2, 3), (2, 3, 4))])
def test_matmul_broadcast_batch_grads(a: tuple[int, ...], b: tuple[int, ...]):
    both(lambda lib, x, y: x @ y, randn(*a), randn(*b))


# --- max / min ties, every variant, against torch ------------------------------------------------

TIES = np.array([[1., 3., 3.], [2., 2., 2.], [-1., 5., 0.]], dtype=np.float32)


@pytest.mark.parametrize("fn", [
    lambda lib, x: x.max(),
    lambda lib, x: x.min(),
    lambda lib, x: lib.max(x),
    lambda lib, x: x.max(1),
    lambda lib, x: x.max(dim=0, keepdim=True),
    lambda lib, x: lib.min(x, 1),
    lambda lib, x: x.min(-1, True),
    lambda lib, x: x.amax(),
    lambda lib, x: x.amax(1),
    lambda lib, x: x.amin((0, 1), keepdim=True),
    lambda lib, x: x.amin(0),
    lambda lib, x: lib.max(x, x * 0 + 2),
    lambda lib, x: lib.max(x, x),
    lambda lib, x: lib.min(x, x * 0 + 2),
    lambda lib, x: x.max(),
], ids=["max", "min", "torch.max", "max_dim", "max_dim_keep", "min_dim", "min_dim_keep",
        "amax", "amax_dim", "amin_all_keep", "amin_dim", "max_other", "max_self", "min_other",
        "max_again"])
def test_ties_vs_torch(fn: Fn):
    both(fn, TIES)


def test_ties_all_equal_split_evenly():
    both(lambda lib, x: x.max(), np.full((2, 2), 7.0, np.float32))
    both(lambda lib, x: x.amin(1), np.full((2, 3), -1.0, np.float32))
    both(lambda lib, x: x.max(1), np.full((2, 3), 4.0, np.float32))


def test_max_with_nan_selects_nan():
    x = np.array([[1.0, math.nan, 3.0], [1.0, 2.0, 2.0]], np.float32)
    both(lambda lib, t: t.max(1), x)
    both(lambda lib, t: t.amax(1), x)
    both(lambda lib, t: t.argmax(1), x, grad=False)


def test_max_dim_result_is_torch_namedtuple():
    x = np.array([[1.0, 5.0], [4.0, 2.0]], np.float32)
    t = torch.from_numpy(x).requires_grad_(True)
    e = ge.tensor(x, requires_grad=True)
    tr, er = t.max(1), e.max(1)
    assert repr(er) == repr(tr)
    assert str(er) == str(tr)
    values, indices = er
    assert values is er.values and indices is er.indices and er[0] is values
    assert isinstance(er, tuple) and len(er) == 2
    assert repr(e.min(dim=0, keepdim=True)) == repr(t.min(dim=0, keepdim=True))
    assert indices.dtype is ge.int64 and not indices.requires_grad


# --- argmax / argmin / all / any: no gradient ----------------------------------------------------

@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_has_no_grad(name: str):
    x = ge.tensor(randn(3, 4), requires_grad=True)
    for r in (getattr(x, name)(), getattr(x, name)(1), getattr(x, name)(0, keepdim=True)):
        assert r.dtype is ge.int64 and not r.requires_grad and r.grad_fn is None
    t = torch.from_numpy(randn(3, 4)).requires_grad_(True)
    with pytest.raises(RuntimeError) as t_exc:
        getattr(t, name)().backward()
    with pytest.raises(RuntimeError) as e_exc:
        getattr(x, name)().backward()
    assert str(e_exc.value) == str(t_exc.value)
    both(lambda lib, v: getattr(v, name)(-1, True), randn(2, 3, 4), grad=False)
    both(lambda lib, v: getattr(v, name)(), randn(2, 3, 4), grad=False)


def test_all_any_are_bool_without_grad():
    x = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], np.float32)
    for fn in (lambda lib, t: t.all(), lambda lib, t: t.any(1), lambda lib, t: t.all(0, True),
               lambda lib, t: (t > 1).any(), lambda lib, t: lib.all(t, dim=(0, 1))):
        both(fn, x)


# --- float32 stays float32 ----------------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda lib, x, y: x.prod(1), lambda lib, x, y: x.max(), lambda lib, x, y: x.amax(0),
    lambda lib, x, y: x.var(), lambda lib, x, y: x.std(1), lambda lib, x, y: x.norm(),
    lambda lib, x, y: x.norm(p=3, dim=0), lambda lib, x, y: x.logsumexp(1),
    lambda lib, x, y: x.cumsum(0), lambda lib, x, y: x @ y, lambda lib, x, y: lib.mm(x, y),
    lambda lib, x, y: lib.einsum("ij,jk->ik", x, y),
    lambda lib, x, y: lib.outer(x.reshape((-1,)), y.reshape((-1,))),
    lambda lib, x, y: lib.dot(x.reshape((-1,)), y.reshape((-1,))),
])
def test_float32_stays_float32(fn: Fn):
    x, y = randn(3, 3), randn(3, 3)
    e = fn(ge, ge.tensor(x, requires_grad=True), ge.tensor(y, requires_grad=True))
    assert e.dtype is ge.float32
    both(fn, x, y, rtol=1e-4, atol=1e-5)


def test_int_inputs_follow_torch_dtypes():
    i = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    for fn in (lambda lib, t: t.prod(), lambda lib, t: t.cumsum(1), lambda lib, t: t.amax(1),
               lambda lib, t: t.max(0), lambda lib, t: t.logsumexp(1),
               lambda lib, t: lib.mm(t, t.reshape((3, 2))),
               lambda lib, t: lib.einsum("ij->j", t),
               lambda lib, t: lib.outer(t.reshape((-1,)), t.reshape((-1,)))):
        both(fn, i, grad=False)


# --- gradients torch defines case by case --------------------------------------------------------

@pytest.mark.parametrize("x", [
    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
    [[1.0, 0.0, 3.0], [4.0, 5.0, 6.0]],
    [[0.0, 2.0, 0.0], [4.0, 0.0, 6.0]],
    [[0.0, 0.0, 0.0], [4.0, 5.0, 0.0]],
], ids=["no_zero", "one_zero", "two_zeros", "row_of_zeros"])
def test_prod_grad_with_zeros(x: list[list[float]]):
    a = np.array(x, np.float32)
    both(lambda lib, t: t.prod(), a)
    both(lambda lib, t: t.prod(1), a)
    both(lambda lib, t: t.prod(0, keepdim=True), a)


def test_prod_second_derivative_with_one_zero():
    a = np.array([0.0, 2.0, 3.0], np.float64)
    out = []
    for lib in (torch, ge):
        x = _leaf(lib, a, True)
        (g,) = lib.autograd.grad(x.prod(), [x], create_graph=True)
        (h,) = lib.autograd.grad(g.sum(), [x])
        out.append((_np(g), _np(h)))
    np.testing.assert_allclose(out[1][0], out[0][0])
    np.testing.assert_allclose(out[1][1], out[0][1])


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 1.5, 0.5, math.inf, -math.inf, 0.0])
def test_norm_grad_at_zero(p: float):
    zero = np.zeros((2, 3), np.float32)
    both(lambda lib, t: lib.linalg.vector_norm(t, p) if lib is torch else t.norm(p=p), zero)
    mixed = np.array([[0.0, 1.0, -2.0], [0.0, 0.0, 0.0]], np.float32)
    both(lambda lib, t: lib.linalg.vector_norm(t, p, 1) if lib is torch else t.norm(p, 1), mixed)


def test_norm_spellings():
    x = randn(2, 3)
    both(lambda lib, t: t.norm(), x)
    both(lambda lib, t: lib.norm(t, p="fro", dim=1), x)
    both(lambda lib, t: t.norm(1, dim=0, keepdim=True), x)


def test_std_grad_at_zero_variance():
    both(lambda lib, t: t.std(1), np.ones((2, 3), np.float32))
    both(lambda lib, t: t.var(1, unbiased=False), np.ones((2, 3), np.float32))


def test_var_spellings():
    x = randn(3, 4)
    both(lambda lib, t: t.var(1, unbiased=False, keepdim=True), x)
    both(lambda lib, t: lib.var(t, 0, correction=0), x)
    both(lambda lib, t: t.std(dim=(0, 1), correction=2), x)


def test_logsumexp_is_stable():
    big = np.array([[1000.0, 1000.0], [-1000.0, -1001.0]], np.float32)
    both(lambda lib, t: t.logsumexp(1), big)
    infs = np.array([[-math.inf, -math.inf], [math.inf, 1.0], [-math.inf, 0.0]], np.float32)
    both(lambda lib, t: t.logsumexp(1), infs, grad=False)


def test_cumsum_reverse_gradient():
    both(lambda lib, t: t.cumsum(0), randn(5, 2))
    both(lambda lib, t: t.cumsum(-1), randn(2, 5))


def test_einsum_diagonal_and_list_form():
    both(lambda lib, t: lib.einsum("ii->i", t), randn(3, 3))
    both(lambda lib, t: lib.einsum("ii", t), randn(3, 3))
    both(lambda lib, a, b: lib.einsum("bij,bjk->bik", [a, b]), randn(2, 3, 4), randn(2, 4, 5))
    both(lambda lib, a, b: lib.einsum("...ij,...jk", a, b), randn(2, 3, 4), randn(4, 5))


@pytest.mark.parametrize("f", SHAPE_SPELLINGS, ids=[str(i) for i in range(len(SHAPE_SPELLINGS))])
def test_shape_spellings_match_torch(f: Fn) -> None:
    """The surface's shape spellings (einsum's forms, view, view_as, chunk, ...) in process, as
    tests/test_client_overloads runs them through a session."""
    both(f, np.array(X, dtype=np.float32))


@pytest.mark.parametrize("f", SHAPE_ERRORS, ids=[str(i) for i in range(len(SHAPE_ERRORS))])
def test_shape_spelling_errors_match_torch(f: Fn) -> None:
    same_error(f, np.array(X, dtype=np.float32))


def test_view_dtype_is_refused_in_both_layers_alike() -> None:
    """x.view(dtype) reinterprets bytes in torch; gradserve refuses it rather than convert."""
    with pytest.raises(RuntimeError, match=r"view\(dtype\) is not supported"):
        ge.zeros(2).view(ge.float32)


# --- error messages, against torch ---------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda lib, x: x.prod(2), lambda lib, x: x.max(-3), lambda lib, x: x.min(2),
    lambda lib, x: x.amax(5), lambda lib, x: x.amin((0, -3)), lambda lib, x: x.argmax(2),
    lambda lib, x: x.argmin(-3), lambda lib, x: x.var(2), lambda lib, x: x.std(-3),
    lambda lib, x: x.logsumexp(2), lambda lib, x: x.cumsum(2), lambda lib, x: x.all(2),
    lambda lib, x: x.any(-3), lambda lib, x: x.sum(2), lambda lib, x: x.amax((0, 0)),
])
def test_dim_out_of_range_message(fn: Fn):
    same_error(fn, randn(2, 3))


@pytest.mark.parametrize("fn", [
    lambda lib, x: x.max(1),
    lambda lib, x: x.argmax(),
    lambda lib, x: x.max(),
    lambda lib, x: x.amax(1),
])
def test_empty_reduction_messages(fn: Fn):
    same_error(lambda lib, x: fn(lib, x), np.zeros((2, 0), np.float32))


@pytest.mark.parametrize("a, b", [((2, 3), (4, 5)), ((3,), (4,)), ((3,), (4, 5)), ((2, 3), (4,)),
                                  ((2, 2, 3), (2, 4, 5)), ((2, 2, 3), (3, 2, 4, 5)),
                                  ((2, 2, 3), (4,)), ((4,), (2, 3, 4)), ((2, 3), (2, 4, 5)),
                                  ((), (3,)), ((3,), ()), ((5, 2, 3), (4, 5))])
def test_matmul_shape_mismatch_message(a: tuple[int, ...], b: tuple[int, ...]):
    same_error(lambda lib, x, y: x @ y, randn(*a), randn(*b))


@pytest.mark.parametrize("fn, a, b", [
    ("mm", (2, 3), (4, 5)), ("mm", (3,), (3, 4)), ("mm", (2, 3), (3,)),
    ("bmm", (2, 2, 3), (2, 4, 5)), ("bmm", (2, 2, 3), (3, 3, 5)), ("bmm", (2, 3), (2, 3)),
    ("dot", (3,), (4,)), ("dot", (2, 3), (3,)), ("outer", (2, 3), (3,)),
    ("outer", (3,), (2, 2))])
def test_linalg_shape_messages(fn: str, a: tuple[int, ...], b: tuple[int, ...]):
    same_error(lambda lib, x, y: getattr(lib, fn)(x, y), randn(*a), randn(*b))


@pytest.mark.parametrize("bias, a, b", [
    ((3,), (3,), (3, 3)), ((3,), (2, 3), (3,)), ((3,), (2, 3), (4, 3)), ((3,), (2, 3), (3, 4)),
    ((2, 1, 4), (2, 3), (3, 4)), ((3, 4), (2, 3), (3, 4))])
def test_addmm_shape_messages(bias: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]):
    same_error(lambda lib, c, x, y: lib.addmm(c, x, y), randn(*bias), randn(*a), randn(*b))


def test_addmm_dtype_messages():
    same_error(lambda lib, c, x, y: lib.addmm(c, x, y), np.ones(4), randn(2, 3), randn(3, 4))
    same_error(lambda lib, c, x, y: lib.addmm(c, x, y), randn(4), randn(2, 3), np.ones((3, 4)))
    same_error(lambda lib, c, x, y: lib.addmm(c, x, y), np.ones((2, 1, 4)), randn(2, 3),
               randn(3, 4))


def test_mixed_dtype_messages():
    x, y = randn(2, 3), np.ones((3, 4), np.float64)
    same_error(lambda lib, a, b: lib.mm(a, b), x, y)
    same_error(lambda lib, a, b: a @ b, x, y)
    same_error(lambda lib, a, b: lib.dot(a, b), randn(3), np.ones(3, np.float64))
    same_error(lambda lib, a, b: lib.einsum("ij,jk->ik", a, b), x, y)
    same_error(lambda lib, a: a.var(), np.ones(3, np.int64))
    same_error(lambda lib, a: a.norm(), np.ones(3, np.int64))
    same_error(lambda lib, a: a.argmax(), np.ones(3, bool))


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", [(2, 3), (4, 5)]), ("ij->k", [(2, 3)]), ("ij", [(2, 3, 4)]),
    ("i,j", [(2,)]), ("i", [(2,), (2,)]), ("iJ->i", [(2, 3)]), ("ij->ii", [(2, 3)]),
    ("i1->i", [(2, 3)]), ("i..->i", [(3,)]), ("i->i->i", [(3,)]), ("i j -> j", [(3, 2)]),
])
def test_einsum_equation_errors(equation: str, shapes: list[tuple[int, ...]]):
    arrays = [randn(*s) for s in shapes]
    try:
        torch.einsum(equation, *[torch.from_numpy(a) for a in arrays])
    except RuntimeError:
        same_error(lambda lib, *ts: lib.einsum(equation, *ts), *arrays)
    else:
        both(lambda lib, *ts: lib.einsum(equation, *ts), *arrays)


@pytest.mark.parametrize("equation", ["a" * 10_000, "ij,jk->ik;import os", "ïj->j", "i\x00j->j",
                                      "...,...->...,", "->", ",", "i,->i", "......->"])
def test_einsum_hostile_equations_are_rejected_cleanly(equation: str):
    x = ge.tensor(randn(2, 3))
    with pytest.raises(ge.errors.EngineError):
        ge.apply("einsum", [[x, x]], {"equation": equation})


def test_out_shape_is_checked_before_allocation():
    a = ge.tensor(randn(1000))
    with ge.limits.allocation_limit(10_000), pytest.raises(ge.errors.AllocationLimitError):
        ge.outer(a, a)
    with ge.limits.allocation_limit(10_000), pytest.raises(ge.errors.AllocationLimitError):
        ge.einsum("i,j->ij", a, a)
    m = ge.tensor(randn(1000, 1))
    with ge.limits.allocation_limit(10_000), pytest.raises(ge.errors.AllocationLimitError):
        m @ m.reshape((1, 1000))


@pytest.mark.parametrize("f", EXTREME_ERRORS, ids=[str(i) for i in range(len(EXTREME_ERRORS))])
def test_max_min_bad_calls_raise_torchs_type_and_text(f):
    x = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], np.float32)
    with pytest.raises(Exception) as t_exc:
        f(torch, torch.tensor(x))
    with pytest.raises(Exception) as e_exc:
        f(ge, ge.tensor(x))
    assert isinstance(e_exc.value, type(t_exc.value))
    assert str(e_exc.value) == str(t_exc.value)
