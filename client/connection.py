"""`connect()` and `Client`: one gRPC channel to a gradserve server, with the server's message
size limit, bearer-token metadata, optional TLS, per-call timeouts, and retries with backoff of
UNAVAILABLE on read-only calls."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from gradserve.v1 import (
    AUTHORIZATION_METADATA,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    SESSION_ID_METADATA,
    catalogue_pb2,
    service_pb2,
    service_pb2_grpc,
)
from gradserve.v1 import session_pb2 as spb

from .errors import IncompatibleServerError, from_rpc_error
from .ops import OpTable

Metadata = tuple[tuple[str, str], ...]

#: Oldest wire protocol this client can talk to: 0 is a server older than 0.2.0, which did not
#: report one and speaks protocol 1 without the newer fields.
MIN_PROTOCOL_VERSION = 0


def client_version() -> str:
    """This client's gradserve version."""
    from gradserve import __version__

    return __version__


def check_server(cat: catalogue_pb2.ListOpsResponse, target: str) -> None:
    """Raise IncompatibleServerError, saying which side to upgrade, unless the server's wire
    protocol is one this client speaks."""
    server = cat.protocol_version
    if MIN_PROTOCOL_VERSION <= server <= PROTOCOL_VERSION:
        return
    release = f"gradserve {cat.server_version}" if cat.server_version else "an older gradserve"
    newer = server > PROTOCOL_VERSION
    raise IncompatibleServerError(
        f"the server at {target} ({release}, op-set {cat.opset_version}) speaks wire protocol "
        f"{server}, {'newer' if newer else 'older'} than this client (gradserve "
        f"{client_version()}) supports ({MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}): upgrade "
        + ("the client (pip install -U gradserve)" if newer else "the server"))


class TLS:
    """TLS settings: a CA to verify the server, and a client certificate for mutual TLS.

    Args:
        root_certificates: PEM bytes or a path of the CA; None = the system's roots.
        private_key: client key (PEM bytes or path), for mutual TLS.
        certificate_chain: client certificate (PEM bytes or path), for mutual TLS.
        server_name: the name expected in the server certificate, if not the target's host.
    """

    def __init__(self, root_certificates: bytes | str | Path | None = None,
                 private_key: bytes | str | Path | None = None,
                 certificate_chain: bytes | str | Path | None = None,
                 server_name: str | None = None):
        self.root_certificates = _pem(root_certificates)
        self.private_key = _pem(private_key)
        self.certificate_chain = _pem(certificate_chain)
        self.server_name = server_name

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key,
                                            self.certificate_chain)


