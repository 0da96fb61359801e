"""Input generators for fuzzing gradserve
(tests/test_fuzz.py, bench/fuzz.py, bench/atheris_fuzz.py).

Everything here builds requests from the server's own op catalogue (ListOps), so new ops are
fuzzed without listing them. Two flavours share the same shapes:
- hypothesis strategies (`draw_*` take hypothesis' `data.draw`), for the CI suite;
- the same builders driven by a `random.Random`, for the long mode and atheris.

`check_status` is the oracle: a caller's mistake may be refused with any status but UNKNOWN and
INTERNAL, and no call may hang past its deadline.
"""

from __future__ import annotations

import os
import random
import struct
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np

from gradserve.v1 import catalogue_pb2, graph_pb2, service_pb2, session_pb2, tensor_pb2

SERVICE = "/gradserve.v1.AutogradService/"
METHODS = {  # method path -> request class
    SERVICE + "RunGraph": service_pb2.RunGraphRequest,
    SERVICE + "CreateSession": session_pb2.CreateSessionRequest,
    SERVICE + "CloseSession": session_pb2.CloseSessionRequest,
    SERVICE + "DescribeSession": session_pb2.DescribeSessionRequest,
    SERVICE + "ExecuteBatch": session_pb2.BatchRequest,
    SERVICE + "ListOps": catalogue_pb2.ListOpsRequest,
    "/grpc.health.v1.Health/Check": None,
}
FORBIDDEN = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
DEADLINE = 10.0

# --- an abstract chooser: hypothesis' draw or a Random --------------------------------------------


class Chooser:
    """The few choices the builders make, from hypothesis (`data.draw`) or a `random.Random`."""

    def __init__(self, draw: Callable[[Any], Any] | None = None, rng: random.Random | None = None):
        self._draw = draw
        self._rng = rng
        if draw is not None:
            from hypothesis import strategies as st

            self._st = st

    def int(self, lo: int, hi: int) -> int:
        if self._draw is not None:
            return self._draw(self._st.integers(lo, hi))
        assert self._rng is not None
        return self._rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        """True with probability about p."""
        return self.int(0, 999) < p * 1000

    def pick(self, seq: Any) -> Any:
        seq = list(seq)
        return seq[self.int(0, len(seq) - 1)]

    def float(self) -> float:
        if self.chance(0.1):
            return self.pick([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e308, -1e-310])
        return self.int(-4000, 4000) / 1000.0

    def bytes(self, max_size: int) -> bytes:
        if self._draw is not None:
            return self._draw(self._st.binary(max_size=max_size))
        assert self._rng is not None
        return self._rng.randbytes(self._rng.randint(0, max_size))


# --- tensors, values, attributes ------------------------------------------------------------------

_NP = {tensor_pb2.DTYPE_FLOAT32: np.float32, tensor_pb2.DTYPE_FLOAT64: np.float64,
       tensor_pb2.DTYPE_INT32: np.int32, tensor_pb2.DTYPE_INT64: np.int64,
       tensor_pb2.DTYPE_BOOL: np.bool_}
_LISTS = {tensor_pb2.DTYPE_FLOAT32: "float_values", tensor_pb2.DTYPE_FLOAT64: "double_values",
          tensor_pb2.DTYPE_INT32: "int32_values", tensor_pb2.DTYPE_INT64: "int64_values",
          tensor_pb2.DTYPE_BOOL: "bool_values"}
HOSTILE_DIMS = [-1, -(2**63), 2**31, 2**62, 2**63 - 1, 10**6]


def shape(c: Chooser) -> list[int]:
    dims = [c.int(0, 4) if c.chance(0.9) else c.int(1, 6) for _ in range(c.int(0, 3))]
    if c.chance(0.04):
        dims.insert(c.int(0, len(dims)), c.pick(HOSTILE_DIMS))
    return dims


def tensor(c: Chooser, out: tensor_pb2.Tensor | None = None,
           dims: list[int] | None = None) -> tensor_pb2.Tensor:
    """A small tensor, usually well-formed; sometimes with a wrong dtype, length or encoding."""
    msg = tensor_pb2.Tensor() if out is None else out
    code = c.pick(list(_NP)) if c.chance(0.97) else c.pick([0, 6, 99, -1])
    msg.dtype = code
    dims = shape(c) if dims is None else dims
    msg.shape.extend(dims)
    n = int(np.prod(dims)) if dims and all(0 <= d <= 64 for d in dims) else 1
    np_type = _NP.get(code, np.float32)
    with np.errstate(all="ignore"):  # 1e308 into float32 is inf, on purpose
        arr = _values(c, np_type, n)
    how = c.int(0, 19)
    if how < 15:
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        if c.chance(0.05):
            raw = raw[: c.int(0, len(raw))] + c.bytes(3)
        msg.raw = raw
    elif how < 19:
        field = _LISTS.get(code, "float_values") if c.chance(0.9) else c.pick(_LISTS.values())
        values = arr.tolist() if field == _LISTS.get(code) else [1] * n
        if field in ("float_values", "double_values"):
            values = [float(v) for v in values]
        elif field == "bool_values":
            values = [bool(v) for v in values]
        else:
            values = [int(v) for v in values]
        getattr(msg, field).values.extend(values)
    # how == 19: no encoding at all
    return msg


