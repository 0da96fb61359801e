"""Op attributes on the instruction tape (docs/wire.md, "Attributes"): through a tape, every
OpInfo sample with attributes, and each attribute swapped for a value of every other kind, gives
what it gives through an ApplyOp (descriptions, values, errors with their instruction index);
malformed attribute runs refuse the batch naming the op; both tape decoders agree on random
runs; the client puts attribute ops on the tape, and sends ApplyOps to a server without the
feature, with the same results and errors."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from gradserve.v1 import (
    ERROR_CLASS_METADATA,
    ERROR_TYPE_METADATA,
    FAILED_INSTRUCTION_METADATA,
    FAILED_TAPE_OP_METADATA,
    TAPE_ATTRS_FEATURE,
    graph_pb2,
    session_pb2,
    tensor_pb2,
)
from tests.conftest import gradserve_attr, gradserve_error, gradserve_value
from tests.fuzz_inputs import tape_attr_run, tape_input_words
from tests.opinfo import make_input
from tests.reference import torch
from tests.test_client_ops import catalogue, opinfos
from tests.test_tape import assert_refused

DESCRIBE, ATTRS = 2, 8


def header(op: int, n_in: int, n_out: int, flags: int = 0) -> int:
    return op | flags << 32 | n_in << 40 | n_out << 52


def words(*ws: int) -> bytes:
    return struct.pack(f"<{len(ws)}Q", *ws)


def tape_of(name: str, inputs: list[graph_pb2.Value], attrs: Any, outputs: list[int],
            flags: int = DESCRIBE | ATTRS) -> session_pb2.Instruction:
    """A one-op Tape doing what ApplyOp(name, inputs, attrs, outputs) does (hand-encoded from
    docs/wire.md)."""
    floats: list[float] = []
    ints: list[int] = []
    constants: list[Any] = []
    code = [header(0, len(inputs), len(outputs), flags),
            *tape_input_words(inputs, floats, ints, constants), *outputs]
    attr_words: list[int] = []
    names: dict[str, int] = {}
    strings: list[str] = []
    if flags & ATTRS:
        tape_attr_run(attrs, attr_words, names, strings, floats, ints)
    return session_pb2.Instruction(tape=session_pb2.Tape(
        ops=[name], code=words(*code), floats=struct.pack(f"<{len(floats)}d", *floats),
        ints=struct.pack(f"<{len(ints)}q", *ints), constants=constants,
        attrs=words(*attr_words), attr_names=list(names), strings=strings))


def _outcome(s: Any, ins: session_pb2.Instruction, outputs: list[int]) -> tuple[Any, ...]:
    """What running `ins` after seeding the session's generator gives: its outputs'
    descriptions (without handles) and values, or its error (status, message, exception type
    and class, failing instruction)."""
    seed = session_pb2.Instruction(manual_seed=session_pb2.ManualSeed(seed=13))
    try:
        resp = s.run(seed, ins)
    except grpc.RpcError as err:
        code, message, meta = gradserve_error(_Caught(err))
        return ("error", code, message, meta.get(ERROR_TYPE_METADATA),
                meta.get(ERROR_CLASS_METADATA), meta.get(FAILED_INSTRUCTION_METADATA))
    r = resp.results[1]
    infos = r.tape.tensors if r.HasField("tape") else r.handles.tensors
    described = []
    for info in infos:
        info = type(info).FromString(info.SerializeToString())
        info.handle = 0
        described.append(info.SerializeToString(deterministic=True))
    values = [s.value_of(h) for h in outputs]
    s.run(s.release(*outputs))
    return ("ok", described, [(v.dtype.str, v.shape, v.tobytes()) for v in values])


class _Caught:
    """What `gradserve_error` reads from pytest's ExceptionInfo: `.value`."""

    def __init__(self, err: grpc.RpcError):
        self.value = err


