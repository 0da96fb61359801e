"""Graph nodes and the backward pass (iterative, so a 100,000-op chain needs no recursion).

A `Node` is created by `dispatch.run` for every recorded op. It keeps what its rules read (see
`registry.RuleUses`), the version of each saved tensor, and one edge per input: the input's own
node, an `AccumulateGrad` for a leaf that requires grad, or None. `backward` and `grad` below
drive the nodes with plain numpy arrays, or, for `create_graph=True`, with engine Tensors so that
the backward pass is itself recorded.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from gradserve.surface import grad_mode

from . import errors, limits, namespaces
from .tensor import Tensor

if TYPE_CHECKING:
    from .registry import OpDef

FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you "
    "call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward.")

CREATE_GRAPH_WARNING = (
    "Using backward() with create_graph=True will create a reference cycle between the parameter "
    "and its gradient which can cause a memory leak. We recommend using autograd.grad when "
    "creating the graph to avoid this. If you have to use this function, make sure to reset the "
    ".grad fields of your parameters to None after use to break the cycle and avoid the leak.")


class _Meta:
    """What a rule may read of an input saved as metadata only: shape, ndim, dtype."""

    __slots__ = ("shape", "ndim", "dtype", "np_dtype")

    def __init__(self, t: Tensor):
        self.shape = t.shape
        self.ndim = t._data.ndim
        self.dtype = t.dtype
        self.np_dtype = t._data.dtype


class _MetaSeq(tuple):  # type: ignore[type-arg]
    """A variadic op's inputs saved as metadata: `.shape` is the tuple of their shapes.

    A variadic rule that reads only `tensors.shape` (cat, stack) saves no data, as torch's
    CatBackward0 saves only sizes.
    """

    __slots__ = ()

    @property
    def shape(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(m.shape) for m in self)


class Node:
    """A recorded op: torch's `grad_fn` (`name()`, `next_functions`)."""

    __slots__ = ("op", "_name", "attrs", "edges", "args", "versions", "meta", "out_data",
                 "out_versions", "freed", "has_saved", "retained", "n_out", "out_meta",
                 "__weakref__")

    op: OpDef
    _name: str
    attrs: dict[str, Any]
    edges: tuple[tuple[Any, int] | None, ...]
    args: tuple[Any, ...]
    versions: tuple[tuple[Any, list[int], int], ...]
    meta: tuple[tuple[tuple[int, ...], Any] | None, ...]
    out_data: tuple[np.ndarray, ...] | None
    out_versions: tuple[tuple[Any, list[int], int], ...]
    freed: bool
    has_saved: bool
    retained: dict[int, Any] | None
    n_out: int
    out_meta: tuple[tuple[tuple[int, ...], Any], ...] | None

    @classmethod
    def create(cls, op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any],
               outs: tuple[Tensor, ...]) -> Node | None:
        """Record `op` applied to `args` giving `outs`; None if no input needs a gradient.

        The hot path of every recorded op: one pass to find the inputs that need gradients,
        one to fill the node.
        """
        if op.variadic:
            return cls._create_variadic(op, args[0], attrs, outs)
        vjps = op.vjps
        mask = 0
        i = 0
        for a in args:
            if type(a) is Tensor and a._rg and vjps[i] is not None:
                mask |= 1 << i
            i += 1
        if not mask:
            return None
        plan = op._plans.get(mask)
        need_out, data_idx, meta_idx = plan if plan is not None else op.save_plan(mask)
        edges: list[tuple[Any, int] | None] = []
        meta: list[tuple[tuple[int, ...], Any] | None] = []
        saved: list[Any] = []
        versions: list[tuple[Any, list[int], int]] = []
        saved_scalar = False
        i = 0
        for a in args:
            if type(a) is Tensor:
                meta.append((a._data.shape, a.dtype))
                edges.append(a._edge() if mask >> i & 1 else None)
                if i in data_idx:
                    saved.append(a)
                    v = a._version
                    versions.append((a, v, v[0]))
                elif i in meta_idx:
                    saved.append(_Meta(a))
                else:
                    saved.append(None)
            else:
                meta.append(None)
                edges.append(None)
                saved.append(a)  # Python scalars and None are constants, never freed
                # ... but torch saves a Python scalar operand a rule reads (x * 2 saves 2 as a
                # wrapped tensor), so a second backward through such a node fails there too.
                if a is not None and i in data_idx:
                    saved_scalar = True
            i += 1
        node = cls()
        node.op = op
        b = op._backward
        node._name = b if isinstance(b, str) else b(args, attrs)
        node.attrs = attrs
        node.edges = tuple(edges)
        node.meta = tuple(meta)
        node.args = tuple(saved)
        node.versions = tuple(versions)
        if need_out:
            node.out_data = tuple(o._data for o in outs)
            node.out_versions = tuple((o, o._version, o._version[0]) for o in outs)
        else:
            node.out_data = None
            node.out_versions = ()
        node.has_saved = bool(versions) or need_out or saved_scalar
        node.freed = False
        node.retained = None
        node.n_out = len(outs)
        # Multi-output nodes remember their outputs' shapes: unused outputs get zero gradients.
        node.out_meta = (tuple((o._data.shape, o._data.dtype) for o in outs) if len(outs) > 1
                         else None)
        return node

    @classmethod
    def _create_variadic(cls, op: OpDef, flat: tuple[Tensor, ...], attrs: dict[str, Any],
                         outs: tuple[Tensor, ...]) -> Node | None:
        edges = tuple(t._edge() if t._rg else None for t in flat)
        if not any(edges):
            return None
        uses = op.uses[0]
        node = cls()
        node.op = op
        node._name = op.node_name(flat, attrs)
        node.attrs = attrs
        node.edges = edges
        node.meta = tuple((t._data.shape, t.dtype) for t in flat)
        # A variadic rule gets the whole list; save it whole if it reads any of it.
        if uses.data:
            node.args = (tuple(flat),)
            node.versions = tuple((t, t._version, t._version[0]) for t in flat)
        else:
            node.args = (_MetaSeq(_Meta(t) for t in flat),)
            node.versions = ()
        if uses.out:
            node.out_data = tuple(o._data for o in outs)
            node.out_versions = tuple((o, o._version, o._version[0]) for o in outs)
        else:
            node.out_data = None
            node.out_versions = ()
        node.has_saved = bool(node.versions) or uses.out
        node.freed = False
        node.retained = None
        node.n_out = len(outs)
        # Multi-output nodes remember their outputs' shapes: unused outputs get zero gradients.
        node.out_meta = (tuple((o._data.shape, o._data.dtype) for o in outs) if len(outs) > 1
                         else None)
        return node

    def name(self) -> str:
        """torch's class name for this node, e.g. "MulBackward0"."""
        return self._name

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        """One (node or None, output index) pair per input, as torch's `next_functions`."""
        return tuple(e if e is not None else (None, 0) for e in self.edges)

    def __repr__(self) -> str:
        return f"<{self._name} object at {hex(id(self))}>"

    def register_hook(self, hook: Any) -> Any:
        """`hook(grad_inputs, grad_outputs)` after this node ran (see engine.hooks)."""
        return hooks.register_node_hook(self, hook)

    def register_prehook(self, hook: Any) -> Any:
        """`hook(grad_outputs)` before this node runs (see engine.hooks)."""
        return hooks.register_node_prehook(self, hook)

    def release(self) -> None:
        """Free saved tensors (after a backward without retain_graph)."""
        if self.versions or self.out_data is not None:  # saved tensors (not just scalars)
            self.args = tuple([a if _is_constant(a) else None for a in self.args])
            self.out_data = None
            self.versions = ()
            self.out_versions = ()
        self.freed = True

    def saved_arrays(self) -> Iterable[np.ndarray]:
        """The arrays this node keeps alive for its backward."""
        if self.freed:
            return

        for a in self.args:
            if isinstance(a, Tensor):
                yield a._data
            elif isinstance(a, tuple):
                yield from (t._data for t in a if isinstance(t, Tensor))
        if self.out_data is not None:
            yield from self.out_data

    def _check_versions(self) -> None:
        # torch names a saved input by its grad_fn now, a saved output by the node that saved it.
        for t, box, expected in self.versions:
            if box[0] != expected:
                raise errors.InplaceError(
                    _version_message(t, box[0], expected, t.grad_fn, t.output_nr))
        for k, (t, box, expected) in enumerate(self.out_versions):
            if box[0] != expected:
                raise errors.InplaceError(_version_message(t, box[0], expected, self, k))

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        """Gradients for each edge, given the gradients of this node's outputs."""
        if self.freed and self.has_saved:
            raise errors.GraphFreedError(FREED_MESSAGE)
        if self.versions or self.out_versions:
            self._check_versions()
        op = self.op
        out_data = self.out_data
        if len(grads) == 1:
            g: Any = grads[0]
        else:
            g = tuple(gr if gr is not None else _zeros_like_out(self, k, create_graph)
                      for k, gr in enumerate(grads))
        if create_graph:
            ns: Any = namespaces.EN
            out: Any = None
            if out_data is not None:
                outs = tuple(Tensor._make(d, grad_fn=self, output_nr=k)
                             for k, d in enumerate(out_data))
                out = outs[0] if len(outs) == 1 else outs
            args = self.args
        else:
            ns = namespaces.NP
            out = None
            if out_data is not None:
                out = out_data[0] if len(out_data) == 1 else out_data
            args = tuple([a._data if type(a) is Tensor else a if type(a) in _CONSTANT_TYPES
                          else _raw(a) for a in self.args])
        attrs = self.attrs
        edges = self.edges
        result: list[Any] = [None] * len(edges)
        try:
            if op.variadic:
                parts = op.vjps[0](ns, g, out, *args, **attrs)  # type: ignore[misc]
                for i, e in enumerate(edges):
                    if e is not None:
                        result[i] = _fit(ns, parts[i], self.meta[i], create_graph)
                return result
            vjps = op.vjps
            meta = self.meta
            for i, e in enumerate(edges):
                if e is not None:
                    gi = vjps[i](ns, g, out, *args, **attrs)  # type: ignore[misc]
                    result[i] = _fit(ns, gi, meta[i], create_graph)
        except RuntimeWarning:
            # Only when warnings are errors (as in our tests): torch gives inf/nan silently.
            with np.errstate(all="ignore"):
                return self.apply(grads, create_graph)
        return result


