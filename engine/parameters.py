"""Which engine tensors are `nn.Parameter`s: a registry of the live ones.

A Parameter is an engine Tensor (so every op and the autograd fast paths treat it as one),
remembered here by identity; `isinstance(p, nn.Parameter)`, its printed form (`Parameter
containing:`) and `copy.deepcopy` (a Parameter's copy is a Parameter) consult it. Kept apart from
`engine/nn.py`, which builds the surface's modules, so that `engine/tensor.py` can ask it.
"""

from __future__ import annotations

import weakref
from typing import Any

# id(tensor) -> weak reference, for each live Parameter. Keyed by id, not by the tensor: a
# WeakSet would compare tensors with `==`, which is an elementwise op here.
_PARAMETERS: dict[int, weakref.ref[Any]] = {}


def is_parameter(value: Any) -> bool:
    """Whether `value` is an engine tensor made by `nn.Parameter`."""
    ref = _PARAMETERS.get(id(value))
    return ref is not None and ref() is value


def register(tensor: Any) -> Any:
    """Remember `tensor` as a Parameter for as long as it lives; returns it."""
    _PARAMETERS[id(tensor)] = weakref.ref(tensor, _forget(id(tensor)))
    return tensor


def _forget(key: int) -> Any:
    def forget(ref: weakref.ref[Any]) -> None:
        if _PARAMETERS.get(key) is ref:
            del _PARAMETERS[key]
    return forget
