"""The backward pass (iterative, so a 100,000-op chain needs no recursion).

`backward` and `grad` below drive the graph's nodes (`nodes.Node`, `nodes.AccumulateGrad`) with
plain numpy arrays, or, for `create_graph=True`, with engine Tensors so that the backward pass is
itself recorded.
"""

from __future__ import annotations

import heapq
import itertools
import warnings
import weakref
from collections.abc import Generator, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from gradserve.surface import anomaly, autograd_graph, compat, grad_mode, saved_hooks
from gradserve.surface.anomaly import detect_anomaly, set_detect_anomaly  # noqa: F401

from . import (
    errors,
    function,  # noqa: F401  (torch.autograd.function: once_differentiable ...)
    hooks,
    limits,
    parallel,
)
from .dispatch import refresh_if_stale

# torch.autograd's namespace: Function, once_differentiable, functional, gradcheck
from .function import BackwardFunction, Function, FunctionCtx, once_differentiable  # noqa: F401
from .functional import functional, gradcheck, gradgradcheck  # noqa: F401
from .nodes import SUSPEND, AccumulateGrad, Node, edge, owned_array
from .tensor import Tensor

graph = autograd_graph.namespace(  # torch.autograd.graph
    Node, AccumulateGrad, BackwardFunction, **saved_hooks.MEMBERS)

CREATE_GRAPH_WARNING = (
    "Using backward() with create_graph=True will create a reference cycle between the parameter "
    "and its gradient which can cause a memory leak. We recommend using autograd.grad when "
    "creating the graph to avoid this. If you have to use this function, make sure to reset the "
    ".grad fields of your parameters to None after use to break the cycle and avoid the leak.")
_warned_create_graph: list[bool] = []  # non-empty once backward(create_graph=True) warned


def _retain(node: Node, nr: int, g: Any, create_graph: bool) -> None:

    ref = node.retained.get(nr) if node.retained else None
    t = ref() if ref is not None else None
    if t is None or g is None:
        return
    if create_graph:
        # torch's retain_grad hook: a clone first (grad_fn CloneBackward0), then grad + new
        gt = g if isinstance(g, Tensor) else Tensor._make(np.array(g))
        t._grad = gt.clone() if t._grad is None else t._grad + gt
    elif t._grad is None:
        t._grad = Tensor._make(np.array(g, dtype=t.dtype.np, copy=True))
    else:
        t._grad = Tensor._make(t._grad._data + g)
    limits.keep(t._grad._data.nbytes + limits.TENSOR_BYTES)  # (with create_graph too)


def _dependencies(roots: Sequence[Any]) -> dict[Any, int]:
    """How many edges from nodes reachable from `roots` lead into each node (iterative)."""
    deps: dict[Any, int] = {}
    root_set = set(roots)
    stack = list(root_set)
    while stack:
        for c in stack.pop().next_nodes:
            if c is not None:
                if c in deps:
                    deps[c] += 1
                else:
                    deps[c] = 1
                    if c not in root_set:
                        stack.append(c)
    return deps


def _needed(roots: Sequence[Any], targets: set[int]) -> dict[Any, bool]:
    """For each reachable node, whether a captured node lies below it (children-first DFS)."""
    needed: dict[Any, bool] = {}
    stack: list[tuple[Any, bool]] = [(r, False) for r in roots]
    push, pop = stack.append, stack.pop
    while stack:
        n, done = pop()
        if done:  # (loops, not any() over a generator: this runs once per node of a pass)
            found = False
            for c in n.next_nodes:
                if c is not None and (id(c) in targets or needed.get(c, False)):
                    found = True
                    break
            needed[n] = found
        elif n not in needed:
            needed[n] = False
            push((n, True))
            for c in n.next_nodes:
                if c is not None and c not in needed:
                    push((c, False))
    return needed



Steps = Generator[tuple[Any, list[Any]], Any, Any]


