"""Hooks on tensors and graph nodes: torch's `register_hook`, `register_prehook`,
`register_post_accumulate_grad_hook`, with removable handles.

A hook on a non-leaf tensor belongs to its grad_fn's output (as in torch: it is registered on the
node, for that output index); a hook on a leaf belongs to the leaf (its AccumulateGrad is created
lazily and may be recreated). The backward pass (`autograd.execute`) asks `before` and `after`
here only while some node or leaf has hooks, so graphs without hooks pay one flag test per node.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from gradserve.surface import messages

from . import errors
from .tensor import Tensor

_ids = itertools.count()



class RemovableHandle:
    """The handle a `register_*hook` call returns: `remove()` unregisters the hook (idempotent).

    Also a context manager that removes the hook on exit, as torch's.
    """

    __slots__ = ("id", "_table", "__weakref__")

    def __init__(self, table: _HookTable):
        self.id = next(_ids)
        # The table lives on a node or a tensor record; a handle must not keep it alive.
        self._table: weakref.ref[_HookTable] | None = weakref.ref(table)

    def remove(self) -> None:
        """Unregister the hook (nothing happens the second time)."""
        table = self._table() if self._table is not None else None
        if table is not None:
            table.pop(self.id, None)
        self._table = None

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class _HookTable(dict):  # type: ignore[type-arg]
    """An ordered id -> hook table that handles may reference weakly."""

    __slots__ = ("__weakref__",)


def _add(table: _HookTable, fn: Callable[..., Any]) -> RemovableHandle:
    if not callable(fn):
        raise errors.InvalidTypeError(f"hook must be callable, not {type(fn).__name__}")
    handle = RemovableHandle(table)
    table[handle.id] = fn
    return handle


class NodeHooks:
    """Hooks attached to one graph node: per-output tensor hooks, pre-hooks and post-hooks."""

    __slots__ = ("tensor", "pre", "post")

    def __init__(self) -> None:
        self.tensor: dict[int, _HookTable] = {}
        self.pre = _HookTable()
        self.post = _HookTable()


class LeafHooks:
    """Hooks attached to one leaf tensor: gradient hooks and post-accumulate-grad hooks."""

    __slots__ = ("ref", "grad", "post_accumulate")

    def __init__(self, t: Tensor) -> None:
        self.ref = weakref.ref(t)
        self.grad = _HookTable()
        self.post_accumulate = _HookTable()


_NODES: weakref.WeakKeyDictionary[Any, NodeHooks] = weakref.WeakKeyDictionary()
_LEAVES: dict[int, LeafHooks] = {}  # by id(tensor): Tensor's == is an op, so no weak-key dict


def active() -> bool:
    """Whether any node or leaf has had a hook (the backward pass's fast test). Entries go
    with their node or leaf."""
    return bool(_NODES) or bool(_LEAVES)


def registries() -> tuple[dict[Any, Any], dict[int, LeafHooks]]:
    """The two hook registries as plain dicts: either is non-empty when `active()` is true
    (the node one may still hold an entry whose node just died, never the reverse). The
    backward pass tests them between nodes without a call; they are never replaced."""
    return _NODES.data, _LEAVES  # type: ignore[attr-defined]


def _node_hooks(node: Any) -> NodeHooks:
    h = _NODES.get(node)
    if h is None:
        h = _NODES[node] = NodeHooks()
    return h


def _leaf_hooks(t: Tensor) -> LeafHooks:
    h = _LEAVES.get(id(t))
    if h is None or h.ref() is not t:
        h = _LEAVES[id(t)] = LeafHooks(t)
        weakref.finalize(t, _forget_leaf, id(t), h)
    return h


def _forget_leaf(key: int, h: LeafHooks) -> None:
    if _LEAVES.get(key) is h:
        del _LEAVES[key]


# --- registration (torch's spellings) ------------------------------------------------------------

def register_hook(t: Tensor, hook: Callable[[Any], Any]) -> RemovableHandle:
    """Tensor.register_hook: `hook(grad)` runs when this tensor's gradient is computed; a Tensor
    it returns replaces the gradient.

    Raises:
        AutogradError: the tensor does not require grad.
    """
    if not t._rg:
        raise errors.AutogradError(
            "cannot register a hook on a tensor that doesn't require gradient")
    if t.grad_fn is None:
        return _add(_leaf_hooks(t).grad, hook)
    tables = _node_hooks(t.grad_fn).tensor
    table = tables.get(t.output_nr)
    if table is None:
        table = tables[t.output_nr] = _HookTable()
    return _add(table, hook)


def register_post_accumulate_grad_hook(t: Tensor, hook: Callable[[Any], Any]) -> RemovableHandle:
    """Tensor.register_post_accumulate_grad_hook: `hook(tensor)` runs after `.grad` of this
    leaf was accumulated.

    Raises:
        AutogradError: the tensor does not require grad, or is not a leaf.
    """
    if not t._rg:
        raise errors.AutogradError(
            "cannot register a hook on a tensor that doesn't require gradient")
    if t.grad_fn is not None:
        raise errors.AutogradError(
            "post accumulate grad hooks cannot be registered on non-leaf tensors")
    return _add(_leaf_hooks(t).post_accumulate, hook)


def register_node_hook(node: Any, hook: Callable[[Any, Any], Any]) -> RemovableHandle:
    """Node.register_hook: `hook(grad_inputs, grad_outputs)` after the node ran; a tuple it
    returns replaces grad_inputs."""
    return _add(_node_hooks(node).post, hook)


def register_node_prehook(node: Any, hook: Callable[[Any], Any]) -> RemovableHandle:
    """Node.register_prehook: `hook(grad_outputs)` before the node runs; a tuple it returns
    replaces grad_outputs."""
    return _add(_node_hooks(node).pre, hook)


# --- running them (called by autograd.execute while active()) -------------------------------------

def _as_tensor(g: Any) -> Any:
    if g is None or isinstance(g, Tensor):
        return g
    return Tensor._make(g if type(g) is np.ndarray else np.asarray(g))


def _hook_name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _as_grad(value: Any, like: Any, create_graph: bool, fn: Any) -> Any:
    """A hook's returned gradient in the backward pass's representation (array or Tensor)."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        raise errors.InvalidTypeError(
            f"expected Variable, but hook returned '{type(value).__name__}'")
    if like is None:
        raise errors.AutogradError("can't replace a None gradient with a non-None value")
    if tuple(value.shape) != tuple(np.shape(like)):
        raise errors.AutogradError(f"hook '{_hook_name(fn)}' has changed the size of value")
    was = _as_tensor(like).dtype
    if value.dtype is not was:
        raise errors.AutogradError(
            f"hook '{_hook_name(fn)}' has changed the type of value (was "
            f"{was.torch_tensor_name} got {value.dtype.torch_tensor_name})")
    return value if create_graph else value._data


