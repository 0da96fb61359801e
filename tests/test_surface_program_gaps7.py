"""Gaps found by running public PyTorch programs unchanged through a session (round 7).

A linear layer on an N-D input takes one of two graphs by the input's layout (torch's
at::linear: contiguous -> reshape, addmm, view: ViewBackward0; otherwise matmul then add); the
layers of real programs (a Linear on `torch.ones(1)`, on an RNN's output, on an embedding, after
a LayerNorm or a softmax) must build torch's graph through a session too, an input torch leaves
strided (a transpose, an expand) torch's other graph. Then channel-wise dropout,
`optim.Adadelta`, and a batch norm layer used twice in one graph. Each case runs on torch and on
gradserve (in process and through a session) and compares.
"""

from __future__ import annotations

import contextlib
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


def _tokens(t: Any) -> Any:
    return t.tensor(np.arange(12).reshape(3, 4) % 7)


# Each builds a linear layer's input from the module `t` (torch or gradserve) and returns it.
INPUTS: dict[str, Callable[[Any], Any]] = {
    "ones_1d": lambda t: t.ones(4),
    "zeros_3d": lambda t: t.zeros(2, 3, 4) + t.tensor(_data((4,), 1)),
    "randn_3d": lambda t: t.randn(2, 3, 4),
    "from_data_3d": lambda t: t.tensor(_data((2, 3, 4), 2)),
    "elementwise": lambda t: t.relu(t.tensor(_data((2, 3, 4), 3)) * 2 - 0.5).tanh(),
    "broadcast": lambda t: t.tensor(_data((3, 1, 4), 4)) + t.tensor(_data((2, 4), 5)),
    "reshaped": lambda t: t.tensor(_data((6, 4), 6)).reshape(2, 3, 4).unsqueeze(0),
    "stacked": lambda t: t.stack([t.tensor(_data((3, 4), s)) for s in (7, 8)]),
    "cat": lambda t: t.cat([t.tensor(_data((1, 3, 4), s)) for s in (9, 10)]),
    "embedding": lambda t: t.nn.functional.embedding(_tokens(t), t.tensor(_data((7, 4), 11))),
    "softmax": lambda t: t.softmax(t.tensor(_data((2, 3, 4), 12)), -1),
    "layer_norm": lambda t: t.nn.functional.layer_norm(t.tensor(_data((2, 3, 4), 13)), (4,)),
    "summed": lambda t: t.tensor(_data((2, 3, 5, 4), 14)).sum(2),
    "float_cast": lambda t: t.tensor(np.arange(24).reshape(2, 3, 4)).float(),
    "matmul_folded": lambda t: t.tensor(_data((2, 5, 3), 19)).transpose(1, 2) @ t.ones(5, 4),
    "matmul_batched": lambda t: t.matmul(t.tensor(_data((4, 3), 21)), t.ones(2, 3, 4)),
    "matmul_vector": lambda t: t.ones(3) @ t.tensor(_data((2, 4, 3), 22)).transpose(1, 2),
    "rnn_of_transposed": lambda t: t.nn.RNN(4, 4)(
        t.tensor(_data((3, 2, 4), 23)).transpose(0, 1))[0],
    # strided in torch: the other graph
    "transposed": lambda t: t.tensor(_data((2, 4, 3), 15)).transpose(1, 2),
    "transposed_times_2": lambda t: t.tensor(_data((2, 4, 3), 16)).transpose(1, 2) * 2,
    "expanded": lambda t: t.tensor(_data((1, 4), 17)).expand(3, 4).unsqueeze(0),
}


# the layer inputs of the programs (dlwpt ch. 6, graykode's Seq2Seq and NNLM-like models)
PROGRAM_INPUTS = ("ones_1d", "layer_norm", "softmax", "stacked", "randn_3d")


def _linear_on(t: Any, make: Callable[[Any], Any]) -> tuple[Any, ...]:
    t.manual_seed(0)
    layer = t.nn.Linear(4, 3)
    x = make(t)
    out = layer(x)
    out.sum().backward()
    return (out.grad_fn.name(), out.detach().numpy(), layer.weight.grad.numpy(),
            layer.bias.grad.numpy())