def _values(c: Chooser, np_type: Any, n: int) -> np.ndarray:
    if np_type is np.bool_:
        return np.array([c.chance(0.5) for _ in range(n)], np.bool_)
    if np.issubdtype(np_type, np.floating):
        return np.array([c.float() for _ in range(n)], np_type)
    return np.array([c.int(-5, 5) for _ in range(n)], np_type)


def value(c: Chooser, out: graph_pb2.Value, refs: list[str], handles: list[int]) -> None:
    k = c.int(0, 9)
    if k <= 3 and refs:
        out.ref.id = c.pick(refs) if c.chance(0.95) else "missing"
        out.ref.index = 0 if c.chance(0.95) else c.int(1, 3)
    elif k <= 3 and handles:
        out.handle = c.pick(handles) if c.chance(0.95) else c.int(0, 2**64 - 1)
    elif k <= 5:
        tensor(c, out.constant)
    elif k == 6:
        out.float_scalar = c.float()
    elif k == 7:
        out.int_scalar = c.int(-3, 3) if c.chance(0.95) else c.pick([2**63 - 1, -(2**63)])
    elif k == 8:
        out.bool_scalar = c.chance(0.5)
    else:
        out.none.SetInParent() if c.chance(0.9) else None  # else: no kind set


def attr(c: Chooser, info: catalogue_pb2.AttrInfo, out: graph_pb2.AttrValue,
         ndim: int = 2) -> None:
    kind = info.kind if c.chance(0.9) else c.int(0, 11)
    if info.nullable and c.chance(0.1):
        out.none_value.SetInParent()
    elif kind in (catalogue_pb2.ATTR_KIND_INT, catalogue_pb2.ATTR_KIND_OPTIONAL_INT):
        out.int_value = c.int(-ndim - 1, ndim + 1) if c.chance(0.97) else c.pick(HOSTILE_DIMS)
    elif kind in (catalogue_pb2.ATTR_KIND_FLOAT, catalogue_pb2.ATTR_KIND_OPTIONAL_FLOAT):
        out.float_value = c.float()
    elif kind == catalogue_pb2.ATTR_KIND_BOOL:
        out.bool_value = c.chance(0.5)
    elif kind == catalogue_pb2.ATTR_KIND_STRING:
        out.string_value = c.pick(info.choices) if info.choices and c.chance(0.8) else \
            c.pick(["", "x", "\x00", "é" * 3, "__class__", "none"])
    elif kind in (catalogue_pb2.ATTR_KIND_INTS, catalogue_pb2.ATTR_KIND_INT_OR_INTS):
        if kind == catalogue_pb2.ATTR_KIND_INT_OR_INTS and c.chance(0.4):
            out.int_value = c.int(-ndim - 1, ndim + 1)
        else:
            out.ints_value.values.extend(
                (c.int(-1, 4) if c.chance(0.97) else c.pick(HOSTILE_DIMS))
                for _ in range(c.int(0, 4)))
            if not out.ints_value.values:
                out.ints_value.SetInParent()
    elif kind in (catalogue_pb2.ATTR_KIND_SCALAR, catalogue_pb2.ATTR_KIND_SCALAR_OR_NONE):
        k = c.int(0, 2)
        if k == 0:
            out.int_value = c.int(-3, 3)
        elif k == 1:
            out.float_value = c.float()
        else:
            out.bool_value = c.chance(0.5)
    elif kind == catalogue_pb2.ATTR_KIND_DTYPE:
        out.dtype_value = c.pick(list(_NP)) if c.chance(0.95) else c.pick([0, 77])
    # ATTR_KIND_UNSPECIFIED: leave the oneof unset


def op_inputs(c: Chooser, op: catalogue_pb2.OpInfo, values: Any, refs: list[str],
              handles: list[int]) -> None:
    n = len(op.inputs)
    if op.variadic:
        n = c.int(0, 3)
    elif op.optional_inputs and c.chance(0.5):
        n -= c.int(0, len(op.optional_inputs))
    if c.chance(0.03):
        n = c.int(0, 4)  # wrong arity
    for _ in range(n):
        value(c, values.add(), refs, handles)


def op_attrs(c: Chooser, op: catalogue_pb2.OpInfo, attrs: Any) -> None:
    for info in op.attrs:
        if info.required or c.chance(0.4):
            attr(c, info, attrs[info.name])
    if c.chance(0.02):
        attr(c, catalogue_pb2.AttrInfo(kind=catalogue_pb2.ATTR_KIND_INT), attrs["bogus"])


def pick_op(c: Chooser, ops: list[catalogue_pb2.OpInfo]) -> catalogue_pb2.OpInfo:
    if c.chance(0.02):
        return catalogue_pb2.OpInfo(name=c.pick(["", "nope", "__import__", "eval", "sum_"]),
                                    inputs=["input"])
    return c.pick(ops)


# --- requests -------------------------------------------------------------------------------------

