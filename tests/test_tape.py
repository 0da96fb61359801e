"""The instruction tape (docs/wire.md): hand-encoded tapes on the wire, their validation and
errors, and the client's use of them (values and grads against torch, errors at the user's line,
round trips)."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest

from gradserve.client import UnavailableError
from gradserve.v1 import FAILED_INSTRUCTION_METADATA, FAILED_TAPE_OP_METADATA, session_pb2
from tests.conftest import gradserve_error, gradserve_open_session
from tests.reference import torch

NO_GRAD, DESCRIBE, VALUE = 1, 2, 4


def header(op: int, n_in: int, n_out: int, flags: int = 0) -> int:
    return op | flags << 32 | n_in << 40 | n_out << 52


def words(*ws: int) -> bytes:
    return struct.pack(f"<{len(ws)}Q", *ws)


def tape(ops: list[str], code: list[int], floats: list[float] = (), ints: list[int] = (),
         constants: list = ()) -> session_pb2.Instruction:
    return session_pb2.Instruction(tape=session_pb2.Tape(
        ops=ops, code=words(*code), floats=struct.pack(f"<{len(floats)}d", *floats),
        ints=struct.pack(f"<{len(ints)}q", *ints), constants=list(constants)))


def H(handle):  # noqa: N802 - an input word naming a handle
    return handle << 3


def test_the_documented_example(gradserve_session):
    s = gradserve_session
    # y = x * 1.5 + 2, docs/wire.md's example
    resp = s.run(s.create(1, np.array([1.0, 2.0], np.float32), requires_grad=True),
                 tape(["mul", "add"], [header(0, 2, 1), H(1), 0 << 3 | 1, 2,
                                       header(1, 2, 1, DESCRIBE), H(2), 0 << 3 | 2, 3],
                      floats=[1.5], ints=[2]))
    result = resp.results[1].tape
    assert [i.handle for i in result.tensors] == [3]  # only the DESCRIBE-flagged op
    info = result.tensors[0]
    assert list(info.shape) == [2] and info.requires_grad and info.grad_fn == "AddBackward0"
    assert not result.values
    np.testing.assert_array_equal(s.value_of(3), [3.5, 5.0])
    np.testing.assert_array_equal(s.value_of(2), [1.5, 3.0])  # intermediates are bound too


def test_every_input_kind_matches_apply_op(gradserve_session):
    s = gradserve_session
    from gradserve.server import codec

    const = codec.encode_array(np.array([10.0, 20.0], np.float32))
    s.run(s.create(1, np.array([1.0, 2.0], np.float32), requires_grad=True),
          s.create(2, np.array([0.5, -3.0], np.float32)))
    resp = s.run(tape(
        ["where", "clamp", "add", "cat", "mul"],
        [header(0, 3, 1, DESCRIBE), 1 << 3 | 3, H(1), H(2), 10,  # where(True, x, y)
         header(1, 3, 1, DESCRIBE), H(1), 4, 0 << 3 | 1, 11,  # clamp(x, None, 1.5)
         header(2, 2, 1, DESCRIBE), H(11), 0 << 3 | 5, 12,  # x + constant
         header(3, 2, 1, DESCRIBE | NO_GRAD), H(12), H(2), 13,  # cat([.., y]) in no_grad
         header(4, 2, 1, DESCRIBE | VALUE), H(13), 0 << 3 | 2, 14],  # * -2
        floats=[1.5], ints=[-2], constants=[const]))
    infos = {i.handle: i for i in resp.results[0].tape.tensors}
    assert sorted(infos) == [10, 11, 12, 13, 14]
    assert infos[12].grad_fn == "AddBackward0" and not infos[13].requires_grad
    values = {v.handle: codec.decode_array(v.value, 100) for v in resp.results[0].tape.values}
    # the same program as ApplyOp messages
    s.run(s.op("clamp", [("h", 1), None, 1.5], [21]),
          s.op("add", [("h", 21), np.array([10.0, 20.0], np.float32)], [22]),
          s.op("cat", [("h", 22), ("h", 2)], [23], no_grad=True),
          s.op("mul", [("h", 23), -2], [24]))
    np.testing.assert_array_equal(values[14], s.value_of(24))
    np.testing.assert_array_equal(s.value_of(10), [1.0, 2.0])
    assert values[14].dtype == np.float32


def test_values_are_taken_after_the_batch_and_only_when_small(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, np.ones(3, np.float32)), s.create(2, np.ones(65, np.float32)))
    resp = s.run(tape(["mul"], [header(0, 2, 1, VALUE), H(1), 0 << 3 | 1, 5,
                                header(0, 2, 1, VALUE), H(2), 0 << 3 | 1, 6], floats=[2.0]),
                 s.inplace("add_", 5, [1.0]))
    values = resp.results[0].tape.values
    assert [v.handle for v in values] == [5]  # 65 elements is more than 64
    from gradserve.server import codec

    np.testing.assert_array_equal(codec.decode_array(values[0].value, 10), [3.0, 3.0, 3.0])
    # a value released later in the batch is left out
    resp = s.run(tape(["mul"], [header(0, 2, 1, VALUE), H(1), 0 << 3 | 1, 7], floats=[2.0]),
                 s.release(7))
    assert not resp.results[0].tape.values


MALFORMED = [
    ("code length", dict(code=b"\0" * 9), None, "not a multiple of 8"),
    ("float table length", dict(floats=b"\0" * 4), None, "not a multiple of 8"),
    ("op code", dict(code=words(header(1, 0, 1), 5)), 0, "op code 1"),
    ("flags", dict(code=words(header(0, 0, 1, 32), 5)), 0, "unknown flags"),
    ("no outputs", dict(code=words(header(0, 1, 0), H(1))), 0, "no outputs"),
    ("past the end", dict(code=words(header(0, 2, 1), H(1))), 0, "past the end"),
    ("kind 6", dict(code=words(header(0, 1, 1), 6, 5)), 0, "unknown kind 6"),
    ("float index", dict(code=words(header(0, 1, 1), 1, 5)), 0,
     "float index 0 is outside the tape's 0 float constant(s)"),
    ("int index", dict(code=words(header(0, 1, 1), 2 << 3 | 2, 5)), 0,
     "int index 2 is outside the tape's 0 int constant(s)"),
    ("constant index", dict(code=words(header(0, 1, 1), 5, 5)), 0,
     "constant index 0 is outside the tape's 0 tensor constant(s)"),
    ("bool payload", dict(code=words(header(0, 1, 1), 2 << 3 | 3, 5)), 0, "payload is 0 or 1"),
    ("none payload", dict(code=words(header(0, 1, 1), 1 << 3 | 4, 5)), 0, "payload is 0"),
    ("handle 0", dict(code=words(header(0, 1, 1), 0, 5)), 0, "handle ids start at 1"),
    ("second input", dict(code=words(header(0, 2, 1), H(1), 1, 5)), 0, "input 1: float index 0"),
    ("kind 7 second", dict(code=words(header(0, 2, 1), H(1), 7, 5)), 0,
     "input 1 has unknown kind 7"),
    ("output 0", dict(code=words(header(0, 1, 1), H(1), 0)), 0, "handle ids start at 1"),
    ("second op", dict(code=words(header(0, 1, 1), H(1), 5, header(0, 1, 1, 32), H(1), 6)), 1,
     "unknown flags"),
    ("too many words", dict(code=bytes(8 * (2**18 + 1))), None, "more than the limit"),
    ("too many names", dict(ops=["neg"] * 4097, code=b""), None, "more than the limit"),
]


def _decoded(msg: session_pb2.Tape, max_ops: int, short_words: int, monkeypatch) -> tuple:
    """What `tape.decode` makes of `msg` with tapes up to `short_words` words checked op by
    op: its ops (name, flags, inputs, outputs) and described count, or its error."""
    from gradserve.server import tape as wire_tape
    from gradserve.server.errors import Located

    monkeypatch.setattr(wire_tape, "SHORT_WORDS", short_words)
    try:
        d = wire_tape.decode(msg, max_ops)
    except Located as exc:
        return ("error", type(exc.cause).__name__, str(exc.cause), exc.tape_op)
    ops = [(name, flags, list(d.words[a:b]), list(d.words[b:c]))
           for name, flags, a, b, c in zip(*d.ops)]
    assert len(ops) == d.count
    assert sorted(d.attrs) == [k for k, op in enumerate(ops) if op[1] & 8]  # ATTRS-flagged
    instructions = {k: (kind, m.SerializeToString()) for k, (kind, m) in d.instructions.items()}
    return ("ok", ops, d.described, d.attrs, instructions)


def _random_attrs(rng: np.random.Generator, out: list[int]) -> None:
    """One op's attribute run, often malformed (a count, kind, name index or payload)."""
    count = int(rng.choice([0, 1, 1, 2, 3, 256]))
    out.append(count if rng.random() > 0.05 else int(rng.integers(0, 2**63)))
    for _ in range(min(count, 3)):
        kind = int(rng.choice([0, 1, 2, 2, 3, 4, 5, 6, 7]))
        name = int(rng.choice([0, 0, 1, 2, 2, 5]))
        payload = int(rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 6, 77, 2**40]))
        out.append(kind | name << 3 | payload << 15)


