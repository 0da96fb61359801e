"""Client SDK speed, as ratios measured in the same run (issue 4's targets; not a timed test).

    python bench/client.py            # full run
    python bench/client.py --quick    # fewer repeats

Cases:
- seed-step: the seed's `x = tensor(3., requires_grad=True); y = x**2; y.backward(); x.grad`
  (reading the gradient's value) through a session against a local server (two round trips),
  against torch.distributed.rpc doing the same forward+backward in a remote worker process
  (TensorPipe over loopback; one rpc_sync), and against local torch. Target: <= 0.5x torch RPC.
- chain-1000: a 1000-op scalar chain (`y = y * 1.001 + 0.001`, 500 times) and reading the
  result, through the client (one batch), against the same code on `gradserve.engine` in
  process. Target: <= 2x the engine. `chain-1000-bwd` adds backward and reading the gradient.
- adam-iter: one iteration of a small Adam training loop (zero_grad, 9 ops, backward, step; the
  loss is not read) through a session, against local torch, and against a bare gRPC echo round
  trip (a server returning the request bytes of a small batch). Issue 13's targets: <= 1.5x the
  echo; the seed step <= 2x the echo.
  `adam-iter pipelined`: the same in a `session(pipelined=256)` (nothing waits; a background
  batch every 256 instructions, ~36 iterations), against local torch: target <= 2x. With --cpu
  it is also timed by the wall clock (`adam-iter pipelined wall`, against torch's wall time):
  the time a user waits per iteration, where the client's recording and the server's work
  overlap on two cores; the CPU figure sums both processes, so pipelining cannot show there.

Both servers (gradserve's and the echo) run as processes of their own on loopback, as a deployed
service does; `--in-process` runs them in this process instead (sharing its GIL with the client,
so pipelining cannot overlap the client's work with the server's).

Reports the median of several repeats of many calls each; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import service  # bench/service.py: its echo server, process start-up and /proc CPU reading

TARGETS = {"seed-step vs torch-rpc": 0.5, "chain-1000 vs engine": 2.0,
           "chain-1000-bwd vs engine": 2.0, "seed-step vs echo": 2.0, "adam-iter vs echo": 1.5,
           "adam-pipelined vs torch": 2.0, "adam-pipelined vs torch (wall)": 2.0}
PIPELINE = 256  # instructions per background batch in the pipelined Adam case
WORKERS = 4  # each server's worker threads


# The clock timeit reads: wall time, or with --cpu the CPU time of this process (every thread:
# the client, gRPC's, an in-process server) plus the server processes', which a machine loaded
# by other work distorts less.
CLOCK = [time.perf_counter]
SERVER_PIDS: list[int] = []  # servers running as processes, whose CPU `cpu_clock` adds


def cpu_clock() -> float:
    """CPU seconds of this process and of the server processes (/proc, in clock ticks)."""
    return time.process_time() + sum(service.cpu_seconds(pid) or 0.0 for pid in SERVER_PIDS)


def timeit(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.2,
           clock: Callable[[], float] | None = None,
           finish: Callable[[], Any] | None = None) -> float:
    """Median seconds per call over `repeats` rounds lasting about `min_seconds` each, by
    `clock` (default the run's: wall time, or CPU time with --cpu); `finish` ends each round
    inside its time (a pipelined session's flush: the work still in flight is the round's)."""
    clock = clock or CLOCK[0]
    fn()
    start = clock()
    fn()
    once = max(clock() - start, 1e-6)
    calls = max(1, int(min_seconds / once))
    rounds = []
    for _ in range(repeats):
        if finish is not None:
            finish()
        start = clock()
        for _ in range(calls):
            fn()
        if finish is not None:
            finish()
        rounds.append((clock() - start) / calls)
    return statistics.median(rounds)


def seed_step(torch: Any) -> float:
    x = torch.tensor(3.0, requires_grad=True)
    y = x**2
    y.backward()
    return x.grad.item()


def chain(torch: Any, backward: bool) -> float:
    x = torch.tensor(0.5, requires_grad=backward)
    y = x
    for _ in range(500):
        y = y * 1.001 + 0.001
    if backward:
        y.backward()
        return x.grad.item()
    return y.item()


class AdamLoop:
    """A small regression trained with Adam: `step()` is one iteration (zero_grad, 9 ops,
    backward, step), the loss left unread as a training loop that logs rarely does."""

    def __init__(self, torch: Any):
        import numpy as np

        rng = np.random.default_rng(0)
        self.x = torch.tensor(rng.standard_normal((16, 4)).astype("float32"))
        self.y = torch.tensor(rng.standard_normal((16, 1)).astype("float32"))
        self.w = torch.tensor(rng.standard_normal((4, 1)).astype("float32"), requires_grad=True)
        self.b = torch.tensor(np.zeros(1, "float32"), requires_grad=True)
        self.opt = torch.optim.Adam([self.w, self.b], lr=0.01)

    def step(self) -> None:
        self.opt.zero_grad()
        pred = self.x @ self.w + self.b
        err = pred - self.y
        loss = (err * err).mean() + 0.001 * (self.w * self.w).sum()
        loss.backward()
        self.opt.step()


def echo_server() -> tuple[Any, int]:
    """An in-process gRPC server whose one method returns its request bytes."""
    from concurrent import futures

    import grpc

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


class ServerProcess:
    """A server started as a process of its own (`cmd` prints its port last on its first
    line, as `gradserve serve` and `bench/service.py --echo-server` do), stopped on exit; its
    CPU counts in `cpu_clock` while it runs."""

    def __init__(self, cmd: list[str]):
        self.proc, self.port = service.start(cmd)
        SERVER_PIDS.append(self.proc.pid)

    def stop(self, grace: Any = None) -> None:
        SERVER_PIDS.remove(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start_server(in_process: bool, gradserve: bool) -> tuple[Any, int]:
    """gradserve's server (else the echo) with WORKERS workers on a loopback port: (server
    with a `stop(grace)` method, port)."""
    if gradserve and in_process:
        from gradserve.server.app import create_server
        from gradserve.server.config import ServerConfig

        server, port = create_server(ServerConfig(host="127.0.0.1", port=0, workers=WORKERS))
        server.start()
        return server, port
    if in_process:
        return echo_server()
    cmd = ([sys.executable, "-m", "gradserve.server.cli", "serve", "--host", "127.0.0.1",
            "--port", "0", "--workers", str(WORKERS), "--log-level", "WARNING"] if gradserve
           else [sys.executable, service.__file__, "--echo-server", "--workers", str(WORKERS)])
    server = ServerProcess(cmd)
    return server, server.port


def echo_time(repeats: int, in_process: bool) -> float:
    """Seconds per echo round trip of a small batch's bytes (the transport floor)."""
    import grpc

    from gradserve.v1 import graph_pb2
    from gradserve.v1 import session_pb2 as spb

    payload = spb.BatchRequest(session_id="x" * 32, request_id="y" * 32, instructions=[
        spb.Instruction(apply_op=spb.ApplyOp(op="mul", outputs=[2], inputs=[
            graph_pb2.Value(handle=1), graph_pb2.Value(float_scalar=2.0)]))
    ]).SerializeToString()
    server, port = start_server(in_process, gradserve=False)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            echo = ch.unary_unary("/bench.Echo/Echo")
            return timeit(lambda: echo(payload), repeats)
    finally:
        server.stop(0)