@pytest.mark.parametrize("case", sorted(INPUTS))
def test_linear_takes_torchs_graph_for_the_inputs_layout(lib, case):
    want, got = _linear_on(torch, INPUTS[case]), _linear_on(lib, INPUTS[case])
    assert got[0] == want[0]
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_layer_on_ones_of_one_element_is_a_view_as_torchs(lib):
    # Deep Learning with PyTorch, ch. 6: `linear_model(torch.ones(1))` prints ViewBackward0
    def run(t: Any) -> str:
        t.manual_seed(0)
        return repr(t.nn.Linear(1, 1)(t.ones(1)))

    assert run(lib) == run(torch)


def test_linear_on_an_rnns_output_is_torchs_graph_and_values(lib):
    # a seq2seq decoder: `fc(rnn(x, h)[0])` on a (steps, batch, hidden) output
    def run(t: Any) -> tuple[Any, ...]:
        t.manual_seed(0)
        rnn = t.nn.RNN(input_size=5, hidden_size=32)
        fc = t.nn.Linear(32, 5)
        x = t.tensor(_data((6, 2, 5), 20))
        out, _ = rnn(x, t.zeros(1, 2, 32))
        y = fc(out)
        y.sum().backward()
        return y.grad_fn.name(), y.detach().numpy(), rnn.weight_hh_l0.grad.numpy()

    want, got = run(torch), run(lib)
    assert got[0] == want[0] == "ViewBackward0"
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_what_a_session_knows_contiguous_torch_has_contiguous(gradserve_client):
    # the claim itself: what a session calls contiguous without asking is contiguous in torch
    with gradserve_client.session() as s:
        known = s.nn.Linear(1, 1)._be.known_contiguous
        for case, make in sorted(INPUTS.items()):
            x = make(s)
            torch.manual_seed(0)
            torch_contiguous = make(torch).is_contiguous()
            assert not known(x) or torch_contiguous, case  # never contiguous where torch is not
            if case in PROGRAM_INPUTS:  # and known where the programs need it, no round trip
                assert known(x), case


# --- channel-wise dropout (nn.Dropout2d in Deep Learning with PyTorch ch. 8, pytorch/examples) --

DROPOUTS = [("dropout1d", (3, 4, 5), 0.3, True), ("dropout1d", (4, 5), 0.5, True),
            ("dropout2d", (3, 4, 5, 2), 0.3, True), ("dropout2d", (3, 4, 5), 0.5, True),
            ("dropout2d", (3, 4, 5, 2), 1.0, True), ("dropout2d", (3, 4, 5, 2), 0.0, True),
            ("dropout3d", (2, 3, 2, 2, 2), 0.4, True), ("dropout3d", (3, 2, 2, 2), 0.4, True),
            ("dropout1d", (4, 5), 0.5, False), ("dropout2d", (3, 4), 0.5, True)]


@pytest.mark.parametrize(("name", "shape", "p", "training"), DROPOUTS)
def test_feature_dropout_is_torchs(lib, name, shape, p, training):
    x_np = _data(shape, 30)

    def run(t: Any) -> tuple[Any, ...]:
        t.manual_seed(0)
        x = t.tensor(x_np, requires_grad=True)
        warns = name == "dropout2d" and len(shape) != 4
        with pytest.warns() if warns else contextlib.nullcontext():
            y = getattr(t.nn.functional, name)(x, p, training)
        (y * t.tensor(_data(shape, 31))).sum().backward()
        node = None if y.grad_fn is None else y.grad_fn.name()
        return node, y.detach().numpy(), x.grad.numpy(), t.rand(2).numpy()

    want, got = run(torch), run(lib)
    assert got[0] == want[0]
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("cls", ["Dropout1d", "Dropout2d", "Dropout3d"])
def test_channel_dropout_modules_are_torchs(lib, cls):
    shape = {"Dropout1d": (2, 3, 4), "Dropout2d": (2, 3, 4, 4), "Dropout3d": (2, 3, 2, 2, 2)}[cls]

    def run(t: Any) -> tuple[Any, ...]:
        t.manual_seed(1)
        layer = getattr(t.nn, cls)(0.25)
        train = layer(t.tensor(_data(shape, 32))).numpy()
        layer.eval()
        return repr(layer), train, layer(t.tensor(_data(shape, 32))).numpy()

    want, got = run(torch), run(lib)
    assert got[0] == want[0]
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(("call", "kind"), [
    (lambda t: t.nn.functional.dropout1d(t.ones(2, 3, 4, 5)), RuntimeError),
    (lambda t: t.nn.functional.dropout2d(t.ones(2, 3, 4), 1.5), ValueError),
    (lambda t: t.nn.Dropout3d(-0.1), ValueError),
    (lambda t: t.nn.functional.dropout2d(t.ones(3), 0.5), RuntimeError),
])
def test_channel_dropout_errors_are_torchs(lib, call, kind):
    with pytest.raises(kind) as theirs, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(torch)
    with pytest.raises(kind) as ours, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(lib)
    assert str(ours.value).split("\ngradserve:")[0] == str(theirs.value)


