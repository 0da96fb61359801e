"""Attribute kinds on the wire (`WIRE_KINDS`, `KIND_NAMES`) and Python values as `AttrValue`
messages and back: the one encoder and decoder the server (catalogue defaults, a call's
attributes) and the client (a call's attributes, ListOps' defaults) share. Hand-written, not
generated; numpy and protobuf only.

A dtype is each side's own class, so the caller says how to read one (`dtype_code`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import catalogue_pb2, graph_pb2

# Each attribute kind of the surface (`signature.ATTR_KINDS`, which also
# says which accept None) -> (wire kind, which AttrValue fields it accepts besides none_value).
WIRE_KINDS: dict[str, tuple[int, frozenset[str]]] = {
    "int": (catalogue_pb2.ATTR_KIND_INT, frozenset({"int_value"})),
    "float": (catalogue_pb2.ATTR_KIND_FLOAT, frozenset({"float_value", "int_value"})),
    "bool": (catalogue_pb2.ATTR_KIND_BOOL, frozenset({"bool_value"})),
    "str": (catalogue_pb2.ATTR_KIND_STRING, frozenset({"string_value"})),
    "ints": (catalogue_pb2.ATTR_KIND_INTS, frozenset({"ints_value"})),
    "dims": (catalogue_pb2.ATTR_KIND_INT_OR_INTS, frozenset({"int_value", "ints_value"})),
    "optional_int": (catalogue_pb2.ATTR_KIND_OPTIONAL_INT, frozenset({"int_value"})),
    "optional_float": (catalogue_pb2.ATTR_KIND_OPTIONAL_FLOAT,
                       frozenset({"float_value", "int_value"})),
    "scalar": (catalogue_pb2.ATTR_KIND_SCALAR,
               frozenset({"int_value", "float_value", "bool_value"})),
    "optional_scalar": (catalogue_pb2.ATTR_KIND_SCALAR_OR_NONE,
                        frozenset({"int_value", "float_value", "bool_value"})),
    "dtype": (catalogue_pb2.ATTR_KIND_DTYPE, frozenset({"dtype_value"})),
}

# The surface kind of each wire kind (a client reads ListOps with it).
KIND_NAMES: dict[int, str] = {wire: name for name, (wire, _) in WIRE_KINDS.items()}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def encode_attr(value: Any, out: graph_pb2.AttrValue,
                dtype_code: Callable[[Any], int | None]) -> None:
    """Write a Python attribute value (None, bool, int, float, str, ints, dtype) into `out`.

    Args:
        dtype_code: the wire dtype code of `value` if it is a dtype, else None.

    Raises:
        TypeError: a value no attribute kind accepts (named by its type only: the repr of a
            client Tensor would send the half-built instruction).
    """
    if value is None:
        out.none_value.SetInParent()
    elif isinstance(value, (bool, np.bool_)):
        out.bool_value = bool(value)
    elif isinstance(value, (int, np.integer)):
        out.int_value = int(value)
    elif isinstance(value, (float, np.floating)):
        out.float_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        out.ints_value.values.extend(int(v) for v in value)
    else:
        code = dtype_code(value)
        if code is None:
            raise TypeError(f"an attribute cannot be a {type(value).__name__}")
        out.dtype_value = code


class UnsetAttrError(ValueError):
    """An `AttrValue` with no kind set."""


def decode_attr(msg: graph_pb2.AttrValue, dtype_of: Callable[[int], Any]) -> Any:
    """The Python value of an `AttrValue` (None, bool, int, float, str, a tuple of ints, a dtype).

    Args:
        dtype_of: this side's dtype for a wire dtype code (it may refuse an unknown one).

    Raises:
        UnsetAttrError: no kind is set (the server refuses the request, a client reads none).
    """
    kind = msg.WhichOneof("kind")
    if kind == "int_value":
        return int(msg.int_value)
    if kind == "float_value":
        return float(msg.float_value)
    if kind == "bool_value":
        return bool(msg.bool_value)
    if kind == "string_value":
        return str(msg.string_value)
    if kind == "ints_value":
        return tuple(int(v) for v in msg.ints_value.values)
    if kind == "dtype_value":
        return dtype_of(msg.dtype_value)
    if kind == "none_value":
        return None
    raise UnsetAttrError("value has no kind set")


# --- attributes on the instruction tape (Tape.attrs; docs/wire.md, "Attributes") ---------------

#: An attribute word's kind (bits 0-2): 1-4 read as the input kinds do (a float, an int from
#: the tape's tables; a bool, None in the payload); 0 a list of ints, 5 a string, 6 a dtype.
TAPE_INTS, TAPE_FLOAT, TAPE_INT, TAPE_BOOL, TAPE_NONE, TAPE_STRING, TAPE_DTYPE = range(7)
#: An attribute word is `kind | name << TAPE_NAME_SHIFT | payload << TAPE_PAYLOAD_SHIFT`: the
#: name an index into `Tape.attr_names` (12 bits), the payload the rest (49 bits).
TAPE_NAME_SHIFT = 3
TAPE_PAYLOAD_SHIFT = 15
#: Attributes of one tape op, and ints of one int-list attribute the Python client puts on a
#: tape (a longer list is sent in an ApplyOp).
TAPE_MAX_OP_ATTRS = 255
TAPE_MAX_INTS = 4096

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def tape_attr(value: Any, dtype_code: Callable[[Any], int | None]) -> tuple[int, Any] | None:
    """(tape attribute kind, the value the word or the tables hold) of a Python attribute
    value, as `encode_attr` would send it: an int, a float, a bool, None, a str, a tuple of
    ints or a dtype's wire code. None for a value a tape does not carry (one `encode_attr`
    refuses, an int outside int64, a list longer than `TAPE_MAX_INTS`, a string with a lone
    surrogate): send it in an ApplyOp, which refuses or carries it as before.

    Args:
        dtype_code: the wire dtype code of `value` if it is a dtype, else None.
    """
    if value is None:
        return TAPE_NONE, None
    if isinstance(value, (bool, np.bool_)):
        return TAPE_BOOL, int(bool(value))
    if isinstance(value, (int, np.integer)):
        v = int(value)
        return (TAPE_INT, v) if _INT64_MIN <= v <= _INT64_MAX else None
    if isinstance(value, (float, np.floating)):
        return TAPE_FLOAT, float(value)
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # protobuf would refuse it when the batch is sent
                return None
        return TAPE_STRING, value
    if isinstance(value, (tuple, list)):
        if len(value) > TAPE_MAX_INTS or not all(_is_int(v) for v in value):
            return None
        ints = tuple(int(v) for v in value)
        if not all(_INT64_MIN <= v <= _INT64_MAX for v in ints):
            return None
        return TAPE_INTS, ints
    code = dtype_code(value)
    return None if code is None else (TAPE_DTYPE, code)