# --- torch.distributed.rpc baseline ---------------------------------------------------------------

def rpc_seed_step(value: float) -> float:
    """Runs in the remote worker: the seed step, returning the gradient."""
    import torch

    x = torch.tensor(value, requires_grad=True)
    y = x**2
    y.backward()
    return x.grad.item()


def _rpc_worker(port: int) -> None:
    import torch.distributed.rpc as rpc

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    rpc.init_rpc("worker", rank=1, world_size=2)
    rpc.shutdown()


def torch_rpc_time(repeats: int) -> tuple[float | None, str]:
    """Seconds per remote seed step over torch.distributed.rpc, or (None, why not)."""
    try:
        import torch.distributed.rpc as rpc
    except ImportError as exc:  # pragma: no cover - torch built without distributed
        return None, f"torch.distributed.rpc unavailable: {exc}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    worker = ctx.Process(target=_rpc_worker, args=(port,), daemon=True)
    worker.start()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        rpc.init_rpc("master", rank=0, world_size=2)
    except Exception as exc:  # noqa: BLE001 - report why the baseline could not run
        worker.kill()
        return None, f"torch.distributed.rpc could not start: {exc}"
    try:
        t = timeit(lambda: rpc.rpc_sync("worker", rpc_seed_step, args=(3.0,)), repeats)
    finally:
        rpc.shutdown()
        worker.join(timeout=30)
    return t, "torch.distributed.rpc (TensorPipe, loopback, one rpc_sync)"


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-rpc", action="store_true", help="skip the torch RPC baseline")
    parser.add_argument("--no-tape", action="store_true",
                        help="the server does not offer the instruction tape (every op is an "
                             "ApplyOp message, as before issue 13)")
    parser.add_argument("--cpu", action="store_true",
                        help="time with this process's CPU time (all threads) instead of wall "
                             "time, plus the server processes': steadier on a loaded machine; "
                             "excludes the RPC baseline's worker process")
    parser.add_argument("--in-process", action="store_true",
                        help="run gradserve's server and the echo in this process (sharing its "
                             "GIL) instead of as processes of their own")
    args = parser.parse_args(argv)
    if args.cpu:
        CLOCK[0] = cpu_clock
    repeats = 3 if args.quick else 7

    import torch

    import gradserve.client as gc
    import gradserve.engine as ge

    torch.set_num_threads(1)
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"{os.cpu_count()} cpus, {platform.machine()}; servers "
          + ("in this process" if args.in_process else "in processes of their own"))
    rows: dict[str, float] = {}
    rpc_t, rpc_note = (None, "skipped (--no-rpc)") if args.no_rpc else torch_rpc_time(repeats)

    if args.no_tape:
        from gradserve.server import catalogue

        if not args.in_process:
            parser.error("--no-tape needs --in-process (it edits this process's catalogue)")
        del catalogue.list_ops().features[:]  # (a gradserve without tapes has no features)
    server, port = start_server(args.in_process, gradserve=True)
    try:
        with gc.connect(f"127.0.0.1:{port}") as client, client.session() as session:
            rows["seed-step client"] = timeit(lambda: seed_step(session), repeats)
            rows["chain-1000 client"] = timeit(lambda: chain(session, False), repeats)
            rows["chain-1000-bwd client"] = timeit(lambda: chain(session, True), repeats)
            loop = AdamLoop(session)
            rows["adam-iter client"] = timeit(loop.step, repeats)
            del loop
        with gc.connect(f"127.0.0.1:{port}") as client:
            try:
                session = client.session(pipelined=PIPELINE)
            except TypeError:  # a gradserve older than the pipelined mode (a "before" run)
                session = None
            if session is not None:
                loop = AdamLoop(session)
                # what is still pending at a round's end is part of its work: waited for
                rows["adam-iter pipelined"] = timeit(loop.step, repeats, finish=session.flush)
                if args.cpu:  # and the wall time a user waits, where the two processes overlap
                    rows["adam-iter pipelined wall"] = timeit(
                        loop.step, repeats, clock=time.perf_counter, finish=session.flush)
                del loop
                session.close()
    finally:
        server.stop(0)
    rows["echo round trip"] = echo_time(repeats, args.in_process)
    loop = AdamLoop(torch)
    rows["adam-iter torch"] = timeit(loop.step, repeats)
    if "adam-iter pipelined wall" in rows:
        rows["adam-iter torch wall"] = timeit(loop.step, repeats, clock=time.perf_counter)
    rows["seed-step torch"] = timeit(lambda: seed_step(torch), repeats)
    rows["chain-1000 engine"] = timeit(lambda: chain(ge, False), repeats)
    rows["chain-1000-bwd engine"] = timeit(lambda: chain(ge, True), repeats)
    if rpc_t is not None:
        rows["seed-step torch-rpc"] = rpc_t

    for name, t in rows.items():
        print(f"{name:<26} {t * 1e3:9.3f} ms")
    print(f"torch RPC baseline: {rpc_note}")
    ratios = {"chain-1000 vs engine": rows["chain-1000 client"] / rows["chain-1000 engine"],
              "chain-1000-bwd vs engine": (rows["chain-1000-bwd client"]
                                           / rows["chain-1000-bwd engine"]),
              "seed-step vs local torch": rows["seed-step client"] / rows["seed-step torch"],
              "seed-step vs echo": rows["seed-step client"] / rows["echo round trip"],
              "adam-iter vs echo": rows["adam-iter client"] / rows["echo round trip"],
              "adam-iter vs local torch": rows["adam-iter client"] / rows["adam-iter torch"]}
    if "adam-iter pipelined" in rows:
        ratios["adam-pipelined vs torch"] = rows["adam-iter pipelined"] / rows["adam-iter torch"]
    if "adam-iter pipelined wall" in rows:
        ratios["adam-pipelined vs torch (wall)"] = (rows["adam-iter pipelined wall"]
                                                    / rows["adam-iter torch wall"])
    if rpc_t is not None:
        ratios["seed-step vs torch-rpc"] = rows["seed-step client"] / rpc_t
    for name, r in ratios.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"  (target <= {target}: " + (
            "met)" if r <= target else "MISSED)")
        print(f"{name:<26} {r:8.2f}x{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
