"""Session lifecycle, limits, request-id replay, describe, fetch, ListOps, concurrency, metrics."""

import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine.limits import NODE_BYTES, TENSOR_BYTES
from gradserve.server.config import ServerConfig
from gradserve.server.sessions import SessionStore
from gradserve.v1 import catalogue_pb2, service_pb2_grpc, session_pb2
from tests.conftest import (
    gradserve_connect,
    gradserve_error,
    gradserve_open_session,
    gradserve_request_id,
)
from tests.reference import torch


def h(n):
    return ("h", n)


def stub_for(port):
    return service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))


def test_list_ops_comes_from_the_registry(gradserve_stub):
    resp = gradserve_stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10)
    assert resp.opset_version == ge.OPSET_VERSION
    assert [op.name for op in resp.ops] == sorted(ge.registry.OPS)
    assert len(resp.dtypes) == len(ge.dtypes.DTYPES)
    mul = next(op for op in resp.ops if op.name == "mul")
    assert list(mul.inputs) == list(ge.registry.OPS["mul"].inputs)
    assert mul.backward_name == "MulBackward0" and mul.differentiable and mul.n_outputs == 1
    summ = next(op for op in resp.ops if op.name == "sum")
    dim = next(a for a in summ.attrs if a.name == "dim")
    assert dim.kind == catalogue_pb2.ATTR_KIND_INT_OR_INTS and dim.nullable
    assert "add_" in resp.inplace_ops


def test_create_describe_close(gradserve_stub):
    s = gradserve_open_session(gradserve_stub, idle_ttl_seconds=60,
                               limits=session_pb2.SessionLimits(max_bytes=10**6))
    info = s.describe()
    assert info.session_id == s.id and info.tensor_count == 0 and info.bytes_held == 0
    assert info.idle_ttl_seconds == 60 and info.limits.max_bytes == 10**6
    assert info.limits.max_instructions == ServerConfig().max_instructions  # 0 = default
    s.run(s.create(1, np.ones(100, np.float32), requires_grad=True),
          s.op("sin", [h(1)], [2]))
    info = s.describe()
    assert info.tensor_count == 2
    assert info.saved_bytes == 400  # sin saved its input
    # data (x, sin(x); the saved x once) + 2 tensor objects + 2 nodes (SinBackward0 and x's
    # AccumulateGrad)
    assert info.bytes_held == 400 + 400 + 2 * TENSOR_BYTES + 2 * NODE_BYTES
    s.run(s.op("sum", [h(2)], [3]), s.backward(3))
    info = s.describe()
    assert info.saved_bytes == 0  # freed by backward
    s.close()
    with pytest.raises(grpc.RpcError) as err:
        s.describe()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_cannot_raise_limits(gradserve_stub):
    s = gradserve_open_session(gradserve_stub, idle_ttl_seconds=10**9,
                               limits=session_pb2.SessionLimits(max_bytes=2**62))
    info = s.describe()
    assert info.limits.max_bytes == ServerConfig().max_session_bytes
    assert info.idle_ttl_seconds == ServerConfig().max_session_ttl
    s.close()


def test_idle_sessions_expire(gradserve_server_factory):
    server, port = gradserve_server_factory()
    now = [1000.0]
    server.store.clock = lambda: now[0]
    stub = stub_for(port)
    s = gradserve_open_session(stub, idle_ttl_seconds=30)
    keep = gradserve_open_session(stub, idle_ttl_seconds=100)
    now[0] += 31
    assert server.store.reap() == 1
    with pytest.raises(grpc.RpcError) as err:
        s.run(s.create(1, 1.0))
    code, message, _ = gradserve_error(err)
    assert code == grpc.StatusCode.NOT_FOUND and "expired" in message
    keep.describe()


def test_reaper_skips_busy_sessions():
    now = [0.0]
    store = SessionStore(ServerConfig(), clock=lambda: now[0])
    session = store.create("", session_pb2.SessionOptions(idle_ttl_seconds=1))
    now[0] = 5
    with session.lock:
        assert store.reap() == 0
    assert store.reap() == 1 and len(store) == 0


