"""Gaps that public PyTorch programs met through gradserve, each checked against torch in process
(the engine) and through a session: a leaf's `.grad` made with create_graph (CopyBackwards) and
accumulated in place afterwards, torch.tensor of a nested list holding tensors, float()/int()
of a tensor of several elements, and pow's derivative grouped as torch groups it (higher
derivatives of x ** 2 keep a graph; float32 gradients round as torch's)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _quiet(fn: Any, t: Any) -> Any:
    with warnings.catch_warnings():  # backward(create_graph=True) warns of a reference cycle
        warnings.simplefilter("ignore", UserWarning)
        return fn(t)


def _error(fn: Any, t: Any) -> tuple[str, str]:
    try:
        fn(t)
    except Exception as exc:  # a session's error also names the line that recorded it
        return type(exc).__name__, str(exc).split("\ngradserve:")[0]
    raise AssertionError("no error")


def _name(fn: Any) -> str | None:
    return None if fn is None else fn.name()


# --- .grad made with create_graph, then accumulated ---------------------------------------------

def _second_derivative_through_grad(t: Any) -> list[Any]:
    # a lab's second derivative: backward(create_graph=True), copy .grad, zero it, backward
    x = t.tensor(2.0, requires_grad=True)
    (x ** 2).backward(create_graph=True)
    seen = [repr(x.grad)]
    dydx = x.grad.clone()
    x.grad.zero_()
    seen.append(repr(x.grad))
    dydx.backward()
    seen += [repr(dydx), repr(x.grad), _name(x.grad.grad_fn)]
    return seen


def test_create_graph_grad_is_copied_then_accumulated_in_place(lib):
    want = _quiet(_second_derivative_through_grad, torch)
    assert want[0] == "tensor(4., grad_fn=<CopyBackwards>)"
    assert _quiet(_second_derivative_through_grad, lib) == want


def _grads_of_two_leaves(t: Any) -> list[Any]:
    # y = a + b sends one gradient to both leaves: each .grad is its own copy
    a = t.tensor([1.0, 2.0], requires_grad=True)
    b = t.tensor([3.0, 4.0], requires_grad=True)
    (a * a + b).sum().backward(create_graph=True)
    with t.no_grad():
        b.grad.mul_(10)
    (a * b).sum().backward()  # accumulates in place, keeping each .grad's node
    return [a.grad.tolist(), b.grad.tolist(), _name(a.grad.grad_fn), _name(b.grad.grad_fn)]


def test_create_graph_grads_do_not_alias(lib):
    want = _quiet(_grads_of_two_leaves, torch)
    assert _quiet(_grads_of_two_leaves, lib) == want


def _retained_grads(t: Any) -> list[Any]:
    # a non-leaf's retained .grad under create_graph: a clone, then an out-of-place sum
    x = t.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward(create_graph=True)
    seen = [repr(y.grad), repr(x.grad)]
    (y * y).sum().backward(create_graph=True)
    return [*seen, repr(y.grad), repr(x.grad)]


def test_create_graph_retained_grad_is_a_clone(lib):
    want = _quiet(_retained_grads, torch)
    assert want[0] == "tensor([ 6., 12.], grad_fn=<CloneBackward0>)"
    assert _quiet(_retained_grads, lib) == want


# --- torch.tensor of a nested list holding tensors ----------------------------------------------

def _jacobian_by_hand(t: Any) -> Any:
    x = t.tensor(2.0, requires_grad=True)
    y = t.tensor(t.pi / 2, requires_grad=True)
    return t.tensor([[2 * x * y, x ** 2], [5, t.cos(y)]])


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_tensor_of_list_holding_tensors_reads_their_values(lib):
    want, got = _jacobian_by_hand(torch), _jacobian_by_hand(lib)
    assert (got.dtype.name, got.requires_grad) == (str(want.dtype)[6:], False)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    for data in ([torch.tensor(1), torch.tensor(2)], (torch.tensor([1.5]), 2.0)):
        want = torch.tensor(data)
        got = lib.tensor([lib.tensor(d.tolist()) if isinstance(d, torch.Tensor) else d
                          for d in data])
        assert (got.dtype.name, got.tolist()) == (str(want.dtype)[6:], want.tolist())


def test_tensor_of_list_holding_a_vector_is_refused(lib):
    def build(t: Any) -> Any:
        return t.tensor([t.tensor([1.0, 2.0]), t.tensor([3.0, 4.0])])

    want = _error(build, torch)
    assert want == ("ValueError", "only one element tensors can be converted to Python scalars")
    assert _error(build, lib) == want


@pytest.mark.parametrize("convert", [float, int])
def test_scalar_conversion_of_several_elements(lib, convert):
    def build(t: Any) -> Any:
        return convert(t.tensor([1.0, 2.0]))

    want = _error(build, torch)
    assert want[0] == "ValueError"
    assert _error(build, lib) == want


# --- pow's derivative ---------------------------------------------------------------------------

POWERS = {
    "square": lambda t, x: t.square(x),
    "x**2": lambda t, x: x ** 2,
    "x**3": lambda t, x: x ** 3,
    "x**2.5": lambda t, x: x.pow(2.5),
    "x**-1": lambda t, x: x ** -1,
    "x**0": lambda t, x: x ** 0,
    "x**tensor": lambda t, x: x ** t.tensor([2.0, 0.0, 3.0]),
    "2.5**x": lambda t, x: 2.5 ** x,
}


@pytest.mark.parametrize("power", sorted(POWERS))
def test_pow_higher_derivatives_keep_torchs_graph(lib, power):
    def derivatives(t: Any) -> list[Any]:
        # the first three derivatives while they still require grad: values and grad_fn names
        x = t.tensor([1.5, -2.0, 0.7], requires_grad=True)
        y = POWERS[power](t, x).sum()
        seen = []
        while len(seen) < 3 and y.requires_grad:
            g, = t.autograd.grad(y, x, create_graph=True)
            seen.append((g.tolist(), _name(g.grad_fn)))
            y = g.sum()
        return seen

    got, want = derivatives(lib), derivatives(torch)
    assert [name for _, name in got] == [name for _, name in want]
    for (g, _), (w, _) in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_pow_gradients_round_as_torchs(lib):
    rng = np.random.default_rng(0)
    base = (rng.random(2000) * 3 + 0.1).astype(np.float32)
    seed = rng.random(2000).astype(np.float32)

    def grads(t: Any) -> list[np.ndarray]:
        # torch computes these powers without pow (x ** 3 is x * x * x); a gradient is exact
        # where its x.pow(e - 1) is one of them (elsewhere numpy's pow rounds as it rounds)
        x = t.tensor(base, requires_grad=True)
        out = []
        for e in (3, 2, -1, -2, -0.5):
            y = x ** e
            out.append(y.detach().numpy())
            if e in (3, 2, -1):
                out.append(t.autograd.grad(y, x, t.tensor(seed))[0].numpy())
        return out

    for g, w in zip(grads(lib), grads(torch)):
        np.testing.assert_array_equal(g, w)


# --- numpy's keyword names ----------------------------------------------------------------------

NUMPY_KEYWORDS = {
    "torch.unsqueeze(axis=)": lambda t, x: t.unsqueeze(x, axis=-1),
    "Tensor.unsqueeze(axis=)": lambda t, x: x.unsqueeze(axis=0),
    "Tensor.sum(axis=, keepdims=)": lambda t, x: x.sum(axis=1, keepdims=True),
    "Tensor.mean(axis=)": lambda t, x: x.mean(axis=0),
    "torch.cat(axis=)": lambda t, x: t.cat([x, x], axis=1),
    "torch.stack(axis=)": lambda t, x: t.stack([x, x], axis=2),
    "torch.softmax(axis=)": lambda t, x: t.softmax(x, axis=0),
    "torch.max(axis=)": lambda t, x: t.max(x, axis=1)[0],
    "Tensor.argmax(axis=)": lambda t, x: x.argmax(axis=1),
    "torch.add(x2=)": lambda t, x: t.add(x, x2=x),
    "Tensor.sum(dim=, axis=)": lambda t, x: x.sum(dim=0, axis=1),
}


@pytest.mark.parametrize("call", sorted(NUMPY_KEYWORDS))
def test_numpy_keyword_names(lib, call):
    # torch's argument parser takes axis= for dim=, keepdims= for keepdim=, x2= for other=
    def run(t: Any) -> Any:
        x = t.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
        try:
            out = NUMPY_KEYWORDS[call](t, x)
        except TypeError:  # both names given: torch's TypeError (the engine's subclasses it)
            return "TypeError"
        return tuple(out.shape), out.tolist()

    got, want = run(lib), run(torch)
    assert got[0] == want[0]
    if want != "TypeError":
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


# --- a name gradserve does not have -------------------------------------------------------------

@pytest.mark.parametrize("path", ["frobnicate", "nn.Frob", "nn.functional.frob", "nn.init.frob",
                                  "optim.Frob", "autograd.frob", "utils.frob", "utils.data.Frob",
                                  "cuda.frob"])
def test_missing_name_says_gradserve_does_not_implement_it(lib, path):
    obj = lib
    *parents, name = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    with pytest.raises(AttributeError, match=rf"^gradserve does not implement torch\.{path} "):
        getattr(obj, name)


# --- torch.nn.modules ---------------------------------------------------------------------------

def test_nn_modules_holds_torchs_submodules(lib):
    for file in ("module", "linear", "activation", "conv", "pooling", "batchnorm", "normalization",
                 "dropout", "flatten", "sparse", "container", "loss"):
        want = getattr(torch.nn.modules, file)
        got = getattr(lib.nn.modules, file)
        names = [n for n in dir(want) if isinstance(getattr(want, n), type)
                 and issubclass(getattr(want, n), torch.nn.Module)
                 and getattr(want, n).__module__ == want.__name__ and hasattr(lib.nn, n)]
        assert names, file
        for n in names:
            assert getattr(got, n) is getattr(lib.nn, n)
            assert getattr(lib.nn.modules, n) is getattr(lib.nn, n)
    with pytest.raises(AttributeError, match=r"^gradserve does not implement "
                                             r"torch\.nn\.modules\.loss\.Frob "):
        lib.nn.modules.loss.Frob  # noqa: B018


# --- the order a backward pass runs its nodes ----------------------------------------------------

def _hook_order(lib: Any) -> list[str]:
    """Hooks on tensors of a graph where several nodes are ready at once: the order they run in
    is torch's ready queue (highest sequence number first, AccumulateGrad before any node)."""
    seen: list[str] = []

    def tag(t: Any, name: str) -> None:
        t.register_hook(lambda g: seen.append(name))

    a = lib.tensor([1.0, 2.0], requires_grad=True)
    b = lib.tensor([3.0, 4.0], requires_grad=True)
    c, d = a * b, a + b
    for t, name in ((c, "c"), (d, "d"), (a, "a"), (b, "b")):
        tag(t, name)
    ((c * d).sum() + c.sum() + (d * 2).sum()).backward()
    x = lib.tensor(1.0, requires_grad=True)
    ys = [x * i for i in range(4)]
    for i, y in enumerate(ys):
        tag(y, f"y{i}")
    sum(ys).backward()
    w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    parts = [w * 1, w * 2, (w * 3).exp()]
    for i, p in enumerate(parts):
        tag(p, f"p{i}")
    tag(w, "w")
    (parts[0] + parts[1] + parts[2]).sum().backward()
    return seen


def test_backward_runs_ready_nodes_in_torchs_order(lib):
    assert _hook_order(lib) == _hook_order(torch)
