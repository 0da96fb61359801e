"""A training iteration on one tape (docs/wire.md, "Session instructions on the tape"): the
client records `optimizer.zero_grad()`, `loss.backward()` and `optimizer.step()` as
INSTRUCTION-flagged tape ops, so an iteration is one tape instruction in the blocking mode and
many iterations share one tape in the pipelined mode. The same values, gradients and optimizer
state as torch; errors at the user's line in every position of an iteration; the server's
checks of the new words."""

from __future__ import annotations

import struct
import sys

import grpc
import numpy as np
import pytest

from gradserve.v1 import (
    FAILED_INSTRUCTION_METADATA,
    FAILED_TAPE_OP_METADATA,
    TAPE_INSTRUCTIONS_FEATURE,
    session_pb2,
)
from tests.conftest import gradserve_error
from tests.reference import torch

INSTRUCTION, VALUE = 16, 4
HANDLE, FLOAT, INT, BOOL, NONE = range(5)


def header(op: int, n_in: int, n_out: int, flags: int = 0) -> int:
    return op | flags << 32 | n_in << 40 | n_out << 52


def words(*ws: int) -> bytes:
    return struct.pack(f"<{len(ws)}Q", *ws)


def H(handle: int) -> int:  # noqa: N802 - an input word naming a handle
    return handle << 3


def B(flag: bool) -> int:  # noqa: N802 - a bool input word
    return int(flag) << 3 | BOOL


@pytest.fixture(scope="module")
def client(gradserve_server):
    import gradserve.client as gc

    with gc.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


class Model:
    """A small regression trained by `optimizer` (torch's or a session's spelling)."""

    def __init__(self, lib, optimizer: str):
        rng = np.random.default_rng(3)
        self.x = lib.tensor(rng.standard_normal((8, 3)).astype("float32"))
        self.y = lib.tensor(rng.standard_normal((8, 1)).astype("float32"))
        self.w = lib.tensor(rng.standard_normal((3, 1)).astype("float32"), requires_grad=True)
        self.b = lib.tensor(np.zeros(1, "float32"), requires_grad=True)
        params = [self.w, self.b]
        self.opt = (lib.optim.Adam(params, lr=0.05) if optimizer == "adam" else
                    lib.optim.SGD(params, lr=0.05, momentum=0.9))

    def step(self):
        self.opt.zero_grad()
        err = self.x @ self.w + self.b - self.y
        loss = (err * err).mean() + 0.01 * (self.w * self.w).sum()
        loss.backward()
        self.opt.step()
        return loss


def _array(t) -> np.ndarray:
    return np.asarray(t.detach().tolist(), dtype=np.float32)


def _spy(session) -> list:
    """The requests the session sends from now on, blocking or (pipelined) started."""
    sent: list = []
    rec = session._recorder
    send, start = rec._send, rec._start

    def spy(request):
        sent.append(request)
        return send(request)

    def spy_start(request):
        sent.append(request)
        return start(request)
    rec._send, rec._start = spy, spy_start
    return sent


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("pipelined", [0, 7])
def test_iterations_match_torch(client, optimizer, pipelined):
    s = client.session(pipelined=pipelined) if pipelined else client.session()
    ours, ref = Model(s, optimizer), Model(torch, optimizer)
    for _ in range(6):
        loss = ours.step()
        expected = ref.step()
    assert loss.item() == expected.item()
    for mine, theirs in ((ours.w, ref.w), (ours.b, ref.b)):
        np.testing.assert_array_equal(_array(mine), _array(theirs))
        np.testing.assert_array_equal(_array(mine.grad), _array(theirs.grad))
    state, expected_state = ours.opt.state_dict()["state"], ref.opt.state_dict()["state"]
    assert sorted(state) == sorted(expected_state) == [0, 1]
    for k in state:
        assert sorted(state[k]) == sorted(expected_state[k])
        for name, value in expected_state[k].items():
            np.testing.assert_array_equal(_array(state[k][name]), _array(value))
    s.close()


