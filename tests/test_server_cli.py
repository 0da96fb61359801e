"""The `gradserve` command: configuration from flags and environment, health, ops, SIGTERM drain."""

import os
import platform
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from gradserve.server import cli, config
from gradserve.v1 import service_pb2_grpc, session_pb2
from tests.conftest import gradserve_connect, gradserve_open_session


def test_env_and_flags():
    assert config.from_argv([], environ={}).port == 50051
    assert config.from_argv([], environ={"GRADSERVE_PORT": "1234"}).port == 1234
    cfg = config.from_argv(["--port", "99", "--max-session-bytes", "5"],
                           environ={"GRADSERVE_PORT": "1234", "GRADSERVE_SESSION_TTL": "2.5"})
    assert (cfg.port, cfg.max_session_bytes, cfg.session_ttl) == (99, 5, 2.5)
    with pytest.raises(ValueError, match="GRADSERVE_WORKERS='many' is not a valid int"):
        config.from_argv([], environ={"GRADSERVE_WORKERS": "many"})
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        config.from_argv(["--tls-cert", "x.pem"], environ={})
    with pytest.raises(ValueError, match="max_nodes must be positive"):
        config.from_argv(["--max-nodes", "0"], environ={})


def test_every_limit_has_a_flag_and_an_env_var(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = capsys.readouterr().out
    for name in ("max-sessions", "max-session-bytes", "max-tensor-elements", "max-instructions",
                 "max-nodes", "max-message-bytes", "session-ttl", "auth-token-file", "tls-cert",
                 "tls-client-ca", "metrics-port", "workers"):
        assert f"--{name}" in text
        assert "GRADSERVE_" + name.upper().replace("-", "_") in text


def test_readme_documents_every_serve_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    flags = set(re.findall(r"(--[a-z][a-z-]+)", capsys.readouterr().out)) - {"--help"}
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = set(re.findall(r"^\| `(--[a-z-]+)` \| `(GRADSERVE_[A-Z_]+)` \|", readme, re.M))
    assert {flag for flag, _ in rows} == flags
    assert all(env == "GRADSERVE_" + flag[2:].upper().replace("-", "_") for flag, env in rows)


def test_bad_config_exits_2(capsys):
    assert cli.main(["serve", "--workers", "0"]) == 2
    assert "workers must be positive" in capsys.readouterr().err


def test_health_command(gradserve_server, capsys):
    _, port = gradserve_server
    assert cli.main(["health", "--target", f"localhost:{port}"]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    assert cli.main(["health", "--target", f"localhost:{port}", "--service",
                     "gradserve.v1.AutogradService"]) == 0


def test_health_command_fails_when_nobody_listens(gradserve_server_factory, capsys):
    server, port = gradserve_server_factory()
    server.stop(0)
    assert cli.main(["health", "--target", f"localhost:{port}", "--timeout", "2"]) == 1


def test_ops_command(capsys):
    assert cli.main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "mul(input, other)" in out and "MulBackward0" in out
    assert cli.main(["ops", "--json"]) == 0
    assert '"opsetVersion"' in capsys.readouterr().out


def test_ops_into_a_closed_pipe_exits_quietly():
    # `gradserve ops | head -1`: the reader leaves early; no traceback, exit 0
    proc = subprocess.Popen([sys.executable, "-m", "gradserve.server.cli", "ops"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"op-set version")
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b"", err.decode()


def test_reflection_lists_the_service(gradserve_server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = gradserve_connect(gradserve_server[1])
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=10)
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"gradserve.v1.AutogradService", "grpc.health.v1.Health"} <= names
    channel.close()


def test_sigterm_drains_in_flight_calls_then_exits_0(tmp_path):
    # The grace outlasts the batch on a loaded 2-core runner (at load 11 its ~15 s took > 30 s
    # once); a drain that works ends as soon as the call does, whatever the grace.
    env = {**os.environ, "GRADSERVE_GRACE_PERIOD": "150", "GRADSERVE_LOG_LEVEL": "DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradserve.server.cli", "serve", "--host", "127.0.0.1",
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("gradserve serving on port"), line + proc.stderr.read()
        port = int(line.split()[-1])
        channel = gradserve_connect(port)
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        s = gradserve_open_session(stub)
        # Seconds of work with a small reply: gRPC's C core closes a connection once its calls
        # are done, and a large reply still in transit then (30,000 described ops, ~1 MB) was
        # cut once in CI (UNAVAILABLE "Stream removed"); README, "Shutdown".
        n = 200
        big = np.ones((600, 600), np.float32)
        batch = [s.create(1, big)] + [s.op("matmul", [("h", 1), ("h", 1)], [2 + i])
                                      for i in range(n)]
        future = stub.ExecuteBatch.future(
            session_pb2.BatchRequest(session_id=s.id, instructions=batch),
            metadata=s.metadata, timeout=180)
        stderr_lines = []
        for err_line in proc.stderr:  # wait until the server is executing the batch
            stderr_lines.append(err_line)
            if f"batch of {n + 1} instruction(s)" in err_line:
                break
        proc.send_signal(signal.SIGTERM)
        response = future.result()  # the in-flight call completes
        assert len(response.results) == n + 1
        assert proc.wait(timeout=180) == 0
        with pytest.raises(grpc.RpcError) as err:  # and the server is gone
            s.describe()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        rest = proc.stderr.read()
        assert "draining" in "".join(stderr_lines) + rest
        channel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_serve_console_script_is_registered():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "gradserve"]
    assert ep.value == "gradserve.server.cli:main"




def test_malloc_top_pad_is_a_setting_and_zero_leaves_the_allocator_alone():
    from gradserve.server import heap

    assert config.from_argv(["--malloc-top-pad", "0"], environ={}).malloc_top_pad == 0
    assert config.from_argv([], environ={"GRADSERVE_MALLOC_TOP_PAD": "5"}).malloc_top_pad == 5
    assert config.ServerConfig().malloc_top_pad == 0  # off unless asked for
    assert heap.keep_top_pad(0) is False
    # glibc accepts it (elsewhere the call reports False and changes nothing); in a child
    # process, since it changes the allocator of the whole process
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):
        code = "from gradserve.server import heap; print(heap.keep_top_pad(16 << 20))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, check=True)
        assert out.stdout.strip() == "True"


def test_malloc_keep_fixes_the_thresholds_by_default_and_zero_leaves_them_dynamic():
    from gradserve.server import heap

    assert config.ServerConfig().malloc_keep == 8 << 20
    assert config.from_argv(["--malloc-keep", "0"], environ={}).malloc_keep == 0
    assert config.from_argv([], environ={"GRADSERVE_MALLOC_KEEP": "5"}).malloc_keep == 5
    assert heap.keep_freed(0) is False
    if platform.libc_ver()[0] == "glibc":
        # In a child (process-wide). A 1 MiB block, freed, must not send the next call's pages
        # back to the system: allocating and freeing 6 MiB twice faults only the first time.
        code = ("import resource, numpy as np\n"
                "from gradserve.server import heap\n"
                "assert heap.keep_freed(8 << 20)\n"
                "def call():\n"
                "    bufs = [np.ones(1 << 18, np.float32) for _ in range(6)]\n"
                "    del bufs\n"
                "call()\n"
                "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
                "call()\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) < 256, f"{out.stdout.strip()} page faults: the pages were returned"


def test_malloc_settings_are_validated_and_applied():
    from gradserve.server import heap
    from gradserve.server.config import from_argv

    for flag in ("--malloc-arenas", "--malloc-keep", "--malloc-top-pad", "--malloc-trim"):
        with pytest.raises(ValueError, match="must be 0"):
            from_argv([flag, "-1"])
    assert from_argv([]).malloc_arenas == 2
    assert from_argv([]).malloc_trim == 16 << 20
    assert from_argv([], environ={"GRADSERVE_MALLOC_TRIM": "0"}).malloc_trim == 0
    assert heap.limit_arenas(0) is False  # 0: the allocator's default, nothing to set
    if platform.libc_ver()[0] == "glibc":
        assert heap.limit_arenas(8) is True  # mallopt accepted it (8 is glibc's own per core)


# In a child process: a fragmented heap is made on purpose (every other 20 KB block freed, so
# glibc can return nothing from the top), then the trimmer must give the freed pages back.
_TRIM_CHILD = """
from gradserve.server import heap
off = heap.Trimmer(0)
assert not off.enabled and off() is False and off.sweep() is False
trim = heap.Trimmer(8 << 20)
assert trim.sweep() is False  # no call ended yet: nothing to do
blocks = [bytearray(20_000) for _ in range(10_000)]  # ~200 MB
del blocks[::2]
grown = heap.resident_bytes()
assert trim() is True, "resident memory grew far more than a step: the call must trim"
after = heap.resident_bytes()
assert trim.sweep() is False  # no call ended since the trim
assert trim() is False  # a call ended without growth: no trim now...
assert trim.sweep() is True and trim.sweep() is False  # ...but on the next sweep, once
print((grown - after) >> 20)
"""


def test_the_trimmer_returns_freed_heap_pages():
    from gradserve.server import heap

    if platform.libc_ver()[0] != "glibc" or heap.resident_bytes() is None:
        assert heap.Trimmer(16 << 20).enabled is False  # no malloc_trim or /proc: a no-op
        return
    out = subprocess.run([sys.executable, "-c", _TRIM_CHILD], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # half of ~200 MB was freed in 20 KB holes: glibc keeps all of it until trimmed
    assert int(out.stdout) >= 60, f"the trim gave back only {out.stdout.strip()} MiB"


# In a child process that forks: `resident_bytes` keeps /proc/self/statm open, and a forked
# child must read its own memory through it, not its parent's (the inherited descriptor's).
_RESIDENT_CHILD = """
import os
from gradserve.server import heap
before = heap.resident_bytes()
assert before and heap.resident_bytes() is not None  # the descriptor, now open, reads again
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    start = heap.resident_bytes()
    held = b"\\x01" * (96 << 20)  # written: resident
    grown = heap.resident_bytes() - start
    os.write(write, str(grown >> 20).encode())
    os._exit(0)
os.close(write)
child = int(os.read(read, 64))
os.waitpid(pid, 0)
mine = heap.resident_bytes() - before
print(child, mine >> 20)
"""


def test_resident_bytes_reads_this_process_even_after_a_fork():
    from gradserve.server import heap

    if heap.resident_bytes() is None or not hasattr(os, "fork"):
        return  # no /proc: None, as before
    out = subprocess.run([sys.executable, "-c", _RESIDENT_CHILD], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    child, parent = map(int, out.stdout.split())
    assert child >= 90, f"the child saw {child} MiB of its 96 MiB"
    assert parent < 48, f"the parent grew by {parent} MiB: the child's memory"


def test_engine_threads_setting():
    from gradserve.server.config import from_argv

    assert from_argv([]).engine_threads == 0  # the engine's default
    assert from_argv(["--engine-threads", "3"]).engine_threads == 3
    assert from_argv([], environ={"GRADSERVE_ENGINE_THREADS": "1"}).engine_threads == 1
    with pytest.raises(ValueError, match="engine_threads must be 0"):
        from_argv(["--engine-threads", "-1"])
