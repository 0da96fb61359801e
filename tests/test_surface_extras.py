"""torch's module constants, torch.autograd.Variable, torch.optim.RMSprop/AdamW/Adagrad and
torch.utils.data in process (gradserve.engine, built on gradserve.surface.legacy/data), against
torch 2.13: values, types, reprs, error types and texts, optimizer trajectories over 50 steps,
batches, and the random draws a shuffling DataLoader makes."""

from __future__ import annotations

import collections
import math
import warnings
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.surface import data as surface_data
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

RNG = np.random.default_rng(11)


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy()


# --- constants -----------------------------------------------------------------------------------

@pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)
@pytest.mark.parametrize("name", ["pi", "e", "inf", "nan"])
def test_constants_are_torchs(name: str):
    got, want = getattr(ge, name), getattr(torch, name)
    assert type(got) is type(want) is float
    assert got == want or (math.isnan(got) and math.isnan(want))


# --- Variable ------------------------------------------------------------------------------------

def test_variable_returns_a_detached_tensor_like_torch():
    from gradserve.engine.autograd import Variable

    for lib, var in ((ge, Variable), (torch, torch.autograd.Variable)):
        t = lib.tensor([[1.0, 2.0], [3.0, 4.0]])
        v = var(t, requires_grad=True)
        assert type(v) is lib.Tensor and v is not t
        assert v.is_leaf and v.requires_grad and not t.requires_grad
        assert isinstance(t, var) and not isinstance(1.0, var)
        out = (v * v).mean()
        out.backward()
        assert repr(out) == ("tensor(7.5000, grad_fn=<MeanBackward0>)")
        np.testing.assert_array_equal(_np(v.grad), [[0.5, 1.0], [1.5, 2.0]])
    assert repr(Variable(ge.tensor([1.0, 2.0]), True)) == repr(
        torch.autograd.Variable(torch.tensor([1.0, 2.0]), True))
    # shares data with its argument; drops the argument's graph
    x = ge.tensor([1.0, 2.0], requires_grad=True)
    y = Variable(x * 2)
    assert y.grad_fn is None and not y.requires_grad
    w = Variable(ge.tensor([1.0, 2.0]))
    base = ge.tensor([5.0, 6.0])
    Variable(base).mul_(2)
    assert base.tolist() == [10.0, 12.0] and w.tolist() == [1.0, 2.0]
    assert repr(Variable()) == repr(torch.autograd.Variable()) == "tensor([])"


@pytest.mark.parametrize("call", [
    lambda V, lib: V([1.0]),
    lambda V, lib: V(lib.tensor([1.0]), True, False, None, None, 3),
    lambda V, lib: V(lib.tensor([1.0]), foo=1),
    lambda V, lib: V(lib.tensor([1.0]), True, requires_grad=True),
], ids=["not a tensor", "too many arguments", "unknown keyword", "given twice"])
def test_variable_errors_match_torch(call: Any):
    with pytest.raises(Exception) as want:
        call(torch.autograd.Variable, torch)
    with pytest.raises(Exception) as got:
        call(ge.autograd.Variable, ge)
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)


