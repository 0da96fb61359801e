"""Memory formats and strides as torch 2.13 has them: `torch.channels_last` & co., which
strides clone, the *_like factories, elementwise ops, conversions and convolutions give their
results (torch's preserve_format and TensorIterator rules), `is_contiguous(memory_format=)`,
`contiguous`/`to`/`nn.Module.to(memory_format=)`, and the strides of a leaf's `.grad`
(AccumulateGrad's layout contract) — in process and through a session, against torch."""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from gradserve.surface import memory_format as mf

BASE = (np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5) - 50) / 7


def _layout(lib: Any, kind: str) -> Any:
    """A tensor of `lib` laid out as `kind` says (same values in torch and gradserve)."""
    x = lib.tensor(BASE.tolist())
    if kind == "contiguous":
        return x
    if kind == "t":
        return lib.tensor(BASE[0, 0].tolist()).t()
    if kind == "permuted":
        return x.permute(0, 2, 3, 1)
    if kind == "permuted2":
        return x.permute(3, 1, 0, 2)
    if kind == "transposed_middle":
        return x.transpose(1, 2)
    if kind == "expanded":
        return lib.tensor(BASE[0, 0, 0].tolist()).expand(4, 5)
    if kind == "expanded_t":
        return lib.tensor(BASE[0, 0, 0].tolist()).expand(3, 5).t()
    if kind == "sliced":
        return x[:, :, ::2]
    if kind == "sliced_permuted":
        return x.permute(0, 2, 3, 1)[:, :, ::2]
    if kind == "channels_last":
        return x.contiguous(memory_format=lib.channels_last)
    raise AssertionError(kind)


LAYOUTS = ("contiguous", "t", "permuted", "permuted2", "transposed_middle", "expanded",
           "expanded_t", "sliced", "sliced_permuted", "channels_last")

RESULTS = {
    "clone": lambda lib, x: x.clone(),
    "clone_contiguous": lambda lib, x: x.clone(memory_format=lib.contiguous_format),
    "empty_like": lambda lib, x: lib.empty_like(x).zero_(),
    "zeros_like": lambda lib, x: lib.zeros_like(x),
    "ones_like": lambda lib, x: lib.ones_like(x),
    "full_like": lambda lib, x: lib.full_like(x, 2.5),
    "zeros_like_contiguous": lambda lib, x: lib.zeros_like(
        x, memory_format=lib.contiguous_format),
    "exp": lambda lib, x: x.exp(),
    "sigmoid": lambda lib, x: lib.sigmoid(x),
    "neg": lambda lib, x: -x,
    "relu": lambda lib, x: lib.relu(x),
    "add_contiguous": lambda lib, x: x + lib.ones(x.shape),
    "contiguous_add": lambda lib, x: lib.ones(x.shape) + x,
    "add_row": lambda lib, x: x + lib.ones(x.shape[-1]),
    "where": lambda lib, x: lib.where(x > 1, x, lib.zeros_like(x)),
    "double": lambda lib, x: x.double(),
    "to_float64": lambda lib, x: x.to(lib.float64),
    "cumsum": lambda lib, x: x.cumsum(0),
    "contiguous": lambda lib, x: x.contiguous(),
    "softmax": lambda lib, x: lib.softmax(x, -1),
    "sum0": lambda lib, x: x.sum(0),
}


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("name", sorted(RESULTS))
def test_result_strides_as_torch(gradserve_lib, name, kind):
    f = RESULTS[name]
    want = f(torch, _layout(torch, kind))
    got = f(gradserve_lib, _layout(gradserve_lib, kind))
    assert got.stride() == want.stride()
    assert got.is_contiguous() == want.is_contiguous()
    np.testing.assert_array_equal(np.array(got.tolist()), want.numpy())


@pytest.mark.parametrize("kind", ("t", "permuted", "channels_last", "sliced"))
@pytest.mark.parametrize("name", ("clone", "exp", "neg", "add_contiguous", "add_row", "sum0",
                                  "softmax", "contiguous"))
def test_leaf_grad_keeps_the_leafs_strides(gradserve_lib, name, kind):
    # AccumulateGrad's layout contract: a dense leaf's first .grad has the leaf's strides,
    # whatever the strides of the gradient that reached it
    f = RESULTS[name]

    def grad_strides(lib: Any) -> Any:
        x = _layout(lib, kind).detach().requires_grad_(True)
        y = f(lib, x)
        (y * y).sum().backward()
        return x.stride(), x.grad.stride(), x.grad.tolist()

    assert grad_strides(gradserve_lib) == grad_strides(torch)


