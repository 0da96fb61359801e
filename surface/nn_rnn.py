"""torch.nn's recurrent layers: `RNN`, `LSTM`, `GRU` and the cells `RNNCell`, `LSTMCell`,
`GRUCell`, composed of engine ops as torch's CPU kernels compose them (aten/native/RNN.cpp), so
values, gradients and the graph's ops are torch's where those ops are.

torch's CPU path, followed op for op: a layer first projects the whole sequence with one
`linear` (the input-to-hidden weights), unbinds it along time, runs the cell per step (the
hidden-to-hidden `linear` first, then the gates) and stacks the step outputs; a bidirectional
layer does the same with the second direction's weights on the reversed steps and concatenates
the two along the last dim; layers stack with dropout between them in training; the final
hidden states are unbound from `hx` and stacked back. A cell module runs one step without the
projection. torch writes a few of the gate ops in place on `unsafe_chunk` pieces (no view
tracking); here they are the same ops out of place, the same values and order.

float32 `LSTM` (not `LSTMCell`) torch runs through oneDNN's fused kernel (grad_fn
`MkldnnRnnLayerBackward0`, its own rounding of the gates): here too (the op `mkldnn_rnn_layer`,
engine/lstm_onednn.py) where the backend computes it as oneDNN's AVX-512 code (a server on an
AVX-512 CPU whose oneDNN is not capped), bit for bit: a batch of 2 or more, no projections,
at most `ONEDNN_LSTM_WORK` multiply-adds, and several layers only in grad mode
(`LSTM._takes_onednn`).

What is not torch's: float32 `LSTM` elsewhere (oneDNN's AVX2 GEMM, a batch of one, larger
calls...): the composition torch uses for float64, so its values are close, not bitwise; there
`batch_first` outputs are transposed out of place (grad_fn `TransposeBackward0` where torch's
`transpose_` gives `TransposeBackward1`); `PackedSequence` inputs are not supported.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

from . import nn_functional as F
from . import nn_init as init
from .nn_backend import NNBackend
from .nn_layers import _empty, _factory
from .nn_module import Module

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
# The most forward multiply-adds (every layer and direction) of an nn.LSTM call computed as
# oneDNN's kernel (`mkldnn_rnn_layer`): its exact float32 GEMMs are FMA chains of numpy steps
# (~2 ns of CPU a multiply-add against BLAS's ~0.1), so a (5, 100, 28, 128) layer's 40M
# took 280 ms of CPU forward and backward against the composition's 50-65 ms (measured);
# a larger call is composed (BLAS: close, not bitwise). 2**26: about 0.5 s.
ONEDNN_LSTM_WORK = 1 << 26


class _Params:
    """One layer-direction's weights, as torch's CellParams (b_ih/b_hh/w_hr may be None)."""

    __slots__ = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")

    def __init__(self, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None,
                 w_hr: Any = None) -> None:
        self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.w_hr = w_ih, w_hh, b_ih, b_hh, w_hr

    def linear_ih(self, be: NNBackend, x: Any, contiguous: bool | None = None) -> Any:
        return F.linear_with_layout(be, x, self.w_ih, self.b_ih, contiguous)

    def linear_hh(self, be: NNBackend, h: Any) -> Any:
        return F.linear(be, h, self.w_hh, self.b_hh)

    def matmul_hr(self, be: NNBackend, h: Any) -> Any:
        if self.w_hr is None:
            return h
        return be.call("matmul", (h, be.call("t", (self.w_hr,), {})), {})


def _simple_cell(be: NNBackend, relu: bool, x: Any, h: Any, p: _Params, pre: bool) -> Any:
    """torch's SimpleCell: act(linear_hh(h) + (x or linear_ih(x)))."""
    hh = p.linear_hh(be, h)
    gates = hh + (x if pre else p.linear_ih(be, x))
    return gates.relu() if relu else gates.tanh()