def graph_request(c: Chooser, ops: list[catalogue_pb2.OpInfo]) -> service_pb2.RunGraphRequest:
    """A random valid-looking stateless graph with inputs, wrt, output grads and order, or a
    functional (jacobian, hessian, ...) of it."""
    req = service_pb2.RunGraphRequest()
    g = req.graph
    g.opset_version = 0 if c.chance(0.95) else c.int(1, 2**32 - 1)
    names: list[str] = []
    for i in range(c.int(0, 3)):
        name = f"x{i}"
        g.inputs.add(name=name)
        common = [c.int(1, 3)] if c.chance(0.6) else None
        tensor(c, req.inputs[name], dims=common)
        names.append(name)
    refs = list(names)
    for i in range(c.int(1, 6)):
        op = pick_op(c, ops)
        node = g.nodes.add(id=f"n{i}" if c.chance(0.98) else c.pick(refs or ["n0"]), op=op.name)
        op_inputs(c, op, node.inputs, refs, [])
        op_attrs(c, op, node.attrs)
        node.no_grad = c.chance(0.1)
        refs.append(node.id)
    for j in range(c.int(0, 2)):
        g.outputs.add(name=f"y{j}", ref=graph_pb2.NodeOutput(id=c.pick(refs)))
    for name in names:
        if c.chance(0.5):
            req.wrt.append(name)
    if g.outputs and c.chance(0.2):
        tensor(c, req.output_grads[g.outputs[0].name])
    req.order = c.pick([0, 1, 2, 3]) if c.chance(0.97) else c.int(0, 2**32 - 1)
    req.allow_unused = c.chance(0.5)
    if c.chance(0.3):  # torch.autograd.functional of the graph (drawn last: earlier draws keep)
        f = req.functional
        f.kind = c.int(1, 6) if c.chance(0.95) else c.int(0, 2**31 - 1)
        n_v = {3: len(g.outputs), 1: 0, 2: 0}.get(f.kind, len(req.wrt))  # the count that fits
        for _ in range(n_v if c.chance(0.7) else c.pick([0, 1, 2, 3])):
            tensor(c, f.v.add())
        f.strict = c.chance(0.3)
        f.inputs_tuple = len(req.wrt) != 1 or c.chance(0.3)
        f.outputs_tuple = len(g.outputs) != 1 or c.chance(0.3)
        if c.chance(0.9):  # mostly past the exclusions, to reach the run
            req.order, req.allow_unused = 0, False
            req.ClearField("output_grads")
    return req


INSTRUCTIONS = ["create_tensor", "create_tensor", "apply_op", "apply_op", "apply_op",
                "apply_inplace", "backward", "grad", "zero_grad", "set_grad", "get_grad",
                "set_requires_grad", "detach", "detach_inplace", "retain_grad", "manual_seed",
                "release", "fetch", "fetch", "create_optimizer", "optimizer_step",
                "optimizer_zero_grad", "index", "index", "index_put", "get_optimizer_state",
                "empty", "tape", "tape"]


# Attribute word kinds of a tape (docs/wire.md, "Attributes"), by AttrValue field; an unset
# AttrValue becomes kind 7, which no tape may hold.
TAPE_ATTR_KINDS = {"ints_value": 0, "float_value": 1, "int_value": 2, "bool_value": 3,
                   "none_value": 4, "string_value": 5, "dtype_value": 6, None: 7}


def tape_input_words(values: Any, floats: list[float], ints: list[int],
                     constants: list[tensor_pb2.Tensor]) -> list[int]:
    """The input words of a tape op (docs/wire.md) for an ApplyOp's input `values`, their
    numbers and tensors appended to the tables (a handle taken modulo 2**61, the words' range;
    a value without a kind as None)."""
    words = []
    for v in values:
        kind = v.WhichOneof("kind")
        if kind == "handle":
            words.append((v.handle % 2**61) << 3)
        elif kind == "float_scalar":
            words.append(len(floats) << 3 | 1)
            floats.append(v.float_scalar)
        elif kind == "int_scalar":
            words.append(len(ints) << 3 | 2)
            ints.append(v.int_scalar)
        elif kind == "bool_scalar":
            words.append(int(v.bool_scalar) << 3 | 3)
        elif kind == "constant":
            words.append(len(constants) << 3 | 5)
            constants.append(v.constant)
        else:
            words.append(4)
    return words


def tape_attr_run(attrs: Any, words: list[int], names: dict[str, int], strings: list[str],
                  floats: list[float], ints: list[int]) -> None:
    """Append the attribute run of one ATTRS-flagged tape op (docs/wire.md, "Attributes") for
    `attrs`, an ApplyOp's attribute map (name -> AttrValue), to the attribute words `words`
    and the tables (written from the wire page, not with the client's encoder)."""
    words.append(len(attrs))
    for name, v in attrs.items():
        field = v.WhichOneof("kind")
        if field == "ints_value":
            payload = len(ints)
            ints.append(len(v.ints_value.values))
            ints.extend(v.ints_value.values)
        elif field == "float_value":
            payload = len(floats)
            floats.append(v.float_value)
        elif field == "int_value":
            payload = len(ints)
            ints.append(v.int_value)
        elif field == "string_value":
            payload = len(strings)
            strings.append(v.string_value)
        elif field == "bool_value":
            payload = int(v.bool_value)
        elif field == "dtype_value":
            payload = v.dtype_value
        else:
            payload = 0
        words.append(TAPE_ATTR_KINDS[field] | names.setdefault(name, len(names)) << 3
                     | payload << 15)


