"""torch.linalg's norms, torch.norm, nn.functional's distances and divergences (normalize,
cosine_similarity, pairwise_distance, kl_div, l1_loss's graph), their modules, and addcmul /
addcdiv / clamp_min / clamp_max as Tensor methods: each checked against torch in process (the
engine) and through a session — values, the whole grad_fn graph by name, gradients, warnings,
error types and messages."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

X = [[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]]  # a zero row: the zero-vector norm and its gradient
Y = [[0.0, 1.0, 2.0], [3.0, -1.0, 1.0]]


def _graph(fn: Any) -> list[str]:
    """The grad_fn graph below `fn`, depth first, as indented node names."""
    out: list[str] = []
    stack = [(fn, 0)]
    while stack:
        node, depth = stack.pop()
        if node is None:
            continue
        out.append(" " * depth + node.name().replace("torch::autograd::", ""))
        stack.extend((f, depth + 1) for f, _ in reversed(node.next_functions))
    return out


def _list(t: Any) -> Any:
    return None if t is None else np.asarray(t.tolist(), dtype=np.float64)


def _run(t: Any, expr: str) -> tuple[Any, ...]:
    """(value, graph, grads of x and y, UserWarnings) of `expr`, or (error type, message)."""
    x = t.tensor(X, requires_grad=True)
    y = t.tensor(Y, requires_grad=True)
    env = {"t": t, "F": t.nn.functional, "nn": t.nn, "x": x, "y": y, "inf": math.inf}
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's, in the engine's backward
            out = eval(expr, env)
            graph = _graph(out.grad_fn)
            gx, gy = t.autograd.grad(out.sum(), (x, y), allow_unused=True)
            return (_list(out), graph, _list(gx), _list(gy),
                    [str(w.message) for w in seen if issubclass(w.category, UserWarning)])
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        # a session's error also names the line that recorded it
        return ("error", exc, str(exc).split("\ngradserve:")[0])


def _same(got: tuple[Any, ...], want: tuple[Any, ...]) -> None:
    if isinstance(want[0], str):  # "error"
        assert isinstance(got[0], str), got
        assert isinstance(got[1], type(want[1])), (got[1], want[1])
        assert got[2] == want[2]
        return
    assert not isinstance(got[0], str), got
    assert got[1] == want[1]  # the whole graph, node by node
    assert got[4] == want[4]
    for g, w in zip(got[:4:2] + got[3:4], want[:4:2] + want[3:4], strict=True):
        if w is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=0, equal_nan=True)


NORMS = [
    "t.linalg.vector_norm(x)", "t.linalg.vector_norm(x, 3, dim=1)",
    "t.linalg.vector_norm(x, 0.5, dim=-1, keepdim=True)", "t.linalg.vector_norm(x, inf)",
    "t.linalg.vector_norm(x, 1, (0, 1))", "t.linalg.vector_norm(x, dtype=t.float64)",
    "t.linalg.norm(x)", "t.linalg.norm(x, dim=1)", "t.linalg.norm(x, 'fro')",
    "t.linalg.norm(x, inf)", "t.linalg.norm(x, -inf, dim=(1, 0), keepdim=True)",
    "t.linalg.norm(x[0], 3)", "t.linalg.matrix_norm(x)", "t.linalg.matrix_norm(x, 1)",
    "t.linalg.matrix_norm(x, -1)", "t.linalg.matrix_norm(x, inf, keepdim=True)",
    "t.linalg.matrix_norm(x.reshape(1, 2, 3), -inf, dim=(2, 1))",
    "t.norm(x)", "t.norm(x, p=1, dim=1)", "x.norm(dim=0, keepdim=True)",
    "t.norm(x, p='fro', dim=(0, 1))", "x.norm(3)", "t.norm(x, None, 1)",
    "t.norm(x, dtype=t.float64)",
    # the zero vector: torch's gradient is 0, not nan
    "t.linalg.vector_norm(x[1])", "t.linalg.vector_norm(x[1], 3)",
    "t.linalg.vector_norm(x[1], 0.5)", "t.linalg.vector_norm(x[1], inf)",
    "t.linalg.vector_norm(x[1], 1.5)", "t.linalg.vector_norm(x[1], 0)",
    # errors, as torch's
    "t.linalg.vector_norm(x, 'fro')", "t.linalg.vector_norm(x.long())",
    "t.linalg.vector_norm(x, dtype=t.long)", "t.linalg.vector_norm(x.double(), dtype=t.float32)",
    "t.linalg.vector_norm(x, dim=5)", "t.linalg.matrix_norm(x[0])",
    "t.linalg.matrix_norm(x, 3)", "t.linalg.matrix_norm(x, 'abc')",
    "t.linalg.matrix_norm(x, dim=(0, 0))", "t.linalg.matrix_norm(x, dim=(0,))",
    "t.linalg.matrix_norm(x, dim=(0, 5))", "t.linalg.matrix_norm(x.long())",
    "t.linalg.norm(x.reshape(1, 2, 3), 1)", "t.linalg.norm(x.reshape(1, 2, 3), 'fro')",
    "t.linalg.norm(x.reshape(1, 2, 3), dim=(0, 1, 2))", "t.norm(x.reshape(1, 2, 3), 'nuc')",
    "t.norm(x, 'abc')", "x[0].norm(p='nuc')",
    # the spectral norms: singular values' amax, amin or sum (linalg.svdvals)
    "t.linalg.matrix_norm(x, 2)", "t.linalg.matrix_norm(x, -2)", "t.linalg.matrix_norm(x, 'nuc')",
    "t.linalg.norm(x, 2)", "x.norm(p='nuc')", "t.norm(x, 'nuc', dim=(1, 0))",
    "t.linalg.matrix_norm(x.reshape(1, 2, 3), 2, dim=(2, 0))",
    "t.linalg.matrix_norm(x, -2, dtype=t.float64)",
    "t.linalg.matrix_norm(x.reshape(1, 2, 3), 'nuc', dim=(0, 2), keepdim=True)",
]

DISTANCES = [
    "F.normalize(x)", "F.normalize(x, p=1, dim=0)", "F.normalize(x, p=3, eps=0.5)",
    "F.cosine_similarity(x, y)", "F.cosine_similarity(x, y, dim=0)",
    "F.cosine_similarity(x, y[:1], dim=1)", "F.cosine_similarity(x, t.tensor([[1, 2, 3]]))",
    "F.cosine_similarity(x, y, eps=2.0)",
    "F.pairwise_distance(x, y)", "F.pairwise_distance(x, y[0], keepdim=True)",
    "F.pairwise_distance(x, y, p=1, eps=0.0)", "F.pairwise_distance(x, y, p=inf)",
    "F.kl_div(x, y.abs())", "F.kl_div(x, y.abs(), reduction='sum')",
    "F.kl_div(x, y.abs(), reduction='none')", "F.kl_div(x, y.abs(), reduction='batchmean')",
    "F.kl_div(x, y / 4, reduction='sum', log_target=True)",
    "F.kl_div(x[0, 0], y[0, 0].abs(), reduction='batchmean')",
    "F.l1_loss(x, y)", "F.l1_loss(x, y[0], reduction='sum')", "F.l1_loss(x, y, reduction='none')",
    "F.smooth_l1_loss(x, y, beta=0.0)",
    "nn.CosineSimilarity(dim=0)(x, y)", "nn.PairwiseDistance(p=1, keepdim=True)(x, y)",
    "nn.KLDivLoss(reduction='batchmean', log_target=True)(x, y / 4)", "nn.L1Loss()(x, y)",
    # errors, as torch's
    "F.kl_div(x, y, reduction='bad')", "F.cosine_similarity(t.tensor([1, 2]), t.tensor([3, 4]))",
    "F.cosine_similarity(x, y[:, :2])", "F.l1_loss(x, y[:, :2])", "F.l1_loss(x, y, reduction='x')",
]

METHODS = [
    "x.addcmul(x, y, value=0.5)", "t.addcmul(x, x, y[0])", "(x * 1).addcmul_(y, y, value=-2)",
    "x.addcdiv(x, y + 5, value=2)", "t.addcdiv(y, x, y[0] + 5)", "(y + 0).addcdiv_(x, y + 5)",
    "x.clamp_min(0.5)", "t.clamp_max(x, y)", "(x + 0).clamp_min_(y[0])", "x.clamp_max(-1)",
    "t.addcdiv(x, x.long(), y.long())", "t.addcmul(x.bool(), x.bool(), x.bool())",
]


@pytest.mark.parametrize("expr", NORMS + DISTANCES + METHODS)
def test_against_torch(gradserve_lib: Any, expr: str) -> None:
    want = _run(torch, expr)
    _same(_run(gradserve_lib, expr), want)


def test_modules_repr_and_attributes(gradserve_lib: Any) -> None:
    for make in (lambda nn: nn.CosineSimilarity(dim=0, eps=1e-6),
                 lambda nn: nn.PairwiseDistance(p=3.0, keepdim=True),
                 lambda nn: nn.KLDivLoss(reduction="batchmean", log_target=True)):
        want, got = make(torch.nn), make(gradserve_lib.nn)
        assert repr(got) == repr(want)
        for name in ("dim", "eps", "norm", "keepdim", "reduction", "log_target"):
            assert getattr(got, name, None) == getattr(want, name, None)


def _random32(seed: int, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("value", [1, 0.37, -0.001, 3.0])
def test_addcmul_addcdiv_float32_bit_for_bit(gradserve_lib: Any, value: float) -> None:
    # torch's float32 addcmul is fused (one rounding of value * t1 * t2 + input), addcdiv not
    x, a, b = _random32(7, (300, 257), (300, 257), (257,))
    b = b + np.float32(3) * np.sign(b)
    for name in ("addcmul", "addcdiv"):
        want = getattr(torch, name)(*map(torch.from_numpy, (x, a, b)), value=value).numpy()
        got = getattr(gradserve_lib, name)(*map(gradserve_lib.tensor, (x, a, b)), value=value)
        np.testing.assert_array_equal(np.asarray(got.tolist(), np.float32), want)


@pytest.mark.parametrize("value", [1, 0.37, -0.001])
def test_addcmul_float64_is_torchs_fused_multiply_add(gradserve_lib: Any, value: float) -> None:
    # torch's float64 addcmul is fused too (Adam-like optimizers' `exp_avg_sq.addcmul_`)
    rng = np.random.default_rng(11)
    x, b = rng.standard_normal((40, 33)), rng.standard_normal(33)
    a = rng.standard_normal((33, 40)).T  # strided
    for args in ((x, a, b), (b, a, x), (x[:, :1], b, a)):
        want = torch.addcmul(*map(torch.from_numpy, args), value=value).numpy()
        got = gradserve_lib.addcmul(*map(gradserve_lib.tensor, args), value=value)
        np.testing.assert_array_equal(np.asarray(got.tolist(), np.float64), want)
    y = gradserve_lib.tensor(x)
    y.addcmul_(gradserve_lib.tensor(a), gradserve_lib.tensor(a), value=value)
    want = torch.from_numpy(x.copy()).addcmul_(torch.from_numpy(a), torch.from_numpy(a),
                                               value=value).numpy()
    np.testing.assert_array_equal(np.asarray(y.tolist(), np.float64), want)


# --- out= ----------------------------------------------------------------------------------------

OUT_CASES = [
    "t.add(a, a, out=o23)", "t.mul(a, 2, out=o23)", "t.sum(a, 0, out=o3)",
    "t.matmul(a, a.T, out=o22)", "t.cat([a, a, a], out=o63)", "t.stack([a[0], a[1]], out=o23)",
    "t.add(a.long(), a.long(), out=o23)", "t.addcmul(a, a, a, value=2, out=o23)",
    "t.sqrt(a.abs(), out=o23)", "t.add(a, a, out=o23.double())", "t.norm(a, out=o0)",
    "t.linalg.vector_norm(a, 1, dim=(0, 1), out=o0)", "t.nn.functional.normalize(a, out=o23)",
    "t.norm(a, 'fro', out=o0)", "t.nn.functional.normalize(a.requires_grad_(), out=o23)",
    "t.norm(a.requires_grad_(), out=o0)",
    # errors, as torch's
    "t.add(a, a, out=o23.long())", "t.add(a, a, out=[1])",
    "t.add(a.requires_grad_(), a, out=o23)", "t.add(a, a, out=o23.requires_grad_())",
    "t.cat([a, a.requires_grad_()], out=o63)",
]


def _run_out(t: Any, expr: str) -> Any:
    env = {"t": t, "a": t.tensor(Y), "o23": t.zeros(2, 3), "o3": t.zeros(3), "o0": t.zeros(()),
           "o22": t.zeros(2, 2), "o63": t.zeros(6, 3)}
    try:
        got = eval(expr, env)
        return got.dtype.__repr__().split(".")[-1], got.tolist()
    except (RuntimeError, TypeError) as exc:
        return "error", exc, str(exc).split("\ngradserve:")[0]


@pytest.mark.parametrize("expr", OUT_CASES)
def test_out_keyword_against_torch(gradserve_lib: Any, expr: str) -> None:
    want, got = _run_out(torch, expr), _run_out(gradserve_lib, expr)
    if want[0] == "error":
        assert got[0] == "error" and isinstance(got[1], type(want[1])), got
        assert got[2] == want[2]
    else:
        assert got == want


def test_out_is_returned_and_written_under_no_grad(gradserve_lib: Any) -> None:
    t = gradserve_lib
    a, out = t.ones(2, 3), t.zeros(2, 3, requires_grad=True)
    with t.no_grad():
        assert t.add(a, a, out=out) is out
    assert out.tolist() == [[2.0] * 3] * 2 and out.requires_grad


def test_out_of_another_shape_is_refused_not_resized(gradserve_lib: Any) -> None:
    # torch resizes it (warning unless empty); a gradserve tensor cannot change shape in place
    t = gradserve_lib
    out = t.zeros(0)
    with pytest.raises(RuntimeError, match=r"mul\(\): out= has shape \[0\], the result \[2, 3\]"):
        t.mul(t.ones(2, 3), 2, out=out).tolist()
    assert out.shape == (0,)
