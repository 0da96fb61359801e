"""Small requests that cost far more than they tell (red team, round 7).

Each was inside every declared bound before its fix:

- `mkldnn_rnn_layer` (one float32 LSTM layer as oneDNN computes it, `engine/lstm_onednn.py`)
  runs a Python step per time step (~300-600 us of activations and FMAs whatever the sizes)
  and its exact GEMMs a numpy step per term of k, with no interrupt check: an 80-byte session
  batch of 20,000 steps of one unit (an expanded input) ran 13 s of CPU with a 2 s deadline
  (2**23 steps, within every limit: ~80 min in one op), a projection of 2**22 features 23 s,
  a backward pass over a batch of 2**20 rows 9.8 s. Within the event loop's element limit (256)
  a layer is still 51 steps (~30 ms): one client sending such session batches held health
  checks 55 ms (p50); the op is not run on the loop any more (`inline.LONG_OPS`);
- a list attribute (`AttrValue.ints_value`) of any length: one byte of request per int, but the
  decoding and the ops' checks and messages read it at ~0.5-1 us an int, in one op: a 32 MiB
  batch of one `sum_to_size` with 2**25 dims (or a `_pack_padded_sequence` with 2**25 batch
  sizes) ran 13-16 s of CPU past its deadline and peaked at 1.2 GB. A list holds at most
  `codec.MAX_ATTR_INTS` (2**18, what a tape's attributes hold in all) now;
- instructions measured the whole session after each (a walk of every handle and graph,
  ~0.2 s for 196,000 handles here) when their growth was not estimated: 200 `remove_hook`s of
  an unknown id (a 1.6 KB batch) took 40 s of CPU, and linking a chain of 20,000 custom
  Functions (`ApplyFunction`) 140 s, quadratic. They are estimated now.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import gemm, limits, lstm_onednn
from gradserve.server import codec, inline, inline_batch
from gradserve.server.batch import Executor
from gradserve.server.config import ServerConfig
from gradserve.server.sessions import Session, SessionStore
from gradserve.v1 import graph_pb2, service_pb2, service_pb2_grpc, session_pb2
from tests.conftest import gradserve_attr, gradserve_open_session
from tests.server_process import ServerProcess
from tests.test_hardening_bounds import _graph
from tests.test_hardening_round4 import _settled_cpu
from tests.test_hardening_streams import serves
from tests.test_server_inline_session import create


def _checks(fn: Callable[[], Any]) -> int:
    """How many times `fn()` calls the interrupt check."""
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1

    with limits.interrupt(check):
        fn()
    return calls


def _const(a: Any) -> graph_pb2.Value:
    return graph_pb2.Value(constant=codec.encode_array(np.asarray(a)))


def _op(name: str, inputs: list, outputs: list[int], **attrs: Any) -> session_pb2.Instruction:
    return session_pb2.Instruction(apply_op=session_pb2.ApplyOp(
        op=name, inputs=inputs, attrs={k: gradserve_attr(v) for k, v in attrs.items()},
        outputs=outputs))


# --- mkldnn_rnn_layer: the step loops and the GEMM chains are checked ---------------------------

def _lstm(seq: int, batch: int, features: int, grad: bool = False) -> list[ge.Tensor]:
    """A one-unit LSTM layer of an expanded (seq, batch, features) input of zeros."""
    x = ge.tensor(np.float32(0.25)).expand(seq, batch, features)
    w_ih = ge.tensor(np.float32(0.5)).expand(4, features).contiguous().requires_grad_(grad)
    small = [ge.tensor(np.full(s, 0.5, np.float32)) for s in [(4, 1), (4,), (4,)]]
    state = [ge.zeros(batch, 1), ge.zeros(batch, 1)]
    return ge.apply("mkldnn_rnn_layer", [x, w_ih, *small, *state],
                    {"reverse": False, "hidden_size": 1})


@pytest.mark.parametrize("what, run, least", [
    ("steps", lambda: _lstm(512, 1, 1), 8 * 512),
    ("features", lambda: _lstm(1, 1, 4096), 4096 // 16),
    ("backward over the batch", lambda: _lstm(1, 2048, 1, grad=True)[0].sum().backward(),
     2 * 2048 // 16),
])
def test_an_lstm_layers_python_loops_run_the_interrupt_check(what: str, run: Callable, least: int):
    """The op's declared work counted a step of one unit as 8 multiply-adds (the checks it made
    before running: none past the first), and nothing checked inside it."""
    assert _checks(run) >= least


def test_an_lstm_layers_checks_change_no_bits():
    """The chains continued between checks are the same FMA chains (torch's values are
    compared in tests/test_engine_lstm_onednn.py)."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 1000)).astype(np.float32)
    b = rng.standard_normal((1000, 20)).astype(np.float32)
    whole = None
    for lo, hi in lstm_onednn._k_blocks(1000):
        part = gemm._chain(a[:, lo:hi].astype(np.float64), b[lo:hi].astype(np.float64),
                              None, False)
        whole = part if whole is None else whole + part
    assert np.array_equal(lstm_onednn._gemm(a, b), whole)


