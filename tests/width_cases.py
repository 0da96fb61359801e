"""float32 cases whose bits depend on the vector width of torch's kernels, for
tests/test_engine_avx512_width.py, which runs them in its own process and in child processes
(these load this file by its path, so it imports numpy only: importing the `tests` package would
cap the child's torch at AVX2).

Each case is an op, an input and a view of it: the op's forward on the view, then its backward
with a fixed incoming gradient. The inputs have the sizes and layouts where an AVX2 loop (steps of
16 floats) and an AVX512 one (steps of 32) leave different elements to the scalar tail: contiguous
runs of 24, 50 or 1073 elements, transposed and stepped matrices of odd shapes, torch's
two-thread split of 40001 elements (and gelu's of 20008 and 150 x 150), NaN where vector code
and scalar lambda disagree.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

F32 = np.float32
SPECIAL = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, -1e-40, 1.17e-38, 88.72, -87.3,
                    -103.98, 100.5, 3e38, -3e38, 16.6, -16.6, 5.5419, -5.6, 20.0, 21.0, 0.5,
                    -0.5, 1e-8, -1e-8, 3.0, -3.0], F32)

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "sigmoid": lambda lib, t: lib.sigmoid(t),
    "silu": lambda lib, t: lib.nn.functional.silu(t),
    "elu": lambda lib, t: lib.nn.functional.elu(t, alpha=0.7),
    "selu": lambda lib, t: lib.nn.functional.selu(t),
    "celu": lambda lib, t: lib.nn.functional.celu(t, 1.3),
    "softplus": lambda lib, t: lib.nn.functional.softplus(t, beta=1.5, threshold=8.0),
    "mish": lambda lib, t: lib.nn.functional.mish(t),
    "gelu": lambda lib, t: lib.nn.functional.gelu(t),
    "gelu_tanh": lambda lib, t: lib.nn.functional.gelu(t, approximate="tanh"),
    "hardswish": lambda lib, t: lib.nn.functional.hardswish(t * 0.5),
    "pow_2_5": lambda lib, t: t.abs() ** 2.5,
    "pow_neg": lambda lib, t: lib.pow(t.abs(), -1.7),
    "pow_tensor": lambda lib, t: t.abs() ** (t * 0.3),
    "rpow": lambda lib, t: 1.7 ** t,
    "softmax": lambda lib, t: lib.nn.functional.softmax(t, -1),
    "log_softmax": lambda lib, t: lib.nn.functional.log_softmax(t, -1),
    # the same bits at either width (both paths compute the same formula): kept as controls
    "expm1": lambda lib, t: lib.expm1(t),
    "log1p": lambda lib, t: lib.log1p(t.abs()),
    "logsigmoid": lambda lib, t: lib.nn.functional.logsigmoid(t),
}

VIEWS: dict[str, Callable[[Any], Any]] = {
    "contiguous": lambda t: t,
    # a 1-D input's stand-in: one element fewer, another tail
    "transposed": lambda t: t.t() if t.dim() == 2 else t[1:],
    "stepped": lambda t: t[::2, ::3] if t.dim() == 2 else t[::3],
    "expanded": lambda t: t[:1].expand(4, -1) if t.dim() == 2 else t[:1].expand(40),
}


def inputs() -> dict[str, np.ndarray]:
    """The inputs by name, the same in every process."""
    rng = np.random.default_rng(2026)
    cases = {
        "37x29": (rng.standard_normal((37, 29)) * 4).astype(F32),
        "100x47": (rng.standard_normal((100, 47)) * 3).astype(F32),
        "3x12000": (rng.standard_normal((3, 12000)) * 2).astype(F32),
        "9x70": (rng.standard_normal((9, 70)) * 5).astype(F32),
        "1073": (rng.standard_normal(1073) * 4).astype(F32),
        "40001": rng.uniform(-30, 30, 40001).astype(F32),
        # gelu's forward splits more than 16384 elements over the threads (its own grain)
        "20008": (rng.standard_normal(20008) * 3).astype(F32),
        "150x150": (rng.standard_normal((150, 150)) * 3).astype(F32),
        "special": np.tile(SPECIAL, 3),
    }
    for n in (24, 27, 50, 63):
        x = (rng.standard_normal(n) * 4).astype(F32)
        x[::3] = np.nan  # vector code and scalar lambda differ at NaN (elu, hardswish grads)
        cases[f"nan{n}"] = x
    return cases


def grad_for(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The incoming gradient of case `name`, the same in every process."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.standard_normal(shape).astype(F32)


def run(lib: Any, ops: list[str]) -> dict[str, np.ndarray]:
    """Every case of `ops` through `lib` (torch, or gradserve.engine): the forward's values
    under "op|input|view|y" and the input's gradient under "op|input|view|dx"."""
    out = {}
    for key, x in inputs().items():
        for op in ops:
            for view_name, view in VIEWS.items():
                name = f"{op}|{key}|{view_name}"
                tx = view(lib.tensor(x)).detach().requires_grad_()
                ty = OPS[op](lib, tx)
                ty.backward(lib.tensor(grad_for(name, tuple(ty.shape))))
                out[name + "|y"] = ty.detach().numpy()
                out[name + "|dx"] = tx.grad.numpy()
    return out


def differing(got: np.ndarray, want: np.ndarray) -> int:
    """How many elements differ in their bits (any NaN equals any NaN)."""
    assert got.dtype == want.dtype == F32 and got.shape == want.shape
    differ = (got.view(np.int32) != want.view(np.int32)) & ~(np.isnan(got) & np.isnan(want))
    return int(differ.sum())
