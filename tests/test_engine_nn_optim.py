"""nn.functional, creation/random ops, dtype conversions and optimizers against torch.

The per-op value/gradient/second-derivative checks live in the OpInfos (tests/opinfo_nn.py,
tests/opinfo_creation.py); here: the torch spellings on top (cross_entropy's composition, the
varargs size forms, Tensor.to/float/...), error texts, generators, and optimizer trajectories.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import torch

TF = torch.nn.functional

F = ge.nn.functional


def _np(t: Any) -> np.ndarray:
    return np.array(t.detach().numpy(force=True))  # force: torch's double backward ZeroTensors


def _pair(a: np.ndarray, rg: bool = True) -> tuple[Any, Any]:
    return (ge.tensor(a, requires_grad=rg), torch.tensor(a, requires_grad=rg))


# --- cross_entropy -------------------------------------------------------------------------------

RNG = np.random.default_rng(7)
LOGITS = RNG.standard_normal((5, 4)).astype(np.float32)
LABELS = np.array([0, 3, 1, 1, 2])
PROBS = np.exp(RNG.standard_normal((5, 4))).astype(np.float32)
PROBS /= PROBS.sum(1, keepdims=True)
WEIGHT = np.array([0.5, 1.0, 2.0, 1.5], dtype=np.float32)


def _check_loss(engine_fn: Any, torch_fn: Any, x: np.ndarray, rtol: float = 1e-5) -> None:
    """Values, gradients and second derivatives (through a random direction) against torch."""
    ex, tx = _pair(x)
    el, tl = engine_fn(ex), torch_fn(tx)
    np.testing.assert_allclose(_np(el), _np(tl), rtol=rtol, atol=1e-6)
    v = RNG.standard_normal(tuple(tl.shape)).astype(np.float32)
    (eg,) = ge.autograd.grad(el, [ex], ge.tensor(v), create_graph=True)
    (tg,) = torch.autograd.grad(tl, [tx], torch.tensor(v), create_graph=True)
    np.testing.assert_allclose(_np(eg), _np(tg), rtol=rtol, atol=1e-6)
    w = RNG.standard_normal(x.shape).astype(np.float32)
    (eg2,) = ge.autograd.grad((eg * ge.tensor(w)).sum(), [ex])
    (tg2,) = torch.autograd.grad((tg * torch.tensor(w)).sum(), [tx])
    np.testing.assert_allclose(_np(eg2), _np(tg2), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_class_indices(reduction: str, weighted: bool):
    ew = ge.tensor(WEIGHT) if weighted else None
    tw = torch.tensor(WEIGHT) if weighted else None
    _check_loss(lambda x: F.cross_entropy(x, ge.tensor(LABELS), ew, reduction=reduction),
                lambda x: TF.cross_entropy(x, torch.tensor(LABELS), tw, reduction=reduction),
                LOGITS)


def test_cross_entropy_graph_is_log_softmax_then_nll_loss():
    x = ge.tensor(LOGITS, requires_grad=True)
    loss = F.cross_entropy(x, ge.tensor(LABELS))
    assert loss.grad_fn.name() == "NllLossBackward0"
    assert loss.grad_fn.next_functions[0][0].name() == "LogSoftmaxBackward0"


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_ignore_index(reduction: str):
    labels = np.array([0, -100, 1, 2, -100])
    _check_loss(lambda x: F.cross_entropy(x, ge.tensor(labels), reduction=reduction),
                lambda x: TF.cross_entropy(x, torch.tensor(labels), reduction=reduction), LOGITS)
    labels = np.array([0, 3, 1, 3, 2])
    _check_loss(lambda x: F.cross_entropy(x, ge.tensor(labels), ignore_index=3,
                                          reduction=reduction),
                lambda x: TF.cross_entropy(x, torch.tensor(labels), ignore_index=3,
                                           reduction=reduction), LOGITS)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_class_probabilities(reduction: str, weighted: bool, smoothing: float):
    ew = ge.tensor(WEIGHT) if weighted else None
    tw = torch.tensor(WEIGHT) if weighted else None
    _check_loss(lambda x: F.cross_entropy(x, ge.tensor(PROBS), ew, reduction=reduction,
                                          label_smoothing=smoothing),
                lambda x: TF.cross_entropy(x, torch.tensor(PROBS), tw, reduction=reduction,
                                           label_smoothing=smoothing), LOGITS)
    x = ge.tensor(LOGITS, requires_grad=True)
    t = torch.tensor(LOGITS, requires_grad=True)
    assert (F.cross_entropy(x, ge.tensor(PROBS), reduction=reduction).grad_fn.name()
            == type(TF.cross_entropy(t, torch.tensor(PROBS), reduction=reduction).grad_fn
                     ).__name__)


def _graph(fn: Any) -> list[str]:
    """Node names of the graph behind fn's result, breadth first."""
    names, queue, seen = [], [fn.grad_fn], set()
    while queue:
        node = queue.pop(0)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.append(node.name() if hasattr(node, "_name") else type(node).__name__)
        queue += [n for n, _ in node.next_functions]
    return names


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, 1])
def test_cross_entropy_label_smoothing_with_class_indices(reduction, weighted, ignore):
    ew = ge.tensor(WEIGHT) if weighted else None
    tw = torch.tensor(WEIGHT) if weighted else None
    kw = {"reduction": reduction, "label_smoothing": 0.3,
          **({} if ignore is None else {"ignore_index": ignore})}
    for engine_fn in (F.cross_entropy, ge.cross_entropy):  # torch's composition, the wire's op
        _check_loss(lambda x, f=engine_fn: f(x, ge.tensor(LABELS), ew, **kw),
                    lambda x: TF.cross_entropy(x, torch.tensor(LABELS), tw, **kw), LOGITS)
    ex, tx = _pair(LOGITS)
    got = F.cross_entropy(ex, ge.tensor(LABELS), ew, **kw)
    want = TF.cross_entropy(tx, torch.tensor(LABELS), tw, **kw)
    assert _graph(got) == _graph(want)
    assert ge.cross_entropy(ex, ge.tensor(LABELS), ew, **kw).grad_fn.name() == "AddBackward0"


