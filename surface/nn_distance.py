"""torch.nn.functional's distances and divergences, and their modules, as torch composes them.

`normalize` (`input / norm.clamp_min(eps).expand_as(input)`), `cosine_similarity` (each input
divided by its cloned norm, clamped in place without grad, then multiplied and summed),
`pairwise_distance` (`at::norm(x1 - x2 + eps, p, -1)`: NormBackward1) and `kl_div`
(`xlogy(target, target) - target * input`, or `exp(target) * (target - input)` with
log_target, then reduced; batchmean divides the sum by the batch size) are written from torch's
own code, so values, grad_fn names and gradients are torch's. Every function takes the backend
first (bound by `gradserve.surface.nn.build`).
"""

from __future__ import annotations

import warnings
from typing import Any

from . import grad_mode, messages, out_arg
from .layout import broadcast_shapes
from .nn_backend import NNBackend
from .nn_functional import _reduce, check_reduction, legacy_reduction, reduction_enum
from .nn_loss import _Loss
from .nn_module import Module

_KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release.")


def normalize(be: NNBackend, input: Any, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Any = None) -> Any:
    """input / max(||input||_p over dim, eps), the norm broadcast back over dim (written into
    `out` if given, as torch.div(..., out=out))."""
    norm = be.call("norm", (input, float(p), (dim,), True), {})
    if out is None:
        denom = be.call("clamp_min", (norm, eps), {})
        return input / be.call("expand", (denom,), {"size": tuple(be.shape(input))})
    denom = be.call("expand", (norm.clamp_min_(eps),), {"size": tuple(be.shape(input))})
    return out_arg.call_with_out(be, "div", lambda a, b: a / b, out, (input, denom), {})


def _broadcast_pair(be: NNBackend, x1: Any, x2: Any) -> tuple[Any, Any]:
    """torch's expand_outplace of two tensors: as they are when their shapes are equal, else
    both expanded to the broadcast shape (ExpandBackward0 on each)."""
    s1, s2 = tuple(be.shape(x1)), tuple(be.shape(x2))
    if s1 == s2:
        return x1, x2
    try:
        shape = broadcast_shapes(s1, s2)
    except ValueError:
        raise be.runtime_error(messages.size_mismatch((s1, s2))) from None
    return (be.call("expand", (x1,), {"size": shape}),
            be.call("expand", (x2,), {"size": shape}))


def _common_float(be: NNBackend, x1: Any, x2: Any) -> tuple[Any, Any]:
    """cosine_similarity's dtype handling: the common dtype must be floating; an integral (or
    bool) input is cast to it."""
    n1, n2 = be.dtype_name(x1), be.dtype_name(x2)
    floats = [n for n in (n1, n2) if n in ("float32", "float64")]
    if not floats:
        common = max(n1, n2, key=("bool", "uint8", "int8", "int16", "int32", "int64").index)
        if {n1, n2} == {"uint8", "int8"}:
            common = "int16"  # torch's promotion of the two
        raise be.runtime_error("expected common dtype to be floating point, yet common dtype "
                               f"is {messages.TYPE_WORDS[common]}")
    common = "float64" if "float64" in floats else "float32"
    return tuple(x if n in ("float32", "float64") else be.call("to_dtype", (x,),
                                                               {"dtype": be.dtype(common)})
                 for x, n in ((x1, n1), (x2, n2)))  # type: ignore[return-value]


def cosine_similarity(be: NNBackend, x1: Any, x2: Any, dim: int = 1, eps: float = 1e-8) -> Any:
    """<x1, x2> / (max(||x1||, eps) * max(||x2||, eps)) over dim, the inputs broadcast.

    Raises:
        RuntimeError: neither input is floating (torch's message).
    """
    x1, x2 = _broadcast_pair(be, *_common_float(be, x1, x2))
    n1 = be.call("clone", (be.call("norm", (x1, 2.0, (dim,), True), {}),), {})
    n2 = be.call("clone", (be.call("norm", (x2, 2.0, (dim,), True), {}),), {})
    with grad_mode.no_grad():  # torch clamps the clones in place, outside the graph
        n1.clamp_min_(eps)
        n2.clamp_min_(eps)
    return be.call("sum", ((x1 / n1) * (x2 / n2), dim), {})


def pairwise_distance(be: NNBackend, x1: Any, x2: Any, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Any:
    """The p-norm of x1 - x2 + eps over the last dim (of the larger input)."""
    ndim = max(len(be.shape(x1)), len(be.shape(x2)))
    shifted = be.call("add_scalar", (x1 - x2,), {"other": eps})  # C++ add(Tensor, Scalar)
    return be.call("norm_dim", (shifted, float(p), (ndim - 1,), bool(keepdim)), {})


def kl_div(be: NNBackend, input: Any, target: Any, size_average: Any = None, reduce: Any = None,
           reduction: str = "mean", log_target: bool = False) -> Any:
    """KL divergence of log-probabilities `input` from `target` (probabilities, or
    log-probabilities with log_target), reduced as torch's ('mean' warns, as torch's).

    Raises:
        ValueError: an unknown reduction.
    """
    if size_average is not None or reduce is not None:  # torch's legacy path: no 'mean' warning
        reduction = legacy_reduction(size_average, reduce, reduction)
    else:
        if reduction == "mean":
            warnings.warn(_KL_MEAN_WARNING, UserWarning, stacklevel=2)
        if reduction != "batchmean":
            reduction = reduction_enum(reduction)
    if reduction != "batchmean":
        check_reduction(be, reduction)
    if log_target:
        loss = be.call("exp", (target,), {}) * (target - input)
    else:
        loss = be.call("xlogy", (target, target), {}) - target * input
    if reduction == "batchmean":
        total = _reduce(be, loss, "sum")
        shape = be.shape(input)
        return total / shape[0] if len(shape) else total  # Python's division: DivBackward0
    return _reduce(be, loss, reduction)


FUNCTIONS = (normalize, cosine_similarity, pairwise_distance, kl_div)
"""What `nn.functional` gains from this module."""


class CosineSimilarity(Module):
    """Cosine similarity of two inputs over `dim` (F.cosine_similarity)."""

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x1: Any, x2: Any) -> Any:
        return cosine_similarity(self._be, x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """p-norm distance of two inputs over their last dim (F.pairwise_distance)."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        super().__init__()
        self.norm = p
        self.eps = eps
        self.keepdim = keepdim

    def forward(self, x1: Any, x2: Any) -> Any:
        return pairwise_distance(self._be, x1, x2, self.norm, self.eps, self.keepdim)


class KLDivLoss(_Loss):
    """KL divergence loss (F.kl_div), with torch's reductions including 'batchmean'."""

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                 log_target: bool = False) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: Any, target: Any) -> Any:
        return kl_div(self._be, input, target, reduction=self.reduction,
                      log_target=self.log_target)


MODULES: tuple[type[Module], ...] = (CosineSimilarity, PairwiseDistance, KLDivLoss)
"""The module classes `gradserve.surface.nn.build` binds to a backend."""
