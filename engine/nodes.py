"""The autograd graph's node types: `Node` (a recorded op, torch's `grad_fn`) and `AccumulateGrad`
(the node behind a leaf that requires grad), and `edge`, the edge a tensor contributes to a node.

A `Node` is created by `dispatch.run` for every recorded op. It keeps what its rules read (see
`registry.RuleUses`), the version of each saved tensor, and one edge per input: the input's own
node, an `AccumulateGrad` for a leaf that requires grad, or None. The backward pass that drives
the nodes is `autograd`.
"""

from __future__ import annotations

import itertools
import sys
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from gradserve.surface.compat import node_name
from gradserve.surface.layout import contiguous_strides
from gradserve.surface.memory_format import is_non_overlapping_and_dense

from . import dtypes, errors, hooks, limits, namespaces, saved, strided
from .tensor import Tensor

if TYPE_CHECKING:
    from .registry import OpDef

FREED_MESSAGE = errors.FREED_MESSAGE  # (also read from here by autograd and function)


SUSPEND = object()
"""What a node's `apply` returns when its gradients are computed elsewhere (a session's client,
see server/functions.py): the pass yields (node, grads) and resumes with what it is sent."""


class _Meta:
    """What a rule may read of an input saved as metadata only: shape, ndim, dtype, and the
    layout (`strides` in bytes and `itemsize`, as an ndarray's: torch's mm backward reads it)."""

    __slots__ = ("shape", "ndim", "dtype", "np_dtype", "strides", "itemsize")

    def __init__(self, t: Tensor):
        self.shape = t.shape
        self.ndim = t._data.ndim
        self.dtype = t.dtype
        self.np_dtype = t._data.dtype
        self.strides = t._data.strides
        self.itemsize = t._data.itemsize


class _MetaSeq(tuple):  # type: ignore[type-arg]
    """A variadic op's inputs saved as metadata: `.shape` is the tuple of their shapes.

    A variadic rule that reads only `tensors.shape` (cat, stack) saves no data, as torch's
    CatBackward0 saves only sizes.
    """

    __slots__ = ()

    @property
    def shape(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(m.shape) for m in self)


_new_node = object.__new__
# torch's sequence numbers: each node takes the next at creation; a backward pass runs the ready
# node with the highest first (AccumulateGrad: the maximum, so leaves' gradients land at once)
next_sequence_nr = itertools.count().__next__


