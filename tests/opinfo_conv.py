"""OpInfos for engine/ops_conv.py: convolution and its input and weight gradients."""

from __future__ import annotations

from typing import Any

from tests.reference import torch

from .opinfo import OpInfo, Sample


def _attrs(stride: Any, padding: Any, dilation: Any, groups: int = 1) -> dict[str, Any]:
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _convolution_torch(x: Any, w: Any, b: Any = None, stride: Any = (1,), padding: Any = (0,),
                       dilation: Any = (1,), groups: int = 1) -> Any:
    return torch.convolution(x, w, b, list(stride), list(padding), list(dilation), False,
                             [0] * len(stride), groups)


def _backward_input_torch(g: Any, w: Any, input_shape: Any = (), **attrs: Any) -> Any:
    x = torch.zeros(tuple(input_shape), dtype=g.dtype, requires_grad=True)
    (dx,) = torch.autograd.grad(_convolution_torch(x, w, None, **attrs), x, g,
                                create_graph=True)
    return dx


def _backward_weight_torch(g: Any, x: Any, weight_shape: Any = (), **attrs: Any) -> Any:
    w = torch.zeros(tuple(weight_shape), dtype=g.dtype, requires_grad=True)
    (dw,) = torch.autograd.grad(_convolution_torch(x, w, None, **attrs), w, g,
                                create_graph=True)
    return dw


def _backward_bias_torch(g: Any, weight_shape: Any = ()) -> Any:
    d = len(weight_shape) - 2
    x = torch.zeros((g.shape[0], weight_shape[1], *(
        s + k - 1 for s, k in zip(g.shape[2:], weight_shape[2:]))), dtype=g.dtype)
    b = torch.zeros(weight_shape[0], dtype=g.dtype, requires_grad=True)
    w = torch.zeros(tuple(weight_shape), dtype=g.dtype)
    (db,) = torch.autograd.grad(torch.nn.functional.conv2d(x, w, b) if d == 2 else
                                torch.nn.functional.conv1d(x, w, b), b, g, create_graph=True)
    return db


def _transpose_torch(x: Any, w: Any, b: Any = None, stride: Any = (1,), padding: Any = (0,),
                     output_padding: Any = (0,), dilation: Any = (1,), groups: int = 1) -> Any:
    return torch.convolution(x, w, b, list(stride), list(padding), list(dilation), True,
                             list(output_padding), groups)


def _t_attrs(stride: Any, padding: Any, output_padding: Any, dilation: Any,
             groups: int = 1) -> dict[str, Any]:
    return {"stride": stride, "padding": padding, "output_padding": output_padding,
            "dilation": dilation, "groups": groups}


# (input, weight, attributes) of a transposed convolution: 2-d and 1-d, stride with
# output_padding, padding, dilation, groups
TRANSPOSED = [((2, 4, 3, 3), (4, 3, 3, 3), _t_attrs((2, 2), (1, 1), (1, 1), (1, 1))),
              ((1, 2, 4, 3), (2, 2, 2, 3), _t_attrs((1, 2), (0, 1), (0, 1), (2, 1))),
              ((2, 4, 3, 2), (4, 1, 3, 2), _t_attrs((1, 1), (0, 0), (0, 0), (1, 1), 2)),
              ((2, 3, 4), (3, 2, 3), _t_attrs((2,), (1,), (1,), (1,))),
              ((1, 4, 5), (4, 3, 2), _t_attrs((3,), (0,), (2,), (2,), 2))]


# (input, weight, output, attributes): 2-d (batches of 1 and more, stride, padding, dilation,
# groups) and 1-d
CASES = [((2, 3, 5, 5), (4, 3, 3, 3), (2, 4, 3, 3), _attrs((1, 1), (0, 0), (1, 1))),
         ((1, 2, 5, 4), (3, 2, 2, 3), (1, 3, 3, 2), _attrs((2, 1), (1, 0), (1, 1))),
         ((2, 4, 6, 5), (4, 2, 3, 2), (2, 4, 2, 6), _attrs((1, 1), (0, 1), (2, 1), 2)),
         ((2, 3, 7), (2, 3, 3), (2, 2, 4), _attrs((2,), (1,), (1,))),
         ((1, 2, 6), (4, 1, 2), (1, 4, 4), _attrs((1,), (0,), (2,), 2))]

OPINFOS = [
    OpInfo("convolution", _convolution_torch,
           [Sample((x, w, (w[0],)), a) for x, w, _, a in CASES]
           + [Sample((x, w, None), a) for x, w, _, a in CASES[:2]]),
    OpInfo("convolution_backward_input", _backward_input_torch,
           [Sample((g, w), {"input_shape": x, **a}) for x, w, g, a in CASES]),
    OpInfo("convolution_backward_weight", _backward_weight_torch,
           [Sample((g, x), {"weight_shape": w, **a}) for x, w, g, a in CASES]),
    OpInfo("convolution_transpose", _transpose_torch,
           [Sample((x, w, (w[1] * a["groups"],)), a) for x, w, a in TRANSPOSED]
           + [Sample((x, w, None), a) for x, w, a in TRANSPOSED[:2]]),
    OpInfo("convolution_backward_bias", _backward_bias_torch,
           [Sample(((2, 4, 3, 3),), {"weight_shape": (4, 3, 3, 3)}),
            Sample(((5, 2, 4, 6),), {"weight_shape": (2, 8, 2, 2)}),
            Sample(((3, 2, 4),), {"weight_shape": (2, 3, 3)})]),
]