def _random_tape(rng: np.random.Generator) -> session_pb2.Tape:
    """A small tape of a few ops, often malformed somewhere (any header field, input kind,
    payload, output handle 0, cut short, an attribute word)."""
    code: list[int] = []
    attrs: list[int] = []
    for _ in range(int(rng.integers(0, 7))):
        n_in, n_out = int(rng.integers(0, 4)), int(rng.choice([0, 1, 1, 1, 2]))
        flags = int(rng.choice([0, 0, 1, 2, 4, 6, 8, 8, 10, 16, 16, 18, 32]))
        code.append(header(int(rng.choice([0, 0, 1, 2, 3, 4, 5])), n_in, n_out, flags))
        if flags & 8:
            _random_attrs(rng, attrs)
        code += [int(rng.choice([0, 1, 1, 2, 3, 5])) << 3 | int(rng.choice(
            [0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7])) for _ in range(n_in)]
        code += [int(rng.choice([0, 7])) if rng.random() < 0.1 else int(rng.integers(1, 99))
                 for _ in range(n_out)]
    if code and rng.random() < 0.2:
        code = code[:int(rng.integers(0, len(code)))]
    if attrs and rng.random() < 0.2:
        attrs = attrs[:int(rng.integers(0, len(attrs) + 2))]
    return session_pb2.Tape(
        ops=["add", "mul", "neg", "sum", "backward", "optimizer_zero_grad"][
            :int(rng.choice([0, 1, 2, 3, 4, 4, 4, 4, 6, 6]))],
        code=words(*code),
        floats=struct.pack("<2d", 1.0, 2.0)[:8 * int(rng.integers(0, 3))],
        ints=struct.pack("<3q", 2, 5, -1)[:8 * int(rng.integers(0, 4))],
        constants=[session_pb2.Tape().constants.add() for _ in range(int(rng.integers(0, 2)))],
        attrs=words(*attrs), attr_names=["dim", "keepdim", "dim"][:int(rng.integers(0, 4))],
        strings=["mean"][:int(rng.integers(0, 2))])


