"""Errors: the one place a failed call becomes a Python exception.

An error the engine raised comes back as the same built-in type (RuntimeError, ValueError,
TypeError, IndexError) with the same message, so `except RuntimeError` and the message text work
exactly as with torch. The user's file and line that recorded the failing op are attached as an
exception note (shown in tracebacks) and as the attribute `gradserve_origin`. Failures of the
service itself (unknown session, authentication, deadline, transport) raise `GradserveError`
subclasses that name the target.

Every exception from a failed call also carries what the server sent in gRPC's rich error model
(google.rpc.Status): `reason` (ErrorInfo's stable UPPER_SNAKE reason, "" when none came),
`metadata` (ErrorInfo's: op, instruction, node, handle, limit where known), `retry_after` (seconds
from RetryInfo, or None) and `error_details` (every decoded detail message).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2, status_pb2

from gradserve.surface.linalg import LinAlgError
from gradserve.v1 import (
    ERROR_CLASS_METADATA,
    ERROR_TYPE_METADATA,
    FAILED_INSTRUCTION_METADATA,
    FAILED_NODE_METADATA,
    FAILED_TAPE_OP_METADATA,
)

__all__ = ["CancelledError", "DeadlineExceededError", "GradserveError",
           "IncompatibleServerError", "InternalServerError", "NotFoundError", "RemoteError",
           "ReplyTooLargeError", "TracingError", "UnauthenticatedError", "UnavailableError",
           "from_rpc_error"]


class GradserveError(Exception):
    """Base of the errors raised by `gradserve.client` itself."""


class RemoteError(GradserveError):
    """The server refused or failed a call for a reason of its own (not an engine error)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None,
                 error_class: str = "", target: str = ""):
        super().__init__(message)
        self.code = code
        self.error_class = error_class
        self.target = target
        self.reason = ""
        self.metadata: dict[str, str] = {}
        self.retry_after: float | None = None
        self.error_details: tuple[pb_message.Message, ...] = ()


class NotFoundError(RemoteError, LookupError):
    """The session (or a handle) is unknown to the server: closed, expired, or lost."""


class UnauthenticatedError(RemoteError, PermissionError):
    """The server wants a valid bearer token (`connect(..., token=...)`)."""


class DeadlineExceededError(RemoteError, TimeoutError):
    """The call did not finish within its timeout."""


class CancelledError(RemoteError):
    """The call was cancelled: by this client, or because the server is stopping."""


class InternalServerError(RemoteError, RuntimeError):
    """The server failed unexpectedly; details are in its log."""


class UnavailableError(RemoteError, ConnectionError):
    """The server could not be reached (transport failure)."""


class ReplyTooLargeError(GradserveError, RuntimeError):
    """A fetched value was left out of the server's reply: it did not fit its message limit."""


def omitted_error(omitted: Any, shape: Sequence[int], what: str) -> ReplyTooLargeError:
    """The error for reading `what` of a tensor of `shape` whose fetch the server left out
    (`omitted`: a FetchOmitted message)."""
    alone = ("it does not fit even alone: read it in slices, or start the server with a larger "
             "--max-message-bytes" if omitted.bytes >= omitted.max_message_bytes else
             "fetch it in a batch of its own (read it right after computing it), or start the "
             "server with a larger --max-message-bytes")
    return ReplyTooLargeError(
        f"the {what} of the tensor of shape {list(shape)} ({omitted.bytes} bytes) was left out "
        f"of the server's reply, whose message limit is {omitted.max_message_bytes} bytes; "
        f"{alone}")


class IncompatibleServerError(GradserveError):
    """The server speaks a wire protocol this client does not (too old or too new)."""


class TracingError(GradserveError, RuntimeError):
    """A traced function (client.grad) asked for a value, which a trace does not have."""


class MetaMismatchError(GradserveError, AssertionError):
    """The server described an op's result otherwise than the client inferred it (a session
    with `verify_meta`): a bug in `gradserve.surface.meta` or the engine, never the program's."""


# Built-in types an error may be re-raised as: a fixed whitelist, never a lookup by name
# (torch.linalg.LinAlgError, a RuntimeError, is the surface's class).
BUILTINS: dict[str, type[Exception]] = {
    "RuntimeError": RuntimeError, "ValueError": ValueError, "TypeError": TypeError,
    "IndexError": IndexError, "NotImplementedError": NotImplementedError,
    "LinAlgError": LinAlgError, "AttributeError": AttributeError,
}

# Status codes whose errors are the engine's (or a validation's) own: re-raised as built-ins.
_ENGINE_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE})

