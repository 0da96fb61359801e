#!/usr/bin/env python3
"""The costliest single ops a call tried on the event loop can run (not a test).

    python bench/inline_ops.py [--rounds 30]

A stateless call tried on the server's event loop (server/inline.py) is interrupted only between
ops, so its bounds must keep every single op short: no tensor above `inline.MAX_ELEMENTS`
elements (and the call's byte budget, `--max-session-bytes`, declared scratch included). This
runs, under exactly those engine limits, the ops whose cost grows faster than their tensors (matmul,
convolution, einsum, multinomial, sort), forward and backward, at shapes at those bounds, and
prints each one's CPU time of the calling thread (`time.thread_time_ns`): min and median over
`--rounds` rounds, or the limit that refused it before it ran. Then it times whole tries
(`InlineRunGraph.attempt`, a server built but not started, the default `--inline-seconds`) of
requests made to hold the loop as long as the bounds let them: the wall time of each try, min,
median and max over the rounds (a loaded machine's preemption shows in the max: the try's
thread CPU time's max is printed next to it), and how many tries answered rather than handed
the call on. Exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import gradserve.engine as ge
from gradserve.server import inline
from gradserve.server.config import ServerConfig


def leaf(*shape: int) -> Any:
    rng = np.random.default_rng(0)
    return ge.tensor(rng.random(shape, dtype=np.float32), requires_grad=True)


def conv(x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> Callable[[], Any]:
    x, w = leaf(*x_shape), leaf(*w_shape)
    dims = len(x_shape) - 2

    def run() -> Any:
        y = ge.convolution(x, w, None, stride=[1] * dims, padding=[0] * dims,
                           dilation=[1] * dims)
        y.sum().backward()
    return run


def matmul(a: tuple[int, ...], b: tuple[int, ...]) -> Callable[[], Any]:
    x, w = leaf(*a), leaf(*b)

    def run() -> Any:
        ge.matmul(x, w).sum().backward()
    return run


def einsum(equation: str, *shapes: tuple[int, ...]) -> Callable[[], Any]:
    xs = [leaf(*s) for s in shapes]

    def run() -> Any:
        ge.einsum(equation, *xs).sum().backward()
    return run


def multinomial(categories: int, samples: int) -> Callable[[], Any]:
    p = ge.tensor(np.ones(categories, np.float32))

    def run() -> Any:
        ge.multinomial(p, samples)
    return run


def sort(n: int) -> Callable[[], Any]:
    x = leaf(n)

    def run() -> Any:
        ge.argsort(x)
    return run


def cases(e: int) -> list[tuple[str, Callable[[], Callable[[], Any]]]]:
    """Shapes at an element bound of `e` (a power of 4)."""
    r = int(round(e ** 0.5))  # a square matrix of e elements
    q = int(round(e ** 0.25))
    return [
        (f"matmul ({r},{r})@({r},{r}) fwd+bwd", lambda: matmul((r, r), (r, r))),
        (f"matmul ({e},1)@(1,1) fwd+bwd", lambda: matmul((e, 1), (1, 1))),
        (f"conv1d (1,1,{e}) * (1,1,{e // 2}) fwd+bwd", lambda: conv((1, 1, e), (1, 1, e // 2))),
        (f"conv1d (1,1,{e}) * (1,1,{e // 8}) fwd+bwd", lambda: conv((1, 1, e), (1, 1, e // 8))),
        (f"conv2d (1,1,{r},{r}) * (1,1,{r // 2},{r // 2}) fwd+bwd",
         lambda: conv((1, 1, r, r), (1, 1, r // 2, r // 2))),
        (f"conv2d (1,{q},{q * 2},{q * 2}) * ({q},{q},{q},{q}) fwd+bwd",
         lambda: conv((1, q, q * 2, q * 2), (q, q, q, q))),
        (f"conv2d (1,{r},{q},{q}) * ({r},{r},1,1) fwd+bwd",
         lambda: conv((1, r, q, q), (r, r, 1, 1))),
        (f"einsum ab,cd-> ({r}x{r} each) fwd+bwd", lambda: einsum("ab,cd->", (r, r), (r, r))),
        (f"einsum a,b,c-> ({e} each) fwd+bwd", lambda: einsum("a,b,c->", (e,), (e,), (e,))),
        (f"einsum ij,jk,kl->il ({r}x{r} each) fwd+bwd",
         lambda: einsum("ij,jk,kl->il", (r, r), (r, r), (r, r))),
        (f"multinomial {e} of {e}, no replacement", lambda: multinomial(e, e)),
        (f"argsort {e}", lambda: sort(e)),
    ]


BYTES = ServerConfig().max_session_bytes  # a call's byte budget, the try's too


def measure(run: Callable[[], Any], elements: int) -> float | str:
    """CPU seconds of one `run` under the inline limits, or the refusal's text."""
    with ge.limits.allocation_limit(elements), ge.limits.byte_budget(BYTES):
        t0 = time.thread_time_ns()
        try:
            run()
        except ge.errors.EngineError as exc:
            return f"refused: {str(exc)[:90]}"
        return (time.thread_time_ns() - t0) / 1e9


