"""The session's recording fast paths against its general path, differentially.

- `Session._apply_plain`'s hot path (a call whose result `_describe` answered before, found in
  `session._INFERRED` by the same key) records the same tape words, constants, flags, user line
  and result metadata as the general path (`_describe` + `_record_tape`) does for the same call,
  and the two results have the same values; each case checks which path it took. So does an op
  with attributes recorded from `_ATTR_OPS` (`Session._record_attr_op`).
- Python's operators (`Session._operator`) record what `Session.call` records for the same op
  and arguments, and raise the same errors.
- An instruction outside a tape (`Recorder.add`, which keeps the user's frame and finds the line
  only for an error) still names the user's line when it fails.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import gradserve.client as gc_client
import gradserve.client.session as client_session
from gradserve.client.batch import site_origin
from tests.reference import torch


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture(params=[False, True], ids=["omit", "verify"])
def session(request, client):
    with client.session(verify_meta=request.param) as s:
        yield s


def _inputs(t):
    x = t.tensor(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    y = t.tensor(np.linspace(0.5, 2, 3, dtype=np.float32))
    k = t.tensor([[1, 2, 3], [4, 5, 6]])
    return x, y, k


# (name, the call) on (torch module, x, y, k): every kind of tape input the hot path encodes
# (handles, floats, ints, bools), operators, reflected operators, methods and functions
CASES = {
    "mul tensor": lambda t, x, y, k: x * y,
    "add float": lambda t, x, y, k: x + 0.5,
    "sub reflected": lambda t, x, y, k: 2.0 - x,
    "rmul float": lambda t, x, y, k: 0.001 * x,
    "matmul": lambda t, x, y, k: x @ y,
    "pow int": lambda t, x, y, k: x ** 2,
    "neg": lambda t, x, y, k: -x,
    "int tensor int": lambda t, x, y, k: k * 3,
    "int tensor bool": lambda t, x, y, k: k + True,
    "compare": lambda t, x, y, k: x > y,
    "mean method": lambda t, x, y, k: x.mean(),
    "sum method": lambda t, x, y, k: x.sum(),
    "relu method": lambda t, x, y, k: x.relu(),
    "exp function": lambda t, x, y, k: t.exp(x),
    "mul function": lambda t, x, y, k: t.mul(x, y),
    "call": lambda t, x, y, k: t.call("mul", (x, y), {}) if hasattr(t, "call") else x * y,
}


def _tape_of(session, fn, args):
    """Record `fn(*args)` alone on a fresh tape: (its words with the output handle as "out",
    the floats, ints and op names it added, its user line, the result's Meta and grad_fn name)
    and the result."""
    session.flush()
    out = fn(*args)
    rec = session._recorder
    tape = rec.open
    assert tape is not None and tape.heads == [0], "one op on a fresh tape"
    words = ["out" if w == out._handle else w for w in tape.code]
    line = site_origin(tape.origins[0])
    return (words, list(tape.floats), list(tape.ints), list(tape.names), line,
            out._meta, out._node, out.is_inference(), list(tape.attrs), list(tape.attr_names),
            list(tape.strings)), out


def _paths(session, monkeypatch, fn, args):
    """`fn(*args)` recorded by the general path (nothing cached), then by the hot path (the
    answer cached): both recordings, results and how often `_describe` ran for each."""
    monkeypatch.setattr(client_session, "_INFERRED", {})
    monkeypatch.setattr(client_session, "_ATTR_OPS", {})
    calls = []
    describe = client_session.Session._describe

    def counted(self, *a, **k):
        calls.append(1)
        return describe(self, *a, **k)

    monkeypatch.setattr(client_session.Session, "_describe", counted)
    general, general_out = _tape_of(session, fn, args)
    described = len(calls)
    fast, fast_out = _tape_of(session, fn, args)
    return general, fast, general_out, fast_out, (described, len(calls) - described)


# ops with attributes: the cached recording (`Session._record_attr_op`) against the general one
ATTR_CASES = {
    "sum dim": lambda t, x, y, k: x.sum(0),
    "mean keepdim": lambda t, x, y, k: x.mean(dim=1, keepdim=True),
    "softmax function": lambda t, x, y, k: t.softmax(x, 1),
    "transpose": lambda t, x, y, k: x.transpose(0, 1),
    "add alpha": lambda t, x, y, k: t.add(x, y, alpha=2),
    "clamp": lambda t, x, y, k: t.clamp(x, -1.0, 1.0),
    "int sum dtype": lambda t, x, y, k: k.sum(1, dtype=t.float64),
}


def _mode(t, mode):
    return t.inference_mode() if mode == "inference" else t.set_grad_enabled(mode == "grad")


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_hot_path_records_what_the_general_path_records(session, monkeypatch, case, mode):
    fn = CASES[case]
    x, y, k = _inputs(session)
    with _mode(session, mode):
        general, fast, g_out, f_out, describes = _paths(session, monkeypatch, fn,
                                                        (session, x, y, k))
    assert describes == (1, 0), "the first call takes the general path, the second the hot one"
    assert fast == general
    assert general[4] == (__file__, CASES[case].__code__.co_firstlineno)  # the user's line
    assert general[7] == (mode == "inference")
    tx, ty, tk = _inputs(torch)
    with _mode(torch, mode):
        expected = fn(torch, tx, ty, tk)
    for got in (g_out, f_out):
        assert got.tolist() == expected.tolist()
        assert str(got.dtype) == str(expected.dtype)
        assert got.requires_grad == expected.requires_grad
        assert (got.grad_fn is None) == (expected.grad_fn is None)
        if expected.grad_fn is not None:
            assert got.grad_fn.name() == expected.grad_fn.name()


def test_the_hot_path_keeps_its_flags_in_the_pipelined_mode(client, monkeypatch):
    with client.session(pipelined=1000, verify_meta=False) as session:
        x, y, _ = _inputs(session)
        general, fast, g_out, f_out, describes = _paths(session, monkeypatch,
                                                        lambda: x * y, ())
        assert describes == (1, 0) and fast == general
        assert g_out.tolist() == f_out.tolist()


@pytest.mark.parametrize("op", ["mul", "sub", "matmul", "pow"])
def test_an_operator_records_what_call_records(session, op):
    x, y, _ = _inputs(session)
    operators = {"mul": lambda: x * y, "sub": lambda: x - y, "matmul": lambda: x @ y,
                 "pow": lambda: y ** x}
    args = (y, x) if op == "pow" else (x, y)
    by_operator, a = _tape_of(session, operators[op], ())
    by_call, b = _tape_of(session, lambda: session.call(op, args, {}), ())
    assert by_operator[:4] == by_call[:4] and by_operator[5:] == by_call[5:]
    assert by_operator[4][0] == by_call[4][0] == __file__
    assert a.tolist() == b.tolist()


def _raised(fn):
    with pytest.raises(Exception) as info:  # noqa: PT011 - compared below
        fn()
    return type(info.value), str(info.value)


def test_an_operator_raises_what_call_raises(client, session):
    x, y, _ = _inputs(session)
    with client.session() as other:
        z = other.tensor([1.0, 2.0, 3.0])
        assert _raised(lambda: x * z) == _raised(lambda: session.call("mul", (x, z), {}))
    bad = x + session.tensor([1.0, 2.0])  # fails on the server
    with pytest.raises(RuntimeError):
        bad.tolist()
    by_operator = _raised(lambda: bad * 2.0)
    assert by_operator == _raised(lambda: session.call("mul", (bad, 2.0), {}))
    assert by_operator[0] is RuntimeError and "must match the size" in by_operator[1]
    tx, _, _ = _inputs(torch)
    assert _raised(lambda: x * "a") == _raised(lambda: tx * "a")  # torch's TypeError


def test_a_failing_instruction_outside_a_tape_names_the_user_line(client):
    with client.session(pipelined=100) as session:
        x = session.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2.0
        y.backward(); line = sys._getframe().f_lineno  # noqa: E702 - not scalar: fails later
        with pytest.raises(RuntimeError) as info:
            x.grad  # noqa: B018 - the read raises the background error
        with pytest.raises(RuntimeError) as expected:
            torch.tensor([1.0, 2.0], requires_grad=True).mul(2.0).backward()
        assert str(info.value) == str(expected.value)
        assert info.value.gradserve_origin == f"{__file__}:{line}"


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference"])
@pytest.mark.parametrize("case", list(ATTR_CASES))
def test_a_cached_op_with_attributes_records_what_the_general_path_records(client, monkeypatch,
                                                                           case, mode):
    fn = ATTR_CASES[case]
    with client.session(verify_meta=False) as session:  # verify_meta takes the general path
        x, y, k = _inputs(session)
        with _mode(session, mode):
            general, fast, g_out, f_out, describes = _paths(session, monkeypatch, fn,
                                                            (session, x, y, k))
        assert describes == (1, 0)
        assert fast == general
        assert general[4] == (__file__, ATTR_CASES[case].__code__.co_firstlineno)
        assert general[7] == (mode == "inference")
        tx, ty, tk = _inputs(torch)
        with _mode(torch, mode):
            expected = fn(torch, tx, ty, tk)
        for got in (g_out, f_out):
            assert np.array_equal(np.asarray(got.tolist()), expected.detach().numpy())
            assert str(got.dtype) == str(expected.dtype)
            assert got.requires_grad == expected.requires_grad
