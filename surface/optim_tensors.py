"""The base of torch.optim's algorithms written once as tensor ops of a layer (Adadelta, NAdam,
RAdam, Adamax, Rprop, ASGD, Adafactor, SparseAdam): what each layer provides, the step loop, the
lazy state and the checks they share.

A layer (the engine in process, a session) names its torch-like namespace for a parameter in
`_lib(p)` (`zeros_like`, `zeros`, `tensor`, `full_like`, `maximum`, `float32`) and may read
several values at once in `_read` (a session: one round trip). The algorithms read the Python
numbers torch reads (`step_t.item()`, ...) through `_read`, a whole group's at a time where torch's
values do not depend on the other parameters' ops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .optim import Optimizer, run_step

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

    def _step_counter(self, p: Any) -> Any:
        """torch.zeros((), dtype=torch.float32) of the layer (torch's state["step"])."""
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

    def _check(self, *checks: tuple[bool, str]) -> None:
        """Raise the layer's ValueError with the message of the first check that fails (in
        torch's order)."""
        for ok, message in checks:
            if not ok:
                raise self._value_error(message)

    def _check_lr(self, lr: Any, message: str = "Invalid learning rate: {}") -> None:
        """torch's checks of lr (a tensor lr must have one element)."""
        if isinstance(lr, self._tensor_type) and lr.numel() != 1:
            raise self._value_error("Tensor lr must be 1-element")
        self._check((0.0 <= lr, message.format(lr)))

    @staticmethod
    def _beta_checks(betas: tuple[float, float]) -> list[tuple[bool, str]]:
        """torch's checks of Adam-like betas: each in [0, 1)."""
        return [(0.0 <= beta < 1.0, f"Invalid beta parameter at index {i}: {beta}")
                for i, beta in enumerate(betas[:2])]

    def _adam_checks(self, eps: float, betas: tuple[float, float],
                     weight_decay: float) -> list[tuple[bool, str]]:
        """torch's checks of an Adam-like algorithm's eps, betas and weight_decay, in order."""
        return [(0.0 <= eps, f"Invalid epsilon value: {eps}"), *self._beta_checks(betas),
                (0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")]

    @staticmethod
    def _refuse(algorithm: str, **flags: Any) -> None:
        """NotImplementedError for the variants torch has and the layers do not (capturable,
        differentiable, fused) when asked for."""
        for name, value in flags.items():
            if value:
                raise NotImplementedError(f"{algorithm}(): {name}={value!r} is not supported by "
                                          "gradserve (it runs torch's single-tensor algorithm)")

    # --- the step ---------------------------------------------------------------------------------

    def step(self, closure: Any = None) -> Any:
        """One step over every parameter with a gradient; `closure` re-evaluates the loss.

        Returns:
            The closure's loss, or None.
        """
        return run_step(closure, self.param_groups, self._step_group)

    def _step_group(self, group: dict[str, Any]) -> None:
        """The algorithm's update of one parameter group (under no_grad)."""
        raise NotImplementedError

    def _with_grads(self, group: dict[str, Any]) -> list[Any]:
        """The group's parameters that have a gradient, in order (torch's params_with_grad)."""
        return [p for p in group["params"] if p.grad is not None]

    def _counted_states(self, group: dict[str, Any],
                        init: Callable[[Any], dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        """The group's parameters with a gradient and their states, each state made by
        `init(p)` the first time (torch's lazy state) and its "step" counted (`step += 1`)."""
        params = self._with_grads(group)
        states = []
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state.update(init(p))
            state["step"] += 1
            states.append(state)
        return params, states
