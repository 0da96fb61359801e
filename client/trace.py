"""Tracing a Python function of tensors into a stateless graph (`client.grad`,
`client.value_and_grad`), as JAX does: the function runs once on placeholder tensors whose ops
become graph nodes, and one RunGraph call returns the value and gradients as numpy arrays.

Inside the traced function, use operators and tensor methods (`x.sin()`, `(x * w).sum()`); values
are not available while tracing (`item()`, printing and `.shape` raise `TracingError`).

`jacobian`, `hessian`, `vjp`, `jvp`, `hvp` and `vhp` are torch.autograd.functional's, computed by
the server in the same single call (`RunGraphRequest.functional`): the traced graph is the
function, its arguments the inputs. What does not map: `create_graph` (the results come back as
numpy arrays, not as tensors of a graph) and `vectorize`/`strategy` (rows run one by one in
reverse mode, as torch with vectorize=False); control flow in `fn` that depends on values cannot
be traced at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradserve.surface import aliases, grad_mode
from gradserve.v1 import graph_pb2, service_pb2

from . import codec, overloads
from .errors import IncompatibleServerError, TracingError
from .ops import OpSpec
from .tensor import Tensor


class Tracer:
    """The owner of traced tensors: records each op as a node of a `gradserve.v1.Graph`."""

    def __init__(self, table: Any):
        self.table = table
        self._overloads = overloads.available(table.ops)
        self.graph_msg = graph_pb2.Graph(opset_version=table.opset_version)
        self._ids = itertools.count()

    def input(self, name: str) -> Tensor:
        self.graph_msg.inputs.add(name=name)
        return Tensor(self, (name, 0))

    def _value(self, v: Any, out: graph_pb2.Value, what: str) -> None:
        if isinstance(v, Tensor):
            if v._owner is not self:
                raise TracingError(f"{what}: a tensor from a session cannot enter a trace")
            out.ref.id, out.ref.index = v._handle
        elif v is None:
            out.none.SetInParent()
        elif not codec.encode_scalar(v, out):
            if not isinstance(v, np.ndarray):
                v = codec.array_from_data(v)
            codec.encode_array(v, out.constant)

    def _apply(self, spec: OpSpec, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        if spec.n_outputs is None:
            raise TracingError(f"{spec.name}(): ops with a data-dependent number of outputs "
                               "cannot be traced")
        node = self.graph_msg.nodes.add(id=f"n{next(self._ids)}", op=spec.name)
        what = f"{spec.name}(): argument"
        values = inputs[0] if spec.variadic else inputs
        for v in values:
            self._value(v, node.inputs.add(), what)
        for k, v in attrs.items():
            if k == "generator":  # a random op's generator= (OpSpec.bind)
                raise TracingError(f"{spec.name}(): a traced graph cannot draw from a "
                                   "torch.Generator (RunGraph draws from the default stream)")
            codec.encode_attr(v, node.attrs[k])
        node.no_grad = not grad_mode.is_grad_enabled()
        outs = [Tensor(self, (node.id, i)) for i in range(spec.n_outputs)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def call(self, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        spec = self.table.ops.get(name)
        if spec is None:
            raise AttributeError(f"the server has no op {name!r}")
        return self._apply(spec, *spec.bind(args, kwargs))

    def _operator(self, name: str, args: Sequence[Any]) -> Any:
        """`call` from one of Tensor's operator methods."""
        return self.call(name, args, {})

    def method(self, t: Tensor, name: str) -> Callable[..., Any]:
        target = aliases.canonical(name)  # x.arctan() is x.atan()
        ov = self._overloads.get(target)
        if ov is not None and ov.method is not None:
            # x.max(dim), x.norm(), ...; the spellings that read the shape (x.T) raise here
            return overloads.method(self, ov, t)  # type: ignore[no-any-return]
        spec = self.table.ops.get(target)
        if spec is not None and spec.inputs and not spec.variadic:
            return lambda *args, **kwargs: self._apply(spec, *spec.bind((t, *args), kwargs))
        raise AttributeError(f"'Tensor' object has no attribute '{name}' (in-place ops and "
                             "non-op methods cannot be traced)")

    def dropped(self, handle: Any) -> None:
        pass

    def _no_value(self, *args: Any, **kwargs: Any) -> Any:
        raise TracingError("a traced function has no values: shapes, printing, item() and "
                           "autograd calls are not available while tracing")

    def getitem(self, *args: Any) -> Any:
        raise TracingError("indexing (x[...] and x[...] = v) cannot be traced: a stateless "
                           "graph has no index node; use the ops select, index_select "
                           "or gather, or a session")

    setitem = getitem

    info = meta = grad_fn_name = value = repr = inplace = get_grad = set_grad = _no_value
    backward = _no_value
    requires_grad_ = detach = detach_ = retain_grad = graph = _no_value


