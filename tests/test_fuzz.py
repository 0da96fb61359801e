"""Fuzzing every rpc with hypothesis: random bytes, mutated valid requests, random graphs and
random instruction batches built from the op catalogue.

The oracle (tests/fuzz_inputs.py `check_status`): a caller's mistake is never answered UNKNOWN
or INTERNAL, no call hangs past its deadline, and at the end the server (a subprocess) is still
SERVING, its own metrics count no INTERNAL/UNKNOWN answer, its sessions are all gone and its
resident memory has stayed bounded. Runs are derandomized (reproducible in CI); the total is
printed (`-s`) and asserted to be at least 10,000 inputs. A longer mode: `bench/fuzz.py`.
"""

from __future__ import annotations

import random
import re
import socket
import time
import urllib.request

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradserve.v1 import catalogue_pb2, session_pb2
from tests import fuzz_inputs as fz
from tests.server_process import MiB, ServerProcess

# Examples per test; their sum is the CI run's input count (asserted at the end).
EXAMPLES = {"bytes": 2800, "mutated": 2800, "graphs": 2600, "batches": 2000, "hostile": 150}
TOTAL = sum(EXAMPLES.values())
FUZZ = dict(derandomize=True, database=None, deadline=None, print_blob=True,
            suppress_health_check=list(HealthCheck))
OUTCOME = fz.Outcome()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    metrics = _free_port()
    args = ["--workers", "4", "--session-ttl", "2", "--max-session-ttl", "3",
            "--reap-interval", "0.5", "--max-session-bytes", str(64 * MiB),
            "--max-tensor-elements", str(4 * MiB),
            "--metrics-port", str(metrics), "--log-level", "ERROR"]
    with ServerProcess(args) as proc:
        proc.metrics_port = metrics
        yield proc


@pytest.fixture(scope="module")
def catalogue(stub):
    resp = stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10)
    return list(resp.ops), list(resp.inplace_ops)


@pytest.fixture(scope="module")
def baseline(server, stub, catalogue):
    # warm up (imports, caches, thread pool) before taking the memory baseline
    s = stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=10)
    stub.CloseSession(session_pb2.CloseSessionRequest(session_id=s.session_id),
                      metadata=(("x-session-id", s.session_id),), timeout=10)
    return server.rss()


def _metadata_for(payload: bytes, cls) -> tuple[tuple[str, str], ...]:
    """The x-session-id a request's bytes name (so mutated batches get executed)."""
    try:
        sid = cls.FromString(payload).session_id if cls is not None else ""
    except Exception:  # noqa: BLE001 - unparsable: any id will do
        sid = ""
    if not sid or not re.fullmatch(r"[ -~]{1,200}", sid):
        sid = "none"
    return (("x-session-id", sid),)


@settings(max_examples=EXAMPLES["bytes"], **FUZZ)
@given(method=st.sampled_from(sorted(fz.METHODS)), payload=st.binary(max_size=200))
def test_random_bytes_to_every_rpc(channel, baseline, method, payload):
    call = fz.raw_call(channel, method)
    fz.check_status(lambda t: call(payload, timeout=t,
                                 metadata=_metadata_for(payload, fz.METHODS[method])),
                    f"{method} {payload!r}", OUTCOME)


@pytest.fixture(scope="module")
def corpus(stub, catalogue):
    s = stub.CreateSession(session_pb2.CreateSessionRequest(
        options=session_pb2.SessionOptions(idle_ttl_seconds=3)), timeout=10)
    return fz.valid_corpus(catalogue[0], s.session_id)


@settings(max_examples=EXAMPLES["mutated"], **FUZZ)
@given(data=st.data())
def test_mutated_requests_to_every_rpc(channel, baseline, corpus, data):
    c = fz.Chooser(draw=data.draw)
    method, valid = c.pick(corpus)
    payload = fz.mutate(c, valid)
    call = fz.raw_call(channel, method)
    fz.check_status(lambda t: call(payload, timeout=t,
                                 metadata=_metadata_for(payload, fz.METHODS[method])),
                    f"{method} {payload!r}", OUTCOME)