def test_variable_volatile_warns_like_torch():
    for var, lib in ((ge.autograd.Variable, ge), (torch.autograd.Variable, torch)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            var(lib.tensor([1.0]), volatile=True)
        assert [(w.category, str(w.message)) for w in caught] == [
            (UserWarning, "volatile was removed and now has no effect. Use `with "
                          "torch.no_grad():` instead.")]


def test_variable_of_an_integer_tensor_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        torch.autograd.Variable(torch.tensor([1]), requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        ge.autograd.Variable(ge.tensor([1]), requires_grad=True)


# --- RMSprop and AdamW ---------------------------------------------------------------------------

START = [RNG.standard_normal((3, 2)).astype(np.float32), RNG.standard_normal(5).astype(np.float32)]
GRADS = [[RNG.standard_normal(p.shape).astype(np.float32) for p in START] for _ in range(50)]
# torch's CPU sqrt (used by every step of both algorithms) is not correctly rounded: measured on
# this machine, 14.5% of float32 inputs come out 1 ulp from numpy's correctly rounded sqrt; and
# its add(alpha=)/lerp_ use fused multiply-adds. Both keep trajectories a few ulps apart.
RTOL, ATOL = 4e-6, 1e-6

OPTIMIZERS = {
    "rmsprop": lambda o, ps: o.RMSprop(ps),
    "rmsprop_alpha": lambda o, ps: o.RMSprop(ps, lr=0.01, alpha=0.9),
    "rmsprop_momentum": lambda o, ps: o.RMSprop(ps, lr=0.01, momentum=0.9),
    "rmsprop_centered": lambda o, ps: o.RMSprop(ps, lr=0.01, centered=True, weight_decay=0.1),
    "rmsprop_everything": lambda o, ps: o.RMSprop(ps, 0.02, 0.3, 1e-3, 0.05, 0.5, True,
                                                  maximize=True),
    "adagrad": lambda o, ps: o.Adagrad(ps),
    "adagrad_everything": lambda o, ps: o.Adagrad(ps, 0.1, 0.01, 0.1, 0.5, 1e-6,
                                                  maximize=True),
    "adamw": lambda o, ps: o.AdamW(ps),
    "adamw_amsgrad": lambda o, ps: o.AdamW(ps, lr=0.05, weight_decay=0.3, amsgrad=True),
    "adam_decoupled": lambda o, ps: o.Adam(ps, lr=0.05, weight_decay=0.3,
                                           decoupled_weight_decay=True),
}


def _trajectory(lib: Any, make: Any) -> tuple[list[list[np.ndarray]], Any]:
    params = [lib.tensor(p.copy(), requires_grad=True) for p in START]
    opt = make(lib.optim, params)
    out = []
    for step in GRADS:
        for p, g in zip(params, step):
            p.grad = lib.tensor(g)
        opt.step()
        out.append([_np(p).copy() for p in params])
    return out, opt


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_trajectory_matches_torch_over_50_steps(name: str):
    got, g_opt = _trajectory(ge, OPTIMIZERS[name])
    want, t_opt = _trajectory(torch, OPTIMIZERS[name])
    for step, (g, w) in enumerate(zip(got, want)):
        for gp, wp in zip(g, w):
            np.testing.assert_allclose(gp, wp, rtol=RTOL, atol=ATOL, err_msg=f"step {step}")
    # the same state entries, with torch's values
    g_state, t_state = g_opt.state_dict()["state"], t_opt.state_dict()["state"]
    assert sorted(g_state) == sorted(t_state)
    for i in t_state:
        assert sorted(g_state[i]) == sorted(t_state[i])
        assert g_state[i]["step"] == float(t_state[i]["step"]) == 50.0
        for k, v in t_state[i].items():
            if k != "step":
                np.testing.assert_allclose(g_state[i][k], v.numpy(), rtol=1e-4, atol=1e-6)
    # the hyperparameters torch keeps in each group (torch's extra flags aside)
    g_group = g_opt.param_groups[0]
    t_group = t_opt.param_groups[0]
    for k, v in g_group.items():
        if k != "params":
            assert t_group[k] == v, k


def test_rmsprop_defaults_and_repr_keys_are_torchs():
    g_opt = ge.optim.RMSprop([ge.ones(2, requires_grad=True)])
    t_opt = torch.optim.RMSprop([torch.ones(2, requires_grad=True)])
    for k in ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"):
        assert g_opt.defaults[k] == t_opt.defaults[k], k
    assert ge.optim.AdamW([ge.ones(2, requires_grad=True)]).defaults["weight_decay"] == 1e-2
    assert repr(g_opt).startswith("RMSprop (\nParameter Group 0\n    alpha: 0.99\n")


@pytest.mark.parametrize("make", [
    lambda o, p: o.RMSprop([p], lr=-1), lambda o, p: o.RMSprop([p], eps=-1e-3),
    lambda o, p: o.RMSprop([p], momentum=-0.5), lambda o, p: o.RMSprop([p], weight_decay=-1),
    lambda o, p: o.RMSprop([p], alpha=-0.1), lambda o, p: o.AdamW([p], betas=(0.9, 1.0)),
    lambda o, p: o.AdamW([p], weight_decay=-1),
    lambda o, p: o.Adagrad([p], lr_decay=-1), lambda o, p: o.Adagrad([p], eps=-1.0),
    lambda o, p: o.Adagrad([p], initial_accumulator_value=-0.5),
], ids=["lr", "eps", "momentum", "weight_decay", "alpha", "AdamW beta2", "AdamW decay",
        "Adagrad lr_decay", "Adagrad eps", "Adagrad accumulator"])
def test_optimizer_argument_errors_match_torch(make: Any):
    with pytest.raises(ValueError) as want:
        make(torch.optim, torch.ones(2, requires_grad=True))
    with pytest.raises(ValueError) as got:
        make(ge.optim, ge.ones(2, requires_grad=True))
    assert str(got.value) == str(want.value)


def test_adagrad_state_exists_before_the_first_step_as_in_torch():
    g_opt = ge.optim.Adagrad([ge.ones(2, requires_grad=True)], initial_accumulator_value=0.25)
    t_opt = torch.optim.Adagrad([torch.ones(2, requires_grad=True)],
                                initial_accumulator_value=0.25)
    (g,), (t,) = g_opt.state_dict()["state"].values(), t_opt.state_dict()["state"].values()
    assert g["step"] == float(t["step"]) == 0.0
    np.testing.assert_array_equal(g["sum"], t["sum"].numpy())


def test_rmsprop_state_dict_round_trip():
    make = OPTIMIZERS["rmsprop_everything"]
    base = [ge.tensor(p.copy(), requires_grad=True) for p in START]
    opt = make(ge.optim, base)
    for step in GRADS[:10]:
        for p, g in zip(base, step):
            p.grad = ge.tensor(g)
        opt.step()
    copies = [ge.tensor(_np(p).copy(), requires_grad=True) for p in base]
    restored = make(ge.optim, copies)
    restored.load_state_dict(opt.state_dict())
    for o, ps in ((opt, base), (restored, copies)):
        for step in GRADS[10:]:
            for p, g in zip(ps, step):
                p.grad = ge.tensor(g)
            o.step()
    for p, q in zip(base, copies):
        np.testing.assert_array_equal(_np(p), _np(q))


# --- torch.utils.data ----------------------------------------------------------------------------

X = RNG.standard_normal((10, 3)).astype(np.float32)
Y = np.arange(10, dtype=np.int64)


def _batches(lib: Any, loader: Any) -> list[Any]:
    """Each batch as nested lists of (dtype name, shape, values) or plain values."""
    def plain(v: Any) -> Any:
        if isinstance(v, lib.Tensor):
            return (str(v.dtype).split(".")[-1], tuple(v.shape), v.tolist())
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return (type(v).__name__, [plain(x) for x in v])
        return v
    return [plain(b) for b in loader]


@pytest.mark.parametrize("kwargs", [
    {}, {"batch_size": 3}, {"batch_size": 4, "drop_last": True}, {"batch_size": 10},
    {"batch_size": 32}, {"batch_size": None}, {"batch_size": 3, "num_workers": 0},
], ids=str)
def test_tensor_dataset_loader_matches_torch(kwargs: dict[str, Any]):
    results = []
    for lib in (ge, torch):
        d = lib.utils.data
        ds = d.TensorDataset(lib.tensor(X), lib.tensor(Y))
        loader = d.DataLoader(ds, shuffle=False, **kwargs)
        results.append((len(ds), len(loader), _batches(lib, loader), _batches(lib, loader)))
    assert results[0] == results[1]


def test_loader_iterator_is_torch_s():
    """iter(loader) is torch's _SingleProcessDataLoaderIter: its length, its name in reprs
    and in the AttributeError of the Python 2 `it.next()` old tutorials call."""
    results = []
    for lib in (ge, torch):
        d = lib.utils.data
        it = iter(d.DataLoader(d.TensorDataset(lib.tensor(X), lib.tensor(Y)), batch_size=3))
        with pytest.raises(AttributeError) as info:
            it.next()  # noqa: B305 - the old spelling, as such programs write it
        first = next(it)
        results.append((len(it), str(info.value), repr(it).split(" object at ")[0],
                        [t.tolist() for t in first], len(list(it))))
    assert results[0] == results[1]


class Points:
    """A map-style dataset of mixed samples (defined once, for both libraries)."""

    Pair = collections.namedtuple("Pair", "a b")

    def __init__(self, lib: Any, kind: str):
        self.lib, self.kind = lib, kind

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> Any:
        lib = self.lib
        if self.kind == "tuple":
            return lib.tensor([float(i), -1.0]), float(i) / 3, i, bool(i % 2), f"s{i}"
        if self.kind == "dict":
            return {"x": lib.tensor(float(i)), "n": np.int64(i), "arr": np.full(2, i, np.float32)}
        if self.kind == "namedtuple":
            return self.Pair(lib.tensor([i]), [float(i), 2.0 * i])
        return np.float32(i)


@pytest.mark.parametrize("kind", ["tuple", "dict", "namedtuple", "numpy"])
@pytest.mark.parametrize("batch_size", [2, None])
def test_default_collate_matches_torch(kind: str, batch_size: int | None):
    got, want = (_batches(lib, lib.utils.data.DataLoader(Points(lib, kind),
                                                           batch_size=batch_size))
                 for lib in (ge, torch))
    assert got == want


def test_subclassed_dataset_and_subset_and_concat():
    for lib in (ge, torch):
        d = lib.utils.data

        class Squares(d.Dataset):
            make = lib.tensor

            def __len__(self) -> int:
                return 4

            def __getitem__(self, i: int) -> Any:
                return type(self).make(float(i * i))

        both = Squares() + d.Subset(Squares(), [3, 1])
        assert len(both) == 6
        assert [x.tolist() for x in d.DataLoader(both, batch_size=4)] == [
            [0.0, 1.0, 4.0, 9.0], [9.0, 1.0]]
        assert both[-1].item() == 1.0
    with pytest.raises(NotImplementedError) as want:
        torch.utils.data.Dataset()[0]
    with pytest.raises(NotImplementedError) as got:
        ge.utils.data.Dataset()[0]
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("make", [
    lambda d, ds: d.DataLoader(ds, shuffle=True, sampler=d.SequentialSampler(ds)),
    lambda d, ds: d.DataLoader(ds, batch_size=2, batch_sampler=[[0, 1]]),
    lambda d, ds: d.DataLoader(ds, batch_size=None, drop_last=True),
    lambda d, ds: d.DataLoader(ds, batch_size=0),
    lambda d, ds: d.DataLoader(ds, batch_size=True),
    lambda d, ds: d.DataLoader(ds, drop_last=1),
    lambda d, ds: d.DataLoader(ds, num_workers=-1),
    lambda d, ds: d.DataLoader(ds, prefetch_factor=2),
    lambda d, ds: d.DataLoader(ds, persistent_workers=True),
    lambda d, ds: d.RandomSampler(ds, replacement=1),
    lambda d, ds: d.RandomSampler(ds, num_samples=0),
    lambda d, ds: d.random_split(ds, [3, 3]),
    lambda d, ds: d.random_split(ds, [0.5, 1.5]),
    lambda d, ds: d.TensorDataset(ds.tensors[0], ds.tensors[1][:3]),
    lambda d, ds: list(d.DataLoader([[1, 2], [3]], batch_size=2)),
    lambda d, ds: list(d.DataLoader([object(), object()], batch_size=2)),
    lambda d, ds: list(d.DataLoader([np.array(["a"]), np.array(["b"])], batch_size=2)),
], ids=["sampler and shuffle", "batch_sampler and batch_size", "batch_size None, drop_last",
        "batch_size 0", "batch_size bool", "drop_last int", "num_workers", "prefetch_factor",
        "persistent_workers", "replacement", "num_samples", "split sum", "split fraction",
        "dataset sizes", "ragged lists", "objects", "numpy strings"])
def test_data_errors_match_torch(make: Any):
    caught = []
    for lib in (torch, ge):
        ds = lib.utils.data.TensorDataset(lib.tensor(X), lib.tensor(Y))
        with pytest.raises(Exception) as err:
            make(lib.utils.data, ds)
        caught.append(err.value)
    want, got = caught
    assert type(got) is type(want)
    assert str(got) == str(want)


# --- shuffling: the draws torch's DataLoader makes ------------------------------------------------

class DrawLog:
    """Records the random draws of torch's DataLoader/RandomSampler (patched into torch)."""

    def __init__(self, monkeypatch: Any):
        self.calls: list[tuple[Any, ...]] = []
        log = self.calls
        random_, randperm = torch.Tensor.random_, torch.randperm

        def logged_random_(t: Any, *args: Any, **kwargs: Any) -> Any:
            out = random_(t, *args, **kwargs)
            log.append(("random_", t.dtype, tuple(t.shape), kwargs.get("generator"), out.item()))
            return out

        def logged_randperm(n: int, *args: Any, **kwargs: Any) -> Any:
            out = randperm(n, *args, **kwargs)
            log.append(("randperm", n, "generator" in kwargs, out.tolist()))
            return out

        class LoggedGenerator(torch.Generator):  # torch's Generator type is immutable
            def manual_seed(self, s: int) -> Any:
                log.append(("manual_seed", s))
                return super().manual_seed(s)

        monkeypatch.setattr(torch.Tensor, "random_", logged_random_)
        monkeypatch.setattr(torch, "randperm", logged_randperm)
        monkeypatch.setattr(torch, "Generator", LoggedGenerator)


def _two_epochs(d: Any, lib: Any, **kwargs: Any) -> list[list[list[int]]]:
    ds = d.TensorDataset(lib.arange(10))
    loader = d.DataLoader(ds, batch_size=4, shuffle=True, **kwargs)
    return [[b[0].tolist() for b in loader] for _ in range(2)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shuffle_makes_torchs_draws_in_torchs_order(monkeypatch: Any, num_workers: int):
    """The surface's DataLoader over the real torch namespace draws exactly what torch's does
    (same calls, same order, same seeds), so it shuffles exactly as torch: with torch's own
    generator behind it the batches are the same."""
    log = DrawLog(monkeypatch)
    torch.manual_seed(7)
    want = _two_epochs(torch.utils.data, torch)
    want_calls, log.calls[:] = list(log.calls), []
    torch.manual_seed(7)
    got = _two_epochs(surface_data.namespace(torch), torch, num_workers=num_workers)
    assert log.calls == want_calls
    assert got == want
    # per pass: the base seed, the sampler's seed, its generator, randperm twice (torch takes a
    # second, empty slice of one)
    kinds = [c[0] for c in want_calls]
    assert kinds == ["random_", "random_", "manual_seed", "randperm", "randperm"] * 2


def test_random_split_with_a_generator_matches_torch():
    got = surface_data.namespace(torch).random_split(
        list(range(10)), [0.3, 0.3, 0.4], generator=torch.Generator().manual_seed(3))
    want = torch.utils.data.random_split(list(range(10)), [0.3, 0.3, 0.4],
                                         generator=torch.Generator().manual_seed(3))
    assert [list(s) for s in got] == [list(s) for s in want]
    assert [s.indices for s in got] == [s.indices for s in want]


@pytest.mark.parametrize("seed, batch_size, drop_last", [(7, 4, False), (0, 3, True),
                                                         (123, 10, False), (5, 1, False)])
def test_engine_shuffles_as_torch(seed: int, batch_size: int, drop_last: bool):
    """In process the generator is torch's, so shuffled batches are torch's after the same seed,
    pass after pass, and the default generator is left where torch leaves it."""
    orders = []
    for lib in (ge, torch):
        lib.manual_seed(seed)
        d = lib.utils.data
        loader = d.DataLoader(d.TensorDataset(lib.arange(10), lib.arange(10) * 2),
                              batch_size=batch_size, shuffle=True, drop_last=drop_last)
        passes = [[b[0].tolist() for b in loader] for _ in range(3)]
        orders.append((passes, lib.rand(3).tolist()))
    assert orders[0] == orders[1]


def test_engine_shuffles_with_a_generator_as_torch():
    orders = []
    for lib in (ge, torch):
        g = lib.Generator()
        g.manual_seed(42)
        d = lib.utils.data
        loader = d.DataLoader(d.TensorDataset(lib.arange(7)), batch_size=3, shuffle=True,
                              generator=g)
        orders.append([[b[0].tolist() for b in loader] for _ in range(2)])
        orders.append([s.indices for s in d.random_split(range(9), [4, 5], generator=g)])
    assert orders[:2] == orders[2:]  # (loader passes, split) in process == torch
