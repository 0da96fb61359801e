"""Bounded by construction at the transport: requests that never finish arriving hold no worker.

An HTTP/2 client may open streams, announce a gRPC request and never send the rest of it (a
"slowloris" at the stream level). With `grpc.server`'s thread pool each such stream took a
worker thread before its message came and kept it until the client hung up: a few dozen streams
of a few bytes each, on one connection, stopped the server (health checks included). The server
now runs on gRPC's asyncio transport (server/app.py): a call reaches a worker thread only once
its request has arrived. These tests speak raw HTTP/2 over a socket (no client library would
send such streams) against a server in a subprocess with few workers.
"""

from __future__ import annotations

import socket
import struct
import time

import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gradserve.server import codec
from gradserve.v1 import catalogue_pb2, graph_pb2, service_pb2, service_pb2_grpc
from tests.server_process import MiB, ServerProcess

WORKERS = 4
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS = 0x0, 0x1, 0x4
END_HEADERS, ACK = 0x4, 0x1


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", stream) + payload


def literal(name: str, value: str) -> bytes:
    """An HPACK header field without indexing, new name, no Huffman coding (RFC 7541 6.2.2);
    names and values here are shorter than 127 bytes."""
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def stalled_streams(port: int, method: str, count: int, sent: bytes) -> socket.socket:
    """One connection with `count` streams calling `method`, each sending `sent` of its request
    (a gRPC message prefix announces more) and no end of stream. Returns the open socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    out = [PREFACE, frame(SETTINGS, 0, 0, b""), frame(SETTINGS, ACK, 0, b"")]
    headers = b"".join(literal(k, v) for k, v in (
        (":method", "POST"), (":scheme", "http"), (":path", method),
        (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"),
        ("te", "trailers")))
    for i in range(count):
        stream = 2 * i + 1
        out.append(frame(HEADERS, END_HEADERS, stream, headers))
        out.append(frame(DATA, 0, stream, sent))
    sock.sendall(b"".join(out))
    return sock


def square_request() -> service_pb2.RunGraphRequest:
    g = graph_pb2.Graph(
        inputs=[graph_pb2.GraphInput(name="x")],
        nodes=[graph_pb2.Node(id="y", op="pow", inputs=[
            graph_pb2.Value(ref=graph_pb2.NodeOutput(id="x")), graph_pb2.Value(int_scalar=2)])],
        outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y"))])
    return service_pb2.RunGraphRequest(graph=g, wrt=["x"], inputs={
        "x": codec.encode_array(np.array(3.0, np.float32))})


def serves(server: ServerProcess) -> None:
    """Health, ListOps and a RunGraph each answer within 5 s."""
    with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        assert stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=5).ops
        reply = stub.RunGraph(square_request(), timeout=5)
        assert codec.decode_array(reply.gradients[0].derivatives[0].tensor, 1).item() == 6.0


def test_streams_that_never_finish_their_request_hold_no_worker():
    with ServerProcess(["--workers", str(WORKERS)]) as server:
        serves(server)
        method = "/gradserve.v1.AutogradService/RunGraph"
        # 16x the workers, each announcing a 60 MiB request and sending its first 5 bytes;
        # and as many announcing a small one and sending none of it
        socks = [stalled_streams(server.port, method, 16 * WORKERS,
                                 b"\x00" + struct.pack(">I", 60 * MiB)),
                 stalled_streams(server.port, method, 16 * WORKERS, b"")]
        try:
            time.sleep(0.5)  # the server has read them all
            start = time.monotonic()
            serves(server)
            assert time.monotonic() - start < 5
        finally:
            for sock in socks:
                sock.close()
        serves(server)
        assert server.alive()