def test_a_blocking_iteration_is_one_tape(client):
    assert TAPE_INSTRUCTIONS_FEATURE in client.list_ops().features
    s = client.session()
    model = Model(s, "adam")
    model.step()
    model.step()
    sent = _spy(s)
    model.step()
    assert len(sent) == 1
    kinds = [i.WhichOneof("kind") for i in sent[0].instructions]
    assert kinds in (["tape"], ["tape", "release"])
    tape = sent[0].instructions[0].tape
    code = struct.unpack(f"<{len(tape.code) // 8}Q", tape.code)
    ops = []
    pos = 0
    while pos < len(code):  # walk the headers: the previous step, zero_grad, 9 ops, backward
        h = code[pos]
        ops.append((tape.ops[h & 0xFFFFFFFF], (h >> 32) & 0xFF & INSTRUCTION))
        pos += 1 + ((h >> 40) & 0xFFF) + (h >> 52)
    assert ops[:2] == [("optimizer_step", INSTRUCTION), ("optimizer_zero_grad", INSTRUCTION)]
    assert ops[-1] == ("backward", INSTRUCTION)
    assert len(ops) == 12 and not any(flag for _, flag in ops[2:-1])
    s.close()


def test_pipelined_iterations_share_one_tape(client):
    s = client.session(pipelined=60)
    model = Model(s, "adam")
    sent = _spy(s)
    for _ in range(12):
        model.step()
    s.flush()
    assert len(sent) >= 2
    for request in sent[1:]:  # (the first also creates the tensors and the optimizer)
        kinds = [i.WhichOneof("kind") for i in request.instructions]
        assert kinds.count("tape") == 1, kinds
    s.close()


# --- errors at each position of an iteration -------------------------------------------------


def _next_line() -> int:
    """The caller's next line."""
    return sys._getframe(1).f_lineno + 1


@pytest.mark.parametrize("pipelined", [0, 5])
def test_a_failing_forward_op_names_its_line(client, pipelined):
    s = client.session(pipelined=pipelined) if pipelined else client.session()
    model = Model(s, "adam")
    model.opt.zero_grad()
    line = _next_line()
    bad = model.x @ s.ones(2, 1)  # (8, 3) @ (2, 1)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied") as e:
        bad.sum().backward()
        s.flush()
    assert e.value.gradserve_origin.endswith(f":{line}")
    s.close()


@pytest.mark.parametrize("pipelined", [0, 5])
def test_a_failing_backward_names_its_line(client, pipelined):
    s = client.session(pipelined=pipelined) if pipelined else client.session()
    model = Model(s, "adam")
    model.opt.zero_grad()
    pred = model.x @ model.w
    with pytest.raises(RuntimeError) as expected:
        torch.ones(2, requires_grad=True).mul(2).backward()
    with pytest.raises(RuntimeError) as e:
        line = _next_line()
        pred.backward()  # not a scalar
        model.opt.step()
        s.flush()
    assert str(e.value) == str(expected.value)
    assert e.value.gradserve_origin.endswith(f":{line}")
    s.close()


@pytest.mark.parametrize("pipelined", [0, 5])
def test_backward_twice_and_retain_graph(client, pipelined):
    s = client.session(pipelined=pipelined) if pipelined else client.session()
    model, ref = Model(s, "sgd"), Model(torch, "sgd")
    for m in (model, ref):
        loss = (m.x @ m.w).sum()
        loss.backward(retain_graph=True)
        loss.backward()  # the graph was kept: accumulates
    np.testing.assert_array_equal(_array(model.w.grad), _array(ref.w.grad))
    loss = (model.x @ model.w).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second "
                                           "time") as e:
        line = _next_line()
        loss.backward()
        s.flush()
    assert e.value.gradserve_origin.endswith(f":{line}")
    s.close()


@pytest.mark.parametrize("which", ["step", "zero_grad"])
@pytest.mark.parametrize("pipelined", [0, 5])
def test_a_failing_optimizer_instruction_names_its_line(client, which, pipelined):
    s = client.session(pipelined=pipelined) if pipelined else client.session()
    model = Model(s, "adam")
    model.step()
    s.flush()
    model.opt.handle = 987654  # (a handle the server does not know: its NOT_FOUND)
    with pytest.raises(Exception, match="unknown optimizer handle 987654") as e:
        line = _next_line()
        getattr(model.opt, which)()
        model.x.sum().item()
    assert e.value.gradserve_origin.endswith(f":{line}")
    s.close()


# --- the wire ----------------------------------------------------------------------------------

