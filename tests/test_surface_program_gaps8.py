"""Gaps found by running public PyTorch programs unchanged through a session (round 8).

Dive into Deep Learning's PyTorch chapters build their layers lazily (`nn.LazyLinear(256)`,
`nn.LazyConv2d(1, kernel_size=3)`: the input size read from the first batch), save and load
them; a tutorial sizes an embedding with `max(ids) + 1` (a 0-d integer tensor as a size); others
call the deprecated `torch.range`, `torch.save(obj=..., f=...)` by keyword, ask
`torch.backends.mps.is_available()` and sample a validation split with `SubsetRandomSampler`.
Each case runs on torch and on gradserve (in process and through a session) and compares.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
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


def _message(exc: BaseException) -> str:
    return str(exc).split("\ngradserve:")[0]


def _refuses_as_torch(run: Callable[[Any], Any], lib: Any,
                      kinds: tuple[type[BaseException], ...]) -> None:
    """`run(torch)` raises one of `kinds`; `run(lib)` raises the same one, with torch's text."""
    with pytest.raises(kinds) as theirs:
        run(torch)
    kind = next(k for k in kinds if isinstance(theirs.value, k))
    with pytest.raises(kind) as ours:
        run(lib)
    assert _message(ours.value) == _message(theirs.value)