def _argnums(argnums: int | Sequence[int]) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def trace_request(client: Any, fn: Callable[..., Any], args: Sequence[Any],
                  argnums: int | Sequence[int],
                  several_outputs: bool = False) -> service_pb2.RunGraphRequest:
    """The RunGraphRequest computing `fn(*args)` and its gradient w.r.t. `args[argnums]`.

    With `several_outputs`, `fn` may return a tuple of tensors (graph outputs out0, out1, ...).
    """
    tracer = Tracer(client.op_table())
    req = service_pb2.RunGraphRequest()
    placeholders = []
    for i, a in enumerate(args):
        name = f"x{i}"
        arr = a if isinstance(a, np.ndarray) else codec.array_from_data(a)
        if i in _argnums(argnums) and arr.dtype.kind != "f":
            arr = arr.astype(np.float32)
        codec.encode_array(arr, req.inputs[name])
        placeholders.append(tracer.input(name))
    with grad_mode.enable_grad():
        out = fn(*placeholders)
    outs = out if several_outputs and isinstance(out, tuple) else (out,)
    if not outs or any(not isinstance(o, Tensor) or o._owner is not tracer for o in outs):
        raise TracingError("the traced function must return a tensor computed from its inputs"
                           + (", or a tuple of them" if several_outputs else ""))
    req.graph.CopyFrom(tracer.graph_msg)
    for k, o in enumerate(outs):
        ref = req.graph.outputs.add(name="out" if o is out else f"out{k}").ref
        ref.id, ref.index = o._handle
    req.wrt.extend(f"x{i}" for i in _argnums(argnums))
    return req


def _run(client: Any, fn: Callable[..., Any], args: Sequence[Any],
         argnums: int | Sequence[int]) -> tuple[np.ndarray, Any]:
    req = trace_request(client, fn, args, argnums)
    resp = client.run_graph(req)
    value = codec.decode_array(resp.outputs[0].tensor)
    grads = tuple(codec.decode_array(g.derivatives[0].tensor)
                  if g.derivatives and g.derivatives[0].HasField("tensor") else None
                  for g in resp.gradients)
    return value, (grads[0] if isinstance(argnums, int) else grads)


