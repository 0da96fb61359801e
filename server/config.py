"""Server settings: one table gives each its default, its flag and its `GRADSERVE_*` variable."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from gradserve.v1 import MAX_MESSAGE_BYTES

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything `gradserve serve` can be told. Field names map to `--flag-name` and
    `GRADSERVE_FIELD_NAME`; the help texts live in `_HELP`."""

    host: str = "[::]"
    port: int = 50051
    workers: int = 32
    max_calls: int = 0
    run_slots: int = 0
    run_quantum: float = 0.015
    inline_seconds: float = 0.002
    max_call_seconds: float = 600.0
    max_session_waiters: int = 8
    max_sessions: int = 1000
    max_principal_sessions: int = 100
    max_principal_calls: int = 16
    max_session_bytes: int = 1024 * MiB
    max_tensor_elements: int = 64 * MiB
    max_instructions: int = 100_000
    max_nodes: int = 20_000
    max_handles: int = 1_000_000
    max_order: int = 8
    max_jacobian_rows: int = 4096
    max_call_ops: int = 50_000
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_memory: int = 0
    max_connection_streams: int = 100
    session_ttl: float = 900.0
    max_session_ttl: float = 86_400.0
    reap_interval: float = 10.0
    dedup_window: int = 16
    dedup_bytes: int = 16 * MiB
    grace_period: float = 10.0
    auth_token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    metrics_port: int | None = None
    log_level: str = "INFO"
    malloc_keep: int = 8 * MiB
    malloc_top_pad: int = 0
    malloc_arenas: int = 2
    malloc_trim: int = 16 * MiB
    engine_threads: int = 0
    processes: int = 1


_HELP = {
    "host": "address to listen on",
    "port": "port to listen on (0 picks a free one)",
    "workers": "threads running calls, each taken once the call's request has arrived (health "
               "checks and reflection run on the event loop)",
    "max_calls": "calls in progress at once, health checks excepted; past it RESOURCE_EXHAUSTED "
                 "at once (0: --workers minus an eighth of them, at least one thread kept free); "
                 "must be below --workers, so a call past it finds a thread to refuse it",
    "run_slots": "calls executing engine work at once; the others queue first come, first "
                 "served (0: one per CPU core)",
    "run_quantum": "seconds a call executes before it yields its run slot to a waiting call",
    "max_call_seconds": "seconds any call may execute, whatever its deadline (one without a "
                        "deadline included): past it DEADLINE_EXCEEDED; 0: no cap",
    "inline_seconds": "seconds a small stateless call (RunGraph) may run on the event loop "
                      "before it is run again on a worker thread instead (its ops small: "
                      "docs/internals.md); at most --run-quantum (a longer one is cut to it); "
                      "0: every call runs on a worker",
    "max_session_waiters": "calls that may wait for one session's lock; past it "
                           "RESOURCE_EXHAUSTED at once",
    "max_sessions": "live sessions at once",
    "max_principal_sessions": "live sessions per token (with --auth-token-file; without tokens "
                              "only --max-sessions applies)",
    "max_principal_calls": "calls in progress per token (with --auth-token-file; without tokens "
                           "only --max-calls applies)",
    "max_session_bytes": "bytes a session keeps alive (tensors, grads, graph nodes, saved "
                         "tensors, optimizer state, remembered replies); also one stateless "
                         "call's budget",
    "max_tensor_elements": "elements any one tensor may have (wire or computed)",
    "max_instructions": "instructions per batch request",
    "max_nodes": "nodes per stateless graph",
    "max_handles": "live handles per session",
    "max_order": "highest derivative order a stateless call may ask for",
    "max_jacobian_rows": "rows (backward passes) of a stateless jacobian or hessian: elements "
                         "of the outputs, or of the wrt inputs for a hessian",
    "max_call_ops": "ops and backward steps one stateless call (RunGraph) may run in all, its "
                    "nodes and every derivative order's passes: a bound on its CPU time (about "
                    "1-3 s on one core at the default)",
    "max_message_bytes": "largest gRPC message received or sent",
    "max_connection_streams": "calls in progress on one client connection (HTTP/2 "
                              "SETTINGS_MAX_CONCURRENT_STREAMS): gRPC clients queue the rest; "
                              "bounds what one connection opening and resetting streams at once "
                              "costs",
    "max_memory": "resident bytes above which calls whose request has been arriving for more "
                  "than 0.25 s are dropped with RESOURCE_EXHAUSTED, so clients that send large "
                  "requests slowly, or very many at once, cannot exhaust the server's memory "
                  "(0: 80%% of the machine's or the container's memory, shared out between the "
                  "--processes)",
    "session_ttl": "default idle seconds before a session is closed",
    "max_session_ttl": "largest idle TTL a client may ask for",
    "reap_interval": "seconds between sweeps for idle sessions",
    "dedup_window": "request ids remembered per session for retried batches",
    "dedup_bytes": "bytes of remembered responses per session",
    "grace_period": "seconds in-flight calls get to finish on SIGTERM",
    "auth_token_file": "file of accepted bearer tokens, one per line (default: no auth)",
    "tls_cert": "PEM certificate chain (enables TLS, needs --tls-key)",
    "tls_key": "PEM private key",
    "tls_client_ca": "PEM CA bundle: require client certificates it signed (mutual TLS)",
    "metrics_port": "serve Prometheus metrics over HTTP on this port (default: off)",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "malloc_arenas": "heaps the C allocator (glibc) may use; few keep memory freed by one worker "
                     "thread reusable by the others, so the server's footprint does not grow "
                     "with --workers (0: the allocator's default, 8 per core)",
    "malloc_keep": "freed bytes the C allocator (glibc) keeps at the top of each heap for the "
                   "next call (M_TRIM_THRESHOLD; blocks of half this or more get a mapping of "
                   "their own, M_MMAP_THRESHOLD), so a call whose buffers fit in it (a 1 MiB "
                   "tensor's call makes ~6 MiB) reuses pages instead of faulting them in anew; "
                   "keep it below --malloc-trim (0: glibc's dynamic thresholds)",
    "malloc_top_pad": "extra bytes the C allocator (glibc) asks the system for when a heap grows, "
                      "and keeps when it trims (M_TOP_PAD; 0: the allocator's default)",
    "malloc_trim": "return the C allocator's (glibc) freed pages to the system (malloc_trim) "
                   "after a call once resident memory grew this many bytes since the last "
                   "trim, and on every --reap-interval sweep that follows calls; bounds what "
                   "fragmented heaps keep (0: off)",
    "engine_threads": "threads one large elementwise op (sin, exp, mul, ... of at least 1048576 "
                      "elements, 2097152 for memory-bound ones) is split over, with the same "
                      "result bits (0: the engine's "
                      "default, 2, or 1 where the process may use one CPU; 1: no splitting)",
    "processes": "server processes sharing --port (SO_REUSEPORT, Linux only), each with its own "
                 "GIL, threads, limits and caps; above 1 the server is stateless-only: "
                 "RunGraph without a session and ListOps are served, session methods are "
                 "refused with FAILED_PRECONDITION (a session lives in one process)",
}

