"""The engine's float sums round exactly as torch's CPU sums do (engine/cascade.py).

Every case computes the same reduction with torch and with the engine on the same float32 or
float64 values and compares the results bit for bit (numpy's pairwise `np.sum` differs from
torch in the last bits for most of these inputs, which is what issue 11 saw in printed losses).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import cascade
from tests.reference import torch

F = ge.nn.functional
DTYPES = (np.float32, np.float64)


@pytest.fixture(autouse=True)
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Reproduce torch's current intra-op thread count (it decides the split above 32768)."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(cascade, "THREADS", threads)
    yield threads


def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, kind: int) -> Any:
    if kind == 0:
        a = rng.standard_normal(shape)
    elif kind == 1:
        a = rng.random(shape) * 1000  # all positive: rounding errors do not cancel
    elif kind == 2:
        a = np.exp(rng.standard_normal(shape) * 5)  # magnitudes over many binades
    else:
        a = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 6, size=shape)
    return a.astype(dtype)


def _same(got: Any, ref: Any) -> None:
    got = got.detach().numpy() if hasattr(got, "detach") else np.asarray(got)
    ref = ref.detach().numpy()
    assert got.dtype == ref.dtype and got.shape == ref.shape
    # Same bits: equal values (NaN where NaN) and the same sign of zero.
    np.testing.assert_array_equal(got, ref, strict=True)
    assert np.array_equal(np.signbit(got), np.signbit(ref))


SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 257, 640, 1000,
         2000, 4095, 4097, 12345, 32767, 32768, 32769, 65537, 99999, 100000]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_full_sum_and_mean(n: int, dtype: Any) -> None:
    rng = np.random.default_rng(n)
    a = _values(rng, (n,), dtype, n % 4)
    t, e = torch.from_numpy(a), ge.tensor(a)
    _same(e.sum(), t.sum())
    _same(e.mean(), t.mean())
    _same(e.reshape(1, n).sum(dim=1, keepdim=True), t.reshape(1, n).sum(dim=1, keepdim=True))


def test_random_sizes_and_distributions() -> None:
    rng = np.random.default_rng(11)
    for n in rng.integers(1, 100_000, 40):
        for kind in range(4):
            a = _values(rng, (int(n),), np.float32, kind)
            _same(ge.tensor(a).sum(), torch.from_numpy(a).sum())


SHAPES = [(64, 10), (10, 64), (3, 5), (2000, 1), (1, 2000), (257, 33), (33, 257), (400, 100),
          (1250, 705), (180, 245), (7, 6, 5), (30, 17, 9), (5, 1, 300), (120, 35, 25),
          (233, 28, 39), (2, 3, 4, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_dim_subset(shape: tuple[int, ...], dtype: Any) -> None:
    rng = np.random.default_rng(sum(shape))
    a = _values(rng, shape, dtype, len(shape))
    t, e = torch.from_numpy(a), ge.tensor(a)
    for r in range(1, len(shape) + 1):
        for dims in itertools.combinations(range(len(shape)), r):
            for keepdim in (False, True):
                _same(e.sum(dim=dims, keepdim=keepdim), t.sum(dim=dims, keepdim=keepdim))
            _same(e.mean(dim=dims), t.mean(dim=dims))
    _same(e.sum(dim=-1), t.sum(dim=-1))


@pytest.mark.parametrize("shape", [(300, 40), (40, 300), (60, 20, 30), (2000, 20)], ids=str)
def test_permuted_views(shape: tuple[int, ...]) -> None:
    """A transposed tensor is summed in memory order, as torch's iterator walks it."""
    rng = np.random.default_rng(3)
    a = _values(rng, shape, np.float32, 3)
    t, e = torch.from_numpy(a), ge.tensor(a)
    for perm in itertools.permutations(range(len(shape))):
        tp, ep = t.permute(perm), e.permute(perm)
        _same(ep.sum(), tp.sum())
        for d in range(len(shape)):
            _same(ep.sum(dim=d), tp.sum(dim=d))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("shape", [(64, 10), (2000,), (100, 1000)], ids=str)
