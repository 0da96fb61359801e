"""Scale-out: two `gradserve serve` processes behind nginx on loopback, routed by `x-session-id`
with the shipped deploy/nginx.conf (only its listen address and replica list are swapped).

Which replica served a call is read from the replicas themselves: their Prometheus request
counters (`--metrics-port`) before and after the call, and DescribeSession sent to each replica
directly. Skipped, saying why, when nginx is not installed (.ci/run installs it in CI).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import gradserve.client as gc
from gradserve.v1 import service_pb2_grpc, session_pb2
from tests.server_process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)

pytestmark = pytest.mark.timeout(240)

needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run installs it "
                          "in CI): the scale-out test needs it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_nginx_conf(listen_port: int, replica_ports: list[int], run_dir: Path) -> str:
    """deploy/nginx.conf on loopback: our listen port and replicas, files in `run_dir`."""
    text = NGINX_CONF.read_text()
    begin, end = "        # replicas: begin\n", "        # replicas: end\n"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    servers = "".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;\n"
                      for p in replica_ports)
    text = head + begin + servers + end + tail
    replacements = {
        "listen 50051 http2;": f"listen 127.0.0.1:{listen_port} http2;",
        "access_log /dev/stdout grpc;": f"access_log {run_dir}/access.log grpc;",
        "worker_processes auto;": "worker_processes 1;",
        # the compiled-in temp paths (/var/lib/nginx) are not ours to write
        "http {\n": "http {\n" + "".join(f"    {kind}_temp_path {run_dir}/{kind};\n" for kind in
                                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new, 1)
    prelude = f"daemon off;\npid {run_dir}/nginx.pid;\nerror_log {run_dir}/error.log info;\n"
    if os.geteuid() == 0:  # nginx refuses to run its workers as root without being told
        prelude += "user www-data;\n" if _user_exists("www-data") else "user nobody nogroup;\n"
    return prelude + text


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class Nginx:
    """nginx in the foreground from a private folder (`nginx -p DIR -c nginx.conf`)."""

    def __init__(self, replica_ports: list[int]):
        # nginx's workers (www-data when we are root) must reach the folder: 0711, not 0700
        self.dir = Path(tempfile.mkdtemp(prefix="gradserve-nginx-"))
        self.dir.chmod(0o711)
        self.port = free_port()
        (self.dir / "nginx.conf").write_text(render_nginx_conf(self.port, replica_ports,
                                                               self.dir))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        assert NGINX is not None
        cmd = [NGINX, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
               "-c", str(self.dir / "nginx.conf")]
        check = subprocess.run([*cmd, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        # its own process group: workers are stopped with the master even if it must be killed
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, f"nginx exited:\n{self.error_log()}"
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return self
            assert time.monotonic() < deadline, f"nginx did not listen:\n{self.error_log()}"
            time.sleep(0.05)

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> list[str]:
        path = self.dir / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown: the master stops its workers
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)


class Replica:
    """A gradserve server process with its metrics endpoint."""

    def __init__(self) -> None:
        self.metrics_port = free_port()
        self.proc = ServerProcess(["--workers", "4", "--metrics-port", str(self.metrics_port)])

    @property
    def port(self) -> int:
        return self.proc.port

    def requests(self) -> dict[tuple[str, str], float]:
        """{(method, code): count} from the replica's own metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        counts: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "gradserve_requests":
                for sample in family.samples:
                    if sample.name == "gradserve_requests_total":
                        counts[sample.labels["method"], sample.labels["code"]] = sample.value
        return counts

    def holds(self, session_id: str) -> bool:
        """Whether this replica holds the session (DescribeSession sent to it directly)."""
        with grpc.insecure_channel(self.proc.target) as channel:
            stub = service_pb2_grpc.AutogradServiceStub(channel)
            try:
                stub.DescribeSession(session_pb2.DescribeSessionRequest(session_id=session_id),
                                     metadata=(("x-session-id", session_id),), timeout=10)
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.NOT_FOUND, err
                return False
        return True


class Cluster:
    def __init__(self, replicas: list[Replica], nginx: Nginx):
        self.replicas = replicas
        self.nginx = nginx

    def counts(self) -> list[dict[tuple[str, str], float]]:
        return [r.requests() for r in self.replicas if r.proc.alive()]

    def served(self, before: list[dict[tuple[str, str], float]], method: str,
               code: str = "OK") -> list[float]:
        """Per replica: how many `method` calls ended with `code` since `before`."""
        after = self.counts()
        return [a.get((method, code), 0) - b.get((method, code), 0)
                for a, b in zip(after, before, strict=True)]

    def holder(self, session_id: str) -> int:
        """Index of the one replica holding the session (asserts there is exactly one)."""
        holders = [i for i, r in enumerate(self.replicas) if r.proc.alive() and r.holds(session_id)]
        assert len(holders) == 1, (session_id, holders)
        return holders[0]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    replicas: list[Replica] = []
    nginx: Nginx | None = None
    try:
        for _ in range(2):
            replica = Replica()
            replicas.append(replica)
            replica.proc.start()
        nginx = Nginx([r.port for r in replicas]).start()
        yield Cluster(replicas, nginx)
    finally:
        if nginx is not None:
            nginx.stop()
        for replica in replicas:
            replica.proc.close()


