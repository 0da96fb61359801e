"""`gradserve serve --processes N`: N server processes on one port (SO_REUSEPORT), stateless only.

Each test starts the command on a free loopback port and stops it. Which process served a call
is read from the processes' own request counters (process i serves metrics on --metrics-port + i).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gradserve.server import config
from gradserve.v1 import graph_pb2, service_pb2, service_pb2_grpc, session_pb2, tensor_pb2
from tests.reference import torch
from tests.server_process import ServerProcess

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="--processes shares the port with SO_REUSEPORT (Linux)"),
]


def free_port_pair() -> int:
    """A port p with p and p + 1 free on loopback (two processes' metrics)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports")


def requests_served(metrics_port: int) -> float:
    """RunGraph calls a process answered OK, from its own metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "gradserve_requests":
            for sample in family.samples:
                if (sample.name == "gradserve_requests_total"
                        and sample.labels == {"method": "RunGraph", "code": "OK"}):
                    return sample.value
    return 0.0


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def gone(pid: int, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # exited, not yet reaped
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def squared_sum_request(x: np.ndarray) -> service_pb2.RunGraphRequest:
    """y = (x ** 2).sum(), its gradient with respect to x."""
    ref = graph_pb2.NodeOutput
    nodes = [graph_pb2.Node(id="y", op="pow", inputs=[graph_pb2.Value(ref=ref(id="x")),
                                                       graph_pb2.Value(int_scalar=2)]),
             graph_pb2.Node(id="s", op="sum", inputs=[graph_pb2.Value(ref=ref(id="y"))])]
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=nodes,
                        outputs=[graph_pb2.GraphOutput(name="s", ref=ref(id="s"))])
    value = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=list(x.shape),
                              raw=x.astype("<f4").tobytes())
    return service_pb2.RunGraphRequest(graph=g, inputs={"x": value}, wrt=["x"])


@pytest.fixture
def two_processes():
    metrics = free_port_pair()
    server = ServerProcess(["--processes", "2", "--workers", "4", "--metrics-port", str(metrics),
                            "--grace-period", "2"])
    with server:
        yield server, metrics


def test_processes_setting():
    assert config.from_argv([]).processes == 1
    assert config.from_argv(["--processes", "3"]).processes == 3
    assert config.from_argv([], environ={"GRADSERVE_PROCESSES": "2"}).processes == 2
    with pytest.raises(ValueError, match="processes must be positive, got 0"):
        config.from_argv(["--processes", "0"])
    # the cores are shared out: never more run slots in all than one server would take
    cores = config.run_slots(config.from_argv([]))
    assert config.run_slots(config.from_argv(["--processes", "2"])) == max(1, cores // 2)
    assert config.run_slots(config.from_argv(["--processes", "2", "--run-slots", "3"])) == 3


def test_stateless_calls_spread_over_processes_and_match_torch(two_processes):
    server, metrics = two_processes
    assert len(children(server.pid)) >= 2  # the two servers (and multiprocessing's tracker)
    x = np.random.default_rng(7).standard_normal((5, 3)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    s = (xt ** 2).sum()
    (grad,) = torch.autograd.grad(s, xt)
    request = squared_sum_request(x)
    calls = 24
    for _ in range(calls):  # a new connection each: the kernel picks a process per connection
        with server.channel() as channel:
            reply = service_pb2_grpc.AutogradServiceStub(channel).RunGraph(request, timeout=30)
        out = np.frombuffer(reply.outputs[0].tensor.raw, "<f4")
        got = np.frombuffer(reply.gradients[0].derivatives[0].tensor.raw, "<f4").reshape(x.shape)
        assert out.tobytes() == s.detach().numpy().reshape(1).tobytes()
        assert got.tobytes() == grad.numpy().tobytes()
    served = [requests_served(metrics), requests_served(metrics + 1)]
    assert sum(served) == calls
    assert min(served) > 0, served  # all 24 on one of two processes: 2 in 2**24


def test_session_methods_are_refused(two_processes):
    server, _ = two_processes
    with server.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=30)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details() == (
            "CreateSession needs a session, and this server runs 2 processes for stateless "
            "calls only (--processes): run a session server with --processes 1, or route calls "
            "carrying x-session-id to one (README, Scale-out)")
        sid = "a" * 32
        meta = (("x-session-id", sid),)
        refused = [
            lambda: stub.ExecuteBatch(session_pb2.BatchRequest(session_id=sid), metadata=meta,
                                      timeout=30),
            lambda: stub.DescribeSession(session_pb2.DescribeSessionRequest(session_id=sid),
                                         metadata=meta, timeout=30),
            lambda: stub.CloseSession(session_pb2.CloseSessionRequest(session_id=sid),
                                      metadata=meta, timeout=30),
        ]
        for call in refused:
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "--processes" in err.value.details()
        request = squared_sum_request(np.ones(2, np.float32))
        request.session_id = sid
        with pytest.raises(grpc.RpcError) as err:
            stub.RunGraph(request, metadata=meta, timeout=30)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details().startswith("RunGraph with a session_id needs a session")


def test_limits_hold_in_each_process(two_processes):
    # the per-call element limit of a single server, answered the same by every process
    server, _ = two_processes
    x = np.ones(8, np.float32)
    request = squared_sum_request(x)
    request.inputs["x"].shape[:] = [1 << 40]
    for _ in range(6):
        with server.channel() as channel:
            with pytest.raises(grpc.RpcError) as err:
                service_pb2_grpc.AutogradServiceStub(channel).RunGraph(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "element limit" in err.value.details()


def test_health_and_sigterm_stop_every_process(two_processes):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server, _ = two_processes
    with server.channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=30)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    kids = children(server.pid)
    assert server.stop() == 0
    assert all(gone(pid) for pid in kids)


def test_a_process_that_dies_stops_the_server(two_processes):
    server, metrics = two_processes
    with server.channel() as channel:  # serving
        service_pb2_grpc.AutogradServiceStub(channel).RunGraph(
            squared_sum_request(np.ones(2, np.float32)), timeout=30)
    kids = children(server.pid)
    servers = [pid for pid in kids if b"spawn_main" in cmdline(pid)]
    assert len(servers) == 2
    os.kill(servers[0], signal.SIGKILL)
    assert server.proc is not None
    assert server.proc.wait(timeout=60) == 1
    assert gone(servers[1])
    assert "exited with status -9: stopping the others" in server.log()


def test_processes_drain_when_the_parent_is_killed(two_processes):
    server, _ = two_processes
    servers = [pid for pid in children(server.pid) if b"spawn_main" in cmdline(pid)]
    assert len(servers) == 2
    server.kill()  # SIGKILL: no signal forwarded
    assert all(gone(pid) for pid in servers)