def _n_outputs(op: Any, first: Any, attrs: dict[str, Any]) -> int:
    if op.HasField("n_outputs"):
        return op.n_outputs
    from gradserve.surface.signature import count_outputs

    shape = np.shape(first) if isinstance(first, np.ndarray) else ()
    return count_outputs(op.output_count, shape, attrs)


def _same_both_ways(s: Any, op: Any, inputs: list[graph_pb2.Value],
                    attrs: dict[str, graph_pb2.AttrValue], n_out: int,
                    handles: Any) -> tuple[Any, ...]:
    a = [next(handles) for _ in range(n_out)]
    b = [next(handles) for _ in range(n_out)]
    via_apply = _outcome(s, session_pb2.Instruction(apply_op=session_pb2.ApplyOp(
        op=op.name, inputs=inputs, attrs=attrs, outputs=a)), a)
    via_tape = _outcome(s, tape_of(op.name, inputs, attrs, b), b)
    assert via_tape == via_apply, (op.name, {k: str(v) for k, v in attrs.items()})
    return via_apply


def _attr_cases() -> list[Any]:
    infos = opinfos()
    out = []
    for op in catalogue().ops:
        info = infos.get(op.name)
        if op.attrs and info is not None:
            out.append(pytest.param(op, info, id=op.name))
    return out


# A value of every attribute kind (each one some attribute refuses).
OTHER_KINDS = {
    "int": graph_pb2.AttrValue(int_value=1),
    "float": graph_pb2.AttrValue(float_value=0.5),
    "bool": graph_pb2.AttrValue(bool_value=True),
    "none": graph_pb2.AttrValue(none_value=tensor_pb2.NoneValue()),
    "string": graph_pb2.AttrValue(string_value="bogus"),
    "ints": graph_pb2.AttrValue(ints_value=graph_pb2.IntList(values=[1])),
    "no ints": graph_pb2.AttrValue(ints_value=graph_pb2.IntList()),
    "dtype": graph_pb2.AttrValue(dtype_value=tensor_pb2.DTYPE_FLOAT64),
}


@pytest.mark.parametrize("op, info", _attr_cases())
def test_every_sample_with_attributes_is_the_same_through_a_tape(gradserve_session, op, info):
    s = gradserve_session
    rng = np.random.default_rng(0)
    import itertools

    handles = itertools.count(1)
    outcomes = set()
    for k, sample in enumerate(info.samples):
        args = [make_input(spec, rng, info.domain, np.float32) for spec in sample.inputs]
        creates, inputs = [], []
        for a in (args[0] if op.variadic else args):
            if isinstance(a, np.ndarray):
                h = next(handles)
                creates.append(s.create(h, a, requires_grad=a.dtype.kind == "f"))
                inputs.append(graph_pb2.Value(handle=h))
            else:
                inputs.append(gradserve_value(a))
        if creates:
            s.run(*creates)
        attrs = {name: gradserve_attr(v) for name, v in sample.attrs.items()}
        n_out = _n_outputs(op, args[0] if args else None, sample.attrs)
        outcomes.add(_same_both_ways(s, op, inputs, attrs, n_out, handles)[0])
        if k:
            continue
        # the first sample's attributes, each given a value of every other kind, and one more
        for a in op.attrs:
            for value in OTHER_KINDS.values():
                outcomes.add(_same_both_ways(s, op, inputs, {**attrs, a.name: value}, n_out,
                                             handles)[0])
        bogus = {**attrs, "bogus": OTHER_KINDS["int"]}
        assert _same_both_ways(s, op, inputs, bogus, n_out, handles)[0] == "error"
    assert "ok" in outcomes


