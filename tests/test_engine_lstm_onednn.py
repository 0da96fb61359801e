"""float32 nn.LSTM as torch's oneDNN kernel (engine/lstm_onednn.py, op `mkldnn_rnn_layer`).

Where oneDNN runs its AVX-512 code (`cascade.ONEDNN_AVX512`) torch computes every float32
nn.LSTM layer with `mkldnn_rnn_layer`, and gradserve does too for a batch of 2 or more: outputs,
h_n, c_n and every gradient are compared bit for bit with a torch whose oneDNN is not capped
(a subprocess: the suite's torch runs oneDNN at AVX2, tests/__init__.py), in process and
through a session of a server that says it computes them. Everything else (a batch of one,
float64, projections, several layers without grad mode, more work than ONEDNN_LSTM_WORK, oneDNN
capped below AVX-512) keeps the cell composition, compared with the suite's torch as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve import client as gc_client
from gradserve.engine import cascade, errors, limits
from gradserve.server import catalogue
from gradserve.v1 import ONEDNN_LSTM_FEATURE
from tests.reference import HAVE_TORCH, MISSING_REASON, torch, torch_at_avx512

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

F32 = np.float32

# (seq, batch, input, hidden), nn.LSTM keyword arguments, whether grad mode is on
CASES: list[tuple[tuple[int, int, int, int], dict[str, Any], bool]] = [
    ((5, 3, 7, 6), {}, True),
    ((4, 5, 6, 8), {"num_layers": 2, "bidirectional": True, "batch_first": True}, True),
    ((3, 2, 4, 5), {"num_layers": 2, "bias": False}, True),
    ((4, 3, 5, 4), {"num_layers": 3, "dropout": 0.4}, True),
    ((2, 3, 400, 20), {}, True),  # k blocks of oneDNN's GEMM (400 input features)
    ((5, 4, 28, 130), {"bidirectional": True}, True),  # 4H = 520 gate rows
    ((6, 4, 10, 12), {"bidirectional": True}, False),
    ((3, 17, 5, 6), {}, False),
    ((1, 20, 9, 7), {"batch_first": True}, False),
]

_AVX512_TORCH = """
import json, sys, numpy as np, torch
if torch.backends.cpu.get_cpu_capability() != "AVX512":
    sys.exit(3)
inputs = np.load(sys.argv[1])
results = {}
for n, (shape, kwargs, grad) in enumerate(json.loads(str(inputs["cases"]))):
    seq, batch, features, hidden = shape
    m = torch.nn.LSTM(features, hidden, **kwargs)
    with torch.no_grad():
        for k, p in enumerate(m.parameters()):
            p.copy_(torch.from_numpy(inputs[f"{n}p{k}"]))
    x, h0, c0 = (torch.from_numpy(inputs[f"{n}{name}"]).requires_grad_()
                 for name in ("x", "h0", "c0"))
    torch.manual_seed(n)
    with torch.set_grad_enabled(grad):
        out, (h, c) = m(x, (h0, c0))
    got = [out, h, c]
    results[f"{n}node"] = np.array(out.grad_fn.name() if grad else "")
    if grad:
        loss = sum((t * torch.from_numpy(inputs[f"{n}g{k}"])).sum() for k, t in enumerate(got))
        loss.backward()
        got += [x.grad, h0.grad, c0.grad, *(p.grad for p in m.parameters())]
    for k, t in enumerate(got):
        results[f"{n}r{k}"] = t.detach().numpy()
np.savez(sys.argv[2], **results)
"""


def _inputs(rng: np.random.Generator) -> dict[str, Any]:
    """Every case's parameters, inputs and output gradients, and the cases themselves."""
    import json

    data: dict[str, Any] = {"cases": np.array(json.dumps(CASES))}
    for n, ((seq, batch, features, hidden), kwargs, _) in enumerate(CASES):
        ref = torch.nn.LSTM(features, hidden, **kwargs)
        for k, p in enumerate(ref.parameters()):
            data[f"{n}p{k}"] = (rng.uniform(-1, 1, tuple(p.shape)) / np.sqrt(hidden)).astype(F32)
        dirs = 2 if kwargs.get("bidirectional") else 1
        states = (kwargs.get("num_layers", 1) * dirs, batch, hidden)
        lead = (batch, seq) if kwargs.get("batch_first") else (seq, batch)
        data[f"{n}x"] = rng.standard_normal((*lead, features)).astype(F32)
        data[f"{n}h0"] = rng.standard_normal(states).astype(F32)
        data[f"{n}c0"] = rng.standard_normal(states).astype(F32)
        data[f"{n}g0"] = rng.standard_normal((*lead, dirs * hidden)).astype(F32)
        data[f"{n}g1"] = rng.standard_normal(states).astype(F32)
        data[f"{n}g2"] = rng.standard_normal(states).astype(F32)
    return data


