"""Neural-network ops: softmax, log_softmax and the losses, with torch's node names and messages.

Losses take `reduction` in {'mean', 'sum', 'none'} (checked by the dtype rule, before anything
runs, with torch's ValueError). `nll_loss`'s gradient is its own op, `nll_loss_backward`, as in
torch: the two are adjoint, so each one's VJP is the other and every order of derivative works.
`cross_entropy` is a composition (`nn.functional.cross_entropy`, in surface/nn_functional.py)
of these ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import grad_mode
from gradserve.surface.messages import TYPE_WORDS

from . import cascade, dtypes, errors, limits, vecmath
from .dtypes import DType
from .ops_elementwise import _floating_only, broadcast_shape
from .ops_norm import _lane_sum as _norm_lane_sum
from .ops_reduce import float_mean, float_sum, norm_dims
from .registry import AttrSpec, defop, names_backward, numel_of, promote_args, temporaries

REDUCTIONS = ("mean", "sum", "none")
_REDUCTION = AttrSpec("reduction", "str", "mean")


def check_reduction(reduction: str) -> None:
    """torch's legacy_get_enum check, with its message."""
    if reduction not in REDUCTIONS:
        raise errors.InvalidValueError(f"{reduction} is not a valid value for reduction")


def _reduce(loss: Any, reduction: str) -> Any:
    # torch's apply_loss_reduction: the per-element losses' .mean() or .sum(), which round as
    # torch's sum does (float_sum), not as numpy's pairwise sum.
    if reduction == "mean":
        return float_mean(loss) if loss.size else np.float64("nan").astype(loss.dtype)
    if reduction == "sum":
        return float_sum(loss)
    return loss


def _scale(ns: Any, g: Any, shape: Sequence[int], reduction: str) -> Any:
    """The incoming gradient of a reduced loss, per element (divided by n for 'mean')."""
    return g / math.prod(shape) if reduction == "mean" else g


def _not_differentiable(function: str, name: str, t: Any) -> None:
    """torch refuses a grad-requiring tensor for an input it has no derivative for."""
    if t is not None and getattr(t, "requires_grad", False) and grad_mode.is_grad_enabled():
        raise errors.InvalidArgumentError(
            f"The function '{function}' is not differentiable with respect to argument "
            f"'{name}'. This input cannot have requires_grad True.")


def _type_word(d: DType) -> str:
    return TYPE_WORDS[d.name]


def _size(shape: Sequence[int]) -> str:
    return f"torch.Size([{', '.join(map(str, shape))}])"


# --- bounds: a loss is one value, or one per element with reduction="none" -------------------

# Per target element, the class-index losses' scratch: the valid mask, safe targets, range
# masks, float64 weights (and the ones they start from), row numbers, picked values, products.
_NLL_BYTES = 64


def _loss_bound(elements: Any, *, copies: int = 0, inputs: int = 0, per_target: int = 0,
                always: bool = False) -> Any:
    """An out_bound for a loss whose per-element losses have the shape `elements(*args,
    **attrs)`: that shape with reduction="none" (or `always`, for the gradients), else one
    value; the forward also holds `copies` arrays of that shape, `inputs` copies of the input,
    and `per_target` bytes per target element."""
    def bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
        shape = tuple(elements(*args, **attrs))
        item = out_dtype.np.itemsize
        result = shape if always or attrs.get("reduction") == "none" else ()
        scratch = (copies * limits.numel(shape) + inputs * numel_of(args[0])) * item
        scratch += per_target * numel_of(args[1])
        return limits.with_scratch(limits.shape_bound(result, item), scratch)
    return bound


def _pointwise_shape(x: Any, t: Any, *rest: Any, **attrs: Any) -> tuple[int, ...]:
    return broadcast_shape(x, t)


def _target_shape(x: Any, t: Any, *rest: Any, **attrs: Any) -> tuple[int, ...]:
    return tuple(t.shape)


def _attr_shape(*args: Any, **attrs: Any) -> tuple[int, ...]:
    return tuple(attrs["shape"])  # the loss gradients: the input's shape, as an attribute


def _ce_shape(x: Any, t: Any, *rest: Any, **attrs: Any) -> tuple[int, ...]:
    if not _is_probs(x, t):
        return tuple(t.shape)
    dim = _class_dim(x)
    return tuple(s for i, s in enumerate(x.shape) if i != dim)


# --- softmax, log_softmax ------------------------------------------------------------------------


def _softmax_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    x = args[0]
    d = attrs.get("dtype") or x.dtype
    norm_dims(attrs["dim"], x.ndim)  # torch's "Dimension out of range" first
    if d.category != 2:
        raise errors.InvalidArgumentError(
            f'"softmax_lastdim_kernel_impl" not implemented for \'{_type_word(d)}\'')
    return d, d


def _shifted(x: Any, dim: int) -> tuple[Any, int]:
    """x minus its max along dim (for stability), and dim as an axis; 0-dim x is one element."""
    axis = norm_dims(dim, x.ndim)[0] if x.ndim else 0  # type: ignore[index]
    if x.ndim == 0:
        x = x.reshape(1)
    with np.errstate(invalid="ignore"):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        m = np.where(np.isfinite(m), m, 0)
        return x - m, axis


def _softmax(x: Any, dim: int, dtype: Any = None) -> Any:
    if _exact_rows(x, dim):
        return _softmax_rows(x)
    z, axis = _shifted(x, dim)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).reshape(x.shape)


# --- torch's float32 (log_)softmax kernels over the last dim, bit for bit -------------------------
# torch 2.13 runs a float32 softmax and log_softmax over the last dim and their backwards
# (`_vec_softmax_lastdim`, `_vec_log_softmax_lastdim`, `_vec_host_softmax_backward_lastdim`) on
# `Vectorized<float>` (8 lanes with AVX2, 16 with AVX512: cascade.VECTOR_BYTES): SLEEF's expf,
# a lane sum (`vec::reduce_all`, ops_norm's `_lane_sum`: the lanes accumulate a vector apart,
# then a tree; fewer values than lanes add in order), softmax's multiply by the sum's reciprocal,
# SLEEF's logf, and log_softmax's backward `grad - exp(output) * sum` as one fused multiply-add.
# The row's max is subtracted as it is: a row whose max is not finite (NaN, +inf, all -inf)
# comes out NaN.
# numpy's exp/log and pairwise sums differ in the last bit in 20-50 % of elements (a printed
# cross-entropy loss after a few hundred steps). Rows go in chunks that bound the float64 scratch
# of the emulated functions (vecmath.KERNEL_SCRATCH); rows longer than a chunk keep numpy's.

_F32 = np.float32


def _lane_sum(v: np.ndarray) -> np.ndarray:
    """ops_norm's `_lane_sum` of float32 rows at the width torch's softmax kernels run with."""
    return _norm_lane_sum(v, _F32, None, cascade.VECTOR_BYTES)


def _exact_rows(x: Any, dim: int) -> bool:
    """Whether torch's float32 last-dim kernel is reproduced here for `x` along `dim`."""
    return (vecmath.EXACT and x.dtype == np.float32 and x.ndim >= 1 and x.size > 0
            and norm_dims(dim, x.ndim)[0] == x.ndim - 1  # type: ignore[index]
            and x.shape[-1] <= vecmath._CHUNK)


