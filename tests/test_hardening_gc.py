"""Graphs are freed by reference counting, never left to Python's cycle collector.

Red team (rounds 4-6): a full collection walks every live object of every session with the GIL
held, the server's event loop included, and graphs held in reference cycles (a node that saved its
own output, whose grad_fn is the node: `exp`, `sigmoid`, `tanh`, ...) were only freed by such a
collection. A node now keeps a saved output's data, version counter and dtype, not the output
tensor (as torch's SavedVariable saves an output without its grad_fn), so dropping the last
tensor frees the graph at once. These tests run with the collector off: a node still alive after
its graph was dropped is in a cycle. The semantics the change touched (`_saved_result`, saved
tensor hooks, the in-place error on a saved output) are compared with torch.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests.reference import torch

from .test_engine_ops import OPINFOS, _arrays, _as_tuple, _engine_inputs, _flags

# torch warns that backward(create_graph=True) makes a cycle through a leaf's .grad; the
# engine's is the same cycle (torch's semantics), freed by the collector as before
_LEAF_GRAD_CYCLE = "ignore:Using backward\\(\\) with create_graph=True"


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The cycle collector off for the test (what is garbage already is collected first)."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _nodes(roots: list[Any]) -> list[weakref.ref[Any]]:
    """Weak references to every node reachable from `roots`' grad_fns."""
    seen: dict[int, Any] = {}
    stack = [t.grad_fn for t in roots if isinstance(t, ge.Tensor) and t.grad_fn is not None]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen[id(n)] = weakref.ref(n)
        stack.extend(c for c in n.next_nodes if c is not None and type(c) is not
                     ge.nodes.AccumulateGrad)
    return list(seen.values())


def _alive(refs: list[weakref.ref[Any]]) -> list[str]:
    return [n.name() for n in (r() for r in refs) if n is not None]


def _saves_output(name: str) -> bool:
    op = ge.registry.OPS[name]
    return any(u.out for u in op.uses)


def _op_graph(info: Any, index: int, sample: Any) -> list[weakref.ref[Any]]:
    """Run the op, its backward with create_graph and, where that records, a second
    backward; weak references to every node made (nothing else is kept)."""
    arrays = _arrays(info, index, sample, np.float64)
    ins, leaves = _engine_inputs(arrays, _flags(sample, arrays))
    ge.manual_seed(index)
    outs = [o for o in _as_tuple(ge.apply(info.name, ins, sample.attrs))
            if isinstance(o, ge.Tensor) and o.grad_fn is not None and o.dtype.is_floating_point]
    refs = _nodes(outs)
    if outs and leaves and info.check_grad:
        total = outs[0].sum()
        for o in outs[1:]:
            total = total + o.sum()
        grads = ge.autograd.grad(total, leaves, create_graph=True, allow_unused=True)
        refs += _nodes(list(grads))
        second = [g.sum() for g in grads if g is not None and g.requires_grad]
        if second and info.check_second_order:
            refs += _nodes(list(ge.autograd.grad(sum(second[1:], second[0]), leaves,
                                                 allow_unused=True)))
    return refs


# the first two samples of each op (all of them: ~2 minutes)
_CASES = [pytest.param(info, i, s, id=f"{info.name}[{i}]") for info in OPINFOS
          if _saves_output(info.name) for i, s in enumerate(info.samples[:2])]


@pytest.mark.parametrize("info, index, sample", _CASES)
def test_a_dropped_graph_of_ops_saving_their_output_is_freed_without_the_collector(
        no_collector: None, info: Any, index: int, sample: Any):
    refs = _op_graph(info, index, sample)
    if not refs:
        pytest.skip("no input requires grad (integer inputs): no graph")
    assert _alive(refs) == [], "nodes left to the cycle collector"


def _chain(x: Any, ops: list[str]) -> Any:
    y = x
    for op in ops:
        y = getattr(y, op)()
    return y


_CHAIN = ["exp", "sigmoid", "tanh", "sqrt", "relu", "reciprocal", "tan", "expm1", "rsqrt"]


def test_a_chain_and_its_higher_orders_are_freed_without_the_collector(no_collector: None):
    x = ge.tensor([0.3, 0.7], requires_grad=True)
    y = _chain(x, _CHAIN * 20).sum()
    g = y
    for _ in range(3):
        (g,) = ge.autograd.grad(g.sum(), x, create_graph=True)
    refs = _nodes([y, g])
    assert len(refs) > 1000
    del y, g
    assert _alive(refs) == []


def test_an_in_place_result_that_saves_itself_is_freed_without_the_collector(no_collector: None):
    x = ge.tensor([0.3, 0.7], requires_grad=True)
    y = x * 2
    y.exp_()
    y.sigmoid_()
    refs = _nodes([y])
    del y
    assert _alive(refs) == []


def test_hooks_and_retained_grads_leave_no_cycle(no_collector: None):
    x = ge.tensor([0.3, 0.7], requires_grad=True)
    y = x.exp()
    y.register_hook(lambda g: g * 2)
    y.grad_fn.register_hook(lambda gi, go: None)
    y.grad_fn.register_prehook(lambda go: None)
    y.retain_grad()
    z = y.tanh()
    z.sum().backward(retain_graph=True)
    refs = _nodes([z])
    del y, z
    assert _alive(refs) == []


def test_saved_tensor_hooks_leave_no_cycle(no_collector: None):
    x = ge.tensor([0.3, 0.7], requires_grad=True)
    with ge.autograd.graph.saved_tensors_hooks(lambda t: t * 1, lambda t: t):
        y = x.exp().sigmoid()
    refs = _nodes([y])
    del y
    assert _alive(refs) == []


