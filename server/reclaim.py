"""Tensors released on the event loop, freed on a thread of their own.

Freeing a long autograd graph takes time in its nodes (~0.5 us each in one C cascade, ~1.5 us in
`engine.teardown`'s steps). A session batch begun on the loop (`inline_batch`) may release the
one handle that keeps such a graph alive, and the loop answers health checks: even freed in
steps, 600,000 nodes would keep it ~1 s. So a release on the loop hands the tensors that refer
to a graph (a `grad_fn`, a `.grad`, a base) to this module's thread, which frees them in steps
(sharing the GIL as any Python thread does); a release on a worker frees them there, in steps
too. The queue holds what the loop released, at most what the sessions held.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from gradserve.engine import teardown

log = logging.getLogger(__name__)

_queue: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def later(objects: list[Any]) -> None:
    """Free `objects` on the reclaiming thread (started on first use), in steps; the caller
    hands over its references (it keeps none)."""
    global _thread
    if _thread is None:
        with _lock:
            if _thread is None:
                _thread = threading.Thread(target=_run, name="gradserve-reclaim", daemon=True)
                _thread.start()
    _queue.put(objects)


def _run() -> None:
    while True:
        objects = _queue.get()
        try:
            teardown.drop(objects)
        except Exception:  # the thread must survive anything
            log.exception("freeing released tensors failed")
        del objects


def idle() -> bool:
    """Whether nothing waits to be freed (for tests)."""
    return _queue.empty()