_CONSTANT_TYPES = frozenset((bool, int, float, type(None)))


def _is_constant(a: Any) -> bool:
    return type(a) in _CONSTANT_TYPES or isinstance(a, (np.number, np.bool_, _Meta, _MetaSeq))


def _raw(a: Any) -> Any:
    if isinstance(a, Tensor):
        return a._data
    if isinstance(a, _Meta):
        return _NpMeta(a)
    if isinstance(a, _MetaSeq):
        return a
    if isinstance(a, tuple):
        return tuple(_raw(t) for t in a)
    return a


class _NpMeta:
    """`_Meta` as the numpy namespace sees it: dtype is a numpy dtype."""

    __slots__ = ("shape", "ndim", "dtype")

    def __init__(self, m: _Meta):
        self.shape = m.shape
        self.ndim = m.ndim
        self.dtype = m.np_dtype


def _zeros_like_out(node: Node, k: int, as_tensor: bool) -> Any:
    # Multi-output nodes get zeros for outputs that received no gradient (torch materializes).

    if node.out_meta is None:
        raise errors.GraphFreedError(FREED_MESSAGE)
    shape, dtype = node.out_meta[k]
    z = np.zeros(shape, dtype)
    return Tensor._make(z) if as_tensor else z


def _fit(ns: Any, g: Any, meta: tuple[tuple[int, ...], Any] | None, create_graph: bool) -> Any:
    """Sum a gradient back to its input's shape and cast it to the input's dtype."""
    if g is None or meta is None:
        return g
    shape, dtype = meta
    if not create_graph:
        if type(g) is not np.ndarray and not isinstance(g, np.generic):
            g = np.asarray(g)
        if g.shape != shape:
            g = ns.sum_to_size(g, size=shape)
        if g.dtype != dtype.np:
            g = g.astype(dtype.np)
        return g
    if tuple(g.shape) != shape:
        g = ns.sum_to_size(g, size=shape)
    if g.dtype is not dtype:
        g = ns.to_dtype(g, dtype=dtype)
    return g