def execute(roots: Sequence[tuple[Any, int]], root_grads: Sequence[Any], *, keep_graph: bool,
            create_graph: bool, capture: dict[tuple[Any, int], int] | None = None,
            accumulate: bool = True) -> list[Any]:
    """Run the backward pass from `roots` (node, output index) with their gradients.

    With `capture`, gradients arriving at those (node, output) keys are returned in their slots
    and only nodes leading to a captured key run; with `accumulate`, AccumulateGrad nodes add into
    their leaves' `.grad`.
    """
    return drive(execute_steps(roots, root_grads, keep_graph=keep_graph,
                               create_graph=create_graph, capture=capture,
                               accumulate=accumulate))


def drive(steps: Steps) -> Any:
    """Run a resumable pass (`execute_steps`, `backward_steps`, `grad_steps`) to its end in
    process, where no node may suspend it.

    Raises:
        AutogradError: a node's gradients must come from a session's client.
    """
    try:
        node, _ = next(steps)
    except StopIteration as done:
        return done.value
    steps.close()
    raise errors.AutogradError(
        f"{node.name()} is a remote custom Function's node: its backward runs in the session "
        "client that recorded it")


def _suspendable(steps: Steps, ctx: Any, create_graph: bool) -> Steps:
    """`yield from steps` (hooks that may suspend the pass), leaving grad mode as it was
    around each suspension (the caller runs other work until it resumes)."""
    try:
        request = next(steps)
    except StopIteration as done:
        return done.value
    while True:
        ctx.__exit__()
        try:
            reply = yield request
        finally:
            grad_mode.set_grad_enabled(create_graph)
        try:
            request = steps.send(reply)
        except StopIteration as done:
            return done.value


