#!/usr/bin/env python3
"""The server's own CPU per small call, in process, without the transport (not a test).

    python bench/handler.py [--rounds 30] [--calls 200] [--compare TREE] [--phases] [--layers]

Calls the servicer's RunGraph and ExecuteBatch as the server's worker threads run them — the
request parser the server registers for the method, the method, the reply passed through when
it is bytes (the event loop's hand-off to a worker, `server/threaded.py`, is not one thread's
CPU and is left out, as is wire_guard's check for unparsable bytes) — with a minimal stand-in
for gRPC's servicer context, on the requests bench/service.py sends (a stateless `y = x**2`
gradient; a session batch: create, pow, backward, fetch grad, release); and, where the tree has
it, the stateless call as it is tried on the event loop (`server/inline.py`, "stateless (loop)").
Each round runs `--calls` calls of each kind and takes the calling thread's CPU time
(`time.thread_time_ns`) per call; the table gives the min and median over `--rounds` rounds.

Each source tree runs in a worker process of its own that imports gradserve from that tree (a
farm of symlinks: the checkout's installed copy plays no part), so `--compare TREE` (another
checkout, e.g. `git archive <commit> | tar -x -C /tmp/base`) measures old and new code in
interleaved rounds (A B, B A, ...): a burst of other work on a shared machine hits both.
`--phases` adds, per tree, the CPU per call spent inside the server's main steps (inclusive;
instrumented by wrapping functions in the worker, so the total there reads a little high);
`--layers`, the stateless call with the layers around the servicer taken away in turn
(RunGraph's own parser for protobuf's, the metrics, the heap trimmer). The
figures are CPU time of one thread: gRPC's own work (its C core, the poll thread) is not in them.
Exits 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SUBPACKAGES = ("engine", "server", "client", "surface")
SERVICE = "gradserve.v1.AutogradService"

# (label, module, attribute path): what --phases times, where the tree has it. Inclusive times;
# indented labels run inside the one above them.
PHASES = (
    ("rpc before_call (auth, admission, Call)", "gradserve.server.service",
     "AutogradServicer.before_call"),
    ("graph.validate", "gradserve.server.graph", "validate"),
    ("graph.execute", "gradserve.server.graph", "execute"),
    ("  codec.decode_tensor", "gradserve.server.codec", "decode_tensor"),
    ("  graph.Budget.add", "gradserve.server.graph", "Budget.add"),
    ("  graph._forward", "gradserve.server.graph", "_forward"),
    ("    ops.run_prepared", "gradserve.server.ops", "run_prepared"),
    ("  graph.Reply.output", "gradserve.server.graph", "Reply.output"),
    ("  graph._gradients", "gradserve.server.graph", "_gradients"),
    ("    engine autograd.grad", "gradserve.engine.autograd", "grad"),
    ("    graph.Reply.gradients", "gradserve.server.graph", "Reply.gradients"),
    ("graph.fit (reply bytes)", "gradserve.server.graph", "fit"),
    ("sessions SessionStore.get", "gradserve.server.sessions", "SessionStore.get"),
    ("batch.Executor.run", "gradserve.server.batch", "Executor.run"),
    ("  batch.reply_bound", "gradserve.server.batch", "reply_bound"),
    ("rpc after_call (admission, trimmer)", "gradserve.server.service",
     "AutogradServicer.after_call"),
)


# --- the worker: one source tree ----------------------------------------------------------------

def farm(tree: str) -> str:
    """A directory holding a `gradserve` package made of `tree`'s sources (symlinks)."""
    root = tempfile.mkdtemp(prefix="gradserve-farm-")
    pkg = os.path.join(root, "gradserve")
    os.mkdir(pkg)
    protos = os.path.join(tree, "protos", "gradserve")
    os.symlink(os.path.join(protos, "__init__.py"), os.path.join(pkg, "__init__.py"))
    os.symlink(os.path.join(protos, "v1"), os.path.join(pkg, "v1"))
    for sub in SUBPACKAGES:
        os.symlink(os.path.join(tree, sub), os.path.join(pkg, sub))
    return root