@settings(max_examples=EXAMPLES["graphs"], **FUZZ)
@given(data=st.data())
def test_random_graphs(stub, baseline, catalogue, data):
    req = fz.graph_request(fz.Chooser(draw=data.draw), catalogue[0])
    fz.check_status(lambda t: stub.RunGraph(req, timeout=t), str(req), OUTCOME)


def test_random_instruction_batches(stub, baseline, catalogue):
    # Seeded, not drawn by hypothesis: its replays of these examples (a session's two batches
    # against the live server) reported FlakyStrategyDefinition ("the second run stopped drawing
    # earlier") under load, with every generator input a draw; a failure names its seed.
    for seed in range(EXAMPLES["batches"]):
        try:
            _instruction_batches(stub, catalogue, fz.Chooser(rng=random.Random(seed)))
        except Exception as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc


def _instruction_batches(stub, catalogue, c):
    created = stub.CreateSession(session_pb2.CreateSessionRequest(),
                                 timeout=10 * fz.slowdown())
    sid = created.session_id
    meta = (("x-session-id", sid),)
    try:
        # two batches in one session: the second sees what the first left behind
        for _ in range(2):
            req = session_pb2.BatchRequest(session_id=sid)
            fz.batch_instructions(c, catalogue[0], catalogue[1], req.instructions)
            fz.check_status(lambda t, req=req: stub.ExecuteBatch(req, metadata=meta, timeout=t),
                            str(req), OUTCOME)
        fz.check_status(lambda t: stub.DescribeSession(
            session_pb2.DescribeSessionRequest(session_id=sid), metadata=meta, timeout=t),
            "describe", OUTCOME)
    finally:
        stub.CloseSession(session_pb2.CloseSessionRequest(session_id=sid), metadata=meta,
                          timeout=10 * fz.slowdown())


@settings(max_examples=EXAMPLES["hostile"], **FUZZ)
@given(data=st.data())
def test_hostile_requests(stub, baseline, data):
    """Small requests for huge or numerous results, long higher-order chains, repeated
    create_graph backwards: each refused (or run) within fz.HOSTILE_DEADLINE seconds."""
    fz.hostile_call(fz.Chooser(draw=data.draw), stub, OUTCOME)


def _metric_lines(server) -> list[str]:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode().splitlines()


def test_server_healthy_after_fuzzing(server, channel, baseline):
    assert server.alive(), server.log()[-3000:]
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING
    lines = _metric_lines(server)
    bad = [line for line in lines if line.startswith("gradserve_requests_total")
           and ('code="INTERNAL"' in line or 'code="UNKNOWN"' in line)]
    assert not bad, bad
    assert not OUTCOME.failures, "\n\n".join(OUTCOME.failures[:20])
    # every session the fuzzers opened is closed or reaped (TTL 2-3 s, reaper every 0.5 s)
    deadline = time.monotonic() + 15
    while True:
        live = [float(line.split()[-1]) for line in _metric_lines(server)
                if line.startswith("gradserve_live_sessions")]
        if live == [0.0] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert live == [0.0], live
    rss = server.rss()
    print(f"\nfuzz: {OUTCOME.calls} calls for {TOTAL} generated inputs; statuses "
          f"{dict(sorted(OUTCOME.codes.items()))}; server RSS {baseline / MiB:.0f} MiB after "
          f"warm-up, {rss / MiB:.0f} MiB at the end, peak {server.peak_rss() / MiB:.0f} MiB")
    assert rss < baseline + 150 * MiB
    # the hostile requests' bound (docs/reliability.md): peak within 200 MiB of the baseline
    assert server.peak_rss() < baseline + 200 * MiB
    if OUTCOME.calls:  # the whole file ran (not a -k selection)
        assert TOTAL >= 10_000
