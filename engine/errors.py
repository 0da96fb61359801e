"""Typed engine errors.

Every error the engine raises on purpose is one of these classes. Each subclasses the built-in
exception PyTorch raises in the same situation, so `except RuntimeError:` code written for torch
works unchanged, and carries torch's message text. The server maps these classes (not messages)
to gRPC status codes in one table (`server/errors.py`); the client re-raises the built-in type
named by `builtin_name` with the same text.
"""

from __future__ import annotations

from gradserve.surface.linalg import LinAlgError as SurfaceLinAlgError


class EngineError(Exception):
    """Base of every deliberate engine error."""

    @property
    def builtin_name(self) -> str:
        """Name of the built-in exception this error stands for ("RuntimeError", ...)."""
        for klass in type(self).__mro__:
            if klass.__module__ == "builtins":
                return klass.__name__
        return "RuntimeError"


class InvalidArgumentError(EngineError, RuntimeError):
    """A call's arguments are wrong in a way torch reports as RuntimeError (shapes, dims)."""


class InvalidValueError(EngineError, ValueError):
    """A call's arguments are wrong in a way torch reports as ValueError."""


class InvalidTypeError(EngineError, TypeError):
    """A call's argument has a type or dtype torch rejects with TypeError."""


class OutOfRangeIndexError(EngineError, IndexError):
    """An index or dimension is out of range (torch raises IndexError)."""


class UnknownOpError(EngineError, ValueError):
    """An op name, attribute name or attribute value is not in the registry's catalogue."""


class UnknownAttributeError(EngineError, TypeError):
    """An op got an attribute (keyword argument) it does not have (torch: TypeError, "f() got
    an unexpected keyword argument 'x'")."""


class AutogradError(EngineError, RuntimeError):
    """Autograd refuses the request in its current state (no grad_fn, implicit grad, leaf rules)."""


# torch's text for a graph whose saved tensors were freed (nodes, saved)
FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you "
    "call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward.")


class GraphFreedError(AutogradError):
    """Backward through a graph whose saved tensors were already freed."""


class InplaceError(AutogradError):
    """An in-place operation is not allowed here, or invalidated a saved tensor (version check)."""


class NotImplementedFunctionError(EngineError, NotImplementedError):
    """A custom autograd Function lacks the forward or backward it was used with."""


class AllocationLimitError(EngineError, RuntimeError):
    """An op's result would exceed the active allocation limit (see `limits.allocation_limit`)."""


class BudgetExceededError(AllocationLimitError):
    """The work would allocate more than the active byte budget (see `limits.byte_budget`)."""


class LinAlgError(EngineError, SurfaceLinAlgError):
    """A matrix is singular, not positive-definite, or a decomposition did not converge
    (torch.linalg.LinAlgError, a RuntimeError)."""

    @property
    def builtin_name(self) -> str:
        """The client re-raises it as torch.linalg.LinAlgError (`gradserve.surface.linalg`)."""
        return "LinAlgError"


class SavedTensorHooksSetError(AutogradError):
    """A second pair of hooks registered on one saved tensor (SavedTensor.register_hooks)."""


class SavedTensorUnpackError(InvalidTypeError):
    """A saved tensor's unpack hook returned something other than a Tensor."""


class NoSavedAttributeError(EngineError, AttributeError):
    """A grad_fn has no `_saved_*` attribute of that name (torch's AttributeError)."""
