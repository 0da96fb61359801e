"""The engine's float32 matrix products round exactly as torch's CPU ones (engine/gemm.py).

These test the emulated order, the path taken without MKL: MKL is turned off here
(tests/test_engine_mkl.py tests the products made through MKL).

Where `gemm.reproducible` holds (a result with 4, 8 or at least 12 rows and at least 12
columns, where MKL runs no AVX-512 code path), mm, addmm, matmul, linear and the transposed
layouts of the backward are compared with torch bit for bit on the same values; numpy's BLAS
adds in another order and differs in the last bits for most of these inputs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import cascade, gemm, mkl
from tests.reference import torch

pytestmark = pytest.mark.skipif(cascade.MKL_AVX512,
                                reason="the order was measured where MKL runs no AVX-512 path")

# k at and around the block boundaries (one block to 192, two halves to 384, then 192s)
SHAPES = [(4, 1, 12), (4, 7, 13), (8, 33, 16), (12, 100, 20), (16, 191, 64), (4, 192, 100),
          (8, 193, 17), (20, 255, 12), (4, 256, 33), (32, 383, 24), (8, 384, 40), (12, 385, 16),
          (4, 577, 12), (64, 600, 32), (8, 784, 256), (256, 20, 64), (128, 1024, 16),
          (13, 50, 12), (30, 200, 20), (101, 385, 16), (255, 30, 64)]


@pytest.fixture(autouse=True)
def exact_for_all(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every product here is small enough for the exact path, and none goes to MKL."""
    monkeypatch.setattr(gemm, "EXACT_WORK", 1 << 24)
    with mkl.turned_off():
        yield


