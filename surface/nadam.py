"""torch.optim.NAdam, written once for the engine (in process) and sessions.

The algorithm is torch 2.13's `_single_tensor_nadam` (the one torch runs for CPU tensors), op for
op: `step_t += 1`, `mu_product *= mu` on float32 0-dim state tensors, read back as Python numbers
as torch reads them (`_get_value`), `exp_avg.lerp_` (`optim_tensors.lerp_`),
`exp_avg_sq.mul_().addcmul_()`, `denom = exp_avg_sq.div(bias_correction2).sqrt().add_(eps)`
and two `param.addcdiv_` with torch's Python-float coefficients. A session reads a group's
steps, then its mu_products, in one round trip each (torch's values of one parameter do not
depend on another's ops).
"""

from __future__ import annotations

from typing import Any

from .optim_tensors import TensorOptimizer, lerp_

__all__ = ["NAdam"]


class NAdam(TensorOptimizer):
    """torch.optim.NAdam: Adam with Nesterov momentum (and NAdamW's decoupled weight decay).

    Args:
        params: the parameters to optimize, or parameter groups.
        lr: learning rate (default: 2e-3).
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to the denominator (default: 1e-8).
        weight_decay: L2 penalty (default: 0).
        momentum_decay: momentum decay psi (default: 4e-3).
        decoupled_weight_decay: decay the weights as AdamW does (default: False).
        foreach: accepted for torch's signature (CPU tensors take the single-tensor loop).
        maximize: maximize the objective instead of minimizing it (default: False).
        capturable, differentiable: refused when True (not supported).

    Raises:
        ValueError: a hyperparameter out of range (torch's texts).
        NotImplementedError: capturable or differentiable.
    """

    def __init__(self, params: Any, lr: Any = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        self._check_lr(lr)
        self._check(*self._adam_checks(eps, betas, weight_decay),
                    (0.0 <= momentum_decay, f"Invalid momentum_decay value: {momentum_decay}"))
        self._refuse("NAdam", capturable=capturable, differentiable=differentiable)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "momentum_decay": momentum_decay,
                    "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize,
                    "foreach": foreach, "capturable": capturable,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any]) -> None:
        params, states = self._counted_states(group, lambda p: {
            "step": self._scalar(p, 0.0), "mu_product": self._scalar(p, 1.0),
            "exp_avg": self._zeros_like(p), "exp_avg_sq": self._zeros_like(p)})
        beta1, beta2 = group["betas"]
        lr, psi = self._lr(group), group["momentum_decay"]
        steps = self._read(*(s["step"] for s in states))
        mus = []
        for state, step in zip(states, steps):
            mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * psi)))
            mus.append((mu, beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * psi)))))
            state["mu_product"] *= mu
        products = self._read(*(s["mu_product"] for s in states))
        for p, state, step, (mu, mu_next), mu_product in zip(params, states, steps, mus,
                                                               products):
            grad = p.grad if not group["maximize"] else -p.grad
            bias_correction2 = 1 - beta2 ** step
            if group["weight_decay"] != 0:
                if group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                else:
                    grad = grad.add(p, alpha=group["weight_decay"])
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            lerp_(exp_avg, grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = exp_avg_sq.div(bias_correction2).sqrt()
            mu_product_next = mu_product * mu_next
            denom.add_(group["eps"])
            p.addcdiv_(grad, denom, value=(-lr * (1.0 - mu) / (1.0 - mu_product)))
            p.addcdiv_(exp_avg, denom, value=(-lr * mu_next) / (1.0 - mu_product_next))
