"""torch.nn's embedding, margin and likelihood losses (functional and module):
`margin_ranking_loss`, `hinge_embedding_loss`, `cosine_embedding_loss`, `triplet_margin_loss`,
`soft_margin_loss`, `multilabel_soft_margin_loss`, `poisson_nll_loss`, `gaussian_nll_loss`.

Each is composed as torch computes it: torch's Python in torch/nn/functional.py
(`multilabel_soft_margin_loss`, `gaussian_nll_loss`) or the arithmetic of its composite ATen
function (aten/src/ATen/native/Loss.cpp: `margin_ranking_loss`, `hinge_embedding_loss`,
`cosine_embedding_loss`, `triplet_margin_loss`, `poisson_nll_loss`), so the graph is torch's
too. `soft_margin_loss` is a kernel of its own in torch (SoftMarginLossBackward0): here it is
its arithmetic, `log1p(exp(-input * target))`, recorded as those ops.
"""

from __future__ import annotations

import math
from typing import Any

from . import nn_distance
from .nn_backend import NNBackend
from .nn_functional import check_reduction, loss_reduction
from .nn_loss import _Loss, _WeightedLoss
from .nn_module import Module


def _reduced(be: NNBackend, loss: Any, reduction: str) -> Any:
    """torch's apply_loss_reduction."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _reduction(be: NNBackend, size_average: Any, reduce: Any, reduction: str) -> str:
    reduction = loss_reduction(size_average, reduce, reduction)
    check_reduction(be, reduction)
    return reduction


def margin_ranking_loss(be: NNBackend, input1: Any, input2: Any, target: Any,
                        margin: float = 0, size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Any:
    """max(0, -target * (input1 - input2) + margin), reduced."""
    reduction = _reduction(be, size_average, reduce, reduction)
    if input1.dim() != input2.dim() or input1.dim() != target.dim():
        raise be.runtime_error(
            f"margin_ranking_loss : All input tensors should have same dimension but got "
            f"sizes: input1: {input1.size()}, input2: {input2.size()}, target: "
            f"{target.size()} ")
    out = (-target * (input1 - input2) + margin).clamp_min_(0)
    return _reduced(be, out, reduction)


def hinge_embedding_loss(be: NNBackend, input: Any, target: Any, margin: float = 1.0,
                         size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> Any:
    """input where target is 1, max(0, margin - input) where it is -1, reduced."""
    reduction = _reduction(be, size_average, reduce, reduction)
    torch = be.torch
    zeros = torch.zeros_like(input)
    margin_clamp = (margin - input).clamp_min_(0)
    output_margin = torch.where(target != 1, margin_clamp, zeros)
    output_self = torch.where(target != -1, input, zeros)
    return _reduced(be, output_margin + output_self, reduction)


def cosine_embedding_loss(be: NNBackend, input1: Any, input2: Any, target: Any,
                          margin: float = 0, size_average: Any = None, reduce: Any = None,
                          reduction: str = "mean") -> Any:
    """1 - cos(input1, input2) where target is 1, max(0, cos - margin) where it is -1."""
    reduction = _reduction(be, size_average, reduce, reduction)
    torch = be.torch
    targ_dim = target.dim()
    if targ_dim not in (0, 1):
        raise be.runtime_error("0D or 1D target tensor expected, multi-target not supported")
    if targ_dim == 1:
        if input1.dim() != 2 or input2.dim() != 2:
            raise be.runtime_error(
                f"1D target tensor expects 2D input tensors, but found inputs with sizes "
                f"{list(input1.shape)} and {list(input2.shape)}.")
    elif input1.dim() != 1 or input2.dim() != 1:
        raise be.runtime_error(
            f"0D target tensor expects 1D input tensors, but found inputs with sizes "
            f"{list(input1.shape)} and {list(input2.shape)}.")
    epsilon = 1e-12
    prod_sum = (input1 * input2).sum(targ_dim)
    mag_square1 = (input1 * input1).sum(targ_dim) + epsilon
    mag_square2 = (input2 * input2).sum(targ_dim) + epsilon
    denom = (mag_square1 * mag_square2).sqrt_()
    cos = prod_sum / denom
    zeros = torch.zeros_like(cos)
    pos = 1 - cos
    neg = (cos - margin).clamp_min_(0)
    output_pos = torch.where(target == 1, pos, zeros)
    output_neg = torch.where(target == -1, neg, zeros)
    return _reduced(be, output_pos + output_neg, reduction)


def triplet_margin_loss(be: NNBackend, anchor: Any, positive: Any, negative: Any,
                        margin: float = 1.0, p: float = 2, eps: float = 1e-6,
                        swap: bool = False, size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Any:
    """max(0, margin + d(anchor, positive) - d(anchor, negative)), d the p-norm distance."""
    reduction = _reduction(be, size_average, reduce, reduction)
    a_dim, p_dim, n_dim = anchor.dim(), positive.dim(), negative.dim()
    if not (a_dim == p_dim and p_dim == n_dim):
        raise be.runtime_error(
            f"The anchor, positive, and negative tensors are expected to have the same number "
            f"of dimensions, but got: anchor {a_dim}D, positive {p_dim}D, and negative "
            f"{n_dim}D inputs")
    dist_pos = nn_distance.pairwise_distance(be, anchor, positive, p, eps)
    dist_neg = nn_distance.pairwise_distance(be, anchor, negative, p, eps)
    if swap:
        dist_swap = nn_distance.pairwise_distance(be, positive, negative, p, eps)
        dist_neg = be.torch.min(dist_neg, dist_swap)
    output = be.torch.clamp_min(margin + dist_pos - dist_neg, 0)
    return _reduced(be, output, reduction)


def soft_margin_loss(be: NNBackend, input: Any, target: Any, size_average: Any = None,
                     reduce: Any = None, reduction: str = "mean") -> Any:
    """log(1 + exp(-target * input)), reduced (torch's arithmetic; its own node there)."""
    reduction = _reduction(be, size_average, reduce, reduction)
    return _reduced(be, be.torch.log1p(be.torch.exp(-input * target)), reduction)


def multilabel_soft_margin_loss(be: NNBackend, input: Any, target: Any, weight: Any = None,
                                size_average: Any = None, reduce: Any = None,
                                reduction: str = "mean") -> Any:
    """-(target log sigmoid(input) + (1 - target) log sigmoid(-input)), averaged over classes."""
    reduction = loss_reduction(size_average, reduce, reduction)
    F = be.torch.nn.functional
    loss = -(target * F.logsigmoid(input) + (1 - target) * F.logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    class_dim = input.dim() - 1
    classes = input.size(class_dim)
    loss = loss.sum(dim=class_dim) / classes
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise be.value_error(reduction + " is not valid")


def poisson_nll_loss(be: NNBackend, input: Any, target: Any, log_input: bool = True,
                     full: bool = False, size_average: Any = None, eps: float = 1e-8,
                     reduce: Any = None, reduction: str = "mean") -> Any:
    """exp(input) - target * input (log_input), else input - target * log(input + eps); with
    full, Stirling's term for targets above 1."""
    if size_average is not None or reduce is not None:
        reduction = loss_reduction(size_average, reduce, reduction)
    if reduction not in ("none", "mean", "sum"):
        raise be.value_error(reduction + " is not a valid value for reduction")
    torch = be.torch
    if log_input:
        loss = torch.exp(input) - target * input
    else:
        loss = input - target * torch.log(input + eps)
    if full:
        stirling = target * torch.log(target) - target + 0.5 * torch.log(2 * math.pi * target)
        loss = loss + stirling.masked_fill(target <= 1, 0)
    return _reduced(be, loss, reduction)


def gaussian_nll_loss(be: NNBackend, input: Any, target: Any, var: Any, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> Any:
    """0.5 * (log(var) + (input - target)**2 / var), var clamped to eps (without grad)."""
    torch = be.torch
    if isinstance(var, float):
        if var < 0:
            raise be.value_error("var has negative entry/entries")
        var = var * torch.ones_like(input)
    elif bool(torch.any(var < 0)):
        raise be.value_error("var has negative entry/entries")
    in_size, var_size = tuple(input.size()), tuple(var.size())
    if var_size != in_size:
        if in_size[:-1] == var_size:
            var = torch.unsqueeze(var, -1)
        elif len(in_size) == len(var_size) and sum(
                y for x, y in zip(in_size, var_size, strict=True) if x != y) == 1:
            pass  # heteroscedastic: var broadcasts along one dim
        else:
            raise be.value_error("var is of incorrect size")
    if reduction not in ("none", "mean", "sum"):
        raise be.value_error(reduction + " is not valid")
    var = var.clone()
    with torch.no_grad():
        var.clamp_(min=eps)
    loss = 0.5 * (torch.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduced(be, loss, reduction)


def multi_margin_loss(be: NNBackend, input: Any, target: Any, p: int = 1, margin: float = 1.0,
                      weight: Any = None, size_average: Any = None, reduce: Any = None,
                      reduction: str = "mean") -> Any:
    """Per sample, the mean over the other classes of max(0, margin - x[y] + x[d]) (squared
    when p == 2, times weight[y]), reduced. torch's own kernel (MultiMarginLossBackward0):
    here its arithmetic as ops, equal to float32 rounding."""
    reduction = _reduction(be, size_average, reduce, reduction)
    if p not in (1, 2):
        raise be.value_error("only p == 1 and p == 2 supported")
    if weight is not None and weight.dim() != 1:
        raise be.value_error("weight must be one-dimensional")
    unbatched = input.dim() <= 1
    x = input.reshape(1, -1) if unbatched else input
    y = target.reshape(-1, 1)
    classes = x.size(1)
    z = (margin - x.gather(1, y)) + x
    h = z if p == 1 else z * z
    if weight is not None:
        h = h * weight.gather(0, y.reshape(-1)).reshape(-1, 1)
    # the kernel adds only z > 0 of the other classes: no gradient at z == 0, unlike clamp's
    counted = (z > 0) & (be.torch.arange(classes).reshape(1, -1) != y)
    loss = h.masked_fill(counted.logical_not(), 0.0).sum(1) / classes
    if unbatched and reduction == "none":
        loss = loss.reshape(())
    return _reduced(be, loss, reduction)


class MultiMarginLoss(_WeightedLoss):
    """F.multi_margin_loss with this module's p, margin, weight and reduction."""

    __constants__ = ["p", "margin", "reduction"]

    def __init__(self, p: int = 1, margin: float = 1.0, weight: Any = None,
                 size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        if p not in (1, 2):
            raise ValueError("only p == 1 and p == 2 supported")
        if weight is not None and weight.dim() != 1:
            raise ValueError(f"MultiMarginLoss: expected weight to be None or 1D tensor, got "
                             f"{weight.dim()}D instead")
        self.p = p
        self.margin = margin

    def forward(self, input: Any, target: Any) -> Any:
        return multi_margin_loss(self._be, input, target, p=self.p, margin=self.margin,
                                 weight=self.weight, reduction=self.reduction)


class MarginRankingLoss(_Loss):
    """F.margin_ranking_loss with this module's margin and reduction."""

    __constants__ = ["margin", "reduction"]

    def __init__(self, margin: float = 0.0, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Any, input2: Any, target: Any) -> Any:
        return margin_ranking_loss(self._be, input1, input2, target, margin=self.margin,
                                   reduction=self.reduction)


class HingeEmbeddingLoss(_Loss):
    """F.hinge_embedding_loss with this module's margin and reduction."""

    __constants__ = ["margin", "reduction"]

    def __init__(self, margin: float = 1.0, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input: Any, target: Any) -> Any:
        return hinge_embedding_loss(self._be, input, target, margin=self.margin,
                                    reduction=self.reduction)


class CosineEmbeddingLoss(_Loss):
    """F.cosine_embedding_loss with this module's margin and reduction."""

    __constants__ = ["margin", "reduction"]

    def __init__(self, margin: float = 0.0, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Any, input2: Any, target: Any) -> Any:
        return cosine_embedding_loss(self._be, input1, input2, target, margin=self.margin,
                                     reduction=self.reduction)


class TripletMarginLoss(_Loss):
    """F.triplet_margin_loss with this module's margin, p, eps, swap and reduction."""

    __constants__ = ["margin", "p", "eps", "swap", "reduction"]

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                 swap: bool = False, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        if margin <= 0:
            raise ValueError(f"TripletMarginLoss: expected margin to be greater than 0, got "
                             f"{margin} instead")
        self.margin = margin
        self.p = p
        self.eps = eps
        self.swap = swap

    def forward(self, anchor: Any, positive: Any, negative: Any) -> Any:
        return triplet_margin_loss(self._be, anchor, positive, negative, margin=self.margin,
                                   p=self.p, eps=self.eps, swap=self.swap,
                                   reduction=self.reduction)


class SoftMarginLoss(_Loss):
    """F.soft_margin_loss with this module's reduction."""

    __constants__ = ["reduction"]

    def forward(self, input: Any, target: Any) -> Any:
        return soft_margin_loss(self._be, input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_WeightedLoss):
    """F.multilabel_soft_margin_loss with this module's weight and reduction."""

    __constants__ = ["reduction"]

    def forward(self, input: Any, target: Any) -> Any:
        return multilabel_soft_margin_loss(self._be, input, target, weight=self.weight,
                                           reduction=self.reduction)


class PoissonNLLLoss(_Loss):
    """F.poisson_nll_loss with this module's log_input, full, eps and reduction."""

    __constants__ = ["log_input", "full", "eps", "reduction"]

    def __init__(self, log_input: bool = True, full: bool = False, size_average: Any = None,
                 eps: float = 1e-8, reduce: Any = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_input = log_input
        self.full = full
        self.eps = eps

    def forward(self, log_input: Any, target: Any) -> Any:
        return poisson_nll_loss(self._be, log_input, target, log_input=self.log_input,
                                full=self.full, eps=self.eps, reduction=self.reduction)


class GaussianNLLLoss(_Loss):
    """F.gaussian_nll_loss with this module's full, eps and reduction."""

    __constants__ = ["full", "eps", "reduction"]

    def __init__(self, *, full: bool = False, eps: float = 1e-6,
                 reduction: str = "mean") -> None:
        super().__init__(None, None, reduction)
        self.full = full
        self.eps = eps

    def forward(self, input: Any, target: Any, var: Any) -> Any:
        return gaussian_nll_loss(self._be, input, target, var, full=self.full, eps=self.eps,
                                 reduction=self.reduction)


FUNCTIONS = (margin_ranking_loss, hinge_embedding_loss, cosine_embedding_loss,
             triplet_margin_loss, soft_margin_loss, multilabel_soft_margin_loss,
             poisson_nll_loss, gaussian_nll_loss, multi_margin_loss)
"""nn.functional's losses here (bound by `gradserve.surface.nn.build`)."""

MODULES: tuple[type[Module], ...] = (
    MarginRankingLoss, HingeEmbeddingLoss, CosineEmbeddingLoss, TripletMarginLoss,
    SoftMarginLoss, MultiLabelSoftMarginLoss, PoissonNLLLoss, GaussianNLLLoss, MultiMarginLoss)
"""The loss classes `gradserve.surface.nn.build` binds to a backend."""