def execute_steps(roots: Sequence[tuple[Any, int]], root_grads: Sequence[Any], *,
                  keep_graph: bool, create_graph: bool,
                  capture: dict[tuple[Any, int], int] | None = None,
                  accumulate: bool = True, held: list[Any] | None = None) -> Steps:
    """`execute` as a generator: it yields (node, grads) where a node's `apply` returned
    SUSPEND and continues with the node's gradients sent back; returns what `execute` does.

    `held`, when given, receives the pass's own containers of gradients (those waiting for
    their node, and those captured for `inputs`): what a suspended pass keeps alive, for its
    caller's accounting."""
    root_nodes = [r[0] for r in roots]
    deps = _dependencies(root_nodes)
    needed: dict[Any, bool] | None = None
    captured: list[Any] = []
    if capture is not None:
        captured = [None] * (max(capture.values()) + 1 if capture else 0)
        needed = _needed(root_nodes, {id(k[0]) for k in capture})
    buffers: dict[Any, list[Any]] = {}
    for (node, nr), g in zip(roots, root_grads):
        _add(buffers, node, nr, g)
    if held is not None:
        held.extend((buffers, captured))
    # torch's ready queue: the ready node with the highest sequence number runs first
    # (AccumulateGrad's is the maximum); `order` breaks ties in arrival order
    ready: list[tuple[int, int, Any]] = []
    order = itertools.count().__next__
    seen: set[int] = set()
    for node in root_nodes:
        if deps.get(node, 0) == 0 and id(node) not in seen:
            seen.add(id(node))
            heapq.heappush(ready, (-getattr(node, "sequence_nr", 0), order(), node))
    ctx = grad_mode.set_grad_enabled(create_graph)
    local = limits._local
    lim = local.limits
    # Under a byte budget, numpy gradients (recorded ops charge themselves) are charged when a
    # node makes them and credited when the node they flow into has consumed them: the charge
    # follows the gradients alive at once (GradientMeter's bookkeeping, inlined below: it runs
    # for every node).
    meter = GradientMeter() if not create_graph and lim.bytes_left is not None else None
    node_hooks, leaf_hooks = hooks.registries()  # hooks.active() without a call per node
    check_nan = anomaly.checking_nan()  # torch.autograd.detect_anomaly, read as the pass starts
    heappop, heappush, take = heapq.heappop, heapq.heappush, buffers.pop
    # The thread's bounds and the interrupt check are read once, and again after each point
    # where the pass may have been suspended (it then resumes in another call, perhaps on
    # another thread, under that call's check): a thread-local read costs about three plain
    # attribute reads, and this loop runs for every node.
    check = lim.check
    try:
        while ready:
            node = heappop(ready)[2]
            if check is not None:
                check()  # the caller's deadline / cancellation, between nodes (limits.tick)
            gs = take(node, None) or [None]
            if node_hooks or leaf_hooks:
                gs = yield from _suspendable(
                    hooks.before(node, gs, create_graph, type(node) is AccumulateGrad), ctx,
                    create_graph)
                lim = local.limits
                check = lim.check
            kept = False  # some of `gs` outlives this step (captured, retained, accumulated)
            if capture is not None:
                for nr, g in enumerate(gs):
                    slot = capture.get((node, nr))
                    if slot is not None and g is not None:
                        prev = captured[slot]
                        captured[slot] = g if prev is None else prev + g
                        kept = True
            if type(node) is AccumulateGrad:
                if accumulate and gs[0] is not None:
                    owned = not create_graph and owned_array(gs, 0)  # before gs[0] is read
                    node.accumulate(gs[0], create_graph, owned)
                    if node_hooks or leaf_hooks:
                        yield from _suspendable(hooks.accumulated(node), ctx, create_graph)
                        lim = local.limits
                        check = lim.check
                continue  # its gradient becomes (or is added into) .grad: not credited
            if node.retained:
                kept = True
                for nr, g in enumerate(gs):
                    _retain(node, nr, g, create_graph)
            out_grads = None
            if needed is None or needed[node]:
                if len(gs) < node.n_out:
                    gs = gs + [None] * (node.n_out - len(gs))
                if gs[0] is not None or any(g is not None for g in gs):
                    out_grads = node.apply(gs, create_graph)
                    if out_grads is SUSPEND:
                        ctx.__exit__()  # the caller runs other work until it resumes the pass
                        try:
                            out_grads = yield node, gs
                        finally:
                            grad_mode.set_grad_enabled(create_graph)  # ctx restores it at the end
                        lim = local.limits
                        check = lim.check
                    if node_hooks or leaf_hooks:
                        out_grads = yield from _suspendable(
                            hooks.after(node, out_grads, gs, create_graph), ctx, create_graph)
                        lim = local.limits
                        check = lim.check
                    if check_nan:
                        _refuse_nan(node, out_grads)
                    if meter is not None:
                        if type(out_grads) is list or type(out_grads) is tuple:
                            n = 0
                            for g in out_grads:
                                if g is not None:
                                    n += getattr(g, "nbytes", 0)
                        else:
                            n = int(getattr(out_grads, "nbytes", 0))
                        left = lim.bytes_left
                        if left is not None:
                            if n > left:
                                limits.charge(n, node.name, "gradients of ")  # raises
                            lim.bytes_left = left - n
                        meter.live += n
                        g = None  # (no reference left to a gradient: see owned_array)
                    if not keep_graph:
                        node.release()
            if out_grads is None:
                for child in node.next_nodes:
                    if child is not None:
                        left = deps[child] - 1
                        deps[child] = left
                        if left == 0:
                            heappush(ready, (-getattr(child, "sequence_nr", 0), order(), child))
            else:
                nrs = node.next_nrs
                i = 0
                for child in node.next_nodes:
                    if child is not None:
                        gi = out_grads[i]
                        if gi is not None:
                            nr = nrs[i]
                            if nr == 0 and child not in buffers:
                                buffers[child] = [gi]
                            else:
                                merged = _add(buffers, child, nr, gi)
                                if meter is not None and merged is not None:
                                    meter.merged(merged, node)
                        left = deps[child] - 1
                        deps[child] = left
                        if left == 0:
                            heappush(ready, (-getattr(child, "sequence_nr", 0), order(), child))
                    i += 1
            # drop this step's references to the gradients it handed on, so the node they went to
            # may find them owned (nodes.owned_array) and write into them
            out_grads = gi = merged = None
            if meter is not None and not kept:
                n = 0
                for g in gs:
                    if g is not None:
                        n += getattr(g, "nbytes", 0)
                if n > meter.live:
                    n = meter.live
                if n:
                    left = lim.bytes_left
                    if left is not None:
                        lim.bytes_left = left + n
                    meter.live -= n
                g = None
    finally:
        ctx.__exit__()
    return captured


