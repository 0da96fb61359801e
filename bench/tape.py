#!/usr/bin/env python3
"""The server's CPU per op of a session's instruction tape, in process (not a test).

    python bench/tape.py [--rounds 30] [--calls 5] [--compare TREE] [--cases chain,adam]
                         [--profile CASE]

Records bench/client.py's batches with the real client against a server in this process (the
bytes each flush sends), then replays them through the servicer's ExecuteBatch as the server's
worker threads run it (bench/handler.py's stand-ins for gRPC: the registered parser, the method,
the reply serialized), each replay on a fresh session, timing the calling thread's CPU
(`time.thread_time_ns`) of the measured batch only:

- chain: `chain(session, False)`'s one batch (create, a 1000-op tape, fetch, release), per
  tape op;
- chain-bwd: `chain(session, True)`'s batch (the same with backward and the gradient), per op;
- adam: one `AdamLoop.step()` batch as the client sends it (the previous iteration's step, its
  zero_grad, a 9-op tape, backward, releases), per batch, after the set-up batch and one
  iteration were replayed untimed on the same session; "adam tape": the CPU inside its tape
  instruction alone (`Executor.tape`, timed by a wrapper);
- adam-pipelined: bench/client.py's Adam loop in a `session(pipelined=256)`, 144 iterations: the
  background batches after the first, per iteration (the iterations recorded between the first
  batch's sending and the last one's);
- engine chain, engine chain-bwd: `chain(gradserve.engine, ...)` in the worker, per op (the
  floor a session is measured against);
- attrs, attrs-apply (only when named in `--cases`; attrs needs a tree whose server lists
  "tape_attrs"): bench/clientop.py's 400 ops with attributes (`x.sum(0)`, `transpose(0, 1)`,
  `softmax(x, 1)`, ...) as one batch, per op: on the tape (attrs) and, recorded by a session
  told the server lacks the feature, as ApplyOp messages (attrs-apply).

The table gives min and median over `--rounds` rounds of `--calls` calls each. `--compare TREE`
(another checkout, e.g. `git archive main | tar -x -C /tmp/base`) runs that tree in a second
worker process and interleaves rounds (A B, B A, ...), as bench/handler.py does. `--profile
CASE` runs CASE under cProfile in this tree instead and prints the top functions. A worker
freezes the objects alive once its servicer is built where the tree's `gradserve serve` does
(`app.freeze_startup_objects`). Exits 0.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import handler  # noqa: E402  (bench/handler.py: farms, gRPC stand-ins)

CASES = ("chain", "chain-bwd", "adam", "adam-pipelined", "attrs", "attrs-apply")
SETUP: dict[str, int] = {}  # cases whose measured batches start at this index (set by record)
DEFAULT_CASES = ("chain", "chain-bwd", "adam", "adam-pipelined")
# ops (or iterations) a case's measured batches hold (adam-pipelined's is set by record)
OPS = {"chain": 1000, "chain-bwd": 1000, "adam": 1, "adam-pipelined": 1, "attrs": 400,
       "attrs-apply": 400}
PIPELINED_ITERATIONS = 144


# --- recording (driver, this checkout's client and server) ---------------------------------------

def record() -> dict[str, list[bytes]]:
    """Each case's batches as the client sends them: set-up batches first, the measured ones
    last (the last one, or from `SETUP[case]` on)."""
    import client as bench_client  # bench/client.py
    import gradserve.client
    from gradserve.server.app import create_server
    from gradserve.server.config import ServerConfig

    server, port = create_server(ServerConfig(host="127.0.0.1", port=0, workers=4,
                                              log_level="WARNING"))
    server.start()
    try:
        conn = gradserve.client.connect(f"127.0.0.1:{port}")
        out: dict[str, list[bytes]] = {}
        for case in CASES:
            torch = conn.session(pipelined=256) if case == "adam-pipelined" else conn.session()
            sent: list[bytes] = []
            rec = torch._recorder
            send = rec._send

            def capture(request: Any, send: Any = send, sent: list[bytes] = sent) -> Any:
                sent.append(request.SerializeToString())
                return send(request)
            rec._send = capture
            if getattr(rec, "_start", None) is not None:  # a pipelined batch's call, started
                rec._start = lambda request, start=rec._start, capture=capture: (
                    capture(request, start))
            if case == "adam":
                loop = bench_client.AdamLoop(torch)
                for _ in range(3):  # (each backward sends the batch, the step goes with the next)
                    loop.step()
            elif case == "adam-pipelined":
                loop = bench_client.AdamLoop(torch)
                done, taken = [0], []
                take = rec._take

                def counted(take: Any = take, taken: list[int] = taken,
                            done: list[int] = done) -> Any:
                    taken.append(done[0])
                    return take()
                rec._take = counted
                for _ in range(PIPELINED_ITERATIONS):
                    loop.step()
                    done[0] += 1
                torch.flush()
                SETUP[case] = 1
                OPS[case] = taken[-1] - taken[0]
            elif case.startswith("attrs"):
                import clientop  # bench/clientop.py

                torch._tape_attrs = case == "attrs"  # attrs-apply: ApplyOp messages
                run, after = clientop._attrs(torch)
                run()
                after()
                SETUP[case] = len(sent)  # the second run's batches are measured
                run()
                after()
            else:
                bench_client.chain(torch, case == "chain-bwd")
            out[case] = sent
            torch.close()
        conn.close()
        return out
    finally:
        server.stop(None)


# --- the worker: one source tree ----------------------------------------------------------------

class Replayer:
    """A tree's servicer (handler.Worker) and fresh sessions replaying recorded batches."""

    def __init__(self, batches: dict[str, list[bytes]], setup: dict[str, int]):
        from gradserve.v1 import session_pb2

        self.w = handler.Worker()
        # as `gradserve serve` does once its server is built, where the tree does
        from gradserve.server import app

        freeze = getattr(app, "freeze_startup_objects", None)
        if freeze is not None:
            freeze()
        self.batches = batches
        self.setup = setup
        self.parse = session_pb2.BatchRequest.FromString
        self.create = self.w.handlers["CreateSession"]
        self.cases = [c for c in CASES if c in batches]
        # the thread CPU inside Executor.tape, for the adam case's "adam tape" row
        from gradserve.server import batch

        self.tape_ns = 0
        run_tape = batch.Executor.HANDLERS["tape"]

        def timed_tape(executor: Any, m: Any, r: Any) -> int:
            t0 = time.thread_time_ns()
            try:
                return run_tape(executor, m, r)
            finally:
                self.tape_ns += time.thread_time_ns() - t0
        batch.Executor.HANDLERS["tape"] = timed_tape

    def session(self) -> tuple[str, handler.Context]:
        from gradserve.v1 import session_pb2

        create = self.create
        resp = create.unary_unary(create.request_deserializer(
            session_pb2.CreateSessionRequest().SerializeToString()), handler.Context())
        sid = resp.session_id
        return sid, handler.Context((("x-session-id", sid),))

    def prepared(self, case: str) -> tuple[handler.Context, list[bytes]]:
        """A fresh session and the case's batches rewritten to carry its id."""
        sid, ctx = self.session()
        out = []
        for data in self.batches[case]:
            req = self.parse(data)
            req.session_id = sid
            out.append(req.SerializeToString())
        return ctx, out

    def close(self, ctx: handler.Context) -> None:
        from gradserve.server.auth import ANONYMOUS

        self.w.server.servicer.store.close(ctx.metadata[0][1], ANONYMOUS)

    def round(self, n: int) -> dict[str, float]:
        one = self.w.one
        out: dict[str, float] = {}
        for case in self.cases:
            total = tape = 0
            setup = self.setup.get(case, len(self.batches[case]) - 1)
            for _ in range(n):
                ctx, reqs = self.prepared(case)
                for req in reqs[:setup]:
                    one("ExecuteBatch", req, ctx)
                self.tape_ns = 0
                t0 = time.thread_time_ns()
                for req in reqs[setup:]:
                    one("ExecuteBatch", req, ctx)
                total += time.thread_time_ns() - t0
                tape += self.tape_ns
                self.close(ctx)
            out[case] = total / n / OPS[case]
            if case == "adam":
                out["adam tape"] = tape / n
        # the same chains on the tree's engine in process (the floor the tape is measured by)
        import client as bench_client  # bench/client.py
        import gradserve.engine as ge

        for case, backward in (("engine chain", False), ("engine chain-bwd", True)):
            if case[len("engine "):] not in self.cases:
                continue
            t0 = time.thread_time_ns()
            for _ in range(n):
                bench_client.chain(ge, backward)
            out[case] = (time.thread_time_ns() - t0) / n / 1000
        return out

    def profile(self, case: str, n: int) -> None:
        import cProfile
        import pstats

        one = self.w.one
        prof = cProfile.Profile()
        setup = self.setup.get(case, len(self.batches[case]) - 1)
        for _ in range(n):
            ctx, reqs = self.prepared(case)
            for req in reqs[:setup]:
                one("ExecuteBatch", req, ctx)
            prof.enable()
            for req in reqs[setup:]:
                one("ExecuteBatch", req, ctx)
            prof.disable()
            self.close(ctx)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def worker_main(path: str) -> int:
    import logging

    logging.disable(logging.WARNING)
    with open(path) as f:
        saved = json.load(f)
    setup = saved.pop("_setup")
    OPS.update(saved.pop("_ops"))
    batches = {k: [base64.b64decode(b) for b in v] for k, v in saved.items()}
    r = Replayer(batches, setup)
    import gradserve.server

    print(json.dumps({"ready": gradserve.server.__file__}), flush=True)
    for line in sys.stdin:
        _, n = line.split()
        print(json.dumps(r.round(int(n))), flush=True)
    return 0


