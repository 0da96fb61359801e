"""float32 sigmoid, silu, expm1, elu, log1p, softplus, gelu(approximate='tanh'), pow, logsigmoid
(and their gradients) are torch's to the last bit (engine/vecmath.py).

Every case runs the same values through torch and the engine and compares the float32 results
bit for bit: wide random inputs, every size 1..64 (the vector loop's tails), torch's two-thread
split above 32768 elements, views whose layout changes which elements torch vectorises
(transposed, sliced, stepped, expanded) and special values (infinities, NaN, signed zeros,
subnormals, the overflow and underflow edges of exp).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import cascade, vecmath
from tests.reference import torch

F32 = np.float32
SPECIAL = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.17e-38,
                    88.72, 88.73, -87.3, -88.8, -103.9, -103.98, -104.1, 100.5, -100.0, 3e38,
                    -3e38, 16.6, -16.6, 0.5, -0.5, 1e-8, -1e-8], F32)


@pytest.fixture(autouse=True)
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Reproduce torch's current intra-op thread count (it decides the split above 32768)."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(cascade, "THREADS", threads)
    yield threads


def _bits_equal(mine: np.ndarray, ref: np.ndarray) -> None:
    assert mine.dtype == ref.dtype == F32 and mine.shape == ref.shape
    differ = (mine.view(np.int32) != ref.view(np.int32)) & ~(np.isnan(mine) & np.isnan(ref))
    where = np.argwhere(differ)[:5].tolist()
    assert not differ.any(), f"{int(differ.sum())} of {mine.size} differ, e.g. at {where}"


OPS: dict[str, Callable[[Any, Any], Any]] = {
    "sigmoid": lambda lib, t: lib.sigmoid(t),
    "silu": lambda lib, t: lib.nn.functional.silu(t),
    "expm1": lambda lib, t: lib.expm1(t),
    "elu": lambda lib, t: lib.nn.functional.elu(t),
    "elu_alpha": lambda lib, t: lib.nn.functional.elu(t, alpha=0.7),
    "log1p": lambda lib, t: lib.log1p(t),
    "softplus": lambda lib, t: lib.nn.functional.softplus(t),
    "softplus_beta": lambda lib, t: lib.nn.functional.softplus(t, beta=1.5, threshold=8.0),
    "gelu_tanh": lambda lib, t: lib.nn.functional.gelu(t, approximate="tanh"),
    # SLEEF's powf in the vector loop, glibc's double pow in the tail; the gradients' x.pow(e - 1)
    # too (x ** 1.5 is left out: its gradient's x.pow(0.5) is torch's sqrt kernel)
    "pow_4": lambda lib, t: t ** 4,
    "pow_2_5": lambda lib, t: t ** 2.5,
    "pow_neg": lambda lib, t: lib.pow(t, -1.25),
    "pow_7": lambda lib, t: t.pow(7.0),
    "rpow": lambda lib, t: 1.7 ** t,
    "logsigmoid": lambda lib, t: lib.nn.functional.logsigmoid(t),
    "mish": lambda lib, t: lib.nn.functional.mish(t),
    "selu": lambda lib, t: lib.nn.functional.selu(t),
    "celu": lambda lib, t: lib.nn.functional.celu(t, 0.7),
    # no exponential, but the backward's vector code and scalar lambda differ at NaN
    "hardsigmoid": lambda lib, t: lib.nn.functional.hardsigmoid(t * 0.5),
    "hardswish": lambda lib, t: lib.nn.functional.hardswish(t * 0.5),
}

VIEWS: dict[str, Callable[[Any], Any]] = {
    "contiguous": lambda t: t,
    "transposed": lambda t: t.t() if t.dim() == 2 else t,
    "columns": lambda t: t[:, :5] if t.dim() == 2 else t[:7],
    "stepped": lambda t: t[::2, ::3] if t.dim() == 2 else t[::3],
    "expanded": lambda t: t[:1].expand(4, -1) if t.dim() == 2 else t[:1].expand(40),
}


def _inputs(rng: np.random.Generator) -> list[np.ndarray]:
    return [(rng.standard_normal(20000) * 4).astype(F32),
            rng.uniform(-110, 110, 40001).astype(F32),  # two threads' chunks, a tail in each
            (rng.standard_normal((37, 29)) * 8).astype(F32),
            (rng.standard_normal((3, 12000)) * 2).astype(F32),
            np.tile(SPECIAL, 3)]


def _compare(op: str, view: Callable[[Any], Any], x: np.ndarray, rng: np.random.Generator) -> None:
    tx = view(torch.from_numpy(x.copy())).detach().requires_grad_()
    ex = view(ge.tensor(x.copy())).detach().requires_grad_()
    ty, ey = OPS[op](torch, tx), OPS[op](ge, ex)
    _bits_equal(ey.detach().numpy(), ty.detach().numpy())
    g = rng.standard_normal(tuple(ty.shape)).astype(F32)
    ty.backward(torch.from_numpy(g))
    ey.backward(ge.tensor(g))
    _bits_equal(ex.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("view", VIEWS)
def test_values_and_grads_bit_exact(op: str, view: str) -> None:
    rng = np.random.default_rng(7)
    for x in _inputs(rng):
        _compare(op, VIEWS[view], x, rng)


@pytest.mark.parametrize("op", OPS)
def test_every_tail_length(op: str) -> None:
    rng = np.random.default_rng(8)
    for n in range(1, 65):
        _compare(op, VIEWS["contiguous"], (rng.standard_normal(n) * 6).astype(F32), rng)


@pytest.mark.parametrize("op", OPS)
def test_scalars_and_empty(op: str) -> None:
    rng = np.random.default_rng(11)
    for x in (np.array(-0.7, F32), np.zeros((0, 3), F32), np.full((1, 1, 5), 2.5, F32)):
        tx = torch.from_numpy(x.copy()).requires_grad_()
        ex = ge.tensor(x.copy()).requires_grad_()
        ty, ey = OPS[op](torch, tx), OPS[op](ge, ex)
        _bits_equal(ey.detach().numpy(), ty.detach().numpy())
        g = rng.standard_normal(x.shape).astype(F32)
        ty.backward(torch.from_numpy(g))
        ey.backward(ge.tensor(g))
        _bits_equal(ex.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("view", VIEWS)
def test_pow_tensor_exponent(view: str) -> None:
    """tensor ** tensor (SLEEF's powf, glibc's powf in the tail) and its base gradient; every
    pair of special values, wide magnitudes, each tail length. (The exponent's gradient needs
    torch's log, MKL's: not compared here.)"""
    rng = np.random.default_rng(13)
    grid_x, grid_y = (a.reshape(-1) for a in np.meshgrid(SPECIAL, np.append(SPECIAL, [
        2, -3, 7, 16777216, 16777217, -1.5, 1e10])))
    with np.errstate(over="ignore"):
        wide = np.exp(rng.uniform(-90, 90, 30000)).astype(F32)
    cases = [(grid_x, grid_y), (wide, rng.uniform(-40, 40, wide.size)),
             (rng.standard_normal((37, 29)) * 3, rng.uniform(-4, 4, (37, 29)))]
    cases += [(rng.standard_normal(n) * 3, rng.uniform(-4, 4, n)) for n in range(1, 65, 7)]
    for x, y in cases:
        x, y = np.asarray(x, F32), np.asarray(y, F32)
        tx = VIEWS[view](torch.from_numpy(x.copy())).detach().requires_grad_()
        ex = VIEWS[view](ge.tensor(x.copy())).detach().requires_grad_()
        ty, ey = VIEWS[view](torch.from_numpy(y.copy())), VIEWS[view](ge.tensor(y.copy()))
        tr, er = tx ** ty, ex ** ey
        _bits_equal(er.detach().numpy(), tr.detach().numpy())
        g = rng.standard_normal(tuple(tr.shape)).astype(F32)
        tr.backward(torch.from_numpy(g))
        er.backward(ge.tensor(g))
        _bits_equal(ex.grad.numpy(), tx.grad.numpy())


def test_pow_scalar_exponents() -> None:
    """Every exponent torch special-cases (2, 3, -1, -2, 0.5, -0.5, 0, 1) or sends to powf,
    over special values: the engine's kernel choice is torch's."""
    x = np.tile(np.append(SPECIAL, [2, -3, 7, 1e10, 0.999999, 1.000001]).astype(F32), 3)
    for e in (2, 3, -1, -2, -0.5, 0, 1, 4, 2.5, -1.25, 1 / 3, 100, 1e-3, 16777217, -7, np.inf,
              -np.inf, np.nan, 2.0, 3.0):
        with np.errstate(all="ignore"):
            _bits_equal((ge.tensor(x) ** e).numpy(), (torch.from_numpy(x) ** e).numpy())


def test_logsigmoid_rejects_integers_and_module() -> None:
    """torch's error for an integral input; nn.LogSigmoid is the function."""
    for lib in (torch, ge):
        with pytest.raises(NotImplementedError,
                           match="\"log_sigmoid_cpu\" not implemented for 'Long'"):
            lib.nn.functional.logsigmoid(lib.tensor([1, 2]))
    x = np.random.default_rng(14).standard_normal(50).astype(F32)
    assert repr(ge.nn.LogSigmoid()) == repr(torch.nn.LogSigmoid()) == "LogSigmoid()"
    _bits_equal(ge.nn.LogSigmoid()(ge.tensor(x)).numpy(),
                torch.nn.LogSigmoid()(torch.from_numpy(x)).numpy())
    y = ge.nn.functional.logsigmoid(ge.tensor(x, requires_grad=True))
    assert y.grad_fn.name() == "LogSigmoidBackward0"
    for lib in (torch, ge):
        with pytest.raises(NotImplementedError, match="\"mish_cpu\" not implemented for 'Long'"):
            lib.nn.functional.mish(lib.tensor([1, 2]))
    assert repr(ge.nn.Mish(inplace=True)) == repr(torch.nn.Mish(inplace=True))
    assert ge.nn.functional.mish(ge.tensor(x, requires_grad=True)).grad_fn.name() == "MishBackward0"
    for lib in (torch, ge):
        with pytest.raises(NotImplementedError, match="\"elu_cpu\" not implemented for 'Long'"):
            lib.nn.functional.selu(lib.tensor([1, 2]))
        with pytest.raises(RuntimeError, match="ZeroDivisionError: alpha cannot be 0 for CELU"):
            lib.nn.functional.celu(lib.tensor([1.0]), 0.0)
    for lib_mods in zip(*((lib.nn.SELU(), lib.nn.CELU(), lib.nn.CELU(0.5, inplace=True),
                           lib.nn.SELU(inplace=True)) for lib in (ge, torch))):
        assert repr(lib_mods[0]) == repr(lib_mods[1])
    for mods in zip(*((lib.nn.Hardsigmoid(), lib.nn.Hardswish(inplace=True))
                      for lib in (ge, torch))):
        assert repr(mods[0]) == repr(mods[1])
    x3 = np.array([-3, 3, np.nan, -3.0000002, 2.9999998, 0], F32)
    for name, node in (("hardsigmoid", "HardsigmoidBackward0"),
                       ("hardswish", "HardswishBackward0")):
        with pytest.raises(NotImplementedError,
                           match=f"\"{name}_cpu\" not implemented for 'Long'"):
            getattr(ge.nn.functional, name)(ge.tensor([1, 2]))
        # the kinks and NaN, 16 elements in the vector loop and 2 in the tail
        tx = torch.from_numpy(np.repeat(x3, 3)).requires_grad_()
        ex = ge.tensor(np.repeat(x3, 3)).requires_grad_()
        ty, ey = getattr(torch.nn.functional, name)(tx), getattr(ge.nn.functional, name)(ex)
        assert ey.grad_fn.name() == node
        _bits_equal(ey.detach().numpy(), ty.detach().numpy())
        ty.sum().backward()
        ey.sum().backward()
        _bits_equal(ex.grad.numpy(), tx.grad.numpy())
    for name, node in (("selu", "EluBackward0"), ("celu", "CeluBackward0")):
        y = getattr(ge.nn.functional, name)(ge.tensor(x, requires_grad=True))
        assert y.grad_fn.name() == node


