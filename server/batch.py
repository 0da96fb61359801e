"""Session batches: execute instructions in order against a session's tensors.

Each instruction kind has one method; `Executor.HANDLERS` maps the instruction's oneof field name
(which protobuf guarantees is one of the schema's names) to it. Execution stops at the first
error, which is reported with the instruction's index; a failing instruction binds no handle.
The session's byte budget is enforced before every op allocates and after every instruction.

Replies are atomic: a batch whose reply could pass the message limit is refused before anything
runs, counting every state-changing instruction's reply at its upper bound; fetched data (values,
gradients, printed forms, graphs: read-only) that would not fit is left out and marked
(`FetchResult.omitted`), so the batch still succeeds and its state changes are all reported.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import gradserve.engine as ge
from gradserve.engine import teardown
from gradserve.engine.dispatch import refresh_if_stale
from gradserve.surface import anomaly, formatting, grad_mode
from gradserve.surface.compat import short_node_name
from gradserve.v1 import graph_pb2, session_pb2

from . import codec, functions, indexing, ops, optimizers, reclaim
from . import tape as wire_tape
from .errors import (
    InvalidRequestError,
    LimitExceededError,
    Located,
    NotFoundError,
)
from .sessions import (
    GENERATOR_BYTES,
    MAX_DROPPED_REPORTED,
    Session,
    make_generator,
    quiet_grad,
)

# Instructions whose memory growth is bounded by an estimate; others re-measure exactly. Those in
# _ESTIMATED_OR_EXACT estimate when they can and return EXACT when they cannot; when they fail
# (they may have changed state before failing) the session is measured.
EXACT = -1
# The longest `_saved_*` attribute name GetSaved accepts (torch's longest are ~40 characters).
MAX_SAVED_NAME = 64
_ESTIMATED_OR_EXACT = frozenset({"backward", "grad", "optimizer_step"})
_ESTIMATED = _ESTIMATED_OR_EXACT | frozenset({
    "create_tensor", "apply_op", "apply_inplace", "zero_grad", "set_grad", "get_grad",
    "set_requires_grad", "detach", "detach_inplace", "retain_grad", "manual_seed", "release",
    "fetch", "index", "index_put", "get_optimizer_state", "tape", "create_generator",
    "get_generator", "set_generator_state", "get_saved", "get_base", "set_data",
    # drops .grads, or zeroes them in place (as zero_grad): adds nothing
    "optimizer_zero_grad",
    # a custom Function's node and its results (server/functions.py `apply_function`'s upper
    # bound); hooks are not counted in the session's bytes (at most `functions.MAX_HOOKS`), and
    # dropping a suspended pass frees. Each measured the whole session before (red team round
    # 7: 200 `remove_hook`s, a 1.6 KB batch, walked a session of 196,000 handles 200 times,
    # 40 s of CPU; a chain of 20,000 custom Functions took 140 s to link)
    "apply_function", "register_hook", "remove_hook", "abort_backward"})


# Upper bounds of one instruction's reply: the InstructionResult around it, and one TensorInfo
# (handle, dtype, up to 64 dimensions of 10-byte varints, flags, grad_fn name, version; strides
# only for a non-contiguous tensor, which has no empty dim, so its sizes and strides are at most
# its storage's element count: two sets of 64 varints of at most 5 bytes fit as well).
RESULT_BYTES = 16
_NONES = itertools.repeat(None)  # (Release: pop(h, None) for each handle)
INFO_BYTES = 1024
# The BatchResponse's own fields and framing, beyond its results.
ENVELOPE_BYTES = 64
#: Handles and graph nodes one batch may look through, after its first such look, to answer
#: instructions that find a tensor's handle by identity (GetBase, GetSaved, PackSaved,
#: GetOptimizerState) or describe a graph (Fetch.graph). Each looks through all the session's
#: handles: a 9-byte graph Fetch in a session of 983,050 handles took 0.42 s of CPU, a batch
#: of 100 took 42 s (red team round 6). 2^22: about four looks through a session at
#: `--max-handles`, ~1-2 s of CPU.
MAX_LOOKED_THROUGH = 1 << 22
#: Elements the printed forms of one batch's fetches (`Fetch.repr`, `grad_repr`) may show in
#: all (`formatting.shown_elements`: a tensor of many short dims shows every element, summarized
#: or not). Printing takes ~4 us and ~20 bytes an element: a 60-byte batch printing an expanded
#: scalar of shape (2,) * 26 ran minutes and peaked at 4 GB (red team round 6). 2^18: ~1 s,
#: 5.7 MB of text.
MAX_PRINTED_ELEMENTS = 1 << 18

# How many TensorInfos each state-changing instruction's reply can hold (fetch: its info only;
# its data is optional, see Executor.fetch). In-place writes also describe the handles sharing
# their target's data, counted when they run (Executor._reserve_views).
_INFOS: dict[str, Callable[[Any], int]] = {
    "create_tensor": lambda m: 1, "apply_op": lambda m: 0 if m.omit_info else len(m.outputs),
    "apply_inplace": lambda m: 1, "index": lambda m: 1, "index_put": lambda m: 1,
    "grad": lambda m: len(m.results), "get_grad": lambda m: 1, "get_saved": lambda m: 1,
    "get_base": lambda m: 1, "set_data": lambda m: 1,
    "set_requires_grad": lambda m: 1, "detach": lambda m: 1, "detach_inplace": lambda m: 1,
    "fetch": lambda m: 1, "apply_function": lambda m: len(m.results),
    "claim_gradients": lambda m: len(m.handles) + len(m.saved),
    "pack_saved": lambda m: len(m.results) + 1,  # (+1: its same_as entries)
}


def reply_bound(instructions: Sequence[session_pb2.Instruction],
                tapes: dict[int, wire_tape.Decoded] | None = None,
                max_instructions: int = 0,
                parts: list[tuple[str | None, Any]] | None = None) -> int:
    """An upper bound of the batch's reply without fetched data (see `_INFOS`).

    `parts`, when given, receives each instruction's kind and its message (None, None for an
    instruction without a kind), read here once for `Executor.run`.

    Tapes are checked and decoded here, in the same pass, into `tapes` (by instruction index;
    a tape's reply describes its DESCRIBE-flagged outputs), each of a tape's ops counting as one
    instruction against `max_instructions`.

    Raises:
        Located: a malformed tape or too many ops (instruction index and tape op set).
    """
    total = ENVELOPE_BYTES
    count = len(instructions)
    words = wire_tape.MAX_BATCH_WORDS
    for i, ins in enumerate(instructions):
        kind = ins.WhichOneof("kind")
        m = getattr(ins, kind) if kind is not None else None
        if parts is not None:
            parts.append((kind, m))
        if kind == "tape":
            if tapes is None:
                raise AssertionError("reply_bound: a tape needs the `tapes` dict")
            try:
                decoded = wire_tape.decode(ins.tape, max_instructions - count + 1, words)
            except Located as exc:
                exc.instruction, exc.message = i, ins
                raise
            words -= (len(ins.tape.code) + len(ins.tape.attrs)) // 8
            tapes[i] = decoded
            count += decoded.count - 1 if decoded.count else 0
            total += RESULT_BYTES + INFO_BYTES * decoded.described
            continue
        infos = _INFOS.get(kind) if kind is not None else None
        total += RESULT_BYTES + (INFO_BYTES * infos(m) if infos else 0)
    return total


class ByteBudget:
    """Keeps a session within `max_bytes` without measuring the whole session every instruction.

    `growth` is an upper bound of what an instruction adds to `Session.measure`: its outputs'
    data, `TENSOR_BYTES` per output and `NODE_BYTES` per recorded node; an inline constant
    input's data and `TENSOR_BYTES` (its node may save it); `NODE_BYTES` per leaf input (its
    AccumulateGrad node). A backward pass without create_graph that ran to its end adds at
    most the `.grad`s it made (each one's array and tensor object, counted by the engine where
    it stores them: `Executor.pass_growth`) and what finishing it binds (Grad's results); an
    optimizer step adds at most the data and `TENSOR_BYTES` of the state tensors it created
    (`optimizers.state_growth`); a backward pass with create_graph, one that suspended, and
    anything that failed are measured exactly. The estimates add up across instructions and
    batches (frees are not credited); only when they could pass the limit is the session
    measured again (a walk of its graphs), and only an exact figure can fail the call.
    """

    def __init__(self, session: Session):
        self.session = session
        self.pending = 0

    def measure(self) -> int:
        total, saved = self.session.measure()
        self.session.measured_bytes, self.session.saved_bytes = total, saved
        self.pending = 0
        return total

    def carry(self) -> None:
        """Fold the estimates into the session's figure, for the next batch and the metrics."""
        self.session.measured_bytes += self.pending
        self.pending = 0

    def check(self, kind: str, growth: int) -> None:
        """Account for one finished instruction.

        Raises:
            LimitExceededError: the session now holds more than its limit.
        """
        limit = self.session.limits.max_bytes
        if growth >= 0 and kind in _ESTIMATED:
            self.pending += growth
            if self.session.measured_bytes + self.pending <= limit:
                return
        if self.measure() > limit:
            raise LimitExceededError(
                f"session would hold {self.session.measured_bytes} bytes (tensors, gradients, "
                f"graph nodes, saved-for-backward tensors, optimizer state, remembered replies), "
                f"more than its limit of {limit} bytes; release handles or free graphs",
                limit="max_session_bytes")


def tensor_info(handle: int, t: ge.Tensor, out: session_pb2.TensorInfo) -> None:
    """Fill `out` with the metadata of `t` (a view whose base was written in place since its
    history was recorded gets its regenerated history first, as torch shows it)."""
    if t._base is not None:
        refresh_if_stale(t)
        out.storage_offset = t.storage_offset()
    out.handle = handle
    dtype = t.dtype
    code = _WIRE_DTYPES.get(dtype)
    if code is None:
        code = _WIRE_DTYPES[dtype] = codec.wire_dtype(dtype.name)
    out.dtype = code
    shape = t.shape
    if shape:
        out.shape.extend(shape)
        if not t.is_contiguous():  # (a 0-d tensor always is)
            out.non_contiguous = True
            out.strides.extend(t.stride())
    out.requires_grad = t.requires_grad
    node = t.grad_fn
    if node is None:
        out.is_leaf = True
    else:  # is_leaf stays False, its default
        name = node.name()
        short = _SHORT_NAMES.get(name)
        if short is None:
            short = short_node_name(name)  # as a tensor's repr shows it
            if len(_SHORT_NAMES) < _MAX_SHORT_NAMES:
                _SHORT_NAMES[name] = short
        out.grad_fn = short
    version = t._version_counter
    if version:
        out.version = version


# engine dtype -> wire enum; node name -> as a repr shows it (names are the registry's and
# custom Functions' class names, so the cache is bounded as well)
_WIRE_DTYPES: dict[Any, int] = {}
_SHORT_NAMES: dict[str, str] = {}
_MAX_SHORT_NAMES = 4096


_TENSOR_BYTES = ge.limits.TENSOR_BYTES
_NODE_BYTES = ge.limits.NODE_BYTES
_EDGE_BYTES, _NODE_EDGES = ge.limits.EDGE_BYTES, ge.limits.NODE_EDGES


def _nbytes(values: Sequence[Any]) -> int:
    """Data and object bytes of the tensors among `values`."""
    return sum(v.nbytes + _TENSOR_BYTES for v in values if isinstance(v, ge.Tensor))


def _unreachable(msg: graph_pb2.Value) -> Any:
    """The resolver for `Executor.value`'s other kinds, which never reference a tensor."""
    raise AssertionError("handle and ref values are resolved by Executor.value")


class Paused(BaseException):
    """A tape op's gate paused the batch (`Executor.proceed`); a BaseException, so that no
    error handling on the way out takes it for the op's error."""


def _index_tensors(key: Any) -> Sequence[Any]:
    return key if isinstance(key, tuple) else (key,)


# The errors of an op's handles and outputs, written once for ApplyOp (Executor.tensor,
# _check_new, _check_outputs, _run_op) and the tape's inlined copies of those checks.

def _unknown_tensor(handle: int) -> NotFoundError:
    return NotFoundError(f"unknown tensor handle {handle} (released or never created)")


def _in_use(handle: int) -> InvalidRequestError:
    return InvalidRequestError(f"handle {handle} is already in use")


def _handles_full(limit: int) -> LimitExceededError:
    return LimitExceededError(f"session holds its maximum of {limit} handles; release some",
                              limit="max_handles")


def _outputs_given(name: str, n_outputs: int, given: int) -> InvalidRequestError:
    return InvalidRequestError(f"{name}() has {n_outputs} output(s), but {given} handle(s) "
                               "were given")


def _outputs_produced(name: str, produced: int, given: int) -> InvalidRequestError:
    return InvalidRequestError(f"{name}() produced {produced} output(s), but {given} "
                               "handle(s) were given")


class Executor:
    """Runs one batch for a locked session."""

    def __init__(self, session: Session, check_deadline: Callable[[], None],
                 max_response_bytes: int):
        self.s = session
        self.check_deadline = check_deadline
        self.limit = session.limits.max_tensor_elements
        self.budget = ByteBudget(session)
        self.bound: list[int] = []
        # the reply's size without fetched data (an upper bound, see reply_bound) plus the
        # fetched data included so far; 0: no limit (RunGraph in a session replies otherwise)
        self.response_bytes = 0
        self.max_response_bytes = max_response_bytes
        self.tapes: dict[int, wire_tape.Decoded] = {}
        self.index = 0  # of the instruction running
        # (result, handles) of tapes' VALUE-flagged outputs, filled after the last instruction
        self.values: list[tuple[session_pb2.TapeResult, list[int]]] = []
        # what the last backward pass charged and kept (see differentiate); EXACT: measure
        self.pass_growth = EXACT
        # what may pause the batch between instructions and tape ops (`proceed`); None: never
        self.gate: Any = None
        # the batch `begin` started: its instructions, their (kind, message), its reply
        self.instructions: Sequence[session_pb2.Instruction] = ()
        self.parts: list[tuple[str | None, Any]] = []
        self.response = session_pb2.BatchResponse()
        self.tape_op = 0  # the op a paused tape continues from
        self.looked = 0  # handles and graph nodes looked through (see MAX_LOOKED_THROUGH)
        self.printed = 0  # elements printed by fetches (see MAX_PRINTED_ELEMENTS)

    def run(self, instructions: Sequence[session_pb2.Instruction]) -> session_pb2.BatchResponse:
        """Run the batch to its end: `begin`, `proceed`, `end`.

        Raises:
            Located: the failing instruction's error with its index (those before it stay
                applied).
        """
        self.begin(instructions)
        self.proceed()
        return self.end()

    def begin(self, instructions: Sequence[session_pb2.Instruction]) -> None:
        """Check the batch as a whole before anything of it runs (its instruction count, tapes
        and reply bound), and start its reply.

        Raises:
            LimitExceededError, Located: nothing was run.
        """
        if len(instructions) > self.s.limits.max_instructions:
            raise LimitExceededError(
                f"batch has {len(instructions)} instructions, more than the limit of "
                f"{self.s.limits.max_instructions}", limit="max_instructions")
        parts: list[tuple[str | None, Any]] = []
        bound = reply_bound(instructions, self.tapes, self.s.limits.max_instructions, parts)
        if self.max_response_bytes:
            self.response_bytes = bound
            if self.response_bytes > self.max_response_bytes:
                raise LimitExceededError(
                    f"batch of {len(instructions)} instructions could reply with up to "
                    f"{self.response_bytes} bytes, more than the message limit of "
                    f"{self.max_response_bytes} bytes (--max-message-bytes); nothing was run: "
                    "send fewer instructions per batch", limit="max_message_bytes")
        self.instructions = instructions
        self.parts = parts
        self.response = session_pb2.BatchResponse()
        self.index = 0
        self.tape_op = 0

    def proceed(self) -> bool:
        """Run the instructions from `index` on (a tape from its op `tape_op`). True when the
        last one has run; False when `gate` paused the batch before instruction `index` (op
        `tape_op` of a tape): the session is as after the ops before, and `proceed` continues
        from there, on any thread (`server/inline_batch.py`).

        Raises:
            Located: the failing instruction's error with its index (those before it stay
                applied; the batch is over).
        """
        parts, results, gate = self.parts, self.response.results, self.gate
        add_result, check_deadline = results.add, self.check_deadline
        handlers, budget_check = self.HANDLERS, self.budget.check
        with ge.limits.allocation_limit(self.limit), ge.enable_grad():
            for i in range(self.index, len(parts)):
                kind, m = parts[i]
                self.bound = []
                self.index = i
                if i < len(results):  # a tape paused at op `tape_op`: its result is begun
                    result = results[i]
                else:
                    if gate is not None and gate.pause(self, kind, m):
                        return False
                    result = add_result()
                try:
                    check_deadline()
                    if kind is None:
                        raise InvalidRequestError("instruction has no kind set")
                    growth = handlers[kind](self, m, result)
                    budget_check(kind, growth)
                except Paused:  # (a tape op) nothing of the op ran
                    return False
                except Exception as exc:
                    if gate is not None and gate.refused(kind, exc):
                        return False  # refused before it ran: it runs when the batch proceeds
                    for h in self.bound:  # a failing instruction (or tape op) binds nothing
                        self.s.tensors.pop(h, None)
                        self.s.optimizers.pop(h, None)
                        self.s.generators.pop(h, None)
                    if kind is not None and (kind not in _ESTIMATED
                                             or kind in _ESTIMATED_OR_EXACT):
                        self.budget.measure()  # e.g. a refused backward may have accumulated
                    self.budget.carry()  # what the instructions before it added stays
                    ins = self.instructions[i]
                    if isinstance(exc, Located):  # a tape op: it knows its place in the tape
                        exc.instruction, exc.message = i, ins
                        raise
                    raise Located(exc, instruction=i, message=ins) from exc
                self.tape_op = 0
            self.index = len(parts)
            if self.values:
                self._send_values()
            # Carried as an upper bound, not re-measured: the walk runs only when the estimate
            # nears the limit (and for instructions without an estimate, e.g. backward).
            self.budget.carry()
        return True

    def end(self) -> session_pb2.BatchResponse:
        """The reply of a batch `proceed` ran to its end."""
        resp = self.response
        dropped = self.s.dropped_functions
        if dropped:  # as many as fit (10 bytes each at most): the rest go with the next reply
            n = MAX_DROPPED_REPORTED
            if self.max_response_bytes:
                n = min(n, (self.max_response_bytes - self.response_bytes) // 10)
            resp.dropped_functions.extend(dropped[:n])
            del dropped[:len(resp.dropped_functions)]
        return resp

    # --- handles -------------------------------------------------------------------------------

    def look_through(self, n: int) -> None:
        """Count a look through `n` handles or graph nodes against the batch's
        `MAX_LOOKED_THROUGH` (its first look always passes).

        Raises:
            LimitExceededError: the batch's looks would pass it.
        """
        if self.looked and self.looked + n > MAX_LOOKED_THROUGH:
            raise LimitExceededError(
                f"a batch may look through at most {MAX_LOOKED_THROUGH} handles and graph "
                f"nodes in all after its first look (GetBase, GetSaved, PackSaved, "
                f"GetOptimizerState and Fetch.graph each look through the session's "
                f"{len(self.s.tensors)} handles): send them in batches of their own",
                limit="max_looked_through")
        self.looked += n

    def tensor(self, handle: int) -> ge.Tensor:
        t = self.s.tensors.get(handle)
        if t is None:
            raise _unknown_tensor(handle)
        return t

    def bind(self, handle: int, t: ge.Tensor, result: session_pb2.InstructionResult, *,
             checked: bool = False, describe: bool = True) -> int:
        """Bind `t` to `handle` (`checked`: `_check_new(handle)` passed and nothing was bound
        since) and describe it in `result` (unless not `describe`: the client knows it);
        returns its bytes."""
        if not checked:
            self._check_new(handle)
        self.s.tensors[handle] = t
        self.bound.append(handle)
        if describe:
            tensor_info(handle, t, result.handles.tensors.add())
        else:
            result.handles.SetInParent()
        return t.nbytes + (_TENSOR_BYTES if t.grad_fn is None else _TENSOR_BYTES + _NODE_BYTES)

    def _check_new(self, handle: int) -> None:
        if handle == 0:
            raise InvalidRequestError("handle ids start at 1 (0 means the field was not set)")
        if handle in self.s.tensors or handle in self.s.optimizers or handle in self.s.generators:
            raise _in_use(handle)
        if self.s.handle_count() >= self.s.limits.max_handles:
            raise _handles_full(self.s.limits.max_handles)

    def value(self, v: graph_pb2.Value, what: str) -> Any:
        kind = v.WhichOneof("kind")
        if kind == "handle":  # the common case first, without a resolver
            return self.tensor(v.handle)
        if kind == "ref":
            raise InvalidRequestError(f"{what}: graph references are not valid in a batch; "
                                      "use handles")
        return codec.decode_value(v, _unreachable, self.limit, what)

    def left(self) -> int:
        """Bytes the session has left by its last exact figure and the estimates since."""
        return self.s.limits.max_bytes - self.s.measured_bytes - self.budget.pending

    def within_budget(self, run: Callable[..., Any], *args: Any) -> Any:
        """`run(*args)` (one op) under an engine byte budget of what the session has left, so a
        result, or graph node, that cannot fit is refused before it is allocated. A refusal
        based on the estimate is confirmed by an exact measurement first. `run(*args)`: no
        closure per instruction on the hot path."""
        estimate = self.left()
        try:
            return ge.limits.within(max(0, estimate), run, *args)
        except ge.errors.BudgetExceededError as exc:
            return self.retry_measured(exc, estimate, run, *args)

    def room_for_constant(self, msg: Any, decoded: int) -> None:
        """Refuse a tape op's constant input, before it is decoded, when its data with `decoded`
        (what the op's inputs decoded so far add) would take the session past its limit. A
        tape's constant is decoded anew for each input word naming it: one 1 MiB constant
        named by an op's 4,095 input words made 4 GiB before the op's budget was checked.

        Raises:
            LimitExceededError: the session, measured exactly, has no room for it.
        """
        size = decoded + codec.data_bytes(msg, self.limit) + _TENSOR_BYTES
        s = self.s
        limit = s.limits.max_bytes
        if s.measured_bytes + self.budget.pending + size <= limit:
            return
        if self.budget.measure() + size > limit:
            raise LimitExceededError(
                f"the op's constant inputs would take the session past its limit of {limit} "
                f"bytes ({size} bytes with this one, {s.measured_bytes} held): each use of a tape "
                "constant is a new tensor", limit="max_session_bytes")

    def retry_measured(self, refusal: Exception, estimate: int, run: Callable[..., Any],
                       *args: Any) -> Any:
        """`within_budget` after `run(*args)` was refused under the `estimate` of what the
        session has left: run again once if an exact measurement leaves more, else raise.

        Raises:
            LimitExceededError: the op does not fit what the session has left.
        """
        left = self.s.limits.max_bytes - self.budget.measure()
        if left > estimate:
            try:
                with ge.limits.byte_budget(left):
                    return run(*args)
            except ge.errors.BudgetExceededError as exc:
                refusal = exc
        raise self._exhausted(refusal, left)

    def _exhausted(self, refusal: Exception, left: int) -> LimitExceededError:
        return LimitExceededError(
            f"{refusal}: the session has {max(0, left)} of its {self.s.limits.max_bytes} bytes "
            "left; release handles or free graphs", limit="max_session_bytes")

    def differentiate(self, create_graph: bool, run: Callable[..., Any], *args: Any) -> Any:
        """`run(*args)` (a backward pass) under the backward policy.

        A pass without create_graph makes gradients that mostly live only while it runs: it
        may allocate up to the session's whole limit (cumulatively, as the engine charges),
        whatever the session holds, so a session near its limit can still differentiate and its
        peak stays within twice its limit; the `.grad`s it leaves are measured exactly after
        it. With create_graph every gradient is recorded and its graph can stay, so the pass
        gets what the session has left, measured exactly first. Either way the pass runs once
        (it may have accumulated into `.grad` before a refusal, so it is not retried).

        Sets `pass_growth`: without create_graph, the `.grad`s the pass made (arrays and tensor
        objects, `ge.limits.kept`), an upper bound of what it leaves: its other gradients die
        with it and `.grad`s it adds into are updated in place; with create_graph, EXACT.
        """
        max_bytes = self.s.limits.max_bytes
        self.pass_growth = EXACT
        if create_graph:
            left = max_bytes - self.budget.measure()
            try:
                with ge.limits.byte_budget(max(0, left)):
                    return run(*args)
            except ge.errors.BudgetExceededError as exc:
                raise self._exhausted(exc, left) from exc
        try:
            kept = ge.limits.kept()
            with ge.limits.byte_budget(max_bytes):
                result = run(*args)
            self.pass_growth = ge.limits.kept() - kept
            return result
        except ge.errors.BudgetExceededError as exc:
            raise LimitExceededError(
                f"{exc}: a backward pass may allocate at most the session's limit of "
                f"{max_bytes} bytes", limit="max_session_bytes") from exc

    # --- instructions: each returns an upper bound of the bytes it added ------------------------

    def create_tensor(self, m: session_pb2.CreateTensor, r: session_pb2.InstructionResult) -> int:
        self._check_new(m.handle)
        t = codec.decode_tensor(m.value, self.limit, requires_grad=m.requires_grad,
                                what=f"tensor for handle {m.handle}")
        return self.bind(m.handle, t, r)

    def apply_op(self, m: session_pb2.ApplyOp, r: session_pb2.InstructionResult) -> int:
        # The hot path of a batch: checks as ever, but no closure, context manager or repeated
        # lookup that the common case (one output, grad mode unchanged) does not need.
        name, given = m.op, m.inputs
        op = ops.checked(name, len(given))
        outputs = m.outputs
        n_out = len(outputs)
        self._check_outputs(name, op, outputs)
        what = f"{name}() input"
        inputs = [self.value(v, what) for v in given]
        attrs = codec.decode_attrs(m.attrs, name) if m.attrs else {}
        outs = self._run_op(name, op, inputs, attrs, n_out, m.no_grad,
                            self.generator_for(name, m.generator) if m.generator else None)
        # a node's inputs past a few cost bytes each (`limits.node_bytes`): an upper bound
        growth = _EDGE_BYTES * (len(given) - _NODE_EDGES) if len(given) > _NODE_EDGES else 0
        for v, x in zip(given, inputs):
            if type(x) is ge.Tensor and x.grad_fn is None:
                # a leaf may get its AccumulateGrad node; a constant is a new tensor
                growth += (_NODE_BYTES if v.WhichOneof("kind") == "handle" else
                           x.nbytes + _TENSOR_BYTES)
        describe = not m.omit_info
        if n_out == 1:  # checked above, and nothing was bound since
            return growth + self.bind(outputs[0], outs[0], r, checked=True, describe=describe)
        for h, t in zip(outputs, outs):  # re-checked: the handles may repeat
            growth += self.bind(h, t, r, describe=describe)
        return growth

    def _check_outputs(self, name: str, op: Any, outputs: Sequence[int]) -> None:
        """An op's output handles (ApplyOp or a tape op): as many as it makes, all new."""
        if op.n_outputs is not None and len(outputs) != op.n_outputs:
            raise _outputs_given(name, op.n_outputs, len(outputs))
        for h in outputs:
            self._check_new(h)

    def _run_op(self, name: str, op: Any, inputs: list[Any], attrs: dict[str, Any], n_out: int,
                no_grad: bool, generator: Any = None) -> Any:
        """Run `op` within the session's budget, in grad mode unless `no_grad` (switched only
        when it differs), drawing from `generator` (the session's default when None); its
        results, checked to be `n_out`."""
        gen = self.s.generator if generator is None else generator
        if no_grad == ge.is_grad_enabled():
            with ge.set_grad_enabled(not no_grad):
                outs = self.within_budget(ops.run, op, inputs, attrs, gen)
        else:
            outs = self.within_budget(ops.run, op, inputs, attrs, gen)
        if len(outs) != n_out:
            raise _outputs_produced(name, len(outs), n_out)
        return outs

    def tape(self, m: session_pb2.Tape, r: session_pb2.InstructionResult) -> int:
        """Run a decoded tape's ops in order (see server/tape.py). Each op is an ApplyOp
        (with the attributes of an ATTRS-flagged op, else none): checked, budgeted and
        accounted as one, its outputs described only when flagged DESCRIBE. A failing op is
        reported with its index in the tape; the ops before it stay applied.

        The hot loop of a session: each op's registry entry and attribute defaults are
        resolved once per (name, inputs) (`ops.prepared`), and the op runs straight through
        the engine's dispatch under the same byte budget `within_budget` gives an ApplyOp."""
        decoded = self.tapes[self.index]
        out = r.tape
        out.SetInParent()
        valued: list[int] = []
        code, floats, ints = decoded.words, decoded.floats, decoded.ints
        constants, op_attrs = decoded.constants, decoded.attrs
        s = self.s
        tensors, optimizers, generators = s.tensors, s.optimizers, s.generators
        # a tape op binds tensors only: the other handles' count holds for the whole tape
        others = len(optimizers) + len(generators)
        max_handles, max_bytes = s.limits.max_handles - others, s.limits.max_bytes
        check_deadline, budget = self.check_deadline, self.budget
        # this thread's engine bounds, held for the tape (the loop runs on one thread): each
        # op's budget is set on them directly, with no thread-local lookup
        bounds = ge.limits.current()
        within = bounds.within
        run_prepared, prepared, Tensor = ops.run_prepared, ops.prepared, ge.Tensor
        run_op = ge.dispatch.run
        cached = ops.PREPARED.get
        HANDLE, FLOAT, NO_GRAD = wire_tape.HANDLE, wire_tape.FLOAT, wire_tape.NO_GRAD
        DESCRIBE, VALUE, ATTRS = wire_tape.DESCRIBE, wire_tape.VALUE, wire_tape.ATTRS
        INSTRUCTION = wire_tape.INSTRUCTION
        leaf_bytes, node_bytes = _TENSOR_BYTES, _TENSOR_BYTES + _NODE_BYTES
        # the engine runs the call's interrupt check before every op when one is set
        engine_checks = bounds.check is not None
        # bounds active (the batch's allocation limit) and no byte budget of the thread's own:
        # each op's budget is set on the bounds and cleared after it, without a call
        direct = bounds.active and bounds.bytes_left is None
        # Grad mode is this thread's, and only this loop changes it (restoring it after each
        # op it switches for, as the engine's own scopes restore theirs): read it once.
        grad_state = grad_mode._state
        enabled = grad_state.enabled
        self.bound = bound = []  # what a failing op bound (run() unbinds it)
        one = 0  # the handle the running op bound, in the one-output case
        gate, first = self.gate, self.tape_op  # (a paused tape continues from op `first`)
        columns = decoded.ops if not first else [column[first:] for column in decoded.ops]
        for k, (name, flags, start, mid, end) in enumerate(zip(*columns), first):
            if flags & INSTRUCTION:  # (flagged alone: checked when decoded)
                pause = self._tape_instruction(decoded.instructions[k], k)
                if pause is not None:
                    self.tape_op = pause
                    if valued:
                        self.values.append((out, valued))
                    raise Paused
                continue
            try:
                if k and not engine_checks:
                    check_deadline()
                n_in = mid - start
                p = cached((name, n_in)) or prepared(name, n_in)
                op = p.op
                n_out = end - mid
                if op.n_outputs is not None and n_out != op.n_outputs:
                    raise _outputs_given(name, op.n_outputs, n_out)
                if n_out == 1:
                    h = code[mid]
                    if h in tensors or others and (h in optimizers or h in generators):
                        raise _in_use(h)
                else:
                    for h in code[mid:end]:
                        if h in tensors or others and (h in optimizers or h in generators):
                            raise _in_use(h)
                if len(tensors) >= max_handles:
                    raise _handles_full(s.limits.max_handles)
                inputs: list[Any] = []
                growth = _EDGE_BYTES * (n_in - _NODE_EDGES) if n_in > _NODE_EDGES else 0
                for w in code[start:mid]:
                    kind = w & 7
                    if kind == HANDLE:
                        x = tensors.get(w >> 3)
                        if x is None:
                            raise _unknown_tensor(w >> 3)
                        if x.grad_fn is None:
                            growth += _NODE_BYTES  # a leaf may get its AccumulateGrad node
                        inputs.append(x)
                    elif kind == FLOAT:
                        inputs.append(floats[w >> 3])
                    elif kind == wire_tape.INT:
                        inputs.append(ints[w >> 3])
                    elif kind == wire_tape.BOOL:
                        inputs.append(w >> 3 == 1)
                    elif kind == wire_tape.NONE:
                        inputs.append(None)
                    else:
                        constant = constants[w >> 3]
                        self.room_for_constant(constant, growth)
                        c = codec.decode_tensor(constant, self.limit, what=f"{name}() input")
                        growth += c.nbytes + _TENSOR_BYTES
                        inputs.append(c)
                if gate is not None and (gate.pause_op(name, inputs) or (
                        flags & ATTRS and gate.pause_attrs(op_attrs[k]))):
                    self.tape_op = k  # nothing of op k ran: it runs when the batch proceeds
                    if valued:
                        self.values.append((out, valued))
                    raise Paused
                estimate = max_bytes - s.measured_bytes - budget.pending
                if estimate < 0:
                    estimate = 0
                toggled = (not flags & NO_GRAD) != enabled  # the op's own grad mode
                if toggled:
                    grad_state.enabled = not enabled
                attrs = op_attrs[k] if flags & ATTRS else None
                try:
                    if direct:  # Limits.within's steps for this case
                        bounds.bytes_left = estimate
                        try:
                            result = (run_op(op, tuple(inputs), {}) if p.plain and attrs is None
                                      else run_prepared(p, inputs,
                                                        s.generator if p.random else None,
                                                        attrs))
                        finally:
                            bounds.bytes_left = None
                    else:
                        result = (within(estimate, run_op, op, tuple(inputs), {})
                                  if p.plain and attrs is None
                                  else within(estimate, run_prepared, p, inputs,
                                              s.generator if p.random else None, attrs))
                except ge.errors.BudgetExceededError as exc:
                    result = self.retry_measured(exc, estimate, run_prepared, p, inputs,
                                                 s.generator if p.random else None, attrs)
                finally:
                    if toggled:
                        grad_state.enabled = enabled
                if type(result) is Tensor and n_out == 1:  # the common case: one output
                    tensors[h] = result
                    one = h
                    if flags & DESCRIBE:
                        tensor_info(h, result, out.tensors.add())
                    growth += result._data.nbytes + (
                        leaf_bytes if result.grad_fn is None else node_bytes)
                else:
                    outs = (result,) if type(result) is Tensor else result
                    if len(outs) != n_out:
                        raise _outputs_produced(name, len(outs), n_out)
                    for j, (h, t) in enumerate(zip(code[mid:end], outs)):
                        if j:  # re-checked: the handles may repeat
                            self._check_new(h)
                        tensors[h] = t
                        bound.append(h)
                        if flags & DESCRIBE:
                            tensor_info(h, t, out.tensors.add())
                        growth += t.nbytes + (leaf_bytes if t.grad_fn is None else node_bytes)
                if flags & VALUE:
                    valued.extend(code[mid:end])
                # ByteBudget.check's first step inline: the estimate still fits
                if s.measured_bytes + budget.pending + growth <= max_bytes:
                    budget.pending += growth
                else:
                    budget.check("apply_op", growth)
                one = 0
                if bound:
                    bound.clear()
            except Exception as exc:
                if one:
                    bound.append(one)
                elif gate is not None and gate.refused("tape", exc):
                    self.tape_op = k  # refused before it ran: it runs when the batch proceeds
                    if valued:
                        self.values.append((out, valued))
                    raise Paused from None
                raise Located(exc, tape_op=k, op=name) from exc
        self.bound = []
        if valued:
            self.values.append((out, valued))
        return 0

    def _tape_instruction(self, instruction: tuple[str, Any], k: int) -> int | None:
        """Run a tape's INSTRUCTION-flagged op `k`, the (Instruction field, message) it stands
        for, as that instruction runs between others: the gate may pause before it, its handler
        runs, the budget accounts for it; its reply is left out. The tape op to pause before
        (`k`, or `k + 1` when the gate's time ran out meanwhile), or None.

        Raises:
            Located: its error, at tape op `k` (a backward that reached a custom Function or
                hook, which need the client, is refused: send such a pass as a Backward).
        """
        kind, m = instruction
        gate = self.gate
        if gate is not None and gate.pause(self, kind, m):
            return k
        scratch = session_pb2.InstructionResult()
        try:
            self.check_deadline()
            growth = self.HANDLERS[kind](self, m, scratch)
            if scratch.HasField("suspended"):
                self.s.suspended.pop().steps.close()
                raise InvalidRequestError(
                    "backward() on a tape reached a custom Function or hook, which runs in the "
                    "client: send it as a Backward instruction")
            self.budget.check(kind, growth)
        except Exception as exc:
            if kind in _ESTIMATED_OR_EXACT:
                self.budget.measure()  # it may have changed state before failing
            raise Located(exc, tape_op=k, op=kind) from exc
        # the tape's ops after it run under the tape's bounds again (the gate sets them)
        if gate is not None and gate.pause(self, "tape", None):
            return k + 1
        return None

    def _send_values(self) -> None:
        """After the batch's last instruction: the values of tapes' VALUE-flagged outputs that
        are still bound, small, and fit in the reply (read-only data, like a fetch's)."""
        room = self.max_response_bytes - self.response_bytes if self.max_response_bytes else -1
        for out, handles in self.values:
            for h in handles:
                t = self.s.tensors.get(h)
                if t is None or t.numel() > wire_tape.VALUE_MAX_ELEMENTS:
                    continue
                entry = out.values.add(handle=h)
                codec.encode_tensor(t, entry.value)
                size = entry.ByteSize() + 4
                if room >= 0:
                    if size > room:
                        del out.values[-1]
                        continue
                    room -= size
                    self.response_bytes += size

    def apply_inplace(self, m: session_pb2.ApplyInplace,
                      r: session_pb2.InstructionResult) -> int:
        if not m.op.endswith("_"):
            raise InvalidRequestError(f"in-place op names end with '_', got {m.op!r}")
        op = ops.lookup(m.op[:-1])
        target = self.tensor(m.target)
        ops.check_arity(op, len(m.inputs) + 1)
        inputs = [self.value(v, f"{m.op}() input") for v in m.inputs]
        attrs = codec.decode_attrs(m.attrs, m.op)
        gen = self.generator_for(m.op, m.generator) if m.generator else self.s.generator
        self._reserve_views(target)
        with ge.set_grad_enabled(not m.no_grad):
            self.within_budget(ge.apply_inplace, op.name, target, inputs, attrs,
                               gen if ops.takes_generator(op.name) else None)
        tensor_info(m.target, target, r.handles.tensors.add())
        self._describe_base(target, r)
        return _nbytes(inputs) + 2 * (target.nbytes + _TENSOR_BYTES + _NODE_BYTES)

    def _sharing(self, target: ge.Tensor) -> list[tuple[int, ge.Tensor]]:
        """Handles other than `target` bound to a tensor sharing its data (a view's base, the
        base's views) or its version counter (a `detach()` of it, or what it was detached
        from)."""
        root = target._base if target._base is not None else target
        if not getattr(root, "_has_views", False):
            return []  # nothing shares its data: no scan of the session's tensors
        vc = target._vc
        return [(h, t) for h, t in self.s.tensors.items()
                if t is not target and (t is root or t._base is root or t._vc is vc)]

    def _reserve_views(self, target: ge.Tensor) -> None:
        """Before an in-place write: its reply describes every handle sharing the target's data
        (not known up front); refuse the write, before it runs, if they cannot fit."""
        if not self.max_response_bytes or not getattr(
                target._base if target._base is not None else target, "_has_views", False):
            return
        need = INFO_BYTES * len(self._sharing(target))
        if self.response_bytes + need > self.max_response_bytes:
            raise LimitExceededError(
                f"in-place write would describe {need // INFO_BYTES} tensors sharing its data, "
                f"passing the message limit of {self.max_response_bytes} bytes "
                "(--max-message-bytes); nothing of this instruction was applied",
                limit="max_message_bytes")
        self.response_bytes += need

    def _describe_base(self, target: ge.Tensor, r: session_pb2.InstructionResult) -> None:
        """An in-place write changes the history of the tensors sharing the target's data: the
        base of a view (CopySlices) and the other views of that base (AsStridedBackward0).
        Describe every handle bound to one of them after the target's own info."""
        for h, t in self._sharing(target):
            tensor_info(h, t, r.handles.tensors.add())

    def index(self, m: session_pb2.Index, r: session_pb2.InstructionResult) -> int:
        t = self.tensor(m.tensor)
        self._check_new(m.result)
        key = indexing.decode_index(m.index, self.value, "index")
        with ge.set_grad_enabled(not m.no_grad):
            out = self.within_budget(t.__getitem__, key)
        return _nbytes(_index_tensors(key)) + self.bind(m.result, out, r)

    def index_put(self, m: session_pb2.IndexPut, r: session_pb2.InstructionResult) -> int:
        target = self.tensor(m.target)
        key = indexing.decode_index(m.index, self.value, "index_put")
        value = self.value(m.value, "index_put value")

        def run() -> None:
            target[key] = value
        self._reserve_views(target)
        with ge.set_grad_enabled(not m.no_grad):
            self.within_budget(run)
        tensor_info(m.target, target, r.handles.tensors.add())
        self._describe_base(target, r)
        return (_nbytes(_index_tensors(key)) + _nbytes([value])
                + 2 * (target.nbytes + _TENSOR_BYTES + _NODE_BYTES))

    def backward(self, m: session_pb2.Backward, r: session_pb2.InstructionResult) -> int:
        t = self.tensor(m.tensor)
        gradient = self.value(m.gradient, "backward() gradient") if m.HasField("gradient") else None
        roots, gradients = [t], [self._root_gradient(gradient, t)]
        if m.more_tensors or m.more_gradients:  # torch.autograd.backward([a, b, ...]): one pass
            if m.more_gradients and len(m.more_gradients) != len(m.more_tensors):
                raise InvalidRequestError(
                    f"backward: {len(m.more_gradients)} more_gradients for "
                    f"{len(m.more_tensors)} more_tensors (give one each, or none)")
            for k, h in enumerate(m.more_tensors):
                root = self.tensor(h)
                g = (self.value(m.more_gradients[k], "backward() gradient")
                     if m.more_gradients else None)
                roots.append(root)
                gradients.append(self._root_gradient(g, root))
        inputs = [self.tensor(h) for h in m.inputs] or None
        retain = m.retain_graph if m.HasField("retain_graph") else None
        held: list[Any] = []
        grads = None if all(g is None for g in gradients) else gradients
        steps = ge.autograd.backward_steps(roots, grads, retain, m.create_graph, inputs,
                                           held=held)
        self.pass_growth = EXACT
        with anomaly.forced(m.check_nan):  # read as the pass starts
            growth = functions.run_pass(self, steps, m.create_graph, r, functions.backward_done,
                                        held)
        return self._after_pass(growth, r)

    @staticmethod
    def _root_gradient(gradient: Any, root: Any) -> Any:
        """A backward root's gradient as the engine takes it: a wire number as a tensor of the
        root's dtype, None (implicit) as it is."""
        if gradient is not None and not isinstance(gradient, ge.Tensor):
            return ge.tensor(gradient, dtype=root.dtype)
        return gradient

    def grad(self, m: session_pb2.Grad, r: session_pb2.InstructionResult) -> int:
        outputs = [self.tensor(h) for h in m.outputs]
        inputs = [self.tensor(h) for h in m.inputs]
        if len(m.results) != len(inputs):
            raise InvalidRequestError(f"grad: {len(m.results)} result handle(s) for "
                                      f"{len(inputs)} input(s)")
        for h in m.results:
            self._check_new(h)
        grad_outputs = None
        if m.grad_outputs:
            grad_outputs = [self.value(v, "grad() grad_outputs") for v in m.grad_outputs]
        retain = m.retain_graph if m.HasField("retain_graph") else None
        held: list[Any] = []
        steps = ge.autograd.grad_steps(outputs, inputs, grad_outputs, retain, m.create_graph,
                                       m.allow_unused, held=held)
        self.pass_growth = EXACT
        with anomaly.forced(m.check_nan):  # read as the pass starts
            growth = functions.run_pass(self, steps, m.create_graph, r,
                                        functions.grad_done(list(m.results)), held)
        return self._after_pass(growth, r)

    def _after_pass(self, growth: int, r: session_pb2.InstructionResult) -> int:
        """A Backward's or Grad's growth: what the pass kept (see `differentiate`) plus what
        finishing it bound, or EXACT (create_graph, or it suspended at a custom Function or
        hook: the session was measured with it)."""
        if self.pass_growth == EXACT or r.HasField("suspended"):
            return EXACT
        return self.pass_growth + growth

    def zero_grad(self, m: session_pb2.ZeroGrad, r: session_pb2.InstructionResult) -> int:
        for h in m.handles:
            g = quiet_grad(self.tensor(h))
            if g is not None:
                g.zero_()
        r.done.SetInParent()
        return 0

    def set_grad(self, m: session_pb2.SetGrad, r: session_pb2.InstructionResult) -> int:
        t = self.tensor(m.handle)
        kind = m.WhichOneof("grad")
        if kind is None:
            raise InvalidRequestError("set_grad: give grad_handle or none")
        t.grad = self.tensor(m.grad_handle) if kind == "grad_handle" else None
        r.done.SetInParent()
        return 0

    def get_grad(self, m: session_pb2.GetGrad, r: session_pb2.InstructionResult) -> int:
        g = quiet_grad(self.tensor(m.handle))
        r.handles.SetInParent()
        if g is not None:
            self.bind(m.result, g, r)
        return 0

    def get_saved(self, m: session_pb2.GetSaved, r: session_pb2.InstructionResult) -> int:
        node = self.tensor(m.handle).grad_fn
        if len(m.name) > MAX_SAVED_NAME or not m.name.startswith(ge.saved.PREFIX):
            raise InvalidRequestError(
                f"get_saved.name: an attribute \"{ge.saved.PREFIX}<name>\" of at most "
                f"{MAX_SAVED_NAME} characters, not {m.name[:MAX_SAVED_NAME]!r}")
        if node is None or not isinstance(node, ge.autograd.Node):
            raise ge.errors.NoSavedAttributeError(
                f"'NoneType' object has no attribute '{m.name}'" if node is None else
                f"'{node.name()}' object has no attribute '{m.name}'")
        v = ge.saved.value(node, m.name)
        if v is not None and not isinstance(v, ge.Tensor):
            codec.encode_attr(v, r.saved.number)
            return 0
        return self._tensor_result(v, m.result, r.saved)

    def get_base(self, m: session_pb2.GetBase, r: session_pb2.InstructionResult) -> int:
        return self._tensor_result(self.tensor(m.handle)._base, m.result, r.saved)

    def set_data(self, m: session_pb2.SetData, r: session_pb2.InstructionResult) -> int:
        t = self.tensor(m.handle)
        t.data = self.tensor(m.value)  # the engine's setter: torch's checks and messages
        tensor_info(m.handle, t, r.handles.tensors.add())
        return 0  # t now shares the value's data: nothing new is held

    def _tensor_result(self, v: ge.Tensor | None, result: int, out: session_pb2.SavedValue,
                       handle_of: dict[int, int] | None = None) -> int:
        """`v` as a SavedValue: none, the handle the session holds it under (`handle_of`: the
        session's handles by tensor id, when the caller made it for several), or bound to
        `result`; returns the bytes a new handle costs."""
        if v is None:
            out.none.SetInParent()
            return 0
        if handle_of is not None:
            held = handle_of.get(id(v))
            if held is not None:
                out.same_as = held
                return 0
        else:
            self.look_through(len(self.s.tensors))
            for h, t in self.s.tensors.items():
                if t is v:
                    out.same_as = h
                    return 0
        self._check_new(result)
        self.s.tensors[result] = v
        if handle_of is not None:
            handle_of[id(v)] = result  # (as the session's walk would now find it)
        self.bound.append(result)
        tensor_info(result, v, out.bound)
        return _TENSOR_BYTES

    def set_requires_grad(self, m: session_pb2.SetRequiresGrad,
                          r: session_pb2.InstructionResult) -> int:
        t = self.tensor(m.handle)
        t.requires_grad_(m.requires_grad)
        tensor_info(m.handle, t, r.handles.tensors.add())
        return 0

    def detach(self, m: session_pb2.Detach, r: session_pb2.InstructionResult) -> int:
        t = self.tensor(m.handle)
        self.bind(m.result, t.data if m.own_version else t.detach(), r)
        return _TENSOR_BYTES  # a new tensor object sharing the data

    def detach_inplace(self, m: session_pb2.DetachInplace,
                       r: session_pb2.InstructionResult) -> int:
        t = self.tensor(m.handle)
        t.detach_()
        tensor_info(m.handle, t, r.handles.tensors.add())
        return 0

    def retain_grad(self, m: session_pb2.RetainGrad, r: session_pb2.InstructionResult) -> int:
        self.tensor(m.handle).retain_grad()
        r.done.SetInParent()
        return 0

    def create_optimizer(self, m: session_pb2.CreateOptimizer,
                         r: session_pb2.InstructionResult) -> int:
        self._check_new(m.optimizer)
        params = [self.tensor(h) for h in m.params]
        self.s.optimizers[m.optimizer] = optimizers.create(m, params, self.limit)
        self.bound.append(m.optimizer)
        r.done.SetInParent()
        return 0

    def get_optimizer_state(self, m: session_pb2.GetOptimizerState,
                            r: session_pb2.InstructionResult) -> int:
        opt = self.optimizer(m.optimizer)
        self.look_through(len(self.s.tensors))
        self._count_response(optimizers.export(opt, self.s.tensors, r.optimizer_state))
        return 0

    def optimizer(self, handle: int) -> Any:
        opt = self.s.optimizers.get(handle)
        if opt is None:
            raise NotFoundError(f"unknown optimizer handle {handle} (released or never created)")
        return opt

    def optimizer_step(self, m: session_pb2.OptimizerStep,
                       r: session_pb2.InstructionResult) -> int:
        opt = self.optimizer(m.optimizer)
        before = optimizers.state_tensors(opt)
        optimizers.step(opt, m)
        r.done.SetInParent()
        return EXACT if before is None else optimizers.state_growth(opt, before)

    def optimizer_zero_grad(self, m: session_pb2.OptimizerZeroGrad,
                            r: session_pb2.InstructionResult) -> int:
        set_to_none = m.set_to_none if m.HasField("set_to_none") else True
        self.optimizer(m.optimizer).zero_grad(set_to_none=set_to_none)
        r.done.SetInParent()
        return 0

    def manual_seed(self, m: session_pb2.ManualSeed, r: session_pb2.InstructionResult) -> int:
        if m.generator:
            self.generator(m.generator).manual_seed(m.seed)
        else:
            self.s.generator = make_generator(m.seed)
        r.done.SetInParent()
        return 0

    # --- generators (torch.Generator objects; handle 0 is the session's default) ---------------

    def generator(self, handle: int) -> Any:
        if not handle:
            if self.s.generator is None:
                raise InvalidRequestError("this server's engine has no random number generator")
            return self.s.generator
        gen = self.s.generators.get(handle)
        if gen is None:
            raise NotFoundError(f"unknown generator handle {handle} (released or never created)")
        return gen

    def generator_for(self, op_name: str, handle: int) -> Any:
        """The generator an op names (ApplyOp/ApplyInplace.generator, not 0), for a random op.

        Raises:
            InvalidRequestError: the op draws no random numbers.
            NotFoundError: no such generator.
        """
        name = op_name[:-1] if op_name.endswith("_") else op_name
        if name not in ge.registry.OPS or not ops.takes_generator(name):
            raise InvalidRequestError(f"{op_name}() draws no random numbers: it takes no "
                                      "generator")
        return self.generator(handle)

    def create_generator(self, m: session_pb2.CreateGenerator,
                         r: session_pb2.InstructionResult) -> int:
        self._check_new(m.generator)
        self.s.generators[m.generator] = ge.Generator()
        self.bound.append(m.generator)
        r.done.SetInParent()
        return GENERATOR_BYTES

    def get_generator(self, m: session_pb2.GetGenerator, r: session_pb2.InstructionResult) -> int:
        gen = self.generator(m.generator)
        out = r.generator
        out.initial_seed = gen.initial_seed()
        if m.state:
            out.state = gen.state_bytes()
        self._count_response(out.ByteSize())
        return 0

    def set_generator_state(self, m: session_pb2.SetGeneratorState,
                            r: session_pb2.InstructionResult) -> int:
        self.generator(m.generator).set_state(m.state)
        r.done.SetInParent()
        return 0

    def release(self, m: session_pb2.Release, r: session_pb2.InstructionResult) -> int:
        s = self.s
        pop = s.tensors.pop
        if s.optimizers or s.generators:
            for h in m.handles:
                s.optimizers.pop(h, None)
                s.generators.pop(h, None)
        # A graph only the dropped tensors kept alive is freed in steps (engine.teardown: a
        # 600,000-node chain freed at once held every thread 0.3-0.7 s); on the event loop,
        # where health checks wait, by another thread. (Other tensors are freed as popped.)
        dropped = [t for t in map(pop, m.handles, _NONES) if t is not None and (
            t.grad_fn is not None or t._grad is not None or t._base is not None)]
        if dropped:
            if self.gate is None:
                teardown.drop(dropped)
            else:
                reclaim.later(dropped)
        r.done.SetInParent()
        return 0

    def _count_printed(self, t: ge.Tensor) -> None:
        """Count the elements `t`'s printed form shows against `MAX_PRINTED_ELEMENTS`.

        Raises:
            LimitExceededError: the batch's printed forms would pass it.
        """
        shown = formatting.shown_elements(t.shape)
        if self.printed + shown > MAX_PRINTED_ELEMENTS:
            raise LimitExceededError(
                f"printing a tensor of shape {ge.limits.shape_text(t.shape)} shows {shown} "
                f"elements; the printed forms of a batch's fetches may show at most "
                f"{MAX_PRINTED_ELEMENTS} in all ({self.printed} before this one): fetch its "
                f"value instead", limit="max_printed_elements")
        self.printed += shown

    def fetch(self, m: session_pb2.Fetch, r: session_pb2.InstructionResult) -> int:
        t = self.tensor(m.handle)
        out = r.fetch
        tensor_info(m.handle, t, out.info)  # reserved by reply_bound
        if not (m.value or m.repr or m.grad or m.graph):  # (grad_repr goes with grad)
            return 0
        g = quiet_grad(t) if m.grad else None
        room = self.max_response_bytes - self.response_bytes if self.max_response_bytes else -1
        # Data sizes are known before encoding: a value that cannot fit is not even encoded.
        least = (t.nbytes if m.value else 0) + (g.nbytes if g is not None else 0)
        if room >= 0 and least > room:
            _omit(out, least, self.max_response_bytes)
            return 0
        before = out.ByteSize()
        if m.value:
            codec.encode_tensor(t, out.value)
        if m.repr:
            self._count_printed(t)
            out.repr = repr(t)
        if m.grad:
            if g is None:
                out.grad.none.SetInParent()
            else:
                codec.encode_tensor(g, out.grad.tensor)
                if m.repr or m.grad_repr:
                    self._count_printed(g)
                    out.grad_repr = repr(g)
        if m.graph:
            self.look_through(len(self.s.tensors))
            autograd_graph(t, self.s.tensors, out.graph)
            self.looked += len(out.graph.nodes)
        size = out.ByteSize() - before
        if room >= 0 and size > room:
            _omit(out, size, self.max_response_bytes)
        else:
            self.response_bytes += size
        return 0

    def _count_response(self, n: int) -> None:
        self.response_bytes += n
        if self.max_response_bytes and self.response_bytes > self.max_response_bytes:
            raise LimitExceededError(
                f"batch response would exceed {self.max_response_bytes} bytes; fetch fewer or "
                "smaller tensors per batch", limit="max_message_bytes")

    HANDLERS: dict[str, Callable[..., int]] = {
        "create_tensor": create_tensor, "apply_op": apply_op, "apply_inplace": apply_inplace,
        "backward": backward, "grad": grad, "zero_grad": zero_grad, "set_grad": set_grad,
        "get_grad": get_grad, "get_saved": get_saved, "get_base": get_base,
        "set_data": set_data,
        "set_requires_grad": set_requires_grad,
        "detach": detach,
        "detach_inplace": detach_inplace, "retain_grad": retain_grad,
        "create_optimizer": create_optimizer, "optimizer_step": optimizer_step,
        "optimizer_zero_grad": optimizer_zero_grad, "manual_seed": manual_seed,
        "release": release, "fetch": fetch, "index": index, "index_put": index_put,
        "get_optimizer_state": get_optimizer_state, "tape": tape,
        "create_generator": create_generator, "get_generator": get_generator,
        "set_generator_state": set_generator_state,
        **functions.HANDLERS,  # custom autograd Functions (server/functions.py)
    }


def _omit(out: session_pb2.FetchResult, size: int, limit: int) -> None:
    """Leave a fetch's data out of the reply, keeping its info, and say why."""
    info = session_pb2.TensorInfo()
    info.CopyFrom(out.info)
    out.Clear()
    out.info.CopyFrom(info)
    out.omitted.bytes = size
    out.omitted.max_message_bytes = limit


def autograd_graph(t: ge.Tensor, tensors: dict[int, ge.Tensor],
                   out: session_pb2.AutogradGraph) -> None:
    """Fill `out` with the graph behind `t` (iteratively: graphs may be 100,000 nodes deep)."""
    if t.grad_fn is None:
        return
    handle_of = {id(v): h for h, v in tensors.items()}
    ids: dict[int, int] = {}
    stack = [t.grad_fn]

    def node_id(node: Any) -> int:
        key = id(node)
        if key not in ids:
            ids[key] = len(ids)
            entry = out.nodes.add(id=ids[key], name=node.name())
            variable = getattr(node, "variable", None)
            if isinstance(variable, ge.Tensor):
                entry.leaf_shape.extend(variable.shape)
                if id(variable) in handle_of:
                    entry.leaf_handle = handle_of[id(variable)]
            stack.append(node)
        return ids[key]

    stack.clear()
    node_id(t.grad_fn)
    while stack:
        node = stack.pop()
        source = ids[id(node)]
        for nxt, output_nr in node.next_functions:
            if nxt is None:
                out.nodes[source].next.add(output_nr=output_nr)
                continue
            target = node_id(nxt)
            out.nodes[source].next.add(node=target, output_nr=output_nr)
            out.edges.add(source=source, target=target)