def _same_arrays(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# --- lazy modules (d2l: model-construction, parameters, init-param, custom-layer, read-write,
# padding-and-strides, conv-layer, attention-scoring-functions) ----------------------------------

def test_lazy_linear_before_its_first_call_is_torchs(lib):
    def run(t: Any) -> tuple[Any, ...]:
        layer = t.nn.LazyLinear(3)
        sd = layer.state_dict()
        return (repr(layer), repr(layer.weight), repr(layer.bias), layer.in_features,
                [(k, repr(v)) for k, v in sd.items()],
                [(n, repr(p)) for n, p in layer.named_parameters()],
                layer.has_uninitialized_params(), isinstance(layer, t.nn.Linear),
                isinstance(layer.weight, t.nn.UninitializedParameter))

    assert run(lib) == run(torch)


@pytest.mark.parametrize(("use", "kind"), [
    (lambda p: p.numel(), ValueError),
    (lambda p: p.shape, RuntimeError),
    (lambda p: p.dim(), ValueError),
])
def test_an_uninitialized_parameter_refuses_use_as_torchs(lib, use, kind):
    _refuses_as_torch(lambda t: use(t.nn.LazyLinear(2).weight), lib, (kind,))


@pytest.mark.parametrize("bias", [True, False])
def test_lazy_linear_initialises_on_its_first_call_as_torchs(lib, bias):
    x_np = _data((2, 5), 1)

    def run(t: Any) -> tuple[Any, ...]:
        t.manual_seed(0)
        net = t.nn.Sequential(t.nn.LazyLinear(4, bias=bias), t.nn.ReLU(), t.nn.LazyLinear(1))
        before = t.rand(1).numpy()  # nothing drawn at construction
        t.manual_seed(0)
        y = net(t.tensor(x_np))
        y.sum().backward()
        first = net[0]
        return (repr(net), type(first).__name__, first.in_features, len(first._forward_pre_hooks),
                before, [y.detach().numpy()]
                + [p.detach().numpy() for p in net.parameters()]
                + [p.grad.numpy() for p in net.parameters()], t.rand(2).numpy())

    want, got = run(torch), run(lib)
    assert got[:4] == want[:4]
    assert got[3] == 0
    np.testing.assert_array_equal(got[4], want[4])
    _same_arrays(got[5], want[5])
    np.testing.assert_array_equal(got[6], want[6])


def test_lazy_linear_trains_with_an_optimizer_made_after_the_first_call(lib):
    x_np, y_np = _data((8, 3), 2), _data((8, 1), 3)

    def run(t: Any) -> list[Any]:
        t.manual_seed(1)
        net = t.nn.Sequential(t.nn.LazyLinear(8), t.nn.Tanh(), t.nn.LazyLinear(1))
        net(t.tensor(x_np))
        opt = t.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            loss = ((net(t.tensor(x_np)) - t.tensor(y_np)) ** 2).mean()
            loss.backward()
            opt.step()
        return [loss.detach().numpy()] + [p.detach().numpy() for p in net.parameters()]

    _same_arrays(run(lib), run(torch))


def test_lazy_module_loads_a_state_dict_before_its_first_call_as_torchs(lib, tmp_path):
    # d2l read-write: `clone = MLP(); clone.load_state_dict(torch.load('mlp.params'))`
    x_np = _data((2, 6), 4)

    def run(t: Any, path: str) -> tuple[Any, ...]:
        t.manual_seed(0)
        net = t.nn.LazyLinear(3)
        y = net(t.tensor(x_np))
        t.save(net.state_dict(), path)
        clone = t.nn.LazyLinear(3)
        clone.load_state_dict(t.load(path))
        loaded = (repr(clone), type(clone).__name__, clone.weight.shape)
        y_clone = clone(t.tensor(x_np))
        conv = t.nn.LazyConv2d(2, 3)
        conv(t.ones(1, 3, 4, 4))
        conv_clone = t.nn.LazyConv2d(2, 3)
        conv_clone.load_state_dict(conv.state_dict())
        conv_clone(t.ones(1, 3, 4, 4))
        return (loaded, repr(clone), repr(conv_clone), (y_clone == y).numpy(),
                y_clone.detach().numpy())

    want = run(torch, str(tmp_path / "torch.params"))
    got = run(lib, str(tmp_path / "gs.params"))
    assert got[:3] == want[:3]
    _same_arrays(list(got[3:]), list(want[3:]))


def test_lazy_linear_loaded_then_called_on_another_width_refuses_as_torchs(lib):
    def run(t: Any) -> None:
        source = t.nn.Linear(4, 3)
        clone = t.nn.LazyLinear(3)
        clone.load_state_dict(source.state_dict())
        clone(t.ones(1, 5))

    _refuses_as_torch(run, lib, (AssertionError,))


CONVS = [("LazyConv2d", (1,), {"kernel_size": 3, "padding": 1}, (1, 3, 6, 6)),
         ("LazyConv2d", (2,), {"kernel_size": (3, 5), "padding": (0, 1), "stride": (3, 4)},
          (2, 1, 8, 8)),
         ("LazyConv2d", (4,), {"kernel_size": 1, "groups": 2, "bias": False}, (1, 4, 3, 3)),
         ("LazyConv2d", (2,), {"kernel_size": 2}, (3, 5, 5)),
         ("LazyConv1d", (3,), {"kernel_size": 2}, (2, 4, 7)),
         ("LazyConvTranspose1d", (2,), {"kernel_size": 3, "stride": 2}, (1, 3, 5)),
         ("LazyConvTranspose2d", (4,), {"kernel_size": 3, "bias": False}, (2, 5, 5))]


@pytest.mark.parametrize(("cls", "args", "kwargs", "shape"), CONVS)
def test_lazy_convolutions_are_torchs(lib, cls, args, kwargs, shape):
    x_np = _data(shape, 5)

    def run(t: Any) -> tuple[Any, ...]:
        t.manual_seed(0)
        layer = getattr(t.nn, cls)(*args, **kwargs)
        before = (repr(layer), repr(layer.weight))
        x = t.tensor(x_np, requires_grad=True)
        y = layer(x)
        y.sum().backward()
        arrays = [y.detach().numpy(), x.grad.numpy()] + [
            a for p in layer.parameters() for a in (p.detach().numpy(), p.grad.numpy())]
        return before, repr(layer), type(layer).__name__, arrays

    want, got = run(torch), run(lib)
    assert got[:3] == want[:3]
    for g, w in zip(got[3], want[3]):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("make", "shape"), [
    (lambda t: t.nn.LazyConv2d(2, 3), (5, 5)),
    (lambda t: t.nn.LazyConv2d(4, 1, groups=2), (1, 3, 2, 2)),
])
def test_lazy_convolution_refuses_a_bad_first_input_as_torchs(lib, make, shape):
    _refuses_as_torch(lambda t: make(t)(t.ones(*shape)), lib, (RuntimeError, ValueError))