ENV_PREFIX = "GRADSERVE_"


def _field_type(field: dataclasses.Field[Any]) -> type:
    text = str(field.type)
    for name, kind in (("int", int), ("float", float)):
        if text.startswith(name):
            return kind
    return str


def env_name(field_name: str) -> str:
    """`max_session_bytes` -> `GRADSERVE_MAX_SESSION_BYTES`."""
    return ENV_PREFIX + field_name.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one `--flag` per ServerConfig field (unset flags fall back to env, then defaults)."""
    for field in dataclasses.fields(ServerConfig):
        parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name,
                            type=_field_type(field), default=None,
                            help=f"{_HELP[field.name]} (env {env_name(field.name)}, "
                                 f"default {field.default})")


def load(args: argparse.Namespace | None = None,
         environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Settings from flags, else `GRADSERVE_*` variables, else defaults.

    Raises:
        ValueError: a variable does not parse as its setting's type, or a value is out of range.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in dataclasses.fields(ServerConfig):
        flag = getattr(args, field.name, None) if args is not None else None
        if flag is not None:
            values[field.name] = flag
        elif env_name(field.name) in environ:
            raw = environ[env_name(field.name)]
            try:
                values[field.name] = _field_type(field)(raw)
            except ValueError:
                raise ValueError(f"{env_name(field.name)}={raw!r} is not a valid "
                                 f"{_field_type(field).__name__}") from None
    config = ServerConfig(**values)
    validate(config)
    return config


def validate(config: ServerConfig) -> None:
    """Reject settings the server cannot run with.

    Raises:
        ValueError: naming the setting.
    """
    positive = ("workers", "max_session_waiters", "max_principal_sessions",
                "max_principal_calls", "max_sessions", "max_session_bytes", "max_tensor_elements",
                "max_instructions", "max_nodes", "max_handles", "max_order", "max_jacobian_rows",
                "max_message_bytes", "max_connection_streams", "session_ttl", "max_session_ttl",
                "reap_interval")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    for name in ("max_calls", "max_memory", "run_slots", "malloc_arenas", "malloc_keep",
                 "malloc_top_pad", "malloc_trim", "engine_threads", "inline_seconds",
                 "max_call_seconds"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be 0 (automatic or off) or positive, got "
                             f"{getattr(config, name)}")
    if config.processes < 1:
        raise ValueError(f"processes must be positive, got {config.processes}")
    if config.max_calls >= config.workers:
        raise ValueError(f"max_calls ({config.max_calls}) must be below workers "
                         f"({config.workers}): a call past it needs a free thread to be "
                         "refused at once")
    if not config.run_quantum > 0:
        raise ValueError(f"run_quantum must be positive, got {config.run_quantum}")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if config.tls_client_ca is not None and config.tls_cert is None:
        raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")


def from_argv(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Parse `gradserve serve` arguments (for tests and embedding)."""
    parser = argparse.ArgumentParser(prog="gradserve serve")
    add_arguments(parser)
    return load(parser.parse_args(list(argv)), environ)


def max_calls(config: ServerConfig) -> int:
    """`--max-calls`, or when 0 `--workers` minus an eighth of them (at least one kept)."""
    if config.max_calls:
        return config.max_calls
    return max(1, config.workers - max(1, config.workers // 8))


def run_slots(config: ServerConfig) -> int:
    """`--run-slots`, or when 0 the CPU cores this process may use, shared out between the
    `--processes` (at least one each)."""
    if config.run_slots:
        return config.run_slots
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // config.processes)
