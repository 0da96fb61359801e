"""What a session or a call keeps alive is what it is charged for, and replies are atomic.

The attacks: a long chain kept alive by two handles, graphs hanging off `.grad` after repeated
`backward(create_graph=True)`, huge request ids remembered for replay, a stateless graph whose
higher-order derivatives explode, and a reply larger than the message limit. Each must be
refused (RESOURCE_EXHAUSTED, or INVALID_ARGUMENT for the id) within seconds of the server's CPU
while the server's peak RSS stays within a fixed margin of its baseline.
"""

from __future__ import annotations

import gc
import time
import tracemalloc

import grpc
import numpy as np
import pytest

import gradserve.client as gclient
from gradserve.client.errors import ReplyTooLargeError
from gradserve.server import codec
from gradserve.server.batch import Executor
from gradserve.server.config import ServerConfig
from gradserve.server.sessions import SessionStore
from gradserve.v1 import graph_pb2, service_pb2, service_pb2_grpc, session_pb2
from tests.conftest import gradserve_attr, gradserve_error, gradserve_open_session
from tests.server_process import MiB, ServerProcess
from tests.test_rich_errors import decode

BUDGET = 64 * MiB
ELEMENTS = 4 * MiB
RSS_MARGIN = 200 * MiB
ANSWER_SECONDS = 5.0
# Bounds on the server's CPU seconds per call. A stateless call is refused once its work has
# charged the budget: ~65k recorded ops at ~1 KiB each (node, tensor object, data) for 64 MiB,
# 2-4 s on the 2-core development machine; the bound is what would catch the old, unbounded
# behaviour (the order-8 chain ran for minutes and grew to 6 GB).
STATELESS_SECONDS = 12.0
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SMALL_MESSAGE = 1 * MiB


def h(handle):
    return ("h", handle)