def test_both_decoders_make_the_same_of_every_tape(monkeypatch):
    # server/tape.py checks short tapes op by op and long ones with numpy, all ops at once:
    # the same ops, or the same first fault (its op, type and message) in tape order
    rng = np.random.default_rng(13)
    outcomes = set()
    for _ in range(4000):
        msg = _random_tape(rng)
        max_ops = int(rng.choice([1, 2, 3, 100]))
        short = _decoded(msg, max_ops, 1 << 18, monkeypatch)
        assert _decoded(msg, max_ops, 0, monkeypatch) == short, msg
        outcomes.add(short[0] if short[0] == "ok" else short[2])
    # every kind of fault came up
    for fragment in ("ok", "op code", "unknown flags", "declares no outputs", "past the end",
                     "has unknown kind", "float index", "int index", "constant index",
                     "payload is 0 or 1", "none input", "input 1: handle ids",
                     "more ops than the limit", "(0 means the field was not set)",
                     # attribute runs (tests/test_tape_attrs.py has every fault of theirs)
                     "attributes, more than the limit", "name index",
                     "past the last ATTRS-flagged op's",
                     # INSTRUCTION-flagged ops (tests/test_client_tape_iteration.py has each)
                     "is not a tape instruction", "takes no other flag"):
        assert any(fragment in o for o in outcomes), fragment


def test_a_long_tape_reports_its_first_faulty_op(monkeypatch):
    # op 1 has a float index past the table, op 2 a bad header: op 1 is reported, as an
    # op-by-op check would; without it, op 2's header
    ok = [header(0, 1, 1), H(1), 5]
    bad_input = [header(0, 1, 1), 3 << 3 | 1, 6]
    bad_header = [header(0, 1, 1, 32), H(1), 7]
    msg = session_pb2.Tape(ops=["neg"], code=words(*ok, *bad_input, *bad_header, *ok * 100))
    for short_words in (0, 1 << 18):
        found = _decoded(msg, 1000, short_words, monkeypatch)
        assert found[3] == 1 and "float index 3" in found[2]
    msg = session_pb2.Tape(ops=["neg"], code=words(*ok, *ok, *bad_header, *ok * 100))
    found = _decoded(msg, 1000, 0, monkeypatch)
    assert found[3] == 2 and "unknown flags" in found[2]
    found = _decoded(msg, 2, 0, monkeypatch)  # the op limit comes first at op 2
    assert found[1] == "LimitExceededError" and found[3] == 2