def _version_message(t: Tensor, now: int, expected: int, node: Any, output_nr: int) -> str:
    shape = "[" + ", ".join(str(d) for d in t.shape) + "]"
    where = f"[{t.dtype.torch_tensor_name} {shape}]"
    if node is not None and t._base is not None and node is t.grad_fn:
        # torch regenerates the grad_fn of a view whose base changed: AsStridedBackward0
        where += f", which is output {output_nr} of AsStrided,"
    elif node is not None:
        where += f", which is output {output_nr} of {_short_name(node.name())},"
    return (f"one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: {where} is at version {now}; expected version {expected} "
            f"instead. Hint: enable anomaly detection to find the operation that failed to "
            f"compute its gradient, with torch.autograd.set_detect_anomaly(True, "
            f"check_nan=False).")


def _short_name(name: str) -> str:
    """How torch's message names a node: PowBackward0 -> Pow, ClampBackward1 -> Clamp1."""
    base, sep, n = name.rpartition("Backward")
    if not sep or (n and not n.isdigit()):
        return f"torch::autograd::{name}"  # hand-written nodes: CopyBackwards, AccumulateGrad
    return base if n in ("", "0") else base + n  # "" : a custom Function's <Name>Backward


class AccumulateGrad:
    """The node behind a leaf that requires grad: adds incoming gradients into `.grad`."""

    __slots__ = ("variable", "__weakref__")
    edges: tuple[Any, ...] = ()
    next_functions: tuple[Any, ...] = ()

    def __init__(self, variable: Tensor):
        self.variable = variable

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {hex(id(self))}>"

    def accumulate(self, g: Any, create_graph: bool) -> None:

        v = self.variable
        if create_graph:
            gt = g if isinstance(g, Tensor) else Tensor._make(np.array(g, dtype=v.dtype.np))
            v._grad = gt if v._grad is None else v._grad + gt
        elif v._grad is None:
            v._grad = Tensor._make(np.array(g, dtype=v.dtype.np, copy=True))
        elif v._grad._rg:
            v._grad = Tensor._make(v._grad._data + g)
        else:
            grad = v._grad
            grad._data += g
            grad._version[0] += 1