def test_leaf_grad_of_a_sliced_leaf_is_contiguous(gradserve_lib):
    def grad_strides(lib: Any) -> Any:
        x = lib.ones(4, 6)[:, ::2].detach().requires_grad_(True)
        (x.t() * 3).sum().backward()
        return x.stride(), x.grad.stride()

    assert grad_strides(gradserve_lib) == grad_strides(torch)


def test_memory_format_objects(gradserve_lib):
    for name in ("contiguous_format", "channels_last", "channels_last_3d", "preserve_format"):
        got, want = getattr(gradserve_lib, name), getattr(torch, name)
        assert repr(got) == repr(want) and str(got) == str(want)
        assert type(got).__name__ == type(want).__name__ == "memory_format"
        assert isinstance(got, gradserve_lib.memory_format)
        assert got == getattr(gradserve_lib, name) and hash(got) == hash(got)
    assert gradserve_lib.channels_last != gradserve_lib.contiguous_format
    assert pickle.loads(pickle.dumps(gradserve_lib.channels_last)) is mf.channels_last


@pytest.mark.parametrize("kind", LAYOUTS)
def test_is_contiguous_in_each_format(gradserve_lib, kind):
    x, y = _layout(torch, kind), _layout(gradserve_lib, kind)
    for name in ("contiguous_format", "channels_last", "channels_last_3d", "preserve_format"):
        assert y.is_contiguous(memory_format=getattr(gradserve_lib, name)) == (
            x.is_contiguous(memory_format=getattr(torch, name))), name


@pytest.mark.parametrize("fmt", ("contiguous_format", "channels_last"))
@pytest.mark.parametrize("kind", ("contiguous", "permuted", "channels_last", "sliced_permuted",
                                  "transposed_middle"))
def test_contiguous_clone_and_to_in_a_format(gradserve_lib, kind, fmt):
    def results(lib: Any) -> Any:
        x = _layout(lib, kind)
        f = getattr(lib, fmt)
        out = []
        for y in (x.contiguous(memory_format=f), x.clone(memory_format=f),
                  x.to(memory_format=f), x.to(lib.float64, memory_format=f),
                  lib.zeros_like(x, memory_format=f), lib.ones_like(x, memory_format=f)):
            out.append((y.stride(), y.tolist()))
        out.append((x.contiguous(memory_format=f) is x, x.to(memory_format=f) is x))
        return out

    assert results(gradserve_lib) == results(torch)


def test_to_channels_last_records_to_copy(gradserve_lib):
    def run(lib: Any) -> Any:
        x = lib.tensor(BASE.tolist(), requires_grad=True)
        y = x.to(memory_format=lib.channels_last)
        (y * y).sum().backward()
        return y.stride(), y.grad_fn.name(), x.grad.stride()

    assert run(gradserve_lib) == run(torch)


def _raised(fn: Any) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        fn()
    # the builtin class a program catches (gradserve's subclass it)
    kind = next(k for k in (TypeError, IndexError, ValueError, RuntimeError, Exception)
                if isinstance(info.value, k))
    return kind, str(info.value)


@pytest.mark.parametrize("call", (
    lambda lib: lib.ones(2, 3).t().contiguous(memory_format=lib.preserve_format),
    lambda lib: lib.ones(2, 3).contiguous(memory_format=lib.channels_last),
    lambda lib: lib.ones(2, 3, 4, 5).contiguous(memory_format=lib.channels_last_3d),
    lambda lib: lib.ones(2, 3).to(memory_format=lib.channels_last),
    lambda lib: lib.ones(2, 3).is_contiguous(memory_format="channels_last"),
    lambda lib: lib.empty(2, 3, memory_format=lib.preserve_format),
))
def test_memory_format_refusals_as_torch(gradserve_lib, call):
    assert _raised(lambda: call(gradserve_lib)) == _raised(lambda: call(torch))


@pytest.mark.parametrize("call", (
    lambda lib: lib.ones(2, 3).clone(memory_format=lib.channels_last),
    lambda lib: lib.ones(2, 3).clone(memory_format=1),
    lambda lib: lib.zeros_like(lib.ones(2, 3, 4), memory_format=lib.channels_last),
    lambda lib: lib.empty(2, 3, memory_format=lib.channels_last),
))
def test_op_refusals_as_torch(call):
    import gradserve.engine as ge

    assert _raised(lambda: call(ge)) == _raised(lambda: call(torch))