def test_losses(shape: tuple[int, ...], reduction: str) -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 300).astype(np.float32)
    y = (rng.standard_normal(shape) * 300).astype(np.float32)
    tx, ty, ex, ey = torch.from_numpy(x), torch.from_numpy(y), ge.tensor(x), ge.tensor(y)
    _same(F.mse_loss(ex, ey, reduction=reduction),
          torch.nn.functional.mse_loss(tx, ty, reduction=reduction))
    _same(F.l1_loss(ex, ey, reduction=reduction),
          torch.nn.functional.l1_loss(tx, ty, reduction=reduction))
    _same((ex - ey).pow(2).sum(), (tx - ty).pow(2).sum())


def test_issue_11_loss_prints_as_torch() -> None:
    """The two_layer_net loss: numpy's pairwise sum printed 26365524.0 where torch printed
    26365522.0 on such an input; the engine now prints what torch prints."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        yp = (rng.standard_normal((64, 10)) * 600).astype(np.float32)
        y = rng.standard_normal((64, 10)).astype(np.float32)
        got = (ge.tensor(yp) - ge.tensor(y)).pow(2).sum().item()
        assert repr(got) == repr((torch.from_numpy(yp) - torch.from_numpy(y)).pow(2).sum().item())


def test_numpy_would_differ() -> None:
    """These inputs do tell the orders apart: numpy's own sum misses torch's bits on them."""
    rng = np.random.default_rng(5)
    misses = 0
    for n in (640, 2000, 12345, 100000):
        a = _values(rng, (n,), np.float32, 1)
        misses += np.sum(a) != torch.from_numpy(a).sum().numpy()
    assert misses >= 2


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_split(threads: int) -> None:
    """Above 32768 elements torch splits the sum over its threads; each count is reproduced."""
    before = torch.get_num_threads()
    rng = np.random.default_rng(threads)
    try:
        torch.set_num_threads(threads)
        for shape, dims in [((100003,), None), ((1250, 705), (0,)), ((300, 20, 40), (1,)),
                            ((40, 2000), (1,)), ((70000, 3), (0,))]:
            a = _values(rng, shape, np.float32, 1)
            ref = torch.from_numpy(a).sum() if dims is None else torch.from_numpy(a).sum(dims)
            got = cascade.torch_sum(a, dims, threads=threads)
            _same(got, ref)
    finally:
        torch.set_num_threads(before)


def test_vector_width_matches_torch() -> None:
    """The SIMD width reproduced for AVX512-dispatched kernels is the one torch dispatches to
    on this CPU; sums run torch's AVX2 build whatever the CPU."""
    wide = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    assert cascade.VECTOR_BYTES == (64 if wide else 32)
    assert cascade.REDUCE_VECTOR_BYTES == 32


@pytest.mark.parametrize("n", [8, 9, 16, 17, 32, 35, 64, 100, 128, 1000])
def test_sum_has_the_avx2_order_on_every_cpu(n: int) -> None:
    """torch registers no AVX512 sum kernel (plain REGISTER_DISPATCH): on an AVX512 CPU its sum
    of 8+ float32 elements still adds in 8 lanes (the 16-lane order differs in the last bits:
    regression for real programs' printed losses on AVX512 machines)."""
    rng = np.random.default_rng(n)
    for _ in range(4):
        a = (rng.standard_normal(n) * 10).astype(np.float32)
        _same(ge.tensor(a).sum(), torch.from_numpy(a).sum())
        _same(ge.tensor(a).mean(), torch.from_numpy(a).mean())


def test_special_values() -> None:
    for a in ([np.inf, 1.0, -np.inf], [np.nan] + [1.0] * 40, [-0.0] * 20, [1e38] * 40,
              [-0.0], [np.inf] * 100):
        arr = np.asarray(a, np.float32)
        _same(ge.tensor(arr).sum(), torch.from_numpy(arr).sum())
    empty = np.zeros((0, 3), np.float32)
    _same(ge.tensor(empty).sum(dim=0), torch.from_numpy(empty).sum(dim=0))
    _same(ge.tensor(empty).sum(), torch.from_numpy(empty).sum())


@pytest.mark.parametrize("index", [(slice(None), slice(None, None, 2)), (slice(None, None, 3),),
                                   (slice(1, None), slice(2, None)), (slice(None), slice(1, -1))],
                         ids=str)