class GradientMeter:
    """The byte-budget bookkeeping of a backward pass without a graph (see `execute`): `live`
    is what the pass charged and has not credited back, so it never credits more."""

    __slots__ = ("live",)

    def __init__(self) -> None:
        self.live = 0

    def made(self, grads: Any, node: Any) -> None:
        # limits.nbytes_of and limits.charge inlined: this runs for every node of a pass
        if type(grads) is tuple or type(grads) is list:
            n = 0
            for g in grads:
                if g is not None:
                    n += getattr(g, "nbytes", 0)
        else:
            n = int(getattr(grads, "nbytes", 0))
        lim = limits.current()
        left = lim.bytes_left
        if left is not None:
            if n > left:
                limits.charge(n, node.name, "gradients of ")  # raises, naming the node
            lim.bytes_left = left - n
        self.live += n

    def merged(self, parts: tuple[Any, Any, Any], node: Any) -> None:
        """Two gradients summed into a new array: charge it, credit the two."""
        old, new, total = parts
        self.made(total, node)
        self.consumed((old, new))

    def consumed(self, grads: Any) -> None:
        n = 0
        for g in grads:  # a list or tuple of arrays and None (limits.nbytes_of inlined)
            if g is not None:
                n += getattr(g, "nbytes", 0)
        if n > self.live:
            n = self.live
        if n:
            lim = limits.current()
            left = lim.bytes_left
            if left is not None:
                lim.bytes_left = left + n
            self.live -= n


def _add(buffers: dict[Any, list[Any]], node: Any, nr: int, g: Any) -> tuple[Any, Any, Any] | None:
    """Add `g` into `node`'s gradient buffer; returns (old, g, sum) when it summed two."""
    buf = buffers.get(node)
    if buf is None:
        buf = buffers[node] = []
    while len(buf) <= nr:
        buf.append(None)
    old = buf[nr]
    if old is None:
        buf[nr] = g
        return None
    if type(old) is np.ndarray and type(g) is np.ndarray and old.size >= parallel.MIN_ELEMENTS:
        # old + g, split over threads; into old itself when it is a gradient nothing else
        # refers to (but this frame's `old`) and of the sum's shape and dtype, as torch's
        # InputBuffer adds in place into a buffer it owns
        into = (old if old.shape == g.shape and old.dtype == g.dtype and old is not g
                and owned_array(buf, nr, extra=1) else None)
        total = parallel.call(np.add, old, g, out=into)
    else:
        total = old + g
    buf[nr] = total
    return old, g, total


def _refuse_nan(node: Any, out_grads: Any) -> None:
    """Anomaly mode's check of a node's gradients (torch's error names the first with a NaN)."""
    for i, g in enumerate(out_grads):
        data = g._data if isinstance(g, Tensor) else g
        if data is not None and data.dtype.kind in "fc" and np.isnan(data).any():
            raise errors.AutogradError(anomaly.nan_message(node.name(), i))


# --- the public entry points ---------------------------------------------------------------------

def _as_tuple(x: Any) -> tuple[Any, ...]:

    if isinstance(x, Tensor):
        return (x,)
    if x is None:
        return ()
    return tuple(x)


