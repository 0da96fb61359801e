"""Recording instructions locally and sending them as one batch when a value or effect is needed.

A `Recorder` keeps the pending `BatchRequest`, and for each instruction a sink (what to do with
its result) and the user's (file, line) that recorded it. `flush()` appends the handles the
program dropped since the last request (a `ReleaseQueue`, fed by weakref finalizers), sends the
batch with a fresh request id, and applies the results. When the server reports that instruction
k failed, the error is raised with the user's line of instruction k; tensors the batch would have
bound from k on are marked failed, and using them raises the same error again.

Ops go on a `Tape` (docs/wire.md): packed numbers appended to Python lists, one Tape
instruction per run of ops between other instructions, with the user's line of every op, so an
op failing inside a tape is reported at its own line. An op's attributes go on it too when the
server takes them (feature "tape_attrs"), else the op is sent as an ApplyOp. At flush, a tape
asks the server to describe (DESCRIBE) and send the small values of (VALUE) only the outputs
the program still holds; outputs it dropped are neither described nor sent.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np

import gradserve.surface
from gradserve.v1 import attrs as wire_attrs
from gradserve.v1 import session_pb2 as spb

from .codec import dtype_code
from .errors import failed_index, failed_tape_op, from_rpc_error, predecessor_pending

# Frames in these folders are the library's, not the user's: the client's own, and the surface's
# spellings (gradserve.surface) that record ops through it.
_LIBRARY_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
               os.path.dirname(os.path.abspath(gradserve.surface.__file__)) + os.sep)

Sink = Callable[[spb.InstructionResult], None]


class ReleaseQueue:
    """Handles dropped by the program, to be released with the next request (thread-safe: a
    deque's append and popleft are atomic, so `put`, which runs for every dropped tensor, takes
    no lock)."""

    def __init__(self) -> None:
        self._handles: deque[int] = deque()
        self.append = self._handles.append  # `put` for a caller that checks `closed` itself
        self.closed = False

    def put(self, handle: int) -> None:
        if not self.closed:
            self.append(handle)

    def take(self) -> list[int]:
        """The handles put so far, in order (those put meanwhile wait for the next take)."""
        popleft = self._handles.popleft
        return [popleft() for _ in range(len(self._handles))]

    def put_back(self, handles: list[int]) -> None:
        self._handles.extendleft(reversed(handles))

    def __len__(self) -> int:
        return len(self._handles)


_NO_SITE = ("<unknown>", 0)  # the origin when no user frame is found


def user_origin(depth: int = 2) -> tuple[str, int]:
    """(file, line) of the innermost frame outside gradserve.client and .surface: the user's op.

    `depth`: frames to skip from the caller of this function (`sys._getframe(depth)`), which
    must all be client code. Hot paths skip the frames they know are ours in one jump, since
    every frame walked with `f_back` costs a frame object.
    """
    frame: Any = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else _NO_SITE


def user_site(depth: int = 2) -> tuple[Any, int] | None:
    """What `user_origin` finds, as (code object, last instruction offset): cheaper to take
    than the line (found only if an error needs it, `site_origin`), for the tape's hot path.
    None when no user frame is found."""
    frame: Any = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back
    return (frame.f_code, frame.f_lasti) if frame is not None else None


def site_origin(site: tuple[Any, int] | None) -> tuple[str, int]:
    """The (file, line) of a `user_site`."""
    if site is None:
        return _NO_SITE
    code, lasti = site
    for start, end, line in code.co_lines():
        if start <= lasti < end and line is not None:
            return (code.co_filename, line)
    return (code.co_filename, code.co_firstlineno)


# Tape encoding (docs/wire.md; the server's checks are server/tape.py).
NO_GRAD, DESCRIBE, VALUE, ATTRS, INSTRUCTION = 1, 2, 4, 8, 16
HANDLE, FLOAT, INT, BOOL, NONE, CONSTANT = range(6)
# A tape is closed and a new one started past these (the server's limits are 2**18 words and
# 4096 names); an op with more inputs or outputs than a header holds is sent as ApplyOp.
TAPE_WORDS = 1 << 16
TAPE_NAMES = 4096
MAX_TAPE_ARGS = (1 << 12) - 1
MAX_TAPE_HANDLE = 1 << 61
_BIG_ENDIAN = sys.byteorder == "big"
_ALL_BITS = (1 << 64) - 1
# From this many ops on, a tape's flags are set with numpy (a fixed cost of some µs) rather
# than op by op (about half a µs each).
_VECTOR_OPS = 64


_A_INTS, _A_FLOAT, _A_INT = wire_attrs.TAPE_INTS, wire_attrs.TAPE_FLOAT, wire_attrs.TAPE_INT
_A_STRING = wire_attrs.TAPE_STRING
_NAME_SHIFT, _PAYLOAD_SHIFT = wire_attrs.TAPE_NAME_SHIFT, wire_attrs.TAPE_PAYLOAD_SHIFT


def tape_attrs(attrs: dict[str, Any]) -> tuple[tuple[str, int, Any], ...] | None:
    """An op's attributes as `Tape.add_attrs` takes them, or None when a tape cannot carry one
    of them (`wire_attrs.tape_attr`; the op is then sent as an ApplyOp)."""
    items = []
    for name, value in attrs.items():
        found = wire_attrs.tape_attr(value, dtype_code)
        if found is None:
            return None
        items.append((name, *found))
    return tuple(items)


def _packed(typecode: str, values: list[Any]) -> bytes:
    data = array(typecode, values)
    if _BIG_ENDIAN:
        data.byteswap()
    return data.tobytes()


class Tape:
    """The ops of one pending Tape instruction: packed words, attribute words and constant
    tables (see docs/wire.md), plus each op's header position and the user's line that
    recorded it."""

    __slots__ = ("names", "code", "floats", "ints", "constants", "heads", "origins", "attrs",
                 "attr_names", "strings")

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.code: list[int] = []
        self.floats: list[float] = []
        self.ints: list[int] = []
        self.constants: list[Any] = []  # tensor_pb2.Tensor messages
        self.heads: list[int] = []
        self.origins: list[tuple[Any, int] | None] = []  # `user_site`s
        self.attrs: list[int] = []  # attribute words
        self.attr_names: dict[str, int] = {}
        self.strings: list[str] = []

    def full(self) -> bool:
        return len(self.code) >= TAPE_WORDS or len(self.names) >= TAPE_NAMES

    def full_for_attrs(self) -> bool:
        """Full, or past what an op with attributes may still add to (the server's limits
        hold with room for one op's: at most 255 attributes, int lists of 4096 ints)."""
        return (len(self.code) >= TAPE_WORDS or len(self.names) >= TAPE_NAMES
                or len(self.attrs) >= TAPE_WORDS or len(self.ints) >= TAPE_WORDS
                or len(self.attr_names) >= TAPE_NAMES)

    def add_attrs(self, items: tuple[tuple[str, int, Any], ...]) -> None:
        """Append an op's attributes: `items` are (name, kind, value) as `tape_attrs` makes
        them (the op's header carries ATTRS)."""
        words, names = self.attrs, self.attr_names
        words.append(len(items))
        for name, kind, v in items:
            index = names.get(name)
            if index is None:
                index = names[name] = len(names)
            word = index << _NAME_SHIFT | kind
            if kind == _A_INT:
                word |= len(self.ints) << _PAYLOAD_SHIFT
                self.ints.append(v)
            elif kind == _A_FLOAT:
                word |= len(self.floats) << _PAYLOAD_SHIFT
                self.floats.append(v)
            elif kind == _A_INTS:
                ints = self.ints
                word |= len(ints) << _PAYLOAD_SHIFT
                ints.append(len(v))
                ints.extend(v)
            elif kind == _A_STRING:
                word |= len(self.strings) << _PAYLOAD_SHIFT
                self.strings.append(v)
            elif v:  # bool (0 or 1), dtype (its wire code): in the word; none: 0
                word |= v << _PAYLOAD_SHIFT
            words.append(word)

    def add_instruction(self, name: str, inputs: list[int], site: tuple[Any, int] | None) -> None:
        """Append a session instruction (INSTRUCTION-flagged, no outputs; feature
        "tape_instructions"): `inputs` its input words, `site` the user's line (`user_site`)."""
        index = self.names.setdefault(name, len(self.names))
        code = self.code
        self.heads.append(len(code))
        code.append(index | INSTRUCTION << 32 | len(inputs) << 40)
        code.extend(inputs)
        self.origins.append(site)

    def outputs(self, k: int) -> list[int]:
        """Op `k`'s output handles."""
        code, pos = self.code, self.heads[k]
        header = code[pos]
        start = pos + 1 + ((header >> 40) & 0xFFF)
        return code[start:start + (header >> 52)]

    def encode(self, out: Any, live: dict[int, Any]) -> None:
        """Fill Tape message `out`; ops none of whose outputs is in `live` (the program dropped
        them) lose their DESCRIBE flag, the others get VALUE."""
        packed = array("Q", self.code)
        if len(self.heads) >= _VECTOR_OPS:
            self._flag_vector(packed, live)
        else:
            self._flag_loop(packed, live)
        if _BIG_ENDIAN:
            packed.byteswap()
        out.ops.extend(self.names)
        out.code = packed.tobytes()
        if self.floats:
            out.floats = _packed("d", self.floats)
        if self.ints:
            out.ints = _packed("q", self.ints)
        if self.constants:
            out.constants.extend(self.constants)
        if self.attrs:
            out.attrs = _packed("Q", self.attrs)
            out.attr_names.extend(self.attr_names)
            if self.strings:
                out.strings.extend(self.strings)

    def _flag_loop(self, packed: array[int], live: dict[int, Any]) -> None:
        """`encode`'s flags, op by op (a short tape)."""
        code = self.code
        value, keep = VALUE << 32, ~(DESCRIBE << 32)
        for pos in self.heads:
            header = code[pos]
            start = pos + 1 + ((header >> 40) & 0xFFF)
            n = header >> 52
            if code[start] in live if n == 1 else any(
                    h in live for h in code[start:start + n]):
                packed[pos] = header | value
            else:
                packed[pos] = header & keep

    def _flag_vector(self, packed: array[int], live: dict[int, Any]) -> None:
        """`encode`'s flags for every op at once (numpy over the packed words, a view)."""
        code = np.frombuffer(packed, dtype=np.uint64)
        heads = np.array(self.heads, dtype=np.intp)
        headers = code[heads]
        n_out = (headers >> 52).astype(np.intp)
        # (an instruction has no output: its `first` is the next op's, or past the end)
        first = np.minimum(heads + 1 + ((headers >> 40) & 0xFFF).astype(np.intp), len(code) - 1)
        if len(live) > len(heads):  # a dict lookup per op: no pass over every held handle
            held = np.fromiter((h in live for h in code[first].tolist()), bool, len(heads))
        else:
            held = np.isin(code[first], np.fromiter(live, dtype=np.uint64))
        held &= n_out > 0
        for k in np.flatnonzero(n_out > 1).tolist():  # the others of a several-output op
            held[k] = any(h in live for h in self.outputs(k))
        code[heads] = np.where(held, headers | np.uint64(VALUE << 32),
                               headers & np.uint64(_ALL_BITS ^ (DESCRIBE << 32)))


class Started:
    """A started ExecuteBatch call (the pipelined mode's): `result()` waits for its reply,
    passed through `received`, or raises its grpc.RpcError; `done()` tells whether it came.

    Args:
        future: the call's grpc.Future (None with `error`).
        received: what the reply goes through first (the session's bookkeeping), or None.
        error: the call's grpc.RpcError when it failed as it was started (a closed channel).
    """

    __slots__ = ("_future", "_received", "_error")

    def __init__(self, future: Any,
                 received: Callable[[spb.BatchResponse], spb.BatchResponse] | None = None,
                 error: BaseException | None = None):
        self._future = future
        self._received = received
        self._error = error

    def done(self) -> bool:
        return self._error is not None or self._future.done()

    def result(self) -> spb.BatchResponse:
        if self._error is not None:
            raise self._error
        response = self._future.result()
        return response if self._received is None else self._received(response)


class Recorder:
    """The pending batch of one session.

    Args:
        send: `send(request) -> BatchResponse`, raising grpc.RpcError on failure.
        session_id: the session the batches are for.
        target: the server's address, named in errors.
        start: `start(request) -> Started`: the call started without waiting for it (the
            pipelined mode's way to send; default none: `send_async` then sends at once).
        in_flight: the pipelined mode's batches on the server at once: 1, or 2 when the server
            takes BatchRequest.after_request_id (feature "batch_after"; each batch then names
            the one before it, so they still run in order and not after a failure).
    """

    def __init__(self, send: Callable[[spb.BatchRequest], spb.BatchResponse], session_id: str,
                 target: str, live: dict[int, Any] | None = None,
                 tape_sink: Callable[[spb.InstructionResult, int], None] | None = None,
                 start: Callable[[spb.BatchRequest], Started] | None = None,
                 in_flight: int = 1):
        self._send = send
        self._start = start
        self.in_flight = in_flight
        self.session_id = session_id
        self.target = target
        self.request = spb.BatchRequest()
        self.sinks: list[Sink | None] = []
        # per instruction: the user's (file, line), or the `user_site` it is found from when
        # an error needs it (the line is not worked out for every instruction)
        self.origins: list[tuple[Any, int]] = []
        self.bound: list[list[Any]] = []  # per instruction: client tensors it binds
        self.released = ReleaseQueue()
        self.lock = threading.RLock()
        self.round_trips = 0
        # request ids: this recorder's random prefix and a count (unique without a uuid4's
        # system call per batch)
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count()
        self.done = 0  # the last batch (by round_trips) whose results were applied
        # `live`: {handle: weakref} of the tensors the program holds (to describe, or give an
        # error to, only those). `tape_sink`: where every tape's result goes; None: the server
        # takes no tapes (every op is an ApplyOp).
        self.live = live
        self.tape_sink = tape_sink
        self.tapes: dict[int, Tape] = {}  # pending tapes by instruction index
        self.open: Tape | None = None  # the tape at the end of the batch, if it is one
        self.ops = 0  # pending instructions, a tape's ops counted one each
        # the session's epoch when a batch is taken (its tapes' values are of that epoch)
        self.clock: Callable[[], int] | None = None
        # pipelined mode: the batches in flight (taken) and their started calls, oldest first
        self._inflight: deque[tuple[tuple[Any, ...], Started]] = deque()
        self.failed: BaseException | None = None  # a background batch's error, not raised yet
        self.unapplied: list[int] = []  # handles it (and what was dropped after it) left unbound

    def add(self, sink: Sink | None = None, binds: list[Any] | None = None,
            origin: tuple[str, int] | None = None) -> spb.Instruction:
        """A new pending instruction (fill it in); `binds` are tensors it will bind; `origin`:
        the user's (file, line) that recorded it (default: found from the caller's caller)."""
        self.open = None
        self.ops += 1
        self.sinks.append(sink)
        self.bound.append(binds or [])
        self.origins.append(origin or user_site(3) or _NO_SITE)
        return self.request.instructions.add()

    def tape(self) -> Tape:
        """The open tape at the end of the batch, started (as a new instruction) when the last
        instruction is not a tape or the tape is full."""
        tape = self.open
        if tape is None or tape.full():
            self.add(None, None, ("<tape>", 0))  # its result goes to `tape_sink`
            tape = Tape()
            self.tapes[len(self.sinks) - 1] = tape
            self.open = tape
        return tape

    def truncate(self, n: int) -> None:
        """Drop pending instructions from index `n` on (one that failed while being built)."""
        del self.request.instructions[n:]
        del self.sinks[n:], self.bound[n:], self.origins[n:]
        for k in [k for k in self.tapes if k >= n]:
            if self.tapes.pop(k) is self.open:
                self.open = None

    def __len__(self) -> int:
        return len(self.sinks)

    def flush(self) -> spb.BatchResponse | None:
        """Send the pending instructions (and releases) and wait for the reply; None when there
        was nothing to send. A batch the pipelined mode sent in the background is waited for
        first (its error, if any, is raised here: see `wait`).

        Raises:
            The mapped error of the failing instruction (see `errors.from_rpc_error`).
        """
        with self.lock:
            self.wait()
            if not self.sinks:
                return None
            return self._run(self._take())

    def send_async(self) -> None:
        """Pipelined mode: start the call of the pending instructions and return without
        waiting for its reply. At most `in_flight` batches are on the server at once: the
        oldest one's reply is waited for and applied first when that many are. With two, the
        new batch names the one before it (after_request_id): the server runs it after that
        one, and refuses it, running nothing, if that one failed. gRPC sends the request from
        this thread and receives the reply on its own, without the GIL, while the program
        records on; replies are applied in order by a later `send_async`, `poll` or `wait`. An
        error is raised by the next `wait`; until then nothing more is sent, and what is
        recorded meanwhile is dropped in chunks of what would have been sent (every tensor it
        makes carries the error)."""
        with self.lock:
            inflight = self._inflight
            while inflight and (len(inflight) >= self.in_flight or inflight[0][1].done()):
                self._settle()
            if self.failed is not None:
                self._discard()
                return
            if not self.sinks:
                return
            batch = self._take()
            if self._start is None:
                self._run(batch, False)
                return
            if inflight:  # runs after the batch before it, and only if that one succeeds
                batch[0].after_request_id = inflight[-1][0][0].request_id
            try:
                call = self._start(batch[0])
            except grpc.RpcError as err:  # refused before it was sent (a closed channel)
                call = Started(None, None, err)
            inflight.append((batch, call))

    def poll(self) -> None:
        """Apply the replies that have come of the batches in flight, in order (without
        waiting), as `_settle` does."""
        inflight = self._inflight
        if inflight and inflight[0][1].done():
            with self.lock:
                while inflight and inflight[0][1].done():
                    self._settle()

    def _settle(self) -> None:
        """Wait for the oldest batch in flight, if any, and apply its reply, keeping its error
        in `failed` (raised by `wait`, where the program reads next). A batch after a failed
        one was refused (or, sent without waiting for that one, is dropped): its tensors carry
        the first error."""
        inflight = self._inflight
        if not inflight:
            return
        batch, call = inflight.popleft()
        try:
            self._run(batch, False, call)
        except Exception as exc:  # noqa: BLE001 - kept for `wait`, which raises it
            self.unapplied.extend(getattr(exc, "_gradserve_unapplied", ()))
            if self.failed is None:
                self.failed = exc

    def _discard(self) -> None:
        """Drop the pending instructions unsent (after a background failure); the tensors they
        would make get the error when it is raised (`wait`)."""
        self.unapplied.extend(_unapplied(self.bound, self.tapes, 0, None))
        self.request, self.sinks, self.origins, self.bound = spb.BatchRequest(), [], [], []
        self.tapes, self.open, self.ops = {}, None, 0

    def wait(self) -> None:
        """Wait for the batch sent in the background, if any.

        Raises:
            Its error, at the user's line that recorded the failing op. The instructions
            recorded since it was sent are then dropped, unsent (they ran after the failing
            line in the program), and the tensors they would have made carry the error.
        """
        if not self._inflight and self.failed is None:
            return
        with self.lock:
            while self._inflight:
                self._settle()
            exc = self.failed
            if exc is None:
                return
            self._discard()
            _mark(exc, self.unapplied, self.live or {})
            self.failed, self.unapplied = None, []
        raise exc

    def close(self) -> None:
        """Wait for the batches in flight, if any, ignoring their errors."""
        with self.lock:
            failed = self.failed
            while self._inflight:
                self._settle()
            self.failed = failed

    def _take(self) -> tuple[Any, ...]:
        """Detach the pending batch, encoded and stamped, ready to send."""
        request, sinks, origins, bound = self.request, self.sinks, self.origins, self.bound
        self.request, self.sinks, self.origins, self.bound = spb.BatchRequest(), [], [], []
        tapes, self.tapes, self.open, self.ops = self.tapes, {}, None, 0
        live = self.live if self.live is not None else {}
        for at, tape in tapes.items():
            tape.encode(request.instructions[at].tape, live)
        released = self.released.take()
        if released:
            request.instructions.add().release.handles.extend(released)
        request.session_id = self.session_id
        request.request_id = f"{self._id_prefix}{next(self._ids):016x}"
        self.round_trips += 1
        epoch = self.clock() if self.clock is not None else 0
        return request, sinks, origins, bound, tapes, live, released, epoch, self.round_trips

    def _run(self, batch: tuple[Any, ...], mark: bool = True,
             call: Started | None = None) -> spb.BatchResponse:
        """Send a taken batch (or, given its started `call`, wait for its reply) and apply
        its results. On failure, the tensors it did not make get the error now (`mark`), or,
        for a pipelined batch, when `wait` raises it (so that where an error surfaces does not
        depend on when the reply came)."""
        request, sinks, origins, bound, tapes, live, released, epoch, number = batch
        try:
            response = self._send(request) if call is None else call.result()
        except grpc.RpcError as err:
            if (call is not None and request.after_request_id and self.failed is None
                    and predecessor_pending(err)):
                # it reached the server before the batch it follows, whose reply has been
                # applied since (replies are settled in order): send it again, in order now
                request.ClearField("after_request_id")
                return self._run(batch, mark)
            k = failed_index(err)
            origin = origins[k] if k is not None and k < len(origins) else None
            if origin is not None and not isinstance(origin[0], str):  # a user_site
                origin = site_origin(origin)
            j = failed_tape_op(err) if k in tapes else None
            if k in tapes and tapes[k].origins:  # the failing op's line (or the tape's first)
                sites = tapes[k].origins
                origin = site_origin(sites[j] if j is not None and j < len(sites) else sites[0])
            exc = from_rpc_error(err, self.target, origin)
            unapplied = _unapplied(bound, tapes, k if k is not None else 0, j)
            if mark:
                _mark(exc, unapplied, live)
            else:
                exc._gradserve_unapplied = unapplied  # type: ignore[attr-defined]
            if released and (k is None or k < len(sinks)):
                self.released.put_back(released)
            raise exc from None
        results = response.results
        tape_sink = self.tape_sink
        for i, sink in enumerate(sinks):
            if i in tapes:
                if tape_sink is not None:
                    tape_sink(results[i], epoch)
            elif sink is not None:
                sink(results[i])
        self.done = number
        return response

    def flush_if_pending(self) -> None:
        """Flush when instructions are pending (dropped handles alone wait for the next one);
        wait for a background batch either way."""
        if self.sinks:
            self.flush()
        else:
            self.wait()


def _unapplied(bound: list[list[Any]], tapes: dict[int, Tape], start: int,
               j: int | None) -> list[int]:
    """The handles a failed batch did not bind: those of its instructions from `start` on (of
    a tape's ops from `j` on when `start` is that tape)."""
    handles = [t._handle for tensors in bound[start:] for t in tensors]
    for i, tape in tapes.items():
        if i >= start:
            for op in range(j if i == start and j is not None else 0, len(tape.heads)):
                handles.extend(tape.outputs(op))
    return handles


def _mark(exc: BaseException, handles: list[int], live: dict[int, Any]) -> None:
    """Give `exc` to the live tensors among `handles` (using them raises it again)."""
    for h in handles:
        ref = live.get(h)
        t = ref() if ref is not None else None
        if t is not None:
            t._error = exc
