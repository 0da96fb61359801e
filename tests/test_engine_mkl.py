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


@needs_mkl
def test_product_gradients_follow_torchs_layout_rule() -> None:
    """mm/addmm gradients as torch's mm_mat1_backward/mm_mat2_backward compute them: an operand
    stored column-major (a Linear's `weight.t()`) gets its gradient computed transposed,
    `(g.T @ mat1).T`, another sgemm call with other bits (a Linear(100, 10) weight's gradient
    differed in 461 of 1000 values before)."""
    rng = np.random.default_rng(7)
    for trial in range(40):
        n, k, m = (int(v) for v in rng.integers(1, 70, 3))
        t1, t2, bias = trial % 2, trial // 2 % 2, trial // 4 % 2
        a = rng.standard_normal((k, n) if t1 else (n, k)).astype(np.float32)
        b = rng.standard_normal((m, k) if t2 else (k, m)).astype(np.float32)
        c = rng.standard_normal(m).astype(np.float32)
        w = rng.standard_normal((n, m)).astype(np.float32)
        results = []
        for mod in (ge, torch):
            ta, tb = (mod.tensor(v.copy(), requires_grad=True) for v in (a, b))
            x, y = (ta.t() if t1 else ta), (tb.t() if t2 else tb)
            out = (mod.addmm(mod.tensor(c), x, y) if bias else
                   mod.mm(x, y) if trial % 3 else x @ y)
            (out * mod.tensor(w)).sum().backward()
            results.append([out.detach().numpy(), ta.grad.numpy(), tb.grad.numpy()])
        for mine, theirs in zip(*results):
            assert np.array_equal(mine, theirs), (n, k, m, t1, t2, bias)


@needs_mkl
@pytest.mark.parametrize("batch,inp,out", [(64, 100, 10), (64, 1000, 100), (5, 3, 1),
                                           (32, 20, 1), (100, 100, 10), (7, 13, 2)])
def test_linear_layers_train_as_torchs(batch: int, inp: int, out: int) -> None:
    """A Linear layer's weight, bias and input gradients for classifier-head shapes."""
    rng = np.random.default_rng(batch * inp + out)
    x = rng.standard_normal((batch, inp)).astype(np.float32)
    w = rng.standard_normal((out, inp)).astype(np.float32)
    bias = rng.standard_normal(out).astype(np.float32)
    results = []
    for mod in (ge, torch):
        tx, tw, tb = (mod.tensor(v.copy(), requires_grad=True) for v in (x, w, bias))
        mod.nn.functional.linear(tx, tw, tb).pow(2).sum().backward()
        results.append([tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()])
    for mine, theirs in zip(*results):
        assert np.array_equal(mine, theirs)


# --- VML functions against torch ------------------------------------------------------------------

# torch 2.13's at::vml sends these to MKL (IMPLEMENT_VML_MKL); the engine's op of each name
VML_OPS = ["exp", "log", "log2", "log10", "sqrt", "sin", "cos", "tan", "tanh", "asin", "acos",
           "atan", "erf", "erfc"]
# measured not to be MKL's in torch (Sleef or its own kernels): must stay off the VML path
NOT_VML = {"expm1": "Expm1", "log1p": "Log1p", "sinh": "Sinh", "cosh": "Cosh",
           "lgamma": "LGamma", "rsqrt": "InvSqrt"}


def _values(dtype: type, rng: np.random.Generator) -> np.ndarray:
    """Normal, uniform, wide-range and special values: inf, nan, -0, subnormals, huge."""
    info = np.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, float(info.smallest_subnormal),
               -float(info.smallest_subnormal), float(info.tiny) / 3, float(info.max),
               -float(info.max), 1.0, -1.0, 0.5, 88.7, 89.0, -104.0, 710.0, -745.0, 1e30]
    with np.errstate(over="ignore"):
        wide = np.exp(rng.uniform(-90, 90, 8000)) * rng.choice([-1, 1], 8000)
    parts = [rng.standard_normal(20000), rng.uniform(-1, 1, 8000), wide, special]
    with np.errstate(over="ignore"):
        return np.concatenate(parts).astype(dtype)


