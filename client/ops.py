"""The server's op catalogue (ListOps) as call signatures: binding torch-style arguments to an
op's tensor inputs and attributes. Nothing here lists an op: every name comes from the server."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradserve.surface import messages
from gradserve.surface.binding import take_inputs, torch_keywords
from gradserve.surface.signature import (
    ATTR_KINDS,
    REFUSED,
    AttrSpec,
    AttrValidator,
    given_none,
    nullable,
)
from gradserve.surface.spellings import is_int
from gradserve.v1 import attrs as wire_attrs
from gradserve.v1 import catalogue_pb2, graph_pb2

from . import codec


def _as_dtype(v: Any) -> codec.DType | None:
    if isinstance(v, codec.DType):
        return v
    if isinstance(v, str):
        d = codec.BY_NAME.get(v)
        if d is None:
            raise TypeError(messages.unsupported_dtype(v, list(codec.BY_NAME)))
        return d
    return None


# The engine's validator with the built-in types its errors come back as from a server
# (InvalidTypeError and UnknownAttributeError: TypeError; InvalidValueError: ValueError).
ATTRS = AttrValidator(TypeError, ValueError, TypeError, _as_dtype)


def _default(value: graph_pb2.AttrValue) -> Any:
    """An attribute's default from ListOps, as a Python value (None when unset, or a dtype this
    client does not know)."""
    try:
        return wire_attrs.decode_attr(value, codec.BY_WIRE.get)
    except wire_attrs.UnsetAttrError:
        return None


def attr_specs(info: catalogue_pb2.OpInfo) -> tuple[AttrSpec, ...] | None:
    """The op's attributes as the surface's `AttrSpec`s; None when one has a kind this client
    does not know (a newer server: it then checks them alone)."""
    specs = []
    for a in info.attrs:
        kind = wire_attrs.KIND_NAMES.get(a.kind)
        if kind not in ATTR_KINDS:
            return None
        specs.append(AttrSpec(a.name, kind, _default(a.default_value), a.required,
                              tuple(a.choices)))
    return tuple(specs)


# The output-count rules of servers older than OpInfo.output_count (0.2.0), by op name.
LEGACY_OUTPUT_COUNTS = {"split": "split_size", "split_with_sizes": "split_sizes",
                        "unbind": "dim_size"}


class OpSpec:
    """One op of the catalogue, ready for binding calls."""

    __slots__ = ("name", "inputs", "optional", "variadic", "attrs", "attr_kinds", "specs",
                 "n_outputs", "output_count", "differentiable", "doc", "sizes_first",
                 "positional_only", "inplace", "view", "random", "node", "params", "_plans")

    def __init__(self, info: catalogue_pb2.OpInfo):
        self.name = info.name
        self.inputs = tuple(info.inputs)
        opt = set(info.optional_inputs)
        self.optional = tuple(i in opt for i in self.inputs)
        self.variadic = info.variadic
        self.attrs = tuple(a.name for a in info.attrs)
        self.attr_kinds = tuple(a.kind for a in info.attrs)
        self.specs = attr_specs(info)
        # every input positional and nothing else is a complete call
        self.positional_only = not self.variadic and not any(a.required for a in info.attrs)
        self.n_outputs: int | None = info.n_outputs if info.HasField("n_outputs") else None
        # the surface's rule for a variable number of outputs (signature.OUTPUT_COUNTS)
        self.output_count = info.output_count or LEGACY_OUTPUT_COUNTS.get(self.name, "")
        self.inplace = info.inplace  # `name_` exists
        self.view = info.view
        self.random = info.random
        self.differentiable = info.differentiable
        # the grad_fn name of a result that requires grad, when the op records one node name
        # whatever its arguments (pow: PowBackward0/1/2 by the arguments, so None: unknown)
        names = tuple(info.backward_names) or ((info.backward_name,) if info.backward_name
                                               else ())
        self.node: str | None = names[0] if len(names) == 1 else None
        self.doc = info.doc
        # torch's `*size` varargs: x.reshape(2, 3), zeros(2, 3) for a first `ints` attribute.
        self.sizes_first = bool(self.attrs) and self.attr_kinds[0] == catalogue_pb2.ATTR_KIND_INTS
        self.params = frozenset((*self.inputs, *self.attrs))
        # binding plans by call signature (see `_plan`); False: that signature takes `_bind`
        self._plans: dict[Any, _Plan | bool] = {}

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[list[Any],
                                                                           dict[str, Any]]:
        """(tensor inputs, attributes given) of a call `op(*args, **kwargs)`, bound and checked
        as the engine does, with the same validator (`ATTRS`), so a bad attribute fails here,
        on the user's line, with the engine's text.

        Raises:
            TypeError: missing inputs, too many positional arguments, or an attribute of the
                wrong kind.
            ValueError: an unknown attribute, or a value outside its choices.
        """
        if not kwargs and self.positional_only and len(args) == len(self.inputs):
            return list(args), {}  # every input positional, no attributes: the common case
        call = args
        n_in = len(self.inputs)
        if self.sizes_first and len(args) > n_in and is_int(args[n_in]):
            # torch's `*size` varargs (x.reshape(2, 3)): the leading ints as one tuple, as
            # `_bind` takes them (which still gets the call as given if no plan takes it)
            k = n_in + 1
            while k < len(args) and is_int(args[k]):
                k += 1
            call = (*args[:n_in], tuple([int(v) for v in args[n_in:k]]), *args[k:])
        key: Any = len(call) if not kwargs else (len(call), *kwargs)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(call, kwargs, key)
        if plan is not False:
            return plan.apply(self.name, call, kwargs)  # type: ignore[union-attr]
        kw = dict(torch_keywords(dict(kwargs), self.params))
        # torch's generator= on a random op: carried as the "generator" entry of the attributes
        # (Session._record_apply and Session.inplace send it as the instruction's generator)
        generator = kw.pop("generator", None) if self.random else None
        inputs, attrs = self._bind(args, kw)
        if generator is not None:
            attrs["generator"] = generator
        return inputs, attrs

    def _plan(self, args: Sequence[Any], kwargs: Mapping[str, Any], key: Any) -> _Plan | bool:
        """The binding plan of calls with `key`'s signature (the positional count and keyword
        names), made and kept the first time: False when such calls take `_bind` (a factory, a
        random or variadic op, an input given by name, or a call `_bind`
        refuses for its names and count alone, which it then raises)."""
        plan: _Plan | bool = False
        n = len(self.inputs)
        extra = len(args) - n
        names = list(torch_keywords(dict.fromkeys(kwargs), self.params))
        specs = self.specs
        if (specs is not None and n and not self.random and not self.variadic and extra >= 0
                and extra <= len(specs)
                and all(k in self.attrs for k in names)
                and not set(self.attrs[:extra]) & set(names)):
            given = {**{a: n + j for j, a in enumerate(self.attrs[:extra])},
                     **dict(zip(names, kwargs))}
            if all(s.name in given for s in specs if s.required):
                plan = _Plan(self.name, n,
                             tuple((s, given[s.name]) for s in specs if s.name in given))
        if len(self._plans) < _MAX_PLANS:
            self._plans[key] = plan
        return plan

    def _bind(self, args: Sequence[Any], kw: dict[str, Any]) -> tuple[list[Any],
                                                                     dict[str, Any]]:
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
        if self.specs is None:
            return inputs, self._unchecked(extra, kw)
        # a factory's requires_grad= is the session's, not the op's (see Session._apply)
        requires_grad = (kw.pop("requires_grad", None)
                         if not self.inputs and "requires_grad" not in self.attrs else None)
        given = [*self.attrs[:len(extra)], *kw]
        bound = ATTRS.bind(self.name, len(self.inputs), self.specs, extra, kw)
        attrs = {k: bound[k] for k in given}
        if requires_grad is not None:
            attrs["requires_grad"] = requires_grad
        return inputs, attrs

    def _unchecked(self, extra: list[Any], kw: dict[str, Any]) -> dict[str, Any]:
        """The attributes by name, for a server whose kinds this client does not know (it
        checks them with the engine's messages)."""
        if len(extra) > len(self.attrs):
            raise TypeError(f"{self.name}() takes {len(self.inputs) + len(self.attrs)} "
                            f"arguments but {len(self.inputs) + len(extra)} were given")
        attrs = dict(zip(self.attrs, extra))
        for key, v in kw.items():
            if key in attrs:
                raise TypeError(f"{self.name}() got multiple values for argument '{key}'")
            attrs[key] = v
        return attrs


# Call signatures kept per op (a program uses a few; names are the caller's, so bounded).
_MAX_PLANS = 64


class _Plan:
    """How calls of one signature bind (`OpSpec._plan`): the tensor inputs are the first `n`
    positional arguments; each given attribute is read from its positional index or keyword
    name and checked by its kind's converter, in the op's attribute order. A value the kind
    refuses raises `ATTRS.check`'s error, as `_bind` would."""

    __slots__ = ("n", "steps")

    def __init__(self, op: str, n: int, given: tuple[tuple[AttrSpec, int | str], ...]):
        self.n = n
        # (name, where, convert, accepts None, what None binds to, spec)
        self.steps = tuple((s.name, where, ATTR_KINDS[s.kind].convert, nullable(s),
                            given_none(op, s), s) for s, where in given)

    def apply(self, op: str, args: Sequence[Any], kwargs: Mapping[str, Any]
              ) -> tuple[list[Any], dict[str, Any]]:
        attrs: dict[str, Any] = {}
        for name, where, convert, accepts_none, none, spec in self.steps:
            v = args[where] if type(where) is int else kwargs[where]  # type: ignore[index]
            if v is None and accepts_none:
                attrs[name] = none
                continue
            out = convert(v, _as_dtype)
            if out is REFUSED or (spec.choices and out not in spec.choices):
                out = ATTRS.check(op, spec, v)  # raises the validator's error
            attrs[name] = out
        return list(args[:self.n]), attrs


class OpTable:
    """Every op of one server's catalogue, by name, plus its in-place names and dtypes."""

    def __init__(self, catalogue: catalogue_pb2.ListOpsResponse):
        self.opset_version = catalogue.opset_version
        self.ops: dict[str, OpSpec] = {info.name: OpSpec(info) for info in catalogue.ops}
        # `name_` of the ops flagged in place (inplace_ops: servers older than OpInfo.inplace)
        self.inplace = frozenset(catalogue.inplace_ops) | {
            name + "_" for name, spec in self.ops.items() if spec.inplace}
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
