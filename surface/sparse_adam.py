"""torch.optim.SparseAdam, written once for the engine (in process) and sessions.

torch's SparseAdam updates parameters from sparse gradients only; a dense gradient makes its
step raise "SparseAdam does not support dense gradients, please consider Adam instead". gradserve
has no sparse gradients (`nn.Embedding(sparse=True)` is refused), so every gradient is dense:
the constructor takes and checks torch's hyperparameters, and `step()` raises torch's error at
the first parameter with a gradient, as torch does for a dense one.
"""

from __future__ import annotations

from typing import Any

from .optim_tensors import TensorOptimizer

__all__ = ["SparseAdam"]


class SparseAdam(TensorOptimizer):
    """torch.optim.SparseAdam: a masked Adam for sparse gradients (none in gradserve: its step
    refuses the dense ones with torch's error).

    Args:
        params: the parameters to optimize, or parameter groups.
        lr: learning rate (default: 1e-3).
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to the denominator (default: 1e-8).
        maximize: maximize the objective instead of minimizing it (default: False).

    Raises:
        ValueError: a hyperparameter out of range (torch's texts).
    """

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, maximize: bool = False) -> None:
        if isinstance(lr, self._tensor_type) and lr.numel() != 1:
            raise self._value_error("Tensor lr must be 1-element")
        self._check((0.0 < lr, f"Invalid learning rate: {lr}"),
                    (0.0 < eps, f"Invalid epsilon value: {eps}"),
                    *self._beta_checks(betas))
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize})

    def _step_group(self, group: dict[str, Any]) -> None:
        """Refuse the (dense) gradients as torch does (`step()` runs the closure first).

        Raises:
            RuntimeError: a parameter has a gradient (torch's text for a dense one).
        """
        if self._with_grads(group):
            raise RuntimeError("SparseAdam does not support dense gradients, please consider "
                               "Adam instead")
