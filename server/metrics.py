"""Prometheus metrics: requests and latency by method and status code, sessions, bytes held."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """The server's metrics, in a registry of their own (several servers may share a process)."""

    def __init__(self, live_sessions: Callable[[], float], bytes_held: Callable[[], float]):
        self.registry = CollectorRegistry()
        self.requests = Counter("gradserve_requests", "RPCs handled", ["method", "code"],
                                registry=self.registry)
        self.latency = Histogram("gradserve_request_seconds", "RPC latency in seconds",
                                 ["method", "code"], registry=self.registry,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5,
                                          1, 2.5, 5, 10, 30))
        self.sessions = Gauge("gradserve_live_sessions", "sessions open",
                              registry=self.registry)
        self.sessions.set_function(live_sessions)
        self.bytes = Gauge("gradserve_session_bytes", "bytes held by all sessions",
                           registry=self.registry)
        self.bytes.set_function(bytes_held)
        self._http: Any = None
        # (method, code) -> (counter, histogram) children; methods and codes are finite sets
        self._children: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count one finished RPC."""
        children = self._children.get((method, code))
        if children is None:  # labels() validates and locks: once per (method, code)
            name = code.name
            children = (self.requests.labels(method, name), self.latency.labels(method, name))
            self._children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Expose /metrics over HTTP; returns the bound port (useful with port 0)."""
        self._http, _ = start_http_server(port, addr=addr, registry=self.registry)
        return int(self._http.server_port)

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
