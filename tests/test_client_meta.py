"""The client describes its ops' results itself (`gradserve.surface.meta`), against torch.

- Reading shape, size(), dim(), dtype, requires_grad, is_leaf and grad_fn of recorded results
  needs no round trip, and each answer is torch's for the same program.
- The server leaves out the descriptions the client knows (ApplyOp.omit_info, tape ops without
  DESCRIBE) and still describes them to a caller that does not ask (an older client, the Node
  client).
- verify_meta (on for every session of the tests, see conftest.py) raises MetaMismatchError
  when an inference differs from the server's description; test_client_ops.py runs every
  OpInfo sample through such a session.
- Errors still raise naming the line that recorded the op, as torch's error type and text.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import gradserve.client as gc_client
import gradserve.client.session as client_session
from gradserve.client import MetaMismatchError
from gradserve.surface import meta_base
from gradserve.v1 import OMIT_INFO_FEATURE
from tests.reference import torch

DESCRIBE = 2  # a tape op's DESCRIBE flag (docs/wire.md)


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


def program(t):
    """A small model's forward pass, as a torch program; the results whose metadata is read."""
    x = t.tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), requires_grad=True)
    w = t.tensor(np.linspace(0, 1, 20, dtype=np.float32).reshape(5, 4), requires_grad=True)
    b = t.zeros(5, requires_grad=True)
    h = t.nn.functional.linear(x, w, b)
    a = h.relu() * 2.0 + 1
    m = a.mean(dim=1, keepdim=True)
    s = a.softmax(dim=-1)
    i = a.argmax(dim=1)
    c = t.cat([a, s], dim=0)
    with t.no_grad():
        n = a.exp()
    d = (i + 1).float()
    return [x, h, a, m, s, i, c, n, d, a.detach(), a.t(), a.sum()]


def described(xs):
    return [(tuple(x.shape), x.dim(), str(x.dtype), x.requires_grad, x.is_leaf,
             None if x.grad_fn is None else x.grad_fn.name(), x.size(-1) if x.dim() else None)
            for x in xs]


@pytest.mark.parametrize("verify", [False, True])
def test_metadata_of_recorded_results_needs_no_round_trip(client, verify):
    with client.session(verify_meta=verify) as session:
        assert OMIT_INFO_FEATURE in client.list_ops().features
        xs = program(session)
        before = session.round_trips
        got = described(xs)
        # sum(dim) and mean(dim) name their node by the arguments (SumBackward0/1): the
        # client asks the server for that name only
        assert session.round_trips - before <= 1
        assert got == described(program(torch))
        session.flush()
        for x in xs:  # the server's descriptions, read where the client has none: the same
            x._meta = x._node = None
        assert described(xs) == got


def test_a_chain_of_ops_is_read_without_a_flush(client):
    with client.session(verify_meta=False) as session:
        y = session.tensor(0.5, requires_grad=True)
        for _ in range(200):
            y = (y * 1.001 + 0.001).sin()
        z = y.reshape(1, 1).expand(3, 2)
        before = session.round_trips
        assert (z.shape, z.dtype, z.requires_grad, z.grad_fn.name(), z.is_leaf) == (
            (3, 2), session.float32, True, "ExpandBackward0", False)
        assert session.round_trips == before
        assert len(session._recorder) > 0  # still pending: nothing was sent


def _capture(session):
    """Wrap the session's sender: the requests and replies it exchanges."""
    seen = []
    send = session._send

    def spy(request):
        response = send(request)
        seen.append((request, response))
        return response
    session._recorder._send = spy
    return seen


