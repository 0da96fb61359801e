#!/usr/bin/env python3
"""The 1 MiB stateless RunGraph call against a 1 MiB echo, per server thread (not a test).

    python bench/mib.py [--rounds 30] [--calls 20] [--old-tree DIR] [--alt FLAGS] [--elements N]

Starts as subprocesses on loopback: gradserve from this tree ("new"), optionally gradserve from
another checkout's `server/`, `engine/`, `surface/` and `protos/` (`--old-tree`, "old": how a change
is measured against the code before it), optionally this tree's with other flags (`--alt "--workers
1"`, "alt"), and the floors it is measured against: bench/service.py's echo server ("echo",
grpc.server), bench/inline_ab.py's grpc.aio echo ("aio-echo", glibc's default heap) and a grpc.aio
server with gradserve's heap settings that serves the echo ("aio-kept"), gradserve's registration
without the hand-off ("aio-read": registered request-streaming, the request read with
`context.read()`, a copy of it made on the loop) and gradserve's transport without its work
("aio-hop": the same, the copy made on a worker thread and handed back to the loop): aio-kept to
aio-read is what request-streaming registration (the intake, server/intake.py) costs, aio-read to
aio-hop what the hand-off to a worker costs. Each round runs `--calls`
sequential calls of bench/service.py's 1 MiB call (a 256K-element float32 x, y = (x**2).sum(), the
gradient 2x back; `--elements` another size; the echoes get the request's bytes) against each server
in turn (A B ..., then reversed), and takes per call: the server's CPU time in all and of its
busiest and second busiest threads in the series (the event loop's, a worker's or grpc core's;
/proc/<pid>/task/*/schedstat, nanoseconds), its minor page faults (/proc/<pid>/stat), and the
round trip's median in the round ("p50"). Prints, per figure, the min and median over the rounds.
Exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import service as bench  # noqa: E402 - bench/service.py: its servers, requests and clients

from gradserve.v1 import service_pb2_grpc  # noqa: E402


def groups(pid: int) -> dict[str, int]:
    """CPU nanoseconds of each of process `pid`'s threads so far, by thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return out


def minflt(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def series(call: Callable[[], Any], n: int, pid: int) -> dict[str, float]:
    """Per call over `n` calls: server CPU ms by thread group and in all, minor faults, and the
    median round trip (ms, "p50")."""
    times = []
    g0, f0 = groups(pid), minflt(pid)
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    g1, f1 = groups(pid), minflt(pid)
    used = sorted(((g1[t] - g0.get(t, 0)) / n / 1e6 for t in g1), reverse=True) + [0.0, 0.0]
    return {"total": sum(used), "top": used[0], "second": used[1], "rest": sum(used[2:]),
            "faults": (f1 - f0) / n, "p50": statistics.median(times) * 1e3}


def old_server(tree: str) -> list[str]:
    """The command that serves gradserve from `tree` (its packages laid out as installed, the
    venv's site-packages behind them)."""
    pkg = tempfile.mkdtemp(prefix="gradserve-old-")
    root = os.path.join(pkg, "gradserve")
    os.mkdir(root)
    proto = os.path.join(tree, "protos", "gradserve")
    for name in os.listdir(proto):
        os.symlink(os.path.join(proto, name), os.path.join(root, name))
    for name in ("surface", "engine", "server", "client"):
        os.symlink(os.path.join(tree, name), os.path.join(root, name))
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = (f"import sys; sys.path[:0] = {[pkg, *site]!r}; "
            "from gradserve.server.cli import main; sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-S", "-c", code]


HOP_METHOD = "/bench.Echo/Hop"
READ_METHOD = "/bench.Echo/Read"


def run_aio_floor_server() -> None:
    """Serve on grpc.aio, with gradserve's default heap settings (server/heap.py), bench's echo
    method, "Read" (registered request-streaming, the request read with `context.read()`, its
    reply a fresh copy of it made on the loop) and "Hop": gradserve's transport without its work
    (the same, the copy made on a worker thread and handed back to the loop as
    server/threaded.py does). Prints the port; runs until killed."""
    import asyncio
    import queue
    import threading

    import grpc

    from gradserve.server import heap
    from gradserve.server.config import ServerConfig

    config = ServerConfig()
    heap.keep_freed(config.malloc_keep)
    heap.limit_arenas(config.malloc_arenas)
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def work() -> None:
        while True:
            loop, future, data = jobs.get()
            reply = b"".join([data[:0], memoryview(data)])  # one copy, as a reply's join
            loop.call_soon_threadsafe(future.set_result, reply)

    for i in range(4):
        threading.Thread(target=work, name=f"hop_{i}", daemon=True).start()

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def read(requests: Any, context: Any) -> bytes:
        data = await context.read()
        return b"".join([data[:0], memoryview(data)])  # type: ignore[index]

    async def hop(requests: Any, context: Any) -> bytes:
        data = await context.read()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        jobs.put((loop, future, data))
        return await future  # type: ignore[no-any-return]

    async def serve() -> None:
        server = grpc.aio.server(options=bench.OPTIONS)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Read": grpc.stream_unary_rpc_method_handler(read),
            "Hop": grpc.stream_unary_rpc_method_handler(hop)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"aio floor serving on port {port}", flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())