class Context:
    """What the servicer uses of grpc.ServicerContext, as cheap as gRPC's own (no deadline: gRPC
    reports its infinite deadline as a huge number of seconds)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()):
        self.metadata = metadata
        self.callbacks: list[Callable[[], None]] = []

    def time_remaining(self) -> float:
        return max(9.2e18 - time.time(), 0.0)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = metadata

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"call aborted: {code} {details}")


class Registrar:
    """Stands in for grpc.Server while the service registers: keeps the method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers.update(handlers)

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        for h in handlers:
            for name in ("RunGraph", "ExecuteBatch", "CreateSession"):
                details = type("Details", (), {"method": f"/{SERVICE}/{name}",
                                               "invocation_metadata": ()})()
                found = h.service(details)
                if found is not None:
                    self.handlers[name] = found


class Served:
    """A servicer method's handler as the server's workers run it: its registered parser, the
    method, the reply passed through when the method already serialized it."""

    def __init__(self, handler: Any, parser: Callable[[bytes], Any] | None):
        self.request_deserializer = parser or handler.request_deserializer
        self.unary_unary = handler.unary_unary
        serialize = handler.response_serializer
        self.response_serializer = (
            lambda reply: reply if type(reply) is bytes else serialize(reply))


class Worker:
    """The servicer of one tree, built as the server builds it, and its calls."""

    def __init__(self) -> None:
        import numpy as np

        sys.path.insert(0, HERE)
        import service as bench_service  # bench/service.py: the same requests

        from gradserve.server.app import create_server
        from gradserve.server.config import ServerConfig
        from gradserve.v1 import service_pb2_grpc

        config = ServerConfig(host="127.0.0.1", port=0, workers=32, log_level="WARNING")
        self.server, _ = create_server(config)  # bound, never started
        registrar = Registrar()
        service_pb2_grpc.add_AutogradServiceServicer_to_server(self.server.servicer, registrar)
        try:
            from gradserve.server.graph_request import parse_run_graph
            parsers: dict[str, Any] = {"RunGraph": parse_run_graph}
        except ImportError:  # a tree from before RunGraph had a parser of its own
            parsers = {}
        self.handlers = {name: Served(h, parsers.get(name))
                         for name, h in registrar.handlers.items()}
        # the stateless call tried on the event loop, where the tree has it (server/inline.py),
        # with a budget of a whole run quantum: a loaded machine's preemption does not end it
        self.inline = None
        if getattr(self.server, "inline", None) is not None:
            from gradserve.server.inline import InlineRunGraph

            self.inline = InlineRunGraph(self.server.servicer, config.run_quantum)
        small = bench_service.square_graph_request(np.array(3.0, np.float32))
        self.stateless_bytes = small.SerializeToString()
        create = self.handlers["CreateSession"]
        stub = type("Stub", (), {"CreateSession": lambda _, req: create.unary_unary(
            create.request_deserializer(req.SerializeToString()), Context())})()
        self.session = bench_service.SessionCaller(stub)
        self.session_context = Context(self.session.metadata)

    def one(self, name: str, data: bytes, context: Context) -> bytes:
        h = self.handlers[name]
        return h.response_serializer(h.unary_unary(h.request_deserializer(data), context))

    def calls(self) -> dict[str, Callable[[], bytes]]:
        """Each kind's call: wire bytes in, wire bytes out."""
        stateless = self.stateless_bytes
        session = self.session

        def run_graph() -> bytes:
            return self.one("RunGraph", stateless, Context())

        def batch() -> bytes:
            return self.one("ExecuteBatch", session.request().SerializeToString(),
                            self.session_context)

        return {"stateless": run_graph, "session": batch}

    def round(self, n: int) -> dict[str, float]:
        """Thread CPU ns per call of each kind over `n` calls (the session's requests are built
        before the timed loop: one clock pair per loop, as reading the thread's CPU clock is
        a system call of ~1-3 us here)."""
        out: dict[str, float] = {}
        one = self.one
        contexts = [Context() for _ in range(n)]
        data = self.stateless_bytes
        t0 = time.thread_time_ns()
        for ctx in contexts:
            one("RunGraph", data, ctx)
        out["stateless"] = (time.thread_time_ns() - t0) / n
        if self.inline is not None:
            attempt = self.inline.attempt
            contexts = [Context() for _ in range(n)]
            t0 = time.thread_time_ns()
            for ctx in contexts:
                if attempt(data, ctx) is None:
                    # the try ran out of its --inline-seconds (a loaded machine descheduled
                    # it): the server then runs the call on a worker, and so does this
                    one("RunGraph", data, Context())
            out["stateless (loop)"] = (time.thread_time_ns() - t0) / n
        requests = [self.session.request().SerializeToString() for _ in range(n)]
        ctx = self.session_context
        t0 = time.thread_time_ns()
        for req in requests:
            one("ExecuteBatch", req, ctx)
        out["session"] = (time.thread_time_ns() - t0) / n
        return out

    def layers(self, n: int) -> dict[str, float]:
        """Thread CPU ns per stateless call with each layer around the servicer taken away in
        turn (one round of `n` calls each; the driver interleaves rounds)."""
        from gradserve.v1 import service_pb2

        servicer = self.server.servicer
        data = self.stateless_bytes
        h = self.handlers["RunGraph"]
        parse = service_pb2.RunGraphRequest.FromString

        def timed(call: Callable[[Context], Any]) -> float:
            contexts = [Context() for _ in range(n)]
            t0 = time.thread_time_ns()
            for ctx in contexts:
                call(ctx)
            return (time.thread_time_ns() - t0) / n

        out = {"as served": timed(lambda ctx: h.response_serializer(
            h.unary_unary(h.request_deserializer(data), ctx)))}
        # the servicer method itself, parsed by protobuf (not RunGraph's own parser)
        out["protobuf's parse"] = timed(
            lambda ctx: servicer.RunGraph(parse(data), ctx))
        observe, after = servicer.observe, servicer._after_call
        try:
            servicer.observe = lambda *args: None
            out["without metrics"] = timed(
                lambda ctx: servicer.RunGraph(parse(data), ctx))
            servicer._after_call = None
            out["without metrics, heap trimmer"] = timed(
                lambda ctx: servicer.RunGraph(parse(data), ctx))
        finally:
            servicer.observe, servicer._after_call = observe, after
        return out

    def phases(self, n: int) -> dict[str, dict[str, float]]:
        """Inclusive thread CPU ns per call inside each of `PHASES`, per call kind."""
        import importlib

        clock = _Clock()
        spent = clock.spent
        undo = []
        for label, module, path in PHASES:
            owner: Any = importlib.import_module(module)
            *parents, attr = path.split(".")
            for p in parents:
                owner = getattr(owner, p, None)
            fn = getattr(owner, attr, None) if owner is not None else None
            if fn is None:
                continue
            undo.append((owner, attr, fn))
            setattr(owner, attr, clock.timed(fn, label))
        try:
            result: dict[str, dict[str, float]] = {}
            for kind in ("stateless", "session"):
                spent.clear()
                parse = serialize = 0
                total = 0
                name = "RunGraph" if kind == "stateless" else "ExecuteBatch"
                h = self.handlers[name]
                for _ in range(n):
                    data = (self.stateless_bytes if kind == "stateless"
                            else self.session.request().SerializeToString())
                    ctx = Context() if kind == "stateless" else self.session_context
                    t0 = time.thread_time_ns()
                    req = h.request_deserializer(data)
                    t1 = time.thread_time_ns()
                    reply = h.unary_unary(req, ctx)
                    t2 = time.thread_time_ns()
                    h.response_serializer(reply)
                    t3 = time.thread_time_ns()
                    parse += t1 - t0 - clock.own
                    serialize += t3 - t2 - clock.own
                    total += t3 - t0
                row = {"total (instrumented)": total / n, "parse request": parse / n,
                       "(clock cost per timed step, subtracted)": clock.nested}
                row.update({k: v / n for k, v in spent.items()})
                row["serialize reply"] = serialize / n
                result[kind] = row
            return result
        finally:
            for owner, attr, fn in reversed(undo):
                setattr(owner, attr, fn)


