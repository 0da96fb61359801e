"""x[...] and x[...] = v through the client (Index / IndexPut instructions) against torch: every
index form of the engine's own tests (values, grad_fn names, gradients, second derivatives),
assignment, iteration, torch's errors and messages with the user's line, lazy recording, and the
tracer's refusal.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import gradserve.client as gc
from tests.reference import torch
from tests.test_engine_shape_index import INDEX_ERRORS as ENGINE_INDEX_ERRORS
from tests.test_engine_shape_index import INDICES, SETS, X, _convert

RNG = np.random.default_rng(1)


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture(scope="module")
def session(client):
    with client.session() as s:
        yield s


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t.detach().numpy()


def _fn_name(t: Any) -> str:
    return t.grad_fn.name()


def _check_same(session: Any, f: Any, data: np.ndarray = X) -> None:
    """f(lib, x) in torch and through the client: shape, dtype, grad_fn name, values, gradient
    and a second derivative through the indexing backward."""
    got = {}
    w = None
    for lib in (torch, session):
        x = lib.tensor(data.copy(), requires_grad=True)
        y = f(lib, x)
        if w is None:
            w = RNG.standard_normal(tuple(y.shape)).astype(np.float32)
        (g,) = lib.autograd.grad((y * lib.tensor(w)).sum(), x, create_graph=True)
        (g2,) = lib.autograd.grad((g * g * x).sum(), x)
        got[lib is torch] = (tuple(y.shape), str(y.dtype), _fn_name(y), _np(y), _np(g),
                             _np(g2))
    t, c = got[True], got[False]
    assert c[:3] == t[:3]
    for a, b in zip(c[3:], t[3:]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("index", INDICES, ids=[repr(i) for i in INDICES])
def test_getitem_matches_torch(session, index):
    _check_same(session, lambda lib, x: x[_convert(index, lib)])


def test_getitem_with_python_lists_and_bool_masks(session):
    m3, m2 = X > 0, X[..., 0] > 0
    for f in (lambda lib, x: x[_convert(m3, lib)], lambda lib, x: x[_convert(m2, lib)],
              lambda lib, x: x[_convert(m2, lib), 1],
              lambda lib, x: x[:, _convert(X[0, :, 0] > 0, lib)],
              lambda lib, x: x[_convert(np.array([True, False]), lib), :, [0, 1, 2]],
              lambda lib, x: x[x > 0], lambda lib, x: x[[True, False]],
              lambda lib, x: x[:, [[0, 1], [2, 2]]], lambda lib, x: x[[1.7, 0.2]],
              lambda lib, x: x[lib.tensor([1, 0], dtype=lib.int32)],
              lambda lib, x: x[lib.tensor(1)], lambda lib, x: x[lib.tensor(True)],
              lambda lib, x: x[np.int64(1), np.int32(-1)], lambda lib, x: x[[]],
              lambda lib, x: x[2**62:], lambda lib, x: x[:, -(2**62):2**62:2**62],
              lambda lib, x: x[..., ...]):
        _check_same(session, f)


def test_a_nested_list_is_a_tuple_with_torchs_warning(session):
    for lib in (torch, session):
        x = lib.tensor(X)
        with pytest.warns(UserWarning, match="non-tuple sequence") as record:
            y = x[[[0, 1], [1, 0]]]
        assert record[0].filename == __file__  # the user's line, as torch points at it
        assert y.tolist() == X[[0, 1], [1, 0]].tolist()


def test_a_tensor_slice_bound_and_int64_overflow(session):
    for lib in (torch, session):
        x = lib.tensor(X)
        assert x[lib.tensor(1):].tolist() == X[1:].tolist()
        assert x[:, : lib.tensor(2)].shape == (2, 2, 4)
    _assert_same_error(session, lambda lib, x: x[2**70], "Overflow when unpacking long long")


@pytest.mark.parametrize("index, value", SETS, ids=[repr(i) for i, _ in SETS])
def test_setitem_matches_torch(session, index, value):
    w = RNG.standard_normal(X.shape).astype(np.float32)
    results = []
    for lib in (torch, session):
        leaf = lib.tensor(X.copy(), requires_grad=True)
        val = lib.tensor(value, requires_grad=True) if isinstance(value, np.ndarray) else value
        h = leaf * 2
        h[_convert(index, lib)] = val
        name = _fn_name(h)
        (h * lib.tensor(w)).sum().backward()
        results.append((name, _np(h), leaf.grad.numpy(),
                        val.grad.numpy() if isinstance(value, np.ndarray) else None))
    (tn, th, tg, tv), (cn, ch, cg, cv) = results
    assert cn == tn
    np.testing.assert_allclose(ch, th)
    np.testing.assert_allclose(cg, tg)
    if tv is not None:
        np.testing.assert_allclose(cv, tv, rtol=1e-6)


def test_setitem_checks_as_torch(session):
    for lib in (torch, session):
        x = lib.tensor(X, requires_grad=True)
        with pytest.raises(RuntimeError, match="^a view of a leaf Variable that requires grad "
                                               "is being used in an in-place operation."):
            x[0] = 1.0
            x.sum().item()  # the client raises at the first flush
        with pytest.raises(RuntimeError, match="^a leaf Variable that requires grad"):
            x[x > 0] = 1.0
            x.sum().item()
        with lib.no_grad():
            x[0] = 1.0  # allowed without grad mode, as torch
        assert x[0].tolist() == [[1.0] * 4] * 3
        i = lib.zeros(2, 3, dtype=lib.int64)
        i[0] = 2.7
        i[1] = lib.tensor([1.5, 2.5, 3.5])
        assert i.tolist() == [[2, 2, 2], [1, 2, 3]]
    for index, value in ((0, lambda lib: lib.ones(3)), ([0, 1], lambda lib: lib.ones(3, 3, 4)),
                         (0, lambda lib: lib.ones(2, 3, 4)), (0, lambda lib: [1.0] * 4),
                         (0, lambda lib: np.ones(4, np.float32)), (0, lambda lib: "a")):
        def assign(lib, x, index=index, value=value):
            h = x * 1
            h[index] = value(lib)
            return h.sum()
        _assert_same_error(session, assign)


def test_iteration_matches_torch(session):
    rows = {}
    for lib in (torch, session):
        x = lib.tensor(X, requires_grad=True)
        out = [r for r in x * 1]
        assert len(out) == 2
        sum((r * (k + 1)).sum() for k, r in enumerate(out)).backward()
        rows[lib is torch] = ([_fn_name(r) for r in out], [_np(r) for r in out],
                              x.grad.numpy())
        with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
            iter(lib.tensor(1.0))
    assert rows[False][0] == rows[True][0] == ["UnbindBackward0"] * 2
    for a, b in zip(rows[False][1], rows[True][1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rows[False][2], rows[True][2])


def _assert_same_error(session: Any, f: Any, message: str | None = None) -> None:
    caught = []
    for lib in (torch, session):
        with pytest.raises(Exception) as err, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = f(lib, lib.tensor(X))
            if out is not None and lib is session:
                out.tolist()  # recorded lazily: the error arrives with the first read
        caught.append(err.value)
    t_err, c_err = caught
    assert type(c_err) is type(t_err) or isinstance(c_err, type(t_err)), (c_err, t_err)
    t_msg = str(t_err).split("\n")[0]
    assert str(c_err) == t_msg
    if message is not None:
        assert t_msg == message


INDEX_ERRORS = [
    *ENGINE_INDEX_ERRORS,
    lambda lib, x: x[1.5:], lambda lib, x: x["a"], lambda lib, x: x[0, {}],
]


@pytest.mark.parametrize("f", INDEX_ERRORS, ids=[str(i) for i in range(len(INDEX_ERRORS))])
def test_index_errors_match_torch(session, f):
    _assert_same_error(session, f)


def test_an_index_error_names_the_users_line(session):
    x = session.tensor(X, requires_grad=True)
    y = x[7]  # the failing line
    line = test_an_index_error_names_the_users_line.__code__.co_firstlineno + 2
    with pytest.raises(IndexError, match="index 7 is out of bounds for dimension 0 with size 2") \
            as err:
        (y * 2).sum().backward()
    assert err.value.gradserve_origin == f"{__file__}:{line}"
    with pytest.raises(IndexError):  # the failed result stays failed
        y.tolist()
    assert (x[1] * 2).sum().item() == pytest.approx(float((X[1] * 2).sum()), rel=1e-6)


def test_indexing_is_recorded_lazily(session):
    before = session.round_trips
    x = session.tensor(X, requires_grad=True)
    h = x * 1
    h[:, 0] = 0.0
    loss = (h[0] * h[1, None]).sum() + h[h.detach() > 0].sum() + h[..., [0, 2]].sum()
    loss.backward()  # one batch: everything recorded so far, and backward
    assert session.round_trips == before + 1
    grad = x.grad.numpy()
    tx = torch.tensor(X, requires_grad=True)
    th = tx * 1
    th[:, 0] = 0.0
    ((th[0] * th[1, None]).sum() + th[th.detach() > 0].sum() + th[..., [0, 2]].sum()).backward()
    np.testing.assert_allclose(grad, tx.grad.numpy())


def test_tensors_of_another_session_are_refused(client, session):
    with client.session() as other:
        idx = other.tensor([0])
        x = session.tensor(X)
        with pytest.raises(RuntimeError, match="another session"):
            x[idx]
        with pytest.raises(RuntimeError, match="another session"):
            x[0] = other.tensor(1.0)


def test_tracing_refuses_indexing_with_a_clear_error(client):
    grad_x0 = client.grad(lambda x: (x[0] ** 2).sum())
    with pytest.raises(gc.TracingError, match=r"indexing \(x\[...\] and x\[...\] = v\) cannot "
                                              "be traced"):
        grad_x0(np.ones(3, np.float32))
    assert client.grad(lambda x: (x.select(0, 0) ** 2).sum())(
        np.ones(3, np.float32)).tolist() == [2.0, 0.0, 0.0]
