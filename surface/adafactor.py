"""torch.optim.Adafactor, written once for the engine (in process) and sessions.

The algorithm is torch 2.13's `_single_tensor_adafactor` (the one torch runs for CPU tensors),
op for op: `step_t += 1` read back as a Python number, the relative step size
`max(eps2, ||param|| / sqrt(numel)) * min(lr, step ** -0.5)`, the second moment factored over
the last two dimensions of a matrix (`row_var.lerp_(norm(grad, dim=-1) ** 2 / n, ...)`,
`col_var` likewise, `var_estimate = row_var @ col_var / row_var.mean(-2).clamp_(eps1)`) or kept
whole for a vector, `update = var_estimate.clamp_(min=eps1 ** 2).rsqrt_().mul_(grad)` (the
layers' square and rsqrt out of place: the same values), and
`param.add_(update, alpha=-alpha / max(1, ||update|| / (sqrt(numel) * d)))`. A session reads a
group's steps with its parameters' norms, then its updates' norms, in one round trip each
(torch's values for one parameter do not depend on another's ops).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .optim_tensors import TensorOptimizer, lerp_

__all__ = ["Adafactor"]


class Adafactor(TensorOptimizer):
    """torch.optim.Adafactor: adaptive steps with a factored second moment (sublinear memory).

    Args:
        params: the parameters to optimize, or parameter groups.
        lr: the largest relative step size (default: 1e-2).
        beta2_decay: the decay rate of the second moment's coefficient (default: -0.8).
        eps: (eps1, eps2): the floor of the second moment (None: the dtype's machine epsilon)
            and of the parameter scale (default: (None, 1e-3)).
        d: the clipping threshold of the update's root mean square (default: 1.0).
        weight_decay: decoupled weight decay (default: 0.0).
        foreach: accepted for torch's signature (CPU tensors take the single-tensor loop).
        maximize: maximize the objective instead of minimizing it (default: False).

    Raises:
        ValueError: a hyperparameter out of range (torch's texts).
    """

    def __init__(self, params: Any, lr: Any = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, foreach: bool | None = None,
                 maximize: bool = False) -> None:
        self._check_lr(lr, "Learning rate should be >= 0 but is: {}")
        self._check((0.0 >= beta2_decay, f"beta2_decay should be <= 0 but is: {beta2_decay}"),
                    (eps[0] is None or 0.0 <= eps[0],
                     f"epsilon1 should be >= 0 but is: {eps[0]}"),
                    (0.0 <= eps[1], f"epsilon2 should be >= 0 but is: {eps[1]}"),
                    (1.0 <= d, f"Clipping threshold d should be >= 1 but is: {d}"),
                    (0.0 <= weight_decay, f"weight_decay should be >= 0 but is: {weight_decay}"))
        defaults = {"lr": lr, "beta2_decay": beta2_decay, "eps": eps, "d": d,
                    "weight_decay": weight_decay, "foreach": foreach, "maximize": maximize}
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any]) -> None:
        params, states = self._counted_states(group, self._new_state)
        values = self._read(*(v for p, s in zip(params, states) for v in (s["step"], p.norm(2))))
        lr, (eps1, eps2) = self._lr(group), group["eps"]
        beta2_decay, weight_decay = group["beta2_decay"], group["weight_decay"]
        updates, alphas = [], []
        for i, (p, state) in enumerate(zip(params, states)):
            step_float, param_norm = values[2 * i:2 * i + 2]
            grad = p.grad if not group["maximize"] else -p.grad
            if eps1 is None:
                eps1 = float(np.finfo(p.dtype.np).eps)
            one_minus_beta2_t = step_float ** beta2_decay
            rho_t = min(lr, 1 / (step_float ** 0.5))
            alphas.append(max(eps2, param_norm / (p.numel() ** 0.5)) * rho_t)
            if weight_decay != 0:
                p.mul_(1 - lr * weight_decay)
            if grad.dim() > 1:
                row_var, col_var = state["row_var"], state["col_var"]
                row_mean = grad.norm(dim=-1, keepdim=True).square().div_(grad.size(-1))
                lerp_(row_var, row_mean, one_minus_beta2_t)
                col_mean = grad.norm(dim=-2, keepdim=True).square().div_(grad.size(-2))
                lerp_(col_var, col_mean, one_minus_beta2_t)
                var_estimate = row_var @ col_var
                var_estimate.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
            else:
                variance = state["variance"]
                lerp_(variance, grad * grad, one_minus_beta2_t)
                var_estimate = variance.clone()
            update = var_estimate.clamp_(min=eps1 * eps1).rsqrt()
            update.mul_(grad)
            updates.append(update)
        norms = self._read(*(u.norm(2) for u in updates))
        for p, update, norm, alpha in zip(params, updates, norms, alphas):
            denom = max(1.0, norm / ((update.numel() ** 0.5) * group["d"]))
            p.add_(update, alpha=-alpha / denom)

    def _new_state(self, p: Any) -> dict[str, Any]:
        """torch's state of a parameter: the step, and the second moment's row and column
        factors (a matrix, over its last two dimensions) or the whole of it (a vector)."""
        lib, shape, grad = self._lib(p), list(p.grad.shape), p.grad
        if grad.dim() > 1:
            return {"step": self._scalar(p, 0.0),
                    "row_var": lib.zeros(shape[:-1] + [1], dtype=grad.dtype),
                    "col_var": lib.zeros(shape[:-2] + [1, shape[-1]], dtype=grad.dtype)}
        return {"step": self._scalar(p, 0.0), "variance": lib.zeros_like(grad)}