def test_empty_and_random_like_in_a_format(gradserve_lib):
    def run(lib: Any) -> Any:
        lib.manual_seed(3)
        x = _layout(lib, "channels_last")
        a = lib.empty(2, 3, 4, 5, memory_format=lib.channels_last)
        b = lib.rand_like(x)
        c = lib.randn_like(x, memory_format=lib.contiguous_format)
        d = lib.rand_like(lib.ones(2, 3, 4, 5), memory_format=lib.channels_last)
        e = lib.randn_like(_layout(lib, "sliced_permuted"))  # not dense: its stride order
        return (a.stride(), a.is_contiguous(memory_format=lib.channels_last),
                b.stride(), c.stride(), d.stride(), e.stride(),
                [np.round(t.tolist(), 5).tolist() for t in (b, d, e)])

    assert run(gradserve_lib) == run(torch)


@pytest.mark.parametrize("module_format", (False, True))
@pytest.mark.parametrize("input_format", (False, True))
def test_conv_and_batch_norm_in_channels_last(gradserve_lib, module_format, input_format):
    def run(lib: Any) -> Any:
        lib.manual_seed(0)
        model = lib.nn.Sequential(lib.nn.Conv2d(3, 4, 3), lib.nn.BatchNorm2d(4),
                                  lib.nn.ReLU())
        if module_format:
            model = model.to(memory_format=lib.channels_last)
        x = lib.tensor(BASE.tolist())
        if input_format:
            x = x.contiguous(memory_format=lib.channels_last)
        x.requires_grad_(True)
        y = model(x)
        (y * y).sum().backward()
        conv = model[0]
        return (conv.weight.stride(), y.stride(), x.grad.stride(), conv.weight.grad.stride(),
                conv.bias.grad.stride(), np.round(y.tolist(), 4).tolist())

    assert run(gradserve_lib) == run(torch)


def test_module_to_memory_format_only_lays_out_4d_and_5d(gradserve_lib):
    def run(lib: Any) -> Any:
        lib.manual_seed(0)
        model = lib.nn.Sequential(lib.nn.Conv2d(3, 4, 3), lib.nn.Linear(2, 2))
        model = model.to(lib.float64, memory_format=lib.channels_last)
        return [(tuple(p.shape), p.stride(), str(p.dtype)) for p in model.parameters()]

    def refused(lib: Any) -> Any:
        model = lib.nn.Module()
        model.p = lib.nn.Parameter(lib.ones(2, 3, 4, 5, 6))
        return _raised(lambda: model.to(memory_format=lib.channels_last))

    assert run(gradserve_lib) == run(torch)
    assert refused(gradserve_lib) == refused(torch)


# --- the shared rules, against torch directly --------------------------------------------------

STRIDED = [
    ((4, 3), (1, 4)), ((2, 3, 4), (12, 1, 3)), ((2, 3, 4), (1, 8, 2)), ((5, 1, 3), (3, 3, 1)),
    ((4, 1, 3), (1, 4, 4)), ((3, 5), (1, 0)), ((5, 3), (0, 1)), ((2, 3, 4), (24, 8, 2)),
    ((2, 3, 4, 5), (60, 1, 15, 3)), ((2, 4, 3), (24, 1, 8)), ((3, 0, 2), (2, 6, 1)),
    ((2, 1, 1, 3), (3, 1, 3, 1)), ((2, 3, 1, 1), (3, 1, 3, 3)), ((4, 2, 2), (1, 8, 4)),
]


@pytest.mark.parametrize(("shape", "strides"), STRIDED)
def test_shared_rules_match_torch(shape, strides):
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else 1
    x = torch.arange(float(extent)).as_strided(shape, strides)
    assert mf.like_strides(shape, strides) == torch.empty_like(x).stride()
    assert mf.elementwise_strides(shape, [(shape, strides)]) == torch.exp(x).stride()
    dense = torch.empty(0).set_(torch.empty(extent).untyped_storage(), 0, shape, strides)
    assert mf.is_non_overlapping_and_dense(shape, strides) == (
        dense.clone().stride() == tuple(strides))
    for name in ("contiguous", "channels_last", "channels_last_3d"):
        fmt = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last,
               "channels_last_3d": torch.channels_last_3d}[name]
        assert mf.is_contiguous_as(name, shape, strides) == x.is_contiguous(memory_format=fmt)
    if len(shape) == 4:
        want = "channels_last" if x.to(torch.float64).is_contiguous(
            memory_format=torch.channels_last) and not x.is_contiguous() else None
        if want is not None:
            assert mf.suggest(shape, strides) == want