def _lstm_cell(be: NNBackend, x: Any, hidden: tuple[Any, Any], p: _Params,
               pre: bool) -> tuple[Any, Any]:
    """torch's LSTMCell (CPU): gates chunked in four, i f g o; cy = f*cx + i*g; hy = o*tanh(cy)."""
    hx, cx = hidden
    hh = p.linear_hh(be, hx)
    gates = hh + (x if pre else p.linear_ih(be, x))
    ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
    ingate = ingate.sigmoid()
    forgetgate = forgetgate.sigmoid()
    cellgate = cellgate.tanh()
    outgate = outgate.sigmoid()
    cy = forgetgate * cx + ingate * cellgate
    hy = outgate * cy.tanh()
    return p.matmul_hr(be, hy), cy


def _gru_cell(be: NNBackend, x: Any, h: Any, p: _Params, pre: bool) -> Any:
    """torch's GRUCell (CPU): r, z from the summed gates, n = tanh(i_n + r*h_n),
    h' = (h - n)*z + n."""
    igates = (x if pre else p.linear_ih(be, x)).chunk(3, 1)
    hgates = p.linear_hh(be, h).chunk(3, 1)
    reset_gate = (hgates[0] + igates[0]).sigmoid()
    input_gate = (hgates[1] + igates[1]).sigmoid()
    new_gate = (igates[2] + hgates[2] * reset_gate).tanh()
    return (h - new_gate) * input_gate + new_gate


def _cell_fn(mode: str) -> Any:
    if mode == "LSTM":
        return _lstm_cell
    if mode == "GRU":
        return _gru_cell
    relu = mode == "RNN_RELU"
    return lambda be, x, h, p, pre: _simple_cell(be, relu, x, h, p, pre)


def _output_of(mode: str, hidden: Any) -> Any:
    return hidden[0] if mode == "LSTM" else hidden


def _run_steps(be: NNBackend, mode: str, steps: list[Any], hidden: Any,
               p: _Params) -> tuple[list[Any], Any]:
    """FullLayer over precomputed input projections: the cell per step, in order."""
    cell = _cell_fn(mode)
    outputs = []
    for step in steps:
        hidden = cell(be, step, hidden, p, True)
        outputs.append(_output_of(mode, hidden))
    if not outputs:
        raise be.runtime_error("Expected sequence length to be larger than 0 in RNN")
    return outputs, hidden


def _layer(be: NNBackend, mode: str, x: Any, hidden: Any, p: _Params,
           contiguous: bool | None) -> tuple[Any, Any]:
    """torch's FullLayer on the CPU: one input projection, unbound along time, then the steps."""
    steps = list(p.linear_ih(be, x, contiguous).unbind(0))
    outputs, hidden = _run_steps(be, mode, steps, hidden, p)
    return be.torch.stack(outputs, 0), hidden


def _bidirectional_layer(be: NNBackend, mode: str, x: Any, hidden: tuple[Any, Any],
                         params: tuple[_Params, _Params],
                         contiguous: bool | None) -> tuple[Any, tuple[Any, Any]]:
    """torch's FullBidirectionalLayer on the CPU: forward steps, then the reverse direction's
    over the reversed steps; the outputs concatenated along the last dim."""
    fw, rev = params
    steps = list(fw.linear_ih(be, x, contiguous).unbind(0))
    fw_outputs, fw_hidden = _run_steps(be, mode, steps, hidden[0], fw)
    fw_output = be.torch.stack(fw_outputs, 0)
    steps = list(rev.linear_ih(be, x, contiguous).unbind(0))
    rev_outputs, rev_hidden = _run_steps(be, mode, steps[::-1], hidden[1], rev)
    rev_output = be.torch.stack(rev_outputs[::-1], 0)
    output = be.torch.cat([fw_output, rev_output], len(be.shape(fw_output)) - 1)
    return output, (fw_hidden, rev_hidden)