# (ops, code after op 0, the message) of INSTRUCTION-flagged ops the server refuses as
# malformed, each at tape op 1 (op 0 is a valid `neg`)
MALFORMED = [
    ("not an instruction", ["neg"], [header(0, 1, 0, INSTRUCTION), H(1)],
     "tape op 1: flagged INSTRUCTION, but 'neg' is not a tape instruction (known: backward, "
     "optimizer_step, optimizer_zero_grad)"),
    ("other flags", ["neg", "backward"], [header(1, 1, 0, INSTRUCTION | VALUE), H(2)],
     "tape op 1: backward: an INSTRUCTION-flagged op takes no other flag, got flags 0x14"),
    ("outputs", ["neg", "backward"], [header(1, 1, 1, INSTRUCTION), H(2), 9],
     "tape op 1: backward: an instruction binds no outputs, but 1 are declared"),
    ("no inputs", ["neg", "backward"], [header(1, 0, 0, INSTRUCTION)],
     "tape op 1: backward: takes 1 to 3 inputs, got 0"),
    ("too many inputs", ["neg", "optimizer_step"], [header(1, 2, 0, INSTRUCTION), H(3), H(3)],
     "tape op 1: optimizer_step: takes 1 input, got 2"),
    ("float tensor", ["neg", "backward"], [header(1, 1, 0, INSTRUCTION), 0 << 3 | FLOAT],
     "tape op 1: backward: input 0 (tensor) must be of kind handle, not float"),
    ("int retain_graph", ["neg", "backward"], [header(1, 2, 0, INSTRUCTION), H(2), INT],
     "tape op 1: backward: input 1 (retain_graph) must be of kind bool or none, not int"),
    ("none create_graph", ["neg", "backward"],
     [header(1, 3, 0, INSTRUCTION), H(2), B(True), NONE],
     "tape op 1: backward: input 2 (create_graph) must be of kind bool, not none"),
    ("bool set_to_none payload", ["neg", "optimizer_zero_grad"],
     [header(1, 2, 0, INSTRUCTION), H(3), 2 << 3 | BOOL],
     "tape op 1: input 1: a bool input's payload is 0 or 1, got 2"),
    ("handle 0", ["neg", "optimizer_step"], [header(1, 1, 0, INSTRUCTION), 0],
     "tape op 1: input 0: handle ids start at 1 (0 means the field was not set)"),
    ("no outputs without the flag", ["neg", "backward"], [header(1, 1, 0), H(2)],
     "tape op 1: declares no outputs"),
    ("past the end", ["neg", "backward"], [header(1, 2, 0, INSTRUCTION), H(2)],
     "tape op 1: declares 2 inputs and 0 outputs, past the end of the code (1 words left)"),
]


@pytest.mark.parametrize("long", [False, True], ids=["short", "long"])
@pytest.mark.parametrize("case, ops, code, text", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_instructions_refuse_the_batch(gradserve_session, case, ops, code, text, long):
    s = gradserve_session
    # a long tape (past server/tape.SHORT_WORDS) is checked with numpy, a short one op by op:
    # 100 more ops before the faulty one
    pad = [w for k in range(100) for w in (header(0, 1, 1), H(1), 50 + k)] if long else []
    msg = session_pb2.Tape(ops=ops, code=words(header(0, 1, 1), H(1), 2, *pad, *code),
                           floats=struct.pack("<d", 1.5), ints=struct.pack("<q", 2))
    op = 101 if long else 1
    text = text.replace("tape op 1:", f"tape op {op}:")
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(s.create(1, np.ones(2, np.float32), requires_grad=True),
              session_pb2.Instruction(tape=msg))
    status, message, meta = gradserve_error(exc_info)
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    assert message == text
    assert meta[FAILED_INSTRUCTION_METADATA] == "1" and meta[FAILED_TAPE_OP_METADATA] == str(op)
    assert s.describe().tensor_count == 0  # checked before anything ran


def test_the_documented_example(gradserve_session):
    # docs/wire.md, "Session instructions on the tape": zero_grad, (x @ w).sum(), backward,
    # step; w at handle 1, x at handle 2, optimizer 9 (SGD, lr 0.5)
    s = gradserve_session
    w0 = np.array([[0.5], [-1.0]], np.float32)
    x0 = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    s.run(s.create(1, w0, requires_grad=True), s.create(2, x0), _optimizer(s, 9, [1]))
    code = [0 | 16 << 32 | 2 << 40 | 0 << 52, 9 << 3 | 0, 1 << 3 | 3,
            1 | 0 << 32 | 2 << 40 | 1 << 52, 2 << 3 | 0, 1 << 3 | 0, 3,
            2 | 0 << 32 | 1 << 40 | 1 << 52, 3 << 3 | 0, 4,
            3 | 16 << 32 | 1 << 40 | 0 << 52, 4 << 3 | 0,
            4 | 16 << 32 | 1 << 40 | 0 << 52, 9 << 3 | 0]
    ops = ["optimizer_zero_grad", "matmul", "sum", "backward", "optimizer_step"]
    for _ in range(2):
        s.run(session_pb2.Instruction(tape=session_pb2.Tape(ops=ops, code=words(*code))))
        s.run(s.release(3, 4))
    w = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        (torch.tensor(x0) @ w).sum().backward()
        opt.step()
    np.testing.assert_array_equal(s.value_of(1), w.detach().numpy())
    np.testing.assert_array_equal(s.grad_of(1), w.grad.numpy())


def _optimizer(s, handle: int, params: list[int]) -> session_pb2.Instruction:
    return session_pb2.Instruction(create_optimizer=session_pb2.CreateOptimizer(
        optimizer=handle, params=params, sgd=session_pb2.SgdOptions(lr=0.5)))


def test_instructions_on_the_wire_run_as_their_messages(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, np.array([1.0, 2.0], np.float32), requires_grad=True),
          _optimizer(s, 9, [1]))
    # y = (x * x).sum(); backward(retain_graph=True); backward(); step; zero_grad(False)
    code = [header(0, 2, 1), H(1), H(1), 2, header(1, 1, 1), H(2), 3,
            header(2, 2, 0, INSTRUCTION), H(3), B(True),
            header(2, 1, 0, INSTRUCTION), H(3),
            header(3, 1, 0, INSTRUCTION), H(9)]
    resp = s.run(session_pb2.Instruction(tape=session_pb2.Tape(
        ops=["mul", "sum", "backward", "optimizer_step"], code=words(*code))))
    assert not resp.results[0].tape.tensors and not resp.results[0].tape.values
    np.testing.assert_array_equal(s.grad_of(1), [4.0, 8.0])  # two passes accumulated
    np.testing.assert_array_equal(s.value_of(1), [-1.0, -2.0])  # x - 0.5 * grad
    s.run(session_pb2.Instruction(tape=session_pb2.Tape(
        ops=["optimizer_zero_grad"], code=words(header(0, 2, 0, INSTRUCTION), H(9), B(False)))))
    np.testing.assert_array_equal(s.grad_of(1), [0.0, 0.0])  # zeroed, not set to None


