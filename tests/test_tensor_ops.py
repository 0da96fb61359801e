"""The tensor ops added with 0.2 in their torch spellings, in process and through a session,
against real torch: cumprod, roll, index_add (function, method, index_add_, alpha, out=),
repeat_interleave (int and tensor repeats, dim, output_size, the one-tensor form), unique
(sorted, return_inverse, return_counts, dim; no derivative), diag / diag_embed / diagonal,
nan_to_num, kron, cdist (each compute mode, batches), glu / nn.GLU, baddbmm / addbmm and
embedding's scale_grad_by_freq: values, dtypes, grad_fn names, gradients, second derivatives
where torch has them, and error types and messages. The OpInfos (tests/opinfo_*.py) check each
op itself; this file checks the spellings programs call.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradserve.client as gc_client
import gradserve.engine as ge
from gradserve.engine import errors, limits
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

X = [[1.0, -2.0, 3.0, 0.5], [0.0, 4.0, -1.5, 2.0], [2.5, 1.0, 0.0, -3.0]]
Case = Callable[[Any, Any], Any]


@pytest.fixture(scope="module")
def client(gradserve_server: Any) -> Any:
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture
def session(client: Any) -> Any:
    with client.session() as s:
        yield s


def _flat(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _dtype(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def _same(lib: Any, f: Case, data: Any = X) -> None:
    """f(lib, x) and f(torch, x): outputs (values, dtypes, grad_fns), then the gradient of
    sum(out * out) for x and its second derivative along x (where the outputs need grad)."""
    tx = torch.tensor(data, requires_grad=True)
    lx = lib.tensor(data, requires_grad=True)
    t_out, l_out = _flat(f(torch, tx)), _flat(f(lib, lx))
    assert len(l_out) == len(t_out)
    for t, s in zip(t_out, l_out):
        assert tuple(s.shape) == tuple(t.shape)
        assert _dtype(s) == _dtype(t)
        np.testing.assert_allclose(s.detach().numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-5)
        assert (s.grad_fn.name() if s.grad_fn else None) == (
            t.grad_fn.name() if t.grad_fn else None)
    used = [k for k, t in enumerate(t_out) if t.requires_grad]
    if not used:
        return
    t_g, = torch.autograd.grad(sum((t_out[k] * t_out[k]).sum() for k in used), tx,
                               create_graph=True)
    l_g, = lib.autograd.grad(sum((l_out[k] * l_out[k]).sum() for k in used), lx,
                             create_graph=True)
    want = t_g.detach().numpy()
    np.testing.assert_allclose(l_g.detach().numpy(), want, rtol=1e-4,
                               atol=1e-4 * max(1.0, float(np.abs(want).max(initial=0))))
    if t_g.requires_grad:
        try:
            t_gg, = torch.autograd.grad((t_g * t_g).sum(), tx, allow_unused=True)
        except NotImplementedError as exc:  # CdistBackward0: torch differentiates it once
            with pytest.raises(NotImplementedError, match=str(exc)):
                lib.autograd.grad((l_g * l_g).sum(), lx, allow_unused=True)
            return
        l_gg, = lib.autograd.grad((l_g * l_g).sum(), lx, allow_unused=True)
        want = np.zeros(np.shape(data)) if t_gg is None else t_gg.numpy()
        got = np.zeros(np.shape(data)) if l_gg is None else l_gg.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-3,
                                   atol=1e-4 * max(1.0, float(np.abs(want).max(initial=0))))


SPELLINGS: list[Case] = [
    # cumprod, with zeros in the input (torch's masked backward and its create_graph one)
    lambda lib, x: lib.cumprod(x, 1), lambda lib, x: x.cumprod(dim=0),
    lambda lib, x: lib.cumprod(x * 1, -1, dtype=lib.float64),
    lambda lib, x: (x * 1).cumprod_(1),
    # roll
    lambda lib, x: lib.roll(x, 1), lambda lib, x: x.roll(-1, 1),
    lambda lib, x: lib.roll(x, shifts=(1, 2), dims=(0, 1)),
    # index_add: function, method, in place, alpha, keywords
    lambda lib, x: lib.index_add(x, 0, lib.tensor([2, 0, 2]), x * 2),
    lambda lib, x: x.index_add(1, lib.tensor([3, 3]), x[:, :2], alpha=-0.5),
    lambda lib, x: (x * 1).index_add_(0, lib.tensor([1]), x[:1] * 3, alpha=2),
    lambda lib, x: lib.index_add(x, dim=1, index=lib.tensor([0]), source=x[:, 1:2]),
    # repeat_interleave
    lambda lib, x: lib.repeat_interleave(x, 2), lambda lib, x: x.repeat_interleave(3, dim=1),
    lambda lib, x: x.repeat_interleave(2, 0, output_size=6),
    lambda lib, x: lib.repeat_interleave(x, lib.tensor([1, 0, 2]), dim=0),
    lambda lib, x: x.repeat_interleave(lib.tensor([2]), dim=-1),
    lambda lib, x: lib.repeat_interleave(x, lib.tensor(2)),
    lambda lib, x: lib.repeat_interleave(lib.tensor([1, 2, 0, 3], dtype=lib.int32)),
    # unique: no derivative, the outputs still require grad as torch's
    lambda lib, x: lib.unique(x.detach()),
    lambda lib, x: lib.unique(x.detach().round(), return_inverse=True, return_counts=True),
    lambda lib, x: x.detach().unique(sorted=False, return_counts=True),
    lambda lib, x: lib.unique((x.detach() > 0).long(), dim=1, return_inverse=True),
    lambda lib, x: lib.unique(x).requires_grad,
    lambda lib, x: lib.bincount(lib.tensor([3, 0, 3, 1]), minlength=5),
    lambda lib, x: lib.tensor([2, 0, 2]).bincount(x[0, :3].detach()),
    lambda lib, x: lib.tensor([1, 2]).type_as(x), lambda lib, x: x.type_as(x * 1),
    # the diagonals
    lambda lib, x: lib.diag(x), lambda lib, x: x.diag(1), lambda lib, x: lib.diag(x[0], -1),
    lambda lib, x: lib.diagonal(x, -1), lambda lib, x: x.diagonal(0, 1, 0),
    lambda lib, x: lib.diag_embed(x), lambda lib, x: lib.diag_embed(x, 1, 0, 2),
    lambda lib, x: [y := x * 1, y.diagonal().mul_(2), y][-1],  # written through the view
    # nan_to_num
    lambda lib, x: lib.nan_to_num(lib.log(x)),
    lambda lib, x: lib.log(x).nan_to_num(nan=1.0, posinf=2.0, neginf=-2.0),
    lambda lib, x: lib.log(x).nan_to_num_(0.5),
    # kron
    lambda lib, x: lib.kron(x, x[:2, :2]), lambda lib, x: x[0].kron(lib.tensor([1, 2])),
    # cdist: the direct sums, and torch's mm path (more than 25 rows, or asked for)
    lambda lib, x: lib.cdist(x, x[:2]), lambda lib, x: lib.cdist(x, x, p=1),
    lambda lib, x: lib.cdist(x, x[1:], p=float("inf")),
    lambda lib, x: lib.cdist(x.repeat(10, 1), x[:2]),
    lambda lib, x: lib.cdist(x, x, compute_mode="use_mm_for_euclid_dist"),
    lambda lib, x: lib.cdist(x.repeat(10, 1), x, compute_mode="donot_use_mm_for_euclid_dist"),
    lambda lib, x: lib.cdist(x.reshape(1, 3, 4).expand(2, 3, 4) * 1, x.repeat(9, 1)),
    # glu, baddbmm, addbmm
    lambda lib, x: lib.nn.functional.glu(x), lambda lib, x: lib.nn.GLU(0)(x[:2]),
    lambda lib, x: lib.baddbmm(x[:2, :2].reshape(1, 2, 2), x.reshape(1, 2, 6),
                               x.reshape(1, 6, 2), beta=0.5, alpha=2),
    lambda lib, x: (x[:2, :2].reshape(1, 2, 2) * 1).baddbmm_(x.reshape(1, 2, 6),
                                                             x.reshape(1, 6, 2)),
    lambda lib, x: lib.addbmm(x[0, :2], x.reshape(2, 2, 3), x.reshape(2, 3, 2)),
    lambda lib, x: x[:2, :2].addbmm(x.reshape(2, 2, 3), x.reshape(2, 3, 2), beta=0),
    # embedding's gradient scaled by how often each row is picked
    lambda lib, x: lib.nn.functional.embedding(lib.tensor([[0, 2, 2], [2, 1, 0]]), x,
                                               scale_grad_by_freq=True),
]


def _embedding_module(lib: Any, x: Any) -> Any:
    lib.manual_seed(0)
    emb = lib.nn.Embedding(4, 3, scale_grad_by_freq=True, padding_idx=1)
    out = emb(lib.tensor([1, 3, 3, 0]))
    (out * x[0, :3]).sum().backward()
    return emb.weight.grad, repr(emb) == (
        "Embedding(4, 3, padding_idx=1, scale_grad_by_freq=True)")


@pytest.mark.parametrize("f", SPELLINGS, ids=[str(i) for i in range(len(SPELLINGS))])
def test_spelling_in_process(f: Case) -> None:
    _same(ge, lambda lib, x: _values(f(lib, x)), X)


@pytest.mark.parametrize("f", SPELLINGS, ids=[str(i) for i in range(len(SPELLINGS))])
def test_spelling_through_a_session(session: Any, f: Case) -> None:
    _same(session, lambda lib, x: _values(f(lib, x)), X)


def _values(out: Any) -> Any:
    """Plain Python values (a flag) as a tensor, so _same compares them too."""
    if isinstance(out, bool):
        return torch.tensor(out) if out is out else out
    return out


def test_embedding_module_scale_grad_by_freq(session: Any) -> None:
    want_grad, want_repr = _embedding_module(torch, torch.tensor(X))
    for lib in (ge, session):
        grad, same_repr = _embedding_module(lib, lib.tensor(X))
        np.testing.assert_allclose(grad.numpy(), want_grad.numpy(), rtol=1e-6)
        assert same_repr


@pytest.mark.parametrize("out_call", [
    lambda lib, x, out: lib.index_add(x, 0, lib.tensor([1]), x[:1], out=out),
    lambda lib, x, out: lib.cumprod(x, 0, out=out), lambda lib, x, out: lib.nan_to_num(x, out=out),
    lambda lib, x, out: lib.kron(x[:1, :2], x[:, :2], out=out),
    lambda lib, x, out: [lib.diag(x, out=out[0, :3]), out][-1],  # a view of out
])
def test_out_keyword(session: Any, out_call: Any) -> None:
    want = torch.zeros(3, 4)
    out_call(torch, torch.tensor(X), want)
    for lib in (ge, session):
        out = lib.zeros(3, 4)
        assert out_call(lib, lib.tensor(X), out) is out
        np.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-6)


# --- no derivative where torch has none -----------------------------------------------------------

NO_DERIVATIVE = [
    lambda lib, x: lib.autograd.grad(lib.unique(x).sum(), x),
    lambda lib, x: lib.autograd.grad(lib.unique(x, dim=0).sum(), x),
    lambda lib, x: lib.autograd.grad(lib.bincount(lib.tensor([0, 2, 2]), x[0, :3]).sum(), x),
    # CdistBackward0 is differentiable only once in torch
    lambda lib, x: lib.autograd.grad(
        lib.autograd.grad(lib.cdist(x, x[:2]).sum(), x, create_graph=True)[0].sum(), x),
]


@pytest.mark.parametrize("f", NO_DERIVATIVE, ids=["unique", "unique_dim", "bincount",
                                                   "cdist twice"])
def test_no_derivative_as_torch(session: Any, f: Case) -> None:
    _errors_match(f)


# --- errors: types and messages -------------------------------------------------------------------

ERRORS: list[Case] = [
    lambda lib, x: lib.cumprod(x, 2), lambda lib, x: lib.roll(x, (1, 2), 0),
    lambda lib, x: lib.roll(x, (1, 2)), lambda lib, x: lib.roll(x, 1, 5),
    lambda lib, x: lib.roll(x, [], []), lambda lib, x: lib.roll(lib.tensor(2.0), 1, 0),
    lambda lib, x: lib.index_add(x, 0, lib.tensor([[0]]), x[:1]),
    lambda lib, x: lib.index_add(x, 0, lib.tensor([0.0]), x[:1]),
    lambda lib, x: lib.index_add(x, 0, lib.tensor([5]), x[:1]),
    lambda lib, x: lib.index_add(x, 0, lib.tensor([-1]), x[:1]),
    lambda lib, x: lib.index_add(x, 0, lib.tensor([1]), lib.ones(1, 5)),
    lambda lib, x: lib.index_add(x, 0, lib.tensor([1]), lib.ones(2, 4)),
    lambda lib, x: lib.index_add(x, 0, lib.tensor([1]), lib.ones(1, 4, dtype=lib.float64)),
    lambda lib, x: lib.index_add(x, 2, lib.tensor([1]), x[:1]),
    lambda lib, x: lib.repeat_interleave(x, lib.tensor([1, 2]), dim=0),
    lambda lib, x: lib.repeat_interleave(x, lib.tensor([1, -2, 1]), dim=0),
    lambda lib, x: lib.repeat_interleave(x, -1),
    lambda lib, x: lib.repeat_interleave(x, lib.tensor([1.0, 2.0, 1.0]), dim=0),
    lambda lib, x: lib.repeat_interleave(x, lib.tensor([[1, 2, 1]]), dim=0),
    lambda lib, x: lib.repeat_interleave(x, 2, dim=0, output_size=5),
    lambda lib, x: lib.repeat_interleave(x, lib.tensor([1, 2, 1]), dim=0, output_size=5),
    lambda lib, x: lib.repeat_interleave(lib.tensor([1, 2, 3]), output_size=7),
    lambda lib, x: lib.repeat_interleave(x, 2, dim=3),
    lambda lib, x: lib.unique(x, dim=2),
    lambda lib, x: lib.unique(lib.ones(2, 0), dim=0),
    lambda lib, x: lib.diagonal(lib.ones(3)), lambda lib, x: lib.diagonal(x, 0, 0, 0),
    lambda lib, x: lib.diagonal(x, 0, 0, 2), lambda lib, x: lib.diag(lib.ones(2, 2, 2)),
    lambda lib, x: lib.diag(lib.tensor(1.0)), lambda lib, x: lib.diag_embed(lib.tensor(1.0)),
    lambda lib, x: lib.diag_embed(x, 0, 0, 0),
    lambda lib, x: lib.cdist(lib.ones(3), lib.ones(3)),
    lambda lib, x: lib.cdist(lib.ones(2, 3), lib.ones(2, 4)),
    lambda lib, x: lib.cdist(lib.ones(2, 3), lib.ones(2, 3), p=-1),
    lambda lib, x: lib.cdist(lib.ones(2, 3, dtype=lib.int64), lib.ones(2, 3, dtype=lib.int64)),
    lambda lib, x: lib.cdist(lib.ones(2, 3), lib.ones(2, 3), compute_mode="foo"),
    lambda lib, x: lib.cdist(lib.ones(2, 3, dtype=lib.float64), lib.ones(2, 3)),
    lambda lib, x: lib.cdist(lib.ones(2, 2, 3), lib.ones(3, 2, 3)),
    lambda lib, x: lib.nn.functional.glu(lib.ones(3)),
    lambda lib, x: lib.nn.functional.glu(lib.tensor(1.0)),
    lambda lib, x: lib.nn.functional.glu(x, 2),
    lambda lib, x: lib.nn.functional.glu(lib.ones(2, 4, dtype=lib.int64)),
    lambda lib, x: lib.baddbmm(lib.ones(2, 3, 3), lib.ones(3, 4), lib.ones(2, 4, 3)),
    lambda lib, x: lib.baddbmm(lib.ones(2, 3, 3), lib.ones(2, 3, 4), lib.ones(2, 5, 3)),
    lambda lib, x: lib.baddbmm(lib.ones(2, 3, 3), lib.ones(2, 3, 4),
                               lib.ones(2, 4, 3, dtype=lib.float64)),
    lambda lib, x: lib.baddbmm(lib.ones(2, 3, 3, dtype=lib.float64), lib.ones(2, 3, 4),
                               lib.ones(2, 4, 3)),
    lambda lib, x: lib.baddbmm(lib.ones(2, 2, 3), lib.ones(2, 3, 4), lib.ones(2, 4, 3)),
    lambda lib, x: lib.baddbmm(*(lib.ones(2, 2, 2, dtype=lib.bool),) * 3),
    lambda lib, x: lib.addbmm(lib.ones(3, 3), lib.ones(2, 3, 4), lib.ones(3, 4, 3)),
    lambda lib, x: lib.addbmm(lib.ones(3, 3), lib.ones(2, 3, 4), lib.ones(2, 5, 3)),
    lambda lib, x: lib.addbmm(lib.ones(2, 3), lib.ones(2, 3, 4), lib.ones(2, 4, 3)),
    lambda lib, x: lib.addbmm(lib.ones(3), lib.ones(3, 4), lib.ones(2, 4, 3)),
    lambda lib, x: x.cumprod_(0),  # a leaf that requires grad
    lambda lib, x: x.type_as(3), lambda lib, x: lib.bincount(lib.tensor([-1])),
    lambda lib, x: lib.bincount(lib.tensor([[1]])),
    lambda lib, x: lib.bincount(lib.tensor([1.0])),
    lambda lib, x: lib.bincount(lib.tensor([True])),
    lambda lib, x: lib.bincount(lib.tensor([1]), minlength=-1),
    lambda lib, x: lib.bincount(lib.tensor([1, 2]), weights=lib.ones(3)),
]


def _outcome(f: Case, lib: Any) -> tuple[type, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as err:
            out = f(lib, lib.tensor(X, requires_grad=True))
            for t in _flat(out):
                t.tolist()  # a session reports an op's error when its value is needed
    return type(err.value), str(err.value).split("\n")[0].split(" (Triggered internally")[0]


def _errors_match(f: Case, session: Any = None) -> None:
    t_type, t_msg = _outcome(f, torch)
    for lib in (ge,) if session is None else (ge, session):
        e_type, e_msg = _outcome(f, lib)
        assert issubclass(e_type, t_type) or t_type.__name__ in {
            k.__name__ for k in e_type.__mro__}, (lib, e_type, t_type, e_msg)
        assert e_msg == t_msg, (lib, e_msg, t_msg)


@pytest.mark.parametrize("f", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors_match_torch(session: Any, f: Case) -> None:
    _errors_match(f, session)


# --- sizes from values are checked before anything is allocated ----------------------------------

@pytest.mark.parametrize("call", [
    lambda: ge.repeat_interleave(ge.tensor([2**40, 2**40])),
    lambda: ge.repeat_interleave(ge.tensor([2**62, 2**62, 2**62])),  # an int64 sum overflows
    lambda: ge.repeat_interleave(ge.ones(2), ge.tensor([3, 2**50])),
    lambda: ge.kron(ge.ones(1).expand(2**16), ge.ones(1).expand(2**16)),
    lambda: ge.cdist(ge.ones(1, 1).expand(2**16, 1), ge.ones(1, 1).expand(2**16, 1)),
    lambda: ge.diag_embed(ge.ones(1).expand(2**17)),
    lambda: ge.bincount(ge.tensor([2**40])),
])
def test_large_results_are_refused_before_allocating(call: Callable[[], Any]) -> None:
    with limits.allocation_limit(2**20), pytest.raises(errors.AllocationLimitError):
        call()


# --- whole programs: the same lines with torch and through a session ------------------------------

PROGRAMS = sorted((Path(__file__).parent / "tensor_ops_programs").glob("*.py"))
REPO = Path(__file__).resolve().parent.parent
_THROUGH_SESSION = (
    "import runpy, sys\n"
    "import gradserve.client as gc\n"
    "from tests.corpus.run import install_session_as_torch\n"
    "with gc.connect(sys.argv[1]) as c, c.session() as s:\n"
    "    install_session_as_torch(s)\n"
    "    runpy.run_path(sys.argv[2], run_name='__main__')\n")


def _run(args: list[str]) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return re.sub(r" object at 0x[0-9a-f]+>", " object at 0x...>", done.stdout)


@pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)
@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program_prints_what_torch_prints(gradserve_server: Any, program: Path) -> None:
    want = _run([str(program)])
    got = _run(["-c", _THROUGH_SESSION, f"localhost:{gradserve_server[1]}", str(program)])
    assert got.splitlines() == want.splitlines()