def caller(name: str, ch: Any, big: Any, data: bytes) -> Callable[[], Any]:
    """One call of server `name` over channel `ch`: RunGraph(`big`), or an echo of `data`."""
    if name in ("aio-hop", "aio-read"):
        streaming = ch.stream_unary(HOP_METHOD if name == "aio-hop" else READ_METHOD)
        return lambda: streaming(iter((data,)))
    if name.startswith("aio") or name == "echo":
        echo = ch.unary_unary(bench.ECHO_METHOD)
        return lambda: echo(data)
    stub = service_pb2_grpc.AutogradServiceStub(ch)
    return lambda: stub.RunGraph(big)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--old-tree", help="a checkout to measure as 'old'")
    parser.add_argument("--elements", type=int, default=256 * 1024,
                        help="x's float32 elements (default 256K: the 1 MiB call)")
    parser.add_argument("--alt", metavar="FLAGS", default="",
                        help="also this tree's gradserve with these flags added ('alt')")
    parser.add_argument("--no-echo", action="store_true", help="gradserve only")
    parser.add_argument("--aio-floor-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("server_args", nargs="*", help="extra gradserve flags (after --)")
    args = parser.parse_args(argv)
    if args.aio_floor_server:
        run_aio_floor_server()
        return 0
    opts = ["serve", "--host", "127.0.0.1", "--port", "0", "--workers", str(bench.WORKERS),
            "--log-level", "WARNING", *args.server_args]
    cmds = {"new": [sys.executable, "-m", "gradserve.server.cli", *opts]}
    if args.old_tree:
        cmds["old"] = [*old_server(args.old_tree), *opts]
    if args.alt:
        cmds["alt"] = [*cmds["new"], *args.alt.split()]
    if not args.no_echo:
        cmds["echo"] = [sys.executable, os.path.join(HERE, "service.py"), "--echo-server"]
        cmds["aio-echo"] = [sys.executable, os.path.join(HERE, "inline_ab.py"),
                            "--aio-echo-server"]
        floor = [sys.executable, __file__, "--aio-floor-server"]
        cmds["aio-kept"] = floor
        cmds["aio-read"] = floor
        cmds["aio-hop"] = floor
    started: dict[int, Any] = {}  # one process per command (the three aio floors share one)
    procs = {name: started.get(id(cmd)) or started.setdefault(id(cmd), bench.start(cmd))
             for name, cmd in cmds.items()}
    x = np.random.default_rng(0).standard_normal(args.elements).astype(np.float32)
    big = bench.square_graph_request(x)
    data = big.SerializeToString()
    try:
        calls = {name: caller(name, bench.channel(port), big, data)
                 for name, (_, port) in procs.items()}
        for call in calls.values():  # warm up
            for _ in range(50):
                call()
        results: dict[str, list[dict[str, float]]] = {name: [] for name in procs}
        for r in range(args.rounds):
            order = list(procs) if r % 2 == 0 else list(reversed(procs))
            for name in order:
                results[name].append(series(calls[name], args.calls, procs[name][0].pid))
    finally:
        for proc, _ in started.values():
            proc.kill()
            proc.wait()
    keys = ("total", "top", "second", "rest", "faults", "p50")
    print(f"{'server':<9}" + "".join(f"{k + ' min/med':>20}" for k in keys))
    for name, rows in results.items():
        cells = []
        for k in keys:
            vals = [row[k] for row in rows]
            cells.append(f"{min(vals):>9.3f} /{statistics.median(vals):>8.3f}")
        print(f"{name:<9}" + "".join(f"{c:>20}" for c in cells))
    print("(CPU in ms per call; faults: minor page faults per call; p50: the round trip's median "
          "in a round, ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