def _retain(node: Node, nr: int, g: Any, create_graph: bool) -> None:

    ref = node.retained.get(nr) if node.retained else None
    t = ref() if ref is not None else None
    if t is None or g is None:
        return
    if create_graph:
        gt = g if isinstance(g, Tensor) else Tensor._make(np.array(g))
        t._grad = gt if t._grad is None else t._grad + gt
    elif t._grad is None:
        t._grad = Tensor._make(np.array(g, dtype=t.dtype.np, copy=True))
    else:
        t._grad = Tensor._make(t._grad._data + g)


def _dependencies(roots: Sequence[Any]) -> dict[Any, int]:
    """How many edges from nodes reachable from `roots` lead into each node (iterative)."""
    deps: dict[Any, int] = {}
    root_set = set(roots)
    stack = list(root_set)
    while stack:
        for e in stack.pop().edges:
            if e is not None:
                c = e[0]
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
    while stack:
        n, done = stack.pop()
        if done:
            needed[n] = any(e is not None and (id(e[0]) in targets or needed.get(e[0], False))
                            for e in n.edges)
        elif n not in needed:
            needed[n] = False
            stack.append((n, True))
            stack.extend((e[0], False) for e in n.edges if e is not None and e[0] not in needed)
    return needed


SUSPEND = object()
"""What a node's `apply` returns when its gradients are computed elsewhere (a session's client,
see server/functions.py): the pass yields (node, grads) and resumes with what it is sent."""

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
                  accumulate: bool = True) -> Steps:
    """`execute` as a generator: it yields (node, grads) where a node's `apply` returned
    SUSPEND and continues with the node's gradients sent back; returns what `execute` does."""
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
    ready = []
    seen: set[int] = set()
    for node in root_nodes:
        if deps.get(node, 0) == 0 and id(node) not in seen:
            seen.add(id(node))
            ready.append(node)
    ctx = grad_mode.set_grad_enabled(create_graph)
    state = limits._state
    # Under a byte budget, numpy gradients (recorded ops charge themselves) are charged when a
    # node makes them and credited when the node they flow into has consumed them: the charge
    # follows the gradients alive at once.
    meter = GradientMeter() if not create_graph and state.bytes_left is not None else None
    try:
        while ready:
            node = ready.pop()
            if state.active:
                limits.tick()  # the caller's deadline / cancellation, between nodes
            gs = buffers.pop(node, None) or [None]
            if hooks.active():
                gs = yield from _suspendable(
                    hooks.before(node, gs, create_graph, type(node) is AccumulateGrad), ctx,
                    create_graph)
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
                    node.accumulate(gs[0], create_graph)
                    if hooks.active():
                        yield from _suspendable(hooks.accumulated(node), ctx, create_graph)
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
                    if hooks.active():
                        out_grads = yield from _suspendable(
                            hooks.after(node, out_grads, gs, create_graph), ctx, create_graph)
                    if meter is not None:
                        meter.made(out_grads, node)
                    if not keep_graph:
                        node.release()
            for i, e in enumerate(node.edges):
                if e is None:
                    continue
                child = e[0]
                if out_grads is not None:
                    gi = out_grads[i]
                    if gi is not None:
                        buf = buffers.get(child)
                        if buf is None and e[1] == 0:
                            buffers[child] = [gi]
                        else:
                            merged = _add(buffers, child, e[1], gi)
                            if meter is not None and merged is not None:
                                meter.merged(merged, node)
                left = deps[child] - 1
                deps[child] = left
                if left == 0:
                    ready.append(child)
            if meter is not None and not kept:
                meter.consumed(gs)
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
        n = limits.nbytes_of(grads)
        limits.charge(n, f"gradients of {node.name()}")
        self.live += n

    def merged(self, parts: tuple[Any, Any, Any], node: Any) -> None:
        """Two gradients summed into a new array: charge it, credit the two."""
        old, new, total = parts
        self.made(total, node)
        self.consumed((old, new))

    def consumed(self, grads: Any) -> None:
        n = min(self.live, limits.nbytes_of(list(grads)))
        if n:
            limits.credit(n)
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
    buf[nr] = total = old + g
    return old, g, total


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
            data = np.ones_like(out._data)
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
            from .dispatch import refresh_if_stale

            refresh_if_stale(out)  # a view whose base was written in place since
        if not out._rg:
            raise errors.AutogradError(
                f"element {i} of tensors does not require grad and does not have a grad_fn")
        roots.append(out._edge())
    return roots


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs: Any = None) -> None:
    """torch.autograd.backward: accumulate gradients of `tensors` into the leaves' `.grad`."""
    drive(backward_steps(tensors, grad_tensors, retain_graph, create_graph, inputs))


