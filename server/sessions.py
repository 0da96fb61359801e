"""Sessions: tensors and optimizers under client-chosen handles, with their locks and limits.

One lock per session serializes its calls; different sessions run in parallel. A reaper thread
closes sessions idle longer than their TTL. Waiting for a session's lock is bounded: by the
call's deadline and cancellation, and by `--max-session-waiters` calls waiting at once.

Session ids live in a namespace per identity (token): the store is keyed by (owner, id), so one
token's ids are invisible to another, which may create a session under the very same id (its
own) and is answered exactly as for a fresh id.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import gradserve.engine as ge
from gradserve.engine import teardown
from gradserve.v1 import session_pb2

from .auth import ANONYMOUS
from .config import ServerConfig
from .errors import (
    Failure,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    PredecessorFailedError,
    PredecessorPendingError,
    SessionsExhaustedError,
)

# How often a call waiting for a session's lock looks at its deadline and cancellation.
LOCK_POLL_SECONDS = 0.05

log = logging.getLogger(__name__)

# A remembered reply's fixed cost besides its serialized size and its key: the dict entry, the
# key's str object and the (outcome, size) tuple.
REMEMBERED_ENTRY_BYTES = 256
# The longest request_id a batch may carry: ids are remembered (see `Session.remember`), so
# their size must be bounded; a UUID's hex is 32 characters.
MAX_REQUEST_ID = 128


@dataclasses.dataclass(frozen=True)
class Limits:
    """Effective limits of one session."""

    max_bytes: int
    max_tensor_elements: int
    max_instructions: int
    max_handles: int

    def to_proto(self) -> session_pb2.SessionLimits:
        return session_pb2.SessionLimits(
            max_bytes=self.max_bytes, max_tensor_elements=self.max_tensor_elements,
            max_instructions=self.max_instructions, max_handles=self.max_handles)


def _lower(requested: int, server_max: int) -> int:
    """A client may lower a limit, never raise it; 0 means the server's value."""
    return server_max if requested <= 0 else min(requested, server_max)


def effective_limits(requested: session_pb2.SessionLimits, config: ServerConfig) -> Limits:
    """The limits a new session gets from its request and the server's settings."""
    return Limits(
        max_bytes=_lower(requested.max_bytes, config.max_session_bytes),
        max_tensor_elements=_lower(requested.max_tensor_elements, config.max_tensor_elements),
        max_instructions=_lower(requested.max_instructions, config.max_instructions),
        max_handles=_lower(requested.max_handles, config.max_handles))