def test_sliced_views(index: tuple[slice, ...]) -> None:
    """Strided slices: rows that don't merge, and above 32768 elements the per-thread ranges
    that start and end inside a row."""
    rng = np.random.default_rng(4)
    for shape in [(40, 50), (203, 188), (262, 267)]:
        a = _values(rng, shape, np.float32, 1)
        t, e = torch.from_numpy(a)[index], ge.tensor(a)[index]
        _same(e.sum(), t.sum())
        for d in (0, 1):
            _same(e.sum(dim=d), t.sum(dim=d))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("shape", [(5,), (1, 7), (64, 10), (300, 3), (2000, 4), (9, 5, 7),
                                   (4, 3, 5, 6)], ids=str)
def test_nll_loss(shape: tuple[int, ...], reduction: str) -> None:
    """nll_loss sums in its own one-pass 8-level cascade, with and without weights and ignored
    targets (an ignored element also skips its level flush)."""
    rng = np.random.default_rng(len(shape) * 1000 + shape[0])
    c = shape[1] if len(shape) > 1 else shape[0]
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    t = rng.integers(0, c, () if len(shape) == 1 else (shape[0],) + shape[2:])
    w = (rng.random(c) * 3).astype(np.float32)
    for weight, ignore in [(None, -100), (w, -100), (None, 1), (w, 0)]:
        if len(shape) == 1 and ignore >= 0:
            continue
        kw = {"reduction": reduction, "ignore_index": ignore}
        ref = torch.nn.functional.nll_loss(
            torch.from_numpy(x), torch.from_numpy(t),
            weight=None if weight is None else torch.from_numpy(weight), **kw)
        got = F.nll_loss(ge.tensor(x), ge.tensor(t),
                         weight=None if weight is None else ge.tensor(weight), **kw)
        _same(got, ref)


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 33, 64, 127, 128, 129, 257, 300])
def test_nll_loss_small_batches_loop(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to cascade._NLL_LOOP_MAX elements nll_sum runs the kernel's loop on numpy scalars:
    torch's bits (ignored targets, which skip their flush, included), and the vectorised
    levels' bits on the same values, infinities, NaN and signed zeros included."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, 6)) * 5).astype(np.float32)
    t = rng.integers(0, 6, n)
    for ignore in (-100, 2):
        ref = torch.nn.functional.nll_loss(torch.from_numpy(x), torch.from_numpy(t),
                                           reduction="sum", ignore_index=ignore)
        _same(F.nll_loss(ge.tensor(x), ge.tensor(t), reduction="sum", ignore_index=ignore), ref)
    cases = []
    for dtype in (np.float32, np.float64):
        v = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 6, n)).astype(dtype)
        cases.append((v, rng.random(n) < 0.8))
        special = v.copy()
        special[rng.integers(0, n, 3)] = [np.inf, -0.0, np.nan][:min(3, n)] if n >= 3 else np.inf
        cases.append((special, np.ones(n, bool)))
        cases.append((np.full(n, -0.0, dtype), np.ones(n, bool)))
    looped = [cascade.nll_sum(v, ok) for v, ok in cases]
    monkeypatch.setattr(cascade, "_NLL_LOOP_MAX", 0)
    for (v, ok), got in zip(cases, looped):
        want = cascade.nll_sum(v, ok)
        assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), (v, ok)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 16, 17, 18, 31, 32, 33, 48, 49, 64, 65, 100, 127,
                               128, 129, 256, 257, 272, 1000, 4096, 4097, 4113, 70_000])
