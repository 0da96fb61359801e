"""The `torch.func` namespace (and `torch.vmap`) of one layer: the autodiff transforms
(surface/func.py), vmap (surface/func_vmap.py) and the module helpers (surface/func_module.py)
bound to the layer's torch-like namespace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .compat import Namespace
from .func import Func
from .func_module import ModuleState
from .func_vmap import Vmap
from .functional import ErrorTypes


def namespace(torch_like: Callable[[], Any], errors: ErrorTypes,
              reaches_other_leaf: Callable[[Any, list[Any]], bool]) -> Namespace:
    """torch.func for the layer whose module (or Session) `torch_like()` returns.

    Args:
        torch_like: returns the engine module or a Session (bound lazily).
        errors: the layer's RuntimeError/TypeError/ValueError types.
        reaches_other_leaf: see `gradserve.surface.func.Func`.
    """
    f = Func(torch_like, errors, reaches_other_leaf)
    m = ModuleState(torch_like, errors)
    v = Vmap(torch_like, errors)
    return Namespace("torch.func", grad=f.grad, grad_and_value=f.grad_and_value, vjp=f.vjp,
                     jvp=f.jvp, jacrev=f.jacrev, jacfwd=f.jacfwd, hessian=f.hessian,
                     vmap=v.vmap, functional_call=m.functional_call,
                     stack_module_state=m.stack_module_state)
