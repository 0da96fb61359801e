"""Where request bytes stop being protobuf: the first fault, named for the caller.

protobuf's parser refuses bytes with one of a few texts ("Wire format was corrupt", "String field
had bad UTF-8") that do not say where: a client written in another language from the protos
cannot tell which of its fields it encoded wrongly. `diagnose` walks the bytes as protobuf reads
them, by the request message's descriptor, and returns the first fault it finds: the field (a
path such as `graph.nodes[2].inputs[0].ref.id`, with `<field 9>` for a number the message does
not declare), the byte offset, and what is wrong. It runs only after protobuf refused the bytes
(`wire_guard`), so it adds nothing to a call that parses; it never allocates from a wire number,
walks iteratively (nesting costs no recursion) and gives up, returning None, past `MAX_FIELDS`
fields or when it finds nothing (protobuf's own text then stands alone).

The rules are protobuf's (upb, protobuf's Python parser): a tag and a length are varints of at
most 5 bytes, any other varint at most 10; field number 0 and wire types 6 and 7 do not exist; a
group ends with its own end tag; messages and groups nest at most `MAX_DEPTH` deep; a proto3
`string` (map keys too) is valid UTF-8. A known field sent with another wire type is an unknown
field to protobuf, skipped like one, and so it is here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from google.protobuf.descriptor import FieldDescriptor as FD

#: Nesting protobuf's parser allows (upb's default recursion limit): messages and groups.
MAX_DEPTH = 100
#: Fields walked before giving up (5-8 us each on the loaded 2-core VM: at most ~0.1 s of a worker,
#: for a request that failed anyway).
MAX_FIELDS = 10_000
#: The same on the event loop (health and reflection requests, stateless calls tried there):
#: ~2 ms at the most, so that malformed requests cannot hold the loop's health checks.
LOOP_FIELDS = 256
#: A fault's field path is shown up to this many characters (its end).
MAX_PATH_CHARS = 160

_FIXED_SIZES = {FD.TYPE_DOUBLE: 8, FD.TYPE_FIXED64: 8, FD.TYPE_SFIXED64: 8,
                FD.TYPE_FLOAT: 4, FD.TYPE_FIXED32: 4, FD.TYPE_SFIXED32: 4}
_LENGTH_DELIMITED_TYPES = {FD.TYPE_MESSAGE, FD.TYPE_STRING, FD.TYPE_BYTES}


class Fault(NamedTuple):
    """The first place protobuf's parser refuses: the field's path, its byte offset, what."""

    field: str
    offset: int
    problem: str

    def __str__(self) -> str:
        field = self.field
        if len(field) > MAX_PATH_CHARS:  # groups nested 100 deep
            field = "..." + field[-MAX_PATH_CHARS:]
        where = f"field {field}" if field else "the message itself"
        return f"at byte {self.offset}, {where}: {self.problem}"


class _Frame(NamedTuple):
    descriptor: Any  # the message's descriptor; None inside an unknown field's group
    end: int  # where the message ends (a group: its parent's end)
    path: str
    counts: dict[int, int]  # field number -> occurrences so far (the index of a repeated one)
    group: int  # the field number of the group this frame is, 0 for a message


def read_varint(data: bytes, pos: int, end: int, most: int) -> tuple[int, int] | None:
    """The varint at `pos` (of at most `most` bytes, ending by `end`) and the position after
    it; None when it is truncated or longer."""
    result = shift = 0
    stop = min(end, pos + most)
    while pos < stop:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
    return None


def _bytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n} bytes"


def _name(frame: _Frame, fd: Any, number: int) -> str:
    base = f"{frame.path}." if frame.path else ""
    if fd is None:
        return f"{base}<field {number}>"
    if fd.is_repeated:
        index = frame.counts.get(number, 0)
        frame.counts[number] = index + 1
        return f"{base}{fd.name}[{index}]"
    return base + fd.name


def _wire_type(fd: Any) -> int:
    if fd.type in _FIXED_SIZES:
        return 1 if _FIXED_SIZES[fd.type] == 8 else 5
    return 2 if fd.type in _LENGTH_DELIMITED_TYPES else 0


def _packed(data: bytes, pos: int, end: int, fd: Any) -> str | None:
    """The fault in a packed run of `fd`'s scalars data[pos:end], if any."""
    size = _FIXED_SIZES.get(fd.type)
    if size is not None:
        if (end - pos) % size:
            return f"a packed run of {end - pos} bytes is not a whole number of {size}-byte values"
        return None
    while pos < end:
        read = read_varint(data, pos, end, 10)
        if read is None:
            return "a packed varint is truncated or longer than 10 bytes"
        pos = read[1]
    return None


