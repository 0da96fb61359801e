"""Building and running the gRPC server: `create_server` for tests and embedding, `serve` for
the command line (blocking, SIGTERM-aware)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from gradserve.engine import mkl, parallel
from gradserve.v1 import SERVICE_NAME, service_pb2, service_pb2_grpc

from . import graph_request, heap, intake
from .auth import Authenticator, read_tokens
from .config import ServerConfig
from .inline import InlineRunGraph
from .inline_batch import InlineBatch
from .intake import Intake
from .metrics import Metrics
from .service import AutogradServicer
from .sessions import SessionStore
from .threaded import Workers
from .wire_guard import GuardedRegistrar

log = logging.getLogger(__name__)

MAX_METADATA_BYTES = 16 * 1024
# The compression algorithms requests may use, as grpc core's bitset (bit 0: identity): none.
# A gzip request inflates ~1000-fold in grpc core before any of our limits or the intake sees
# it (the size limit holds after inflating, but not what inflating costs).
COMPRESSION_ALGORITHMS = 1
# Replies a connection may leave unread before its new calls are refused, in largest messages.
REPLY_BYTES_PER_CONNECTION = 2
# Never refused for memory: they free it, or report health.
MEMORY_EXEMPT = (f"/{SERVICE_NAME}/CloseSession", "/grpc.health.v1.Health/Check",
                 "/grpc.health.v1.Health/Watch")

# After SIGTERM, the process exits this long after the grace period even if threads linger (a
# call stuck inside one long numpy op, which no interrupt check reaches).
EXIT_MARGIN_SECONDS = 1.5


async def add_health(server: Any) -> health.aio.HealthServicer:
    """Register grpc.health.v1.Health (asyncio: a Check is answered on the event loop, however
    busy the worker threads are); every service starts NOT_SERVING until `start`."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", SERVICE_NAME):
        await servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    return servicer


def add_reflection(server: Any) -> None:
    """Register server reflection (its asyncio servicer) for our service and the health
    service."""
    names = (service_pb2.DESCRIPTOR.services_by_name["AutogradService"].full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names), server)


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the config's PEM files, or None for plaintext."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    key = Path(config.tls_key).read_bytes()
    cert = Path(config.tls_cert).read_bytes()
    ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(((key, cert),), root_certificates=ca,
                                       require_client_auth=ca is not None)


T = TypeVar("T")


