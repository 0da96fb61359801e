"""Engine speed against PyTorch, as ratios measured in the same run (issue 13's targets).

    python bench/engine.py            # full run (about a minute)
    python bench/engine.py --quick    # fewer rounds
    python bench/engine.py --rounds 15 chain-1000   # more rounds, one case
    GRADSERVE_ENGINE_THREADS=1 python bench/engine.py --cpu --rounds 20 chain-1000 seed-step

Each case runs the same code with `torch` and with `gradserve.engine` on the same inputs, in
rounds that alternate the two, and reports the best time of each over the rounds, and engine
time / torch time. Ratios below 1
mean the engine is faster. Timings on a shared machine are noisy: compare ratios, not seconds.
`--cpu` times the calling thread's CPU instead of the wall clock, with torch on one thread (set
the engine's with GRADSERVE_ENGINE_THREADS=1): on a loaded machine other processes' work then
counts for neither side.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import gradserve.engine as ge
from gradserve.engine import mkl

TARGETS = {"chain-1000": 0.8, "seed-step": 1.0, "mlp-64": 1.0, "mlp-1024": 1.2, "graph-4M": 1.0}


def _calls_for(fn: Callable[[], Any], min_seconds: float) -> int:
    """How many calls of `fn` last about min_seconds (after one warm-up call)."""
    fn()  # warm up
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, int(min_seconds / once))


# what a round is timed with: the wall clock, or this thread's CPU time (`--cpu`)
_clock = time.perf_counter


def _round(fn: Callable[[], Any], calls: int) -> float:
    # a pause first: OpenMP worker threads (torch's, MKL's) spin for a while after a parallel
    # region and would take a core from the next round's code on a 2-core machine
    time.sleep(0.05)
    start = _clock()
    for _ in range(calls):
        fn()
    return (_clock() - start) / calls


def best_times(engine_fn: Callable[[], Any], torch_fn: Callable[[], Any], repeats: int,
               min_seconds: float = 0.2) -> tuple[float, float]:
    """Best time (wall or thread CPU: `_clock`) of one call of each, over `repeats` rounds
    that alternate engine and torch (so a burst of other work on a shared machine hits both),
    each round enough calls to last min_seconds (of wall time)."""
    calls = _calls_for(engine_fn, min_seconds), _calls_for(torch_fn, min_seconds)
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, fn in enumerate((engine_fn, torch_fn)):
            best[i] = min(best[i], _round(fn, calls[i]))
    return best[0], best[1]


def chain_case(mod: Any) -> Callable[[], Any]:
    """1000 scalar ops (alternating `* 1.001` and `sin`), then backward: per-op overhead."""
    x = mod.tensor(0.5, requires_grad=True)

    def step() -> Any:
        y = x
        for _ in range(500):
            y = (y * 1.001).sin()
        y.backward()
        x.grad = None
        return y

    return step


def seed_case(mod: Any) -> Callable[[], Any]:
    """The seed's one-neuron model: z = w*x + b, sigmoid, clamped BCE, backward, read grads."""
    x = mod.tensor(6.7)
    y = mod.tensor(0.0)
    w = mod.tensor(1.0, requires_grad=True)
    b = mod.tensor(0.0, requires_grad=True)

    def step() -> Any:
        z = w * x + b
        y_pred = mod.sigmoid(z)
        y_pred = mod.clamp(y_pred, 1e-8, 1 - 1e-8)
        loss = -(y * mod.log(y_pred) + (1 - y) * mod.log(1 - y_pred))
        loss.backward()
        grads = (w.grad.item(), b.grad.item())
        w.grad = None
        b.grad = None
        return grads

    return step


def mlp_case(mod: Any, batch: int) -> Callable[[], Any]:
    """A 784-256-10 MLP step in float32: relu, cross-entropy, backward, SGD update."""
    rng = np.random.default_rng(0)
    xs = mod.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    labels = mod.tensor(rng.integers(0, 10, size=batch))
    params = [mod.tensor((rng.standard_normal(s) * 0.05).astype(np.float32), requires_grad=True)
              for s in ((784, 256), (256,), (256, 10), (10,))]
    cross_entropy = mod.nn.functional.cross_entropy

    def step() -> Any:
        w1, b1, w2, b2 = params
        hidden = (xs @ w1 + b1).relu()
        loss = cross_entropy(hidden @ w2 + b2, labels)
        loss.backward()
        with mod.no_grad():
            for p in params:
                p -= 0.01 * p.grad
                p.grad = None
        return loss

    return step


def graph_case(mod: Any) -> Callable[[], Any]:
    """(sin(x) * x + exp(-x**2)).sum() over 4M float32 elements, forward and backward."""
    data = np.random.default_rng(0).standard_normal(4 * 1024 * 1024).astype(np.float32)
    x = mod.tensor(data, requires_grad=True)

    def step() -> Any:
        out = (mod.sin(x) * x + mod.exp(-x ** 2)).sum()
        out.backward()
        x.grad = None
        return out

    return step


CASES: dict[str, Callable[[Any], Callable[[], Any]]] = {
    "chain-1000": chain_case,
    "seed-step": seed_case,
    "mlp-64": lambda mod: mlp_case(mod, 64),
    "mlp-1024": lambda mod: mlp_case(mod, 1024),
    "graph-4M": graph_case,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternating engine/torch rounds per case (more: steadier minima)")
    parser.add_argument("--cpu", action="store_true",
                        help="time thread CPU, torch on one thread (see the docstring)")
    parser.add_argument("cases", nargs="*", help=f"subset of {', '.join(CASES)}")
    args = parser.parse_args()
    repeats = args.rounds or (3 if args.quick else 7)
    if args.cpu:
        global _clock
        _clock = time.thread_time
        torch.set_num_threads(1)
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), engine threads "
          f"{ge.parallel.threads()}, cpus {os.cpu_count()}; timed by "
          f"{'thread CPU' if args.cpu else 'the wall clock'}")
    print(mkl.status(), "(GRADSERVE_MKL=0: the numpy paths)")
    print(f"{'case':<12} {'engine':>12} {'torch':>12} {'ratio':>7} {'target':>7}")
    missed = []
    for name in args.cases or CASES:
        make = CASES[name]
        t_engine, t_torch = best_times(make(ge), make(torch), repeats)
        ratio = t_engine / t_torch
        target = TARGETS[name]
        flag = "" if ratio <= target else "  MISSED"
        if flag:
            missed.append(name)
        print(f"{name:<12} {t_engine * 1e3:>9.3f} ms {t_torch * 1e3:>9.3f} ms {ratio:>7.2f} "
              f"{target:>7.2f}{flag}")
    print(f"missed targets: {', '.join(missed) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
