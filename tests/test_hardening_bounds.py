"""Requests of a few hundred bytes that ask for gigabytes: every op's declared output bound
refuses them before anything is allocated (issue "Bounded by construction").

Each case runs as a stateless RunGraph and as a session batch, against a server with the limits
docs/reliability.md recommends for small machines (`--max-session-bytes 64 MiB
--max-tensor-elements 4 Mi`) and against one with the default limits. Each must be answered
RESOURCE_EXHAUSTED within 5 s naming the op, the server's peak RSS must stay within 200 MiB of
its baseline, and the server must go on serving.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gradserve.server import codec
from gradserve.v1 import graph_pb2, service_pb2, service_pb2_grpc, session_pb2
from tests.conftest import gradserve_attr, gradserve_open_session
from tests.server_process import MiB, ServerProcess

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
ANSWER_WITHIN = 5.0
RSS_ROOM = 200 * MiB

SMALL_LIMITS = ["--max-session-bytes", str(64 * MiB), "--max-tensor-elements", str(4 * MiB)]


def _graph(*nodes: tuple[str, str, list, dict]) -> service_pb2.RunGraphRequest:
    """A RunGraph of `(id, op, inputs, attrs)` nodes; inputs are scalars (constants) or "@id"
    references; the last node's first output is the graph's output."""
    req = service_pb2.RunGraphRequest()
    for node_id, op, inputs, attrs in nodes:
        node = req.graph.nodes.add(id=node_id, op=op)
        for v in inputs:
            if isinstance(v, str) and v.startswith("@"):
                node.inputs.add(ref=graph_pb2.NodeOutput(id=v[1:]))
            else:
                node.inputs.add(constant=codec.encode_array(np.asarray(v)))
        for name, value in attrs.items():
            node.attrs[name].CopyFrom(gradserve_attr(value))
    req.graph.outputs.add(name="y", ref=graph_pb2.NodeOutput(id=nodes[-1][0]))
    return req


# (name, nodes, the ops one of which must be named) — scalars as numpy values keep their dtype
CASES = [
    ("nonzero of 2**26 elements in 26 dims",  # past the small limits, expand itself is refused
     [("e", "expand", [np.bool_(True)], {"size": [2] * 26}),
      ("y", "nonzero", ["@e"], {})], ("nonzero", "expand")),
    ("nonzero of 2**22 elements in 22 dims",
     [("e", "expand", [np.bool_(True)], {"size": [2] * 22}),
      ("y", "nonzero", ["@e"], {})], ("nonzero",)),
    ("index_select of 2**31 elements",
     [("x", "expand", [np.float32(1.0)], {"size": [1, 16384]}),
      ("i", "expand", [np.int64(0)], {"size": [131072]}),
      ("y", "index_select", ["@x", "@i"], {"dim": 0})], ("index_select",)),
    ("unbind into 2**22 tensors",
     [("x", "expand", [np.float32(1.0)], {"size": [2**22]}),
      ("y", "unbind", ["@x"], {"dim": 0})], ("unbind",)),
    ("unbind into 2**26 tensors",
     [("x", "expand", [np.float32(1.0)], {"size": [2**26]}),
      ("y", "unbind", ["@x"], {"dim": 0})], ("unbind", "expand")),
    # products whose time their tensors do not tell: refused by their work (limits.WORK_PER_ELEMENT)
    ("int64 product of two expanded (2048, 2048) matrices (8 s of CPU in one op before)",
     [("a", "expand", [np.int64(1)], {"size": [2048, 2048]}),
      ("y", "matmul", ["@a", "@a"], {})], ("matmul",)),
    ("float32 product of two expanded (8192, 8192) matrices",
     [("a", "expand", [np.float32(1.0)], {"size": [8192, 8192]}),
      ("y", "mm", ["@a", "@a"], {})], ("mm", "expand")),
    ("einsum to one element of two int64 (2048, 2048) matrices",
     [("a", "expand", [np.int64(1)], {"size": [2048, 2048]}),
      ("y", "einsum", ["@a", "@a"], {"equation": "ij,jk->"})], ("einsum",)),
    ("repeat to 2**34 elements",
     [("x", "expand", [np.float32(1.0)], {"size": [1024, 1024]}),
      ("y", "repeat", ["@x"], {"repeats": [128, 128]})], ("repeat",)),
    # the 0.2 tensor ops: sizes from the repeats' values, and products of shapes
    ("repeat_interleave to 2**41 indices",
     [("y", "repeat_interleave", [np.array([2**40, 2**40], np.int64)], {})],
     ("repeat_interleave",)),
    ("bincount of a value 2**40",
     [("y", "bincount", [np.array([2**40], np.int64)], {})], ("bincount",)),
    ("kron to 2**40 elements",
     [("x", "expand", [np.float32(1.0)], {"size": [1024, 1024]}),
      ("y", "kron", ["@x", "@x"], {})], ("kron",)),
    ("cdist of 2**17 by 2**17 rows",
     [("x", "expand", [np.float32(1.0)], {"size": [131072, 1]}),
      ("y", "_cdist_forward", ["@x", "@x"], {})], ("_cdist_forward",)),
    ("unfold_backward of a one-element gradient to 2**40 elements",
     [("g", "expand", [np.float32(1.0)], {"size": [1, 1]}),
      ("y", "unfold_backward", ["@g"], {"input_sizes": [2**40], "dim": 0, "size": 1,
                                        "step": 2**40})], ("unfold_backward",)),
    ("col2im of one column element to 2**40 elements",
     [("g", "expand", [np.float32(1.0)], {"size": [1, 1, 1]}),
      ("y", "col2im", ["@g"], {"output_size": [2**20, 2**20], "kernel_size": [1, 1],
                               "dilation": [1, 1], "padding": [0, 0],
                               "stride": [2**20, 2**20]})], ("col2im",)),
    ("replication_pad_backward of a one-element gradient to 2**40 elements",
     [("g", "expand", [np.float32(1.0)], {"size": [1, 1]}),
      ("y", "replication_pad_backward", ["@g"], {
          "input_size": [2**20, 2**20], "padding": [1 - 2**20, 0, 1 - 2**20, 0]})],
     ("replication_pad_backward",)),
    ("replication_pad to 2**40 elements",
     [("x", "expand", [np.float32(1.0)], {"size": [1, 1, 1]}),
      ("y", "replication_pad", ["@x"], {"padding": [0, 2**20, 0, 2**20]})],
     ("replication_pad",)),
    ("diag_embed to 2**40 elements",
     [("x", "expand", [np.float32(1.0)], {"size": [2**20]}),
      ("y", "diag_embed", ["@x"], {})], ("diag_embed",)),
]


def _batch(nodes: list, n_outputs: int) -> list[session_pb2.Instruction]:
    """The same computation as session instructions: handles 1, 2, ... in node order."""
    handles: dict[str, int] = {}
    out = []
    for k, (node_id, op, inputs, attrs) in enumerate(nodes):
        values = []
        for v in inputs:
            if isinstance(v, str) and v.startswith("@"):
                values.append(graph_pb2.Value(handle=handles[v[1:]]))
            else:
                values.append(graph_pb2.Value(constant=codec.encode_array(np.asarray(v))))
        first = 1 + 100 * k
        outputs = list(range(first, first + (n_outputs if k == len(nodes) - 1 else 1)))
        handles[node_id] = first
        out.append(session_pb2.Instruction(apply_op=session_pb2.ApplyOp(
            op=op, inputs=values, outputs=outputs,
            attrs={name: gradserve_attr(value) for name, value in attrs.items()})))
    return out


@pytest.fixture(scope="module", params=["small limits", "default limits"])
def server(request):
    args = SMALL_LIMITS if request.param == "small limits" else []
    with ServerProcess([*args, "--workers", "4"]) as proc:
        channel = proc.channel()
        proc.stub = service_pb2_grpc.AutogradServiceStub(channel)
        proc.health = health_pb2_grpc.HealthStub(channel)
        s = gradserve_open_session(proc.stub)  # warm up before the baseline
        s.close()
        proc.baseline = proc.rss()
        yield proc
        channel.close()


def _answered(server, call, ops: tuple[str, ...]) -> None:
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        call()
    took = time.monotonic() - start
    assert err.value.code() == EXHAUSTED, (err.value.code(), err.value.details())
    assert took < ANSWER_WITHIN, f"answered after {took:.1f}s"
    assert any(f"{op}()" in err.value.details() for op in ops), err.value.details()
    grown = server.peak_rss() - server.baseline
    assert grown < RSS_ROOM, f"peak RSS {grown / MiB:.0f} MiB above baseline"
    assert server.alive()
    health = server.health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("nodes, ops", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stateless(server, nodes, ops):
    req = _graph(*nodes)
    _answered(server, lambda: server.stub.RunGraph(req, timeout=ANSWER_WITHIN), ops)


@pytest.mark.parametrize("nodes, ops", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_session_batch(server, nodes, ops):
    # unbind's result count is only known when it runs; the handles given do not matter, as
    # its bound refuses it before it runs (before, it made its 2**22 results and then failed)
    n_outputs = 100 if nodes[-1][1] == "unbind" else 1
    s = gradserve_open_session(server.stub)
    try:
        instructions = _batch(nodes, n_outputs)
        _answered(server, lambda: s.run(*instructions, timeout=ANSWER_WITHIN), ops)
        # the session is intact: it still computes
        x = s.new_handle() + 10_000
        s.run(s.create(x, 3.0, requires_grad=True), s.op("mul", [("h", x), ("h", x)], [x + 1]),
              s.backward(x + 1))
        assert s.grad_of(x) == 6.0
    finally:
        s.close()