class Node:
    """A recorded op: torch's `grad_fn` (`name()`, `next_functions`)."""

    __slots__ = ("op", "_name", "attrs", "next_nodes", "next_nrs", "args", "versions", "meta",
                 "out_data",
                 "out_versions", "freed", "has_saved", "retained", "n_out", "out_meta",
                 "sequence_nr", "__weakref__")

    op: OpDef
    _name: str
    attrs: dict[str, Any]
    # the edges, one per input (torch's next_functions, see `edges`): the node its gradient goes
    # to (None: none) and which of that node's outputs the input is (numbers only: a tuple of
    # them is not walked by the cycle collector, and there is no (node, index) tuple per edge)
    next_nodes: tuple[Any, ...]
    next_nrs: tuple[int, ...]
    args: tuple[Any, ...]
    # the version of each tensor in `args` (`saved_tensors`) when it was saved: numbers only, as
    # `next_nrs` (a node of a graph holds as few objects the cycle collector walks as it can)
    versions: tuple[int, ...]
    # per input: (shape, numpy dtype) of a tensor, None for a number: numpy's dtype, not the
    # engine's, so that these tuples hold no object the cycle collector tracks (it stops
    # tracking them at its first pass instead of walking them for as long as the graph lives)
    meta: tuple[tuple[tuple[int, ...], np.dtype[Any]] | None, ...]
    out_data: tuple[np.ndarray, ...] | None
    # the saved outputs', flat: (who, its version counter, version) for each in turn; `who` is the
    # output's DType, or the output itself only where it is a view (see `saved_output`): never
    # a tensor whose grad_fn is this node otherwise, so that a graph holds no reference cycle
    # and is freed by reference counting, without the cycle collector (torch's SavedVariable
    # saves an output without its grad_fn for the same reason)
    out_versions: tuple[Any, ...]
    freed: bool
    has_saved: bool
    retained: dict[int, Any] | None
    n_out: int
    out_meta: tuple[tuple[tuple[int, ...], Any], ...] | None
    sequence_nr: int

    @classmethod
    def create(cls, op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any],
               outs: tuple[Tensor, ...], rg_mask: int) -> Node | None:
        """Record `op` applied to `args` giving `outs`; None if no input needs a gradient.

        `rg_mask` has bit i set where input i is a Tensor that requires grad (dispatch.run
        finds them as it reads the inputs). The hot path of every recorded op: one pass over
        the inputs fills the node.
        """
        if op.variadic:
            return cls._create_variadic(op, args[0], attrs, outs)
        mask = rg_mask & op.rule_mask
        if not mask:
            return None
        plan = op._plans.get(mask)
        if plan is None:
            plan = op.save_plan(mask)
        need_out = plan[0]
        steps = plan[3]  # per input: (edge wanted, 1 save its data / 2 its metadata / 0)
        if len(steps) != len(args):
            raise errors.InvalidTypeError(
                f"{op.name}() takes {len(op.inputs)} tensor input(s) but {len(args)} were given")
        nodes: tuple[Any, ...]
        nrs: tuple[int, ...]
        meta: tuple[tuple[tuple[int, ...], np.dtype[Any]] | None, ...]
        saved: tuple[Any, ...]
        versions: tuple[int, ...]
        if len(args) == 1:  # one input, a Tensor requiring grad (the mask is not 0): no lists
            a = args[0]
            fn = a.grad_fn
            if fn is not None:
                nodes = (fn,)
                nrs = (a.output_nr,) if a.output_nr else _NRS_0
            else:
                nodes, nrs = (accumulator(a),), _NRS_0
            meta = ((a._data.shape, a.dtype.np),)
            keep = steps[0][1]
            if keep == 1:
                saved, versions = (a,), (a._vc[0],)
            else:
                saved, versions = (_Meta(a) if keep else None,), ()
            saved_scalar = False
        elif len(args) == 2:  # a binary op: the loop below, unrolled (no lists)
            a, b = args
            (want_a, keep_a), (want_b, keep_b) = steps
            versions = ()
            saved_scalar = False
            node_a = node_b = None
            nr_a = nr_b = 0
            if type(a) is Tensor:
                meta_a: Any = (a._data.shape, a.dtype.np)
                if want_a:
                    fn = a.grad_fn
                    node_a, nr_a = (fn, a.output_nr) if fn is not None else (accumulator(a), 0)
                if keep_a == 1:
                    saved_a: Any = a
                    versions = (a._vc[0],)
                else:
                    saved_a = _Meta(a) if keep_a else None
            else:
                meta_a = None
                saved_a = a
                saved_scalar = a is not None and keep_a == 1
            if type(b) is Tensor:
                meta_b: Any = (b._data.shape, b.dtype.np)
                if want_b:
                    fn = b.grad_fn
                    node_b, nr_b = (fn, b.output_nr) if fn is not None else (accumulator(b), 0)
                if keep_b == 1:
                    saved_b: Any = b
                    versions = (*versions, b._vc[0])
                else:
                    saved_b = _Meta(b) if keep_b else None
            else:
                meta_b = None
                saved_b = b
                saved_scalar = saved_scalar or (b is not None and keep_b == 1)
            nodes, meta, saved = (node_a, node_b), (meta_a, meta_b), (saved_a, saved_b)
            nrs = (nr_a, nr_b) if nr_a or nr_b else _NRS_00
        else:
            node_list: list[Any] = []
            nr_list: list[int] = []
            meta_list: list[tuple[tuple[int, ...], Any] | None] = []
            saved_list: list[Any] = []
            version_list: list[int] = []
            saved_scalar = False
            for a, (wanted, keep) in zip(args, steps):
                if type(a) is Tensor:
                    meta_list.append((a._data.shape, a.dtype.np))
                    fn = a.grad_fn if wanted else None
                    if fn is not None:
                        node_list.append(fn)
                        nr_list.append(a.output_nr)
                    else:
                        node_list.append(accumulator(a) if wanted else None)
                        nr_list.append(0)
                    if keep == 1:
                        saved_list.append(a)
                        version_list.append(a._vc[0])
                    elif keep:
                        saved_list.append(_Meta(a))
                    else:
                        saved_list.append(None)
                else:
                    meta_list.append(None)
                    node_list.append(None)
                    nr_list.append(0)
                    saved_list.append(a)  # Python scalars and None are constants, never freed
                    # ... but torch saves a Python scalar operand a rule reads (x * 2 saves 2 as a
                    # wrapped tensor), so a second backward through such a node fails there too.
                    if a is not None and keep == 1:
                        saved_scalar = True
            nodes, nrs, meta = tuple(node_list), tuple(nr_list), tuple(meta_list)
            saved, versions = tuple(saved_list), tuple(version_list)
        node = _new_node(cls)
        node.sequence_nr = next_sequence_nr()
        node.op = op
        name = op.fixed_name
        node._name = name if name is not None else op._backward(args, attrs)  # type: ignore[operator]
        node.attrs = attrs
        node.next_nodes = nodes
        node.next_nrs = nrs
        node.meta = meta
        node.args = saved
        node.versions = versions
        node.freed = False
        node.retained = None
        n_out = node.n_out = len(outs)
        if need_out:
            if n_out == 1:  # (one output: no comprehension)
                o = outs[0]
                v = o._vc
                node.out_data = (o._data,)
                node.out_versions = (o.dtype if o._base is None else o, v, v[0])
            else:
                node.out_data = tuple([o._data for o in outs])
                node.out_versions = tuple([x for o in outs for x in saved_output(o)])
            node.has_saved = True
        else:
            node.out_data = None
            node.out_versions = ()
            node.has_saved = saved_scalar or bool(versions)
        # Multi-output nodes remember their outputs' shapes: unused outputs get zero gradients.
        node.out_meta = (tuple([(o._data.shape, o._data.dtype) for o in outs]) if n_out > 1
                         else None)
        return node

    @classmethod
    def _create_variadic(cls, op: OpDef, flat: tuple[Tensor, ...], attrs: dict[str, Any],
                         outs: tuple[Tensor, ...]) -> Node | None:
        edges = [edge(t) if t._rg else None for t in flat]
        if not any(edges):
            return None
        uses = op.uses[0]
        node = cls()
        node.sequence_nr = next_sequence_nr()
        node.op = op
        node._name = op.node_name(flat, attrs)
        node.attrs = attrs
        node.next_nodes = tuple([e[0] if e is not None else None for e in edges])
        node.next_nrs = tuple([e[1] if e is not None else 0 for e in edges])
        node.meta = tuple((t._data.shape, t.dtype.np) for t in flat)
        # A variadic rule gets the whole list; save it whole if it reads any of it.
        if uses.data:
            node.args = (tuple(flat),)
            node.versions = tuple([t._vc[0] for t in flat])
        else:
            node.args = (_MetaSeq(_Meta(t) for t in flat),)
            node.versions = ()
        if uses.out:
            node.out_data = tuple(o._data for o in outs)
            node.out_versions = tuple([x for o in outs for x in saved_output(o)])
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
        """torch's name for this node, e.g. "MulBackward0", "torch::autograd::CopySlices"."""
        return node_name(self._name)

    @property
    def edges(self) -> tuple[tuple[Any, int] | None, ...]:
        """One (node, output index) pair per input, None where its gradient goes nowhere."""
        return tuple([(n, nr) if n is not None else None
                      for n, nr in zip(self.next_nodes, self.next_nrs)])

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        """One (node or None, output index) pair per input, as torch's `next_functions`: a
        Python-number operand has a (None, 0) entry only where torch wraps it in a tensor (its
        Tensor overload: add, sub, mul, div, where), not where torch has a Scalar overload
        (pow, clamp, remainder, `1 - x`'s rsub)."""
        op = self.op
        if op.variadic:
            return tuple(e if e is not None else (None, 0) for e in self.edges)
        wraps = op.name in _WRAPPED_SCALARS and self._name != "RsubBackward1"
        # an absent optional tensor (clamp's min) has an entry when another one is given
        optional_tensor = any(o and m is not None for o, m in zip(op.optional, self.meta))
        out: list[tuple[Any, int]] = []
        for e, a, rule, m in zip(self.edges, self.args, op.vjps, self.meta):
            if e is not None:
                out.append(e)
            elif rule is None:
                continue  # not differentiable (a condition, a mask, an index): no entry
            elif m is not None:
                out.append((None, 0))  # a tensor that does not require grad
            elif a is None and not optional_tensor:
                continue
            elif _is_number(a) and not wraps:
                continue
            else:
                out.append((None, 0))
        return tuple(out)

    def __repr__(self) -> str:
        return f"<{self._name} object at {hex(id(self))}>"

    # torch's `_saved_self`, `_saved_result`, ... and `_raw_saved_*` are properties that
    # `saved.install` adds once the op table is complete (engine/__init__.py)

    def __dir__(self) -> list[str]:
        names = set(super().__dir__()) | set(saved.entries(self))
        return sorted(names | {saved.RAW_PREFIX + n[len(saved.PREFIX):]
                               for n in saved.entries(self) if n != saved.PREFIX + "result"})

    def register_hook(self, hook: Any) -> Any:
        """`hook(grad_inputs, grad_outputs)` after this node ran (see engine.hooks)."""
        return hooks.register_node_hook(self, hook)

    def register_prehook(self, hook: Any) -> Any:
        """`hook(grad_outputs)` before this node runs (see engine.hooks)."""
        return hooks.register_node_prehook(self, hook)

    def release(self) -> None:
        """Free saved tensors (after a backward without retain_graph)."""
        if _PACKED:
            saved.PACKED.pop(self, None)
        if self.versions or self.out_data is not None:  # saved tensors (not just scalars)
            args = self.args
            if len(args) == 2:  # a binary op (as `apply`: the common arity without a frame)
                a, b = args
                self.args = (None if type(a) is Tensor else a
                             if type(a) in _CONSTANT_TYPES or _is_constant(a) else None,
                             None if type(b) is Tensor else b
                             if type(b) in _CONSTANT_TYPES or _is_constant(b) else None)
            elif len(args) == 1 and type(args[0]) is Tensor:
                self.args = (None,)
            else:
                self.args = tuple([None if type(a) is Tensor else a
                                   if type(a) in _CONSTANT_TYPES or _is_constant(a) else None
                                   for a in args])
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
        for t, expected in zip(saved_tensors(self.args), self.versions):
            if t._vc[0] != expected:
                raise errors.InplaceError(
                    _version_message(t, t._vc[0], expected, t.grad_fn, t.output_nr))
        for k, (who, box, expected) in enumerate(version_entries(self.out_versions)):
            if box[0] != expected:
                if type(who) is Tensor:  # a view (see `saved_output`)
                    message = _version_message(who, box[0], expected, self, k)
                else:  # as the output was saved: its shape and dtype, this node's output k
                    data = self.out_data[k] if self.out_data is not None else None
                    message = _version_message(_SavedOutput(data, who), box[0], expected,
                                               self, k)
                raise errors.InplaceError(message)

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        """Gradients for each edge, given the gradients of this node's outputs."""
        if self.freed and self.has_saved:
            raise errors.GraphFreedError(FREED_MESSAGE)
        # _check_versions's test inline (it runs for every node); it raises the message
        versions = self.versions
        if versions:
            args = self.args
            n = len(args)
            if n == 1 and type(args[0]) is Tensor:  # (the common arities: no loop)
                if args[0]._vc[0] != versions[0]:
                    self._check_versions()
            elif n == 2:
                a, b = args
                if type(a) is Tensor:
                    if a._vc[0] != versions[0]:
                        self._check_versions()
                    if type(b) is Tensor and b._vc[0] != versions[1]:
                        self._check_versions()
                elif type(b) is Tensor and b._vc[0] != versions[0]:
                    self._check_versions()
            else:
                for t, expected in zip(saved_tensors(args), versions):
                    if t._vc[0] != expected:
                        self._check_versions()
        out_versions = self.out_versions
        if out_versions:
            for k in range(1, len(out_versions), 3):
                if out_versions[k][0] != out_versions[k + 1]:
                    self._check_versions()
        if _PACKED and self in saved.PACKED:  # saved tensors behind pack/unpack hooks
            return self._apply_unpacked(grads, create_graph)
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
            args = self.args
            if len(args) == 1:  # the common arities without a comprehension's frame
                a = args[0]
                args = (a._data if type(a) is Tensor else a if type(a) in _CONSTANT_TYPES
                        else _raw(a),)
            elif len(args) == 2:
                a, b = args
                args = (a._data if type(a) is Tensor else a if type(a) in _CONSTANT_TYPES
                        else _raw(a),
                        b._data if type(b) is Tensor else b if type(b) in _CONSTANT_TYPES
                        else _raw(b))
            else:
                args = tuple([a._data if type(a) is Tensor else a if type(a) in _CONSTANT_TYPES
                              else _raw(a) for a in args])
        attrs = self.attrs
        next_nodes = self.next_nodes
        result: list[Any] = [None] * len(next_nodes)
        try:
            if op.variadic:
                parts = op.vjps[0](ns, g, out, *args, **attrs)  # type: ignore[misc]
                for i, e in enumerate(next_nodes):
                    if e is not None:
                        result[i] = _fit(ns, parts[i], self.meta[i], create_graph)
                return result
            vjps = op.vjps
            meta = self.meta
            if create_graph and op.vjp_order is not None:
                # recorded: the rules run in torch's order (OpDef.vjp_order), the gradients
                # are fitted to their inputs afterwards in input order, as torch's engine does
                raw: list[Any] = [None] * len(next_nodes)
                for i in op.vjp_order:
                    if next_nodes[i] is not None:
                        raw[i] = vjps[i](ns, g, out, *args, **attrs)  # type: ignore[misc]
                for i, e in enumerate(next_nodes):
                    if e is not None:
                        result[i] = _fit(ns, raw[i], meta[i], True)
                return result
            # a rule of one or two inputs and no attributes is called directly (no argument
            # tuple and keyword dict built for it)
            arity = -1 if attrs else len(args)
            i = 0
            for e in next_nodes:
                if e is not None:
                    if arity == 1:
                        gi = vjps[i](ns, g, out, args[0])  # type: ignore[misc]
                    elif arity == 2:
                        gi = vjps[i](ns, g, out, args[0], args[1])  # type: ignore[misc]
                    else:
                        gi = vjps[i](ns, g, out, *args, **attrs)  # type: ignore[misc]
                    m = meta[i]
                    # an array or numpy scalar of the input's dtype and shape (the common case)
                    # is used as it is; anything else is fitted
                    if (create_graph or m is None or getattr(gi, "dtype", None) is not m[1]
                            or gi.shape != m[0]):
                        gi = _fit(ns, gi, m, create_graph)
                    result[i] = gi
                i += 1
        except RuntimeWarning:
            # Only when warnings are errors (as in our tests): torch gives inf/nan silently.
            with np.errstate(all="ignore"):
                return self.apply(grads, create_graph)
        return result

    def _apply_unpacked(self, grads: list[Any], create_graph: bool) -> list[Any]:
        """`apply` with the saved tensors that hooks packed unpacked for this run."""
        args, out_data, versions = self.args, self.out_data, self.versions
        self.args, self.out_data = saved.unpacked_args(self)
        # (checked against the saved tensors: the unpacked ones are not versioned as they were)
        self.versions = ()
        packed = saved.PACKED.pop(self)
        try:
            return self.apply(grads, create_graph)
        finally:
            saved.PACKED[self] = packed
            if not self.freed:
                self.args, self.out_data, self.versions = args, out_data, versions


