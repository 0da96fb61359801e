"""Small float products on the calling thread alone (engine/mkl.py, `SERIAL_WORK`).

A product of at most `mkl.SERIAL_WORK` multiply-adds runs with MKL's thread count set to one
for the calling thread, when MKL's probe says that call rounds as its threaded call does (MKL
picks its kernel by its thread count, so some small shapes do not). Whatever is chosen, the
result is torch's bit for bit, torch running with its own threads.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import cascade, mkl
from tests.reference import torch

pytestmark = [
    pytest.mark.skipif(not mkl.available(), reason=f"{mkl.status()}"),
    pytest.mark.skipif(cascade.THREADS < 2, reason="MKL has one thread: nothing to choose"),
]

ROWS = (5, 8, 10, 12, 64, 65)  # result rows: MKL's threaded kernels differ at 5-7 and 9-11
INNER = (7, 300)
COLS = (10, 16, 256)


def _layouts(a: np.ndarray) -> Iterator[tuple[object, object]]:
    """The same matrix contiguous, transposed-contiguous, and 4 bytes past an aligned start."""
    yield ge.tensor(a), torch.from_numpy(a.copy())
    at = np.ascontiguousarray(a.T)
    yield ge.tensor(at).T, torch.from_numpy(at.copy()).T
    flat = np.zeros(a.size + 1, a.dtype)
    flat[1:] = a.reshape(-1)
    yield ge.tensor(flat)[1:].reshape(a.shape), torch.from_numpy(flat.copy())[1:].reshape(a.shape)


def _flag(dtype: type, n: int, k: int, m: int) -> bool:
    """Whether the plain row-major (n, k) @ (k, m) product was set to run on one thread."""
    char = np.dtype(dtype).char
    return bool(mkl._gemm_args[(char, False, False, m, n, k, 1.0, m, k, 0.0, m)][2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", ROWS)
def test_small_products_are_torchs_bit_for_bit(n: int, dtype: type) -> None:
    """Every shape of the sweep, every layout, mm and addmm: torch's bits."""
    rng = np.random.default_rng(n)
    for k, m in itertools.product(INNER, COLS):
        a = np.ldexp(rng.standard_normal((n, k)), rng.integers(-6, 6, (n, k))).astype(dtype)
        b = rng.standard_normal((k, m)).astype(dtype)
        c = rng.standard_normal(m).astype(dtype)
        for (x, tx), (y, ty) in itertools.product(_layouts(a), _layouts(b)):
            assert np.array_equal(np.asarray(ge.mm(x, y)), torch.mm(tx, ty).numpy()), (k, m)
            mine = ge.addmm(ge.tensor(c), x, y, beta=0.5, alpha=2.0)
            theirs = torch.addmm(torch.from_numpy(c), tx, ty, beta=0.5, alpha=2.0)
            assert np.array_equal(np.asarray(mine), theirs.numpy()), (k, m)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_serial_choice_holds_on_other_values(dtype: type) -> None:
    """Where the probe chose one thread, MKL on one thread and on its threads agree on this
    test's own values too (the probe's answer is the call's, not its random operands')."""
    rng = np.random.default_rng(7)
    lib = mkl.library()
    chosen = 0
    for n, k, m in itertools.product(ROWS, INNER, COLS):
        a = rng.standard_normal((n, k)).astype(dtype) * 3.0
        b = np.ldexp(rng.standard_normal((k, m)), rng.integers(-10, 10, (k, m))).astype(dtype)
        ge.mm(ge.tensor(a), ge.tensor(b))
        if not _flag(dtype, n, k, m):
            continue
        chosen += 1
        threaded = np.empty((n, m), dtype)
        alone = np.empty((n, m), dtype)
        mkl._gemm_args.clear()  # the same call uncached, to compare against its threaded run
        previous = mkl.SERIAL_WORK
        try:
            mkl.SERIAL_WORK = 0
            mkl.gemm(False, False, m, n, k, 1.0, b, m, a, k, 0.0, threaded, m)
            before = lib.MKL_Set_Num_Threads_Local(1)
            mkl.gemm(False, False, m, n, k, 1.0, b, m, a, k, 0.0, alone, m)
            lib.MKL_Set_Num_Threads_Local(before)
        finally:
            mkl.SERIAL_WORK = previous
            mkl._gemm_args.clear()
        assert threaded.tobytes() == alone.tobytes(), (n, k, m)
    assert chosen > 0  # some of these small products run on the calling thread


