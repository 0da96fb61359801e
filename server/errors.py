"""The one place exceptions become gRPC statuses.

`STATUS_TABLE` maps exception classes to status codes; `rpc` wraps every servicer method and
applies it. The status message is the exception's own text (the engine's, which is torch's), and
trailing metadata says which built-in exception type it stands for, which class raised it and,
when known, which batch instruction or graph node failed. Every error also carries gRPC's
standard rich error model (`grpc-status-details-bin`, a google.rpc.Status): an `ErrorInfo` whose
`reason` is the table's third column, plus `BadRequest`, `QuotaFailure` and `RetryInfo` where
they apply (docs/errors.md lists the reasons). Anything not in the table is a bug: it is logged
here and the caller gets INTERNAL with reason INTERNAL and no other details.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

import gradserve.engine as ge
from gradserve.v1 import (
    ERROR_CLASS_METADATA,
    ERROR_TYPE_METADATA,
    FAILED_INSTRUCTION_METADATA,
    FAILED_NODE_METADATA,
    FAILED_TAPE_OP_METADATA,
)

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of errors the server raises itself (not the engine's)."""

    builtin_name = "RuntimeError"


class InvalidRequestError(ServiceError, ValueError):
    """A request is malformed: bad tensor encoding, dangling reference, wrong field."""

    builtin_name = "ValueError"


class NotFoundError(ServiceError, KeyError):
    """An unknown, closed or expired session, or an unknown handle."""

    builtin_name = "KeyError"

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain message
        return str(self.args[0]) if self.args else ""


class LimitExceededError(ServiceError):
    """A request or session would exceed a configured limit."""

    def __init__(self, message: str, *, limit: str = ""):
        super().__init__(message)
        self.limit = limit  # the setting that bounds it (e.g. "max_session_bytes"), if known


class SessionsExhaustedError(LimitExceededError):
    """The server holds its maximum number of sessions; retrying later can succeed."""


class MemoryPressureError(LimitExceededError):
    """The server's memory is above `--max-memory` and the call's request was slow to arrive
    (`intake`); retrying later can succeed."""


class UnauthenticatedError(ServiceError):
    """A call without a valid bearer token."""


class DeadlineError(ServiceError):
    """The request's deadline passed while it was executing."""


class CancelledError(ServiceError):
    """The call ended while it was executing: the client cancelled it or the server is
    stopping."""


class PreconditionError(ServiceError):
    """The request is valid but the session's state does not allow it."""


class PredecessorPendingError(ServiceError):
    """A batch names a predecessor (BatchRequest.after_request_id) that has not run, or is no
    longer remembered: nothing of it ran; send it again once the predecessor's reply came."""


class PredecessorFailedError(PreconditionError):
    """A batch names a predecessor (BatchRequest.after_request_id) that failed: nothing of it
    ran."""


class Located(Exception):
    """An error together with where it happened: a batch instruction (its index and message) or
    a graph node (its id and op)."""

    def __init__(self, cause: BaseException, *, instruction: int | None = None,
                 node: str | None = None, message: Any = None, op: str = "",
                 tape_op: int | None = None):
        super().__init__(str(cause))
        self.cause = cause
        self.instruction = instruction
        self.node = node
        self.message = message  # the failing session_pb2.Instruction, if known
        self.op = op
        self.tape_op = tape_op  # the failing op's index inside a Tape instruction, if any


class Row(NamedTuple):
    """One row of the error table."""

    error: type[BaseException]
    code: grpc.StatusCode
    reason: str  # google.rpc.ErrorInfo.reason: stable, UPPER_SNAKE; documented in docs/errors.md
    retry_after: float | None = None  # seconds: a retry can succeed (google.rpc.RetryInfo)