def test_the_documented_example(gradserve_session):
    # docs/wire.md, "Attributes": s = x.sum(dim=1, keepdim=True); t = s.transpose(0, 1)
    s = gradserve_session
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    msg = session_pb2.Tape(
        ops=["sum", "transpose"], attr_names=["dim", "keepdim", "dim0", "dim1"],
        ints=struct.pack("<3q", 1, 0, 1),
        code=words(0 | 8 << 32 | 1 << 40 | 1 << 52, 1 << 3 | 0, 2,
                   1 | 8 << 32 | 1 << 40 | 1 << 52, 2 << 3 | 0, 3),
        attrs=words(2, 2 | 0 << 3 | 0 << 15, 3 | 1 << 3 | 1 << 15,
                    2, 2 | 2 << 3 | 1 << 15, 2 | 3 << 3 | 2 << 15))
    s.run(s.create(1, x), session_pb2.Instruction(tape=msg))
    expected = torch.tensor(x).sum(dim=1, keepdim=True).transpose(0, 1).numpy()
    np.testing.assert_array_equal(s.value_of(3), expected)
    # and x.permute(1, 0): one int-list attribute
    msg = session_pb2.Tape(ops=["permute"], attr_names=["dims"], ints=struct.pack("<3q", 2, 1, 0),
                           code=words(0 | 8 << 32 | 1 << 40 | 1 << 52, 1 << 3, 4),
                           attrs=words(1, 0 | 0 << 3 | 0 << 15))
    s.run(session_pb2.Instruction(tape=msg))
    np.testing.assert_array_equal(s.value_of(4), x.T)


def _bad(attrs: list[int], names: list[str] = ("dim", "keepdim"), strings: list[str] = (),
         ints: list[int] = (), floats: list[float] = (), flags: int = ATTRS,
         code: list[int] | None = None) -> session_pb2.Tape:
    """A tape summing handle 1 into handle 5 (op 0) with attribute words `attrs`."""
    return session_pb2.Tape(
        ops=["sum"], code=words(*(code or [header(0, 1, 1, flags), 1 << 3, 5])),
        attrs=words(*attrs), attr_names=list(names), strings=list(strings),
        ints=struct.pack(f"<{len(ints)}q", *ints), floats=struct.pack(f"<{len(floats)}d", *floats))


def W(kind: int, name: int, payload: int = 0) -> int:  # noqa: N802 - an attribute word
    return kind | name << 3 | payload << 15


TWO_OPS = [header(0, 1, 1, ATTRS), 1 << 3, 5, header(0, 1, 1, ATTRS), 1 << 3, 6]
MALFORMED = [
    ("no attribute words", _bad([]), 0, "attribute words are used up"),
    ("the second op's run missing", _bad([1, W(2, 0)], ints=[0], code=TWO_OPS), 1,
     "attribute words are used up"),
    ("too many attributes", _bad([256]), 0, "256 attributes, more than the limit of 255"),
    ("count past the end", _bad([2, W(2, 0)], ints=[0]), 0,
     "past the end of the attribute words (1 words left)"),
    ("kind 7", _bad([1, W(7, 0)]), 0, "attribute 0 has unknown kind 7"),
    ("name index", _bad([1, W(4, 2)]), 0, "name index 2 is outside the tape's 2 attribute"),
    ("a name twice", _bad([2, W(4, 0), W(4, 0)]), 0, "attribute 1: 'dim' is given twice"),
    ("a name twice by two indices", _bad([2, W(4, 0), W(4, 1)], names=["dim", "dim"]), 0,
     "'dim' is given twice"),
    ("int index", _bad([1, W(2, 0, 1)], ints=[0]), 0, "int index 1 is outside"),
    ("float index", _bad([1, W(1, 0, 0)]), 0, "float index 0 is outside"),
    ("bool payload", _bad([1, W(3, 1, 2)]), 0, "a bool's payload is 0 or 1, got 2"),
    ("none payload", _bad([1, W(4, 0, 1)]), 0, "a none's payload is 0, got 1"),
    ("string index", _bad([1, W(5, 0, 0)]), 0, "string index 0 is outside"),
    ("int list index", _bad([1, W(0, 0, 3)], ints=[1, 0]), 0, "int index 3 is outside"),
    ("int list past the table", _bad([1, W(0, 0, 0)], ints=[2, 0]), 0,
     "an int list of 2 ints at int index 0 does not fit"),
    ("negative int list", _bad([1, W(0, 0, 0)], ints=[-1, 0]), 0, "an int list of -1 ints"),
    ("dtype unspecified", _bad([1, W(6, 0, 0)], names=["dtype"]), 0, "dtype is unspecified"),
    ("dtype unknown", _bad([1, W(6, 0, 77)], names=["dtype"]), 0,
     "unknown dtype enum value 77"),
    ("words left over", _bad([1, W(4, 0), 0]), None, "1 words past the last ATTRS-flagged"),
    ("words without ATTRS", _bad([0], flags=0), None, "1 words past the last ATTRS-flagged"),
    ("attribute words length", session_pb2.Tape(attrs=b"\0" * 9), None, "not a multiple of 8"),
    ("too many attribute names", session_pb2.Tape(attr_names=["dim"] * 4097), None,
     "4097 attribute names, more than the limit"),
    ("too many attribute words", session_pb2.Tape(attrs=bytes(8 * (2**18 + 1))), None,
     "more than the limit"),
    ("unknown flag", _bad([], flags=32), 0, "unknown flags 0x20"),
]