def grad(client: Any, fn: Callable[..., Any],
         argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """A function returning the gradient of scalar `fn` w.r.t. argument(s) `argnums`, as numpy
    (a tuple for a sequence of argnums)."""
    def grad_fn(*args: Any) -> Any:
        return _run(client, fn, args, argnums)[1]
    return grad_fn


def value_and_grad(client: Any, fn: Callable[..., Any],
                   argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """Like `grad`, returning (value, gradient)."""
    def vg_fn(*args: Any) -> Any:
        return _run(client, fn, args, argnums)
    return vg_fn


# --- torch.autograd.functional, stateless --------------------------------------------------------

_KINDS = {"jacobian": service_pb2.FUNCTIONAL_KIND_JACOBIAN,
          "hessian": service_pb2.FUNCTIONAL_KIND_HESSIAN,
          "vjp": service_pb2.FUNCTIONAL_KIND_VJP, "jvp": service_pb2.FUNCTIONAL_KIND_JVP,
          "vhp": service_pb2.FUNCTIONAL_KIND_VHP, "hvp": service_pb2.FUNCTIONAL_KIND_HVP}


def _as_args(inputs: Any) -> tuple[bool, tuple[Any, ...]]:
    return (True, inputs) if isinstance(inputs, tuple) else (False, (inputs,))


def _functional(client: Any, name: str, fn: Callable[..., Any], inputs: Any, v: Any,
                strict: bool) -> tuple[list[np.ndarray], list[Any], bool, bool]:
    """One RunGraph computing torch.autograd.functional's `name` of traced `fn` at `inputs`
    (a value or a tuple of them, as torch takes them); returns (outputs, flat result,
    inputs were a tuple, outputs were a tuple)."""
    is_tuple, args = _as_args(inputs)
    if not args:
        raise TypeError(f"{name}() needs at least one input")
    outputs_tuple: list[bool] = []

    def traced(*xs: Any) -> Any:
        out = fn(*xs)
        outputs_tuple.append(isinstance(out, tuple))
        return out

    req = trace_request(client, traced, args, tuple(range(len(args))), several_outputs=True)
    req.functional.kind = _KINDS[name]
    req.functional.strict = strict
    req.functional.inputs_tuple = is_tuple
    req.functional.outputs_tuple = outputs_tuple[0]
    if v is not None:
        for a in v if isinstance(v, tuple) else (v,):
            arr = a if isinstance(a, np.ndarray) else codec.array_from_data(a)
            codec.encode_array(arr, req.functional.v.add())
    resp = client.run_graph(req)
    if not resp.functional_result:  # every kind returns at least one tensor
        raise IncompatibleServerError(
            f"{client.target} answered a {name} request without functional_result: the server "
            "predates RunGraphRequest.functional (use a session's torch.autograd.functional)")
    outs = [codec.decode_array(o.tensor) for o in resp.outputs]
    flat = [codec.decode_array(r.tensor) if r.HasField("tensor") else None
            for r in resp.functional_result]
    return outs, flat, is_tuple, outputs_tuple[0]


def _unpack(values: list[Any], is_tuple: bool) -> Any:
    return tuple(values) if is_tuple else values[0]


def jacobian(client: Any, fn: Callable[..., Any], strict: bool = False) -> Callable[..., Any]:
    """A function returning torch.autograd.functional.jacobian of `fn` at its arguments.

    `client.jacobian(fn)(x)` is `jacobian(fn, x)`, `client.jacobian(fn)(x, y)` is
    `jacobian(fn, (x, y))`: arrays of shape output.shape + input.shape, in tuples per output then
    per input as `fn` returns a tuple / takes several arguments. One stateless call.
    """
    def jac_fn(*args: Any) -> Any:
        _, flat, is_tuple, out_tuple = _functional(
            client, "jacobian", fn, args if len(args) != 1 else args[0], None, strict)
        n = len(args)
        rows = [_unpack(flat[i:i + n], n > 1) for i in range(0, len(flat), n)]
        return _unpack(rows, out_tuple)
    return jac_fn


def hessian(client: Any, fn: Callable[..., Any], strict: bool = False) -> Callable[..., Any]:
    """A function returning torch.autograd.functional.hessian of scalar `fn` at its arguments
    (arguments as `jacobian`): arrays of shape input_i.shape + input_j.shape, in tuples of
    tuples for several arguments. One stateless call."""
    def hess_fn(*args: Any) -> Any:
        _, flat, _, _ = _functional(
            client, "hessian", fn, args if len(args) != 1 else args[0], None, strict)
        n = len(args)
        rows = [_unpack(flat[i:i + n], n > 1) for i in range(0, len(flat), n)]
        return _unpack(rows, n > 1)
    return hess_fn


def _with_v(client: Any, name: str, fn: Callable[..., Any], inputs: Any, v: Any,
            strict: bool) -> tuple[Any, Any]:
    outs, flat, is_tuple, out_tuple = _functional(client, name, fn, inputs, v, strict)
    return (_unpack(outs, out_tuple),
            _unpack(flat, out_tuple if name == "jvp" else is_tuple))


def vjp(client: Any, fn: Callable[..., Any], inputs: Any, v: Any = None,
        strict: bool = False) -> tuple[Any, Any]:
    """torch.autograd.functional.vjp of traced `fn` in one stateless call: (fn's value,
    v^T J) as numpy, structured as torch's (tuples where inputs/outputs are tuples)."""
    return _with_v(client, "vjp", fn, inputs, v, strict)


def jvp(client: Any, fn: Callable[..., Any], inputs: Any, v: Any = None,
        strict: bool = False) -> tuple[Any, Any]:
    """torch.autograd.functional.jvp of traced `fn` in one stateless call: (fn's value, J v)."""
    return _with_v(client, "jvp", fn, inputs, v, strict)


def vhp(client: Any, fn: Callable[..., Any], inputs: Any, v: Any = None,
        strict: bool = False) -> tuple[Any, Any]:
    """torch.autograd.functional.vhp of scalar traced `fn` in one stateless call: (fn's value,
    v^T H)."""
    return _with_v(client, "vhp", fn, inputs, v, strict)


def hvp(client: Any, fn: Callable[..., Any], inputs: Any, v: Any = None,
        strict: bool = False) -> tuple[Any, Any]:
    """torch.autograd.functional.hvp of scalar traced `fn` in one stateless call: (fn's value,
    H v)."""
    return _with_v(client, "hvp", fn, inputs, v, strict)