_C = grpc.StatusCode
# Checked in order: the first class an exception is an instance of decides its status.
STATUS_TABLE: tuple[Row, ...] = (
    Row(ge.errors.AllocationLimitError, _C.RESOURCE_EXHAUSTED, "ALLOCATION_LIMIT"),
    Row(ge.errors.GraphFreedError, _C.FAILED_PRECONDITION, "GRAPH_FREED"),
    Row(ge.errors.InplaceError, _C.FAILED_PRECONDITION, "INPLACE_CONFLICT"),
    Row(ge.errors.AutogradError, _C.FAILED_PRECONDITION, "AUTOGRAD_STATE"),
    Row(ge.errors.UnknownAttributeError, _C.INVALID_ARGUMENT, "UNKNOWN_ATTRIBUTE"),
    Row(ge.errors.UnknownOpError, _C.INVALID_ARGUMENT, "UNKNOWN_OP"),
    Row(ge.errors.InvalidTypeError, _C.INVALID_ARGUMENT, "INVALID_TYPE"),
    Row(ge.errors.InvalidValueError, _C.INVALID_ARGUMENT, "INVALID_VALUE"),
    Row(ge.errors.OutOfRangeIndexError, _C.INVALID_ARGUMENT, "INDEX_OUT_OF_RANGE"),
    Row(ge.errors.LinAlgError, _C.INVALID_ARGUMENT, "LINALG_ERROR"),
    Row(ge.errors.EngineError, _C.INVALID_ARGUMENT, "INVALID_ARGUMENT"),  # shapes, dtypes...
    Row(InvalidRequestError, _C.INVALID_ARGUMENT, "INVALID_REQUEST"),
    Row(NotFoundError, _C.NOT_FOUND, "NOT_FOUND"),
    Row(SessionsExhaustedError, _C.RESOURCE_EXHAUSTED, "SESSIONS_EXHAUSTED", retry_after=1.0),
    Row(MemoryPressureError, _C.RESOURCE_EXHAUSTED, "MEMORY_PRESSURE", retry_after=1.0),
    Row(LimitExceededError, _C.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"),
    Row(UnauthenticatedError, _C.UNAUTHENTICATED, "UNAUTHENTICATED"),
    Row(DeadlineError, _C.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"),
    Row(CancelledError, _C.CANCELLED, "CANCELLED"),
    Row(PredecessorPendingError, _C.ABORTED, "PREDECESSOR_PENDING"),
    Row(PredecessorFailedError, _C.FAILED_PRECONDITION, "PREDECESSOR_FAILED"),
    Row(PreconditionError, _C.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    Row(MemoryError, _C.RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", retry_after=1.0),
)

#: google.rpc.ErrorInfo.domain of every gradserve error.
ERROR_DOMAIN = "gradserve.dev"
#: The row of anything the table does not know (a bug; logged).
INTERNAL_ROW = Row(Exception, _C.INTERNAL, "INTERNAL")


def row_of(exc: BaseException) -> Row:
    """The table's row for `exc` (INTERNAL_ROW when it has none)."""
    for row in STATUS_TABLE:
        if isinstance(exc, row.error):
            return row
    return INTERNAL_ROW


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The status code for `exc` (INTERNAL when the table has no row for it)."""
    return row_of(exc).code


class Failure:
    """A failed call's status, message and trailing metadata, replayable for a retried batch."""

    __slots__ = ("code", "message", "metadata")

    def __init__(self, code: grpc.StatusCode, message: str,
                 metadata: tuple[tuple[str, str | bytes], ...]):
        self.code = code
        self.message = message
        self.metadata = metadata

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        """Translate `exc` through the table; unknown exceptions are logged and hidden."""
        located = exc if isinstance(exc, Located) else None
        cause = located.cause if located else exc
        if isinstance(cause, Failed):
            return cause.failure
        row = row_of(cause)
        metadata: list[tuple[str, str | bytes]] = []
        if row.code is grpc.StatusCode.INTERNAL:
            log.error("internal error", exc_info=cause)
            message = "internal server error (details are in the server's log)"
        else:
            message = "out of memory" if isinstance(cause, MemoryError) else str(cause)
            builtin = getattr(cause, "builtin_name", "RuntimeError")
            metadata += [(ERROR_TYPE_METADATA, builtin),
                         (ERROR_CLASS_METADATA, type(cause).__name__)]
        where = _where(located)
        if located and located.instruction is not None:
            metadata.append((FAILED_INSTRUCTION_METADATA, str(located.instruction)))
        if located and located.node is not None:
            metadata.append((FAILED_NODE_METADATA, where["node"]))
        if located and located.tape_op is not None:
            metadata.append((FAILED_TAPE_OP_METADATA, str(located.tape_op)))
        # the message goes out twice or three times (grpc-message, the rich status's message
        # and a field violation's description): clipped further until the trailers fit
        size = sum(len(k) + len(v) for k, v in metadata)
        for limit in MESSAGE_CLIPS:
            clipped = _clip(message, limit)
            details = rich_status(row, cause, clipped, where).SerializeToString()
            if size + _wire_length(clipped) + len(details) <= MAX_TRAILER_BYTES:
                break
        metadata.append((STATUS_DETAILS_METADATA, details))
        return cls(row.code, clipped, tuple(metadata))

    def abort(self, context: grpc.ServicerContext) -> None:
        """End the call with this failure (raises, as `context.abort` does)."""
        context.set_trailing_metadata(self.metadata)
        context.abort(self.code, self.message)

    async def abort_async(self, context: Any) -> None:
        """`abort` for a grpc.aio context (whose `abort` is a coroutine; raises)."""
        context.set_trailing_metadata(self.metadata)
        await context.abort(self.code, self.message)

#: Trailing metadata key of gRPC's rich error model (a serialized google.rpc.Status).
STATUS_DETAILS_METADATA = "grpc-status-details-bin"
# Instruction fields that name the tensor or optimizer an instruction works on.
_HANDLE_FIELDS = ("handle", "tensor", "target", "optimizer")


def _where(located: Located | None) -> dict[str, str]:
    """What is known of where an error happened, as ErrorInfo metadata (values header-safe)."""
    if located is None:
        return {}
    where: dict[str, str] = {}
    if located.instruction is not None:
        where["instruction"] = str(located.instruction)
    if located.node is not None:
        where["node"] = _header_safe(located.node, MAX_NODE_ID_CHARS)
    msg = located.message
    kind = msg.WhichOneof("kind") if msg is not None else None
    if kind is not None:
        where["instruction_kind"] = kind
        sub = getattr(msg, kind)
        for field in ("op", *_HANDLE_FIELDS):
            if field in sub.DESCRIPTOR.fields_by_name and getattr(sub, field):
                where["op" if field == "op" else "handle"] = str(getattr(sub, field))
                if field != "op":
                    break
    if located.tape_op is not None:
        where["tape_op"] = str(located.tape_op)
    if located.op:
        where["op"] = located.op
    if "op" in where:
        where["op"] = _header_safe(where["op"], MAX_NODE_ID_CHARS)
    return where


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(row: Row, cause: BaseException, message: str,
                where: dict[str, str]) -> status_pb2.Status:
    """The google.rpc.Status for an error: ErrorInfo always, then BadRequest (invalid
    arguments, with the failing instruction or node as the field), QuotaFailure (limits) and
    RetryInfo (rows with `retry_after`)."""
    info = dict(where)
    limit = getattr(cause, "limit", "")
    if limit:
        info["limit"] = limit
    details = [error_details_pb2.ErrorInfo(reason=row.reason, domain=ERROR_DOMAIN,
                                           metadata=info)]
    if row.code is grpc.StatusCode.INVALID_ARGUMENT:
        if "instruction" in where:
            field = f"instructions[{where['instruction']}]"
            if "instruction_kind" in where:
                field += "." + where["instruction_kind"]
            if "tape_op" in where:
                field += f".op[{where['tape_op']}]"
        elif "node" in where:
            field = f"graph.nodes[id={where['node']}]"
        else:
            field = getattr(cause, "field", "")
        if field:
            details.append(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=field, description=message, reason=row.reason)]))
    if row.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        details.append(error_details_pb2.QuotaFailure(violations=[
            error_details_pb2.QuotaFailure.Violation(subject=limit or row.reason.lower(),
                                                     description=message)]))
    if row.retry_after is not None:
        details.append(error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(row.retry_after),
                                              nanos=int(row.retry_after % 1 * 1e9))))
    return status_pb2.Status(code=row.code.value[0], message=message,
                             details=[_pack(d) for d in details])


