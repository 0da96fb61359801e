"""Whether the work the factorizations declare (`limits.work_bound`, in floating multiply-adds)
covers their time: each op's CPU time per declared unit of work, against a matrix product's time
per multiply-add (what a unit stands for), measured in the same run.

    python bench/linalg.py           # about 30 seconds
    python bench/linalg.py --quick   # fewer repeats, smaller sizes

A ratio at or below 1 means the op's declared work is an upper bound of its time in matmul's
units, so the per-op work limit bounds its time as it bounds a product's. CPU time
(`time.process_time`), best of several rounds (a shared machine); compare ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import gradserve.engine as ge
from gradserve.engine import registry


def _interleaved(fns: tuple[Callable[[], Any], ...], rounds: int) -> list[float]:
    """Each function's best CPU time over `rounds`, run alternately (a loaded machine slows
    them alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.process_time()
            fn()
            best[i] = min(best[i], time.process_time() - start)
    return best


def _declared(op: str, args: list[Any], attrs: dict[str, Any]) -> int:
    opdef = registry.OPS[op]
    return opdef.bound(args, {**opdef.default_attrs, **attrs}, args[0].dtype).work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    n = 128 if quick else 256
    rounds = 5 if quick else 11
    rng = np.random.default_rng(0)
    m = rng.standard_normal((n, n))
    spd = ge.tensor(m @ m.T + n * np.eye(n))
    a = ge.tensor(m + n * np.eye(n))
    b = ge.tensor(rng.standard_normal((n, 8)))
    low = ge.linalg.cholesky(spd)
    cases = {
        "_linalg_svd": ([a], {"full_matrices": False}),
        "_linalg_eigh": ([spd], {}),
        "linalg_cholesky": ([spd], {}),
        "linalg_inv": ([a], {}),
        "linalg_qr": ([a], {}),
        "linalg_pinv": ([a], {}),
        "linalg_det": ([a], {}),
        "linalg_slogdet": ([a], {}),
        "linalg_solve": ([a, b], {}),
        "linalg_solve_triangular": ([low, b], {"upper": False}),
        "cholesky_solve": ([b, low], {}),
    }
    product = ge.tensor(m)
    print(f"n = {n}; each op against a ({n}, {n}) matrix product in alternate rounds")
    print(f"{'op':26} {'ms':>8} {'declared units':>15} {'ratio to matmul':>16}")
    for op, (args, attrs) in cases.items():
        product_s, seconds = _interleaved(
            (lambda: ge.mm(product, product),
             lambda op=op, args=args, attrs=attrs: ge.apply(op, args, attrs)), rounds)
        unit = product_s / n ** 3  # seconds per multiply-add
        work = _declared(op, args, attrs)
        print(f"{op:26} {seconds * 1e3:8.2f} {work:15d} {seconds / (work * unit):16.2f}")
    # batches of small matrices (LAPACK's and numpy's cost per matrix: `ops_decomp.MATRIX_WORK`)
    # and the searches that run after a batched call failed: the first failing matrix, and the
    # zero pivot that names the singular one (blocked elimination)
    count = 1024 if quick else 4096
    singular = np.eye(n)
    singular[:, -1] = 0
    few = np.broadcast_to(np.eye(4) * 2, (count, 4, 4)).copy()
    few[-1] = 0
    failing = {
        "linalg_inv (singular)": ("linalg_inv", [ge.tensor(singular)], {}),
        "linalg_inv (batch, last)": ("linalg_inv", [ge.tensor(few)], {}),
        "linalg_cholesky (batch, last)": ("linalg_cholesky", [ge.tensor(few)], {}),
        "linalg_solve (batch, last)": ("linalg_solve",
                                       [ge.tensor(few), ge.ones(4, 1, dtype=ge.float64)], {}),
    }
    for size in (1, 4):
        batch = ge.tensor(np.broadcast_to(np.eye(size) * 2, (count, size, size)).copy())
        for op in ("_linalg_svd", "_linalg_eigh", "linalg_qr", "linalg_inv", "linalg_det",
                   "linalg_cholesky"):
            attrs = {"full_matrices": False} if op == "_linalg_svd" else {}
            failing[f"{op} ({count}, {size}, {size})"] = (op, [batch], attrs)
    print(f"\nbatches and failing matrices, against a ({n}, {n}) product")
    for label, (op, args, attrs) in failing.items():
        def call(op: str = op, args: list[Any] = args, attrs: dict[str, Any] = attrs) -> None:
            try:
                ge.apply(op, args, attrs)
            except ge.errors.LinAlgError:
                pass
        product_s, seconds = _interleaved((lambda: ge.mm(product, product), call), rounds)
        unit = product_s / n ** 3
        work = _declared(op, args, attrs)
        print(f"{label:30} {seconds * 1e3:8.2f} {work:15d} {seconds / (work * unit):16.2f}")


if __name__ == "__main__":
    main()
