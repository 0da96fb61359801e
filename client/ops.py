"""The server's op catalogue (ListOps) as call signatures: binding torch-style arguments to an
op's tensor inputs and attributes. Nothing here lists an op: every name comes from the server."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradserve.surface.binding import take_inputs
from gradserve.surface.spellings import is_int
from gradserve.v1 import catalogue_pb2


class OpSpec:
    """One op of the catalogue, ready for binding calls."""

    __slots__ = ("name", "inputs", "optional", "variadic", "attrs", "attr_kinds", "n_outputs",
                 "differentiable", "doc", "sizes_first")

    def __init__(self, info: catalogue_pb2.OpInfo):
        self.name = info.name
        self.inputs = tuple(info.inputs)
        opt = set(info.optional_inputs)
        self.optional = tuple(i in opt for i in self.inputs)
        self.variadic = info.variadic
        self.attrs = tuple(a.name for a in info.attrs)
        self.attr_kinds = tuple(a.kind for a in info.attrs)
        self.n_outputs: int | None = info.n_outputs if info.HasField("n_outputs") else None
        self.differentiable = info.differentiable
        self.doc = info.doc
        # torch's `*size` varargs: x.reshape(2, 3), zeros(2, 3) for a first `ints` attribute.
        self.sizes_first = bool(self.attrs) and self.attr_kinds[0] == catalogue_pb2.ATTR_KIND_INTS

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[list[Any],
                                                                           dict[str, Any]]:
        """(tensor inputs, attributes) of a call `op(*args, **kwargs)`, as the engine binds it.

        Attribute kinds and values are checked by the server (with the engine's messages).

        Raises:
            TypeError: missing inputs or too many positional arguments.
        """
        if not kwargs and not self.variadic and len(args) == len(self.inputs):
            return list(args), {}  # every input positional, no attributes: the common case
        kw = dict(kwargs)
        if self.variadic:
            tensors = args[0] if args else kw.pop(self.inputs[0], None)
            if not isinstance(tensors, (list, tuple)):
                raise TypeError(f"{self.name}(): argument '{self.inputs[0]}' must be tuple of "
                                f"Tensors, not {type(tensors).__name__}")
            inputs: list[Any] = [list(tensors)]
            extra = list(args[1:])
        else:
            n = len(self.inputs)
            inputs = take_inputs(self.name, self.inputs, self.optional, args[:n], kw)
            extra = list(args[n:])
        if self.sizes_first and extra and is_int(extra[0]):
            k = 1
            while k < len(extra) and is_int(extra[k]):
                k += 1
            extra = [tuple(int(v) for v in extra[:k]), *extra[k:]]
        if len(extra) > len(self.attrs):
            raise TypeError(f"{self.name}() takes {len(self.inputs) + len(self.attrs)} "
                            f"arguments but {len(self.inputs) + len(extra)} were given")
        attrs = dict(zip(self.attrs, extra))
        for key, v in kw.items():
            if key in attrs:
                raise TypeError(f"{self.name}() got multiple values for argument '{key}'")
            attrs[key] = v  # unknown names are refused by the server with the engine's message
        return inputs, attrs


class OpTable:
    """Every op of one server's catalogue, by name, plus its in-place names and dtypes."""

    def __init__(self, catalogue: catalogue_pb2.ListOpsResponse):
        self.opset_version = catalogue.opset_version
        self.ops: dict[str, OpSpec] = {info.name: OpSpec(info) for info in catalogue.ops}
        self.inplace = frozenset(catalogue.inplace_ops)
        self.dtypes = tuple(catalogue.dtypes)


def make_function(spec: OpSpec, call: Callable[[OpSpec, list[Any], dict[str, Any]], Any]
                  ) -> Callable[..., Any]:
    """The torch-style function of `spec`, sending bound calls to `call`."""
    def fn(*args: Any, **kwargs: Any) -> Any:
        inputs, attrs = spec.bind(args, kwargs)
        return call(spec, inputs, attrs)

    fn.__name__ = fn.__qualname__ = spec.name
    fn.__doc__ = spec.doc or f"The `{spec.name}` op."
    return fn
