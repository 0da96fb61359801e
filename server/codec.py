"""Tensors, values and attributes between wire messages and the engine.

Decoding checks everything before allocating: the dtype is known, dims are non-negative, the
element count (an exact Python integer, so it cannot overflow) is within the limit, and the
encoding's length matches it. Only then is an array made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import gradserve.engine as ge
from gradserve.v1 import attrs, graph_pb2, tensor_pb2

from .errors import InvalidRequestError, LimitExceededError

MAX_DIMS = 64
#: Ints one list attribute (`AttrValue.ints_value`) may hold: the most a tape's attributes hold
#: in all (docs/wire.md). The longest legitimate lists are a split's sizes (at most
#: `limits.MAX_RESULTS`, 65,536) and a packed sequence's batch sizes (one per step); the ops
#: read a list at ~0.5-1 us an int, in one op nothing interrupts, so a 32 MiB request of one
#: `sum_to_size` with 2**25 dims ran 14 s of CPU past its deadline (red team round 7).
MAX_ATTR_INTS = 1 << 18

# wire enum -> (engine dtype name, little-endian numpy dtype)
_DTYPES: dict[int, tuple[str, np.dtype[Any]]] = {
    tensor_pb2.DTYPE_FLOAT32: ("float32", np.dtype("<f4")),
    tensor_pb2.DTYPE_FLOAT64: ("float64", np.dtype("<f8")),
    tensor_pb2.DTYPE_INT32: ("int32", np.dtype("<i4")),
    tensor_pb2.DTYPE_INT64: ("int64", np.dtype("<i8")),
    tensor_pb2.DTYPE_BOOL: ("bool", np.dtype("?")),
    tensor_pb2.DTYPE_UINT8: ("uint8", np.dtype("|u1")),
    tensor_pb2.DTYPE_INT8: ("int8", np.dtype("|i1")),
    tensor_pb2.DTYPE_INT16: ("int16", np.dtype("<i2")),
}
_WIRE_DTYPE = {name: code for code, (name, _) in _DTYPES.items()}
# which typed list goes with which dtype
_LIST_FIELD = {
    tensor_pb2.DTYPE_FLOAT32: "float_values",
    tensor_pb2.DTYPE_FLOAT64: "double_values",
    tensor_pb2.DTYPE_INT32: "int32_values",
    tensor_pb2.DTYPE_INT64: "int64_values",
    tensor_pb2.DTYPE_BOOL: "bool_values",
    tensor_pb2.DTYPE_UINT8: "int32_values",  # protobuf has no narrower list
    tensor_pb2.DTYPE_INT8: "int32_values",
    tensor_pb2.DTYPE_INT16: "int32_values",
}


def wire_dtype(name: str) -> int:
    """The wire enum value for an engine dtype name."""
    return _WIRE_DTYPE[name]


def dtype_name(code: int, what: str = "tensor") -> str:
    """The engine dtype name for a wire enum value.

    Raises:
        InvalidRequestError: unspecified or unknown dtype.
    """
    if code == tensor_pb2.DTYPE_UNSPECIFIED:
        raise InvalidRequestError(f"{what}: dtype is unspecified (DTYPE_UNSPECIFIED)")
    entry = _DTYPES.get(code)
    if entry is None:
        raise InvalidRequestError(f"{what}: unknown dtype enum value {code}")
    return entry[0]


def checked_numel(shape: Any, max_elements: int, what: str = "tensor") -> int:
    """Elements of `shape`, after checking rank, dims >= 0 and the element limit.

    Raises:
        InvalidRequestError: too many dims or a negative dim.
        LimitExceededError: more than `max_elements` elements.
    """
    if len(shape) > MAX_DIMS:
        raise InvalidRequestError(f"{what}: {len(shape)} dims, more than the maximum {MAX_DIMS}")
    for d in shape:
        if d < 0:
            raise InvalidRequestError(f"{what}: negative dimension {d} in shape {list(shape)}")
        if d > max_elements:  # even with a 0 elsewhere: numpy cannot describe such a shape
            raise LimitExceededError(f"{what}: dimension {d} in shape {list(shape)} is above "
                                     f"the element limit of {max_elements}",
                                     limit="max_tensor_elements")
    if 0 in shape:
        return 0
    n = 1
    for d in shape:
        n *= d  # exact Python integers; we stop as soon as the limit is passed
        if n > max_elements:
            raise LimitExceededError(f"{what}: shape {list(shape)} has more elements than the "
                                     f"limit of {max_elements}", limit="max_tensor_elements")
    return n


def data_bytes(msg: tensor_pb2.Tensor, max_elements: int) -> int:
    """The bytes a Tensor message's data takes once decoded, from its dtype and shape alone
    (its data is not read: reading `raw` copies it); 0 when decoding would refuse the message
    anyway (an unknown dtype, a bad shape), so that decoding names the fault."""
    entry = _DTYPES.get(msg.dtype)
    if entry is None:
        return 0
    try:
        n = checked_numel(tuple(msg.shape), max_elements)
    except (InvalidRequestError, LimitExceededError):
        return 0
    return n * entry[1].itemsize


def decode_array(msg: tensor_pb2.Tensor, max_elements: int, what: str = "tensor",
                 raw: Any = None) -> np.ndarray:
    """A native-endian array from a Tensor message, validated first. It may be a read-only view
    of the message's bytes: copy it before writing (`decode_tensor` does). `raw`: the message's
    raw data when the request's parser held it apart (`graph_request`; the message's own `raw`
    is then empty), checked as `raw` is.

    Raises:
        InvalidRequestError: dtype, shape and data disagree, or the encoding is missing.
        LimitExceededError: too many elements.
    """
    code = msg.dtype
    entry = _DTYPES.get(code)
    if entry is None:
        dtype_name(code, what)  # raises, naming the problem
        raise AssertionError("unreachable")
    name, wire = entry
    shape = tuple(msg.shape)
    n = checked_numel(shape, max_elements, what) if shape else 1
    encoding = msg.WhichOneof("data")
    if encoding == "raw":
        if raw is None:
            raw = msg.raw  # each read of the field copies the bytes out of the message: once
        expected = n * wire.itemsize
        if len(raw) != expected:
            raise InvalidRequestError(
                f"{what}: raw data has {len(raw)} bytes, but shape {list(shape)} of "
                f"{name} needs {expected}")
        if code == tensor_pb2.DTYPE_BOOL and n and np.frombuffer(raw, np.uint8).max() > 1:
            raise InvalidRequestError(f"{what}: bool raw bytes must be 0 or 1")
        # a read-only view of the bytes in its shape (one numpy call: frombuffer and reshape
        # cost twice as much for a small tensor)
        arr: np.ndarray = np.ndarray(shape, wire, raw)
        native = _NATIVE[code]
        return arr if arr.dtype is native or arr.dtype == native else arr.astype(native)
    elif encoding is None:
        raise InvalidRequestError(f"{what}: no data (set exactly one of raw or a typed list)")
    else:
        if encoding != _LIST_FIELD[code]:
            raise InvalidRequestError(f"{what}: {encoding} does not match dtype {name}")
        values = _typed_values(msg, encoding)
        if len(values) != n:
            raise InvalidRequestError(
                f"{what}: {encoding} has {len(values)} elements, but shape {list(shape)} "
                f"needs {n}")
        if wire.itemsize < 4 and wire.kind in "iu" and n:
            _check_narrow(values, name, wire, encoding, what)
        flat = np.array(values, dtype=wire)
    native = _NATIVE[code]
    if flat.dtype is not native and flat.dtype != native:  # big-endian hosts only
        flat = flat.astype(native)
    return flat.reshape(shape)


# wire enum -> the native-endian numpy dtype of its values
_NATIVE = {code: wire.newbyteorder("=") for code, (_, wire) in _DTYPES.items()}


def _check_narrow(values: Any, name: str, wire: np.dtype[Any], encoding: str, what: str) -> None:
    """int32_values for a uint8/int8/int16 tensor: every element within that dtype's range."""
    info = np.iinfo(wire)
    wide = np.array(values, np.int64)
    bad = wide[(wide < info.min) | (wide > info.max)]
    if bad.size:
        raise InvalidRequestError(
            f"{what}: {encoding} holds {int(bad[0])}, outside {name}'s range "
            f"[{info.min}, {info.max}]")