@pytest.mark.parametrize("case, fields, op, text", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_tape_refuses_the_batch(gradserve_session, case, fields, op, text):
    s = gradserve_session
    msg = session_pb2.Tape(ops=["neg"])
    for k, v in fields.items():
        if k == "ops":
            del msg.ops[:]
            msg.ops.extend(v)
        else:
            setattr(msg, k, v)
    assert_refused(s, msg, op, text, np.ones(2, np.float32))


def assert_refused(s, msg: session_pb2.Tape, op: int | None, text: str, x: np.ndarray) -> None:
    """Tape `msg` after creating `x` at handle 1 refuses the batch as malformed: `text` in the
    message, op `op` named (None: the tape's tables), nothing run."""
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(s.create(1, x), session_pb2.Instruction(tape=msg))
    code, message, meta = gradserve_error(exc_info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert text in message
    assert meta[FAILED_INSTRUCTION_METADATA] == "1"
    assert meta.get(FAILED_TAPE_OP_METADATA) == (None if op is None else str(op))
    assert s.describe().tensor_count == 0  # checked before anything ran


def test_a_failing_op_stops_the_tape_there(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, np.ones(2, np.float32)), s.create(2, np.ones(3, np.float32)))
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(s.create(3, np.ones(2, np.float32)),
              tape(["neg", "add", "nosuchop"],
                   [header(0, 1, 1), H(1), 10,
                    header(1, 2, 1), H(10), H(2), 11,  # shapes (2,) and (3,)
                    header(0, 1, 1), H(11), 12]))
    code, message, meta = gradserve_error(exc_info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "must match the size" in message
    assert (meta[FAILED_INSTRUCTION_METADATA], meta[FAILED_TAPE_OP_METADATA]) == ("1", "1")
    assert s.describe().tensor_count == 4  # 1, 2, 3 and op 0's output 10; not 11
    np.testing.assert_array_equal(s.value_of(10), [-1.0, -1.0])
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(tape(["nosuchop"], [header(0, 1, 1), H(1), 20]))
    code, message, meta = gradserve_error(exc_info)
    assert "unknown op 'nosuchop'" in message and meta[FAILED_TAPE_OP_METADATA] == "0"
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(tape(["neg"], [header(0, 1, 1), H(99), 20]))
    assert gradserve_error(exc_info)[0] == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc_info:  # a live output handle
        s.run(tape(["neg"], [header(0, 1, 1), H(1), 2]))
    assert "already in use" in gradserve_error(exc_info)[1]


def test_tape_ops_count_against_the_instruction_limit(gradserve_stub):
    s = gradserve_open_session(gradserve_stub,
                               limits=session_pb2.SessionLimits(max_instructions=5))
    try:
        s.run(s.create(1, np.ones(2, np.float32)))
        code = []
        for k in range(5):
            code += [header(0, 1, 1), H(1), 10 + k]
        with pytest.raises(grpc.RpcError) as exc_info:
            s.run(s.create(2, np.ones(2, np.float32)), tape(["neg"], code))
        code_, message, meta = gradserve_error(exc_info)
        assert code_ == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert meta[FAILED_TAPE_OP_METADATA] == "4"  # the 6th instruction of the batch
        assert s.describe().tensor_count == 1
        s.run(tape(["neg"], code))  # five ops alone fit
        assert s.describe().tensor_count == 6
    finally:
        s.close()


def test_a_tape_op_past_the_session_bytes_is_refused_before_it_allocates(gradserve_stub):
    """Each tape op runs under an engine byte budget of what the session has left (the tape
    loop sets it on the thread's bounds it holds): the op whose result does not fit is refused
    by the engine before the forward runs, naming the result, and the ops before it stay."""
    n = 1 << 16  # float32 elements: 256 KiB a tensor
    one = 4 * n + 320  # its data and tensor object (limits.TENSOR_BYTES)
    s = gradserve_open_session(gradserve_stub,
                               limits=session_pb2.SessionLimits(max_bytes=4 * one - 1))
    try:
        s.run(s.create(1, np.ones(n, np.float32)))
        code = []
        for k in range(3):  # 2 = 1 * 2, 3 = 2 * 2, 4 = 3 * 2: the third does not fit
            code += [header(0, 2, 1), H(1 + k), 0 << 3 | 1, 2 + k]
        with pytest.raises(grpc.RpcError) as exc_info:
            s.run(tape(["mul"], code, floats=[2.0]))
        code_, message, meta = gradserve_error(exc_info)
        assert code_ == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert message.startswith(f"mul() result needs {one} bytes, more than the ")
        assert meta[FAILED_TAPE_OP_METADATA] == "2"
        assert s.describe().tensor_count == 3
        np.testing.assert_array_equal(s.value_of(3), np.full(n, 4.0, np.float32))
    finally:
        s.close()


def test_an_empty_tape_is_valid(gradserve_session):
    resp = gradserve_session.run(tape([], []))
    assert resp.results[0].HasField("tape")


# --- the client ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(gradserve_server):
    import gradserve.client as gc

    with gc.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


def test_the_client_records_ops_on_a_tape(client):
    torch_ = client.session()
    sent: list = []
    send = torch_._send

    def spy(request):
        sent.append(request)
        return send(request)
    torch_._recorder._send = spy
    x = torch_.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2 + 1).sin().sum(dim=0)  # sum with an attribute: on the tape too (tape_attrs)
    z = y * y
    z.backward()
    kinds = [i.WhichOneof("kind") for i in sent[0].instructions]
    # the backward on the tape (tape_instructions), then reading x.grad ahead (a leaf created
    # in this batch), and the dropped handles
    assert kinds == ["create_tensor", "tape", "get_grad", "fetch", "release"]
    m = sent[0].instructions[1].tape
    assert list(m.ops) == ["mul", "add", "sin", "sum", "backward"]
    assert list(m.attr_names) == ["dim"]
    assert struct.unpack("<3q", m.ints) == (2, 1, 0)
    assert struct.unpack("<2Q", m.attrs) == (1, 2 | 0 << 3 | 2 << 15)  # 1 attribute: ints[2]
    torch_.close()


def test_a_chain_through_a_tape_matches_torch_in_one_round_trip(client):
    session = client.session()

    def chain(t):
        x = t.tensor(0.5, requires_grad=True)
        y = x
        for _ in range(500):
            y = y * 1.001 + 0.001
        y.backward()
        return x, y

    x, y = chain(session)
    before = session.round_trips
    loss = y.item()  # prefetched with the backward's batch
    assert session.round_trips == before
    tx, ty = chain(torch)
    assert loss == ty.item()
    assert x.grad.item() == tx.grad.item()
    assert y.grad_fn.name() == ty.grad_fn.name() and y.shape == ty.shape
    session.close()


def test_a_loss_read_after_backward_costs_no_round_trip(client):
    session = client.session()
    results = []
    for t in (session, torch):
        t.manual_seed(0)
        w = t.tensor([[0.5], [-0.25]], requires_grad=True)
        opt = t.optim.Adam([w], lr=0.1)
        x = t.tensor([[1.0, 2.0], [3.0, 4.0]])
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = ((x @ w - 1.0) ** 2).mean()
            loss.backward()
            trips = getattr(t, "round_trips", 0)
            losses.append(loss.item())
            assert getattr(t, "round_trips", 0) == trips
            opt.step()
        results.append((losses, w.detach().numpy().tolist()))
    assert results[0][0] == results[1][0]
    # Adam's update rounds within float32 as in tests/test_client_optim.py (with or without tapes)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)
    session.close()


def test_an_error_in_a_tape_raises_at_the_recording_line(client):
    import inspect

    session = client.session()
    a = session.tensor([1.0, 2.0])
    b = a * 2
    line = inspect.currentframe().f_lineno + 1
    c = b + session.tensor([1.0, 2.0, 3.0])
    d = c.exp()
    e = b.exp()
    with pytest.raises(RuntimeError, match="must match the size") as exc_info:
        d.tolist()
    assert exc_info.value.gradserve_origin.endswith(f"test_tape.py:{line}")
    with pytest.raises(RuntimeError, match="must match the size"):
        d.sum()  # marked failed
    # the ops before the failing one were applied; the ones after it were not
    assert b.tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="must match the size"):
        e.tolist()
    assert b.exp().shape == (2,)
    session.close()