@pytest.mark.parametrize("shape", [(1, 0, 4), (2, 0), (0, 4), (0,)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_of_empty_probabilities_is_torchs(shape, reduction, smoothing):
    for engine_fn in (F.cross_entropy, ge.cross_entropy):
        ex, tx = _pair(np.ones(shape, np.float32))
        kw = {"reduction": reduction, "label_smoothing": smoothing}
        got = engine_fn(ex, ge.zeros(shape), **kw)
        want = TF.cross_entropy(tx, torch.zeros(shape), **kw)
        np.testing.assert_array_equal(_np(got), _np(want))
        assert got.grad_fn.name() == type(want.grad_fn).__name__
        (eg,) = ge.autograd.grad(got.sum(), [ex])
        (tg,) = torch.autograd.grad(want.sum(), [tx])
        assert eg.shape == tg.shape


def test_cross_entropy_spatial_and_unbatched():
    x = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    labels = np.array([[0, 3, 1], [2, 2, 0]])
    _check_loss(lambda v: F.cross_entropy(v, ge.tensor(labels)),
                lambda v: TF.cross_entropy(v, torch.tensor(labels)), x)
    _check_loss(lambda v: F.cross_entropy(v, ge.tensor(2)),
                lambda v: TF.cross_entropy(v, torch.tensor(2)), LOGITS[0])


# --- the other losses through nn.functional ------------------------------------------------------

@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pointwise_losses(name: str, reduction: str):
    target = RNG.standard_normal((5, 4)).astype(np.float32)
    _check_loss(lambda x: getattr(F, name)(x, ge.tensor(target), reduction=reduction),
                lambda x: getattr(TF, name)(x, torch.tensor(target), reduction=reduction),
                LOGITS)


def test_pointwise_loss_size_warning():
    x, t = ge.zeros(3, 1), ge.zeros(3)
    with pytest.warns(UserWarning) as got:
        F.mse_loss(x, t)
    with pytest.warns(UserWarning) as want:
        TF.mse_loss(torch.zeros(3, 1), torch.zeros(3))
    assert str(got[0].message) == str(want[0].message)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_and_logits(reduction: str):
    p = RNG.uniform(0.05, 0.95, (6,)).astype(np.float32)
    y = (RNG.random(6) > 0.5).astype(np.float32)
    _check_loss(lambda x: F.binary_cross_entropy(x, ge.tensor(y), reduction=reduction),
                lambda x: TF.binary_cross_entropy(x, torch.tensor(y), reduction=reduction), p)
    pw = np.array([2.0], dtype=np.float32)
    _check_loss(lambda x: F.binary_cross_entropy_with_logits(
                    x, ge.tensor(y), reduction=reduction, pos_weight=ge.tensor(pw)),
                lambda x: TF.binary_cross_entropy_with_logits(
                    x, torch.tensor(y), reduction=reduction, pos_weight=torch.tensor(pw)),
                p * 8 - 4)


def test_binary_cross_entropy_clamps_log_at_minus_100():
    p = np.array([0.0, 1.0, 0.0, 1.0], dtype=np.float32)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32)
    e = F.binary_cross_entropy(ge.tensor(p), ge.tensor(y), reduction="none")
    t = TF.binary_cross_entropy(torch.tensor(p), torch.tensor(y), reduction="none")
    np.testing.assert_array_equal(_np(e), _np(t))
    ex, tx = _pair(np.array([0.0, 1.0], dtype=np.float32))
    F.binary_cross_entropy(ex, ge.tensor([1.0, 0.0])).backward()
    TF.binary_cross_entropy(tx, torch.tensor([1.0, 0.0])).backward()
    np.testing.assert_allclose(_np(ex.grad), _np(tx.grad), rtol=1e-6)


def test_softmax_implicit_dim_warns_like_torch():
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        e = F.softmax(ge.tensor(x))
    with pytest.warns(UserWarning):
        t = TF.softmax(torch.tensor(x))
    np.testing.assert_allclose(_np(e), _np(t))


def test_softmax_is_stable_and_takes_dtype():
    x = np.array([[1000.0, 0.0, -1000.0], [-np.inf, 0.0, 1.0]], dtype=np.float32)
    for fn, tfn in ((ge.softmax, torch.softmax), (ge.log_softmax, torch.log_softmax)):
        np.testing.assert_allclose(_np(fn(ge.tensor(x), 1)), _np(tfn(torch.tensor(x), 1)),
                                   rtol=1e-6)
        assert fn(ge.tensor(x), 1, dtype=ge.float64).dtype is ge.float64


def test_loss_errors_match_torch():
    x, t = ge.tensor(LOGITS), torch.tensor(LOGITS)
    cases = [
        (lambda: F.mse_loss(x, x, reduction="avg"), lambda: TF.mse_loss(t, t, reduction="avg")),
        (lambda: F.cross_entropy(x, ge.tensor([0, 1])),
         lambda: TF.cross_entropy(t, torch.tensor([0, 1]))),
        (lambda: F.nll_loss(x, ge.tensor([0, 9, 1, 1, 1])),
         lambda: TF.nll_loss(t, torch.tensor([0, 9, 1, 1, 1]))),
        (lambda: F.nll_loss(x, ge.tensor([0.0, 1, 1, 1, 1])),
         lambda: TF.nll_loss(t, torch.tensor([0.0, 1, 1, 1, 1]))),
        (lambda: F.nll_loss(x, ge.zeros(5, 2, dtype=ge.int64)),
         lambda: TF.nll_loss(t, torch.zeros(5, 2, dtype=torch.int64))),
        (lambda: F.binary_cross_entropy(ge.tensor([0.5, 2.0]), ge.tensor([1.0, 0.0])),
         lambda: TF.binary_cross_entropy(torch.tensor([0.5, 2.0]), torch.tensor([1.0, 0.0]))),
        (lambda: F.binary_cross_entropy(ge.tensor([0.5, 0.2]), ge.tensor([1.0])),
         lambda: TF.binary_cross_entropy(torch.tensor([0.5, 0.2]), torch.tensor([1.0]))),
        (lambda: F.binary_cross_entropy_with_logits(ge.tensor([0.5, 0.2]), ge.tensor([1.0])),
         lambda: TF.binary_cross_entropy_with_logits(torch.tensor([0.5, 0.2]),
                                                     torch.tensor([1.0]))),
        (lambda: F.nll_loss(x, ge.tensor(LABELS), ge.ones(4, requires_grad=True)),
         lambda: TF.nll_loss(t, torch.tensor(LABELS), torch.ones(4, requires_grad=True))),
    ]
    for engine_call, torch_call in cases:
        with pytest.raises(Exception) as want:
            torch_call()
        with pytest.raises(Exception) as got:
            engine_call()
        assert str(got.value) == str(want.value)
        assert got.value.builtin_name == type(want.value).__name__


# --- the seed's one-neuron model trained with BCE ------------------------------------------------

@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_seed_neuron_training_matches_torch(optimizer: str):
    x_np = np.array([6.7, -1.2, 0.3, 2.0], dtype=np.float32)
    y_np = np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32)
    libs = []
    for lib, nnf in ((ge, F), (torch, TF)):
        w = lib.tensor(1.0, requires_grad=True)
        b = lib.tensor(0.0, requires_grad=True)
        opt = getattr(lib.optim, optimizer)([w, b], lr=0.1)
        losses = []
        for _ in range(10):
            opt.zero_grad()
            loss = nnf.binary_cross_entropy(lib.sigmoid(w * lib.tensor(x_np) + b),
                                            lib.tensor(y_np))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        libs.append((losses, w.item(), b.item()))
    (el, ew, eb), (tl, tw, tb) = libs
    np.testing.assert_allclose(el, tl, rtol=1e-5)
    np.testing.assert_allclose([ew, eb], [tw, tb], rtol=1e-5, atol=1e-6)