def _bits_equal(mine: np.ndarray, theirs: np.ndarray) -> bool:
    same = (mine == theirs) & (np.signbit(mine) == np.signbit(theirs))
    return bool(np.all(same | (np.isnan(mine) & np.isnan(theirs))))


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", VML_OPS)
def test_vml_functions_bit_for_bit(name: str, dtype: type) -> None:
    """Large random inputs with special values, every small size, strided and 0-d inputs."""
    rng = np.random.default_rng(VML_OPS.index(name))
    x = _values(dtype, rng)
    mine, theirs = getattr(ge, name), getattr(torch, name)
    with np.errstate(all="ignore"):
        assert _bits_equal(mine(ge.tensor(x)).numpy(), theirs(torch.from_numpy(x)).numpy())
        for n in range(1, 41):
            part = x[rng.integers(0, x.size, n)]
            assert _bits_equal(mine(ge.tensor(part)).numpy(),
                               theirs(torch.from_numpy(part)).numpy()), n
        grid = x[:3000].reshape(100, 30)
        assert _bits_equal(mine(ge.tensor(grid)[:, ::3]).numpy(),
                           theirs(torch.from_numpy(grid)[:, ::3]).numpy())
        assert _bits_equal(mine(ge.tensor(grid).T).numpy(),
                           theirs(torch.from_numpy(grid).T).numpy())
        scalar = np.array(x[7])  # 0-d, of x's dtype
        assert _bits_equal(mine(ge.tensor(scalar)).numpy(),
                           theirs(torch.from_numpy(scalar)).numpy())