class _Clock:
    """Inclusive thread CPU per wrapped function, less the wrappers' own cost (calibrated:
    each wrapped call's clock reads, and those of the wrapped calls inside it)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.entered = 0
        self.own = self.nested = 0.0
        noop = self.timed(lambda: None, "noop")
        for _ in range(3):  # the smallest of a few tries
            t0 = time.thread_time_ns()
            for _ in range(2000):
                noop()
            nested = (time.thread_time_ns() - t0) / 2000
            own = self.spent.pop("noop") / 2000
            self.nested = nested if not self.nested else min(self.nested, nested)
            self.own = own if not self.own else min(self.own, own)

    def timed(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        clock = time.thread_time_ns
        spent = self.spent

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.entered += 1
            inner = self.entered
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = clock() - t0 - self.own - (self.entered - inner) * self.nested
                spent[label] = spent.get(label, 0) + elapsed
        return timed


def worker_main() -> int:
    """Serve the driver's commands on stdin ("round N", "phases N"), one JSON line each."""
    import logging

    logging.disable(logging.WARNING)  # the benchmark's own calls log nothing of interest
    w = Worker()
    import gradserve.server

    print(json.dumps({"ready": gradserve.server.__file__}), flush=True)
    for line in sys.stdin:
        cmd, n = line.split()
        result: Any = (w.round(int(n)) if cmd == "round" else w.layers(int(n))
                       if cmd == "layers" else w.phases(int(n)))
        print(json.dumps(result), flush=True)
    return 0


