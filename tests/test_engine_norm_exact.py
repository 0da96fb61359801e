"""Vector norms round as torch's CPU norm kernel does (engine/vector_norm.py): p = 2 over a
contiguous last dim in 8 float (4 double) lanes with an unfused square-and-add, the lanes added
in order, then the leftover elements (float32: a first run of four unfused, the rest fused
multiply-adds); every other case one accumulator per result in the iterator's order, powers by
the C library's pow. numpy's pairwise sums differed in the last bit for most lengths (`x.norm(
dim=1)` of rows of 9, 64 or 100 floats), and so did everything computed from a norm
(`F.normalize`, `clip_grad_norm_`, the norm's gradient)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import vector_norm
from tests.reference import torch

INF = math.inf
ORDERS = [2.0, 1.0, INF, 3.0]


def _same(got: Any, want: Any, what: str = "") -> None:
    g = got.detach().numpy() if hasattr(got, "detach") else np.asarray(got)
    w = want.detach().numpy()
    assert g.shape == w.shape and g.dtype == w.dtype, what
    np.testing.assert_array_equal(g, w, err_msg=what, strict=True)


def _rows(rng: np.random.Generator, rows: int, n: int, dtype: Any) -> np.ndarray:
    """Normal rows, each scaled by its own power of ten (so sums of squares of any size)."""
    scale = 10.0 ** rng.uniform(-3, 3, (rows, 1))
    return (rng.standard_normal((rows, n)) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_of_every_length_up_to_300(dtype: Any, seed: int) -> None:
    """x.norm(p, dim=1) of rows of 1..300 elements: the vector path's lanes and tails, and the
    scalar loop (other p), for every length."""
    rng = np.random.default_rng(seed)
    for n in range(1, 301):
        a = _rows(rng, 24, n, dtype)
        t, e = torch.from_numpy(a), ge.tensor(a)
        for p in ORDERS:
            _same(e.norm(p, dim=1), t.norm(p, dim=1), f"n={n} p={p}")


def test_small_inputs_take_the_same_steps() -> None:
    """Up to 64 float32 elements the p = 2 loop runs on numpy scalars (vector_norm.SMALL_NORM):
    the same bits as the array path and as torch, for single rows and a few rows."""
    rng = np.random.default_rng(8)
    for n in range(1, 65):
        for rows in {1, 2, max(1, 64 // n)}:
            a = _rows(rng, 40 * rows, n, np.float32).reshape(40, rows, n)
            for sample in a:
                _same(ge.tensor(sample).norm(dim=-1), torch.from_numpy(sample).norm(dim=-1),
                      f"n={n} rows={rows}")
                _same(ge.tensor(sample[0]).norm(), torch.from_numpy(sample[0]).norm())


@pytest.mark.parametrize("rows", [1, 30])
def test_tiny_squares_redo_the_fused_steps_exactly(rows: int) -> None:
    """Squares below float32's normals (and float64 sums on a float32 halfway point) make the
    fused tail redo its steps with the exact fma (both the scalar and the array path)."""
    rng = np.random.default_rng(rows)
    for n in (9, 13, 20, 31, 37):
        for scale in (1e-20, 1e-22, 3e-19):
            a = (rng.standard_normal((rows, n)) * scale).astype(np.float32)
            _same(ge.tensor(a).norm(dim=1), torch.from_numpy(a).norm(dim=1), f"n={n} {scale}")


SHAPES_AND_DIMS: list[tuple[tuple[int, ...], Any]] = [
    ((12, 37), 0), ((12, 37), -1), ((12, 37), (0, 1)), ((12, 37), None), ((12, 37), ()),
    ((5, 7, 9), 1), ((5, 7, 9), (0, 2)), ((5, 7, 9), (1, 2)), ((5, 7, 9), (0, 1)),
    ((5, 7, 9), -1), ((4, 1, 50), 2), ((4, 1, 50), (1, 2)), ((3, 1), 1), ((1, 20), 0),
    ((33,), 0), ((), None),
]
VIEWS = ["contiguous", "transposed", "sliced", "permuted"]


def _view(x: Any, how: str) -> Any:
    if how == "transposed" and x.ndim >= 2:
        return x.transpose(0, x.ndim - 1)
    if how == "sliced" and x.ndim >= 1 and x.shape[-1] > 2:
        return x[..., ::2]
    if how == "permuted" and x.ndim == 3:
        return x.permute(1, 2, 0)
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "dims"), SHAPES_AND_DIMS)
def test_dims_layouts_and_orders(shape: tuple[int, ...], dims: Any, dtype: Any) -> None:
    rng = np.random.default_rng(sum(shape) + len(shape))
    a = _rows(rng, 1, math.prod(shape), dtype).reshape(shape)
    for how in VIEWS:
        t, e = _view(torch.from_numpy(a), how), _view(ge.tensor(a), how)
        for p in (2.0, 1.0, INF, -INF, 0.0, 3.0, 0.5, -1.0, 2.5):
            for keepdim in (False, True):
                _same(ge.linalg.vector_norm(e, p, dims, keepdim),
                      torch.linalg.vector_norm(t, p, dims, keepdim),
                      f"{how} p={p} dim={dims} keepdim={keepdim}")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_one_result_of_many_elements_splits_over_threads(threads: int) -> None:
    """A single result of 32768+ elements in the scalar loop is summed per thread, then the
    threads' sums in order; the vector path (p = 2, contiguous) takes each row whole."""
    before = torch.get_num_threads()
    rng = np.random.default_rng(threads)
    try:
        torch.set_num_threads(threads)
        for shape, dims, view in [((70001,), None, False), ((3, 40000), None, False),
                                  ((300, 250), None, True), ((40000, 3), (0,), False)]:
            a = _rows(rng, 1, math.prod(shape), np.float32).reshape(shape)
            t = torch.from_numpy(a)
            x = a.T if view else a
            t = t.t() if view else t
            for p in (2.0, 1.0, 3.0, 0.0):
                got = vector_norm.vector_norm(x, p, dims, False, threads=threads)
                _same(got, torch.linalg.vector_norm(t, p, dims), f"{shape} p={p}")
    finally:
        torch.set_num_threads(before)


