#!/usr/bin/env python3
"""Thread CPU of the engine's float32 exp/log paths on a training step's small arrays.

    python bench/small_math.py [--rounds 25]

SLEEF's expf (`vecmath.sleef_expf`), log_softmax's logf (`vecmath._sleef_logf_u1` on the row
sums), log_softmax, and cross_entropy forward and forward + backward, on 64x10 and 64x100
float32 logits: the best of `--rounds` rounds, microseconds per call. On small arrays the
emulations' numpy call count is the cost. To compare two checkouts, run this file with each
one's interpreter in turn, several times (the machine is shared: compare minima).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import gradserve.engine as ge
from gradserve.engine import vecmath


def best_us(fn: Callable[[], Any], calls: int, rounds: int) -> float:
    """The best thread CPU time of one call over `rounds` rounds of `calls` calls, in us."""
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.thread_time() - start) / calls)
    return best * 1e6


def cases(cols: int) -> dict[str, Callable[[], Any]]:
    """The timed calls on 64 rows of `cols` logits."""
    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((64, cols)) * 3).astype(np.float32)
    sums = rng.uniform(1, cols, 64).astype(np.float32)
    logits = ge.tensor(x, requires_grad=True)
    labels = ge.tensor(rng.integers(0, cols, 64))
    functional = ge.nn.functional

    def forward_backward() -> None:
        functional.cross_entropy(logits, labels).backward()
        logits.grad = None

    return {
        "expf": lambda: vecmath.sleef_expf(x),
        "logf (64 sums)": lambda: vecmath._sleef_logf_u1(sums),
        "log_softmax": lambda: functional.log_softmax(logits.detach(), -1),
        "cross_entropy": lambda: functional.cross_entropy(logits.detach(), labels),
        "ce fwd+bwd": forward_backward,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--calls", type=int, default=200, help="calls per round")
    args = parser.parse_args()
    print(f"{'case':<16} {'64x10 us':>10} {'64x100 us':>10}")
    small, large = cases(10), cases(100)
    for name in small:
        times = [best_us(c[name], args.calls, args.rounds) for c in (small, large)]
        print(f"{name:<16} {times[0]:>10.1f} {times[1]:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