def test_a_chosen_product_sets_the_threads_for_its_call_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The calling thread's MKL thread count is one during a serial product, then restored."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 784)).astype(np.float32)
    w = rng.standard_normal((784, 256)).astype(np.float32)
    ge.mm(ge.tensor(x), ge.tensor(w))
    if not _flag(np.float32, 64, 784, 256):
        pytest.skip("MKL's one-thread kernel rounds this product differently on this CPU")
    calls: list[int] = []
    real = mkl._set_local_threads

    def spy(threads: int) -> int:
        calls.append(threads)
        return real(threads)

    monkeypatch.setattr(mkl, "_set_local_threads", spy)
    out = ge.mm(ge.tensor(x), ge.tensor(w))
    assert calls == [1, 0]  # one thread, then back to the global count
    assert mkl.library().MKL_Get_Max_Threads() == cascade.THREADS
    assert np.array_equal(np.asarray(out), (torch.from_numpy(x) @ torch.from_numpy(w)).numpy())


def test_products_above_the_limit_keep_mkls_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The work limit is inclusive; one more row goes to MKL's threads unprobed."""
    monkeypatch.setattr(mkl, "SERIAL_WORK", 64 * 64 * 64)
    monkeypatch.setattr(mkl, "_gemm_args", {})
    probed: list[tuple[int, int, int]] = []
    real = mkl._serial_is_exact

    def spy(fn: object, dtype: np.dtype, args: tuple[object, ...], transa: bool, transb: bool,
            m: int, n: int, k: int, *rest: int) -> bool:
        probed.append((m, n, k))
        return real(fn, dtype, args, transa, transb, m, n, k, *rest)

    monkeypatch.setattr(mkl, "_serial_is_exact", spy)
    rng = np.random.default_rng(5)
    for n in (64, 65):
        a = rng.standard_normal((n, 64)).astype(np.float32)
        b = rng.standard_normal((64, 64)).astype(np.float32)
        out = ge.mm(ge.tensor(a), ge.tensor(b))
        assert np.array_equal(np.asarray(out), (torch.from_numpy(a) @ torch.from_numpy(b)).numpy())
    assert probed == [(64, 64, 64)]
    assert not _flag(np.float32, 65, 64, 64)


def test_operands_too_wide_to_probe_keep_mkls_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small product over long leading dimensions (a column slice of a wide matrix) is not
    probed past `PROBE_ELEMENTS`: it keeps MKL's threads, and torch's bits."""
    monkeypatch.setattr(mkl, "_gemm_args", {})
    rng = np.random.default_rng(9)
    wide = rng.standard_normal((64, 4096)).astype(np.float32)
    b = rng.standard_normal((32, 16)).astype(np.float32)
    x, tx = ge.tensor(wide)[:, :32], torch.from_numpy(wide.copy())[:, :32]
    monkeypatch.setattr(mkl, "PROBE_ELEMENTS", 64 * 4096 - 1)
    assert np.array_equal(np.asarray(x @ ge.tensor(b)), (tx @ torch.from_numpy(b)).numpy())
    (args,) = mkl._gemm_args.values()
    assert args[2] is False
    monkeypatch.setattr(mkl, "_gemm_args", {})
    monkeypatch.setattr(mkl, "PROBE_ELEMENTS", 1 << 19)
    ge.mm(x, ge.tensor(b))
    (args,) = mkl._gemm_args.values()  # (the same call, probed: MKL's answer for it)
    assert args[2] == mkl._serial_is_exact(args[1], np.dtype(np.float32), args[3:], False,
                                           False, 16, 64, 32, 16, 4096, 16)
