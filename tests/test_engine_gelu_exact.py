"""float32 gelu (approximate='none') and its gradient: torch's to the last bit (engine/gelu_erf.py).

torch computes a contiguous float32 input of more than one element with oneDNN (a piecewise
minimax erf forward, Abramowitz-Stegun with oneDNN's exp backward) and anything else with its
own kernel (Abramowitz-Stegun with SLEEF's expf in the vector loop, glibc's erff in the scalar
tail). Each case runs the same values through torch and gradserve and compares bits: sizes that
leave every kind of tail, views that send elements to torch's own kernel, special values, a
large sample of random bit patterns, the stride-0 gradient of `sum().backward()`, and the same
through a session. The suite's torch runs oneDNN at AVX2 (tests/__init__.py); one test runs a
torch whose oneDNN takes its AVX-512 code (a piecewise polynomial forward) in a subprocess.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import cascade
from tests.reference import torch, torch_at_avx512
from tests.test_engine_vecmath import VIEWS

F32 = np.float32
SPECIAL = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.17e-38,
                    5.5418, 5.5419, -5.5419, 5.6, -5.6, 0.109375, 0.1093751, 0.1093749, 1e-8,
                    -1e-8, 13.0, -13.0, 14.0, -14.0, 88.0, -88.0, 200.0, -200.0, 3e38, -3e38,
                    1.7e38, -1.7e38, 0.5, -0.5, 2.0, -2.0], F32)



def _bits_equal(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    got, want = np.asarray(got, F32), np.asarray(want, F32)
    assert got.shape == want.shape, what
    differ = (got.view(np.int32) != want.view(np.int32)) & ~(np.isnan(got) & np.isnan(want))
    assert not differ.any(), (f"{what}: {int(differ.sum())} of {got.size} differ, e.g. at "
                              f"{want.reshape(-1)[differ.reshape(-1)][:3]}")


def _compare(lib: Any, x: np.ndarray, view: Callable[[Any], Any], rng: np.random.Generator,
             what: str) -> None:
    tx = view(torch.from_numpy(x.copy())).detach().requires_grad_()
    ex = view(lib.tensor(x.copy())).detach().requires_grad_()
    ty, ey = torch.nn.functional.gelu(tx), lib.nn.functional.gelu(ex)
    _bits_equal(ey.detach().numpy(), ty.detach().numpy(), f"{what} forward")
    g = rng.standard_normal(tuple(ty.shape)).astype(F32)
    ty.backward(torch.from_numpy(g))
    ey.backward(lib.tensor(g))
    _bits_equal(ex.grad.numpy(), tx.grad.numpy(), f"{what} backward")


@pytest.mark.parametrize("n", [1, 2, 7, 15, 16, 17, 31, 32, 33, 64, 1000, 40001, 100000])
def test_sizes_are_torchs(n: int) -> None:
    rng = np.random.default_rng(n)
    _compare(ge, (rng.standard_normal(n) * 3).astype(F32), VIEWS["contiguous"], rng, f"n={n}")


@pytest.mark.parametrize("view", VIEWS)
def test_views_are_torchs(view: str) -> None:
    """Strided views take torch's own kernel (vector loop and scalar tail), contiguous ones
    oneDNN's."""
    rng = np.random.default_rng(3)
    for x in ((rng.standard_normal((37, 29)) * 3).astype(F32),
              (rng.standard_normal((3, 12000)) * 2).astype(F32),
              np.tile(SPECIAL, 3)):
        _compare(ge, x, VIEWS[view], rng, view)


def test_special_values_are_torchs() -> None:
    """Infinities (NaN in oneDNN's forward), NaN, signed zeros, subnormals, the polynomial
    table's edges, overflow of x * 2, exp's underflow: both paths."""
    rng = np.random.default_rng(5)
    for view in ("contiguous", "stepped"):
        _compare(ge, np.tile(SPECIAL, 2), VIEWS[view], rng, view)
    for value in SPECIAL:  # one element: torch's scalar lambda
        _compare(ge, np.array([value], F32), VIEWS["contiguous"], rng, f"[{value}]")
        _compare(ge, np.array(value, F32), VIEWS["contiguous"], rng, f"{value}")