def tape_ops(c: Chooser, ops: list[catalogue_pb2.OpInfo], out: session_pb2.Tape,
             live: list[int], new: Callable[[], int]) -> None:
    """A Tape (docs/wire.md) of a few ops over `live` handles, some with attributes, usually
    well-formed; sometimes with a corrupt word, flag, count, index or table."""
    names: dict[str, int] = {}
    code: list[int] = []
    floats: list[float] = []
    ints: list[int] = []
    constants: list[tensor_pb2.Tensor] = []
    attr_words: list[int] = []
    attr_names: dict[str, int] = {}
    strings: list[str] = []
    for _ in range(c.int(0, 5)):
        op = pick_op(c, ops)
        scratch = session_pb2.ApplyOp()
        op_inputs(c, op, scratch.inputs, [], live)
        op_attrs(c, op, scratch.attrs)
        words = tape_input_words(scratch.inputs, floats, ints, constants)
        outputs = []
        for _ in range(op.n_outputs if op.HasField("n_outputs") else 1):
            outputs.append(new())
            live.append(outputs[-1])
        flags = c.pick([0, 0, 2, 4, 6, 1, 7])
        if scratch.attrs or c.chance(0.05):
            flags |= 8  # ATTRS
            tape_attr_run(scratch.attrs, attr_words, attr_names, strings, floats, ints)
        code_ = names.setdefault(op.name, len(names))
        code.append(code_ | flags << 32 | len(words) << 40 | len(outputs) << 52)
        code += words + outputs
    if code and c.chance(0.1):  # one corrupt word
        code[c.int(0, len(code) - 1)] = c.pick([0, 7, 6, 2**64 - 1, 1 << 52, 255 << 32,
                                                c.int(0, 2**64 - 1)])
    if attr_words and c.chance(0.1):  # one corrupt attribute word
        attr_words[c.int(0, len(attr_words) - 1)] = c.pick(
            [0, 7, 256, 2**64 - 1, 1 << 15 | 5, 4095 << 3, 2**40 << 15, c.int(0, 2**64 - 1)])
    if c.chance(0.03):  # a word too many
        attr_words.append(c.int(0, 3))
    out.attrs = struct.pack(f"<{len(attr_words)}Q", *attr_words)
    out.attr_names.extend(attr_names)
    out.strings.extend(strings)
    out.ops.extend(names)
    out.constants.extend(constants)
    if c.chance(0.03):
        out.ops.append(c.pick(["", "nope", "eval"]))
    out.code = struct.pack(f"<{len(code)}Q", *code)
    out.floats = struct.pack(f"<{len(floats)}d", *floats)
    out.ints = struct.pack(f"<{len(ints)}q", *ints)
    if c.chance(0.05):  # a table whose length is not a multiple of 8, or random bytes
        setattr(out, c.pick(["code", "floats", "ints", "attrs"]), c.bytes(40))


def algorithm_options(c: Any, m: Any) -> None:
    """Random hyperparameters in `m`'s algorithm oneof (CreateOptimizer, OptimizerStep), or
    none (10% of the non-SGD half)."""
    if c.chance(0.5):
        m.sgd.lr = c.float()
        m.sgd.momentum = c.float()
        m.sgd.nesterov, m.sgd.maximize = c.chance(0.2), c.chance(0.3)
    elif c.chance(0.9):
        algorithm = c.pick(["adam", "adam", "rmsprop", "adagrad"])
        if algorithm == "adam":
            m.adam.lr = c.float()
            m.adam.amsgrad, m.adam.maximize = c.chance(0.3), c.chance(0.3)
            m.adam.decoupled_weight_decay = c.chance(0.3)
            if c.chance(0.3):
                m.adam.beta1, m.adam.beta2 = c.float(), c.float()
        elif algorithm == "rmsprop":
            m.rmsprop.lr, m.rmsprop.alpha = c.float(), c.float()
            m.rmsprop.momentum, m.rmsprop.eps = c.float(), c.float()
            m.rmsprop.centered, m.rmsprop.maximize = c.chance(0.5), c.chance(0.3)
        else:
            m.adagrad.lr, m.adagrad.lr_decay = c.float(), c.float()
            m.adagrad.initial_accumulator_value = c.float()
            m.adagrad.weight_decay = c.float()


def param_states(c: Chooser, out: Any, handles: list[int]) -> None:
    """Random optimizer state entries: parameter positions (also out of range or repeated),
    any algorithm's kind (or none), steps incl. 0/nan/inf, buffers of random shapes/dtypes."""
    for _ in range(c.int(0, 3)):
        e = out.add()
        e.param = c.int(0, 2) if c.chance(0.95) else c.pick([7, 2**32 - 1])
        k = c.int(0, 4)
        if k <= 1:
            e.sgd.SetInParent()
            if c.chance(0.8):
                tensor(c, e.sgd.momentum_buffer)
        elif k <= 3:
            kind = c.pick(["adam", "adam", "rmsprop", "adagrad"])
            state = getattr(e, kind)
            state.step = c.pick([1.0, 3.0, 0.0, float("nan"), float("inf"), -1.0, 1e300])
            for field in state.DESCRIPTOR.fields:
                if field.name != "step" and c.chance(0.8):
                    tensor(c, getattr(state, field.name))
        # k == 4: no kind set