@needs_mkl
def test_vml_in_place_and_gradients() -> None:
    """exp_ and the backward formulas that call VML functions (sin's cos, cos's sin, erf's and
    erfc's exp, in derivatives.yaml's order)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(500).astype(np.float32)
    results = []
    for mod in (ge, torch):
        t = mod.tensor(x.copy())
        t.exp_()
        leaves = [mod.tensor(x.copy(), requires_grad=True) for _ in range(4)]
        weights = mod.tensor(x[::-1].copy())
        out = mod.sin(leaves[0]) + mod.erf(leaves[1]) + mod.cos(leaves[2]) + mod.erfc(leaves[3])
        (out * weights).sum().backward()
        results.append([t.numpy()] + [leaf.grad.numpy() for leaf in leaves])
    for mine, theirs in zip(*results):
        assert np.array_equal(mine, theirs)


@needs_mkl
@pytest.mark.parametrize("name", sorted(NOT_VML))
def test_functions_torch_does_not_send_to_vml(name: str) -> None:
    """VML's version of these differs from torch's, so the engine must not call it (the test
    fails if MKL changes and they start to agree: then route them)."""
    x = _values(np.float32, np.random.default_rng(9))
    x = x[np.isfinite(x) & (np.abs(x) < 80)]
    with np.errstate(all="ignore"):
        theirs = getattr(torch, name)(torch.from_numpy(x)).numpy()
        assert not _bits_equal(mkl.vml(NOT_VML[name], x), theirs)


def test_vml_turned_off_falls_back() -> None:
    x = np.linspace(-3, 3, 50, dtype=np.float32)
    with mkl.turned_off():
        assert np.array_equal(ge.exp(ge.tensor(x)).numpy(), np.exp(x))
        assert np.array_equal(ge.sin(ge.tensor(x)).numpy(), np.sin(x))


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("b,n,k,m", [(1, 5, 7, 3), (3, 4, 5, 6), (1, 20, 30, 40), (4, 20, 30, 40),
                                     (2, 1, 500, 1), (5, 64, 64, 64), (64, 3, 50, 9)])
def test_bmm_small_kernel_and_mkl_batch(b: int, n: int, k: int, m: int, dtype: type) -> None:
    """bmm below 400 multiply-adds per matrix (torch's own loop) and above (MKL's gemm_batch),
    contiguous and transposed operands."""
    rng = np.random.default_rng(b * n * k * m)
    x = rng.standard_normal((b, n, k)).astype(dtype)
    y = rng.standard_normal((b, k, m)).astype(dtype)
    yt = np.ascontiguousarray(y.transpose(0, 2, 1))
    assert _same(ge.bmm(ge.tensor(x), ge.tensor(y)), torch.bmm(torch.from_numpy(x),
                                                                torch.from_numpy(y)))
    if min(n, k, m) == 1:  # a transposed operand with a unit dim: torch's path not known
        return
    assert _same(ge.bmm(ge.tensor(x), ge.tensor(yt).transpose(1, 2)),
                 torch.bmm(torch.from_numpy(x), torch.from_numpy(yt).transpose(1, 2)))


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 1), (1, 300), (7, 1), (3, 31), (33, 64), (100, 2000)])
def test_dot_mv_and_vector_matmul(n: int, k: int, dtype: type) -> None:
    """dot (BLAS's ?dot), 2-D/3-D @ 1-D (torch's mv: ?gemv, the matrix row- or column-major
    or strided), 1-D @ 2-D (an mm of one row)."""
    rng = np.random.default_rng(n * 1000 + k)
    v = rng.standard_normal(k).astype(dtype)
    w = rng.standard_normal(k).astype(dtype)
    a = rng.standard_normal((n, k)).astype(dtype)
    ev, tv = ge.tensor(v), torch.from_numpy(v)
    assert _same(ge.dot(ev, ge.tensor(w)), torch.dot(tv, torch.from_numpy(w)))
    assert _same(ev @ ge.tensor(w), tv @ torch.from_numpy(w))
    for _, ea, ta in _layouts(a):
        assert _same(ea @ ev, ta @ tv)
    at = a.T.copy()  # (a copy: ascontiguousarray keeps a.T's strides when a has one row)
    assert _same(ge.tensor(v) @ ge.tensor(at), tv @ torch.from_numpy(at))
    a3 = np.stack([a, a[::-1]])
    assert _same(ge.tensor(a3) @ ev, torch.from_numpy(a3.copy()) @ tv)


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ys", [((2, 5, 8), (2, 8, 5)), ((2, 2, 5, 4), (2, 2, 4, 5)),
                                   ((3, 4, 16, 16), (3, 4, 16, 16)), ((3, 1, 9, 20), (4, 20, 7)),
                                   ((1, 12, 30), (5, 30, 12)), ((2, 3, 1, 40), (2, 3, 40, 1))])
def test_batched_matmul_is_one_bmm(xs: tuple[int, ...], ys: tuple[int, ...],
                                   dtype: type) -> None:
    """N-D @ N-D (both 3-D or more) is torch's expand, reshape to one batch and `bmm`: its
    bits, forward and gradients, contiguous and with a transposed operand (attention's
    `q @ k.transpose(-2, -1)`)."""
    rng = np.random.default_rng(sum(xs) * 100 + sum(ys))
    x = rng.standard_normal(xs).astype(dtype)
    y = rng.standard_normal(ys).astype(dtype)
    yt = np.ascontiguousarray(np.swapaxes(y, -1, -2))
    w = rng.standard_normal(np.broadcast_shapes(xs[:-1] + (1,), ys[:-2] + (1, ys[-1]))
                            ).astype(dtype)
    # torch runs (1, n, k) @ (b, k, m) with the first requiring grad as a folded mm (its
    # gradients too), which changes the second's gradient: the engine's rule for it is the bmm's
    special = len(xs) == 3 == len(ys) and xs[0] == 1 != ys[0]
    needs = [(True, False), (False, True)] + ([] if special else [(True, True)])
    for (grad_x, grad_y), transposed in itertools.product(needs, (False, True)):
        got = []
        for lib in (ge, torch):
            a = lib.tensor(x, requires_grad=grad_x)
            b0 = lib.tensor(yt if transposed else y, requires_grad=grad_y)
            b = b0.transpose(-1, -2) if transposed else b0
            out = a @ b
            (out * lib.tensor(w)).sum().backward()
            got.append([t.detach().numpy() for t in (out, a if grad_x else b0)] +
                       [(a if grad_x else b0).grad.numpy()])
        for mine, theirs in zip(*got):
            assert mine.shape == theirs.shape
            assert np.array_equal(mine, theirs, equal_nan=True)


def test_small_bmm_is_torchs_without_mkl() -> None:
    """Below 400 multiply-adds per matrix torch's bmm is its own loop: exact with or without
    MKL (runs on the compat interpreters too, against torch where it is installed)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((50, 4, 9)).astype(np.float32)
    y = rng.standard_normal((50, 9, 7)).astype(np.float32)
    with mkl.turned_off():
        mine = ge.bmm(ge.tensor(x), ge.tensor(y)).numpy()
        assert np.array_equal(mine, gemm.small_bmm(x, y))
    assert np.array_equal(mine, torch.bmm(torch.from_numpy(x), torch.from_numpy(y)).numpy())