def test_a_server_without_tapes_gets_apply_op(gradserve_server_factory, monkeypatch):
    import gradserve.client as gc
    from gradserve.server import catalogue

    features = list(catalogue.list_ops().features)
    del catalogue.list_ops().features[:]
    try:
        _, port = gradserve_server_factory()
        with gc.connect(f"localhost:{port}") as client, client.session() as session:
            sent: list = []
            send = session._send
            session._recorder._send = lambda r: (sent.append(r), send(r))[1]
            x = session.tensor([1.0, 2.0], requires_grad=True)
            y = (x * x).sum()
            y.backward()
            assert x.grad.tolist() == [2.0, 4.0]
            assert "tape" not in {i.WhichOneof("kind") for r in sent for i in r.instructions}
    finally:
        catalogue.list_ops().features.extend(features)


def test_the_seed_step_is_one_round_trip(client):
    session = client.session()
    for t in (session, torch):
        x = t.tensor(3.0, requires_grad=True)
        y = x**2
        y.backward()
        before = getattr(t, "round_trips", 0)
        got = (x.grad.item(), repr(x.grad), y.item())
        assert getattr(t, "round_trips", 0) == before
        if t is session:
            assert session.round_trips == 1
            first = got
    assert first == got
    session.close()


def _read_ahead_fetches(session):
    """The Fetch instructions of the requests `session` sends from now on."""
    fetches: list = []
    send = session._send

    def spy(request):
        fetches.extend(i.fetch for i in request.instructions if i.WhichOneof("kind") == "fetch")
        return send(request)
    session._recorder._send = spy
    return fetches