@pytest.fixture(scope="module")
def server():
    # --max-call-ops raised out of the way: these tests show what the byte budget counts (the
    # op limit, which stops the same chains sooner, has a test of its own).
    with ServerProcess(["--max-session-bytes", str(BUDGET), "--max-tensor-elements",
                        str(ELEMENTS), "--workers", "2", "--max-call-ops", "100000000",
                        "--max-nodes", "100000"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def stub(server):
    channel = server.channel()
    yield service_pb2_grpc.AutogradServiceStub(channel)
    channel.close()


def timed(call, server=None):
    """(result or RpcError, seconds): the server process's CPU seconds during the call when
    `server` is given (what an unbounded request burns; unlike wall time it does not grow when
    the machine is shared with other work), else wall seconds."""
    start = time.monotonic() if server is None else server.cpu_seconds()
    try:
        out = call()
    except grpc.RpcError as err:
        out = err
    end = time.monotonic() if server is None else server.cpu_seconds()
    return out, end - start


def assert_bounded(server, baseline):
    grown = server.peak_rss() - baseline
    assert grown <= RSS_MARGIN, f"peak RSS grew by {grown / MiB:.0f} MiB"
    assert server.alive()


# --- session accounting --------------------------------------------------------------------------

def test_a_long_chain_with_two_live_handles_is_refused(server, session):
    # x, then y = y * y again and again, releasing the previous y: two live handles, but every
    # node and every tensor it saves stays alive. 1M nodes took 960 MiB while `bytes_held` said
    # 8 MB; now the chain is refused near the 64 MiB budget (~1 KiB per node).
    baseline = server.peak_rss()
    session.run(session.create(1, 1.0, requires_grad=True))
    prev, handle, err = 1, 2, None
    for _ in range(200):  # at most 1M nodes, 5k per batch
        ins = []
        for _ in range(5_000):
            ins += [session.op("mul", [h(prev), h(prev)], [handle])]
            if prev != 1:
                ins.append(session.release(prev))
            prev, handle = handle, handle + 1
        out, seconds = timed(lambda ins=ins: session.run(*ins, timeout=60), server)
        assert seconds < ANSWER_SECONDS, seconds
        if isinstance(out, grpc.RpcError):
            err = out
            break
    assert err is not None, "the chain was never refused"
    assert err.code() == EXHAUSTED, err.details()
    assert f"of its {BUDGET} bytes" in err.details() or f"limit of {BUDGET} bytes" in \
        err.details(), err.details()
    assert_bounded(server, baseline)
    info = session.describe()
    assert info.bytes_held <= BUDGET and info.tensor_count <= 2


def test_graphs_hanging_off_grad_are_counted(server, session):
    # backward(create_graph=True) accumulates a graph into x.grad each time; 600 of them on
    # (x * sin(x)).sum() took 1.28 GB while `bytes_held` said 6 MiB.
    baseline = server.peak_rss()
    x = np.linspace(0, 1, 100_000, dtype=np.float32)
    session.run(session.create(1, x, requires_grad=True), session.op("sin", [h(1)], [2]),
                session.op("mul", [h(1), h(2)], [3]), session.op("sum", [h(3)], [4]))
    err = None
    for _ in range(600):
        out, seconds = timed(lambda: session.run(session.backward(4, create_graph=True)), server)
        assert seconds < ANSWER_SECONDS, seconds
        if isinstance(out, grpc.RpcError):
            err = out
            break
    assert err is not None, "repeated create_graph backward was never refused"
    assert err.code() == EXHAUSTED, err.details()
    assert str(BUDGET) in err.details()
    assert_bounded(server, baseline)
    assert session.describe().bytes_held <= BUDGET


def test_backward_passes_suspended_at_custom_functions_are_counted(server, session):
    # A pass suspended at a custom Function keeps its gradients alive until resumed; backward
    # again (retain_graph) without resuming nests another. 16 of them held 16 x 8 MiB beyond the
    # session's bytes; now each suspension is measured and the one past the budget is refused.
    from tests.conftest import gradserve_value

    baseline = server.peak_rss()
    x = np.ones(2 * MiB, np.float32)  # 8 MiB
    apply = session.pb.ApplyFunction(name="Double", node=7, args=[gradserve_value(h(1))],
                                     outputs=[2], results=[3])
    session.run(session.create(1, x, requires_grad=True),
                session.op("mul", [h(1), 2.0], [2], no_grad=True),
                session.pb.Instruction(apply_function=apply),
                session.op("mul", [h(3), h(3)], [4]), session.op("sum", [h(4)], [5]))
    held = session.describe().bytes_held
    first = session.run(session.backward(5, retain_graph=True)).results[0]
    assert first.WhichOneof("result") == "suspended"
    assert session.describe().bytes_held >= held + x.nbytes  # the gradient waiting at Double
    err = None
    for _ in range(15):
        out, _ = timed(lambda: session.run(session.backward(5, retain_graph=True)))
        if isinstance(out, grpc.RpcError):
            err = out
            break
    assert err is not None and err.code() == EXHAUSTED, err and err.details()
    assert session.describe().bytes_held <= BUDGET
    abort = session.pb.Instruction(abort_backward=session.pb.AbortBackward())
    for _ in range(16):
        session.run(abort)
    assert session.describe().bytes_held <= held + MiB
    assert_bounded(server, baseline)


def test_request_ids_are_capped_and_counted(server, session):
    baseline = server.peak_rss()
    session.run(session.create(1, 1.0))
    for _ in range(4):  # 16 x 60 MiB ids took 1.1 GB; each is refused before it is remembered
        out, seconds = timed(lambda: session.run(session.fetch(1), request_id="r" * (8 * MiB)),
                             server)
        assert seconds < ANSWER_SECONDS
        assert isinstance(out, grpc.RpcError) and out.code() == INVALID, out
        assert "request_id has 8388608 characters, more than the limit of 128" in out.details()
    with pytest.raises(grpc.RpcError) as err:
        session.run(session.fetch(1), request_id="r" * 129)
    assert gradserve_error(err)[0] == INVALID
    held = session.describe().bytes_held
    session.run(session.fetch(1), request_id="k" * 128)
    grown = session.describe().bytes_held - held
    assert grown >= 128 + 256  # the key and the entry, besides the reply
    assert_bounded(server, baseline)


def test_bytes_held_matches_memory_of_a_10k_node_chain():
    config = ServerConfig(max_session_bytes=1 << 40)
    store = SessionStore(config)
    s = store.create("owner", session_pb2.SessionOptions())
    pb = session_pb2
    ins = [pb.Instruction(create_tensor=pb.CreateTensor(
        handle=1, value=codec.encode_array(np.ones(16, np.float32)), requires_grad=True))]
    for i in range(10_000):
        prev = 1 if i == 0 else i + 1
        ins.append(pb.Instruction(apply_op=pb.ApplyOp(
            op="mul", inputs=[graph_pb2.Value(handle=prev)] * 2, outputs=[i + 2])))
        if prev != 1:
            ins.append(pb.Instruction(release=pb.Release(handles=[prev])))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        response = Executor(s, lambda: None, config.max_message_bytes).run(ins)
        del response
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held, _ = s.measure()
    assert len(s.tensors) == 2
    assert grown / 2 <= held <= grown * 2, (held, grown)


# --- stateless budget ----------------------------------------------------------------------------

def _sin_chain(n, order):
    nodes = [graph_pb2.Node(id=str(i), op="sin", inputs=[graph_pb2.Value(
        ref=graph_pb2.NodeOutput(id=str(i - 1) if i else "x"))]) for i in range(n)]
    return service_pb2.RunGraphRequest(
        graph=graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=nodes,
                              outputs=[graph_pb2.GraphOutput(
                                  name="y", ref=graph_pb2.NodeOutput(id=str(n - 1)))]),
        inputs={"x": codec.encode_array(np.float32(0.5))}, wrt=["x"], order=order)


@pytest.mark.parametrize("n", [100_000, 10_000])
def test_every_derivative_order_is_counted(server, stub, n):
    # A 2.7 MB request (100k sin nodes, order 8) grew to 6 GB: only forward values were counted.
    # 10k nodes fit the budget forward; the higher orders' graphs do not.
    baseline = server.peak_rss()
    out, seconds = timed(lambda: stub.RunGraph(_sin_chain(n, 8), timeout=60), server)
    assert isinstance(out, grpc.RpcError), "the order-8 chain was not refused"
    assert out.code() == EXHAUSTED, out.details()
    assert f"at most {BUDGET} bytes in all" in out.details()
    assert "every derivative order" in out.details()
    assert seconds < STATELESS_SECONDS, seconds
    assert_bounded(server, baseline)


@pytest.mark.parametrize("n, order", [(1_000, 7), (1_000, 5), (100_000, 1)])
def test_a_stateless_call_runs_at_most_max_call_ops(gradserve_server_factory, n, order):
    # A 1,000-node chain at order 5-7 ran ~100,000 ops and backward steps before the 64 MiB
    # budget refused it: 4-5 s on a busy core, past a 5 s deadline. The op limit stops it after
    # --max-call-ops of them, whatever its memory.
    _, port = gradserve_server_factory(max_session_bytes=BUDGET, max_call_ops=20_000,
                                       max_nodes=100_000)
    stub = _stub(port)
    out, _ = timed(lambda: stub.RunGraph(_sin_chain(n, order), timeout=60))
    assert isinstance(out, grpc.RpcError) and out.code() == EXHAUSTED, out
    assert "at most 20000 ops and backward steps" in out.details(), out.details()
    assert "--max-call-ops" in out.details()
    _, info, details = decode(out)
    assert info.metadata["limit"] == "max_call_ops"
    assert details["QuotaFailure"].violations[0].subject == "max_call_ops"
    small = stub.RunGraph(_sin_chain(100, 2), timeout=60)  # well within: answered
    assert [len(g.derivatives) for g in small.gradients] == [2]


def test_the_graph_itself_is_charged_to_the_call():
    # Parsing and validating a graph costs memory before any op runs (21 MiB parsed and a
    # 10 MiB table of names for 100,000 nodes): GRAPH_NODE_BYTES per node comes off the budget
    # first, so a graph of cheap ops that the budget cannot even hold is refused up front.
    from gradserve.server import graph

    req = _sin_chain(3_000, 1)
    cheap = ServerConfig(max_session_bytes=graph.GRAPH_NODE_BYTES * 3_000 - 1)
    graph.validate(req, cheap, handles_allowed=False)
    with pytest.raises(Exception, match="the parsed and validated graph needs 1008000 bytes"):
        graph.execute(req, cheap, check_deadline=lambda: None)
    roomy = ServerConfig(max_session_bytes=8 * MiB)
    resp = service_pb2.RunGraphResponse.FromString(
        graph.fit(graph.execute(req, roomy, check_deadline=lambda: None), roomy))
    assert [g.name for g in resp.gradients] == ["x"]


def test_the_reply_is_charged_to_the_call():
    # A 4 MiB float32 result (an expanded scalar, charged in full by expand's bound) is copied
    # into the response and again into gRPC's serialized bytes. Those copies come out of the
    # budget before encoding, so a reply never takes memory the call was not charged for.
    from gradserve.server import graph

    n = 1 << 20
    one = graph_pb2.Value(constant=codec.encode_array(np.ones((1,), np.float32)))
    req = service_pb2.RunGraphRequest(graph=graph_pb2.Graph(
        nodes=[graph_pb2.Node(id="e", op="expand", inputs=[one],
                              attrs={"size": gradserve_attr((n,))})],
        outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="e"))]))
    reply = graph.REPLY_COPIES * 4 * n
    tight = ServerConfig(max_session_bytes=reply)  # the graph, constant and result come first
    graph.validate(req, tight, handles_allowed=False)
    with pytest.raises(Exception, match=f"the reply's copies of a result needs {reply} bytes"):
        graph.execute(req, tight, check_deadline=lambda: None)
    roomy = ServerConfig(max_session_bytes=reply + 4 * n + 64 * 1024)
    resp = service_pb2.RunGraphResponse.FromString(
        graph.fit(graph.execute(req, roomy, check_deadline=lambda: None), roomy))
    assert len(resp.outputs[0].tensor.raw) == 4 * n