def index_items(c: Chooser, out: session_pb2.TensorIndex, handles: list[int]) -> None:
    """A random index expression: ints (also int64 extremes), slices, None, ..., bools, tensors
    (handles and constants of every dtype); sometimes too many items or an item without a kind."""
    n = c.int(0, 4) if c.chance(0.98) else c.pick([65, 200])
    for _ in range(n):
        item = out.items.add()
        k = c.int(0, 7)
        if k == 0:
            item.integer = c.int(-3, 3) if c.chance(0.95) else c.pick([2**63 - 1, -(2**63)])
        elif k == 1:
            item.slice.SetInParent()
            for field in ("start", "stop", "step"):
                if c.chance(0.5):
                    bound = c.int(-4, 4) if c.chance(0.95) else c.pick([2**63 - 1, -(2**63)])
                    if field == "start":
                        item.slice.start = bound
                    elif field == "stop":
                        item.slice.stop = bound
                    else:
                        item.slice.step = bound
        elif k == 2:
            item.new_axis.SetInParent()
        elif k == 3:
            item.ellipsis.SetInParent()
        elif k == 4:
            item.boolean = c.chance(0.5)
        elif k in (5, 6):
            value(c, item.tensor, [], handles)
        # k == 7: no kind set
    out.single = len(out.items) == 1 and c.chance(0.5) or c.chance(0.02)


def batch_instructions(c: Chooser, ops: list[catalogue_pb2.OpInfo], inplace: list[str],
                       out: Any) -> None:
    """Random instructions over a handful of handles, in the order a program might send them."""
    live: list[int] = []
    next_handle = 1

    def new() -> int:
        nonlocal next_handle
        if c.chance(0.03):
            return c.pick([0, *live]) if live else 0  # reuse or zero: refused
        next_handle += 1
        return next_handle - 1

    def some() -> int:
        return c.pick(live) if live and c.chance(0.95) else c.int(0, 50)

    for _ in range(c.int(1, 10)):
        kind = c.pick(INSTRUCTIONS)
        ins = out.add()
        if kind == "create_tensor":
            h = new()
            m = ins.create_tensor
            m.handle = h
            tensor(c, m.value)
            m.requires_grad = c.chance(0.6)
            live.append(h)
        elif kind == "apply_op":
            op = pick_op(c, ops)
            m = ins.apply_op
            m.op = op.name
            op_inputs(c, op, m.inputs, [], live)
            op_attrs(c, op, m.attrs)
            m.no_grad = c.chance(0.1)
            for _ in range(op.n_outputs if op.HasField("n_outputs") else 1):
                h = new()
                m.outputs.append(h)
                live.append(h)
        elif kind == "tape":
            tape_ops(c, ops, ins.tape, live, new)
        elif kind == "apply_inplace":
            m = ins.apply_inplace
            m.op = c.pick(inplace) if inplace and c.chance(0.95) else c.pick(["neg", "x_"])
            m.target = some()
            spec = next((o for o in ops if o.name == m.op[:-1]), None)
            if spec is not None:
                for _ in range(max(0, len(spec.inputs) - 1)):
                    value(c, m.inputs.add(), [], live)
                op_attrs(c, spec, m.attrs)
            m.no_grad = c.chance(0.5)
        elif kind == "backward":
            m = ins.backward
            m.tensor = some()
            if c.chance(0.3):
                value(c, m.gradient, [], live)
            if c.chance(0.3):
                m.retain_graph = c.chance(0.5)
            m.create_graph = c.chance(0.2)
            if c.chance(0.2):
                m.inputs.append(some())
        elif kind == "grad":
            m = ins.grad
            m.outputs.extend(some() for _ in range(c.int(0, 2)))
            m.inputs.extend(some() for _ in range(c.int(0, 2)))
            for _ in m.inputs if c.chance(0.97) else range(c.int(0, 3)):
                h = new()
                m.results.append(h)
                live.append(h)
            if c.chance(0.2):
                for _ in m.outputs:
                    value(c, m.grad_outputs.add(), [], live)
            m.create_graph = c.chance(0.2)
            m.allow_unused = c.chance(0.5)
        elif kind == "zero_grad":
            ins.zero_grad.handles.extend(some() for _ in range(c.int(0, 2)))
        elif kind == "set_grad":
            m = ins.set_grad
            m.handle = some()
            if c.chance(0.5):
                m.grad_handle = some()
            elif c.chance(0.9):
                m.none.SetInParent()
        elif kind == "get_grad":
            h = new()
            ins.get_grad.handle = some()
            ins.get_grad.result = h
            live.append(h)
        elif kind == "set_requires_grad":
            ins.set_requires_grad.handle = some()
            ins.set_requires_grad.requires_grad = c.chance(0.5)
        elif kind == "detach":
            h = new()
            ins.detach.handle = some()
            ins.detach.result = h
            live.append(h)
        elif kind == "detach_inplace":
            ins.detach_inplace.handle = some()
        elif kind == "retain_grad":
            ins.retain_grad.handle = some()
        elif kind == "manual_seed":
            ins.manual_seed.seed = c.int(0, 2**64 - 1)
        elif kind == "release":
            ins.release.handles.extend(some() for _ in range(c.int(0, 2)))
        elif kind == "fetch":
            m = ins.fetch
            m.handle = some()
            m.value, m.grad, m.graph, m.repr = (c.chance(0.5) for _ in range(4))
        elif kind == "create_optimizer":
            m = ins.create_optimizer
            m.optimizer = new()
            m.params.extend(some() for _ in range(c.int(0, 2)))
            algorithm_options(c, m)
            if c.chance(0.3):
                param_states(c, m.state, live)
        elif kind == "optimizer_step":
            ins.optimizer_step.optimizer = some()
            if c.chance(0.4):  # new hyperparameters, of any algorithm or none
                algorithm_options(c, ins.optimizer_step)
        elif kind == "optimizer_zero_grad":
            ins.optimizer_zero_grad.optimizer = some()
        elif kind == "get_optimizer_state":
            ins.get_optimizer_state.optimizer = some()
        elif kind == "index":
            h = new()
            m = ins.index
            m.tensor = some()
            index_items(c, m.index, live)
            m.no_grad = c.chance(0.1)
            m.result = h
            live.append(h)
        elif kind == "index_put":
            m = ins.index_put
            m.target = some()
            index_items(c, m.index, live)
            if c.chance(0.95):
                value(c, m.value, [], live)
            m.no_grad = c.chance(0.5)
        # "empty": an instruction with no kind set


