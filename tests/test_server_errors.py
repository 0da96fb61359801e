"""Every row of the error table: status code, the engine's message, and the trailing metadata."""

import grpc
import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.server import catalogue
from gradserve.v1 import catalogue_pb2, service_pb2_grpc, session_pb2
from tests.conftest import gradserve_connect, gradserve_error
from tests.reference import torch


def h(n):
    return ("h", n)


def engine_error(fn):
    """The exception the in-process engine raises for the same call."""
    with pytest.raises(ge.errors.EngineError) as info:
        fn()
    return info.value


def failing(session, *instructions):
    with pytest.raises(grpc.RpcError) as info:
        session.run(*instructions)
    return gradserve_error(info)


ENGINE_ROWS = [
    # (id, instructions after creating x=[1., 2.] as handle 1, in-process equivalent, status)
    pytest.param(
        "InvalidArgumentError", lambda s: [s.op("add", [h(1), [1.0, 2.0, 3.0]], [2])],
        lambda x: ge.apply("add", [x, ge.tensor([1.0, 2.0, 3.0])]),
        grpc.StatusCode.INVALID_ARGUMENT, "RuntimeError"),
    ("InvalidArgumentError(reshape)", lambda s: [s.op("reshape", [h(1)], [2], shape=(3,))],
     lambda x: ge.apply("reshape", [x], {"shape": (3,)}),
     grpc.StatusCode.INVALID_ARGUMENT, "RuntimeError"),
    ("InvalidTypeError", lambda s: [s.op("sum", [h(1)], [2], dim="a")],
     lambda x: ge.apply("sum", [x], {"dim": "a"}), grpc.StatusCode.INVALID_ARGUMENT, "TypeError"),
    ("OutOfRangeIndexError", lambda s: [s.op("sum", [h(1)], [2], dim=3)],
     lambda x: ge.apply("sum", [x], {"dim": 3}), grpc.StatusCode.INVALID_ARGUMENT, "IndexError"),
    ("InvalidValueError", lambda s: [s.op("gelu", [h(1)], [2], approximate="bad")],
     lambda x: ge.apply("gelu", [x], {"approximate": "bad"}),
     grpc.StatusCode.INVALID_ARGUMENT, "ValueError"),
    ("UnknownOpError", lambda s: [s.op("no_such_op", [h(1)], [2])],
     lambda x: ge.apply("no_such_op", [x]), grpc.StatusCode.INVALID_ARGUMENT, "ValueError"),
    ("AutogradError", lambda s: [s.op("mul", [h(1), 2.0], [2]), s.backward(2)],
     lambda x: (x * 2.0).sum().backward() if False else ge.tensor(1.0).backward(),
     grpc.StatusCode.FAILED_PRECONDITION, "RuntimeError"),
    ("AllocationLimitError",
     lambda s: [s.op("reshape", [h(1)], [3], shape=(2, 1)),
                s.op("expand", [h(3)], [2], size=(2, 10**12))],
     lambda x: _limited(lambda: ge.apply(
         "expand", [ge.apply("reshape", [x], {"shape": (2, 1)})], {"size": (2, 10**12)})),
     grpc.StatusCode.RESOURCE_EXHAUSTED, "RuntimeError"),
]


def _limited(fn):
    from gradserve.server.config import ServerConfig

    with ge.limits.allocation_limit(ServerConfig().max_tensor_elements):
        return fn()


@pytest.mark.parametrize("name, instructions, in_process, code, builtin", ENGINE_ROWS,
                         ids=[getattr(r, "values", r)[0] for r in ENGINE_ROWS])
def test_engine_error_rows(gradserve_session, name, instructions, in_process, code, builtin):
    name = name.split("(")[0]
    s = gradserve_session
    s.run(s.create(1, [1.0, 2.0]))
    expected = engine_error(lambda: in_process(ge.tensor([1.0, 2.0])))
    assert type(expected).__name__ == name
    got_code, message, meta = failing(s, *instructions(s))
    assert got_code == code
    assert message == str(expected)
    assert meta["gradserve-error-type"] == builtin == expected.builtin_name
    assert meta["gradserve-error-class"] == name
    assert meta["gradserve-failed-instruction"] == str(len(instructions(s)) - 1)


def test_graph_freed_second_backward_matches_torch(gradserve_session):
    s = gradserve_session
    x = torch.tensor(2.0, requires_grad=True)
    y = torch.sin(x * x)
    y.backward()
    with pytest.raises(RuntimeError) as torch_err:
        y.backward()
    s.run(s.create(1, 2.0, requires_grad=True), s.op("mul", [h(1), h(1)], [2]),
          s.op("sin", [h(2)], [3]), s.backward(3))
    code, message, meta = failing(s, s.backward(3))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message == str(torch_err.value)
    assert meta["gradserve-error-class"] == "GraphFreedError"
    # retain_graph keeps it working, as in torch
    s.run(s.create(4, 2.0, requires_grad=True), s.op("sin", [h(4)], [5]),
          s.backward(5, retain_graph=True), s.backward(5))
    assert float(s.grad_of(4)) == pytest.approx(2 * np.cos(2.0), rel=1e-6)


