"""BatchRequest.after_request_id (feature "batch_after"): a batch runs only after the batch it
names has run and succeeded, on the wire and in the pipelined client's two batches in flight."""

import inspect

import grpc
import pytest

from gradserve.client.errors import _rich
from gradserve.v1 import BATCH_AFTER_FEATURE, catalogue_pb2, service_pb2_grpc
from tests.conftest import gradserve_connect, gradserve_error, gradserve_open_session


def h(n):
    return ("h", n)


def refused(s, *instructions, **kw):
    """(code, message, reason) of a batch the server refuses."""
    with pytest.raises(grpc.RpcError) as err:
        s.run(*instructions, **kw)
    code, message, _ = gradserve_error(err)
    return code, message, _rich(err.value)["reason"]


def test_the_server_lists_the_feature(gradserve_stub):
    features = gradserve_stub.ListOps(catalogue_pb2.ListOpsRequest(), timeout=10).features
    assert BATCH_AFTER_FEATURE in features


def test_a_batch_runs_after_the_last_batch_it_names(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, [1.0, 2.0]), request_id="a")
    s.run(s.op("mul", [h(1), 3.0], [2]), request_id="b", after="a")
    assert s.value_of(2).tolist() == [3.0, 6.0]
    # an earlier batch still remembered will do too (it ran: the order holds)
    s.run(s.op("mul", [h(1), 4.0], [3]), request_id="c", after="a")
    # and a batch without a request id of its own may name one
    s.run(s.op("mul", [h(1), 5.0], [4]), after="c")


def test_a_batch_after_a_failed_one_is_refused_and_runs_nothing(gradserve_session):
    s = gradserve_session
    with pytest.raises(grpc.RpcError):
        s.run(s.create(1, [1.0]), s.op("nope", [h(1)], [2]), request_id="a")
    code, message, reason = refused(s, s.create(3, 1.0), request_id="b", after="a")
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PREDECESSOR_FAILED")
    assert "request_id 'a'" in message and "failed" in message
    s.run(s.create(3, 2.0))  # handle 3 is free: nothing of "b" ran
    # a remembered failure that is not the last batch is found as well
    s.run(s.create(4, 1.0), request_id="c")
    code, _, reason = refused(s, s.create(5, 1.0), request_id="d", after="a")
    assert reason == "PREDECESSOR_FAILED"
    # the refusal was not remembered: "d" runs when sent again without after_request_id
    resp = s.run(s.create(5, 1.0), request_id="d")
    assert not resp.replayed


def test_the_last_batch_counts_without_the_dedup_window(gradserve_server_factory):
    # with no request ids remembered, the session's last batch is what is known
    _, port = gradserve_server_factory(dedup_window=0)
    s = gradserve_open_session(
        service_pb2_grpc.AutogradServiceStub(gradserve_connect(port)))
    s.run(s.create(1, 1.0), request_id="a")
    s.run(s.create(2, 1.0), request_id="b", after="a")
    with pytest.raises(grpc.RpcError):
        s.run(s.create(2, 1.0), request_id="c", after="b")  # handle 2 is in use: "c" fails
    assert refused(s, s.create(3, 1.0), request_id="d", after="c")[2] == "PREDECESSOR_FAILED"
    assert refused(s, s.create(3, 1.0), after="b")[2] == "PREDECESSOR_PENDING"  # not the last


def test_a_batch_after_one_not_run_is_refused_until_sent_again(gradserve_session):
    s = gradserve_session
    code, message, reason = refused(s, s.create(1, 1.0), request_id="b", after="a")
    assert (code, reason) == (grpc.StatusCode.ABORTED, "PREDECESSOR_PENDING")
    assert "has not run" in message
    s.run(s.create(2, 1.0), request_id="a")  # the predecessor arrives
    resp = s.run(s.create(1, 1.0), request_id="b", after="a")  # sent again: it runs
    assert not resp.replayed
    # a retry of a batch that ran is replayed, whatever came after its predecessor
    with pytest.raises(grpc.RpcError):
        s.run(s.op("nope", [h(1)], [3]), request_id="x")
    again = s.run(s.create(1, 1.0), request_id="b", after="a")
    assert again.replayed


@pytest.mark.parametrize("after, rid, text", [
    ("x" * 129, "b", "after_request_id has 129 characters"),
    ("b", "b", "names the batch itself"),
])
def test_a_malformed_after_request_id_is_invalid(gradserve_session, after, rid, text):
    s = gradserve_session
    code, message, reason = refused(s, s.create(1, 1.0), request_id=rid, after=after)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert text in message


# --- the pipelined client: two batches in flight ---------------------------------------------


@pytest.fixture(scope="module")
def client(gradserve_server):
    import gradserve.client as gc

    with gc.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


def held_replies(rec):
    """Make the recorder's started calls report no reply until it waits for one (so that a
    batch is sent with the one before it still in flight, however fast the server is)."""
    start, started = rec._start, []

    class Held:
        def __init__(self, request):
            self.call = start(request)

        def done(self):
            return False

        def result(self):
            return self.call.result()

    def held(request):
        started.append(request)
        return Held(request)
    rec._start = held
    return started


def test_a_failure_refuses_the_batch_in_flight_after_it(client):
    with client.session(pipelined=3, verify_meta=False) as session:
        a = session.tensor([1.0, 2.0])
        session.flush()
        started = held_replies(session._recorder)
        b = a * 2.0
        line = inspect.currentframe().f_lineno + 1
        c = b.view(3)  # fails on the server: the batch is started
        d = a * 3.0
        e = d + 1.0  # the next batch is started after it, its predecessor still in flight
        f = e * 2.0  # recorded, not sent
        assert len(started) == 2 and started[1].after_request_id == started[0].request_id
        with pytest.raises(RuntimeError, match="invalid for input of size 2") as exc_info:
            e.tolist()
        assert exc_info.value.gradserve_origin.endswith(f"test_batch_after.py:{line}")
        for t in (c, d, f):  # made at or after the failing line: they carry its error
            with pytest.raises(RuntimeError, match="invalid for input of size 2"):
                t.tolist()
        assert b.tolist() == [2.0, 4.0]  # made before it: applied
        assert (a * 2).tolist() == [2.0, 4.0]  # the session goes on
        described = session.describe()
        assert described.tensor_count <= 3  # nothing of the refused batch is bound


def test_a_batch_that_overtook_its_predecessor_is_sent_again(client):
    # the server refuses a batch whose predecessor has not run (PREDECESSOR_PENDING); once that
    # one's reply is applied the client sends it again, in order, and the program sees nothing
    with client.session(pipelined=3, verify_meta=False) as session:
        rec = session._recorder
        started = held_replies(rec)
        held_start = rec._start
        send, sent = rec._send, []

        def overtaking(request):
            if started:  # the second batch: as if it reached the server first
                request.after_request_id = "not-run-yet"
            return held_start(request)

        def counted(request):
            sent.append(request)
            return send(request)
        rec._start, rec._send = overtaking, counted
        a = session.tensor([1.0, 2.0])
        b = a * 2.0  # started
        c = b + 1.0
        d = c * 3.0  # started after it, refused by the server
        assert len(started) == 2
        assert d.tolist() == [9.0, 15.0]
        assert len(sent) == 2  # the refused batch, sent again (then the read's fetch)
        assert not sent[0].after_request_id
        assert sent[0].request_id == started[1].request_id
