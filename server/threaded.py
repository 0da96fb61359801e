"""The servicer's plain functions as grpc.aio handlers: each call runs on the worker pool once
its request has arrived, and learns at once of its cancellation.

gRPC's asyncio server reads a request on its event loop, so a client that never finishes
sending one holds no thread (docs/security.md). Its own way to run a plain function, the
`migration_thread_pool`, tells the function nothing until it returns: `add_callback` fires
after the handler, not when the client cancels or the deadline passes. `threaded` instead runs
the function with a `ThreadContext` (the part of grpc.ServicerContext the servicer uses), and
when the call's task is cancelled (client cancel, deadline, server stop) fires the context's
callbacks at once, so the servicer's checks between ops stop the work (`service.Call`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc


class Aborted(Exception):
    """Raised by `ThreadContext.abort` in the worker thread; ends the call with its status."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code
        self.details = details


class ThreadContext:
    """What a handler running on a worker thread may ask of its call (the subset of
    grpc.ServicerContext the servicer uses), safe to use from that thread."""

    __slots__ = ("_metadata", "_deadline", "_callbacks", "_over", "trailing", "admitted")

    def __init__(self, context: Any):
        self._metadata = tuple(context.invocation_metadata() or ())
        remaining = context.time_remaining()
        self._deadline = None if remaining is None else time.monotonic() + remaining
        self._callbacks: list[Callable[[], Any]] = []
        self._over = False
        self.trailing: Sequence[tuple[str, str | bytes]] = ()
        # the call, when it was admitted and begun on the event loop (`inline_batch.Resume`)
        self.admitted: Any = None

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        """Seconds to the call's deadline, None without one."""
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        """Run `callback` when the call ends for any reason; False (not registered) when it
        already has, as grpc.ServicerContext answers."""
        if self._over:
            return False
        self._callbacks.append(callback)
        return True

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailing = tuple(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        """End the call with `code` and `details` (raises, as grpc's abort does)."""
        raise Aborted(code, details)

    def end(self) -> None:
        """The call is over: run the callbacks (on the event loop's thread)."""
        if self._over:
            return
        self._over = True
        for callback in self._callbacks:
            callback()


class Workers:
    """`count` threads running functions for coroutines on an event loop: `run` returns a
    future of the function's result. Leaner than `loop.run_in_executor` (one queue put, one
    `call_soon_threadsafe` back): the hop costs every call."""

    def __init__(self, count: int, name: str):
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
                         for i in range(count)]
        for thread in self._threads:
            thread.start()

    def run(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, function, args))
        return future

    def shutdown(self) -> None:
        """Stop the threads once the jobs queued so far are done (returns at once)."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, function, args = job
            job = None  # nothing of the call outlives it here
            try:
                result, exc = function(*args), None
            except BaseException as error:  # noqa: BLE001 - handed to the awaiting coroutine
                result, exc = None, error
            try:
                loop.call_soon_threadsafe(_settle, future, result, exc)
            except RuntimeError:  # the loop closed while the call ran (the server stopped
                pass  # past its grace): nobody awaits the result any more
            future = function = args = result = exc = None


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():  # the call was cancelled while its function ran
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def threaded(function: Callable[[Any, Any], Any], workers: Workers,
             parse: Callable[[bytes], Any], inline: Any = None) -> Callable[[Any, Any], Any]:
    """A coroutine handler of a request's bytes: `function(parse(data), ThreadContext)`,
    parsing included, on `workers`; or, first, `inline.attempt(data, context)` on the event
    loop (`inline.InlineRunGraph`, `inline_batch.InlineBatch`), whose reply is the call's when
    it is bytes; another object (`inline_batch.Resume`, with its own `context`) is what
    `function` gets instead of the parsed request; None: the call runs on `workers` as without
    `inline`. `inline.leave(context)`, if it has one, runs when the handler ends, however."""
    attempt = None if inline is None else inline.attempt
    leave = getattr(inline, "leave", None)

    def work(data: Any, ctx: ThreadContext) -> tuple[Any, tuple[Any, str] | None]:
        # An abort comes back as its status alone: the exception, with the error it replaced
        # and their tracebacks, would keep the call's frames and its parsed request alive
        # wherever the event loop's side keeps the exception.
        try:
            return function(parse(data) if type(data) is bytes else data, ctx), None
        except Aborted as exc:
            return None, (exc.code, exc.details)

    async def handler(data: bytes, context: Any) -> Any:
        if leave is None:
            return await run(data, context)
        try:
            return await run(data, context)
        finally:
            leave(context)

    async def run(data: Any, context: Any) -> Any:
        ctx = None
        if attempt is not None:
            begun = attempt(data, context)
            if type(begun) is bytes:
                return begun
            if begun is not None:
                data, ctx = begun, begun.context
        if ctx is None:
            ctx = ThreadContext(context)
        try:
            reply, aborted = await workers.run(work, data, ctx)
        finally:
            # also when the task is cancelled (client cancel, deadline, server stop) while the
            # worker still runs: its next check stops it
            ctx.end()
        if aborted is not None:
            await context.abort(aborted[0], aborted[1], trailing_metadata=ctx.trailing)
        if ctx.trailing:
            context.set_trailing_metadata(ctx.trailing)
        return reply

    return handler
