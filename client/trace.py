"""Tracing a Python function of tensors into a stateless graph (`client.grad`,
`client.value_and_grad`), as JAX does: the function runs once on placeholder tensors whose ops
become graph nodes, and one RunGraph call returns the value and gradients as numpy arrays.

Inside the traced function, use operators and tensor methods (`x.sin()`, `(x * w).sum()`); values
are not available while tracing (`item()`, printing and `.shape` raise `TracingError`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradserve.surface import grad_mode
from gradserve.v1 import graph_pb2, service_pb2

from . import codec, overloads
from .errors import TracingError
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
            codec.encode_attr(v, node.attrs[k])
        node.no_grad = not grad_mode.is_grad_enabled()
        outs = [Tensor(self, (node.id, i)) for i in range(spec.n_outputs)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def call(self, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        spec = self.table.ops.get(name)
        if spec is None:
            raise AttributeError(f"the server has no op {name!r}")
        return self._apply(spec, *spec.bind(args, kwargs))

    def method(self, t: Tensor, name: str) -> Callable[..., Any]:
        ov = self._overloads.get(name)
        if ov is not None and ov.method is not None:
            # x.max(dim), x.norm(), ...; the spellings that read the shape (x.T) raise here
            return overloads.method(self, ov, t)  # type: ignore[no-any-return]
        spec = self.table.ops.get(name)
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

    info = value = repr = inplace = get_grad = set_grad = backward = _no_value
    requires_grad_ = detach = detach_ = retain_grad = graph = _no_value


def _argnums(argnums: int | Sequence[int]) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def trace_request(client: Any, fn: Callable[..., Any], args: Sequence[Any],
                  argnums: int | Sequence[int]) -> service_pb2.RunGraphRequest:
    """The RunGraphRequest computing `fn(*args)` and its gradient w.r.t. `args[argnums]`."""
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
    if not isinstance(out, Tensor) or out._owner is not tracer:
        raise TracingError("the traced function must return a tensor computed from its inputs")
    req.graph.CopyFrom(tracer.graph_msg)
    ref = req.graph.outputs.add(name="out").ref
    ref.id, ref.index = out._handle
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
