"""Sharing one server between callers: admission of calls, and FIFO run slots for engine work.

- `Admission` counts the calls in progress (health checks are not ours and never counted) and
  refuses a call past `--max-calls`, or past `--max-principal-calls` for one token, at once with
  RESOURCE_EXHAUSTED. `--max-calls` is below `--workers`, so the gRPC pool always has threads
  left for health checks and for the calls it admits: no call queues for a thread.
- `RunSlots` lets at most `--run-slots` calls (one per CPU core by default) execute engine work at
  once. A call holding a slot gives it up every `--run-quantum` seconds when others wait and
  queues again behind them (first come, first served), from inside the engine's interrupt check
  (`service.Call.check`): sixteen heavy calls on two cores then take turns, and a trivial call
  waits a few quanta, not until they finish. Waiting for a slot honours the call's deadline and
  cancellation.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from .auth import ANONYMOUS
from .errors import LimitExceededError

# How often a waiter looks at its deadline and cancellation while queued.
POLL_SECONDS = 0.05


class Admission:
    """Calls in progress, in all and per principal (token); refuses past the caps."""

    def __init__(self, max_calls: int, max_principal_calls: int):
        self.max_calls = max_calls
        self.max_principal_calls = max_principal_calls
        self._lock = threading.Lock()
        self.calls = 0
        self._by_principal: dict[str, int] = {}

    def enter(self, principal: str) -> None:
        """Count a call in.

        Raises:
            LimitExceededError: the server, or this principal, already has its most calls.
        """
        with self._lock:
            if self.calls >= self.max_calls:
                raise LimitExceededError(
                    f"the server is running its maximum of {self.max_calls} calls at once "
                    "(--max-calls); retry shortly", limit="max_calls")
            if principal != ANONYMOUS:
                n = self._by_principal.get(principal, 0)
                if n >= self.max_principal_calls:
                    raise LimitExceededError(
                        f"this token already has {n} calls in progress, its maximum "
                        "(--max-principal-calls); wait for one to finish",
                        limit="max_principal_calls")
                self._by_principal[principal] = n + 1
            self.calls += 1

    def leave(self, principal: str) -> None:
        """Count a call out (once per successful `enter`)."""
        with self._lock:
            self.calls -= 1
            if principal != ANONYMOUS:
                n = self._by_principal.pop(principal) - 1
                if n:
                    self._by_principal[principal] = n


class _Waiter:
    """One queued `RunSlots.acquire`: a lock held until a releasing holder hands it the slot."""

    __slots__ = ("lock", "granted")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.granted = False


class RunSlots:
    """At most `slots` holders at once. Waiters are served first come, first served, in two
    queues: calls that have not yet run a quantum ("fresh": most small calls end within it) go
    before calls that have, so a small call waits for the running calls' next check, not for
    every heavy call's turn; heavy calls take turns among themselves.

    A release hands its slot to the head waiter directly and wakes only that one (waking every
    waiter to let one through cost sixteen clients' calls a context switch each per release).
    """

    def __init__(self, slots: int):
        self._lock = threading.Lock()
        self._free = slots  # slots nobody holds; while any call waits, none is free
        self._fresh: collections.deque[_Waiter] = collections.deque()
        self._queue: collections.deque[_Waiter] = collections.deque()
        # Read without the lock by holders deciding whether to yield (a stale read only delays
        # a yield by one check).
        self.waiting = 0
        self.fresh_waiting = 0

    def acquire(self, check: Callable[[], None], fresh: bool = True) -> None:
        """Take a slot, queueing behind earlier waiters (fresh ones: only behind fresh ones).

        Args:
            check: called every `POLL_SECONDS` while waiting; raises to give up (deadline,
                cancellation), and the waiter leaves the queue.
            fresh: the call has not yet run a quantum.
        """
        with self._lock:
            if self._free > 0:  # then nobody waits: a release hands its slot to a waiter
                self._free -= 1
                return
            me = _Waiter()
            (self._fresh if fresh else self._queue).append(me)
            self._counted()
        try:
            while not me.lock.acquire(timeout=POLL_SECONDS):
                check()
        except BaseException:
            with self._lock:
                if me.granted:  # handed the slot after all: pass it on
                    self._hand_on()
                else:
                    (self._fresh if fresh else self._queue).remove(me)
                    self._counted()
            raise

    def try_acquire(self) -> bool:
        """Take a free slot without waiting: False when none is free (then every slot is held,
        or calls wait for one and a release hands it to them), and nothing is queued."""
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            return False

    def _counted(self) -> None:
        self.fresh_waiting = len(self._fresh)
        self.waiting = self.fresh_waiting + len(self._queue)

    def _hand_on(self) -> None:
        """Give a held slot to the head waiter (fresh ones first), or free it (lock held)."""
        mine = self._fresh or self._queue
        if mine:
            head = mine.popleft()
            self._counted()
            head.granted = True
            head.lock.release()
        else:
            self._free += 1

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self._hand_on()