class Tree(handler.Tree):
    def __init__(self, label: str, tree: str, path: str):  # noqa: D107
        self.label = label
        env = dict(os.environ, PYTHONPATH=handler.farm(os.path.abspath(tree)))
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", path], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.where = self.ask("")["ready"]
        self.rounds = {}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="server CPU per tape op, in process")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=5, help="per case per round")
    parser.add_argument("--compare", metavar="TREE", help="another source tree, interleaved")
    parser.add_argument("--profile", choices=CASES, help="cProfile one case in this tree")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated cases of {', '.join(CASES)}")
    parser.add_argument("--worker", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    import logging

    logging.disable(logging.WARNING)
    batches = {k: v for k, v in record().items() if k in args.cases.split(",")}
    if args.profile:
        Replayer(batches, SETUP).profile(args.profile, args.calls * 4)
        return 0
    fd, path = tempfile.mkstemp(suffix=".json", prefix="gradserve-tape-")
    with os.fdopen(fd, "w") as f:
        json.dump({"_setup": SETUP, "_ops": OPS, **{k: [base64.b64encode(b).decode() for b in v]
                                        for k, v in batches.items()}}, f)
    root = os.path.dirname(HERE)
    trees = [Tree("this", root, path)]
    if args.compare:
        trees.insert(0, Tree("compare", args.compare, path))
    try:
        for i in range(args.rounds):
            for t in (trees if i % 2 == 0 else trees[::-1]):
                for case, v in t.ask(f"round {args.calls}").items():
                    t.rounds.setdefault(case, []).append(v)
    finally:
        for t in trees:
            t.close()
        os.unlink(path)
    print(f"thread CPU (us) per op (chain, chain-bwd, attrs) / per batch (adam) / per iteration "
          f"(adam-pipelined); {args.rounds} "
          f"rounds x {args.calls} calls; min / median")
    print(f"{'case':<16}" + "".join(f"{t.label + ' min':>14}{t.label + ' med':>14}"
                                    for t in trees))
    for case in (*CASES, "adam tape", "engine chain", "engine chain-bwd"):
        if case not in trees[0].rounds:
            continue
        row = f"{case:<16}"
        for t in trees:
            v = t.rounds[case]
            row += f"{min(v) / 1e3:>14.2f}{statistics.median(v) / 1e3:>14.2f}"
        print(row)
    for t in trees:
        print(f"{t.label}: {t.where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