# --- hostile requests: small messages that ask for a lot of memory or work ---------------------

def _big_shape(c: Chooser) -> list[int]:
    """A shape of 2**10 .. 2**34 elements in 1-26 dims (many dims of 2, or a few large ones)."""
    if c.chance(0.4):
        return [2] * c.int(10, 26)
    dims = [c.pick([1, 2, 3, 7, 64, 1024, 16384, 131072]) for _ in range(c.int(1, 4))]
    while int(np.prod(dims, dtype=object)) < 2**10:
        dims.append(c.pick([2, 64, 1024]))
    return dims


def _scalar_constant(c: Chooser, out: graph_pb2.Value, code: int | None = None) -> None:
    """A 0-d constant of dtype `code`, else bool, int64 or float32 (expand's input)."""
    if code is None:
        code = c.pick([tensor_pb2.DTYPE_BOOL, tensor_pb2.DTYPE_INT64, tensor_pb2.DTYPE_FLOAT32])
    arr = np.ones((), dtype=_NP[code])
    out.constant.dtype = code
    out.constant.raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()


class _GraphBuilder:
    """Appends nodes to a RunGraph's graph, naming them n0, n1, ..."""

    def __init__(self, req: service_pb2.RunGraphRequest):
        self.g = req.graph
        self.n = 0

    def node(self, op: str, *inputs: str | Callable[[graph_pb2.Value], None],
             **attrs: int | list[int]) -> str:
        node = self.g.nodes.add(id=f"n{self.n}", op=op)
        self.n += 1
        for inp in inputs:
            v = node.inputs.add()
            if isinstance(inp, str):
                v.ref.id = inp
            else:
                inp(v)
        for name, a in attrs.items():
            if isinstance(a, list):
                node.attrs[name].ints_value.values.extend(a)
            else:
                node.attrs[name].int_value = a
        return node.id

    def expand(self, c: Chooser, dims: list[int], code: int | None = None) -> str:
        """A scalar (of dtype `code`, else a random one) expanded to `dims`, sometimes through
        a chain of expands and reshapes."""
        ref = self.node("expand", lambda v: _scalar_constant(c, v, code), size=[1] * len(dims))
        for _ in range(c.int(0, 3)):
            ref = self.node("expand", ref, size=dims)
            if c.chance(0.5):
                ref = self.node("reshape", ref, shape=[-1])
                ref = self.node("reshape", ref, shape=dims)
        return self.node("expand", ref, size=dims)


HOSTILE_OPS = ("nonzero", "unbind", "split", "split_with_sizes", "index_select", "take",
               "gather", "repeat", "outer", "matmul", "cat", "stack", "cumsum", "exp", "sum",
               "expand")


def hostile_graph_request(c: Chooser) -> service_pb2.RunGraphRequest:
    """A RunGraph of a few hundred bytes whose results are huge or numerous: data-dependent and
    many-output ops on expanded scalars, index ops with huge index tensors, expand chains."""
    req = service_pb2.RunGraphRequest()
    b = _GraphBuilder(req)
    dims = _big_shape(c)
    x = b.expand(c, dims)
    op = c.pick(HOSTILE_OPS)
    last = len(dims) - 1
    if op in ("nonzero", "exp", "sum", "expand"):
        y = b.node(op, x) if op != "expand" else b.node("expand", x, size=[4, *dims])
    elif op == "unbind":
        y = b.node("unbind", x, dim=c.int(0, last))
    elif op == "split":
        y = b.node("split", x, split_size=1, dim=c.int(0, last))
    elif op == "split_with_sizes":
        y = b.node("split_with_sizes", x, split_sizes=[1] * min(dims[0], 4096),
                   dim=0)
    elif op in ("index_select", "take", "gather"):
        index = b.expand(c, [c.pick([2**17, 2**20, 2**24, 2**31])], tensor_pb2.DTYPE_INT64)
        if op == "index_select":
            y = b.node(op, x, index, dim=0)
        elif op == "take":
            y = b.node(op, x, index)
        else:
            y = b.node(op, x, b.expand(c, dims, tensor_pb2.DTYPE_INT64), dim=0)
    elif op == "repeat":
        y = b.node("repeat", x, repeats=[c.pick([2, 1024, 65536])] * len(dims))
    elif op == "outer":
        v = b.expand(c, [c.pick([2**12, 2**16, 2**20])])
        y = b.node("outer", v, v)
    elif op == "matmul":
        n = c.pick([2**10, 2**12, 2**14])
        m = b.expand(c, [n, n])
        y = b.node("matmul", m, m)
    else:  # cat / stack of many references to one big tensor
        node = b.g.nodes.add(id=f"n{b.n}", op=op)
        b.n += 1
        node.inputs.extend([graph_pb2.Value(ref=graph_pb2.NodeOutput(id=x))] * c.int(2, 64))
        y = node.id
    b.g.outputs.add(name="y", ref=graph_pb2.NodeOutput(id=y))
    return req


