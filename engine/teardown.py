"""Freeing a large autograd graph in steps, so that no thread holds the GIL for all of it.

CPython frees an object as soon as its last reference goes, and with it, in the same C call,
everything only that object kept alive: dropping the one tensor that reaches a 600,000-node
chain frees every node in one cascade (0.3 s of CPU, ~0.5 us a node) during which no other
thread runs, the server's event loop and its health checks included (red team round 6: a
`Release` held health checks 0.68 s). `drop` frees the same objects one at a time instead:
before an object that only the caller's list keeps alive is freed, the graph objects it refers
to (a tensor's `grad_fn`, `.grad` and base; a node's next nodes and the tensors it saved; an
`AccumulateGrad`'s leaf) are taken onto a stack, so its own free stops at them, and each is
looked at in turn. Between two objects the interpreter may switch threads as it does between
any two bytecodes (every `sys.getswitchinterval()`), so a thread freeing a long graph shares
the GIL like any other Python code.

Only references are taken and dropped, never a field changed, so a graph object some other
tensor, node or session still uses lives on untouched: when its count shows another holder it is
simply let go. What this walk does not follow (a reference cycle, which only the garbage
collector frees, or a path through other objects) is freed as before.
"""

from __future__ import annotations

import sys
from typing import Any

from .nodes import AccumulateGrad, Node
from .tensor import Tensor

_getrefcount = sys.getrefcount


def drop(objects: list[Any]) -> None:
    """Drop the references `objects` holds (the list is emptied), freeing what only they keep
    alive one object at a time (see the module's docstring). Objects of other kinds than tensors
    and graph nodes are dropped as they are."""
    stack = objects[::-1]
    objects.clear()
    pop = stack.pop
    while stack:
        o = pop()
        # two references: `o` and getrefcount's argument, so nothing else keeps it alive and it
        # is freed below; keep what it refers to from being freed with it (fewer than two: an
        # interpreter that borrows references counts fewer, never more)
        if _getrefcount(o) <= 2:
            _take_referents(o, stack)
        del o


def _take_referents(o: Any, stack: list[Any]) -> None:
    """Push the graph objects `o` refers to onto `stack` (a function of its own: no loop
    variable of the caller's keeps one of them alive past its turn)."""
    if isinstance(o, Tensor):
        for r in (o.grad_fn, o._grad, o._base):
            if r is not None:
                stack.append(r)
    elif type(o) is Node:
        stack.extend([e[0] for e in o.edges if e is not None])
        for a in o.args:
            if isinstance(a, Tensor):
                stack.append(a)
            elif type(a) is tuple:  # a variadic op's saved list
                stack.extend(a)
    elif type(o) is AccumulateGrad:
        stack.append(o.variable)
