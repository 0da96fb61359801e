"""The base of torch.optim's algorithms written once as tensor ops of a layer (Adadelta, NAdam,
RAdam, Adamax, Rprop, ASGD, Adafactor): what each layer provides, and the checks they share.

A layer (the engine in process, a session) names its torch-like namespace for a parameter in
`_lib(p)` (`zeros_like`, `zeros`, `tensor`, `full_like`, `maximum`, `float32`) and may read
several values at once in `_read` (a session: one round trip). The algorithms read the Python
numbers torch reads (`step_t.item()`, ...) through `_read`, a whole group's at a time where torch's
values do not depend on the other parameters' ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .optim import Optimizer

__all__ = ["TensorOptimizer", "lerp_"]


def lerp_(x: Any, end: Any, weight: float) -> None:
    """torch's `x.lerp_(end, weight)` for a Python weight, as tensor ops of x's layer: both of
    its formulas, chosen by the weight, each one fused multiply-add (`x + w * (end - x)`,
    `end - (1 - w) * (end - x)`) with w in x's dtype."""
    w = np.dtype(x.dtype.np).type(weight) if x.dtype.is_floating_point else weight
    if abs(w) < 0.5:
        x.add_(end - x, alpha=float(w))
    else:
        x.copy_(end.sub(end - x, alpha=float(1 - w)))


class TensorOptimizer(Optimizer):
    """torch.optim.Optimizer for an algorithm written as the layer's tensor ops."""

    # --- what the layer provides -----------------------------------------------------------------

    def _lib(self, p: Any) -> Any:
        """The torch-like namespace `p` belongs to (gradserve.engine, or p's session)."""
        raise NotImplementedError

    def _read(self, *values: Any) -> list[Any]:
        """Each tensor in `values` as a Python number (`.item()`), anything else as it is; a
        layer may read them together (a session: in one round trip)."""
        return [v.item() if isinstance(v, self._tensor_type) else v for v in values]

    # --- built from it ---------------------------------------------------------------------------

    def _zeros_like(self, p: Any) -> Any:
        """torch.zeros_like(p) of the layer."""
        return self._lib(p).zeros_like(p)

    def _step_counter(self, p: Any = None) -> Any:
        """torch.zeros((), dtype=torch.float32) of the layer (torch's state["step"])."""
        p = self.param_groups[0]["params"][0] if p is None else p
        lib = self._lib(p)
        return lib.zeros((), dtype=lib.float32)

    def _scalar(self, p: Any, value: float) -> Any:
        """torch.tensor(value, dtype=torch.float32) of the layer (a 0-dim state entry)."""
        lib = self._lib(p)
        return lib.tensor(value, dtype=lib.float32)

    def _lr(self, group: dict[str, Any]) -> float:
        """The group's lr as a Python number (a one-element tensor lr: its value)."""
        lr = group["lr"]
        return self._read(lr.reshape(()))[0] if isinstance(lr, self._tensor_type) else lr

    def _check_lr(self, lr: Any, message: str = "Invalid learning rate: {}") -> None:
        """torch's checks of lr (a tensor lr must have one element)."""
        if isinstance(lr, self._tensor_type) and lr.numel() != 1:
            raise self._value_error("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise self._value_error(message.format(lr))

    def _check_betas(self, betas: tuple[float, float]) -> None:
        """torch's checks of Adam-like betas: each in [0, 1)."""
        for i, beta in enumerate(betas[:2]):
            if not 0.0 <= beta < 1.0:
                raise self._value_error(f"Invalid beta parameter at index {i}: {beta}")

    @staticmethod
    def _refuse(algorithm: str, **flags: Any) -> None:
        """NotImplementedError for the variants torch has and the layers do not (capturable,
        differentiable, fused) when asked for."""
        for name, value in flags.items():
            if value:
                raise NotImplementedError(f"{algorithm}(): {name}={value!r} is not supported by "
                                          "gradserve (it runs torch's single-tensor algorithm)")

    def _with_grads(self, group: dict[str, Any]) -> list[Any]:
        """The group's parameters that have a gradient, in order (torch's params_with_grad)."""
        return [p for p in group["params"] if p.grad is not None]