def _root_grads(outputs: tuple[Tensor, ...], grad_outputs: tuple[Any, ...],
                create_graph: bool) -> list[Any]:

    grads = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if g is None:
            if out.numel() != 1:
                raise errors.InvalidArgumentError(  # a missing argument, not autograd state
                    "grad can be implicitly created only for scalar outputs")
            d = out._data  # one element
            data = np.array(1, dtype=d.dtype)
            if d.ndim:
                data = data.reshape(d.shape)
            grads.append(Tensor._make(data) if create_graph else data)
            continue
        if not isinstance(g, Tensor):
            raise errors.InvalidTypeError(
                f"gradient must be a Tensor or None, not {type(g).__name__}")
        if g.shape != out.shape:
            raise errors.InvalidArgumentError(
                f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and output[{i}] "
                f"has a shape of {out.shape}.")
        if g.dtype is not out.dtype:  # torch casts a root gradient to its output's dtype
            data = np.asarray(g._data).astype(out.dtype.np)
            grads.append(Tensor._make(data) if create_graph else data)
            continue
        grads.append(g if create_graph else g._data)
    return grads


def _roots(outputs: tuple[Tensor, ...]) -> list[tuple[Any, int]]:
    roots = []
    for i, out in enumerate(outputs):
        if out._base is not None:
            refresh_if_stale(out)  # a view whose base was written in place since
        root = edge(out) if out._rg else None  # None also for a view made under no_grad()
        if root is None:
            raise errors.AutogradError(
                f"element {i} of tensors does not require grad and does not have a grad_fn")
        roots.append(root)
    return roots


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False, grad_variables: Any = None, inputs: Any = None) -> None:
    """torch.autograd.backward: accumulate gradients of `tensors` into the leaves' `.grad`
    (`grad_variables` is torch's deprecated name of `grad_tensors`)."""
    grad_tensors = compat.backward_arguments(grad_tensors, grad_variables,
                                             errors.InvalidArgumentError, stacklevel=2)
    drive(backward_steps(tensors, grad_tensors, retain_graph, create_graph, inputs))


def backward_steps(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
                   create_graph: bool = False, inputs: Any = None,
                   held: list[Any] | None = None) -> Steps:
    """`backward` as a resumable pass (see `execute_steps`, also for `held`)."""
    outputs = _as_tuple(tensors)
    grads_in = _as_tuple(grad_tensors) if grad_tensors is not None else (None,) * len(outputs)
    if len(grads_in) < len(outputs):  # torch zips the two: gradients beyond the tensors go
        raise errors.InvalidArgumentError(
            f"got {len(outputs)} tensors and {len(grads_in)} gradients")
    grads_in = grads_in[:len(outputs)]
    keep = create_graph if retain_graph is None else retain_graph
    roots = _roots(outputs)
    grads = _root_grads(outputs, grads_in, create_graph)
    if create_graph and not _warned_create_graph:
        _warned_create_graph.append(True)  # torch warns once per process (TORCH_WARN_ONCE)
        warnings.warn(CREATE_GRAPH_WARNING, UserWarning, stacklevel=3)
    if inputs is None:
        yield from execute_steps(roots, grads, keep_graph=keep, create_graph=create_graph,
                                 held=held)
        return
    targets = _as_tuple(inputs)
    if not targets:
        raise errors.AutogradError("'inputs' argument to backward() cannot be empty.")
    capture = _capture_keys(targets, "backward")
    got = yield from execute_steps(roots, grads, keep_graph=keep, create_graph=create_graph,
                                   capture=capture, accumulate=False, held=held)
    for t, key in zip(targets, capture):
        g = got[capture[key]]
        if g is not None:
            _accumulate_into(t, g, create_graph)


def tensor_backward(self: Tensor, gradient: Tensor | None = None,
                    retain_graph: bool | None = None, create_graph: bool = False,
                    inputs: Any = None) -> None:
    """Accumulate the gradient of this tensor into the leaves' `.grad` (torch's rules): the
    method `Tensor.backward` (attached by `api.build`; `tensor` cannot import this module)."""
    backward(self, None if gradient is None else (gradient,), retain_graph, create_graph,
             inputs=inputs)


