"""torch.optim's NAdam, RAdam, Adamax, Rprop, ASGD and Adafactor (surface/<name>.py), in process
and through a session: N steps of a small model with every option set, compared with torch's
single-tensor algorithm bit for bit (parameters, losses and every state entry), with an lr
scheduler, state_dict()/load_state_dict() and several parameter groups; torch's errors for bad
hyperparameters; and `dir(torch.optim)`'s optimizers all present.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _data(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


# (optimizer, options): every option of each algorithm at least once
CASES: list[tuple[str, dict[str, Any]]] = [
    ("NAdam", {}),
    ("NAdam", {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.05, "momentum_decay": 0.01}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True,
               "eps": 1e-6}),
    ("RAdam", {}),
    ("RAdam", {"lr": 0.05, "betas": (0.5, 0.9), "weight_decay": 0.05, "eps": 1e-4}),
    ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.05, "betas": (0.5, 0.9), "weight_decay": 0.05, "eps": 1e-3}),
    ("Adamax", {"maximize": True}),
    ("Rprop", {}),
    ("Rprop", {"lr": 0.05, "etas": (0.3, 1.7), "step_sizes": (1e-3, 0.08)}),
    ("Rprop", {"maximize": True, "etas": (0.6, 1.1)}),
    ("ASGD", {}),
    ("ASGD", {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 2, "weight_decay": 0.05}),
    ("ASGD", {"t0": 0, "maximize": True}),
    ("Adafactor", {}),
    ("Adafactor", {"lr": 0.5, "beta2_decay": -0.5, "eps": (1e-20, 1e-2), "d": 1.5,
                   "weight_decay": 0.05}),
    ("Adafactor", {"maximize": True, "eps": (1e-3, 1e-3)}),
]


def _state_arrays(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.detach().numpy() if hasattr(v, "detach") else v) for k, v in state.items()}


def _train(t: Any, name: str, options: dict[str, Any], steps: int = 8,
           double: bool = False) -> tuple[Any, ...]:
    t.manual_seed(0)
    model = t.nn.Sequential(t.nn.Linear(5, 4), t.nn.Tanh(), t.nn.Linear(4, 2))
    x = t.tensor(_data((8, 5), 40))
    if double:
        model, x = model.double(), x.double()
    opt = getattr(t.optim, name)(model.parameters(), **options)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    state = opt.state_dict()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
    return ([p.detach().numpy() for p in model.parameters()], losses,
            {i: _state_arrays(s) for i, s in state["state"].items()}, groups, repr(opt))


def _assert_same(got: tuple[Any, ...], want: tuple[Any, ...]) -> None:
    for g, w in zip(got[0], want[0], strict=True):
        np.testing.assert_array_equal(g, w)
    assert got[1] == want[1]
    assert got[2].keys() == want[2].keys()
    for i in want[2]:
        assert got[2][i].keys() == want[2][i].keys()
        for k, w in want[2][i].items():
            g = got[2][i][k]
            assert np.asarray(g).dtype == np.asarray(w).dtype, (i, k)
            np.testing.assert_array_equal(g, w, err_msg=f"state {i} {k}")
    assert got[3:] == want[3:]


@pytest.mark.parametrize(("name", "options"), CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_steps_are_torchs_bit_for_bit(lib, name, options):
    _assert_same(_train(lib, name, options), _train(torch, name, options))


# one option set per optimizer for the tests of groups, schedulers and saved state
FIRST = {name: options for name, options in reversed(CASES)}


@pytest.mark.parametrize("name", list(FIRST))
def test_float64_steps_are_torchs_bit_for_bit(lib, name):
    _assert_same(_train(lib, name, FIRST[name], double=True),
                 _train(torch, name, FIRST[name], double=True))


def _groups_run(t: Any, name: str, resume: bool) -> tuple[Any, ...]:
    """Two parameter groups (the second with its own lr), an lr scheduler, 3 + 3 steps: with
    the same optimizer, or (resume) with a new one loaded from the first's state_dict()."""
    t.manual_seed(1)
    model = t.nn.Sequential(t.nn.Linear(3, 4), t.nn.Sigmoid(), t.nn.Linear(4, 2))

    def make() -> Any:
        groups = [{"params": model[0].parameters()},
                  {"params": list(model[2].parameters()), "lr": 0.02}]
        return getattr(t.optim, name)(groups, **FIRST[name])

    opt = make()
    sched = t.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8)
    x = t.tensor(_data((6, 3), 41))
    for i in range(6):
        if resume and i == 3:
            saved = opt.state_dict()
            opt = make()
            opt.load_state_dict(saved)
        opt.zero_grad()
        loss = model(x).sin().sum()
        loss.backward()
        opt.step()
        if not resume or i < 3:
            sched.step()
        else:  # the saved lr of each group is the scheduled one
            for g in opt.param_groups:
                g["lr"] *= 0.8
    state = opt.state_dict()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
    return ([p.detach().numpy() for p in model.parameters()], [],
            {i: _state_arrays(s) for i, s in state["state"].items()}, groups, repr(opt))


@pytest.mark.parametrize("resume", [False, True], ids=["groups", "resumed"])
@pytest.mark.parametrize("name", list(FIRST))
def test_groups_schedulers_and_state_dict_are_torchs(lib, name, resume):
    _assert_same(_groups_run(lib, name, resume), _groups_run(torch, name, resume))


