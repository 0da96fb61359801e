"""The container image: build the Dockerfile with podman, run it, check its health, make real
gradient calls from the host through the client, and remove what was made.

No registry is reachable on the machines this runs on, so the base is a Debian image made locally
with debootstrap (`localhost/debian:bookworm`, kept in podman's storage and reused by later runs);
set GRADSERVE_TEST_BASE_IMAGE to build on another base instead (e.g. python:3.12-slim where a
registry is reachable). podman settings come from deploy/containers.conf (see
../shared/notes/containers.md). Skipped, saying why, without podman or root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import gradserve.client as gc

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_BASE = "localhost/debian:bookworm"
BASE_IMAGE = os.environ.get("GRADSERVE_TEST_BASE_IMAGE", DEBIAN_BASE)
MAX_IMAGE_BYTES = 400 * 1024 * 1024


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)


PODMAN = _tool("podman")
DEBOOTSTRAP = _tool("debootstrap")
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "containers.conf")}


def _skip_reason() -> str | None:
    if PODMAN is None:
        return ("podman is not installed (apt-get install podman buildah runc debootstrap; "
                ".ci/run installs them in CI): the container test needs it")
    if os.geteuid() != 0:
        return "the container test runs rootful podman (these machines need it): run as root"
    return None


pytestmark = [pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
              pytest.mark.timeout(1200)]


def podman(*args: str, timeout: float = 120, check: bool = True,
           input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    assert PODMAN is not None
    proc = subprocess.run([PODMAN, *args], env=ENV, capture_output=True, timeout=timeout,
                          input=input.decode() if input is not None else None, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _debian_mirror() -> str:
    """The host's apt mirror for bookworm (a TLS-inspected network may block others)."""
    out = subprocess.run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)",
                          "Identifier: Packages"], capture_output=True, text=True, timeout=60)
    for line in out.stdout.splitlines():
        uri, _, release = line.partition(" ")
        if release == "bookworm":
            return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def ensure_debian_base() -> str:
    """`localhost/debian:bookworm`, made with debootstrap unless podman already has it."""
    if podman("image", "exists", DEBIAN_BASE, check=False).returncode == 0:
        return "cached"
    if DEBOOTSTRAP is None:
        pytest.skip(f"no {DEBIAN_BASE} image and no debootstrap to make one (apt-get install "
                    "debootstrap, or set GRADSERVE_TEST_BASE_IMAGE)")
    with tempfile.TemporaryDirectory(prefix="gradserve-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run = subprocess.run([DEBOOTSTRAP, "--variant=minbase", "bookworm", str(rootfs),
                              _debian_mirror()], capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"debootstrap failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            assert PODMAN is not None
            imp = subprocess.run([PODMAN, "import", "-", DEBIAN_BASE], stdin=tar.stdout,
                                 env=ENV, capture_output=True, text=True, timeout=300)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(timeout=60)
        assert imp.returncode == 0, imp.stderr
    return "made with debootstrap"