@pytest.mark.parametrize("case, code, status, text", [
    ("unknown optimizer", [header(2, 1, 0, INSTRUCTION), H(77)], grpc.StatusCode.NOT_FOUND,
     "unknown optimizer handle 77"),
    ("unknown tensor", [header(1, 1, 0, INSTRUCTION), H(78)], grpc.StatusCode.NOT_FOUND,
     "78"),
    ("backward twice", [header(1, 1, 0, INSTRUCTION), H(2), header(1, 1, 0, INSTRUCTION), H(2)],
     grpc.StatusCode.FAILED_PRECONDITION, "Trying to backward through the graph a second time"),
])
def test_a_failing_instruction_stops_the_tape_there(gradserve_session, case, code, status,
                                                    text):
    s = gradserve_session
    s.run(s.create(1, np.array(3.0, np.float32), requires_grad=True), _optimizer(s, 9, [1]))
    ops = ["mul", "backward", "optimizer_step", "neg"]
    full = [header(0, 2, 1), H(1), H(1), 2, *code, header(3, 1, 1), H(1), 3]
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(session_pb2.Instruction(tape=session_pb2.Tape(ops=ops, code=words(*full))))
    got, message, meta = gradserve_error(exc_info)
    assert got == status and text in message
    failing = 1 + (case == "backward twice")
    assert meta[FAILED_TAPE_OP_METADATA] == str(failing)
    s.value_of(2)  # the ops before it stay applied
    with pytest.raises(grpc.RpcError):  # and none after it ran
        s.value_of(3)


def test_a_backward_on_the_tape_does_not_suspend_at_a_hook(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, np.array([1.0, 2.0], np.float32), requires_grad=True),
          session_pb2.Instruction(register_hook=session_pb2.RegisterHook(handle=1, hook=5,
                                                                         name="h")))
    code = [header(0, 1, 1), H(1), 2, header(1, 1, 0, INSTRUCTION), H(2)]
    with pytest.raises(grpc.RpcError) as exc_info:
        s.run(session_pb2.Instruction(tape=session_pb2.Tape(ops=["sum", "backward"],
                                                            code=words(*code))))
    status, message, meta = gradserve_error(exc_info)
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    assert "reached a custom Function or hook" in message
    assert meta[FAILED_TAPE_OP_METADATA] == "1"
    # the pass was dropped: the session goes on, and a Backward message suspends as always
    resp = s.run(s.op("sum", [("h", 1)], [3]), s.backward(3))
    assert resp.results[1].HasField("suspended")
