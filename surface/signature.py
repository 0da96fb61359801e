"""An op's attributes: their kinds, which accept None, and the one validator and binder.

The engine binds a call's attributes with `AttrValidator.bind` (raising its typed errors), the
server's catalogue reads `nullable` for ListOps and maps each kind in `ATTR_KINDS` to the wire,
so a kind and its rule are written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from . import memory_format
from .numbers import python_number
from .spellings import is_int


class AttrSpec(NamedTuple):
    """One typed attribute of an op."""

    name: str
    kind: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()


# What a kind's `convert` returns for a value it does not accept.
REFUSED: Any = object()


@dataclass(frozen=True)
class AttrKind:
    """One attribute kind: its name, whether None is accepted, and how a value is normalised."""

    name: str
    expected: str
    """What torch's TypeError says the argument must be ("int", "tuple of ints")."""
    accepts_none: bool
    """None is accepted even when the attribute has a default (`optional_int`, `dims`)."""
    convert: Callable[[Any, Callable[[Any], Any]], Any]
    """`convert(value, as_dtype)`: the normalised value, or `REFUSED`."""


def _int(v: Any, as_dtype: Callable[[Any], Any]) -> Any:
    return int(v) if is_int(v) else REFUSED


def _float(v: Any, as_dtype: Callable[[Any], Any]) -> Any:
    return float(v) if is_int(v) or isinstance(v, (float, np.floating)) else REFUSED


def _bool(v: Any, as_dtype: Callable[[Any], Any]) -> Any:
    return bool(v) if isinstance(v, (bool, np.bool_)) else REFUSED


def _str(v: Any, as_dtype: Callable[[Any], Any]) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, memory_format.memory_format):  # `memory_format=torch.channels_last`
        return memory_format.NAMES[v.name]
    return REFUSED


def _ints(v: Any, as_dtype: Callable[[Any], Any]) -> Any:
    if isinstance(v, (list, tuple)) and all(is_int(i) for i in v):
        return tuple(int(i) for i in v)
    return REFUSED


def _dims(v: Any, as_dtype: Callable[[Any], Any]) -> Any:
    return int(v) if is_int(v) else _ints(v, as_dtype)


def _scalar(v: Any, as_dtype: Callable[[Any], Any]) -> Any:
    if isinstance(v, bool):
        return bool(v)
    n = python_number(v)  # a numpy scalar, as torch reads it (a numpy bool is a float)
    if n is not None:
        return n
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return REFUSED


def _dtype(v: Any, as_dtype: Callable[[Any], Any]) -> Any:
    d = as_dtype(v)
    return REFUSED if d is None else d


ATTR_KINDS: dict[str, AttrKind] = {k.name: k for k in (
    AttrKind("int", "int", False, _int),
    AttrKind("float", "float", False, _float),
    AttrKind("bool", "bool", False, _bool),
    AttrKind("str", "str", False, _str),
    AttrKind("ints", "tuple of ints", False, _ints),
    AttrKind("dims", "tuple of ints", True, _dims),
    AttrKind("optional_int", "int", True, _int),
    AttrKind("optional_float", "float", True, _float),
    AttrKind("scalar", "Number", False, _scalar),
    AttrKind("optional_scalar", "Number", True, _scalar),
    AttrKind("dtype", "torch.dtype", True, _dtype),
)}



# --- output counts: ops whose number of results depends on their arguments -----------------------