def test_a_long_lstm_layer_ends_at_its_deadline():
    """An 80-byte batch: 20,000 steps of one unit, 13 s of CPU with a 2 s deadline before."""
    zeros = [_const(np.zeros(s, np.float32)) for s in [(4, 1), (4, 1), (4,), (4,), (1, 1), (1, 1)]]
    x = _op("expand", [_const(np.float32(0))], [1], size=[20000, 1, 1])
    y = _op("mkldnn_rnn_layer", [graph_pb2.Value(handle=1), *zeros], [2, 3, 4, 5],
            reverse=False, hidden_size=1)
    with ServerProcess(["--workers", "4"]) as server, server.channel() as channel:
        s = gradserve_open_session(service_pb2_grpc.AutogradServiceStub(channel))
        cpu = server.cpu_seconds()
        with pytest.raises(grpc.RpcError) as info:
            s.run(x, y, timeout=1)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert _settled_cpu(server) - cpu < 4
        serves(server)


def test_an_lstm_layer_is_not_run_on_the_event_loop():
    """51 steps of one unit are 255 elements, within the loop's limit, but ~30 ms of CPU: a
    session batch pauses before the op, a RunGraph is not tried on the loop, and a backward
    pass through its node is not run there."""
    zeros = [_const(np.zeros(s, np.float32)) for s in [(4, 1), (4, 1), (4,), (4,), (1, 1), (1, 1)]]
    m = _op("mkldnn_rnn_layer", [_const(np.zeros((51, 1, 1), np.float32)), *zeros], [1, 2, 3, 4],
            reverse=False, hidden_size=1).apply_op
    executor = types.SimpleNamespace(s=types.SimpleNamespace(tensors={}), limit=2 ** 26)
    with limits.allocation_limit(None):  # (restores the limit the gate sets for an op)
        gate = inline_batch.Gate(float("inf"))
        assert gate.pause(executor, "apply_op", m)  # type: ignore[arg-type]
    assert gate.pause_op("mkldnn_rnn_layer", [])
    req = service_pb2.RunGraphRequest()
    req.graph.nodes.add(id="y", op=m.op, inputs=m.inputs, attrs=m.attrs)
    assert inline._small(req.graph.nodes, 0) is False


# --- list attributes ------------------------------------------------------------------------------

def test_a_list_attribute_holds_at_most_max_attr_ints():
    ok = gradserve_attr([1] * codec.MAX_ATTR_INTS)
    assert len(codec.decode_attr(ok)) == codec.MAX_ATTR_INTS
    with pytest.raises(Exception) as info:
        codec.decode_attr(gradserve_attr([1] * (codec.MAX_ATTR_INTS + 1)), "x() attribute 'size'")
    assert type(info.value).__name__ == "InvalidRequestError"
    assert str(info.value) == (f"x() attribute 'size': a list of {codec.MAX_ATTR_INTS + 1} ints, "
                               f"more than the limit of {codec.MAX_ATTR_INTS}")


@pytest.mark.parametrize("stateless", [False, True])
def test_a_long_list_attribute_is_refused_before_it_is_read(gradserve_stub, stateless: bool):
    """Each int cost ~0.5-1 us of one op (2**25 of them: 14 s of CPU past the deadline, the
    op's own refusal then quoting every int); refused as the request is decoded now."""
    size = [1] * (2 ** 20)
    with pytest.raises(grpc.RpcError) as info:
        if stateless:
            gradserve_stub.RunGraph(_graph(("y", "sum_to_size", [np.float32(1)], {"size": size})),
                                    timeout=60)
        else:
            s = gradserve_open_session(gradserve_stub)
            try:
                s.run(_op("sum_to_size", [_const(np.float32(1))], [1], size=size), timeout=60)
            finally:
                s.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"a list of {2 ** 20} ints, more than the limit of" in info.value.details()


# --- instructions that measured the whole session ------------------------------------------------

def _function_chain(n: int) -> list[session_pb2.Instruction]:
    """A leaf at handle 1 and `n` custom Functions chained after it, each saving its input and
    its output; then hooks registered and removed, and aborts of no suspended pass."""
    ins = [create(1, np.full(3, 0.5, np.float32), True)]
    prev, nxt = 1, 2
    for k in range(n):
        out, res = nxt, nxt + 1
        nxt += 2
        ins += [create(out, np.full(3, 0.25, np.float32)),
                session_pb2.Instruction(apply_function=session_pb2.ApplyFunction(
                    name="F", node=k + 1, args=[graph_pb2.Value(handle=prev)], outputs=[out],
                    results=[res], saved=[prev, out])),
                session_pb2.Instruction(release=session_pb2.Release(
                    handles=[out] + ([prev] if prev != 1 else [])))]
        prev = res
    ins += [session_pb2.Instruction(register_hook=session_pb2.RegisterHook(handle=prev, hook=1)),
            session_pb2.Instruction(remove_hook=session_pb2.RemoveHook(hook=1))]
    ins += [session_pb2.Instruction(remove_hook=session_pb2.RemoveHook(hook=9))] * n
    ins += [session_pb2.Instruction(abort_backward=session_pb2.AbortBackward())] * n
    return ins


def test_custom_functions_and_hooks_are_estimated_not_measured(monkeypatch):
    """Each such instruction walked the whole session (`Session.measure`): 200 `remove_hook`s
    in a session of 196,000 handles took 40 s of CPU. Now none is measured, and the estimate
    stays an upper bound of the exact figure."""
    measures = 0
    exact = Session.measure

    def counted(self: Session) -> tuple[int, int]:
        nonlocal measures
        measures += 1
        return exact(self)

    monkeypatch.setattr(Session, "measure", counted)
    s = SessionStore(ServerConfig()).create("owner", session_pb2.SessionOptions())
    Executor(s, lambda: None, 0).run(_function_chain(300))
    assert measures == 0
    assert s.measured_bytes >= exact(s)[0] > 300 * ge.limits.NODE_BYTES