def test_a_small_chain_still_differentiates_to_order_8(stub):
    resp = stub.RunGraph(_sin_chain(3, 8), timeout=30)
    assert len(resp.gradients[0].derivatives) == 8


# --- atomic replies ------------------------------------------------------------------------------

@pytest.fixture
def small_server(gradserve_server_factory):
    _, port = gradserve_server_factory(max_message_bytes=SMALL_MESSAGE)
    return port


def _stub(port):
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.max_receive_message_length", 64 * MiB), ("grpc.max_send_message_length", 64 * MiB)])
    return service_pb2_grpc.AutogradServiceStub(channel)


def test_a_too_large_fetch_is_omitted_and_the_batch_applied(small_server):
    s = gradserve_open_session(_stub(small_server))
    big = 512 * 1024  # 2 MiB of float32
    ins = [s.create(1, np.ones(1, np.float32)),
           s.op("expand", [h(1)], [2], size=(big,)), s.fetch(2),
           s.op("mul", [h(2), 2.0], [3]), s.fetch(1)]
    resp = s.run(*ins, request_id="atomic-1")
    omitted = resp.results[2].fetch
    assert omitted.HasField("omitted") and not omitted.HasField("value")
    assert omitted.omitted.bytes >= 4 * big
    assert omitted.omitted.max_message_bytes == SMALL_MESSAGE
    assert list(omitted.info.shape) == [big]
    assert [t.handle for t in resp.results[3].handles.tensors] == [3]  # applied, reported
    assert resp.results[4].fetch.HasField("value")  # small fetches still fit
    assert s.describe().tensor_count == 3
    replay = s.run(*ins, request_id="atomic-1")  # a retry replays the same success
    assert replay.replayed and replay.results[2].fetch.HasField("omitted")