@pytest.mark.parametrize("feature", [True, False])
def test_a_gradient_read_ahead_is_printed_without_its_tensor(gradserve_server_factory, feature):
    # The seed step printed x and x.grad on the server (80-200 us each) and never used x's
    # printed form; a server listing "fetch_grad_repr" prints only the gradient. Against a
    # server without the feature the client asks as before, and the result is the same.
    import gradserve.client as gc
    from gradserve.server import catalogue
    from gradserve.v1 import FETCH_GRAD_REPR_FEATURE

    features = list(catalogue.list_ops().features)
    assert FETCH_GRAD_REPR_FEATURE in features
    if not feature:
        catalogue.list_ops().features.remove(FETCH_GRAD_REPR_FEATURE)
    try:
        _, port = gradserve_server_factory()
        with gc.connect(f"localhost:{port}") as client, client.session() as session:
            fetches = _read_ahead_fetches(session)
            x = session.tensor(3.0, requires_grad=True)
            (x**2).backward()
            trips = session.round_trips
            assert (repr(x.grad), x.grad.item()) == ("tensor(6.)", 6.0)
            assert session.round_trips == trips
            [f] = fetches
            assert (f.grad, f.grad_repr, f.repr) == (True, feature, not feature)
    finally:
        del catalogue.list_ops().features[:]
        catalogue.list_ops().features.extend(features)


def test_fetch_grad_repr_prints_only_the_gradient(gradserve_session):
    session = gradserve_session
    session.run(session.create(1, np.array([1.0, 2.0]), requires_grad=True),
                session.op("mul", [("h", 1), ("h", 1)], [2]), session.op("sum", [("h", 2)], [3]),
                session.backward(3))
    pb = session_pb2
    both, alone, neither = session.run(
        pb.Instruction(fetch=pb.Fetch(handle=1, grad=True, repr=True)),
        pb.Instruction(fetch=pb.Fetch(handle=1, grad=True, grad_repr=True)),
        pb.Instruction(fetch=pb.Fetch(handle=1, grad_repr=True))).results
    assert both.fetch.repr == "tensor([1., 2.], requires_grad=True)"
    assert both.fetch.grad_repr == alone.fetch.grad_repr == "tensor([2., 4.])"
    assert alone.fetch.repr == ""
    assert not neither.fetch.HasField("grad") and neither.fetch.grad_repr == ""


def test_grads_read_before_are_read_ahead_and_stay_current(client):
    session = client.session()
    w = session.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    assert w.grad.tolist() == [2.0, 4.0]
    g = w.grad
    for k in range(2, 4):  # accumulates: the grad handle read before sees every pass
        (w * w).sum().backward()
        trips = session.round_trips
        assert w.grad.tolist() == [2.0 * k, 4.0 * k]
        assert session.round_trips == trips
        assert g.tolist() == [2.0 * k, 4.0 * k]
    w.grad = None
    (w * 3).sum().backward()
    assert w.grad.tolist() == [3.0, 3.0]
    session.close()