def _onednn_lstm(be: NNBackend, x: Any, hx: tuple[Any, Any], params: list[_Params],
                 num_layers: int, dropout: float, train: bool,
                 bidirectional: bool) -> tuple[Any, tuple[Any, Any]]:
    """torch's float32 LSTM on the CPU (ATen's mkldnn/RNN.cpp): `mkldnn_rnn_layer` per layer
    and direction on a contiguous (seq, batch, feature) input, each with its states selected
    from h_0 and c_0 and zeros for absent biases; the directions' outputs concatenated, dropout
    between layers in training; h_n and c_n stacked."""
    directions = 2 if bidirectional else 1
    hidden = be.shape(params[0].w_hh)[1]
    hys, cys = [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            p = params[index]
            biases = [b if b is not None else be.torch.zeros(4 * hidden, dtype=x.dtype)
                      for b in (p.b_ih, p.b_hh)]
            output, hy, cy, _ = be.call("mkldnn_rnn_layer", (
                x, p.w_ih, p.w_hh, *biases, hx[0].select(0, index), hx[1].select(0, index)), {
                "reverse": direction == 1, "hidden_size": hidden, "num_layers": num_layers,
                "has_biases": p.b_ih is not None, "bidirectional": bidirectional,
                "train": train})
            outputs.append(output)
            hys.append(hy)
            cys.append(cy)
        x = be.torch.cat(outputs, 2) if bidirectional else outputs[0]
        if dropout != 0 and train and layer < num_layers - 1:
            x = F.dropout(be, x, dropout, True)
    return x, (be.torch.stack(hys, 0), be.torch.stack(cys, 0))


def _stack_layers(be: NNBackend, mode: str, x: Any, hiddens: list[Any], params: list[_Params],
                  num_layers: int, dropout: float, train: bool,
                  bidirectional: bool, contiguous: bool | None) -> tuple[Any, list[Any]]:
    """torch's apply_layer_stack: layer after layer, dropout between them in training; the
    final hidden states in layer (then direction) order. `contiguous`: the first layer's
    input layout when known (None: the backend's to find); the later layers' inputs are stacked
    here, so contiguous."""
    finals: list[Any] = []
    for layer in range(num_layers):
        if layer:
            contiguous = True
        if bidirectional:
            pair = (params[2 * layer], params[2 * layer + 1])
            x, (h_fw, h_rev) = _bidirectional_layer(
                be, mode, x, (hiddens[2 * layer], hiddens[2 * layer + 1]), pair, contiguous)
            finals += [h_fw, h_rev]
        else:
            x, h = _layer(be, mode, x, hiddens[layer], params[layer], contiguous)
            finals.append(h)
        if dropout != 0 and train and layer < num_layers - 1:
            x = F.dropout(be, x, dropout, True)
    return x, finals


class RNNBase(Module):
    """Base class of RNN, LSTM and GRU: torch's arguments, checks, parameters (named
    `weight_ih_l{k}{_reverse}`, ... in torch's order) and initialisation U(+-1/sqrt(hidden))."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        dtype = _factory(type(self).__name__, device, dtype)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1
        if (not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1  # type: ignore[operator]
                or isinstance(dropout, bool)):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:  # type: ignore[operator]
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        for name, value in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
        if not isinstance(input_size, int):
            raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if not isinstance(hidden_size, int):
            raise TypeError(
                f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError(
                "proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        gate_size = _GATES[mode] * hidden_size
        be = self._be
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        for layer in range(num_layers):
            for direction in range(num_directions):
                layer_input_size = input_size if layer == 0 else real_hidden_size * num_directions
                shapes: list[tuple[str, tuple[int, ...]]] = [
                    ("weight_ih_l{}{}", (gate_size, layer_input_size)),
                    ("weight_hh_l{}{}", (gate_size, real_hidden_size))]
                if bias:
                    shapes += [("bias_ih_l{}{}", (gate_size,)), ("bias_hh_l{}{}", (gate_size,))]
                if proj_size > 0:
                    shapes.append(("weight_hr_l{}{}", (proj_size, hidden_size)))
                suffix = "_reverse" if direction == 1 else ""
                names = []
                for template, shape in shapes:
                    name = template.format(layer, suffix)
                    setattr(self, name, be.parameter(_empty(be, shape, dtype), True))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every parameter U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(self._be, weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """torch's cuDNN weight packing: nothing to do on the CPU (as torch's, which returns)."""

    @property
    def _flat_weights(self) -> list[Any]:
        return [getattr(self, name, None) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Any]]:
        """The parameters, one list per layer and direction."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def _cell_params(self) -> list[_Params]:
        params = []
        for names in self._all_weights:
            w = {n.split("_l")[0]: getattr(self, n) for n in names}
            params.append(_Params(w["weight_ih"], w["weight_hh"], w.get("bias_ih"),
                                  w.get("bias_hh"), w.get("weight_hr")))
        return params

    def check_input(self, input: Any, batch_sizes: Any) -> None:
        """torch's check: the weights' dtype, a 3-D input, input_size features."""
        weight = self._flat_weights[0]
        if input.dtype != weight.dtype:
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: "
                f"model.to({input.dtype})")
        expected = 2 if batch_sizes is not None else 3
        shape = self._be.shape(input)
        if len(shape) != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {len(shape)}")
        if self.input_size != shape[-1]:
            raise RuntimeError("input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {shape[-1]}")

    def get_expected_hidden_size(self, input: Any, batch_sizes: Any) -> tuple[int, int, int]:
        """(num_layers * num_directions, batch, proj_size or hidden_size)."""
        shape = self._be.shape(input)
        mini_batch = shape[0] if self.batch_first else shape[1]
        num_directions = 2 if self.bidirectional else 1
        size = self.proj_size if self.proj_size > 0 else self.hidden_size
        return (self.num_layers * num_directions, mini_batch, size)

    def check_hidden_size(self, hx: Any, expected_hidden_size: tuple[int, int, int],
                          msg: str = "Expected hidden size {}, got {}") -> None:
        """torch's check of one hidden state's size."""
        size = tuple(self._be.shape(hx))
        if size != tuple(expected_hidden_size):
            raise RuntimeError(msg.format(expected_hidden_size, list(size)))

    def check_forward_args(self, input: Any, hidden: Any, batch_sizes: Any) -> None:
        """torch's checks of the input and the hidden state."""
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden, self.get_expected_hidden_size(input, batch_sizes))

    def permute_hidden(self, hx: Any, permutation: Any) -> Any:
        """hx reordered along the batch (only for packed sequences: unchanged here)."""
        return hx if permutation is None else hx.index_select(1, permutation)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    def _prepare(self, input: Any, hx: Any, name: str, zeros_size: int) -> tuple[Any, Any, bool]:
        """torch's forward preamble for one hidden tensor: unbatched inputs unsqueezed, hx
        checked or zeros; returns (input, hx, is_batched)."""
        if _packed(input):
            raise NotImplementedError(f"{name}: PackedSequence inputs are not supported by "
                                      "gradserve")
        dims = len(self._be.shape(input))
        if dims not in (2, 3):
            tail = " tensor instead" if name == "RNN" else " instead"
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {dims}D{tail}")
        is_batched = dims == 3
        batch_dim = 0 if self.batch_first else 1
        if not is_batched:
            input = input.unsqueeze(batch_dim)
            if hx is not None:
                hx_dims = len(self._be.shape(hx))
                if hx_dims != 2:
                    raise RuntimeError("For unbatched 2-D input, hx should also be 2-D but got "
                                       f"{hx_dims}-D tensor")
                hx = hx.unsqueeze(1)
        elif hx is not None and len(self._be.shape(hx)) != 3:
            raise RuntimeError("For batched 3-D input, hx should also be 3-D but got "
                               f"{len(self._be.shape(hx))}-D tensor")
        if hx is None:
            hx = self._zeros(input, zeros_size)
        return input, hx, is_batched

    def _zeros(self, input: Any, size: int) -> Any:
        shape = self._be.shape(input)
        batch = shape[0] if self.batch_first else shape[1]
        num_directions = 2 if self.bidirectional else 1
        return self._be.torch.zeros(self.num_layers * num_directions, batch, size,
                                    dtype=input.dtype)

    def _layout(self, input: Any) -> bool | None:
        """Whether the caller's input is contiguous, where a session knows it without a round
        trip (None: in process, or unknown; the input projection then asks the backend)."""
        be = self._be
        return be.known_contiguous(input) if be.remote_metadata else None

    def _forward_one_state(self, input: Any, hx: Any, name: str) -> tuple[Any, Any]:
        """`forward` of a layer whose state is one tensor (RNN, GRU): (output, h_n)."""
        layout = self._layout(input)
        input, hx, is_batched = self._prepare(input, hx, name, self.hidden_size)
        self.check_forward_args(input, hx, None)
        output, finals = self._run(input, list(hx.unbind(0)), layout)
        hidden = self._be.torch.stack(finals, 0)
        if not is_batched:
            output = output.squeeze(0 if self.batch_first else 1)
            hidden = hidden.squeeze(1)
        return output, hidden

    def _run(self, input: Any, hiddens: list[Any], layout: bool | None) -> tuple[Any, list[Any]]:
        """The layer stack over a (seq, batch, feature) view of the (batched) input, whose
        layout before any unsqueeze is `layout` (see `_layout`)."""
        be = self._be
        x = input.transpose(0, 1) if self.batch_first else input
        contiguous = layout
        if layout and self.batch_first:  # torch's is_contiguous skips size-1 dims
            shape = be.shape(input)
            contiguous = shape[0] == 1 or shape[1] == 1 or 0 in shape
        elif not layout:
            contiguous = None
        output, finals = _stack_layers(be, self.mode, x, hiddens, self._cell_params(),
                                       self.num_layers, self.dropout, self.training,
                                       self.bidirectional, contiguous)
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, finals


