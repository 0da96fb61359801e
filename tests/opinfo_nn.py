"""OpInfos for engine/ops_nn.py: softmax, log_softmax and the losses."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.reference import torch

from .opinfo import OpInfo, Sample

F = torch.nn.functional


def uniform(shape: tuple[int, ...], lo: float, hi: float) -> Any:
    # float32: the client-side harness passes callable inputs through uncast, and torch's losses
    # refuse a float64 weight or target next to a float32 input (the engine harness recasts).
    return lambda rng: np.asarray(rng.uniform(lo, hi, size=shape), dtype=np.float32)


def classes(shape: tuple[int, ...], n: int, ignore: int | None = None) -> Any:
    """Class indices in [0, n), with some set to `ignore` when given."""
    def make(rng: np.random.Generator) -> np.ndarray:
        t = rng.integers(0, n, size=shape).astype(np.int64)
        if ignore is not None and t.size:
            t.reshape(-1)[:: 3] = ignore
        return t
    return make


def _dtype(d: Any) -> Any:
    return None if d is None else getattr(torch, d)


SOFTMAX_SAMPLES = [Sample(((2, 3),), {"dim": 1}), Sample(((2, 3),), {"dim": 0}),
                   Sample(((2, 3, 4),), {"dim": -1}), Sample(((4,),), {"dim": 0}),
                   Sample(((),), {"dim": 0}), Sample(((2, 3),), {"dim": 1, "dtype": "float64"})]

REDUCTIONS = ("mean", "sum", "none")
NO_WEIGHT_GRAD = (True, False, False)  # torch: weights are not differentiable


def _pointwise(shapes: list[tuple[Any, ...]]) -> list[Sample]:
    return [Sample(s, {"reduction": r}) for s in shapes for r in REDUCTIONS]


def _nll_torch(x: Any, t: Any, w: Any = None, ignore_index: int = -100,
               reduction: str = "mean") -> Any:
    return F.nll_loss(x, t, w, ignore_index=ignore_index, reduction=reduction)


def _nll_backward_torch(go: Any, t: Any, w: Any = None, shape: Any = (),
                        ignore_index: int = -100, reduction: str = "mean") -> Any:
    x = torch.zeros(tuple(shape), dtype=go.dtype, requires_grad=True)
    out = F.nll_loss(x, t, w, ignore_index=ignore_index, reduction=reduction)
    (g,) = torch.autograd.grad(out, x, go, create_graph=True)
    return g


def _nll_samples() -> list[Sample]:
    out = []
    for r in REDUCTIONS:
        out += [Sample(((4, 3), classes((4,), 3), None), {"reduction": r}),
                Sample(((4, 3), classes((4,), 3), uniform((3,), 0.5, 2.0)), {"reduction": r},
                       NO_WEIGHT_GRAD),
                Sample(((5, 3), classes((5,), 3, ignore=1), None),
                       {"reduction": r, "ignore_index": 1}),
                Sample(((2, 3, 4), classes((2, 4), 3), None), {"reduction": r})]
    out += [Sample(((3,), classes((), 3), None)),
            Sample(((5, 3), classes((5,), 3, ignore=-100), uniform((3,), 0.5, 2.0)), {},
                   NO_WEIGHT_GRAD)]
    return out


def _nll_backward_samples() -> list[Sample]:
    out = []
    for r in REDUCTIONS:
        go = (4,) if r == "none" else ()
        out += [Sample((go, classes((4,), 3), None), {"shape": (4, 3), "reduction": r}),
                Sample((go, classes((4,), 3), uniform((3,), 0.5, 2.0)),
                       {"shape": (4, 3), "reduction": r}, NO_WEIGHT_GRAD),
                Sample(((2, 4) if r == "none" else (), classes((2, 4), 3), None),
                       {"shape": (2, 3, 4), "reduction": r})]
    return out


def _smooth_torch(x: Any, t: Any, w: Any = None, ignore_index: int = -100,
                  reduction: str = "mean") -> Any:
    # torch's smooth term of cross_entropy_loss_label_smoothing, built from its own ops
    dim = 0 if x.ndim == 1 else 1
    view = [1] * x.ndim
    view[dim] = x.shape[dim]
    smooth = -(x if w is None else x * w.reshape(view)).sum(dim)
    keep = t != ignore_index
    smooth.masked_fill_(~keep, 0.0)
    if reduction == "none":
        return smooth
    if reduction == "sum":
        return smooth.sum()
    return smooth.sum() / (keep.sum() if w is None else w[t[keep]].sum())


def _smooth_backward_torch(go: Any, t: Any, w: Any = None, shape: Any = (),
                           ignore_index: int = -100, reduction: str = "mean") -> Any:
    x = torch.zeros(tuple(shape), dtype=go.dtype, requires_grad=True)
    out = _smooth_torch(x, t, w, ignore_index=ignore_index, reduction=reduction)
    (g,) = torch.autograd.grad(out, x, go, create_graph=True)
    return g


def _layer_norm_torch(x: Any, w: Any = None, b: Any = None, normalized_shape: Any = (),
                      eps: float = 1e-5) -> Any:
    return F.layer_norm(x, tuple(normalized_shape), w, b, eps)


def _group_norm_torch(x: Any, w: Any = None, b: Any = None, num_groups: int = 1,
                      eps: float = 1e-5) -> Any:
    return F.group_norm(x, num_groups, w, b, eps)


def _upsample_nearest_torch(x: Any, output_size: Any = (), scale_h: Any = None,
                            scale_w: Any = None) -> Any:
    if x.ndim == 3:
        return torch.ops.aten.upsample_nearest1d.default(x, list(output_size), scale_w)
    return torch.ops.aten.upsample_nearest2d.default(x, list(output_size), scale_h, scale_w)


def _upsample_nearest_backward_torch(g: Any, input_size: Any = (), **attrs: Any) -> Any:
    x = torch.zeros((*g.shape[:2], *input_size), dtype=g.dtype, requires_grad=True)
    (dx,) = torch.autograd.grad(_upsample_nearest_torch(x, tuple(g.shape[2:]), **attrs), x, g,
                                create_graph=True)
    return dx


def _constant_pad_torch(x: Any, pad: Any = (), value: Any = 0) -> Any:
    return F.pad(x, tuple(pad), value=value)


def _batch_norm_torch(x: Any, w: Any = None, b: Any = None, rm: Any = None, rv: Any = None,
                      training: bool = False, eps: float = 1e-5) -> Any:
    rm = None if rm is None else rm.detach().clone()
    rv = None if rv is None else rv.detach().clone()
    return F.batch_norm(x, rm, rv, w, b, training, 0.1, eps)


def _batch_norm_running_torch(x: Any, w: Any, b: Any, rm: Any, rv: Any, momentum: float = 0.1,
                              var: bool = False) -> Any:
    rm, rv = rm.detach().clone(), rv.detach().clone()
    F.batch_norm(x.detach(), rm, rv, w, b, True, momentum)
    return rv if var else rm


_BN_GRAD = (True, True, True, False, False)


def _cross_entropy_torch(x: Any, t: Any, w: Any = None, ignore_index: int = -100,
                        reduction: str = "mean", label_smoothing: float = 0.0) -> Any:
    return F.cross_entropy(x, t, w, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


def _cross_entropy_samples() -> list[Sample]:
    out = []
    for r in REDUCTIONS:
        out += [Sample(((4, 3), classes((4,), 3), None), {"reduction": r}),
                Sample(((4, 3), classes((4,), 3), uniform((3,), 0.5, 2.0)), {"reduction": r},
                       NO_WEIGHT_GRAD),
                Sample(((5, 3), classes((5,), 3, ignore=1), None),
                       {"reduction": r, "ignore_index": 1}),
                Sample(((2, 3, 4), classes((2, 4), 3), None), {"reduction": r}),
                Sample(((4, 3), uniform((4, 3), 0.0, 1.0), None), {"reduction": r}),
                Sample(((4, 3), uniform((4, 3), 0.0, 1.0), uniform((3,), 0.5, 2.0)),
                       {"reduction": r, "label_smoothing": 0.2}, NO_WEIGHT_GRAD),
                Sample(((2, 3, 2), uniform((2, 3, 2), 0.0, 1.0), None), {"reduction": r})]
        # label smoothing with class indices: (1 - ls) * nll_loss + ls / C * smooth term
        out += [Sample(((4, 3), classes((4,), 3), None), {"reduction": r, "label_smoothing": 0.1}),
                Sample(((5, 3), classes((5,), 3, ignore=1), uniform((3,), 0.5, 2.0)),
                       {"reduction": r, "ignore_index": 1, "label_smoothing": 0.3},
                       NO_WEIGHT_GRAD),
                Sample(((2, 3, 4), classes((2, 4), 3), None),
                       {"reduction": r, "label_smoothing": 1.0})]
    out += [Sample(((3,), classes((), 3), None)),
            Sample(((3,), uniform((3,), 0.0, 1.0), None)),
            Sample(((3,), classes((), 3), None), {"label_smoothing": 0.5})]
    return out


def _pack_padded_sequence_torch(x, batch_sizes, batch_first=False):
    """torch's kernel takes the lengths the batch sizes count (every sequence has a step)."""
    batch = x.shape[0] if batch_first else x.shape[1]
    lengths = torch.tensor([sum(1 for s in batch_sizes if s > b) for b in range(batch)])
    return torch._pack_padded_sequence(x, lengths, batch_first)[0]