class Session:
    """One client's server-side state."""

    def __init__(self, session_id: str, owner: str, limits: Limits, ttl: float,
                 seed: int | None, clock: Callable[[], float]):
        self.id = session_id
        self.owner = owner
        self.limits = limits
        self.ttl = ttl
        self.lock = threading.Lock()
        self.waiters = 0  # calls waiting for `lock` (changed under the store's lock)
        self.tensors: dict[int, ge.Tensor] = {}
        self.optimizers: dict[int, Any] = {}
        self.generator = make_generator(seed)  # the default one (handle 0 on the wire)
        self.generators: dict[int, Any] = {}  # torch.Generator() objects, by client handle
        self.closed = False
        self.clock = clock
        self.last_used = clock()
        # request_id -> (stored outcome, its size in bytes), oldest first
        self.recent: collections.OrderedDict[str, tuple[Any, int]] = collections.OrderedDict()
        self.recent_bytes = 0
        # the request id of the last batch that ran ("" if it had none) and whether it
        # succeeded: what BatchRequest.after_request_id is checked against (`check_after`)
        self.last_batch = ""
        self.last_batch_ok = False
        # bytes as of the last exact measurement plus the estimates since, an upper bound (see
        # batch.ByteBudget)
        self.measured_bytes = 0
        self.saved_bytes = 0
        # backward passes waiting for the client's custom Function backward (server/functions.py)
        self.suspended: list[Any] = []
        self.dropped_functions: list[int] = []  # their nodes are gone: reported, then cleared
        self.hooks: dict[int, Any] = {}  # client hook id -> engine RemovableHandle
        # unpack hook id -> weakref to the node whose saved tensors the client packed: reported
        # dropped when a pass frees them (server/functions.py `drop_freed_packs`)
        self.packed_nodes: dict[int, Any] = {}

    def idle_seconds(self) -> float:
        return max(0.0, self.clock() - self.last_used)

    def touch(self) -> None:
        self.last_used = self.clock()

    def handle_count(self) -> int:
        return len(self.tensors) + len(self.optimizers) + len(self.generators)

    def measure(self) -> tuple[int, int]:
        """(bytes the session keeps alive, of which bytes of arrays saved for backward).

        The first is the session's memory as far as it can be counted: the data of its tensors
        and their grads (each array once, by the array that owns the memory), `TENSOR_BYTES`
        per tensor object, the graphs behind the tensors and behind their grads (`NODE_BYTES`
        per node, each once, AccumulateGrad included) with the tensors and arrays those graphs
        save, optimizers' parameters and state, remembered replies with their keys, the
        gradients of backward passes suspended at custom Functions (server/functions.py),
        `GENERATOR_BYTES` per generator, and `DROPPED_ID_BYTES` per id of a dropped function
        no reply has reported yet.
        """
        arrays: dict[int, int] = {}  # a suspended pass's numpy gradients, by owning array
        fp = ge.autograd.footprint(self._roots(arrays))
        return (fp.nbytes + sum(arrays.values()) + self.recent_bytes
                + GENERATOR_BYTES * len(self.generators)
                + DROPPED_ID_BYTES * len(self.dropped_functions), fp.saved)

    def _roots(self, arrays: dict[int, int]) -> Iterator[ge.Tensor]:
        yield from self.tensors.values()
        for opt in self.optimizers.values():
            yield from _optimizer_tensors(opt)
        for suspended in self.suspended:
            for g in suspended.gradients():
                if isinstance(g, ge.Tensor):
                    yield g
                elif isinstance(g, np.ndarray):
                    base = g if g.base is None else g.base
                    arrays[id(base)] = base.nbytes

    def remember(self, request_id: str, outcome: Any, size: int, window: int,
                 max_bytes: int) -> None:
        """Keep a batch's outcome for replay, evicting the oldest past the window."""
        size += len(request_id) + REMEMBERED_ENTRY_BYTES
        if size > max_bytes:
            return
        self.recent[request_id] = (outcome, size)
        self.recent_bytes += size
        self.measured_bytes += size
        while len(self.recent) > window or self.recent_bytes > max_bytes:
            _, (_, old) = self.recent.popitem(last=False)
            self.recent_bytes -= old

    def ran(self, request_id: str, ok: bool) -> None:
        """Note the batch that just ran (its request id, "" when none) and whether it
        succeeded."""
        self.last_batch, self.last_batch_ok = request_id, ok

    def check_after(self, after: str) -> None:
        """Check that the batch with request id `after` (a batch's after_request_id) ran on
        this session and succeeded: it is the last batch that ran, or a remembered one.

        Raises:
            PredecessorPendingError: it has not run, or is no longer remembered.
            PredecessorFailedError: it failed.
        """
        if after == self.last_batch:
            ok = self.last_batch_ok
        else:
            entry = self.recent.get(after)
            if entry is None:
                raise PredecessorPendingError(
                    f"the batch this one follows (request_id {after!r}) has not run on this "
                    "session, or is no longer remembered: nothing of this batch ran; send it "
                    "again once that batch's reply has come")
            ok = not isinstance(entry[0], Failure)
        if not ok:
            raise PredecessorFailedError(
                f"the batch this one follows (request_id {after!r}) failed: nothing of this "
                "batch ran")

    def clear(self) -> None:
        """Drop everything the session holds."""
        self.closed = True
        # its graphs freed in steps (engine.teardown), not in one cascade that holds the GIL
        held = list(self.tensors.values())
        self.tensors.clear()
        teardown.drop(held)
        self.optimizers.clear()
        self.generators.clear()
        self.recent.clear()
        self.recent_bytes = 0


def quiet_grad(t: ge.Tensor) -> ge.Tensor | None:
    """`t.grad` without torch's warning about reading a non-leaf's grad (the client warns)."""
    if t.grad_fn is not None and not t.retains_grad:
        return None
    return t.grad


def _optimizer_tensors(opt: Any) -> Iterator[ge.Tensor]:
    """An optimizer's parameters (it keeps them alive even when no handle names them) and the
    tensors of its state (momentum buffers, running averages)."""
    for group in getattr(opt, "param_groups", ()):
        yield from group.get("params", ())
    state = getattr(opt, "state", None)
    if isinstance(state, dict):
        for entry in state.values():
            values = entry.values() if isinstance(entry, dict) else (entry,)
            for v in values:
                if isinstance(v, ge.Tensor):
                    yield v