def test_use_of_a_session_closed_while_waiting_for_it():
    # SessionStore.use: a call that waited for the lock of a session closed meanwhile is told so
    # and leaves the lock free; a call that used it leaves it free and touched.
    from gradserve.server.errors import NotFoundError

    now = [0.0]
    store = SessionStore(ServerConfig(), clock=lambda: now[0])
    session = store.create("", session_pb2.SessionOptions())
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            with store.use(session.id, ""):
                outcome.append(None)
        except NotFoundError as exc:
            outcome.append(exc)

    with session.lock:
        t = threading.Thread(target=call)
        t.start()
        for _ in range(5000):  # until the call waits for the lock (counted as a waiter)
            if session.waiters:
                break
            time.sleep(0.001)
        assert session.waiters == 1
        session.closed = True
    t.join()
    assert isinstance(outcome[0], NotFoundError)
    assert str(outcome[0]) == (f"session {session.id!r} not found (it was closed while this call "
                               "waited)")
    assert session.lock.acquire(blocking=False)
    session.lock.release()
    other = store.create("", session_pb2.SessionOptions())
    now[0] = 7
    with store.use(other.id, "") as used:
        assert used is other and other.lock.locked()
        now[0] = 9
    assert not other.lock.locked() and other.last_used == 9


def test_max_sessions(gradserve_server_factory):
    _, port = gradserve_server_factory(max_sessions=2)
    stub = stub_for(port)
    sessions = [gradserve_open_session(stub) for _ in range(2)]
    with pytest.raises(grpc.RpcError) as err:
        gradserve_open_session(stub)
    code, message, _ = gradserve_error(err)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "maximum of 2 sessions" in message
    sessions[0].close()
    gradserve_open_session(stub)  # room again


def test_session_byte_budget(gradserve_stub):
    s = gradserve_open_session(gradserve_stub, limits=session_pb2.SessionLimits(max_bytes=14_000))
    s.run(s.create(1, np.ones(1000, np.float32), requires_grad=True))  # 4000 bytes
    with pytest.raises(grpc.RpcError) as err:
        # Data counts once per array (exp saves its result y, which handle 2 holds too):
        # exp: x 4000 + y 4000, 2 tensor objects, 2 nodes (AccumulateGrad, ExpBackward0) = 9920;
        # y * y's result (4000 + a tensor object) is refused before it is made: it does not
        # fit the 4080 bytes left.
        s.run(s.op("exp", [h(1)], [2]), s.op("mul", [h(2), h(2)], [3]))
    code, message, meta = gradserve_error(err)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "the session has 4080 of its 14000 bytes left" in message
    assert meta["gradserve-failed-instruction"] == "1"
    info = s.describe()
    assert info.tensor_count == 2 and info.bytes_held <= 14_000  # the failing op bound nothing
    s.close()


def test_instruction_without_kind_fails_in_its_place(gradserve_stub):
    # A batch reads each instruction's kind once (while bounding its reply); one without a kind
    # still fails where it stands, after the instructions before it ran, binding nothing.
    s = gradserve_open_session(gradserve_stub)
    with pytest.raises(grpc.RpcError) as err:
        s.run(s.create(1, np.ones(2, np.float32)), session_pb2.Instruction(),
              s.create(2, np.ones(2, np.float32)))
    code, message, meta = gradserve_error(err)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "instruction has no kind set"
    assert meta["gradserve-failed-instruction"] == "1"
    assert s.describe().tensor_count == 1
    s.close()


def test_tensor_element_limit_per_session(gradserve_stub):
    s = gradserve_open_session(gradserve_stub,
                               limits=session_pb2.SessionLimits(max_tensor_elements=10))
    with pytest.raises(grpc.RpcError) as err:
        s.run(s.create(1, np.ones(11, np.float32)))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    s.run(s.create(1, np.ones(10, np.float32)), s.create(2, np.ones((10, 1), np.float32)))
    with pytest.raises(grpc.RpcError) as err:  # a computed tensor is limited too
        s.run(s.op("mul", [h(1), h(2)], [3]))
    code, message, _ = gradserve_error(err)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "100 elements" in message
    s.close()