def _accumulate_into(t: Tensor, g: Any, create_graph: bool) -> None:
    if t.is_leaf:
        AccumulateGrad(t).accumulate(g, create_graph)
    else:
        holder = Node.__new__(Node)  # reuse retain logic for a non-leaf input
        holder.retained = {0: weakref.ref(t)}
        _retain(holder, 0, g, create_graph)


def _capture_keys(inputs: tuple[Tensor, ...], who: str) -> dict[tuple[Any, int], int]:

    capture: dict[tuple[Any, int], int] = {}
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise errors.InvalidTypeError(f"{who}: inputs must be Tensors, not {type(t).__name__}")
        if not t._rg:
            raise errors.AutogradError("One of the differentiated Tensors does not require grad")
        capture.setdefault(_capture_key(t), i)
    return capture


def _capture_key(t: Tensor) -> tuple[Any, int]:
    """Where a differentiated input's gradient is captured: its edge, or for a view made under
    no_grad() (no edge: no gradient reaches it) a key of its own that nothing fills."""
    return edge(t) or (t, -1)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, only_inputs: bool = True, allow_unused: bool | None = None,
         is_grads_batched: bool = False, materialize_grads: bool = False) -> tuple[Any, ...]:
    """torch.autograd.grad: gradients of `outputs` with respect to `inputs`, without `.grad`
    (`only_inputs` is deprecated and ignored, as in torch 2.13).

    Raises:
        AutogradError: an input does not require grad, or was not used and allow_unused is off.
        NotImplementedError: is_grads_batched=True.
    """
    compat.grad_arguments(only_inputs, is_grads_batched, stacklevel=2)
    return drive(grad_steps(outputs, inputs, grad_outputs, retain_graph, create_graph,
                            allow_unused, materialize_grads))  # type: ignore[no-any-return]


def grad_steps(outputs: Any, inputs: Any, grad_outputs: Any = None,
               retain_graph: bool | None = None, create_graph: bool = False,
               allow_unused: bool | None = None, materialize_grads: bool = False,
               held: list[Any] | None = None) -> Steps:
    """`grad` as a resumable pass (see `execute_steps`, also for `held`)."""

    outs = _as_tuple(outputs)
    ins = _as_tuple(inputs)
    if allow_unused is None:
        allow_unused = materialize_grads
    if not allow_unused and materialize_grads:
        raise errors.InvalidValueError(
            "Expected allow_unused to be True or not passed when materialize_grads=True, "
            "but got: allow_unused=False.")
    gouts = _as_tuple(grad_outputs) if grad_outputs is not None else (None,) * len(outs)
    if len(gouts) != len(outs):
        raise errors.InvalidArgumentError(
            f"grad requires one gradient per output ({len(gouts)} vs {len(outs)})")
    keep = create_graph if retain_graph is None else retain_graph
    roots = _roots(outs)
    grads = _root_grads(outs, gouts, create_graph)
    capture = _capture_keys(ins, "grad")
    got = yield from execute_steps(roots, grads, keep_graph=keep, create_graph=create_graph,
                                   capture=capture, accumulate=False, held=held)
    result: list[Any] = []
    for i, t in enumerate(ins):
        slot = capture[_capture_key(t)]
        g = got[slot]
        if g is None:
            if not allow_unused:
                raise errors.AutogradError(
                    f"The differentiated Tensor at index {i} appears to not have been used in "
                    "the graph. Set allow_unused=True if this is the desired behavior.")
            result.append(Tensor._make(np.zeros_like(t._data)) if materialize_grads else None)
        elif isinstance(g, Tensor):
            result.append(g)
        elif (owned_array(got, slot, extra=1) and g.dtype == t.dtype.np
              and g.shape == t.shape):
            # a gradient the pass made and nothing else holds (not a saved or given array,
            # not another input's too): returned as it is, as torch returns its buffer
            result.append(Tensor._make(g))
        else:
            result.append(Tensor._make(np.array(g, dtype=t.dtype.np, copy=True)))
    return tuple(result)