def _typed_values(msg: tensor_pb2.Tensor, encoding: str) -> Any:
    lists = {"float_values": msg.float_values, "double_values": msg.double_values,
             "int32_values": msg.int32_values, "int64_values": msg.int64_values,
             "bool_values": msg.bool_values}
    return lists[encoding].values


def decode_tensor(msg: tensor_pb2.Tensor, max_elements: int, *, requires_grad: bool = False,
                  what: str = "tensor", raw: Any = None) -> ge.Tensor:
    """A new engine leaf tensor from a Tensor message (see `decode_array`, also for `raw`); one
    copy of the data."""
    return ge.tensor(decode_array(msg, max_elements, what, raw), requires_grad=requires_grad)


# numpy dtype -> (wire enum value, little-endian numpy dtype), filled as dtypes are met
_ENCODINGS: dict[np.dtype[Any], tuple[int, np.dtype[Any]]] = {}


def encode_array(arr: np.ndarray, out: tensor_pb2.Tensor | None = None) -> tensor_pb2.Tensor:
    """A Tensor message (raw encoding) holding `arr`: its bytes in C order, copied once."""
    msg = tensor_pb2.Tensor() if out is None else out
    encoding = _ENCODINGS.get(arr.dtype)
    if encoding is None:
        code = _WIRE_DTYPE[ge.dtypes.from_numpy(arr.dtype).name]
        encoding = _ENCODINGS[arr.dtype] = (code, _DTYPES[code][1])
    code, wire = encoding
    msg.dtype = code
    msg.shape.extend(arr.shape)
    # tobytes() copies any layout out in C order; astype only on big-endian hosts
    msg.raw = (arr if arr.dtype == wire else arr.astype(wire)).tobytes()
    return msg