def _pem(value: bytes | str | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


class Client:
    """A connection to a gradserve server (a context manager owning one channel).

    Use `session()` for torch-like stateful work, `grad`/`value_and_grad` to differentiate a
    Python function in one stateless call, and `run_graph` to send a hand-built graph.
    """

    def __init__(self, target: str = "localhost:50051", *, token: str | None = None,
                 tls: bool | TLS | grpc.ChannelCredentials | None = None,
                 timeout: float | None = 60.0, retries: int = 4,
                 max_message_bytes: int = MAX_MESSAGE_BYTES,
                 interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = ()):
        self.target = target
        self.timeout = timeout
        self.retries = retries
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]
        if tls is None or tls is False:
            channel = grpc.insecure_channel(target, options=options)
        else:
            if tls is True:
                tls = TLS()
            if isinstance(tls, TLS):
                if tls.server_name:
                    options.append(("grpc.ssl_target_name_override", tls.server_name))
                creds = tls.credentials()
            else:
                creds = tls
            channel = grpc.secure_channel(target, creds, options=options)
        self.channel: grpc.Channel = (grpc.intercept_channel(channel, *interceptors)
                                      if interceptors else channel)
        self._raw_channel = channel
        self.stub = service_pb2_grpc.AutogradServiceStub(self.channel)
        self.metadata: Metadata = (((AUTHORIZATION_METADATA, f"Bearer {token}"),)
                                   if token else ())
        self._catalogue: catalogue_pb2.ListOpsResponse | None = None
        self._op_table: OpTable | None = None

    # --- calls ----------------------------------------------------------------------------------

    def call(self, method: str, request: Any, *, session_id: str | None = None,
             read_only: bool = False, timeout: float | None = None) -> Any:
        """Invoke one rpc by name; map failures through `errors.from_rpc_error`.

        Read-only calls are retried on UNAVAILABLE with exponential backoff and jitter; others
        are not (a batch may have been applied before the reply was lost).
        """
        fn: Callable[..., Any] = getattr(self.stub, method)
        metadata = self.metadata
        if session_id is not None:
            metadata = ((SESSION_ID_METADATA, session_id), *metadata)
        attempts = 1 + (self.retries if read_only else 0)
        delay = 0.05
        for attempt in range(attempts):
            try:
                return fn(request, metadata=metadata,
                          timeout=self.timeout if timeout is None else timeout)
            except grpc.RpcError as err:
                if (attempt + 1 < attempts and hasattr(err, "code")
                        and err.code() is grpc.StatusCode.UNAVAILABLE):
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                raise from_rpc_error(err, self.target) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def list_ops(self) -> catalogue_pb2.ListOpsResponse:
        """The server's op catalogue (fetched once per Client, before any session or graph).

        Raises:
            IncompatibleServerError: the server's wire protocol is too old or too new.
        """
        if self._catalogue is None:
            cat = self.call("ListOps", catalogue_pb2.ListOpsRequest(), read_only=True)
            check_server(cat, self.target)
            self._catalogue = cat
        return self._catalogue

    def server_version(self) -> tuple[str, int, int]:
        """(server release, wire protocol version, op-set version) from ListOps."""
        cat = self.list_ops()
        return cat.server_version, cat.protocol_version, cat.opset_version

    def op_table(self) -> OpTable:
        """The catalogue as call signatures (built once per Client)."""
        if self._op_table is None:
            self._op_table = OpTable(self.list_ops())
        return self._op_table

    def run_graph(self, request: service_pb2.RunGraphRequest) -> service_pb2.RunGraphResponse:
        """Send a hand-built stateless graph (a `gradserve.v1.RunGraphRequest`).

        RunGraph changes nothing on the server, so it is retried like a read-only call.
        """
        self.list_ops()  # once per Client: the version check
        return self.call("RunGraph", request, read_only=True,
                         session_id=request.session_id or None)

    def describe(self, session_id: str) -> spb.SessionInfo:
        """DescribeSession for `session_id`."""
        return self.call("DescribeSession", spb.DescribeSessionRequest(session_id=session_id),
                         session_id=session_id, read_only=True)

    # --- entry points ---------------------------------------------------------------------------

    def session(self, *, idle_ttl: float | None = None, seed: int | None = None,
                max_bytes: int = 0, max_tensor_elements: int = 0, max_instructions: int = 0,
                max_handles: int = 0, eager: bool = False, pipelined: int = 0,
                verify_meta: bool | None = None) -> Any:
        """A new server session that stands in for the `torch` module.

        Args:
            idle_ttl: seconds of inactivity after which the server closes it (server default).
            seed: seed of the session's random number generator.
            max_bytes, max_tensor_elements, max_instructions, max_handles: per-session limits
                (0 = the server's default).
            eager: send every op at once instead of batching (for debugging).
            pipelined: N > 0 for the pipelined mode: `backward()` and `optimizer.step()` do
                not wait; the pending instructions are sent in the background whenever N have
                been recorded, and at once when a value is read; an error is raised by the next
                read (or `flush()`), naming the line that recorded the failing op (README,
                "Pipelined mode").
            verify_meta: a debugging check of the metadata the client infers for its ops
                (shape, dtype, requires_grad, grad_fn): the server still describes every
                result, and a description that differs raises `MetaMismatchError`. Default:
                the environment variable GRADSERVE_VERIFY_META set to 1.
        """
        from .session import Session

        limits = spb.SessionLimits(max_bytes=max_bytes, max_tensor_elements=max_tensor_elements,
                                   max_instructions=max_instructions, max_handles=max_handles)
        options = spb.SessionOptions(idle_ttl_seconds=idle_ttl or 0.0, limits=limits)
        if seed is not None:
            options.seed = seed
        self.op_table()  # the catalogue, and the version check, before the server holds anything
        # The id is proposed here, not left to the server, so that a load balancer hashing
        # `x-session-id` routes CreateSession to the replica that will get the later calls.
        resp = self.call("CreateSession", spb.CreateSessionRequest(options=options),
                         session_id=secrets.token_hex(16))
        return Session(self, resp.session_id, resp.info, eager=eager, pipelined=pipelined,
                       verify_meta=verify_meta)

    def restore(self, path: str | Path, **session_options: Any) -> Any:
        """A new session holding the tensors saved by `Session.save(path)`, by name in
        `session.restored` (see client/snapshot.py for what is kept and the file format)."""
        from .snapshot import restore

        return restore(self, path, **session_options)

    def grad(self, fn: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
        """`fn`'s gradient as a function of numpy inputs, computed by one stateless call."""
        from .trace import grad

        return grad(self, fn, argnums)

    def value_and_grad(self, fn: Callable[..., Any],
                       argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
        """Like `grad`, returning (value, gradient)."""
        from .trace import value_and_grad

        return value_and_grad(self, fn, argnums)

    def jacobian(self, fn: Callable[..., Any], strict: bool = False) -> Callable[..., Any]:
        """torch.autograd.functional.jacobian of traced `fn`, as a function of numpy inputs.

        Args:
            fn: a function of tensors, traced like `grad`'s; it may return a tuple.
            strict: torch's strict (RuntimeError for an output independent of an input).
        Returns:
            A function: `client.jacobian(fn)(x, y)` is torch's `jacobian(fn, (x, y))` as numpy
            arrays, computed in one stateless call (one backward pass per output element on the
            server, at most --max-jacobian-rows).
        """
        from .trace import jacobian

        return jacobian(self, fn, strict)

    def hessian(self, fn: Callable[..., Any], strict: bool = False) -> Callable[..., Any]:
        """torch.autograd.functional.hessian of traced scalar `fn`, in one stateless call.

        Args:
            fn: a function of tensors returning a one-element tensor.
            strict: torch's strict.
        Returns:
            A function of the inputs, as `jacobian`'s; rows are the inputs' elements.
        """
        from .trace import hessian

        return hessian(self, fn, strict)

    def vjp(self, fn: Callable[..., Any], inputs: Any, v: Any = None,
            strict: bool = False) -> tuple[Any, Any]:
        """torch.autograd.functional.vjp of traced `fn` at `inputs`, in one stateless call.

        Args:
            fn, inputs, v, strict: torch's (inputs and v as numpy arrays, or tuples of them).
        Returns:
            (fn's value, v^T J) as numpy arrays, structured as torch's.
        Raises:
            GradserveError: torch's refusals, raised by the server (e.g. v's shape).
        """
        from .trace import vjp

        return vjp(self, fn, inputs, v, strict)

    def jvp(self, fn: Callable[..., Any], inputs: Any, v: Any = None,
            strict: bool = False) -> tuple[Any, Any]:
        """torch.autograd.functional.jvp, as `vjp`: returns (fn's value, J v)."""
        from .trace import jvp

        return jvp(self, fn, inputs, v, strict)

    def vhp(self, fn: Callable[..., Any], inputs: Any, v: Any = None,
            strict: bool = False) -> tuple[Any, Any]:
        """torch.autograd.functional.vhp of scalar `fn`, as `vjp`: returns (value, v^T H)."""
        from .trace import vhp

        return vhp(self, fn, inputs, v, strict)

    def hvp(self, fn: Callable[..., Any], inputs: Any, v: Any = None,
            strict: bool = False) -> tuple[Any, Any]:
        """torch.autograd.functional.hvp of scalar `fn`, as `vjp`: returns (value, H v)."""
        from .trace import hvp

        return hvp(self, fn, inputs, v, strict)

    def close(self) -> None:
        """Close the channel."""
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<gradserve.client.Client target={self.target!r}>"


def connect(target: str = "localhost:50051", *, token: str | None = None,
            tls: bool | TLS | grpc.ChannelCredentials | None = None,
            timeout: float | None = 60.0, **kwargs: Any) -> Client:
    """Connect to a gradserve server.

    Args:
        target: "host:port".
        token: bearer token, when the server requires one.
        tls: None/False for plaintext; True for TLS with the system's roots; a `TLS` for a
            custom CA or mutual TLS; or ready-made grpc channel credentials.
        timeout: seconds per call (None = no deadline).
        **kwargs: `retries`, `max_message_bytes`, `interceptors` (see `Client`).

    Returns:
        A `Client` (use it as a context manager to close the channel).
    """
    return Client(target, token=token, tls=tls, timeout=timeout, **kwargs)