def saved_nbytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of arrays that graphs behind `tensors` keep for backward, each array counted once."""
    seen_nodes: set[int] = set()
    seen_arrays: set[int] = set()
    total = 0
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes or type(n) is AccumulateGrad:
            continue
        seen_nodes.add(id(n))
        for arr in n.saved_arrays():
            base = arr if arr.base is None else arr.base
            if id(base) not in seen_arrays:
                seen_arrays.add(id(base))
                total += base.nbytes
        stack.extend(c for c in n.next_nodes if c is not None)
    return total


class Footprint(NamedTuple):
    """What a set of tensors keeps alive (see `footprint`); `nbytes` is its memory."""

    data: int  # bytes of the arrays: the tensors', their grads', and those their graphs keep
    saved: int  # of `data`, bytes of the arrays graphs saved for backward (incl. shared ones)
    tensors: int  # tensor objects: the given ones, their grads, those graphs save
    nodes: int  # graph nodes, AccumulateGrad included
    edges: int = 0  # nodes' inputs past `limits.NODE_EDGES` each

    @property
    def nbytes(self) -> int:
        return (self.data + self.tensors * limits.TENSOR_BYTES + self.nodes * limits.NODE_BYTES
                + self.edges * limits.EDGE_BYTES)


def footprint(tensors: Iterable[Tensor]) -> Footprint:
    """Everything `tensors` keep alive: their data and grads, and the graphs behind both (a
    `.grad` made with create_graph has a graph of its own) with the tensors and arrays those
    graphs save. Arrays count once, by the array that owns the memory; nodes and tensor objects
    count once each. Iterative: graphs may be millions of nodes deep."""
    seen_arrays: set[int] = set()
    seen_saved: set[int] = set()
    seen_tensors: set[int] = set()
    seen_nodes: set[int] = set()
    data = saved = edges = 0
    todo: list[Any] = list(tensors)  # tensors to count (their grads and graphs follow)
    nodes: list[Any] = []
    while todo or nodes:
        while todo:
            t = todo.pop()
            if id(t) in seen_tensors:
                continue
            seen_tensors.add(id(t))
            arr = t._data
            base = arr if arr.base is None else arr.base
            if id(base) not in seen_arrays:
                seen_arrays.add(id(base))
                data += base.nbytes
            if t.grad_fn is not None:
                nodes.append(t.grad_fn)
            if t._grad is not None:
                todo.append(t._grad)
        while nodes:
            n = nodes.pop()
            if id(n) in seen_nodes:
                continue
            seen_nodes.add(id(n))
            if type(n) is AccumulateGrad:
                todo.append(n.variable)  # a leaf no handle names may still be reachable
                continue
            for a in n.args:
                if isinstance(a, Tensor):
                    arrays: Any = (a._data,)
                    todo.append(a)
                elif isinstance(a, tuple):
                    ts = [x for x in a if isinstance(x, Tensor)]
                    arrays = [x._data for x in ts]
                    todo.extend(ts)
                else:
                    continue
                for arr in arrays:
                    base = arr if arr.base is None else arr.base
                    if id(base) not in seen_saved:
                        seen_saved.add(id(base))
                        saved += base.nbytes
            for arr in n.out_data or ():
                base = arr if arr.base is None else arr.base
                if id(base) not in seen_saved:
                    seen_saved.add(id(base))
                    saved += base.nbytes
                if id(base) not in seen_arrays:
                    seen_arrays.add(id(base))
                    data += base.nbytes
            if len(n.next_nodes) > limits.NODE_EDGES:
                edges += len(n.next_nodes) - limits.NODE_EDGES
            for c in n.next_nodes:
                if c is not None:
                    nodes.append(c)
    return Footprint(data, saved, len(seen_tensors), len(seen_nodes), edges)


def __getattr__(name: str) -> Any:
    # torch.autograd's names gradserve does not have (a module-level __getattr__, PEP 562)
    if name.startswith("__"):
        raise AttributeError(name)
    raise compat.missing_name("torch.autograd", name, "dir(gradserve.engine.autograd)")