@pytest.mark.parametrize("case, msg, op, text", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_attribute_run_refuses_the_batch(gradserve_session, case, msg, op, text):
    assert_refused(gradserve_session, msg, op, text, np.ones((2, 3), np.float32))


def test_int_lists_are_bounded_in_all_not_each(gradserve_session):
    # one list of 2**17 ints referenced by three attributes would make 3 * 2**17 ints: refused
    # before it is made (an int list is copied per use)
    n = 2**17
    ints = [n] + [0] * n
    code, attrs = [], []
    for k in range(3):
        code += [header(0, 1, 1, ATTRS), 1 << 3, 5 + k]
        attrs += [1, W(0, 0, 0)]
    msg = _bad(attrs, ints=ints, code=code)
    s = gradserve_session
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(s.create(1, np.ones((2, 3), np.float32)), session_pb2.Instruction(tape=msg))
    code_, message, meta = gradserve_error(exc_info)
    assert code_ == grpc.StatusCode.INVALID_ARGUMENT
    assert "int lists hold more than 262144 ints in all" in message
    assert meta[FAILED_TAPE_OP_METADATA] == "2"


def test_an_attribute_op_failing_as_it_runs_stops_the_tape_there(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, np.ones((2, 3), np.float32)))
    msg = _bad([1, W(2, 0, 0), 1, W(2, 0, 1), 1, W(2, 0, 0)], ints=[1, 5],
               code=[header(0, 1, 1, ATTRS), 1 << 3, 10, header(0, 1, 1, ATTRS), 1 << 3, 11,
                     header(0, 1, 1, ATTRS), 1 << 3, 12])
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(session_pb2.Instruction(tape=msg))
    code, message, meta = gradserve_error(exc_info)
    assert meta[ERROR_TYPE_METADATA] == "IndexError" and "Dimension out of range" in message
    assert (meta[FAILED_INSTRUCTION_METADATA], meta[FAILED_TAPE_OP_METADATA]) == ("0", "1")
    np.testing.assert_array_equal(s.value_of(10), [3.0, 3.0])  # op 0 ran, op 2 did not
    assert s.describe().tensor_count == 2


def _random_run(rng: np.random.Generator, out: list[int]) -> None:
    """One op's attribute run over the tables `_random_tables` makes, often malformed."""
    count = int(rng.choice([0, 1, 1, 2, 2, 3, 256]))
    out.append(count)
    for _ in range(min(count, 3)):
        kind = int(rng.choice([0, 1, 2, 2, 3, 4, 5, 6, 6, 7]))
        name = int(rng.choice([0, 0, 1, 2, 3]))
        payload = int(rng.choice([0, 0, 1, 1, 2, 3, 6, 7, 77, 2**40]))
        out.append(kind | name << 3 | payload << 15)


