"""gradserve's tests. Imported before any test module or conftest, so before numpy: numpy is
kept off its own AVX512 kernels here (server/numpy_cpu.py: they round float64 sin, cos, log, exp
differently from torch), in this process and the servers the tests start, as `gradserve serve`
keeps it."""

from gradserve.server import numpy_cpu

numpy_cpu.pin()
