"""Which op results are contiguous, known before the server runs the op (`Meta.contiguous`).

`nn.functional.linear` takes torch's graph for an input of three or more dims only when it
knows the input is contiguous (flattened to 2-D, one addmm, viewed back: ViewBackward0, and
MKL's rounding of a bias added inside the product); the client otherwise records matmul then
add, which rounds differently from 256 in-features on. The client knows a layout the server
described; these rules let it know the layout of a result it inferred, as `meta.infer` infers
its shape, so the common stacks (an embedding or a layer norm, then linear layers and
activations) take torch's path through a session without a round trip per layer. They only
ever answer True: None means unknown, never "not contiguous".

Read off torch 2.13's results (tests/test_surface_meta.py checks every rule against the
engine on the ops' OpInfo samples; a session under `GRADSERVE_VERIFY_META=1` checks each
inferred result against the server's description):

- `ALWAYS`: a new tensor in row-major order whatever its inputs' layouts (matrix products,
  factories).
- `PRESERVED`: contiguous when every tensor input is (elementwise ops, reductions, softmax,
  reshapes and the like, concatenation).
- `cat` and `stack` of tensors of at most three dims, whatever their layouts (torch keeps an
  input layout only for a channels-last format, which needs four).
- any result of at most one element (torch's `is_contiguous` skips size-1 dims).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .memory_format import contiguous_format, preserve_format

ALWAYS = frozenset((
    "addbmm", "addmm", "arange", "baddbmm", "bmm", "col2im", "dot", "eye", "full", "im2col",
    "linspace", "matmul", "mm", "ones", "outer", "rand", "randn", "reflection_pad",
    "reflection_pad_backward", "replication_pad", "replication_pad_backward", "zeros",
))

PRESERVED = frozenset((
    # elementwise
    "_celu_result", "_elu_result", "_leaky_relu_result", "_selu_result",
    "abs", "acos", "acosh", "add", "add_scalar", "addcdiv", "addcmul", "asin", "asinh", "atan",
    "atan2", "atanh", "bitwise_and", "bitwise_left_shift", "bitwise_not", "bitwise_or",
    "bitwise_right_shift", "bitwise_xor", "ceil", "celu", "clamp", "clamp_max", "clamp_min",
    "clone", "cos", "cosh", "div", "div_scalar", "elu", "eq", "erf", "erfc", "exp", "expm1",
    "floor", "floor_divide", "fmax", "fmin", "fmod", "frac", "ge", "gelu", "gt", "hardsigmoid",
    "hardswish", "hardtanh", "hypot", "isfinite", "isinf", "isnan", "le", "leaky_relu", "lerp",
    "lerp_scalar", "log",
    "log10", "log1p", "log2", "log_sigmoid", "logaddexp", "logical_and", "logical_not",
    "logical_or", "logical_xor", "lt", "masked_fill", "maximum", "minimum", "mish", "mul",
    "mul_scalar", "nan_to_num", "ne", "neg", "pow", "reciprocal", "relu", "remainder", "round",
    "rsqrt", "selu", "sgn", "sigmoid", "sign", "silu", "sin", "sinh", "softplus", "sqrt",
    "square", "sub", "tan", "tanh", "to_dtype", "trunc", "where", "xlogy",
    # whole-tensor and reducing
    "amax", "amin", "cat", "cumprod", "cumsum", "layer_norm", "log_softmax", "logsumexp",
    "max_dim", "mean", "min_dim", "norm_dim", "prod", "softmax", "stack", "std", "sum", "var",
    # reshaping a contiguous tensor
    "flatten", "reshape", "squeeze", "unsqueeze",
))


_CONCATENATING = frozenset(("cat", "stack"))


def contiguous_result(op: str, inputs: Sequence[Any],
                      attrs: Mapping[str, Any] | None = None) -> bool:
    """Whether op `op`'s results are contiguous for these inputs, as far as the rules know.

    Args:
        op: the op's catalogue name.
        inputs: its inputs as `meta.infer` takes them (tensors as objects with `.contiguous`:
            True when known contiguous; a list of them for a variadic op).
        attrs: its attributes as given (`memory_format` of clone, to_dtype and the *_like
            ops: "contiguous" makes a contiguous result, a channels-last one does not).

    Returns:
        True when every result is known contiguous; False when unknown.
    """
    if op in ALWAYS:
        return True
    fmt = attrs.get("memory_format") if attrs else None
    if fmt is not None and fmt != "preserve" and fmt is not preserve_format:
        return fmt == "contiguous" or fmt is contiguous_format
    if op in _CONCATENATING and inputs and isinstance(inputs[0], list) and all(
            len(getattr(t, "shape", (0, 0, 0, 0))) <= 3 for t in inputs[0]):
        return True
    if op not in PRESERVED:
        return False
    for a in inputs:
        if isinstance(a, list):
            if not all(getattr(t, "contiguous", None) is True for t in a):
                return False
        elif getattr(a, "shape", ()) and getattr(a, "contiguous", None) is not True:
            return False  # a tensor with dims (a scalar or a 0-d tensor has no layout)
    return True
