"""The engine's per-op CPU cost, two versions of the code interleaved (issue 13's forward path).

    python bench/perop.py --old DIR --new DIR [--rounds 30] [case ...]

DIR holds a `gradserve` package (a checkout's `protos/gradserve` with `surface`, `engine`,
`server`, `client` beside `v1`, e.g. as symlinks; `--new .` runs this checkout as installed).
Two worker processes, one per version, run the same case in turn, in rounds alternating which
goes first (A B B A ...), each timing its own work with the CPU time of its thread
(`time.thread_time_ns`), so a burst of other work on a shared machine shows as a slower round
rather than a wrong ratio. Reported: min and median over the rounds, in microseconds per op.

Cases:
- chain-fwd: 1000 scalar ops (`(y * 1.001).sin()`, 500 times) forward, recorded, in process.
- chain: the same and its backward (bench/engine.py's chain-1000).
- limits-fwd: chain-fwd under the limits a session's batch applies (element limit, the call's
  interrupt check, a byte budget per op, as server/batch.py's tape loop gives them).
- tape-chain: the chain's 1000 ops as one session tape, decoded and run by the server's
  `Executor` (handles, budget, accounting) in process.
- tape-adam: bench/client.py's Adam iteration's 9 forward ops as a session tape.
- seed-step: bench/engine.py's seed-step (the seed's one-neuron model, forward and backward).
- mlp-64: bench/engine.py's mlp-64 step (a 784-256-10 MLP, batch 64: forward, cross-entropy,
  backward, SGD update), reported per step rather than per op.
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

CASES = ("chain-fwd", "chain", "limits-fwd", "tape-chain", "tape-adam", "seed-step", "mlp-64")


# --- worker side (runs one version of the code) -----------------------------------------------

def _chain_fwd(ge: Any) -> tuple[Callable[[], None], int]:
    x = ge.tensor(0.5, requires_grad=True)

    def run() -> None:
        y = x
        for _ in range(500):
            y = (y * 1.001).sin()
        del y

    return run, 1000


def _chain(ge: Any) -> tuple[Callable[[], None], int]:
    x = ge.tensor(0.5, requires_grad=True)

    def run() -> None:
        y = x
        for _ in range(500):
            y = (y * 1.001).sin()
        y.backward()
        x.grad = None

    return run, 1000


class _Context:
    """What `service.Call` reads of a gRPC context."""

    def time_remaining(self) -> float | None:
        return None  # no deadline: the check still reads the clock, as under one

    def add_callback(self, fn: Callable[[], None]) -> bool:
        return True


def _call(ge: Any) -> Any:
    from gradserve.server import fairness, service

    return service.Call(_Context(), "bench", fairness.RunSlots(1), 0.05)


def _limits_fwd(ge: Any) -> tuple[Callable[[], None], int]:
    from gradserve.server.config import ServerConfig

    config = ServerConfig()
    call = _call(ge)
    x = ge.tensor(0.5, requires_grad=True)
    mul, sin = ge.registry.OPS["mul"], ge.registry.OPS["sin"]
    run_op, limits = ge.dispatch.run, ge.limits
    within = getattr(limits, "within", None)

    def run() -> None:
        with limits.allocation_limit(config.max_tensor_elements), ge.enable_grad(), \
                limits.interrupt(call.check):
            y = x
            left = config.max_session_bytes
            for _ in range(500):
                if within is not None:
                    y = within(left, run_op, mul, (y, 1.001), {})
                    y = within(left, run_op, sin, (y,), {})
                else:
                    with limits.byte_budget(left):
                        y = run_op(mul, (y, 1.001), {})
                    with limits.byte_budget(left):
                        y = run_op(sin, (y,), {})
            del y

    return run, 1000


def _session(ge: Any) -> Any:
    from gradserve.server import sessions
    from gradserve.server.config import ServerConfig

    config = ServerConfig()
    limits = sessions.Limits(max_bytes=config.max_session_bytes,
                             max_tensor_elements=config.max_tensor_elements,
                             max_instructions=config.max_instructions,
                             max_handles=config.max_handles)
    return sessions.Session("bench-session-0000", "bench", limits, 600.0, 0, time.monotonic)


def _tape_runner(ge: Any, tape: Any, inputs: dict[int, Any],
                 n_ops: int) -> tuple[Callable[[], None], int]:
    from gradserve.server import batch
    from gradserve.v1 import session_pb2

    session = _session(ge)
    call = _call(ge)
    instructions = [session_pb2.Instruction(tape=tape)]

    def run() -> None:
        session.tensors.clear()
        session.tensors.update(inputs)
        session.measured_bytes = 0
        executor = batch.Executor(session, call.check, 64 << 20)
        with call.running():
            executor.run(instructions)
        session.tensors.clear()

    return run, n_ops


def _word(kind: int, payload: int) -> int:
    return payload << 3 | kind


def _tape(names: list[str], ops: list[tuple[str, list[int], int, int]],
          floats: list[float]) -> Any:
    """A Tape of `ops` (name, input words, output handle, flags)."""
    from array import array

    from gradserve.v1 import session_pb2

    code = array("Q")
    for name, inputs, out, flags in ops:
        code.append(names.index(name) | flags << 32 | len(inputs) << 40 | 1 << 52)
        code.extend(inputs)
        code.append(out)
    if sys.byteorder == "big":
        code.byteswap()
    return session_pb2.Tape(ops=names, code=code.tobytes(),
                            floats=array("d", floats).tobytes())


def _tape_chain(ge: Any) -> tuple[Callable[[], None], int]:
    handle_k, float_k = 0, 1
    ops = []
    prev = 1
    for i in range(500):
        a, b = 2 + 2 * i, 3 + 2 * i
        ops.append(("mul", [_word(handle_k, prev), _word(float_k, 0)], a, 0))
        ops.append(("sin", [_word(handle_k, a)], b, 0))
        prev = b
    tape = _tape(["mul", "sin"], ops, [1.001])
    return _tape_runner(ge, tape, {1: ge.tensor(0.5, requires_grad=True)}, 1000)


def _tape_adam(ge: Any) -> tuple[Callable[[], None], int]:
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = {1: ge.tensor(rng.standard_normal((16, 4)).astype("float32")),
              2: ge.tensor(rng.standard_normal((16, 1)).astype("float32")),
              3: ge.tensor(rng.standard_normal((4, 1)).astype("float32"), requires_grad=True),
              4: ge.tensor(np.zeros(1, "float32"), requires_grad=True)}
    h, f = 0, 1
    ops = [("matmul", [_word(h, 1), _word(h, 3)], 10, 0),  # pred = x @ w + b
           ("add", [_word(h, 10), _word(h, 4)], 11, 0),
           ("sub", [_word(h, 11), _word(h, 2)], 12, 0),  # err = pred - y
           ("mul", [_word(h, 12), _word(h, 12)], 13, 0),
           ("mean", [_word(h, 13)], 14, 0),
           ("mul", [_word(h, 3), _word(h, 3)], 15, 0),
           ("sum", [_word(h, 15)], 16, 0),
           ("mul", [_word(f, 0), _word(h, 16)], 17, 0),
           ("add", [_word(h, 14), _word(h, 17)], 18, 2)]  # loss (described)
    tape = _tape(["matmul", "add", "sub", "mul", "mean", "sum"], ops, [0.001])
    return _tape_runner(ge, tape, inputs, 9)


def _seed_step(ge: Any) -> tuple[Callable[[], None], int]:
    x, y = ge.tensor(6.7), ge.tensor(0.0)
    w, b = ge.tensor(1.0, requires_grad=True), ge.tensor(0.0, requires_grad=True)

    def run() -> None:
        y_pred = ge.clamp(ge.sigmoid(w * x + b), 1e-8, 1 - 1e-8)
        loss = -(y * ge.log(y_pred) + (1 - y) * ge.log(1 - y_pred))
        loss.backward()
        w.grad.item(), b.grad.item()
        w.grad = b.grad = None

    return run, 1


def _mlp_64(ge: Any) -> tuple[Callable[[], None], int]:
    import numpy as np

    rng = np.random.default_rng(0)
    xs = ge.tensor(rng.standard_normal((64, 784)).astype(np.float32))
    labels = ge.tensor(rng.integers(0, 10, size=64))
    params = [ge.tensor((rng.standard_normal(s) * 0.05).astype(np.float32), requires_grad=True)
              for s in ((784, 256), (256,), (256, 10), (10,))]
    cross_entropy = ge.nn.functional.cross_entropy

    def run() -> None:
        w1, b1, w2, b2 = params
        hidden = (xs @ w1 + b1).relu()
        loss = cross_entropy(hidden @ w2 + b2, labels)
        loss.backward()
        with ge.no_grad():
            for p in params:
                p -= 0.01 * p.grad
                p.grad = None

    return run, 1


MAKERS = {"chain-fwd": _chain_fwd, "chain": _chain, "limits-fwd": _limits_fwd,
          "tape-chain": _tape_chain, "tape-adam": _tape_adam, "seed-step": _seed_step,
          "mlp-64": _mlp_64}


def worker() -> None:
    """Read `case reps` lines; run the case `reps` times; answer the CPU ns per op."""
    import gradserve.engine as ge

    print(os.path.dirname(ge.__file__), flush=True)
    made: dict[str, tuple[Callable[[], None], int]] = {}
    clock = time.thread_time_ns
    for line in sys.stdin:
        case, reps = line.split()
        if case not in made:
            made[case] = MAKERS[case](ge)
            made[case][0]()  # warm up
        fn, n_ops = made[case]
        start = clock()
        for _ in range(int(reps)):
            fn()
        print((clock() - start) / (int(reps) * n_ops), flush=True)


# --- driver side ------------------------------------------------------------------------------

def _spawn(path: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if path != ".":
        env["PYTHONPATH"] = os.path.abspath(path) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, __file__, "--worker"], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    print(f"{path}: engine from {proc.stdout.readline().strip()}")
    return proc


def _ask(proc: subprocess.Popen[str], case: str, reps: int) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{case} {reps}\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


# cases much shorter than the chain's 1000 ops run this many times more per round
_REPEATS = {"tape-adam": 100, "seed-step": 30, "mlp-64": 4}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--old", required="--worker" not in sys.argv)
    parser.add_argument("--new", default=".")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3, help="case runs per round")
    parser.add_argument("cases", nargs="*", help=f"subset of {', '.join(CASES)}")
    args = parser.parse_args()
    if args.worker:
        gc.collect()
        worker()
        return 0
    procs = {"old": _spawn(args.old), "new": _spawn(args.new)}
    cases = args.cases or list(CASES)
    times: dict[tuple[str, str], list[float]] = {(c, v): [] for c in cases for v in procs}
    for r in range(args.rounds):
        for case in cases:
            reps = args.reps * _REPEATS.get(case, 1)
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for v in order:
                times[case, v].append(_ask(procs[v], case, reps))
    for p in procs.values():
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    print(f"{'case':<12} {'old min':>9} {'new min':>9} {'old med':>9} {'new med':>9}  "
          f"(us of thread CPU per op, {args.rounds} rounds)")
    for case in cases:
        old, new = times[case, "old"], times[case, "new"]
        print(f"{case:<12} {min(old) / 1e3:>9.2f} {min(new) / 1e3:>9.2f} "
              f"{statistics.median(old) / 1e3:>9.2f} {statistics.median(new) / 1e3:>9.2f}  "
              f"new/old min {min(new) / min(old):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
