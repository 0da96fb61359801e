"""The client SDK's own CPU per recorded op and per iteration, two versions interleaved.

    python bench/clientop.py --old DIR --new DIR [--rounds 30] [--latency MS] [case ...]

DIR holds a `gradserve` package, as for bench/perop.py (a checkout's `protos/gradserve` with
`surface`, `engine`, `server`, `client` beside `v1`, e.g. as symlinks; `--new .` runs this
checkout as installed). One gradserve server runs as a process of its own (this checkout's);
two worker processes, one per client version, each with its own session on it, run the same
case in turn, in rounds alternating which goes first, each timing only the CPU time of its
own calling thread (`time.thread_time_ns`): the client's work, not the server's nor gRPC's
threads, and not the time spent waiting for a reply. Reported: min and median over the rounds,
in microseconds per op (per iteration for the Adam cases). `--latency MS` puts a relay
(bench/relay.py) between the clients and the server that delays every byte MS each way: a
network's round trip, which loopback does not have.

Cases (bench/client.py's programs):
- record: recording the 1000-op chain (`y = y * 1.001 + 0.001`, 500 times) without sending it
  (the batch is sent, untimed, after each run): the per-op recording path.
- chain: the chain and reading its value (`item()`): recording, the flush's encoding and the
  reply.
- chain-bwd: the chain with `requires_grad`, `backward()` and reading `x.grad.item()`.
- attrs: recording ops with attributes or arguments to bind (`x.sum(0)`, `x.transpose(0, 1)`,
  `softmax(x, 1)`, `x.view(16)`, `x.pow(2)`, `clamp(x, -1.0, 1.0)`, `x.mean(dim=1,
  keepdim=True)`, `add(x, y, alpha=2)`, 50 times each) without sending them, per op.
- seed: the seed step (`x = tensor(3., requires_grad=True); y = x**2; y.backward();
  x.grad.item()`), per step.
- adam: one iteration of bench/client.py's Adam loop (zero_grad, 9 ops, backward, step), per
  iteration.
- adam-pipelined: the same in a `session(pipelined=256)` (gRPC's threads' CPU not counted),
  per iteration.
- adam-pipelined-wall: the same timed by the wall clock, its final flush included (the time a
  user waits per iteration, the server's work included: the client version's whole effect on
  the loop; the two workers never run at once).
- mlp: one iteration of a small classifier (`nn.Sequential(nn.Linear(8, 16), nn.ReLU(),
  nn.Linear(16, 4))`, `F.cross_entropy`, `optim.Adam`; a batch of 32), per iteration.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

CASES = ("record", "chain", "chain-bwd", "attrs", "seed", "adam", "adam-pipelined",
         "adam-pipelined-wall", "mlp")
PER_OP = {"record": 1000, "chain": 1000, "chain-bwd": 1000, "attrs": 400}  # others: per iteration
UNTIMED_AFTER = ("record", "attrs")  # cases whose `after` (the flush) runs after each run
WALL = ("adam-pipelined-wall",)  # cases timed by the wall clock, their last `after` included


# --- worker side (runs one version of the client) ----------------------------------------------

def _chain(torch: Any, backward: bool) -> Callable[[], None]:
    def run() -> None:
        x = torch.tensor(0.5, requires_grad=backward)
        y = x
        for _ in range(500):
            y = y * 1.001 + 0.001
        if backward:
            y.backward()
            x.grad.item()
        else:
            y.item()

    return run


def _seed(torch: Any) -> Callable[[], None]:
    def run() -> None:
        x = torch.tensor(3.0, requires_grad=True)
        y = x**2
        y.backward()
        x.grad.item()

    return run


def _record(torch: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """(the timed recording, the untimed flush after it)."""
    x = torch.tensor(0.5)
    held: list[Any] = []

    def run() -> None:
        y = x
        for _ in range(500):
            y = y * 1.001 + 0.001
        held.append(y)

    def after() -> None:
        held.clear()
        torch.flush()

    return run, after


def _attrs(torch: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """(the timed recording of 400 ops with attributes, the untimed flush after it)."""
    import numpy as np

    x = torch.tensor(np.linspace(-2, 2, 16, dtype="float32").reshape(4, 4), requires_grad=True)
    y = torch.tensor(np.ones(4, "float32"))
    held: list[Any] = []

    def run() -> None:
        keep = held.append
        for _ in range(50):
            keep(x.sum(0))
            keep(x.transpose(0, 1))
            keep(torch.softmax(x, 1))
            keep(x.view(16))
            keep(x.pow(2))
            keep(torch.clamp(x, -1.0, 1.0))
            keep(x.mean(dim=1, keepdim=True))
            keep(torch.add(x, y, alpha=2))

    def after() -> None:
        held.clear()
        torch.flush()

    return run, after


class _MLP:
    def __init__(self, torch: Any):
        import numpy as np

        nn = torch.nn
        torch.manual_seed(0)
        self.F = nn.functional
        self.model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        rng = np.random.default_rng(0)
        self.x = torch.tensor(rng.standard_normal((32, 8)).astype("float32"))
        self.y = torch.tensor(rng.integers(0, 4, 32))

    def step(self) -> None:
        self.opt.zero_grad()
        loss = self.F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()


class _Adam:
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


def worker(port: int) -> None:
    """Read `case reps` lines; run the case `reps` times; answer the thread CPU ns per op."""
    import gradserve.client as gc

    print(os.path.dirname(gc.__file__), flush=True)
    client = gc.connect(f"127.0.0.1:{port}")
    session = client.session()
    pipelined = client.session(pipelined=256)
    made: dict[str, tuple[Callable[[], None], Callable[[], None] | None]] = {
        "record": _record(session),
        "chain": (_chain(session, False), None),
        "chain-bwd": (_chain(session, True), None),
        "seed": (_seed(session), None),
        "adam": (_Adam(session).step, None),
        "adam-pipelined": (_Adam(pipelined).step, pipelined.flush),
        "adam-pipelined-wall": (_Adam(pipelined).step, pipelined.flush),
        "attrs": _attrs(session),
        "mlp": (_MLP(session).step, None),
    }
    for line in sys.stdin:
        case, reps = line.split()
        fn, after = made[case]
        fn()  # warm up
        if after is not None:
            after()
        if case in WALL:
            start = time.perf_counter_ns()
            for _ in range(int(reps)):
                fn()
            if after is not None:
                after()
            print((time.perf_counter_ns() - start) / int(reps), flush=True)
            continue
        clock = time.thread_time_ns
        total = 0
        for _ in range(int(reps)):
            start = clock()
            fn()
            total += clock() - start
            if after is not None and case in UNTIMED_AFTER:
                after()
        if after is not None and case not in UNTIMED_AFTER:
            after()
        print(total / (int(reps) * PER_OP.get(case, 1)), flush=True)
    session.close()
    pipelined.close()
    client.close()


# --- driver side ------------------------------------------------------------------------------

def _spawn(path: str, port: int) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if path != ".":
        env["PYTHONPATH"] = os.path.abspath(path) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, __file__, "--worker", str(port)], env=env,
                            text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    print(f"{path}: client from {proc.stdout.readline().strip()}")
    return proc


def _ask(proc: subprocess.Popen[str], case: str, reps: int) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{case} {reps}\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--old", required="--worker" not in sys.argv)
    parser.add_argument("--new", default=".")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3, help="case runs per round (x50 for "
                        "the per-iteration cases)")
    parser.add_argument("--latency", type=float, default=0.0, metavar="MS",
                        help="one-way delay added between the clients and the server by a "
                        "relay (bench/relay.py): a network, not loopback")
    parser.add_argument("cases", nargs="*", help=f"subset of {', '.join(CASES)}")
    args = parser.parse_args()
    if args.worker is not None:
        gc.collect()
        worker(args.worker)
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import service  # bench/service.py: process start-up

    server, port = service.start([sys.executable, "-m", "gradserve.server.cli", "serve",
                                  "--host", "127.0.0.1", "--port", "0", "--workers", "4",
                                  "--log-level", "WARNING"])
    relay = None
    try:
        if args.latency:
            relay = subprocess.Popen(
                [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "relay.py"), str(port), str(args.latency)],
                text=True, stdout=subprocess.PIPE)
            assert relay.stdout is not None
            port = int(relay.stdout.readline())
        procs = {"old": _spawn(args.old, port), "new": _spawn(args.new, port)}
        cases = args.cases or list(CASES)
        times: dict[tuple[str, str], list[float]] = {(c, v): [] for c in cases for v in procs}
        for r in range(args.rounds):
            for case in cases:
                reps = args.reps * (1 if case in PER_OP else 50)
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for v in order:
                    times[case, v].append(_ask(procs[v], case, reps))
        for p in procs.values():
            assert p.stdin is not None
            p.stdin.close()
            p.wait()
    finally:
        for proc in (relay, server):
            if proc is not None:
                proc.terminate()
                proc.wait()
    print(f"{'case':<19} {'old min':>9} {'new min':>9} {'old med':>9} {'new med':>9}  "
          f"(us of the client thread's CPU per op / per iteration, of the wall clock for "
          f"{', '.join(WALL)}; {args.rounds} rounds)")
    for case in cases:
        old, new = times[case, "old"], times[case, "new"]
        print(f"{case:<19} {min(old) / 1e3:>9.2f} {min(new) / 1e3:>9.2f} "
              f"{statistics.median(old) / 1e3:>9.2f} {statistics.median(new) / 1e3:>9.2f}  "
              f"new/old min {min(new) / min(old):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