# --- optimizers ----------------------------------------------------------------------------------

START = [RNG.standard_normal((3, 2)).astype(np.float32), RNG.standard_normal(4).astype(np.float32)]
GRADS = [[RNG.standard_normal(p.shape).astype(np.float32) for p in START] for _ in range(20)]


def _trajectory(lib: Any, make: Any, grads: list[list[np.ndarray]] = GRADS) -> list[Any]:
    params = [lib.tensor(p.copy(), requires_grad=True) for p in START]
    opt = make(lib.optim, params)
    out = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = lib.tensor(g)
        opt.step()
        out.append([_np(p) for p in params])
    return out


OPTIMIZERS = {
    "sgd": lambda o, ps: o.SGD(ps, lr=0.1),
    "sgd_momentum": lambda o, ps: o.SGD(ps, lr=0.05, momentum=0.9),
    "sgd_dampening": lambda o, ps: o.SGD(ps, lr=0.05, momentum=0.9, dampening=0.3),
    "sgd_weight_decay": lambda o, ps: o.SGD(ps, lr=0.05, momentum=0.5, weight_decay=0.1),
    "sgd_nesterov": lambda o, ps: o.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                        weight_decay=0.01),
    "sgd_maximize": lambda o, ps: o.SGD(ps, lr=0.05, momentum=0.9, maximize=True),
    "adam": lambda o, ps: o.Adam(ps),
    "adam_lr": lambda o, ps: o.Adam(ps, lr=0.05, betas=(0.8, 0.99), eps=1e-6),
    "adam_weight_decay": lambda o, ps: o.Adam(ps, lr=0.01, weight_decay=0.1),
    "adam_amsgrad": lambda o, ps: o.Adam(ps, lr=0.01, amsgrad=True),
    "adam_small_beta1": lambda o, ps: o.Adam(ps, lr=0.01, betas=(0.3, 0.9), maximize=True),
    "groups": lambda o, ps: o.SGD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.3}],
                                  lr=0.1, momentum=0.9),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_trajectory_matches_torch(name: str):
    got = _trajectory(ge, OPTIMIZERS[name])
    want = _trajectory(torch, OPTIMIZERS[name])
    for step, (g, w) in enumerate(zip(got, want)):
        for gp, wp in zip(g, w):
            np.testing.assert_allclose(gp, wp, rtol=2e-5, atol=2e-6, err_msg=f"step {step}")


