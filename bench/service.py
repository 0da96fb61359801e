#!/usr/bin/env python3
"""Service overhead against a bare gRPC echo, measured in the same run (not a test).

    python bench/service.py [--seconds 2] [--calls 2000] [--processes N]

Starts two servers as subprocesses on loopback with the same worker count and message limits:
gradserve, and an echo server that returns its request bytes. Then measures, from this process:
  - round-trip p50/p99 of a stateless `y = x**2` gradient (RunGraph) and of a session batch doing
    the same (create, pow, backward, fetch grad, release), each against an echo of a payload of
    the same size;
  - requests/s of the stateless call and of its echo at 1, 4 and 16 concurrent clients;
  - a 1 MiB float32 tensor through RunGraph (y = x**2 summed, gradient back) against a 1 MiB echo.
Every echo figure is measured twice: on the threaded echo (`grpc.server`'s thread pool: the
baseline of the targets) and on the same echo on `grpc.aio` ("aio echo", its handler answering on
the event loop, under gradserve's heap settings): gradserve's transport is grpc.aio
(docs/security.md), so the aio echo is the floor of what gradserve can reach, and the second
ratio shows gradserve's own cost above it.
This process, the client, keeps its C heap as gradserve's servers do (`client_heap`).
Prints a table of the figures and their ratios, and for each latency series the CPU time each
server process spent per call (user + system, from /proc/<pid>/stat; Linux only): on a shared,
loaded machine wall-clock latency mostly measures waiting for a core, CPU per call what each
server does. Targets (issue 13): stateless small call p50 <= 1.2x the echo's; session small
batch p50 <= 1.3x; requests/s at 16 clients >= 0.8x the echo's; the 1 MiB call <= 1.5x the
1 MiB echo. `--processes N` runs gradserve with `--processes N` (stateless-only: the session
row is left out).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np

from gradserve.v1 import MAX_MESSAGE_BYTES, graph_pb2, service_pb2, service_pb2_grpc, session_pb2

ECHO_METHOD = "/bench.Echo/Echo"
WORKERS = 32  # the server's default; its --max-calls (28) then admits the 16 clients
# Calls before a 1 MiB series: the first 1 MiB calls on a channel that carried only small ones
# took 8-10 ms against 4-6 ms later (load ~20; likely HTTP/2 flow-control windows still
# growing), and the 25 a `--calls 1000` run used to warm up were within them.
LARGE_WARMUP = 100
OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
           ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]


def run_echo_server(workers: int = WORKERS) -> None:
    """Serve the echo method with `workers` threads until killed; print the port."""
    def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"echo serving on port {port}", flush=True)
    server.wait_for_termination()


def run_aio_echo_server(gradserve_heap: bool = True) -> None:
    """Serve the echo method on grpc.aio until killed; print the port. With `gradserve_heap`,
    under gradserve's default heap settings (server/heap.py: freed memory kept, arenas limited;
    glibc's defaults make a 1 MiB echo page-fault and cost ~2x its CPU, bench/mib.py)."""
    import asyncio

    if gradserve_heap:
        from gradserve.server import heap
        from gradserve.server.config import ServerConfig

        config = ServerConfig()
        heap.keep_freed(config.malloc_keep)
        heap.limit_arenas(config.malloc_arenas)

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def serve() -> None:
        server = grpc.aio.server(options=OPTIONS)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"aio echo serving on port {port}", flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())


def client_heap() -> None:
    """This (client) process's C heap as gradserve's servers keep theirs (server/heap.py), for
    every row alike. With glibc's defaults a 1 MiB call through the generated stub (its request
    serialized, its reply parsed: some 4 MiB allocated and freed a call) faulted ~980 pages back
    in per call, 2-3 ms of the client's time on the loaded 2-core machine, against ~20 for the
    echo's client (one bytes object sent, the reply left unparsed); with these settings ~0-10
    for both (2026-12-07, `ru_minflt`)."""
    import gradserve.client as gc
    from gradserve.server.config import ServerConfig

    gc.keep_freed_memory(ServerConfig().malloc_keep)  # what a user's client can ask for too


