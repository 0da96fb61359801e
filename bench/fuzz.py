#!/usr/bin/env python3
"""Long fuzzing run against a server subprocess (the CI suite is tests/test_fuzz.py).

    python bench/fuzz.py [N] [--seed S] [--workers W]

Sends N inputs (default 100,000), split evenly between random bytes to every rpc, mutated valid
requests, random graphs, random instruction batches from the op catalogue, and hostile requests:
small messages asking for huge or numerous results (nonzero, unbind, split, index_select/take/
gather with huge index tensors, repeat, outer, matmul, cat/stack on expanded scalars, expand
chains), long chains differentiated up to order 8, and batches repeating
`backward(create_graph=True)` (the generators of tests/fuzz_inputs.py, driven by
`random.Random(seed)` so a run is reproducible). The server runs with the limits of
docs/reliability.md (`--max-session-bytes 64 MiB --max-tensor-elements 4 Mi`).

Every failure is collected (UNKNOWN/INTERNAL answers, hangs past the deadline, a hostile request
not answered within 5 s) together with the server's log of internal errors; the server's peak
RSS must stay within `--rss-ceiling` MiB of its RSS before the first input (checked every 1,000
inputs and at the end). Each failure is printed as it is found; at the end it prints the counts
by status code and the memory figures, and exits 1 when anything failed, the ceiling was passed
or the server died.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["GRADSERVE_FUZZ_COLLECT"] = "1"

import numpy as np  # noqa: E402

from gradserve.v1 import catalogue_pb2, service_pb2_grpc, session_pb2  # noqa: E402
from tests import fuzz_inputs as fz  # noqa: E402
from tests.server_process import MiB, ServerProcess  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000, help="inputs to send")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trace-peaks", action="store_true",
                        help="print each input after which the server's peak RSS rose > 8 MiB")
    parser.add_argument("--rss-ceiling", type=float, default=200,
                        help="MiB the server's peak RSS may rise above its starting RSS")
    args = parser.parse_args(argv)

    server = ServerProcess(["--workers", str(args.workers), "--session-ttl", "2",
                            "--max-session-ttl", "3", "--reap-interval", "0.5",
                            "--max-session-bytes", str(64 * MiB),
                            "--max-tensor-elements", str(4 * MiB),
                            "--log-level", "ERROR"]).start()
    outcome = fz.Outcome()
    ceiling_passed = ""
    try:
        channel = server.channel()
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        cat = stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10)
        ops, inplace = list(cat.ops), list(cat.inplace_ops)
        holder = stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=10)
        corpus = fz.valid_corpus(ops, holder.session_id)
        methods = sorted(fz.METHODS)
        c = fz.Chooser(rng=random.Random(args.seed))
        start = time.monotonic()
        warm_rss = None
        start_rss = last_peak = server.rss()
        last_what = ""
        reported = 0
        ceiling = start_rss + args.rss_ceiling * MiB
        with np.errstate(all="ignore"):
            for i in range(args.n):
                if i == min(2000, args.n // 10):
                    warm_rss = server.rss()
                if i % 1000 == 999 and not ceiling_passed and server.peak_rss() > ceiling:
                    ceiling_passed = (f"peak RSS {server.peak_rss() / MiB:.0f} MiB after "
                                      f"{i + 1} inputs")
                if args.trace_peaks:
                    peak = server.peak_rss()
                    if peak > last_peak + 8 * MiB:
                        print(f"peak {peak / MiB:.0f} MiB after input {i - 1} (kind "
                              f"{(i - 1) % 5}): {' '.join(last_what.split())[:400]}", flush=True)
                    last_peak = peak
                kind = i % 5
                if kind == 0:
                    method, payload = c.pick(methods), c.bytes(200)
                    call = fz.raw_call(channel, method)
                    fz.check_status(lambda t, call=call, payload=payload: call(
                        payload, timeout=t, metadata=(("x-session-id", "none"),)),
                                    f"{method} {payload!r}", outcome)
                elif kind == 1:
                    method, valid = c.pick(corpus)
                    payload = fz.mutate(c, valid)
                    call = fz.raw_call(channel, method)
                    meta = (("x-session-id", holder.session_id),)
                    fz.check_status(lambda t, call=call, payload=payload, meta=meta: call(
                        payload, timeout=t, metadata=meta), f"{method} {payload!r}",
                        outcome)
                elif kind == 4:
                    last_what = "hostile " + fz.hostile_call(c, stub, outcome)
                elif kind == 2:
                    req = fz.graph_request(c, ops)
                    last_what = "graph " + str(req)
                    fz.check_status(lambda t, req=req: stub.RunGraph(req, timeout=t),
                                    str(req), outcome)
                else:
                    sid = stub.CreateSession(session_pb2.CreateSessionRequest(),
                                             timeout=10).session_id
                    meta = (("x-session-id", sid),)
                    breq = session_pb2.BatchRequest(session_id=sid)
                    fz.batch_instructions(c, ops, inplace, breq.instructions)
                    last_what = "batch " + str(breq)
                    fz.check_status(lambda t, breq=breq, meta=meta: stub.ExecuteBatch(
                        breq, metadata=meta, timeout=t), str(breq), outcome)
                    stub.CloseSession(session_pb2.CloseSessionRequest(session_id=sid),
                                      metadata=meta, timeout=10)
                for failure in outcome.failures[reported:]:  # as found: a long run's log
                    print(f"FAILED at input {i} (kind {kind}): {failure[:600]}", flush=True)
                reported = len(outcome.failures)
                if (i + 1) % 10_000 == 0:
                    print(f"{i + 1} inputs, {time.monotonic() - start:.0f}s, "
                          f"{len(outcome.failures)} failures, RSS {server.rss() / MiB:.0f} MiB, "
                          f"peak {server.peak_rss() / MiB:.0f} MiB, "
                          f"{dict(sorted(outcome.codes.items()))}", flush=True)
        elapsed = time.monotonic() - start
        alive = server.alive()
        end_rss = server.rss() if alive else 0
        peak_rss = server.peak_rss() if alive else 0
        if alive and not ceiling_passed and peak_rss > ceiling:
            ceiling_passed = f"peak RSS {peak_rss / MiB:.0f} MiB at the end"
        channel.close()
    finally:
        log = server.log()
        server.close()
    print(f"\n{args.n} inputs in {elapsed:.0f}s (seed {args.seed}); statuses "
          f"{dict(sorted(outcome.codes.items()))}")
    print(f"server alive: {alive}; RSS at start {start_rss / MiB:.0f} MiB, after warm-up "
          f"{(warm_rss or 0) / MiB:.0f} MiB, at the end {end_rss / MiB:.0f} MiB, peak "
          f"{peak_rss / MiB:.0f} MiB (ceiling {ceiling / MiB:.0f} MiB: "
          f"{'PASSED, ' + ceiling_passed if ceiling_passed else 'held'})")
    causes = sorted(set(re.findall(r"^(\w+(?:Error|Exception|Warning)\b.*)$", log, re.M)))
    if causes:
        print("internal errors in the server log:")
        for line in causes[:30]:
            print("  ", line)
    for failure in outcome.failures[:10]:
        print("\nFAILED:", failure[:2000])
    print(f"\n{len(outcome.failures)} failures")
    return 0 if alive and not outcome.failures and not ceiling_passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