_BY_CODE: dict[grpc.StatusCode, type[RemoteError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: UnauthenticatedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


def failed_index(err: grpc.RpcError) -> int | None:
    """The failing batch instruction's index from trailing metadata, if the server sent one."""
    value = _trailers(err).get(FAILED_INSTRUCTION_METADATA)
    return int(value) if value is not None and value.isdigit() else None


def failed_tape_op(err: grpc.RpcError) -> int | None:
    """The failing op's index inside the failing instruction (a Tape), if the server sent one."""
    value = _trailers(err).get(FAILED_TAPE_OP_METADATA)
    return int(value) if value is not None and value.isdigit() else None


def failed_node(err: grpc.RpcError) -> str | None:
    """The failing graph node's id (RunGraph), if the server sent one."""
    return _trailers(err).get(FAILED_NODE_METADATA)


def predecessor_pending(err: grpc.RpcError) -> bool:
    """Whether a batch was refused, nothing of it run, because the batch it names in
    after_request_id had not run yet (ABORTED, reason PREDECESSOR_PENDING)."""
    code = err.code() if hasattr(err, "code") else None
    return code is grpc.StatusCode.ABORTED and _rich(err)["reason"] == "PREDECESSOR_PENDING"


# The detail types a gradserve server sends (google/rpc/error_details.proto).
_DETAIL_TYPES: tuple[type[pb_message.Message], ...] = (
    error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.QuotaFailure,
    error_details_pb2.RetryInfo, error_details_pb2.ResourceInfo,
    error_details_pb2.PreconditionFailure)
_RICH_ATTRS = ("reason", "metadata", "retry_after", "error_details")


def _rich(err: Any) -> dict[str, Any]:
    """reason, metadata, retry_after and error_details from `grpc-status-details-bin`."""
    out: dict[str, Any] = {"reason": "", "metadata": {}, "retry_after": None,
                           "error_details": ()}
    try:
        meta = err.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - not every RpcError carries call details
        return out
    raw = next((v for k, v in meta if k == "grpc-status-details-bin"), None)
    if not isinstance(raw, bytes):
        return out
    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except pb_message.DecodeError:
        return out
    details = []
    for packed in status.details:
        for kind in _DETAIL_TYPES:
            if packed.Is(kind.DESCRIPTOR):
                detail = kind()
                packed.Unpack(detail)
                details.append(detail)
                if isinstance(detail, error_details_pb2.ErrorInfo):
                    out["reason"], out["metadata"] = detail.reason, dict(detail.metadata)
                elif isinstance(detail, error_details_pb2.RetryInfo):
                    out["retry_after"] = detail.retry_delay.ToTimedelta().total_seconds()
    out["error_details"] = tuple(details)
    return out


def _trailers(err: Any) -> dict[str, str]:
    try:
        meta = err.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - not every RpcError carries call details
        return {}
    return {k: v for k, v in meta if isinstance(v, str)}


def from_rpc_error(err: grpc.RpcError, target: str,
                   origin: tuple[str, int] | None = None) -> Exception:
    """The exception to raise for a failed call.

    Args:
        err: the grpc error (a grpc.Call).
        target: the server address, named in transport errors.
        origin: (file, line) of the user's code that recorded the failing op, if known.

    Returns:
        A built-in exception for engine errors; a `RemoteError` subclass otherwise; either
        with the rich error attributes (`reason`, `metadata`, `retry_after`, `error_details`).
    """
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else None) or str(err)
    trailers = _trailers(err)
    builtin = BUILTINS.get(trailers.get(ERROR_TYPE_METADATA, ""))
    exc: Exception
    if builtin is not None and code in _ENGINE_CODES:
        exc = builtin(message)
    elif code is grpc.StatusCode.UNAVAILABLE:
        exc = UnavailableError(f"gradserve server at {target} is unavailable: {message}", code,
                               target=target)
    else:
        klass = _BY_CODE.get(code, InternalServerError if code in (
            grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) else RemoteError)
        name = code.name if code is not None else "UNKNOWN"
        exc = klass(f"{message} ({name} from {target})", code,
                    trailers.get(ERROR_CLASS_METADATA, ""), target)
    for attr, value in _rich(err).items():
        setattr(exc, attr, value)
    if origin is not None:
        locate(exc, origin)
    return exc


def locate(exc: BaseException, origin: tuple[str, int]) -> BaseException:
    """Attach the user's line that recorded the failing op to `exc` (a note and an attribute)."""
    file, line = origin
    exc.gradserve_origin = f"{file}:{line}"  # type: ignore[attr-defined]
    add_note(exc, f"gradserve: the failing op was recorded at {file}:{line}")
    return exc


def add_note(exc: BaseException, note: str) -> None:
    """`exc.add_note(note)` (Python 3.11), or the same `__notes__` list on 3.10."""
    notes = getattr(exc, "__notes__", None)
    if notes is None:
        notes = []
        exc.__notes__ = notes  # type: ignore[attr-defined]
    notes.append(note)


def copy_error(exc: BaseException) -> BaseException:
    """A fresh exception of the same type, message and origin (to raise an error again)."""
    try:
        new = type(exc)(*exc.args)
    except Exception:  # noqa: BLE001 - exotic constructors: fall back to the generic type
        new = RuntimeError(str(exc))
    for attr in ("code", "error_class", "target", *_RICH_ATTRS):
        if hasattr(exc, attr):
            setattr(new, attr, getattr(exc, attr))
    for note in getattr(exc, "__notes__", ()):
        add_note(new, note)
    if hasattr(exc, "gradserve_origin"):
        new.gradserve_origin = exc.gradserve_origin  # type: ignore[attr-defined]
    return new


def user_frame(skip_prefixes: Sequence[str]) -> tuple[str, int]:
    """(file, line) of the innermost caller outside the given path prefixes."""
    import sys

    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(tuple(skip_prefixes)):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return ("<unknown>", 0)
    return (frame.f_code.co_filename, frame.f_lineno)
