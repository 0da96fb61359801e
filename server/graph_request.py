"""RunGraph's request parser: large input tensors' data stays in the request's bytes.

protobuf's parse copies a `bytes` field into the message, and each read of the field copies it
out again (`Tensor.raw`): two copies of every input before the engine makes its own. For a
request that carries a large raw input (a 1 MiB tensor: ~0.1 ms of the call's copying),
`parse_run_graph` walks the request's top-level fields and its `inputs` map entries itself,
hands protobuf the request with each such input's raw data left out (its `raw` field kept,
empty, so the message still says which encoding it has), and keeps that data as a zero-copy
view of the request's bytes, keyed by input name. The decoder checks the view exactly as it
checks `raw` (`codec.decode_array`).

Only a plainly encoded request is cut: each entry a key and a value, each of those once, a
tensor with one `raw` field and no other encoding, no input named twice, at most `MAX_FIELDS`
fields in the request and in each tensor. Anything else, a
malformed one included, goes to protobuf whole, as before (and fails as before: what is cut is
well-formed, and bytes fields are not checked beyond their length).
"""

from __future__ import annotations

from typing import Any

from gradserve.v1 import service_pb2

from . import wire_diagnosis
from .codec import varint

# A raw input of at least this many bytes stays in the request's bytes (below, protobuf's two
# copies cost less than walking the fields in Python).
MIN_RAW_BYTES = 1 << 16
# The walk gives up (protobuf parses the request whole) past this many fields in the request or
# in one tensor: a request of large inputs has few fields, while a 64 MiB request of two-byte
# fields would otherwise cost the walk 32M Python tuples (gigabytes, tens of seconds).
MAX_FIELDS = 256

_INPUTS = 2  # RunGraphRequest.inputs (a map<string, Tensor>: entries with key 1, value 2)
_RAW = 3  # Tensor.raw; Tensor's other data fields are 4-8 (the `data` oneof)
_LENGTH_DELIMITED = 2


class RunGraphCall:
    """A parsed RunGraphRequest whose large raw inputs' data is held apart (see the module doc).

    Attributes:
        message: the request, with those inputs' `raw` fields empty.
        raw: input name -> the data of its `raw` field (a read-only memoryview).
    """

    __slots__ = ("message", "raw")

    def __init__(self, message: service_pb2.RunGraphRequest, raw: dict[str, memoryview]):
        self.message = message
        self.raw = raw


class _Unplain(Exception):
    """Not a plainly encoded request: protobuf parses it whole."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it.

    Raises:
        _Unplain: truncated, or longer than 10 bytes.
    """
    read = wire_diagnosis.read_varint(data, pos, len(data), 10)
    if read is None:
        raise _Unplain
    return read


def _length(data: bytes, pos: int) -> tuple[int, int]:
    """A length-delimited field's length at `pos` and the position after it: as `_varint`,
    but at most 5 bytes, as protobuf's parser reads a length (it refuses a longer one, padded
    or not; the walk rewrites some lengths, so it must not accept one protobuf would refuse).

    Raises:
        _Unplain: truncated, or longer than 5 bytes.
    """
    n, end = _varint(data, pos)
    if end - pos > 5:
        raise _Unplain
    return n, end


def _skip(data: bytes, pos: int, wire_type: int, limit: int) -> int:
    """The position after a field's value of `wire_type` starting at `pos` (within `limit`).

    Raises:
        _Unplain: groups, unknown wire types, or a value past `limit`.
    """
    if wire_type == 0:
        _, pos = _varint(data, pos)
    elif wire_type == 1:
        pos += 8
    elif wire_type == 2:
        n, pos = _length(data, pos)
        pos += n
    elif wire_type == 5:
        pos += 4
    else:
        raise _Unplain
    if pos > limit:
        raise _Unplain
    return pos


