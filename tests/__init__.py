"""gradserve's tests. Imported before any test module or conftest, so before numpy and torch:

- numpy is kept off its own AVX512 kernels (server/numpy_cpu.py: they round float32 sums and
  float64 sin, cos, log, exp differently from torch), as `gradserve serve` keeps it;
- torch, the reference, runs its AVX2 kernels on an x86-64 CPU that has AVX512
  (`ATEN_CPU_CAPABILITY=avx2`, which the engine follows too: engine/cascade.py; and oneDNN's,
  `ONEDNN_MAX_CPU_ISA=AVX2`): the engine reproduces torch's float32 math (SLEEF's exp/log/tanh,
  softmax, oneDNN's convolutions) bit for bit at AVX2, oneDNN's AVX512 convolutions not yet, so
  the suite compares like with like on any CPU. tests/test_engine_avx512_width.py runs an
  uncapped torch and a served engine in child processes where the CPU has AVX512.

Both settings reach the servers the tests start (they inherit the environment); a setting made
before the run is kept.
"""

import os
import platform

from gradserve.server import numpy_cpu

numpy_cpu.pin()
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
