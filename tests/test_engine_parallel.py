"""Large elementwise ops split over threads (engine/parallel.py) give the very bits of one call.

Every op whose forward is a plain ufunc is run on the same large inputs split (2 and 3 threads)
and unsplit (1 thread), including NaN, infinities, signed zeros and subnormals, and the results
are compared bit for bit; then whole forward and backward passes, the thread setting, the
floating-point error handling and the memory a split call takes.
"""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import mkl, namespaces, parallel
from gradserve.engine.registry import OPS

UFUNC_OPS = sorted(name for name, op in OPS.items() if op.ufunc is not None)


def _computes_floats(name: str) -> bool:
    return "f" in {types[0] for types in getattr(OPS[name].ufunc, "types", ())}


# each ufunc op with the dtypes it computes: floats, or integers for the bitwise ops
UFUNC_CASES = [(name, dtype) for name in UFUNC_OPS
               for dtype in ((np.float32, np.float64) if _computes_floats(name)
                             else (np.int32, np.int64))]
ROWS = 2 * parallel.MIN_ELEMENTS // 64 + 77  # not a multiple of the blocks


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restores the thread count; ops split from `MIN_ELEMENTS` on (the machinery is what these
    tests check, on arrays smaller than the default `MIN_SPLIT_ELEMENTS`)."""
    before = parallel.threads()
    monkeypatch.setattr(parallel, "MIN_SPLIT_ELEMENTS", parallel.MIN_ELEMENTS)
    yield
    parallel.set_threads(before)


def test_ops_below_the_split_size_run_in_one_thread() -> None:
    before = parallel.threads()
    parallel.set_threads(2)
    try:
        small = np.ones(parallel.MIN_SPLIT_ELEMENTS - 64, np.float32)
        assert parallel.split_shape(np.sin, (small,)) is None
        big = np.ones(parallel.MIN_SPLIT_ELEMENTS, np.float32)
        assert parallel.split_shape(np.sin, (big,)) == big.shape
    finally:
        parallel.set_threads(before)


def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if not np.issubdtype(dtype, np.floating):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    a = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, size=shape)).astype(dtype)
    flat = a.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0,
                         np.finfo(dtype).tiny / 4, np.finfo(dtype).max], dtype=dtype)
    where = rng.integers(0, flat.size, size=200)
    flat[where] = specials[rng.integers(0, specials.size, size=where.size)]
    return a


def _bits(a: Any) -> tuple[Any, Any, bytes]:
    a = np.asarray(a)
    return a.dtype, a.shape, a.tobytes()


def test_the_split_ops_are_the_elementwise_ufuncs() -> None:
    # the ops the engine splits: their forward is one ufunc of their inputs alone
    assert {"mul", "neg", "abs", "asinh", "floor"} <= set(UFUNC_OPS)
    # (float32 sinh is torch's SLEEF/glibc kernel now, engine/vecmath.py: not one ufunc)
    for name in ("add", "sum", "matmul", "cumsum", "softmax", "where", "sinh"):
        assert OPS[name].ufunc is None


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("name", ["sin", "cos", "exp", "log", "tanh", "sqrt"])
def test_mkl_routed_ops_split_numpys_ufunc_without_mkl(name: str, monkeypatch) -> None:
    """sin, exp, log... are MKL's VML calls when MKL is loaded (engine/mkl.py), else numpy's
    ufunc split over the engine's threads like any ufunc op, with one call's bits."""
    x = np.abs(np.random.default_rng(3).standard_normal(parallel.MIN_ELEMENTS * 2)).astype(
        np.float32)
    calls = []
    real = parallel.split_call
    monkeypatch.setattr(parallel, "split_call",
                        lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    parallel.set_threads(2)
    with mkl.turned_off():
        got = getattr(ge, name)(ge.tensor(x)).numpy()
    assert calls == [getattr(np, name)]
    assert _bits(got) == _bits(getattr(np, name)(x))


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("name,dtype", UFUNC_CASES,
                         ids=[f"{n}-{np.dtype(d).name}" for n, d in UFUNC_CASES])
def test_split_ufunc_is_bit_identical(name: str, dtype: Any) -> None:
    op = OPS[name]
    ufunc = op.ufunc
    assert ufunc is not None
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    shapes = [(ROWS * 64,), (ROWS, 64)]
    for shape in shapes:
        arrays = tuple(_values(rng, shape, dtype) for _ in range(ufunc.nin))
        with np.errstate(all="ignore"):
            expected = _bits(ufunc(*arrays))
            for n in (2, 3):
                parallel.set_threads(n)
                if ufunc not in parallel._CHEAP:  # those are split from larger sizes on
                    assert parallel.split_shape(ufunc, arrays) == shape
                assert _bits(parallel.split_call(ufunc, arrays, shape)) == expected, (name, n)
        if ufunc.nin == 2:  # a tensor and a Python scalar, and a 0-d array
            floating = np.issubdtype(dtype, np.floating)
            for other in ((2.5, np.array(-3.0, dtype=dtype)) if floating
                          else (3, np.array(-3, dtype=dtype))):
                args = (arrays[0], other)
                with np.errstate(all="ignore"):
                    ref = _bits(ufunc(*args))
                    parallel.set_threads(2)
                    assert _bits(parallel.split_call(ufunc, args, shape)) == ref


@pytest.mark.usefixtures("threads")
def test_small_or_broadcast_calls_are_not_split() -> None:
    parallel.set_threads(2)
    big = np.ones(parallel.MIN_ELEMENTS, np.float32)
    assert parallel.split_shape(np.sin, (big[:-1],)) is None
    assert parallel.split_shape(np.sin, (big.reshape(1, -1),)) is None  # one row
    assert parallel.split_shape(np.add, (big, big[:1])) is None  # broadcasting
    assert parallel.split_shape(np.hypot, (big, 2.0)) == big.shape
    assert parallel.split_shape(np.multiply, (big, 2.0)) is None  # memory-bound: needs more
    cheap = np.ones(parallel.MIN_ELEMENTS_CHEAP, np.float32)
    assert parallel.split_shape(np.multiply, (cheap, cheap)) == cheap.shape
    parallel.set_threads(1)
    assert parallel.split_shape(np.sin, (big,)) is None


def _graph_4m(threads: int) -> list[tuple[Any, Any, bytes]]:
    parallel.set_threads(threads)
    data = np.random.default_rng(0).standard_normal(4 * parallel.MIN_ELEMENTS + 5)
    results = []
    for dtype in (np.float32, np.float64):
        x = ge.tensor(data.astype(dtype), requires_grad=True)
        y = ge.sin(x) * x + ge.exp(-x ** 2)
        z = (y.tanh() / (x.cos() + 3)).log1p()
        z.sum().backward()
        results += [_bits(y.detach()), _bits(z.detach()), _bits(x.grad)]
    return results


@pytest.mark.usefixtures("threads")
def test_forward_and_backward_are_bit_identical_over_threads() -> None:
    assert _graph_4m(2) == _graph_4m(1)
    assert _graph_4m(3) == _graph_4m(1)


@pytest.mark.usefixtures("threads")
def test_numpy_namespace_splits_too() -> None:
    x = np.random.default_rng(1).standard_normal(parallel.MIN_ELEMENTS * 2).astype(np.float32)
    parallel.set_threads(2)
    assert parallel.split_shape(np.arcsinh, (x,)) == x.shape
    assert _bits(namespaces.NP.asinh(x)) == _bits(np.arcsinh(x))


@pytest.mark.usefixtures("threads")
def test_floating_point_errors_in_blocks_behave_as_one_call() -> None:
    # warnings are errors in this suite: an op's log(0) inside a worker thread must still end
    # in torch's silent -inf (dispatch reruns the op under np.errstate(all="ignore"))
    parallel.set_threads(2)
    zeros = np.zeros(parallel.MIN_ELEMENTS * 2, np.float32)
    zeros[-1] = -1.0
    with mkl.turned_off():  # numpy's log, split (MKL's VML gives another NaN's sign bit)
        got = ge.log(ge.tensor(zeros)).numpy()
    with np.errstate(all="ignore"):
        assert _bits(got) == _bits(np.log(zeros))
    with pytest.raises(RuntimeWarning):
        parallel.split_call(np.log, (zeros,), zeros.shape)
    # the caller's errstate holds in the pool's threads
    with np.errstate(all="ignore"):
        assert _bits(parallel.split_call(np.log, (zeros,), zeros.shape)) == _bits(got)


@pytest.mark.usefixtures("threads")
def test_a_split_call_takes_no_more_memory_than_its_result() -> None:
    parallel.set_threads(3)
    x = np.random.default_rng(2).standard_normal(parallel.MIN_ELEMENTS * 8).astype(np.float32)
    parallel.split_call(np.sin, (x,), x.shape)  # the pool's threads exist before measuring
    tracemalloc.start()
    try:
        out = parallel.split_call(np.sin, (x,), x.shape)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= out.nbytes + 64 * 1024


def test_thread_setting(monkeypatch: pytest.MonkeyPatch, threads: None) -> None:
    monkeypatch.setenv(parallel.ENV_THREADS, "3")
    assert parallel.default_threads() == 3
    monkeypatch.delenv(parallel.ENV_THREADS)
    assert 1 <= parallel.default_threads() <= 2
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(parallel.ENV_THREADS, bad)
        with pytest.raises(ValueError, match=parallel.ENV_THREADS):
            parallel.default_threads()
    for bad_n in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="engine threads"):
            parallel.set_threads(bad_n)  # type: ignore[arg-type]
    parallel.set_threads(4)
    assert parallel.threads() == 4


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_full_sum_ranges_on_threads_match_torch(dtype: Any) -> None:
    # cascade._full sums torch's per-thread ranges on the engine's threads: the same bits as
    # one after another, and as torch's own sum (2 and 3 torch threads, 1 to 3 engine threads)
    from gradserve.engine import cascade
    from tests.reference import torch
    rng = np.random.default_rng(3)
    for n in (40_001, 262_144, 1_000_003):
        a = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, size=n)).astype(dtype)
        for torch_threads in (2, 3):
            sums = []
            for engine_threads in (1, 2, 3):
                parallel.set_threads(engine_threads)
                sums.append(_bits(cascade.torch_sum(a, threads=torch_threads)))
            assert sums[0] == sums[1] == sums[2]
            if torch_threads == 2 == torch.get_num_threads():
                assert sums[0] == _bits(torch.from_numpy(a).sum().numpy())


@pytest.mark.usefixtures("threads")
def test_run_jobs_keeps_order_and_raises_the_first_error() -> None:
    parallel.set_threads(2)
    assert parallel.run_jobs([lambda i=i: i * i for i in range(5)]) == [0, 1, 4, 9, 16]
    ran: list[int] = []

    def fail(i: int) -> Any:
        ran.append(i)
        raise ValueError(f"job {i}")

    with pytest.raises(ValueError, match="job 1"):
        parallel.run_jobs([lambda: 0, lambda: fail(1), lambda: fail(2)])
    assert sorted(ran) in ([1], [1, 2])  # a job taken back after an error is not run


@pytest.mark.usefixtures("threads")
def test_large_graph_forward_and_backward_match_torch() -> None:
    # bench/engine.py's graph-4M case, large enough that every op and VJP product, the
    # gradient accumulation and the sum's ranges go over threads: the same bits as one thread,
    # and the sum is torch's sum of the same values
    from tests.reference import torch
    data = np.random.default_rng(4).standard_normal(parallel.MIN_ELEMENTS_CHEAP + 4099)
    data = data.astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        parallel.set_threads(threads)
        x = ge.tensor(data, requires_grad=True)
        y = ge.sin(x) * x + ge.exp(-x ** 2) * x.cos()
        out = y.sum()
        out.backward()
        assert _bits(out.detach()) == _bits(torch.from_numpy(y.detach().numpy()).sum().numpy())
        results.append((_bits(y.detach()), _bits(x.grad)))
    assert results[0] == results[1] == results[2]


@pytest.mark.usefixtures("threads")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow, NaN: the values say it
def test_call_into_out_and_mul_into_give_the_new_arrays_bits() -> None:
    # parallel.call(out=) and mul_into write into an array the caller made (in place when it
    # is an input): the same bits as a new result, split or not
    rng = np.random.default_rng(5)
    a = _values(rng, (ROWS * 2, 64), np.float32)
    b = _values(rng, (ROWS * 2, 64), np.float32)
    expected = _bits(np.multiply(a, b))
    for threads in (1, 2, 3):
        parallel.set_threads(threads)
        fresh = b.copy()
        assert parallel.call(np.multiply, a, fresh, out=fresh) is fresh
        assert _bits(fresh) == expected
        fresh = b.copy()
        assert parallel.mul_into(a, fresh) is fresh
        assert _bits(fresh) == expected
        view = b.copy()[::2]  # not an array of its own: a new result
        got = parallel.mul_into(a[::2], view)
        assert got is not view and _bits(got) == _bits(np.multiply(a[::2], b[::2]))
        wide = b.astype(np.float64)  # a float64 product does not fit a float32 array
        assert _bits(parallel.mul_into(wide, b.copy())) == _bits(np.multiply(wide, b))
        for one in (1.0, 2.0, -1.0):  # a broadcast 1 (a sum's gradient) needs no pass
            ones = np.broadcast_to(np.float32(one), a.shape)
            fresh = b.copy()
            assert parallel.mul_into(ones, fresh) is fresh
            assert _bits(fresh) == _bits(np.multiply(ones, b))
    with pytest.raises(ValueError, match="out is"):
        parallel.split_call(np.multiply, (a, b), a.shape, np.empty(a.shape, np.float64))


def test_gradients_written_in_place_never_alias_another_leafs() -> None:
    # the backward pass writes a sum into a gradient it owns and lets a leaf keep a gradient
    # nothing else holds (torch's use_count() test): one shared by two leaves is copied once,
    # a root gradient the caller passed is never written, and the values are torch's
    from tests.reference import torch
    n = parallel.MIN_ELEMENTS + 4099
    data = np.random.default_rng(6).standard_normal((3, n)).astype(np.float32)
    grads = {}
    for mod in (ge, torch):
        a, b, c = (mod.tensor(d, requires_grad=True) for d in data)
        out = (a + b) * c * 3.0 + a * a + (c ** 2) * a
        seed = mod.tensor(data[0] * 0.5)
        out.backward(seed)
        assert np.array_equal(seed.numpy(), data[0] * 0.5)  # the root gradient untouched
        a_grad, b_grad, c_grad = a.grad.numpy().copy(), b.grad.numpy().copy(), c.grad.numpy().copy()
        a.grad.mul_(0)  # none of the others changes with it
        assert np.array_equal(b.grad.numpy(), b_grad) and np.array_equal(c.grad.numpy(), c_grad)
        x = mod.tensor(data[1], requires_grad=True)
        (x * 2.0 + x).backward(seed)  # one gradient (the seed itself) reaches x twice
        (x.sin() * 1.5).sum().backward()  # then adds into the existing .grad
        grads[mod.__name__] = [_bits(g) for g in (a_grad, b_grad, c_grad, x.grad.numpy())]
        assert np.array_equal(seed.numpy(), data[0] * 0.5)
    assert grads["gradserve.engine"] == grads["torch"]
