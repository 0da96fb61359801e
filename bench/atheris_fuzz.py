#!/usr/bin/env python3
"""Coverage-guided fuzzing of gradserve with atheris (libFuzzer for Python).

    pip install atheris        # not a test dependency: a 35 MB wheel with its own libFuzzer
    python bench/atheris_fuzz.py -atheris_runs=100000 [libFuzzer flags...]

Starts a server in this process (its modules instrumented for coverage), then for each input
picks an rpc from the first byte and sends the rest as the request's bytes, or (when the second
byte is odd) builds a random graph or instruction batch from the op catalogue with the
generators of tests/fuzz_inputs.py, driven by the input. A status of UNKNOWN or INTERNAL, or a
call past its deadline, is a crash (libFuzzer saves the input as crash-<hash>). Deadlines and the
oracle are the same as tests/test_fuzz.py's.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import atheris
except ImportError:  # pragma: no cover - optional tool
    sys.exit("atheris is not installed: pip install atheris")

with atheris.instrument_imports(include=["gradserve"]):
    from gradserve.server.app import create_server
    from gradserve.server.config import ServerConfig

import numpy as np  # noqa: E402

from gradserve.v1 import catalogue_pb2, service_pb2_grpc, session_pb2  # noqa: E402
from tests import fuzz_inputs as fz  # noqa: E402

np.seterr(all="ignore")
SERVER, PORT = create_server(ServerConfig(host="127.0.0.1", port=0, workers=2, session_ttl=2,
                                          max_session_ttl=3, reap_interval=0.5,
                                          log_level="ERROR"))
SERVER.start()
CHANNEL = __import__("grpc").insecure_channel(f"127.0.0.1:{PORT}")
STUB = service_pb2_grpc.AutogradServiceStub(CHANNEL)
CATALOGUE = STUB.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10)
OPS, INPLACE = list(CATALOGUE.ops), list(CATALOGUE.inplace_ops)
METHODS = sorted(fz.METHODS)


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    if data[1] % 2 == 0:
        method = METHODS[data[0] % len(METHODS)]
        call = fz.raw_call(CHANNEL, method)
        fz.check_status(lambda t: call(data[2:], timeout=t,
                                     metadata=(("x-session-id", "none"),)), method)
        return
    c = fz.Chooser(rng=random.Random(data[2:]))
    if data[0] % 2 == 0:
        req = fz.graph_request(c, OPS)
        fz.check_status(lambda t: STUB.RunGraph(req, timeout=t), str(req))
        return
    sid = STUB.CreateSession(session_pb2.CreateSessionRequest(), timeout=10).session_id
    meta = (("x-session-id", sid),)
    breq = session_pb2.BatchRequest(session_id=sid)
    fz.batch_instructions(c, OPS, INPLACE, breq.instructions)
    try:
        fz.check_status(lambda t: STUB.ExecuteBatch(breq, metadata=meta, timeout=t),
                        str(breq))
    finally:
        STUB.CloseSession(session_pb2.CloseSessionRequest(session_id=sid), metadata=meta,
                          timeout=10)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