def test_nll_sum_with_every_target_valid(n: int) -> None:
    """With no target ignored (valid None), nll_sum adds whole runs of elements a level at a
    time (`_nll_sum_dense`): the kernel loop's bits (the vectorised levels' above
    _NLL_LOOP_MAX), infinities, a NaN and signed zeros included, and the loss torch's."""
    rng = np.random.default_rng(1000 + n)
    for dtype in (np.float32, np.float64):
        plain = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 6, n)).astype(dtype)
        special = plain.copy()
        if n:
            special[rng.integers(0, n, min(n, 3))] = [np.inf, -0.0, np.nan][:min(n, 3)]
        zeros = np.full(n, -0.0, dtype)
        mixed = np.where(rng.random(n) < 0.5, -0.0, 0.0).astype(dtype)
        for v in (plain, special, zeros, mixed, -plain, -special):
            got = cascade.nll_sum(v, None)
            want = cascade.nll_sum(v, np.ones(n, bool))  # the kernel's loop, or its levels
            assert type(got) is type(want) and got.dtype == want.dtype and got.shape == ()
            assert got.tobytes() == want.tobytes(), (n, v)
        if n:
            x, t = plain.reshape(n, 1), np.zeros(n, np.int64)
            ref = torch.nn.functional.nll_loss(torch.from_numpy(x), torch.from_numpy(t),
                                               reduction="sum")
            _same(F.nll_loss(ge.tensor(x), ge.tensor(t), reduction="sum"), ref)


def test_fallback_without_sequential_reduce(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a numpy whose add.reduce over an outer axis is not in order, the accumulate fallback
    gives the same bits."""
    rng = np.random.default_rng(8)
    cases = [((5000,), None), ((300, 70), (0,)), ((70, 300), (1,)), ((40, 30, 20), (0, 2))]
    arrays = [(_values(rng, s, np.float32, 1), d) for s, d in cases]
    fast = [cascade.torch_sum(a, d) for a, d in arrays]
    monkeypatch.setattr(cascade, "_REDUCE_SEQUENTIAL", False)
    for (a, d), want in zip(arrays, fast):
        got = cascade.torch_sum(a, d)
        _same(got, torch.from_numpy(want))
        _same(got, torch.from_numpy(a).sum() if d is None else torch.from_numpy(a).sum(d))


@pytest.mark.parametrize("shape,bias", [((64, 100), (100,)), ((3, 4, 5), (4, 1)),
                                        ((2000, 1), (1,)), ((40000,), ())])
def test_a_broadcast_gradient_sums_as_torch(shape, bias):
    """sum_to_size (the VJP of broadcasting: a bias's gradient) reduces in torch's order."""
    rng = np.random.default_rng(3)
    g = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(bias).astype(np.float32)
    grads = []
    for lib in (ge, torch):
        x = lib.tensor(b, requires_grad=True)
        (x * lib.tensor(g)).sum().backward()
        grads.append(x.grad.numpy())
    assert grads[0].tobytes() == grads[1].tobytes()


def _small_cases(rng: np.random.Generator) -> Iterator[tuple[Any, Any]]:
    shapes = ([(n,) for n in range(1, 70)] + [(n, 1) for n in range(1, 70)]
              + [(a, b) for a in range(1, 9) for b in range(1, 9)] + [(2, 3, 4), (1, 16, 1)])
    for dtype in DTYPES:
        for shape in shapes:
            a = _values(rng, shape, dtype, 3)
            if a.size > 3:
                a.flat[::4] = -0.0
            yield a, None
            for r in range(1, len(shape) + 1):
                yield from ((a, dims) for dims in itertools.combinations(range(len(shape)), r))


@pytest.mark.parametrize("vector_bytes", [32, 64])
def test_small_sums_take_the_vector_paths_additions(vector_bytes: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A sum of at most SMALL_SUM elements (numpy scalars) has the bits of the vector path,
    for the AVX2 and AVX512 widths (the one torch's sum runs is checked against torch below)."""
    monkeypatch.setattr(cascade, "REDUCE_VECTOR_BYTES", vector_bytes)
    for a, dims in _small_cases(np.random.default_rng(5)):
        for keepdim in (False, True):
            got = cascade.torch_sum(a, dims, keepdim)
            with monkeypatch.context() as m:
                m.setattr(cascade, "SMALL_SUM", 0)
                ref = cascade.torch_sum(a, dims, keepdim)
            assert got.shape == ref.shape and got.dtype == ref.dtype
            assert got.tobytes() == ref.tobytes(), (a.shape, dims)


def test_small_sums_as_torch() -> None:
    for a, dims in _small_cases(np.random.default_rng(6)):
        t = torch.from_numpy(a)
        _same(ge.tensor(a).sum(dim=dims), t.sum() if dims is None else t.sum(dim=dims))