def build_args() -> list[str]:
    """podman build flags: host network, and the host's CA bundle for pip (not kept)."""
    args = ["--network=host", "--format", "docker", "--layers=false", "--force-rm",
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    cert = next((c for c in (os.environ.get("SSL_CERT_FILE"), os.environ.get("PIP_CERT"),
                             "/etc/ssl/certs/ca-certificates.crt") if c and Path(c).is_file()),
                None)
    if cert is not None:
        args += ["-v", f"{cert}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(target: str, container: str, timeout: float = 60) -> float:
    """Seconds until the server in `container` answers SERVING (fails if it exits first)."""
    start = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - start
            except grpc.RpcError:
                pass
            state = podman("inspect", "--format", "{{.State.Status}}", container).stdout.strip()
            assert state == "running", f"container {state}:\n{logs(container)}"
            assert time.monotonic() - start < timeout, f"not SERVING in {timeout}s:\n" \
                                                       f"{logs(container)}"
            time.sleep(0.1)


def logs(container: str) -> str:
    out = podman("logs", container, check=False, timeout=30)
    return (out.stdout + out.stderr)[-4000:]


class Made:
    """What the test made in podman's storage, removed in teardown (even on failure)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.image = f"localhost/gradserve-test:{tag}"
        self.container = f"gradserve-test-{tag}"

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.container, check=False, timeout=120)
        podman("rmi", "--force", self.image, check=False, timeout=120)


@pytest.fixture
def made() -> Iterator[Made]:
    made = Made()
    try:
        yield made
    finally:
        made.remove()


def exec_in(container: str, command: Sequence[str]) -> str:
    return podman("exec", container, *command, timeout=60).stdout.strip()


def test_image_builds_runs_and_serves_gradients(made):
    timings: dict[str, float] = {}
    start = time.monotonic()
    base = ensure_debian_base() if BASE_IMAGE == DEBIAN_BASE else "given"
    timings["base"] = time.monotonic() - start

    start = time.monotonic()
    podman("build", *build_args(), "-t", made.image, "-f", str(ROOT / "Dockerfile"), str(ROOT),
           timeout=900)
    timings["build"] = time.monotonic() - start
    (info,) = json.loads(podman("image", "inspect", made.image).stdout)
    size = int(info["Size"])
    cfg = info["Config"]
    assert cfg["User"] == "gradserve" and cfg["Entrypoint"] == ["gradserve", "serve"], cfg
    assert "50051/tcp" in cfg["ExposedPorts"] and "GRADSERVE_HOST=0.0.0.0" in cfg["Env"], cfg
    assert "gradserve health" in " ".join(info["Healthcheck"]["Test"]), info.get("Healthcheck")

    port = free_port()
    start = time.monotonic()
    # host networking (these machines have no container network); loopback only for the test
    podman("run", "--detach", "--name", made.container, "--network=host",
           "-e", f"GRADSERVE_PORT={port}", "-e", "GRADSERVE_HOST=127.0.0.1", made.image,
           "--workers", "4", timeout=120)
    timings["run"] = time.monotonic() - start
    timings["serving"] = wait_serving(f"127.0.0.1:{port}", made.container)

    # the image's own HEALTHCHECK (`gradserve health`, inside the container, as its user)
    check = podman("healthcheck", "run", made.container, check=False, timeout=60)
    assert check.returncode == 0, (check.stdout, check.stderr, logs(made.container))
    assert exec_in(made.container, ["id", "-u"]) != "0"
    assert exec_in(made.container, ["python3", "-c",
                                    "import importlib.util as u; print([m for m in ('torch', "
                                    "'pytest', 'pip', 'grpc_tools') if u.find_spec(m)])"]) == "[]"
    assert exec_in(made.container, ["sh", "-c", "command -v gcc cc make || true"]) == ""

    # real gradient calls from the host, through the client
    with gc.connect(f"127.0.0.1:{port}", timeout=30) as client:
        with client.session() as torch:
            x = torch.tensor(3.0, requires_grad=True)
            y = torch.exp(torch.sin(x ** 2))
            y.backward()
            expected = np.exp(np.sin(9.0)) * np.cos(9.0) * 6.0
            np.testing.assert_allclose(x.grad.item(), expected, rtol=1e-5)
            assert repr(x.grad).startswith("tensor(")
        grad = client.grad(lambda v: (v * v).mean())
        np.testing.assert_allclose(grad(np.array([1.0, 2.0, 3.0], np.float32)),
                                   [2 / 3, 4 / 3, 2.0], rtol=1e-6)

    print(f"\ncontainer: base {BASE_IMAGE} ({base}, {timings['base']:.1f} s); build "
          f"{timings['build']:.1f} s; image {size / 1e6:.0f} MB; run {timings['run']:.2f} s; "
          f"SERVING after {timings['serving']:.2f} s")
    assert size < MAX_IMAGE_BYTES, f"image is {size / 1e6:.0f} MB"

    # SIGTERM drains and exits cleanly
    stop = podman("stop", "--time", "20", made.container, timeout=60)
    assert stop.returncode == 0
    code = podman("inspect", "--format", "{{.State.ExitCode}}", made.container).stdout.strip()
    assert code == "0", logs(made.container)
