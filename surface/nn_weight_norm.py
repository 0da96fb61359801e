"""`torch.nn.utils.weight_norm` / `remove_weight_norm`, torch's hooks-based API
(torch/nn/utils/weight_norm.py): the parameter `name` is replaced by `name_g` (its norm over
every dim but `dim`) and `name_v` (its direction), and a forward pre-hook recomputes
`name = v * (g / norm_except_dim(v, 2, dim))` before each forward.

torch computes that product with a fused kernel (`_weight_norm_interface`,
WeightNormInterfaceBackward0) when dim is the first or the last; here it is the composition
torch uses for the other dims, which agrees with the kernel to float32 rounding.
"""

from __future__ import annotations

import warnings
from typing import Any

from .nn_backend import NNBackend


def norm_except_dim(v: Any, pow: float, dim: int) -> Any:
    """torch.norm_except_dim: the pow-norm of v over every dim but `dim` (-1: over all),
    shaped to broadcast against v."""
    if dim == -1:
        return v.norm(pow)
    if dim == 0:
        shape = (v.size(0),) + (1,) * (v.dim() - 1)
        return v.contiguous().view(v.size(0), -1).norm(pow, 1).view(*shape)
    if dim == v.dim() - 1:
        shape = (1,) * (v.dim() - 1) + (v.size(-1),)
        return v.contiguous().view(-1, v.size(-1)).norm(pow, 0).view(*shape)
    return norm_except_dim(v.transpose(0, dim), pow, 0).transpose(0, dim)


class WeightNorm:
    """The forward pre-hook that recomputes the weight from its `_g` and `_v` parameters."""

    def __init__(self, name: str, dim: int | None) -> None:
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module: Any) -> Any:
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        return v * (g / norm_except_dim(v, 2, self.dim))

    def remove(self, module: Any) -> None:
        weight = self.compute_weight(module)
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, module._be.torch.nn.Parameter(weight.data))

    def __call__(self, module: Any, inputs: Any) -> None:
        setattr(module, self.name, self.compute_weight(module))


def weight_norm(be: NNBackend, module: Any, name: str = "weight", dim: int | None = 0) -> Any:
    """Reparametrise module.<name> as g * v / ||v|| (torch.nn.utils.weight_norm); returns the
    module."""
    warnings.warn("`torch.nn.utils.weight_norm` is deprecated in favor of "
                  "`torch.nn.utils.parametrizations.weight_norm`.", FutureWarning, stacklevel=3)
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm) and hook.name == name:
            raise RuntimeError(
                f"Cannot register two weight_norm hooks on the same parameter {name}")
    fn = WeightNorm(name, dim)
    weight = getattr(module, name)
    del module._parameters[name]
    parameter = be.torch.nn.Parameter
    module.register_parameter(name + "_g", parameter(norm_except_dim(weight, 2, fn.dim).data))
    module.register_parameter(name + "_v", parameter(weight.data))
    setattr(module, name, fn.compute_weight(module))
    module.register_forward_pre_hook(fn)
    return module


def remove_weight_norm(be: NNBackend, module: Any, name: str = "weight") -> Any:
    """Undo weight_norm: module.<name> a Parameter again (its current value)."""
    return remove_norm_hook(module, WeightNorm, name, "weight_norm")


def remove_norm_hook(module: Any, kind: type[Any], name: str, what: str) -> Any:
    """Remove `module`'s forward pre-hook of type `kind` for its parameter `name` (the hook's
    `remove` makes the parameter a Parameter again) and return the module; torch's ValueError
    naming `what` (the function that added it) when there is none."""
    for k, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, kind) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            return module
    raise ValueError(f"{what} of '{name}' not found in {module}")


FUNCTIONS = (weight_norm, remove_weight_norm)
"""nn.utils' weight norm (bound by `gradserve.surface.nn.build`)."""
