"""torch.optim.Adamax, written once for the engine (in process) and sessions.

The algorithm is torch 2.13's `_single_tensor_adamax` (the one torch runs for CPU tensors), op for
op: `step_t += 1` on a float32 0-dim state tensor, `exp_avg.lerp_`, the infinity norm
`maximum(exp_inf.mul_(beta2), grad.abs().add_(eps))` written into exp_inf, and
`param.addcdiv_(exp_avg, exp_inf, value=-lr / (1 - beta1 ** step))` with the step read back as a
Python number (`_get_value`). A session reads a group's steps in one round trip.
"""

from __future__ import annotations

from typing import Any

from .optim_tensors import TensorOptimizer, lerp_

__all__ = ["Adamax"]


class Adamax(TensorOptimizer):
    """torch.optim.Adamax: Adam with the infinity norm of the past gradients.

    Args:
        params: the parameters to optimize, or parameter groups.
        lr: learning rate (default: 2e-3).
        betas: coefficients of the running average of the gradient and of the infinity norm.
        eps: added to the infinity norm (default: 1e-8).
        weight_decay: L2 penalty (default: 0).
        foreach: accepted for torch's signature (CPU tensors take the single-tensor loop).
        maximize: maximize the objective instead of minimizing it (default: False).
        differentiable, capturable: refused when True (not supported).

    Raises:
        ValueError: a hyperparameter out of range (torch's texts).
        NotImplementedError: capturable or differentiable.
    """

    def __init__(self, params: Any, lr: Any = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False) -> None:
        self._check_lr(lr)
        self._check(*self._adam_checks(eps, betas, weight_decay))
        self._refuse("Adamax", differentiable=differentiable, capturable=capturable)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "foreach": foreach, "maximize": maximize, "differentiable": differentiable,
                    "capturable": capturable}
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any]) -> None:
        params, states = self._counted_states(group, lambda p: {
            "step": self._scalar(p, 0.0), "exp_avg": self._zeros_like(p),
            "exp_inf": self._zeros_like(p)})
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = self._lr(group), group["eps"], group["weight_decay"]
        steps = self._read(*(s["step"] for s in states))
        for p, state, step in zip(params, states, steps):
            grad = p.grad if not group["maximize"] else -p.grad
            if weight_decay != 0:
                grad = grad.add(p, alpha=weight_decay)
            exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
            lerp_(exp_avg, grad, 1 - beta1)
            exp_inf.copy_(self._lib(p).maximum(exp_inf.mul_(beta2), grad.abs().add_(eps)))
            clr = lr / (1 - beta1 ** step)
            p.addcdiv_(exp_avg, exp_inf, value=-clr)