_CONSTANT_TYPES = frozenset((bool, int, float, type(None)))
# saved.PACKED's own dict: a plain dict's truth test per node (a WeakKeyDictionary's is a call)
_PACKED: dict[Any, Any] = saved.PACKED.data  # type: ignore[attr-defined]
# ops whose Python-number operands torch wraps as tensors (so they have a (None, 0) edge)
_WRAPPED_SCALARS = frozenset(("add", "sub", "mul", "div", "where"))


def _is_number(a: Any) -> bool:
    return isinstance(a, (bool, int, float, np.number, np.bool_))


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

    __slots__ = ("shape", "ndim", "dtype", "strides", "itemsize")

    def __init__(self, m: _Meta):
        self.shape = m.shape
        self.ndim = m.ndim
        self.dtype = m.np_dtype
        self.strides = m.strides
        self.itemsize = m.itemsize


def _zeros_like_out(node: Node, k: int, as_tensor: bool) -> Any:
    # Multi-output nodes get zeros for outputs that received no gradient (torch materializes).

    if node.out_meta is None:
        raise errors.GraphFreedError(FREED_MESSAGE)
    shape, dtype = node.out_meta[k]
    z = np.zeros(shape, dtype)
    return Tensor._make(z) if as_tensor else z


def saved_output(o: Tensor) -> tuple[Any, list[int], int]:
    """What a node's `out_versions` keeps of an output it saves: (its DType, its version
    counter, its version now), with the output itself in place of its DType only for a view,
    whose error message reads the view's grad_fn when it is raised (torch's in-place-on-view
    case, AsStrided). Not the output otherwise: its grad_fn is the node, a reference cycle."""
    v = o._vc
    return (o.dtype if o._base is None else o, v, v[0])