def _fields(data: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, start of the field's tag, start of its value) of each field in
    data[pos:end], and (0, 0, end, end) last.

    Raises:
        _Unplain: a field does not end within `end`, or there are more than MAX_FIELDS.
    """
    out = []
    while pos < end:
        if len(out) == MAX_FIELDS:
            raise _Unplain
        tag_at = pos
        key, pos = _varint(data, pos)
        if pos > end:
            raise _Unplain
        out.append((key >> 3, key & 7, tag_at, pos))
        pos = _skip(data, pos, key & 7, end)
    out.append((0, 0, end, end))
    return out


def _cut_entry(data: bytes, view: memoryview, start: int, end: int
               ) -> tuple[str, list[Any] | None, memoryview | None]:
    """One `inputs` entry, data[start:end] (its fields, without the entry's tag and length):
    its key, and when its tensor's raw data is large, the entry's fields as parts with that data
    left out, and the data; else (key, None, None).

    Raises:
        _Unplain, UnicodeDecodeError: not a plain entry (see the module doc).
    """
    fields = _fields(data, start, end)[:-1]
    if sorted(f[0] for f in fields) != [1, 2] or any(f[1] != _LENGTH_DELIMITED for f in fields):
        raise _Unplain
    key = ""
    value_at = 0
    for number, _, _, at in fields:
        if number == 1:
            n, body = _length(data, at)
            key = data[body:body + n].decode("utf-8")  # protobuf checks strings: so do we
        else:
            value_at = at
    n, body = _length(data, value_at)
    body_end = body + n
    data_fields = [f for f in _fields(data, body, body_end)[:-1] if f[0] >= _RAW]
    if len(data_fields) != 1 or data_fields[0][:2] != (_RAW, _LENGTH_DELIMITED):
        raise _Unplain  # no encoding, a typed list, several, unknown fields: protobuf decides
    raw_at = data_fields[0][3]
    n, raw_body = _length(data, raw_at)
    if n < MIN_RAW_BYTES:
        return key, None, None
    raw_end = raw_body + n
    # the tensor: its fields before the raw data, the raw field's tag with length 0, the rest
    tensor = [view[body:raw_at], b"\x00", view[raw_end:body_end]]
    tensor_len = (raw_at - body) + 1 + (body_end - raw_end)
    # the entry: the key (before or after the value), the value's tag and new length, the tensor
    return key, [view[start:value_at], varint(tensor_len), *tensor,
                 view[body_end:end]], view[raw_body:raw_end]


def parse_run_graph(data: bytes) -> service_pb2.RunGraphRequest | RunGraphCall:
    """The RunGraphRequest in `data`, its large raw inputs held apart (a `RunGraphCall`) when
    it has any.

    Raises:
        google.protobuf.message.DecodeError: `data` does not parse (as FromString).
    """
    if len(data) >= MIN_RAW_BYTES:
        try:
            cut = _cut(data)
        except (_Unplain, UnicodeDecodeError):
            cut = None
        if cut is not None:
            return RunGraphCall(service_pb2.RunGraphRequest.FromString(cut[0]), cut[1])
    return service_pb2.RunGraphRequest.FromString(data)


def _cut(data: bytes) -> tuple[bytes, dict[str, memoryview]] | None:
    """The request's bytes with large raw inputs left out, and those inputs' data; None when
    it has none.

    Raises:
        _Unplain, UnicodeDecodeError: see `_cut_entry`.
    """
    view = memoryview(data)
    parts: list[Any] = []
    raw: dict[str, memoryview] = {}
    keys: set[str] = set()
    fields = _fields(data, 0, len(data))
    for (number, wire_type, tag_at, at), nxt in zip(fields, fields[1:]):
        end = nxt[2]
        if number == _INPUTS:
            if wire_type != _LENGTH_DELIMITED:
                raise _Unplain
            n, body = _length(data, at)
            key, entry, payload = _cut_entry(data, view, body, body + n)
            if key in keys:
                raise _Unplain  # the last entry of a key wins: left to protobuf
            keys.add(key)
            if entry is not None and payload is not None:
                size = sum(len(p) for p in entry)
                parts += [view[tag_at:at], varint(size), *entry]
                raw[key] = payload
                continue
        parts.append(view[tag_at:end])
    if not raw:
        return None
    return b"".join(parts), raw
