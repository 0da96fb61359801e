"""Saved tensors as torch shows them: a grad_fn's `_saved_<name>` / `_raw_saved_<name>`
attributes, and the pack/unpack hooks of `torch.autograd.graph` (`saved_tensors_hooks`,
`save_on_cpu`, `disable_saved_tensors_hooks`, `SavedTensor.register_hooks`).

A node saves what its op's `saves=` declaration names for the inputs that need gradients
(`registry.OpDef.save_plan`), as torch's derivatives.yaml does; the attributes are named as
torch names them: `_saved_self` for the first input (the engine's `input`), `_saved_<input>` for
the others, `_saved_result` for the output. A saved input is the input itself (`is x`); the
saved output is a new tensor each time, sharing the output's data, whose grad_fn is the node.

Hooks: while a `saved_tensors_hooks` context is open in this thread, every tensor a recorded
node saves is given to `pack` (once, under no_grad, in torch's order: the saved inputs sorted
by torch's names, then the output) and `unpack` gives it back whenever the node's backward or a
`_saved_*` attribute needs it. The packed nodes are held in a weak table, so graphs that never
see a hook pay one test of `ACTIVE` per recorded node and one of `PACKED` per backward node.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from gradserve.surface import grad_mode, messages, saved_hooks

from . import dtypes, errors
from .tensor import Tensor

PREFIX = "_saved_"
RAW_PREFIX = "_raw_saved_"

ACTIVE = saved_hooks.ACTIVE  # saved_tensors_hooks contexts open in any thread
# node -> {(kind, index): (unpack_hook, packed object)}, kind "input" or "result"
PACKED: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary())
# ops whose Python-number operands torch saves as wrapped 0-d tensors (the others keep them as
# numbers, as PowBackward0's `_saved_exponent`)
_WRAPPED = frozenset(("add", "sub", "mul", "div", "where"))
_WRAPPED_DTYPES = {bool: np.bool_, int: np.int64, float: np.float64}


def _torch_name(name: str) -> str:
    return "self" if name == "input" else name


def install(node_class: type, ops: Iterable[Any]) -> None:
    """Give `node_class` a property for each `_saved_<name>` and `_raw_saved_<name>` some op in
    `ops` can save (`value`, `raw`; a node without it raises torch's AttributeError).

    Properties, not a class `__getattr__`: CPython routes every attribute read of an instance
    of a class with `__getattr__` through a slower hook, found or not (every node's every
    read: the engine's chain-1000 case ran 10% slower)."""
    names = {"result"} | {_torch_name(n) for op in ops if not op.variadic for n in op.inputs}
    for name in sorted(names):
        for attr, read in ((PREFIX + name, value), (RAW_PREFIX + name, raw)):
            if not hasattr(node_class, attr):
                setattr(node_class, attr, _saved_property(attr, read))


def _saved_property(attr: str, read: Callable[[Any, str], Any]) -> property:
    def get(node: Any) -> Any:
        return read(node, attr)
    return property(get, doc=f"torch's `{attr}` of this node (engine.saved)")


def entries(node: Any) -> dict[str, tuple[str, int]]:
    """The `_saved_*` attribute names a node has, each as ("input", position) or ("result", 0):
    what its op's declaration saves for any of the inputs that are tensors (torch's node for
    `x.pow(2)`, PowBackward0, saves no result; a Python number that torch wraps as a tensor,
    `x * 2`'s, counts as one), whatever this node saved."""
    op = node.op
    if op.variadic:
        return {}
    out: dict[str, tuple[str, int]] = {}
    wraps = op.name in _WRAPPED
    uses = [u for u, m, a in zip(op.uses, node.meta, node.args)
            if m is not None or (wraps and a is not None)]
    data = frozenset().union(*(u.data for u in uses))
    for i in sorted(data, key=lambda i: _torch_name(op.inputs[i])):
        out[PREFIX + _torch_name(op.inputs[i])] = ("input", i)
    if node.n_out == 1 and any(u.out for u in uses):
        out[PREFIX + "result"] = ("result", 0)
    return out


def _saved_here(node: Any) -> tuple[bool, frozenset[int]]:
    """(output saved, input positions saved as data) for this node's inputs needing grads."""
    mask = sum(1 << i for i, c in enumerate(node.next_nodes) if c is not None)
    plan = node.op.save_plan(mask)
    return plan[0], plan[1]


def packable(node: Any, outs: tuple[Tensor, ...]) -> list[tuple[tuple[str, int], Tensor]]:
    """The tensors `node` saved, as a pack hook receives them: the saved inputs sorted by
    torch's names, then the output (`outs[k]` itself); only what it saved for the inputs that
    need gradients, and tensors only (not a Python-number operand)."""
    if node.op.variadic:
        return []
    out_saved, data = _saved_here(node)
    found: list[tuple[tuple[str, int], Tensor]] = []
    for kind, i in entries(node).values():
        if kind == "input":
            a = node.args[i]
            if i in data and isinstance(a, Tensor):
                found.append(((kind, i), a))
        elif out_saved and i < len(outs):
            found.append(((kind, i), outs[i]))
    return found


def pack(node: Any, outs: tuple[Tensor, ...]) -> None:
    """Give each tensor `node` saves to this thread's innermost pack hook (after the node was
    attached to its outputs, as torch's hooks see `grad_fn` on a saved output)."""
    hooks = saved_hooks.current()
    if hooks is None:
        return
    pack_hook, unpack_hook = hooks
    packed: dict[tuple[str, int], tuple[Any, Any]] = {}
    with grad_mode.no_grad():
        for key, t in packable(node, outs):
            packed[key] = (unpack_hook, pack_hook(t))
    if packed:
        PACKED[node] = packed


def _given(t: Any) -> Any:
    return t


def supply(node: Any, keys: list[tuple[str, int]], tensors: tuple[Any, ...]) -> None:
    """Use `tensors` (unpacked elsewhere: a session's client) for the saved tensors `keys` of
    `node` the next time it runs or is read.

    Raises:
        SavedTensorUnpackError: one of them is not a Tensor (torch's message).
    """
    for t in tensors:
        if not isinstance(t, Tensor):
            raise errors.SavedTensorUnpackError(
                saved_hooks.UNPACK_NOT_TENSOR.format(type(t).__name__))
    PACKED[node] = {key: (_given, t) for key, t in zip(keys, tensors)}


def _unpacked(node: Any, key: tuple[str, int], like: Tensor | None) -> Tensor:
    """The tensor `unpack_hook` gives back for a packed entry, with the autograd identity of the
    tensor that was saved (`like`; None for the output: the node's own).

    Raises:
        SavedTensorUnpackError: it gave back something other than a Tensor (torch's message).
        InvalidArgumentError: a tensor of another shape than the saved one.
    """
    unpack_hook, obj = PACKED[node][key]
    t = unpack_hook(obj)
    if not isinstance(t, Tensor):
        raise errors.SavedTensorUnpackError(
            saved_hooks.UNPACK_NOT_TENSOR.format(type(t).__name__))
    want = (like._data.shape if like is not None else node.out_data[key[1]].shape
            if node.out_data is not None else t._data.shape)
    if t._data.shape != want:  # a rule would fail inside numpy (torch: inside its kernel)
        raise errors.InvalidArgumentError(
            f"unpack_hook returned a tensor of shape {list(t._data.shape)} for a saved tensor "
            f"of shape {list(want)}")
    data, dtype = t._data, t.dtype
    if dtype.category != 2:
        if like is not None and like._rg:  # torch makes it require grad, as the saved one
            raise errors.InvalidArgumentError(messages.REQUIRES_GRAD_FACTORY_MESSAGE)
        # an integral or bool tensor in place of a floating output: the rules compute in the
        # output's dtype (torch's kernels promote)
        dtype = like.dtype if like is not None else dtypes._BY_NP[
            np.dtype(node.out_data[key[1]].dtype)]
        data = np.asarray(data).astype(dtype.np)
    if like is None:
        return Tensor._make(data, grad_fn=node, output_nr=key[1], dtype=dtype)
    u = Tensor._make(data, grad_fn=like.grad_fn, output_nr=like.output_nr, dtype=dtype)
    if like.grad_fn is None and like._rg:  # a leaf: gradients reach its AccumulateGrad
        u._rg = True
        u._accum = like._accum
    return u


def unpacked_args(node: Any) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
    """`node.args` and `node.out_data` with every packed tensor replaced by its unpacked one
    (for a backward pass through a node that `PACKED` holds)."""
    args = list(node.args)
    out_data = node.out_data
    for kind, i in PACKED[node]:
        if kind == "input":
            args[i] = _unpacked(node, (kind, i), node.args[i])
        elif out_data is not None:
            out_data = (_unpacked(node, (kind, i), None)._data,)
    return tuple(args), out_data


def value(node: Any, name: str) -> Any:
    """`node._saved_<name>` as torch gives it.

    Raises:
        AttributeError: the node has no such attribute.
        GraphFreedError: the saved tensor was freed by a backward pass.
        InplaceError: a saved tensor was modified in place since.
    """
    where = entries(node).get(name)
    if where is None:
        raise errors.NoSavedAttributeError(
            f"'{node.name()}' object has no attribute '{name}'")
    kind, i = where
    out_saved, data = _saved_here(node)
    packed = PACKED.get(node)
    if kind == "result":
        if not out_saved:
            return None
        if node.out_data is None:
            raise errors.GraphFreedError(errors.FREED_MESSAGE)
        node._check_versions()
        if packed is not None and where in packed:
            return _unpacked(node, where, None)
        return Tensor._make(node.out_data[0], grad_fn=node, output_nr=0,
                            version=node.out_versions[1])
    if i not in data:
        return None
    a = node.args[i]
    if isinstance(a, Tensor):
        node._check_versions()
        if packed is not None and where in packed:
            return _unpacked(node, where, a)
        return a
    if node.meta[i] is not None:  # a tensor, since freed
        raise errors.GraphFreedError(errors.FREED_MESSAGE)
    if a is None or node.op.name not in _WRAPPED or node.name() == "RsubBackward1":
        return a
    if node.freed:
        raise errors.GraphFreedError(errors.FREED_MESSAGE)
    return Tensor._make(np.array(a, dtype=_WRAPPED_DTYPES.get(type(a), np.float64)))


class SavedTensor:
    """A node's `_raw_saved_<name>`: `register_hooks(pack_hook, unpack_hook)` packs the saved
    tensor now and unpacks it wherever it is used (torch.autograd.SavedTensor)."""

    __slots__ = ("_node", "_key")

    def __init__(self, node: Any, key: tuple[str, int]):
        self._node = node
        self._key = key

    def register_hooks(self, pack_hook: Callable[[Any], Any],
                       unpack_hook: Callable[[Any], Any]) -> None:
        """Pack the saved tensor with `pack_hook` (given a detached tensor, as torch's) and
        unpack it with `unpack_hook` whenever it is used.

        Raises:
            GraphFreedError: the saved tensor was already freed.
            SavedTensorHooksSetError: hooks were already set for this tensor.
        """
        node, (kind, i) = self._node, self._key
        table = PACKED.setdefault(node, {})
        if self._key in table:
            raise errors.SavedTensorHooksSetError(
                "Calling register_hooks on a saved tensor whose hooks have already been set. "
                "Hint: only one pair of hooks is allowed at a time.")
        if kind == "result":
            if node.out_data is None:
                raise errors.GraphFreedError(errors.FREED_MESSAGE)
            data = node.out_data[0]
        else:
            a = node.args[i]
            if not isinstance(a, Tensor):
                raise errors.GraphFreedError(errors.FREED_MESSAGE)
            data = a._data
        with grad_mode.no_grad():
            table[self._key] = (unpack_hook, pack_hook(Tensor._make(data)))


def raw(node: Any, name: str) -> SavedTensor | None:
    """`node._raw_saved_<name>`: a SavedTensor, or None where nothing was saved.

    Raises:
        AttributeError: the node has no such attribute.
    """
    where = entries(node).get(PREFIX + name[len(RAW_PREFIX):])
    if where is None:
        raise errors.NoSavedAttributeError(
            f"'{node.name()}' object has no attribute '{name}'")
    out_saved, data = _saved_here(node)
    if (where[0] == "result" and not out_saved) or (where[0] == "input" and where[1] not in data):
        return None
    return SavedTensor(node, where)
