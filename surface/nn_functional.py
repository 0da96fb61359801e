"""`torch.nn.functional`, written once against an `NNBackend` (gradserve.surface.nn_backend).

Activations and most losses are ops already; what lives here is torch's Python layer around
them: the keyword forms (the legacy `size_average`/`reduce` name a reduction, with torch's
deprecation warning), the size-mismatch warning of the
pointwise losses, the implicit-dim warning of `softmax`, and the functions torch composes from
other ops: `cross_entropy` (`log_softmax` then `nll_loss`, so the grad_fns are torch's),
`smooth_l1_loss`, `huber_loss`, `linear`, `bilinear`, `dropout`, `embedding`; `layer_norm` is
one op, as torch's `native_layer_norm` (`batch_norm`, in nn_norm.py, likewise).

Every function takes the backend first; `gradserve.surface.nn.build` binds it (with
`functools.partial`, which adds no frame, so warnings name the caller's line at stacklevel 3).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from . import spellings
from .compat import _C_NAMES
from .layout import broadcast_shapes
from .nn_backend import NNBackend

REDUCTIONS = ("none", "mean", "sum")


def reduction_enum(reduction: str) -> str:
    """The reduction torch's `_Reduction.get_enum` reads: the deprecated 'elementwise_mean'
    is 'mean', with torch's warning; any other name passes through to be checked."""
    if reduction == "elementwise_mean":
        warnings.warn("reduction='elementwise_mean' is deprecated. Please use reduction='mean' "
                      "instead.", UserWarning, stacklevel=3)
        return "mean"
    return reduction


def loss_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """What a loss function reduces by: `legacy_reduction`'s choice as `reduction_enum` reads
    it (a loss module keeps the name it was given; its functional maps it at each call)."""
    return reduction_enum(legacy_reduction(size_average, reduce, reduction))


def _call(be: NNBackend, name: str, *args: Any, **kwargs: Any) -> Any:
    return be.call(name, args, kwargs)


def check_reduction(be: NNBackend, reduction: str) -> None:
    """torch's legacy_get_enum check, with its message (a ValueError)."""
    if reduction not in REDUCTIONS:
        raise be.value_error(f"{reduction} is not a valid value for reduction")


def legacy_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """The reduction a loss uses: `reduction`, or when either legacy argument is given the one
    they name, with torch's deprecation warning (torch's `_Reduction.legacy_get_string`).

    Args:
        size_average: torch's legacy flag (None: not given, counts as True).
        reduce: torch's legacy flag (None: not given, counts as True).
        reduction: the `reduction` argument, used when neither legacy flag is given.

    Returns:
        "mean", "sum" or "none".
    """
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    legacy = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use "
                  f"reduction='{legacy}' instead.", UserWarning, stacklevel=3)
    return legacy


def _reduce(be: NNBackend, loss: Any, reduction: str) -> Any:
    if reduction == "mean":
        return _call(be, "mean", loss)
    if reduction == "sum":
        return _call(be, "sum", loss)
    return loss


# --- activations ---------------------------------------------------------------------------------

def relu(be: NNBackend, input: Any, inplace: bool = False) -> Any:
    """max(input, 0) (in place with inplace=True, as torch's relu_)."""
    if inplace:
        return input.relu_()
    return _call(be, "relu", input)


