"""`torch.nn.utils.spectral_norm` / `remove_spectral_norm`, torch's hooks-based API
(torch/nn/utils/spectral_norm.py): the parameter `name` becomes `name_orig`, buffers `name_u`
and `name_v` hold the power iteration's vectors (drawn with `normal_` as torch draws them, so
the same seed gives the same vectors), and a forward pre-hook sets `name = orig / sigma`,
sigma = u . (W v), after `n_power_iterations` steps in training (none in eval).
"""

from __future__ import annotations

from typing import Any

from . import grad_mode
from .nn_backend import NNBackend
from .nn_weight_norm import remove_norm_hook


class SpectralNorm:
    """The forward pre-hook that recomputes the weight from `_orig`, `_u` and `_v`."""

    def __init__(self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0,
                 eps: float = 1e-12) -> None:
        self.name = name
        self.dim = dim
        if n_power_iterations <= 0:
            raise ValueError("Expected n_power_iterations to be positive, but got "
                             f"n_power_iterations={n_power_iterations}")
        self.n_power_iterations = n_power_iterations
        self.eps = eps

    def reshape_weight_to_matrix(self, weight: Any) -> Any:
        mat = weight
        if self.dim != 0:
            mat = mat.permute(self.dim, *[d for d in range(mat.dim()) if d != self.dim])
        return mat.reshape(mat.size(0), -1)

    def compute_weight(self, module: Any, do_power_iteration: bool) -> Any:
        torch = module._be.torch
        normalize = torch.nn.functional.normalize
        weight = getattr(module, self.name + "_orig")
        u = getattr(module, self.name + "_u")
        v = getattr(module, self.name + "_v")
        mat = self.reshape_weight_to_matrix(weight)
        if do_power_iteration:
            with grad_mode.no_grad():
                for _ in range(self.n_power_iterations):
                    # torch writes into the buffers (normalize(..., out=v))
                    v.copy_(normalize(torch.mv(mat.t(), u), dim=0, eps=self.eps))
                    u.copy_(normalize(torch.mv(mat, v), dim=0, eps=self.eps))
                u, v = u.clone(), v.clone()
        sigma = torch.dot(u, torch.mv(mat, v))
        return weight / sigma

    def remove(self, module: Any) -> None:
        with grad_mode.no_grad():
            weight = self.compute_weight(module, do_power_iteration=False)
        delattr(module, self.name)
        delattr(module, self.name + "_u")
        delattr(module, self.name + "_v")
        delattr(module, self.name + "_orig")
        module.register_parameter(self.name, module._be.torch.nn.Parameter(weight.detach()))

    def __call__(self, module: Any, inputs: Any) -> None:
        setattr(module, self.name,
                self.compute_weight(module, do_power_iteration=module.training))


def spectral_norm(be: NNBackend, module: Any, name: str = "weight",
                  n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None) -> Any:
    """Divide module.<name> by its spectral norm before each forward
    (torch.nn.utils.spectral_norm); returns the module."""
    torch = be.torch
    if dim is None:
        transposed = tuple(getattr(torch.nn, n) for n in ("ConvTranspose1d", "ConvTranspose2d")
                           if n in vars(torch.nn))
        dim = 1 if transposed and isinstance(module, transposed) else 0
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm) and hook.name == name:
            raise RuntimeError(
                f"Cannot register two spectral_norm hooks on the same parameter {name}")
    fn = SpectralNorm(name, n_power_iterations, dim, eps)
    weight = module._parameters[name]
    normalize = torch.nn.functional.normalize
    with grad_mode.no_grad():
        h, w = fn.reshape_weight_to_matrix(weight).size()
        u = normalize(weight.new_empty(h).normal_(0, 1), dim=0, eps=fn.eps)
        v = normalize(weight.new_empty(w).normal_(0, 1), dim=0, eps=fn.eps)
    delattr(module, fn.name)
    module.register_parameter(fn.name + "_orig", weight)
    setattr(module, fn.name, weight.data)
    module.register_buffer(fn.name + "_u", u)
    module.register_buffer(fn.name + "_v", v)
    module.register_forward_pre_hook(fn)
    return module


def remove_spectral_norm(be: NNBackend, module: Any, name: str = "weight") -> Any:
    """Undo spectral_norm: module.<name> a Parameter again (the normalised weight)."""
    return remove_norm_hook(module, SpectralNorm, name, "spectral_norm")


FUNCTIONS = (spectral_norm, remove_spectral_norm)
"""nn.utils' spectral norm (bound by `gradserve.surface.nn.build`)."""
