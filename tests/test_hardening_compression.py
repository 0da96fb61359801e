"""Compressed requests are refused before grpc core inflates them.

A gzip request inflates ~1000-fold: a RunGraph of one 60 MiB input of zeros is 59 KiB on the
wire. grpc core inflated it before any of the server's defences saw a byte (the message-size
limit holds after inflating, not what inflating costs; the intake's memory-pressure drops and
the large requests' turns see the inflated message only once it exists): 40 such requests, 2.4
MB sent, cost the server 14.3 s of CPU (8.1 s for the same requests uncompressed, 2.4 GB sent)
and held health checks up to 9 s (p99 4.9 s). The server now enables identity only
(`server.app.COMPRESSION_ALGORITHMS`): the same 40 cost 1.2 s, health p99 40 ms.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from gradserve.server import codec
from gradserve.v1 import MAX_MESSAGE_BYTES, graph_pb2, service_pb2, service_pb2_grpc
from tests.server_process import MiB, ServerProcess
from tests.test_hardening_streams import serves


def _sum_of_zeros(nbytes: int) -> service_pb2.RunGraphRequest:
    x = graph_pb2.Value(ref=graph_pb2.NodeOutput(id="x"))
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")],
                        nodes=[graph_pb2.Node(id="y", op="sum", inputs=[x])],
                        outputs=[graph_pb2.GraphOutput(name="y",
                                                       ref=graph_pb2.NodeOutput(id="y"))])
    return service_pb2.RunGraphRequest(graph=g, inputs={
        "x": codec.encode_array(np.zeros(nbytes // 4, np.float32))})


@pytest.mark.parametrize("algorithm", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_requests_are_refused_before_they_are_inflated(algorithm):
    with ServerProcess(["--workers", "4"]) as server:
        serves(server)
        before, cpu = server.rss(), server.cpu_seconds()
        opts = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        request = _sum_of_zeros(16 * MiB)
        with grpc.insecure_channel(server.target, options=opts,
                                   compression=algorithm) as channel:
            stub = service_pb2_grpc.AutogradServiceStub(channel)
            for _ in range(4):
                with pytest.raises(grpc.RpcError) as info:
                    stub.RunGraph(request, timeout=60)
                assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
                assert "is disabled" in info.value.details()
        assert server.peak_rss() - before < 64 * MiB  # nothing was inflated
        assert server.cpu_seconds() - cpu < 3
        serves(server)  # uncompressed calls, RunGraph included, are served
