"""torch.nn's recurrent layers (surface/nn_rnn.py) against torch, in process and through a
session: nn.RNN / GRU / LSTM and the three cells give torch's outputs, final hidden states and
parameter gradients bit for bit wherever torch composes them of ops (every RNN and GRU, float64
LSTM, every cell; float32 nn.LSTM is oneDNN's fused kernel in torch, close here), torch's
parameter names, initial values after the same seed, reprs, grad_fn names and error texts."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import HAVE_TORCH, MISSING_REASON, errors_alike, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _dtype(lib: Any, dtype: Any) -> Any:
    return getattr(lib, str(dtype).split(".")[1])


def _copy_module(lib: Any, module: Any, cls: str, *args: Any, **kwargs: Any) -> Any:
    """A gradserve module of the same configuration holding torch module's parameter values."""
    ours = getattr(lib.nn, cls)(*args, **kwargs)
    ours.load_state_dict({k: lib.tensor(v.detach().numpy())
                          for k, v in module.state_dict().items()})
    return ours


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


def _first(hidden: Any) -> Any:
    return hidden[0] if isinstance(hidden, tuple) else hidden


LAYER_CASES = [
    ("RNN", {}, torch.float32), ("RNN", {"nonlinearity": "relu", "num_layers": 2}, torch.float32),
    ("RNN", {"bidirectional": True, "num_layers": 2, "batch_first": True}, torch.float64),
    ("RNN", {"bias": False}, torch.float32),
    ("GRU", {}, torch.float32), ("GRU", {"num_layers": 3}, torch.float64),
    ("GRU", {"bidirectional": True, "num_layers": 2}, torch.float32),
    ("GRU", {"batch_first": True}, torch.float32),
    ("LSTM", {}, torch.float64), ("LSTM", {"num_layers": 2, "bidirectional": True}, torch.float64),
    ("LSTM", {"batch_first": True}, torch.float64), ("LSTM", {"proj_size": 2}, torch.float64),
    ("LSTM", {"bias": False, "num_layers": 2}, torch.float64),
]


@pytest.mark.parametrize(("cls", "kwargs", "dtype"), LAYER_CASES)
@pytest.mark.parametrize("given_hx", [False, True])
def test_layer_matches_torch_bitwise(lib, cls, kwargs, dtype, given_hx):
    torch.manual_seed(1)
    ref = getattr(torch.nn, cls)(3, 4, dtype=dtype, **kwargs)
    ours = _copy_module(lib, ref, cls, 3, 4, dtype=_dtype(lib, dtype), **kwargs)
    batch_first = kwargs.get("batch_first", False)
    x = torch.randn((2, 5, 3) if batch_first else (5, 2, 3), dtype=dtype, requires_grad=True)
    layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    size = kwargs.get("proj_size") or 4
    h0 = torch.randn(layers, 2, size, dtype=dtype, requires_grad=True)
    c0 = torch.randn(layers, 2, 4, dtype=dtype, requires_grad=True)
    gx = lib.tensor(_np(x), requires_grad=True)
    gh0 = lib.tensor(_np(h0), requires_grad=True)
    gc0 = lib.tensor(_np(c0), requires_grad=True)
    if given_hx:
        args, gargs = ((x, (h0, c0)), (gx, (gh0, gc0))) if cls == "LSTM" else ((x, h0), (gx, gh0))
    else:
        args, gargs = (x,), (gx,)
    out, hidden = ref(*args)
    gout, ghidden = ours(*gargs)
    assert type(out.grad_fn).__name__ == gout.grad_fn.name() or batch_first
    np.testing.assert_array_equal(_np(gout), _np(out))
    for h, gh in zip(hidden if cls == "LSTM" else (hidden,),
                     ghidden if cls == "LSTM" else (ghidden,), strict=True):
        assert gh.grad_fn.name() == type(h.grad_fn).__name__ == "StackBackward0"
        np.testing.assert_array_equal(_np(gh), _np(h))
    ((out * out).sum() + _first(hidden).sum()).backward()
    ((gout * gout).sum() + _first(ghidden).sum()).backward()
    ours_params = dict(ours.named_parameters())
    assert list(ours_params) == [n for n, _ in ref.named_parameters()]
    for name, p in ref.named_parameters():
        np.testing.assert_array_equal(ours_params[name].grad.numpy(), p.grad.numpy(), err_msg=name)
    np.testing.assert_array_equal(gx.grad.numpy(), x.grad.numpy())
    if given_hx:
        np.testing.assert_array_equal(gh0.grad.numpy(), h0.grad.numpy())


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
def test_unbatched_input(lib, cls):
    # float32: through a session a 2-D input made from data has no layout the client knows, so
    # its projection is matmul + add, torch's addmm's bits in float32 only
    torch.manual_seed(2)
    ref = getattr(torch.nn, cls)(3, 4, dtype=torch.float64 if cls == "LSTM" else torch.float32)
    ours = _copy_module(lib, ref, cls, 3, 4, dtype=lib.float64 if cls == "LSTM" else lib.float32)
    x = torch.randn(6, 3, dtype=ref.weight_ih_l0.dtype)
    out, hidden = ref(x)
    gout, ghidden = ours(lib.tensor(x.numpy()))
    assert tuple(gout.shape) == tuple(out.shape) == (6, 4)
    if cls == "LSTM" and lib is not ge:  # float64 matmul + add is not addmm's bits
        np.testing.assert_allclose(_np(gout), _np(out), rtol=1e-14, atol=1e-15)
        return
    np.testing.assert_array_equal(_np(gout), _np(out))
    np.testing.assert_array_equal(_np(_first(ghidden)), _np(_first(hidden)))