_CHAINS: dict[tuple[int, tuple[int, ...]], service_pb2.RunGraphRequest] = {}


def higher_order_request(c: Chooser, max_nodes: int = 100_000) -> service_pb2.RunGraphRequest:
    """A long chain of transcendental ops on a small input, differentiated up to order 8 (the
    chains are built once per length and shape: a 100,000-node one takes a while)."""
    n = c.pick([10, 1000, 10_000, max_nodes])
    shape = c.pick([(), (64,), (4096,)])
    chain = _CHAINS.get((n, shape))
    if chain is None:
        chain = _CHAINS[(n, shape)] = _chain(n, shape)
    req = service_pb2.RunGraphRequest()
    req.CopyFrom(chain)
    req.order = c.int(1, 8)
    return req


def _chain(n: int, shape: tuple[int, ...]) -> service_pb2.RunGraphRequest:
    req = service_pb2.RunGraphRequest()
    req.graph.inputs.add(name="x")
    arr = np.full(shape, 0.5, dtype=np.float32)
    req.inputs["x"].dtype = tensor_pb2.DTYPE_FLOAT32
    req.inputs["x"].shape.extend(arr.shape)
    req.inputs["x"].raw = arr.tobytes()
    ref = "x"
    for i in range(n):
        node = req.graph.nodes.add(id=f"n{i}", op=("sin", "exp", "tanh")[i % 3] if i % 97 == 0
                                   else "sin")
        node.inputs.add().ref.id = ref
        ref = node.id
    req.graph.outputs.add(name="y", ref=graph_pb2.NodeOutput(id=ref))
    req.wrt.append("x")
    return req


def hostile_batch(c: Chooser, out: Any) -> None:
    """Session instructions with the same hostile ops, plus repeated create_graph backwards."""
    h = 1

    def apply(op: str, inputs: list[int], n_out: int = 1, **attrs: int | list[int]) -> list[int]:
        nonlocal h
        m = out.add().apply_op
        m.op = op
        for i in inputs:
            m.inputs.add().handle = i
        for name, a in attrs.items():
            if isinstance(a, list):
                m.attrs[name].ints_value.values.extend(a)
            else:
                m.attrs[name].int_value = a
        m.outputs.extend(range(h, h + n_out))
        h += n_out
        return list(range(h - n_out, h))

    ins = out.add().create_tensor
    ins.handle = h
    ins.value.dtype = tensor_pb2.DTYPE_FLOAT32
    ins.value.raw = np.float32(0.5).tobytes()
    ins.requires_grad = True
    x = h
    h += 1
    if c.chance(0.3):  # graphs hanging off .grad: backward(create_graph=True) again and again
        (y,) = apply("sin", [x])
        (z,) = apply("mul", [x, y])
        for _ in range(c.int(10, 300)):
            bw = out.add().backward
            bw.tensor = z
            bw.create_graph = True
        return
    dims = _big_shape(c)
    (e,) = apply("expand", [x], size=dims)
    op = c.pick(["nonzero", "unbind", "split", "exp", "repeat"])
    if op == "unbind":
        apply("unbind", [e], n_out=dims[0], dim=0)
    elif op == "split":
        apply("split", [e], n_out=dims[0], split_size=1, dim=0)
    elif op == "repeat":
        apply("repeat", [e], repeats=[2] * len(dims))
    else:
        apply(op, [e])


HOSTILE_DEADLINE = 5.0  # each hostile request is answered (refused) within this many seconds


def hostile_call(c: Chooser, stub: Any, outcome: Outcome | None = None) -> str:
    """Send one hostile request (graph, higher-order chain or session batch) and check that it
    is answered within HOSTILE_DEADLINE with an allowed status; returns what it sent, short."""
    # Mostly hostile graphs (fast to refuse); long differentiated chains, which run for seconds
    # before their budget runs out, 1 in 25 so a long fuzzing run stays within the hour.
    k = c.int(0, 49)
    if k < 38:
        req = hostile_graph_request(c)
    elif k < 40:
        req = higher_order_request(c)
    if k < 40:
        what = _summary(req)
        check_status(lambda t: stub.RunGraph(req, timeout=t), what, outcome,
                     HOSTILE_DEADLINE)
        return what
    sid = stub.CreateSession(session_pb2.CreateSessionRequest(), timeout=10).session_id
    meta = (("x-session-id", sid),)
    breq = session_pb2.BatchRequest(session_id=sid)
    hostile_batch(c, breq.instructions)
    what = _summary(breq)
    try:
        check_status(lambda t: stub.ExecuteBatch(breq, metadata=meta, timeout=t),
                     what, outcome, HOSTILE_DEADLINE)
    finally:
        stub.CloseSession(session_pb2.CloseSessionRequest(session_id=sid), metadata=meta,
                          timeout=10)
    return what


