"""torch's module constants (`torch.pi`, `torch.e`, `torch.inf`, `torch.nan`) and the legacy
`torch.autograd.Variable`, written once against a torch-like namespace (the engine module or a
client Session).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

# torch's module-level float constants (plain Python floats, as torch has them)
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}

VOLATILE_WARNING = ("volatile was removed and now has no effect. Use `with torch.no_grad():` "
                    "instead.")
_VARIABLE_ARGS = ("data", "requires_grad", "volatile", "_grad_fn", "name")


class _VariableMeta(type):
    """`isinstance(t, Variable)` is true of every tensor of the namespace, as in torch."""

    _torch: Any

    def __instancecheck__(cls, other: Any) -> bool:
        return isinstance(other, cls._torch.Tensor)


def variable_type(torch: Any) -> type:
    """torch.autograd.Variable for `torch` (a namespace with `Tensor` and `zeros`).

    `Variable(t, requires_grad=False)` returns `t.detach()` (a new leaf sharing `t`'s data) with
    `requires_grad` set, never a Variable instance; `Variable()` is an empty float32 tensor.

    Args:
        torch: the engine module or a client Session.

    Returns:
        The class; calling it raises torch's TypeError for data that is not a tensor, for more
        than 5 arguments or an unknown keyword, and the namespace's error for requires_grad on
        an integer tensor.
    """

    class Variable(metaclass=_VariableMeta):
        """Deprecated torch.autograd.Variable: `Variable(tensor, requires_grad=False)` returns a
        tensor (detached from `tensor`'s graph, sharing its data)."""

        _torch = torch

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            if len(args) > len(_VARIABLE_ARGS):
                raise TypeError(f"function takes at most {len(_VARIABLE_ARGS)} arguments "
                                f"({len(args)} given)")
            bound = dict(zip(_VARIABLE_ARGS, args))
            for k, v in kwargs.items():
                if k not in _VARIABLE_ARGS:
                    raise TypeError(f"'{k}' is an invalid keyword argument for this function")
                if k in bound:
                    raise TypeError(f"argument for function given by name ('{k}') and "
                                    f"position ({_VARIABLE_ARGS.index(k) + 1})")
                bound[k] = v
            data = bound.get("data")
            if bound.get("volatile"):
                warnings.warn(VOLATILE_WARNING, UserWarning, stacklevel=2)
            if data is None:
                var = cls._torch.zeros(0)
            elif isinstance(data, cls._torch.Tensor):
                var = data.detach()
            else:
                raise TypeError(f"Variable data has to be a tensor, but got "
                                f"{type(data).__name__}")
            if bound.get("_grad_fn") is not None:
                raise RuntimeError(
                    "_grad_fn argument to legacy Variable constructor is no longer supported.  "
                    "Instead, please invoke your _grad_fn to produce a variable with it as the "
                    "_grad_fn.")
            if bound.get("requires_grad"):
                var.requires_grad_(True)
            return var

    Variable.__module__ = "torch.autograd.variable"
    return Variable