def test_grads_never_read_are_read_ahead_once(client):
    """A leaf's gradient is read ahead after the backward that follows its creation; later
    backwards read ahead only the gradients the program read (a training loop that never reads
    them sends no GetGrad or Fetch), and reading one makes it read ahead from then on."""
    kinds: list[list[str]] = []
    with client.session() as session:
        send = session._send
        session._recorder._send = lambda r: (
            kinds.append([i.WhichOneof("kind") for i in r.instructions]), send(r))[1]
        w = session.tensor([1.0, 2.0], requires_grad=True)
        opt = session.optim.SGD([w], lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
        session.flush()
        reads = [("get_grad" in k, "fetch" in k) for k in kinds]
        assert reads[0] == (True, True)  # the backward after w was made
        assert not any(any(r) for r in reads[1:])
        w_torch = torch.tensor([1.0, 2.0], requires_grad=True)
        opt_torch = torch.optim.SGD([w_torch], lr=0.1)
        for _ in range(3):
            opt_torch.zero_grad()
            (w_torch * w_torch).sum().backward()
            opt_torch.step()
        assert w.grad.tolist() == w_torch.grad.tolist()  # read now: read ahead from here on
        kinds.clear()
        opt.zero_grad()
        (w * w).sum().backward()
        trips = session.round_trips
        opt_torch.zero_grad()
        (w_torch * w_torch).sum().backward()
        assert w.grad.tolist() == w_torch.grad.tolist()
        assert session.round_trips == trips
        assert any("get_grad" in k for k in kinds)


# --- the pipelined mode ---------------------------------------------------------------------------


def train(t, steps, read_every=0):
    w = t.tensor([[0.5], [-0.25]], requires_grad=True)
    opt = t.optim.Adam([w], lr=0.1)
    x = t.tensor([[1.0, 2.0], [3.0, 4.0]])
    losses = []
    for k in range(steps):
        opt.zero_grad()
        loss = ((x @ w - 1.0) ** 2).mean()
        loss.backward()
        opt.step()
        if read_every and k % read_every == 0:
            losses.append(loss.item())
    return losses, w.detach().numpy().tolist()


def test_the_pipelined_mode_computes_what_the_blocking_mode_does(client):
    with client.session() as blocking, client.session(pipelined=40) as piped:
        expected = train(blocking, 30, read_every=10)
        got = train(piped, 30, read_every=10)
        assert got == expected
        # 30 steps of 7 instructions (zero_grad, 4 ops, backward, step) sent every 40, and at
        # the 3 reads and w's final read; blocking: one per step and read
        assert piped.round_trips <= 30 * 7 // 40 + 5 < blocking.round_trips
    with client.session(pipelined=40) as piped:
        train(piped, 30)
        assert piped.round_trips <= 30 * 7 // 40 + 4  # and the final read of w


def test_a_pipelined_error_raises_at_the_next_read_naming_the_recording_line(client):
    import inspect

    with client.session(pipelined=4) as session:
        a = session.tensor([1.0, 2.0], requires_grad=True)
        b = session.tensor([1.0, 2.0, 3.0])
        line = inspect.currentframe().f_lineno + 1
        c = a * b  # fails on the server, sent in the background
        for _ in range(10):  # recorded meanwhile: never sent, dropped at the read
            c = c.exp()
        d = a.sin()
        d.sum().backward()  # does not wait: no error here
        with pytest.raises(RuntimeError, match="must match the size") as exc_info:
            d.tolist()
        assert exc_info.value.gradserve_origin.endswith(f"test_tape.py:{line}")
        with pytest.raises(RuntimeError, match="must match the size"):
            d.tolist()  # made after the failing line: carries its error
        assert a.grad is None  # the backward after it never ran
        assert (a * 2).tolist() == [2.0, 4.0]  # the session goes on


def test_a_pipelined_batch_is_in_flight_while_the_program_records(client):
    # the call is started where the batch fills up, and its reply is applied where the program
    # next sends or reads: never waited for in between. Two batches are on the server at once
    # (the server takes after_request_id): the second names the first, and the third is sent
    # once the first's reply came and was applied
    with client.session(pipelined=5) as session:
        rec = session._recorder
        start, started, finished = rec._start, [], []

        class Spied:
            def __init__(self, request):
                self.request, self.call = request, start(request)

            def done(self):  # as if no reply had come yet (one that came is applied early)
                return False

            def result(self):
                finished.append(self.request)
                return self.call.result()

        def spy_start(request):
            started.append(request)
            return Spied(request)
        rec._start = spy_start
        w = session.tensor([1.0, 2.0], requires_grad=True)
        y = w
        for _ in range(4):  # 5 instructions with the creation: the batch is started
            y = y * 2.0
        assert len(started) == 1 and finished == []
        for _ in range(4):  # the next 5: sent with the first on the server, after it
            y = y + 1.0
        assert len(started) == 2 and finished == []
        assert started[1].after_request_id == started[0].request_id
        assert not started[0].after_request_id
        for _ in range(5):  # the next: the first reply is applied before they are sent
            y = y - 1.0
        assert len(started) == 3 and finished[:1] == started[:1]
        assert started[2].after_request_id == started[1].request_id
        assert y.tolist() == [15.0, 31.0]
        assert finished == started  # the read waited for those in flight, then sent the rest
        assert session.round_trips == 4


def test_a_pipelined_write_s_batch_counts_as_back_once_its_reply_came(client):
    # after an in-place write the client infers no metadata until the write's batch is back;
    # a reply that came while the program recorded is applied then, not at the next send
    import time

    with client.session(pipelined=3, verify_meta=False) as session:  # (the suite's default
        w = session.tensor([1.0, 2.0])                                # checks by describing)
        session.flush()
        with session.no_grad():
            w.mul_(2.0)
        a = w + 1.0
        b = a * 3.0  # the third instruction: the batch with the write is started
        inflight = session._recorder._inflight  # (empty: its reply came and was applied)
        deadline = time.monotonic() + 30
        while inflight and not inflight[-1][1].done() and time.monotonic() < deadline:
            time.sleep(0.01)
        c = w * 3.0
        sent = session.round_trips
        assert tuple(c.shape) == (2,) and c.grad_fn is None
        assert session.round_trips == sent  # known here: nothing was sent to learn them
        assert c.tolist() == [6.0, 12.0] and b.tolist() == [9.0, 15.0]


def test_a_pipelined_call_that_fails_to_start_raises_at_the_next_read(client):
    class Refused(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "channel closed"

        def trailing_metadata(self):
            return ()

    with client.session(pipelined=2) as session:
        a = session.tensor([1.0, 2.0])
        session.flush()
        start = session._recorder._start
        session._recorder._start = lambda request: (_ for _ in ()).throw(Refused())
        b = a * 3.0
        c = b + 1.0  # the batch is full: its call is refused as it starts
        with pytest.raises(UnavailableError, match="channel closed"):
            c.tolist()
        session._recorder._start = start
        assert (a * 2).tolist() == [2.0, 4.0]  # the session goes on


def test_pipelined_must_be_a_count(client):
    with pytest.raises(ValueError, match="pipelined must be"):
        client.session(pipelined=-1)


@pytest.mark.parametrize("others", [0, 1000], ids=["few-held", "many-held"])
@pytest.mark.parametrize("n_ops", [5, 200])
def test_a_tapes_flags_are_the_same_op_by_op_and_at_once(n_ops, others):
    # Tape.encode sets the flags op by op on a short tape and with numpy on a long one: the
    # same words either way (one- and two-output ops, dropped and held outputs, DESCRIBE kept
    # only where an output is held); the long tape's way looks its outputs up in `live` when
    # the program holds more tensors than the tape has ops (`others` held besides its own)
    from array import array

    from gradserve.client.batch import Tape

    t = Tape()
    rng = np.random.default_rng(0)
    handle = 10
    for k in range(n_ops):
        n_out = 2 if k % 7 == 3 else 1
        t.heads.append(len(t.code))
        t.code.append(header(k % 3, 1, n_out, DESCRIBE * int(rng.integers(2))))
        t.code.append(H(1))
        t.code.extend(range(handle, handle + n_out))
        handle += n_out
    live = {h: None for h in range(10, handle) if rng.random() < 0.3}
    live.update((h, None) for h in range(handle + 1, handle + 1 + others))
    by_op, at_once = array("Q", t.code), array("Q", t.code)
    t._flag_loop(by_op, live)
    t._flag_vector(at_once, live)
    assert by_op == at_once
    for k, pos in enumerate(t.heads):
        held = any(h in live for h in t.outputs(k))
        flags = by_op[pos] >> 32 & 0xFF
        assert flags == (t.code[pos] >> 32 & 0xFF | VALUE if held else
                         t.code[pos] >> 32 & 0xFF & ~DESCRIBE)


def test_ops_repeated_with_every_scalar_kind_match_torch(client):
    # from the second time round, each op is recorded by Session._apply_plain's hot path
    # (its inference cached): tensor, float, int and bool inputs
    session = client.session()

    def run(t):
        x = t.tensor([1.5, -2.0], requires_grad=True)
        y, names = x, []
        for _ in range(3):
            y = ((y * 2 + True) ** 2 - 0.5) / 4
            names.append(y.grad_fn.name())
        z = y.sum()
        z.backward()
        return y.tolist(), x.grad.tolist(), names, (x > 1).tolist()

    calls = []
    record_tape = session._record_tape
    session._record_tape = lambda *a: calls.append(a) or record_tape(*a)
    got = run(session)
    assert got == run(torch)
    # the first time round only (mul, add, pow, sub, div, then sum and gt): each op once
    names = [c[0].name for c in calls]
    assert len(names) == len(set(names)) <= 7
    session.close()


def test_an_error_in_an_op_recorded_on_the_hot_path_raises_at_its_line(client):
    import inspect

    session = client.session()
    w = session.tensor([5, 6])
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        (w // 0).tolist()  # the inference for (int64 [2]) // 0 is now cached
    a = session.tensor([2, 3])
    b = a + 0  # opens the tape
    calls = []
    record_tape = session._record_tape
    session._record_tape = lambda *a: calls.append(a) or record_tape(*a)
    line = inspect.currentframe().f_lineno + 1
    c = a // 0
    assert not calls  # recorded by the hot path
    d = b * 2
    with pytest.raises(RuntimeError, match="ZeroDivisionError") as exc_info:
        d.tolist()
    assert exc_info.value.gradserve_origin.endswith(f"test_tape.py:{line}")
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        c.tolist()
    assert b.tolist() == [2, 3]
    session.close()
