"""Unparsable request bytes are the caller's mistake: INVALID_ARGUMENT, not INTERNAL.

grpcio answers a request its deserializer cannot parse with INTERNAL ("Exception deserializing
request!"). `GuardedRegistrar` stands in for the grpc.Server while services register (ours,
health and reflection alike) and wraps each method handler's request deserializer once, there:
a parse failure becomes a marker, and the method then aborts with INVALID_ARGUMENT naming the
method, before any servicer code runs. Done at registration rather than by a server
interceptor, so no call runs grpcio's interceptor pipeline on the event loop. The servicer's
plain functions become coroutines that run them on the worker pool (`threaded.threaded`), their
requests parsed there too: the event loop only moves bytes.

Replies a servicer returns already serialized (`bytes`, because it measured them against the
message limit) go out as they are. A method may get a parser of its own instead of its message's
`FromString` (RunGraph's keeps large inputs' data in the request's bytes, `graph_request`).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc

from .errors import Failure, InvalidRequestError
from .threaded import Workers, threaded


class _Malformed:
    """Stands in for a request that did not parse."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's
            return _Malformed(exc)
    return parse


def _failure(method: str, bad: _Malformed) -> Failure:
    reason = str(bad.error)[:200] or type(bad.error).__name__
    return Failure.from_exception(InvalidRequestError(
        f"malformed request: the bytes sent to {method} do not parse as its request "
        f"message ({reason})"))


def _abort(context: grpc.ServicerContext, method: str, bad: _Malformed) -> None:
    _failure(method, bad).abort(context)


async def _abort_async(context: Any, method: str, bad: _Malformed) -> None:
    """`_abort` for an asyncio handler (whose context's `abort` is a coroutine)."""
    failure = _failure(method, bad)
    context.set_trailing_metadata(failure.metadata)
    await context.abort(failure.code, failure.message)


def _passing_bytes(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """`serializer`, except that a reply the servicer already serialized goes out as it is."""
    if serializer is None:
        return None

    def serialize(reply: Any) -> bytes:
        return reply if type(reply) is bytes else serializer(reply)
    return serialize


def _guard(handler: grpc.RpcMethodHandler, method: str, workers: Workers,
           parsers: Mapping[str, Callable[[bytes], Any]],
           inline: Mapping[str, Callable[[bytes, Any], Any]]) -> grpc.RpcMethodHandler:
    parse = _safe(parsers.get(method, handler.request_deserializer))
    serialize = _passing_bytes(handler.response_serializer)
    if handler.unary_unary is not None:
        guarded = _unary(handler.unary_unary, method)
        if not inspect.iscoroutinefunction(guarded):
            # the servicer's: parsed and run on the worker pool, the loop hands it the bytes
            return grpc.unary_unary_rpc_method_handler(
                threaded(guarded, workers, parse, inline.get(method)),
                response_serializer=serialize)
        return grpc.unary_unary_rpc_method_handler(guarded, request_deserializer=parse,
                                                   response_serializer=serialize)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_unary(handler.unary_stream, method),
                                                    request_deserializer=parse,
                                                    response_serializer=serialize)
    inner = handler.stream_unary or handler.stream_stream
    factory = (grpc.stream_unary_rpc_method_handler if handler.stream_unary is not None
               else grpc.stream_stream_rpc_method_handler)
    return factory(_stream(inner, method), request_deserializer=parse,
                   response_serializer=serialize)


def _unary(inner: Callable[..., Any], method: str) -> Callable[..., Any]:
    """`inner` (a function, coroutine function or async generator function of one request),
    aborting with INVALID_ARGUMENT first when its request did not parse."""
    if inspect.isasyncgenfunction(inner):
        async def unary_gen(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, _Malformed):
                await _abort_async(context, method, request)
            async for reply in inner(request, context):
                yield reply
        return unary_gen
    if inspect.iscoroutinefunction(inner):
        async def unary_async(request: Any, context: Any) -> Any:
            if isinstance(request, _Malformed):
                await _abort_async(context, method, request)
            return await inner(request, context)
        return unary_async

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Malformed):
            _abort(context, method, request)
        return inner(request, context)
    return unary


def _stream(inner: Callable[..., Any], method: str) -> Callable[..., Any]:
    """`inner` of a request stream, aborting with INVALID_ARGUMENT at the first request that
    did not parse (asyncio handlers read the stream asynchronously)."""
    if inspect.isasyncgenfunction(inner) or inspect.iscoroutinefunction(inner):
        async def checked_async(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, _Malformed):
                    await _abort_async(context, method, request)
                yield request

        if inspect.isasyncgenfunction(inner):
            async def stream_gen(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
                async for reply in inner(checked_async(requests, context), context):
                    yield reply
            return stream_gen

        async def stream_async(requests: AsyncIterator[Any], context: Any) -> Any:
            return await inner(checked_async(requests, context), context)
        return stream_async

    def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        def checked() -> Iterator[Any]:
            for request in requests:
                if isinstance(request, _Malformed):
                    _abort(context, method, request)
                yield request
        return inner(checked(), context)
    return stream


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose methods' handlers are guarded (each once, then cached)."""

    def __init__(self, inner: grpc.GenericRpcHandler, workers: Workers,
                 parsers: Mapping[str, Callable[[bytes], Any]],
                 inline: Mapping[str, Callable[[bytes, Any], Any]]):
        self._inner = inner
        self._workers = workers
        self._parsers = parsers
        self._inline = inline
        self._cache: dict[int, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._lock = threading.Lock()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        key = id(handler)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = _guard(handler, details.method, self._workers, self._parsers, self._inline)
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
        parsers: full method name ("/package.Service/Method") -> the function that parses its
            request bytes in place of the request message's `FromString`.
        inline: full method name -> what tries its call on the event loop first (`threaded`'s
            `inline`; `inline.InlineRunGraph.attempt`).
    """

    def __init__(self, server: Any, workers: Workers,
                 parsers: Mapping[str, Callable[[bytes], Any]] | None = None,
                 inline: Mapping[str, Callable[[bytes, Any], Any]] | None = None):
        self._server = server
        self._workers = workers
        self._parsers = dict(parsers or {})
        self._inline = dict(inline or {})

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_GuardedGeneric(h, self._workers, self._parsers, self._inline)
                  for h in handlers))

    def add_registered_method_handlers(self, service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(service, {
            name: handler if handler.request_deserializer is None
            else _guard(handler, f"/{service}/{name}", self._workers, self._parsers,
                        self._inline)
            for name, handler in handlers.items()})