def test_both_decoders_make_the_same_of_every_attribute_run(monkeypatch):
    # server/tape.py checks short tapes' ops op by op and long ones' with numpy; the attribute
    # runs of both are decoded by one function, after the ops before the first fault: the same
    # attributes or the same first fault, in tape order, including an op's own header fault
    # before its attributes'
    from gradserve.server import tape as wire_tape
    from gradserve.server.errors import Located

    def decoded(msg: session_pb2.Tape, short_words: int) -> tuple[Any, ...]:
        monkeypatch.setattr(wire_tape, "SHORT_WORDS", short_words)
        try:
            d = wire_tape.decode(msg, 100)
        except Located as exc:
            return ("error", type(exc.cause).__name__, str(exc.cause), exc.tape_op)
        return ("ok", d.count, d.ops[1], d.attrs)

    rng = np.random.default_rng(7)
    outcomes = set()
    for _ in range(3000):
        code: list[int] = []
        attrs: list[int] = []
        for k in range(int(rng.integers(1, 5))):
            flags = int(rng.choice([0, ATTRS, ATTRS, ATTRS | DESCRIBE, 32]))
            code += [header(0, 1, 1, flags), 1 << 3, 10 + k]
            if flags & ATTRS:
                _random_run(rng, attrs)
        if rng.random() < 0.1:
            attrs.append(0)  # a word left over
        if rng.random() < 0.1:
            attrs = attrs[:int(rng.integers(0, len(attrs) + 1))]
        msg = session_pb2.Tape(
            ops=["sum"], code=words(*code), attrs=words(*attrs),
            attr_names=["dim", "keepdim", "dim"][:int(rng.integers(1, 4))],
            strings=["mean"][:int(rng.integers(0, 2))],
            ints=struct.pack("<4q", 2, 0, 1, -1)[:8 * int(rng.integers(0, 5))],
            floats=struct.pack("<d", 0.5)[:8 * int(rng.integers(0, 2))])
        short = decoded(msg, 1 << 18)
        assert decoded(msg, 0) == short, msg
        if short[0] == "ok":
            for values in short[3].values():  # what an ApplyOp's attributes decode to
                for v in values.values():
                    assert v is None or type(v) in (bool, int, float, str, tuple)
        outcomes.add("ok" if short[0] == "ok" else short[2].split(":", 1)[1])
    for fragment in ("ok", "attribute words are used up", "attributes, more than the limit",
                     "past the end of the attribute words", "has unknown kind 7",
                     "name index", "given twice", "a bool's payload", "a none's payload",
                     "int index", "float index", "string index", "int list of",
                     "dtype enum value", "dtype is unspecified", "unknown flags"):
        assert any(fragment in o for o in outcomes), fragment


# --- the client ---------------------------------------------------------------------------------

TAPE_VALUES = [None, True, np.bool_(False), 3, -(2**63), np.int64(-2), 2**63, 1.5, -0.0,
               float("nan"), np.float32(0.25), "mean", "é", "\ud800", (), (1, 2),
               [np.int32(3)], (1, "a"), [2**64], tuple(range(4096)), tuple(range(4097)),
               object()]


@pytest.mark.parametrize("value", TAPE_VALUES, ids=[repr(v)[:16] for v in TAPE_VALUES])
def test_a_tape_carries_an_attribute_as_its_attr_value_would(value):
    # the client's classification (gradserve.v1.attrs.tape_attr) against the message it
    # replaces: a value an AttrValue refuses stays off the tape (its ApplyOp raises as
    # before), and one it holds decodes on the server to the same value either way
    from gradserve.client.batch import Tape, tape_attrs
    from gradserve.client.codec import dtype_code, encode_attr
    from gradserve.server import codec as server_codec
    from gradserve.server import tape as wire_tape

    message = graph_pb2.AttrValue()
    try:
        encode_attr(value, message)
    except (TypeError, ValueError):
        message = None
    items = tape_attrs({"a": value})
    if message is None or (isinstance(value, (tuple, list)) and len(value) > 4096):
        assert items is None
        return
    assert items is not None
    tape = Tape()
    tape.names["neg"] = 0
    tape.heads.append(0)
    tape.code += [header(0, 1, 1, ATTRS), 1 << 3, 2]
    tape.add_attrs(items)
    msg = session_pb2.Tape()
    tape.encode(msg, {})
    got = wire_tape.decode(session_pb2.Tape.FromString(msg.SerializeToString()), 10).attrs[0]
    want = server_codec.decode_attr(message)
    assert repr(got["a"]) == repr(want) and type(got["a"]) is type(want)
    assert dtype_code(value) is None


