"""float32 kernels at the vector width torch runs them with on this CPU (engine/vecmath.py).

torch builds some CPU kernels for AVX512 too (ALSO_REGISTER_AVX512_DISPATCH): on an AVX512 CPU
their vector loop takes steps of 32 floats, not AVX2's 16, and leaves other elements to the scalar
lambda, whose libm functions round differently from the vector code's SLEEF ones. A server keeps
numpy off its AVX512 kernels (server/numpy_cpu.py), which must not make the engine take torch for
an AVX2 one (it did: sigmoid, silu, elu, selu, celu, softplus, mish, gelu, hardswish's gradient
and pow differed from torch in a few tail elements of odd sizes and strided views).

The suite's torch runs at AVX2 (tests/__init__.py): the cases (tests/width_cases.py) are compared
with it in this process. Where the CPU has AVX512 they also run in two child processes, the engine
set up as `gradserve serve` sets it up (numpy pinned, torch's and oneDNN's ISA left alone) and a
torch left at AVX512, and are compared bit for bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests import width_cases
from tests.reference import AVX512_FLAGS, cpu_flags, torch, torch_at_avx512

CASES = Path(width_cases.__file__)
# loads width_cases by its path (not through the `tests` package, which caps torch at AVX2)
_LOAD = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("width_cases", {str(CASES)!r})
cases = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cases)
"""
_TORCH = _LOAD + """
import numpy as np, torch
if torch.backends.cpu.get_cpu_capability() != "AVX512":
    sys.exit(3)
np.savez(sys.argv[2], **cases.run(torch, list(cases.OPS)))
"""
_ENGINE = """
from gradserve.server import numpy_cpu
numpy_cpu.pin()  # as `gradserve serve` does, before numpy
""" + _LOAD + """
import numpy as np
import gradserve.engine as ge
np.savez(sys.argv[1], **cases.run(ge, list(cases.OPS)))
"""
_SERVED = """
from gradserve.server import numpy_cpu
numpy_cpu.pin()
from gradserve.engine import cascade, conv_onednn
import numpy as np
print(cascade.VECTOR_BYTES, cascade.ONEDNN_AVX512,
      conv_onednn.forward_reproducible((2, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1,
                                       np.dtype(np.float32)))
"""


def _served_env() -> dict[str, str]:
    """This process's environment as a server has it: numpy pinned (inherited from
    tests/__init__.py), no cap on torch's or oneDNN's ISA."""
    return {k: v for k, v in os.environ.items()
            if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}


avx512_only = pytest.mark.skipif(not AVX512_FLAGS <= cpu_flags(),
                                 reason="this CPU lacks AVX512 F, CD, VL, BW, DQ: torch runs none")


@pytest.mark.parametrize("op", width_cases.OPS)
def test_capped_torch_is_matched(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the suite's AVX2 width, every case is the suite's torch's to the bit."""
    monkeypatch.setattr(ge.cascade, "THREADS", torch.get_num_threads())  # the thread split
    got, want = width_cases.run(ge, [op]), width_cases.run(torch, [op])
    bad = {k: n for k in want if (n := width_cases.differing(got[k], want[k]))}
    assert not bad, f"elements differing from torch at AVX2: {bad}"


@pytest.fixture(scope="module")
def at_avx512(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The cases through a torch at AVX512 and through an engine set up as a server's, each in
    a child process (skips where torch runs no AVX512)."""
    tmp = tmp_path_factory.mktemp("avx512")
    want = torch_at_avx512(_TORCH, {"unused": np.zeros(1)}, tmp)
    done = subprocess.run([sys.executable, "-c", _ENGINE, str(tmp / "engine.npz")],
                          env=_served_env(), timeout=600)
    assert done.returncode == 0
    return np.load(tmp / "engine.npz"), want


@avx512_only
@pytest.mark.parametrize("op", width_cases.OPS)
def test_uncapped_torch_is_matched(op: str, at_avx512: tuple[Any, Any]) -> None:
    """On an AVX512 CPU, every case is an AVX512 torch's to the bit, computed by the engine as
    a server runs it."""
    got, want = at_avx512
    keys = [k for k in want.files if k.startswith(op + "|")]
    assert keys
    bad = {k: n for k in keys if (n := width_cases.differing(got[k], want[k]))}
    assert not bad, f"elements differing from torch at AVX512: {bad}"


@avx512_only
def test_served_engine_takes_its_widths_from_the_cpu() -> None:
    """A served engine (numpy off AVX512) models torch's AVX512 kernels: 64-byte vectors,
    oneDNN's AVX-512 code, and so no claim to reproduce oneDNN's AVX2 convolution order."""
    done = subprocess.run([sys.executable, "-c", _SERVED], env=_served_env(), timeout=120,
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["64", "True", "False"]
