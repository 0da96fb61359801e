#!/usr/bin/env python3
"""Small stateless calls and session batches on the event loop (`--inline-seconds`,
server/inline.py, server/inline_batch.py) against the worker path (`--inline-seconds 0`),
interleaved (not a test).

    python bench/inline_ab.py [--rounds 30] [--calls 200] [--clients 16] [--seconds 1]

Starts four servers as subprocesses on loopback: gradserve as configured by default ("loop"),
gradserve with `--inline-seconds 0` ("worker"), bench/service.py's echo server ("echo", on
grpc.server's thread pool) and the same echo on grpc.aio ("aio-echo": the floor of gradserve's
transport, whose handler returns the request's bytes on the event loop). Each round
runs, against each server in turn (A B, then B A: a burst of other work on the shared machine
hits both), `--calls` sequential calls of bench/service.py's small stateless call (`y = x**2` of
a 0-d float32 with its gradient; the echo gets the same bytes), of its session batch (create,
pow, backward, fetch the grad, release: ApplyOp messages), and through the SDK (gradserve.client)
of bench/client.py's seed step (its one round trip, a tape) and Adam iteration (zero_grad, 9
ops, backward, step: one round trip), and takes for each series: the server's CPU time per
call (all its threads, from /proc/<pid>/task/*/schedstat: nanoseconds, not clock ticks), the
client thread's CPU time per call (`time.thread_time_ns`) and the median round-trip. Then
`--throughput-rounds` interleaved rounds of `--clients` concurrent clients for `--seconds` each
give requests/s. Prints, per figure, the min and median over the rounds, and the ratios of the
medians to the echo's. Exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import service as bench  # noqa: E402 - bench/service.py: its servers, requests and clients

import client as client_bench  # noqa: E402 - bench/client.py: the seed step, the Adam loop
import gradserve.client as gc  # noqa: E402
from gradserve.v1 import service_pb2_grpc  # noqa: E402


def server_cpu_ns(pid: int) -> int:
    """Nanoseconds all threads of process `pid` have run (their schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


def series(call: Callable[[], Any], n: int, pid: int) -> tuple[float, float, float]:
    """(server CPU ms, client thread CPU ms, median round-trip ms) per call over `n` calls."""
    times = []
    before, c0 = server_cpu_ns(pid), time.thread_time_ns()
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    client = (time.thread_time_ns() - c0) / n / 1e6
    server = (server_cpu_ns(pid) - before) / n / 1e6
    return server, client, statistics.median(times) * 1e3


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--throughput-rounds", type=int, default=10)
    parser.add_argument("--aio-echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.aio_echo_server:
        bench.run_aio_echo_server(gradserve_heap=False)
        return 0
    common = [sys.executable, "-m", "gradserve.server.cli", "serve", "--host", "127.0.0.1",
              "--port", "0", "--workers", str(bench.WORKERS), "--log-level", "WARNING"]
    procs = {"loop": bench.start(common), "worker": bench.start([*common, "--inline-seconds", "0"]),
             "echo": bench.start([sys.executable, os.path.join(HERE, "service.py"),
                                  "--echo-server"]),
             "aio-echo": bench.start([sys.executable, __file__, "--aio-echo-server"])}
    small = bench.square_graph_request(np.array(3.0, np.float32))
    data = small.SerializeToString()
    try:
        calls: dict[str, dict[str, Callable[[], Any]]] = {}
        for name, (_, port) in procs.items():
            ch = bench.channel(port)
            if name.endswith("echo"):
                echo = ch.unary_unary(bench.ECHO_METHOD)
                calls[name] = {"stateless": lambda e=echo: e(data)}
                continue
            stub = service_pb2_grpc.AutogradServiceStub(ch)
            session = gc.connect(f"127.0.0.1:{port}").session()
            calls[name] = {"stateless": lambda s=stub: s.RunGraph(small),
                           "session": bench.SessionCaller(stub),
                           "seed-step": lambda t=session: client_bench.seed_step(t),
                           "adam-iter": client_bench.AdamLoop(session).step}
        for kinds in calls.values():  # warm up
            for call in kinds.values():
                for _ in range(200):
                    call()
        results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for r in range(args.rounds):
            order = list(procs) if r % 2 == 0 else list(reversed(procs))
            for name in order:
                for kind, call in calls[name].items():
                    results.setdefault((name, kind), []).append(
                        series(call, args.calls, procs[name][0].pid))
        rates: dict[str, list[float]] = {}
        for r in range(args.throughput_rounds):
            order = list(procs) if r % 2 == 0 else list(reversed(procs))
            for name in order:
                port = procs[name][1]

                def make(name: str = name, port: int = port) -> Callable[[], Any]:
                    ch = bench.channel(port)
                    if name.endswith("echo"):
                        m = ch.unary_unary(bench.ECHO_METHOD)
                        return lambda: m(data)
                    s = service_pb2_grpc.AutogradServiceStub(ch)
                    return lambda: s.RunGraph(small)

                rates.setdefault(name, []).append(
                    bench.throughput(make, args.clients, args.seconds))
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait()

    print(f"{args.rounds} rounds of {args.calls} calls; min / median over rounds; "
          f"ratio = median / echo's median")
    print(f"{'series':<28} {'figure':<18} {'min':>8} {'median':>8} {'ratio':>6}")
    labels = ("server CPU ms/call", "client CPU ms/call", "p50 ms")
    echo = results[("echo", "stateless")]
    for (name, kind), rows in results.items():
        for i, label in enumerate(labels):
            values = [row[i] for row in rows]
            med = statistics.median(values)
            ratio = med / statistics.median(row[i] for row in echo)
            print(f"{name + ' ' + kind:<28} {label:<18} {min(values):>8.3f} {med:>8.3f} "
                  f"{ratio:>6.2f}")
    echo_rate = statistics.median(rates["echo"])
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name + ' stateless':<28} {f'req/s {args.clients} clients':<18} "
              f"{min(values):>8.0f} {med:>8.0f} {med / echo_rate:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
