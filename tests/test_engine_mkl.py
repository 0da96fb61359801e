"""The optional MKL backend (engine/mkl.py): loading, turning off, and products bit for bit.

With the `mkl` extra installed the engine calls MKL 2024.2's `sgemm`/`dgemm` with the arguments
torch's `addmm_impl_cpu_` passes, so every float matrix product equals torch's whatever its
shape, layout, alpha and beta. Without MKL (the compat interpreters) the loader tests that run
in a subprocess still check the fallback; the comparisons skip.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import gemm, mkl
from tests.reference import torch

needs_mkl = pytest.mark.skipif(not mkl.available(), reason=f"{mkl.status()}")


def _run(code: str, **env: str) -> str:
    """Run `code` in a fresh interpreter (the loader runs once per process); its stdout."""
    full_env = {**os.environ, **env}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


STATUS = "from gradserve.engine import mkl; print(mkl.available(), '|', mkl.status())"


def test_turned_off_by_environment() -> None:
    assert _run(STATUS, GRADSERVE_MKL="0") == "False | MKL off: turned off by GRADSERVE_MKL"


def test_a_library_that_is_not_mkl_falls_back(tmp_path: object) -> None:
    out = _run(STATUS, GRADSERVE_MKL=str(np.__file__))
    assert out.startswith("False | MKL off: MKL at ") and "not usable" in out


def test_fallback_products_without_mkl() -> None:
    """With MKL off the engine's products are numpy's / gemm.py's, and still right."""
    code = ("import numpy as np, gradserve.engine as ge\n"
            "a = np.arange(12, dtype=np.float32).reshape(3, 4)\n"
            "print((ge.tensor(a) @ ge.tensor(a.T)).numpy().tolist() == (a @ a.T).tolist(), "
            "ge.exp(ge.tensor([0.0])).item())")
    assert _run(code, GRADSERVE_MKL="0") == "True 1.0"


@needs_mkl
def test_status_and_threads_are_torchs() -> None:
    lib = mkl.library()
    assert mkl.status().startswith("MKL at ")
    assert lib.MKL_Get_Max_Threads() == torch.get_num_threads()


@needs_mkl
def test_a_forked_child_does_not_call_mkl() -> None:
    """GNU OpenMP's threads do not survive fork: a child falls back to numpy."""
    code = ("import os, numpy as np, gradserve.engine as ge\n"
            "from gradserve.engine import mkl\n"
            "a = ge.tensor(np.ones((64, 64), np.float32)); (a @ a).numpy()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    ok = mkl.available() is False and float((a @ a).numpy()[0, 0]) == 64.0\n"
            "    os._exit(0 if ok else 1)\n"
            "print(os.waitpid(pid, 0)[1], mkl.available())")
    assert _run(code) == "0 True"


@needs_mkl
def test_turned_off_context() -> None:
    assert mkl.available()
    with mkl.turned_off():
        assert not mkl.available()
        assert gemm.mkl_addmm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32),
                              None) is None
    assert mkl.available()


# --- products against torch -----------------------------------------------------------------------


def _layouts(a: np.ndarray) -> Iterator[tuple[str, object, object]]:
    """The same values as a contiguous, a transposed-contiguous and a strided matrix, made by
    the same views in both (the layout picks BLAS's arguments, which can change the bits)."""
    yield "contiguous", ge.tensor(a), torch.from_numpy(a.copy())
    at = np.ascontiguousarray(a.T)
    yield "transposed", ge.tensor(at).T, torch.from_numpy(at.copy()).T
    wide = np.zeros((a.shape[0], 2 * a.shape[1] + 1), a.dtype)
    wide[:, :-1:2] = a
    yield "strided", ge.tensor(wide)[:, :-1:2], torch.from_numpy(wide.copy())[:, :-1:2]


def _same(mine: object, theirs: object) -> bool:
    return np.array_equal(np.asarray(mine), theirs.detach().numpy(),  # type: ignore[attr-defined]
                          equal_nan=True)


SIZES = [(1, 1, 1), (1, 300, 1), (1, 64, 33), (13, 64, 1), (5, 300, 7), (8, 3, 12),
         (64, 1000, 2), (100, 1000, 33), (7, 193, 11), (12, 385, 16), (3, 1, 5)]


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k,m", SIZES)
def test_mm_addmm_every_layout(n: int, k: int, m: int, dtype: type) -> None:
    rng = np.random.default_rng(n * 7919 + k * 31 + m)
    a = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal((k, m)).astype(dtype)
    c = rng.standard_normal(m).astype(dtype)
    for (_, x, ta), (_, y, tb) in itertools.product(_layouts(a), _layouts(b)):
        assert _same(ge.mm(x, y), torch.mm(ta, tb))
        assert _same(x @ y, ta @ tb)
        for beta, alpha in ((1, 1), (0.5, 2.0), (0, 3.0)):
            assert _same(ge.addmm(ge.tensor(c), x, y, beta=beta, alpha=alpha),
                         torch.addmm(torch.from_numpy(c), ta, tb, beta=beta, alpha=alpha))


@needs_mkl
def test_random_shapes_against_numpy_and_torch() -> None:
    """Random shapes, values over several binades: always torch's bits, often not numpy's."""
    rng = np.random.default_rng(11)
    differs_from_numpy = 0
    for trial in range(60):
        n, k, m = (int(v) for v in rng.integers(1, 160, 3))
        scale = (1.0, 1e-3, 1e4)[trial % 3]
        a = (rng.standard_normal((n, k)) * scale).astype(np.float32)
        b = rng.standard_normal((k, m)).astype(np.float32)
        expected = torch.from_numpy(a) @ torch.from_numpy(b)
        assert _same(ge.tensor(a) @ ge.tensor(b), expected), (n, k, m)
        differs_from_numpy += not np.array_equal(a @ b, expected.numpy())
    assert differs_from_numpy > 10


@needs_mkl
@pytest.mark.parametrize("shape", [(32, 96), (4, 5, 96), (1, 96), (96,)])
def test_linear_forward_and_gradients(shape: tuple[int, ...]) -> None:
    """nn.functional.linear (addmm, or the folded/1-D forms) and its weight, bias and input
    gradients (products of transposed views) are torch's bits."""
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((48, 96)).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    c = rng.standard_normal((*shape[:-1], 48)).astype(np.float32)
    results = []
    for mod in (ge, torch):
        tx, tw, tb = (mod.tensor(v.copy(), requires_grad=True) for v in (x, w, bias))
        out = mod.nn.functional.linear(tx, tw, tb)
        (out * mod.tensor(c)).sum().backward()
        results.append([out.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()])
    for mine, theirs in zip(*results):
        assert np.array_equal(mine, theirs)
