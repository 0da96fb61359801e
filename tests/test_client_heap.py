"""`gradserve.client.keep_freed_memory`: a client moving 1 MiB tensors stops faulting its heap
back in at every step (counted page faults, not time: client/heap.py)."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys
import textwrap

import pytest

import gradserve.client as gc

# A step of 1 MiB each way (x: 262,144 float32), run in a process of its own: the setting is
# process-wide, and glibc's adaptive thresholds would already have grown in this one.
STEP_PROGRAM = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import gradserve.client as gc
    port, keep = int(sys.argv[1]), sys.argv[2] == "keep"
    took = gc.keep_freed_memory() if keep else None
    x_np = np.arange(1 << 18, dtype=np.float32)
    with gc.connect(f"127.0.0.1:{port}") as client, client.session() as s:
        def step():
            x = s.tensor(x_np, requires_grad=True)
            (x ** 2).sum().backward()
            return x.grad.numpy()
        for _ in range(10):
            assert step()[3] == 6.0
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            step()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"took": took, "faults_per_step": faults / 20}))
""")

GLIBC = sys.platform.startswith("linux") and ctypes.util.find_library("c") is not None


def _faults(port: int, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STEP_PROGRAM, str(port), mode],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_one_mib_steps_reuse_the_heap_instead_of_faulting_it_in(gradserve_server):
    _, port = gradserve_server
    default = _faults(port, "default")
    kept = _faults(port, "keep")
    assert kept["took"] is True
    # glibc's default: ~1,250 faults a step on the reference machine (each freed MiB returned
    # and faulted in again); kept: ~2 on CPython 3.11, 20-75 on 3.13 (its own allocations)
    assert default["faults_per_step"] > 250, default
    assert kept["faults_per_step"] < default["faults_per_step"] / 5, (kept, default)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                        ("8M", TypeError)])
def test_bad_sizes_are_refused(bad, error):
    with pytest.raises(error):
        gc.keep_freed_memory(bad)