def test_optimizer_keeps_param_identity_and_versions():
    for lib in (ge, torch):
        p = lib.tensor([1.0, 2.0], requires_grad=True)
        opt = lib.optim.Adam([p], lr=0.1)
        p.grad = lib.tensor([0.5, -0.5])
        before = p._version if lib is torch else p._version_counter
        opt.step()
        after = p._version if lib is torch else p._version_counter
        assert opt.param_groups[0]["params"][0] is p
        assert after == before + 1
        assert p.grad_fn is None and p.is_leaf and p.requires_grad


def test_params_without_grad_are_skipped():
    p, q = ge.tensor([1.0], requires_grad=True), ge.tensor([2.0], requires_grad=True)
    opt = ge.optim.SGD([p, q], lr=0.5, momentum=0.9)
    p.grad = ge.tensor([1.0])
    opt.step()
    assert q.item() == 2.0 and p.item() == 0.5
    assert q not in opt.state or not opt.state[q]


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none: bool):
    for lib in (ge, torch):
        p = lib.tensor([1.0, 2.0], requires_grad=True)
        (p * 3).sum().backward()
        grad = p.grad
        lib.optim.SGD([p], lr=0.1).zero_grad(set_to_none=set_to_none)
        if set_to_none:
            assert p.grad is None
        else:
            assert p.grad is grad and p.grad.tolist() == [0.0, 0.0]


