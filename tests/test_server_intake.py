"""The intake drops calls whose request is slow to arrive, only while memory is above the limit
(server/intake.py); the HTTP/2 attack it answers is in tests/test_hardening_streams.py."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gradserve.server import errors
from gradserve.server.intake import LARGE_REQUEST, Intake, Shares

INTERVAL, GRACE = 0.01, 0.05


class Aborted(Exception):
    pass


class Context:
    """The part of a grpc.aio servicer context the intake uses; its request arrives when the
    test says."""

    def __init__(self, peer: str = "ipv4:127.0.0.1:1") -> None:
        self.request: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.trailing: tuple = ()
        self.aborted: tuple[grpc.StatusCode, str] | None = None
        self._peer = peer
        self._callbacks: list = []

    def peer(self) -> str:
        return self._peer

    def add_done_callback(self, callback) -> None:
        self._callbacks.append(callback)

    def end(self) -> None:
        """The call is over (its reply read, or the call or connection gone)."""
        for callback in self._callbacks:
            callback(self)

    async def read(self) -> bytes:
        return await self.request

    def set_trailing_metadata(self, metadata: tuple) -> None:
        self.trailing = metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted(details)


def run(test):
    return asyncio.run(asyncio.wait_for(test(), 10))


def make(resident: list[int], released: list[int] | None = None) -> Intake:
    release = (lambda: released.append(1)) if released is not None else None
    return Intake(1000, lambda: resident[0], release, interval=INTERVAL, grace=GRACE)


def test_a_late_request_is_dropped_while_memory_is_above_the_limit():
    async def test():
        released: list[int] = []
        resident = [1001]
        intake = make(resident, released)
        context = Context()
        with pytest.raises(Aborted):
            await intake.read(context)
        code, details = context.aborted
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-memory 1000 bytes" in details and "had not arrived after" in details
        reason = errors.row_of(errors.MemoryPressureError("x")).reason
        assert reason == "MEMORY_PRESSURE" and dict(context.trailing)
        await asyncio.sleep(3 * INTERVAL)
        assert intake.dropped == 1 and released  # freed memory went back to the system
        assert intake._watch is not None  # memory is still above the limit: still watching
        resident[0] = 999
        await asyncio.sleep(3 * INTERVAL)
        assert intake._watch is None  # below the limit, nothing arriving: the watch stopped
    run(test)


def test_a_request_that_arrives_within_the_grace_is_never_dropped():
    async def test():
        intake = make([10**12])
        context = Context()
        asyncio.get_running_loop().call_later(GRACE / 5, context.request.set_result, b"req")
        assert await intake.read(context) == b"req"
        assert intake.dropped == 0
    run(test)


def test_below_the_limit_a_slow_request_is_not_dropped():
    async def test():
        resident = [999]
        intake = make(resident)
        context = Context()
        asyncio.get_running_loop().call_later(10 * GRACE, context.request.set_result, b"slow")
        assert await intake.read(context) == b"slow"
        assert intake.dropped == 0 and context.aborted is None
    run(test)


def test_memory_rising_drops_only_the_late_requests():
    async def test():
        resident = [0]
        intake = make(resident)
        early, late = Context(), Context()
        early_read = asyncio.ensure_future(intake.read(early))
        await asyncio.sleep(2 * GRACE)
        late_read = asyncio.ensure_future(intake.read(late))
        resident[0] = 2000  # the late one has been arriving for less than the grace
        with pytest.raises(Aborted):
            await early_read
        late.request.set_result(b"ok")
        assert await late_read == b"ok"
        assert intake.dropped == 1
    run(test)


def test_a_cancelled_call_is_not_reported_as_dropped():
    async def test():
        intake = make([0])
        context = Context()
        reading = asyncio.ensure_future(intake.read(context))
        await asyncio.sleep(INTERVAL)
        reading.cancel()  # the client cancelled, or its deadline passed
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert context.aborted is None and intake.dropped == 0
        assert not intake._arriving
    run(test)


def test_no_limit_no_watch():
    async def test():
        intake = Intake(0, lambda: 10**12, interval=INTERVAL, grace=GRACE)
        context = Context()
        context.request.set_result(b"x")
        assert await intake.read(context) == b"x"
        assert intake._watch is None
    run(test)


def test_a_connection_with_unread_replies_is_refused_until_it_reads_them():
    async def test():
        intake = Intake(10**12, lambda: 0, connection_replies=100_000)
        first, second = Context("ipv4:10.0.0.1:5"), Context("ipv4:10.0.0.1:5")
        intake.leaving(first, bytes(70_000))
        await intake.admit(Context("ipv4:10.0.0.1:5"), "/s/M")  # 70,000 unread: under
        intake.leaving(second, bytes(70_000))
        refused = Context("ipv4:10.0.0.1:5")
        with pytest.raises(Aborted):
            await intake.admit(refused, "/s/M")
        code, details = refused.aborted
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "this connection has 140000 bytes of replies it has not read" in details
        await intake.admit(Context("ipv4:10.0.0.1:6"), "/s/M")  # another connection
        first.end()
        await intake.admit(Context("ipv4:10.0.0.1:5"), "/s/M")  # read: admitted again
        second.end()
        assert not intake._untaken
    run(test)


def test_small_and_unserialized_replies_are_not_counted():
    async def test():
        intake = Intake(10**12, lambda: 0, connection_replies=1)
        context = Context()
        intake.leaving(context, bytes(1000))
        intake.leaving(context, object())  # a message the transport serializes (health)
        assert not intake._untaken and not context._callbacks
    run(test)


def test_above_the_limit_new_calls_are_refused_but_the_exempt():
    async def test():
        looks = []
        resident = [2000]

        def memory():
            looks.append(1)
            return resident[0]
        intake = Intake(1000, memory, interval=INTERVAL, exempt={"/s/Close"})
        refused = Context()
        with pytest.raises(Aborted):
            await intake.admit(refused, "/s/Run")
        assert "new calls are refused until it falls" in refused.aborted[1]
        await intake.admit(Context(), "/s/Close")
        assert len(looks) == 1  # memory is looked at once per interval
        resident[0] = 500
        await asyncio.sleep(2 * INTERVAL)
        await intake.admit(Context(), "/s/Run")
        assert intake.refused == 1
    run(test)


def test_shares_go_first_come_first_served():
    async def test():
        shares = Shares(10)
        assert await shares.take(6) == 6
        order: list[str] = []

        async def take(name: str, n: int) -> int:
            got = await shares.take(n)
            order.append(name)
            return got
        big = asyncio.ensure_future(take("big", 8))
        await asyncio.sleep(0)
        small = asyncio.ensure_future(take("small", 2))  # fits now, but waits behind big
        await asyncio.sleep(0)
        assert order == [] and shares.held == 6
        shares.give(6)
        assert await big == 8 and await small == 2 and order == ["big", "small"]
    run(test)


def test_a_request_larger_than_the_whole_takes_the_whole():
    async def test():
        shares = Shares(10)
        assert await shares.take(50) == 10 and shares.held == 10
        shares.give(10)
        assert shares.held == 0
    run(test)


def test_a_cancelled_waiter_leaves_the_queue_and_lets_the_next_in():
    async def test():
        shares = Shares(10)
        await shares.take(9)
        first = asyncio.ensure_future(shares.take(5))
        second = asyncio.ensure_future(shares.take(1))
        await asyncio.sleep(0)
        first.cancel()  # the client gave up while waiting
        assert await second == 1 and shares.held == 10
        with pytest.raises(asyncio.CancelledError):
            await first
        shares.give(1)
        shares.give(9)
        assert shares.held == 0 and not shares._queue
    run(test)


def test_large_requests_take_turns_and_a_waiting_one_can_be_dropped():
    async def test():
        intake = Intake(1000, lambda: 2000, interval=INTERVAL, grace=GRACE,
                        large_requests=LARGE_REQUEST)
        assert await intake.turn(Context(), LARGE_REQUEST - 1) == 0  # small: no turn
        taken = await intake.turn(Context(), LARGE_REQUEST)
        assert taken == LARGE_REQUEST
        waiting = Context()
        with pytest.raises(Aborted):  # memory is high: the late waiter is dropped
            await intake.turn(waiting, LARGE_REQUEST)
        assert "waited for its turn among large requests" in waiting.aborted[1]
        intake.done(taken)
        assert intake.shares.held == 0
    run(test)


def test_refusing_has_freed_memory_returned_and_stops_when_memory_falls():
    async def test():
        resident = [2000]

        def release():
            resident[0] = 500  # what the heap kept went back to the system
        intake = Intake(1000, lambda: resident[0], release, interval=INTERVAL)
        with pytest.raises(Aborted):
            await intake.admit(Context(), "/s/Run")  # nothing arrives; memory stays high
        for _ in range(100):
            await asyncio.sleep(INTERVAL)
            if resident[0] == 500 and intake._watch is None:
                break
        await intake.admit(Context(), "/s/Run")
        assert intake.refused == 1
    run(test)


def test_the_default_limit_is_a_share_of_memory_per_process():
    from gradserve.server import intake
    from gradserve.server.app import create_server
    from gradserve.server.config import ServerConfig

    for processes in (1, 3):
        server, _ = create_server(ServerConfig(host="127.0.0.1", port=0, processes=processes))
        try:
            assert server.intake.limit == intake.default_limit() // processes > 0
        finally:
            server.stop(0)
    server, _ = create_server(ServerConfig(host="127.0.0.1", port=0, max_memory=12345))
    try:
        assert server.intake.limit == 12345
    finally:
        server.stop(0)


def test_a_worker_outliving_the_event_loop_drops_its_result_quietly():
    """A call still running when the server stopped past its grace finishes after the event
    loop closed: its worker drops the result (the exception it raised killed the thread: a pool
    of one then never ran another call)."""
    import asyncio
    import threading

    from gradserve.server.threaded import Workers

    workers = Workers(1, "test_outlived")
    release, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        async def start() -> None:
            workers.run(release.wait)  # never awaited: the loop closes first

        asyncio.run(start())
        release.set()

        async def after() -> None:
            await asyncio.wait_for(workers.run(done.set), 30)

        asyncio.run(after())
        assert done.is_set()
        assert errors == []
    finally:
        threading.excepthook = hook
        workers.shutdown()