def _packed(value: Any) -> bool:
    return type(value).__name__ == "PackedSequence"


class RNN(RNNBase):
    """An Elman RNN: h_t = tanh (or relu)(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self.nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self.nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' "
                             "or 'relu'.")
        super().__init__(mode, *args, **kwargs)

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:
        return self._forward_one_state(input, hx, "RNN")


class GRU(RNNBase):
    """A gated recurrent unit layer stack (torch's gate order r, z, n)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:
        return self._forward_one_state(input, hx, "GRU")


class LSTM(RNNBase):
    """A long short-term memory layer stack (torch's gate order i, f, g, o; `proj_size`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("LSTM", *args, **kwargs)

    def get_expected_cell_size(self, input: Any, batch_sizes: Any) -> tuple[int, int, int]:
        """(num_layers * num_directions, batch, hidden_size)."""
        shape = self._be.shape(input)
        mini_batch = shape[0] if self.batch_first else shape[1]
        num_directions = 2 if self.bidirectional else 1
        return (self.num_layers * num_directions, mini_batch, self.hidden_size)

    def check_forward_args(self, input: Any, hidden: Any, batch_sizes: Any) -> None:
        """torch's checks of the input, h_0 and c_0."""
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden[0], self.get_expected_hidden_size(input, batch_sizes),
                               "Expected hidden[0] size {}, got {}")
        self.check_hidden_size(hidden[1], self.get_expected_cell_size(input, batch_sizes),
                               "Expected hidden[1] size {}, got {}")

    def permute_hidden(self, hx: Any, permutation: Any) -> Any:
        if permutation is None:
            return hx
        return hx[0].index_select(1, permutation), hx[1].index_select(1, permutation)

    def _takes_onednn(self, input: Any) -> bool:
        """Whether this forward is torch's oneDNN kernel here (`mkldnn_rnn_layer`): float32,
        no projections, a batch of 2 or more, at most `ONEDNN_LSTM_WORK` multiply-adds, where
        the backend computes it as oneDNN's AVX-512 code does (`NNBackend.onednn_lstm`); else
        the float64 composition. Several layers without grad mode round otherwise in torch
        (measured): composed too."""
        be = self._be
        shape = be.shape(input)
        seq, batch = (shape[1], shape[0]) if self.batch_first else (shape[0], shape[1])
        directions = 2 if self.bidirectional else 1
        gates = 4 * self.hidden_size
        work = sum(directions * seq * batch * gates * (features + self.hidden_size)
                   for features in [self.input_size] + [directions * self.hidden_size] * (
                       self.num_layers - 1))
        return (self.proj_size == 0 and batch >= 2 and work <= ONEDNN_LSTM_WORK
                and input.dtype == be.torch.float32 and be.onednn_lstm
                and (self.num_layers == 1 or be.torch.is_grad_enabled()))

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, tuple[Any, Any]]:
        if _packed(input):
            raise NotImplementedError("LSTM: PackedSequence inputs are not supported by "
                                      "gradserve")
        be = self._be
        layout = self._layout(input)
        dims = len(be.shape(input))
        if dims not in (2, 3):
            raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {dims}D instead")
        is_batched = dims == 3
        batch_dim = 0 if self.batch_first else 1
        if not is_batched:
            input = input.unsqueeze(batch_dim)
        real_hidden_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        if hx is None:
            hx = (self._zeros(input, real_hidden_size), self._zeros(input, self.hidden_size))
        else:
            h_dims, c_dims = len(be.shape(hx[0])), len(be.shape(hx[1]))
            if is_batched and (h_dims != 3 or c_dims != 3):
                raise RuntimeError("For batched 3-D input, hx and cx should also be 3-D but got "
                                   f"({h_dims}-D, {c_dims}-D) tensors")
            if not is_batched:
                if h_dims != 2 or c_dims != 2:
                    raise RuntimeError("For unbatched 2-D input, hx and cx should also be 2-D "
                                       f"but got ({h_dims}-D, {c_dims}-D) tensors")
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        self.check_forward_args(input, hx, None)
        if self._takes_onednn(input):
            x = input.transpose(0, 1) if self.batch_first else input
            output, (hy, cy) = _onednn_lstm(be, x.contiguous(), hx, self._cell_params(),
                                            self.num_layers, self.dropout, self.training,
                                            self.bidirectional)
            if self.batch_first:
                output = output.transpose(0, 1)
            if not is_batched:
                output = output.squeeze(batch_dim)
                hy, cy = hy.squeeze(1), cy.squeeze(1)
            return output, (hy, cy)
        layer_hx = list(hx[0].unbind(0))
        layer_cx = list(hx[1].unbind(0))
        output, finals = self._run(input, list(zip(layer_hx, layer_cx)), layout)
        hy = be.torch.stack([h for h, _ in finals], 0)
        cy = be.torch.stack([c for _, c in finals], 0)
        if not is_batched:
            output = output.squeeze(batch_dim)
            hy, cy = hy.squeeze(1), cy.squeeze(1)
        return output, (hy, cy)


