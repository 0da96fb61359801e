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

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gradserve.server.wire_guard import LOOP_REQUEST_BYTES
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