def test_instruction_and_handle_limits(gradserve_stub):
    s = gradserve_open_session(gradserve_stub, limits=session_pb2.SessionLimits(
        max_instructions=3, max_handles=2))
    with pytest.raises(grpc.RpcError) as err:
        s.run(*[s.create(i, 1.0) for i in range(1, 5)])
    code, message, _ = gradserve_error(err)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "4 instructions" in message
    with pytest.raises(grpc.RpcError) as err:
        s.run(*[s.create(i, 1.0) for i in range(1, 4)])
    code, message, meta = gradserve_error(err)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "maximum of 2 handles" in message
    assert meta["gradserve-failed-instruction"] == "2"
    s.close()


def test_message_size_limit(gradserve_server_factory):
    _, port = gradserve_server_factory(max_message_bytes=1 << 20)
    s = gradserve_open_session(stub_for(port))
    s.run(s.create(1, np.ones(1000, np.float32)))
    with pytest.raises(grpc.RpcError) as err:
        s.run(s.create(2, np.ones(300_000, np.float32)))  # 1.2 MB
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_retried_batch_is_not_applied_twice(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, 2.0, requires_grad=True))
    rid = gradserve_request_id()
    batch = [s.op("pow", [h(1), 2], [2]), s.backward(2), s.fetch(1, value=False, grad=True)]
    first = s.run(*batch, request_id=rid)
    again = s.run(*batch, request_id=rid)
    assert not first.replayed and again.replayed
    assert list(again.results) == list(first.results)
    assert float(s.grad_of(1)) == 4.0  # one backward, not two
    # a failed batch replays its failure rather than running again
    rid = gradserve_request_id()
    bad = [s.create(10, 1.0), s.op("nope", [h(10)], [11])]
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as err:
            s.run(*bad, request_id=rid)
        code, message, meta = gradserve_error(err)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown op 'nope'" in message
        assert meta["gradserve-failed-instruction"] == "1"


def test_autograd_graph_shape(gradserve_session):
    s = gradserve_session
    resp = s.run(s.create(1, 2.0, requires_grad=True), s.create(2, 3.0, requires_grad=True),
                 s.op("mul", [h(1), h(2)], [3]), s.op("sin", [h(3)], [4]),
                 s.fetch(4, graph=True))
    f = resp.results[4].fetch
    assert (f.info.grad_fn, f.info.is_leaf, f.info.requires_grad) == ("SinBackward0", False, True)
    x = torch.tensor(2.0, requires_grad=True)
    y = torch.tensor(3.0, requires_grad=True)
    z = torch.sin(x * y)
    names = [n.name for n in f.graph.nodes]
    assert names[0] == z.grad_fn.name()
    assert names[1] == z.grad_fn.next_functions[0][0].name()
    leaves = {n.leaf_handle for n in f.graph.nodes if n.HasField("leaf_handle")}
    assert leaves == {1, 2}
    assert {(e.source, e.target) for e in f.graph.edges} == {(0, 1), (1, 2), (1, 3)}


def test_set_grad_and_retain_grad(gradserve_session):
    s = gradserve_session
    pb = s.pb
    s.run(s.create(1, [1.0, 2.0], requires_grad=True), s.create(2, [5.0, 5.0]),
          pb.Instruction(set_grad=pb.SetGrad(handle=1, grad_handle=2)))
    assert s.grad_of(1).tolist() == [5.0, 5.0]
    s.run(pb.Instruction(set_grad=pb.SetGrad(handle=1, none={})))
    assert s.grad_of(1) is None
    s.run(s.op("mul", [h(1), 3.0], [3]), pb.Instruction(retain_grad=pb.RetainGrad(handle=3)),
          s.op("sum", [h(3)], [4]), s.backward(4))
    assert s.grad_of(3).tolist() == [1.0, 1.0]
    assert s.grad_of(1).tolist() == [3.0, 3.0]