def test_exp_kernels_differ_where_torch_does() -> None:
    """The two exps are distinct: each matches its own torch path and differs from the other
    somewhere on these inputs (else the test could not tell the loop's split)."""
    x = np.random.default_rng(9).uniform(-20, 20, 4096).astype(F32)
    vec, tail = vecmath.sleef_expf(x), vecmath.libm_expf(x)
    assert (vec != tail).any()
    # torch's vector loop: a contiguous run of whole 16-element steps
    ref = torch.sigmoid(torch.from_numpy(-x)).numpy()
    _bits_equal(np.float32(1) / (np.float32(1) + vec), ref)
    # torch's scalar lambda: a stepped view never takes the vector loop
    stepped = np.repeat(x, 2)
    ref = torch.sigmoid(torch.from_numpy(-stepped)[::2]).numpy()
    _bits_equal(np.float32(1) / (np.float32(1) + tail), ref)


def test_vector_lanes_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which elements torch vectorises: whole 16-element steps of each coalesced run (AVX2)."""
    monkeypatch.setattr(cascade, "VECTOR_BYTES", 32)
    a = np.zeros((3, 40), F32)
    lanes = vecmath.vector_lanes(a)
    assert lanes.reshape(-1)[:112].all() and not lanes.reshape(-1)[112:].any()  # one run of 120
    cols = vecmath.vector_lanes(a[:, :20])  # three runs of 20: 16 each, then a 4-element tail
    assert cols[:, :16].all() and not cols[:, 16:].any()
    assert not vecmath.vector_lanes(a[:, ::2]).any()  # stride 2: the scalar loop only
    assert vecmath.vector_lanes(a.T).reshape(-1).sum() == 112
    # a unary kernel on a stride-0 input: the vector loop broadcasts it (is_contiguous_scalar)
    assert vecmath.vector_lanes(np.broadcast_to(a[0, :1], (40,))).sum() == 32
    # an output allocated C-contiguous (number ** tensor) against a transposed input: scalar
    one = np.broadcast_to(F32(1), (40, 3))
    assert not vecmath.vector_lanes(one, a.T, contiguous_out=True).any()
    assert vecmath.vector_lanes(one, a.T).reshape(-1).sum() == 112


def test_float64_keeps_numpy() -> None:
    """float64 is not on the exact path (torch's float64 exps are other kernels): numpy's
    values, within float64 rounding of torch's."""
    x = np.random.default_rng(10).standard_normal(100)
    np.testing.assert_allclose(ge.sigmoid(ge.tensor(x)).numpy(),
                               torch.sigmoid(torch.from_numpy(x)).numpy(), rtol=1e-15, atol=0)


def test_set_exact_off_gives_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vecmath.set_exact(False)` puts the ops back on numpy's functions (faster, not torch's)."""
    x = np.random.default_rng(12).uniform(-20, 20, 4096).astype(F32)
    exact = ge.sigmoid(ge.tensor(x)).numpy()
    monkeypatch.setattr(vecmath, "EXACT", True)
    vecmath.set_exact(False)
    assert vecmath.EXACT is False
    loose = ge.sigmoid(ge.tensor(x)).numpy()
    np.testing.assert_array_equal(loose, np.float32(1) / (np.float32(1) + np.exp(-x)))
    assert (loose != exact).any()
    vecmath.set_exact(True)
    np.testing.assert_array_equal(ge.sigmoid(ge.tensor(x)).numpy(), exact)


@pytest.mark.skipif(vecmath._GLIBC_LOGF is None, reason="glibc's logf is not this process's libm")
def test_libm_logf_is_glibcs() -> None:
    """`libm_logf` (glibc's algorithm in numpy) equals glibc's `logf` itself, called element by
    element: random bit patterns (every exponent, negatives, subnormals, NaNs) and specials."""
    rng = np.random.default_rng(13)
    bits = rng.integers(0, 2 ** 32, 100_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(F32), SPECIAL, rng.uniform(0, 1, 20_000).astype(F32),
                        np.float32([1.0, 0.999999, 1.000001, 2.0, 0.5])])
    ref = np.array([vecmath._GLIBC_LOGF(v) for v in x.tolist()], F32)
    _bits_equal(vecmath.libm_logf(x), ref)
    _bits_equal(vecmath.libm_logf(x[:7]), ref[:7])  # the few-element path calls glibc


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_binary_cross_entropy_bit_exact(dtype: Any, reduction: str) -> None:
    """binary_cross_entropy's values (torch's scalar kernel: glibc's logf and log1pf) and its
    input gradient (torch's order: grad * (x - t) / max((1 - x) * x, eps), weight, / numel)."""
    rng = np.random.default_rng(14)
    n = 40_009
    x = rng.uniform(0, 1, n).astype(dtype)
    x[:6] = [0.0, 1.0, 1e-30, 1 - 1e-7, 0.5, 1e-45]
    target = np.where(rng.uniform(size=n) < 0.3, rng.uniform(size=n), rng.integers(0, 2, n))
    weight = rng.uniform(0.5, 2, n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype) if reduction == "none" else dtype(0.7)
    for w in (None, weight):
        got = []
        for lib in (ge, torch):
            xt = lib.tensor(x, requires_grad=True)
            loss = lib.nn.functional.binary_cross_entropy(
                xt, lib.tensor(target.astype(dtype)),
                weight=None if w is None else lib.tensor(w), reduction=reduction)
            loss.backward(lib.tensor(grad))
            got.append((loss.detach().numpy(), xt.grad.numpy()))
        for mine, ref in zip(*got):
            np.testing.assert_array_equal(mine, ref)


def test_fma_chain_is_fma32_step_for_step() -> None:
    """`_FmaChain` (the FMAs of a small kernel checked at once) gives `fma32`'s values: on
    random bit patterns (subnormals, NaNs, infinities), and where a float64 sum lands on a
    float32 midpoint by double rounding (1 + 2**-23 + 2**-24 - 2**-70 rounds to the midpoint;
    fma32's answer, 1 + 2**-23, is below it) the element is recomputed."""
    a, b, c = F32(1 + 2.0 ** -23), F32(2.0 ** -24 * (1 - 2.0 ** -23)), F32(1 + 2.0 ** -23)
    x = np.full(300, a, F32)
    x[::7] = F32(1.5)

    def kernel(v: np.ndarray, fma: Callable[..., np.ndarray]) -> np.ndarray:
        return fma(fma(v, b, c), F32(1), F32(0))

    want = kernel(x, vecmath.fma32)
    assert want[1] == c  # fma32 is the correctly rounded fma
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(c)) != c  # double rounding
    _bits_equal(vecmath._chained(kernel, 2, x), want)
    rng = np.random.default_rng(14)
    for n in (16, 640, 10240):
        bits = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(F32)
        with np.errstate(all="ignore"):
            _bits_equal(vecmath.sleef_expf(bits), vecmath._expf(bits, vecmath.fma32))
            d = np.abs(bits)
            d = d[np.isfinite(d) & (d > 0)]  # (0, inf, NaN: SLEEF's special cases, not the kernel)
            _bits_equal(vecmath._sleef_logf_u1(d), vecmath._logf_u1(d, vecmath.fma32))
            normal = d[d >= np.finfo(F32).tiny]  # all normal: the shorter kernel
            _bits_equal(vecmath._sleef_logf_u1(normal), vecmath._logf_u1(normal, vecmath.fma32))
