"""The fast float32 exp and log (engine/vecmath.py: `sleef_expf`, the normal-input `logf` of
log_softmax) are torch's to the last bit, on small arrays (the 64-row batches of a training step,
where their numpy call count is the cost) and on special values: signed zeros, subnormals,
infinities, NaN, exp's underflow and overflow edges, the edges of its argument reduction.

Two kinds of check: against torch through ops whose result is the exponential itself (elu's
gradient at x <= 0 is exp(x) times ones; softmax of a row [0, v] with v < -17 is exp(v) times
1) and through log_softmax / cross_entropy at small shapes; and the fast forms against the
step-by-step forms they replace (`fma32` at every fused multiply-add), on sampled bit patterns:
scripts/verify_small_math.py runs that comparison on all 2**32 inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import vecmath
from tests.reference import torch

F32 = np.float32
TINY = np.finfo(F32).tiny


def _differ(mine: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Where two float32 arrays differ in bits (NaNs: any payload)."""
    assert mine.dtype == ref.dtype == F32 and mine.shape == ref.shape
    return (mine.view(np.int32) != ref.view(np.int32)) & ~(np.isnan(mine) & np.isnan(ref))


def _bits_equal(mine: np.ndarray, ref: np.ndarray, x: np.ndarray | None = None) -> None:
    differ = _differ(mine, ref)
    where = np.flatnonzero(differ)[:5]
    inputs = "" if x is None else f" (inputs {x.reshape(-1)[where].tolist()})"
    assert not differ.any(), f"{int(differ.sum())} of {mine.size} differ at {where}{inputs}"


def _neighbours(values: list[float], steps: int = 3) -> np.ndarray:
    """Each value and its float32 neighbours up to `steps` ulps either way."""
    out = []
    for v in np.array(values, F32):
        lo = hi = v
        out.append(v)
        for _ in range(steps):
            lo, hi = np.nextafter(lo, F32(-np.inf)), np.nextafter(hi, F32(np.inf))
            out += [lo, hi]
    return np.array(out, F32)


# exp's edges: its result's underflow to subnormals (-87.34) and to 0 (-103.97; SLEEF's mask
# at -104), overflow (88.72; SLEEF's at 100), the clamp at +-110, q's rounding ties (x / ln 2 at
# +-(k + 1/2)), tiny arguments (s = x exactly) and the specials
EXP_EDGES = _neighbours([0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, TINY, -TINY, 1e-20, -1e-20,
                         -87.33654, -87.33655, -88.72283, -103.27893, -103.97208, -104.0,
                         88.72283, 88.72284, 100.0, -110.0, 110.0, 1e30, -1e30, 3.4e38, -3.4e38,
                         *(float(np.log(2.0) * (k + 0.5)) for k in range(-150, 130, 7)),
                         0.34657359, -0.34657359])
SPECIALS = np.array([np.inf, -np.inf, np.nan, -np.nan], F32)


def _exp_probe(rng: np.random.Generator, n: int) -> np.ndarray:
    """n float32 values: the edges, the specials, random bit patterns, random small values."""
    rand_bits = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(F32)
    small = (rng.standard_normal(n) * 6).astype(F32)
    return np.concatenate([EXP_EDGES, SPECIALS, rand_bits, small])[:n]


@pytest.mark.parametrize("n", [640, 6400, 10 << 14])
def test_expf_is_the_step_by_step_form(n: int) -> None:
    """`sleef_expf` (float64 roundings, no double-rounding checks) is `_expf(x, fma32)`."""
    x = _exp_probe(np.random.default_rng(n), n)
    with np.errstate(all="ignore"):
        _bits_equal(vecmath.sleef_expf(x), vecmath._expf(x, vecmath.fma32), x)
        _bits_equal(vecmath.sleef_expf(x.reshape(-1, 10)),
                    vecmath._expf(x, vecmath.fma32).reshape(-1, 10))


def test_expf_of_a_0d_array() -> None:
    for v in (0.5, -0.0, -104.5, 89.0, np.nan):
        x = np.array(v, F32)
        got = vecmath.sleef_expf(x)
        assert type(got) is F32
        with np.errstate(all="ignore"):
            _bits_equal(np.array([got]), vecmath._expf(x.reshape(1), vecmath.fma32))


def _positive_normals(rng: np.random.Generator, n: int) -> np.ndarray:
    bits = rng.integers(0x00800000, 0x7F800000, n, dtype=np.int64).astype(np.uint32)
    near_one = (1 + rng.standard_normal(n) * 1e-3).astype(F32)  # log's smallest results
    sums = rng.uniform(1, 1000, n).astype(F32)  # log_softmax's: 1 to the row length
    edges = _neighbours([TINY, 0.75, 1.0, 1.5, 2.0, 3.4e38])
    edges = edges[(edges >= TINY) & (edges < np.inf)]
    return np.concatenate([edges, bits.view(F32), near_one, sums])[:n]


