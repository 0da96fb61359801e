"""The engine's backward pass and optimizer step, in CPU time of the calling thread (issue 13).

    python bench/backward.py                         # this tree, 30 rounds
    python bench/backward.py --against /tmp/base     # interleaved with another source tree

Cases (each a round of many calls; the work outside the measured phase is not timed):
- one-node: `autograd.grad(x ** 2, x)` on a graph of one node (a stateless call's pass);
  `one-node-limits` under the limits a stateless call runs with (byte budget, element limit,
  an interrupt check counting steps) and with its arguments (retain_graph=True).
- adam-bwd / adam-step: a session's Adam iteration (bench/client.py's AdamLoop: 8 small ops,
  backward, step), the backward and the optimizer step measured apart; `adam-limits-*` under
  the scopes a session's batch runs them in (element limit, interrupt check, a byte budget per
  backward).
- mlp-bwd: the backward of bench/engine.py's mlp-64 (784-256-10, batch 64).

With `--against DIR`, DIR is another checkout's root (e.g. `git archive <commit> | tar -x -C
DIR`); both trees run in their own worker process, rounds alternating (A B A B ...), so a
burst of other work on a shared machine hits both. Reports the min and median over the rounds
of the mean time per call; compare the two trees, not the microseconds across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

CASES = ("one-node", "one-node-limits", "adam-bwd", "adam-step", "adam-limits-bwd",
         "adam-limits-step", "mlp-bwd")


# --- the worker: runs rounds of a case on request ------------------------------------------------

def _worker() -> None:
    import gradserve.engine as ge
    from gradserve.engine import limits

    clock = time.thread_time_ns
    rng = np.random.default_rng(0)
    x = ge.tensor(rng.standard_normal((16, 4)).astype("float32"))
    y = ge.tensor(rng.standard_normal((16, 1)).astype("float32"))
    w = ge.tensor(rng.standard_normal((4, 1)).astype("float32"), requires_grad=True)
    b = ge.tensor(np.zeros(1, "float32"), requires_grad=True)
    opt = ge.optim.Adam([w, b], lr=0.01)
    xs = ge.tensor(rng.standard_normal((64, 784)).astype(np.float32))
    labels = ge.tensor(rng.integers(0, 10, size=64))
    params = [ge.tensor((rng.standard_normal(s) * 0.05).astype(np.float32), requires_grad=True)
              for s in ((784, 256), (256,), (256, 10), (10,))]
    steps_left = [1 << 60]

    def check() -> None:  # a stateless call's check: a step count and a deadline
        steps_left[0] -= 1
        if steps_left[0] < 0 or time.monotonic() > 1e12:
            raise RuntimeError("interrupted")

    def one_node(limited: bool) -> float:
        t = ge.tensor(3.0, requires_grad=True)
        ys = [t ** 2 for _ in range(200)]
        grad = ge.autograd.grad
        if not limited:
            start = clock()
            for out in ys:
                grad(out, t)
            return (clock() - start) / len(ys)
        with limits.byte_budget(1 << 30), limits.allocation_limit(1 << 24), \
                limits.interrupt(check):
            start = clock()
            for out in ys:
                grad([out], [t], grad_outputs=[None], retain_graph=True)
            return (clock() - start) / len(ys)

    def adam(limited: bool) -> tuple[float, float]:
        losses = []
        for _ in range(40):
            err = x @ w + b - y
            losses.append((err * err).mean() + 0.001 * (w * w).sum())
        scopes: Any = (limits.allocation_limit(1 << 24), ge.enable_grad(),
                       limits.interrupt(check)) if limited else ()
        for s in scopes:
            s.__enter__()
        try:
            start = clock()
            for loss in losses:
                opt.zero_grad()
                if limited:
                    with limits.byte_budget(1 << 30):
                        loss.backward()
                else:
                    loss.backward()
            middle = clock()
            for _ in losses:
                opt.step()
            end = clock()
        finally:
            for s in reversed(scopes):
                s.__exit__(None, None, None)
        return (middle - start) / len(losses), (end - middle) / len(losses)

    def mlp() -> float:
        total = 0
        for _ in range(8):
            w1, b1, w2, b2 = params
            hidden = (xs @ w1 + b1).relu()
            loss = ge.nn.functional.cross_entropy(hidden @ w2 + b2, labels)
            start = clock()
            loss.backward()
            total += clock() - start
            for p in params:
                p.grad = None
        return total / 8

    run: dict[str, Callable[[], Any]] = {
        "one-node": lambda: one_node(False), "one-node-limits": lambda: one_node(True),
        "adam": lambda: adam(False), "adam-limits": lambda: adam(True), "mlp-bwd": mlp}
    for line in sys.stdin:
        print(json.dumps(run[line.strip()]()), flush=True)


# --- the driver ----------------------------------------------------------------------------------

def _tree_root(src: str, scratch: str) -> str:
    """A directory to put on PYTHONPATH that imports `gradserve` from the checkout `src`."""
    pkg = os.path.join(scratch, "gradserve")
    os.makedirs(pkg)
    protos = os.path.join(src, "protos", "gradserve")
    for name in os.listdir(protos):
        os.symlink(os.path.join(protos, name), os.path.join(pkg, name))
    for name in ("engine", "surface", "server", "client"):
        os.symlink(os.path.join(src, name), os.path.join(pkg, name))
    return scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--against", help="another checkout's root, run interleaved")
    parser.add_argument("cases", nargs="*", help=f"some of {', '.join(CASES)} (default: all)")
    args = parser.parse_args()
    args.cases = args.cases or list(CASES)
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"this": os.environ.get("PYTHONPATH", "")}
        if args.against:
            trees = {"against": _tree_root(os.path.abspath(args.against), scratch), **trees}
        workers = {}
        for name, path in trees.items():
            env = dict(os.environ, PYTHONPATH=path)
            workers[name] = subprocess.Popen([sys.executable, __file__, "--worker"], env=env,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             text=True)
        # a request runs a case; adam's request measures both of its phases
        requests = sorted({c.rsplit("-", 1)[0] if c.startswith("adam") else c
                           for c in args.cases})
        times: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds + 1):  # round 0 warms up
            for req in requests:
                for name, proc in workers.items():
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(req + "\n")
                    proc.stdin.flush()
                    got = json.loads(proc.stdout.readline())
                    if r == 0:
                        continue
                    parts = ({f"{req}-bwd": got[0], f"{req}-step": got[1]}
                             if req.startswith("adam") else {req: got})
                    for case, ns in parts.items():
                        times.setdefault((case, name), []).append(ns / 1000)
        for proc in workers.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
    print(f"CPU time of the calling thread per call, us (min / median of {args.rounds} rounds)")
    for case in args.cases:
        cells = [f"{name}: {min(times[(case, name)]):8.1f} / "
                 f"{statistics.median(times[(case, name)]):8.1f}" for name in workers]
        print(f"{case:18s}" + "   ".join(cells))


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        main()
