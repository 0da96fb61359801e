#!/usr/bin/env python3
"""CPU of a float32 nn.LSTM forward + backward in process: torch's oneDNN kernel as the op
`mkldnn_rnn_layer` (exact FMA chains) against the cell composition (BLAS), alternated.

    python bench/lstm.py [--shape 5 100 28 128] [--rounds 7]

The shape is (seq, batch, input, hidden) of one layer; the loss is `output.sum()`. Both paths
run in this process (`cascade.ONEDNN_AVX512` set for one, cleared for the other), round after
round, so the machine's load falls on both alike: the best and median process CPU (MKL's
threads included) of each, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import gradserve.engine as ge
from gradserve.engine import cascade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[5, 100, 28, 128])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    seq, batch, features, hidden = args.shape
    ge.manual_seed(0)
    module = ge.nn.LSTM(features, hidden)
    x = ge.tensor(np.random.default_rng(0).standard_normal((seq, batch, features))
                  .astype(np.float32))

    def once(fused: bool) -> float:
        cascade.ONEDNN_AVX512 = fused
        module.zero_grad()
        start = time.process_time()
        out, _ = module(x)
        out.sum().backward()
        return time.process_time() - start

    times: dict[bool, list[float]] = {False: [], True: []}
    for fused in (False, True):
        once(fused)  # warm up
    for _ in range(args.rounds):
        for fused in (False, True):
            times[fused].append(once(fused))
    for fused, name in ((False, "composition"), (True, "mkldnn_rnn_layer")):
        print(f"{name:18s} best {min(times[fused]) * 1e3:7.1f} ms  "
              f"median {statistics.median(times[fused]) * 1e3:7.1f} ms")
    print(f"ratio (best): {min(times[True]) / min(times[False]):.1f}x")


if __name__ == "__main__":
    main()
