"""Small stateless RunGraph calls run on the event loop itself, within a budget.

Handing a call to a worker thread and its reply back to the event loop (`threaded`) costs two
thread switches, ~0.25 ms of server CPU per call on a 2-core VM: more than a small stateless
call's own work. A stateless call has no effects (it reads no session and keeps nothing), so
it can be tried on the loop and, if the try runs out of its budget, run again from its bytes on
a worker as before: the work wasted is at most the budget, and the loop is never blocked longer
than the budget plus one op. `InlineRunGraph` is that try. It answers a call only when the whole
call succeeds within the budget; anything else (a refusal, an error, an exhausted budget) goes to
the worker path unchanged, which then produces the call's status, metrics and log exactly as
without the try. So the metrics see every call once, and errors keep their one code path.

The budget bounds the try's work before it starts and between its ops, since one op cannot be
interrupted:

- before the request is parsed, its size (`MAX_REQUEST_BYTES`); before it is validated and run,
  its graph: at most `MAX_NODES` nodes, `MAX_VALUES` values (node inputs and request inputs:
  parsing, validation and decoding run unchecked), none of `LONG_OPS`, and no node whose
  attributes list more than `MAX_ATTR_INTS` integers;
- while it runs, the engine's own limits, tightened: no tensor of the try, input or result,
  forward or backward, may have more than `MAX_ELEMENTS` elements (`allocation_limit`, checked
  from each op's declared output bound before the op runs), so every op works on small tensors
  (and the try holds little memory: its byte budget stays the call's, `--max-session-bytes`);
  at most `MAX_OPS` ops and backward steps (`--max-call-ops`'s meter);
- and `seconds` of wall time from the start of the try (`--inline-seconds`, or the call's
  deadline if that is sooner), checked before each op and backward step (the engine's
  interrupt check).

Fairness (docs/security.md, run slots): the try takes a run slot only when one is free (then
nobody waits for one) and never waits for one: a call that would wait goes to a worker and
queues there as before. It is admitted (`--max-calls`, `--max-principal-calls`) and
authenticated as any call. Cancellation cannot reach a try (the loop runs nothing else meanwhile);
a call past its deadline is handed to the worker path, which refuses it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import grpc

from . import graph, graph_request
from .service import AutogradServicer

# The bounds of one try (see the module doc). The costliest ops at MAX_ELEMENTS, forward and
# backward together, on the loaded 2-core VM (bench/inline_ops.py, thread CPU ms, min-median of
# 30 rounds): a (16, 16) @ (16, 16) matmul 0.23-0.26 (torch's exact float32 products,
# engine/gemm.py; 14-20 at (32, 32): hence 256, not 1024), einsum of three 256-vectors
# 0.63-0.68, multinomial of 256 from 256 0.15-0.17. A convolution's kernels cost 3.0-3.6 at this
# size (a (1, 4, 8, 8) input, a (4, 4, 4, 4) weight), more than its tensors' sizes tell:
# `LONG_OPS` are never tried. The slowest other single ops are exact float32 kernels with a fixed
# cost (mish ~1.1 ms on 256 elements, layer_norm 0.8-1.4, log_sigmoid ~1 even on one element):
# a sweep of every op's test samples (tests/opinfo_*.py) under these limits found none slower.
# `mkldnn_rnn_layer` (an LSTM layer as oneDNN computes it) takes ~300-600 us a time step whatever
# its sizes: 51 steps of one unit (255 elements) held the loop ~30 ms (red team round 7).
MAX_REQUEST_BYTES = 8 * 1024
MAX_NODES = 128
MAX_VALUES = 256
MAX_ELEMENTS = 256
MAX_OPS = 256
#: Integers one op's attributes list in all: the op's checks and bound read each (~1-2 us: a
#: `roll` of 3,900 shifts, an 8 KiB request, ran 6-7 ms on the loop).
MAX_ATTR_INTS = 256
LONG_OPS = frozenset({"convolution", "convolution_backward_input", "convolution_backward_weight",
                      "convolution_backward_bias", "convolution_transpose", "mkldnn_rnn_layer"})


class _OverBudget(Exception):
    """The try ran out of time: the call goes to a worker."""


class InlineRunGraph:
    """Try a RunGraph call on the event loop (see the module doc): `attempt(data, context)`
    returns the serialized reply, or None when the call must run on a worker instead.

    Args:
        servicer: the server's servicer (its config, authenticator, admission, run slots and
            metrics observer).
        seconds: the try's wall-time budget (at most `--run-quantum`: the try holds a run slot
            and never yields it).

    Attributes:
        answered: calls answered on the loop so far.
        handed_on: tries given up so far (the call went to a worker).
    """

    def __init__(self, servicer: AutogradServicer, seconds: float):
        self._servicer = servicer
        base = servicer.config
        self.seconds = min(seconds, base.run_quantum)
        # the try's own limits: the server's, tightened (a refusal by them hands the call on)
        self.config = dataclasses.replace(
            base, max_tensor_elements=min(base.max_tensor_elements, MAX_ELEMENTS),
            max_call_ops=min(base.max_call_ops, MAX_OPS),
            max_nodes=min(base.max_nodes, MAX_NODES))
        self.answered = 0
        self.handed_on = 0

    def attempt(self, data: bytes, context: Any) -> bytes | None:
        """The call's serialized RunGraphResponse, computed here; None: hand it to a worker.

        Args:
            data: the request's bytes.
            context: the call's grpc.aio servicer context (read only: metadata, deadline).
        """
        if len(data) > MAX_REQUEST_BYTES:
            return None  # a large request does not count as a try
        start = time.perf_counter()
        reply = self._try(data, context)
        if reply is None:
            self.handed_on += 1
            return None
        self.answered += 1
        self._servicer.observe("RunGraph", grpc.StatusCode.OK, time.perf_counter() - start)
        return reply

    def _try(self, data: bytes, context: Any) -> bytes | None:
        servicer = self._servicer
        now = time.monotonic()
        remaining = context.time_remaining()
        end = now + self.seconds
        if remaining is not None:
            if remaining <= 0:
                return None
            end = min(end, now + remaining)
        try:
            request = graph_request.parse_run_graph(data)
            raw = None
            if type(request) is graph_request.RunGraphCall:
                request, raw = request.message, request.raw
            if request.session_id or not _small(request.graph.nodes, len(request.inputs)):
                return None
            owner = servicer.auth.identify(context)
        except Exception:  # noqa: BLE001 - the worker path reports it
            return None
        admission, slots = servicer.admission, servicer.slots
        try:
            admission.enter(owner)
        except Exception:  # noqa: BLE001 - refused: the worker path refuses it again, counted
            return None
        try:
            if not slots.try_acquire():
                return None  # a slot is busy or others wait: queue on a worker, fairly
            try:
                return _run(request, raw, self.config, end)
            finally:
                slots.release()
        except Exception:  # noqa: BLE001 - any failure is the worker path's to report
            return None
        finally:
            admission.leave(owner)


def _small(nodes: Any, values: int) -> bool:
    """Whether a graph of `nodes` with `values` inputs is within the try's bounds ahead of
    validation (`MAX_NODES`, `MAX_VALUES`, no `LONG_OPS`)."""
    if len(nodes) > MAX_NODES:
        return False
    for node in nodes:
        values += len(node.inputs)
        if node.op in LONG_OPS or long_attrs(node.attrs.values()):
            return False
    return values <= MAX_VALUES


def long_attrs(values: Any) -> bool:
    """Whether wire attributes `values` list more than `MAX_ATTR_INTS` integers in all."""
    n = 0
    for a in values:
        if a.WhichOneof("kind") == "ints_value":
            n += len(a.ints_value.values)
    return n > MAX_ATTR_INTS


def _run(request: Any, raw: Any, config: Any, end: float) -> bytes:
    """RunGraph's stateless path (`AutogradServicer.RunGraph`) under the try's `config`, with an
    interrupt check that gives up at `end` (monotonic)."""

    def check() -> None:
        if time.monotonic() >= end:
            raise _OverBudget

    graph.validate(request, config, handles_allowed=False)
    if time.monotonic() >= end:
        raise _OverBudget
    return graph.fit(graph.execute(request, config, check_deadline=check, raw_inputs=raw),
                     config)

