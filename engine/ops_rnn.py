"""`mkldnn_rnn_layer`: one float32 LSTM layer-direction as torch's oneDNN op (lstm_onednn.py).

torch's `nn.LSTM` calls it once per layer and direction on the CPU in float32 (grad_fn
`MkldnnRnnLayerBackward0`); `surface.nn_rnn` does where its values are torch's bits (see
lstm_onednn). Its arguments are torch's: the gates' weights `weight0` (input) and
`weight1` (hidden), the biases `weight2` and `weight3`, the initial states; its results the
output, h_n, c_n and a workspace the backward reads (each step's gates and cell state; torch's
is an opaque buffer that does not require grad, here it is recorded with the others so the node
keeps it, and its gradient is ignored). A recorded backward (create_graph) differentiates the
same layer composed of engine ops, as torch's double backward does, so its values are close to
the first-order ones, not the same bits.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface.grad_mode import enable_grad

from . import autograd, errors, limits, lstm_onednn
from .registry import AttrSpec, defop, shapes_only

LSTM_MODE = 2  # ideep's rnn_kind::LSTM, torch's `mode` for an LSTM

_ATTRS = (AttrSpec("reverse", "bool", required=True), AttrSpec("batch_sizes", "ints", ()),
          AttrSpec("mode", "int", LSTM_MODE), AttrSpec("hidden_size", "int", required=True),
          AttrSpec("num_layers", "int", 1), AttrSpec("has_biases", "bool", True),
          AttrSpec("bidirectional", "bool", False), AttrSpec("batch_first", "bool", False),
          AttrSpec("train", "bool", True))


class RnnLayerArgumentError(errors.InvalidArgumentError):
    """mkldnn_rnn_layer's arguments do not describe an LSTM layer gradserve computes."""


@shapes_only
def _shapes(x: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, hx: Any, cx: Any,
            **attrs: Any) -> tuple[tuple[int, ...], ...]:
    """(output, h_n, c_n, workspace) shapes, after checking the arguments."""
    hidden = attrs["hidden_size"]
    if attrs.get("mode", LSTM_MODE) != LSTM_MODE or attrs.get("batch_sizes", ()) or attrs.get(
            "batch_first", False):
        raise RnnLayerArgumentError("mkldnn_rnn_layer: gradserve computes LSTM layers "
                                    "(mode 2) of padded, sequence-first inputs only")
    if len(x.shape) != 3 or x.shape[0] == 0:
        raise RnnLayerArgumentError(
            f"mkldnn_rnn_layer: expected a non-empty 3-D input, got shape {list(x.shape)}")
    seq, batch, features = x.shape
    want = ((4 * hidden, features), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,),
            (batch, hidden), (batch, hidden))
    for name, t, shape in zip(("weight0", "weight1", "weight2", "weight3", "hx_", "cx_"),
                              (w_ih, w_hh, b_ih, b_hh, hx, cx), want):
        if tuple(t.shape) != shape:
            raise RnnLayerArgumentError(f"mkldnn_rnn_layer: {name} has shape {list(t.shape)}, "
                                        f"expected {list(shape)}")
    return (seq, batch, hidden), (batch, hidden), (batch, hidden), (seq, batch, 5 * hidden)


# A multiply-add of lstm_onednn's exact GEMMs (a numpy step of an FMA chain, ~2 ns) in
# `limits.WORK_PER_ELEMENT`'s units (a BLAS multiply-add's time, ~0.035 ns)
_CHAIN_WORK = 64


@shapes_only
def _bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    shapes = _shapes(*args, **attrs)
    item = out_dtype.np.itemsize
    seq, batch, hidden = shapes[0]
    features = args[0].shape[2]
    # the input's projection (float64 operands and buffers), the step's gates
    scratch = 3 * seq * batch * 4 * hidden * 8 + 8 * batch * 4 * hidden * 8
    bound = limits.with_scratch(limits.shapes_bound(shapes, item), scratch)
    multiply_adds = seq * batch * 4 * hidden * (features + hidden)
    return limits.work_bound(bound, multiply_adds * _CHAIN_WORK, True)