def test_optimizer_argument_errors_match_torch():
    cases = [lambda o, p: o.SGD([p], lr=-1), lambda o, p: o.SGD([p], lr=0.1, momentum=-0.5),
             lambda o, p: o.SGD([p], lr=0.1, nesterov=True),
             lambda o, p: o.SGD([p], lr=0.1, weight_decay=-1),
             lambda o, p: o.Adam([p], betas=(1.0, 0.9)), lambda o, p: o.Adam([p], eps=-1.0),
             lambda o, p: o.SGD([], lr=0.1), lambda o, p: o.SGD([p * 2], lr=0.1)]
    for make in cases:
        with pytest.raises(ValueError) as want:
            make(torch.optim, torch.ones(2, requires_grad=True))
        with pytest.raises(ValueError) as got:
            make(ge.optim, ge.ones(2, requires_grad=True))
        assert str(got.value) == str(want.value)


@pytest.mark.parametrize("name", ["sgd_nesterov", "adam_amsgrad", "groups"])
def test_state_dict_round_trip(name: str):
    make = OPTIMIZERS[name]
    first = _trajectory(ge, make, GRADS[:10])
    params = [ge.tensor(p, requires_grad=True) for p in first[-1]]
    # Run 10 steps, save, restore into a fresh optimizer over copies, and run 10 more on both.
    base = [ge.tensor(p.copy(), requires_grad=True) for p in START]
    opt = make(ge.optim, base)
    for step in GRADS[:10]:
        for p, g in zip(base, step):
            p.grad = ge.tensor(g)
        opt.step()
    saved = opt.state_dict()
    for entry in saved["state"].values():
        assert all(isinstance(v, (int, float, bool, np.ndarray)) for v in entry.values())
    for group in saved["param_groups"]:
        assert all(not isinstance(v, ge.Tensor) for v in group.values())
    restored = make(ge.optim, params)
    restored.load_state_dict(saved)
    for a, b in ((opt, base), (restored, params)):
        for step in GRADS[10:]:
            for p, g in zip(b, step):
                p.grad = ge.tensor(g)
            a.step()
    for p, q in zip(base, params):
        np.testing.assert_array_equal(_np(p), _np(q))
    want = _trajectory(torch, make)[-1]
    for p, w in zip(params, want):
        np.testing.assert_allclose(_np(p), w, rtol=2e-5, atol=2e-6)
    # The saved arrays are copies: stepping on does not change them.
    t_opt = make(torch.optim, [torch.tensor(p, requires_grad=True) for p in START])
    assert sorted(saved) == sorted(t_opt.state_dict())


