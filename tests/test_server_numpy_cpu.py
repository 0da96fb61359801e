"""numpy kept off its own AVX512 kernels where the engine runs (server/numpy_cpu.py)."""

from __future__ import annotations

import ast
import os
import platform
import subprocess
import sys

import pytest

from gradserve.server import numpy_cpu

SHOW = ("import os, sys\n"
        "{before}"
        "from gradserve.server import numpy_cpu\n"
        "numpy_cpu.pin()\n"
        "print(repr(os.environ.get(numpy_cpu.ENV)), numpy_cpu.avx512_targets())\n")


def _run(before: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != numpy_cpu.ENV}
    done = subprocess.run([sys.executable, "-c", SHOW.format(before=before)], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_the_tests_run_numpy_without_its_avx512_kernels():
    assert numpy_cpu.avx512_targets() == []


@pytest.mark.parametrize("before", ["", "import numpy\n"], ids=["before-numpy", "after-numpy"])
def test_pin_leaves_numpy_no_avx512_target_this_cpu_runs(before):
    # before numpy: asked of a child; after: the process starts again (the same command line)
    setting, targets = _run(before).rsplit(" ", 1)
    assert targets == "[]"
    # always set ("" without AVX512: the processes it starts do not ask again); on an AVX512
    # CPU numpy's own targets at that level are named
    names = ast.literal_eval(setting).split()
    assert all(n.startswith("AVX512") or n == "X86_V4" for n in names)


@pytest.mark.parametrize("asked, expected",
                         [([], ""), (["X86_V4", "AVX512_ICL"], "X86_V4 AVX512_ICL"), (None, None)],
                         ids=["no-avx512", "avx512", "child-failed"])
def test_pin_before_numpy_sets_what_the_child_says(monkeypatch, asked, expected):
    monkeypatch.delenv(numpy_cpu.ENV, raising=False)
    monkeypatch.setattr(numpy_cpu, "_ask_child", lambda: asked)
    monkeypatch.delitem(sys.modules, "numpy")  # pin() asks a child only before numpy
    numpy_cpu.pin()
    assert os.environ.get(numpy_cpu.ENV) == expected


def test_pin_keeps_a_setting_made_already():
    env = {**os.environ, numpy_cpu.ENV: ""}
    code = ("import os\nfrom gradserve.server import numpy_cpu\nnumpy_cpu.pin()\n"
            "print(repr(os.environ[numpy_cpu.ENV]))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "''"


def test_the_reference_torch_runs_its_avx2_kernels():
    # tests/__init__.py: the suite compares with torch's AVX2 kernels (oneDNN's AVX512
    # convolutions are not reproduced); test_engine_avx512_width.py runs an uncapped torch
    torch = pytest.importorskip("torch")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("torch's x86 capability levels only")
    assert torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT")