# Status messages and trailers travel as HTTP/2 headers, which peers cap (16 KiB here): texts
# that quote the caller's input (an 8 MiB node id...) are clipped so the error itself arrives.
MAX_MESSAGE_CHARS = 4096
MAX_NODE_ID_CHARS = 256
# A message is clipped to the first of these that keeps the trailers within MAX_TRAILER_BYTES:
# gRPC clients refuse received metadata past 8 KiB at random (certainly past 16 KiB), and an
# error must arrive as itself, not as RESOURCE_EXHAUSTED "received metadata size exceeds soft
# limit" (a 4096-character message quoted in grpc-message and the rich status made 8.6 KB).
MESSAGE_CLIPS = (MAX_MESSAGE_CHARS, 2048, 1024, 512, 256)
MAX_TRAILER_BYTES = 7 * 1024


def _wire_length(text: str) -> int:
    """Bytes of `text` as grpc-message (percent-encoded UTF-8 outside printable ASCII)."""
    data = text.encode()
    if data.isascii() and "%" not in text and text.isprintable():
        return len(data)
    return sum(1 if 0x20 <= b < 0x7F and b != 0x25 else 3 for b in data)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def _header_safe(text: str, limit: int) -> str:
    """Printable ASCII (metadata values allow nothing else), clipped."""
    escaped = text[:limit].encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in escaped)
    return _clip(escaped, 4 * limit) if len(text) <= limit else escaped + "..."


class Failed(Exception):
    """Raised to replay a stored Failure (a retried batch that failed the first time)."""

    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


Observer = Callable[[str, grpc.StatusCode, float], None]


def rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a servicer method: run the servicer's `before_call` hook (and `after_call` when it
    returned), map exceptions to statuses, report (method, code, seconds) to its `observe`."""

    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        call = None
        try:
            call = self.before_call(context)
            return method(self, request, call)
        except Exception as exc:  # noqa: BLE001 - this is the one place errors are translated
            failure = Failure.from_exception(exc)
            code = failure.code
            failure.abort(context)
        finally:
            if call is not None:
                self.after_call(call)
            self.observe(name, code, time.perf_counter() - start)

    return wrapper