@pytest.mark.parametrize(("name", "shape"), [("dropout2d", (2, 3)), ("dropout2d", (2, 3, 4)),
                                             ("dropout3d", (2, 3, 2)), ("dropout3d", (2, 3))])
def test_channel_dropout_warnings_are_torchs(lib, name, shape):
    def run(t: Any) -> list[tuple[str, str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            getattr(t.nn.functional, name)(t.ones(*shape), 0.5)
        return [(str(w.message), w.filename) for w in caught]

    want = run(torch)
    assert want and all(filename == __file__ for _, filename in want)
    assert run(lib) == want


# --- torch.optim.Adadelta (pytorch/examples mnist, mnist_rnn, siamese_network) -------------------

@pytest.mark.parametrize("options", [{}, {"lr": 0.5, "rho": 0.8, "weight_decay": 0.01},
                                     {"maximize": True, "eps": 1e-4}])
def test_adadelta_steps_are_torchs(lib, options):
    x_np = _data((8, 5), 40)

    def run(t: Any) -> tuple[Any, ...]:
        t.manual_seed(0)
        model = t.nn.Sequential(t.nn.Linear(5, 4), t.nn.Tanh(), t.nn.Linear(4, 2))
        opt = t.optim.Adadelta(model.parameters(), **options)
        sched = t.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
        losses = []
        for _ in range(4):
            opt.zero_grad()
            loss = (model(t.tensor(x_np)) ** 2).mean()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        state = opt.state_dict()
        groups = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
        return ([p.detach().numpy() for p in model.parameters()], losses,
                sorted(state["state"][0]), groups, repr(opt))

    want, got = run(torch), run(lib)
    for g, w in zip(got[0], want[0]):
        np.testing.assert_array_equal(g, w)
    assert got[1:] == want[1:]


@pytest.mark.parametrize("options", [{"lr": -1.0}, {"rho": 1.5}, {"eps": -1e-6},
                                     {"weight_decay": -0.1}])
def test_adadelta_refuses_torchs_way(lib, options):
    def make(t: Any) -> Any:
        return t.optim.Adadelta([t.zeros(2, requires_grad=True)], **options)

    with pytest.raises(ValueError) as theirs:
        make(torch)
    with pytest.raises(ValueError) as ours:
        make(lib)
    assert str(ours.value).split("\ngradserve:")[0] == str(theirs.value)


# --- a batch norm layer used more than once in one graph (Deep Learning with PyTorch ch. 8:
# `nn.Sequential(*(n_blocks * [ResBlock(...)]))`, one block repeated) ----------------------------

def test_batch_norm_reused_in_one_graph_backpropagates_as_torchs(lib):
    def run(t: Any) -> tuple[Any, ...]:
        t.manual_seed(0)
        bn = t.nn.BatchNorm2d(3)
        x = t.tensor(_data((2, 3, 4, 4), 50), requires_grad=True)
        before = bn.running_mean._version
        y = x
        for _ in range(3):
            y = t.relu(bn(y)) + y
        (y * t.tensor(_data((2, 3, 4, 4), 51))).sum().backward()
        return (bn.running_mean._version - before, bn.running_mean.numpy(),
                bn.running_var.numpy(), x.grad.numpy(), bn.weight.grad.numpy())

    want, got = run(torch), run(lib)
    assert got[0] == want[0] == 0
    for g, w in zip(got[1:3], want[1:3]):
        np.testing.assert_array_equal(g, w)
    for g, w in zip(got[3:], want[3:]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