def diagnose(data: bytes, descriptor: Any, max_fields: int = MAX_FIELDS) -> Fault | None:
    """The first fault protobuf's parser meets in `data` as a message of `descriptor`, or None
    (none found, or more than `max_fields` fields)."""
    frames = [_Frame(descriptor, len(data), "", {}, 0)]
    pos = 0
    for _ in range(max_fields):
        frame = frames[-1]
        if pos >= frame.end:
            if frame.group:
                return Fault(frame.path, pos, "a group that never ends (no end-group tag)")
            frames.pop()
            if not frames:
                return None
            continue
        where = frame.path
        read = read_varint(data, pos, frame.end, 5)
        if read is None:
            return Fault(where, pos, "a tag that is truncated or longer than 5 bytes")
        key, after = read
        number, wire_type = key >> 3, key & 7
        if number == 0 or key >> 32:
            return Fault(where, pos, f"field number {number} (numbers are 1 to 536870911)")
        if wire_type in (6, 7):
            return Fault(where, pos, f"wire type {wire_type} does not exist")
        fd = (frame.descriptor.fields_by_number.get(number)
              if frame.descriptor is not None else None)
        if fd is not None and wire_type != _wire_type(fd) and not (
                wire_type == 2 and fd.is_repeated and fd.type not in _LENGTH_DELIMITED_TYPES):
            fd = None  # protobuf reads it as an unknown field
        name = _name(frame, fd, number)
        start, pos = pos, after
        if wire_type == 4:
            if frame.group != number:
                return Fault(name, start, "an end-group tag without its start")
            frames.pop()
            continue
        if wire_type == 3:
            if len(frames) > MAX_DEPTH:
                return Fault(name, start, f"nested more than {MAX_DEPTH} deep")
            frames.append(_Frame(None, frame.end, name, {}, number))
            continue
        if wire_type == 0:
            read = read_varint(data, pos, frame.end, 10)
            if read is None:
                return Fault(name, start, "a varint that is truncated or longer than 10 bytes")
            pos = read[1]
            continue
        if wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            if pos + size > frame.end:
                return Fault(name, start, f"a value of {size} bytes with {frame.end - pos} "
                                          "left in its message")
            pos += size
            continue
        read = read_varint(data, pos, frame.end, 5)
        if read is None:
            return Fault(name, start, "a length that is truncated or longer than 5 bytes")
        n, pos = read
        if n > frame.end - pos:
            return Fault(name, start, f"a length of {_bytes(n)} with {frame.end - pos} left "
                                      "in its message")
        if fd is not None and fd.type == FD.TYPE_MESSAGE:
            if len(frames) > MAX_DEPTH:
                return Fault(name, start, f"nested more than {MAX_DEPTH} deep")
            frames.append(_Frame(fd.message_type, pos + n, name, {}, 0))
            continue
        if fd is not None and fd.type == FD.TYPE_STRING:
            try:
                data[pos:pos + n].decode("utf-8")
            except UnicodeDecodeError as exc:
                return Fault(name, start, f"a string that is not valid UTF-8 (byte "
                                          f"{pos + exc.start} of the request)")
        elif fd is not None and fd.type != FD.TYPE_BYTES:
            problem = _packed(data, pos, pos + n, fd)
            if problem is not None:
                return Fault(name, start, problem)
        pos += n
    return None
