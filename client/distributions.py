"""A session's `torch.distributions`: `Categorical` (policy-gradient programs sample actions and
score them with it), written as torch writes it, over the session's ops.

Everything a distribution computes is an op the session records (softmax, logsumexp, gather,
multinomial), so values, gradients and the random stream are torch's. Arguments are validated
as torch validates them by default (`validate_args`), with torch's ValueError texts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradserve.surface.compat import Namespace

from .tensor import Size, Tensor


class _Lazy:
    """torch's `lazy_property`: computed on first read and then kept in the instance's
    `__dict__` (where a distribution's repr finds it)."""

    def __init__(self, fn: Any):
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value
        return value


class _Simplex:
    """torch.distributions.constraints.simplex: non-negative, summing to 1 along the last dim."""

    def check(self, value: Any) -> Any:
        return (value >= 0).all(dim=-1) & ((value.sum(-1) - 1).abs() < 1e-6)

    def __repr__(self) -> str:
        return "Simplex()"


class _RealVector:
    """torch.distributions.constraints.real_vector: no NaN along the last dim."""

    def check(self, value: Any) -> Any:
        return (value == value).all(dim=-1)  # noqa: PLR0124 - NaN test, as torch's

    def __repr__(self) -> str:
        return "IndependentConstraint(Real(), 1)"


class _IntegerInterval:
    """torch.distributions.constraints.integer_interval(lower_bound, upper_bound)."""

    def __init__(self, lower_bound: int, upper_bound: int):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound

    def check(self, value: Any) -> Any:
        return (value % 1 == 0) & (self.lower_bound <= value) & (value <= self.upper_bound)

    def __repr__(self) -> str:
        return (f"IntegerInterval(lower_bound={self.lower_bound}, "
                f"upper_bound={self.upper_bound})")


def build(session: Any) -> Namespace:
    """The `torch.distributions` namespace of `session`."""
    torch = session

    class Distribution:
        """torch.distributions.Distribution: batch and event shapes, argument validation."""

        arg_constraints: dict[str, Any] = {}
        _validate_args = True

        def __init__(self, batch_shape: Any = (), event_shape: Any = (),
                     validate_args: bool | None = None):
            self._batch_shape = Size(batch_shape)
            self._event_shape = Size(event_shape)
            if validate_args is not None:
                self._validate_args = validate_args
            if self._validate_args:
                for param, constraint in self.arg_constraints.items():
                    if param not in self.__dict__ and isinstance(
                            getattr(type(self), param, None), _Lazy):
                        continue  # not given: torch skips the lazily derived parameter
                    value = getattr(self, param)
                    if not bool(constraint.check(value).all()):
                        raise ValueError(
                            f"Expected parameter {param} ({type(value).__name__} of shape "
                            f"{tuple(value.shape)}) of distribution {self!r} to satisfy the "
                            f"constraint {constraint!r}, but found invalid values:\n{value}")

        @property
        def support(self) -> Any:
            """The constraint the values of this distribution satisfy."""
            raise NotImplementedError

        @property
        def batch_shape(self) -> Size:
            return self._batch_shape

        @property
        def event_shape(self) -> Size:
            return self._event_shape

        def _extended_shape(self, sample_shape: Any = ()) -> Size:
            return Size(tuple(sample_shape) + tuple(self._batch_shape)
                        + tuple(self._event_shape))

        def _validate_sample(self, value: Any) -> None:
            if not isinstance(value, Tensor):
                raise ValueError("The value argument to log_prob must be a Tensor")
            event_dim_start = len(value.size()) - len(self._event_shape)
            if tuple(value.size()[event_dim_start:]) != tuple(self._event_shape):
                raise ValueError(
                    f"The right-most size of value must match event_shape: {value.size()} vs "
                    f"{self._event_shape}.")
            actual_shape = value.size()
            expected_shape = Size(tuple(self._batch_shape) + tuple(self._event_shape))
            for i, j in zip(reversed(actual_shape), reversed(expected_shape)):
                if i != 1 and j != 1 and i != j:
                    raise ValueError(
                        "Value is not broadcastable with batch_shape+event_shape: "
                        f"{actual_shape} vs {expected_shape}.")
            support = self.support
            if not bool(support.check(value).all()):
                raise ValueError(
                    f"Expected value argument ({type(value).__name__} of shape "
                    f"{tuple(value.shape)}) to be within the support ({support!r}) of the "
                    f"distribution {self!r}, but found invalid values:\n{value}")

        def __repr__(self) -> str:
            names = [k for k in self.arg_constraints if k in self.__dict__]
            shown = ", ".join(
                f"{p}: {self.__dict__[p] if self.__dict__[p].numel() == 1 else self.__dict__[p].size()}"  # noqa: E501
                for p in names)
            return f"{type(self).__name__}({shown})"

    class Categorical(Distribution):
        """torch.distributions.Categorical(probs=None, logits=None, validate_args=None): a
        distribution over 0..K-1 along the last dim of `probs` (normalised) or `logits`
        (unnormalised log-probabilities)."""

        arg_constraints = {"probs": _Simplex(), "logits": _RealVector()}
        has_enumerate_support = True

        def __init__(self, probs: Any = None, logits: Any = None,
                     validate_args: bool | None = None):
            if (probs is None) == (logits is None):
                raise ValueError("Either `probs` or `logits` must be specified, but not both.")
            if probs is not None:
                if probs.dim() < 1:
                    raise ValueError("`probs` parameter must be at least one-dimensional.")
                self.__dict__["probs"] = probs / probs.sum(-1, keepdim=True)
            else:
                if logits.dim() < 1:
                    raise ValueError("`logits` parameter must be at least one-dimensional.")
                self.__dict__["logits"] = logits - logits.logsumexp(dim=-1, keepdim=True)
            self._param = self.probs if probs is not None else self.logits
            self._num_events = self._param.size()[-1]
            batch_shape = self._param.size()[:-1] if self._param.dim() > 1 else ()
            super().__init__(batch_shape, validate_args=validate_args)

        @_Lazy
        def logits(self) -> Any:
            """log(probs), probs clamped to [eps, 1 - eps] of their dtype."""
            eps = float(np.finfo(self.probs.dtype.name).eps)
            return torch.log(self.probs.clamp(min=eps, max=1 - eps))

        @_Lazy
        def probs(self) -> Any:
            """softmax(logits) along the last dim."""
            return torch.nn.functional.softmax(self.logits, dim=-1)

        @property
        def support(self) -> _IntegerInterval:
            return _IntegerInterval(0, self._num_events - 1)

        @property
        def param_shape(self) -> Size:
            return self._param.size()

        @property
        def mean(self) -> Any:
            return torch.full(self._extended_shape(), float("nan"), dtype=self.probs.dtype)

        @property
        def mode(self) -> Any:
            return self.probs.argmax(dim=-1)

        @property
        def variance(self) -> Any:
            return torch.full(self._extended_shape(), float("nan"), dtype=self.probs.dtype)

        def sample(self, sample_shape: Any = ()) -> Any:
            """Indices drawn with replacement by `multinomial`, of shape sample_shape +
            batch_shape."""
            sample_shape = Size(sample_shape)
            probs_2d = self.probs.reshape(-1, self._num_events)
            samples_2d = torch.multinomial(probs_2d, sample_shape.numel(), True).T
            return samples_2d.reshape(self._extended_shape(sample_shape))

        def log_prob(self, value: Any) -> Any:
            """The log-probability of each index in `value` (broadcast against the batch)."""
            if self._validate_args:
                self._validate_sample(value)
            value = value.long().unsqueeze(-1)
            shape = tuple(np.broadcast_shapes(tuple(value.shape), tuple(self.logits.shape)))
            value, log_pmf = value.expand(shape), self.logits.expand(shape)
            value = value[..., :1]
            return log_pmf.gather(-1, value).squeeze(-1)

        def entropy(self) -> Any:
            """-sum(p log p) along the last dim (log p clamped to the dtype's smallest)."""
            min_real = float(np.finfo(self.logits.dtype.name).min)
            logits = torch.clamp(self.logits, min=min_real)
            p_log_p = logits * self.probs
            return -p_log_p.sum(-1)

    return Namespace("torch.distributions", Distribution=Distribution, Categorical=Categorical)
