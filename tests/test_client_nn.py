"""torch.nn through a session (`torch = session; torch.nn.Linear(...)`) against torch.nn: the
module and loss cases of tests/nn_cases.py (shared with the in-process tests), Parameters as
session tensors, the optimizers over `model.parameters()` and param groups, and what a training
step costs in round trips."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import gradserve.client as gc
from tests import nn_cases
from tests.nn_cases import np_of
from tests.reference import torch


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture
def session(client):
    with client.session() as s:
        yield s


@pytest.mark.parametrize("case", list(nn_cases.MODULES))
def test_module_matches_torch(session, case: str):
    nn_cases.check_module(session, case)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(nn_cases.LOSSES))
def test_loss_matches_torch(session, case: str, reduction: str):
    nn_cases.check_loss(session, case, reduction)


@pytest.mark.parametrize("case", list(nn_cases.BATCH_NORMS))
def test_batch_norm_matches_torch(session, case: str):
    nn_cases.check_batch_norm(session, case)


def test_cnn_training_loop_matches_torch(session):
    nn_cases.check_cnn_training(session)


def test_training_loop_matches_torch(session):
    nn_cases.check_training(session)


def test_parameters_are_session_tensors_that_print_as_torch(session):
    data = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    p = session.nn.Parameter(session.tensor(data))
    assert repr(p) == repr(torch.nn.Parameter(torch.tensor(data)))
    assert isinstance(p, session.nn.Parameter) and isinstance(p, session.Tensor)
    assert p.is_leaf and p.requires_grad
    assert not isinstance(p * 2, session.nn.Parameter)
    assert not isinstance(session.tensor(data), session.nn.Parameter)
    lin = session.nn.Linear(2, 3)
    assert isinstance(lin, session.nn.Module) and isinstance(lin.weight, session.nn.Parameter)
    assert lin.weight._owner is session
    with gc.connect(session.client.target).session() as other:
        assert not isinstance(lin.weight, other.nn.Parameter)
        assert not isinstance(lin, other.nn.Module)


def test_user_module_subclass_and_state_dict_round_trip(session):
    nn = session.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
            self.head = nn.Linear(4, 1)

        def forward(self, x: Any) -> Any:
            return self.head(self.body(x))

    net, other = Net(), Net()
    assert repr(other.load_state_dict(net.state_dict())) == "<All keys matched successfully>"
    for (name, p), (_, q) in zip(net.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(np_of(p), np_of(q), err_msg=name)
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "head.bias"'):
        other.load_state_dict({k: v for k, v in net.state_dict().items() if k != "head.bias"})


def test_module_to_double_makes_session_parameters_of_the_new_dtype(session):
    lin = session.nn.Linear(2, 1)
    before = lin.weight.tolist()
    lin.double()
    assert lin.weight.dtype == session.float64 and isinstance(lin.weight, session.nn.Parameter)
    np.testing.assert_allclose(lin.weight.tolist(), before, rtol=1e-7)
    assert lin(session.ones(3, 2, dtype=session.float64)).dtype == session.float64


def test_functional_keeps_catalogue_ops_and_composes_as_torch(session):
    F = session.nn.functional
    x = np.array([[0.2, -1.0, 3.0]], np.float32)
    np.testing.assert_allclose(np_of(F.sin(session.tensor(x))), np.sin(x), rtol=1e-6)
    loss = F.cross_entropy(session.tensor(x, requires_grad=True), session.tensor([2]))
    assert loss.grad_fn.name() == torch.nn.functional.cross_entropy(
        torch.tensor(x, requires_grad=True), torch.tensor([2])).grad_fn.name()
    with pytest.warns(UserWarning, match="Using a target size"):
        F.mse_loss(session.zeros(3, 1), session.zeros(3))


def test_init_and_utils_run_on_the_server(session):
    nn = session.nn
    w = nn.Parameter(session.zeros(64, 32))
    assert nn.init.kaiming_uniform_(w, a=math.sqrt(5)) is w
    assert np.abs(np_of(w)).max() <= 1 / math.sqrt(32) and w.is_leaf
    model, reference = nn_cases.mlp(nn), nn_cases.mlp(torch.nn)
    nn_cases.copy_weights(model, reference, session)
    x = nn_cases.RNG.standard_normal((5, 2)).astype(np.float32)
    model(session.tensor(x)).pow(2).sum().backward()
    reference(torch.tensor(x)).pow(2).sum().backward()
    total = nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    want = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.1)
    np.testing.assert_allclose(np_of(total), np_of(want), rtol=1e-5)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(np_of(p.grad), np_of(q.grad), rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(
        np_of(nn.utils.parameters_to_vector(model.parameters())),
        np_of(torch.nn.utils.parameters_to_vector(reference.parameters())), rtol=1e-6)


def test_optimizer_takes_param_groups_as_torch(session):
    model, reference = nn_cases.mlp(session.nn), nn_cases.mlp(torch.nn)
    nn_cases.copy_weights(model, reference, session)
    opts = [lib.optim.SGD([{"params": m[0].parameters(), "lr": 0.1},
                           {"params": m[2].parameters()}], lr=0.01, momentum=0.5)
            for lib, m in ((session, model), (torch, reference))]
    assert [g["lr"] for g in opts[0].param_groups] == [g["lr"] for g in opts[1].param_groups]
    x = nn_cases.RNG.standard_normal((4, 2)).astype(np.float32)
    for step in range(6):
        for lib, m, opt in ((session, model, opts[0]), (torch, reference, opts[1])):
            if step == 3:  # a changed hyperparameter goes to the server with the next step
                opt.param_groups[0]["lr"] = 0.5
                opt.param_groups[1]["momentum"] = 0.0
            opt.zero_grad()
            m(lib.tensor(x)).pow(2).sum().backward()
            opt.step()
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(np_of(p), np_of(q), rtol=1e-5, atol=1e-7, err_msg=name)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter "
                                         "group"):
        session.optim.SGD([{"params": [model[0].weight]}, {"params": [model[0].weight]}])


def test_a_training_step_costs_one_round_trip(session):
    model = nn_cases.mlp(session.nn)
    opt = session.optim.SGD(model.parameters(), lr=0.05)
    x, y = session.randn(16, 2), session.randn(16, 1)
    loss_fn = session.nn.MSELoss()
    loss_fn(model(x), y).item()  # shapes known from here on
    start = session.round_trips
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    loss.item()
    # per step: backward() is sent; the loss's size check reads the output's shape, which the
    # client knows (Session.meta), and linear's addmm needs only that shape
    assert session.round_trips - start == 5 + 1