def _pair(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> tuple:
    a = (rng.standard_normal(shape) * scale).astype(np.float32)
    return a, ge.tensor(a), torch.from_numpy(a.copy())


def _same(engine_out: object, torch_out: object) -> bool:
    return np.array_equal(np.asarray(engine_out), torch_out.detach().numpy(),  # type: ignore[attr-defined]
                          equal_nan=True)


@pytest.mark.parametrize("n,k,m", SHAPES)
def test_mm_addmm_linear_bit_for_bit(n: int, k: int, m: int) -> None:
    rng = np.random.default_rng(n * 10007 + k * 101 + m)
    _, ex, tx = _pair(rng, (n, k))
    _, ey, ty = _pair(rng, (k, m))
    _, ew, tw = _pair(rng, (m, k))
    _, eb, tb = _pair(rng, (m,))
    assert gemm.reproducible(np.asarray(ex), np.asarray(ey))
    assert _same(ge.mm(ex, ey), torch.mm(tx, ty))
    assert _same(ex @ ey, tx @ ty)
    assert _same(ge.addmm(eb, ex, ey), torch.addmm(tb, tx, ty))
    assert _same(ge.nn.functional.linear(ex, ew), torch.nn.functional.linear(tx, tw))
    assert _same(ge.nn.functional.linear(ex, ew, eb), torch.nn.functional.linear(tx, tw, tb))


@pytest.mark.parametrize("n,k,m", SHAPES[::3])
def test_transposed_layouts(n: int, k: int, m: int) -> None:
    """x.T @ y and x.T @ y.T (the layouts a backward pass multiplies in) round as torch's."""
    rng = np.random.default_rng(k)
    _, ext, txt = _pair(rng, (k, n))
    _, ey, ty = _pair(rng, (k, m))
    _, eyt, tyt = _pair(rng, (m, k))
    assert _same(ext.T @ ey, txt.T @ ty)
    assert _same(ext.T @ eyt.T, txt.T @ tyt.T)


def test_batched_input_folds_into_one_mm() -> None:
    """(b, s, k) @ (k, m) is one (b*s, k) @ (k, m) in torch, and so here."""
    rng = np.random.default_rng(3)
    _, ex, tx = _pair(rng, (3, 4, 200))
    _, ey, ty = _pair(rng, (200, 24))
    _, ew, tw = _pair(rng, (24, 200))
    _, eb, tb = _pair(rng, (24,))
    assert _same(ex @ ey, tx @ ty)
    assert _same(ge.nn.functional.linear(ex, ew, eb), torch.nn.functional.linear(tx, tw, tb))
    grads = []
    for mod, a, b in ((ge, ex, ey), (torch, tx, ty)):
        a, b = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
        ((a @ b) * mod.tensor(np.linspace(-1, 1, 96, dtype=np.float32).reshape(3, 4, 8)
                              .repeat(3, axis=2))).sum().backward()
        grads.append((a.grad.numpy(), b.grad.numpy()))  # y's: one folded mm, as torch's
    assert np.array_equal(grads[0][0], grads[1][0])
    assert np.array_equal(grads[0][1], grads[1][1])


def test_linear_gradients_bit_for_bit() -> None:
    """nn.Linear's forward and its weight/input gradients (mm in both orientations)."""
    rng = np.random.default_rng(4)
    x, w, c = (rng.standard_normal(s).astype(np.float32) for s in ((32, 96), (48, 96), (32, 48)))
    grads = []
    for mod in (ge, torch):
        tx = mod.tensor(x.copy(), requires_grad=True)
        tw = mod.tensor(w.copy(), requires_grad=True)
        out = mod.nn.functional.linear(tx, tw)
        (out * mod.tensor(c)).sum().backward()
        grads.append([out.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()])
    for mine, theirs in zip(*grads):
        assert np.array_equal(mine, theirs)


def test_random_shapes_and_scales() -> None:
    """Random shapes in the reproducible class, values over several binades."""
    rng = np.random.default_rng(5)
    differs_from_numpy = 0
    for trial in range(40):
        n, m = int(rng.choice([4, 8, *range(12, 130)])), int(rng.integers(12, 200))
        k = int(rng.integers(1, 500))
        scale = (1.0, 1e-3, 1e4)[trial % 3]
        a, ex, tx = _pair(rng, (n, k), scale)
        b, ey, ty = _pair(rng, (k, m))
        _, eb, tb = _pair(rng, (m,))
        expected = torch.mm(tx, ty)
        assert _same(ex @ ey, expected), (n, k, m)
        assert _same(ge.addmm(eb, ex, ey), torch.addmm(tb, tx, ty)), (n, k, m)
        differs_from_numpy += not np.array_equal(a @ b, expected.numpy())
    assert differs_from_numpy > 20  # what the exact path is for: numpy's order is another


def test_halfway_subnormal_and_nonfinite_sums() -> None:
    """A float64 sum exactly halfway between two float32s, products in float32's subnormal
    range, and inf/nan: each rounds as torch's fused multiply-add."""
    f = np.float32
    x = np.zeros((4, 2), f)
    y = np.zeros((2, 12), f)
    x[:, 0], y[0] = f(1 + 2 ** -23), 1  # 1 + 2**-23, then + (2**-24 - 2**-70): one rounding
    x[:, 1], y[1] = f(2 ** -12 * (1 + 2 ** -23)), f(2 ** -12 * (1 - 2 ** -23))
    assert _same(ge.tensor(x) @ ge.tensor(y), torch.from_numpy(x) @ torch.from_numpy(y))
    rng = np.random.default_rng(6)
    for scale in (1e-20, 1e-22):
        _, ex, tx = _pair(rng, (8, 30), scale)
        _, ey, ty = _pair(rng, (30, 16), scale)
        assert _same(ex @ ey, tx @ ty)
    a, _, _ = _pair(rng, (8, 30))
    b, _, _ = _pair(rng, (30, 16))
    a[0, 3], a[1, 2], b[5, 4] = np.inf, np.nan, -np.inf
    assert _same(ge.tensor(a) @ ge.tensor(b), torch.from_numpy(a) @ torch.from_numpy(b))


def test_work_limit_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    a, ex, _ = _pair(rng, (8, 50))
    b, ey, _ = _pair(rng, (50, 16))
    monkeypatch.setattr(gemm, "EXACT_WORK", 8 * 50 * 16 - 1)
    assert not gemm.reproducible(a, b)
    assert np.array_equal((ex @ ey).numpy(), a @ b)
    with pytest.raises(ValueError, match="must be >= 0"):
        gemm.set_exact_work(-1)


def test_k_blocks_cover_k() -> None:
    for k in range(1, 2000):
        blocks = gemm.k_blocks(k)
        assert sum(blocks) == k and all(0 < b <= gemm.KC for b in blocks)


def test_linear_training_losses_match_torch(gradserve_lib: object) -> None:
    """Three SGD steps of Linear(64 -> 16) on a batch of 32 (k <= 192: through a session the
    bias added after the product rounds as addmm's): every loss and the final weight are torch's,
    in process and through a session."""
    rng = np.random.default_rng(8)
    data = [rng.standard_normal(s).astype(np.float32) for s in ((32, 64), (16, 64), (16,),
                                                                (32, 16))]
    runs = []
    for mod in (torch, gradserve_lib):
        x, w, b, target = (mod.tensor(a.copy()) for a in data)  # type: ignore[attr-defined]
        w.requires_grad_(True)
        b.requires_grad_(True)
        losses = []
        for _ in range(3):
            out = mod.nn.functional.linear(x, w, b)  # type: ignore[attr-defined]
            loss = ((out - target) * (out - target)).sum()
            loss.backward()
            losses.append(loss.item())
            with mod.no_grad():  # type: ignore[attr-defined]
                w -= 0.001 * w.grad
                w.grad = None
                b.grad = None
        runs.append((losses, w.detach().numpy()))
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1])
