"""torch.optim.RAdam, written once for the engine (in process) and sessions.

The algorithm is torch 2.13's `_single_tensor_radam` (the one torch runs for CPU tensors), op for
op: `step_t += 1` on a float32 0-dim state tensor read back as a Python number (`_get_value`),
`exp_avg.lerp_`, `exp_avg_sq.mul_().addcmul_()`, the bias corrections and the SMA length rho_t
as Python floats, then either `param.add_(exp_avg / bc1 * lr * adaptive_lr * rect, alpha=-1)`
(adaptive_lr = `bc2 ** 0.5 / exp_avg_sq.sqrt().add_(eps)`, torch's reciprocal-then-multiply)
or the unrectified `param.add_(exp_avg / bc1 * lr, alpha=-1)`. A session reads a group's steps
in one round trip.
"""

from __future__ import annotations

from typing import Any

from .optim_tensors import TensorOptimizer, lerp_

__all__ = ["RAdam"]


class RAdam(TensorOptimizer):
    """torch.optim.RAdam: Adam with the variance of the adaptive learning rate rectified.

    Args:
        params: the parameters to optimize, or parameter groups.
        lr: learning rate (default: 1e-3).
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to the denominator (default: 1e-8).
        weight_decay: L2 penalty (default: 0).
        decoupled_weight_decay: decay the weights as AdamW does (default: False).
        foreach: accepted for torch's signature (CPU tensors take the single-tensor loop).
        maximize: maximize the objective instead of minimizing it (default: False).
        capturable, differentiable: refused when True (not supported).

    Raises:
        ValueError: a hyperparameter out of range (torch's texts).
        NotImplementedError: capturable or differentiable.
    """

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        self._check_lr(lr)
        self._check(*self._adam_checks(eps, betas, weight_decay))
        self._refuse("RAdam", capturable=capturable, differentiable=differentiable)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize, "foreach": foreach, "capturable": capturable,
                    "decoupled_weight_decay": decoupled_weight_decay,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any]) -> None:
        params, states = self._counted_states(group, lambda p: {
            "step": self._scalar(p, 0.0), "exp_avg": self._zeros_like(p),
            "exp_avg_sq": self._zeros_like(p)})
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = self._lr(group), group["eps"], group["weight_decay"]
        steps = self._read(*(s["step"] for s in states))
        for p, state, step in zip(params, states, steps):
            grad = p.grad if not group["maximize"] else -p.grad
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(p, alpha=weight_decay)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            lerp_(exp_avg, grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            bias_corrected_exp_avg = exp_avg / bias_correction1
            rho_inf = 2 / (1 - beta2) - 1
            rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
            if rho_t > 5.0:
                rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                        / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
                adaptive_lr = exp_avg_sq.sqrt().add_(eps).reciprocal() * (bias_correction2 ** 0.5)
                p.add_(bias_corrected_exp_avg * lr * adaptive_lr * rect, alpha=-1.0)
            else:
                p.add_(bias_corrected_exp_avg * lr, alpha=-1.0)
