"""torch.optim.SparseAdam, written once for the engine (in process) and sessions.

torch's SparseAdam updates parameters from sparse gradients only; a dense gradient makes its
step raise "SparseAdam does not support dense gradients, please consider Adam instead". gradserve
has no sparse gradients (`nn.Embedding(sparse=True)` is refused), so every gradient is dense:
the constructor takes and checks torch's hyperparameters, and `step()` raises torch's error at
the first parameter with a gradient, as torch does for a dense one.
"""

from __future__ import annotations

from typing import Any

from .optim import run_step
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
        if not 0.0 < lr:
            raise self._value_error(f"Invalid learning rate: {lr}")
        if not 0.0 < eps:
            raise self._value_error(f"Invalid epsilon value: {eps}")
        self._check_betas(betas)
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize})

    def step(self, closure: Any = None) -> Any:
        """Run `closure`, then refuse the (dense) gradients as torch does.

        Raises:
            RuntimeError: a parameter has a gradient (torch's text for a dense one).
        """
        return run_step(closure, self.param_groups, self._refuse_dense)

    def _refuse_dense(self, group: dict[str, Any]) -> None:
        if self._with_grads(group):
            raise RuntimeError("SparseAdam does not support dense gradients, please consider "
                               "Adam instead")