@pytest.mark.parametrize("n", [64, 6400, 1 << 17])
def test_logf_is_the_step_by_step_form(n: int) -> None:
    """log_softmax's logf on positive normal sums (float64 roundings, no checks) is the
    kernel with `fma32` at each step, and `_logf_u1` (every input) there too."""
    d = _positive_normals(np.random.default_rng(n), n)
    with np.errstate(all="ignore"):
        want = vecmath._logf_normal(d, vecmath.fma32)
        _bits_equal(vecmath._logf_normal(d, vecmath._fma_unchecked), want, d)
        _bits_equal(vecmath._sleef_logf_u1(d), want, d)
        _bits_equal(vecmath._sleef_logf_u1(d), vecmath._logf_u1(d, vecmath.fma32), d)


def test_logf_special_inputs() -> None:
    """Zeros, subnormals, negatives, inf and NaN take SLEEF's special cases."""
    d = np.concatenate([SPECIALS, _neighbours([0.0, 1e-45, 1e-40, -1.0, TINY])]).astype(F32)
    with np.errstate(all="ignore"):
        got = vecmath._sleef_logf_u1(d)
        want = vecmath._logf_u1(d, vecmath.fma32)
    want = np.where(d == np.inf, F32(np.inf), want)
    want = np.where((d < 0) | np.isnan(d), F32(np.nan), want)
    want = np.where(d == 0, F32(-np.inf), want)
    _bits_equal(got, want, d)


def _torch_elu_grad(lib: Any, x: np.ndarray) -> np.ndarray:
    t = lib.tensor(x, requires_grad=True)
    (g,) = lib.autograd.grad(lib.nn.functional.elu(t), t, lib.ones_like(t))
    return np.asarray(g.numpy())


@pytest.mark.parametrize("rows", [64, 640])
def test_exp_against_torch_through_elus_gradient(rows: int) -> None:
    """elu's gradient at x <= 0 is exp(x) exactly (times 1), from torch's vector loop (SLEEF)
    in rows of 16: the non-positive probe values against torch."""
    x = _exp_probe(np.random.default_rng(rows), rows * 16)
    x = np.where(x > 0, -x, x)  # (NaN stays)
    x = x[~np.isnan(x)]
    x = np.resize(x, (rows, 16)).astype(F32)
    _bits_equal(_torch_elu_grad(ge, x), _torch_elu_grad(torch, x), x)


def test_exp_against_torch_through_softmax() -> None:
    """softmax of the row [0, v, ...] with every v < -22.5 is exp(v) (the sum rounds to 1),
    subnormal and zero results included; rows of 10 and of 100 as in a training step."""
    rng = np.random.default_rng(7)
    edges = _neighbours([-87.33654, -103.97208, -104.0])
    for cols in (10, 100):
        v = -rng.uniform(22.5, 106, (64, cols)).astype(F32)
        v[:, 0] = 0
        v[1:3, 1:] = np.resize(edges, (2, cols - 1))
        mine = ge.softmax(ge.tensor(v), -1).numpy()
        ref = torch.softmax(torch.tensor(v), -1).numpy()
        _bits_equal(mine, ref, v)


ROWS = {
    "64x10": (64, 10),
    "64x100": (64, 100),
    "3x7": (3, 7),
    "5x16": (5, 16),
}


def _logits(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Random logits with special rows: a dominant logit (a sum just above 1), underflowing
    spreads, signed zeros, subnormals, huge magnitudes whose differences overflow, -inf, +inf
    and NaN entries."""
    x = (rng.standard_normal(shape) * 4).astype(F32)
    rows, cols = shape
    specials = [
        np.full(cols, 0.0), np.full(cols, -0.0), np.full(cols, 1e-40),
        np.r_[30.0, np.zeros(cols - 1)], np.r_[-200.0, np.full(cols - 1, 5.0)],
        np.r_[3e38, np.full(cols - 1, -3e38)], np.r_[-np.inf, np.ones(cols - 1)],
        np.r_[np.inf, np.ones(cols - 1)], np.r_[np.nan, np.ones(cols - 1)],
        np.full(cols, -np.inf), np.r_[88.0, np.full(cols - 1, -17.0)],
    ]
    for i, row in enumerate(specials[:rows]):
        x[i] = row.astype(F32)
    return x


@pytest.mark.parametrize("shape", ROWS.values(), ids=ROWS.keys())
def test_log_softmax_and_cross_entropy_against_torch(shape: tuple[int, int]) -> None:
    """log_softmax and its gradient, cross_entropy and its gradient: torch's bits at a training
    step's shapes, on random and special rows."""
    rng = np.random.default_rng(shape[0] * shape[1])
    x = _logits(shape, rng)
    g = rng.standard_normal(shape).astype(F32)
    g[0, 0], g[1, 1] = 0.0, -0.0
    target = rng.integers(0, shape[1], shape[0])
    finite = np.isfinite(x).all(axis=1)

    def run(lib: Any) -> list[np.ndarray]:
        a = lib.tensor(x, requires_grad=True)
        out = lib.log_softmax(a, -1)
        (ga,) = lib.autograd.grad(out, a, lib.tensor(g))
        b = lib.tensor(x[finite], requires_grad=True)
        loss = lib.nn.functional.cross_entropy(b, lib.tensor(target[finite]))
        loss.backward()
        return [out.detach().numpy(), ga.numpy(), loss.detach().numpy().reshape(1),
                b.grad.numpy()]

    for mine, ref in zip(run(ge), run(torch), strict=True):
        _bits_equal(mine, ref)