def test_lazy_modules_are_in_torchs_namespaces(lib):
    for name in ("LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConvTranspose1d",
                 "LazyConvTranspose2d"):
        assert getattr(lib.nn, name).__name__ == name
    assert lib.nn.modules.linear.LazyLinear is lib.nn.LazyLinear
    assert lib.nn.modules.conv.LazyConv2d is lib.nn.LazyConv2d
    assert isinstance(lib.nn.LazyLinear(2), lib.nn.modules.lazy.LazyModuleMixin)


# --- sizes given as one-element integer tensors (LLMs from scratch ch. 2:
# `nn.Embedding(max(idx) + 1, out_dim)`) ----------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda t: t.zeros(t.tensor(3), 2),
    lambda t: t.ones((2, t.tensor(3))),
    lambda t: t.zeros(2, t.tensor([4], dtype=t.int32)),
    lambda t: t.randn(t.tensor(2), 3),
    lambda t: t.nn.Embedding(max(t.tensor([2, 3, 1])) + 1, 5).weight,
    lambda t: t.nn.Linear(t.tensor(3), 2).weight,
])
def test_an_integer_tensor_is_a_size_as_in_torch(lib, make):
    torch.manual_seed(0)
    want = make(torch)
    lib.manual_seed(0)
    got = make(lib)
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())


@pytest.mark.parametrize("make", [lambda t: t.zeros(2, t.tensor(3.0)),
                                  lambda t: t.zeros(2, t.tensor([2, 3]))])
def test_other_tensors_are_no_sizes_as_in_torch(lib, make):
    _refuses_as_torch(make, lib, (TypeError,))


# --- torch.range (Zero to Mastery PyTorch, 00 fundamentals) -------------------------------------

@pytest.mark.parametrize(("args", "kwargs"), [
    ((0, 10), {}), ((1, 2, 0.5), {}), ((-1, 1, 0.1), {}), ((0.5, 2.6, 0.7), {}),
    ((2, 2), {}), ((5, 0, -1.5), {}), ((1, 4), {"dtype": "int32"}),
    ((0, 7, 2), {"dtype": "int64"}), ((0, 1), {"dtype": "float64"}),
    ((0, 1), {"requires_grad": True})])
def test_range_is_torchs(lib, args, kwargs):
    def run(t: Any) -> tuple[Any, ...]:
        kw = {k: getattr(t, v) if k == "dtype" else v for k, v in kwargs.items()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = t.range(*args, **kw)
        return (repr(r), r.detach().numpy(), [(str(w.message), w.category, w.filename)
                                               for w in caught])

    want, got = run(torch), run(lib)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]


@pytest.mark.parametrize(("args", "kwargs"), [
    ((0, 3, 0), {}), ((3, 0), {}), ((0, float("inf")), {}), ((0, 3, -1), {}),
    ((0, 3), {"dtype": "bool"}), ((0, 3), {"dtype": "int64", "requires_grad": True})])