def _split_size_count(length: int, attrs: Mapping[str, Any]) -> int:
    size: Any = attrs.get("split_size")
    if not is_int(size) or size <= 0:
        return 1
    return max(1, -(-length // int(size)))


def _split_sizes_count(length: int, attrs: Mapping[str, Any]) -> int:
    sizes = attrs.get("split_sizes")
    return len(sizes) if isinstance(sizes, (list, tuple)) else 1


OUTPUT_COUNTS: dict[str, Callable[[int, Mapping[str, Any]], int]] = {
    "split_size": _split_size_count,  # pieces of `split_size` (split)
    "split_sizes": _split_sizes_count,  # one piece per entry of `split_sizes` (split_with_sizes)
    "dim_size": lambda length, attrs: length,  # one result per index along `dim` (unbind)
}
"""How many results an op whose count depends on its arguments makes, by rule name (the op
table's `output_count`, ListOps `OpInfo.output_count`): from the length of the first input along
attribute `dim` (default 0) and the attributes."""


def count_outputs(rule: str, shape: Sequence[int], attrs: Mapping[str, Any]) -> int:
    """The number of results rule `rule` (see `OUTPUT_COUNTS`) gives for a first input of
    `shape`. Arguments the op will refuse (a 0-d input, `dim` out of range, a bad size) count as
    one result: the op then raises its own error.

    Raises:
        KeyError: `rule` is not one of `OUTPUT_COUNTS`.
    """
    count = OUTPUT_COUNTS[rule]
    dim = attrs.get("dim", 0)
    if not shape or not is_int(dim) or not -len(shape) <= int(dim) < len(shape):
        return 1
    return count(shape[int(dim)], attrs)

# torch's overloads where a None given differs from the argument left out: `x.sum()` is
# `sum()` (SumBackward0), `x.sum(dim=None)` is `sum.dim_IntList` over every dim (SumBackward1;
# `mean` alike). Such a None binds as the value here: every dim, as `dim=[]` (engine and
# client alike, so the client's graph node names stay the server's).
GIVEN_NONE: dict[tuple[str, str], Any] = {("sum", "dim"): (), ("mean", "dim"): ()}


def given_none(op: str, spec: AttrSpec) -> Any:
    """What attribute `spec` of op `op` binds to when None is given for it (`GIVEN_NONE`)."""
    return GIVEN_NONE.get((op, spec.name))


def nullable(spec: AttrSpec) -> bool:
    """Whether the attribute accepts None: never when required; else when its kind does or its
    default is None (ListOps `AttrInfo.nullable`)."""
    kind = ATTR_KINDS.get(spec.kind)
    return not spec.required and ((kind is not None and kind.accepts_none)
                                  or spec.default is None)


@dataclass(frozen=True)
class AttrValidator:
    """Attribute validation and binding, raising the layer's own error types.

    Args:
        type_error: torch's TypeError (a wrong type, a missing or repeated argument).
        value_error: a `str` attribute's value outside its `choices`.
        unknown_attribute: an unexpected keyword argument.
        as_dtype: the layer's dtype for a value (its DType, or a name), None if not a dtype;
            may raise the layer's error for an unknown name.
    """

    type_error: type[TypeError]
    value_error: type[ValueError]
    unknown_attribute: type[Exception]
    as_dtype: Callable[[Any], Any]

    def check(self, op: str, spec: AttrSpec, v: Any) -> Any:
        """The normalised value of attribute `spec` of op `op`.

        Raises:
            type_error: a value the attribute's kind does not accept.
            value_error: a `str` value not among the attribute's `choices`.
        """
        if v is None and nullable(spec):
            return given_none(op, spec)
        kind = ATTR_KINDS.get(spec.kind)
        if kind is None:
            raise AssertionError(f"unknown attribute kind {spec.kind}")
        out = kind.convert(v, self.as_dtype)
        if out is REFUSED:
            expected = ("torch.memory_format" if spec.choices == memory_format.ATTR_CHOICES
                        else kind.expected)
            raise self.type_error(f"{op}(): argument '{spec.name}' must be {expected}, "
                                  f"not {type(v).__name__}")
        if spec.choices and out not in spec.choices:
            raise self.value_error(
                f"{op}(): {spec.name}={v!r} is not one of {', '.join(spec.choices)}")
        return out

    def check_names(self, op: str, specs: Sequence[AttrSpec], names: Iterable[str]) -> None:
        """Check that every attribute name given to op `op` is one of its `specs` (the server
        checks a wire graph's attribute names before binding their values).

        Raises:
            unknown_attribute: a name that is not one of `specs` (torch's text).
        """
        known = {spec.name for spec in specs}
        for k in names:
            if k not in known:
                raise self.unknown_attribute(f"{op}() got an unexpected keyword argument '{k}'")

    def bind(self, op: str, n_inputs: int, specs: Sequence[AttrSpec], extra: Sequence[Any],
             attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Every attribute of op `op` (with `n_inputs` tensor inputs and attributes `specs`):
        positional `extra` first, then by name, each checked; defaults for the rest.

        Raises:
            type_error: too many positional arguments, a repeated or missing required one, or
                a value of the wrong kind.
            unknown_attribute: a name that is not one of `specs`.
        """
        if len(extra) > len(specs):
            raise self.type_error(f"{op}() takes {n_inputs + len(specs)} arguments but "
                                  f"{n_inputs + len(extra)} were given")
        out: dict[str, Any] = {}
        for spec, v in zip(specs, extra):
            out[spec.name] = v
        if attrs:
            self.check_names(op, specs, attrs)
        for k, v in attrs.items():
            if k in out:
                raise self.type_error(f"{op}() got multiple values for argument '{k}'")
            out[k] = v
        for spec in specs:
            if spec.name in out:
                out[spec.name] = self.check(op, spec, out[spec.name])
            elif spec.required:
                raise self.type_error(f"{op}() missing required argument '{spec.name}'")
            else:
                out[spec.name] = spec.default
        return out