def test_a_dtype_attribute_is_its_wire_code(gradserve_server):
    import gradserve.client as gc

    with gc.connect(f"localhost:{gradserve_server[1]}") as c, c.session() as t:
        items = tape_attrs_of(t.float64)
    assert items == (("dtype", 6, tensor_pb2.DTYPE_FLOAT64),)


def tape_attrs_of(dtype: Any) -> Any:
    from gradserve.client.batch import tape_attrs

    return tape_attrs({"dtype": dtype})



def _program(t: Any, x: Any, w: Any) -> Any:
    """Ops with attributes of every kind the client sends: ints, int lists, floats, bools,
    None, strings, dtypes; keywords and positional extras."""
    y = x.sum(0) + x.transpose(0, 1).sum(dim=1)[:3]
    y = y + t.softmax(x, 1).mean(0) + x.reshape(-1)[:3] + x.view(3, 3).amax(dim=(0,))
    y = y + x.mean(dim=1, keepdim=True).squeeze(1) + t.add(x, w, alpha=2).sum(0)
    y = y + t.nn.functional.leaky_relu(x, 0.2).sum(0) + x.pow(2).clamp(min=-1.0).sum(0)
    y = y + x.sum(0, dtype=t.float64).to(t.float32) + x.cumsum(dim=0)[1]
    loss = t.nn.functional.mse_loss(y, t.zeros(3), reduction="sum")
    loss = loss + t.nn.functional.cross_entropy(x, t.tensor([0, 2, 1]), reduction="mean")
    return loss


def _server_without_tape_attrs(factory: Any, monkeypatch: Any) -> int:
    """The port of a new server whose ListOps leaves "tape_attrs" out (an older server)."""
    from gradserve.server import catalogue as server_catalogue

    listed = server_catalogue.list_ops()
    older = type(listed)()
    older.CopyFrom(listed)
    del older.features[:]
    older.features.extend(f for f in listed.features if f != TAPE_ATTRS_FEATURE)
    monkeypatch.setattr(server_catalogue, "list_ops", lambda: older)
    return factory()[1]


def _kinds(requests: list[Any]) -> set[str]:
    return {i.WhichOneof("kind") for r in requests for i in r.instructions}


def _run_program(c: Any, spy: list[Any]) -> tuple[Any, Any]:
    with c.session() as t:
        send = t._recorder._send
        t._recorder._send = lambda r: spy.append(r) or send(r)
        x = t.tensor(np.linspace(-1, 1, 9, dtype=np.float32).reshape(3, 3), requires_grad=True)
        w = t.tensor(np.full((3, 3), 0.5, np.float32), requires_grad=True)
        loss = _program(t, x, w)
        loss.backward()
        return loss.item(), (x.grad.numpy(), w.grad.numpy())


