"""Running one op for the server: registry lookup by dict only, the session RNG where it matters."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

import gradserve.engine as ge

from .errors import InvalidRequestError


def lookup(name: str) -> Any:
    """The registry entry for wire op `name` (a dict lookup: wire strings never reach getattr).

    Raises:
        UnknownOpError: no such op (the engine's own error, so clients see its type).
    """
    op = ge.registry.OPS.get(name)
    if op is None:
        raise ge.errors.UnknownOpError(f"unknown op {name!r}")
    return op


@functools.cache
def takes_generator(op_name: str) -> bool:
    """Whether op `op_name` draws random numbers (then it gets the session's generator)."""
    op = ge.registry.OPS[op_name]
    if getattr(op, "random", False):
        return True
    try:
        return "generator" in inspect.signature(op.forward).parameters
    except (TypeError, ValueError):  # builtins (numpy ufuncs) have no signature
        return False


def check_arity(op: Any, n_inputs: int) -> None:
    """Inputs given vs the op's inputs, before anything runs; trailing optional inputs may be
    left out (they are None).

    Raises:
        InvalidRequestError: naming the op and what it takes.
    """
    if op.variadic:
        if n_inputs < 1:
            raise InvalidRequestError(f"{op.name}() takes one or more tensors, got none")
        return
    required = len(op.inputs)
    while required and op.optional[required - 1]:
        required -= 1
    if not required <= n_inputs <= len(op.inputs):
        wanted = (str(len(op.inputs)) if required == len(op.inputs)
                  else f"{required} to {len(op.inputs)}")
        raise InvalidRequestError(
            f"{op.name}() takes {wanted} input(s) ({', '.join(op.inputs) or 'none'}), "
            f"got {n_inputs}")


# (wire op name, number of inputs) -> OpDef, for pairs that passed lookup and check_arity. Only
# valid pairs are kept, so the cache is bounded by the registry, whatever clients send.
_CHECKED: dict[tuple[str, int], Any] = {}


def checked(name: str, n_inputs: int) -> Any:
    """`lookup(name)` then `check_arity(op, n_inputs)`, remembered for pairs that pass.

    Raises:
        UnknownOpError, InvalidRequestError: as `lookup` and `check_arity`.
    """
    op = _CHECKED.get((name, n_inputs))
    if op is None:
        op = lookup(name)
        check_arity(op, n_inputs)
        _CHECKED[(name, n_inputs)] = op
    return op


class Prepared:
    """An op checked for a number of inputs, ready to run as a tape op: its OpDef, its
    attributes' defaults (validated once, copied per run) and whether it draws from the
    session's generator."""

    __slots__ = ("op", "defaults", "random", "pad", "plain")

    def __init__(self, op: Any, n_inputs: int):
        self.op = op
        # None: the op has a required attribute (only a tape op with attributes runs it)
        self.defaults: dict[str, Any] | None = None
        if not any(spec.required for spec in op.attrs):
            self.defaults = ge.registry.bind_attrs(op, (), {})
        self.random = takes_generator(op.name)
        # None for the trailing optional inputs left out (see run)
        self.pad = 0 if op.variadic else len(op.inputs) - n_inputs
        # nothing for run_prepared to add: the inputs as they are, no attributes, no generator
        # (the tape calls the engine's dispatch directly)
        self.plain = not (op.variadic or self.pad or self.defaults is None or self.defaults
                          or self.random)


# (wire op name, number of inputs) -> Prepared, for pairs that passed `checked`; bounded by the
# registry as `_CHECKED` is.
PREPARED: dict[tuple[str, int], Prepared] = {}


def prepared(name: str, n_inputs: int) -> Prepared:
    """`checked(name, n_inputs)`, ready to run without attributes, remembered.

    Raises:
        UnknownOpError, InvalidRequestError: as `checked`.
    """
    p = PREPARED.get((name, n_inputs))
    if p is None:
        p = PREPARED[(name, n_inputs)] = Prepared(checked(name, n_inputs), n_inputs)
    return p


def run_prepared(p: Prepared, inputs: list[Any], generator: Any,
                 attrs: dict[str, Any] | None = None) -> Any:
    """`run(p.op, inputs, attrs or {}, generator)` without the registry lookup (done once in
    `prepared`), nor the attribute binding for no attributes (done there too) or attributes
    bound before (`bound_attrs`): the tape's hot path. Returns a Tensor for a one-output op,
    else a tuple of Tensors."""
    op = p.op
    if attrs is not None:
        bound = bound_attrs(op, attrs)
    elif p.defaults is not None:
        bound = dict(p.defaults)
    else:  # a required attribute is missing: the engine's error
        bound = ge.registry.bind_attrs(op, (), {})
    if op.variadic:
        args: tuple[Any, ...] = (tuple(inputs),)
    elif p.pad:
        args = (*inputs, *([None] * p.pad))
    else:
        args = tuple(inputs)
    return ge.dispatch.run(op, args, bound, generator=generator if p.random else None)


# (op name, each attribute's name, type and value) -> the attributes bound (`bound_attrs`).
# Values from the wire: bounded by clearing, a key holds no string or int list longer than
# _BOUND_LEN (4096 keys of at most a few KiB), and a float zero is never a key (0.0 == -0.0).
_BOUND: dict[tuple[Any, ...], dict[str, Any]] = {}
_BOUND_MAX = 4096
_BOUND_LEN = 64


def bound_attrs(op: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """`ge.registry.bind_attrs(op, (), attrs)` (what `run` binds), remembered for attributes
    bound before; a new dict each call.

    Raises:
        As `bind_attrs`: the engine's errors for an unknown name or a value of the wrong kind.
    """
    parts: list[Any] = [op.name]
    for k, v in attrs.items():
        cls = v.__class__
        if ((cls is float and v == 0.0) or ((cls is tuple or cls is str) and len(v) > _BOUND_LEN)
                or len(k) > _BOUND_LEN):
            return ge.registry.bind_attrs(op, (), attrs)
        parts += (k, cls, v)
    key = tuple(parts)
    bound = _BOUND.get(key)
    if bound is None:
        bound = ge.registry.bind_attrs(op, (), attrs)
        if len(_BOUND) >= _BOUND_MAX:
            _BOUND.clear()
        _BOUND[key] = bound
    return dict(bound)


def run(op: Any, inputs: Sequence[Any], attrs: dict[str, Any], generator: Any) -> tuple[Any, ...]:
    """Apply `op`; always returns a tuple of output tensors."""
    if op.variadic:
        args: Sequence[Any] = [list(inputs)]
    elif len(inputs) == len(op.inputs):
        args = inputs
    else:
        args = [*inputs, *([None] * (len(op.inputs) - len(inputs)))]
    if generator is not None and takes_generator(op.name):
        out = ge.apply(op.name, args, attrs, generator=generator)
    else:
        out = ge.apply(op.name, args, attrs)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
