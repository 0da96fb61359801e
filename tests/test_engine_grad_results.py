"""autograd.grad's results (a gradient the pass made is returned without a copy) never share
memory with what the caller or the graph still holds; a leaf sharing a read-only array."""

import numpy as np

import gradserve.engine as ge
from gradserve.engine.creation import shared_leaf
from tests.reference import torch

N = 1 << 12


def data(seed):
    return np.random.default_rng(seed).standard_normal(N).astype(np.float32)


def test_results_share_no_memory_with_inputs_grad_outputs_or_each_other():
    x = ge.tensor(data(0), requires_grad=True)
    y = ge.tensor(data(1), requires_grad=True)
    v = ge.tensor(data(2))
    out = x + y  # AddBackward0 hands the same gradient to both inputs
    gx, gy = ge.autograd.grad([out], [x, y], grad_outputs=[v], retain_graph=True)
    gx2, gx3 = ge.autograd.grad([out], [x, x], grad_outputs=[v], retain_graph=True)
    arrays = [t.numpy(force=True) for t in (x, y, v, gx, gy, gx2, gx3)]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(gx.numpy(), v.numpy())
    np.testing.assert_array_equal(gx3.numpy(), v.numpy())


def test_a_fresh_gradient_is_returned_as_it_is_and_equals_torch():
    x = ge.tensor(data(3), requires_grad=True)
    (g,) = ge.autograd.grad([(x ** 2).sum()], [x])
    assert g.numpy().flags.owndata and g.numpy().flags.writeable  # not a view of anything
    xt = torch.tensor(data(3), requires_grad=True)
    (gt,) = torch.autograd.grad((xt ** 2).sum(), xt)
    assert g.numpy().tobytes() == gt.numpy().tobytes()


def test_a_shared_read_only_leaf_is_differentiated_and_left_alone():
    raw = data(4)
    frozen = raw.copy()
    frozen.flags.writeable = False
    x = shared_leaf(frozen, requires_grad=True)
    assert x.is_leaf and x.requires_grad and np.shares_memory(x.numpy(force=True), frozen)
    y = (x * 3).exp().sum() + x.reshape(64, -1).t().sum()
    (g,) = ge.autograd.grad([y], [x])
    xt = torch.tensor(raw, requires_grad=True)
    yt = (xt * 3).exp().sum() + xt.reshape(64, -1).t().sum()
    (gt,) = torch.autograd.grad(yt, xt)
    assert y.detach().numpy().tobytes() == yt.detach().numpy().tobytes()
    assert g.numpy().tobytes() == gt.numpy().tobytes()
    np.testing.assert_array_equal(frozen, raw)