def start(cmd: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line.split()[-1])


def channel(port: int) -> grpc.Channel:
    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)
    grpc.channel_ready_future(ch).result(timeout=30)
    return ch


def tensor(arr: np.ndarray) -> Any:
    from gradserve.v1 import tensor_pb2

    return tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=list(arr.shape),
                             raw=np.ascontiguousarray(arr, "<f4").tobytes())


def square_graph_request(x: np.ndarray) -> service_pb2.RunGraphRequest:
    nodes = [graph_pb2.Node(id="y", op="pow", inputs=[
        graph_pb2.Value(ref=graph_pb2.NodeOutput(id="x")), graph_pb2.Value(int_scalar=2)])]
    out = "y"
    if x.ndim:
        nodes.append(graph_pb2.Node(id="s", op="sum", inputs=[
            graph_pb2.Value(ref=graph_pb2.NodeOutput(id="y"))]))
        out = "s"
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=nodes,
                        outputs=[graph_pb2.GraphOutput(name=out, ref=graph_pb2.NodeOutput(id=out))])
    return service_pb2.RunGraphRequest(graph=g, inputs={"x": tensor(x)}, wrt=["x"])


class SessionCaller:
    """One session; each call is one batch computing x**2's gradient and releasing its handles."""

    def __init__(self, stub: Any):
        self.stub = stub
        resp = stub.CreateSession(session_pb2.CreateSessionRequest())
        self.id = resp.session_id
        self.metadata = (("x-session-id", self.id),)
        self.handles = itertools.count(1)
        self.x = tensor(np.array(3.0, np.float32))

    def request(self) -> session_pb2.BatchRequest:
        x, y = next(self.handles), next(self.handles)
        pb = session_pb2
        return pb.BatchRequest(session_id=self.id, instructions=[
            pb.Instruction(create_tensor=pb.CreateTensor(handle=x, value=self.x,
                                                         requires_grad=True)),
            pb.Instruction(apply_op=pb.ApplyOp(op="pow", outputs=[y], inputs=[
                graph_pb2.Value(handle=x), graph_pb2.Value(int_scalar=2)])),
            pb.Instruction(backward=pb.Backward(tensor=y)),
            pb.Instruction(fetch=pb.Fetch(handle=x, grad=True)),
            pb.Instruction(release=pb.Release(handles=[x, y]))])

    def __call__(self) -> Any:
        return self.stub.ExecuteBatch(self.request(), metadata=self.metadata)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process `pid` and its children now running have used (Linux
    /proc; `--processes` serves from children), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError, IndexError):
        return None
    for child in children:
        total += cpu_seconds(child) or 0.0
    return total


class Latencies:
    """One latency series (seconds per call) and the server's CPU per call over it (ms)."""

    def __init__(self, call: Callable[[], Any], n: int, server_pid: int,
                 warmup: int | None = None):
        for _ in range(min(200, n) if warmup is None else warmup):  # warm up
            call()
        self.values: list[float] = []
        before = cpu_seconds(server_pid)
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            self.values.append(time.perf_counter() - t0)
        after = cpu_seconds(server_pid)
        self.cpu_ms = (math.nan if before is None or after is None
                       else (after - before) / n * 1e3)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3


