"""torch.utils._pytree: flatten nested containers to a list of leaves and a spec, and back.

A pytree is a leaf or a registered container (tuple, list, dict, OrderedDict, defaultdict,
deque, named tuples, and the types `register_pytree_node` adds: each layer registers its
torch.Size and torch.return_types). Written from torch 2.13's documented behaviour: the same
leaf order (dict values in insertion order), the same TreeSpec (its repr, equality, counts), the
same error types and texts for mismatched trees. Pure Python; one registry per process, as
torch's.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .results import NamedResult, ValuesIndices

PyTree = Any
Context = Any
FlattenFn = Callable[[Any], "tuple[list[Any], Context]"]
UnflattenFn = Callable[[Iterable[Any], Context], Any]

__all__ = ["PyTree", "Context", "TreeSpec", "LeafSpec", "register_pytree_node", "tree_flatten",
           "tree_unflatten", "tree_leaves", "tree_iter", "tree_structure", "tree_map",
           "tree_map_", "tree_map_only", "tree_map_only_", "tree_all", "tree_any",
           "tree_all_only", "tree_any_only", "tree_is_leaf", "SUPPORTED_NODES"]


@dataclass(frozen=True)
class NodeDef:
    """How one container type flattens (to children and a context) and is rebuilt."""

    type: Any
    flatten_fn: FlattenFn
    unflatten_fn: UnflattenFn


SUPPORTED_NODES: dict[Any, NodeDef] = {}


def register_pytree_node(cls: Any, flatten_fn: FlattenFn, unflatten_fn: UnflattenFn, *,
                         serialized_type_name: str | None = None,
                         to_dumpable_context: Any = None, from_dumpable_context: Any = None,
                         flatten_with_keys_fn: Any = None) -> None:
    """Make instances of `cls` containers: `flatten_fn(x) -> (children, context)` and
    `unflatten_fn(children, context) -> x`.

    Args:
        cls: the container type (its exact type is looked up, as in torch).
        flatten_fn: splits an instance into a list of children and a context.
        unflatten_fn: rebuilds an instance from the children and the context.
        serialized_type_name: accepted for torch's signature (gradserve does not serialize specs).
        to_dumpable_context: likewise.
        from_dumpable_context: likewise.
        flatten_with_keys_fn: likewise.

    Raises:
        ValueError: `cls` is already registered (torch's text).
    """
    if cls in SUPPORTED_NODES:
        raise ValueError(f"{cls} is already registered as pytree node.")
    SUPPORTED_NODES[cls] = NodeDef(cls, flatten_fn, unflatten_fn)


def _is_namedtuple_class(cls: type) -> bool:
    fields = getattr(cls, "_fields", None)
    return (isinstance(cls, type) and issubclass(cls, tuple) and isinstance(fields, tuple)
            and all(isinstance(f, str) for f in fields) and callable(getattr(cls, "_make", None)))


def _node_type(tree: Any) -> Any:
    """The registry key of `tree`'s type (named tuples share one: collections.namedtuple)."""
    cls = type(tree)
    if cls not in SUPPORTED_NODES and _is_namedtuple_class(cls):
        return collections.namedtuple
    return cls


def tree_is_leaf(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None) -> bool:
    """Whether `tree` is a leaf: its type is not registered, or `is_leaf(tree)` says so."""
    if is_leaf is not None and is_leaf(tree):
        return True
    return _node_type(tree) not in SUPPORTED_NODES


class TreeSpec:
    """The structure of a pytree: a node's type, its context and its children's specs.

    Attributes:
        type: the container type (None for a leaf).
        context: what the type's flatten function returned beside the children.
        children_specs: the children's specs.
        num_leaves: how many leaves the structure holds.
        num_nodes: how many nodes, leaves included.
        num_children: how many children this node has.
    """

    def __init__(self, type: Any, context: Context, children_specs: list[TreeSpec]):
        self.type = type
        self.context = context
        self.children_specs = list(children_specs)
        if type is None:
            self.num_leaves, self.num_nodes = 1, 1
        else:
            self.num_leaves = sum(c.num_leaves for c in self.children_specs)
            self.num_nodes = 1 + sum(c.num_nodes for c in self.children_specs)
        self.num_children = len(self.children_specs)

    def is_leaf(self) -> bool:
        """Whether this spec is a leaf's."""
        return self.type is None

    def child(self, index: int) -> TreeSpec:
        """The spec of child `index`."""
        return self.children_specs[index]

    def children(self) -> list[TreeSpec]:
        """The children's specs, in order."""
        return list(self.children_specs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TreeSpec):
            return NotImplemented
        return (self.type is other.type and self.context == other.context
                and self.children_specs == other.children_specs)

    def __hash__(self) -> int:
        return hash((id(self.type), self.num_nodes, self.num_leaves))

    def _repr(self, indent: int) -> str:
        if self.is_leaf():
            return "*"
        sep = ",\n" + " " * (indent + 2)
        children = sep.join(c._repr(indent + 2) for c in self.children_specs)
        # torch.return_types.max is named "max" (gradserve's class: MaxResult, _name "max")
        name = getattr(self.type, "_name", "") or self.type.__name__
        return f"TreeSpec({name}, {self.context!r}, [{children}])"

    def __repr__(self) -> str:
        return self._repr(0)

    def unflatten(self, leaves: Iterable[Any]) -> PyTree:
        """The pytree of this structure holding `leaves` in order.

        Raises:
            ValueError: the number of leaves is not the spec's (torch's text).
        """
        leaves = list(leaves)
        if len(leaves) != self.num_leaves:
            raise ValueError(f"treespec.unflatten(leaves): `leaves` has length {len(leaves)} "
                             f"but the spec refers to a pytree that holds {self.num_leaves} "
                             f"items ({self}).")
        return self._build(iter(leaves))

    def _build(self, leaves: Iterator[Any]) -> PyTree:
        if self.is_leaf():
            return next(leaves)
        children = [c._build(leaves) for c in self.children_specs]
        return SUPPORTED_NODES[self.type].unflatten_fn(children, self.context)

    def flatten_up_to(self, tree: PyTree) -> list[PyTree]:
        """The subtrees of `tree` where this spec has leaves (tree must have this structure
        above them).

        Raises:
            ValueError: a node's type, arity, keys or context differ (torch's texts).
        """
        out: list[PyTree] = []
        self._up_to(tree, out)
        return out

    def _up_to(self, tree: PyTree, out: list[PyTree]) -> None:
        if self.is_leaf():
            out.append(tree)
            return
        node_type = _node_type(tree)
        if node_type is not self.type:
            raise ValueError(f"Node type mismatch; expected {self.type!r}, but got "
                             f"{node_type!r}.")
        children, context = SUPPORTED_NODES[node_type].flatten_fn(tree)
        if len(children) != self.num_children:
            raise ValueError(f"Node arity mismatch; expected {self.num_children}, but got "
                             f"{len(children)}.")
        if node_type in (dict, collections.OrderedDict, collections.defaultdict):
            keys = context[1] if node_type is collections.defaultdict else context
            mine = self.context[1] if node_type is collections.defaultdict else self.context
            if set(keys) != set(mine):
                missing, extra = set(mine) - set(keys), set(keys) - set(mine)
                raise ValueError(f"Node keys mismatch; missing key(s): {missing}; extra "
                                 f"key(s): {extra}.")
            # the spec's key order decides which child goes with which leaf
            children = [tree[k] for k in mine]
        elif node_type is not collections.deque and context != self.context:
            raise ValueError(f"Node context mismatch for custom node type {node_type!r}.")
        for spec, child in zip(self.children_specs, children):
            spec._up_to(child, out)


class LeafSpec(TreeSpec):
    """The spec of a leaf (repr `*`)."""

    def __init__(self) -> None:
        super().__init__(None, None, [])


def tree_flatten(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None
                 ) -> tuple[list[Any], TreeSpec]:
    """The leaves of `tree` in order (depth first, dict values in insertion order) and its spec.

    Args:
        tree: a pytree.
        is_leaf: optional; a subtree for which it returns True is taken as a leaf.

    Returns:
        (leaves, spec), with `tree_unflatten(leaves, spec)` rebuilding the tree.
    """
    leaves: list[Any] = []

    def flatten(node: PyTree) -> TreeSpec:
        if tree_is_leaf(node, is_leaf):
            leaves.append(node)
            return LeafSpec()
        node_type = _node_type(node)
        children, context = SUPPORTED_NODES[node_type].flatten_fn(node)
        return TreeSpec(node_type, context, [flatten(c) for c in children])

    spec = flatten(tree)
    return leaves, spec


def tree_unflatten(leaves: Iterable[Any], treespec: TreeSpec) -> PyTree:
    """The pytree of structure `treespec` holding `leaves` (the inverse of tree_flatten).

    Raises:
        TypeError: treespec is not a TreeSpec.
        ValueError: the number of leaves is not the spec's.
    """
    if not isinstance(treespec, TreeSpec):
        raise TypeError("Expected `treespec` to be an instance of PyTreeSpec but got item of "
                        f"type {type(treespec)}.")
    return treespec.unflatten(leaves)


def tree_leaves(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None) -> list[Any]:
    """The leaves of `tree`, in tree_flatten's order."""
    return tree_flatten(tree, is_leaf)[0]


def tree_iter(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None) -> Iterator[Any]:
    """An iterator over the leaves of `tree`, in tree_flatten's order."""
    return iter(tree_leaves(tree, is_leaf))


def tree_structure(tree: PyTree, is_leaf: Callable[[PyTree], bool] | None = None) -> TreeSpec:
    """The spec of `tree` (tree_flatten's second result)."""
    return tree_flatten(tree, is_leaf)[1]


def tree_map(func: Callable[..., Any], tree: PyTree, *rests: PyTree,
             is_leaf: Callable[[PyTree], bool] | None = None) -> PyTree:
    """A tree of `tree`'s structure whose leaves are `func(leaf, *corresponding leaves of rests)`.

    Args:
        func: called once per leaf of `tree`.
        tree: the pytree whose structure the result has.
        *rests: pytrees with `tree`'s structure at least down to its leaves.
        is_leaf: optional; a subtree for which it returns True is taken as a leaf.

    Raises:
        ValueError: a tree in `rests` does not have `tree`'s structure.
    """
    leaves, spec = tree_flatten(tree, is_leaf)
    others = [spec.flatten_up_to(r) for r in rests]
    return spec.unflatten(func(*xs) for xs in zip(leaves, *others))


def tree_map_(func: Callable[..., Any], tree: PyTree, *rests: PyTree,
              is_leaf: Callable[[PyTree], bool] | None = None) -> PyTree:
    """Call `func` on each leaf (with the matching leaves of `rests`) for its effect; returns
    `tree` itself."""
    leaves, spec = tree_flatten(tree, is_leaf)
    others = [spec.flatten_up_to(r) for r in rests]
    for xs in zip(leaves, *others):
        func(*xs)
    return tree


def _only(types: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(x: Any) -> Any:
        return func(x) if isinstance(x, types) else x
    return wrapped


def tree_map_only(type_or_types: Any, func: Callable[..., Any], tree: PyTree,
                  is_leaf: Callable[[PyTree], bool] | None = None) -> PyTree:
    """tree_map of `func` over the leaves that are instances of `type_or_types`; other leaves
    are kept."""
    return tree_map(_only(type_or_types, func), tree, is_leaf=is_leaf)


def tree_map_only_(type_or_types: Any, func: Callable[..., Any], tree: PyTree,
                   is_leaf: Callable[[PyTree], bool] | None = None) -> PyTree:
    """tree_map_ of `func` over the leaves that are instances of `type_or_types`."""
    return tree_map_(_only(type_or_types, func), tree, is_leaf=is_leaf)


def tree_all(pred: Callable[[Any], bool], tree: PyTree,
             is_leaf: Callable[[PyTree], bool] | None = None) -> bool:
    """Whether `pred` holds for every leaf."""
    return all(map(pred, tree_leaves(tree, is_leaf)))


def tree_any(pred: Callable[[Any], bool], tree: PyTree,
             is_leaf: Callable[[PyTree], bool] | None = None) -> bool:
    """Whether `pred` holds for some leaf."""
    return any(map(pred, tree_leaves(tree, is_leaf)))


def tree_all_only(type_or_types: Any, pred: Callable[[Any], bool], tree: PyTree,
                  is_leaf: Callable[[PyTree], bool] | None = None) -> bool:
    """Whether `pred` holds for every leaf that is an instance of `type_or_types`."""
    return all(pred(x) for x in tree_leaves(tree, is_leaf) if isinstance(x, type_or_types))


def tree_any_only(type_or_types: Any, pred: Callable[[Any], bool], tree: PyTree,
                  is_leaf: Callable[[PyTree], bool] | None = None) -> bool:
    """Whether `pred` holds for some leaf that is an instance of `type_or_types`."""
    return any(pred(x) for x in tree_leaves(tree, is_leaf) if isinstance(x, type_or_types))


def register_sequence_type(cls: type) -> None:
    """Register a tuple subclass built from its elements (`cls(elements)`), as torch registers
    torch.Size and torch.return_types; a layer calls it for its own types."""
    register_pytree_node(cls, lambda x: (list(x), None), lambda xs, _: cls(list(xs)))


# --- the built-in containers -----------------------------------------------------------------

register_pytree_node(tuple, lambda t: (list(t), None), lambda xs, _: tuple(xs))
register_pytree_node(list, lambda t: (list(t), None), lambda xs, _: list(xs))
register_pytree_node(dict, lambda d: (list(d.values()), list(d.keys())),
                     lambda xs, keys: dict(zip(keys, xs)))
register_pytree_node(collections.namedtuple, lambda t: (list(t), type(t)),
                     lambda xs, cls: cls(*xs))
register_pytree_node(collections.OrderedDict, lambda d: (list(d.values()), list(d.keys())),
                     lambda xs, keys: collections.OrderedDict(zip(keys, xs)))
register_pytree_node(collections.defaultdict,
                     lambda d: (list(d.values()), [d.default_factory, list(d.keys())]),
                     lambda xs, ctx: collections.defaultdict(ctx[0], zip(ctx[1], xs)))
register_pytree_node(collections.deque, lambda d: (list(d), d.maxlen),
                     lambda xs, maxlen: collections.deque(xs, maxlen=maxlen))

for _result_type in (*ValuesIndices.__subclasses__(),  # torch.return_types.max, .min
                     *NamedResult.__subclasses__()):  # .linalg_svd, .svd
    register_sequence_type(_result_type)
