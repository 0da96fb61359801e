"""Recording instructions locally and sending them as one batch when a value or effect is needed.

A `Recorder` keeps the pending `BatchRequest`, and for each instruction a sink (what to do with
its result) and the user's (file, line) that recorded it. `flush()` appends the handles the
program dropped since the last request (a `ReleaseQueue`, fed by weakref finalizers), sends the
batch with a fresh request id, and applies the results. When the server reports that instruction
k failed, the error is raised with the user's line of instruction k; tensors the batch would have
bound from k on are marked failed, and using them raises the same error again.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import grpc

import gradserve.surface
from gradserve.v1 import session_pb2 as spb

from .errors import failed_index, from_rpc_error

# Frames in these folders are the library's, not the user's: the client's own, and the surface's
# spellings (gradserve.surface) that record ops through it.
_LIBRARY_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
               os.path.dirname(os.path.abspath(gradserve.surface.__file__)) + os.sep)

Sink = Callable[[spb.InstructionResult], None]


class ReleaseQueue:
    """Handles dropped by the program, to be released with the next request (thread-safe)."""

    def __init__(self) -> None:
        self._handles: list[int] = []
        self._lock = threading.Lock()
        self.closed = False

    def put(self, handle: int) -> None:
        if not self.closed:
            with self._lock:
                self._handles.append(handle)

    def take(self) -> list[int]:
        with self._lock:
            handles, self._handles = self._handles, []
        return handles

    def put_back(self, handles: list[int]) -> None:
        with self._lock:
            self._handles[:0] = handles

    def __len__(self) -> int:
        return len(self._handles)


def user_origin(depth: int = 2) -> tuple[str, int]:
    """(file, line) of the innermost frame outside gradserve.client and .surface: the user's op.

    `depth`: frames to skip from the caller of this function (`sys._getframe(depth)`), which
    must all be client code. Hot paths skip the frames they know are ours in one jump, since
    every frame walked with `f_back` costs a frame object.
    """
    frame: Any = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("<unknown>", 0)


class Recorder:
    """The pending batch of one session.

    Args:
        send: `send(request) -> BatchResponse`, raising grpc.RpcError on failure.
        session_id: the session the batches are for.
        target: the server's address, named in errors.
    """

    def __init__(self, send: Callable[[spb.BatchRequest], spb.BatchResponse], session_id: str,
                 target: str):
        self._send = send
        self.session_id = session_id
        self.target = target
        self.request = spb.BatchRequest()
        self.sinks: list[Sink | None] = []
        self.origins: list[tuple[str, int]] = []
        self.bound: list[list[Any]] = []  # per instruction: client tensors it binds
        self.released = ReleaseQueue()
        self.lock = threading.RLock()
        self.round_trips = 0

    def add(self, sink: Sink | None = None, binds: list[Any] | None = None,
            origin: tuple[str, int] | None = None) -> spb.Instruction:
        """A new pending instruction (fill it in); `binds` are tensors it will bind."""
        self.sinks.append(sink)
        self.bound.append(binds or [])
        self.origins.append(origin or user_origin(3))
        return self.request.instructions.add()

    def truncate(self, n: int) -> None:
        """Drop pending instructions from index `n` on (one that failed while being built)."""
        del self.request.instructions[n:]
        del self.sinks[n:], self.bound[n:], self.origins[n:]

    def __len__(self) -> int:
        return len(self.sinks)

    def flush(self) -> spb.BatchResponse | None:
        """Send the pending instructions (and releases); None when there was nothing to send.

        Raises:
            The mapped error of the failing instruction (see `errors.from_rpc_error`).
        """
        with self.lock:
            if not self.sinks:
                return None
            request, sinks, origins, bound = self.request, self.sinks, self.origins, self.bound
            self.request, self.sinks, self.origins, self.bound = spb.BatchRequest(), [], [], []
            released = self.released.take()
            if released:
                request.instructions.add().release.handles.extend(released)
            request.session_id = self.session_id
            request.request_id = uuid.uuid4().hex
            self.round_trips += 1
            try:
                response = self._send(request)
            except grpc.RpcError as err:
                k = failed_index(err)
                origin = origins[k] if k is not None and k < len(origins) else None
                exc = from_rpc_error(err, self.target, origin)
                start = k if k is not None else 0
                for tensors in bound[start:]:
                    for t in tensors:
                        t._error = exc
                if released and (k is None or k < len(sinks)):
                    self.released.put_back(released)
                raise exc from None
            results = response.results
            for i, sink in enumerate(sinks):
                if sink is not None:
                    sink(results[i])
            return response

    def flush_if_pending(self) -> None:
        """Flush when instructions are pending (dropped handles alone wait for the next one)."""
        if self.sinks:
            self.flush()
