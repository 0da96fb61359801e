"""torch.optim.Rprop, written once for the engine (in process) and sessions.

The algorithm is torch 2.13's `_single_tensor_rprop` (the one torch runs for CPU tensors), op for
op: `step += 1` on a float32 0-dim state tensor, `sign = grad.mul(prev).sign()` with its
positive, negative and zero entries set to etaplus, etaminus and 1 by boolean masks,
`step_size.mul_(sign).clamp_(min, max)`, the gradient zeroed where the sign flipped, then
`param.addcmul_(grad.sign(), step_size, value=-1)` and `prev.copy_(grad)`. Nothing is read back,
so a session records a step without a round trip.
"""

from __future__ import annotations

from typing import Any

from .optim_tensors import TensorOptimizer

__all__ = ["Rprop"]


class Rprop(TensorOptimizer):
    """torch.optim.Rprop: resilient backpropagation, per-coordinate step sizes adapted by the
    sign of the gradient.

    Args:
        params: the parameters to optimize, or parameter groups.
        lr: the initial step size (default: 1e-2).
        etas: (etaminus, etaplus), the factors that shrink and grow a step (default: (0.5, 1.2)).
        step_sizes: the smallest and largest step size (default: (1e-6, 50)).
        capturable, differentiable: refused when True (not supported).
        foreach: accepted for torch's signature (CPU tensors take the single-tensor loop).
        maximize: maximize the objective instead of minimizing it (default: False).

    Raises:
        ValueError: a hyperparameter out of range (torch's texts).
        NotImplementedError: capturable or differentiable.
    """

    def __init__(self, params: Any, lr: Any = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        self._check_lr(lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise self._value_error(f"Invalid eta values: {etas[0]}, {etas[1]}")
        self._refuse("Rprop", capturable=capturable, differentiable=differentiable)
        defaults = {"lr": lr, "etas": etas, "step_sizes": step_sizes, "foreach": foreach,
                    "maximize": maximize, "differentiable": differentiable,
                    "capturable": capturable}
        super().__init__(params, defaults)

    def _step_group(self, group: dict[str, Any]) -> None:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        params, states = self._counted_states(group, lambda p: {
            "step": self._step_counter(p), "prev": self._zeros_like(p),
            "step_size": self._lib(p).full_like(p.grad, self._lr(group))})
        for p, state in zip(params, states):
            grad = p.grad if not group["maximize"] else -p.grad
            prev, step_size = state["prev"], state["step_size"]
            sign = grad.mul(prev).sign()
            sign[sign.gt(0)] = etaplus
            sign[sign.lt(0)] = etaminus
            sign[sign.eq(0)] = 1
            step_size.mul_(sign).clamp_(step_size_min, step_size_max)
            grad = grad.clone()
            grad[sign.eq(etaminus)] = 0
            p.addcmul_(grad.sign(), step_size, value=-1)
            prev.copy_(grad)