def backward_steps(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
                   create_graph: bool = False, inputs: Any = None) -> Steps:
    """`backward` as a resumable pass (see `execute_steps`)."""
    outputs = _as_tuple(tensors)
    grads_in = _as_tuple(grad_tensors) if grad_tensors is not None else (None,) * len(outputs)
    if len(grads_in) != len(outputs):
        raise errors.InvalidArgumentError(
            f"grad_tensors should have the same length as tensors ({len(grads_in)} vs "
            f"{len(outputs)})")
    keep = create_graph if retain_graph is None else retain_graph
    roots = _roots(outputs)
    grads = _root_grads(outputs, grads_in, create_graph)
    if create_graph:
        warnings.warn(CREATE_GRAPH_WARNING, UserWarning, stacklevel=3)
    if inputs is None:
        yield from execute_steps(roots, grads, keep_graph=keep, create_graph=create_graph)
        return
    targets = _as_tuple(inputs)
    if not targets:
        raise errors.AutogradError("'inputs' argument to backward() cannot be empty.")
    capture = _capture_keys(targets, "backward")
    got = yield from execute_steps(roots, grads, keep_graph=keep, create_graph=create_graph,
                                   capture=capture, accumulate=False)
    for t, key in zip(targets, capture):
        g = got[capture[key]]
        if g is not None:
            _accumulate_into(t, g, create_graph)


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
        capture.setdefault(t._edge(), i)
    return capture


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool | None = None,
         materialize_grads: bool = False) -> tuple[Any, ...]:
    """torch.autograd.grad: gradients of `outputs` with respect to `inputs`, without `.grad`.

    Raises:
        AutogradError: an input does not require grad, or was not used and allow_unused is off.
    """
    return drive(grad_steps(outputs, inputs, grad_outputs, retain_graph, create_graph,
                            allow_unused, materialize_grads))  # type: ignore[no-any-return]