# What one generator holds: numpy's MT19937 (its 624-word key and the object around it) and the
# engine's Generator with its cached normal, rounded up.
GENERATOR_BYTES = 8192
# What one id of `Session.dropped_functions` holds until a reply reports it: the list's slot
# and the int (rounded up). Counted, because batches that fail report none: a session failing
# batches of ApplyFunction + Release kept 50,000 more per batch, uncounted, without end.
DROPPED_ID_BYTES = 48
# Ids of dropped functions one reply reports (~10 bytes each); the rest wait for the next.
MAX_DROPPED_REPORTED = 65_536


def make_generator(seed: int | None) -> Any:
    """The session's RNG (None when the engine has no Generator yet)."""
    factory = getattr(ge, "Generator", None)
    if factory is None:
        return None
    return factory(seed=seed)


class SessionUse:
    """`SessionStore.use`'s context manager (a class: every session call enters one)."""

    __slots__ = ("store", "session_id", "owner", "check", "touch", "session")

    def __init__(self, store: SessionStore, session_id: str, owner: str,
                 check: Callable[[], None] | None, touch: bool):
        self.store = store
        self.session_id = session_id
        self.owner = owner
        self.check = check
        self.touch = touch

    def __enter__(self) -> Session:
        session = self.store.get(self.session_id, self.owner)
        self.store._acquire(session, self.check)
        try:
            if session.closed:  # closed while we waited for the lock
                raise NotFoundError(f"session {self.session_id!r} not found (it was closed "
                                    "while this call waited)")
            if self.touch:
                session.touch()
        except BaseException:
            session.lock.release()
            raise
        self.session = session
        return session

    def __exit__(self, *exc: object) -> None:
        session = self.session
        try:
            if self.touch:
                session.touch()
        finally:
            session.lock.release()


