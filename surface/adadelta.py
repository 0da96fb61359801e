"""torch.optim.Adadelta, written once for the engine (in process) and sessions.

The algorithm is torch 2.13's `_single_tensor_adadelta` (the one torch runs for CPU tensors):
per parameter, `square_avg.mul_(rho).addcmul_(g, g, value=1 - rho)`, `std =
square_avg.add(eps).sqrt_()`, `delta = acc_delta.add(eps).sqrt_().div_(std).mul_(g)`,
`acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)`, `param.add_(delta, alpha=-lr)`,
as tensor ops of the layer, so each step is torch's to the last bit where those ops are (they
are: fused addcmul and add with alpha, sqrt as torch's). The state (`step`, a float32 0-dim
tensor, `square_avg`, `acc_delta`) is made at the first step a parameter has a gradient, as
torch's; through a session the ops are recorded like any others.
"""

from __future__ import annotations

from typing import Any

from .optim_tensors import TensorOptimizer

__all__ = ["Adadelta"]


class Adadelta(TensorOptimizer):
    """torch.optim.Adadelta: per-coordinate steps scaled by running averages of squared
    gradients and squared updates.

    Args:
        params: the parameters to optimize, or parameter groups.
        lr: coefficient that scales delta before it is applied (default: 1.0).
        rho: coefficient of the running averages (default: 0.9).
        eps: added to the denominator (default: 1e-6).
        weight_decay: L2 penalty (default: 0).
        foreach: accepted for torch's signature (CPU tensors take the single-tensor loop).
        capturable, differentiable: refused when True (not supported).
        maximize: maximize the objective instead of minimizing it (default: False).

    Raises:
        ValueError: a hyperparameter out of range (torch's texts).
        NotImplementedError: capturable or differentiable.
    """

    def __init__(self, params: Any, lr: Any = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *,
                 capturable: bool = False, maximize: bool = False,
                 differentiable: bool = False) -> None:
        self._check_lr(lr)
        self._check((0.0 <= rho <= 1.0, f"Invalid rho value: {rho}"),
                    (0.0 <= eps, f"Invalid epsilon value: {eps}"),
                    (0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}"))
        self._refuse("Adadelta", capturable=capturable, differentiable=differentiable)
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize, "capturable": capturable, "foreach": foreach,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    # --- torch's Adadelta ------------------------------------------------------------------------

    def _step_group(self, group: dict[str, Any]) -> None:
        for p in group["params"]:
            if p.grad is not None:
                self._update_adadelta(p, group)

    def _update_adadelta(self, param: Any, group: dict[str, Any]) -> None:
        lr, rho, eps = group["lr"], group["rho"], group["eps"]
        state = self.state[param]
        if len(state) == 0:
            state["step"] = self._step_counter(param)
            state["square_avg"] = self._zeros_like(param)
            state["acc_delta"] = self._zeros_like(param)
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        state["step"] += 1
        grad = param.grad if not group["maximize"] else -param.grad
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
        std = square_avg.add(eps).sqrt_()
        delta = acc_delta.add(eps).sqrt_()
        delta.div_(std).mul_(grad)
        acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
        param.add_(delta, alpha=-(lr.item() if isinstance(lr, self._tensor_type) else lr))