def test_gradient_less_parameters_are_left_alone(lib):
    """A parameter without a gradient gets no state and keeps its value, as in torch."""
    def run(t: Any, name: str) -> tuple[Any, ...]:
        a = t.tensor(_data((3,), 42), requires_grad=True)
        b = t.tensor(_data((2, 2), 43), requires_grad=True)
        opt = getattr(t.optim, name)([a, b], **FIRST[name])
        for _ in range(2):
            opt.zero_grad()
            (a * a).sum().backward()
            opt.step()
        return a.detach().numpy(), b.detach().numpy(), sorted(opt.state_dict()["state"])

    for name in FIRST:
        got, want = run(lib, name), run(torch, name)
        for g, w in zip(got[:2], want[:2]):
            np.testing.assert_array_equal(g, w)
        assert got[2] == want[2] == [0], name


BAD: list[tuple[str, dict[str, Any]]] = [
    ("NAdam", {"lr": -1.0}), ("NAdam", {"eps": -1.0}), ("NAdam", {"betas": (1.0, 0.9)}),
    ("NAdam", {"betas": (0.9, -0.1)}), ("NAdam", {"weight_decay": -1}),
    ("NAdam", {"momentum_decay": -0.5}),
    ("RAdam", {"lr": -0.5}), ("RAdam", {"eps": -1e-3}), ("RAdam", {"betas": (-0.1, 0.9)}),
    ("RAdam", {"betas": (0.9, 1.5)}), ("RAdam", {"weight_decay": -0.2}),
    ("Adamax", {"lr": -2.0}), ("Adamax", {"eps": -1.0}), ("Adamax", {"betas": (1.1, 0.9)}),
    ("Adamax", {"betas": (0.5, 1.0)}), ("Adamax", {"weight_decay": -3.0}),
    ("Rprop", {"lr": -1.0}), ("Rprop", {"etas": (1.5, 2.0)}), ("Rprop", {"etas": (0.5, 0.9)}),
    ("Rprop", {"etas": (0.0, 1.2)}),
    ("ASGD", {"lr": -0.1}), ("ASGD", {"weight_decay": -0.1}),
    ("Adafactor", {"lr": -1.0}), ("Adafactor", {"beta2_decay": 0.5}),
    ("Adafactor", {"eps": (-1.0, 1e-3)}), ("Adafactor", {"eps": (None, -1e-3)}),
    ("Adafactor", {"d": 0.5}), ("Adafactor", {"weight_decay": -0.1}),
    ("SparseAdam", {"lr": 0.0}), ("SparseAdam", {"eps": 0.0}),
    ("SparseAdam", {"betas": (0.9, 1.0)}),
]


@pytest.mark.parametrize(("name", "options"), BAD,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in BAD])
def test_bad_hyperparameters_raise_torchs_errors(lib, name, options):
    def make(t: Any) -> Any:
        return getattr(t.optim, name)([t.zeros(2, requires_grad=True)], **options)

    with pytest.raises(ValueError) as theirs:
        make(torch)
    with pytest.raises(ValueError) as ours:
        make(lib)
    assert str(ours.value).split("\ngradserve:")[0] == str(theirs.value)


@pytest.mark.parametrize(("name", "flag"), [
    ("NAdam", "capturable"), ("NAdam", "differentiable"), ("RAdam", "capturable"),
    ("RAdam", "differentiable"), ("Adamax", "capturable"), ("Adamax", "differentiable"),
    ("Rprop", "capturable"), ("Rprop", "differentiable"), ("ASGD", "capturable"),
    ("ASGD", "differentiable")])
def test_variants_gradserve_does_not_have_are_refused(lib, name, flag):
    torch_opt = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **{flag: True})
    assert torch_opt.defaults[flag] is True  # torch takes them (CUDA graphs, autograd)
    with pytest.raises(NotImplementedError, match=rf"^{name}\(\): {flag}=True is not supported"):
        getattr(lib.optim, name)([lib.zeros(2, requires_grad=True)], **{flag: True})


def test_sparse_adam_refuses_dense_gradients_as_torch(lib):
    """gradserve's gradients are all dense: SparseAdam's step raises torch's error for them
    (after running the closure, as torch does); the constructor is torch's."""
    def run(t: Any) -> tuple[Any, ...]:
        w = t.ones(3, requires_grad=True)
        opt = t.optim.SparseAdam([w], lr=0.01, betas=(0.8, 0.9))
        calls = []

        def closure() -> Any:
            calls.append(1)
            loss = (w * 2).sum()
            loss.backward()
            return loss

        with pytest.raises(RuntimeError) as caught:
            opt.step(closure)
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        return str(caught.value), calls, groups, repr(opt), w.detach().numpy()

    got, want = run(lib), run(torch)
    assert got[:4] == want[:4]
    np.testing.assert_array_equal(got[4], want[4])


def test_dir_of_optim_has_torchs_optimizers(lib):
    theirs = {n for n in torch.optim.__all__ if isinstance(getattr(torch.optim, n), type)
              and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)}
    ours = set(dir(lib.optim))
    assert theirs - {"Muon"} <= ours, sorted(theirs - ours)
    for name in theirs - {"Muon"}:
        assert getattr(lib.optim, name).__name__ == name
