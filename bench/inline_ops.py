#!/usr/bin/env python3
"""The costliest single ops a call tried on the event loop can run (not a test).

    python bench/inline_ops.py [--rounds 30]

A stateless call tried on the server's event loop (server/inline.py) is interrupted only between
ops, so its bounds must keep every single op short: no tensor above `inline.MAX_ELEMENTS`
elements (and the call's byte budget, `--max-session-bytes`, declared scratch included). This
runs, under exactly those engine limits, the ops whose cost grows faster than their tensors (matmul,
convolution, einsum, multinomial, sort), forward and backward, at shapes at those bounds, and
prints each one's CPU time of the calling thread (`time.thread_time_ns`): min and median over
`--rounds` rounds, or the limit that refused it before it ran. Exits 0.
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