def test_autograd_grad_instruction_create_graph(gradserve_session):
    s = gradserve_session
    pb = s.pb
    x = torch.tensor(1.5, requires_grad=True)
    (g,) = torch.autograd.grad(x**3, x, create_graph=True)
    (g2,) = torch.autograd.grad(g, x)
    s.run(s.create(1, 1.5, requires_grad=True), s.op("pow", [h(1), 3], [2]),
          pb.Instruction(grad=pb.Grad(outputs=[2], inputs=[1], create_graph=True, results=[3])),
          pb.Instruction(grad=pb.Grad(outputs=[3], inputs=[1], results=[4])))
    assert float(s.value_of(3)) == pytest.approx(g.item())
    assert float(s.value_of(4)) == pytest.approx(g2.item())
    assert s.grad_of(1) is None  # autograd.grad does not touch .grad


def test_backward_create_graph_warning_does_not_break_the_call(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, 2.0, requires_grad=True), s.op("pow", [h(1), 3], [2]),
          s.backward(2, create_graph=True))
    assert float(s.grad_of(1)) == 12.0


@pytest.mark.skipif(not hasattr(ge, "optim"), reason="the engine has no optimizers yet")
def test_sgd_matches_torch(gradserve_session):
    s = gradserve_session
    pb = s.pb
    w_t = torch.tensor([1.0, -2.0], requires_grad=True)
    opt_t = torch.optim.SGD([w_t], lr=0.1, momentum=0.9)
    s.run(s.create(1, [1.0, -2.0], requires_grad=True),
          pb.Instruction(create_optimizer=pb.CreateOptimizer(
              optimizer=100, params=[1], sgd=pb.SgdOptions(lr=0.1, momentum=0.9))))
    for step in range(3):
        opt_t.zero_grad()
        (w_t**2).sum().backward()
        opt_t.step()
        s.run(pb.Instruction(optimizer_zero_grad=pb.OptimizerZeroGrad(optimizer=100)),
              s.op("pow", [h(1), 2], [10 + 2 * step]), s.op("sum", [h(10 + 2 * step)],
                                                             [11 + 2 * step]),
              s.backward(11 + 2 * step), pb.Instruction(optimizer_step=pb.OptimizerStep(
                  optimizer=100)))
    np.testing.assert_allclose(s.value_of(1), w_t.detach().numpy(), rtol=1e-6)


def test_many_sessions_from_many_threads(gradserve_stub):
    errors, results = [], {}
    before = None

    def worker(k):
        try:
            s = gradserve_open_session(gradserve_stub)
            for i in range(10):
                s.run(s.create(1 + 3 * i, float(k), requires_grad=True),
                      s.op("pow", [h(1 + 3 * i), 2], [2 + 3 * i]), s.backward(2 + 3 * i))
                results[(k, i)] = float(s.grad_of(1 + 3 * i))
            s.close()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(v == 2.0 * k for (k, _), v in results.items()) and len(results) == 160
    del before


def test_one_session_serializes_concurrent_batches(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, 1.0, requires_grad=True))
    errors = []

    def worker(k):
        try:
            for i in range(5):
                n = 1000 + 10 * k + i
                s.run(s.op("mul", [h(1), 1.0], [n]), s.backward(n), s.release(n))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert float(s.grad_of(1)) == 40.0  # every backward accumulated exactly once


def test_metrics_endpoint(gradserve_server_factory):
    server, port = gradserve_server_factory(metrics_port=0)
    s = gradserve_open_session(stub_for(port))
    s.run(s.create(1, np.ones(10, np.float32)))
    with pytest.raises(grpc.RpcError):
        s.run(s.fetch(99))
    body = urllib.request.urlopen(
        f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    assert 'gradserve_requests_total{code="OK",method="ExecuteBatch"} 1.0' in body
    assert 'gradserve_requests_total{code="NOT_FOUND",method="ExecuteBatch"} 1.0' in body
    assert "gradserve_request_seconds_bucket" in body
    assert "gradserve_live_sessions 1.0" in body
    assert f"gradserve_session_bytes {40.0 + TENSOR_BYTES}" in body  # data + tensor object