def grad_steps(outputs: Any, inputs: Any, grad_outputs: Any = None,
               retain_graph: bool | None = None, create_graph: bool = False,
               allow_unused: bool | None = None, materialize_grads: bool = False) -> Steps:
    """`grad` as a resumable pass (see `execute_steps`)."""

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
                                   capture=capture, accumulate=False)
    result: list[Any] = []
    for i, t in enumerate(ins):
        g = got[capture[t._edge()]]
        if g is None:
            if not allow_unused:
                raise errors.AutogradError(
                    f"The differentiated Tensor at index {i} appears to not have been used in "
                    "the graph. Set allow_unused=True if this is the desired behavior.")
            result.append(Tensor._make(np.zeros_like(t._data)) if materialize_grads else None)
        elif isinstance(g, Tensor):
            result.append(g)
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
        stack.extend(e[0] for e in n.edges if e is not None)
    return total


class Footprint(NamedTuple):
    """What a set of tensors keeps alive (see `footprint`); `nbytes` is its memory."""

    data: int  # bytes of the arrays: the tensors', their grads', and those their graphs keep
    saved: int  # of `data`, bytes of the arrays graphs saved for backward (incl. shared ones)
    tensors: int  # tensor objects: the given ones, their grads, those graphs save
    nodes: int  # graph nodes, AccumulateGrad included

    @property
    def nbytes(self) -> int:
        return self.data + self.tensors * limits.TENSOR_BYTES + self.nodes * limits.NODE_BYTES


def footprint(tensors: Iterable[Tensor]) -> Footprint:
    """Everything `tensors` keep alive: their data and grads, and the graphs behind both (a
    `.grad` made with create_graph has a graph of its own) with the tensors and arrays those
    graphs save. Arrays count once, by the array that owns the memory; nodes and tensor objects
    count once each. Iterative: graphs may be millions of nodes deep."""
    seen_arrays: set[int] = set()
    seen_saved: set[int] = set()
    seen_tensors: set[int] = set()
    seen_nodes: set[int] = set()
    data = saved = 0
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
            for e in n.edges:
                if e is not None:
                    nodes.append(e[0])
    return Footprint(data, saved, len(seen_tensors), len(seen_nodes))


# Last: these modules import Node and friends from here (torch's torch.autograd namespace).
from . import function, hooks  # noqa: E402,F401
from .function import Function, FunctionCtx, once_differentiable  # noqa: E402,F401
from .functional import functional, gradcheck, gradgradcheck  # noqa: E402,F401