def _run(lib: Any, n: int, data: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    """Case n through gradserve (`lib`: the engine or a session): results as the script's."""
    (seq, batch, features, hidden), kwargs, grad = CASES[n]
    m = lib.nn.LSTM(features, hidden, **kwargs)
    with lib.no_grad():
        for k, p in enumerate(m.parameters()):
            p.copy_(lib.tensor(data[f"{n}p{k}"]))
    x, h0, c0 = (lib.tensor(data[f"{n}{name}"]).requires_grad_() for name in ("x", "h0", "c0"))
    lib.manual_seed(n)
    with lib.set_grad_enabled(grad):
        out, (h, c) = m(x, (h0, c0))
    got = [out, h, c]
    node = out.grad_fn.name() if grad else ""
    if grad:
        # one root (a session runs autograd.backward's roots one by one)
        loss = sum((t * lib.tensor(data[f"{n}g{k}"])).sum() for k, t in enumerate(got))
        loss.backward()
        got += [x.grad, h0.grad, c0.grad, *(p.grad for p in m.parameters())]
    return [np.asarray(t.detach().numpy()) for t in got], node


def _bits_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, what
    differ = got.view(np.int32) != want.view(np.int32)
    assert not differ.any(), f"{what}: {int(differ.sum())} of {got.size} differ"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: Any) -> tuple[dict[str, Any], Any]:
    """The cases' inputs and what a torch with oneDNN at AVX-512 computes of them."""
    data = _inputs(np.random.default_rng(11))
    return data, torch_at_avx512(_AVX512_TORCH, data, tmp_path_factory.mktemp("lstm"))


def _compare(lib: Any, data: dict[str, Any], ref: Any) -> None:
    for n in range(len(CASES)):
        got, node = _run(lib, n, data)
        what = f"case {n} {CASES[n]}"
        assert len(got) == sum(1 for k in ref.files if k.startswith(f"{n}r")), what
        assert node == str(ref[f"{n}node"]), what
        for k, g in enumerate(got):
            _bits_equal(g, ref[f"{n}r{k}"], f"{what} result {k}")


