"""`--max-call-seconds`: no call executes longer than the server allows, whatever its deadline
(one without a deadline included): an attacker's session batch without a deadline (a batch norm
of an expanded (2**20, 2): ~13 s of CPU from a 128-byte request, ~400 s at (2**25, 2)) ends
with DEADLINE_EXCEEDED at the cap, and the server keeps serving."""

from __future__ import annotations

import time

import grpc
import pytest

from gradserve.server import config
from gradserve.server.errors import DeadlineError
from gradserve.server.service import Call
from gradserve.v1 import service_pb2_grpc
from tests.conftest import gradserve_open_session
from tests.server_process import ServerProcess
from tests.test_hardening_round4 import _settled_cpu, batch_norm_of_many_rows
from tests.test_hardening_streams import serves


class _Context:
    """The part of a servicer context `Call` reads: a deadline `remaining` seconds away."""

    def __init__(self, remaining: float | None):
        self._end = None if remaining is None else time.monotonic() + remaining

    def time_remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())

    def add_callback(self, callback) -> bool:
        return True


def _expired(remaining: float | None, longest: float) -> str | None:
    """The message of `Call.check` 0.05 s after the call began, None if it may go on."""
    call = Call(_Context(remaining), "someone", None, 0.015, longest)
    time.sleep(0.05)
    try:
        call.check()
    except DeadlineError as exc:
        return str(exc)
    return None


def test_a_call_without_a_deadline_ends_at_the_cap():
    assert "--max-call-seconds" in _expired(None, 0.01)
    assert _expired(None, 0.0) is None  # 0: no cap
    assert _expired(None, 60.0) is None


def test_the_callers_earlier_deadline_keeps_its_own_message():
    assert _expired(0.01, 60.0) == "deadline exceeded while executing the request"
    assert "--max-call-seconds" in _expired(60.0, 0.01)


def test_the_cap_is_validated_and_on_by_default():
    assert config.ServerConfig().max_call_seconds > 0
    assert config.from_argv(["--max-call-seconds", "0"]).max_call_seconds == 0
    with pytest.raises(ValueError, match="max_call_seconds"):
        config.validate(config.ServerConfig(max_call_seconds=-1))


def test_a_session_batch_without_a_deadline_ends_at_the_servers_cap():
    with ServerProcess(["--workers", "4", "--max-call-seconds", "1"]) as server, \
            server.channel() as channel:
        s = gradserve_open_session(service_pb2_grpc.AutogradServiceStub(channel))
        cpu = server.cpu_seconds()
        with pytest.raises(grpc.RpcError) as info:
            s.run(*batch_norm_of_many_rows())  # no deadline
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "--max-call-seconds" in info.value.details()
        assert _settled_cpu(server) - cpu < 4
        serves(server)