class RemoteHook:
    """A hook whose Python runs in a session's client (server/functions.py): the backward
    pass yields (this, [gradient]) and continues with what the client's hook returned."""

    __slots__ = ("client_id", "__name__", "kind", "target")

    def __init__(self, client_id: int, name: str, kind: str = "tensor", target: Any = None):
        self.client_id = client_id
        self.__name__ = name
        # "tensor", "post_accumulate", "node_pre", "node_post", or "unpack": a node pre-hook
        # whose client unpacks the node's saved tensors (engine.saved; `target` is then
        # (weak reference to the node, the packed tensors' keys))
        self.kind = kind
        self.target = target

    def name(self) -> str:
        return f"hook '{self.__name__}'"

    def __call__(self, *args: Any) -> Any:
        raise errors.AutogradError(f"{self.name()} runs in the session client that registered "
                                   "it")


Steps = Generator[tuple[Any, list[Any]], Any, Any]


def _tensor_hooks(table: _HookTable | None, g: Any, create_graph: bool) -> Steps:
    if not table or g is None:
        return g
    for fn in list(table.values()):
        if type(fn) is RemoteHook:
            out = yield fn, [_as_tensor(g)]
        else:
            out = fn(_as_tensor(g))
        if out is not None:
            g = _as_grad(out, g, create_graph, fn)
    return g


def before(node: Any, gs: list[Any], create_graph: bool, leaf: bool) -> Steps:
    """Tensor hooks on `node`'s outputs (or its leaf's), then the node's pre-hooks (a
    generator: a remote hook suspends the pass, see RemoteHook)."""
    if leaf:
        lh = _LEAVES.get(id(node.variable))
        if lh is not None and lh.ref() is node.variable:
            gs = [(yield from _tensor_hooks(lh.grad, gs[0], create_graph))]
    h = _NODES.get(node)
    if h is None:
        return gs
    if h.tensor:
        hooked = []
        for nr, g in enumerate(gs):
            hooked.append((yield from _tensor_hooks(h.tensor.get(nr), g, create_graph)))
        gs = hooked
    if h.pre:
        for fn in list(h.pre.values()):
            given = tuple(_as_tensor(g) for g in gs)
            if type(fn) is RemoteHook:
                out = yield fn, list(given)
            else:
                out = fn(given)
            if out is not None:
                gs = _replace(out, gs, create_graph, fn)
    return gs


def after(node: Any, grad_inputs: list[Any], gs: list[Any], create_graph: bool) -> Steps:
    """The node's post-hooks, given its computed gradients and the ones it received (a
    generator, as `before`; a remote post-hook gets ([grad_inputs], [grad_outputs]))."""
    h = _NODES.get(node)
    if h is None or not h.post:
        return grad_inputs
    outs = tuple(_as_tensor(g) for g in gs)
    for fn in list(h.post.values()):
        given = tuple(_as_tensor(g) for g in grad_inputs)
        if type(fn) is RemoteHook:
            out = yield fn, [list(given), list(outs)]
        else:
            out = fn(given, outs)
        if out is not None:
            grad_inputs = _replace(out, grad_inputs, create_graph, fn)
    return grad_inputs


def _replace(out: Any, old: list[Any], create_graph: bool, fn: Any) -> list[Any]:
    if not isinstance(out, tuple):
        raise errors.InvalidTypeError(messages.hook_returned_non_tuple(out))
    if len(out) != len(old):
        raise errors.AutogradError(
            f"hook '{_hook_name(fn)}' has returned an incorrect number of values (got "
            f"{len(out)}, but expected {len(old)})")
    return [_as_grad(v, o, create_graph, fn) for v, o in zip(out, old)]


def accumulated(node: Any) -> Steps:
    """Post-accumulate-grad hooks of the leaf behind AccumulateGrad `node` (a generator, as
    `before`)."""
    lh = _LEAVES.get(id(node.variable))
    if lh is not None and lh.ref() is node.variable and lh.post_accumulate:
        for fn in list(lh.post_accumulate.values()):
            if type(fn) is RemoteHook:
                yield fn, []
            else:
                fn(node.variable)