def _row_chunks(n_rows: int, n_cols: int) -> range:
    return range(0, n_rows, max(1, vecmath._CHUNK // max(1, n_cols)))


def _shifted_rows(x: np.ndarray, each: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`each(z)` over chunks of x's last-dim rows, z each row less its max, as torch's last-dim
    softmax kernels go."""
    rows = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
    step = _row_chunks(*rows.shape).step
    if rows.shape[0] <= step:  # one chunk: no result to copy it into
        with np.errstate(all="ignore"):
            return each(rows - rows.max(axis=1, keepdims=True)).reshape(x.shape)
    out = np.empty_like(rows)
    with np.errstate(all="ignore"):
        for i in range(0, rows.shape[0], step):
            r = rows[i:i + step]
            out[i:i + step] = each(r - r.max(axis=1, keepdims=True))
    return out.reshape(x.shape)


def _log_softmax_rows(x: np.ndarray) -> np.ndarray:
    """torch's `_vec_log_softmax_lastdim`: z - log(the lane sum of exp(z))."""
    return _shifted_rows(x, lambda z: z - vecmath._sleef_logf_u1(
        _lane_sum(vecmath.sleef_expf(z)))[:, None])


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    """torch's `_vec_softmax_lastdim`: exp(x - max) times 1 / (their lane sum)."""
    def each(z: np.ndarray) -> np.ndarray:
        e = vecmath.sleef_expf(z)
        return e * (np.float32(1) / _lane_sum(e))[:, None]
    return _shifted_rows(x, each)


def _log_softmax(x: Any, dim: int, dtype: Any = None) -> Any:
    if _exact_rows(x, dim):
        return _log_softmax_rows(x)
    z, axis = _shifted(x, dim)
    with np.errstate(divide="ignore"):
        return (z - np.log(np.exp(z).sum(axis=axis, keepdims=True))).reshape(x.shape)


def _softmax_backward(g: Any, out: Any, dim: int) -> Any:
    """output * (grad_output - (grad_output * output).sum(dim)): torch's
    `_softmax_backward_data`."""
    g = np.asarray(g)
    out = np.asarray(out)
    if g.shape == out.shape and g.dtype == np.float32 and _exact_rows(out, dim):
        gr = np.ascontiguousarray(g).reshape(-1, g.shape[-1])
        orows = np.ascontiguousarray(out).reshape(-1, out.shape[-1])
        with np.errstate(all="ignore"):
            total = _lane_sum(gr * orows)[:, None]
            return (orows * (gr - total)).reshape(g.shape)
    axis = norm_dims(dim, out.ndim)[0] if out.ndim else 0  # type: ignore[index]
    with np.errstate(over="ignore", invalid="ignore"):
        return out * (g - np.sum(g * out, axis=axis, keepdims=True))


def _log_softmax_backward(g: Any, out: Any, dim: int) -> Any:
    """grad_output - exp(output) * grad_output.sum(dim): torch's `_log_softmax_backward_data`."""
    g = np.asarray(g)
    out = np.asarray(out)
    if g.shape == out.shape and g.dtype == np.float32 and _exact_rows(out, dim):
        gr = np.ascontiguousarray(g).reshape(-1, g.shape[-1])
        orows = np.ascontiguousarray(out).reshape(-1, out.shape[-1])
        step = _row_chunks(*gr.shape).step
        if gr.shape[0] <= step:  # one chunk: no result to copy it into
            with np.errstate(all="ignore"):
                total = _lane_sum(gr)[:, None]
                return vecmath.neg_expf_fma(orows, total, gr).reshape(g.shape)
        res = np.empty_like(gr)
        with np.errstate(all="ignore"):
            for i in range(0, gr.shape[0], step):
                total = _lane_sum(gr[i:i + step])[:, None]
                res[i:i + step] = vecmath.neg_expf_fma(orows[i:i + step], total, gr[i:i + step])
        return res.reshape(g.shape)
    axis = norm_dims(dim, out.ndim)[0] if out.ndim else 0  # type: ignore[index]
    with np.errstate(over="ignore", invalid="ignore"):
        return g - np.exp(out) * np.sum(g, axis=axis, keepdims=True)


_SOFTMAX_ATTRS = (AttrSpec("dim", "int", required=True), AttrSpec("dtype", "dtype", None))


def _softmax_shape(x: Any, dim: int, dtype: Any = None) -> tuple[int, ...]:
    return tuple(x.shape)


_SOFTMAX_NUMPY = temporaries(_softmax_shape, results=2)


def _log_softmax_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> Any:
    # float32 over the last dim: the emulated SLEEF functions' scratch, per chunk of rows
    return limits.with_scratch(_SOFTMAX_NUMPY(args, attrs, out_dtype), vecmath.KERNEL_SCRATCH)


defop("softmax", _softmax,
      lambda ns, g, out, x, dim, dtype: ns.softmax_backward_data(g, out, dim=dim),
      saves="result",
      attrs=_SOFTMAX_ATTRS, dtype=_softmax_dtype,
      doc="exp(input) / sum(exp(input), dim), computed stably (dtype: cast input first)",
      out_bound=_log_softmax_bound)
defop("log_softmax", _log_softmax,
      lambda ns, g, out, x, dim, dtype: ns.log_softmax_backward_data(g, out, dim=dim),
      saves="result",
      attrs=_SOFTMAX_ATTRS, dtype=_softmax_dtype,
      doc="input - logsumexp(input, dim), computed stably (dtype: cast input first)",
      out_bound=_log_softmax_bound)

# Its own op, as torch's `_softmax_backward_data`: a second derivative runs through
# SoftmaxBackwardDataBackward0 with torch's formulas (derivatives.yaml; softmax_double_backward
# for output: grad_output * grad - (output * grad_output).sum(dim) * grad
# - grad_output * (output * grad).sum(dim)).
defop("softmax_backward_data", _softmax_backward,
      lambda ns, gg, res, g, out, dim: ns.softmax_backward_data(gg, out, dim=dim),
      lambda ns, gg, res, g, out, dim: (
          g * gg - ns.sum(out * g, dim=dim, keepdim=True) * gg
          - g * ns.sum(out * gg, dim=dim, keepdim=True)),
      saves=("output", "grad_output output"),
      inputs=("grad_output", "output"), attrs=(AttrSpec("dim", "int", required=True),),
      dtype=_floating_only("_softmax_backward_data"), method=False,
      doc="the gradient of softmax given its result `output`: "
          "output * (grad_output - (grad_output * output).sum(dim, keepdim=True))",
      out_bound=temporaries(lambda g, out, dim: tuple(out.shape), results=3))

# Its own op, as torch's `_log_softmax_backward_data`: a second derivative runs through
# LogSoftmaxBackwardDataBackward0 with torch's formulas (derivatives.yaml): grad_output's
# grad - (grad * exp(output)).sum(dim), output's -grad_output.sum(dim) * exp(output) * grad.
defop("log_softmax_backward_data", _log_softmax_backward,
      lambda ns, gg, res, g, out, dim: gg - ns.sum(gg * ns.exp(out), dim=dim, keepdim=True),
      lambda ns, gg, res, g, out, dim: -ns.sum(g, dim=dim, keepdim=True) * ns.exp(out) * gg,
      saves=("output", "grad_output output"),
      inputs=("grad_output", "output"), attrs=(AttrSpec("dim", "int", required=True),),
      dtype=_floating_only("_log_softmax_backward_data"), method=False,
      doc="the gradient of log_softmax given its result `output`: "
          "grad_output - exp(output) * grad_output.sum(dim, keepdim=True)",
      out_bound=lambda args, attrs, out_dtype: limits.with_scratch(
          temporaries(lambda g, out, dim: tuple(out.shape), results=2)(args, attrs, out_dtype),
          vecmath.KERNEL_SCRATCH))

# --- regression losses ---------------------------------------------------------------------------


def _pointwise_loss_dtype(args: Sequence[Any], attrs: Mapping[str, Any]
                          ) -> tuple[DType | None, DType]:
    check_reduction(attrs["reduction"])
    d = dtypes.to_float(promote_args(args))
    return d, d


def _mse_dx(ns: Any, g: Any, out: Any, x: Any, t: Any, reduction: str) -> Any:
    d = x - t
    return 2 * d * _scale(ns, g, d.shape, reduction)


def _mse_dt(ns: Any, g: Any, out: Any, x: Any, t: Any, reduction: str) -> Any:
    d = x - t
    return -2 * d * _scale(ns, g, d.shape, reduction)


defop("mse_loss", lambda x, t, reduction="mean": _reduce(np.square(x - t), reduction),
      _mse_dx, _mse_dt, inputs=("input", "target"), attrs=(_REDUCTION,),
      saves=("input target", "input target"),
      dtype=_pointwise_loss_dtype, backward="MseLossBackward0",
      doc="mean (or sum, or none) of (input - target) ** 2",
      out_bound=_loss_bound(_pointwise_shape, copies=3))


@names_backward("MeanBackward0", "SumBackward0", "AbsBackward0")
def _l1_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    # torch's l1_loss is a composition: abs(input - target), then mean or sum.
    return {"mean": "MeanBackward0", "sum": "SumBackward0"}.get(attrs["reduction"],
                                                                 "AbsBackward0")


def _l1_dx(ns: Any, g: Any, out: Any, x: Any, t: Any, reduction: str) -> Any:
    d = x - t
    return ns.sign(d) * _scale(ns, g, d.shape, reduction)


def _l1_dt(ns: Any, g: Any, out: Any, x: Any, t: Any, reduction: str) -> Any:
    d = x - t
    return -ns.sign(d) * _scale(ns, g, d.shape, reduction)


defop("l1_loss", lambda x, t, reduction="mean": _reduce(np.abs(x - t), reduction),
      _l1_dx, _l1_dt, inputs=("input", "target"), attrs=(_REDUCTION,),
      saves=("input target", "input target"),
      dtype=_pointwise_loss_dtype, backward=_l1_name,
      doc="mean (or sum, or none) of |input - target|",
      out_bound=_loss_bound(_pointwise_shape, copies=3))

# --- smooth L1 and Huber -------------------------------------------------------------------------
# torch's kernels (BinaryOpsKernel.cpp smooth_l1/huber, PointwiseOpsKernel.cpp their backward), in
# the input's type: z = |input - target|, then the quadratic part where z < beta (delta), the
# linear part elsewhere. The gradient rounds as the backward kernels' vector form rounds it,
# norm * (d / beta or ±1) * grad_output (smooth L1), norm * (d or ±delta) * grad_output (Huber),
# norm 1 / n for "mean"; the kernels' scalar tails (the last n % (2 * lanes) values of a
# contiguous run) round in another order, a last-bit difference left alone.


def _norm(d: Any, reduction: str) -> float:
    return 1.0 / math.prod(d.shape) if reduction == "mean" else 1.0


def _smooth_l1(x: Any, t: Any, reduction: str = "mean", beta: float = 1.0) -> Any:
    z = np.abs(x - t)
    dt = z.dtype.type
    half, b = dt(0.5), dt(beta)
    with np.errstate(divide="ignore", invalid="ignore"):  # beta 0: the quadratic part is unused
        return _reduce(np.where(z < b, half * z * z / b, z - half * b), reduction)


def _smooth_l1_grad(ns: Any, g: Any, d: Any, reduction: str, beta: float) -> Any:
    norm = _norm(d, reduction)
    linear = ns.sign(d) * norm * g
    if beta == 0:
        return linear
    return ns.where(ns.abs(d) < beta, d / beta * norm * g, linear)


def _huber(x: Any, t: Any, reduction: str = "mean", delta: float = 1.0) -> Any:
    z = np.abs(x - t)
    dt = z.dtype.type
    half, dl = dt(0.5), dt(delta)
    return _reduce(np.where(z < dl, half * z * z, dl * (z - half * dl)), reduction)


def _huber_grad(ns: Any, g: Any, d: Any, reduction: str, delta: float) -> Any:
    norm = _norm(d, reduction)
    return ns.where(ns.abs(d) < delta, d * norm * g, ns.sign(d) * delta * norm * g)


def _beta_check(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if attrs["beta"] < 0:
        raise errors.InvalidArgumentError(
            "smooth_l1_loss does not support negative values for beta.")
    return _pointwise_loss_dtype(args, attrs)


def _delta_check(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    if attrs["delta"] <= 0:
        raise errors.InvalidArgumentError(
            "huber_loss does not support non-positive values for delta.")
    return _pointwise_loss_dtype(args, attrs)


def _robust_loss(name: str, node: str, forward: Callable[..., Any], grad: Callable[..., Any],
                 knee: AttrSpec, check: Callable[..., Any], doc: str) -> None:
    """One of smooth_l1_loss and huber_loss: quadratic below the `knee` attribute, linear
    above; the target's gradient is the input's with d = target - input."""
    defop(name, forward,
          lambda ns, g, out, x, t, reduction, **k: grad(ns, g, x - t, reduction, k[knee.name]),
          lambda ns, g, out, x, t, reduction, **k: grad(ns, g, t - x, reduction, k[knee.name]),
          inputs=("input", "target"), attrs=(_REDUCTION, knee),
          saves=("input target", "input target"), dtype=check,
          backward=node,
          method=False, doc=doc, out_bound=_loss_bound(_pointwise_shape, copies=4))


_robust_loss("smooth_l1_loss", "SmoothL1LossBackward0", _smooth_l1, _smooth_l1_grad,
             AttrSpec("beta", "float", 1.0), _beta_check,
             "mean (or sum, or none) of 0.5 * d ** 2 / beta where |d| < beta, "
             "else |d| - 0.5 * beta (d = input - target)")
_robust_loss("huber_loss", "HuberLossBackward0", _huber, _huber_grad,
             AttrSpec("delta", "float", 1.0), _delta_check,
             "mean (or sum, or none) of 0.5 * d ** 2 where |d| < delta, else "
             "delta * (|d| - 0.5 * delta) (d = input - target)")

# --- binary cross-entropy ------------------------------------------------------------------------


def _bce_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    check_reduction(attrs["reduction"])
    x, t = args[0], args[1]
    if tuple(t.shape) != tuple(x.shape):
        raise errors.InvalidValueError(
            f"Using a target size ({_size(t.shape)}) that is different to the input size "
            f"({_size(x.shape)}) is deprecated. Please ensure they have the same size.")
    _not_differentiable("binary_cross_entropy", "weight", args[2])
    d = dtypes.to_float(promote_args(args))
    return d, d


def _bce(x: Any, t: Any, w: Any = None, reduction: str = "mean") -> Any:
    if np.any((x < 0) | (x > 1)):  # NaN passes, as in torch
        raise errors.InvalidArgumentError("all elements of input should be between 0 and 1")
    # torch's scalar kernel: std::log1p and std::log, glibc's (numpy's float32 log1p calls
    # glibc's log1pf; its float32 log is its own SIMD one, so vecmath's glibc logf instead)
    log = vecmath.libm_logf if x.dtype == np.float32 and vecmath.EXACT else np.log
    with np.errstate(divide="ignore"):
        loss = ((t - 1) * np.maximum(np.log1p(-x), -100) - t * np.maximum(log(x), -100))
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction)


_BCE_EPSILON = float(np.float32(1e-12))


def _bce_dx(ns: Any, g: Any, out: Any, x: Any, t: Any, w: Any, reduction: str) -> Any:
    # torch's binary_cross_entropy_backward, in its order: grad * (input - target) / max((1 -
    # input) * input, EPSILON), times the weight, then divided by numel for 'mean' (torch's
    # EPSILON is a float 1e-12, also for double inputs)
    r = g * (x - t) / ns.clamp((1 - x) * x, _BCE_EPSILON, None)
    if w is not None:
        r = r * w
    return r / math.prod(x.shape) if reduction == "mean" else r


def _bce_dt(ns: Any, g: Any, out: Any, x: Any, t: Any, w: Any, reduction: str) -> Any:
    r = (ns.clamp(ns.log1p(-x), -100, None) - ns.clamp(ns.log(x), -100, None)) * _scale(
        ns, g, x.shape, reduction)
    return r if w is None else r * w


defop("binary_cross_entropy", _bce, _bce_dx, _bce_dt, None,
      saves=("input target weight", "input weight", ""),
      inputs=("input", "target", "weight?"), attrs=(_REDUCTION,), dtype=_bce_dtype,
      backward="BinaryCrossEntropyBackward0",
      doc="-(target * log(input) + (1 - target) * log(1 - input)), logs clamped to >= -100",
      # vecmath.libm_logf's float64 scratch, ~96 bytes an element at its peak
      out_bound=_loss_bound(_pointwise_shape, copies=6, per_target=96))


def _bce_logits_dtype(args: Sequence[Any], attrs: Mapping[str, Any]
                      ) -> tuple[DType | None, DType]:
    check_reduction(attrs["reduction"])
    x, t = args[0], args[1]
    if tuple(t.shape) != tuple(x.shape):
        raise errors.InvalidValueError(
            f"Target size ({_size(t.shape)}) must be the same as input size ({_size(x.shape)})")
    _not_differentiable("binary_cross_entropy_with_logits", "weight", args[2])
    _not_differentiable("binary_cross_entropy_with_logits", "pos_weight", args[3])
    d = dtypes.to_float(promote_args(args))
    return d, d


def _softplus_neg(x: Any) -> Any:
    """log(1 + exp(-x)), stably."""
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)


def _bce_logits(x: Any, t: Any, w: Any = None, pw: Any = None, reduction: str = "mean") -> Any:
    with np.errstate(over="ignore"):
        sp = _softplus_neg(x)
    loss = (1 - t) * x + (sp if pw is None else (1 + (pw - 1) * t) * sp)
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction)


def _bce_logits_dx(ns: Any, g: Any, out: Any, x: Any, t: Any, w: Any, pw: Any,
                   reduction: str) -> Any:
    s = ns.sigmoid(x)
    r = s - t if pw is None else (1 + (pw - 1) * t) * s - pw * t
    r = r * _scale(ns, g, x.shape, reduction)
    return r if w is None else r * w


def _bce_logits_dt(ns: Any, g: Any, out: Any, x: Any, t: Any, w: Any, pw: Any,
                   reduction: str) -> Any:
    r = -x if pw is None else (pw - 1) * ns.softplus(-x) - x
    r = r * _scale(ns, g, x.shape, reduction)
    return r if w is None else r * w


defop("binary_cross_entropy_with_logits", _bce_logits, _bce_logits_dx, _bce_logits_dt, None, None,
      saves=("input target weight pos_weight", "input weight pos_weight", "", ""),
      inputs=("input", "target", "weight?", "pos_weight?"), attrs=(_REDUCTION,),
      dtype=_bce_logits_dtype, backward="BinaryCrossEntropyWithLogitsBackward0",
      doc="binary cross-entropy of sigmoid(input), computed stably from the logits",
      out_bound=_loss_bound(_pointwise_shape, copies=6))

# --- negative log-likelihood ---------------------------------------------------------------------


def _nll_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    check_reduction(attrs["reduction"])
    x, t, w = args[0], args[1], args[2]
    if x.dtype.category != 2:
        raise errors.InvalidArgumentError(
            f'"nll_loss_out_frame" not implemented for \'{_type_word(x.dtype)}\'')
    _check_nll_shapes(tuple(x.shape), tuple(t.shape), t.dtype)
    _not_differentiable("nll_loss_forward", "weight", w)
    if w is not None:
        c = x.shape[1] if x.ndim >= 2 else x.shape[0]
        if w.ndim != 1 or w.shape[0] != c:
            raise errors.InvalidArgumentError(
                f"weight tensor should be defined either for all {c} classes or no classes but "
                f"got weight tensor of shape: [{', '.join(map(str, w.shape))}]")
    return None, x.dtype


def _check_nll_shapes(xs: tuple[int, ...], ts: tuple[int, ...], tdtype: DType) -> None:
    if len(xs) < 1:
        raise errors.InvalidArgumentError("input tensor should be 1D or 2D")
    if len(xs) <= 2:
        if len(ts) > 1:
            raise errors.InvalidArgumentError(
                "0D or 1D target tensor expected, multi-target not supported")
        if len(xs) == 2 and (len(ts) != 1 or ts[0] != xs[0]):
            raise errors.InvalidValueError(
                f"Expected input batch_size ({xs[0]}) to match target batch_size "
                f"({ts[0] if ts else 1}).")
        if len(xs) == 1 and len(ts) != 0 and ts != (1,):
            raise errors.InvalidValueError(
                f"Expected input batch_size (1) to match target batch_size ({ts[0]}).")
    else:
        if len(ts) < 1 or ts[0] != xs[0]:
            raise errors.InvalidValueError(
                f"Expected input batch_size ({xs[0]}) to match target batch_size "
                f"({ts[0] if ts else 1}).")
        if ts[1:] != xs[2:]:
            raise errors.InvalidArgumentError(
                f"Expected target size [{', '.join(map(str, (xs[0], *xs[2:])))}], got "
                f"[{', '.join(map(str, ts))}]")
    if tdtype.category != 1 or tdtype.name != "int64":
        raise errors.InvalidArgumentError(
            f"expected target dtype to be Long or Byte, but got {_type_word(tdtype)}")


def _dense(shape: Sequence[int], t: Any, ignore_index: int) -> Any:
    """The flat targets when every one is a class (none ignore_index, none out of range: the
    common case, where each element's loss is its own), else None."""
    c = shape[1] if len(shape) >= 2 else shape[0]
    flat = np.asarray(t).reshape(-1)
    if flat.size and not 0 <= ignore_index < c and 0 <= flat.min() and flat.max() < c:
        return flat
    return None


def _flat(shape: Sequence[int], t: Any, w: Any, ignore_index: int) -> tuple[int, Any, Any, Any]:
    """(classes, flat targets made safe, flat valid mask, flat per-element weights)."""
    c = shape[1] if len(shape) >= 2 else shape[0]
    flat = np.asarray(t).reshape(-1)
    if flat.size and not 0 <= ignore_index < c and 0 <= flat.min() and flat.max() < c:
        # every target a class (the common case): no target is ignore_index, none out of range,
        # so the flat targets are safe as they are and every weight is the target's own
        n = flat.size
        return c, flat, np.ones(n, bool), np.ones(n) if w is None else np.asarray(w)[flat]
    valid = flat != ignore_index
    safe = np.where(valid, flat, 0)
    bad = (safe < 0) | (safe >= c)
    if np.any(bad):
        raise errors.OutOfRangeIndexError(f"Target {int(safe[np.argmax(bad)])} is out of bounds.")
    ww = (np.ones(safe.shape) if w is None else np.asarray(w)[safe]) * valid
    return c, safe, valid, ww


def _classes_last(x: Any) -> Any:
    """input as (elements, classes)."""
    if x.ndim == 1:
        return x.reshape(1, -1)
    if x.ndim == 2:
        return x  # already (elements, classes): moveaxis would give the same view, slower
    rows = x.shape[0] * math.prod(x.shape[2:])  # not -1: there may be no classes
    return np.moveaxis(x, 1, -1).reshape(rows, x.shape[1])


def _nll(x: Any, t: Any, w: Any = None, ignore_index: int = -100,
         reduction: str = "mean") -> Any:
    if w is None and reduction != "none" and x.ndim <= 2:
        flat = _dense(x.shape, t, ignore_index)
        if flat is not None:  # the common case, without the masks and weights of the others
            total = cascade.nll_sum(-_classes_last(x)[np.arange(flat.size), flat], None)
            return total if reduction == "sum" else total / x.dtype.type(flat.size)
    c, safe, valid, ww = _flat(x.shape, t, w, ignore_index)
    picked = _classes_last(x)[np.arange(safe.size), safe]
    dense = bool(valid.all())  # no target ignored
    # (-picked * 1.0, computed in float64 and cast back, is -picked: each target's own weight)
    losses = -picked if dense and w is None else (-picked * ww).astype(x.dtype)
    if reduction == "none" or not safe.size:
        return _reduce_weighted(losses, t, ww, reduction)
    # torch's nll_loss kernel sums in one pass with its own cascade (cascade.nll_sum); the
    # summed weights are the count of valid targets when there is no weight.
    total = cascade.nll_sum(losses, None if dense else valid)
    if reduction == "sum":
        return total
    weight = (x.dtype.type(np.count_nonzero(valid)) if w is None
              else cascade.nll_sum(ww.astype(x.dtype), None if dense else valid))
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / weight


def _reduce_weighted(losses: Any, t: Any, ww: Any, reduction: str) -> Any:
    """Per-element losses reduced as nll_loss reduces: 'mean' divides by the summed weights."""
    if reduction == "none":
        return losses.reshape(np.shape(t))
    total = float_sum(losses)
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.asarray(ww.sum(), dtype=losses.dtype)


def _element_grads(g: Any, safe: Any, ww: Any, reduction: str) -> Any:
    """The gradient of `_reduce_weighted` at each (flat) element's loss."""
    g = np.asarray(g)
    gg = g.reshape(-1) if reduction == "none" else np.broadcast_to(g, safe.shape)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            gg = gg / np.asarray(ww.sum(), dtype=g.dtype)
    return gg


def _classes_back(flat: Any, shape: Sequence[int]) -> Any:
    """(elements, classes) back to the input's layout (class dim 1; `_classes_last` undone)."""
    if len(shape) == 1:
        return flat.reshape(shape[0])
    if len(shape) == 2:  # (elements, classes) is the layout: moveaxis would change nothing
        return flat.reshape(shape[0], flat.shape[1])
    return np.moveaxis(flat.reshape((shape[0], *shape[2:], flat.shape[1])), -1, 1)


def _nll_backward(g: Any, t: Any, w: Any = None, shape: Sequence[int] = (),
                  ignore_index: int = -100, reduction: str = "mean") -> Any:
    c, safe, valid, ww = _flat(shape, t, w, ignore_index)
    if w is None and reduction != "none" and valid.all():
        # every target a class, each weighing 1: every element's gradient is the one value
        # -g (or -g / n), computed once (the same division; -g * 1.0 is -g)
        g = np.asarray(g)
        if reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                g = g / np.asarray(ww.sum(), dtype=g.dtype)
        flat = np.zeros((safe.size, c), dtype=g.dtype)
        flat[np.arange(safe.size), safe] = -g
        return _classes_back(flat, shape)
    gg = _element_grads(g, safe, ww, reduction)
    flat = np.zeros((safe.size, c), dtype=gg.dtype)
    # only the targets torch's kernel writes: an ignored row stays +0 (-g * 0 would be -0.0,
    # which log_softmax's backward keeps)
    rows = np.flatnonzero(valid)
    flat[rows, safe[rows]] = (-gg * ww)[rows]
    return _classes_back(flat, shape)


@names_backward("NllLossBackward0", "NllLoss2DBackward0", "ViewBackward0")
def _nll_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    # torch runs inputs of 3 or more dims as 4-dim nll_loss2d, viewing other ranks to 4 dims
    # and (for reduction='none') the result back.
    ndim = args[0].ndim if args else 2
    if ndim <= 2:
        return "NllLossBackward0"
    return "ViewBackward0" if ndim != 4 and attrs["reduction"] == "none" else "NllLoss2DBackward0"


@names_backward("NllLossBackwardBackward0", "NllLoss2DBackwardBackward0", "ViewBackward0")
def _nll_backward_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    ndim = len(attrs.get("shape") or (0, 0))
    if ndim <= 2:
        return "NllLossBackwardBackward0"
    return "NllLoss2DBackwardBackward0" if ndim == 4 else "ViewBackward0"


_NLL_ATTRS = (AttrSpec("ignore_index", "int", -100), _REDUCTION)

defop("nll_loss", _nll,
      lambda ns, g, out, x, t, w, ignore_index, reduction: ns.nll_loss_backward(
          g, t, w, shape=tuple(x.shape), ignore_index=ignore_index, reduction=reduction),
      None, None,
      saves=("target weight input.shape", "", ""),
      inputs=("input", "target", "weight?"), attrs=_NLL_ATTRS, dtype=_nll_dtype,
      backward=_nll_name,
      doc="-input[target] per element (class dim 1), weighted; mean divides by the weights' sum",
      out_bound=_loss_bound(_target_shape, inputs=1, per_target=_NLL_BYTES))
defop("nll_loss_backward", _nll_backward,
      lambda ns, g, out, go, t, w, shape, ignore_index, reduction: ns.nll_loss(
          g, t, w, ignore_index=ignore_index, reduction=reduction),
      None, None,
      saves=("target weight", "", ""),
      inputs=("grad_output", "target", "weight?"),
      attrs=(AttrSpec("shape", "ints", required=True), *_NLL_ATTRS),
      dtype=lambda args, attrs: (None, args[0].dtype), backward=_nll_backward_name,
      out_shape=lambda *a, **attrs: tuple(attrs["shape"]), method=False,
      doc="the gradient of nll_loss for an input of `shape` (nll_loss is its VJP)",
      out_bound=_loss_bound(_attr_shape, per_target=_NLL_BYTES, always=True))

# --- label smoothing with class indices: sum over classes, as an adjoint pair ---------------------
# torch's cross_entropy with class indices and label_smoothing adds (label_smoothing / C) times
# this "smooth loss": -sum_c input[c] * weight[c] per element, 0 where the target is
# ignore_index, reduced as nll_loss reduces (mean: divided by the summed target weights).


def _smooth(x: Any, t: Any, w: Any = None, ignore_index: int = -100,
            reduction: str = "mean") -> Any:
    c, safe, valid, ww = _flat(x.shape, t, w, ignore_index)
    xl = _classes_last(x)
    if w is not None:
        xl = xl * np.asarray(w, dtype=x.dtype)
    return _reduce_weighted((-xl.sum(axis=1) * valid).astype(x.dtype), t, ww, reduction)


def _smooth_backward(g: Any, t: Any, w: Any = None, shape: Sequence[int] = (),
                     ignore_index: int = -100, reduction: str = "mean") -> Any:
    c, safe, valid, ww = _flat(shape, t, w, ignore_index)
    gg = _element_grads(g, safe, ww, reduction)
    per_class = np.ones(c, dtype=gg.dtype) if w is None else np.asarray(w, dtype=gg.dtype)
    return _classes_back(-(gg * valid).astype(gg.dtype)[:, None] * per_class[None, :], shape)


@names_backward("ExpandBackward0", "MulBackward0")
def _smooth_backward_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    # torch's gradient of that composition ends with sum's expand, or the weight's mul
    weighted = len(args) > 2 and args[2] is not None
    return "MulBackward0" if weighted else "ExpandBackward0"


# the node torch's composition ends with: masked_fill_ of the per-element sums, sum, division
_SMOOTH_NAMES = {"none": "MaskedFillBackward0", "sum": "SumBackward0", "mean": "DivBackward0"}

defop("label_smoothing_loss", _smooth,
      lambda ns, g, out, x, t, w, ignore_index, reduction: ns.label_smoothing_loss_backward(
          g, t, w, shape=tuple(x.shape), ignore_index=ignore_index, reduction=reduction),
      None, None,
      saves=("target weight input.shape", "", ""),
      inputs=("input", "target", "weight?"), attrs=_NLL_ATTRS, dtype=_nll_dtype,
      backward=names_backward(*_SMOOTH_NAMES.values())(
          lambda args, attrs: _SMOOTH_NAMES[attrs["reduction"]]), method=False,
      doc="-sum over classes of input * weight per element (0 where target is ignore_index), "
          "reduced as nll_loss: cross_entropy's label-smoothing term",
      out_bound=_loss_bound(_target_shape, inputs=2, per_target=_NLL_BYTES))
defop("label_smoothing_loss_backward", _smooth_backward,
      lambda ns, g, out, go, t, w, shape, ignore_index, reduction: ns.label_smoothing_loss(
          g, t, w, ignore_index=ignore_index, reduction=reduction),
      None, None,
      saves=("target weight", "", ""),
      inputs=("grad_output", "target", "weight?"),
      attrs=(AttrSpec("shape", "ints", required=True), *_NLL_ATTRS),
      dtype=lambda args, attrs: (None, args[0].dtype),
      backward=_smooth_backward_name,
      out_shape=lambda *a, **attrs: tuple(attrs["shape"]), method=False,
      doc="the gradient of label_smoothing_loss for an input of `shape` (its VJP is that loss)",
      out_bound=_loss_bound(_attr_shape, copies=1, per_target=_NLL_BYTES, always=True))

# --- cross_entropy as one op (for the wire) -------------------------------------------------------
# nn.functional.cross_entropy composes log_softmax and nll_loss as torch does (surface/
# nn_functional.py, for the engine and the Python client); stateless graphs and other languages'
# clients see only registered ops, so the same computation is also one op here, built from the
# same forwards and rules. Its node carries the name torch's last node has.


def per_class(label_smoothing: float, n_classes: int) -> float:
    """label_smoothing / n_classes as torch's C++ divides doubles (inf for no classes)."""
    return label_smoothing / n_classes if n_classes else math.inf


def _class_dim(x: Any) -> int:
    """The class dimension of cross_entropy's input; torch's IndexError for a 0-d one."""
    if x.ndim == 0:
        raise errors.OutOfRangeIndexError("Dimension specified as 1 but tensor has no dimensions")
    return 0 if x.ndim == 1 else 1


def _is_probs(x: Any, t: Any) -> bool:
    """Class probabilities (a floating target shaped like input) rather than class indices."""
    d = t.dtype  # a numpy dtype (forward, numpy-backed rules) or a DType (engine)
    floating = d.kind == "f" if isinstance(d, np.dtype) else d.category == 2
    return floating and tuple(t.shape) == tuple(x.shape)


def _ce_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    x, t, w = args[0], args[1], args[2]
    check_reduction(attrs["reduction"])
    if x.dtype.category != 2:
        raise errors.InvalidArgumentError(
            f'"log_softmax_lastdim_kernel_impl" not implemented for \'{_type_word(x.dtype)}\'')
    ls = attrs["label_smoothing"]
    if not 0.0 <= ls <= 1.0:
        raise errors.InvalidArgumentError(
            f"label_smoothing must be between 0.0 and 1.0. Got: {ls}")
    if t.dtype.category == 2 and tuple(t.shape) == tuple(x.shape):
        c = x.shape[_class_dim(x)]
        if w is not None and (w.ndim != 1 or w.shape[0] != c):
            raise errors.InvalidArgumentError(
                f"weight tensor should be defined either for all {c} classes or no classes but "
                f"got weight tensor of shape: [{', '.join(map(str, w.shape))}]")
        return None, x.dtype
    return _nll_dtype(args, attrs)


def _prob_weights(x: Any, t: Any, w: Any, label_smoothing: float) -> Any:
    """target (smoothed) times the class weights viewed along the class dim."""
    c = x.shape[_class_dim(x)]
    if label_smoothing > 0.0:
        t = t * (1 - label_smoothing) + per_class(label_smoothing, c)
    if w is not None:
        view = [1] * x.ndim
        view[_class_dim(x)] = c
        t = t * w.reshape(view)
    return t


# log_softmax's three input-sized arrays, then the class-index losses' scratch (and the
# smoothing term's copy), or the probabilities' weighted products.
_CE_INDICES = _loss_bound(_ce_shape, inputs=4, per_target=_NLL_BYTES)
_CE_PROBS = _loss_bound(_ce_shape, inputs=4)


def _ce_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: Any) -> limits.Bound:
    # plus the float32 log_softmax's scratch (the emulated SLEEF functions, per chunk of rows)
    return limits.with_scratch(
        (_CE_PROBS if _is_probs(args[0], args[1]) else _CE_INDICES)(args, attrs, out_dtype),
        vecmath.KERNEL_SCRATCH)


def _cross_entropy(x: Any, t: Any, w: Any = None, ignore_index: int = -100,
                   reduction: str = "mean", label_smoothing: float = 0.0) -> Any:
    logp = _log_softmax(x, _class_dim(x))
    if not _is_probs(x, t):
        nll = _nll(logp, t, w, ignore_index, reduction)
        if not label_smoothing:
            return nll
        smooth = _smooth(logp, t, w, ignore_index, reduction)
        return (1 - label_smoothing) * nll + smooth * per_class(label_smoothing,
                                                                x.shape[_class_dim(x)])
    tw = _prob_weights(x, t, w, label_smoothing)
    losses = -(logp * tw).sum(axis=_class_dim(x))
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    if x.size == 0:  # torch: the sum filled with NaN (no division by 0 // 0)
        return np.asarray(np.nan, dtype=x.dtype)
    return total / (x.size // x.shape[_class_dim(x)])


def _ce_dlogp(ns: Any, g: Any, x: Any, t: Any, w: Any, ignore_index: int, reduction: str,
              label_smoothing: float) -> Any:
    """The gradient at log_softmax's output."""
    if not _is_probs(x, t):
        d_nll = ns.nll_loss_backward(g, t, w, shape=tuple(x.shape), ignore_index=ignore_index,
                                     reduction=reduction)
        if not label_smoothing:
            return d_nll
        d_smooth = ns.label_smoothing_loss_backward(
            g, t, w, shape=tuple(x.shape), ignore_index=ignore_index, reduction=reduction)
        return d_nll * (1 - label_smoothing) + d_smooth * per_class(label_smoothing,
                                                                    x.shape[_class_dim(x)])
    dim = _class_dim(x)
    if reduction == "none":
        g = ns.reshape(g, shape=tuple(1 if i == dim else s for i, s in enumerate(x.shape)))
    elif reduction == "mean" and math.prod(x.shape):  # empty: the gradient is empty too
        g = g / (math.prod(x.shape) // x.shape[dim])
    tw = t
    if label_smoothing:
        tw = t * (1 - label_smoothing) + per_class(label_smoothing, x.shape[dim])
    if w is not None:
        tw = tw * ns.reshape(w, shape=tuple(s if i == dim else 1 for i, s in enumerate(x.shape)))
    return -g * tw


def _ce_dx(ns: Any, g: Any, out: Any, x: Any, t: Any, w: Any, ignore_index: int,
           reduction: str, label_smoothing: float) -> Any:
    dim = _class_dim(x)
    gl = _ce_dlogp(ns, g, x, t, w, ignore_index, reduction, label_smoothing)
    return gl - ns.softmax(x, dim=dim) * ns.sum(gl, dim=dim, keepdim=True)


def _ce_dt(ns: Any, g: Any, out: Any, x: Any, t: Any, w: Any, ignore_index: int,
           reduction: str, label_smoothing: float) -> Any:
    dim = _class_dim(x)
    if reduction == "none":
        g = ns.reshape(g, shape=tuple(1 if i == dim else s for i, s in enumerate(x.shape)))
    elif reduction == "mean" and math.prod(x.shape):
        g = g / (math.prod(x.shape) // x.shape[dim])
    r = -g * ns.log_softmax(x, dim=dim) * (1 - label_smoothing)
    if w is not None:
        r = r * ns.reshape(w, shape=tuple(s if i == dim else 1 for i, s in enumerate(x.shape)))
    return r


@names_backward("NllLossBackward0", "NllLoss2DBackward0", "ViewBackward0", "AddBackward0",
                "DivBackward1", "NegBackward0")
def _ce_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    if len(args) >= 2 and _is_probs(args[0], args[1]):
        mean = attrs["reduction"] == "mean" and math.prod(args[0].shape)
        return "DivBackward1" if mean else "NegBackward0"
    if attrs.get("label_smoothing"):
        return "AddBackward0"  # (1 - ls) * nll_loss + smooth * (ls / C)
    return _nll_name(args, attrs)


defop("cross_entropy", _cross_entropy, _ce_dx, _ce_dt, None,
      saves=("input target weight", "input weight", ""),
      inputs=("input", "target", "weight?"),
      attrs=(*_NLL_ATTRS, AttrSpec("label_smoothing", "float", 0.0)), dtype=_ce_dtype,
      backward=_ce_name,
      doc="cross-entropy of logits (class dim 1) against class indices or class probabilities",
      out_bound=_ce_bound)


# --- nearest-neighbour upsampling ----------------------------------------------------------------
# torch's upsample_nearest1d/2d: each output position reads the input at `nearest_index` (torch's
# float arithmetic, written once in gradserve.surface.nn_sampling); the backward adds each
# output's gradient into the input position it read, in output order (torch's CPU kernel's
# order: float32 bit for bit). The two ops are each other's VJP.

_UPSAMPLE_ATTRS = (AttrSpec("scale_h", "optional_float", None),
                   AttrSpec("scale_w", "optional_float", None))


def _upsample_indices(spatial: Sequence[int], out: Sequence[int], scale_h: float | None,
                      scale_w: float | None) -> list[np.ndarray]:
    from gradserve.surface.nn_sampling import nearest_index

    scales = (scale_h, scale_w)[2 - len(spatial):]
    return [nearest_index(int(s), int(o), sc) for s, o, sc in zip(spatial, out, scales)]


def _check_upsample(in_shape: Sequence[int], out: Sequence[int], what: str) -> None:
    """torch's checks on an upsample's sizes (from the wire: before anything is sized)."""
    in_shape, out = tuple(in_shape), tuple(out)
    if len(in_shape) not in (3, 4):
        raise errors.InvalidArgumentError(
            f"upsample_nearest: gradserve takes a 3-D or 4-D {what}, got {len(in_shape)}-D")
    if len(out) != len(in_shape) - 2:
        raise errors.InvalidArgumentError(
            f"It is expected output_size equals to {len(in_shape) - 2}, but got size {len(out)}")
    if any(s <= 0 for s in in_shape[2:]) or any(o <= 0 for o in out):
        names = ("H", "W")[4 - len(in_shape):]
        given = ", ".join(f"{n}: {s}" for n, s in zip(names, in_shape[2:]))
        wanted = ", ".join(f"{n}: {o}" for n, o in zip(names, out))
        joint = " and " if len(out) == 1 else " "
        raise errors.InvalidArgumentError("Input and output sizes should be greater than 0, but "
                                          f"got input ({given}){joint}output ({wanted})")


def _upsample_nearest(x: Any, output_size: Sequence[int], scale_h: float | None = None,
                      scale_w: float | None = None) -> Any:
    _check_upsample(x.shape, output_size, "input")
    if not x.shape[0] or not x.shape[1]:
        # an empty result: the indices would be sized by output_size alone (a (0, 1, 1, 1)
        # input to (2**31, 2**31) asked for 16 GiB of them)
        return np.empty((*x.shape[:2], *output_size), x.dtype)
    idx = _upsample_indices(x.shape[2:], output_size, scale_h, scale_w)
    if len(idx) == 1:
        return np.ascontiguousarray(x[:, :, idx[0]])
    return np.ascontiguousarray(x[:, :, idx[0][:, None], idx[1][None, :]])


def _upsample_nearest_backward(g: Any, input_size: Sequence[int], scale_h: float | None = None,
                               scale_w: float | None = None) -> Any:
    full = (*g.shape[:2], *input_size)
    _check_upsample(full, g.shape[2:], "grad_output")
    n, c = g.shape[:2]
    if not n * c:  # an empty result, whatever the indices input_size would ask for
        return np.zeros(full, g.dtype)
    idx = _upsample_indices(input_size, g.shape[2:], scale_h, scale_w)
    flat_idx = idx[0] if len(idx) == 1 else (idx[0][:, None] * input_size[1]
                                             + idx[1][None, :]).reshape(-1)
    out = np.zeros((n * c, math.prod(input_size)), g.dtype)
    gr = np.ascontiguousarray(g).reshape(n * c, -1)
    # torch adds each output's gradient in output order, so each input position's sum runs
    # over its readers in output order from 0 (see `_add_readers_in_order`)
    order = np.argsort(flat_idx, kind="stable")
    _add_readers_in_order(out, gr, order, flat_idx[order])
    return out.reshape(full)


def _add_readers_in_order(out: Any, gr: Any, order: Any, targets: Any) -> None:
    """`out[:, t] += gr[:, i]` for every reader i of every position t (`targets`: the positions
    of `order`'s readers, ascending, each position's readers in their order), each position's
    additions in that order, as torch's kernel. A position read many times is summed by one
    (sequential) accumulate; the others in rounds, round k adding every position's k-th
    reader. Either alone loops as often as some input can make positions or readers: a
    (1, 1, 16384) gradient to one position took 16,384 rounds over every reader (0.7 s; 2**22
    of them, hours). With both, at most ~2 sqrt(readers) Python steps."""
    heads = np.flatnonzero(np.diff(targets, prepend=-1))
    counts = np.diff(np.append(heads, targets.size))
    many = max(1, math.isqrt(targets.size))
    heavy = counts > many
    for h, k in zip(heads[heavy].tolist(), counts[heavy].tolist()):
        # 0 + the sequential sum: torch's running sum from 0 (signed zeros included)
        out[:, targets[h]] += np.add.accumulate(gr[:, order[h:h + k]], axis=1)[:, -1]
    rank = np.arange(targets.size) - np.repeat(heads, counts)
    chosen = np.flatnonzero(np.repeat(~heavy, counts))
    by_round = chosen[np.argsort(rank[chosen], kind="stable")]
    ranks = rank[by_round]
    ends = np.searchsorted(ranks, np.arange(1, int(ranks[-1]) + 2 if ranks.size else 1))
    start = 0
    for end in ends.tolist():
        # round k: each light position's k-th reader (no position twice)
        picked = by_round[start:end]
        out[:, targets[picked]] += gr[:, order[picked]]
        start = end


def _upsample_shape(x: Any, output_size: Sequence[int], **attrs: Any) -> tuple[int, ...]:
    _check_upsample(x.shape, output_size, "input")
    return (*tuple(x.shape)[:2], *(int(o) for o in output_size))


def _upsample_backward_shape(g: Any, input_size: Sequence[int], **attrs: Any) -> tuple[int, ...]:
    full = (*tuple(g.shape)[:2], *(int(s) for s in input_size))
    _check_upsample(full, g.shape[2:], "grad_output")
    return full


@names_backward("UpsampleNearest1DBackward0", "UpsampleNearest2DBackward0")
def _upsample_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    return "UpsampleNearest1DBackward0" if args and args[0].ndim == 3 else \
        "UpsampleNearest2DBackward0"


@names_backward("UpsampleNearest1DBackwardBackward0", "UpsampleNearest2DBackwardBackward0")
def _upsample_backward_name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    return "UpsampleNearest1DBackwardBackward0" if args and args[0].ndim == 3 else \
        "UpsampleNearest2DBackwardBackward0"


defop("upsample_nearest", _upsample_nearest,
      lambda ns, g, out, x, output_size, **attrs: ns.upsample_nearest_backward(
          g, input_size=tuple(x.shape[2:]), **attrs),
      saves="input.shape", attrs=(AttrSpec("output_size", "ints", required=True),
                                  *_UPSAMPLE_ATTRS),
      backward=_upsample_name, method=False,
      doc="nearest-neighbour resize of (N, C, L) or (N, C, H, W) to output_size (torch's "
          "source indices; scale_h/scale_w: the scale factors given, if any)",
      out_shape=_upsample_shape)
defop("upsample_nearest_backward", _upsample_nearest_backward,
      lambda ns, gg, out, g, input_size, **attrs: ns.upsample_nearest(
          gg, output_size=tuple(g.shape[2:]), **attrs),
      saves="grad_output.shape", inputs=("grad_output",),
      attrs=(AttrSpec("input_size", "ints", required=True), *_UPSAMPLE_ATTRS),
      backward=_upsample_backward_name, method=False,
      doc="the gradient of upsample_nearest's input of spatial size input_size: each output's "
          "gradient added where it read, in torch's order",
      out_shape=_upsample_backward_shape)


# --- constant padding ----------------------------------------------------------------------------
# torch's constant_pad_nd (F.pad's constant mode): pad = (left, right) pairs from the last dim
# backwards, negative entries cropping. Its gradient is the same op with the pads negated
# (torch's ConstantPadNdBackward0 formula), so every derivative order is this op.


def _pad_shape(x: Any, pad: Sequence[int], value: Any = 0) -> tuple[int, ...]:
    """The padded shape, after F.pad's checks (the pads come from the wire: nothing is sized
    before this has passed)."""
    shape, pad = list(x.shape), [int(p) for p in pad]
    if len(pad) % 2:
        raise errors.InvalidArgumentError("Padding length must be divisible by 2")
    if len(pad) // 2 > len(shape):
        raise errors.InvalidArgumentError(
            "Padding length should be less than or equal to two times the input dimension but "
            f"got padding length {len(pad)} and input of dimension {len(shape)}")
    for i in range(len(pad) // 2):
        d = len(shape) - 1 - i
        left, right = pad[2 * i], pad[2 * i + 1]
        if shape[d] + min(left, 0) + min(right, 0) < 0:
            raise errors.InvalidArgumentError("narrow(): length must be non-negative.")
        shape[d] += left + right
    return tuple(shape)


def _constant_pad_nd(x: Any, pad: Sequence[int], value: Any = 0) -> Any:
    shape = _pad_shape(x, pad, value)
    out = np.full(shape, np.asarray(value).astype(x.dtype), dtype=x.dtype)
    src: list[slice] = [slice(None)] * x.ndim
    dst: list[slice] = [slice(None)] * x.ndim
    for i in range(len(pad) // 2):
        d = x.ndim - 1 - i
        left, right = int(pad[2 * i]), int(pad[2 * i + 1])
        src[d] = slice(max(-left, 0), x.shape[d] - max(-right, 0))
        dst[d] = slice(max(left, 0), max(left, 0) + x.shape[d] - max(-left, 0) - max(-right, 0))
    out[tuple(dst)] = x[tuple(src)]
    return out


defop("constant_pad_nd", _constant_pad_nd,
      lambda ns, g, out, x, pad, value: ns.constant_pad_nd(g, pad=tuple(-p for p in pad),
                                                            value=0),
      saves="", attrs=(AttrSpec("pad", "ints", required=True), AttrSpec("value", "scalar", 0)),
      backward="ConstantPadNdBackward0", method=False,
      doc="input padded with value (pad: (left, right) pairs from the last dim backwards; "
          "negative entries crop), as F.pad's constant mode",
      out_shape=_pad_shape)
