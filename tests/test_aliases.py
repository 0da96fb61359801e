"""torch's aliases (gradserve.surface.aliases): the table against torch itself, and each alias
through the engine and the client against torch with the same inputs (values, grad_fn names,
gradients), as function, method and in-place method."""

from __future__ import annotations

import numpy as np
import pytest

import gradserve.client as gc_client
import gradserve.engine as ge
from gradserve.surface.aliases import ALIASES, canonical
from tests.reference import torch

X = [[0.2, 0.5, 0.7], [0.4, 0.3, 0.9]]
Y = [[0.6, 0.1, 0.8], [0.3, 0.5, 0.2]]

# canonical name -> (function arguments after the tensors, the tensors it takes: 1, 2 or a list)
CALLS: dict[str, tuple[tuple, str]] = {
    "clamp": ((0.3, 0.6), "x"), "cat": ((), "list"), "vstack": ((), "list"),
    "transpose": ((0, 1), "x"),
    "movedim": ((0, 1), "x"),
    **{n: ((), "xy") for n in ("mul", "sub", "div", "atan2", "gt", "ge", "lt", "le", "ne")},
}


def _args(mod, name, requires_grad=True):
    extra, kind = CALLS.get(name, ((), "x"))
    shift = 1.0 if name == "acosh" else 0.0  # acosh's domain is [1, inf)
    x = mod.tensor((np.array(X) + shift).tolist(), requires_grad=requires_grad)
    y = mod.tensor(Y, requires_grad=requires_grad)
    tensors = {"x": (x,), "xy": (x, y), "list": ([x, y],)}[kind]
    return tensors, extra, (x, y)


def _compare(ours, theirs, ours_inputs, their_inputs):
    np.testing.assert_allclose(np.asarray(ours.detach().tolist()),
                               np.asarray(theirs.detach().tolist()), rtol=1e-6)
    if theirs.grad_fn is None:
        assert ours.grad_fn is None
        return
    assert ours.grad_fn.name() == theirs.grad_fn.name()
    ours.sum().backward()
    theirs.sum().backward()
    for a, b in zip(ours_inputs, their_inputs):
        if b.grad is None:
            assert a.grad is None
        else:
            np.testing.assert_allclose(np.asarray(a.grad.tolist()), b.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_the_table_is_torchs(alias):
    # in torch, the alias and its canonical name give the same values and node
    target = ALIASES[alias]
    tensors, extra, _ = _args(torch, target)
    via_alias = getattr(torch, alias)(*tensors, *extra)
    via_target = getattr(torch, target)(*tensors, *extra)
    assert torch.equal(via_alias, via_target)
    assert type(via_alias.grad_fn) is type(via_target.grad_fn)
    assert alias not in ALIASES.values()  # no alias shadows a canonical name


def test_canonical_maps_inplace_spellings():
    assert canonical("arctan") == "atan"
    assert canonical("clip_") == "clamp_"
    assert canonical("add") == "add" and canonical("add_") == "add_"
    assert canonical("__neg__") == "__neg__"


def _engine_aliases():
    return sorted(a for a, t in ALIASES.items() if t in ge.PUBLIC)


def test_every_alias_whose_target_the_engine_has_is_installed():
    for alias, target in ALIASES.items():
        assert (alias in ge.PUBLIC) == (target in ge.PUBLIC)
        if alias in ge.PUBLIC:
            assert getattr(ge, alias) is getattr(ge, target)
        if hasattr(ge.Tensor, target) and hasattr(torch.Tensor, alias):
            assert getattr(ge.Tensor, alias) is getattr(ge.Tensor, target)
        if hasattr(ge.Tensor, target + "_") and hasattr(torch.Tensor, alias + "_"):
            assert getattr(ge.Tensor, alias + "_") is getattr(ge.Tensor, target + "_")
    assert "arctan" in _engine_aliases() or "atan" not in ge.PUBLIC


@pytest.mark.parametrize("alias", _engine_aliases())
def test_engine_alias_matches_torch(alias):
    target = ALIASES[alias]
    ours_t, extra, ours_in = _args(ge, target)
    theirs_t, _, theirs_in = _args(torch, target)
    _compare(getattr(ge, alias)(*ours_t, *extra), getattr(torch, alias)(*theirs_t, *extra),
             ours_in, theirs_in)
    if hasattr(torch.Tensor, alias):
        ours_t, extra, ours_in = _args(ge, target)
        theirs_t, _, theirs_in = _args(torch, target)
        _compare(getattr(ours_t[0], alias)(*ours_t[1:], *extra),
                 getattr(theirs_t[0], alias)(*theirs_t[1:], *extra), ours_in, theirs_in)


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture
def session(client):
    with client.session() as s:
        yield s


@pytest.mark.parametrize("alias", _engine_aliases())
def test_client_alias_matches_torch(session, alias):
    target = ALIASES[alias]
    assert getattr(session, alias) is getattr(session, target)
    ours_t, extra, ours_in = _args(session, target)
    theirs_t, _, theirs_in = _args(torch, target)
    _compare(getattr(session, alias)(*ours_t, *extra), getattr(torch, alias)(*theirs_t, *extra),
             ours_in, theirs_in)
    if hasattr(torch.Tensor, alias):
        ours_t, extra, ours_in = _args(session, target)
        theirs_t, _, theirs_in = _args(torch, target)
        _compare(getattr(ours_t[0], alias)(*ours_t[1:], *extra),
                 getattr(theirs_t[0], alias)(*theirs_t[1:], *extra), ours_in, theirs_in)


@pytest.mark.parametrize("mod", ["engine", "client"])
def test_inplace_alias_is_the_canonical_inplace_op(session, mod):
    m = ge if mod == "engine" else session
    ours = m.tensor(X, requires_grad=True) * 1
    theirs = torch.tensor(X, requires_grad=True) * 1
    assert ours.clip_(0.3, 0.6) is ours
    theirs.clip_(0.3, 0.6)
    assert ours.grad_fn.name() == theirs.grad_fn.name()
    np.testing.assert_allclose(np.asarray(ours.tolist()), theirs.detach().numpy())


def test_client_unknown_name_is_reported_as_spelled(session):
    x = session.tensor(X)
    with pytest.raises(AttributeError, match="no_such_alias"):
        x.no_such_alias  # noqa: B018