def test_the_client_raises_only_when_the_value_is_read(small_server):
    with gclient.connect(f"127.0.0.1:{small_server}") as c, c.session() as torch:
        x = torch.ones(1, requires_grad=True)
        y = (x * 3.0).expand(512 * 1024) + 1.0
        assert tuple(y.shape) == (512 * 1024,)
        with pytest.raises(ReplyTooLargeError) as err:
            y.tolist()
        message = str(err.value)
        assert f"message limit is {SMALL_MESSAGE} bytes" in message
        assert "[524288]" in message and "--max-message-bytes" in message
        y.sum().backward()  # the state behind y is intact
        assert x.grad.item() == 3.0 * 512 * 1024


def test_a_value_crowded_out_by_its_batch_is_fetched_alone(small_server):
    # 800 pending instructions reserve ~830 KB of the 1 MiB reply: the 600 KB value does not fit
    # beside them, is left out, and the client fetches it again in a batch of its own. (Factories
    # with requires_grad=True go as ApplyOp and SetRequiresGrad, each reply reserved at its bound;
    # ops on the instruction tape reserve only what the client cannot infer.)
    with gclient.connect(f"127.0.0.1:{small_server}") as c, c.session() as torch:
        x = torch.ones(150_000)
        ys = [torch.full((1,), float(i), requires_grad=True) for i in range(400)]
        trips = torch._recorder.round_trips
        assert x.tolist()[:2] == [1.0, 1.0]
        assert torch._recorder.round_trips - trips == 2  # the batch, then the fetch alone
        assert ys[-1].item() == 399.0


def test_a_batch_whose_reply_cannot_fit_is_refused_up_front(small_server):
    s = gradserve_open_session(_stub(small_server))
    ins = [s.create(i + 1, 1.0) for i in range(1100)]  # 1100 x 1 KiB of TensorInfo bound
    with pytest.raises(grpc.RpcError) as err:
        s.run(*ins)
    code, message, _ = gradserve_error(err)
    assert code == EXHAUSTED
    assert f"more than the message limit of {SMALL_MESSAGE} bytes" in message
    assert "nothing was run" in message
    assert s.describe().tensor_count == 0


def test_a_run_graph_reply_too_large_is_refused(small_server):
    stub = _stub(small_server)
    x = graph_pb2.Value(constant=codec.encode_array(np.ones((1,), np.float32)))
    req = service_pb2.RunGraphRequest(graph=graph_pb2.Graph(
        nodes=[graph_pb2.Node(id="e", op="expand", inputs=[x],
                              attrs={"size": gradserve_attr((512 * 1024,))})],
        outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="e"))]))
    with pytest.raises(grpc.RpcError) as err:
        stub.RunGraph(req, timeout=30)
    code, message, _ = gradserve_error(err)
    assert code == EXHAUSTED
    assert f"more than the message limit of {SMALL_MESSAGE} bytes" in message
