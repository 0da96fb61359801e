"""The two array namespaces VJP rules are written against (see `registry`).

`NP.<op>` calls the op's numpy forward directly (fast backward, no graph); `EN.<op>` calls the
engine function (records a graph, for `create_graph=True`). Both are built from `OPS`, so every
registered op is available to every rule under the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import parallel
from .registry import OPS, OpDef


class Namespace:
    """Attribute access to one callable per registered op."""

    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return f"<{self._name} namespace>"

    def __getattr__(self, item: str) -> Any:
        raise AttributeError(f"no op {item!r} in the {self._name} namespace")


NP = Namespace("numpy")
EN = Namespace("engine")


def _numpy_call(op: OpDef) -> Callable[..., Any]:
    ufunc = op.ufunc
    if ufunc is not None:
        def elementwise(*arrays: Any) -> Any:
            # a large call split over threads, as dispatch.run does (see `parallel`)
            for a in arrays:
                if type(a) is np.ndarray and a.size >= parallel.MIN_ELEMENTS:
                    return parallel.call(ufunc, *arrays)
            return ufunc(*arrays)
        return elementwise
    if not op.attrs:
        return op.forward
    defaults = {a.name: a.default for a in op.attrs}
    forward = op.forward

    def call(*arrays: Any, **attrs: Any) -> Any:
        return forward(*arrays, **{**defaults, **attrs})

    return call


def build(functions: dict[str, Callable[..., Any]]) -> None:
    """Fill both namespaces: NP from the forwards, EN from the engine `functions`."""
    for name, op in OPS.items():
        setattr(NP, name, _numpy_call(op))
        setattr(EN, name, functions[name])
