"""torch.func for the engine: gradserve.surface.func_api bound to the engine's module
(`gradserve.engine.func.grad(f)(x)`, `gradserve.engine.vmap`)."""

from __future__ import annotations

import sys
from typing import Any

from gradserve.surface import func_api
from gradserve.surface.functional import ErrorTypes

from . import errors
from .nodes import AccumulateGrad


def _engine() -> Any:
    return sys.modules["gradserve.engine"]  # bound lazily: this module loads while it is built


def reaches_other_leaf(tensor: Any, own: list[Any]) -> bool:
    """Whether the graph behind `tensor` reaches a leaf requiring grad that is not in `own`
    (iterative walk over the nodes' next nodes)."""
    mine = {id(x) for x in own}
    node = tensor.grad_fn
    if node is None:
        return bool(tensor.requires_grad) and id(tensor) not in mine
    seen = {id(node)}
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, AccumulateGrad):
            if id(n.variable) not in mine:
                return True
            continue
        for c in n.next_nodes:  # (not `edges`, which builds a pair per input)
            if c is not None and id(c) not in seen:
                seen.add(id(c))
                stack.append(c)
    return False


func = func_api.namespace(_engine, ErrorTypes(errors.InvalidArgumentError,
                                              errors.InvalidTypeError, errors.InvalidValueError),
                          reaches_other_leaf)