OPINFOS = [
    OpInfo("softmax", lambda x, dim, dtype=None: torch.softmax(x, dim, dtype=_dtype(dtype)),
           SOFTMAX_SAMPLES),
    OpInfo("log_softmax",
           lambda x, dim, dtype=None: torch.log_softmax(x, dim, dtype=_dtype(dtype)),
           SOFTMAX_SAMPLES + [Sample(((5, 11),), {"dim": 1}), Sample(((3, 2, 19),), {"dim": 2})]),
    # softmax's gradient as its own op (SoftmaxBackwardDataBackward0), as torch's
    OpInfo("softmax_backward_data",
           lambda g, out, dim: torch.ops.aten._softmax_backward_data(g, out, dim, out.dtype),
           [Sample(((2, 3), (2, 3)), {"dim": 1}), Sample(((2, 3), (2, 3)), {"dim": 0}),
            Sample(((4, 9), (4, 9)), {"dim": -1}), Sample(((3, 2, 17), (3, 2, 17)), {"dim": 2}),
            Sample(((4,), (4,)), {"dim": 0})]),
    # log_softmax's gradient as its own op (LogSoftmaxBackwardDataBackward0), as torch's
    OpInfo("log_softmax_backward_data",
           lambda g, out, dim: torch.ops.aten._log_softmax_backward_data(g, out, dim, out.dtype),
           [Sample(((2, 3), (2, 3)), {"dim": 1}), Sample(((2, 3), (2, 3)), {"dim": 0}),
            Sample(((4, 9), (4, 9)), {"dim": -1}), Sample(((3, 2, 17), (3, 2, 17)), {"dim": 2}),
            Sample(((4,), (4,)), {"dim": 0})]),
    OpInfo("mse_loss", lambda x, t, reduction="mean": F.mse_loss(x, t, reduction=reduction),
           _pointwise([((2, 3), (2, 3)), ((4,), (4,)), ((), ())])),
    OpInfo("l1_loss", lambda x, t, reduction="mean": F.l1_loss(x, t, reduction=reduction),
           _pointwise([((2, 3), (2, 3)), ((4,), (4,))])),
    OpInfo("smooth_l1_loss",
           lambda x, t, reduction="mean", beta=1.0: F.smooth_l1_loss(x, t, reduction=reduction,
                                                                      beta=beta),
           _pointwise([((2, 3), (2, 3)), ((4,), (4,))])
           + [Sample(((3, 4), (3, 4)), {"beta": b}) for b in (0.3, 2.5)]),
    OpInfo("huber_loss",
           lambda x, t, reduction="mean", delta=1.0: F.huber_loss(x, t, reduction=reduction,
                                                                  delta=delta),
           _pointwise([((2, 3), (2, 3)), ((4,), (4,))])
           + [Sample(((3, 4), (3, 4)), {"delta": d}) for d in (0.3, 2.5)]),
    OpInfo("binary_cross_entropy",
           lambda x, t, w=None, reduction="mean": F.binary_cross_entropy(
               x, t, w, reduction=reduction),
           [Sample((uniform((2, 3), 0.05, 0.95), uniform((2, 3), 0.0, 1.0), None),
                   {"reduction": r}) for r in REDUCTIONS]
           + [Sample((uniform((4,), 0.05, 0.95), uniform((4,), 0.0, 1.0),
                      uniform((4,), 0.5, 2.0)), {"reduction": r}, (True, True, False))
              for r in REDUCTIONS]
           + [Sample((uniform((3,), 0.05, 0.95), uniform((3,), 0.0, 1.0), None))]),
    OpInfo("binary_cross_entropy_with_logits",
           lambda x, t, w=None, pw=None, reduction="mean": F.binary_cross_entropy_with_logits(
               x, t, w, reduction=reduction, pos_weight=pw),
           [Sample(((2, 3), uniform((2, 3), 0.0, 1.0), None, None), {"reduction": r})
            for r in REDUCTIONS]
           + [Sample(((2, 3), uniform((2, 3), 0.0, 1.0), uniform((3,), 0.5, 2.0),
                      uniform((3,), 0.5, 3.0)), {"reduction": r}, (True, True, False, False))
              for r in REDUCTIONS]
           + [Sample(((4,), uniform((4,), 0.0, 1.0), None, uniform((4,), 0.5, 3.0)), {},
                     (True, True, False, False))],
           domain=(-4.0, 4.0)),
    OpInfo("nll_loss", _nll_torch, _nll_samples()),
    OpInfo("cross_entropy", _cross_entropy_torch, _cross_entropy_samples()),
    OpInfo("nll_loss_backward", _nll_backward_torch, _nll_backward_samples()),
    OpInfo("label_smoothing_loss", _smooth_torch, _nll_samples()),
    OpInfo("label_smoothing_loss_backward", _smooth_backward_torch, _nll_backward_samples()),
    OpInfo("layer_norm", _layer_norm_torch,
           [Sample(((3, 4), (4,), (4,)), {"normalized_shape": (4,)}),
            Sample(((2, 3, 5), None, None), {"normalized_shape": (3, 5), "eps": 1e-3}),
            Sample(((2, 11), (11,), None), {"normalized_shape": (11,)}),
            Sample(((4, 2, 3), (2, 3), None), {"normalized_shape": (2, 3)})]),
    # the forward is torch's bits (tests/test_nn_layers_more.py); the backward is composed
    OpInfo("group_norm", _group_norm_torch,
           [Sample(((2, 6, 3, 2), (6,), (6,)), {"num_groups": 3}),
            Sample(((3, 4), None, None), {"num_groups": 2, "eps": 1e-3}),
            Sample(((2, 4, 5), (4,), None), {"num_groups": 1}),
            Sample(((2, 4, 5), (4,), (4,)), {"num_groups": 4})]),
    OpInfo("im2col", lambda x, kernel_size, dilation, padding, stride: torch.ops.aten.im2col(
               x, kernel_size, dilation, padding, stride),
           [Sample(((2, 3, 5, 6),), {"kernel_size": (2, 3), "dilation": (1, 1),
                                     "padding": (1, 1), "stride": (2, 2)}),
            Sample(((3, 5, 6),), {"kernel_size": (2, 2), "dilation": (1, 1),
                                  "padding": (0, 0), "stride": (1, 1)}),
            Sample(((1, 2, 7, 7),), {"kernel_size": (3, 3), "dilation": (2, 1),
                                     "padding": (2, 0), "stride": (1, 2)})]),
    OpInfo("col2im", lambda x, output_size, kernel_size, dilation, padding, stride:
           torch.ops.aten.col2im(x, output_size, kernel_size, dilation, padding, stride),
           [Sample(((2, 18, 9),), {"output_size": (5, 6), "kernel_size": (2, 3),
                                   "dilation": (1, 1), "padding": (1, 1), "stride": (2, 2)}),
            Sample(((8, 12),), {"output_size": (4, 5), "kernel_size": (2, 2),
                                "dilation": (1, 1), "padding": (0, 0), "stride": (1, 1)}),
            Sample(((1, 18, 21),), {"output_size": (7, 7), "kernel_size": (3, 3),
                                    "dilation": (2, 1), "padding": (2, 0), "stride": (1, 2)})]),
    OpInfo("reflection_pad", lambda x, padding: torch.nn.functional.pad(x, padding, "reflect"),
           [Sample(((1, 2, 4, 5),), {"padding": (2, 1, 3, 0)}),
            Sample(((2, 3, 5),), {"padding": (2, 3)}),
            Sample(((1, 2, 3, 4, 5),), {"padding": (1, 1, 1, 1, 2, 2)}),
            Sample(((1, 2, 4, 5),), {"padding": (-1, 2, 3, -1)})]),
    OpInfo("replication_pad",
           lambda x, padding: torch.nn.functional.pad(x, padding, "replicate"),
           [Sample(((1, 2, 4, 5),), {"padding": (2, 1, 3, 0)}),
            Sample(((2, 6),), {"padding": (5, 5)}),
            Sample(((2, 3, 4, 5),), {"padding": (1, 2, 0, 1, 1, 1)})]),
    OpInfo("reflection_pad_backward",
           lambda g, input_size, padding: torch.ops.aten.reflection_pad2d_backward(
               g, torch.empty(input_size), padding),
           [Sample(((1, 2, 7, 8),), {"input_size": (1, 2, 4, 5), "padding": (2, 1, 3, 0)})]),
    OpInfo("replication_pad_backward",
           lambda g, input_size, padding: torch.ops.aten.replication_pad2d_backward(
               g, torch.empty(input_size), padding),
           [Sample(((1, 2, 7, 8),), {"input_size": (1, 2, 4, 5), "padding": (2, 1, 3, 0)})]),
    OpInfo("upsample_nearest", _upsample_nearest_torch,
           [Sample(((2, 3, 4, 5),), {"output_size": (8, 10), "scale_h": 2.0, "scale_w": 2.0}),
            Sample(((1, 2, 4, 5),), {"output_size": (7, 3)}),
            Sample(((2, 2, 3, 4),), {"output_size": (5, 6), "scale_h": 1.7, "scale_w": 1.5}),
            Sample(((2, 3, 6),), {"output_size": (10,), "scale_w": 1.7}),
            Sample(((2, 3, 6),), {"output_size": (4,)})]),
    OpInfo("upsample_nearest_backward", _upsample_nearest_backward_torch,
           [Sample(((2, 3, 8, 10),), {"input_size": (4, 5), "scale_h": 2.0, "scale_w": 2.0}),
            Sample(((1, 2, 7, 3),), {"input_size": (4, 5)}),
            Sample(((2, 3, 10),), {"input_size": (6,), "scale_w": 1.7})]),
    OpInfo("constant_pad_nd", _constant_pad_torch,
           [Sample(((2, 3),), {"pad": (1, 2)}),
            Sample(((2, 3, 4),), {"pad": (1, 0, 2, 1), "value": 0.5}),
            Sample(((2, 3, 4),), {"pad": (-1, 2, 0, -1)}),
            Sample(((3,),), {"pad": (2, 2), "value": -1.0}),
            Sample(((2, 2, 2),), {"pad": (0, 0, 0, 0, 1, 1)})]),
    # the domain keeps the running variances positive
    OpInfo("batch_norm", _batch_norm_torch,
           [Sample(((4, 3), (3,), (3,), (3,), (3,)), {"training": True}, _BN_GRAD),
            Sample(((4, 3, 5), (3,), None, None, None), {"training": True, "eps": 1e-3},
                   (True, True, False, False, False)),
            Sample(((2, 3, 2, 3), (3,), (3,), (3,), (3,)), {"training": True},
                   (True, False, True, False, False)),
            Sample(((4, 3, 5), (3,), (3,), (3,), (3,)), {"training": False}, _BN_GRAD),
            Sample(((5, 2), (2,), (2,), (2,), (2,)), {"eps": 0.1}, _BN_GRAD)],
           domain=(0.5, 2.0)),
    OpInfo("_pack_padded_sequence", _pack_padded_sequence_torch,
           [Sample(((4, 3, 2),), {"batch_sizes": (3, 2, 2, 1)}),
            Sample(((5, 3),), {"batch_sizes": (3, 3, 1)}),
            Sample(((2, 4, 2, 2),), {"batch_sizes": (2, 2, 1), "batch_first": True}),
            Sample(((3, 1, 2),), {"batch_sizes": (1, 1, 1)}),
            Sample(((3, 2),), {"batch_sizes": (3, 1), "batch_first": True})]),
    OpInfo("batch_norm_running", _batch_norm_running_torch,
           [Sample(((4, 3), (3,), (3,), (3,), (3,)), {"momentum": 0.3}),
            Sample(((2, 3, 4), None, None, (3,), (3,)), {"var": True}),
            Sample(((3, 2, 2, 2), (2,), None, (2,), (2,)), {"momentum": 0.7, "var": True})],
           domain=(0.5, 2.0), check_grad=False, check_second_order=False,
           check_finite_differences=False),
]
