"""Shared fixtures. Each block is named after what it serves; add yours in a block of its own."""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

# --- client metadata checks -----------------------------------------------------------------------
# Every client session of the tests compares the metadata the client infers for its ops (shape,
# dtype, requires_grad, grad_fn: gradserve.surface.meta) with the server's description of each
# result, raising MetaMismatchError on a difference (Client.session's verify_meta). A test of
# the omitted descriptions themselves opens its session with verify_meta=False.
os.environ.setdefault("GRADSERVE_VERIFY_META", "1")

# --- torch's process-wide switches ---------------------------------------------------------------
# torch.cond (it goes through dynamo) turns torch.distributions' argument validation off for the
# whole process: a test calling it (test_surface_control) made a later test_client_distributions
# compare with a torch that raised nothing. Each test gets back the setting it started with.


@pytest.fixture(autouse=True)
def _torch_distribution_validation() -> Iterator[None]:
    torch = sys.modules.get("torch")  # imported by the tests that compare with it
    if torch is None or not hasattr(torch, "distributions"):
        yield
        return
    saved = torch.distributions.Distribution._validate_args
    yield
    torch.distributions.Distribution._validate_args = saved


# --- gradserve server fixtures (tests/test_server_*.py) -------------------------------------------
# A real server on port 0, talked to through the real generated stubs.


def gradserve_test_config(**overrides: Any) -> Any:
    """A ServerConfig for tests: port 0 on loopback, small worker pool, overrides applied."""
    from gradserve.server.config import ServerConfig

    base = ServerConfig(host="127.0.0.1", port=0, grace_period=2.0)
    return dataclasses.replace(base, **overrides)


class GradserveSession:
    """A session on a test server, driven with wire messages; instruction builders included."""

    def __init__(self, stub: Any, session_id: str, metadata: tuple[tuple[str, str], ...] = ()):
        from gradserve.v1 import session_pb2

        self.pb = session_pb2
        self.stub = stub
        self.id = session_id
        self.metadata = (("x-session-id", session_id), *metadata)
        self._handles = itertools.count(1)

    def new_handle(self) -> int:
        return next(self._handles)

    def run(self, *instructions: Any, request_id: str = "", after: str = "",
            timeout: float = 30) -> Any:
        """Execute a batch (after the batch of request id `after`, if given); returns the
        BatchResponse."""
        req = self.pb.BatchRequest(session_id=self.id, request_id=request_id,
                                   instructions=list(instructions), after_request_id=after)
        return self.stub.ExecuteBatch(req, metadata=self.metadata, timeout=timeout)

    def describe(self) -> Any:
        return self.stub.DescribeSession(self.pb.DescribeSessionRequest(session_id=self.id),
                                         metadata=self.metadata, timeout=10)

    def close(self) -> None:
        self.stub.CloseSession(self.pb.CloseSessionRequest(session_id=self.id),
                               metadata=self.metadata, timeout=10)

    # builders ----------------------------------------------------------------------------------

    def create(self, handle: int, data: Any, requires_grad: bool = False,
               dtype: Any = None) -> Any:
        from gradserve.server import codec

        arr = np.asarray(data, dtype=dtype if dtype is not None else
                         (np.float32 if isinstance(data, float) or
                          np.asarray(data).dtype == np.float64 else None))
        return self.pb.Instruction(create_tensor=self.pb.CreateTensor(
            handle=handle, value=codec.encode_array(arr), requires_grad=requires_grad))

    def op(self, name: str, inputs: list[Any], outputs: list[int], no_grad: bool = False,
           **attrs: Any) -> Any:
        return self.pb.Instruction(apply_op=self.pb.ApplyOp(
            op=name, inputs=[gradserve_value(v) for v in inputs], outputs=outputs,
            no_grad=no_grad, attrs={k: gradserve_attr(v) for k, v in attrs.items()}))

    def inplace(self, name: str, target: int, inputs: list[Any] = (), **attrs: Any) -> Any:
        return self.pb.Instruction(apply_inplace=self.pb.ApplyInplace(
            op=name, target=target, inputs=[gradserve_value(v) for v in inputs],
            attrs={k: gradserve_attr(v) for k, v in attrs.items()}))

    def backward(self, handle: int, **kw: Any) -> Any:
        return self.pb.Instruction(backward=self.pb.Backward(tensor=handle, **kw))

    def fetch(self, handle: int, value: bool = True, grad: bool = False,
              graph: bool = False) -> Any:
        return self.pb.Instruction(fetch=self.pb.Fetch(handle=handle, value=value, grad=grad,
                                                       graph=graph))

    def release(self, *handles: int) -> Any:
        return self.pb.Instruction(release=self.pb.Release(handles=list(handles)))

    def value_of(self, handle: int) -> np.ndarray:
        """Fetch one tensor's value as an array."""
        from gradserve.server import codec

        return codec.decode_array(self.run(self.fetch(handle)).results[0].fetch.value, 10**9)

    def grad_of(self, handle: int) -> np.ndarray | None:
        from gradserve.server import codec

        g = self.run(self.fetch(handle, value=False, grad=True)).results[0].fetch.grad
        return None if g.HasField("none") else codec.decode_array(g.tensor, 10**9)