class _SavedOutput:
    """A saved output as `_version_message` reads it: the saved data's shape and the output's
    dtype; not a view, and its grad_fn the node that saved it."""

    __slots__ = ("shape", "dtype")
    _base = None
    grad_fn = None

    def __init__(self, data: Any, dtype: Any):
        self.shape = data.shape if data is not None else ()
        self.dtype = dtype


def version_entries(versions: tuple[Any, ...]) -> Iterable[tuple[Any, list[int], int]]:
    """(DType or view, version counter, version when saved) of each saved output in a node's
    flat `out_versions` (see `saved_output`)."""
    return zip(versions[::3], versions[1::3], versions[2::3])


def saved_tensors(args: tuple[Any, ...]) -> Iterator[Tensor]:
    """The tensors a node's `args` hold (a variadic op's in its one sequence), in the order of
    its `versions`."""
    for a in args:
        if type(a) is Tensor:
            yield a
        elif type(a) is tuple:
            for t in a:
                if type(t) is Tensor:
                    yield t


def _fit(ns: Any, g: Any, meta: tuple[tuple[int, ...], np.dtype[Any]] | None,
         create_graph: bool) -> Any:
    """Sum a gradient back to its input's shape and cast it to the input's dtype (`meta`: the
    shape and the numpy dtype, as `Node.meta` keeps them)."""
    if g is None or meta is None:
        return g
    shape, np_dtype = meta
    if not create_graph:
        if type(g) is not np.ndarray and not isinstance(g, np.generic):
            g = np.asarray(g)
        if g.shape != shape:
            g = ns.sum_to_size(g, size=shape)
        if g.dtype != np_dtype:
            g = g.astype(np_dtype)
        return g
    if tuple(g.shape) != shape:
        g = ns.sum_to_size(g, size=shape)
    if g.dtype.np is not np_dtype:
        g = ns.to_dtype(g, dtype=dtypes._BY_NP[np_dtype])
    return g