class Context:
    """The part of a grpc.aio servicer context a try reads: no deadline, no metadata."""

    def time_remaining(self) -> None:
        return None

    def invocation_metadata(self) -> tuple[()]:
        return ()


def graph_request(ops: list[tuple[str, list[str]]], inputs: dict[str, Any],
                  out: str) -> bytes:
    """A RunGraphRequest's bytes: nodes n0, n1, ... applying `ops` (op, input names), the
    gradient of `out` (summed) wrt every input."""
    from gradserve.server import codec
    from gradserve.v1 import graph_pb2, service_pb2

    def ref(name: str) -> Any:
        return graph_pb2.Value(ref=graph_pb2.NodeOutput(id=name))

    nodes = [graph_pb2.Node(id=f"n{i}", op=op, inputs=[ref(a) for a in args])
             for i, (op, args) in enumerate(ops)]
    nodes.append(graph_pb2.Node(id="loss", op="sum", inputs=[ref(out)]))
    g = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name=n) for n in inputs], nodes=nodes,
                        outputs=[graph_pb2.GraphOutput(name="loss",
                                                       ref=graph_pb2.NodeOutput(id="loss"))])
    return service_pb2.RunGraphRequest(
        graph=g, wrt=list(inputs),
        inputs={n: codec.encode_array(v) for n, v in inputs.items()}).SerializeToString()


def chained(op: str, n: int, extra: tuple[str, ...] = ()) -> list[tuple[str, list[str]]]:
    return [(op, [f"n{i - 1}" if i else "x", *extra]) for i in range(n)]


def tries() -> list[tuple[str, bytes]]:
    """Requests at the try's bounds."""
    n = inline.MAX_NODES - 1
    m = (inline.MAX_VALUES - 3) // 2  # two inputs a node
    r = int(round(inline.MAX_ELEMENTS ** 0.5))
    rng = np.random.default_rng(0)
    sq = rng.random((r, r), dtype=np.float32)
    vec = rng.random(inline.MAX_ELEMENTS, dtype=np.float32)
    return [
        ("y = x**2, 0-d (bench/service.py's)",
         graph_request([("mul", ["x", "x"])], {"x": np.float32(3.0)}, "n0")),
        (f"{m} matmuls ({r},{r}) in a chain",
         graph_request(chained("matmul", m, ("w",)), {"x": sq, "w": sq}, f"n{m - 1}")),
        (f"{n} sin on {inline.MAX_ELEMENTS} elements",
         graph_request(chained("sin", n), {"x": vec}, f"n{n - 1}")),
        (f"{n} mul on {inline.MAX_ELEMENTS} float64",
         graph_request(chained("mul", n, ("x",)), {"x": vec.astype(np.float64)},
                       f"n{n - 1}")),
    ]


def time_tries(rounds: int) -> None:
    from gradserve.server.app import create_server

    server, _ = create_server(ServerConfig(host="127.0.0.1", port=0, log_level="WARNING"))
    try:
        assert server.inline is not None
        attempt, ctx = server.inline.attempt, Context()
        print(f"whole tries (--inline-seconds {server.inline.seconds}): wall ms over {rounds} "
              "rounds")
        for label, data in tries():
            walls, cpus, answered = [], [], 0
            for _ in range(rounds):
                t0, c0 = time.perf_counter(), time.thread_time()
                answered += attempt(data, ctx) is not None
                cpus.append(time.thread_time() - c0)
                walls.append(time.perf_counter() - t0)
            print(f"  {label:40s} wall min {min(walls) * 1e3:6.3f} median "
                  f"{statistics.median(walls) * 1e3:6.3f} max {max(walls) * 1e3:6.3f}; CPU max "
                  f"{max(cpus) * 1e3:6.3f}; answered {answered}/{rounds}")
    finally:
        server.stop(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--elements", type=int, default=inline.MAX_ELEMENTS,
                        help="the element bound to measure at (a power of 4)")
    args = parser.parse_args()
    runs = [(label, make()) for label, make in cases(args.elements)]
    times: dict[str, list[float]] = {label: [] for label, _ in runs}
    refused: dict[str, str] = {}
    for _ in range(args.rounds):
        for label, run in runs:
            if label in refused:
                continue
            result = measure(run, args.elements)
            if isinstance(result, str):
                refused[label] = result
            else:
                times[label].append(result)
    print(f"under allocation_limit({args.elements}) and byte_budget({BYTES}); "
          f"CPU ms of this thread over {args.rounds} rounds")
    for label, _ in runs:
        if label in refused:
            print(f"  {label:48s} {refused[label]}")
        else:
            ts = times[label]
            print(f"  {label:48s} min {min(ts) * 1e3:7.3f}  median "
                  f"{statistics.median(ts) * 1e3:7.3f}")
    time_tries(args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