def test_random_bit_patterns_are_torchs() -> None:
    """2**21 float32s drawn uniformly over all bit patterns (every exponent, so every piece
    of oneDNN's table and both ends of the exp), forward and gradient, both kernels."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, 2 ** 32, 2 ** 21, dtype=np.uint32).view(F32)
    g = rng.standard_normal(x.size).astype(F32)
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    ex = ge.tensor(x)
    _bits_equal(ge.nn.functional.gelu(ex).numpy(), torch.nn.functional.gelu(tx).numpy(),
                "oneDNN forward")
    _bits_equal(_engine_grad(x, g), torch.ops.aten.gelu_backward(tg, tx).numpy(),
                "oneDNN backward")
    step = slice(None, None, 3)
    _bits_equal(ge.nn.functional.gelu(ex[step]).numpy(),
                torch.nn.functional.gelu(tx[step]).numpy(), "torch's kernel forward")
    _bits_equal(_engine_grad(x, g, step), torch.ops.aten.gelu_backward(tg[step], tx[step]).numpy(),
                "torch's kernel backward")


def _engine_grad(x: np.ndarray, g: np.ndarray, view: slice = slice(None)) -> np.ndarray:
    ex = ge.tensor(x).requires_grad_()
    ge.nn.functional.gelu(ex[view]).backward(ge.tensor(g[view].copy()))
    return ex.grad.numpy()[view]


def test_sum_backward_is_torchs() -> None:
    """`gelu(x).sum().backward()`: the incoming gradient is an expanded 1 (stride 0)."""
    x = (np.random.default_rng(9).standard_normal((64, 128)) * 3).astype(F32)
    tx, ex = torch.from_numpy(x).requires_grad_(), ge.tensor(x).requires_grad_()
    torch.nn.functional.gelu(tx).sum().backward()
    ge.nn.functional.gelu(ex).sum().backward()
    _bits_equal(ex.grad.numpy(), tx.grad.numpy())


def test_through_a_session_is_torchs(gradserve_lib: Any) -> None:
    rng = np.random.default_rng(10)
    for n, view in ((1, "contiguous"), (17, "contiguous"), (8192, "contiguous"),
                    (1000, "stepped")):
        _compare(gradserve_lib, (rng.standard_normal(n) * 3).astype(F32), VIEWS[view], rng,
                 f"n={n} {view}")
    x = (rng.standard_normal((64, 128)) * 3).astype(F32)
    _compare(gradserve_lib, x, VIEWS["transposed"], rng, "transposed")
    _compare(gradserve_lib, np.tile(SPECIAL, 2), VIEWS["contiguous"], rng, "special")


_AVX512_TORCH = """
import sys, numpy as np, torch
if torch.backends.cpu.get_cpu_capability() != "AVX512":
    sys.exit(3)
inputs = np.load(sys.argv[1])
x = torch.tensor(inputs["x"], requires_grad=True)
y = torch.nn.functional.gelu(x)
y.backward(torch.tensor(inputs["g"]))
np.savez(sys.argv[2], y=y.detach().numpy(), grad=x.grad.numpy())
"""


def test_onednn_avx512_is_torchs(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN's AVX-512 forward (25 minimax polynomials picked by |x|'s bits) and backward,
    against a torch run with oneDNN and ATen uncapped, on random bit patterns (every piece of
    the table) and the special values, where the CPU has AVX-512."""
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.integers(0, 2 ** 32, 2 ** 20, dtype=np.uint32).view(F32),
                        (rng.standard_normal(5000) * 3).astype(F32), SPECIAL])
    g = rng.standard_normal(x.size).astype(F32)
    ref = torch_at_avx512(_AVX512_TORCH, {"x": x, "g": g}, tmp_path)
    monkeypatch.setattr(cascade, "ONEDNN_AVX512", True)
    ex = ge.tensor(x).requires_grad_()
    ey = ge.nn.functional.gelu(ex)
    ey.backward(ge.tensor(g))
    _bits_equal(ey.detach().numpy(), ref["y"], "forward")
    _bits_equal(ex.grad.numpy(), ref["grad"], "backward")
