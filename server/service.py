"""The gRPC servicer: wire requests to sessions, graphs and batches; every method wrapped by
`errors.rpc` (auth, error mapping, metrics)."""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

import grpc

from gradserve.v1 import SESSION_ID_METADATA, catalogue_pb2, service_pb2, service_pb2_grpc
from gradserve.v1 import session_pb2 as spb

from . import batch, catalogue, graph
from .auth import Authenticator
from .config import ServerConfig
from .errors import DeadlineError, Failed, Failure, InvalidRequestError, Observer, rpc
from .sessions import MAX_REQUEST_ID, Session, SessionStore

log = logging.getLogger(__name__)

# What a client may propose as a new session's id (server-made ids are 32 hex digits).
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")


class Call:
    """What a servicer method knows about its call besides the request."""

    __slots__ = ("context", "owner", "_deadline")

    def __init__(self, context: grpc.ServicerContext, owner: str):
        self.context = context
        self.owner = owner
        self._deadline: float | None = None  # monotonic; read from the context once

    def check_deadline(self) -> None:
        """Raises DeadlineError once the caller's deadline has passed (checked per batch
        instruction and graph node: the context is asked once, then only the clock)."""
        deadline = self._deadline
        if deadline is None:
            remaining = self.context.time_remaining()
            deadline = math.inf if remaining is None else time.monotonic() + remaining
            self._deadline = deadline
        if time.monotonic() >= deadline:
            raise DeadlineError("deadline exceeded while executing the request")

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
                 observe: Observer):
        self.config = config
        self.store = store
        self.auth = auth
        self.observe = observe

    def before_call(self, context: grpc.ServicerContext) -> Call:
        return Call(context, self.auth.identify(context))

    @rpc
    def RunGraph(self, request: service_pb2.RunGraphRequest,  # noqa: N802 (gRPC's names)
                 call: Call) -> service_pb2.RunGraphResponse:
        graph.validate(request, self.config, handles_allowed=bool(request.session_id))
        if not request.session_id:
            return graph.fit(graph.execute(request, self.config,
                                           check_deadline=call.check_deadline), self.config)
        session_id = call.session_id(request.session_id)
        with self.store.use(session_id, call.owner) as session:
            executor = batch.Executor(session, call.check_deadline, 0)
            return graph.fit(graph.execute(request, self.config,
                                           check_deadline=call.check_deadline,
                                           resolve_handle=executor.tensor,
                                           generator=session.generator), self.config)

    @rpc
    def CreateSession(self, request: spb.CreateSessionRequest,  # noqa: N802
                      call: Call) -> spb.CreateSessionResponse:
        session = self.store.create(call.owner, request.options, call.proposed_session_id())
        with session.lock:
            info = session_info(session)
        return spb.CreateSessionResponse(session_id=session.id, info=info)

    @rpc
    def CloseSession(self, request: spb.CloseSessionRequest,  # noqa: N802
                     call: Call) -> spb.CloseSessionResponse:
        self.store.close(call.session_id(request.session_id), call.owner)
        return spb.CloseSessionResponse()

    @rpc
    def DescribeSession(self, request: spb.DescribeSessionRequest,  # noqa: N802
                        call: Call) -> spb.SessionInfo:
        session = self.store.get(call.session_id(request.session_id), call.owner)
        with session.lock:
            return session_info(session)

    @rpc
    def ExecuteBatch(self, request: spb.BatchRequest,  # noqa: N802
                     call: Call) -> spb.BatchResponse:
        session_id = call.session_id(request.session_id)
        rid = request.request_id
        if len(rid) > MAX_REQUEST_ID:
            raise InvalidRequestError(f"request_id has {len(rid)} characters, more than the "
                                      f"limit of {MAX_REQUEST_ID}; use a UUID")
        with self.store.use(session_id, call.owner) as session:
            log.debug("session %s: batch of %d instruction(s)", session_id,
                      len(request.instructions))
            if rid and rid in session.recent:
                return _replay(session.recent[rid][0])
            executor = batch.Executor(session, call.check_deadline,
                                      self.config.max_message_bytes)
            try:
                response = executor.run(request.instructions)
            except Exception as exc:
                if rid:
                    failure = Failure.from_exception(exc)
                    session.remember(rid, failure, len(failure.message) + 256,
                                     self.config.dedup_window, self.config.dedup_bytes)
                    raise Failed(failure) from exc
                raise
            if rid:
                session.remember(rid, response, response.ByteSize(), self.config.dedup_window,
                                 self.config.dedup_bytes)
            return response

    @rpc
    def ListOps(self, request: catalogue_pb2.ListOpsRequest,  # noqa: N802
                call: Call) -> catalogue_pb2.ListOpsResponse:
        return catalogue.list_ops()


def _replay(outcome: Any) -> spb.BatchResponse:
    if isinstance(outcome, Failure):
        raise Failed(outcome)
    response = spb.BatchResponse()
    response.CopyFrom(outcome)
    response.replayed = True
    return response