def test_inplace_on_leaf_matches_torch(gradserve_session):
    s = gradserve_session
    x = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError) as torch_err:
        x.add_(1.0)
    s.run(s.create(1, [1.0], requires_grad=True))
    code, message, meta = failing(s, s.inplace("add_", 1, [1.0]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message == str(torch_err.value)
    assert meta["gradserve-error-class"] == "InplaceError"


def test_failed_instruction_index_and_earlier_ones_applied(gradserve_session):
    s = gradserve_session
    code, _, meta = failing(s, s.create(1, 1.0), s.create(2, 2.0), s.op("nope", [h(1)], [3]),
                            s.create(4, 4.0))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert meta["gradserve-failed-instruction"] == "2"
    assert s.describe().tensor_count == 2  # 1 and 2 applied, 3 failed, 4 never ran


def test_unknown_handle_is_not_found(gradserve_session):
    s = gradserve_session
    code, message, meta = failing(s, s.op("neg", [h(99)], [1]))
    assert code == grpc.StatusCode.NOT_FOUND
    assert message == "unknown tensor handle 99 (released or never created)"
    assert meta["gradserve-failed-instruction"] == "0"


def test_released_handle_is_not_found(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, 1.0), s.release(1))
    assert failing(s, s.fetch(1))[0] == grpc.StatusCode.NOT_FOUND


def test_reused_handle_and_handle_zero_are_invalid(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, 1.0))
    code, message, _ = failing(s, s.create(1, 2.0))
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "handle 1 is already in use")
    code, message, _ = failing(s, s.create(0, 2.0))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "start at 1" in message


def test_unknown_session_is_not_found(gradserve_stub):
    req = session_pb2.BatchRequest(session_id="nope")
    with pytest.raises(grpc.RpcError) as info:
        gradserve_stub.ExecuteBatch(req, metadata=(("x-session-id", "nope"),), timeout=10)
    code, message, _ = gradserve_error(info)
    assert code == grpc.StatusCode.NOT_FOUND and "'nope' not found" in message


def test_closed_session_is_not_found(gradserve_session):
    s = gradserve_session
    s.close()
    for call in (s.describe, lambda: s.run(s.create(1, 1.0)), s.close):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_session_id_metadata_must_match(gradserve_session, gradserve_stub):
    s = gradserve_session
    req = session_pb2.BatchRequest(session_id=s.id)
    for metadata, expected in [((), "missing 'x-session-id'"),
                               ((("x-session-id", "other"),), "does not match")]:
        with pytest.raises(grpc.RpcError) as info:
            gradserve_stub.ExecuteBatch(req, metadata=metadata, timeout=10)
        code, message, _ = gradserve_error(info)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and expected in message


def test_deadline_checked_between_instructions(gradserve_session):
    s = gradserve_session
    n = 60000  # ~10 us each: well past the 0.2 s deadline
    batch = [s.create(1, [1.0] * 100)] + [s.op("neg", [h(1)], [2 + i]) for i in range(n)]
    with pytest.raises(grpc.RpcError) as info:
        s.run(*batch, timeout=0.2)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Describe waits for the batch's lock: by then the server has stopped early.
    assert s.describe().tensor_count < n


def test_unexpected_exception_is_internal_without_details(gradserve_server_factory, monkeypatch,
                                                          caplog):
    def broken():
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(catalogue, "list_ops", broken)
    _, port = gradserve_server_factory()
    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    with pytest.raises(grpc.RpcError) as info:
        stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10)
    code, message, meta = gradserve_error(info)
    assert code == grpc.StatusCode.INTERNAL
    assert "secret" not in message and "ZeroDivision" not in message
    assert "gradserve-error-class" not in meta
    assert "secret internals" in caplog.text  # logged on the server side


def test_an_error_quoting_long_input_keeps_its_trailers_under_grpcs_limit():
    """gRPC clients refuse received metadata past 8 KiB at random: a 4096-character message in
    grpc-message and the rich status (8.6 KB) reached the client as RESOURCE_EXHAUSTED "received
    metadata size exceeds soft limit" about once in twenty."""
    from urllib.parse import quote

    from gradserve.server.errors import Failure, InvalidRequestError, Located

    cases = [InvalidRequestError("bad attribute names: " + ", ".join(
                 f"a{i}" for i in range(100_000))),
             InvalidRequestError("\u00e9\n%" * 20_000)]
    for cause in cases:
        failure = Failure.from_exception(Located(cause, node="n" * 10_000, op="o" * 10_000,
                                                 instruction=3))
        size = len(quote(failure.message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")) + sum(
            len(k) + len(v) for k, v in failure.metadata)
        assert size <= 8 * 1024 - 512, size
        assert failure.message.endswith("more characters]")