def test_server_leaves_out_what_the_client_knows(client):
    with client.session(verify_meta=False) as session:
        seen = _capture(session)
        x = session.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        y = x.exp()  # a tape op
        s = y.sum(dim=0)  # an op with attributes whose node depends on them (surface rule)
        m = y.amax(dim=1)  # an op with attributes whose node name is known
        e = session.einsum("ij->j", y)  # a node by the equation: the server names it
        assert m.tolist() == pytest.approx(np.exp([2.0, 4.0]).tolist())
        (request, response), = seen
        kinds = [ins.WhichOneof("kind") for ins in request.instructions]
        results = dict(zip(kinds, response.results))
        tape = request.instructions[kinds.index("tape")].tape  # all four ops (tape_attrs)
        code = [int.from_bytes(tape.code[k:k + 8], "little") for k in range(0, len(tape.code), 8)]
        described, pos = [], 0
        while pos < len(code):
            described.append(bool((code[pos] >> 32) & DESCRIBE))
            pos += 1 + ((code[pos] >> 40) & 0xFFF) + (code[pos] >> 52)
        assert list(tape.ops) == ["exp", "sum", "amax", "einsum"]
        assert described == [False, False, False, True]  # the einsum's node: by the server
        assert [i.handle for i in results["tape"].tape.tensors] == [e._handle]
        assert s.grad_fn.name() == "SumBackward1" and m.grad_fn.name() == "AmaxBackward0"
        assert e.grad_fn.name() == "SumBackward1"


def test_verify_mode_asks_for_every_description(client):
    with client.session(verify_meta=True) as session:
        seen = _capture(session)
        x = session.tensor([1.0, 2.0], requires_grad=True)
        y = x.exp().amax(dim=0)
        y.item()
        (request, response), = seen
        assert all(not ins.apply_op.omit_info for ins in request.instructions)
        assert sum(len(r.handles.tensors) + len(r.tape.tensors) for r in response.results) >= 2


def test_a_caller_that_does_not_ask_still_gets_descriptions(gradserve_session):
    s = gradserve_session
    resp = s.run(s.create(1, [1.0, 2.0], requires_grad=True),
                 s.op("amax", [("h", 1)], [2], dim=[0]), s.op("exp", [("h", 2)], [3]))
    amax, exp = resp.results[1].handles.tensors[0], resp.results[2].handles.tensors[0]
    assert (list(amax.shape), amax.grad_fn, amax.requires_grad) == ([], "AmaxBackward0", True)
    assert (list(exp.shape), exp.grad_fn) == ([], "ExpBackward0")


@pytest.mark.parametrize("lie", ["shape", "grad_fn"])
def test_verify_mode_raises_when_an_inference_is_wrong(client, monkeypatch, lie):
    with client.session(verify_meta=True) as session:
        x = session.tensor([1.0, 2.0], requires_grad=True)
        monkeypatch.setattr(client_session, "_INFERRED", {})  # earlier answers
        if lie == "shape":
            rule = meta_base.RULES["exp"]
            monkeypatch.setitem(meta_base.RULES, "exp", lambda inputs, attrs, grad: [
                m._replace(shape=(7,)) for m in rule(inputs, attrs, grad)])
        else:
            monkeypatch.setattr(session._table.ops["exp"], "node", "SinBackward0")
        y = x.exp()
        with pytest.raises(MetaMismatchError, match=r"exp: the client inferred"):
            y.tolist()


def test_value_errors_still_raise_at_the_recording_line(client):
    with client.session() as session:
        a = session.tensor([4, 5])
        c = a // 0; line = sys._getframe().f_lineno  # noqa: E702 - the recording line
        assert c.shape == (2,) and c.dtype == session.int64  # known: no flush
        with pytest.raises(RuntimeError) as info:
            c.tolist()
        with pytest.raises(RuntimeError) as expected:
            torch.tensor([4, 5]) // 0
        assert str(info.value) == str(expected.value)
        assert info.value.gradserve_origin == f"{__file__}:{line}"