class GradServer:
    """A configured gRPC server with its sessions, health, reflection and metrics.

    The transport is gRPC's asyncio server, on an event loop in a thread of its own; the
    servicer's methods are plain functions that run on a pool of `--workers` threads, each
    given a call only once its request message has arrived. (With `grpc.server`'s thread pool a
    call took its thread before its message came: a few dozen streams that announce a request
    and never finish it held every thread and stopped the server, health checks included.)
    Every call reads its own request through the `intake.Intake` (`--max-memory`, unread
    replies per connection, large requests by turns), small stateless RunGraph calls are
    first tried on the event loop itself (`inline.InlineRunGraph`, `--inline-seconds`), and
    small session batches begin there (`inline_batch.InlineBatch`).
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        # Freed C heap memory goes back to the system after calls and sweeps (--malloc-trim).
        self.trim = heap.Trimmer(config.malloc_trim, config.malloc_top_pad)
        self.store = SessionStore(config, after_sweep=self.trim.sweep)
        tokens = read_tokens(config.auth_token_file) if config.auth_token_file else []
        self.metrics = Metrics(lambda: len(self.store), self.store.bytes_held)
        self.servicer = AutogradServicer(config, self.store, Authenticator(tokens),
                                         self.metrics.observe, after_call=self.trim)
        self.metrics_port: int | None = None
        # small stateless calls first try on the event loop, small session batches begin there
        # (--inline-seconds; 0: off)
        on = config.inline_seconds > 0
        self.inline = InlineRunGraph(self.servicer, config.inline_seconds) if on else None
        self.inline_batch = InlineBatch(self.servicer, config.inline_seconds) if on else None
        self.workers = Workers(config.workers, "gradserve")
        self.intake = Intake(
            # by default each of --processes N gets its share of the memory
            config.max_memory or intake.default_limit() // config.processes,
            heap.resident_bytes, self.trim.now,
            connection_replies=REPLY_BYTES_PER_CONNECTION * config.max_message_bytes,
            exempt=MEMORY_EXEMPT, large_requests=config.max_message_bytes)
        self._terminated = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever,
                                             name="gradserve-grpc", daemon=True)
        self._loop_thread.start()
        try:
            self.grpc, self.health, self.port = self._on_loop(self._build())
        except BaseException:
            self._close_loop()
            self.workers.shutdown()
            raise

    async def _build(self) -> tuple[Any, health.aio.HealthServicer, int]:
        """The asyncio server (made on its loop), its services registered and its port bound."""
        config = self.config
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes),
                   ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                   # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; also what turns on grpc core's
                   # pushback against streams opened and reset at once (the "rapid reset")
                   ("grpc.max_concurrent_streams", config.max_connection_streams),
                   # identity only: a compressed request is refused (UNIMPLEMENTED) before it
                   # is inflated. 40 RunGraphs of 59 KiB inflating to 60 MiB each cost 14 s of
                   # CPU in grpc core, outside every limit, and stalled health checks for up
                   # to 9 s (docs/security.md)
                   ("grpc.compression_enabled_algorithms_bitset", COMPRESSION_ALGORITHMS),
                   # several processes share the port only when told to (--processes)
                   ("grpc.so_reuseport", int(config.processes > 1))]
        server = grpc.aio.server(options=options)
        # what registers through it is guarded; the servicer's methods are parsed and run on the
        # workers, RunGraph's parser keeping large inputs' data in the request's bytes
        # (`graph_request`)
        run_graph = f"/{SERVICE_NAME}/RunGraph"
        inline: dict[str, Any] = {}
        if self.inline is not None and self.inline_batch is not None:
            inline = {run_graph: self.inline,
                      f"/{SERVICE_NAME}/ExecuteBatch": self.inline_batch}
        registrar: Any = GuardedRegistrar(
            server, self.workers, self.intake, {run_graph: graph_request.parse_run_graph},
            inline)
        service_pb2_grpc.add_AutogradServiceServicer_to_server(self.servicer, registrar)
        health = await add_health(registrar)
        add_reflection(registrar)
        address = f"{config.host}:{config.port}"
        credentials = server_credentials(config)
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
        if port == 0:
            raise OSError(f"could not bind {address}")
        return server, health, port

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=10)
        if not self._loop_thread.is_alive():  # else it still runs: closing it would raise
            self._loop.close()  # its selector and self-pipe (ResourceWarnings when collected)

    def _set_health(self, status: Any) -> None:
        for name in ("", SERVICE_NAME):
            self._on_loop(self.health.set(name, status))

    def start(self) -> None:
        """Start serving; health turns SERVING."""
        self._on_loop(self.grpc.start())
        self.store.start_reaper()
        if self.config.metrics_port is not None:
            host = self.config.host.strip("[]")
            addr = "0.0.0.0" if host in ("", "::", "0.0.0.0") else host  # wildcard: IPv4 too
            self.metrics_port = self.metrics.serve(self.config.metrics_port, addr)
            log.info("metrics on http://%s:%d/metrics", addr, self.metrics_port)
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("gradserve listening on port %d (%s)", self.port,
                 "TLS" if self.config.tls_cert else "plaintext")
        log.info("engine: %s", mkl.status())  # whether float products round as torch's

    def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, refuse new calls, let in-flight calls finish within `grace`; then
        gRPC cancels the calls still running, and their interrupt checks stop their work."""
        if self._terminated.is_set():
            return
        self._on_loop(self.health.enter_graceful_shutdown())
        self._on_loop(self.grpc.stop(self.config.grace_period if grace is None else grace))
        self._on_loop(self.intake.close())
        self.store.stop()
        self.metrics.stop()
        self._close_loop()
        self.workers.shutdown()
        self._terminated.set()

    def wait(self) -> None:
        """Block until `stop` has finished."""
        self._terminated.wait()


