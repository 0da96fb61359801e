"""The session byte budget's estimates for backward passes and optimizer steps.

A backward pass without create_graph is accounted by what it charged to its engine byte budget
and kept (every gradient it leaves, and each new `.grad`'s array and tensor object), an
optimizer step by the state tensors it created; the whole session is measured (a walk of every
graph it holds) only when the estimate could pass the limit. These tests check that the
estimate stays an upper bound of the exact measurement through passes of every kind, that a
session far from its limit is not measured after them, and that one whose `.grad`s would pass
the limit is still refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradserve.server import codec
from gradserve.server.batch import Executor
from gradserve.server.config import ServerConfig
from gradserve.server.errors import LimitExceededError, Located
from gradserve.server.sessions import Session, SessionStore
from gradserve.v1 import graph_pb2, session_pb2, tensor_pb2

pb = session_pb2


def h(handle: int) -> graph_pb2.Value:
    return graph_pb2.Value(handle=handle)


def create(handle: int, data: np.ndarray, requires_grad: bool = True) -> pb.Instruction:
    return pb.Instruction(create_tensor=pb.CreateTensor(
        handle=handle, value=codec.encode_array(data), requires_grad=requires_grad))


def op(name: str, inputs: list[int], out: int) -> pb.Instruction:
    return pb.Instruction(apply_op=pb.ApplyOp(op=name, inputs=[h(i) for i in inputs],
                                              outputs=[out]))


def backward(handle: int, **kw) -> pb.Instruction:
    return pb.Instruction(backward=pb.Backward(tensor=handle, **kw))


def forward(w: int, x: int, base: int) -> list[pb.Instruction]:
    """loss = (w * x + w).sum() * mean(x) for the handles w, x; `base+4` is the loss."""
    return [op("mul", [w, x], base + 2), op("add", [base + 2, w], base + 3),
            op("sum", [base + 3], base + 5), op("mean", [x], base + 6),
            op("mul", [base + 5, base + 6], base + 4)]


@pytest.fixture
def session():
    store = SessionStore(ServerConfig(max_session_bytes=1 << 30))
    return store.create("owner", pb.SessionOptions())


def run(s: Session, *ins: pb.Instruction) -> pb.BatchResponse:
    return Executor(s, lambda: None, 0).run(list(ins))


def count_measures(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = Session.measure

    def measure(self):
        calls.append(1)
        return real(self)
    monkeypatch.setattr(Session, "measure", measure)
    return calls


def test_backward_and_step_are_estimated_not_measured(session, monkeypatch):
    w = np.linspace(-1, 1, 1000, dtype=np.float32)
    run(session, create(1, w), create(2, w * 2))
    opt = pb.Instruction(create_optimizer=pb.CreateOptimizer(
        optimizer=50, params=[1, 2], adam=pb.AdamOptions(lr=0.01)))
    run(session, opt)
    calls = count_measures(monkeypatch)
    for i in range(5):
        # new .grads the first time, accumulated in place after; Adam's state on the first step
        run(session, *forward(1, 2, 10 + 10 * i), backward(14 + 10 * i),
            pb.Instruction(optimizer_step=pb.OptimizerStep(optimizer=50)))
    assert calls == []  # before: a walk of the session after every backward and every step
    exact, _ = Session.measure(session)
    assert session.measured_bytes >= exact  # still an upper bound


@pytest.mark.parametrize("case", ["leaf-grads", "accumulate", "retain", "grad", "inputs",
                                  "retain-graph", "zero-to-none"])
def test_the_estimate_bounds_the_session_after_every_kind_of_pass(session, case):
    x = np.arange(1, 2001, dtype=np.float64) / 1000
    run(session, create(1, x), create(2, x[::-1].copy()), *forward(1, 2, 10))
    passes = {
        "leaf-grads": [backward(14)],
        "accumulate": [backward(14, retain_graph=True), backward(14)],
        "retain": [pb.Instruction(retain_grad=pb.RetainGrad(handle=13)),
                   pb.Instruction(retain_grad=pb.RetainGrad(handle=15)),
                   backward(14, retain_graph=True), backward(14)],
        "grad": [pb.Instruction(grad=pb.Grad(outputs=[14], inputs=[1, 2, 13], results=[7, 8, 9]))],
        "inputs": [backward(14, inputs=[1, 13])],
        "retain-graph": [backward(14, retain_graph=True)] * 3,
        "zero-to-none": [backward(14, retain_graph=True),
                         pb.Instruction(set_grad=pb.SetGrad(handle=1, none=tensor_pb2.NoneValue())),
                         backward(14)],
    }[case]
    for ins in passes:
        run(session, ins)
        exact, _ = Session.measure(session)
        assert session.measured_bytes >= exact, (case, session.measured_bytes, exact)


def test_optimizer_state_is_in_the_estimate(session):
    for algorithm in (pb.CreateOptimizer(adam=pb.AdamOptions(amsgrad=True)),
                      pb.CreateOptimizer(sgd=pb.SgdOptions(lr=0.1, momentum=0.9)),
                      pb.CreateOptimizer(rmsprop=pb.RmspropOptions(centered=True, momentum=0.5)),
                      pb.CreateOptimizer(adagrad=pb.AdagradOptions())):
        store = SessionStore(ServerConfig(max_session_bytes=1 << 30))
        s = store.create("owner", pb.SessionOptions())
        w = np.linspace(-1, 1, 5000, dtype=np.float32)
        run(s, create(1, w), create(2, w + 1), *forward(1, 2, 10), backward(14))
        algorithm.optimizer, algorithm.params[:] = 50, [1, 2]
        run(s, pb.Instruction(create_optimizer=algorithm))
        Executor(s, lambda: None, 0).budget.measure()
        before = s.measured_bytes
        for _ in range(2):
            run(s, pb.Instruction(optimizer_step=pb.OptimizerStep(optimizer=50)))
        exact, _ = Session.measure(s)
        assert s.measured_bytes >= exact > before or algorithm.HasField("adagrad"), algorithm
        assert s.measured_bytes >= exact


def test_grads_past_the_limit_are_refused():
    # four leaves and their sums fit; their new .grads (as large as the leaves) do not
    m = 50_000
    store = SessionStore(ServerConfig(max_session_bytes=43 * m + 65536))
    s = store.create("owner", pb.SessionOptions())
    x = np.ones(m, np.float64)
    run(s, *[create(k, x) for k in (1, 2, 3, 4)], *[op("sum", [k], 10 + k) for k in (1, 2, 3, 4)],
        op("add", [11, 12], 21), op("add", [21, 13], 22), op("add", [22, 14], 23))
    assert Session.measure(s)[0] <= s.limits.max_bytes
    with pytest.raises(Located) as info:
        run(s, backward(23))
    assert isinstance(info.value.cause, LimitExceededError), info.value
    assert "more than its limit" in str(info.value.cause), info.value
