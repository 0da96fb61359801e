"""Sessions: tensors and optimizers under client-chosen handles, with their locks and limits.

One lock per session serializes its calls; different sessions run in parallel. A reaper thread
closes sessions idle longer than their TTL. A session belongs to the identity (token) that
created it; anyone else is told it does not exist.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import gradserve.engine as ge
from gradserve.v1 import session_pb2

from .config import ServerConfig
from .errors import InvalidRequestError, NotFoundError, SessionsExhaustedError

log = logging.getLogger(__name__)


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
        self.tensors: dict[int, ge.Tensor] = {}
        self.optimizers: dict[int, Any] = {}
        self.generator = make_generator(seed)
        self.closed = False
        self.clock = clock
        self.last_used = clock()
        # request_id -> (stored outcome, its size in bytes), oldest first
        self.recent: collections.OrderedDict[str, tuple[Any, int]] = collections.OrderedDict()
        self.recent_bytes = 0
        # bytes as of the last exact measurement (see batch.ByteBudget)
        self.measured_bytes = 0
        self.saved_bytes = 0

    def idle_seconds(self) -> float:
        return max(0.0, self.clock() - self.last_used)

    def touch(self) -> None:
        self.last_used = self.clock()

    def handle_count(self) -> int:
        return len(self.tensors) + len(self.optimizers)

    def measure(self) -> tuple[int, int]:
        """(bytes held by tensors and their grads, bytes saved for backward), deduplicated."""
        seen: set[int] = set()
        total = 0
        for t in self.tensors.values():
            g = quiet_grad(t)
            for arr in (_array(t), _array(g) if g is not None else None):
                if arr is None:
                    continue
                base = arr if arr.base is None else arr.base
                if id(base) not in seen:
                    seen.add(id(base))
                    total += base.nbytes
        for opt in self.optimizers.values():
            total += _optimizer_state_bytes(opt)
        saved = ge.autograd.saved_nbytes(list(self.tensors.values()))
        return total + saved + self.recent_bytes, saved

    def remember(self, request_id: str, outcome: Any, size: int, window: int,
                 max_bytes: int) -> None:
        """Keep a batch's outcome for replay, evicting the oldest past the window."""
        if size > max_bytes:
            return
        self.recent[request_id] = (outcome, size)
        self.recent_bytes += size
        while len(self.recent) > window or self.recent_bytes > max_bytes:
            _, (_, old) = self.recent.popitem(last=False)
            self.recent_bytes -= old

    def clear(self) -> None:
        """Drop everything the session holds."""
        self.closed = True
        self.tensors.clear()
        self.optimizers.clear()
        self.recent.clear()
        self.recent_bytes = 0


def quiet_grad(t: ge.Tensor) -> ge.Tensor | None:
    """`t.grad` without torch's warning about reading a non-leaf's grad (the client warns)."""
    if t.grad_fn is not None and not t.retains_grad:
        return None
    return t.grad


def _array(t: Any) -> Any:
    return t.numpy(force=True)


def _optimizer_state_bytes(opt: Any) -> int:
    state = getattr(opt, "state", None)
    total = 0
    if isinstance(state, dict):
        for entry in state.values():
            values = entry.values() if isinstance(entry, dict) else (entry,)
            for v in values:
                if isinstance(v, ge.Tensor):
                    total += v.nbytes
    return total


def make_generator(seed: int | None) -> Any:
    """The session's RNG (None when the engine has no Generator yet)."""
    factory = getattr(ge, "Generator", None)
    if factory is None:
        return None
    return factory(seed)


class SessionStore:
    """All live sessions of a server."""

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self._sessions: dict[str, Session] = {}
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
            InvalidRequestError: the proposed id is in use.
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
            if session_id is not None and session_id in self._sessions:
                raise InvalidRequestError(f"session id {session_id!r} is in use; propose "
                                          "another (a random one, e.g. 32 hex digits)")
            session = Session(session_id or secrets.token_hex(16), owner,
                              effective_limits(options.limits, self.config), ttl, seed,
                              self.clock)
            self._sessions[session.id] = session
        log.info("session %s created", session.id)
        return session

    def get(self, session_id: str, owner: str) -> Session:
        """The live session `session_id` if `owner` created it.

        Raises:
            NotFoundError: unknown, closed, expired, or someone else's (not told apart, so a
                caller learns nothing about other callers' sessions).
        """
        session = self._sessions.get(session_id)
        if session is None or session.closed or not _same_owner(session.owner, owner):
            raise NotFoundError(f"session {session_id!r} not found (it was closed, expired "
                                "after being idle, is gone with a server that stopped, or "
                                "never existed)")
        return session

    @contextlib.contextmanager
    def use(self, session_id: str, owner: str) -> Iterator[Session]:
        """Hold the session's lock for one call; the session counts as active meanwhile."""
        session = self.get(session_id, owner)
        with session.lock:
            if session.closed:  # closed while we waited for the lock
                raise NotFoundError(f"session {session_id!r} not found (it was closed while "
                                    "this call waited)")
            session.touch()
            try:
                yield session
            finally:
                session.touch()

    def close(self, session_id: str, owner: str) -> None:
        """Close a session and free everything it holds (waits for its running call)."""
        session = self.get(session_id, owner)
        self._discard(session, "closed")

    def _discard(self, session: Session, why: str) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
        with session.lock:
            session.clear()
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
            self._discard(session, "dropped at shutdown")

    def bytes_held(self) -> int:
        """Bytes held by all sessions, as last measured by their calls (for metrics)."""
        return sum(s.measured_bytes for s in self.sessions())


def _same_owner(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())