# --- torch's semantics where the saved output changed form ---------------------------------------

def _both(build: Callable[[Any], Any]) -> tuple[Any, Any]:
    return build(ge), build(torch)


def _message(f: Callable[[], Any]) -> tuple[type, str]:
    try:
        f()
    except Exception as e:  # the type is compared by name below (engine vs torch)
        return type(e), str(e)
    raise AssertionError("no error")


@pytest.mark.parametrize("op", ["exp", "sigmoid", "tanh", "sqrt", "softmax", "relu"])
def test_saved_result_is_the_output_with_the_node_as_grad_fn(op: str):
    def build(lib: Any) -> tuple[Any, Any, Any]:
        x = lib.tensor([[0.3, 0.7], [1.5, 2.0]], requires_grad=True)
        y = x.softmax(1) if op == "softmax" else getattr(x, op)()
        return y, y.grad_fn._saved_result, y.grad_fn
    (ey, es, en), (ty, ts, tn) = _both(build)
    assert es.grad_fn is en and ts.grad_fn is tn
    assert es._version == ts._version == 0
    np.testing.assert_allclose(es.detach().numpy(), ts.detach().numpy(), rtol=1e-6)
    assert (es.requires_grad, es.is_leaf) == (ts.requires_grad, ts.is_leaf)
    assert es.shape == tuple(ts.shape)


@pytest.mark.parametrize("where", ["self", "view", "base"])
def test_modifying_a_saved_output_in_place_fails_with_torchs_message(where: str):
    def build(lib: Any) -> Callable[[], Any]:
        x = lib.tensor([[0.3, 0.7, 0.1], [1.5, 2.0, 0.2]], requires_grad=True)
        if where == "base":
            b = x * 1
            y = b[0]
            y = y.exp()
            b.add_(1)  # another tensor (not y's base): y is untouched
            y.mul_(2)
        else:
            y = x.exp()
            (y[0] if where == "view" else y).mul_(2)
        loss = y.sum()
        del y  # only the graph holds the output now
        return lambda: loss.backward()
    e_fn, t_fn = _both(build)
    (et, em), (tt, tm) = _message(e_fn), _message(t_fn)
    assert issubclass(et, RuntimeError) and tt is RuntimeError
    assert em == tm


def test_saved_output_of_a_dropped_tensor_packs_and_unpacks_as_torch():
    def build(lib: Any) -> tuple[list[Any], Any]:
        seen: list[Any] = []

        def pack(t: Any) -> Any:
            seen.append((tuple(t.shape), t.requires_grad, t.grad_fn is not None))
            return t * 1

        x = lib.tensor([0.3, 0.7], requires_grad=True)
        with lib.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = x.exp().tanh()
        loss = y.sum()
        del y
        loss.backward()
        return seen, x.grad
    (es, eg), (ts, tg) = _both(build)
    assert es == ts
    np.testing.assert_allclose(eg.numpy(), tg.numpy(), rtol=1e-6)


@pytest.mark.filterwarnings(_LEAF_GRAD_CYCLE)
def test_retain_graph_and_create_graph_through_saved_outputs_match_torch():
    def build(lib: Any) -> tuple[Any, Any]:
        x = lib.tensor([0.3, 0.7], requires_grad=True, dtype=lib.float64)
        y = x.exp().sigmoid().tanh()
        loss = y.sum()
        del y
        (g,) = lib.autograd.grad(loss, x, create_graph=True, retain_graph=True)
        (h,) = lib.autograd.grad(g.sum(), x, retain_graph=True)
        loss.backward()
        return x.grad, h
    (eg, eh), (tg, th) = _both(build)
    np.testing.assert_allclose(eg.numpy(), tg.numpy(), rtol=1e-12)
    np.testing.assert_allclose(eh.numpy(), th.numpy(), rtol=1e-12)


# --- a session's graphs: freed in steps (round 6's teardown), not by a collection ----------------

@pytest.mark.parametrize("how", ["close", "release"])
def test_a_sessions_chain_of_ops_saving_their_output_is_freed_in_steps(no_collector: None,
                                                                       how: str):
    """A session's graph of `sigmoid`s was a reference cycle per node: its close (or a Release)
    left it to the next full collection, whose pause walks every live object. Now its close
    frees it an object at a time (`engine.teardown`) with the collector off."""
    from gradserve.server.batch import Executor
    from gradserve.server.config import ServerConfig
    from gradserve.server.sessions import SessionStore
    from gradserve.v1 import session_pb2 as pb

    from .test_hardening_round6 import Frees
    from .test_server_inline_session import create, op

    n = 500
    store = SessionStore(ServerConfig())
    s = store.create("owner", pb.SessionOptions())
    ins = [create(2, np.float32(0.5), True)]
    for k in range(2, n + 2):
        ins += [op("sigmoid", [k], k + 1), pb.Instruction(release=pb.Release(handles=[k]))]
    ins.append(op("exp", [n + 2], 1))
    ins.append(pb.Instruction(release=pb.Release(handles=[n + 2])))
    ex = Executor(s, lambda: None, 0)  # type: ignore[arg-type]
    ex.run(ins)
    nodes, node = [], s.tensors[1].grad_fn
    while isinstance(node, ge.autograd.Node):
        nodes.append(node)
        node = node.next_nodes[0]
    assert len(nodes) == n + 1
    frees = Frees(nodes)
    del nodes, node
    frees.watch((lambda: store.close(s.id, "owner")) if how == "close" else  # type: ignore
                (lambda: ex.run([pb.Instruction(release=pb.Release(handles=[1]))])))
    assert frees.count == n + 1 and frees.longest <= 2