def test_shape_errors_raise_when_the_shape_is_read(client):
    with client.session() as session:
        a, b = session.tensor([1.0, 2.0, 3.0]), session.tensor([1.0, 2.0])
        c = a + b; line = sys._getframe().f_lineno  # noqa: E702 - the recording line
        with pytest.raises(RuntimeError) as info:
            c.shape  # noqa: B018 - no rule answers for inputs the engine refuses: a flush
        with pytest.raises(RuntimeError) as expected:
            torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([1.0, 2.0])
        assert str(info.value) == str(expected.value)
        assert info.value.gradserve_origin == f"{__file__}:{line}"


def test_in_place_writes_refresh_what_shares_the_data(client):
    def run(t):
        base = t.zeros(2, 3)
        view = base.reshape(3, 2)
        before = (view.requires_grad, view.grad_fn)
        base.add_(t.ones(2, 3, requires_grad=True))
        return (before[0], before[1] is None, view.requires_grad, view.grad_fn.name(),
                base.grad_fn.name(), (view * 2).requires_grad)
    with client.session() as session:
        assert run(session) == run(torch)


def test_after_a_write_came_back_ops_are_inferred_again(client):
    with client.session(verify_meta=False) as session:
        x = session.ones(2, 3)
        x.mul_(2)
        y = x * 3  # recorded while the write is unsent: the server describes it
        assert y._meta is None
        assert x.tolist() == [[2.0] * 3] * 2  # the write's batch came back
        z = x.sum(0).exp()
        before = session.round_trips
        assert (z.shape, z.grad_fn) == ((3,), None) and session.round_trips == before
        assert y.shape == (2, 3) and session.round_trips == before  # described with the batch


def test_requires_grad_and_detach_update_what_is_known(client):
    def run(t):
        x = t.ones(2, 2)
        x.requires_grad_()
        y = x * 3
        d = y.detach()
        y2 = (x * 2).detach_()
        return [(v.requires_grad, v.is_leaf, v.grad_fn is None, tuple(v.shape))
                for v in (x, y, d, y2)]
    with client.session() as session:
        assert run(session) == run(torch)


def _attribute_program(t):
    """Ops with attributes, each called three times (the first call infers; the next take the
    cached answer, binding plan and instruction template), then under no_grad."""
    x = t.tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), requires_grad=True)
    z = t.tensor(np.array([-0.0, 1.0], dtype=np.float32))
    one = t.tensor(np.ones(2, dtype=np.float32))
    out = []
    for _ in range(3):
        out += [x.sum(0), x.transpose(0, 1), t.softmax(x, 1), x.mean(dim=1, keepdim=True),
                x.pow(2), 2.0 ** x, x.sum(), t.add(x, x, alpha=2), x.view(12),
                t.add(z, one, alpha=-0.0), t.add(z, one, alpha=0.0), x.squeeze(0)]
    with t.no_grad():
        out += [x.sum(0), x.mean(dim=1, keepdim=True), x.pow(2)]
    return out


def test_repeated_attribute_ops_are_torchs(client):
    with client.session(verify_meta=False) as session:
        got = _attribute_program(session)
        want = _attribute_program(torch)
        for g, w in zip(got, want):
            assert (tuple(g.shape), str(g.dtype), g.requires_grad, g.grad_fn and g.grad_fn.name()
                    ) == (tuple(w.shape), str(w.dtype), w.requires_grad,
                          w.grad_fn and w.grad_fn.name())
        assert session.round_trips == 0  # every answer above known without the server
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.signbit(g.detach().numpy()),
                                          np.signbit(w.detach().numpy()))
            np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), rtol=1e-6)


def test_a_repeated_attribute_op_fails_as_the_first(client):
    with client.session(verify_meta=False) as session:
        x = session.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
        for _ in range(3):
            x.sum(0)
        with pytest.raises(TypeError, match=r"sum\(\): argument 'dim' must be tuple of ints, "
                                            r"not str"):
            x.sum("a")
        for _ in range(2):
            with pytest.raises(IndexError, match=r"Dimension out of range"):
                x.sum(5).tolist()
        assert x.sum(1).tolist() == [3.0, 3.0]
