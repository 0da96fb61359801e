"""`nn.functional`: torch's functional spellings over the registered ops.

Activations and most losses are registered ops already (their functions are used as they are);
what lives here is torch's Python layer around them: the keyword forms (`size_average`/`reduce`
are refused), the size-mismatch warning of `mse_loss`/`l1_loss`, the implicit-dim warning of
`softmax`, and `cross_entropy`, which torch composes from `log_softmax` and `nll_loss`.

    import gradserve.engine as ge
    F = ge.nn.functional
    loss = F.cross_entropy(logits, labels)   # grad_fn NllLossBackward0 <- LogSoftmaxBackward0
"""

from __future__ import annotations

import types
import warnings
from typing import Any

from gradserve.surface import spellings as _spellings

from . import errors
from .api import FUNCTIONS
from .ops_nn import check_reduction, per_class
from .spellings import BACKEND
from .tensor import Tensor

functional = types.ModuleType("gradserve.engine.nn.functional",
                              "torch.nn.functional's functions (see gradserve.engine.nn).")


def _export(fn: Any) -> Any:
    setattr(functional, fn.__name__, fn)
    return fn


def _legacy(name: str, size_average: Any, reduce: Any) -> None:
    if size_average is not None or reduce is not None:
        raise errors.InvalidArgumentError(
            f"{name}(): size_average and reduce are deprecated and not supported; use reduction")


def _no_inplace(name: str, inplace: bool) -> None:
    if inplace:
        raise errors.InvalidArgumentError(
            f"{name}(): inplace=True is not supported; use the in-place method (x.{name}_())")


# --- dropout -------------------------------------------------------------------------------------

@_export
def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p), drawing torch's
    mask (see gradserve.surface.spellings.dropout).

    Raises:
        ValueError: p is not in [0, 1].
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    _no_inplace("dropout", inplace)
    return _spellings.dropout(BACKEND, input, p, training)

# --- activations ---------------------------------------------------------------------------------

@_export
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(input, 0)."""
    if inplace:
        return input.relu_()
    return FUNCTIONS["relu"](input)


@_export
def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-input))."""
    return FUNCTIONS["sigmoid"](input)


@_export
def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return FUNCTIONS["tanh"](input)


@_export
def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """input if input > 0 else negative_slope * input."""
    _no_inplace("leaky_relu", inplace)
    return FUNCTIONS["leaky_relu"](input, negative_slope)


@_export
def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """input if input > 0 else alpha * (exp(input) - 1)."""
    _no_inplace("elu", inplace)
    return FUNCTIONS["elu"](input, alpha)


@_export
def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit ('tanh': the tanh approximation)."""
    return FUNCTIONS["gelu"](input, approximate)


@_export
def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """input * sigmoid(input)."""
    _no_inplace("silu", inplace)
    return FUNCTIONS["silu"](input)


@_export
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * input)) / beta, linear above threshold."""
    return FUNCTIONS["softplus"](input, beta, threshold)


def _implicit_dim(name: str, ndim: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to "
                  "include dim=X as an argument.", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


@_export
def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Tensor:
    """exp(input) / sum(exp(input), dim); without dim, torch's deprecated implicit choice."""
    if dim is None:
        dim = _implicit_dim("softmax", input.ndim)
    return FUNCTIONS["softmax"](input, dim, dtype)


@_export
def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype: Any = None) -> Tensor:
    """log(softmax(input, dim)), computed stably."""
    if dim is None:
        dim = _implicit_dim("log_softmax", input.ndim)
    return FUNCTIONS["log_softmax"](input, dim, dtype)


# --- losses --------------------------------------------------------------------------------------

