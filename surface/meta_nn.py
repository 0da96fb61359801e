"""`gradserve.surface.meta`'s rules for softmax, the losses, and creation (`zeros`, `arange`,
`*_like`, `bernoulli`, ...)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .creation import arange_length
from .meta_base import (
    _DEFAULT_FLOAT,
    _FLOAT,
    _INT64,
    _REDUCTIONS,
    _SCALAR_RANK,
    DTYPE_NAMES,
    RULES,
    Meta,
    Rule,
    _bool,
    _choice,
    _dtype,
    _float,
    _Inexact,
    _int,
    _ints,
    _known,
    _meta,
    _one,
    _opt_int,
    _plain_layout,
    _rule,
    _scalar,
    _tensor,
    _walk,
    _wrap,
)

# --- softmax, losses -----------------------------------------------------------------------------

_SOFTMAX_ATTRS = frozenset(("dim", "dtype"))


@_rule("softmax", "log_softmax")
def _softmax(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    shape, rank, rg = _one(inputs, attrs, _SOFTMAX_ATTRS)
    if attrs.get("dim") is None:
        raise _Inexact  # required
    _wrap(_int(attrs["dim"]), len(shape))
    out = _dtype(attrs.get("dtype"))
    out = rank if out is None else out
    if out < _FLOAT:
        raise _Inexact  # "softmax_lastdim_kernel_impl" not implemented for 'Long'
    return _meta(shape, out, grad and rg)


def _reduction(attrs: Mapping[str, Any], names: frozenset[str]) -> str:
    _known(attrs, names)
    return _choice(attrs.get("reduction", "mean"), _REDUCTIONS)


_LOSS_ATTRS = frozenset(("reduction",))


@_rule("mse_loss", "l1_loss")
def _pointwise_loss(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    return _pointwise_loss_with(inputs, attrs, grad, _LOSS_ATTRS)


def _pointwise_loss_with(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool,
                         names: frozenset[str]) -> list[Meta]:
    """A loss of input and target with attributes `names` (one value, or the broadcast shape
    with reduction "none")."""
    if len(inputs) != 2:
        raise _Inexact
    reduction = _reduction(attrs, names)
    _tensor(inputs[0])
    _tensor(inputs[1])
    shape, rank, rg, _ = _walk(inputs)
    assert shape is not None
    out = rank if rank >= _FLOAT else _DEFAULT_FLOAT
    return _meta(shape if reduction == "none" else (), out, grad and rg)


@_rule("smooth_l1_loss")
def _smooth_l1_loss(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if _float(attrs.get("beta", 1.0)) < 0:
        raise _Inexact  # the engine's error
    return _pointwise_loss_with(inputs, attrs, grad, frozenset(("reduction", "beta")))


@_rule("huber_loss")
def _huber_loss(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if _float(attrs.get("delta", 1.0)) <= 0:
        raise _Inexact  # the engine's error
    return _pointwise_loss_with(inputs, attrs, grad, frozenset(("reduction", "delta")))


def _binary_cross_entropy(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool,
                          n_inputs: int) -> list[Meta]:
    """binary_cross_entropy (input, target, weight?) and with_logits (..., pos_weight?): input
    and target of one shape; the weights take no gradient (the engine refuses them requiring
    one in grad mode) and broadcast into an unreduced loss."""
    if len(inputs) != n_inputs:
        raise _Inexact
    reduction = _reduction(attrs, _LOSS_ATTRS)
    x, _, gx = _tensor(inputs[0])
    t, _, gt = _tensor(inputs[1])
    if x != t:
        raise _Inexact  # "Using a target size ... that is different to the input size"
    for w in inputs[2:]:
        if w is not None and _tensor(w)[2] and grad:
            raise _Inexact  # "not differentiable with respect to argument 'weight'"
    shape, rank, _, _ = _walk(inputs)
    assert shape is not None
    out = rank if rank >= _FLOAT else _DEFAULT_FLOAT
    return _meta(shape if reduction == "none" else (), out, grad and (gx or gt))


RULES["binary_cross_entropy"] = (
    lambda inputs, attrs, grad: _binary_cross_entropy(inputs, attrs, grad, 3))
RULES["binary_cross_entropy_with_logits"] = (
    lambda inputs, attrs, grad: _binary_cross_entropy(inputs, attrs, grad, 4))


_LAYER_NORM_ATTRS = frozenset(("normalized_shape", "eps"))


@_rule("layer_norm")
def _layer_norm(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    """(input, weight?, bias?): the input's shape and dtype when the normalized shape is its
    trailing dims and the parameters have it and the input's dtype."""
    if len(inputs) != 3 or "normalized_shape" not in attrs:
        raise _Inexact
    _known(attrs, _LAYER_NORM_ATTRS)
    normalized = _ints(attrs["normalized_shape"])
    _float(attrs.get("eps", 1e-5))
    shape, rank, rg = _tensor(inputs[0])
    k = len(normalized)
    if not k or len(shape) < k or shape[len(shape) - k:] != normalized or rank < _FLOAT:
        raise _Inexact  # torch's shape messages, "LayerNormKernelImpl" not implemented
    for p in inputs[1:]:
        if p is not None:
            ps, pr, prg = _tensor(p)
            if ps != normalized or pr != rank:
                raise _Inexact  # "Expected weight to be of same shape", "mixed dtype (CPU)"
            rg = rg or prg
    return _meta(shape, rank, grad and rg)