# --- the driver ---------------------------------------------------------------------------------

class Tree:
    """A worker process running one source tree."""

    def __init__(self, label: str, tree: str):
        self.label = label
        env = dict(os.environ, PYTHONPATH=farm(os.path.abspath(tree)))
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.where = self.ask("")["ready"]
        self.rounds: dict[str, list[float]] = {}

    def ask(self, cmd: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker for {self.label} ended")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="server CPU per small call, in process")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200, help="per kind per round")
    parser.add_argument("--compare", metavar="TREE", help="another source tree, interleaved")
    parser.add_argument("--phases", action="store_true", help="CPU per call inside each step")
    parser.add_argument("--layers", action="store_true",
                        help="stateless CPU per call without each layer around the servicer")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main()

    trees = [Tree("this", os.path.dirname(HERE))]
    if args.compare:
        trees.append(Tree("compare", args.compare))
    try:
        for t in trees:
            t.ask(f"round {max(50, args.calls)}")  # warm up
        for r in range(args.rounds):
            order = trees if r % 2 == 0 else trees[::-1]
            for t in order:
                for kind, ns in t.ask(f"round {args.calls}").items():
                    t.rounds.setdefault(kind, []).append(ns)
        phases = {t.label: t.ask(f"phases {args.calls * 5}") for t in trees} if args.phases \
            else {}
        layers: dict[str, list[float]] = {}
        for _ in range(args.rounds if args.layers else 0):
            for name, ns in trees[0].ask(f"layers {args.calls}").items():
                layers.setdefault(name, []).append(ns)
    finally:
        for t in trees:
            t.close()

    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as f:
        load = f.read().strip()
    print(f"thread CPU per call, us ({args.rounds} rounds of {args.calls} calls; load {load})")
    print(f"{'call':<17} {'tree':<8} {'min':>8} {'median':>8}  source")
    kinds = list(dict.fromkeys(kind for t in trees for kind in t.rounds))
    for kind in kinds:
        for t in trees:
            if kind not in t.rounds:
                continue
            values = t.rounds[kind]
            print(f"{kind:<17} {t.label:<8} {min(values) / 1e3:>8.1f} "
                  f"{statistics.median(values) / 1e3:>8.1f}  {os.path.dirname(t.where)}")
    if len(trees) == 2:
        for kind in kinds:
            if not all(kind in t.rounds for t in trees):
                continue
            a, b = trees[0].rounds[kind], trees[1].rounds[kind]
            print(f"{kind}: this/compare min {min(a) / min(b):.2f}, "
                  f"median {statistics.median(a) / statistics.median(b):.2f}")
    if layers:
        print(f"\nstateless, layers taken away ({trees[0].label}; min / median of "
              f"{args.rounds} rounds), us")
        for name, values in layers.items():
            print(f"{name:<34} {min(values) / 1e3:>8.1f} {statistics.median(values) / 1e3:>8.1f}")
    for kind in ("stateless", "session"):
        if not phases:
            break
        print(f"\n{kind}: inclusive thread CPU per call inside each step, us")
        order = ["total (instrumented)", "(clock cost per timed step, subtracted)",
                 "parse request", *(p[0] for p in PHASES),
                 "serialize reply"]
        labels = [label for label in order if any(label in p[kind] for p in phases.values())]
        print(f"{'step':<42}" + "".join(f"{label:>10}" for label in phases))
        for label in labels:
            cells = "".join(f"{p[kind][label] / 1e3:>10.1f}" if label in p[kind]
                            else f"{'-':>10}" for p in phases.values())
            print(f"{label:<42}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
