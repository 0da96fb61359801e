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


def test_a_shared_read_only_leaf_refuses_in_place_writes():
    """What the server's large inputs are made of (a view of the request's bytes): every
    in-place write, on the leaf or a view of it, is refused before it writes, with or without
    requires_grad, and the bytes stay as they were."""
    raw = data(5)
    frozen = np.frombuffer(raw.tobytes(), np.float32)  # read-only, as over a request's bytes
    assert not frozen.flags.writeable
    plain, tracked = shared_leaf(frozen), shared_leaf(frozen, requires_grad=True)
    ones = ge.tensor(np.ones(N, np.float32))
    writes = [lambda t: t.add_(1), lambda t: t.mul_(2), lambda t: t.zero_(),
              lambda t: t.fill_(3.0), lambda t: t.copy_(ones), lambda t: t[:8].sub_(1),
              lambda t: t.reshape(64, -1).t().exp_(), lambda t: t.clamp_(0, 1)]
    for write in writes:
        for t in (plain, tracked):
            try:
                write(t)
            except (ge.errors.InvalidArgumentError, ge.errors.InplaceError):
                pass
            else:
                raise AssertionError("an in-place write into a read-only leaf went through")
    np.testing.assert_array_equal(frozen, raw)
    assert plain.numpy(force=True).tobytes() == raw.tobytes() and plain._version_counter == 0