@pytest.mark.parametrize(("a", "b"), [
    (((2, 3, 4), (12, 1, 3)), ((2, 3, 4), (12, 4, 1))),
    (((2, 3, 4), (12, 4, 1)), ((2, 3, 4), (12, 1, 3))),
    (((4, 3), (1, 4)), ((3,), (1,))),
    (((3, 1), (1, 1)), ((1, 4), (4, 1))),
    (((2, 3, 4), (1, 2, 6)), ((2, 1, 4), (4, 4, 1))),
])
def test_elementwise_rule_of_two_operands_matches_torch(a, b):
    def make(shape: Any, strides: Any) -> Any:
        extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides))
        return torch.arange(float(extent)).as_strided(shape, strides)

    out = make(*a) + make(*b)
    assert mf.elementwise_strides(tuple(out.shape), [a, b]) == out.stride()


# --- storages --------------------------------------------------------------------------------

def _storage(t: Any) -> Any:
    with warnings.catch_warnings():  # torch warns once per process that TypedStorage is old
        warnings.simplefilter("ignore", UserWarning)
        return t.storage()


# each a tensor and the view of it whose storage is read (the program keeps the tensor, as
# torch's view keeps its base: a session reads `_base` of a view whose base the program dropped
# as None once — client/saved.py's same_as answer for a released handle)
STORAGE_OF = {
    "plain": lambda lib: _kept(lib.tensor([[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]]), None),
    "row": lambda lib: _kept(lib.tensor([[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]]), lambda t: t[1]),
    "transposed": lambda lib: _kept(lib.arange(6.0), lambda t: t.view(2, 3).t()),
    "column": lambda lib: _kept(lib.arange(6.0), lambda t: t.view(2, 3).t()[1]),
    "expanded": lambda lib: _kept(lib.tensor([1.5, 2.25, 1e-8]), lambda t: t.expand(4, 3)),
    "int": lambda lib: _kept(lib.tensor([1, 2, 300]), None),
    "bool": lambda lib: _kept(lib.tensor([True, False]), None),
    "empty": lambda lib: _kept(lib.tensor([]), None),
    "scalar": lambda lib: _kept(lib.tensor(3.0), None),
    "channels_last": lambda lib: _kept(_layout(lib, "channels_last"), lambda t: t[:, 1]),
    "permuted_clone": lambda lib: _kept(_layout(lib, "permuted").clone(), None),
}


def _kept(base: Any, view: Any) -> tuple[Any, Any]:
    return base, base if view is None else view(base)


@pytest.mark.parametrize("name", sorted(STORAGE_OF))
def test_storage_as_torch(gradserve_lib, name):
    def seen(lib: Any) -> Any:
        base, t = STORAGE_OF[name](lib)
        s, u = _storage(t), t.untyped_storage()
        return (repr(s), str(s), len(s), s.size(), s.tolist(), list(s), str(s.dtype),
                s.element_size(), s.nbytes(), type(s).__name__, repr(u), len(u), u.nbytes(),
                u.tolist(), type(u).__name__, t.storage_offset(),
                [s[i] for i in (0, -1)] if len(s) else [])

    assert seen(gradserve_lib) == seen(torch)


def test_storage_index_refusals_as_torch(gradserve_lib):
    s, want = _storage(gradserve_lib.tensor([1.0, 2.0])), _storage(torch.tensor([1.0, 2.0]))
    for i in (5, -3, 1.5):
        assert _raised(lambda: s[i]) == _raised(lambda: want[i])  # noqa: B023


def test_storage_shared_by_views_in_process():
    import gradserve.engine as ge

    def seen(lib: Any) -> Any:
        p = lib.tensor([[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]])
        ptr = _storage(p).data_ptr()
        row, d = p[1], p.detach()
        s = _storage(p)
        s[0] = 2.0  # a storage is a view: the tensor sees the write
        return (_storage(row).data_ptr() == ptr, row.data_ptr() - p.data_ptr(),
                p.t().untyped_storage().data_ptr() == ptr, _storage(d).data_ptr() == ptr,
                _storage(p.clone()).data_ptr() == ptr, p.view(-1).data_ptr() == p.data_ptr(),
                p.tolist())

    assert seen(ge) == seen(torch)


def test_storage_through_a_session_is_a_copy(gradserve_client):
    with gradserve_client.session() as s:
        t = s.tensor([1.0, 2.0])
        st = _storage(t)
        assert st.tolist() == [1.0, 2.0]
        for refused in (st.data_ptr, t.data_ptr, lambda: st.__setitem__(0, 5.0)):
            with pytest.raises(NotImplementedError, match="copy of the server's memory"):
                refused()


def test_storage_warns_as_torch():
    import gradserve.engine as ge
    from gradserve.surface import storage

    storage._warned[0] = False
    with pytest.warns(UserWarning, match="TypedStorage is deprecated") as seen:
        ge.ones(2).storage()
    assert str(seen[0].message) == storage.STORAGE_WARNING
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ge.ones(2).storage()  # once per process, as torch