def _warn_size(input: Tensor, target: Tensor) -> None:
    if tuple(target.shape) != tuple(input.shape):
        warnings.warn(
            f"Using a target size ({_size(target.shape)}) that is different to the input size "
            f"({_size(input.shape)}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)


def _size(shape: Any) -> str:
    return f"torch.Size([{', '.join(map(str, shape))}])"


@_export
def mse_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean", weight: Any = None) -> Tensor:
    """Mean (sum, none) squared error; target broadcasts to input with torch's warning."""
    _legacy("mse_loss", size_average, reduce)
    if weight is not None:
        raise errors.InvalidArgumentError("mse_loss(): weight is not supported")
    _warn_size(input, target)
    return FUNCTIONS["mse_loss"](input, target, reduction)


@_export
def l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean", weight: Any = None) -> Tensor:
    """Mean (sum, none) absolute error; target broadcasts to input with torch's warning."""
    _legacy("l1_loss", size_average, reduce)
    if weight is not None:
        raise errors.InvalidArgumentError("l1_loss(): weight is not supported")
    _warn_size(input, target)
    return FUNCTIONS["l1_loss"](input, target, reduction)


@_export
def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of probabilities, each log clamped to >= -100 as in torch."""
    _legacy("binary_cross_entropy", size_average, reduce)
    return FUNCTIONS["binary_cross_entropy"](input, target, weight, reduction)


@_export
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None, size_average: Any = None,
                                     reduce: Any = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of sigmoid(input), computed stably from the logits."""
    _legacy("binary_cross_entropy_with_logits", size_average, reduce)
    return FUNCTIONS["binary_cross_entropy_with_logits"](input, target, weight, pos_weight,
                                                         reduction)


@_export
def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices (class dim 1), weighted, ignoring ignore_index."""
    _legacy("nll_loss", size_average, reduce)
    return FUNCTIONS["nll_loss"](input, target, weight, ignore_index, reduction)


@_export
def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits: class indices (nll_loss of log_softmax) or class probabilities.

    Raises:
        ValueError: an unknown reduction; RuntimeError: torch's shape and target errors.
    """
    _legacy("cross_entropy", size_average, reduce)
    check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise errors.InvalidArgumentError(
            f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    logp = FUNCTIONS["log_softmax"](input, class_dim)
    if target.dtype.is_floating_point and tuple(target.shape) == tuple(input.shape):
        return _cross_entropy_probs(logp, target, weight, reduction, label_smoothing, class_dim)
    nll = FUNCTIONS["nll_loss"](logp, target, weight, ignore_index, reduction)
    if label_smoothing > 0.0:
        return _label_smoothing(logp, target, weight, nll, ignore_index, reduction,
                                label_smoothing, class_dim)
    return nll


def _label_smoothing(logp: Tensor, target: Tensor, weight: Tensor | None, nll: Tensor,
                     ignore_index: int, reduction: str, label_smoothing: float,
                     class_dim: int) -> Tensor:
    # torch's cross_entropy_loss_label_smoothing, op for op (so grad_fns match).
    n_classes = logp.shape[class_dim]
    ignore_mask = target == ignore_index
    if weight is not None:
        view = [1] * logp.ndim
        view[class_dim] = weight.shape[0]
        smooth = -FUNCTIONS["sum"](logp * FUNCTIONS["reshape"](weight, tuple(view)), class_dim)
    else:
        smooth = -FUNCTIONS["sum"](logp, class_dim)
    smooth.masked_fill_(ignore_mask, 0.0)
    if reduction == "mean":
        if weight is not None:
            kept = target[~ignore_mask].reshape(-1)  # torch: masked_select(...).flatten()
            ret = FUNCTIONS["sum"](smooth) / FUNCTIONS["sum"](weight.gather(0, kept))
        else:
            ret = FUNCTIONS["sum"](smooth) / FUNCTIONS["sum"](~ignore_mask)
    elif reduction == "sum":
        ret = FUNCTIONS["sum"](smooth)
    else:
        ret = smooth
    return (_scalar_mul(nll, 1 - label_smoothing)
            + _scalar_mul(ret, per_class(label_smoothing, n_classes)))


def _scalar_mul(t: Tensor, scalar: float) -> Tensor:
    """torch's C++ mul(Tensor, Scalar): mul's node under its name for that overload."""
    out = t * scalar
    if out.grad_fn is not None:
        out.grad_fn._name = "MulBackward1"
    return out


def _cross_entropy_probs(logp: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
                         label_smoothing: float, class_dim: int) -> Tensor:
    # torch's cross_entropy_loss_prob_target, op for op (so grad_fns match).
    n_classes = logp.shape[class_dim]
    if label_smoothing > 0.0:
        target = target * (1 - label_smoothing) + per_class(label_smoothing, n_classes)
    prod = logp * target
    if weight is not None:
        if weight.ndim != 1 or weight.shape[0] != n_classes:
            raise errors.InvalidArgumentError(
                f"weight tensor should be defined either for all {n_classes} classes or no "
                f"classes but got weight tensor of shape: [{', '.join(map(str, weight.shape))}]")
        view = [1] * logp.ndim
        view[class_dim] = n_classes
        prod = prod * FUNCTIONS["reshape"](weight, tuple(view))
    if reduction == "none":
        return -FUNCTIONS["sum"](prod, class_dim)
    if reduction == "sum":
        return -FUNCTIONS["sum"](prod)
    if logp.numel() == 0:  # torch fills the empty sum with NaN rather than divide by 0 // 0
        return -FUNCTIONS["sum"](prod).fill_(float("nan"))
    return -FUNCTIONS["sum"](prod) / (logp.numel() // n_classes)


__all__ = ["functional"]
