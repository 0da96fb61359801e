"""The instruction tape (`session_pb2.Tape`): decoding it whole, with every field checked.

A tape is a run of out-of-place ops in packed numbers, their attributes too (docs/wire.md, "The
instruction tape", is the byte-exact description; keep the two in step). `decode` turns one
into a `Decoded` before its batch runs: lengths, word counts, op codes, flags, input kinds,
every constant index and every attribute word are checked here, the attributes made into the
values an ApplyOp's would decode to, so the executor (server/batch.py `Executor.tape`) only
resolves handles and runs ops. Nothing is allocated from a wire number before it is bounded:
the code and the attribute words are at most `MAX_WORDS` words each, the name tables at most
`MAX_NAMES` names, the op count at most what the batch's instruction limit leaves, and the ints
the attributes' int lists make at most `MAX_WORDS` in all.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

import numpy as np

from gradserve.v1 import attrs as wire_attrs
from gradserve.v1 import session_pb2

from .codec import dtype_name
from .errors import InvalidRequestError, LimitExceededError, Located

#: Words (8 bytes each) of one tape's code, and entries of its float and int constant tables.
MAX_WORDS = 1 << 18
#: Words of code of all the tapes of one batch (decoding holds about 16 bytes per word).
MAX_BATCH_WORDS = 1 << 19
#: Op names in one tape's table.
MAX_NAMES = 4096
#: Tapes of at most this many words are checked op by op (`_decode_short`), longer ones with
#: numpy (`decode`): the same checks, errors and result.
SHORT_WORDS = 256
_BIG_ENDIAN = sys.byteorder == "big"
assert array("Q").itemsize == array("q").itemsize == array("d").itemsize == 8

#: A VALUE-flagged output's value is sent when it has at most this many elements.
VALUE_MAX_ELEMENTS = 64

# Flags (bits 32-39 of an op's header word).
NO_GRAD = 1
DESCRIBE = 2
VALUE = 4
ATTRS = 8  # the op's attributes are the next run of the attribute words (feature "tape_attrs")
INSTRUCTION = 16  # the op is a session instruction (feature "tape_instructions")
FLAGS = NO_GRAD | DESCRIBE | VALUE | ATTRS | INSTRUCTION

# Input kinds (the low 3 bits of an input word; the payload is the word >> 3).
HANDLE, FLOAT, INT, BOOL, NONE, CONSTANT = range(6)
KIND_NAMES = ("handle", "float", "int", "bool", "none", "constant")

# The session instructions an INSTRUCTION-flagged op may name: the Instruction field it stands
# for, and its inputs' names and allowed kinds (the first is required, the others optional).
TAPE_INSTRUCTIONS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "backward": (("tensor", (HANDLE,)), ("retain_graph", (BOOL, NONE)),
                 ("create_graph", (BOOL,))),
    "optimizer_step": (("optimizer", (HANDLE,)),),
    "optimizer_zero_grad": (("optimizer", (HANDLE,)), ("set_to_none", (BOOL, NONE))),
}

# Header fields: op code (bits 0-31), flags (32-39), inputs (40-51), outputs (52-63).
MAX_INPUTS = (1 << 12) - 1
MAX_OUTPUTS = (1 << 12) - 1


class Decoded:
    """One tape, checked: `ops` holds the lists of its ops' names, flags, starts, mids and
    ends (`zip(*ops)` gives one op's): an op's input words are `words[start:mid]`, its output
    handles `words[mid:end]`; `count` ops; `attrs[k]`, the attributes of ATTRS-flagged op `k`
    by name (the values an ApplyOp's `attrs` decode to); `instructions[k]`, INSTRUCTION-flagged
    op `k` as the (Instruction field, message) it stands for."""

    __slots__ = ("ops", "count", "words", "floats", "ints", "constants", "described", "attrs",
                 "instructions")

    def __init__(self, ops: tuple[list[str], list[int], list[int], list[int], list[int]],
                 count: int, words: Any, floats: Any, ints: Any, constants: Any,
                 described: int, attrs: dict[int, dict[str, Any]],
                 instructions: dict[int, tuple[str, Any]] | None = None):
        self.ops = ops
        self.count = count
        self.words = words
        self.floats = floats
        self.ints = ints
        self.constants = constants
        self.described = described  # outputs of DESCRIBE-flagged ops (the reply's TensorInfos)
        self.attrs = attrs
        self.instructions = instructions if instructions is not None else {}


def _bad(op: int | None, text: str) -> Located:
    where = f"tape op {op}: " if op is not None else "tape: "
    return Located(InvalidRequestError(where + text), tape_op=op)


def _table(data: bytes, typecode: str, what: str) -> Any:
    """Little-endian 8-byte entries as an `array` (8 bytes each, unlike a list of ints)."""
    if len(data) % 8:
        raise _bad(None, f"{what} has {len(data)} bytes, not a multiple of 8")
    if len(data) > 8 * MAX_WORDS:
        raise _bad(None, f"{what} has {len(data) // 8} entries, more than the limit of "
                         f"{MAX_WORDS}")
    out = array(typecode)
    out.frombytes(data)
    if _BIG_ENDIAN:
        out.byteswap()
    return out


def decode(m: session_pb2.Tape, max_ops: int, max_words: int = MAX_BATCH_WORDS) -> Decoded:
    """Check and unpack tape `m`, which may hold at most `max_ops` ops and `max_words` words
    of code and attributes (what the batch's limits leave).

    Only the walk from header to header is a Python loop (each header says where the next op
    starts); the headers, inputs and outputs are checked with numpy, all at once, and the first
    op with any fault, in tape order, is the one reported, with the message an op-by-op check
    gives (a header's fault before its inputs', inputs' before outputs', outputs' before its
    attributes'). The attributes of the ops before the first fault are then decoded in order
    (`_decode_attrs`).

    Raises:
        Located: wrapping InvalidRequestError (a malformed tape; `tape_op` names the op, or is
            None for the tape's tables) or LimitExceededError (more ops than `max_ops`, more
            words than `max_words`).
    """
    names = list(m.ops)
    if len(names) > MAX_NAMES:
        raise _bad(None, f"{len(names)} op names, more than the limit of {MAX_NAMES}")
    if (len(m.code) + len(m.attrs)) // 8 > max_words:
        raise Located(LimitExceededError(
            f"tape: the batch's tapes hold more than {MAX_BATCH_WORDS} words of code and "
            "attributes; send fewer ops per batch", limit="max_batch_tape_words"))
    words = _table(m.code, "Q", "code")
    floats = _table(m.floats, "d", "the float table")
    ints = _table(m.ints, "q", "the int table")
    tables = _AttrTables(m, floats, ints)
    constants = m.constants
    n_names, n_constants = len(names), len(constants)
    if n_constants > MAX_WORDS:
        raise _bad(None, f"{n_constants} tensor constants, more than the limit of {MAX_WORDS}")
    n = len(words)
    if n <= SHORT_WORDS:  # numpy's fixed cost per call outweighs the loop's per word
        ops, count, described, failure = _decode_short(words, names, max_ops, len(floats),
                                                       len(ints), n_constants)
        attrs = _decode_attrs(tables, [k for k, f in enumerate(ops[1]) if f & ATTRS],
                              failure is None)
        if failure is not None:
            raise failure
        return Decoded(ops, count, words, floats, ints, constants, described, attrs,
                       _instructions(words, ops, 0))
    w = np.frombuffer(words, dtype=np.uint64)
    # each word's span if it were a header: itself, its inputs and its outputs (at most 8191)
    spans = array("i")
    spans.frombytes((((w >> _IN_SHIFT) & _FIELD) + (w >> _OUT_SHIFT) + _ONE)
                    .astype(np.int32).tobytes())
    heads = array("i")  # each op's header position (int32: a tape has at most MAX_WORDS words)
    head = heads.append
    pos = 0
    max_ops = max(max_ops, 0)
    for _ in range(max_ops + 1):  # op `max_ops`, if there is one, is past the limit
        head(pos)
        pos += spans[pos]
        if pos >= n:
            break
    del spans
    hpos = np.frombuffer(heads, dtype=np.int32)
    h = w[hpos]
    codes = h & _CODE
    flags = (h >> _FLAGS_SHIFT) & _BYTE
    n_in = ((h >> _IN_SHIFT) & _FIELD).astype(np.int32)
    n_out = (h >> _OUT_SHIFT).astype(np.int32)
    ends = hpos + 1 + n_in + n_out
    faulty = ((codes >= n_names) | ((flags & _UNKNOWN_FLAGS) != 0)
              | ((n_out == 0) & ((flags & _INSTRUCTION) == 0)) | (ends > n))
    count = int(faulty.argmax()) if faulty.any() else len(heads)  # ops with valid headers
    failure: Located | None = None
    if count > max_ops:
        count = max_ops
    if count == max_ops and len(heads) > max_ops:
        failure = Located(LimitExceededError(
            f"tape op {count}: the batch holds more ops than the limit of instructions per "
            "batch", limit="max_instructions"), tape_op=count)
    elif count < len(heads):
        k = count
        hd = int(h[k])
        failure = _bad(k, _bad_header(hd & 0xFFFFFFFF, (hd >> 32) & 0xFF, (hd >> 40) & 0xFFF,
                                      hd >> 52, n - heads[k] - 1, n_names))
    if count:
        hpos, n_in, n_out, ends = hpos[:count], n_in[:count], n_out[:count], ends[:count]
        bad = _first_bad_operand(w[:int(ends[-1])], hpos, n_in, len(floats), len(ints),
                                 n_constants)
        if bad is not None:
            start = heads[bad] + 1
            inputs = words[start:start + int(n_in[bad])]
            if _first_bad_input(inputs, len(floats), len(ints), n_constants) is not None:
                failure = _bad_input(bad, inputs, len(floats), len(ints), n_constants)
            else:
                failure = _bad(bad, "handle ids start at 1 (0 means the field was not set)")
            count = bad
        for k in np.flatnonzero(flags[:count] & _INSTRUCTION).tolist():
            hd = int(h[k])
            fault = _instruction_fault(names[hd & 0xFFFFFFFF], (hd >> 32) & 0xFF, hd >> 52,
                                       words[heads[k] + 1:heads[k] + 1 + int(n_in[k])])
            if fault is not None:
                failure, count = _bad(k, fault), k
                break
    flags = flags[:count]
    attrs = _decode_attrs(tables, np.flatnonzero(flags & _ATTRS).tolist(), failure is None)
    if failure is not None:
        raise failure
    hpos, n_in, n_out, ends = hpos[:count], n_in[:count], n_out[:count], ends[:count]
    described = int(n_out[(flags & DESCRIBE) != 0].sum())
    starts = hpos + 1
    mids = starts + n_in
    table = np.array(names, dtype=object)
    ops = (table[codes[:count].astype(np.intp)].tolist(), flags.tolist(), starts.tolist(),
           mids.tolist(), ends.tolist())
    flagged = np.flatnonzero(flags & _INSTRUCTION).tolist()
    return Decoded(ops, count, words, floats, ints, constants, described, attrs,
                   _instructions(words, ops, flagged) if flagged else None)


def _decode_short(words: Any, names: list[str], max_ops: int, n_floats: int, n_ints: int,
                  n_constants: int) -> tuple[Any, int, int, Located | None]:
    """`decode`'s checks op by op, in one loop (a short tape): its `ops` columns, op count and
    DESCRIBE-flagged outputs up to the first faulty op, and that op's error (None: none)."""
    n_names = len(names)
    op_names: list[str] = []
    op_flags: list[int] = []
    starts: list[int] = []
    mids: list[int] = []
    ends: list[int] = []
    described = 0
    failure: Located | None = None
    n, pos = len(words), 0
    while pos < n:
        k = len(op_names)
        if k >= max_ops:
            failure = Located(LimitExceededError(
                f"tape op {k}: the batch holds more ops than the limit of instructions per "
                "batch", limit="max_instructions"), tape_op=k)
            break
        header = words[pos]
        code, flags = header & 0xFFFFFFFF, (header >> 32) & 0xFF
        n_in, n_out = (header >> 40) & 0xFFF, header >> 52
        start = pos + 1
        mid = start + n_in
        end = mid + n_out
        if (code >= n_names or flags & ~FLAGS or not (n_out or flags & INSTRUCTION)
                or end > n):
            failure = _bad(k, _bad_header(code, flags, n_in, n_out, n - start, n_names))
            break
        inputs = words[start:mid]
        if _first_bad_input(inputs, n_floats, n_ints, n_constants) is not None:
            failure = _bad_input(k, inputs, n_floats, n_ints, n_constants)
            break
        if 0 in words[mid:end]:
            failure = _bad(k, "handle ids start at 1 (0 means the field was not set)")
            break
        if flags & INSTRUCTION:
            fault = _instruction_fault(names[code], flags, n_out, inputs)
            if fault is not None:
                failure = _bad(k, fault)
                break
        if flags & DESCRIBE:
            described += n_out
        op_names.append(names[code])
        op_flags.append(flags)
        starts.append(start)
        mids.append(mid)
        ends.append(end)
        pos = end
    return (op_names, op_flags, starts, mids, ends), len(op_names), described, failure


def _instruction_fault(name: str, flags: int, n_out: int, inputs: Any) -> str | None:
    """What is wrong with an INSTRUCTION-flagged op (its input words otherwise valid), or
    None."""
    spec = TAPE_INSTRUCTIONS.get(name)
    if spec is None:
        return (f"flagged INSTRUCTION, but {name!r} is not a tape instruction (known: "
                f"{', '.join(TAPE_INSTRUCTIONS)})")
    if flags != INSTRUCTION:
        return (f"{name}: an INSTRUCTION-flagged op takes no other flag, got flags "
                f"{flags:#x}")
    if n_out:
        return f"{name}: an instruction binds no outputs, but {n_out} are declared"
    if not 1 <= len(inputs) <= len(spec):
        takes = "1 input" if len(spec) == 1 else f"1 to {len(spec)} inputs"
        return f"{name}: takes {takes}, got {len(inputs)}"
    for j, (w, (what, kinds)) in enumerate(zip(inputs, spec)):
        if w & 7 not in kinds:
            allowed = " or ".join(KIND_NAMES[kind] for kind in kinds)
            return (f"{name}: input {j} ({what}) must be of kind {allowed}, not "
                    f"{KIND_NAMES[w & 7]}")
    return None


def _instructions(words: Any, ops: Any, flagged: Any) -> dict[int, tuple[str, Any]]:
    """The checked INSTRUCTION-flagged ops (indices `flagged`, or 0: find them) as the
    (Instruction field, message) each stands for."""
    names, flags, starts, mids = ops[0], ops[1], ops[2], ops[3]
    if not flagged:
        flagged = [k for k, f in enumerate(flags) if f & INSTRUCTION]
    out: dict[int, tuple[str, Any]] = {}
    for k in flagged:
        name = names[k]
        inputs = [(w & 7, w >> 3) for w in words[starts[k]:mids[k]]]
        given = {what: payload for (kind, payload), (what, _) in
                 zip(inputs, TAPE_INSTRUCTIONS[name]) if kind != NONE}
        if name == "backward":
            m: Any = session_pb2.Backward(tensor=given["tensor"],
                                          create_graph=given.get("create_graph", 0) == 1)
            if "retain_graph" in given:
                m.retain_graph = given["retain_graph"] == 1
        elif name == "optimizer_step":
            m = session_pb2.OptimizerStep(optimizer=given["optimizer"])
        else:
            m = session_pb2.OptimizerZeroGrad(optimizer=given["optimizer"])
            if "set_to_none" in given:
                m.set_to_none = given["set_to_none"] == 1
        out[k] = (name, m)
    return out


class _AttrTables:
    """What attribute words index: the tape's attribute words, names, strings, floats, ints."""

    __slots__ = ("words", "names", "strings", "floats", "ints")

    def __init__(self, m: session_pb2.Tape, floats: Any, ints: Any):
        self.words = _table(m.attrs, "Q", "the attribute words")
        self.names = list(m.attr_names)
        if len(self.names) > MAX_NAMES:
            raise _bad(None, f"{len(self.names)} attribute names, more than the limit of "
                             f"{MAX_NAMES}")
        self.strings = m.strings
        if len(self.strings) > MAX_WORDS:
            raise _bad(None, f"{len(self.strings)} strings, more than the limit of {MAX_WORDS}")
        self.floats = floats
        self.ints = ints


def _decode_attrs(t: _AttrTables, flagged: list[int], whole: bool) -> dict[int, dict[str, Any]]:
    """The attributes of the ATTRS-flagged ops `flagged` (their indices, in tape order), each
    its run of the attribute words: {op: {name: value}}. `whole`: these are all the tape's
    ATTRS-flagged ops, so the attribute words must end with the last one's run.

    Raises:
        Located: InvalidRequestError naming the first op with a faulty run, or the tape (words
            left over).
    """
    words = t.words
    n, pos = len(words), 0
    out: dict[int, dict[str, Any]] = {}
    budget = [MAX_WORDS]  # ints the int lists may still make
    for k in flagged:
        if pos >= n:
            raise _bad(k, f"flagged ATTRS, but the {n} attribute words are used up")
        count = words[pos]
        if count > wire_attrs.TAPE_MAX_OP_ATTRS:
            raise _bad(k, f"declares {count} attributes, more than the limit of "
                          f"{wire_attrs.TAPE_MAX_OP_ATTRS}")
        if pos + 1 + count > n:
            raise _bad(k, f"declares {count} attributes, past the end of the attribute words "
                          f"({n - pos - 1} words left)")
        values: dict[str, Any] = {}
        for j, w in enumerate(words[pos + 1:pos + 1 + count]):
            values_key, value = _attr(t, k, j, w, budget)
            if values_key in values:
                raise _bad(k, f"attribute {j}: {values_key!r} is given twice")
            values[values_key] = value
        out[k] = values
        pos += 1 + count
    if whole and pos < n:
        raise _bad(None, f"the attribute words hold {n - pos} words past the last ATTRS-flagged "
                         "op's attributes")
    return out


def _attr(t: _AttrTables, k: int, j: int, w: int, budget: list[int]) -> tuple[str, Any]:
    """Attribute word `w` (op `k`'s `j`-th): its name and value.

    Raises:
        Located: InvalidRequestError naming op `k` (an unknown kind, an index outside its
            table, a payload its kind does not allow, an unknown dtype, the int lists past
            `budget`).
    """
    kind = w & 7
    index = (w >> wire_attrs.TAPE_NAME_SHIFT) & 0xFFF
    payload = w >> wire_attrs.TAPE_PAYLOAD_SHIFT
    if kind > wire_attrs.TAPE_DTYPE:
        raise _bad(k, f"attribute {j} has unknown kind {kind}")
    if index >= len(t.names):
        raise _bad(k, f"attribute {j}: name index {index} is outside the tape's "
                      f"{len(t.names)} attribute name(s)")
    name = t.names[index]
    if kind == wire_attrs.TAPE_INT:
        if payload >= len(t.ints):
            raise _bad(k, _outside(j, name, "int", payload, len(t.ints)))
        return name, t.ints[payload]
    if kind == wire_attrs.TAPE_FLOAT:
        if payload >= len(t.floats):
            raise _bad(k, _outside(j, name, "float", payload, len(t.floats)))
        return name, t.floats[payload]
    if kind == wire_attrs.TAPE_BOOL:
        if payload > 1:
            raise _bad(k, f"attribute {j} ({name!r}): a bool's payload is 0 or 1, got "
                          f"{payload}")
        return name, payload == 1
    if kind == wire_attrs.TAPE_NONE:
        if payload:
            raise _bad(k, f"attribute {j} ({name!r}): a none's payload is 0, got {payload}")
        return name, None
    if kind == wire_attrs.TAPE_STRING:
        if payload >= len(t.strings):
            raise _bad(k, _outside(j, name, "string", payload, len(t.strings)))
        return name, t.strings[payload]
    if kind == wire_attrs.TAPE_DTYPE:
        try:
            return name, dtype_name(payload, f"attribute {j} ({name!r})")
        except InvalidRequestError as exc:
            raise _bad(k, str(exc)) from None
    # TAPE_INTS: the list's length at ints[payload], its ints after it
    ints = t.ints
    if payload >= len(ints):
        raise _bad(k, _outside(j, name, "int", payload, len(ints)))
    length = ints[payload]
    if length < 0 or payload + 1 + length > len(ints):
        raise _bad(k, f"attribute {j} ({name!r}): an int list of {length} ints at int index "
                      f"{payload} does not fit the tape's {len(ints)} int constant(s)")
    budget[0] -= length
    if budget[0] < 0:
        raise _bad(k, f"attribute {j} ({name!r}): the tape's int lists hold more than "
                      f"{MAX_WORDS} ints in all")
    return name, tuple(ints[payload + 1:payload + 1 + length])


def _outside(j: int, name: str, what: str, index: int, size: int) -> str:
    return (f"attribute {j} ({name!r}): {what} index {index} is outside the tape's {size} "
            f"{_entries(what)}")


def _entries(what: str) -> str:
    """The entries of the tape's table an index of kind `what` points into, for messages."""
    return "tensor constant(s)" if what == "constant" else f"{what} constant(s)"


_ONE, _BYTE, _CODE = np.uint64(1), np.uint64(0xFF), np.uint64(0xFFFFFFFF)
_FIELD = np.uint64(0xFFF)
_FLAGS_SHIFT, _IN_SHIFT, _OUT_SHIFT = np.uint64(32), np.uint64(40), np.uint64(52)
_UNKNOWN_FLAGS = np.uint64(0xFF & ~FLAGS)
_ATTRS = np.uint64(ATTRS)
_INSTRUCTION = np.uint64(INSTRUCTION)


def _first_bad_operand(w: Any, hpos: Any, n_in: Any, n_floats: int, n_ints: int,
                       n_constants: int) -> int | None:
    """The first op (of those whose valid headers are at `hpos` in `w`, which ends with the
    last one's words) with an invalid input word or an output handle 0, or None."""
    # int32 positions (a tape has at most MAX_WORDS words): a few bytes a word while checking
    is_head = np.zeros(len(w), dtype=np.int32)
    is_head[hpos] = 1
    op_of = np.cumsum(is_head, dtype=np.int32) - 1  # each word's op
    del is_head
    rel = np.arange(len(w), dtype=np.int32) - hpos[op_of] - 1  # -1: the header
    n_in_of = n_in[op_of]
    # per kind, the payloads valid: lowest, and one past the highest (kinds 6 and 7: none)
    kind = (w & np.uint64(7)).astype(np.intp)
    payload = w >> np.uint64(3)
    low = np.array([1, 0, 0, 0, 0, 0, 1, 1], dtype=np.uint64)
    high = np.array([1 << 61, n_floats, n_ints, 2, 1, n_constants, 0, 0], dtype=np.uint64)
    valid = (payload >= low[kind]) & (payload < high[kind])
    bad = ((rel >= 0) & (rel < n_in_of) & ~valid) | ((rel >= n_in_of) & (w == 0))
    if not bad.any():
        return None
    return int(op_of[int(bad.argmax())])


def _bad_header(code: int, flags: int, n_in: int, n_out: int, left: int, n_names: int) -> str:
    """What is wrong with an op's header (one of the checks `decode` makes at once)."""
    if code >= n_names:
        return f"op code {code} is not an index of the tape's {n_names} op names"
    if flags & ~FLAGS:
        return (f"unknown flags {flags & ~FLAGS:#x} (known: NO_GRAD 1, DESCRIBE 2, VALUE 4, "
                "ATTRS 8, INSTRUCTION 16)")
    if not n_out and not flags & INSTRUCTION:
        return "declares no outputs"
    return (f"declares {n_in} inputs and {n_out} outputs, past the end of the code ({left} "
            "words left)")


def _payload_ok(kind: int, payload: int, n_ints: int, n_constants: int) -> bool:
    """An input word of a kind other than handle or float is valid."""
    if kind == INT:
        return payload < n_ints
    if kind == BOOL:
        return payload <= 1
    if kind == NONE:
        return payload == 0
    return kind == CONSTANT and payload < n_constants


def _first_bad_input(inputs: Any, n_floats: int, n_ints: int,
                     n_constants: int) -> tuple[int, int, int] | None:
    """The index, kind and payload of the first invalid word of `inputs`, or None."""
    for j, w in enumerate(inputs):
        kind, payload = w & 7, w >> 3
        if kind > CONSTANT:
            return j, kind, payload
        ok = (payload != 0 if kind == HANDLE else payload < n_floats if kind == FLOAT
              else _payload_ok(kind, payload, n_ints, n_constants))
        if not ok:
            return j, kind, payload
    return None


def _bad_input(k: int, inputs: Any, n_floats: int, n_ints: int, n_constants: int) -> Located:
    """The error of op `k`'s first invalid input word."""
    found = _first_bad_input(inputs, n_floats, n_ints, n_constants)
    if found is None:
        raise AssertionError("_bad_input: every input is valid")
    j, kind, payload = found
    if kind > CONSTANT:
        return _bad(k, f"input {j} has unknown kind {kind}")
    return _bad(k, _bad_payload(j, kind, payload, n_floats, n_ints, n_constants))


def _bad_payload(j: int, kind: int, payload: int, n_floats: int, n_ints: int,
                 n_constants: int) -> str:
    if kind == HANDLE:
        return f"input {j}: handle ids start at 1 (0 means the field was not set)"
    if kind == BOOL:
        return f"input {j}: a bool input's payload is 0 or 1, got {payload}"
    if kind == NONE:
        return f"input {j}: a none input's payload is 0, got {payload}"
    size = {FLOAT: n_floats, INT: n_ints, CONSTANT: n_constants}[kind]
    return (f"input {j}: {KIND_NAMES[kind]} index {payload} is outside the tape's {size} "
            f"{_entries(KIND_NAMES[kind])}")