def test_range_refuses_as_torch(lib, args, kwargs):
    def run(t: Any) -> None:
        kw = {k: getattr(t, v) if k == "dtype" else v for k, v in kwargs.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t.range(*args, **kw)

    _refuses_as_torch(run, lib, (NotImplementedError, RuntimeError))


# --- torch.save by keyword (Zero to Mastery 01: `torch.save(obj=..., f=...)`) --------------------

@pytest.mark.parametrize("form", ["keywords", "f_keyword"])
def test_save_takes_torchs_keywords(lib, tmp_path, form):
    def run(t: Any, path: str) -> list[Any]:
        t.manual_seed(0)
        model = t.nn.Linear(3, 2)
        if form == "keywords":
            t.save(obj=model.state_dict(), f=path)
        else:
            t.save(model.state_dict(), f=path)
        loaded = t.load(f=path)
        return [(k, v.numpy()) for k, v in loaded.items()]

    want = run(torch, str(tmp_path / "torch.pth"))
    got = run(lib, str(tmp_path / "gs.pth"))
    assert [k for k, _ in got] == [k for k, _ in want]
    _same_arrays([v for _, v in got], [v for _, v in want])


# --- torch.backends (LLMs from scratch ch. 3: `torch.backends.mps.is_available()`) --------------

def test_backends_answer_as_a_cpu_build_of_torch(lib):
    def run(t: Any) -> tuple[Any, ...]:
        b = t.backends
        return (b.mps.is_available(), b.mps.is_built(), b.cuda.is_built(),
                b.cudnn.is_available(), b.cudnn.enabled, b.cudnn.deterministic,
                b.cudnn.benchmark)

    assert run(lib) == run(torch)
    lib.backends.cudnn.deterministic = True
    assert lib.backends.cudnn.deterministic is True


# --- SubsetRandomSampler (Udacity weight-initialization: a validation split) --------------------

def test_subset_random_sampler_is_torchs(lib):
    def run(t: Any) -> tuple[Any, ...]:
        from_sampler = t.utils.data.sampler.SubsetRandomSampler
        t.manual_seed(0)
        s = t.utils.data.SubsetRandomSampler([3, 5, 7, 9, 11])
        first, second = list(s), list(s)
        g = t.Generator().manual_seed(1)
        seeded = list(from_sampler(range(6), generator=g))
        ds = t.utils.data.TensorDataset(t.arange(12.0).reshape(6, 2))
        loader = t.utils.data.DataLoader(ds, batch_size=2,
                                         sampler=from_sampler([0, 2, 4, 5]))
        batches = [b[0].numpy().tolist() for b in loader]
        return first, second, len(s), seeded, batches, t.rand(2).numpy().tolist()

    assert run(lib) == run(torch)


# --- Tensor.resize_ (Udacity's intro to PyTorch: `images.resize_(images.shape[0], 1, 784)`) -----

@pytest.mark.parametrize("sizes", [(3, 2), (6,), ((2, 3),), ([1, 6],), (2, 2), (1,)])
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_resize_is_torchs_in_place(lib, sizes, dtype):
    def run(t: Any) -> tuple[Any, ...]:
        x = t.arange(6).reshape(2, 3).to(getattr(t, dtype))
        alias = x
        out = x.resize_(*sizes)
        return out is x, alias.shape, x.numpy(), (x * 2).numpy(), x.dtype.is_floating_point

    want, got = run(torch), run(lib)
    assert got[0] is want[0] is True
    assert tuple(got[1]) == tuple(want[1])
    _same_arrays(list(got[2:4]), list(want[2:4]))
    assert got[4] == want[4]


def test_resize_of_a_batch_then_a_model_is_torchs(lib):
    # the tutorial's flow: a loader's batch flattened in place, then through a model
    x_np = _data((4, 1, 28, 28), 6)

    def run(t: Any) -> list[Any]:
        t.manual_seed(0)
        model = t.nn.Sequential(t.nn.Linear(784, 16), t.nn.ReLU(), t.nn.Linear(16, 10))
        images = t.tensor(x_np)
        images.resize_(images.shape[0], 1, 784)
        out = model(images)
        out.sum().backward()
        return [images.numpy(), out.detach().numpy(), model[0].weight.grad.numpy()]

    _same_arrays(run(lib), run(torch))


def test_resize_writes_through_to_a_view_as_torch(lib):
    def run(t: Any) -> Any:
        z = t.zeros(2, 3)
        v = z.view(6)
        z.resize_(3, 2)
        z[0, 1] = 5.0
        return v.numpy()

    np.testing.assert_array_equal(run(lib), run(torch))


@pytest.mark.parametrize("make", [lambda t: t.ones(2, requires_grad=True),
                                  lambda t: t.ones(2, requires_grad=True) * 2])
def test_resize_refuses_a_tensor_that_requires_grad_as_torch(lib, make):
    _refuses_as_torch(lambda t: make(t).resize_(1), lib, (RuntimeError,))


# --- torch.random as a module (Zero to Mastery 00: `torch.random.manual_seed(seed=42)`) ----------

def test_torch_random_is_the_seeding_module(lib):
    def run(t: Any) -> list[Any]:
        t.random.manual_seed(seed=42)
        a = t.rand(3)
        seed = t.random.initial_seed()
        state = t.random.get_rng_state()
        b = t.rand(2)
        t.random.set_rng_state(state)
        return [a.numpy(), np.array(seed), b.numpy(), t.rand(2).numpy(),
                np.array(t.random.default_generator.initial_seed())]

    _same_arrays(run(lib), run(torch))