def test_float32_lstm_is_close(lib):
    # torch runs float32 nn.LSTM through oneDNN (MkldnnRnnLayerBackward0): close, not bitwise
    torch.manual_seed(3)
    ref = torch.nn.LSTM(3, 5, 2)
    ours = _copy_module(lib, ref, "LSTM", 3, 5, 2)
    x = torch.randn(7, 2, 3)
    out, (h, c) = ref(x)
    gout, (gh, gc) = ours(lib.tensor(x.numpy()))
    np.testing.assert_allclose(_np(gout), _np(out), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(gc), _np(c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch_bitwise(lib, cls, batched):
    torch.manual_seed(4)
    ref = getattr(torch.nn, cls)(3, 4)
    ours = _copy_module(lib, ref, cls, 3, 4)
    x = torch.randn(*((2, 3) if batched else (3,)), requires_grad=True)
    h = torch.randn(*((2, 4) if batched else (4,)), requires_grad=True)
    gx = lib.tensor(_np(x), requires_grad=True)
    gh = lib.tensor(_np(h), requires_grad=True)
    if cls == "LSTMCell":
        out = ref(x, (h, h * 0.5))
        gout = ours(gx, (gh, gh * 0.5))
        names = [type(o.grad_fn).__name__ for o in out]
        assert [o.grad_fn.name() for o in gout] == names
        loss, gloss = out[0].sum() + (out[1] ** 2).sum(), gout[0].sum() + (gout[1] ** 2).sum()
        out, gout = out[0], gout[0]
    else:
        out, gout = ref(x, h), ours(gx, gh)
        assert gout.grad_fn.name() == type(out.grad_fn).__name__
        loss, gloss = (out ** 2).sum(), (gout ** 2).sum()
    np.testing.assert_array_equal(_np(gout), _np(out))
    loss.backward()
    gloss.backward()
    np.testing.assert_array_equal(gx.grad.numpy(), x.grad.numpy())
    np.testing.assert_array_equal(gh.grad.numpy(), h.grad.numpy())
    ours_params = dict(ours.named_parameters())
    for name, p in ref.named_parameters():
        np.testing.assert_array_equal(ours_params[name].grad.numpy(), p.grad.numpy(), err_msg=name)


@pytest.mark.parametrize(("cls", "args", "kwargs"), [
    ("GRU", (3, 4), {"num_layers": 2, "bidirectional": True}), ("LSTM", (2, 3), {"proj_size": 2}),
    ("RNN", (3, 4, 1, "relu"), {}), ("GRUCell", (3, 4), {}), ("LSTMCell", (2, 5), {"bias": False}),
])
def test_initial_weights_names_and_repr_are_torchs(lib, cls, args, kwargs):
    torch.manual_seed(5)
    ref = getattr(torch.nn, cls)(*args, **kwargs)
    lib.manual_seed(5)
    ours = getattr(lib.nn, cls)(*args, **kwargs)
    assert repr(ours) == repr(ref)
    ours_params = dict(ours.named_parameters())
    assert list(ours_params) == [n for n, _ in ref.named_parameters()]
    for name, p in ref.named_parameters():
        np.testing.assert_array_equal(ours_params[name].detach().numpy(), _np(p), err_msg=name)


def test_rnn_base_attributes(lib):
    ref = torch.nn.LSTM(3, 4, 2, bidirectional=True)
    ours = lib.nn.LSTM(3, 4, 2, bidirectional=True)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert [[tuple(p.shape) for p in ws] for ws in ours.all_weights] == [
        [tuple(p.shape) for p in ws] for ws in ref.all_weights]
    ours.flatten_parameters()
    assert isinstance(ours, lib.nn.Module)
    assert isinstance(ours, lib.nn.RNNBase)
    assert isinstance(lib.nn.GRUCell(2, 3), lib.nn.RNNCellBase)
    assert lib.nn.modules.rnn.GRU is lib.nn.GRU


@pytest.mark.parametrize("case", [
    lambda t: t.nn.GRU(3, 4, proj_size=2),
    lambda t: t.nn.RNN(3, 4, nonlinearity="sigmoid"),
    lambda t: t.nn.LSTM(3, 4, proj_size=4),
    lambda t: t.nn.GRU(3, 0),
    lambda t: t.nn.GRU(3, 4, dropout=1.5),
    lambda t: t.nn.GRU(3, 4)(t.zeros(5, 2, 2)),
    lambda t: t.nn.GRU(3, 4)(t.zeros(5, 3)[None, None]),
    lambda t: t.nn.GRU(3, 4)(t.zeros(5, 2, 3), t.zeros(1, 3, 4)),
    lambda t: t.nn.GRU(3, 4)(t.zeros(5, 2, 3), t.zeros(3, 4)),
    lambda t: t.nn.LSTM(3, 4)(t.zeros(5, 2, 3), (t.zeros(1, 2, 4), t.zeros(1, 2, 5))),
    lambda t: t.nn.LSTM(3, 4)(t.zeros(5, 2, 3, dtype=t.float64)),
    lambda t: t.nn.GRUCell(3, 4)(t.zeros(2, 5)),
    lambda t: t.nn.LSTMCell(3, 4)(t.zeros(2, 3), (t.zeros(3, 4), t.zeros(3, 4))),
    lambda t: t.nn.RNNCell(3, 4)(t.zeros(2, 3), t.zeros(2, 6)),
])
def test_errors_are_torchs(lib, case):
    errors_alike(lambda: case(lib), lambda: case(torch))


def test_dropout_warning_for_one_layer(lib):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lib.nn.GRU(3, 4, dropout=0.5)
    with warnings.catch_warnings(record=True) as expected:
        warnings.simplefilter("always")
        torch.nn.GRU(3, 4, dropout=0.5)
    assert [str(w.message) for w in caught] == [str(w.message) for w in expected]


def test_dropout_between_layers_draws_torchs_masks(lib):
    torch.manual_seed(6)
    ref = torch.nn.GRU(3, 4, num_layers=3, dropout=0.4)
    ours = _copy_module(lib, ref, "GRU", 3, 4, num_layers=3, dropout=0.4)
    x = torch.randn(4, 2, 3)
    torch.manual_seed(7)
    out, _ = ref(x)
    lib.manual_seed(7)
    gout, _ = ours(lib.tensor(x.numpy()))
    np.testing.assert_array_equal(_np(gout), _np(out))


@pytest.mark.parametrize("weight_grad", [True, False])
def test_matmul_of_transposed_batch_into_a_matrix(lib, weight_grad):
    # torch folds a non-contiguous (T, B, K) input into one mm from a contiguous copy when the
    # matrix requires grad (a layer's weight): bitwise the same here
    torch.manual_seed(8)
    xs = torch.randn(3, 7, 16)
    x = xs.transpose(0, 1)
    w = torch.randn(16, 12, requires_grad=weight_grad)
    ours = lib.matmul(lib.tensor(xs.numpy()).transpose(0, 1),
                      lib.tensor(_np(w), requires_grad=weight_grad))
    ref = torch.matmul(x, w)
    if weight_grad:
        np.testing.assert_array_equal(_np(ours), _np(ref))
    else:  # torch runs a bmm then: close
        np.testing.assert_allclose(_np(ours), _np(ref), rtol=1e-6, atol=1e-6)