def gradserve_value(v: Any) -> Any:
    """A wire Value: ("h", n) is a handle, a Python scalar a scalar, an array a constant."""
    from gradserve.server import codec
    from gradserve.v1 import graph_pb2, tensor_pb2

    if isinstance(v, tuple) and v[0] == "h":
        return graph_pb2.Value(handle=v[1])
    if isinstance(v, tuple) and v[0] == "ref":
        return graph_pb2.Value(ref=graph_pb2.NodeOutput(id=v[1], index=v[2] if len(v) > 2 else 0))
    if v is None:
        return graph_pb2.Value(none=tensor_pb2.NoneValue())
    if isinstance(v, bool):
        return graph_pb2.Value(bool_scalar=v)
    if isinstance(v, int):
        return graph_pb2.Value(int_scalar=v)
    if isinstance(v, float):
        return graph_pb2.Value(float_scalar=v)
    return graph_pb2.Value(constant=codec.encode_array(np.asarray(v)))


def gradserve_attr(v: Any) -> Any:
    """A wire AttrValue from a Python value."""
    from gradserve.server import codec
    from gradserve.v1 import graph_pb2

    out = graph_pb2.AttrValue()
    codec.encode_attr(v, out)
    return out


def gradserve_error(exc_info: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(code, message, trailing metadata) of a failed call caught by pytest.raises."""
    err = exc_info.value
    return err.code(), err.details(), dict(err.trailing_metadata() or ())


@pytest.fixture(scope="session")
def gradserve_server():
    """A default-config server shared by the whole test run: (GradServer, port)."""
    from gradserve.server.app import create_server

    server, port = create_server(gradserve_test_config())
    server.start()
    yield server, port
    server.stop(0)


def gradserve_connect(port: int, credentials: Any = None, options: Any = ()) -> Any:
    """A ready channel to localhost:port (waits with channel_ready_future, never sleeps)."""
    from gradserve.v1 import MAX_MESSAGE_BYTES

    opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *options]
    target = f"localhost:{port}"
    channel = (grpc.insecure_channel(target, options=opts) if credentials is None
               else grpc.secure_channel(target, credentials, options=opts))
    grpc.channel_ready_future(channel).result(timeout=10)
    return channel


@pytest.fixture(scope="session")
def gradserve_client(gradserve_server):
    """A `gradserve.client.Client` connected to `gradserve_server`."""
    from gradserve import client as gc_client

    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture(params=["engine", "session"])
def gradserve_lib(request: Any, gradserve_client: Any) -> Iterator[Any]:
    """gradserve standing in for torch: the in-process engine, or a fresh session."""
    if request.param == "engine":
        import gradserve.engine as ge

        yield ge
        ge.set_default_dtype(ge.float32)  # the engine's default is process-wide, as torch's
    else:
        with gradserve_client.session() as s:
            yield s


@pytest.fixture(scope="session")
def gradserve_stub(gradserve_server):
    """An AutogradService stub connected to `gradserve_server`."""
    from gradserve.v1 import service_pb2_grpc

    channel = gradserve_connect(gradserve_server[1])
    yield service_pb2_grpc.AutogradServiceStub(channel)
    channel.close()


def gradserve_open_session(stub: Any, metadata: tuple[tuple[str, str], ...] = (),
                           **options: Any) -> GradserveSession:
    from gradserve.v1 import session_pb2

    resp = stub.CreateSession(session_pb2.CreateSessionRequest(
        options=session_pb2.SessionOptions(**options)), metadata=metadata, timeout=10)
    return GradserveSession(stub, resp.session_id, metadata)


def _session_for_one_test(stub: Any) -> Iterator[GradserveSession]:
    """A fresh session on `stub`'s server, closed after the test (fixtures `yield from` it)."""
    session = gradserve_open_session(stub)
    yield session
    try:
        session.close()
    except grpc.RpcError:
        pass  # the test closed it itself


@pytest.fixture
def gradserve_session(gradserve_stub):
    """A fresh session on the shared server, closed after the test."""
    yield from _session_for_one_test(gradserve_stub)


@pytest.fixture
def gradserve_server_factory():
    """Start servers with custom settings: `factory(**config) -> (GradServer, port)`."""
    from gradserve.server.app import create_server

    started = []

    def factory(**overrides: Any) -> Any:
        server, port = create_server(gradserve_test_config(**overrides))
        server.start()
        started.append(server)
        return server, port

    yield factory
    for server in started:
        server.stop(0)


def gradserve_request_id() -> str:
    return uuid.uuid4().hex


def gradserve_seed_lines(torch: Any) -> list[str]:
    """What the seed walkthrough (gradserve.client.demo.walkthrough) prints with `torch`,
    without the demo's "#" step headers."""
    from gradserve.client.demo import walkthrough

    lines: list[str] = []
    walkthrough(torch, say=lambda *args: lines.extend(" ".join(map(str, args)).splitlines()))
    return [line for line in lines if not line.startswith("#")]


# Fixtures for test modules that define a module-scoped `server` fixture yielding a
# tests.server_process.ServerProcess (hardening, fairness, fuzzing): a channel and a stub to it,
# and a fresh wire-level session per test.

@pytest.fixture(scope="module")
def channel(server: Any) -> Any:
    channel = server.channel()
    yield channel
    channel.close()


@pytest.fixture(scope="module")
def stub(channel: Any) -> Any:
    from gradserve.v1 import service_pb2_grpc

    return service_pb2_grpc.AutogradServiceStub(channel)


@pytest.fixture
def session(stub: Any) -> Any:
    yield from _session_for_one_test(stub)


# The seed's one-neuron data set (a clamped binary cross-entropy over five points), trained by
# the fault and Node.js client tests.
NEURON_XS = [0.5, 1.5, -1.0, 2.0, 6.7]
NEURON_YS = [0.0, 1.0, 0.0, 1.0, 1.0]


def gradserve_train_neuron(torch: Any, w: Any, b: Any, opt: Any, steps: int) -> list[float]:
    """The seed's neuron trained by an optimizer whose state carries over between steps (with
    torch, a session or a restored session); returns each step's loss."""
    xs, ys = torch.tensor(NEURON_XS), torch.tensor(NEURON_YS)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        y_pred = torch.clamp(torch.sigmoid(w * xs + b), 1e-8, 1 - 1e-8)
        loss = -(ys * torch.log(y_pred) + (1 - ys) * torch.log(1 - y_pred)).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def gradserve_bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata presenting `token` (servers started with --auth-token-file)."""
    return (("authorization", f"Bearer {token}"),)
