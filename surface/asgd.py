"""torch.optim.ASGD, written once for the engine (in process) and sessions.

The algorithm is torch 2.13's `_single_tensor_asgd` (the one torch runs for CPU tensors), op for
op: `step_t += 1`, the decay `param.mul_(1 - lambd * eta)` and `param.add_(grad, alpha=-eta)`
with eta read back as a Python number (`_get_value`), the average `ax.add_(param.sub(ax).mul_(mu))`
(or `ax.copy_(param)` while mu is 1), then eta and mu (float32 0-dim state tensors) set to
`lr / (1 + lambd * lr * step) ** alpha` and `1 / max(1, step - t0)`. A session reads a group's
eta, mu and step values in one round trip (each parameter's are its own).
"""

from __future__ import annotations

from typing import Any

from .optim_tensors import TensorOptimizer

__all__ = ["ASGD"]


class ASGD(TensorOptimizer):
    """torch.optim.ASGD: averaged stochastic gradient descent.

    Args:
        params: the parameters to optimize, or parameter groups.
        lr: learning rate (default: 1e-2).
        lambd: decay term (default: 1e-4).
        alpha: power for the eta update (default: 0.75).
        t0: the step at which averaging starts (default: 1e6).
        weight_decay: L2 penalty (default: 0).
        foreach: accepted for torch's signature (CPU tensors take the single-tensor loop).
        maximize: maximize the objective instead of minimizing it (default: False).
        differentiable, capturable: refused when True (not supported).

    Raises:
        ValueError: a hyperparameter out of range (torch's texts).
        NotImplementedError: capturable or differentiable.
    """

    def __init__(self, params: Any, lr: Any = 1e-2, lambd: float = 1e-4, alpha: float = 0.75,
                 t0: float = 1e6, weight_decay: float = 0, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False) -> None:
        self._check_lr(lr)
        self._check((0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}"))
        self._refuse("ASGD", differentiable=differentiable, capturable=capturable)
        defaults = {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0,
                    "weight_decay": weight_decay, "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable, "capturable": capturable}
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any]) -> None:
        lr = self._lr(group)
        params, states = self._counted_states(group, lambda p: {
            "step": self._step_counter(p), "eta": self._scalar(p, lr),
            "mu": self._scalar(p, 1.0), "ax": self._zeros_like(p)})
        values = self._read(*(s[k] for s in states for k in ("eta", "mu", "step")))
        lambd, alpha, t0 = group["lambd"], group["alpha"], group["t0"]
        for i, (p, state) in enumerate(zip(params, states)):
            eta_value, mu_value, step = values[3 * i:3 * i + 3]
            grad = p.grad if not group["maximize"] else -p.grad
            if group["weight_decay"] != 0:
                grad = grad.add(p, alpha=group["weight_decay"])
            p.mul_(1 - lambd * eta_value)
            p.add_(grad, alpha=-eta_value)
            ax = state["ax"]
            if mu_value != 1:
                ax.add_(p.sub(ax).mul_(state["mu"]))
            else:
                ax.copy_(p)
            state["eta"].copy_(self._scalar(p, lr / ((1 + lambd * lr * step) ** alpha)))
            state["mu"].copy_(self._scalar(p, 1 / max(1, step - t0)))