def create_server(config: ServerConfig) -> tuple[GradServer, int]:
    """A bound, not yet started server and its port (config.port 0 picks a free one)."""
    server = GradServer(config)
    return server, server.port


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, the op registry, protobuf descriptors, the
    server's own: ~55,000 at start-up) out of the garbage collector's reach (`gc.freeze`):
    they are never garbage, and a full collection, which a session's graphs of thousands of
    tensors and nodes set off every few batches, no longer walks them (~30 ms -> ~1 ms a pass
    here). Process-wide: `serve_one` calls it once the server is built."""
    gc.collect()  # what is garbage already goes first, not into the permanent generation
    gc.freeze()


#: The interpreter's GIL switch interval in a server process (`sys.setswitchinterval`; Python's
#: default is 5 ms). A thread waiting for the GIL asks its holder to drop it only after waiting
#: this long with no hand-over, and every release by the holder restarts that wait: a worker
#: running small numpy ops releases and takes back the GIL ~6 times per op (every ufunc call,
#: ~0.1 ms apart), each time before a woken waiter can take it, so the event loop's thread (health
#: checks, every call's intake, the loop's own calls) waited for gaps in the worker's GIL use: a
#: health check every 10 ms while one session ran 0.2 s batches of 256-element ops took 10-22 ms
#: (90th percentile) at 5 ms, 3.4-3.5 ms at 0.5 ms, with the batches' times unchanged. Two workers
#: contending with small ops switch more often: ~15% more time than at 5 ms in that case.
SWITCH_INTERVAL = 0.0005


def exit_after(seconds: float) -> None:
    """End the process `seconds` from now, whatever threads still run (the shutdown watchdog:
    calls past the grace period were cancelled, but one inside a long op only sees it after)."""
    time.sleep(seconds)
    log.warning("threads still running %.1fs after shutdown began: exiting anyway", seconds)
    logging.shutdown()
    os._exit(0)


def serve(config: ServerConfig) -> int:
    """Run until SIGTERM or SIGINT, then drain gracefully. Returns the exit status (0).

    With `--processes` above 1, runs that many server processes on the port instead
    (`processes.serve_processes`)."""
    if config.processes > 1:
        from .processes import serve_processes

        return serve_processes(config)
    return serve_one(config, lambda port: print(
        f"gradserve serving on port {port}", flush=True))  # noqa: T201 - startup line for humans


def serve_one(config: ServerConfig, on_ready: Callable[[int], object]) -> int:
    """`serve` in this process: `on_ready(port)` once it serves; returns 0 after draining."""
    logging.captureWarnings(True)  # engine warnings (torch's) go to the log, not stderr raw
    # process-wide: here, not in create_server (0: glibc's default)
    heap.keep_freed(config.malloc_keep)
    heap.keep_top_pad(config.malloc_top_pad)
    heap.limit_arenas(config.malloc_arenas)  # before the server's threads start
    if config.engine_threads:
        parallel.set_threads(config.engine_threads)  # process-wide, as the heap settings
    sys.setswitchinterval(SWITCH_INTERVAL)  # process-wide too: the loop's share of the GIL
    server, port = create_server(config)
    freeze_startup_objects()
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("signal %d: draining (grace %.1fs)", signum, config.grace_period)
        # stop() blocks; run it off the signal handler so the main thread keeps waiting.
        threading.Thread(target=server.stop, name="gradserve-drain").start()
        threading.Thread(target=exit_after, args=(config.grace_period + EXIT_MARGIN_SECONDS,),
                         name="gradserve-watchdog", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    on_ready(port)
    server.wait()
    log.info("stopped")
    return 0