def hardtanh(be: NNBackend, input: Any, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Any:
    """input clamped to [min_val, max_val]: torch's hardtanh op (grad_fn HardtanhBackward0, no
    gradient at the bounds); in place with inplace=True, as torch's hardtanh_."""
    if be.dtype_name(input) == "bool":
        raise be.runtime_error("Bool inputs not supported for hardtanh")
    if inplace:
        return input.hardtanh_(min_val, max_val)
    return _call(be, "hardtanh", input, min_val, max_val)


def hardtanh_(be: NNBackend, input: Any, min_val: float = -1.0, max_val: float = 1.0) -> Any:
    """`hardtanh` in place."""
    return input.hardtanh_(min_val, max_val)


def relu6(be: NNBackend, input: Any, inplace: bool = False) -> Any:
    """min(max(input, 0), 6): torch's relu6 is hardtanh(input, 0, 6) (HardtanhBackward0)."""
    return hardtanh(be, input, 0.0, 6.0, inplace)


def sigmoid(be: NNBackend, input: Any) -> Any:
    """1 / (1 + exp(-input))."""
    return _call(be, "sigmoid", input)


def tanh(be: NNBackend, input: Any) -> Any:
    """Hyperbolic tangent."""
    return _call(be, "tanh", input)


def leaky_relu(be: NNBackend, input: Any, negative_slope: float = 0.01,
               inplace: bool = False) -> Any:
    """input if input > 0 else negative_slope * input (in place with inplace=True, as torch's
    leaky_relu_: grad_fn LeakyReluBackward1)."""
    if inplace:
        return input.leaky_relu_(negative_slope)
    return _call(be, "leaky_relu", input, negative_slope)


def leaky_relu_(be: NNBackend, input: Any, negative_slope: float = 0.01) -> Any:
    """`leaky_relu` in place."""
    return input.leaky_relu_(negative_slope)


def prelu(be: NNBackend, input: Any, weight: Any) -> Any:
    """input if input > 0 else weight * input, weight one value or one per channel (dim 1).

    Args:
        be: the layer.
        input: the tensor.
        weight: a 0-d or 1-D tensor of 1 or C = input.size(1) elements (C = 1 for 1-D input).

    Returns:
        torch's `_prelu_kernel(input, weight)` (PreluKernelBackward0), the weight viewed as
        (C, 1, ..., 1) when it has C > 1 elements.

    Raises:
        RuntimeError: torch's texts for a weight of more than one dim, a 0-d input with several
            weights, a weight count that is not the channel count, dtypes that differ.
    """
    ws = tuple(be.shape(weight))
    if len(ws) > 1:
        raise be.runtime_error("prelu: Expected `weight` to be a scalar or 1D tensor, but got: "
                               f"ndim = {len(ws)}")
    xs = tuple(be.shape(input))
    n = math.prod(ws)
    if n != 1:
        if not xs:
            raise be.runtime_error("Not allow zero-dim input tensor.")
        channels = xs[1] if len(xs) > 1 else 1
        if channels != n:
            raise be.runtime_error("Mismatch of parameter numbers and input channel size. Found "
                                   f"parameter numbers = {n} and channel size = {channels}.")
    dtypes = (be.dtype_name(input), be.dtype_name(weight))
    if dtypes[0] != dtypes[1]:
        a, b = (_C_NAMES.get(d, d) for d in dtypes)
        raise be.runtime_error(f"prelu: Type promoting not supported. Got {a} and {b}")
    if len(xs) > 1 and n != 1:
        weight = _call(be, "reshape", weight, (n, *(1,) * (len(xs) - 2)))
    return _call(be, "_prelu_kernel", input, weight)


def elu(be: NNBackend, input: Any, alpha: float = 1.0, inplace: bool = False) -> Any:
    """input if input > 0 else alpha * (exp(input) - 1) (in place with inplace=True, as
    torch's elu_: grad_fn EluBackward1)."""
    if inplace:
        return input.elu_(alpha)
    return _call(be, "elu", input, alpha)


def elu_(be: NNBackend, input: Any, alpha: float = 1.0) -> Any:
    """`elu` in place."""
    return input.elu_(alpha)


def gelu(be: NNBackend, input: Any, approximate: str = "none") -> Any:
    """Gaussian error linear unit ('tanh': the tanh approximation)."""
    return _call(be, "gelu", input, approximate)


def silu(be: NNBackend, input: Any, inplace: bool = False) -> Any:
    """input * sigmoid(input) (in place with inplace=True, as torch's silu_)."""
    if inplace:
        return input.silu_()
    return _call(be, "silu", input)


def softplus(be: NNBackend, input: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    """log(1 + exp(beta * input)) / beta, linear above threshold."""
    return _call(be, "softplus", input, beta, threshold)


def selu_(be: NNBackend, input: Any) -> Any:
    """`selu` in place (grad_fn EluBackward1)."""
    return input.selu_()


def celu_(be: NNBackend, input: Any, alpha: float = 1.0) -> Any:
    """`celu` in place (grad_fn CeluBackward1)."""
    return input.celu_(alpha)


def selu(be: NNBackend, input: Any, inplace: bool = False) -> Any:
    """scale * (input if input > 0 else alpha * (exp(input) - 1)), SELU's alpha and scale.

    Args:
        be: the backend.
        input: a floating-point tensor.
        inplace: write the result into input (torch's in-place op: input must not be a
            leaf that requires grad).

    Returns:
        A tensor of input's shape and dtype (grad_fn EluBackward0, as torch's; in place
        EluBackward1).

    Raises:
        NotImplementedError: input is integral or bool (torch's message).
        RuntimeError: inplace=True on a leaf that requires grad (torch's message).
    """
    if inplace:
        return input.selu_()
    return _call(be, "selu", input)


def celu(be: NNBackend, input: Any, alpha: float = 1.0, inplace: bool = False) -> Any:
    """input if input > 0 else alpha * (exp(input / alpha) - 1).

    Args:
        be: the backend.
        input: a floating-point tensor.
        alpha: the negative side's scale (not 0).
        inplace: write the result into input (torch's in-place op: input must not be a
            leaf that requires grad).

    Returns:
        A tensor of input's shape and dtype.

    Raises:
        NotImplementedError: input is integral or bool (torch's message).
        RuntimeError: alpha is 0 (torch's message); inplace=True on a leaf that requires
            grad.
    """
    if inplace:
        return input.celu_(alpha)
    return _call(be, "celu", input, alpha)


def hardsigmoid(be: NNBackend, input: Any, inplace: bool = False) -> Any:
    """min(max(input + 3, 0), 6) / 6.

    Args:
        be: the backend.
        input: a floating-point tensor.
        inplace: write the result into input (torch's in-place op: input must not be a
            leaf that requires grad).

    Returns:
        A tensor of input's shape and dtype.

    Raises:
        NotImplementedError: input is integral or bool (torch's message).
        RuntimeError: inplace=True on a leaf that requires grad (torch's message).
    """
    if inplace:
        return input.hardsigmoid_()
    return _call(be, "hardsigmoid", input)


def hardswish(be: NNBackend, input: Any, inplace: bool = False) -> Any:
    """input * min(max(input + 3, 0), 6) / 6.

    Args:
        be: the backend.
        input: a floating-point tensor.
        inplace: write the result into input (torch's in-place op: input must not be a
            leaf that requires grad).

    Returns:
        A tensor of input's shape and dtype.

    Raises:
        NotImplementedError: input is integral or bool (torch's message).
        RuntimeError: inplace=True on a leaf that requires grad (torch's message).
    """
    if inplace:
        return input.hardswish_()
    return _call(be, "hardswish", input)


def mish(be: NNBackend, input: Any, inplace: bool = False) -> Any:
    """input * tanh(softplus(input)).

    Args:
        be: the backend.
        input: a floating-point tensor.
        inplace: write the result into input (torch's in-place op: input must not be a
            leaf that requires grad).

    Returns:
        A tensor of input's shape and dtype.

    Raises:
        NotImplementedError: input is integral or bool (torch's message).
        RuntimeError: inplace=True on a leaf that requires grad (torch's message).
    """
    if inplace:
        return input.mish_()
    return _call(be, "mish", input)


def logsigmoid(be: NNBackend, input: Any) -> Any:
    """log(sigmoid(input)), computed as min(input, 0) - log1p(exp(-|input|)).

    Args:
        be: the backend.
        input: a floating-point tensor.

    Returns:
        A tensor of input's shape and dtype.

    Raises:
        NotImplementedError: input is integral or bool (torch's message).
    """
    return _call(be, "log_sigmoid", input)


def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to "
                  "include dim=X as an argument.", UserWarning, stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(be: NNBackend, input: Any, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Any:
    """exp(input) / sum(exp(input), dim); without dim, torch's deprecated implicit choice."""
    if dim is None:
        dim = _implicit_dim("softmax", len(be.shape(input)), _stacklevel)
    return _call(be, "softmax", input, dim, dtype)


def softmin(be: NNBackend, input: Any, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Any:
    """softmax(-input, dim), as torch composes it (SoftmaxBackward0 over NegBackward0)."""
    if dim is None:
        dim = _implicit_dim("softmin", len(be.shape(input)), _stacklevel)
    return _call(be, "softmax", _call(be, "neg", input), dim, dtype)


def softsign(be: NNBackend, input: Any) -> Any:
    """input / (|input| + 1), as torch composes it (DivBackward0)."""
    return _call(be, "div", input, _call(be, "add", _call(be, "abs", input), 1))


def tanhshrink(be: NNBackend, input: Any) -> Any:
    """input - tanh(input), as torch composes it (SubBackward0)."""
    return _call(be, "sub", input, _call(be, "tanh", input))


def log_softmax(be: NNBackend, input: Any, dim: int | None = None, _stacklevel: int = 3,
                dtype: Any = None) -> Any:
    """log(softmax(input, dim)), computed stably."""
    if dim is None:
        dim = _implicit_dim("log_softmax", len(be.shape(input)), _stacklevel)
    return _call(be, "log_softmax", input, dim, dtype)


# --- layers --------------------------------------------------------------------------------------

def linear(be: NNBackend, input: Any, weight: Any, bias: Any = None) -> Any:
    """input @ weight.T + bias, composed as torch's at::linear composes it (so grad_fn and
    rounding are torch's): with a bias, one addmm for a 2-D input, and for a contiguous input
    when the bias is 1-D or holds out_features elements (flattened to 2-D, the result viewed
    back; torch 2.13's choice, read off its graphs: a (1, 1) bias is added, a (3, 1, 1) one
    goes to addmm and fails there); otherwise matmul, then add. Through a session (the
    backend's `remote_metadata`: the client knows shapes, not always layouts), a 2-D input with
    a bias is one addmm too, an input whose layout the client knows (described by the server,
    made from data there, or inferred: `meta_layout`) takes torch's path, and any other input
    matmul then add:
    the same values without a round trip per layer to read the input's layout (grad_fn
    AddBackward0 where torch's is ViewBackward0)."""
    return linear_with_layout(be, input, weight, bias, None)


def linear_with_layout(be: NNBackend, input: Any, weight: Any, bias: Any,
                       contiguous: bool | None) -> Any:
    """`linear`, told whether the input is contiguous when the caller knows it (a layer that
    made the input itself: nn_rnn's stacked layer outputs), None to ask the backend."""
    if bias is not None:
        shape = be.shape(input)
        if len(shape) == 2:
            return _call(be, "addmm", bias, input, _call(be, "t", weight))
        if contiguous is None:
            contiguous = (be.known_contiguous(input) if be.remote_metadata
                          else be.is_contiguous(input))
        bias_shape = be.shape(bias)
        fused = len(bias_shape) == 1 or math.prod(bias_shape) == be.shape(weight)[0]
        if shape and fused and contiguous:
            flat = _call(be, "reshape", input, (math.prod(shape[:-1]), shape[-1]))
            out = _call(be, "addmm", bias, flat, _call(be, "t", weight))
            return _call(be, "reshape", out, (*shape[:-1], be.shape(weight)[0]))
    out = _call(be, "matmul", input, _call(be, "t", weight))
    return out if bias is None else out + bias


def bilinear(be: NNBackend, input1: Any, input2: Any, weight: Any, bias: Any = None) -> Any:
    """out[..., o] = sum_ij input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o]."""
    s1, s2, sw = be.shape(input1), be.shape(input2), be.shape(weight)
    if s1[:-1] != s2[:-1]:
        raise be.runtime_error(
            "bilinear(): input batch dimensions do not match: got "
            f"{list(s1[:-1])} and {list(s2[:-1])}")
    if len(sw) != 3 or (s1 and sw[1] != s1[-1]) or (s2 and sw[2] != s2[-1]):
        raise be.runtime_error(
            f"bilinear(): weight of shape {list(sw)} does not fit input1 {list(s1)} and input2 "
            f"{list(s2)}")
    lead = tuple(s1[:-1])
    x1 = _call(be, "reshape", input1, (-1, s1[-1]))
    x2 = _call(be, "reshape", input2, (-1, s2[-1]))
    out = _call(be, "reshape", _trilinear(be, x1, weight, x2), (*lead, sw[0]))
    return out if bias is None else out + bias  # torch adds the bias after the reshape


def _trilinear(be: NNBackend, x1: Any, weight: Any, x2: Any) -> Any:
    """out[b, o] = sum_j (sum_i x1[b, i] * weight[o, i, j]) * x2[b, j], in torch's _trilinear
    order: per output feature o a bmm of (1, b, i) @ (1, i, j), then per row a bmm of
    (1, j) @ (j, 1), added to zeros; so where the backend's bmm is torch's, the bits are too."""
    (b, i), (o, _, j) = be.shape(x1), be.shape(weight)
    if 0 in (b, i, j, o):
        return _call(be, "einsum", (x1, weight, x2), equation="bi,oij,bj->bo")
    left = _call(be, "reshape", x1, (1, b, i))
    rows = [_call(be, "bmm", left, _call(be, "reshape", _call(be, "select", weight, 0, k),
                                         (1, i, j)))
            for k in range(o)]
    firsts = _call(be, "reshape", _call(be, "stack", rows), (o * b, 1, j))
    x2s = _call(be, "reshape", _call(be, "expand", _call(be, "unsqueeze", x2, 0), (o, b, j)),
                (o * b, j, 1))
    sums = _call(be, "t", _call(be, "reshape", _call(be, "bmm", firsts, x2s), (o, b)))
    return be.call("zeros", (), {"size": (b, o), "dtype": be.dtype_of(x1)}) + sums


def dropout(be: NNBackend, input: Any, p: float = 0.5, training: bool = True,
            inplace: bool = False) -> Any:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (training only)."""
    if p < 0.0 or p > 1.0:
        raise be.value_error(f"dropout probability has to be between 0 and 1, but got {p}")
    # torch's CPU dropout (not the fused native_dropout, which is for accelerators): the mask
    # is bernoulli_(1 - p) on an empty_like, so it draws torch's numbers
    return spellings.dropout(be, input, p, training, inplace)


def one_hot(be: NNBackend, tensor: Any, num_classes: int = -1) -> Any:
    """int64 one-hot rows: out[..., c] = 1 where tensor[...] == c (torch's checks and texts;
    the class range is read from the values, as torch's CPU kernel reads it: through a session
    one round trip). Composed as (tensor.unsqueeze(-1) == arange(num_classes)).long(): torch's
    values, no graph (torch's result does not require grad either)."""
    if be.dtype_name(tensor) != "int64":
        raise be.runtime_error("one_hot is only applicable to index tensor of type LongTensor.")
    shape = tuple(be.shape(tensor))
    if math.prod(shape) == 0:
        if num_classes <= 0:
            raise be.runtime_error("Can not infer total number of classes from empty tensor.")
        return be.torch.zeros(*shape, num_classes, dtype=be.torch.int64)
    if int(tensor.min().item()) < 0:
        raise be.runtime_error("Class values must be non-negative.")
    if num_classes == -1:
        num_classes = int(tensor.max().item()) + 1
    elif num_classes <= int(tensor.max().item()):
        raise be.runtime_error("Class values must be smaller than num_classes.")
    classes = be.torch.arange(num_classes)
    return (tensor.unsqueeze(-1) == classes).long()


def embedding(be: NNBackend, input: Any, weight: Any, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Any:
    """Rows of `weight` picked by the indices `input` (shape input.shape + (embedding_dim,)): one
    embedding op (grad_fn EmbeddingBackward0); the padding_idx row gets no gradient; with
    scale_grad_by_freq each row's gradient is divided by how often the indices picked it."""
    if max_norm is not None or sparse:
        raise be.runtime_error("embedding(): max_norm and sparse are not supported by gradserve")
    if padding_idx is not None:
        rows = be.shape(weight)[0]
        if not -rows <= padding_idx < rows:
            raise be.assertion_error("Padding_idx must be within num_embeddings")
        padding_idx %= rows
    padding = -1 if padding_idx is None else padding_idx
    if scale_grad_by_freq:
        return _call(be, "embedding", weight, input, padding, True)
    return _call(be, "embedding", weight, input, padding)


def layer_norm(be: NNBackend, input: Any, normalized_shape: Sequence[int], weight: Any = None,
               bias: Any = None, eps: float = 1e-5) -> Any:
    """(input - mean) / sqrt(var + eps) over the last len(normalized_shape) dims, then
    * weight + bias (the biased variance, as torch): one `layer_norm` op (grad_fn
    NativeLayerNormBackward0), rounded as torch's CPU kernel rounds it."""
    normalized = [int(n) for n in ([normalized_shape] if isinstance(normalized_shape, int)
                                   else normalized_shape)]
    return _call(be, "layer_norm", input, weight, bias, normalized, float(eps))


# --- losses --------------------------------------------------------------------------------------

def _size(shape: Sequence[int]) -> str:
    return f"torch.Size([{', '.join(map(str, shape))}])"


def _warn_size(be: NNBackend, input: Any, target: Any) -> None:
    ts, xs = tuple(be.shape(target)), tuple(be.shape(input))
    if ts != xs:
        warnings.warn(
            f"Using a target size ({_size(ts)}) that is different to the input size "
            f"({_size(xs)}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)


def mse_loss(be: NNBackend, input: Any, target: Any, size_average: Any = None,
             reduce: Any = None, reduction: str = "mean", weight: Any = None) -> Any:
    """Mean (sum, none) squared error; target broadcasts to input with torch's warning."""
    reduction = loss_reduction(size_average, reduce, reduction)
    if weight is not None:
        raise be.runtime_error("mse_loss(): weight is not supported")
    _warn_size(be, input, target)
    return _call(be, "mse_loss", input, target, reduction)


def l1_loss(be: NNBackend, input: Any, target: Any, size_average: Any = None,
            reduce: Any = None, reduction: str = "mean", weight: Any = None) -> Any:
    """Mean (sum, none) absolute error; target broadcasts to input with torch's warning.

    torch composes it (`(input - target).abs()`, then mean or sum, after broadcast_tensors), so
    the graph is torch's: MeanBackward0 <- AbsBackward0 <- SubBackward0.
    """
    reduction = loss_reduction(size_average, reduce, reduction)
    if weight is not None:
        raise be.runtime_error("l1_loss(): weight is not supported")
    _warn_size(be, input, target)
    check_reduction(be, reduction)
    return _l1(be, input, target, reduction)


def _l1(be: NNBackend, input: Any, target: Any, reduction: str) -> Any:
    input, target = _broadcast_tensors(be, input, target)
    return _reduce(be, _call(be, "abs", input - target), reduction)


def _broadcast_tensors(be: NNBackend, a: Any, b: Any) -> tuple[Any, Any]:
    """torch.broadcast_tensors of two tensors: each whose shape is not the broadcast shape is
    expanded to it (ExpandBackward0); shapes that do not broadcast fail in `sub`, with torch's
    message."""
    sa, sb = tuple(be.shape(a)), tuple(be.shape(b))
    if sa == sb:
        return a, b
    try:
        shape = broadcast_shapes(sa, sb)
    except ValueError:
        return a, b
    return tuple(t if s == shape else _call(be, "expand", t, size=shape)  # type: ignore[return-value]
                 for t, s in ((a, sa), (b, sb)))


def smooth_l1_loss(be: NNBackend, input: Any, target: Any, size_average: Any = None,
                   reduce: Any = None, reduction: str = "mean", beta: float = 1.0) -> Any:
    """0.5 * d**2 / beta where |d| < beta, else |d| - 0.5 * beta (d = input - target)."""
    reduction = loss_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise be.runtime_error("smooth_l1_loss does not support negative values for beta.")
    _warn_size(be, input, target)
    check_reduction(be, reduction)
    if beta == 0.0:  # torch's l1_loss, composed (MeanBackward0)
        return _l1(be, input, target, reduction)
    input, target = _broadcast_tensors(be, input, target)
    return _call(be, "smooth_l1_loss", input, target, reduction, float(beta))


def huber_loss(be: NNBackend, input: Any, target: Any, reduction: str = "mean",
               delta: float = 1.0, weight: Any = None) -> Any:
    """0.5 * d**2 where |d| < delta, else delta * (|d| - 0.5 * delta) (d = input - target)."""
    if weight is not None:
        raise be.runtime_error("huber_loss(): weight is not supported")
    _warn_size(be, input, target)
    reduction = reduction_enum(reduction)
    check_reduction(be, reduction)
    if delta <= 0:
        raise be.runtime_error("huber_loss does not support non-positive values for delta.")
    input, target = _broadcast_tensors(be, input, target)
    return _call(be, "huber_loss", input, target, reduction, float(delta))


def binary_cross_entropy(be: NNBackend, input: Any, target: Any, weight: Any = None,
                         size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> Any:
    """Binary cross-entropy of probabilities, each log clamped to >= -100 as in torch."""
    reduction = loss_reduction(size_average, reduce, reduction)
    return _call(be, "binary_cross_entropy", input, target, weight, reduction)


def binary_cross_entropy_with_logits(be: NNBackend, input: Any, target: Any,
                                     weight: Any = None, size_average: Any = None,
                                     reduce: Any = None, reduction: str = "mean",
                                     pos_weight: Any = None) -> Any:
    """Binary cross-entropy of sigmoid(input), computed stably from the logits."""
    reduction = loss_reduction(size_average, reduce, reduction)
    return _call(be, "binary_cross_entropy_with_logits", input, target, weight, pos_weight,
                 reduction)


def nll_loss(be: NNBackend, input: Any, target: Any, weight: Any = None,
             size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
             reduction: str = "mean") -> Any:
    """Negative log-likelihood of class indices (class dim 1), weighted, ignoring ignore_index."""
    reduction = loss_reduction(size_average, reduce, reduction)
    return _call(be, "nll_loss", input, target, weight, ignore_index, reduction)


def per_class(label_smoothing: float, n_classes: int) -> float:
    """label_smoothing / n_classes as torch's C++ divides doubles (inf for no classes)."""
    return label_smoothing / n_classes if n_classes else math.inf


def cross_entropy(be: NNBackend, input: Any, target: Any, weight: Any = None,
                  size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Any:
    """Cross-entropy of logits: class indices (nll_loss of log_softmax) or class probabilities.

    Raises:
        ValueError: an unknown reduction; RuntimeError: torch's shape and target errors.
    """
    reduction = loss_reduction(size_average, reduce, reduction)
    check_reduction(be, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise be.runtime_error(
            f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    xs = tuple(be.shape(input))
    class_dim = 0 if len(xs) == 1 else 1
    logp = _call(be, "log_softmax", input, class_dim)
    if be.dtype_of(target).is_floating_point and tuple(be.shape(target)) == xs:
        return _cross_entropy_probs(be, logp, xs, target, weight, reduction, label_smoothing,
                                    class_dim)
    nll = _call(be, "nll_loss", logp, target, weight, ignore_index, reduction)
    if label_smoothing > 0.0:
        return _label_smoothing(be, logp, xs, target, weight, nll, ignore_index, reduction,
                                label_smoothing, class_dim)
    return nll


def _label_smoothing(be: NNBackend, logp: Any, xs: tuple[int, ...], target: Any, weight: Any,
                     nll: Any, ignore_index: int, reduction: str, label_smoothing: float,
                     class_dim: int) -> Any:
    # torch's cross_entropy_loss_label_smoothing, op for op (so grad_fns match).
    n_classes = xs[class_dim]
    ignore_mask = target == ignore_index
    if weight is not None:
        view = [1] * len(xs)
        view[class_dim] = be.shape(weight)[0]
        smooth = -_call(be, "sum", logp * _call(be, "reshape", weight, tuple(view)), class_dim)
    else:
        smooth = -_call(be, "sum", logp, class_dim)
    smooth.masked_fill_(ignore_mask, 0.0)
    if reduction == "mean":
        if weight is not None:
            kept = _call(be, "reshape", target[~ignore_mask], (-1,))  # masked_select().flatten()
            ret = _call(be, "sum", smooth) / _call(be, "sum", _call(be, "gather", weight, kept, 0))
        else:
            ret = _call(be, "sum", smooth) / _call(be, "sum", ~ignore_mask)
    elif reduction == "sum":
        ret = _call(be, "sum", smooth)
    else:
        ret = smooth
    return (be.scalar_mul(nll, 1 - label_smoothing)
            + be.scalar_mul(ret, per_class(label_smoothing, n_classes)))


def _cross_entropy_probs(be: NNBackend, logp: Any, xs: tuple[int, ...], target: Any,
                         weight: Any, reduction: str, label_smoothing: float,
                         class_dim: int) -> Any:
    # torch's cross_entropy_loss_prob_target, op for op (so grad_fns match).
    n_classes = xs[class_dim]
    if label_smoothing > 0.0:
        target = be.scalar_add(be.scalar_mul(target, 1 - label_smoothing),
                               per_class(label_smoothing, n_classes))
    prod = logp * target
    if weight is not None:
        ws = tuple(be.shape(weight))
        if len(ws) != 1 or ws[0] != n_classes:
            raise be.runtime_error(
                f"weight tensor should be defined either for all {n_classes} classes or no "
                f"classes but got weight tensor of shape: [{', '.join(map(str, ws))}]")
        view = [1] * len(xs)
        view[class_dim] = n_classes
        prod = prod * _call(be, "reshape", weight, tuple(view))
    if reduction == "none":
        return -_call(be, "sum", prod, class_dim)
    if reduction == "sum":
        return -_call(be, "sum", prod)
    if math.prod(xs) == 0:  # torch fills the empty sum with NaN rather than divide by 0 // 0
        return -_call(be, "sum", prod).fill_(float("nan"))
    return be.scalar_div(-_call(be, "sum", prod), math.prod(xs) // n_classes)


def glu(be: NNBackend, input: Any, dim: int = -1) -> Any:
    """The gated linear unit a * sigmoid(b), a and b the halves of input along dim: one glu op
    (grad_fn GluBackward0)."""
    return _call(be, "glu", input, dim)


FUNCTIONS = (relu, hardtanh, hardtanh_, relu6, sigmoid, tanh, leaky_relu, leaky_relu_, prelu,
             elu, elu_, gelu, silu, softplus, logsigmoid, mish, selu, selu_, celu, celu_,
             hardsigmoid, hardswish, softmax, softmin, softsign, tanhshrink,
             log_softmax, linear, bilinear, dropout, one_hot, embedding, layer_norm, mse_loss,
             l1_loss, smooth_l1_loss, huber_loss, binary_cross_entropy,
             binary_cross_entropy_with_logits, nll_loss, cross_entropy, glu)
"""What `nn.functional` holds (each bound to a backend by `gradserve.surface.nn.build`)."""