def _dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    dtypes = {getattr(a, "dtype", None) for a in args}
    if len(dtypes) != 1 or getattr(next(iter(dtypes)), "name", "") != "float32":
        raise RnnLayerArgumentError("get_mkldnn_dtype: unsupported data type")  # torch's
    return None, next(iter(dtypes))


def _forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
             b_hh: np.ndarray, hx: np.ndarray, cx: np.ndarray, **attrs: Any
             ) -> tuple[np.ndarray, ...]:
    _shapes(x, w_ih, w_hh, b_ih, b_hh, hx, cx, **attrs)
    return lstm_onednn.forward(x, hx, cx, w_ih, w_hh, b_ih + b_hh, attrs["reverse"])


# --- backward: one computation for every input's gradient -------------------------------------
# The node calls one rule per input needing a gradient, each with the same gradient tuple `g`;
# the first computes all seven, the others take theirs from here (per thread: servers run graphs
# in threads). Each is dropped once taken; the ones no rule takes (inputs not needing a
# gradient) until the next backward of this op in the thread.
_LAST = threading.local()


def _gradient(k: int, ns: Any, g: Any, out: Any, *args: Any, **attrs: Any) -> Any:
    last = getattr(_LAST, "entry", None)
    if last is None or last[0] is not g:
        if not isinstance(args[0], np.ndarray):  # recorded (create_graph): engine Tensors
            grads = list(_composed_gradients(ns, g, *args, **attrs))
        else:
            x, w_ih, w_hh, _, _, hx, cx = args
            dx, dw_ih, dw_hh, dbias, dh, dc = lstm_onednn.backward(
                g[0], g[1], g[2], x, hx, cx, w_ih, w_hh, out[0], out[3], attrs["reverse"])
            grads = [dx, dw_ih, dw_hh, dbias, dbias, dh, dc]
        last = _LAST.entry = (g, grads)
    grad, last[1][k] = last[1][k], None
    return grad


def _composed_gradients(ns: Any, g: Any, x: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
                        hx: Any, cx: Any, **attrs: Any) -> tuple[Any, ...]:
    """The gradients, recorded, of the layer composed of engine ops (torch's CPU LSTM cell)."""
    inputs = (x, w_ih, w_hh, b_ih, b_hh, hx, cx)
    seq, hidden = x.shape[0], attrs["hidden_size"]
    with enable_grad():
        h, c = hx, cx
        outputs: list[Any] = [None] * seq
        steps = range(seq - 1, -1, -1) if attrs["reverse"] else range(seq)
        for t in steps:
            gates = (ns.matmul(x[t], w_ih.t()) + b_ih) + (ns.matmul(h, w_hh.t()) + b_hh)
            i, f, cell, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
            c = f.sigmoid() * c + i.sigmoid() * cell.tanh()
            h = o.sigmoid() * c.tanh()
            outputs[t] = h
        wanted = [a for a in inputs if a.requires_grad]
        got = iter(autograd.grad([ns.stack(outputs), h, c], wanted, list(g[:3]),
                                 create_graph=True, allow_unused=True))
    return tuple(next(got) if a.requires_grad else None for a in inputs)


def _rule(k: int) -> Any:
    def rule(ns: Any, g: Any, out: Any, *args: Any, **attrs: Any) -> Any:
        return _gradient(k, ns, g, out, *args, **attrs)
    return rule


defop("mkldnn_rnn_layer", _forward, *(_rule(k) for k in range(7)),
      inputs=("input", "weight0", "weight1", "weight2", "weight3", "hx_", "cx_"),
      attrs=_ATTRS, dtype=_dtype, n_outputs=4, method=False,
      saves=("input weight0 weight1 weight2 weight3 hx_ cx_ result",) * 7,
      backward="MkldnnRnnLayerBackward0", out_bound=_bound,
      doc="one float32 LSTM layer-direction as torch's oneDNN kernel: (output, h_n, c_n, "
          "workspace) (torch.mkldnn_rnn_layer)")
