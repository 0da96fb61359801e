"""Small session batches begin on the event loop itself, and a worker finishes what is left.

Handing a call to a worker thread and its reply back costs two thread switches (`threaded`):
more server CPU than a small batch's own work. A batch has effects, so unlike a stateless call
(`inline.InlineRunGraph`) it cannot be tried and run again; instead it runs on the loop while
each next step is known to be small and the budget lasts, and pauses between two steps
otherwise: between instructions, or between two ops of a tape (`batch.Executor.proceed`). At a
pause the session is exactly as after the steps before, the session's lock stays held, and a
worker continues the same executor from that step: the reply, its error index and the
session's byte accounting are the ones a batch run on a worker alone gets. So the loop is never
blocked longer than the budget plus one step, and a step runs on the loop only when its cost is
bounded before it starts:

- an op (ApplyOp, a tape's op): none of `inline.LONG_OPS`, attributes listing at most
  `inline.MAX_ATTR_INTS` integers, an einsum of at most `MAX_EINSUM_OPERANDS` operands, no
  tensor input of more than `inline.MAX_ELEMENTS` elements, and no result either: the op runs
  under an allocation limit of that many elements (which also bounds a product's or a sort's
  work, and its inputs), checked from its declared bound before it runs; a refusal pauses the
  batch before the op, which then runs on the worker under the session's own limits (and
  fails there with its own error if it must);
- a backward pass (Backward, Grad): a graph of at most `MAX_NODES` engine nodes with at most
  `MAX_EDGES` inputs and outputs in all, walked first, whose tensors all have at most
  `inline.MAX_ELEMENTS` elements and `MAX_GRAPH_ELEMENTS` in all, and no hooks or custom
  Functions in the session (they may suspend the pass);
- an in-place op (ApplyInplace): none of `inline.LONG_OPS`, a target and tensor inputs of at
  most `inline.MAX_ELEMENTS` elements (so its result is as small), no other tensor sharing the
  target's data;
- an optimizer step: at most `MAX_PARAMS` parameters of at most `inline.MAX_ELEMENTS`
  elements each; a fetch: no graph, a tensor (and grad) of at most `inline.MAX_ELEMENTS`
  elements, `MAX_PRINTED` when printed;
- handle bookkeeping (create from the request's bytes, release, detach, zero_grad on small
  grads, requires_grad, retain_grad, get/set grad, manual_seed, an optimizer's zero_grad); a
  release leaves freeing the graphs of the tensors it drops to another thread (`reclaim`: a
  600,000-node chain's free held the loop 0.3-0.7 s);
- every other instruction pauses the batch before it.

A batch begins on the loop only when the session is idle: no earlier ExecuteBatch call of the
session is still on the server (counted per `x-session-id` from arrival to end, so a small batch
never overtakes one queued for a worker), its lock is free and a run slot is free (taken without
waiting, as the stateless try does; given back at a pause, and the worker queues for one as
any call does). Its request is at most `inline.MAX_REQUEST_BYTES`. A batch the server would
answer from its remembered replies, a malformed one, or one its checks refuse before anything
runs goes to the worker path whole, untouched, which answers it exactly as before. Errors raised
on the loop are reported by the worker too (`service.AutogradServicer.ExecuteBatch`), so a
batch's status, remembered outcome, metrics and log have one code path. Cancellation cannot
reach the loop while the batch runs there; its deadline is checked before every op.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc

import gradserve.engine as ge
from gradserve.engine.nodes import AccumulateGrad, Node
from gradserve.v1 import SESSION_ID_METADATA
from gradserve.v1 import session_pb2 as spb

from . import batch
from .inline import LONG_OPS, MAX_ATTR_INTS, MAX_ELEMENTS, MAX_REQUEST_BYTES, long_attrs
from .service import AutogradServicer, Call, check_after_request_id
from .sessions import MAX_REQUEST_ID, Session, SessionUse
from .threaded import ThreadContext

log = logging.getLogger(__name__)

#: Graph nodes a backward pass on the loop may walk (walked before it runs), and the elements of
#: their tensors in all: the pass is one step, and its nodes' rules run ~10-20 us each plus, for
#: the exact float32 kernels, up to ~2.5 us an element (15 `mish` nodes on 256 elements, 3840
#: in all, took 9.5-10 ms of thread CPU on the loaded VM): at most ~4 ms.
MAX_NODES = 64
MAX_GRAPH_ELEMENTS = 1024
#: Edges (node inputs) and recorded outputs of those nodes in all: a node's rule makes a
#: gradient per edge, and the walk itself visits each. Counted before a node's are walked, so
#: the walk's own time is bounded too: a `cat` of 200,000 empty inputs is one node (six of them
#: held the loop 23.6 s, walk and pass, before this bound).
MAX_EDGES = 256
#: Operands of an einsum run on the loop: its contraction path search takes ~n^3 steps before
#: it runs (32 operands of 4 elements: 9.5 ms; 12: 0.7 ms), which the loop's budget cannot
#: interrupt (a session's ops are not rerun: the deadline alone ends them).
MAX_EINSUM_OPERANDS = 12
#: Parameters of an optimizer stepped on the loop.
MAX_PARAMS = 32
#: Elements of a tensor (and of its grad) a fetch prints on the loop.
MAX_PRINTED = 64

# Instructions that change nothing but handles and flags (or zero a small grad): bounded by the
# request's size.
_BOOKKEEPING = frozenset({"create_tensor", "release", "detach", "detach_inplace",
                          "set_requires_grad", "retain_grad", "get_grad", "set_grad",
                          "manual_seed"})
# Instructions that run one out-of-place op: under the tight allocation limit, a refusal of
# which happens before the op runs (so the batch can pause there).
_ONE_OP = frozenset({"apply_op", "tape"})


class Resume:
    """A batch begun on the event loop, for a worker to finish (`ExecuteBatch`): the session
    (its lock held), the executor paused at its next step, or the error the loop met."""

    __slots__ = ("use", "executor", "error", "request_id", "context")

    def __init__(self, use: SessionUse, executor: batch.Executor, error: Exception | None,
                 request_id: str, context: ThreadContext):
        self.use = use
        self.executor = executor
        self.error = error
        self.request_id = request_id
        self.context = context

    @property
    def session(self) -> Session:
        return self.use.session

    def proceed(self, call: Call) -> spb.BatchResponse:
        """The rest of the batch, on this (worker) thread, under `call`'s checks.

        Raises:
            The loop's error, or the rest's (`batch.Executor.proceed`).
        """
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        executor = self.executor
        executor.gate = None
        executor.check_deadline = call.check
        executor.proceed()
        return executor.end()

    def close(self) -> None:
        """The call is over: the session is free for its next call."""
        self.use.__exit__()


class Gate:
    """What pauses a batch on the loop (`batch.Executor.gate`): the budget's end, and a step
    whose cost is not known to be small (see the module doc)."""

    __slots__ = ("end", "bounds")

    def __init__(self, end: float):
        self.end = end
        self.bounds = ge.limits.current()

    def pause(self, executor: batch.Executor, kind: str | None, m: Any) -> bool:
        """Before instruction `m` of `kind`: whether the batch pauses here. Else sets the
        allocation limit it runs under (the tight one for an op, the session's otherwise)."""
        if time.monotonic() >= self.end:
            return True
        if kind in _ONE_OP:
            if kind == "apply_op" and (m.op in LONG_OPS or _large_inputs(executor, m.inputs)
                                       or long_attrs(m.attrs.values())
                                       or _many_operands(m.op, m.inputs)):
                return True
            self.bounds.max_elements = min(MAX_ELEMENTS, executor.limit)
            return False
        small = _SMALL.get(kind) if kind is not None else None
        if kind in _BOOKKEEPING or (small is not None and small(executor, m)):
            self.bounds.max_elements = executor.limit
            return False
        return True  # kind None too: the worker reports it

    def pause_op(self, name: str, inputs: list[Any]) -> bool:
        """Before a tape's op `name` on `inputs`: whether the batch pauses here."""
        if time.monotonic() >= self.end or name in LONG_OPS or _many_operands(name, inputs):
            return True
        for x in inputs:
            if type(x) is ge.Tensor and x._data.size > MAX_ELEMENTS:
                return True
        return False

    def pause_attrs(self, attrs: dict[str, Any]) -> bool:
        """Before a tape's op with `attrs` (decoded): whether the batch pauses here."""
        return sum(len(v) for v in attrs.values() if type(v) in (list, tuple)) > MAX_ATTR_INTS

    def refused(self, kind: str | None, exc: BaseException) -> bool:
        """Whether `exc`, raised by an op of `kind` (an out-of-place op: before it ran), is the
        tight allocation limit's refusal (then the batch pauses before the op)."""
        return (kind in _ONE_OP and isinstance(exc, ge.errors.AllocationLimitError)
                and not isinstance(exc, ge.errors.BudgetExceededError))


def _large_inputs(executor: batch.Executor, values: Any) -> bool:
    tensors = executor.s.tensors
    for v in values:
        if v.WhichOneof("kind") == "handle":
            t = tensors.get(v.handle)
            if t is not None and t._data.size > MAX_ELEMENTS:
                return True
    return False


def _many_operands(name: str, inputs: Any) -> bool:
    return name == "einsum" and len(inputs) > MAX_EINSUM_OPERANDS


def _small_tensor(t: ge.Tensor | None) -> bool:
    return t is None or t._data.size <= MAX_ELEMENTS


def _small_graph(executor: batch.Executor, roots: Any) -> bool:
    """Whether a backward pass from the tensors with handles `roots` is bounded: see the
    module doc (unknown handles are left to the pass, which reports them)."""
    s = executor.s
    if s.hooks or s.suspended:
        return False
    stack = []
    for h in roots:
        t = s.tensors.get(h)
        if t is not None:
            if t._data.size > MAX_ELEMENTS:
                return False
            if t.grad_fn is not None:
                stack.append(t.grad_fn)
    seen: set[int] = set()
    elements = edges = 0
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > MAX_NODES:
            return False
        kind = type(node)
        if kind is AccumulateGrad:
            if node.variable._data.size > MAX_ELEMENTS:
                return False
            continue
        if kind is not Node or node.op.name in LONG_OPS:
            return False  # a custom Function's node, or a convolution's
        edges += len(node.next_nodes) + len(node.out_meta or ())
        if edges > MAX_EDGES:
            return False
        for meta in (node.meta, node.out_meta or ()):
            for entry in meta:
                if entry is not None:
                    n = ge.limits.numel(entry[0])
                    elements += n
                    if n > MAX_ELEMENTS or elements > MAX_GRAPH_ELEMENTS:
                        return False
        for c in node.next_nodes:
            if c is not None:
                stack.append(c)
    return True


def _small_fetch(executor: batch.Executor, m: spb.Fetch) -> bool:
    t = executor.s.tensors.get(m.handle)
    if m.graph or t is None:
        return not m.graph  # (an unknown handle: the fetch reports it)
    # printing costs ~6-9 us an element (a 256-element repr took 1.6-2.2 ms)
    most = MAX_PRINTED if m.repr or m.grad_repr else MAX_ELEMENTS
    return t._data.size <= most and (t._grad is None or t._grad._data.size <= most)


def _small_inplace(executor: batch.Executor, m: spb.ApplyInplace) -> bool:
    """An in-place op on a small target with small inputs, whose data no other tensor shares
    (its reply would describe them all: a scan of the session's handles)."""
    t = executor.s.tensors.get(m.target)
    if t is None:
        return True  # the instruction reports the unknown handle
    root = t._base if t._base is not None else t
    return (m.op[:-1] not in LONG_OPS and _small_tensor(t)
            and not getattr(root, "_has_views", False) and not _large_inputs(executor, m.inputs))


def _small_step(executor: batch.Executor, m: Any) -> bool:
    opt = executor.s.optimizers.get(m.optimizer)
    if opt is None:
        return True  # the step reports the unknown handle
    params = [p for group in opt.param_groups for p in group["params"]]
    return len(params) <= MAX_PARAMS and all(_small_tensor(p) for p in params)


def _small_zero(executor: batch.Executor, m: spb.ZeroGrad) -> bool:
    tensors = executor.s.tensors
    for h in m.handles:
        t = tensors.get(h)
        if t is not None and not _small_tensor(t._grad):
            return False
    return True


# kind -> whether instruction `m` of that kind is small (see the module doc)
_SMALL: dict[str, Any] = {
    "backward": lambda ex, m: _small_graph(ex, (m.tensor, *m.inputs)),
    "grad": lambda ex, m: _small_graph(ex, (*m.outputs, *m.inputs)),
    "apply_inplace": _small_inplace,
    "fetch": _small_fetch,
    "optimizer_step": _small_step,
    "optimizer_zero_grad": _small_step,
    "zero_grad": _small_zero,
}


def _session_id(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == SESSION_ID_METADATA:
            return value  # type: ignore[no-any-return]
    return None


class InlineBatch:
    """Begin ExecuteBatch calls on the event loop (see the module doc): `attempt(data,
    context)` returns the serialized reply, a `Resume` for a worker to finish, or None when the
    call goes to a worker whole.

    Args:
        servicer: the server's servicer (its config, store, authenticator, admission, run
            slots and metrics observer).
        seconds: the loop's budget per batch (at most `--run-quantum`: the batch holds a run
            slot and never yields it on the loop).

    Attributes:
        answered: batches answered on the loop so far.
        resumed: batches begun on the loop and handed to a worker so far.
        calls: ExecuteBatch calls on the server now, by `x-session-id` (calls whose session
            has one on the server already are not begun on the loop: they keep their order).
    """

    def __init__(self, servicer: AutogradServicer, seconds: float):
        self._servicer = servicer
        self.seconds = min(seconds, servicer.config.run_quantum)
        self.answered = 0
        self.resumed = 0
        self.calls: dict[str, int] = {}

    def attempt(self, data: bytes, context: Any) -> bytes | Resume | None:
        """The call's serialized BatchResponse, or a `Resume`, or None (see the class doc).

        Args:
            data: the request's bytes.
            context: the call's grpc.aio servicer context.
        """
        session_id = _session_id(context)
        if session_id is None:
            return None  # refused on the worker
        ahead = self.calls.get(session_id, 0)
        self.calls[session_id] = ahead + 1
        if ahead or len(data) > MAX_REQUEST_BYTES:
            return None
        start = time.perf_counter()
        reply = self._begin(data, context, session_id)
        if type(reply) is bytes:
            self.answered += 1
            self._servicer.observe("ExecuteBatch", grpc.StatusCode.OK,
                                   time.perf_counter() - start)
        elif reply is not None:
            self.resumed += 1
        return reply

    def leave(self, context: Any) -> None:
        """The call's handler ends (before its reply is sent: the client cannot have sent its
        next batch after seeing it)."""
        session_id = _session_id(context)
        if session_id is not None:
            left = self.calls.pop(session_id) - 1
            if left:
                self.calls[session_id] = left

    def _begin(self, data: bytes, context: Any, session_id: str) -> bytes | Resume | None:
        servicer = self._servicer
        now = time.monotonic()
        end = now + self.seconds
        remaining = context.time_remaining()
        if remaining is not None:
            if remaining <= 0:
                return None
            end = min(end, now + remaining)
        if not servicer.sessions:
            return None
        try:
            request = spb.BatchRequest.FromString(data)
            owner = servicer.auth.identify(context)
        except Exception:  # noqa: BLE001 - the worker path reports it
            return None
        rid = request.request_id
        if request.session_id != session_id or len(rid) > MAX_REQUEST_ID:
            return None
        try:
            servicer.admission.enter(owner)
        except Exception:  # noqa: BLE001 - refused: the worker path refuses it again, counted
            return None
        outcome: Any = None
        try:
            use = servicer.store.try_use(session_id, owner)
            if use is None:
                return None
            try:
                if rid and rid in use.session.recent:
                    return None  # replayed on the worker
                if request.after_request_id:
                    try:
                        check_after_request_id(request.after_request_id, rid)
                        use.session.check_after(request.after_request_id)
                    except Exception:  # noqa: BLE001 - refused on the worker
                        return None
                outcome = self._run(request, context, owner, use, end)
                if type(outcome) is spb.BatchResponse:
                    reply = servicer.batch_reply(use.session, rid, outcome)
                    return reply if type(reply) is bytes else reply.SerializeToString()
                return outcome
            finally:
                if type(outcome) is not Resume:
                    use.__exit__()
        finally:
            if type(outcome) is not Resume:
                servicer.admission.leave(owner)

    def _run(self, request: spb.BatchRequest, context: Any, owner: str, use: SessionUse,
             end: float) -> spb.BatchResponse | Resume | None:
        """The batch on the loop, its session locked: its reply when it ran to its end,
        a Resume when it paused or failed, None when nothing of it ran."""
        servicer = self._servicer
        slots = servicer.slots
        if not slots.try_acquire():
            return None  # a slot is busy or others wait: queue on a worker, fairly
        ctx = ThreadContext(context)
        error: Exception | None = None
        try:
            call = Call(ctx, owner, slots, servicer.config.run_quantum,
                        servicer.config.max_call_seconds)
            executor = batch.Executor(use.session, call.check_ended,
                                      servicer.config.max_message_bytes)
            try:
                executor.begin(request.instructions)
            except Exception:  # noqa: BLE001 - nothing ran: the worker path reports it
                return None
            log.debug("session %s: batch of %d instruction(s)", request.session_id,
                      len(request.instructions))
            executor.gate = Gate(end)
            try:
                with ge.limits.interrupt(call.check_ended):
                    done = executor.proceed()
            except Exception as exc:  # noqa: BLE001 - reported by the worker, as it would
                error, done = exc, False
        finally:
            slots.release()
        if done:
            return executor.end()
        ctx.admitted = call
        return Resume(use, executor, error, request.request_id, ctx)