def test_special_values() -> None:
    a = np.random.default_rng(5).standard_normal((10, 37)).astype(np.float32)
    a[0, 3] = np.nan
    a[1] = 0
    a[2, 5] = np.inf
    a[3, 0] = -0.0
    a[4, 7] = 1e30  # its square overflows; the norm is inf as torch's
    a[5] = 1e-30  # squares underflow
    a[6, 36] = -np.inf
    t, e = torch.from_numpy(a), ge.tensor(a)
    for p in (2.0, 1.0, INF, -INF, 3.0, 0.0, -1.0, 0.5):
        for dims in (1, 0, None):
            _same(e.norm(p, dims), t.norm(p, dims), f"p={p} dim={dims}")
    one = np.array([[1e30], [-3.0]], np.float32)  # one element: |x|, no square
    _same(ge.tensor(one).norm(dim=1), torch.from_numpy(one).norm(dim=1))


def test_dtype_argument_computes_in_double() -> None:
    a = _rows(np.random.default_rng(7), 8, 45, np.float32)
    t, e = torch.from_numpy(a), ge.tensor(a)
    for p in (2.0, 1.0, 3.0):
        _same(ge.linalg.vector_norm(e, p, 1, dtype=ge.float64),
              torch.linalg.vector_norm(t, p, 1, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [2.0, 1.0, INF, 3.0, 0.5, 1.5])
def test_gradients(p: float, dtype: Any) -> None:
    """LinalgVectorNormBackward0: torch's formula per order (x * g / norm for 2, zeros where the
    norm is 0), from torch's norm."""
    rng = np.random.default_rng(7 if math.isinf(p) else int(p * 10))
    for shape, dims in [((6, 36), 1), ((6, 36), 0), ((6, 9), None), ((3, 4, 17), (0, 2))]:
        a = _rows(rng, 1, math.prod(shape), dtype).reshape(shape)
        a[0, 0] = 0.0
        if dims == 1:
            a[1] = 0.0  # a zero norm
        out = []
        for lib in (ge, torch):
            x = lib.tensor(a, requires_grad=True)
            y = x.norm(p, dims)
            g = np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(dtype)
            y.backward(lib.tensor(g))
            assert y.grad_fn.name() == "LinalgVectorNormBackward0"
            out.append((y, x.grad))
        for ours, theirs in zip(*out):
            _same(ours, theirs, f"{shape} dim={dims}")


def test_old_pairwise_sums_would_differ() -> None:
    """The regression: numpy's sum of squares misses torch's bits for rows of 9, 64, 100."""
    rng = np.random.default_rng(11)
    for n in (9, 64, 100):
        a = _rows(rng, 400, n, np.float32)
        want = torch.from_numpy(a).norm(dim=1).numpy()
        assert (np.sqrt(np.sum(a * a, axis=1)) != want).any()
        np.testing.assert_array_equal(ge.tensor(a).norm(dim=1).numpy(), want)


def test_through_a_session_is_torchs(gradserve_lib: Any) -> None:
    lib = gradserve_lib
    rng = np.random.default_rng(4)
    outs: list[list[Any]] = []
    for t in (lib, torch):
        res = []
        for n in (9, 36, 64, 100):
            a = _rows(rng, 50, n, np.float32)
            x = t.tensor(a, requires_grad=True)
            y = x.norm(dim=1)
            y.backward(t.ones(50))
            res += [y, x.grad, x.t().norm(dim=1), x.norm(3, dim=1),
                    t.nn.functional.normalize(x.detach(), dim=1)]
        w = t.tensor(_rows(rng, 20, 30, np.float32), requires_grad=True)
        (w * t.tensor(_rows(rng, 20, 30, np.float32))).sum().backward()
        res.append(t.nn.utils.clip_grad_norm_([w], 1.0))
        res.append(w.grad)
        outs.append(res)
        rng = np.random.default_rng(4)
    for i, (ours, theirs) in enumerate(zip(*outs)):
        _same(ours, theirs, f"result {i}")