class SessionStore:
    """All live sessions of a server."""

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.monotonic,
                 after_sweep: Callable[[], object] | None = None):
        """`after_sweep`: run by the reaper after each sweep (the server's heap trimmer)."""
        self.config = config
        self.clock = clock
        self.after_sweep = after_sweep
        self._sessions: dict[tuple[str, str], Session] = {}  # by (owner, id)
        self._owned: dict[str, int] = {}  # live sessions per identified owner
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, owner: str, options: session_pb2.SessionOptions,
               session_id: str | None = None) -> Session:
        """A new session for `owner`, under `session_id` when the client proposed one (a load
        balancer routes its CreateSession by that id, and later calls by the same id).

        Raises:
            SessionsExhaustedError: the server already holds its maximum number of sessions.
            LimitExceededError: this owner (a token) already holds its maximum number of
                sessions.
            InvalidRequestError: the proposed id is in use by this owner's sessions.
        """
        ttl = options.idle_ttl_seconds
        if not ttl > 0:  # also catches NaN
            ttl = self.config.session_ttl
        ttl = min(ttl, self.config.max_session_ttl)
        seed = options.seed if options.HasField("seed") else None
        with self._lock:
            if len(self._sessions) >= self.config.max_sessions:
                raise SessionsExhaustedError(
                    f"the server holds its maximum of {self.config.max_sessions} sessions; "
                    "close one or retry later", limit="max_sessions")
            owned = self._owned.get(owner, 0)
            if owner != ANONYMOUS and owned >= self.config.max_principal_sessions:
                raise LimitExceededError(
                    f"this token holds its maximum of {self.config.max_principal_sessions} "
                    "sessions (--max-principal-sessions); close one",
                    limit="max_principal_sessions")
            if session_id is not None and (owner, session_id) in self._sessions:
                raise InvalidRequestError(f"session id {session_id!r} is in use; propose "
                                          "another (a random one, e.g. 32 hex digits)")
            session = Session(session_id or secrets.token_hex(16), owner,
                              effective_limits(options.limits, self.config), ttl, seed,
                              self.clock)
            self._sessions[(owner, session.id)] = session
            if owner != ANONYMOUS:
                self._owned[owner] = owned + 1
        log.info("session %s created", session.id)
        return session

    def get(self, session_id: str, owner: str) -> Session:
        """The live session `session_id` if `owner` created it.

        Raises:
            NotFoundError: unknown, closed, or expired (another owner's ids are another
                namespace, so a caller learns nothing about other callers' sessions).
        """
        session = self._sessions.get((owner, session_id))
        if session is None or session.closed:
            raise NotFoundError(f"session {session_id!r} not found (it was closed, expired "
                                "after being idle, is gone with a server that stopped, or "
                                "never existed)")
        return session

    def use(self, session_id: str, owner: str, check: Callable[[], None] | None = None, *,
            touch: bool = True) -> SessionUse:
        """Hold the session's lock for one call (`with store.use(...) as session:`); the session
        counts as active meanwhile.

        Args:
            check: raises to stop waiting for the lock (the call's deadline or cancellation);
                called every `LOCK_POLL_SECONDS` while the lock is busy.
            touch: count the call as activity (not for DescribeSession).

        Raises:
            LimitExceededError: `--max-session-waiters` calls already wait for this session.
            NotFoundError: see `get`; also when the session closed while this call waited.
        """
        return SessionUse(self, session_id, owner, check, touch)

    def try_use(self, session_id: str, owner: str) -> SessionUse | None:
        """`use`, entered at once (leave it with its `__exit__`); None, and nothing held, when
        the session is not found (`get`) or its lock is busy: never waits."""
        session = self._sessions.get((owner, session_id))
        if session is None or session.closed or not session.lock.acquire(blocking=False):
            return None
        if session.closed:  # closed as the lock was taken
            session.lock.release()
            return None
        use = SessionUse(self, session_id, owner, None, True)
        use.session = session
        session.touch()
        return use

    def _acquire(self, session: Session, check: Callable[[], None] | None) -> None:
        """Take `session.lock`, as one of at most `max_session_waiters` waiters, giving up when
        `check` raises."""
        lock = session.lock
        if lock.acquire(blocking=False):
            return
        with self._lock:
            if session.waiters >= self.config.max_session_waiters:
                raise LimitExceededError(
                    f"session {session.id!r} already has {session.waiters} calls waiting for "
                    "it (--max-session-waiters); retry after they finish",
                    limit="max_session_waiters")
            session.waiters += 1
        try:
            while not lock.acquire(timeout=LOCK_POLL_SECONDS):
                if check is not None:
                    check()
        finally:
            with self._lock:
                session.waiters -= 1

    def close(self, session_id: str, owner: str, check: Callable[[], None] | None = None) -> None:
        """Close a session and free everything it holds. Waits for its running call (bounded
        as `use` is); the session is gone for new calls at once either way."""
        session = self.get(session_id, owner)
        self._discard(session, "closed", check)

    def _discard(self, session: Session, why: str, check: Callable[[], None] | None = None, *,
                 wait: bool = True) -> None:
        with self._lock:
            if self._sessions.pop((session.owner, session.id), None) is session \
                    and session.owner != ANONYMOUS:
                left = self._owned.pop(session.owner) - 1
                if left:
                    self._owned[session.owner] = left
        session.closed = True  # calls waiting for its lock give up when they get it
        if wait:
            self._acquire(session, check)
        elif not session.lock.acquire(blocking=False):
            # a call still runs (shutdown): it drops the session when it ends
            log.info("session %s %s (a call still running)", session.id, why)
            return
        try:
            session.clear()
        finally:
            session.lock.release()
        log.info("session %s %s", session.id, why)

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def reap(self) -> int:
        """Close sessions idle past their TTL (one in a call is never idle); returns how many."""
        reaped = 0
        for session in self.sessions():
            if session.idle_seconds() <= session.ttl:
                continue
            if not session.lock.acquire(blocking=False):
                continue  # busy: not idle
            try:
                expired = session.idle_seconds() > session.ttl
            finally:
                session.lock.release()
            if expired:
                self._discard(session, "expired")
                reaped += 1
        return reaped

    def start_reaper(self) -> None:
        """Sweep for idle sessions every `reap_interval` seconds in a daemon thread."""
        def loop() -> None:
            while not self._stop.wait(self.config.reap_interval):
                try:
                    self.reap()
                    if self.after_sweep is not None:
                        self.after_sweep()
                except Exception:  # the reaper must survive anything
                    log.exception("session reaper failed")

        self._reaper = threading.Thread(target=loop, name="gradserve-reaper", daemon=True)
        self._reaper.start()

    def stop(self) -> None:
        """Stop the reaper and drop every session."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join()
        for session in self.sessions():
            self._discard(session, "dropped at shutdown", wait=False)

    def bytes_held(self) -> int:
        """Bytes held by all sessions, as last measured by their calls (for metrics)."""
        return sum(s.measured_bytes for s in self.sessions())
