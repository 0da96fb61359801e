"""`torch.distributions` over a layer (the engine module or a session standing in for torch):
`Categorical`, `Normal`, `Bernoulli`, `Uniform` and `kl_divergence` for pairs of the same
family, written as torch writes them (torch/distributions/*.py), over the layer's ops.

Everything a distribution computes is an op the layer records (softmax, logsumexp, gather,
multinomial, normal, bernoulli, rand, ...), so values, gradients and the random stream are
torch's. Arguments are validated as torch validates them by default (`validate_args`), with
torch's ValueError texts.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .compat import Namespace


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


class _Real:
    """constraints.real: not NaN."""

    def check(self, value: Any) -> Any:
        return value == value  # noqa: PLR0124 - NaN test, as torch's

    def __repr__(self) -> str:
        return "Real()"


class _GreaterThan:
    """constraints.greater_than(lower_bound) (constraints.positive: 0.0)."""

    def __init__(self, lower_bound: Any = 0.0):
        self.lower_bound = lower_bound

    def check(self, value: Any) -> Any:
        return self.lower_bound < value

    def __repr__(self) -> str:
        return f"GreaterThan(lower_bound={self.lower_bound})"


class _LessThan:
    """constraints.less_than(upper_bound)."""

    def __init__(self, upper_bound: Any):
        self.upper_bound = upper_bound

    def check(self, value: Any) -> Any:
        return value < self.upper_bound

    def __repr__(self) -> str:
        return f"LessThan(upper_bound={self.upper_bound})"


class _UnitInterval:
    """constraints.unit_interval: in [0, 1]."""

    def check(self, value: Any) -> Any:
        return (value >= 0.0) & (value <= 1.0)

    def __repr__(self) -> str:
        return "Interval(lower_bound=0.0, upper_bound=1.0)"


class _Boolean:
    """constraints.boolean: 0 or 1."""

    def check(self, value: Any) -> Any:
        return (value == 0) | (value == 1)

    def __repr__(self) -> str:
        return "Boolean()"


class _Interval:
    """constraints.interval(low, high): low <= value < high (half open, as torch's check)."""

    def __init__(self, lower_bound: Any, upper_bound: Any):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound

    def check(self, value: Any) -> Any:
        return (self.lower_bound <= value) & (value < self.upper_bound)

    def __repr__(self) -> str:
        return (f"Interval(lower_bound={self.lower_bound}, "
                f"upper_bound={self.upper_bound})")


def build(layer: Any) -> Namespace:
    """The `torch.distributions` namespace of `layer` (the engine module or a session)."""
    torch = layer
    Size, Tensor = layer.Size, layer.Tensor

    def broadcast_all(*values: Any) -> tuple[Any, ...]:
        """torch.distributions.utils.broadcast_all: numbers made tensors of the first tensor's
        dtype (else the default dtype), then broadcast (an argument of the full shape is
        returned as it is, as torch.broadcast_tensors does)."""
        if not all(isinstance(v, (Tensor, numbers.Number)) for v in values):
            raise ValueError("Input arguments must all be instances of Number, "
                             "torch.Tensor or objects implementing __torch_function__.")
        dtype = next((v.dtype for v in values if isinstance(v, Tensor)),
                     torch.get_default_dtype())
        tensors = [v if isinstance(v, Tensor) else torch.tensor(v, dtype=dtype) for v in values]
        shape = tuple(np.broadcast_shapes(*(tuple(t.shape) for t in tensors)))
        return tuple(t if tuple(t.shape) == shape else t.expand(shape) for t in tensors)

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
        def batch_shape(self) -> Any:
            return self._batch_shape

        @property
        def event_shape(self) -> Any:
            return self._event_shape

        def _extended_shape(self, sample_shape: Any = ()) -> Any:
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
        def param_shape(self) -> Any:
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

    def _sample_from_rsample(self: Any, sample_shape: Any = ()) -> Any:
        with torch.no_grad():
            return self.rsample(sample_shape)

    Distribution.sample = _sample_from_rsample  # type: ignore[attr-defined]
    Distribution.has_rsample = False  # type: ignore[attr-defined]

    def _batch(params: tuple[Any, ...], *given: Any) -> Any:
        scalar = all(isinstance(v, numbers.Number) for v in given)
        return () if scalar else params[0].size()

    class Normal(Distribution):
        """torch.distributions.Normal(loc, scale, validate_args=None)."""

        arg_constraints = {"loc": _Real(), "scale": _GreaterThan()}
        support = _Real()  # type: ignore[assignment]
        has_rsample = True

        def __init__(self, loc: Any, scale: Any, validate_args: bool | None = None):
            self.loc, self.scale = broadcast_all(loc, scale)
            super().__init__(_batch((self.loc,), loc, scale), validate_args=validate_args)

        @property
        def mean(self) -> Any:
            return self.loc

        @property
        def mode(self) -> Any:
            return self.loc

        @property
        def stddev(self) -> Any:
            return self.scale

        @property
        def variance(self) -> Any:
            return self.stddev.pow(2)

        def sample(self, sample_shape: Any = ()) -> Any:
            """torch.normal(loc, scale) expanded to sample_shape + batch_shape, without grad."""
            shape = self._extended_shape(sample_shape)
            with torch.no_grad():
                return torch.normal(self.loc.expand(shape), self.scale.expand(shape))

        def rsample(self, sample_shape: Any = ()) -> Any:
            """loc + eps * scale, eps standard normal (differentiable in loc and scale)."""
            shape = self._extended_shape(sample_shape)
            eps = torch.empty(tuple(shape), dtype=self.loc.dtype).normal_()
            return self.loc + eps * self.scale

        def log_prob(self, value: Any) -> Any:
            if self._validate_args:
                self._validate_sample(value)
            var = self.scale**2
            log_scale = self.scale.log()
            return (-((value - self.loc) ** 2) / (2 * var) - log_scale
                    - math.log(math.sqrt(2 * math.pi)))

        def cdf(self, value: Any) -> Any:
            if self._validate_args:
                self._validate_sample(value)
            return 0.5 * (1 + torch.erf((value - self.loc) * self.scale.reciprocal()
                                        / math.sqrt(2)))

        def entropy(self) -> Any:
            return 0.5 + 0.5 * math.log(2 * math.pi) + torch.log(self.scale)

    class Bernoulli(Distribution):
        """torch.distributions.Bernoulli(probs=None, logits=None, validate_args=None)."""

        arg_constraints = {"probs": _UnitInterval(), "logits": _Real()}
        support = _Boolean()  # type: ignore[assignment]
        has_enumerate_support = True

        def __init__(self, probs: Any = None, logits: Any = None,
                     validate_args: bool | None = None):
            if (probs is None) == (logits is None):
                raise ValueError("Either `probs` or `logits` must be specified, but not both.")
            given = probs if probs is not None else logits
            (param,) = broadcast_all(given)
            self.__dict__["probs" if probs is not None else "logits"] = param
            self._param = param
            super().__init__(_batch((param,), given), validate_args=validate_args)

        @_Lazy
        def logits(self) -> Any:
            """log(p) - log1p(-p), p clamped to [eps, 1 - eps] of its dtype."""
            eps = float(np.finfo(self.probs.dtype.name).eps)
            ps = self.probs.clamp(min=eps, max=1 - eps)
            return torch.log(ps) - torch.log1p(-ps)

        @_Lazy
        def probs(self) -> Any:
            """sigmoid(logits)."""
            return torch.sigmoid(self.logits)

        @property
        def mean(self) -> Any:
            return self.probs

        @property
        def variance(self) -> Any:
            return self.probs * (1 - self.probs)

        @property
        def param_shape(self) -> Any:
            return self._param.size()

        def sample(self, sample_shape: Any = ()) -> Any:
            """torch.bernoulli(probs) expanded to sample_shape + batch_shape."""
            shape = self._extended_shape(sample_shape)
            with torch.no_grad():
                # contiguous: the engine's bernoulli reads an expanded tensor's probabilities
                # in another order than torch (the values are torch's for a dense one)
                return torch.bernoulli(self.probs.expand(shape).contiguous())

        def log_prob(self, value: Any) -> Any:
            if self._validate_args:
                self._validate_sample(value)
            logits, value = broadcast_all(self.logits, value)
            return -torch.nn.functional.binary_cross_entropy_with_logits(
                logits, value, reduction="none")

        def entropy(self) -> Any:
            return torch.nn.functional.binary_cross_entropy_with_logits(
                self.logits, self.probs, reduction="none")

    class Uniform(Distribution):
        """torch.distributions.Uniform(low, high, validate_args=None): on [low, high)."""

        has_rsample = True

        @property
        def arg_constraints(self) -> dict[str, Any]:  # type: ignore[override]
            return {"low": _LessThan(self.high), "high": _GreaterThan(self.low)}

        def __init__(self, low: Any, high: Any, validate_args: bool | None = None):
            self.low, self.high = broadcast_all(low, high)
            super().__init__(_batch((self.low,), low, high), validate_args=validate_args)

        @property
        def support(self) -> Any:
            return _Interval(self.low, self.high)

        @property
        def mean(self) -> Any:
            return (self.high + self.low) / 2

        @property
        def stddev(self) -> Any:
            return (self.high - self.low) / 12**0.5

        @property
        def variance(self) -> Any:
            return (self.high - self.low).pow(2) / 12

        def rsample(self, sample_shape: Any = ()) -> Any:
            """low + rand * (high - low)."""
            shape = self._extended_shape(sample_shape)
            rand = torch.rand(tuple(shape), dtype=self.low.dtype)
            return self.low + rand * (self.high - self.low)

        def log_prob(self, value: Any) -> Any:
            if self._validate_args:
                self._validate_sample(value)
            lb = self.low.le(value).type_as(self.low)
            ub = self.high.gt(value).type_as(self.low)
            return torch.log(lb.mul(ub)) - torch.log(self.high - self.low)

        def cdf(self, value: Any) -> Any:
            if self._validate_args:
                self._validate_sample(value)
            result = (value - self.low) / (self.high - self.low)
            return result.clamp(min=0, max=1)

        def entropy(self) -> Any:
            return torch.log(self.high - self.low)

    def _kl_normal_normal(p: Any, q: Any) -> Any:
        var_ratio = (p.scale / q.scale).pow(2)
        t1 = ((p.loc - q.loc) / q.scale).pow(2)
        return 0.5 * (var_ratio + t1 - 1 - var_ratio.log())

    kl_table = {(Normal, Normal): _kl_normal_normal}

    def kl_divergence(p: Any, q: Any) -> Any:
        """KL(p || q) for the pairs gradserve has (Normal, Normal), torch's formula."""
        fn = kl_table.get((type(p), type(q)))
        if fn is None:
            raise NotImplementedError(f"No KL(p || q) is implemented for p type "
                                      f"{p.__class__.__name__} and q type "
                                      f"{q.__class__.__name__}")
        return fn(p, q)

    classes = {"Distribution": Distribution, "Categorical": Categorical, "Normal": Normal,
               "Bernoulli": Bernoulli, "Uniform": Uniform}
    return Namespace(
        "torch.distributions", **classes, kl_divergence=kl_divergence,
        kl=Namespace("torch.distributions.kl", kl_divergence=kl_divergence),
        **{name.lower(): Namespace(f"torch.distributions.{name.lower()}", **{name: cls})
           for name, cls in classes.items() if name != "Distribution"})
