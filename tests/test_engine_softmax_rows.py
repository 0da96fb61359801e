"""float32 softmax / log_softmax rows against torch bit for bit on this machine's own kernels
(AVX2's 8 lanes or AVX512's 16): many random row lengths with the edge values a row can hold
(-inf, +inf, NaN, huge, subnormal, signed zeros, all -inf rows), their gradients, a
cross-entropy step, and SLEEF's expf near its range ends read through softmax."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

F32 = np.float32
EDGES = np.array([-np.inf, np.inf, np.nan, 3e38, -3e38, 1e-40, -1e-40, 1e-45, 0.0, -0.0, 88.8,
                  -88.8, -104.5, 100.5], F32)


def _same_bits(mine: np.ndarray, ref: np.ndarray) -> None:
    """Equal bits, any NaN payload."""
    assert mine.shape == ref.shape
    differ = (mine.view(np.int32) != ref.view(np.int32)) & ~(np.isnan(mine) & np.isnan(ref))
    assert not differ.any(), (np.argwhere(differ)[:5].tolist(), mine[differ][:5], ref[differ][:5])


def _rows(rng: np.random.Generator, shape: tuple[int, ...], edges: bool) -> np.ndarray:
    x = (rng.standard_normal(shape) * rng.choice([0.5, 4.0, 30.0])).astype(F32)
    if edges:
        flat = x.reshape(-1)
        at = rng.integers(0, flat.size, max(1, flat.size // 8))
        flat[at] = rng.choice(EDGES, at.size)
        rows = x.reshape(-1, shape[-1])
        rows[rng.integers(0, rows.shape[0])] = -np.inf  # a row of -inf only: NaN in torch
    return x


def _compare(fn: str, x: np.ndarray, g: np.ndarray) -> None:
    import gradserve.engine as ge

    a = ge.tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    ya, yb = getattr(ge, fn)(a, -1), getattr(torch, fn)(b, -1)
    _same_bits(ya.detach().numpy(), yb.detach().numpy())
    (ga,) = ge.autograd.grad(ya, a, ge.tensor(g))
    (gb,) = torch.autograd.grad(yb, b, torch.tensor(g))
    _same_bits(ga.numpy(), gb.numpy())


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("edges", [False, True], ids=["finite", "edges"])
def test_rows_of_every_length_are_torchs_bits(fn: str, edges: bool) -> None:
    """Row lengths 1-40 (shorter than a vector, whole vectors, partial last vectors, for 8
    and 16 lanes) and a few wide ones, 1-70 rows; values and gradients."""
    rng = np.random.default_rng(40 + edges)
    shapes = [(int(rng.integers(1, 70)), n) for n in range(1, 41)]
    shapes += [(64, 10), (5, 100), (3, 257), (2, 3, 17), (33,)]
    for shape in shapes:
        x = _rows(rng, shape, edges)
        g = rng.standard_normal(shape).astype(F32)
        if edges:
            g.reshape(-1)[rng.integers(0, g.size, max(1, g.size // 10))] = np.inf
        _compare(fn, x, g)


def test_non_finite_row_max_makes_a_nan_row() -> None:
    """torch subtracts a row's max as it is: +inf, NaN or an all -inf row give NaN rows."""
    x = np.array([[1, 2, np.inf, 0.5], [-np.inf] * 4, [np.nan, 1, 2, 3], [1, -np.inf, 3, 2],
                  [-np.inf, -np.inf, 5, -np.inf]], F32)
    for fn in ("softmax", "log_softmax"):
        _compare(fn, x, np.ones_like(x))


@pytest.mark.parametrize("center", [-104.0, -103.97, -87.3365, -87.0, -17.0, -0.5, 0.0])
def test_sleef_expf_near_its_range_ends(center: float) -> None:
    """softmax([0, x]) is exp(x) exactly where 1 + exp(x) rounds to 1: SLEEF's expf, read
    through torch's own kernel, for 4096 float32 neighbours of each point (the masks at -104,
    the subnormal results, the scaling)."""
    c = np.asarray(center, F32).view(np.int32)
    xs = (c + np.arange(-2048, 2048, dtype=np.int32)).view(F32)
    xs = xs[xs <= 0]
    rows = np.stack([np.zeros_like(xs), xs], axis=1)
    _compare("softmax", rows, np.ones_like(rows))
    _compare("log_softmax", rows, np.ones_like(rows))


@pytest.mark.parametrize("shape", [(64, 10), (7, 3), (130, 17)], ids=str)
def test_cross_entropy_with_edge_rows_is_torchs_bits(shape: tuple[int, ...]) -> None:
    """cross_entropy's loss and the logits' gradient over rows holding edge values."""
    import gradserve.engine as ge

    rng = np.random.default_rng(shape[0])
    x = _rows(rng, shape, edges=True)
    t = rng.integers(0, shape[1], shape[0])

    def run(lib: Any) -> np.ndarray:
        a = lib.tensor(x, requires_grad=True)
        loss = lib.nn.functional.cross_entropy(a, lib.tensor(t))
        loss.backward()
        return np.append(loss.detach().numpy(), a.grad.numpy())

    _same_bits(run(ge), run(torch))
