"""Small requests that cost far more than they tell (red team, round 6).

Each was inside every declared bound before its fix:

- freeing a long graph: CPython frees an object's referents in the same C call that frees it,
  with the GIL held throughout, so dropping the one handle that reached a 600,000-node chain
  (a 60-byte `Release`, or a session's close or expiry) froze every thread for the whole
  cascade, 0.3-0.7 s: health checks waited 0.68 s, and on the event loop (a small batch's
  release runs there) nothing else could run at all. Graphs are now freed an object at a time
  (`engine.teardown`), on a worker or, for a release on the loop, on a thread of its own
  (`server.reclaim`).
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import teardown
from gradserve.server import inline_batch, reclaim
from gradserve.server.batch import Executor
from gradserve.server.config import ServerConfig
from gradserve.server.sessions import SessionStore
from gradserve.v1 import session_pb2 as pb
from tests.test_server_inline_session import create, op

CHAIN = 2000


# --- freeing long graphs --------------------------------------------------------------------------

class Frees:
    """Weakref callbacks on a graph's nodes: how many were freed, on which threads, and the
    longest run of frees with no other Python-level event between them (one C cascade)."""

    def __init__(self, nodes: list[object]):
        self.count = 0
        self.threads: set[int] = set()
        self.run = self.longest = 0
        self.refs = [weakref.ref(n, self._freed) for n in nodes]

    def _freed(self, _ref: object) -> None:
        self.count += 1
        self.threads.add(threading.get_ident())

    def watch(self, fn: Callable[[], object]) -> None:
        """Run `fn` with a profiler counting the frees in a row (this thread's events only)."""
        code = Frees._freed.__code__

        def profile(frame, event, _arg):  # type: ignore[no-untyped-def]
            if frame.f_code is code:
                if event == "call":
                    self.run += 1
                    self.longest = max(self.longest, self.run)
            else:
                self.run = 0

        sys.setprofile(profile)
        try:
            fn()
        finally:
            sys.setprofile(None)


def _chain_session() -> tuple[SessionStore, Any, Frees]:
    """A session whose handle 1 is the end of a CHAIN-node `sin` chain (no other handle), and
    the chain's nodes watched."""
    store = SessionStore(ServerConfig())
    s = store.create("owner", pb.SessionOptions())
    ins = [create(2, np.float32(0.5), True)]
    for k in range(2, CHAIN + 2):
        ins += [op("sin", [k], k + 1), pb.Instruction(release=pb.Release(handles=[k]))]
    ins.append(op("sin", [CHAIN + 2], 1))
    ins.append(pb.Instruction(release=pb.Release(handles=[CHAIN + 2])))
    Executor(s, lambda: None, 0).run(ins)
    assert list(s.tensors) == [1]
    nodes, node = [], s.tensors[1].grad_fn
    while isinstance(node, ge.autograd.Node):
        nodes.append(node)
        node = node.edges[0][0]
    assert len(nodes) == CHAIN + 1
    return store, s, Frees(nodes)


def test_dropping_a_long_chain_frees_it_an_object_at_a_time():
    """Dropped at once, every node of the chain is freed in one C cascade (no other thread can
    run meanwhile); `teardown.drop` frees one node per step of its loop."""
    for stepwise in (False, True):
        x = ge.tensor([0.5], requires_grad=True)
        y = x
        for _ in range(CHAIN):
            y = y.sin()
        nodes, node = [], y.grad_fn
        while isinstance(node, ge.autograd.Node):
            nodes.append(node)
            node = node.edges[0][0]
        frees = Frees(nodes)
        del nodes, node
        held = [y]
        del y
        frees.watch(functools.partial(teardown.drop, held) if stepwise else held.clear)
        assert frees.count == CHAIN
        assert (frees.longest <= 2) if stepwise else (frees.longest == CHAIN)


def test_drop_lets_go_of_objects_others_still_hold():
    """Only references are dropped: a node another tensor still reaches is left as it is."""
    x = ge.tensor([0.5, 0.25], requires_grad=True)
    mid = x.sin().exp()
    end = mid.cos().sin()
    teardown.drop([end])
    mid.sum().backward()
    np.testing.assert_allclose(x.grad._data, np.cos([0.5, 0.25]) * np.exp(np.sin([0.5, 0.25])),
                               rtol=1e-6)


@pytest.mark.parametrize("how", ["close", "release"])
def test_a_close_or_a_release_on_a_worker_frees_the_graph_in_steps(how: str):
    """A session's close (and expiry) or a Release dropped the handle in one cascade: 600,000
    nodes held health checks 0.28-0.68 s."""
    store, s, frees = _chain_session()
    ex = Executor(s, lambda: None, 0)  # type: ignore[arg-type]
    frees.watch((lambda: store.close(s.id, "owner")) if how == "close" else  # type: ignore
                (lambda: ex.run([pb.Instruction(release=pb.Release(handles=[1, 7]))])))
    assert frees.count == CHAIN + 1 and frees.longest <= 2


def test_a_release_on_the_event_loop_leaves_the_graph_to_another_thread():
    """A small batch's release runs on the event loop: the loop only hands the tensor over."""
    store, s, frees = _chain_session()
    ex = Executor(s, lambda: None, 0)  # type: ignore[arg-type]
    ex.gate = inline_batch.Gate(math.inf)
    with ge.limits.allocation_limit(None):  # (restores the limit the gate sets)
        ex.run([pb.Instruction(release=pb.Release(handles=[1]))])
    assert not s.tensors
    deadline = time.monotonic() + 30
    while frees.count < CHAIN + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert frees.count == CHAIN + 1 and reclaim.idle()
    assert threading.get_ident() not in frees.threads


# --- ids of dropped custom Functions --------------------------------------------------------------

def _function_batch(first: int, n: int) -> list[pb.Instruction]:
    """n custom Function nodes (ids first..), each dropped at once (its one result released)."""
    from gradserve.v1 import graph_pb2

    ins = []
    for node in range(first, first + n):
        ins.append(pb.Instruction(apply_function=pb.ApplyFunction(
            name="F", node=node, args=[graph_pb2.Value(handle=1)], outputs=[1], results=[2])))
        ins.append(pb.Instruction(release=pb.Release(handles=[2])))
    return ins


def test_ids_of_dropped_functions_count_until_a_reply_reports_them():
    """A batch that fails reports none of the ids of the Function nodes that died in it, so
    they waited for the next reply, in no budget: failing batches of ApplyFunction + Release
    (50,000 ids each) grew them without end. They count in the session's bytes, and a reply
    reports at most MAX_DROPPED_REPORTED (the rest come with the next)."""
    from gradserve.server.errors import Located
    from gradserve.server.sessions import DROPPED_ID_BYTES, MAX_DROPPED_REPORTED

    store = SessionStore(ServerConfig())
    s = store.create("owner", pb.SessionOptions())
    Executor(s, lambda: None, 0).run([create(1, np.float32(0.5), True)])
    base = s.measure()[0]
    n = 1000
    with np.testing.assert_raises(Located):
        Executor(s, lambda: None, 0).run(
            _function_batch(1, n) + [pb.Instruction(fetch=pb.Fetch(handle=99))])
    assert len(s.dropped_functions) == n
    assert s.measure()[0] == base + n * DROPPED_ID_BYTES
    s.dropped_functions.extend(range(MAX_DROPPED_REPORTED + 5))
    reply = Executor(s, lambda: None, 1 << 26).run([pb.Instruction(release=pb.Release())])
    assert list(reply.dropped_functions) == list(range(1, n + 1)) + list(
        range(MAX_DROPPED_REPORTED - n))
    assert len(s.dropped_functions) == n + 5
    assert len(Executor(s, lambda: None, 0).run([]).dropped_functions) == n + 5
    assert s.measure()[0] == base


# --- lookups by identity through all of a session's handles ---------------------------------------

def test_a_batchs_lookups_through_all_handles_are_bounded(monkeypatch):
    """GetBase, GetSaved, PackSaved, GetOptimizerState and a graph Fetch each look through all
    the session's handles (a tensor's handle, found by identity): 100 graph fetches of 9 bytes
    in a session of 983,050 handles took 42 s of CPU. After a batch's first look, its looks
    are held to MAX_LOOKED_THROUGH handles and graph nodes in all."""
    import pytest

    from gradserve.server import batch
    from gradserve.server.errors import LimitExceededError, Located

    monkeypatch.setattr(batch, "MAX_LOOKED_THROUGH", 1000)
    store = SessionStore(ServerConfig())
    s = store.create("owner", pb.SessionOptions())
    Executor(s, lambda: None, 0).run(
        [create(1, np.ones((2, 2), np.float32), True), op("t", [1], 2), op("mul", [1, 1], 3)]
        + [create(h, np.float32(h)) for h in range(10, 10 + 297)])
    assert len(s.tensors) == 300
    base = pb.Instruction(get_base=pb.GetBase(handle=2, result=99))
    saved = pb.Instruction(get_saved=pb.GetSaved(handle=3, name="_saved_self", result=98))
    graph = pb.Instruction(fetch=pb.Fetch(handle=3, graph=True))
    for first in (base, saved, graph):
        for second in (base, saved, graph):
            reply = Executor(s, lambda: None, 0).run([first, second, first])  # 900 (+ nodes)
            assert len(reply.results) == 3
            with pytest.raises(Located) as info:
                Executor(s, lambda: None, 0).run([first, second, first, second])
            assert info.value.instruction == 3
            assert isinstance(info.value.__cause__, LimitExceededError)
            assert "look through at most 1000 handles" in str(info.value.__cause__)
    monkeypatch.setattr(batch, "MAX_LOOKED_THROUGH", 10)
    assert Executor(s, lambda: None, 0).run([graph]).results[0].fetch.graph.nodes  # the first


# --- tensors of more than 32 dims -----------------------------------------------------------------

HIGH = (1,) * 38 + (2,)  # 39 dims: within the wire's 64, past numpy's np.broadcast (32)


@pytest.mark.parametrize("name, shapes, attrs", [
    ("add", [HIGH, (3, 1)], {}),
    ("masked_fill", [HIGH, (3, 2), ()], {}),
    ("where", [(3, 2), HIGH, (1,)], {}),
    ("pow", [HIGH, (3, 1)], {}),
    ("addcmul", [HIGH, (3, 1), (2,)], {"value": 0.5}),
    ("tanh_backward", [(3, 2), HIGH], {}),
])
def test_ops_broadcast_tensors_of_more_than_32_dims_as_torch(name, shapes, attrs):
    """numpy's np.broadcast_shapes and np.broadcast_arrays take at most 32 dims: any
    broadcasting op of a 33-64-dim tensor failed with numpy's RuntimeError, INTERNAL on the
    wire (a RunGraph of `add` of a (1,)*40 tensor). Shapes are broadcast in Python now
    (`surface.layout.broadcast_shapes`), for any rank."""
    from tests.reference import torch

    rng = np.random.default_rng(0)
    arrays = [rng.random(s).astype(np.float32) + 0.5 for s in shapes]
    if name in ("masked_fill", "where"):
        k = 1 if name == "masked_fill" else 0
        arrays[k] = arrays[k] > 1.0
    with ge.limits.allocation_limit(1 << 20):  # (the declared bound broadcasts the shapes)
        ours = ge.apply(name, [ge.tensor(a) for a in arrays], attrs)
    fn = torch.ops.aten.tanh_backward if name == "tanh_backward" else getattr(torch, name)
    theirs = fn(*[torch.tensor(a) for a in arrays], **attrs)
    assert tuple(ours.shape) == tuple(theirs.shape) and len(ours.shape) == 39
    np.testing.assert_array_equal(ours._data, theirs.numpy())


def test_shapes_that_do_not_broadcast_are_refused_as_torch_refuses_them():
    from gradserve.surface.layout import broadcast_shapes
    from tests.reference import torch

    assert broadcast_shapes((1,) * 40, (3, 1), (2,)) == (1,) * 38 + (3, 2)
    with pytest.raises(ValueError):
        broadcast_shapes((1,) * 40 + (3,), (2,))
    x, y = ge.tensor(np.ones((1,) * 40 + (3,), np.float32)), ge.tensor(np.ones(2, np.float32))
    with ge.limits.allocation_limit(1 << 20), pytest.raises(ge.errors.InvalidArgumentError) as ours:
        ge.apply("add", [x, y], {})
    with pytest.raises(RuntimeError) as theirs:
        torch.ones((1,) * 40 + (3,)) + torch.ones(2)
    assert str(ours.value) == str(theirs.value)


# --- printed forms of many elements ---------------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (5,), (1000,), (1001,), (7, 7), (100, 100), (2,) * 11,
                                   (3, 1, 400), (1, 2, 3, 4, 5, 6)])
