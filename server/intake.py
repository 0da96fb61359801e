"""How a request arrives: read by its call's handler, and dropped under memory pressure when it
is slow to arrive.

gRPC's asyncio server reads a unary request before its handler runs, and holds in memory
whatever part of it has arrived. A client that announces large requests on many streams and
sends most of each, but never the end, makes the server hold all of it: 12 streams sending
50 MiB each grew a server's resident memory by 640 MiB, and memory is the one thing the
stalled streams' defence (no thread until a request has arrived, docs/security.md) does not
bound. So every method is registered as a request-streaming handler (a unary request is a stream
of one message: the bytes on the wire do not change) that reads its request itself through
`Intake.read`. Between a call's start and its request's arrival, the intake knows the call.

`Intake` watches resident memory while requests arrive (every `interval` seconds, only while
some request is arriving). Above `limit` (`--max-memory`) it ends every call whose request has
been arriving for more than `grace` seconds with RESOURCE_EXHAUSTED, frees what they held and
returns it to the system. A small request arrives in well under `grace` and is never dropped,
however high memory is; a large request sent at full speed arrives within it too, unless
hundreds of them share the link at once, when dropping the slowest is what keeps the server up.
Below the limit nothing is dropped, however slow: a large upload over a slow link is legitimate.
Memory can pass the limit by what arrives within one `interval` before the watch acts.

Replies are the other way a client makes the server hold memory: one that never reads (an HTTP/2
window of zero) leaves each reply in the transport, and a 100-byte request can ask for a 64 MiB
reply. A call whose reply has gone to the transport cannot be ended from here (grpc.aio has no
way to cancel a server call), so the intake refuses instead (`admit`, RESOURCE_EXHAUSTED
`MEMORY_PRESSURE`): new calls on a connection that has more than `connection_replies` bytes of
replies not taken, and, while resident memory is above the limit, every new call but those that
free memory or report health (`exempt`). A connection's replies are freed when the client reads
them or the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from .errors import Failure, InvalidRequestError, MemoryPressureError

log = logging.getLogger(__name__)

#: Seconds between two looks at resident memory while requests arrive.
INTERVAL = 0.1
#: Seconds a request may take to arrive before memory pressure can drop its call.
GRACE = 0.25
#: Seconds between two returns of freed memory to the system while memory is above the limit.
RELIEVE_INTERVAL = 1.0
#: The share of the machine's (or the container's) memory `--max-memory` 0 stands for.
DEFAULT_SHARE = 0.8
#: Replies from this size up are counted against their connection until the client takes them.
COUNTED_REPLY = 64 * 1024
#: Requests from this size up wait for their share of `--max-message-bytes` (`Intake.turn`).
LARGE_REQUEST = 1024 * 1024

T = TypeVar("T")


class Intake:
    """Reads requests for their handlers (`read`) and drops slow ones under memory pressure.

    Args:
        limit: resident bytes above which calls whose request is arriving for more than
            `grace` seconds are dropped; 0 drops none.
        memory: the process's resident bytes now (None when unknown).
        release: called after a drop, off the event loop, to return freed memory to the
            system.
        interval: seconds between two looks at memory while requests arrive.
        grace: seconds a request may take to arrive before it can be dropped.
        connection_replies: bytes of replies a connection may leave untaken before its new
            calls are refused (0: no bound).
        exempt: full method names never refused for memory (they free memory or report health).
        large_requests: bytes of large requests (`LARGE_REQUEST` and up) parsed and run at once
            (`turn`); 0: no bound.
    """

    def __init__(self, limit: int, memory: Callable[[], int | None],
                 release: Callable[[], Any] | None = None, interval: float = INTERVAL,
                 grace: float = GRACE, connection_replies: int = 0,
                 exempt: Collection[str] = (), large_requests: int = 0):
        self.limit = limit
        self.connection_replies = connection_replies
        self.exempt = frozenset(exempt)
        self.shares = Shares(large_requests) if large_requests else None
        self.dropped = 0
        self.refused = 0
        self._memory = memory
        self._release = release
        self._interval = interval
        self._grace = grace
        self._arriving: dict[asyncio.Task[Any], float] = {}  # call's task -> when it started
        self._dropping: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._untaken: dict[str, int] = {}  # connection (peer) -> bytes of replies not taken
        self._resident: int | None = None
        self._sampled = -1.0  # monotonic time of the last look at memory

    def pressure(self) -> bool:
        """Whether resident memory is above the limit (looked at no more than every
        `interval` seconds: reading it costs ~6 us)."""
        if not self.limit:
            return False
        now = time.monotonic()
        if now - self._sampled >= self._interval:
            self._resident = self._memory()
            self._sampled = now
        return self._resident is not None and self._resident > self.limit

    async def admit(self, context: Any, method: str) -> None:
        """Refuse the call (RESOURCE_EXHAUSTED, ending it) when its connection has too many
        bytes of replies not taken, or memory is above the limit and `method` is not exempt."""
        if self._untaken:
            held = self._untaken.get(context.peer(), 0)
            if held > self.connection_replies:
                await self._refuse(context, f"this connection has {held} bytes of replies it "
                                   f"has not read (at most {self.connection_replies}): read them "
                                   "before calling again", "connection_replies")
        if method not in self.exempt and self.pressure():
            self._watched()  # which has freed memory returned, so refusing ends with the pressure
            await self._refuse(context, f"the server's memory is above its limit (--max-memory "
                               f"{self.limit} bytes): new calls are refused until it falls; "
                               "retry later", "max_memory")

    async def _refuse(self, context: Any, message: str, limit: str) -> None:
        self.refused += 1
        await Failure.from_exception(MemoryPressureError(message, limit=limit)).abort_async(
            context)

    def leaving(self, context: Any, reply: Any) -> None:
        """The call's `reply` goes to the transport: a large one counts against its connection
        until the call ends (the client has read it, or the call or connection is gone)."""
        if not self.connection_replies or type(reply) is not bytes or len(reply) < COUNTED_REPLY:
            return
        peer = context.peer()
        self._untaken[peer] = self._untaken.get(peer, 0) + len(reply)
        context.add_done_callback(functools.partial(self._taken, peer, len(reply)))

    def _taken(self, peer: str, nbytes: int, context: Any) -> None:
        left = self._untaken.pop(peer, 0) - nbytes
        if left > 0:
            self._untaken[peer] = left

    async def read(self, context: Any) -> Any:
        """The call's next request message (its raw bytes), or `grpc.aio.EOF` when the client
        has sent its last. Ends the call with RESOURCE_EXHAUSTED when memory pressure drops it
        while the message arrives."""
        if not self.limit:
            return await context.read()
        return await self._droppable(context, context.read(), "had not arrived after")

    async def turn(self, context: Any, nbytes: int) -> int:
        """Wait until a request of `nbytes` may be parsed and run: requests of `LARGE_REQUEST`
        bytes or more share `shares` first come, first served (parsing a message can take ~20
        times its size: 10M two-byte instructions, 19 MiB, took 434 MiB). Returns the bytes to
        `done` after the call; memory pressure drops the call while it waits."""
        if self.shares is None or nbytes < LARGE_REQUEST:
            return 0
        wait = self.shares.take(nbytes)
        if not self.limit:
            return await wait
        return await self._droppable(context, wait, "had waited for its turn among large "
                                     "requests for")

    def done(self, taken: int) -> None:
        """A call that `turn` let through has ended."""
        if taken:
            assert self.shares is not None
            self.shares.give(taken)

    async def _droppable(self, context: Any, waiting: Awaitable[T], what: str) -> T:
        """`await waiting`, with the call known as arriving: memory pressure may drop it."""
        task = asyncio.current_task()
        if task is None:
            return await waiting
        self._arriving[task] = time.monotonic()
        self._watched()
        try:
            return await waiting
        except asyncio.CancelledError:
            if task not in self._dropping:
                raise  # the client cancelled, the deadline passed or the server stops
            self._dropping.discard(task)
            seconds = time.monotonic() - self._arriving[task]
        finally:
            self._arriving.pop(task, None)
        await Failure.from_exception(MemoryPressureError(
            f"the server's memory is above its limit (--max-memory {self.limit} bytes) and "
            f"this call's request {what} {seconds:.2f}s: dropped; retry later or send smaller "
            "requests", limit="max_memory")).abort_async(context)
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    async def close(self) -> None:
        """Stop watching memory (the server stops)."""
        watch = self._watch
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    def _watched(self) -> None:
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watching())

    async def _watching(self) -> None:
        """While requests arrive, or memory is above the limit: look at memory every interval;
        above the limit, drop the calls whose request is late and have freed memory returned to
        the system (at most every `RELIEVE_INTERVAL` seconds: freed memory a heap keeps would
        otherwise keep the server refusing after the pressure is gone)."""
        loop = asyncio.get_running_loop()
        over = self.pressure()
        relieved = -RELIEVE_INTERVAL
        try:
            while self._arriving or over:
                await asyncio.sleep(self._interval)
                self._resident = resident = self._memory()
                self._sampled = now = time.monotonic()
                over = resident is not None and resident > self.limit
                if not over:
                    continue
                late = [task for task, began in self._arriving.items()
                        if now - began >= self._grace and task not in self._dropping]
                for task in late:
                    self._dropping.add(task)
                    task.cancel()
                if late:
                    self.dropped += len(late)
                    log.warning("resident memory %d bytes is above --max-memory %d: dropped %d "
                                "call(s) whose request was still arriving", resident, self.limit,
                                len(late))
                if self._release is not None and (late or now - relieved >= RELIEVE_INTERVAL):
                    await asyncio.sleep(0)  # the dropped calls let go of their bytes first
                    await loop.run_in_executor(None, self._release)
                    relieved = time.monotonic()
                    self._sampled = -1.0  # the next admission looks again
        finally:
            self._watch = None


class Shares:
    """`total` bytes shared by coroutines first come, first served: `take(n)` waits until `n`
    (at most `total`) fit beside what others hold and no one waits ahead; `give(n)` returns
    them."""

    def __init__(self, total: int):
        self.total = total
        self.held = 0
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, nbytes: int) -> int:
        """Wait for `nbytes` (at most `total`); returns what to `give` back."""
        nbytes = min(nbytes, self.total)
        if not self._queue and self.held + nbytes <= self.total:
            self.held += nbytes
            return nbytes
        entry = (nbytes, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry[1].done() and not entry[1].cancelled():
                self.give(nbytes)  # granted as the waiter was cancelled
            elif entry in self._queue:
                self._queue.remove(entry)
                self._grant()  # the next may fit now
            raise
        return nbytes

    def give(self, nbytes: int) -> None:
        self.held -= nbytes
        self._grant()

    def _grant(self) -> None:
        while self._queue:
            nbytes, future = self._queue[0]
            if future.cancelled():
                self._queue.popleft()
                continue
            if self.held + nbytes > self.total:
                return
            self._queue.popleft()
            self.held += nbytes
            future.set_result(None)


def default_limit() -> int:
    """`DEFAULT_SHARE` of the memory this process may use: the smaller of the machine's and its
    cgroup's limit (Linux); 0 (no limit) where neither can be read."""
    limits = [n for n in (_meminfo_total(), _cgroup_limit()) if n]
    return int(min(limits) * DEFAULT_SHARE) if limits else 0


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max",  # cgroup v2
                 "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # v1
        try:
            with open(path, "rb") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "no limit" with a huge number
            return int(text)
    return None


async def abort_missing(context: Any, method: str) -> None:
    """End a call whose client half-closed without sending its request."""
    await Failure.from_exception(InvalidRequestError(
        f"malformed request: the call to {method} ended before its request message arrived"
    )).abort_async(context)

