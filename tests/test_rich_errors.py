"""gRPC's rich error model: every reason in docs/errors.md, produced through a live server.

Each case triggers one row of server/errors.py's STATUS_TABLE, decodes the status with
grpc_status.rpc_status.from_call (what any grpcio user would do) and checks the code, the
ErrorInfo reason and domain, and the detail messages the row promises. The Python client's view
(`exc.reason`, `exc.metadata`, `exc.retry_after`) is checked at the end.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import gradserve.client as gc
from gradserve.server import catalogue
from gradserve.server import errors as server_errors
from gradserve.v1 import catalogue_pb2, service_pb2_grpc, session_pb2
from tests.conftest import GradserveSession, gradserve_connect

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


def h(n):
    return ("h", n)


def decode(call_error: grpc.RpcError):
    """(code, ErrorInfo, {detail type name: detail}) of a failed call, via grpcio-status."""
    status = rpc_status.from_call(call_error)
    assert status is not None, "no grpc-status-details-bin trailer"
    assert status.code == call_error.code().value[0]
    details = {}
    for packed in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                     error_details_pb2.QuotaFailure, error_details_pb2.RetryInfo):
            if packed.Is(kind.DESCRIPTOR):
                detail = kind()
                packed.Unpack(detail)
                details[kind.__name__] = detail
    info = details.pop("ErrorInfo")
    assert info.domain == server_errors.ERROR_DOMAIN
    return call_error.code(), info, details


def fails(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    return decode(err.value)


def in_session(build):
    """A case running instructions (after x = [1., 2.] requiring grad, handle 1)."""
    def run(ctx):
        s = ctx["session"]
        s.run(s.create(1, [1.0, 2.0], requires_grad=True))
        return fails(lambda: s.run(*build(s)))
    return run


def raising(exc):
    """A case where ListOps raises `exc` on the server (rows no request can reach on demand:
    a server-side deadline, a cancellation, out of memory, a bug, and the not yet used
    PreconditionError)."""
    def run(ctx):
        def broken():
            raise exc
        ctx["monkeypatch"].setattr(catalogue, "list_ops", broken)
        _, port = ctx["factory"]()
        stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
        return fails(lambda: stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10))
    return run


def _unauthenticated(ctx):
    tokens = ctx["tmp_path"] / "tokens"
    tokens.write_text("good-token\n")
    _, port = ctx["factory"](auth_token_file=str(tokens))
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    return fails(lambda: stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10))


def _sessions_exhausted(ctx):
    _, port = ctx["factory"](max_sessions=1)
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=10)
    return fails(lambda: stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=10))


def _not_found(ctx):
    s = ctx["session"]
    gone = GradserveSession(s.stub, "no-such-session-0123456789")
    return fails(lambda: gone.run(gone.create(1, 1.0)))


def _after(predecessor_fails):
    """A batch naming a predecessor (after_request_id) that failed, or that never ran."""
    def run(ctx):
        s = ctx["session"]
        if predecessor_fails:
            with pytest.raises(grpc.RpcError):
                s.run(s.create(0, 1.0), request_id="first")
        return fails(lambda: s.run(s.create(1, 1.0), request_id="second", after="first"))
    return run


C = grpc.StatusCode
# reason -> (status code, how to trigger it, detail types expected besides ErrorInfo,
#            ErrorInfo metadata expected)
CASES = {
    "ALLOCATION_LIMIT": (C.RESOURCE_EXHAUSTED, in_session(
        lambda s: [s.op("reshape", [h(1)], [3], shape=(2, 1)),
                   s.op("expand", [h(3)], [2], size=(2, 10**12))]),
        {"QuotaFailure"}, {"instruction": "1", "op": "expand"}),
    "GRAPH_FREED": (C.FAILED_PRECONDITION, in_session(
        lambda s: [s.op("sin", [h(1)], [2]), s.op("sum", [h(2)], [3]), s.backward(3),
                   s.backward(3)]),
        set(), {"instruction": "3", "instruction_kind": "backward", "handle": "3"}),
    "INPLACE_CONFLICT": (C.FAILED_PRECONDITION, in_session(
        lambda s: [s.inplace("add_", 1, [1.0])]),
        set(), {"instruction": "0", "op": "add_", "handle": "1"}),
    "AUTOGRAD_STATE": (C.FAILED_PRECONDITION, in_session(
        lambda s: [s.create(2, 1.0), s.backward(2)]),
        set(), {"instruction": "1", "handle": "2"}),
    "UNKNOWN_ATTRIBUTE": (C.INVALID_ARGUMENT, in_session(
        lambda s: [s.op("sum", [h(1)], [2], nope=1)]),
        {"BadRequest"}, {"op": "sum"}),
    "UNKNOWN_OP": (C.INVALID_ARGUMENT, in_session(lambda s: [s.op("no_such_op", [h(1)], [2])]),
                   {"BadRequest"}, {"op": "no_such_op"}),
    "INVALID_TYPE": (C.INVALID_ARGUMENT, in_session(
        lambda s: [s.op("sum", [h(1)], [2], dim="a")]), {"BadRequest"}, {"op": "sum"}),
    "INVALID_VALUE": (C.INVALID_ARGUMENT, in_session(
        lambda s: [s.op("gelu", [h(1)], [2], approximate="bad")]), {"BadRequest"}, {}),
    "INDEX_OUT_OF_RANGE": (C.INVALID_ARGUMENT, in_session(
        lambda s: [s.op("sum", [h(1)], [2], dim=3)]), {"BadRequest"}, {}),
    "LINALG_ERROR": (C.INVALID_ARGUMENT, in_session(  # x x^T = [[1, 2], [2, 4]]: singular
        lambda s: [s.op("outer", [h(1), h(1)], [2]), s.op("linalg_cholesky", [h(2)], [3])]),
        {"BadRequest"}, {"instruction": "1", "op": "linalg_cholesky"}),
    "INVALID_ARGUMENT": (C.INVALID_ARGUMENT, in_session(
        lambda s: [s.op("mul", [h(1), 2.0], [2]), s.backward(2)]),  # non-scalar, no gradient
        {"BadRequest"}, {"instruction": "1"}),
    "INVALID_REQUEST": (C.INVALID_ARGUMENT, in_session(lambda s: [s.create(0, 1.0)]),
                        {"BadRequest"}, {"instruction_kind": "create_tensor"}),
    "NOT_FOUND": (C.NOT_FOUND, _not_found, set(), {}),
    "SESSIONS_EXHAUSTED": (C.RESOURCE_EXHAUSTED, _sessions_exhausted,
                           {"QuotaFailure", "RetryInfo"}, {"limit": "max_sessions"}),
    "MEMORY_PRESSURE": (C.RESOURCE_EXHAUSTED, raising(server_errors.MemoryPressureError(
        "dropped", limit="max_memory")), {"QuotaFailure", "RetryInfo"}, {"limit": "max_memory"}),
    "LIMIT_EXCEEDED": (C.RESOURCE_EXHAUSTED, in_session(
        lambda s: [s.create(2, 1.0)] * 100_001), {"QuotaFailure"}, {"limit": "max_instructions"}),
    "UNAUTHENTICATED": (C.UNAUTHENTICATED, _unauthenticated, set(), {}),
    "DEADLINE_EXCEEDED": (C.DEADLINE_EXCEEDED, raising(server_errors.DeadlineError("late")),
                          set(), {}),
    # a real cancellation ends the call on the client's side first; the status still says so
    "CANCELLED": (C.CANCELLED, raising(server_errors.CancelledError("cancelled")), set(), {}),
    "PREDECESSOR_PENDING": (C.ABORTED, _after(False), set(), {}),
    "PREDECESSOR_FAILED": (C.FAILED_PRECONDITION, _after(True), set(), {}),
    "FAILED_PRECONDITION": (C.FAILED_PRECONDITION,
                            raising(server_errors.PreconditionError("not now")), set(), {}),
    "OUT_OF_MEMORY": (C.RESOURCE_EXHAUSTED, raising(MemoryError()),
                      {"QuotaFailure", "RetryInfo"}, {}),
    "INTERNAL": (C.INTERNAL, raising(ZeroDivisionError("bug")), set(), {}),
}


@pytest.fixture
def ctx(gradserve_session, gradserve_server_factory, monkeypatch, tmp_path):
    return {"session": gradserve_session, "factory": gradserve_server_factory,
            "monkeypatch": monkeypatch, "tmp_path": tmp_path}


@pytest.mark.parametrize("reason", list(CASES))
def test_reason(ctx, reason):
    code, trigger, kinds, metadata = CASES[reason]
    got_code, info, details = trigger(ctx)
    assert (got_code, info.reason) == (code, reason)
    assert set(details) == kinds
    assert metadata.items() <= dict(info.metadata).items()
    if "BadRequest" in details:
        (violation,) = details["BadRequest"].field_violations
        assert violation.field.startswith("instructions[") and violation.reason == reason
    if "QuotaFailure" in details:
        (violation,) = details["QuotaFailure"].violations
        assert violation.subject == metadata.get("limit", violation.subject)
        assert violation.description
    if "RetryInfo" in details:
        assert details["RetryInfo"].retry_delay.seconds >= 1


def test_every_row_has_a_case_and_a_documented_reason():
    reasons = [row.reason for row in server_errors.STATUS_TABLE]
    reasons.append(server_errors.INTERNAL_ROW.reason)
    assert len(set(reasons)) == len(reasons)
    assert set(reasons) == set(CASES)
    documented = dict(re.findall(r"^\| `([A-Z_]+)` \| ([A-Z_]+) \|", DOC.read_text(), re.M))
    assert documented == {r.reason: r.code.name for r in server_errors.STATUS_TABLE} | {
        "INTERNAL": "INTERNAL"}


def test_graph_errors_name_the_node(gradserve_stub):
    from tests.test_server_graph import node, ref, request

    req = request([node("y", "sum", [ref("x")], dim=5)], {"x": [1.0, 2.0]}, ["y"])
    code, info, details = fails(lambda: gradserve_stub.RunGraph(req, timeout=10))
    assert (code, info.reason) == (C.INVALID_ARGUMENT, "INDEX_OUT_OF_RANGE")
    assert dict(info.metadata) == {"node": "y", "op": "sum"}
    assert details["BadRequest"].field_violations[0].field == "graph.nodes[id=y]"


def test_python_client_exposes_the_details(gradserve_server):
    _, port = gradserve_server
    with gc.connect(f"127.0.0.1:{port}") as client:
        torch = client.session()
        x = torch.tensor([1.0, 2.0], requires_grad=True)
        with pytest.raises(RuntimeError) as err:
            (x * 2).backward()
        assert err.value.reason == "INVALID_ARGUMENT"
        # (the backward went on the batch's tape: feature tape_instructions)
        assert err.value.metadata["instruction_kind"] == "tape"
        assert err.value.metadata["op"] == "backward"
        assert err.value.retry_after is None
        # (an in-place write to a leaf made from data is refused by the client at the call, a
        # leaf made by an op by the server)
        y = torch.ones(()).requires_grad_()
        with pytest.raises(RuntimeError) as err:
            y.add_(1.0)
            y.item()
        assert err.value.reason == "INPLACE_CONFLICT"
        client.call("CloseSession", session_pb2.CloseSessionRequest(session_id=torch.id),
                    session_id=torch.id)  # behind the session's back: the server forgets it
        with pytest.raises(gc.NotFoundError) as err:
            (x * 3).sum().item()
        assert err.value.reason == "NOT_FOUND" and err.value.error_details