@needs_mkl
@pytest.mark.parametrize("b,i,j,o", [(128, 20, 30, 40), (3, 2, 4, 5), (1, 3, 7, 2)])
def test_bilinear_is_torchs_trilinear(b: int, i: int, j: int, o: int) -> None:
    """nn.functional.bilinear in _trilinear's order (per feature a bmm, then per row a small
    bmm, added to zeros; the bias after the reshape): torch's bits and grad_fn (j < 400, where
    the second bmm is torch's own loop)."""
    rng = np.random.default_rng(b + i + j + o)
    a1 = rng.standard_normal((b, i)).astype(np.float32)
    a2 = rng.standard_normal((b, j)).astype(np.float32)
    w = rng.standard_normal((o, i, j)).astype(np.float32)
    c = rng.standard_normal(o).astype(np.float32)
    for bias in (c, None):
        mine = ge.nn.functional.bilinear(ge.tensor(a1), ge.tensor(a2),
                                         ge.tensor(w, requires_grad=True),
                                         None if bias is None else ge.tensor(bias))
        theirs = torch.nn.functional.bilinear(torch.from_numpy(a1), torch.from_numpy(a2),
                                              torch.tensor(w, requires_grad=True),
                                              None if bias is None else torch.from_numpy(bias))
        assert _same(mine.detach(), theirs)
        assert mine.grad_fn.name() == theirs.grad_fn.name()


@needs_mkl
@pytest.mark.parametrize("c,size,o,k,stride,pad", [(10, 9, 10, 3, 1, 0), (3, 8, 16, 3, 1, 1),
                                                  (3, 9, 8, 3, 2, 1), (10, 9, 10, 1, 1, 0),
                                                  (16, 16, 32, 3, 1, 1), (2, 5, 1, 2, 1, 0)])
def test_batch_one_conv2d_is_torchs_slow_conv2d(c: int, size: int, o: int, k: int, stride: int,
                                                pad: int) -> None:
    """A batch of one (and an unbatched input) as torch's slow_conv2d: im2col, then one
    sgemm with the bias as C."""
    rng = np.random.default_rng(c * size + o)
    x = rng.standard_normal((1, c, size, size)).astype(np.float32)
    w = rng.standard_normal((o, c, k, k)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    for inp in (x, x[0]):
        mine = ge.nn.functional.conv2d(ge.tensor(inp), ge.tensor(w), ge.tensor(bias),
                                       stride=stride, padding=pad)
        theirs = torch.nn.functional.conv2d(torch.from_numpy(inp), torch.from_numpy(w),
                                            torch.from_numpy(bias), stride=stride, padding=pad)
        assert _same(mine, theirs)
