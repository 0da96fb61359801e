"""The instruction tape (`session_pb2.Tape`): decoding it whole, with every field checked.

A tape is a run of out-of-place ops without attributes in packed numbers (docs/wire.md, "The
instruction tape", is the byte-exact description; keep the two in step). `decode` turns one
into a `Decoded` before its batch runs: lengths, word counts, op codes, flags, input kinds and
every constant index are checked here, so the executor (server/batch.py `Executor.tape`) only
resolves handles and runs ops. Nothing is allocated from a wire number before it is bounded:
the code is at most `MAX_WORDS` words, the op-name table at most `MAX_NAMES` names, and the op
count at most what the batch's instruction limit leaves.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

from gradserve.v1 import session_pb2

from .errors import InvalidRequestError, LimitExceededError, Located

#: Words (8 bytes each) of one tape's code, and entries of its float and int constant tables.
MAX_WORDS = 1 << 18
#: Words of code of all the tapes of one batch (decoding holds about 16 bytes per word).
MAX_BATCH_WORDS = 1 << 19
#: Op names in one tape's table.
MAX_NAMES = 4096
_BIG_ENDIAN = sys.byteorder == "big"
assert array("Q").itemsize == array("q").itemsize == array("d").itemsize == 8

#: A VALUE-flagged output's value is sent when it has at most this many elements.
VALUE_MAX_ELEMENTS = 64

# Flags (bits 32-39 of an op's header word).
NO_GRAD = 1
DESCRIBE = 2
VALUE = 4
FLAGS = NO_GRAD | DESCRIBE | VALUE

# Input kinds (the low 3 bits of an input word; the payload is the word >> 3).
HANDLE, FLOAT, INT, BOOL, NONE, CONSTANT = range(6)
KIND_NAMES = ("handle", "float", "int", "bool", "none", "constant")

# Header fields: op code (bits 0-31), flags (32-39), inputs (40-51), outputs (52-63).
MAX_INPUTS = (1 << 12) - 1
MAX_OUTPUTS = (1 << 12) - 1


class Decoded:
    """One tape, checked: `ops` holds (name, flags, input words, output handles) per op (the
    words and handles as `array` slices)."""

    __slots__ = ("ops", "floats", "ints", "constants", "described")

    def __init__(self, ops: list[tuple[str, int, Any, Any]], floats: Any, ints: Any,
                 constants: Any, described: int):
        self.ops = ops
        self.floats = floats
        self.ints = ints
        self.constants = constants
        self.described = described  # outputs of DESCRIBE-flagged ops (the reply's TensorInfos)


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
    (what the batch's limits leave).

    Raises:
        Located: wrapping InvalidRequestError (a malformed tape; `tape_op` names the op, or is
            None for the tape's tables) or LimitExceededError (more ops than `max_ops`, more
            words than `max_words`).
    """
    names = list(m.ops)
    if len(names) > MAX_NAMES:
        raise _bad(None, f"{len(names)} op names, more than the limit of {MAX_NAMES}")
    if len(m.code) // 8 > max_words:
        raise Located(LimitExceededError(
            f"tape: the batch's tapes hold more than {MAX_BATCH_WORDS} words of code; send "
            "fewer ops per batch", limit="max_instructions"))
    words = _table(m.code, "Q", "code")
    floats = _table(m.floats, "d", "the float table")
    ints = _table(m.ints, "q", "the int table")
    constants = m.constants
    n_names, n_floats, n_ints, n_constants = len(names), len(floats), len(ints), len(constants)
    if n_constants > MAX_WORDS:
        raise _bad(None, f"{n_constants} tensor constants, more than the limit of {MAX_WORDS}")
    ops: list[tuple[str, int, Any, Any]] = []
    append = ops.append
    described = 0
    n, pos = len(words), 0
    while pos < n:
        k = len(ops)
        if k >= max_ops:
            raise Located(LimitExceededError(
                f"tape op {k}: the batch holds more ops than the limit of instructions per batch",
                limit="max_instructions"), tape_op=k)
        header = words[pos]
        code, flags = header & 0xFFFFFFFF, (header >> 32) & 0xFF
        n_in, n_out = (header >> 40) & 0xFFF, header >> 52
        start = pos + 1
        end = start + n_in + n_out
        if code >= n_names or flags & ~FLAGS or not n_out or end > n:
            raise _bad(k, _bad_header(code, flags, n_in, n_out, n - start, n_names))
        inputs = words[start:start + n_in]
        for w in inputs:  # the common kinds first; any failure is named by _bad_input
            kind = w & 7
            if kind == HANDLE:
                if w < 8:  # payload 0
                    break
            elif kind == FLOAT:
                if w >> 3 >= n_floats:
                    break
            elif not _payload_ok(kind, w >> 3, n_ints, n_constants):
                break
        else:
            kind = -1
        if kind != -1:
            raise _bad_input(k, inputs, n_floats, n_ints, n_constants)
        outputs = words[start + n_in:end]
        if 0 in outputs:
            raise _bad(k, "handle ids start at 1 (0 means the field was not set)")
        if flags & DESCRIBE:
            described += n_out
        append((names[code], flags, inputs, outputs))
        pos = end
    return Decoded(ops, floats, ints, constants, described)


def _bad_header(code: int, flags: int, n_in: int, n_out: int, left: int, n_names: int) -> str:
    """What is wrong with an op's header (one of the checks `decode` makes at once)."""
    if code >= n_names:
        return f"op code {code} is not an index of the tape's {n_names} op names"
    if flags & ~FLAGS:
        return f"unknown flags {flags & ~FLAGS:#x} (known: NO_GRAD 1, DESCRIBE 2, VALUE 4)"
    if not n_out:
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


def _bad_input(k: int, inputs: Any, n_floats: int, n_ints: int, n_constants: int) -> Located:
    """The error of op `k`'s first invalid input word."""
    for j, w in enumerate(inputs):
        kind, payload = w & 7, w >> 3
        if kind > CONSTANT:
            return _bad(k, f"input {j} has unknown kind {kind}")
        ok = (payload != 0 if kind == HANDLE else payload < n_floats if kind == FLOAT
              else _payload_ok(kind, payload, n_ints, n_constants))
        if not ok:
            return _bad(k, _bad_payload(j, kind, payload, n_floats, n_ints, n_constants))
    raise AssertionError("_bad_input: every input is valid")


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
            f"{KIND_NAMES[kind]} constant(s)")