def test_load_state_dict_mismatch():
    opt = ge.optim.SGD([ge.ones(2, requires_grad=True)], lr=0.1)
    other = ge.optim.SGD([ge.ones(2, requires_grad=True), ge.ones(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(other.state_dict())


# --- creation ops --------------------------------------------------------------------------------

CREATIONS = [
    ("zeros", (2, 3), {}), ("zeros", ((2, 3),), {}), ("zeros", ([4],), {}), ("zeros", ((),), {}),
    ("ones", (3,), {"dtype": "int64"}), ("ones", (2, 2), {"dtype": "bool"}),
    ("zeros", (), {"size": (2, 1)}),
    ("full", ((2,), 7), {}), ("full", ((2,), 7.5), {}), ("full", ((2,), False), {}),
    ("full", ((2, 2), 1.5), {"dtype": "float64"}),
    ("arange", (5,), {}), ("arange", (1, 4), {}), ("arange", (0, 1, 0.125), {}),
    ("arange", (1.0, 4), {}), ("arange", (10, 0, -3), {}),
    ("linspace", (0, 1, 5), {}), ("linspace", (-1, 1, 4), {"dtype": "float64"}),
    ("eye", (3,), {}), ("eye", (2, 4), {"dtype": "int32"}),
]


@pytest.mark.parametrize("name, args, kw", CREATIONS)
def test_creation_matches_torch(name: str, args: tuple[Any, ...], kw: dict[str, Any]):
    e = getattr(ge, name)(*args, **{k: getattr(ge, v) if k == "dtype" else v
                                    for k, v in kw.items()})
    t = getattr(torch, name)(*args, **{k: getattr(torch, v) if k == "dtype" else v
                                       for k, v in kw.items()})
    assert tuple(e.shape) == tuple(t.shape)
    assert repr(e.dtype) == repr(t.dtype)
    np.testing.assert_allclose(_np(e).astype(np.float64), t.numpy().astype(np.float64),
                               rtol=1e-6)
    assert repr(e) == repr(t)


@pytest.mark.parametrize("name", ["zeros", "ones", "rand", "randn"])
def test_sized_creation_requires_grad(name: str):
    e, t = getattr(ge, name)(2, requires_grad=True), getattr(torch, name)(2, requires_grad=True)
    assert e.requires_grad and e.is_leaf and e.grad_fn is None and t.requires_grad
    with pytest.raises(RuntimeError) as want:
        torch.zeros(2, dtype=torch.int64, requires_grad=True)
    with pytest.raises(RuntimeError) as got:
        ge.zeros(2, dtype=ge.int64, requires_grad=True)
    assert str(got.value) == str(want.value)


def test_like_ops_match_torch():
    for src in ([1.5, 2.5], [1, 2], [[True], [False]]):
        e, t = ge.tensor(src), torch.tensor(src)
        for name, extra in (("zeros_like", ()), ("ones_like", ()), ("full_like", (3,)),
                            ("full_like", (2.7,))):
            a, b = getattr(ge, name)(e, *extra), getattr(torch, name)(t, *extra)
            assert repr(a) == repr(b)
    x = ge.tensor([1.0, 2.0], requires_grad=True)
    z = ge.zeros_like(x)
    assert not z.requires_grad and z.grad_fn is None
    assert ge.rand_like(x).shape == (2,) and ge.randn_like(x, dtype=ge.float64).dtype is ge.float64


def test_creation_errors_match_torch():
    cases = [("ones", (-1,), {}), ("zeros", (2, -3), {}), ("rand", (2, -1), {}),
             ("eye", (-1,), {}), ("eye", (2, -1), {}), ("arange", (0, 5, 0), {}),
             ("arange", (5, 0, 1), {}), ("arange", (0, float("inf")), {}),
             ("linspace", (0, 1, -1), {}), ("randint", (5, 3, (2,)), {}),
             ("full", ((-1,), 2.0), {}), ("zeros", (-1,), {})]
    for name, args, kw in cases:
        with pytest.raises(RuntimeError) as want:
            getattr(torch, name)(*args, **kw)
        with pytest.raises(RuntimeError) as got:
            getattr(ge, name)(*args, **kw)
        assert str(got.value) == str(want.value), name
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        ge.rand(2, dtype=ge.int64)
    with pytest.raises(TypeError) as want:
        torch.zeros()
    with pytest.raises(TypeError) as got:
        ge.zeros()
    assert str(got.value) == str(want.value)


def test_creation_refused_before_allocation():
    with ge.limits.allocation_limit(1000):
        with pytest.raises(ge.errors.AllocationLimitError):
            ge.zeros(10 ** 6, 10 ** 6)
        with pytest.raises(ge.errors.AllocationLimitError):
            ge.arange(0, 10 ** 12)
        with pytest.raises(ge.errors.AllocationLimitError):
            ge.apply("randn", [], {"size": (10 ** 9,)})
        assert ge.ones(10, 10).shape == (10, 10)


# --- random numbers ------------------------------------------------------------------------------

def test_same_seed_same_values_and_ranges():
    ge.manual_seed(1234)
    a = [ge.rand(100), ge.randn(3, 4, dtype=ge.float64), ge.randint(-3, 3, (50,))]
    ge.manual_seed(1234)
    b = [ge.rand(100), ge.randn(3, 4, dtype=ge.float64), ge.randint(-3, 3, (50,))]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(_np(x), _np(y))
    assert a[0].dtype is ge.float32 and a[1].dtype is ge.float64 and a[2].dtype is ge.int64
    u = _np(ge.rand(10000))
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.02
    n = _np(ge.randn(10000))
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05
    r = _np(ge.randint(10, (10000,)))
    assert r.min() == 0 and r.max() == 9
    assert ge.initial_seed() == 1234


def test_generators_are_independent():
    g1, g2 = ge.Generator().manual_seed(5), ge.Generator().manual_seed(5)
    a = ge.rand(5, generator=g1)
    ge.manual_seed(0)
    ge.rand(100)  # the default generator does not disturb g2
    b = ge.rand(5, generator=g2)
    np.testing.assert_array_equal(_np(a), _np(b))
    c = ge.rand(5, generator=g1)
    assert not np.array_equal(_np(a), _np(c))
    assert ge.Generator().initial_seed() == torch.Generator().initial_seed()
    assert ge.Generator().manual_seed(-1).initial_seed() == torch.manual_seed(-1).initial_seed()
    d = ge.apply("randn", [], {"size": (3,)}, generator=ge.Generator().manual_seed(9))
    e = ge.randn(3, generator=ge.Generator().manual_seed(9))
    np.testing.assert_array_equal(_np(d), _np(e))


def test_generator_state_round_trip():
    g = ge.Generator().manual_seed(42)
    ge.rand(7, generator=g)
    state = g.get_state()
    assert state.dtype == np.uint8 and state.ndim == 1
    want = _np(ge.randn(20, generator=g))
    h = ge.Generator().manual_seed(0).set_state(state.tobytes())
    np.testing.assert_array_equal(_np(ge.randn(20, generator=h)), want)
    assert h.initial_seed() == 42
    g.set_state(state)
    np.testing.assert_array_equal(_np(ge.randn(20, generator=g)), want)
    with pytest.raises(RuntimeError):
        g.set_state(b"short")
    s = g.seed()
    assert g.initial_seed() == s


# --- dtype conversions ---------------------------------------------------------------------------

def test_conversions_match_torch():
    for src in ([1.5, -2.5], [1, 0], [True, False]):
        e = ge.tensor(src, requires_grad=isinstance(src[0], float))
        t = torch.tensor(src, requires_grad=isinstance(src[0], float))
        for name in ("float", "double", "int", "long", "bool"):
            a, b = getattr(e, name)(), getattr(t, name)()
            assert repr(a) == repr(b), name
            assert (a is e) == (b is t), name
        assert e.type() == t.type()
        assert repr(e.type(ge.float64)) == repr(t.type(torch.float64))
        assert repr(e.type("torch.IntTensor")) == repr(t.type("torch.IntTensor"))
        assert repr(e.to(ge.int64)) == repr(t.to(torch.int64))
        assert (e.to(e.dtype) is e) and (e.to("cpu") is e)
        assert repr(e.to(ge.tensor([1.0], dtype=ge.float64))) == repr(
            t.to(torch.tensor([1.0], dtype=torch.float64)))
        assert e.to(e.dtype, copy=True) is not e
    x = ge.tensor([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.grad_fn.name() == "ToCopyBackward0"
    (y * y).sum().backward()
    assert x.grad.dtype is ge.float32 and x.grad.tolist() == [2.0, 4.0]
    # the dtype names on the module stay dtypes
    assert ge.float is ge.float32 and ge.int is ge.int32 and ge.bool is ge.dtypes.bool_
