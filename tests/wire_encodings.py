"""Legal protobuf encodings of a message other than the generated code's, for conformance tests.

A client in another language writes its requests with whatever protobuf library it has, and a
conformant encoder may produce any of these for the same message (protobuf's encoding spec):
fields in any order, a repeated field's elements interleaved with other fields, repeated scalars
unpacked or in several packed runs (empty ones too), a submessage split into pieces that merge, a
scalar or a oneof member written more than once (the last wins), implicit-presence fields written
with their default value, map entries in any order (each entry's key and value in either order),
unknown fields of every wire type (groups too), and non-minimal varints (within protobuf's own
bounds: a tag or a length at most 5 bytes, a value at most 10). Not an unknown field inside a
map entry: protobuf's Python parser keeps such an entry as an unknown field of the map's
message, out of the map. `encode(msg, rng, variations)` writes one encoding, walking the message
by its descriptor; protobuf's `FromString` of it equals `msg` (the tests check that too, so a bug
here cannot pass for the server's).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD

#: The variations that keep an encoding legal (protobuf parses it to the same message).
ALL = frozenset({"shuffle", "unpack", "split", "unknown", "pad", "defaults", "repeat",
                 "empty_packed"})
#: Beyond protobuf's bounds: a length or a tag padded past 5 bytes, which protobuf's parser
#: refuses (a server must refuse it too).
OVERPAD = frozenset({"overpad_lengths", "overpad_tags"})

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5

_VARINT_TYPES = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_BOOL,
                 FD.TYPE_ENUM, FD.TYPE_SINT32, FD.TYPE_SINT64}
_FIXED = {FD.TYPE_DOUBLE: (I64, "<d"), FD.TYPE_FLOAT: (I32, "<f"), FD.TYPE_FIXED64: (I64, "<Q"),
          FD.TYPE_SFIXED64: (I64, "<q"), FD.TYPE_FIXED32: (I32, "<I"),
          FD.TYPE_SFIXED32: (I32, "<i")}


def varint(n: int, pad: int = 0) -> bytes:
    """`n` (a negative one as its 64-bit two's complement) as a varint, `pad` bytes longer
    than needed (at most 10 bytes in all)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n == 0:
            break
        out.append(b | 0x80)
    out.append(b)
    pad = max(0, min(pad, 10 - len(out)))
    if pad:
        out[-1] |= 0x80
        out += b"\x80" * (pad - 1) + b"\x00"
    return bytes(out)


class _Writer:
    def __init__(self, rng: random.Random, variations: Iterable[str]):
        self.rng = rng
        self.v = frozenset(variations)
        unknown = self.v - ALL - OVERPAD
        if unknown:
            raise ValueError(f"unknown variations {sorted(unknown)}")

    def on(self, name: str, p: float = 0.5) -> bool:
        return name in self.v and self.rng.random() < p

    def _pad(self, most: int, n: int) -> int:
        if not self.on("pad", 0.3):
            return 0
        return self.rng.randint(1, max(1, most - len(varint(n))))

    def _overpad(self, name: str, n: int) -> int:
        return 10 - len(varint(n)) if self.on(name, 0.3) else 0

    def tag(self, number: int, wire_type: int) -> bytes:
        key = number << 3 | wire_type
        return varint(key, self._overpad("overpad_tags", key) or self._pad(5, key))

    def length(self, data: bytes) -> bytes:
        n = len(data)
        return varint(n, self._overpad("overpad_lengths", n) or self._pad(5, n))

    def value_varint(self, n: int) -> bytes:
        return varint(n, self._pad(10, n if n >= 0 else n + (1 << 64)))

    # --- scalars -----------------------------------------------------------------------------

    def scalar(self, fd: Any, value: Any) -> bytes:
        """The value alone (no tag) of a non-message field."""
        t = fd.type
        if t in _VARINT_TYPES:
            n = int(value)
            if t == FD.TYPE_SINT32 or t == FD.TYPE_SINT64:
                n = (n << 1) ^ (n >> 63)
            return self.value_varint(n)
        if t in _FIXED:
            return struct.pack(_FIXED[t][1], value)
        data = value.encode("utf-8") if t == FD.TYPE_STRING else bytes(value)
        return self.length(data) + data

    def wire_type(self, fd: Any) -> int:
        if fd.type in _VARINT_TYPES:
            return VARINT
        if fd.type in _FIXED:
            return _FIXED[fd.type][0]
        return LEN

    def field(self, fd: Any, value: Any) -> bytes:
        """One occurrence of field `fd` holding `value` (a message or a scalar)."""
        if fd.type == FD.TYPE_MESSAGE:
            body = self.message(value)
            return self.tag(fd.number, LEN) + self.length(body) + body
        return self.tag(fd.number, self.wire_type(fd)) + self.scalar(fd, value)

    # --- messages ----------------------------------------------------------------------------

    def message(self, msg: Any, defaults: bool = True) -> bytes:
        """`msg`'s encoding: its fields' runs (each run's parts stay in order), interleaved.
        `defaults`: whether an unset field may be written with its default value (not in the
        second piece of a split message: it would replace the first piece's value)."""
        runs: list[list[bytes]] = []
        oneofs: dict[str, list[bytes]] = {}
        for fd in msg.DESCRIPTOR.fields:
            run = self.runs_of(msg, fd, defaults)
            if fd.containing_oneof is not None and run:
                oneofs.setdefault(fd.containing_oneof.name, []).extend(run)
            elif run:
                runs.append(run)
        for oneof in msg.DESCRIPTOR.oneofs:
            if oneof.name in oneofs:
                runs.append(self.oneof_decoys(msg, oneof) + oneofs[oneof.name])
        if self.on("unknown", 0.3):
            runs += [[self.unknown()] for _ in range(self.rng.randint(1, 3))]
        if "shuffle" not in self.v:
            return b"".join(p for run in runs for p in run)
        return b"".join(self._interleave(runs))

    def _interleave(self, runs: list[list[bytes]]) -> list[bytes]:
        slots = [i for i, run in enumerate(runs) for _ in run]
        self.rng.shuffle(slots)
        at = [0] * len(runs)
        out = []
        for i in slots:
            out.append(runs[i][at[i]])
            at[i] += 1
        return out

    def runs_of(self, msg: Any, fd: Any, defaults: bool = True) -> list[bytes]:
        """The parts of field `fd` of `msg`, in the order they must keep."""
        if fd.is_repeated:
            values = getattr(msg, fd.name)
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                return self.map_entries(fd, values)
            if fd.type == FD.TYPE_MESSAGE or fd.type in (FD.TYPE_STRING, FD.TYPE_BYTES):
                return [self.field(fd, v) for v in values]
            return self.packable(fd, list(values))
        if fd.type == FD.TYPE_MESSAGE:
            if not msg.HasField(fd.name):
                return []
            return self.submessage(fd, getattr(msg, fd.name))
        value = getattr(msg, fd.name)
        present = (msg.HasField(fd.name) if fd.has_presence else value != fd.default_value)
        if not present:
            if defaults and fd.containing_oneof is None and self.on("defaults", 0.3):
                return [self.field(fd, value)]  # the default, written out
            return []
        parts = [self.field(fd, value)]
        if self.on("repeat", 0.3):  # an earlier value that the last one replaces
            parts.insert(0, self.field(fd, _other_value(fd, value, self.rng)))
        return parts

    def submessage(self, fd: Any, value: Any) -> list[bytes]:
        """A singular message field: whole, or split into two occurrences that merge."""
        present = [f for f in value.DESCRIPTOR.fields if _is_set(value, f)]
        if len(present) < 2 or not self.on("split", 0.4):
            return [self.field(fd, value)]
        self.rng.shuffle(present)
        cut = self.rng.randint(1, len(present) - 1)
        parts = []
        for first, group in ((True, present[:cut]), (False, present[cut:])):
            piece = type(value)()
            for f in group:
                _copy_field(value, piece, f)
            body = self.message(piece, defaults=first)
            parts.append(self.tag(fd.number, LEN) + self.length(body) + body)
        return parts

    def packable(self, fd: Any, values: list[Any]) -> list[bytes]:
        """A repeated numeric field: one packed run, several (maybe empty), or unpacked."""
        if not values:
            if self.on("empty_packed", 0.2):
                return [self.tag(fd.number, LEN) + self.length(b"")]
            return []
        if self.on("unpack", 0.5):
            if self.rng.random() < 0.5:
                return [self.tag(fd.number, self.wire_type(fd)) + self.scalar(fd, v)
                        for v in values]
            # packed runs and single elements, mixed
            parts, i = [], 0
            while i < len(values):
                n = self.rng.randint(0, len(values) - i)
                if n == 0 and self.rng.random() < 0.5:
                    parts.append(self.tag(fd.number, self.wire_type(fd))
                                 + self.scalar(fd, values[i]))
                    i += 1
                    continue
                body = b"".join(self.scalar(fd, v) for v in values[i:i + n])
                parts.append(self.tag(fd.number, LEN) + self.length(body) + body)
                i += n
            return parts
        body = b"".join(self.scalar(fd, v) for v in values)
        parts = [self.tag(fd.number, LEN) + self.length(body) + body]
        if self.on("empty_packed", 0.2):
            parts.insert(self.rng.randint(0, 1), self.tag(fd.number, LEN) + self.length(b""))
        return parts

    def map_entries(self, fd: Any, mapping: Any) -> list[bytes]:
        entry = fd.message_type
        kf, vf = entry.fields_by_name["key"], entry.fields_by_name["value"]
        keys = list(mapping)
        if "shuffle" in self.v:
            self.rng.shuffle(keys)
        parts = []
        for k in keys:
            fields = [self.field(kf, k), self.field(vf, mapping[k])]
            if "shuffle" in self.v:
                self.rng.shuffle(fields)
            body = b"".join(fields)
            parts.append(self.tag(fd.number, LEN) + self.length(body) + body)
        return parts

    def oneof_decoys(self, msg: Any, oneof: Any) -> list[bytes]:
        """Earlier members of a set oneof, which the set one (written after them) replaces."""
        if not self.on("repeat", 0.3):
            return []
        chosen = msg.WhichOneof(oneof.name)
        others = [f for f in oneof.fields if f.name != chosen]
        if not others:
            return []
        fd = self.rng.choice(others)
        if fd.type == FD.TYPE_MESSAGE:
            return [self.tag(fd.number, LEN) + self.length(b"")]
        return [self.field(fd, _other_value(fd, fd.default_value, self.rng))]

    def unknown(self, depth: int = 0) -> bytes:
        """A field no message here declares, of a random wire type (a group holds more)."""
        number = self.rng.randint(1000, 5000)
        wt = self.rng.choice([VARINT, I64, LEN, I32, SGROUP] if depth < 3 else
                             [VARINT, I64, LEN, I32])
        if wt == VARINT:
            return self.tag(number, VARINT) + self.value_varint(self.rng.getrandbits(64))
        if wt == I64:
            return self.tag(number, I64) + self.rng.randbytes(8)
        if wt == I32:
            return self.tag(number, I32) + self.rng.randbytes(4)
        if wt == LEN:
            data = self.rng.randbytes(self.rng.randint(0, 12))
            return self.tag(number, LEN) + self.length(data) + data
        inner = b"".join(self.unknown(depth + 1) for _ in range(self.rng.randint(0, 2)))
        return self.tag(number, SGROUP) + inner + self.tag(number, EGROUP)


def _is_set(msg: Any, fd: Any) -> bool:
    if fd.is_repeated:
        return len(getattr(msg, fd.name)) > 0
    if fd.type == FD.TYPE_MESSAGE or fd.has_presence:
        return msg.HasField(fd.name)
    return getattr(msg, fd.name) != fd.default_value


def _copy_field(src: Any, dst: Any, fd: Any) -> None:
    if fd.is_repeated:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            target = getattr(dst, fd.name)
            for k, v in getattr(src, fd.name).items():
                if fd.message_type.fields_by_name["value"].type == FD.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        else:
            getattr(dst, fd.name).extend(getattr(src, fd.name))
    elif fd.type == FD.TYPE_MESSAGE:
        getattr(dst, fd.name).CopyFrom(getattr(src, fd.name))
    else:
        setattr(dst, fd.name, getattr(src, fd.name))


def _other_value(fd: Any, value: Any, rng: random.Random) -> Any:
    """A value of `fd`'s type other than `value` (for a write that a later one replaces)."""
    t = fd.type
    if t == FD.TYPE_BOOL:
        return not value
    if t == FD.TYPE_STRING:
        return value + "x"
    if t == FD.TYPE_BYTES:
        return bytes(value) + b"x"
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return float(value) + 1.5
    if t == FD.TYPE_ENUM:
        return 1 if value != 1 else 2
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return (int(value) + 1) % (1 << 32)
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return (int(value) + 1) % (1 << 64)
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return -1 if value != -1 else 7
    return -(1 << 40) if value != -(1 << 40) else 7


def encode(msg: Any, rng: random.Random, variations: Iterable[str] = ALL) -> bytes:
    """One legal encoding of `msg` with some of `variations` (each applied at random places)."""
    return _Writer(rng, variations).message(msg)