def test_shown_elements_bounds_what_printing_shows(shape):
    from gradserve.surface import formatting

    values = np.zeros(shape, np.float32)
    shown = formatting.shown_elements(shape)
    assert shown >= formatting._summarized_values(values, formatting.PrintOptions()).size
    assert shown == (values.size if values.size <= 1000 else
                     math.prod(min(d, 6) for d in shape))


def test_a_batchs_printed_forms_are_bounded():
    """A tensor of many short dims prints every element, summarized or not (as torch's does):
    a 60-byte batch fetching the printed form of a scalar expanded to (2,) * 26 ran for
    minutes in one call and peaked at 4 GB. A batch's printed forms show at most
    MAX_PRINTED_ELEMENTS elements in all, refused before printing."""
    import pytest

    from gradserve.server import batch
    from gradserve.server.errors import LimitExceededError, Located

    store = SessionStore(ServerConfig())
    s = store.create("owner", pb.SessionOptions())
    Executor(s, lambda: None, 0).run([
        create(1, np.float32(1.5)), op("expand", [1], 2, size=[2] * 26),
        op("expand", [1], 3, size=[2] * 17), create(4, np.ones((100, 100), np.float32))])
    fetch = {h: pb.Instruction(fetch=pb.Fetch(handle=h, repr=True)) for h in (2, 3, 4)}
    for instructions, failing in (([fetch[2]], 0), ([fetch[4], fetch[3], fetch[3]], 2)):
        start = time.thread_time()
        with pytest.raises(Located) as info:
            Executor(s, lambda: None, 0).run(instructions)
        assert time.thread_time() - start < 5  # (it printed one (2,) * 17 in the second)
        assert info.value.instruction == failing
        assert isinstance(info.value.__cause__, LimitExceededError)
        assert f"may show at most {batch.MAX_PRINTED_ELEMENTS} in all" in str(info.value.__cause__)
    reply = Executor(s, lambda: None, 0).run([fetch[4], fetch[3]])
    assert reply.results[0].fetch.repr.startswith("tensor([[1., 1., 1.,  ..., 1., 1., 1.],")
