"""What `gradserve.surface.meta.infer` costs per recorded op, against the in-process engine
running the same op on small tensors, measured in the same run.

    python bench/meta.py            # about 20 seconds
    python bench/meta.py --quick    # fewer repeats

Times are CPU time (`time.process_time`), best of several rounds, so that on a shared machine
time spent waiting for a core is not counted; compare the ratios, not the microseconds.
"""

from __future__ import annotations

import argparse
import functools
import time
import timeit
from typing import Any, NamedTuple

import numpy as np

import gradserve.engine as ge
from gradserve.surface.meta import infer


class Desc(NamedTuple):
    """A tensor as the client knows it."""

    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool


def _case(op: str, specs: list[Any], attrs: dict[str, Any]) -> tuple[Any, ...]:
    """(op, described inputs, engine inputs, attrs) for specs: (shape, dtype, rg) or scalars."""
    described, tensors = [], []
    for s in specs:
        if isinstance(s, tuple):
            shape, dtype, rg = s
            t = ge.tensor(np.ones(shape, dtype=dtype), requires_grad=rg)
            described.append(Desc(shape, dtype, rg))
            tensors.append(t)
        else:
            described.append(s)
            tensors.append(s)
    return op, described, tensors, attrs


X = ((8, 4), "float32", True)
CASES = {
    "add x + y": _case("add", [X, ((8, 4), "float32", False)], {}),
    "add broadcast": _case("add", [X, ((4,), "float32", False)], {}),
    "mul x * 2.0": _case("mul", [X, 2.0], {}),
    "pow x ** 2": _case("pow", [X, 2], {}),
    "exp": _case("exp", [X], {}),
    "lt x < 0": _case("lt", [X, 0.0], {}),
    "sum": _case("sum", [X], {}),
    "sum dim=1": _case("sum", [X], {"dim": (1,), "keepdim": True}),
    "mean": _case("mean", [X], {}),
    "matmul": _case("matmul", [X, ((4, 3), "float32", True)], {}),
    "reshape -1": _case("reshape", [X], {"shape": (-1,)}),
    "cross_entropy": _case("cross_entropy", [X, ((8,), "int64", False), None], {}),
}


def cpu_time(fn: Any, number: int, repeats: int) -> float:
    """Best CPU time of one call over `repeats` rounds of `number` calls."""
    timer = timeit.Timer(fn, timer=time.process_time)
    return min(timer.repeat(number=number, repeat=repeats)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    number, repeats = (20_000, 3) if args.quick else (100_000, 5)
    print(f"{'case':16s} {'infer µs':>9s} {'engine µs':>10s} {'infer/engine':>13s}")
    for name, (op, described, tensors, attrs) in CASES.items():
        assert infer(op, described, attrs, True) is not None, name
        t_infer = cpu_time(functools.partial(infer, op, described, attrs, True), number,
                           repeats)
        t_engine = cpu_time(functools.partial(ge.apply, op, tensors, attrs), number // 10,
                            repeats)
        print(f"{name:16s} {t_infer * 1e6:9.2f} {t_engine * 1e6:10.2f} "
              f"{t_infer / t_engine:13.2f}")


if __name__ == "__main__":
    main()