def _summary(req: Any) -> str:
    """A failure's description, cheap to make (a chain has 100,000 nodes): the request itself
    when small, else its size and first nodes."""
    if req.ByteSize() < 4000:
        return str(req)
    graph = getattr(req, "graph", None)
    if graph is not None:
        ops = ", ".join(n.op for n in graph.nodes[:8])
        return (f"RunGraph of {len(graph.nodes)} nodes ({ops}, ...), order {req.order}, "
                f"{req.ByteSize()} bytes")
    return f"batch of {len(req.instructions)} instructions, {req.ByteSize()} bytes"


def mutate(c: Chooser, data: bytes) -> bytes:
    """Flip, insert, delete, duplicate or truncate bytes of a valid message."""
    buf = bytearray(data)
    for _ in range(c.int(1, 4)):
        k = c.int(0, 5)
        pos = c.int(0, len(buf)) if buf else 0
        if k == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << c.int(0, 7)
        elif k == 1:
            buf[pos:pos] = c.bytes(4)
        elif k == 2:
            del buf[pos:pos + c.int(1, 8)]
        elif k == 3:
            buf = buf[:pos]
        elif k == 4 and buf:
            end = min(len(buf), pos + c.int(1, 16))
            buf[pos:pos] = buf[pos:end]
        else:
            buf[pos:pos] = struct.pack("<Q", c.pick([0, 2**63, 2**64 - 1, 0x7F7F7F7F]))
    return bytes(buf)


# --- the oracle -----------------------------------------------------------------------------------

class Outcome:
    """Counts of what the fuzzed calls returned."""

    def __init__(self) -> None:
        self.calls = 0
        self.codes: dict[str, int] = {}
        self.failures: list[str] = []
        # collect failures instead of raising (bench/fuzz.py; GRADSERVE_FUZZ_COLLECT=1)
        self.collect = bool(os.environ.get("GRADSERVE_FUZZ_COLLECT"))

    def record(self, code: grpc.StatusCode) -> None:
        self.calls += 1
        self.codes[code.name] = self.codes.get(code.name, 0) + 1


def slowdown() -> float:
    """How many times slower than on an idle machine a call may run now: the 1-minute load
    average per core, at least 1. A deadline is a hang detector, not a speed test: on a machine
    running two loads per core a bounded call may take twice its idle time."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def check_status(call: Callable[[float], Any], what: str, outcome: Outcome | None = None,
                 deadline: float = DEADLINE) -> Any:
    """Run one call with a deadline; fail on UNKNOWN/INTERNAL or on a hang past the deadline.

    `call` takes the timeout to pass to gRPC: `deadline` seconds, stretched by `slowdown()` on
    a loaded machine. Returns the response, or None when the call was refused (with an allowed
    status).
    """
    timeout = deadline * slowdown()
    start = time.monotonic()
    try:
        resp = call(timeout)
        code = grpc.StatusCode.OK
    except grpc.RpcError as err:
        resp = None
        code = err.code()
        if code in FORBIDDEN or code is grpc.StatusCode.DEADLINE_EXCEEDED:
            _fail(outcome, f"{code.name} (timeout {timeout:.1f}s): {err.details()}\n{what}")
    elapsed = time.monotonic() - start
    if elapsed > timeout + 2:
        _fail(outcome, f"took {elapsed:.1f}s, past the {timeout:.1f}s deadline\n{what}")
    if outcome is not None:
        outcome.record(code)
    return resp


def _fail(outcome: Outcome | None, message: str) -> None:
    if outcome is not None and outcome.collect:
        outcome.failures.append(message)
        return
    raise AssertionError(message)


def raw_call(channel: grpc.Channel, method: str) -> Callable[..., Any]:
    """A callable sending raw bytes to `method` and returning raw bytes."""
    return channel.unary_unary(method)


def valid_corpus(ops: list[catalogue_pb2.OpInfo], session_id: str) -> list[tuple[str, bytes]]:
    """Valid serialized requests of every method, the seed for mutation."""
    rng = Chooser(rng=random.Random(1234))
    corpus: list[tuple[str, bytes]] = []
    for _ in range(8):
        corpus.append((SERVICE + "RunGraph", graph_request(rng, ops).SerializeToString()))
        b = session_pb2.BatchRequest(session_id=session_id)
        batch_instructions(rng, ops, [], b.instructions)
        corpus.append((SERVICE + "ExecuteBatch", b.SerializeToString()))
    opts = session_pb2.SessionOptions(idle_ttl_seconds=5, seed=3,
                                      limits=session_pb2.SessionLimits(max_bytes=10**6))
    corpus += [
        (SERVICE + "CreateSession", session_pb2.CreateSessionRequest(
            options=opts).SerializeToString()),
        (SERVICE + "DescribeSession", session_pb2.DescribeSessionRequest(
            session_id=session_id).SerializeToString()),
        (SERVICE + "CloseSession", session_pb2.CloseSessionRequest(
            session_id="0" * 32).SerializeToString()),
        (SERVICE + "ListOps", b""),
        ("/grpc.health.v1.Health/Check", b"\x0a\x1cgradserve.v1.AutogradService"),
    ]
    return corpus