def test_engine_is_torchs_onednn_avx512(reference: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs, h_n, c_n and every gradient (input, states, each layer's weights and biases)
    of one and several layers, both directions, batch_first, no biases, dropout between layers,
    k blocks, without grad mode: torch's bits."""
    data, ref = reference
    monkeypatch.setattr(cascade, "ONEDNN_AVX512", True)
    _compare(ge, data, ref)


def test_session_is_torchs_onednn_avx512(reference: Any, monkeypatch: pytest.MonkeyPatch,
                                         gradserve_server: Any) -> None:
    """A server that computes oneDNN's AVX-512 arithmetic lists the feature; the client's
    nn.LSTM then calls mkldnn_rnn_layer there: the same bits."""
    data, ref = reference
    monkeypatch.setattr(cascade, "ONEDNN_AVX512", True)
    catalogue.list_ops.cache_clear()
    try:
        assert ONEDNN_LSTM_FEATURE in catalogue.list_ops().features
        with gc_client.connect(f"localhost:{gradserve_server[1]}") as client, \
                client.session() as session:
            _compare(session, data, ref)
    finally:
        catalogue.list_ops.cache_clear()


def test_capped_onednn_lists_no_feature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cascade, "ONEDNN_AVX512", False)
    catalogue.list_ops.cache_clear()
    try:
        assert ONEDNN_LSTM_FEATURE not in catalogue.list_ops().features
    finally:
        catalogue.list_ops.cache_clear()


EXCLUDED = [
    ((4, 1, 3, 5), {}, True, torch.float32),  # batch 1: oneDNN's gemv
    ((3, 2, 3, 5), {"num_layers": 2}, False, torch.float32),  # several layers, no grad mode
    ((3, 2, 3, 5), {"proj_size": 2}, True, torch.float32),
    ((40, 50, 64, 128), {}, True, torch.float32),  # beyond nn_rnn.ONEDNN_LSTM_WORK
    ((3, 2, 3, 5), {"bidirectional": True}, True, torch.float64),
]


def _nodes(t: Any) -> set[str]:
    seen, todo = set(), [t.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and fn.name() not in seen:
            seen.add(fn.name())
            todo.extend(f for f, _ in fn.next_functions)
    return seen


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(("shape", "kwargs", "grad", "dtype"), EXCLUDED)
def test_excluded_configurations_compose(shape: tuple[int, ...], kwargs: dict[str, Any],
                                         grad: bool, dtype: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With oneDNN at AVX-512 too, these stay the cell composition: no mkldnn_rnn_layer node,
    and torch's values as before (float64 bit for bit, float32 close to the suite's torch)."""
    monkeypatch.setattr(cascade, "ONEDNN_AVX512", True)
    seq, batch, features, hidden = shape
    torch.manual_seed(4)
    ref = torch.nn.LSTM(features, hidden, dtype=dtype, **kwargs)
    ours = ge.nn.LSTM(features, hidden, dtype=getattr(ge, str(dtype).split(".")[1]), **kwargs)
    ours.load_state_dict({k: ge.tensor(v.detach().numpy()) for k, v in ref.state_dict().items()})
    x = torch.randn(seq, batch, features, dtype=dtype)
    with torch.set_grad_enabled(grad):
        out, (h, c) = ref(x)
    with ge.set_grad_enabled(grad):
        gout, (gh, gc) = ours(ge.tensor(x.numpy()))
    if grad:
        assert "MkldnnRnnLayerBackward0" not in _nodes(gout)
    for got, want in ((gout, out), (gh, h), (gc, c)):
        if dtype == torch.float64:
            np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())
        else:
            np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5,
                                       atol=1e-6)


def test_double_backward_composes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A recorded backward (create_graph) differentiates the composed layer, as torch's double
    backward does: the gradient of a gradient, close to torch's."""
    monkeypatch.setattr(cascade, "ONEDNN_AVX512", True)
    torch.manual_seed(5)
    ref = torch.nn.LSTM(3, 4)
    ours = ge.nn.LSTM(3, 4)
    ours.load_state_dict({k: ge.tensor(v.detach().numpy()) for k, v in ref.state_dict().items()})
    x = torch.randn(3, 2, 3)
    results = []
    for lib, m in ((torch, ref), (ge, ours)):
        xi = lib.tensor(x.numpy()).requires_grad_()
        out, _ = m(xi)
        (gx,) = lib.autograd.grad(out.pow(2).sum(), xi, create_graph=True)
        (ggx,) = lib.autograd.grad(gx.sum(), xi)
        results.append((gx.detach().numpy(), ggx.numpy()))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)



def _layer_args(seq: int, batch: int, features: int, hidden: int) -> list[Any]:
    return [ge.zeros(*s) for s in ((seq, batch, features), (4 * hidden, features),
                                   (4 * hidden, hidden), (4 * hidden,), (4 * hidden,),
                                   (batch, hidden), (batch, hidden))]


def test_layer_declares_its_chains_work() -> None:
    """(8, 64, 256, 256) is 2**28 multiply-adds of FMA chains, 64 units of work each: refused
    before it runs under an element limit of 2**20 (2**30 units); a small layer runs."""
    with pytest.raises(errors.AllocationLimitError, match="mkldnn_rnn_layer.*units of work"):
        with limits.allocation_limit(2 ** 20):
            ge.apply("mkldnn_rnn_layer", _layer_args(8, 64, 256, 256),
                     {"reverse": False, "hidden_size": 256})
    with limits.allocation_limit(2 ** 20):
        out = ge.apply("mkldnn_rnn_layer", _layer_args(3, 2, 4, 5),
                       {"reverse": False, "hidden_size": 5})
    assert tuple(out[0].shape) == (3, 2, 5)
