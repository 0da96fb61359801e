"""Bounded by construction on the event loop: the methods it runs itself (health, reflection)
take small requests only, and health's Watch works and holds little.

Health checks and server reflection are grpc.aio coroutines: their requests are parsed, and
their replies built, on the event loop that answers every health check. Their requests are a
name or two, yet any message up to `--max-message-bytes` used to reach them: a Watch (which
never ends) kept its request, a 60 MiB service name, for as long as the client liked, on a method
exempt from memory-pressure refusal, and reflection echoes each request in its reply. Such a
request is now refused with RESOURCE_EXHAUSTED (`wire_guard.LOOP_REQUEST_BYTES`, 64 KiB). (Before
that, Watch itself failed with UNKNOWN on every call: it writes its replies with `context.write`,
which the registrar's wrapper did not support.)
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gradserve.engine.limits import MAX_RESULTS
from gradserve.engine.ops_linalg import MAX_OPERANDS
from gradserve.server import codec
from gradserve.server.wire_guard import LOOP_REQUEST_BYTES
from gradserve.v1 import graph_pb2, service_pb2, service_pb2_grpc
from tests.server_process import MiB, ServerProcess
from tests.test_hardening_streams import serves


def test_health_watch_answers_and_follows_the_server():
    with ServerProcess(["--workers", "4"]) as server, server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert next(watch).status == serving
        named = stub.Watch(health_pb2.HealthCheckRequest(service="gradserve.v1.AutogradService"),
                           timeout=10)
        assert next(named).status == serving
        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"),
                             timeout=10)
        assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        for call in (watch, named, unknown):
            call.cancel()
        serves(server)


def test_large_requests_to_event_loop_methods_are_refused_and_not_kept():
    """20 Watches of an 8 MiB service name (each kept ~24 MiB while the Watch lasted: 480 MiB),
    a Check and a reflection request as large: each RESOURCE_EXHAUSTED, the server grows by
    less than what they sent and still serves."""
    with ServerProcess(["--workers", "4"]) as server, server.channel() as channel:
        serves(server)
        before = server.rss()
        stub = health_pb2_grpc.HealthStub(channel)
        name = "x" * (8 * MiB)
        watches = []
        for i in range(20):  # one after the other: what arrives at once is not the question
            watches.append(stub.Watch(health_pb2.HealthCheckRequest(service=f"{name}{i}"),
                                      timeout=30))
            with pytest.raises(grpc.RpcError) as info:
                next(watches[-1])
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"at most {LOOP_REQUEST_BYTES} bytes" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)]),
            timeout=30)
        with pytest.raises(grpc.RpcError) as info:
            next(reflect)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert server.rss() - before < 200 * MiB  # kept by the 20 Watches: 480 MiB
        # a request at the bound still answers
        just = "y" * (LOOP_REQUEST_BYTES - 16)
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service=just), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        listed = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        assert any(s.name == "grpc.health.v1.Health"
                   for s in next(listed).list_services_response.service)
        serves(server)


def _einsum_request(operands: int, wrt: bool) -> service_pb2.RunGraphRequest:
    """einsum of `operands` references to one 1-element input, all one subscript: "a,a,...->"
    (numpy's path search costs ~n^3 for it)."""
    x = graph_pb2.Value(ref=graph_pb2.NodeOutput(id="x"))
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=[graph_pb2.Node(
        id="y", op="einsum", inputs=[x] * operands,
        attrs={"equation": graph_pb2.AttrValue(string_value=",".join(["a"] * operands) + "->")})],
        outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y"))])
    return service_pb2.RunGraphRequest(graph=g, wrt=["x"] if wrt else [], inputs={
        "x": codec.encode_array(np.ones(1, np.float32))})


def test_an_einsum_of_many_operands_is_bounded():
    """A 1.2 KB einsum of 127 operands took 2-3.6 s in one op, on the event loop (small
    stateless calls are tried there), so health did not answer meanwhile: now refused before it
    runs (more than `MAX_OPERANDS`); and the path search of the operands allowed counts as the
    ops it costs, so a differentiated 32-operand einsum is refused by --max-call-ops."""
    with ServerProcess(["--workers", "4"]) as server, server.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(_einsum_request(127, wrt=False), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"more than this server's {MAX_OPERANDS}" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(_einsum_request(MAX_OPERANDS, wrt=True), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-call-ops" in info.value.details()
        reply = stub.RunGraph(_einsum_request(MAX_OPERANDS, wrt=False), timeout=30)
        assert codec.decode_array(reply.outputs[0].tensor, 0).item() == 1.0
        # a few operands differentiate as before
        reply = stub.RunGraph(_einsum_request(4, wrt=True), timeout=30)
        assert codec.decode_array(reply.gradients[0].derivatives[0].tensor, 1).item() == 4.0
        start = time.monotonic()
        serves(server)
        assert time.monotonic() - start < 5


def _unbind_request(length: int, nodes: int = 1) -> service_pb2.RunGraphRequest:
    """`nodes` unbinds along dim 1 of an empty (0, `length`) input: `length` results each, no
    data."""
    x = graph_pb2.Value(ref=graph_pb2.NodeOutput(id="x"))
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=[graph_pb2.Node(
        id=f"y{i}", op="unbind", inputs=[x], attrs={"dim": graph_pb2.AttrValue(int_value=1)})
        for i in range(nodes)],
        outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y0", index=0))])
    x_tensor = codec.encode_array(np.zeros((0, 1), np.float32))
    del x_tensor.shape[:]
    x_tensor.shape.extend([0, length])
    return service_pb2.RunGraphRequest(graph=g, inputs={"x": x_tensor})


def test_an_op_of_millions_of_results_is_refused_and_results_count_as_ops():
    """A 66-byte unbind of a (0, 3,000,000) tensor (no data, so no element limit) made 3 million
    results: 11 s of CPU and 1.1 GiB in one op (in a session too, health waiting 5 s). One op
    now makes at most `MAX_RESULTS`, and every four results count as an op of --max-call-ops,
    so eight unbinds of 65,536 results in one call are refused; 1,000 results still run."""
    with ServerProcess(["--workers", "4"]) as server, server.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        cpu = server.cpu_seconds()
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(_unbind_request(3_000_000), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"more than the limit of {MAX_RESULTS}" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(_unbind_request(MAX_RESULTS, nodes=8), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-call-ops" in info.value.details()
        assert server.cpu_seconds() - cpu < 5  # 11 s for the first alone before
        assert server.peak_rss() < 600 * MiB  # 1.1 GiB before
        reply = stub.RunGraph(_unbind_request(1000), timeout=30)
        assert codec.decode_array(reply.outputs[0].tensor, 0).shape == (0,)
        serves(server)
