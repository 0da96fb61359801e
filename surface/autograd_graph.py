"""torch.autograd.graph as far as gradserve has it: `Node`, the abstract class every grad_fn is
an instance of (`isinstance(y.grad_fn, torch.autograd.graph.Node)`), for the engine's nodes and a
session's alike. Each layer registers its own node classes (`Node.register`), as torch's
`__subclasshook__` admits its C++ and custom-Function nodes.
"""

from __future__ import annotations

import abc
from typing import Any

from .compat import Namespace


class Node(abc.ABC):
    """torch.autograd.graph.Node: a node of the autograd graph (a tensor's `grad_fn`)."""

    @abc.abstractmethod
    def name(self) -> str:
        """The node's name, as torch prints it (`MulBackward0`)."""

    @property
    @abc.abstractmethod
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        """The nodes the gradient flows to next, with the input number of each."""

    @abc.abstractmethod
    def register_hook(self, fn: Any) -> Any:
        """`fn(grad_inputs, grad_outputs)` after the node runs; returns a removable handle."""

    @abc.abstractmethod
    def register_prehook(self, fn: Any) -> Any:
        """`fn(grad_outputs)` before the node runs; returns a removable handle."""


def namespace(*node_classes: type, **members: Any) -> Namespace:
    """`torch.autograd.graph` for a layer whose grad_fn objects are `node_classes`, with the
    layer's own `members` (the engine's saved-tensor hooks)."""
    for cls in node_classes:
        Node.register(cls)
    return Namespace("torch.autograd.graph", Node=Node, **members)