def test_a_program_of_attribute_ops_matches_torch_with_and_without_the_feature(
        gradserve_server, gradserve_server_factory, monkeypatch):
    import gradserve.client as gc

    x = torch.linspace(-1, 1, 9).reshape(3, 3).requires_grad_()
    w = torch.full((3, 3), 0.5, requires_grad=True)
    loss = _program(torch, x, w)
    loss.backward()
    with gc.connect(f"localhost:{gradserve_server[1]}") as c:
        sent: list[Any] = []
        value, grads = _run_program(c, sent)
    assert "tape" in _kinds(sent) and "apply_op" not in _kinds(sent)
    assert any(i.tape.attrs for r in sent for i in r.instructions if i.HasField("tape"))
    np.testing.assert_allclose(value, loss.item(), rtol=1e-5)
    np.testing.assert_allclose(grads[0], x.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[1], w.grad.numpy(), rtol=1e-5, atol=1e-6)
    # a server without the feature: ApplyOps, the same numbers
    port = _server_without_tape_attrs(gradserve_server_factory, monkeypatch)
    with gc.connect(f"localhost:{port}") as c:
        assert TAPE_ATTRS_FEATURE not in c.list_ops().features
        sent = []
        value_old, grads_old = _run_program(c, sent)
    assert "apply_op" in _kinds(sent)
    assert not any(i.tape.attrs for r in sent for i in r.instructions if i.HasField("tape"))
    assert value_old == value
    np.testing.assert_array_equal(grads_old[0], grads[0])
    np.testing.assert_array_equal(grads_old[1], grads[1])


def test_an_attribute_op_error_raises_at_its_line_both_ways(
        gradserve_server, gradserve_server_factory, monkeypatch):
    import gradserve.client as gc

    def failing(c: Any) -> tuple[type, str, str, bool]:
        with c.session() as t:
            x = t.tensor(np.ones((2, 3), np.float32))
            y = x.sum(0)  # recorded twice: the second from the client's cache of attribute ops
            y = x.sum(0)
            z = y.sum(dim=5)
            with pytest.raises(Exception) as exc_info:
                z.item()
            origin = exc_info.value.gradserve_origin
            with pytest.raises(type(exc_info.value)):  # the failed tensor keeps its error
                z.tolist()
            src = Path(origin.rsplit(":", 1)[0]).read_text().splitlines()
            return (type(exc_info.value), str(exc_info.value).splitlines()[0],
                    src[int(origin.rsplit(":", 1)[1]) - 1].strip(), y.shape == (3,))

    with gc.connect(f"localhost:{gradserve_server[1]}") as c:
        new = failing(c)
    port = _server_without_tape_attrs(gradserve_server_factory, monkeypatch)
    with gc.connect(f"localhost:{port}") as c:
        old = failing(c)
    assert new == old
    assert new[0] is IndexError and "Dimension out of range" in new[1]
    assert new[2].startswith("z = y.sum(dim=5)")


def test_bound_attributes_are_remembered_only_for_small_values():
    # server/ops.py binds a tape op's attributes once per (op, names, types, values): a key
    # never holds a long list or string (4096 of them would hold gigabytes), never confuses
    # 0.0 with -0.0, 1 with True or 1.0, and a refused binding is not remembered
    import gradserve.engine as ge
    from gradserve.server import ops

    permute, leaky = ge.registry.OPS["permute"], ge.registry.OPS["leaky_relu"]
    ops._BOUND.clear()
    assert ops.bound_attrs(permute, {"dims": tuple(range(65))})["dims"] == tuple(range(65))
    assert not ops._BOUND
    assert ops.bound_attrs(permute, {"dims": (1, 0)}) == {"dims": (1, 0)}
    assert len(ops._BOUND) == 1
    signs = [np.signbit(ops.bound_attrs(leaky, {"negative_slope": v})["negative_slope"])
             for v in (-0.0, 0.0, -0.0)]
    assert signs == [True, False, True]
    sum_op = ge.registry.OPS["sum"]
    assert ops.bound_attrs(sum_op, {"dim": 1})["dim"] == 1
    with pytest.raises(TypeError):  # a bool is not a dim, though True == 1
        ops.bound_attrs(sum_op, {"dim": True})
    with pytest.raises(TypeError):
        ops.bound_attrs(sum_op, {"dim": 1.0})
    assert sum(key[0] == "sum" for key in ops._BOUND) == 1
