"""What a custom autograd Function's ctx declares in `forward` (or `setup_context`), as torch's
`ctx` methods: shared by the engine's ctx (the node itself) and a session's (kept on the client).

Each side checks the declarations its own way when forward returns (the engine against its
tensors, the server for a session), so here they are only recorded.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from . import grad_mode

SAVED_VARIABLES_WARNING = "'saved_variables' is deprecated; use 'saved_tensors'"


class CtxDeclarations:
    """torch's `ctx.save_for_backward`, `mark_dirty`, `mark_non_differentiable` and
    `set_materialize_grads`: each records its arguments, as torch, the last call counting."""

    _saved: Any
    _dirty: tuple[Any, ...]
    _non_differentiable: tuple[Any, ...]
    materialize_grads: bool

    def save_for_backward(self, *tensors: Any) -> None:
        """Keep `tensors` (or None) for `backward`, which reads them as `ctx.saved_tensors`.

        As in torch, the last call counts and is checked when forward returns (TypeError for
        an argument that is neither a Tensor nor None).
        """
        self._saved = tensors

    def mark_dirty(self, *tensors: Any) -> None:
        """Declare inputs that `forward` modified in place (they must be returned)."""
        self._dirty = tensors

    def mark_non_differentiable(self, *tensors: Any) -> None:
        """Declare outputs that do not require grad (their gradient is zeros, or None)."""
        self._non_differentiable = tensors

    def set_materialize_grads(self, value: bool) -> None:
        """Whether `backward` gets zeros (True, the default) or None for unused outputs."""
        self.materialize_grads = bool(value)

    @property
    def saved_variables(self) -> tuple[Any, ...]:
        """torch's deprecated name of `saved_tensors` (warns as torch does)."""
        warnings.warn(SAVED_VARIABLES_WARNING, DeprecationWarning, stacklevel=2)
        return self.saved_tensors  # type: ignore[attr-defined,no-any-return]


def run_forward(cls: Any, base: type, ctx: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    """The forward of `cls.apply(*args, **kwargs)` under no_grad, in either of torch's styles:
    `forward(ctx, *args)`, or `forward(*args)` then `setup_context(ctx, args, output)` when
    `cls` overrides `base`'s (the layer's Function) setup_context.

    Returns:
        What forward returned.
    """
    with grad_mode.no_grad():
        if inspect.getattr_static(cls, "setup_context") is not inspect.getattr_static(
                base, "setup_context"):
            output = cls.forward(*args, **kwargs)
            cls.setup_context(ctx, args, output)
        else:
            output = cls.forward(ctx, *args, **kwargs)
    return output
