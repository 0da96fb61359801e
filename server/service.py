"""The gRPC servicer: wire requests to sessions, graphs and batches; every method wrapped by
`errors.rpc` (auth, error mapping, metrics)."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import grpc

import gradserve.engine as ge
from gradserve.v1 import SESSION_ID_METADATA, catalogue_pb2, service_pb2, service_pb2_grpc
from gradserve.v1 import session_pb2 as spb

from . import batch, catalogue, graph, graph_request
from . import config as config_mod
from .auth import Authenticator
from .config import ServerConfig
from .errors import (
    CancelledError,
    DeadlineError,
    Failed,
    Failure,
    InvalidRequestError,
    Observer,
    PreconditionError,
    rpc,
)
from .fairness import Admission, RunSlots
from .sessions import MAX_REQUEST_ID, Session, SessionStore

log = logging.getLogger(__name__)

# What a client may propose as a new session's id (server-made ids are 32 hex digits).
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")


class _Flag:
    """Set once, by gRPC when the call ends (a threading.Event costs a Condition per call)."""

    __slots__ = ("up",)

    def __init__(self) -> None:
        self.up = False

    def set(self) -> None:
        self.up = True


_CANCELLED = ("the call was cancelled (by the client, or because the server is stopping) while "
              "it was executing")
_DEADLINE = "deadline exceeded while executing the request"
_CAPPED = ("the call ran past the server's longest call ({seconds:g} s, --max-call-seconds) while "
           "executing the request: split the work over several calls")


class Call:
    """What a servicer method knows about its call besides the request, and the call's check:
    its deadline, its cancellation and its turn on the server's run slots.

    `with call.running():` holds a run slot for the call's engine work (see `running`).
    `quantum` is how long a call keeps its run slot while others wait; `longest`
    (`--max-call-seconds`, 0: none) caps the call's deadline whatever the caller asked, so a
    call without a deadline still ends (DEADLINE_EXCEEDED naming the flag)."""

    __slots__ = ("context", "owner", "deadline", "ended", "_slots", "_quantum", "_slot_since",
                 "_ran", "_interrupt", "_cap")

    def __init__(self, context: grpc.ServicerContext, owner: str,
                 slots: RunSlots | None = None, quantum: float = 0.0, longest: float = 0.0):
        self.context = context
        self.owner = owner
        remaining = context.time_remaining()
        # monotonic; no deadline reads as a huge number of seconds (about 9.2e18), or None
        now = time.monotonic()
        self.deadline = math.inf if remaining is None else now + remaining
        # `longest` (--max-call-seconds; 0: none) ends the call sooner than the caller's own
        # deadline, or a call without one: `_cap` is then that many seconds, for the message
        self._cap = 0.0
        if longest > 0 and now + longest < self.deadline:
            self.deadline, self._cap = now + longest, longest
        self.ended = _Flag()
        # Runs when the call ends for any reason: client cancel, deadline, server stop, done
        # (`threaded.ThreadContext`). False: the call is already over.
        if context.add_callback(self.ended.set) is False:
            self.ended.up = True
        self._slots = slots
        self._quantum = quantum
        self._slot_since = 0.0  # monotonic time the run slot was taken; 0 while not held
        self._ran = 0.0  # seconds held a run slot before `_slot_since`
        self._interrupt: Any = None  # the engine interrupt scope `running` entered, if any

    def check_ended(self) -> None:
        """Raises CancelledError once the call is over, DeadlineError once its deadline passed."""
        if self.ended.up:
            raise CancelledError(_CANCELLED)
        if time.monotonic() >= self.deadline:
            raise self._past_deadline()

    def _past_deadline(self) -> DeadlineError:
        """The error of a call past its deadline: the caller's, or the server's cap."""
        return DeadlineError(_CAPPED.format(seconds=self._cap) if self._cap else _DEADLINE)

    def check(self) -> None:
        """`check_ended`, then give the run slot to a waiting call once this one held it for a
        quantum, or at once to a fresh one (a call that has not run a quantum yet) once this
        one ran its first quantum (the engine calls this before every op and between backward
        nodes: `check_ended` is written out here, as it runs thousands of times a call)."""
        if self.ended.up:
            raise CancelledError(_CANCELLED)
        now = time.monotonic()
        if now >= self.deadline:
            raise self._past_deadline()
        since = self._slot_since
        if since:
            slots = self._slots
            if slots is not None and slots.waiting:
                held = now - since
                if held >= self._quantum or (slots.fresh_waiting
                                             and self._ran + held >= self._quantum):
                    self._slot_since = 0.0
                    self._ran += held
                    slots.release()
                    slots.acquire(self.check_ended, fresh=self._ran < self._quantum)
                    self._slot_since = time.monotonic()

    def running(self, interrupt: bool = True) -> Call:
        """Use as `with call.running():` — hold a run slot (waiting for it honours the deadline
        and cancellation) and install `check` as the engine's interrupt check: all of a call's
        engine work goes in here. `interrupt=False`: the work installs a check of its own that
        calls `check` (a stateless call's op meter, `graph.execute`)."""
        self._interrupt = ge.limits.interrupt(self.check) if interrupt else None
        return self

    def __enter__(self) -> None:
        slots = self._slots
        if slots is not None:  # None: a Call made without the server's slots (tests)
            slots.acquire(self.check_ended)
            self._slot_since = time.monotonic()
        if self._interrupt is not None:
            try:
                self._interrupt.__enter__()
            except BaseException:
                self.__exit__()
                raise

    def __exit__(self, *exc: object) -> None:
        scope, self._interrupt = self._interrupt, None
        if scope is not None:
            scope.__exit__()
        if self._slot_since:  # not while a yield's re-acquire failed
            self._slot_since = 0.0
            if self._slots is not None:
                self._slots.release()

    def session_id(self, in_message: str) -> str:
        """The session id, which message and `x-session-id` metadata must both carry, equal.

        Raises:
            InvalidRequestError: missing or mismatched.
        """
        meta = None
        for key, value in self.context.invocation_metadata() or ():
            if key == SESSION_ID_METADATA:
                meta = value
                break
        if not in_message:
            raise InvalidRequestError("session_id is empty")
        if meta is None:
            raise InvalidRequestError(f"missing '{SESSION_ID_METADATA}' metadata (send the "
                                      "session id there too; load balancers route on it)")
        if meta != in_message:
            raise InvalidRequestError(f"session_id {in_message!r} does not match "
                                      f"'{SESSION_ID_METADATA}' metadata {meta!r}")
        return in_message

    def proposed_session_id(self) -> str | None:
        """The id a CreateSession caller proposes in `x-session-id` metadata, if any.

        Raises:
            InvalidRequestError: not 16-128 characters of A-Z, a-z, 0-9, '_' and '-'.
        """
        for key, value in self.context.invocation_metadata() or ():
            if key == SESSION_ID_METADATA:
                if not SESSION_ID_PATTERN.fullmatch(value):
                    raise InvalidRequestError(
                        f"'{SESSION_ID_METADATA}' metadata on CreateSession proposes the new "
                        "session's id: 16-128 characters of A-Z, a-z, 0-9, '_' and '-', got "
                        f"{value[:64]!r}")
                return value
        return None


def session_info(session: Session) -> spb.SessionInfo:
    """A SessionInfo, measuring the session now (call with its lock held)."""
    total, saved = session.measure()
    session.measured_bytes, session.saved_bytes = total, saved
    return spb.SessionInfo(
        session_id=session.id, tensor_count=len(session.tensors),
        optimizer_count=len(session.optimizers), bytes_held=total, saved_bytes=saved,
        idle_seconds=session.idle_seconds(), idle_ttl_seconds=session.ttl,
        limits=session.limits.to_proto())


class AutogradServicer(service_pb2_grpc.AutogradServiceServicer):
    """gradserve.v1.AutogradService."""

    def __init__(self, config: ServerConfig, store: SessionStore, auth: Authenticator,
                 observe: Observer, after_call: Callable[[], object] | None = None):
        """`after_call`: run after every call (the server's heap trimmer)."""
        self.config = config
        self._after_call = after_call
        self.store = store
        self.auth = auth
        self.observe = observe
        self.admission = Admission(config_mod.max_calls(config), config.max_principal_calls)
        self.slots = RunSlots(config_mod.run_slots(config))
        # One of several processes sharing the port: a session would live in one of them, and
        # a connection may reach any (`stateless_only`).
        self.sessions = config.processes == 1

    def stateless_only(self, method: str) -> None:
        """Refuse a session call on a server of several processes.

        Raises:
            PreconditionError: `--processes` is above 1.
        """
        if not self.sessions:
            raise PreconditionError(
                f"{method} needs a session, and this server runs {self.config.processes} "
                "processes for stateless calls only (--processes): run a session server with "
                "--processes 1, or route calls carrying x-session-id to one (README, Scale-out)")

    def before_call(self, context: grpc.ServicerContext) -> Call:
        """Identify the caller, refuse a call past the caps or already past its deadline (a
        call admitted on the event loop already, `inline_batch`, is that call)."""
        admitted = getattr(context, "admitted", None)
        if admitted is not None:
            return admitted  # type: ignore[no-any-return]
        owner = self.auth.identify(context)
        self.admission.enter(owner)
        try:
            call = Call(context, owner, self.slots, self.config.run_quantum,
                        self.config.max_call_seconds)
            call.check_ended()
        except BaseException:
            self.admission.leave(owner)
            raise
        return call

    def after_call(self, call: Call) -> None:
        self.admission.leave(call.owner)
        if self._after_call is not None:
            self._after_call()

    @rpc
    def RunGraph(self, request: service_pb2.RunGraphRequest  # noqa: N802 (gRPC's names)
                 | graph_request.RunGraphCall, call: Call) -> bytes:
        """A serialized RunGraphResponse (see `graph.fit`); the request as its registered
        parser gives it (`graph_request.parse_run_graph`)."""
        raw = None
        if type(request) is graph_request.RunGraphCall:
            request, raw = request.message, request.raw
        graph.validate(request, self.config, handles_allowed=bool(request.session_id))
        if not request.session_id:
            with call.running(interrupt=False):  # execute's op meter calls call.check
                return graph.fit(graph.execute(request, self.config, check_deadline=call.check,
                                               raw_inputs=raw), self.config)
        self.stateless_only("RunGraph with a session_id")
        session_id = call.session_id(request.session_id)
        with self.store.use(session_id, call.owner, call.check_ended) as session, \
                call.running(interrupt=False):
            executor = batch.Executor(session, call.check, 0)
            return graph.fit(graph.execute(request, self.config, check_deadline=call.check,
                                           resolve_handle=executor.tensor,
                                           generator=session.generator, raw_inputs=raw),
                             self.config)

    @rpc
    def CreateSession(self, request: spb.CreateSessionRequest,  # noqa: N802
                      call: Call) -> spb.CreateSessionResponse:
        self.stateless_only("CreateSession")
        session = self.store.create(call.owner, request.options, call.proposed_session_id())
        with session.lock:
            info = session_info(session)
        return spb.CreateSessionResponse(session_id=session.id, info=info)

    @rpc
    def CloseSession(self, request: spb.CloseSessionRequest,  # noqa: N802
                     call: Call) -> spb.CloseSessionResponse:
        self.stateless_only("CloseSession")
        self.store.close(call.session_id(request.session_id), call.owner, call.check_ended)
        return spb.CloseSessionResponse()

    @rpc
    def DescribeSession(self, request: spb.DescribeSessionRequest,  # noqa: N802
                        call: Call) -> spb.SessionInfo:
        self.stateless_only("DescribeSession")
        with self.store.use(call.session_id(request.session_id), call.owner,
                            call.check_ended, touch=False) as session:
            return session_info(session)

    @rpc
    def ExecuteBatch(self, request: Any,  # noqa: N802 - a BatchRequest or a Resume
                     call: Call) -> spb.BatchResponse | bytes:
        """The BatchResponse, serialized when it was remembered (measuring it serializes it:
        gRPC then sends those bytes, `wire_guard`). `request` may be a batch begun on the event
        loop (`inline_batch.Resume`): its session is held, and the rest of it runs here."""
        if type(request) is not spb.BatchRequest:  # an `inline_batch.Resume`
            try:
                return self.batch_outcome(request.session, request.request_id, call,
                                          request.proceed, call)
            finally:
                request.close()
        self.stateless_only("ExecuteBatch")
        session_id = call.session_id(request.session_id)
        rid = request.request_id
        if len(rid) > MAX_REQUEST_ID:
            raise InvalidRequestError(f"request_id has {len(rid)} characters, more than the "
                                      f"limit of {MAX_REQUEST_ID}; use a UUID")
        after = request.after_request_id
        if after:
            check_after_request_id(after, rid)
        with self.store.use(session_id, call.owner, call.check_ended) as session:
            log.debug("session %s: batch of %d instruction(s)", session_id,
                      len(request.instructions))
            if rid and rid in session.recent:
                return _replay(session.recent[rid][0])
            if after:
                session.check_after(after)  # refused: not run, not remembered
            executor = batch.Executor(session, call.check, self.config.max_message_bytes)
            return self.batch_outcome(session, rid, call, executor.run, request.instructions)

    def batch_outcome(self, session: Session, rid: str, call: Call,
                      run: Callable[..., spb.BatchResponse],
                      *args: Any) -> spb.BatchResponse | bytes:
        """`run(*args)`, a batch's work on its locked `session`, holding a run slot; its
        outcome remembered under request id `rid` (if any) for replay.

        Raises:
            Failed: the batch failed, remembered (else its error as it is).
        """
        try:
            with call.running():
                response = run(*args)
        except Exception as exc:
            session.ran(rid, False)
            if rid:
                failure = Failure.from_exception(exc)
                session.remember(rid, failure, len(failure.message) + 256,
                                 self.config.dedup_window, self.config.dedup_bytes)
                raise Failed(failure) from exc
            raise
        return self.batch_reply(session, rid, response)

    def batch_reply(self, session: Session, rid: str,
                    response: spb.BatchResponse) -> spb.BatchResponse | bytes:
        """A batch's reply: remembered under request id `rid` (if any) and then serialized."""
        session.ran(rid, True)
        if not rid:
            return response
        data = response.SerializeToString()
        session.remember(rid, response, len(data), self.config.dedup_window,
                         self.config.dedup_bytes)
        return data

    @rpc
    def ListOps(self, request: catalogue_pb2.ListOpsRequest,  # noqa: N802
                call: Call) -> catalogue_pb2.ListOpsResponse:
        return catalogue.list_ops()


def check_after_request_id(after: str, rid: str) -> None:
    """A BatchRequest's after_request_id, as it may be (not its session's state).

    Raises:
        InvalidRequestError: too long, or the batch's own request_id.
    """
    if len(after) > MAX_REQUEST_ID:
        raise InvalidRequestError(f"after_request_id has {len(after)} characters, more than "
                                  f"the limit of {MAX_REQUEST_ID}")
    if after == rid:
        raise InvalidRequestError(f"after_request_id names the batch itself ({rid!r}): a "
                                  "batch runs after another one")


def _replay(outcome: Any) -> spb.BatchResponse:
    if isinstance(outcome, Failure):
        raise Failed(outcome)
    response = spb.BatchResponse()
    response.CopyFrom(outcome)
    response.replayed = True
    return response
