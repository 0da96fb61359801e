"""A gradserve server in a subprocess, for tests that measure its memory or kill it.

Used by the hardening, fuzzing, fault and soak tests (and `bench/soak.py`, `bench/fuzz.py`):
its RSS and peak RSS come from /proc/<pid>/status, and it can be killed with SIGKILL and
restarted on the same port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import grpc

from gradserve.v1 import MAX_MESSAGE_BYTES

MiB = 1024 * 1024


class ServerProcess:
    """`gradserve serve` on loopback in a child process.

    Args:
        args: extra `gradserve serve` flags (limits, TLS, ...).
        port: 0 picks a free port; a restart reuses the port it got.
    """

    def __init__(self, args: Sequence[str] = (), port: int = 0, env: dict[str, str] | None = None):
        self.args = list(args)
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self._log: Any = None

    def start(self) -> ServerProcess:
        self._release_files()  # a restart: the previous process's pipe and log
        # stderr goes to a file: a pipe nobody reads could fill and block the server.
        self._log = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, "-m", "gradserve.server.cli", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     env=self.env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("gradserve serving on port"):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log()}")
        self.port = int(line.split()[-1])
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self, key: str) -> int:
        """A /proc/<pid>/status field in bytes (VmRSS, VmHWM...)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return self.status("VmRSS")

    def peak_rss(self) -> int:
        """Highest resident memory since start (VmHWM), in bytes."""
        return self.status("VmHWM")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used (Linux /proc)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()

    def channel(self, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *options]
        channel = grpc.insecure_channel(self.target, options=opts)
        grpc.channel_ready_future(channel).result(timeout=20)
        return channel

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup (a crash)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        self._release_files()

    def _release_files(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
