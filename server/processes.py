"""`--processes N`: N server processes on one port, for stateless calls that need more than one
core's worth of Python.

One process runs its calls' Python under one GIL, so a busy server uses about one core however
many it has. With `--processes N` (N > 1) the command starts N child processes (multiprocessing
"spawn": fresh interpreters), each a whole server with its own threads, limits and caps, all
listening on the same port with SO_REUSEPORT: the kernel spreads new connections over them, and
a connection stays with the process that accepted it. A session would live in one process and
its next connection may reach another, so such a server is stateless-only: the session methods
answer FAILED_PRECONDITION (`AutogradServicer.stateless_only`); stateless `RunGraph`, `ListOps`
and health are served by every process.

This process (the parent) serves nothing: it waits for every child to say it is serving, prints
the usual startup line, forwards SIGTERM and SIGINT (each child drains as a single server does),
and when a child exits on its own (a crash, an out-of-memory kill) stops the others and exits 1,
so a supervisor (systemd, Kubernetes) restarts the whole server. A child whose parent died
drains and exits too.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from .config import ServerConfig

log = logging.getLogger(__name__)

# Seconds to wait for a child to start serving (a spawned interpreter imports numpy and grpc).
START_SECONDS = 120.0
# How often a child looks whether its parent is still there.
PARENT_POLL_SECONDS = 1.0


def child_config(config: ServerConfig, index: int, port: int) -> ServerConfig:
    """Child `index`'s settings: the shared port, and metrics on `--metrics-port` + index (0: a
    free port each)."""
    metrics = config.metrics_port
    if metrics:
        metrics += index
    return dataclasses.replace(config, port=port, metrics_port=metrics)


def reserve_port(host: str) -> socket.socket:
    """A socket bound to a free port of `host` with SO_REUSEPORT, not listening: it receives no
    connections, and holds the port for the children (`--port 0`)."""
    bare = host.strip("[]") or "::"
    family, kind, proto, _, address = socket.getaddrinfo(
        bare, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _child(config: ServerConfig, index: int, ready: Any, parent: int) -> None:
    """A child's main: serve until signalled (or orphaned), reporting readiness on `ready`."""
    logging.basicConfig(stream=sys.stderr, level=config.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s %(name)s[{index}]: %(message)s")
    from .app import serve_one

    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        log.warning("the parent process is gone: draining")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=orphaned, name="gradserve-parent-watch", daemon=True).start()
    try:
        serve_one(config, lambda port: ready.put((index, port, "")))
    except Exception as exc:
        ready.put((index, 0, f"{type(exc).__name__}: {exc}"))
        raise


def serve_processes(config: ServerConfig) -> int:
    """Run `config.processes` server processes on `config.port` until SIGTERM or SIGINT.

    Returns:
        0 after every child drained; 1 when a child failed to start or exited on its own.

    Raises:
        RuntimeError: "Failed to bind" when a child could not listen on the port.
    """
    ctx = multiprocessing.get_context("spawn")
    holder = reserve_port(config.host) if config.port == 0 else None
    port = holder.getsockname()[1] if holder is not None else config.port
    ready = ctx.Queue()
    children = [ctx.Process(target=_child, name=f"gradserve-{i}",
                            args=(child_config(config, i, port), i, ready, os.getpid()))
                for i in range(config.processes)]
    stopping = threading.Event()

    def stop_children(signum: int = signal.SIGTERM) -> None:
        for child in children:
            if child.pid is not None and child.exitcode is None:
                try:
                    os.kill(child.pid, signum)
                except ProcessLookupError:
                    pass

    def on_signal(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("signal %d: stopping %d processes", signum, len(children))
            stop_children()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for child in children:
            child.start()
        failure = _await_ready(children, ready)
        if holder is not None:
            holder.close()
            holder = None
        if failure:
            stop_children()
            _join(children, config)
            if "Failed to bind" in failure:
                raise RuntimeError(failure)
            log.error("%s", failure)
            return 1
        log.info("%d server processes serving on port %d: %s", len(children), port,
                 " ".join(str(c.pid) for c in children))
        print(f"gradserve serving on port {port}", flush=True)  # noqa: T201 - as one server's
        while True:
            ended = multiprocessing.connection.wait([c.sentinel for c in children])
            if stopping.is_set():
                break
            child = next(c for c in children if c.sentinel in ended)
            child.join()
            log.error("server process %d (pid %s) exited with status %s: stopping the others",
                      children.index(child), child.pid, child.exitcode)
            stop_children()
            _join(children, config)
            return 1
        _join(children, config)
        log.info("stopped")
        return 0
    finally:
        if holder is not None:
            holder.close()
        stop_children(signal.SIGKILL)  # only those still running after all of the above


def _await_ready(children: list[Any], ready: Any) -> str:
    """Wait until every child serves; '' then, else what went wrong."""
    waiting = set(range(len(children)))
    deadline = time.monotonic() + START_SECONDS
    while waiting:
        try:
            index, _, error = ready.get(timeout=0.2)
        except Exception:  # noqa: BLE001 - queue.Empty: look at the children, wait on
            dead = [i for i in waiting if children[i].exitcode is not None]
            if dead:
                return (f"server process {dead[0]} exited with status "
                        f"{children[dead[0]].exitcode} before serving")
            if time.monotonic() > deadline:
                return f"server processes {sorted(waiting)} did not start in {START_SECONDS}s"
            continue
        if error:
            return f"server process {index} could not start: {error}"
        waiting.discard(index)
    return ""


def _join(children: list[Any], config: ServerConfig) -> None:
    """Wait for the children to drain (each exits by grace + its watchdog's margin)."""
    from .app import EXIT_MARGIN_SECONDS

    deadline = time.monotonic() + config.grace_period + EXIT_MARGIN_SECONDS + 5.0
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
