"""Small stateless calls tried on the event loop (server/inline.py): which calls run there and
which are handed to a worker, that the answers and the metrics are those of the worker path,
that large ops never run on the loop, and that health checks keep answering under load."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import gradserve.engine as ge
from gradserve.server import codec, inline
from gradserve.server.config import ServerConfig
from gradserve.server.fairness import Admission, RunSlots
from gradserve.v1 import graph_pb2, service_pb2, service_pb2_grpc
from tests.conftest import gradserve_bearer as bearer
from tests.conftest import gradserve_connect, gradserve_test_config
from tests.server_process import ServerProcess

LOOP_THREAD = "gradserve-grpc"  # GradServer's event loop thread


def ref(name, index=0):
    return graph_pb2.Value(ref=graph_pb2.NodeOutput(id=name, index=index))


def request(nodes, inputs, out, wrt=("x",)):
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name=n) for n in inputs], nodes=nodes,
                        outputs=[graph_pb2.GraphOutput(name=out, ref=graph_pb2.NodeOutput(id=out))])
    return service_pb2.RunGraphRequest(
        graph=g, wrt=list(wrt), inputs={n: codec.encode_array(v) for n, v in inputs.items()})


def square(x=3.0):
    """y = x ** 2 of a 0-d float32, with dy/dx (the call bench/service.py times)."""
    node = graph_pb2.Node(id="y", op="pow", inputs=[ref("x"), graph_pb2.Value(int_scalar=2)])
    return request([node], {"x": np.array(x, np.float32)}, "y")


def chain(n):
    """x -> sin(...sin(x)) n times, summed: n + 1 small ops forward, as many backward."""
    nodes, prev = [], "x"
    for i in range(n):
        nodes.append(graph_pb2.Node(id=f"s{i}", op="sin", inputs=[ref(prev)]))
        prev = f"s{i}"
    nodes.append(graph_pb2.Node(id="out", op="sum", inputs=[ref(prev)]))
    return request(nodes, {"x": np.linspace(0, 1, 8, dtype=np.float32)}, "out")


def big():
    """A 0-d input repeated into a (2048, 2048) tensor (4M elements), exp'd and summed: tiny on
    the wire."""
    nodes = [graph_pb2.Node(id="r", op="repeat", inputs=[ref("x")],
                            attrs={"repeats": graph_pb2.AttrValue(ints_value=graph_pb2.IntList(
                                values=[2048, 2048]))}),
             graph_pb2.Node(id="e", op="exp", inputs=[ref("r")]),
             graph_pb2.Node(id="out", op="sum", inputs=[ref("e")])]
    return request(nodes, {"x": np.array(0.0, np.float32)}, "out")


def value(resp, i=0):
    return codec.decode_array(resp.outputs[i].tensor, 1 << 30, "output")


def grad(resp, i=0):
    return codec.decode_array(resp.gradients[i].derivatives[0].tensor, 1 << 30, "grad")


SPIED = ("pow", "sin", "sum", "repeat", "exp", "mul", "cos")


@pytest.fixture
def op_threads(monkeypatch):
    """(op, thread name) of each forward of the ops in SPIED that ran (the numpy work itself:
    an op refused by its declared bound never gets here)."""
    seen = []
    for name in SPIED:
        op = ge.registry.OPS[name]
        forward = op.forward

        def spy(*args, _name=name, _forward=forward, **kwargs):
            seen.append((_name, threading.current_thread().name))
            return _forward(*args, **kwargs)

        monkeypatch.setattr(op, "forward", spy)
    return seen


def requests_counted(server, code="OK"):
    value = server.metrics.registry.get_sample_value(
        "gradserve_requests_total", {"method": "RunGraph", "code": code})
    return int(value or 0)


# --- which calls run on the loop ------------------------------------------------------------------

# A try's budget that a loaded machine cannot exhaust, for the tests whose calls must not run out
# of it. The budget is the smaller of --inline-seconds and --run-quantum (15 ms by default: a try
# holds a run slot without yielding it), so --inline-seconds alone gave 15 ms, and on a loaded
# 2-core machine the loop's thread is descheduled that long: 6 of 3,000 tries of `square()` ran
# past 15 ms (the slowest 16.5 ms, with two busy loops and other test runs beside them), and a
# test saw its call handed on.
GENEROUS = {"inline_seconds": 10.0, "run_quantum": 10.0}


def test_small_call_runs_on_the_loop_and_is_counted_once(gradserve_server_factory, op_threads):
    server, port = gradserve_server_factory(**GENEROUS)
    assert server.inline.seconds == 10.0  # the budget is what the test asks for
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    resp = stub.RunGraph(square(3.0), timeout=10)
    assert value(resp) == np.float32(9.0) and grad(resp) == np.float32(6.0)
    assert op_threads and all(name == LOOP_THREAD for _, name in op_threads)
    assert (server.inline.answered, server.inline.handed_on) == (1, 0)
    assert requests_counted(server) == 1


def test_large_op_never_runs_on_the_loop(gradserve_server_factory, op_threads):
    server, port = gradserve_server_factory(**GENEROUS)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    resp = stub.RunGraph(big(), timeout=30)
    assert value(resp) == np.float32(2048 * 2048)  # exp(0) summed
    assert grad(resp) == np.float32(2048 * 2048)
    # the try stopped before `expand` ran (its declared bound is past MAX_ELEMENTS): every op
    # that ran, ran on a worker
    assert op_threads and all(name != LOOP_THREAD for _, name in op_threads)
    assert (server.inline.answered, server.inline.handed_on) == (0, 1)
    assert requests_counted(server) == 1


def test_call_past_the_budget_reruns_on_a_worker(gradserve_server_factory, op_threads):
    server, port = gradserve_server_factory(**GENEROUS)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    # MAX_NODES nodes, but past MAX_OPS ops and backward steps (the backward's ops count too):
    # started on the loop, then run whole on a worker
    n = inline.MAX_NODES - 1
    req = chain(n)
    x = np.linspace(0, 1, 8, dtype=np.float32)
    resp = stub.RunGraph(req, timeout=30)
    sines = [name for op, name in op_threads if op == "sin"]
    assert LOOP_THREAD in sines  # the try started
    assert len([name for name in sines if name != LOOP_THREAD]) == n  # then the whole call again
    expected = x.copy()
    for _ in range(n):
        expected = np.sin(expected)
    assert value(resp) == pytest.approx(float(expected.sum()), rel=1e-5)
    assert (server.inline.answered, server.inline.handed_on) == (0, 1)
    assert requests_counted(server) == 1


def test_time_budget_hands_the_call_on(gradserve_server_factory):
    server, port = gradserve_server_factory(inline_seconds=1e-9)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    resp = stub.RunGraph(square(2.0), timeout=10)
    assert value(resp) == np.float32(4.0) and grad(resp) == np.float32(4.0)
    assert (server.inline.answered, server.inline.handed_on) == (0, 1)
    assert requests_counted(server) == 1


def test_errors_come_from_the_worker_path_once(gradserve_server_factory):
    server, port = gradserve_server_factory(**GENEROUS)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    node = graph_pb2.Node(id="y", op="add", inputs=[ref("x"), ref("w")])
    req = request([node], {"x": np.ones(3, np.float32), "w": np.ones(4, np.float32)}, "y",
                  wrt=())
    with pytest.raises(grpc.RpcError) as err:
        stub.RunGraph(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must match the size of tensor b (4)" in err.value.details()
    assert server.inline.handed_on == 1
    assert requests_counted(server, "INVALID_ARGUMENT") == 1
    assert requests_counted(server) == 0


def test_tokens_are_checked_before_the_loop_answers(gradserve_server_factory, tmp_path,
                                                     op_threads):
    path = tmp_path / "tokens"
    path.write_text("s3cret-token\n")
    server, port = gradserve_server_factory(**GENEROUS, auth_token_file=str(path))
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    with pytest.raises(grpc.RpcError) as err:
        stub.RunGraph(square(), timeout=10, metadata=bearer("wrong"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert op_threads == []
    resp = stub.RunGraph(square(), timeout=10, metadata=bearer("s3cret-token"))
    assert value(resp) == np.float32(9.0)
    assert all(name == LOOP_THREAD for _, name in op_threads)
    assert (server.inline.answered, server.inline.handed_on) == (1, 1)
    assert requests_counted(server, "UNAUTHENTICATED") == requests_counted(server) == 1


def test_inline_off(gradserve_server_factory, op_threads):
    server, port = gradserve_server_factory(inline_seconds=0.0)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    assert value(stub.RunGraph(square(), timeout=10)) == np.float32(9.0)
    assert server.inline is None
    assert [name for _, name in op_threads if name == LOOP_THREAD] == []


# --- the try's checks, without a transport --------------------------------------------------------

class Context:
    """The part of a grpc.aio servicer context a try reads."""

    def __init__(self, remaining=None, metadata=()):
        self.remaining = remaining
        self.metadata = metadata

    def time_remaining(self):
        return self.remaining

    def invocation_metadata(self):
        return self.metadata


class Servicer:
    """What InlineRunGraph asks of the servicer, recorded."""

    def __init__(self, config=None, slots=2, max_calls=4):
        from gradserve.server.auth import Authenticator

        self.config = config or gradserve_test_config()
        self.auth = Authenticator([])
        self.admission = Admission(max_calls, 4)
        self.slots = RunSlots(slots)
        self.observed = []

    def observe(self, method, code, seconds):
        self.observed.append((method, code))


def attempt(servicer, req, context=None, seconds=10.0):
    runner = inline.InlineRunGraph(servicer, seconds)
    return runner, runner.attempt(req.SerializeToString(), context or Context())


def test_try_answers_with_the_worker_paths_bytes():
    servicer = Servicer()
    runner, reply = attempt(servicer, square(3.0))
    resp = service_pb2.RunGraphResponse.FromString(reply)
    assert value(resp) == np.float32(9.0) and grad(resp) == np.float32(6.0)
    assert servicer.observed == [("RunGraph", grpc.StatusCode.OK)]
    # the slot and the admission are given back
    assert servicer.admission.calls == 0 and servicer.slots.try_acquire()


@pytest.mark.parametrize("what", ["slots busy", "calls at the cap", "deadline passed",
                                  "session call", "too many nodes", "too many values",
                                  "convolution", "request too large", "malformed"])
def test_try_hands_on_without_running(what, monkeypatch):
    servicer = Servicer(slots=1, max_calls=1)
    req, context = square(), Context()
    data = None
    if what == "slots busy":
        assert servicer.slots.try_acquire()
    elif what == "calls at the cap":
        servicer.admission.enter("")
    elif what == "deadline passed":
        context = Context(remaining=0.0)
    elif what == "session call":
        req.session_id = "s" * 32
    elif what == "too many nodes":
        req = chain(inline.MAX_NODES)
    elif what == "too many values":
        node = graph_pb2.Node(id="y", op="stack", inputs=[ref("x")] * inline.MAX_VALUES)
        req = request([node], {"x": np.ones(1, np.float32)}, "y")
    elif what == "convolution":
        node = graph_pb2.Node(id="y", op="convolution", inputs=[ref("x"), ref("w")])
        req = request([node], {"x": np.ones((1, 1, 4), np.float32),
                               "w": np.ones((1, 1, 2), np.float32)}, "y")
    elif what == "request too large":
        req = request([graph_pb2.Node(id="y", op="sum", inputs=[ref("x")])],
                      {"x": np.ones(inline.MAX_REQUEST_BYTES // 4, np.float32)}, "y")
    elif what == "malformed":
        data = b"\xff\xff"
    ran = []
    monkeypatch.setattr(inline, "_run", lambda *args: ran.append(args))
    runner = inline.InlineRunGraph(servicer, 10.0)
    assert runner.attempt(req.SerializeToString() if data is None else data, context) is None
    assert ran == [] and servicer.observed == []
    assert servicer.admission.calls == (1 if what == "calls at the cap" else 0)


@pytest.mark.parametrize("what", ["elements", "bytes", "ops", "error"])
def test_try_gives_up_within_its_bounds(what):
    servicer = Servicer()
    if what == "elements":
        req = big()
    elif what == "bytes":
        # 40 ops of 256 float64 elements (~2.3 KiB each) against a server's 64 KiB per call
        nodes, prev = [], "x"
        for i in range(40):
            nodes.append(graph_pb2.Node(id=f"m{i}", op="mul", inputs=[ref(prev), ref("x")]))
            prev = f"m{i}"
        nodes.append(graph_pb2.Node(id="out", op="sum", inputs=[ref(prev)]))
        servicer.config = gradserve_test_config(max_session_bytes=64 * 1024)
        req = request(nodes, {"x": np.ones(inline.MAX_ELEMENTS, np.float64)}, "out")
    elif what == "ops":
        req = chain(inline.MAX_NODES - 1)
    else:
        req = request([graph_pb2.Node(id="y", op="nosuchop", inputs=[ref("x")])],
                      {"x": np.ones(1, np.float32)}, "y")
    runner, reply = attempt(servicer, req)
    assert reply is None and runner.handed_on == 1
    assert servicer.observed == []  # the worker path observes the call
    assert servicer.admission.calls == 0 and servicer.slots.try_acquire()


def test_try_obeys_the_servers_tighter_limits():
    config = gradserve_test_config(max_tensor_elements=4)
    runner = inline.InlineRunGraph(Servicer(config), 1.0)
    assert runner.config.max_tensor_elements == 4
    assert runner.config.max_call_ops == inline.MAX_OPS
    _, reply = attempt(Servicer(config), request(
        [graph_pb2.Node(id="y", op="sum", inputs=[ref("x")])], {"x": np.ones(8, np.float32)},
        "y"))
    assert reply is None  # the worker path refuses the 8-element input


def test_inline_seconds_setting():
    from gradserve.server import config

    assert ServerConfig().inline_seconds == 0.002
    assert config.from_argv(["--inline-seconds", "0"]).inline_seconds == 0.0
    with pytest.raises(ValueError, match="inline_seconds must be 0"):
        config.from_argv(["--inline-seconds", "-1"])
    # a try holds a run slot without yielding it: never longer than a quantum
    quantum = gradserve_test_config(run_quantum=0.001)
    assert inline.InlineRunGraph(Servicer(quantum), 0.002).seconds == 0.001


# --- the event loop stays responsive -------------------------------------------------------------

def test_health_answers_while_clients_load_the_loop():
    # Eight clients send small calls that run on the loop, and calls that use the whole try
    # (MAX_OPS) before a worker runs them; health checks, answered on the loop, keep answering.
    with ServerProcess() as proc:
        stop = threading.Event()
        counts = {"small": 0, "long": 0}
        errors = []

        def client(kind):
            channel = proc.channel()
            stub = service_pb2_grpc.AutogradServiceStub(channel)
            req = square() if kind == "small" else chain(inline.MAX_NODES - 1)
            try:
                while not stop.is_set():
                    stub.RunGraph(req, timeout=30)
                    counts[kind] += 1
            except grpc.RpcError as exc:  # pragma: no cover - reported by the assert below
                errors.append(exc)
            finally:
                channel.close()

        threads = [threading.Thread(target=client, args=("small" if i % 2 else "long",))
                   for i in range(8)]
        for t in threads:
            t.start()
        try:
            health = health_pb2_grpc.HealthStub(proc.channel())
            deadline = time.monotonic() + 3
            waits = []
            while time.monotonic() < deadline:
                t = time.monotonic()
                resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                waits.append(time.monotonic() - t)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        print(f"{len(waits)} health checks, slowest {max(waits) * 1e3:.1f} ms; calls {counts}")
        assert not errors, errors
        assert waits and counts["small"] > 0 and counts["long"] > 0