_GROUP_NORM_ATTRS = frozenset(("num_groups", "eps"))


@_rule("group_norm")
def _group_norm(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    """(input, weight?, bias?): the input's shape and dtype when its channels divide into the
    groups and the parameters are (C,) of its dtype."""
    if len(inputs) != 3 or "num_groups" not in attrs:
        raise _Inexact
    _known(attrs, _GROUP_NORM_ATTRS)
    groups = _int(attrs["num_groups"])
    _float(attrs.get("eps", 1e-5))
    shape, rank, rg = _tensor(inputs[0])
    if len(shape) < 2 or groups <= 0 or shape[1] % groups or rank < _FLOAT:
        raise _Inexact  # torch's size messages, "GroupNormKernelImpl" not implemented
    for p in inputs[1:]:
        if p is not None:
            ps, pr, prg = _tensor(p)
            if ps != (shape[1],) or pr != rank:
                raise _Inexact  # "Expected weight to be a vector of size", "mixed dtype (CPU)"
            rg = rg or prg
    return _meta(shape, rank, grad and rg)


_UPSAMPLE_ATTRS = frozenset(("output_size", "scale_h", "scale_w"))


@_rule("upsample_nearest")
def _upsample_nearest(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool
                      ) -> list[Meta]:
    """(input,): (N, C, *output_size) of the input's dtype, for a 3-D or 4-D input and positive
    sizes."""
    if len(inputs) != 1 or "output_size" not in attrs:
        raise _Inexact
    _known(attrs, _UPSAMPLE_ATTRS)
    out = _ints(attrs["output_size"])
    for key in ("scale_h", "scale_w"):
        if attrs.get(key) is not None:
            _float(attrs[key])
    shape, rank, rg = _tensor(inputs[0])
    if len(shape) not in (3, 4) or len(out) != len(shape) - 2 or min(shape[2:]) <= 0 or (
            min(out) <= 0):
        raise _Inexact  # torch's size messages
    return _meta((*shape[:2], *out), rank, grad and rg)


_PAD_ATTRS = frozenset(("pad", "value"))


@_rule("constant_pad_nd")
def _constant_pad_nd(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool
                     ) -> list[Meta]:
    """(input,): each padded dim grown by its two pads, when F.pad's checks pass."""
    if len(inputs) != 1 or "pad" not in attrs:
        raise _Inexact
    _known(attrs, _PAD_ATTRS)
    pads = _ints(attrs["pad"])
    _scalar(attrs.get("value", 0))
    shape, rank, rg = _tensor(inputs[0])
    out = list(shape)
    if len(pads) % 2 or len(pads) // 2 > len(shape):
        raise _Inexact  # torch's pad-length messages
    for i in range(len(pads) // 2):
        d = len(shape) - 1 - i
        left, right = pads[2 * i], pads[2 * i + 1]
        if shape[d] + min(left, 0) + min(right, 0) < 0:
            raise _Inexact  # "narrow(): length must be non-negative."
        out[d] += left + right
    return _meta(tuple(out), rank, grad and rg)


def _batch_norm_input(inputs: Sequence[Any], training: bool, stats_grad: bool = False
                      ) -> tuple[tuple[int, ...], int, bool]:
    """(input, weight?, bias?, running_mean?, running_var?) as batch_norm's checks accept them:
    the input's (shape, rank, requires_grad or a parameter's); `_Inexact` otherwise (and for
    running statistics that require grad unless `stats_grad`)."""
    if len(inputs) != 5:
        raise _Inexact
    shape, rank, rg = _tensor(inputs[0])
    if len(shape) < 2 or rank < _FLOAT or (inputs[3] is None) != (inputs[4] is None) or (
            not training and inputs[3] is None):
        raise _Inexact  # torch's IndexError, ValueError, "must be defined in evaluation mode"
    for i, p in enumerate(inputs[1:]):
        if p is not None:
            ps, pr, prg = _tensor(p)
            if len(ps) != 1 or ps[0] != shape[1] or pr != rank or (
                    i >= 2 and prg and not stats_grad):
                raise _Inexact  # "should contain C elements", "mixed dtype (CPU)"
            rg = rg or (i < 2 and prg)
    return shape, rank, rg


_BATCH_NORM_ATTRS = frozenset(("training", "eps"))


@_rule("batch_norm")
def _batch_norm(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    """The input's shape and dtype."""
    _known(attrs, _BATCH_NORM_ATTRS)
    training = _bool(attrs.get("training", False))
    _float(attrs.get("eps", 1e-5))
    shape, rank, rg = _batch_norm_input(inputs, training)
    return _meta(shape, rank, grad and rg)


_BATCH_NORM_RUNNING_ATTRS = frozenset(("momentum", "var"))


@_rule("batch_norm_running")
def _batch_norm_running(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool
                        ) -> list[Meta]:
    """A running statistic: (C,) of the input's dtype, never requiring grad."""
    _known(attrs, _BATCH_NORM_RUNNING_ATTRS)
    _float(attrs.get("momentum", 0.1))
    _bool(attrs.get("var", False))
    shape, rank, _ = _batch_norm_input(inputs, True, stats_grad=True)
    if inputs[3] is None:
        raise _Inexact
    return _meta((shape[1],), rank, False)


_NLL_ATTRS = frozenset(("ignore_index", "reduction"))


def _nll(x: tuple[int, ...], xr: int, t: tuple[int, ...], tr: int, w: Any, grad: bool,
         reduction: str) -> tuple[int, ...]:
    """nll_loss's checks on (input, target, weight) as the engine makes them; the result's
    shape."""
    if xr < _FLOAT or not x or tr != _INT64:
        raise _Inexact
    if len(x) <= 2:
        if len(t) > 1 or (len(x) == 2 and t != (x[0],)) or (len(x) == 1 and t not in ((), (1,))):
            raise _Inexact
    elif not t or t[0] != x[0] or t[1:] != x[2:]:
        raise _Inexact
    if w is not None:
        ws, _, wg = _tensor(w)
        if wg and grad:
            raise _Inexact  # "not differentiable with respect to argument 'weight'"
        if ws != (x[1] if len(x) >= 2 else x[0],):
            raise _Inexact
    return t if reduction == "none" else ()


@_rule("nll_loss")
def _nll_loss(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3:
        raise _Inexact
    reduction = _reduction(attrs, _NLL_ATTRS)
    if "ignore_index" in attrs:
        _int(attrs["ignore_index"])
    x, xr, gx = _tensor(inputs[0])
    t, tr, _ = _tensor(inputs[1])
    return _meta(_nll(x, xr, t, tr, inputs[2], grad, reduction), xr, grad and gx)


@_rule("cross_entropy")
def _cross_entropy(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 3:
        raise _Inexact
    reduction = _reduction(attrs, _NLL_ATTRS | {"label_smoothing"})
    if "ignore_index" in attrs:
        _int(attrs["ignore_index"])
    if not 0.0 <= _float(attrs.get("label_smoothing", 0.0)) <= 1.0:
        raise _Inexact
    x, xr, gx = _tensor(inputs[0])
    t, tr, gt = _tensor(inputs[1])
    if xr < _FLOAT or not x:
        raise _Inexact
    if tr >= _FLOAT and t == x:  # class probabilities
        c = 0 if len(x) == 1 else 1
        if inputs[2] is not None and _tensor(inputs[2])[0] != (x[c],):
            raise _Inexact
        shape = x[:c] + x[c + 1:] if reduction == "none" else ()
        return _meta(shape, xr, grad and (gx or gt))
    return _meta(_nll(x, xr, t, tr, inputs[2], grad, reduction), xr, grad and gx)


# --- results shaped like the input, without gradient ---------------------------------------------

def _like(floating_only: bool, extra: tuple[str, ...] = ()) -> Rule:
    known = frozenset(("dtype", "memory_format", *extra))

    def rule(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
        shape, rank, _ = _one(inputs, attrs, known)
        _plain_layout(attrs.get("memory_format"))
        for k in extra:
            _scalar(attrs.get(k))  # required
        out = _dtype(attrs.get("dtype"))
        out = rank if out is None else out
        if floating_only and out < _FLOAT:
            raise _Inexact
        return [Meta(shape, DTYPE_NAMES[out], False)]

    return rule


RULES["zeros_like"] = _like(False)
RULES["ones_like"] = _like(False)
RULES["full_like"] = _like(False, ("fill_value",))
RULES["rand_like"] = _like(True)
RULES["randn_like"] = _like(True)


@_rule("bernoulli")
def _bernoulli(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if len(inputs) != 2 or attrs:
        raise _Inexact
    shape, rank, rg = _tensor(inputs[0])
    p = inputs[1]
    if p is None:
        if rank < _FLOAT:
            raise _Inexact
    elif type(p) in (int, float):
        if not 0 <= p <= 1:
            raise _Inexact  # "bernoulli_ expects p to be in [0, 1]"
    else:
        _, p_rank, p_rg = _tensor(p)
        if p_rank < _FLOAT:
            raise _Inexact
        rg = rg or p_rg
    return _meta(shape, rank, grad and rg)


# --- creation: the shape and dtype from the attributes -------------------------------------------

def _size(attrs: Mapping[str, Any]) -> tuple[int, ...]:
    size = attrs.get("size")
    if size is None:
        raise _Inexact  # required
    out = _ints(size)
    if any(d < 0 for d in out):
        raise _Inexact  # "Trying to create tensor with negative dimension"
    return out


def _sized(floating_only: bool, extra: tuple[str, ...] = ()) -> Rule:
    """zeros/ones/rand/randn(size, dtype): float32 unless dtype (the server's default)."""
    known = frozenset(("size", "dtype", *extra))

    def rule(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
        if inputs:
            raise _Inexact
        _known(attrs, known)
        shape = _size(attrs)
        out = _dtype(attrs.get("dtype"))
        out = _DEFAULT_FLOAT if out is None else out
        if floating_only and out < _FLOAT:
            raise _Inexact  # "check_uniform_bounds" not implemented for 'Long'
        return [Meta(shape, DTYPE_NAMES[out], False)]

    return rule


RULES["zeros"] = _sized(False)
RULES["ones"] = _sized(False)
RULES["rand"] = _sized(True)
RULES["randn"] = _sized(True)


@_rule("full")
def _full(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if inputs:
        raise _Inexact
    _known(attrs, frozenset(("size", "fill_value", "dtype")))
    shape = _size(attrs)
    fill = _scalar(attrs.get("fill_value"))  # required
    out = _dtype(attrs.get("dtype"))
    out = _SCALAR_RANK[type(fill)] if out is None else out
    return [Meta(shape, DTYPE_NAMES[out], False)]


@_rule("eye")
def _eye(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if inputs or attrs.get("n") is None:
        raise _Inexact
    _known(attrs, frozenset(("n", "m", "dtype")))
    n = _int(attrs["n"])
    m = _opt_int(attrs.get("m"))
    m = n if m is None else m
    if n < 0 or m < 0:
        raise _Inexact
    out = _dtype(attrs.get("dtype"))
    return [Meta((n, m), DTYPE_NAMES[_DEFAULT_FLOAT if out is None else out], False)]


@_rule("linspace")
def _linspace(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if inputs or attrs.get("steps") is None:
        raise _Inexact
    _known(attrs, frozenset(("start", "end", "steps", "dtype")))
    _scalar(attrs.get("start"))
    _scalar(attrs.get("end"))
    steps = _int(attrs["steps"])
    if steps < 0:
        raise _Inexact  # "number of steps must be non-negative"
    out = _dtype(attrs.get("dtype"))
    return [Meta((steps,), DTYPE_NAMES[_DEFAULT_FLOAT if out is None else out], False)]


@_rule("arange")
def _arange(inputs: Sequence[Any], attrs: Mapping[str, Any], grad: bool) -> list[Meta]:
    if inputs:
        raise _Inexact
    _known(attrs, frozenset(("start", "end", "step", "dtype")))
    start = _scalar(attrs.get("start"))  # required
    end = attrs.get("end")
    end = None if end is None else _scalar(end)
    step = _scalar(attrs.get("step", 1))
    values = (start, end, step)
    if end is None:
        start, end = 0, start
    out = _dtype(attrs.get("dtype"))
    if out is None:
        out = _DEFAULT_FLOAT if any(type(v) is float for v in values) else _INT64
    n, problem, _ = arange_length(start, end, step, DTYPE_NAMES[out])
    if problem:
        raise _Inexact  # the engine raises torch's error
    return [Meta((n,), DTYPE_NAMES[out], False)]
