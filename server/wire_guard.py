"""Unparsable request bytes are the caller's mistake: INVALID_ARGUMENT, not INTERNAL.

grpcio answers a request its deserializer cannot parse with INTERNAL ("Exception deserializing
request!"). `GuardedRegistrar` stands in for the grpc.Server while services register (ours,
health and reflection alike) and wraps each method handler's request deserializer once, there:
a parse failure becomes a marker, and the method then aborts with INVALID_ARGUMENT naming the
method, before any servicer code runs. The message adds, after protobuf's own text, where the
bytes stop being protobuf (`wire_diagnosis`: the byte offset, the field's path, what is wrong),
and google.rpc.BadRequest names that field. Done at registration rather than by a server
interceptor, so no call runs grpcio's interceptor pipeline on the event loop. Every method is
registered as a request-streaming handler of raw bytes that reads its request itself through
the `intake.Intake` (the same bytes on the wire: a unary request is a stream of one message), so
a call is known while its request arrives and memory pressure can drop it (`intake`). The
servicer's plain functions become coroutines that run them on the worker pool
(`threaded.threaded`), their requests parsed there too: the event loop only moves bytes.

Replies a servicer returns already serialized (`bytes`, because it measured them against the
message limit) go out as they are. A method may get a parser of its own instead of its message's
`FromString` (RunGraph's keeps large inputs' data in the request's bytes, `graph_request`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import grpc

from . import wire_diagnosis
from .errors import Failure, InvalidRequestError, LimitExceededError
from .intake import Intake, abort_missing
from .threaded import Workers, threaded

log = logging.getLogger(__name__)

#: Largest request of a method run on the event loop (health, reflection): their requests are a
#: name or two, and are parsed on the loop; a Watch keeps its request for as long as it runs.
LOOP_REQUEST_BYTES = 64 * 1024


class _Malformed:
    """Stands in for a request that did not parse: protobuf's error, and where the bytes stop
    being protobuf when `wire_diagnosis` finds it."""

    __slots__ = ("error", "fault")

    def __init__(self, error: BaseException, fault: wire_diagnosis.Fault | None = None):
        self.error = error
        self.fault = fault


def _safe(deserializer: Callable[[bytes], Any], descriptor: Any = None
          ) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's
            return _Malformed(exc, _diagnose(data, descriptor))
    return parse


def _diagnose(data: bytes, descriptor: Any) -> wire_diagnosis.Fault | None:
    if descriptor is None:
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a worker thread
        budget = wire_diagnosis.MAX_FIELDS
    else:  # the event loop: a short walk only
        budget = wire_diagnosis.LOOP_FIELDS
    try:
        return wire_diagnosis.diagnose(data, descriptor, budget)
    except Exception:  # noqa: BLE001 - a hint only: protobuf's own text still says it all
        log.exception("diagnosing a malformed request failed")
        return None


def _identity(data: bytes) -> bytes:
    return data


def _failure(method: str, bad: _Malformed) -> Failure:
    reason = str(bad.error)[:200] or type(bad.error).__name__
    where = f": {bad.fault}" if bad.fault is not None else ""
    error = InvalidRequestError(
        f"malformed request: the bytes sent to {method} do not parse as its request "
        f"message ({reason}){where}")
    if bad.fault is not None:
        error.field = bad.fault.field  # google.rpc.BadRequest names it (errors.rich_status)
    return Failure.from_exception(error)


def _abort(context: grpc.ServicerContext, method: str, bad: _Malformed) -> None:
    _failure(method, bad).abort(context)


async def _abort_async(context: Any, method: str, bad: _Malformed) -> None:
    """`_abort` for an asyncio handler (whose context's `abort` is a coroutine)."""
    await _failure(method, bad).abort_async(context)


def _passing_bytes(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """`serializer`, except that a reply the servicer already serialized goes out as it is."""
    if serializer is None:
        return None

    def serialize(reply: Any) -> bytes:
        return reply if type(reply) is bytes else serializer(reply)
    return serialize


def _guard(handler: grpc.RpcMethodHandler, method: str, workers: Workers,
           parsers: Mapping[str, Callable[[bytes], Any]], intake: Intake,
           inline: Mapping[str, Any]) -> grpc.RpcMethodHandler:
    """`handler` as a request-streaming handler of raw bytes that reads its requests through
    `intake` and parses them itself (a unary request is a stream of one message on the wire)."""
    request_type = getattr(handler.request_deserializer, "__self__", None)
    parse = _safe(parsers.get(method, handler.request_deserializer) or _identity,
                  getattr(request_type, "DESCRIPTOR", None))
    serialize = _passing_bytes(handler.response_serializer)
    inner = (handler.unary_unary or handler.unary_stream or handler.stream_unary
             or handler.stream_stream)
    if handler.unary_unary is not None and not (inspect.iscoroutinefunction(inner)
                                                or inspect.isasyncgenfunction(inner)):
        # the servicer's: parsed and run on the worker pool, the loop hands it the bytes
        run = threaded(_unary(inner, method), workers, parse, inline.get(method))

        async def unary_threaded(requests: Any, context: Any) -> Any:
            data = await _request(intake, context, method)
            taken = await intake.turn(context, len(data))
            try:
                reply = await run(data, context)
            finally:
                intake.done(taken)
            intake.leaving(context, reply)
            return reply
        return grpc.stream_unary_rpc_method_handler(unary_threaded,
                                                    response_serializer=serialize)
    if not (inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)):
        raise TypeError(f"{method}: only unary-unary methods may be plain functions here "
                        "(the others run on the event loop: coroutines or async generators)")
    if handler.unary_unary is not None:
        async def unary_async(requests: Any, context: Any) -> Any:
            request = await _parsed(intake, context, method, parse)
            return await inner(request, context)
        return grpc.stream_unary_rpc_method_handler(unary_async, response_serializer=serialize)
    if handler.unary_stream is not None:
        if inspect.iscoroutinefunction(inner):
            # it writes its replies itself (`context.write`: health's Watch)
            async def unary_writer(requests: Any, context: Any) -> None:
                request = await _parsed(intake, context, method, parse)
                await inner(request, context)
            return grpc.stream_stream_rpc_method_handler(unary_writer,
                                                         response_serializer=serialize)

        async def unary_gen(requests: Any, context: Any) -> AsyncIterator[Any]:
            request = await _parsed(intake, context, method, parse)
            async for reply in inner(request, context):
                yield reply
        return grpc.stream_stream_rpc_method_handler(unary_gen, response_serializer=serialize)

    async def each(context: Any) -> AsyncIterator[Any]:
        await intake.admit(context, method)
        while True:
            data = await intake.read(context)
            if data is grpc.aio.EOF:
                return
            await _small(data, context, method)
            yield await _checked(parse(data), context, method)

    if handler.stream_unary is not None:
        async def stream_async(requests: Any, context: Any) -> Any:
            return await inner(each(context), context)
        return grpc.stream_unary_rpc_method_handler(stream_async, response_serializer=serialize)

    async def stream_gen(requests: Any, context: Any) -> AsyncIterator[Any]:
        async for reply in inner(each(context), context):
            yield reply
    return grpc.stream_stream_rpc_method_handler(stream_gen, response_serializer=serialize)


async def _request(intake: Intake, context: Any, method: str) -> bytes:
    """A unary call's request bytes, read through `intake` once it admits the call."""
    await intake.admit(context, method)
    data = await intake.read(context)
    if data is grpc.aio.EOF:
        await abort_missing(context, method)
    return data  # type: ignore[no-any-return]


async def _checked(request: Any, context: Any, method: str) -> Any:
    if isinstance(request, _Malformed):
        await _abort_async(context, method, request)
    return request


async def _small(data: bytes, context: Any, method: str) -> None:
    """End the call (RESOURCE_EXHAUSTED) when `data`, a request to parse on the event loop, is
    above `LOOP_REQUEST_BYTES`."""
    if len(data) > LOOP_REQUEST_BYTES:
        await Failure.from_exception(LimitExceededError(
            f"a request to {method} may have at most {LOOP_REQUEST_BYTES} bytes; this one has "
            f"{len(data)}", limit="loop_request_bytes")).abort_async(context)


async def _parsed(intake: Intake, context: Any, method: str,
                  parse: Callable[[bytes], Any]) -> Any:
    """A unary call's request, read through `intake` and parsed on the event loop (at most
    `LOOP_REQUEST_BYTES`)."""
    data = await _request(intake, context, method)
    await _small(data, context, method)
    return await _checked(parse(data), context, method)


def _unary(inner: Callable[..., Any], method: str) -> Callable[..., Any]:
    """The plain function `inner` of one request, aborting with INVALID_ARGUMENT first when its
    request did not parse."""
    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Malformed):
            _abort(context, method, request)
        return inner(request, context)
    return unary


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose methods' handlers are guarded (each once, then cached)."""

    def __init__(self, inner: grpc.GenericRpcHandler, workers: Workers,
                 parsers: Mapping[str, Callable[[bytes], Any]], intake: Intake,
                 inline: Mapping[str, Any]):
        self._inner = inner
        self._workers = workers
        self._parsers = parsers
        self._intake = intake
        self._inline = inline
        self._cache: dict[int, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._lock = threading.Lock()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(details)
        if handler is None:
            return None
        key = id(handler)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = _guard(handler, details.method, self._workers, self._parsers, self._intake,
                         self._inline)
        with self._lock:
            self._cache[key] = (handler, guarded)  # keeps `handler` alive, so ids stay unique
        return guarded


class GuardedRegistrar:
    """Pass this instead of the grpc.aio.Server to `add_*_to_server` functions: what they
    register reaches `server` with parse failures mapped to INVALID_ARGUMENT (see the module
    doc), and plain unary functions (the servicer's) run on `workers` (`threaded`).

    Args:
        server: the server to register with.
        workers: the threads that parse and run plain unary methods.
        intake: reads every request (memory pressure drops calls whose request is slow).
        inline: full method name -> what tries its call on the event loop first (`threaded`'s
            `inline`: `inline.InlineRunGraph`, `inline_batch.InlineBatch`).
        parsers: full method name ("/package.Service/Method") -> the function that parses its
            request bytes in place of the request message's `FromString`.
    """

    def __init__(self, server: Any, workers: Workers, intake: Intake,
                 parsers: Mapping[str, Callable[[bytes], Any]] | None = None,
                 inline: Mapping[str, Any] | None = None):
        self._server = server
        self._workers = workers
        self._intake = intake
        self._parsers = dict(parsers or {})
        self._inline = dict(inline or {})

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(
            _GuardedGeneric(h, self._workers, self._parsers, self._intake, self._inline)
            for h in handlers))

    def add_registered_method_handlers(self, service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(service, {
            name: _guard(handler, f"/{service}/{name}", self._workers, self._parsers,
                         self._intake, self._inline)
            for name, handler in handlers.items()})