# --- serialized messages, written directly -------------------------------------------------------
#
# A reply's tensor data is copied once into the reply's bytes: a message's `raw` field copies its
# data in, and serializing the message copies it again (0.1-0.3 ms per MiB each, and as many MiB of
# page faults). `tensor_parts` and `framed` write protobuf's encoding of a Tensor and of the
# messages around it as parts (bytes, and the arrays themselves) that `b"".join` copies once; the
# result is byte for byte what SerializeToString makes of the same message (fields in number
# order, packed shape, an unset implicit-presence field left out).


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of `n` >= 0 (a 64-bit two's complement for a negative one)."""
    if n < 0x80:
        return _SMALL_VARINTS[n] if n >= 0 else varint(n + (1 << 64))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = [bytes((i,)) for i in range(0x80)]

# A message's parts (bytes-like objects, joined in order) and their total length in bytes.
Parts = tuple[list[Any], int]


def framed(tag: bytes, parts: Parts) -> Parts:
    """`parts` as a length-delimited field: `tag` (the field's key byte(s)), the length, the
    parts."""
    head = tag + varint(parts[1])
    return [head, *parts[0]], len(head) + parts[1]


def text_field(tag: bytes, text: str) -> bytes:
    """A string field, or nothing for "" (proto3 leaves an empty implicit-presence field out)."""
    if not text:
        return b""
    data = text.encode()
    return tag + varint(len(data)) + data


def tensor_parts(arr: np.ndarray, snapshot: bool = False) -> Parts:
    """The serialized Tensor message (raw encoding) of `arr`, as `encode_array` would make it,
    holding `arr` itself as its data part when it is little-endian and C-contiguous (joined,
    that is its one copy; otherwise the bytes of one converted copy). `snapshot`: copy the data
    now (work still to run may write to `arr`)."""
    if not arr.shape:  # one value (a loss, a scalar's gradient): its bytes, after a fixed head
        head = _SCALAR_HEADS.get(arr.dtype)
        if head is not None:
            return [head, arr.tobytes() if snapshot else arr], len(head) + arr.itemsize
    encoding = _ENCODINGS.get(arr.dtype)
    if encoding is None:
        code = _WIRE_DTYPE[ge.dtypes.from_numpy(arr.dtype).name]
        encoding = _ENCODINGS[arr.dtype] = (code, _DTYPES[code][1])
    code, wire = encoding
    head = b"\x08" + varint(code)  # dtype; never DTYPE_UNSPECIFIED (0), so always written
    shape = arr.shape
    if shape:
        dims = b"".join([varint(d) for d in shape])
        head += b"\x12" + varint(len(dims)) + dims
    nbytes = arr.nbytes
    data: Any = arr
    if arr.dtype != wire:  # big-endian hosts only
        data = arr.astype(wire, order="C")
    elif snapshot or not arr.flags.c_contiguous:
        data = arr.tobytes()  # C order, as encode_array sends it
    head += b"\x1a" + varint(nbytes)
    if not shape and data is arr:
        _SCALAR_HEADS[arr.dtype] = head  # a 0-d array of the wire's byte order
    return [head, data], len(head) + nbytes


# numpy dtype -> the head `tensor_parts` writes before a 0-d array's bytes (dtype and length)
_SCALAR_HEADS: dict[np.dtype[Any], bytes] = {}


def encode_tensor(t: ge.Tensor, out: tensor_pb2.Tensor | None = None) -> tensor_pb2.Tensor:
    """A Tensor message holding the value of engine tensor `t`."""
    return encode_array(t.numpy(force=True), out)


# --- values and attributes ------------------------------------------------------------------------

Resolver = Callable[[graph_pb2.Value], Any]


def decode_value(msg: graph_pb2.Value, resolve: Resolver, max_elements: int,
                 what: str = "input") -> Any:
    """An op input: an engine Tensor, a Python scalar, or None.

    `resolve` turns handle and ref values into tensors (and rejects the kind it does not allow).
    """
    kind = msg.WhichOneof("kind")
    if kind == "float_scalar":
        return float(msg.float_scalar)
    if kind == "int_scalar":
        return int(msg.int_scalar)
    if kind == "bool_scalar":
        return bool(msg.bool_scalar)
    if kind == "none":
        return None
    if kind == "constant":
        return decode_tensor(msg.constant, max_elements, what=what)
    if kind in ("handle", "ref"):
        return resolve(msg)
    raise InvalidRequestError(f"{what}: value has no kind set")


def decode_attr(msg: graph_pb2.AttrValue, what: str = "attribute") -> Any:
    """A Python attribute value for the engine (it checks kinds against the op's spec).

    Raises:
        InvalidRequestError: no kind set, or an unspecified dtype.
    """
    if msg.WhichOneof("kind") == "ints_value" and len(msg.ints_value.values) > MAX_ATTR_INTS:
        raise InvalidRequestError(f"{what}: a list of {len(msg.ints_value.values)} ints, more "
                                  f"than the limit of {MAX_ATTR_INTS}")
    try:
        return attrs.decode_attr(msg, lambda code: dtype_name(code, what))
    except attrs.UnsetAttrError:
        raise InvalidRequestError(f"{what}: value has no kind set") from None


def decode_attrs(attrs: Mapping[str, graph_pb2.AttrValue], op: str) -> dict[str, Any]:
    """All attributes of one op application."""
    return {name: decode_attr(v, f"{op}() attribute '{name}'") for name, v in attrs.items()}


def _dtype_code(value: Any) -> int | None:
    return _WIRE_DTYPE[value.name] if isinstance(value, ge.DType) else None


def encode_attr(value: Any, out: graph_pb2.AttrValue) -> None:
    """Write a Python attribute value (a catalogue default) into `out`."""
    attrs.encode_attr(value, out, _dtype_code)