def _version_message(t: Any, now: int, expected: int, node: Any, output_nr: int) -> str:
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
        # hand-written nodes (CopyBackwards, AccumulateGrad) carry torch's C++ namespace
        return name if "::" in name else f"torch::autograd::{name}"
    return base if n in ("", "0") else base + n  # "" : a custom Function's <Name>Backward


def _refs(container: Any, index: int) -> int:
    """sys.getrefcount of container[index], as read from here (see `sole_owner`)."""
    return sys.getrefcount(container[index])


# what `_refs` reads for an item nothing but its container refers to (calibrated, not assumed:
# the interpreter's own references to an argument differ between Python versions)
_SOLE_REFS = _refs([np.empty(1)], 0)


def owned_array(container: Any, index: int, extra: int = 0) -> bool:
    """Whether container[index] is a numpy array that owns its memory, writeable and
    C-contiguous, and that nothing refers to but `container` (and `extra` references the caller
    knows of, such as its own local variable): torch's `use_count() == 1` test, which lets a
    backward pass write into a gradient it made instead of allocating another."""
    a = container[index]
    return (type(a) is np.ndarray and a.base is None and a.flags.writeable
            and a.flags.c_contiguous and _refs(container, index) <= _SOLE_REFS + extra + 1)


class AccumulateGrad:
    """The node behind a leaf that requires grad: adds incoming gradients into `.grad`."""

    __slots__ = ("variable", "__weakref__")
    edges: tuple[Any, ...] = ()
    next_nodes: tuple[Any, ...] = ()
    next_nrs: tuple[int, ...] = ()
    next_functions: tuple[Any, ...] = ()
    sequence_nr = sys.maxsize  # torch's UINT64_MAX: first among the ready nodes

    def __init__(self, variable: Tensor):
        self.variable = variable

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {hex(id(self))}>"

    def accumulate(self, g: Any, create_graph: bool, owned: bool = False) -> None:
        """Add `g` into the variable's `.grad` (or make it `.grad`); `owned`: `g` is an array
        nothing else refers to (`owned_array`), which becomes `.grad` without a copy when it has
        the variable's dtype and shape, as torch steals such a gradient."""
        v = self.variable
        if create_graph:
            gt = g if isinstance(g, Tensor) else Tensor._make(np.array(g, dtype=v.dtype.np))
            if v._grad is None:
                # torch copies the gradient into a tensor laid out like the variable
                # (new_empty_strided().copy_()): recorded, so `.grad`'s grad_fn is CopyBackwards,
                # and `.grad` never aliases a gradient that other leaves received too
                v._grad = Tensor._make(_grad_layout(v, None)).copy_(gt)
            else:
                v._grad = v._grad + gt
        elif v._grad is None:
            vd = v._data
            if type(vd) is np.ndarray and vd.ndim > 1 and not vd.flags.c_contiguous:
                g = _grad_layout(v, g)  # torch's gradient layout contract (a strided leaf)
            elif not (owned and g.dtype == v.dtype.np and g.shape == vd.shape):
                g = np.array(g, dtype=v.dtype.np, copy=True, order="C")
            v._grad = grad = Tensor._make(g)
            limits.keep(grad._data.nbytes + limits.TENSOR_BYTES)
        else:
            # torch adds in place (`variable_grad += new_grad` under no grad): the same tensor,
            # its grad_fn kept when it has one (a `.grad` made with create_graph)
            grad = v._grad
            grad._data += g
            grad._vc[0] += 1


