"""Every expected failure of the `gradserve` command: one line on stderr naming the cause and the
setting, the documented exit status (server/cli.py EXIT_*, README), and no traceback.

Cases where grpc runs run the real command in a subprocess, so whatever grpc itself prints is
seen too; the argument and file checks run in process (faster; they happen before grpc loads).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from gradserve.server import cli
from tests.test_server_security import pki  # noqa: F401 - the fixture: a CA, server and client


def gradserve(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """(exit status, non-empty stderr lines) of `gradserve ARGS`."""
    done = subprocess.run([sys.executable, "-m", "gradserve.server.cli", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


@pytest.fixture
def inproc(capsys, monkeypatch):
    """`gradserve ARGS` run in this process: (exit status, non-empty stderr lines)."""
    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return run


def one_line(result: tuple[int, list[str]], status: int, *words: str) -> str:
    code, lines = result
    assert len(lines) == 1, lines
    assert code == status, (code, lines)
    for word in words:
        assert word in lines[0], lines
    return lines[0]


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once it is closed


def test_port_in_use(busy_port):
    line = one_line(gradserve("serve", "--host", "127.0.0.1", "--port", str(busy_port)),
                    cli.EXIT_CANNOT_LISTEN, "--port", "already in use")
    assert line == (f"gradserve serve: cannot listen on 127.0.0.1:{busy_port} (--host/--port, "
                    "GRADSERVE_HOST/GRADSERVE_PORT): already in use")


def test_metrics_port_in_use(busy_port):
    one_line(gradserve("serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port",
                       str(busy_port)), cli.EXIT_CANNOT_LISTEN, "--metrics-port", "in use")


def test_health_of_an_unreachable_target(closed_port):
    one_line(gradserve("health", "--target", f"127.0.0.1:{closed_port}", "--timeout", "2"),
             cli.EXIT_UNHEALTHY, "--target", "UNAVAILABLE")


def test_demo_of_an_unreachable_target(closed_port):
    one_line(gradserve("demo", "--target", f"127.0.0.1:{closed_port}"), cli.EXIT_UNREACHABLE,
             f"127.0.0.1:{closed_port} (--target)", "unavailable")


@pytest.mark.parametrize("args, env, words", [
    (["serve", "--port", "abc"], {}, ["--port", "invalid int value: 'abc'"]),
    (["serve", "--no-such-flag"], {}, ["unrecognized arguments: --no-such-flag"]),
    (["bogus"], {}, ["invalid choice: 'bogus'"]),
    (["serve"], {"GRADSERVE_WORKERS": "many"}, ["GRADSERVE_WORKERS='many' is not a valid int"]),
    (["serve", "--max-nodes", "0"], {}, ["max_nodes must be positive"]),
    (["serve", "--tls-cert", "x.pem"], {}, ["--tls-cert and --tls-key go together"]),
])
def test_bad_flag_or_environment_value(inproc, args, env, words):
    one_line(inproc(*args, env=env), cli.EXIT_USAGE, *words)


def test_unreadable_token_file(inproc, tmp_path):
    one_line(inproc("serve", "--auth-token-file", str(tmp_path / "missing")), cli.EXIT_USAGE,
             "--auth-token-file", "cannot read it: No such file or directory")
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    one_line(inproc("serve", "--auth-token-file", str(empty)), cli.EXIT_USAGE,
             "--auth-token-file", "holds no token")


def test_unreadable_or_invalid_certificate_files(inproc, tmp_path, pki):  # noqa: F811
    one_line(inproc("serve", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key",
                       str(pki / "server.key")), cli.EXIT_USAGE, "--tls-cert", "cannot read it")
    one_line(inproc("serve", "--tls-cert", str(pki / "server.pem"), "--tls-key",
                       str(tmp_path / "nope.key")), cli.EXIT_USAGE, "--tls-key", "cannot read it")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    one_line(inproc("serve", "--tls-cert", str(junk), "--tls-key", str(pki / "server.key")),
             cli.EXIT_USAGE, "--tls-cert", "not a PEM certificate")
    one_line(inproc("serve", "--tls-cert", str(pki / "server.pem"), "--tls-key",
                       str(pki / "server.key"), "--tls-client-ca", str(junk)),
             cli.EXIT_USAGE, "--tls-client-ca", "not a PEM CA")


def test_tls_mismatch(inproc, pki, gradserve_server):  # noqa: F811
    # a key that is not the certificate's
    one_line(inproc("serve", "--tls-cert", str(pki / "server.pem"), "--tls-key",
                       str(pki / "client.key")), cli.EXIT_USAGE,
             "--tls-key", "does not match --tls-cert")
    # TLS towards a plaintext server
    _, port = gradserve_server
    one_line(gradserve("health", "--target", f"127.0.0.1:{port}", "--tls-ca", str(pki / "ca.pem"),
                       "--timeout", "2"), cli.EXIT_UNHEALTHY, "UNAVAILABLE", "TLS")
    one_line(inproc("health", "--tls-cert", str(pki / "client.pem")), cli.EXIT_USAGE,
             "--tls-cert and --tls-key go together")
    one_line(inproc("health", "--tls-ca", str(pki / "missing.pem")), cli.EXIT_USAGE,
             "--tls-ca", "cannot read it")
