"""The one place exceptions become gRPC statuses.

`STATUS_TABLE` maps exception classes to status codes; `rpc` wraps every servicer method and
applies it. The status message is the exception's own text (the engine's, which is torch's), and
trailing metadata says which built-in exception type it stands for, which class raised it and,
when known, which batch instruction or graph node failed. Anything not in the table is a bug: it
is logged here and the caller gets INTERNAL without details.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

import gradserve.engine as ge
from gradserve.v1 import (
    ERROR_CLASS_METADATA,
    ERROR_TYPE_METADATA,
    FAILED_INSTRUCTION_METADATA,
    FAILED_NODE_METADATA,
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


class UnauthenticatedError(ServiceError):
    """A call without a valid bearer token."""


class DeadlineError(ServiceError):
    """The request's deadline passed while it was executing."""


class CancelledError(ServiceError):
    """The call ended while it was executing: the client cancelled it or the server is
    stopping."""


class PreconditionError(ServiceError):
    """The request is valid but the session's state does not allow it."""


class Located(Exception):
    """An error together with where it happened: a batch instruction index or a graph node id."""

    def __init__(self, cause: BaseException, *, instruction: int | None = None,
                 node: str | None = None):
        super().__init__(str(cause))
        self.cause = cause
        self.instruction = instruction
        self.node = node


# Checked in order: the first class an exception is an instance of decides its status.
STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ge.errors.AllocationLimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ge.errors.AutogradError, grpc.StatusCode.FAILED_PRECONDITION),  # incl. GraphFreed, Inplace
    (ge.errors.EngineError, grpc.StatusCode.INVALID_ARGUMENT),  # argument, value, type, index, op
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (DeadlineError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (CancelledError, grpc.StatusCode.CANCELLED),
    (PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (MemoryError, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The status code for `exc` (INTERNAL when the table has no row for it)."""
    for klass, code in STATUS_TABLE:
        if isinstance(exc, klass):
            return code
    return grpc.StatusCode.INTERNAL


class Failure:
    """A failed call's status, message and trailing metadata, replayable for a retried batch."""

    __slots__ = ("code", "message", "metadata")

    def __init__(self, code: grpc.StatusCode, message: str, metadata: tuple[tuple[str, str], ...]):
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
        code = status_of(cause)
        metadata: list[tuple[str, str]] = []
        if code is grpc.StatusCode.INTERNAL:
            log.error("internal error", exc_info=cause)
            message = "internal server error (details are in the server's log)"
        else:
            message = "out of memory" if isinstance(cause, MemoryError) else str(cause)
            builtin = getattr(cause, "builtin_name", "RuntimeError")
            metadata += [(ERROR_TYPE_METADATA, builtin),
                         (ERROR_CLASS_METADATA, type(cause).__name__)]
        if located and located.instruction is not None:
            metadata.append((FAILED_INSTRUCTION_METADATA, str(located.instruction)))
        if located and located.node is not None:
            metadata.append((FAILED_NODE_METADATA, _header_safe(located.node, MAX_NODE_ID_CHARS)))
        return cls(code, _clip(message, MAX_MESSAGE_CHARS), tuple(metadata))

    def abort(self, context: grpc.ServicerContext) -> None:
        """End the call with this failure (raises, as `context.abort` does)."""
        context.set_trailing_metadata(self.metadata)
        context.abort(self.code, self.message)


# Status messages and trailers travel as HTTP/2 headers, which peers cap (16 KiB here): texts
# that quote the caller's input (an 8 MiB node id...) are clipped so the error itself arrives.
MAX_MESSAGE_CHARS = 4096
MAX_NODE_ID_CHARS = 256


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