class RNNCellBase(Module):
    """Base class of the cells: weight_ih, weight_hh (num_chunks * hidden_size rows), biases."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dtype = _factory(type(self).__name__, device, dtype)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        be = self._be
        rows = num_chunks * hidden_size
        self.weight_ih = be.parameter(_empty(be, (rows, input_size), dtype), True)
        self.weight_hh = be.parameter(_empty(be, (rows, hidden_size), dtype), True)
        if bias:
            self.bias_ih = be.parameter(_empty(be, (rows,), dtype), True)
            self.bias_hh = be.parameter(_empty(be, (rows,), dtype), True)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nonlinearity = self.__dict__.get("nonlinearity", "tanh")
        if nonlinearity != "tanh":
            s += f", nonlinearity={nonlinearity}"
        return s

    def reset_parameters(self) -> None:
        """torch's initialisation: every parameter U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(self._be, weight, -stdv, stdv)

    def _params(self) -> _Params:
        return _Params(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def _check(self, input: Any, hiddens: tuple[Any, ...]) -> None:
        """torch's rnn cell checks (RuntimeErrors from the C++ cell functions)."""
        be = self._be
        shape = be.shape(input)
        in_features = be.shape(self.weight_ih)[1]
        if shape[1] != in_features:
            raise be.runtime_error(
                f"input has inconsistent input_size: got {shape[1]} expected {in_features}")
        hidden_size = be.shape(self.weight_hh)[1]
        for label, hx in enumerate(hiddens):
            hshape = be.shape(hx)
            if shape[0] != hshape[0]:
                raise be.runtime_error(f"Input batch size {shape[0]} doesn't match hidden{label} "
                                       f"batch size {hshape[0]}")
            if hshape[1] != hidden_size:
                raise be.runtime_error(f"hidden{label} has inconsistent hidden_size: got "
                                       f"{hshape[1]}, expected {hidden_size}")

    def _batched(self, name: str, input: Any, hx: Any, what: str = "hidden") -> tuple[Any, bool]:
        dims = len(self._be.shape(input))
        if dims not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {dims}D instead")
        if hx is not None:
            hx_dims = len(self._be.shape(hx))
            if hx_dims not in (1, 2):
                raise ValueError(
                    f"{name}: Expected {what} to be 1D or 2D, got {hx_dims}D instead")
        is_batched = dims == 2
        return (input if is_batched else input.unsqueeze(0)), is_batched

    def _zeros(self, input: Any) -> Any:
        return self._be.torch.zeros(self._be.shape(input)[0], self.hidden_size,
                                    dtype=input.dtype)

    def _state(self, input: Any, hx: Any, is_batched: bool) -> Any:
        """The one-tensor state of an RNN or GRU cell: zeros when not given, batched as the
        input."""
        if hx is None:
            return self._zeros(input)
        return hx if is_batched else hx.unsqueeze(0)


class RNNCell(RNNCellBase):
    """One Elman RNN step: h' = tanh (or relu)(x W_ih^T + b_ih + h W_hh^T + b_hh)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Any, hx: Any = None) -> Any:
        input, is_batched = self._batched("RNNCell", input, hx)
        hx = self._state(input, hx, is_batched)
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        self._check(input, (hx,))
        ret = _simple_cell(self._be, self.nonlinearity == "relu", input, hx, self._params(),
                           False)
        return ret if is_batched else ret.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step: returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:
        dims = len(self._be.shape(input))
        if dims not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {dims}D instead")
        if hx is not None:
            for idx, value in enumerate(hx):
                vdims = len(self._be.shape(value))
                if vdims not in (1, 2):
                    raise ValueError(
                        f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {vdims}D instead")
        is_batched = dims == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = self._zeros(input)
            hx = (zeros, zeros)
        elif not is_batched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        self._check(input, (hx[0], hx[1]))
        hy, cy = _lstm_cell(self._be, input, (hx[0], hx[1]), self._params(), False)
        return (hy, cy) if is_batched else (hy.squeeze(0), cy.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step: h' = (h - n) * z + n."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Any, hx: Any = None) -> Any:
        input, is_batched = self._batched("GRUCell", input, hx)
        hx = self._state(input, hx, is_batched)
        self._check(input, (hx,))
        ret = _gru_cell(self._be, input, hx, self._params(), False)
        return ret if is_batched else ret.squeeze(0)


MODULES: tuple[type[Module], ...] = (RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell,
                                     GRUCell)