def square_grad(torch: gc.Session, value: float) -> float:
    x = torch.tensor(value, requires_grad=True)
    (x ** 2).backward()
    return float(x.grad.item())


@needs_nginx
def test_each_session_stays_on_one_replica(cluster):
    with gc.connect(cluster.nginx.target, timeout=30) as client:
        sessions = [client.session() for _ in range(12)]
        placed = [0, 0]
        for torch in sessions:
            before = cluster.counts()
            for step in range(10):
                assert square_grad(torch, float(step)) == 2.0 * step
            home = cluster.holder(torch.id)
            placed[home] += 1
            # every batch of this session was executed by its holder, none by the other
            served = cluster.served(before, "ExecuteBatch")
            assert served[home] >= 10 and served[1 - home] == 0, served
        # the ids hash onto both replicas (12 sessions on one: probability 2**-11)
        assert placed[0] > 0 and placed[1] > 0, placed
        for torch in sessions:
            torch.close()
        assert sum(r.holds(t.id) for r in cluster.replicas for t in sessions) == 0
    # nginx saw each session's calls go to one upstream
    upstreams: dict[str, set[str]] = {}
    for line in cluster.nginx.access_log():
        sid = line.split('session="', 1)[1].split('"', 1)[0]
        if sid and sid != "-":
            upstreams.setdefault(sid, set()).add(line.split("upstream=", 1)[1].split()[0])
    assert len(upstreams) == 12 and all(len(u) == 1 for u in upstreams.values()), upstreams


@needs_nginx
def test_stateless_calls_spread_over_both_replicas(cluster):
    with gc.connect(cluster.nginx.target, timeout=30) as client:
        client.list_ops()
        grad = client.grad(lambda x: (x ** 2).sum())
        before = cluster.counts()
        for i in range(40):
            np.testing.assert_allclose(grad(np.array([i, 1.0], np.float32)), [2.0 * i, 2.0])
        served = cluster.served(before, "RunGraph")
    assert sum(served) == 40 and min(served) >= 10, served  # round-robin: about 20 each


@needs_nginx
def test_killed_replica_only_its_sessions_are_gone(cluster):
    with gc.connect(cluster.nginx.target, timeout=30, retries=0) as client:
        sessions = []
        for _ in range(12):
            torch = client.session()
            w = torch.tensor([1.0, 2.0], requires_grad=True)
            (w * w).sum().backward()
            np.testing.assert_allclose(w.grad.numpy(), [2.0, 4.0])
            sessions.append((torch, w, cluster.holder(torch.id)))
        homes = [home for _, _, home in sessions]
        assert 0 in homes and 1 in homes, homes
        dead, alive = 0, 1
        cluster.replicas[dead].proc.kill()
        before = cluster.counts()  # the survivor's counters

        for torch, w, home in sessions:
            if home == alive:  # untouched: the gradient keeps accumulating
                (w * w).sum().backward()
                np.testing.assert_allclose(w.grad.numpy(), [4.0, 8.0])
            else:  # re-routed to the survivor, which never held it
                with pytest.raises(gc.NotFoundError) as info:
                    (w * w).sum().backward()
                message = str(info.value)
                assert torch.id in message and "not found" in message and "gone" in message
        (survivor_not_found,) = cluster.served(before, "ExecuteBatch", "NOT_FOUND")
        assert survivor_not_found == homes.count(dead)

        # new sessions and stateless calls keep working, all on the survivor
        with client.session() as torch:
            assert square_grad(torch, 3.0) == 6.0
            assert cluster.holder(torch.id) == alive
        assert client.grad(lambda x: x * x)(np.float32(4.0)) == 8.0


# --- the proposed session id that makes routing possible -------------------------------------

def test_create_session_uses_the_proposed_id(gradserve_stub):
    sid = "proposed-" + "a1" * 12
    meta = (("x-session-id", sid),)
    resp = gradserve_stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=meta,
                                        timeout=10)
    assert resp.session_id == sid == resp.info.session_id
    try:
        with pytest.raises(grpc.RpcError) as err:  # an id in use is refused
            gradserve_stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=meta,
                                         timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is in use" in err.value.details()
    finally:
        gradserve_stub.CloseSession(session_pb2.CloseSessionRequest(session_id=sid),
                                    metadata=meta, timeout=10)


@pytest.mark.parametrize("bad", ["short", "x" * 129, "has space in it 123",
                                 "bad/slash/0123456789abcdef"])
def test_create_session_refuses_a_malformed_proposed_id(gradserve_stub, bad):
    with pytest.raises(grpc.RpcError) as err:
        gradserve_stub.CreateSession(session_pb2.CreateSessionRequest(),
                                     metadata=(("x-session-id", bad),), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "16-128 characters" in err.value.details()


def test_client_proposes_the_session_id(gradserve_server):
    with gc.connect(f"127.0.0.1:{gradserve_server[1]}") as client:
        seen = []

        class Spy(grpc.UnaryUnaryClientInterceptor):
            def intercept_unary_unary(self, continuation, details, request):
                seen.append((details.method, dict(details.metadata or ())))
                return continuation(details, request)

        spied = gc.connect(client.target, interceptors=[Spy()])
        with spied, spied.session() as torch:
            method, meta = next(s for s in seen if s[0].endswith("/CreateSession"))
            assert meta["x-session-id"] == torch.id