def throughput(make_call: Callable[[], Callable[[], Any]], clients: int, seconds: float) -> float:
    calls = [make_call() for _ in range(clients)]
    counts = [0] * clients
    stop = threading.Event()
    start_line = threading.Barrier(clients + 1)

    def loop(i: int) -> None:
        call = calls[i]
        start_line.wait()
        while not stop.is_set():
            call()
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_line.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)  # the measurement window itself (a benchmark, not a test)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="gradserve vs a bare gRPC echo")
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput point")
    parser.add_argument("--calls", type=int, default=2000, help="per latency series")
    parser.add_argument("--processes", type=int, default=1,
                        help="gradserve's --processes (above 1: no session row)")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--aio-echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=WORKERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        run_echo_server(args.workers)
        return 0
    if args.aio_echo_server:
        run_aio_echo_server()
        return 0

    client_heap()
    gs_proc, gs_port = start([sys.executable, "-m", "gradserve.server.cli", "serve", "--host",
                              "127.0.0.1", "--port", "0", "--workers", str(WORKERS),
                              "--log-level", "WARNING",
                              "--processes", str(args.processes)])
    echo_proc, echo_port = start([sys.executable, __file__, "--echo-server"])
    aio_proc, aio_port = start([sys.executable, __file__, "--aio-echo-server"])
    rows: list[tuple[str, str, float, float, float, str]] = []
    try:
        gs_ch = channel(gs_port)
        stub = service_pb2_grpc.AutogradServiceStub(gs_ch)
        echo = channel(echo_port).unary_unary(ECHO_METHOD)
        aio_echo = channel(aio_port).unary_unary(ECHO_METHOD)

        def series(name: str, ours: Callable[[], Any], payload: bytes, n: int,
                   target: str, p99: bool = True, warmup: int | None = None) -> None:
            a = Latencies(ours, n, gs_proc.pid, warmup)
            e = Latencies(lambda: echo(payload), n, echo_proc.pid, warmup)
            f = Latencies(lambda: aio_echo(payload), n, aio_proc.pid, warmup)
            rows.append((name, "p50 ms", pct(a.values, 50), pct(e.values, 50),
                         pct(f.values, 50), target))
            if p99:
                rows.append((name, "p99 ms", pct(a.values, 99), pct(e.values, 99),
                             pct(f.values, 99), ""))
            rows.append((name, "cpu ms", a.cpu_ms, e.cpu_ms, f.cpu_ms, "(server CPU per call)"))

        small = square_graph_request(np.array(3.0, np.float32))
        series("stateless x**2 grad", lambda: stub.RunGraph(small), small.SerializeToString(),
               args.calls, "<= 1.2")
        if args.processes == 1:  # a server of several processes refuses sessions
            session = SessionCaller(stub)
            series("session batch x**2 grad", session, session.request().SerializeToString(),
                   args.calls, "<= 1.3")

        for clients in (1, 4, 16):
            def make_gs() -> Callable[[], Any]:
                s = service_pb2_grpc.AutogradServiceStub(channel(gs_port))
                return lambda: s.RunGraph(small)

            def make_echo(port: int) -> Callable[[], Callable[[], Any]]:
                def make() -> Callable[[], Any]:
                    m = channel(port).unary_unary(ECHO_METHOD)
                    data = small.SerializeToString()
                    return lambda: m(data)
                return make

            g = throughput(make_gs, clients, args.seconds)
            x = throughput(make_echo(echo_port), clients, args.seconds)
            y = throughput(make_echo(aio_port), clients, args.seconds)
            rows.append((f"stateless, {clients} clients", "req/s", g, x, y,
                         ">= 0.8" if clients == 16 else ""))

        big = square_graph_request(np.random.default_rng(0).standard_normal(
            (1 << 20) // 4).astype(np.float32))
        series("1 MiB float32 stateless", lambda: stub.RunGraph(big), big.SerializeToString(),
               max(20, args.calls // 40), "<= 1.5", p99=False, warmup=LARGE_WARMUP)
    finally:
        for proc in (gs_proc, echo_proc, aio_proc):
            proc.terminate()
            proc.wait()

    print(f"{'measure':<26} {'unit':<7} {'gradserve':>10} {'echo':>10} {'ratio':>7}  "
          f"{'aio echo':>10} {'ratio':>7}  target (vs echo)")
    for name, unit, ours, theirs, floor, target in rows:
        ratio = ours / theirs if theirs else math.nan
        above = ours / floor if floor else math.nan
        print(f"{name:<26} {unit:<7} {ours:>10.3f} {theirs:>10.3f} {ratio:>7.2f}  "
              f"{floor:>10.3f} {above:>7.2f}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