def _grad_layout(v: Tensor, g: Any) -> Any:
    """A leaf's first gradient laid out as torch's AccumulateGrad lays it out (the gradient
    layout contract): with the leaf's strides when the leaf is dense, else contiguous; `g`'s
    values copied in (None: left uninitialised)."""
    vd = v._data
    strides = strided.element_strides(vd) if type(vd) is np.ndarray else ()
    if not is_non_overlapping_and_dense(vd.shape, strides):
        strides = contiguous_strides(vd.shape)
    out = strided.empty_strided(vd.shape, strides, v.dtype.np)
    if g is not None:
        np.copyto(out, g, casting="unsafe")
    return out


class _NoGradView:
    """The `_accum` of a view made under no_grad() of a tensor that requires grad: it requires
    grad too, as torch's (its base does), but has no grad_fn and no AccumulateGrad, so a
    gradient reaching it is dropped."""

    __slots__ = ()


NO_GRAD_VIEW: Any = _NoGradView()


def edge(t: Tensor) -> tuple[Any, int] | None:
    """The edge `t` contributes to a node that records it: its own (node, output index), the
    AccumulateGrad of a leaf (one per leaf, kept while a graph holds it), or None for a view
    made under no_grad() (see `NO_GRAD_VIEW`)."""
    if t.grad_fn is not None:
        return (t.grad_fn, t.output_nr)
    acc = accumulator(t)
    return (acc, 0) if acc is not None else None


def accumulator(t: Tensor) -> AccumulateGrad | None:
    """The node of `edge(t)` for a tensor without a grad_fn: its AccumulateGrad (one per leaf,
    kept while a graph holds it), or None for a view made under no_grad()."""
    if t._accum is NO_GRAD_VIEW:
        return None
    acc = t._accum() if t._accum is not None else None
    if acc is None:
        acc = AccumulateGrad(t)
        t._accum = weakref.ref(acc)
    return acc


# `Node.next_nrs` of one or two inputs that are each their node's first output
_NRS_0 = (0,)
_NRS_00 = (0, 0)

