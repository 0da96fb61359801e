#!/usr/bin/env python3
"""Check the engine's fast float32 kernels against their step-by-step forms on EVERY float32.

    python3 scripts/verify_small_math.py                 # every check, all 2**32 inputs
    python3 scripts/verify_small_math.py expf --start 512 --chunk-bits 22

`gradserve.engine.vecmath` computes SLEEF's expf and logf (torch's CPU exp/log roundings) in a
fast form: float64 arithmetic whose roundings are argued to be the step-by-step form's (each
float32 fused multiply-add of `fma32`, with its double-rounding checks). The argument has cases
that are easier to check than to prove, so this script checks them: each fast function against
its reference on all 2**32 bit patterns, chunk by chunk, comparing result bits (NaNs compare as
NaNs: their payloads are not part of the contract). It takes a few minutes a check on one core
(run it under `nice`); tests/test_engine_small_math.py samples the same comparison on each run.
Exit status 1 if any input differs; the first few are printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from gradserve.engine import vecmath

F32 = np.float32


def _positive_normal(x: np.ndarray) -> np.ndarray:
    return x[(x >= np.finfo(F32).tiny) & (x < np.inf)]


# name -> (fast, reference, which inputs of a chunk the pair is defined on)
CHECKS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray],
                        Callable[[np.ndarray], np.ndarray]]] = {
    "expf": (vecmath.sleef_expf, lambda x: vecmath._expf(x, vecmath.fma32), lambda x: x),
    "logf": (lambda d: vecmath._logf_normal(d, vecmath._fma_unchecked),
             lambda d: vecmath._logf_normal(d, vecmath.fma32), _positive_normal),
}


def differences(fast: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Indices where the two float32 arrays differ in bits (both NaN counts as equal)."""
    differ = fast.view(np.uint32) != ref.view(np.uint32)
    return np.flatnonzero(differ & ~(np.isnan(fast) & np.isnan(ref)))


def run(name: str, start: int, chunk_bits: int) -> int:
    fast, ref, domain = CHECKS[name]
    chunks = 1 << (32 - chunk_bits)
    base = np.arange(1 << chunk_bits, dtype=np.uint64)
    bad = 0
    began = time.monotonic()
    for i in range(start, chunks):
        x = domain(((base + (i << chunk_bits)).astype(np.uint32)).view(F32))
        with np.errstate(all="ignore"):
            diff = differences(fast(x), ref(x))
        if diff.size:
            bad += diff.size
            for j in diff[:5]:
                v = x[j:j + 1]
                with np.errstate(all="ignore"):
                    print(f"{name}: x = {v[0]!r} (0x{v.view(np.uint32)[0]:08x}): fast "
                          f"{fast(v)[0]!r}, reference {ref(v)[0]!r}", flush=True)
        if (i + 1) % 64 == 0 or i + 1 == chunks:
            print(f"{name}: {i + 1}/{chunks} chunks, {bad} differences, "
                  f"{time.monotonic() - began:.0f} s", flush=True)
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checks", nargs="*", help=f"subset of {', '.join(CHECKS)}")
    parser.add_argument("--start", type=int, default=0, help="first chunk (to resume)")
    parser.add_argument("--chunk-bits", type=int, default=22, help="log2 of inputs per chunk")
    args = parser.parse_args()
    bad = sum(run(name, args.start, args.chunk_bits) for name in args.checks or CHECKS)
    print("all equal" if not bad else f"{bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
