"""OpInfos for the elementwise ops (engine/ops_elementwise.py) and the core shape/reduce ops
(reshape, expand, sum_to_size, sum, mean) that the backward pass itself relies on.

Input specs: a shape is a random floating tensor in the OpInfo's domain; Python scalars are
passed as they are; callables build special inputs (positive values, ties, bool masks, ints).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.reference import torch

from .opinfo import OpInfo, Sample

F = torch.nn.functional

# --- input builders ------------------------------------------------------------------------------


def uniform(shape: tuple[int, ...], lo: float, hi: float) -> Any:
    """Values in [lo, hi), whatever the OpInfo's domain."""
    return lambda rng: np.asarray(rng.uniform(lo, hi, size=shape))


def positive(shape: tuple[int, ...]) -> Any:
    """Values in [0.5, 2) (denominators, log / sqrt arguments, pow bases)."""
    return uniform(shape, 0.5, 2.0)


def away_from_zero(shape: tuple[int, ...]) -> Any:
    """Values in ±[0.5, 2) (divisors of either sign)."""
    return lambda rng: np.asarray(rng.uniform(0.5, 2.0, size=shape)
                                  * rng.choice([-1.0, 1.0], size=shape))


def ties(shape: tuple[int, ...]) -> Any:
    """Values from {-1, 0, 1} as floats, so that two such inputs tie often."""
    return lambda rng: np.asarray(rng.integers(-1, 2, size=shape), dtype=np.float64)


def ints(shape: tuple[int, ...], lo: int = -3, hi: int = 4, dtype: Any = np.int64) -> Any:
    return lambda rng: np.asarray(rng.integers(lo, hi, size=shape), dtype=dtype)


def mask(shape: tuple[int, ...]) -> Any:
    return lambda rng: np.asarray(rng.random(size=shape) > 0.5)


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


# Standard operand pairs: same shape, broadcasting, 0-dim, and Python scalars on either side.
BROADCAST = [((3,), (3,)), ((2, 3), (3,)), ((), (2,)), ((2, 1, 3), (4, 1))]
SCALARS = [((2, 3), 2.5), (1.5, (2, 3)), ((2, 3), 2), (3, (2, 3))]


def binary_samples(*, scalars: bool = True, right_scalars_only: bool = False) -> list[Sample]:
    pairs = list(BROADCAST)
    if scalars:
        pairs += [p for p in SCALARS if not right_scalars_only or not isinstance(p[1], tuple)]
    return [Sample(p) for p in pairs]


def unary_samples() -> list[Sample]:
    return [Sample(((3,),)), Sample(((2, 3),)), Sample(((),))]


# --- arithmetic ----------------------------------------------------------------------------------

ARITHMETIC = [
    OpInfo("add", lambda x, y, alpha=1: x + y if alpha == 1 else torch.add(x, y, alpha=alpha),
           binary_samples() + [Sample(((2, 3), (3,)), {"alpha": 2.5}),
                               Sample(((2, 3), 3), {"alpha": -2}),
                               Sample((ints((2, 3)), (3,))),
                               Sample((ints((2, 3)), 2.5)),
                               Sample((ints((2, 3)), ints((3,))))]),
    OpInfo("sub", lambda x, y, alpha=1: x - y if alpha == 1 else torch.sub(x, y, alpha=alpha),
           binary_samples() + [Sample(((2, 3), (3,)), {"alpha": 0.5}),
                               Sample((ints((2, 3)), 1.5))]),
    OpInfo("mul", lambda x, y: x * y,
           binary_samples() + [Sample((ints((2, 3)), (3,))),
                               Sample((mask((2, 3)), ints((3,))))]),
    OpInfo("_prelu_kernel", torch._prelu_kernel,
           [Sample(((2, 3, 4), (3, 1))), Sample(((2, 3, 4, 2), (3, 1, 1))), Sample(((4,), (1,))),
            Sample(((2, 3), ())),
            Sample(((2, 3), (3,)), {}, (True, False)), Sample(((5,), (5,)), {}, (False, True))]),
    # torch's C++ Scalar overloads (what its composite ops call): AddBackward1, MulBackward1,
    # DivBackward1
    OpInfo("add_scalar", lambda x, other: torch.ops.aten.add.Scalar(x, other),
           [Sample(((2, 3),), {"other": 2.5}), Sample(((),), {"other": -2}),
            Sample((ints((2, 3)),), {"other": 3}), Sample((ints((3,)),), {"other": 0.5})]),
    OpInfo("mul_scalar", lambda x, other: torch.ops.aten.mul.Scalar(x, other),
           [Sample(((2, 3),), {"other": 2.5}), Sample(((),), {"other": -2}),
            Sample((ints((2, 3)),), {"other": 3}), Sample((ints((3,)),), {"other": 0.5})]),
    OpInfo("div_scalar", lambda x, other: torch.ops.aten.div.Scalar(x, other),
           [Sample(((2, 3),), {"other": 2.5}), Sample(((),), {"other": -2}),
            Sample((ints((2, 3)),), {"other": 4}), Sample((ints((3,)),), {"other": 0.5})]),
    OpInfo("div", torch.div,
           [Sample(((3,), away_from_zero((3,)))), Sample(((2, 3), away_from_zero((3,)))),
            Sample(((), away_from_zero((2,)))), Sample(((2, 1, 3), away_from_zero((4, 1)))),
            Sample(((2, 3), 2.5)), Sample((1.5, away_from_zero((2, 3)))), Sample(((2, 3), -2)),
            Sample((3, away_from_zero((2, 3)))), Sample((ints((2, 3)), ints((3,), 1, 4)))]),
    # torch records floor_divide but its derivative is not implemented (grad_fn NotImplemented).
    OpInfo("floor_divide", lambda x, y: x // y,
           [Sample(((2, 3), away_from_zero((3,)))), Sample(((2, 3), 0.75)),
            Sample((ints((2, 3)), ints((3,), 1, 4))), Sample((ints((2, 3)), 2))],
           check_grad=False),
    OpInfo("remainder", torch.remainder,
           [Sample(((3,), positive((3,)))), Sample(((2, 3), away_from_zero((3,)))),
            Sample(((2, 1, 3), positive((4, 1)))), Sample(((2, 3), 0.75)),
            Sample(((2, 3), -2)), Sample((ints((2, 3)), ints((3,), 1, 4)))]),
    # remainder(Python scalar, tensor): torch records it, but its derivative is not implemented.
    OpInfo("remainder", torch.remainder,
           [Sample((1.5, positive((2, 3))))], check_grad=False),
    OpInfo("fmod", torch.fmod,
           [Sample(((3,), positive((3,)))), Sample(((2, 3), away_from_zero((3,)))),
            Sample(((2, 1, 3), positive((4, 1)))), Sample(((2, 3), 0.75)),
            Sample(((2, 3), -2)), Sample((ints((2, 3)), ints((3,), 1, 4))),
            Sample((ints((2, 3), -5, 5), -3))]),
    OpInfo("pow", lambda x, y: x ** y,
           [  # tensor ** scalar (PowBackward0); any sign of base for integral exponents
               Sample(((2, 3), 2)), Sample(((2, 3), 3)), Sample(((3,), 2.0)),
               Sample((positive((2, 3)), 0.5)), Sample((positive((2, 3)), -1.5)),
               Sample((positive((3,)), 0)), Sample((ints((2, 3), 0, 4), 2)),
               # scalar ** tensor (PowBackward2)
               Sample((2.0, (2, 3))), Sample((3, (3,))), Sample((0.5, ())),
               # tensor ** tensor (PowBackward1): positive bases
               Sample((positive((2, 3)), (2, 3))), Sample((positive((2, 3)), (3,))),
               Sample((positive(()), (2,))), Sample((positive((2, 1, 3)), (4, 1)))]),
    OpInfo("square", torch.square, unary_samples() + [Sample((ints((2, 3)),))]),
]

# --- unary math ----------------------------------------------------------------------------------


def unary(name: str, fn: Any = None, domain: tuple[float, float] = (-2.0, 2.0),
          **kw: Any) -> OpInfo:
    return OpInfo(name, fn or getattr(torch, name), unary_samples(), domain=domain, **kw)


UNARY = [
    unary("neg"), unary("abs"), unary("sign"), unary("floor"), unary("ceil"),
    # torch.round(x) is RoundBackward0, torch.round(x, decimals=d) RoundBackward1.
    OpInfo("round", lambda x, decimals=0: torch.round(x, decimals=decimals) if decimals
           else torch.round(x),
           unary_samples() + [Sample(((2, 3),), {"decimals": 1}),
                              Sample(((2, 3),), {"decimals": -1})]),
    unary("reciprocal", domain=(0.5, 2.0)),
    unary("sqrt", domain=(0.5, 2.0)), unary("rsqrt", domain=(0.5, 2.0)),
    unary("exp"), unary("expm1"),
    unary("log", domain=(0.5, 2.0)), unary("log1p", domain=(-0.5, 2.0)),
    unary("log2", domain=(0.5, 2.0)),
    unary("sin"), unary("cos"), unary("tan", domain=(-1.2, 1.2)), unary("tanh"),
    # tanh's gradient as its own op (TanhBackwardBackward0), as torch's aten op
    OpInfo("threshold_backward", torch.ops.aten.threshold_backward,
           [Sample(((2, 3), (2, 3)), {"threshold": 0.0}), Sample(((3,), (3,)), {"threshold": 0.5}),
            Sample(((), ()), {"threshold": -0.25})]),
    OpInfo("sigmoid_backward", torch.ops.aten.sigmoid_backward,
           [Sample(((3,), uniform((3,), 0.05, 0.95))), Sample(((2, 3), uniform((3,), 0.05, 0.95))),
            Sample(((), uniform((2,), 0.05, 0.95)))]),
    OpInfo("tanh_backward", torch.ops.aten.tanh_backward,
           [Sample(((3,), uniform((3,), -0.9, 0.9))), Sample(((2, 3), uniform((3,), -0.9, 0.9))),
            Sample(((), uniform((2,), -0.9, 0.9)))]),
    unary("sigmoid"), unary("erf"),
]
# Integer inputs to floating functions compute in float32 (torch's int-to-float rule).
for _info in UNARY:
    if _info.name in ("exp", "sin", "sqrt", "reciprocal", "neg", "abs", "sign", "square"):
        _info.samples.append(Sample((ints((2, 3), 1, 4),)))

ACTIVATIONS = [
    unary("relu", torch.relu),
    OpInfo("leaky_relu", lambda x, negative_slope=0.01: F.leaky_relu(x, negative_slope),
           unary_samples() + [Sample(((2, 3),), {"negative_slope": 0.2})]),
    # kinks at the bounds: torch's gradient there (0), no finite differences
    OpInfo("hardtanh", lambda x, min_val=-1.0, max_val=1.0: F.hardtanh(x, min_val, max_val),
           unary_samples() + [Sample(((2, 3),), {"min_val": -0.5, "max_val": 0.7}),
                              Sample((ints((2, 3)),), {"min_val": 0.0, "max_val": 2.0}),
                              Sample((ties((2, 3)),), {"min_val": 0.0, "max_val": 1.0})],
           check_finite_differences=False),
    OpInfo("elu", lambda x, alpha=1.0: F.elu(x, alpha),
           unary_samples() + [Sample(((2, 3),), {"alpha": 0.5})]),
    OpInfo("gelu", lambda x, approximate="none": F.gelu(x, approximate=approximate),
           unary_samples() + [Sample(((2, 3),), {"approximate": "tanh"})]),
    unary("silu", F.silu),
    unary("log_sigmoid", F.logsigmoid),
    unary("mish", F.mish),
    unary("selu", F.selu),
    # torch has no derivative of hardsigmoid_backward
    OpInfo("hardsigmoid", F.hardsigmoid, unary_samples(), check_second_order=False),
    OpInfo("hardsigmoid_backward", torch.ops.aten.hardsigmoid_backward,
           [Sample(((2, 3), uniform((2, 3), -4, 4))), Sample(((), uniform((3,), -4, 4)))],
           check_grad=False),
    unary("hardswish", F.hardswish),
    OpInfo("celu", lambda x, alpha=1.0: F.celu(x, alpha),
           unary_samples() + [Sample(((2, 3),), {"alpha": 0.5})]),
    OpInfo("softplus", lambda x, beta=1.0, threshold=20.0: F.softplus(x, beta, threshold),
           unary_samples() + [Sample(((2, 3),), {"beta": 2.0, "threshold": 1.0})],
           domain=(-3.0, 3.0)),
    # the ops the in-place variants run: torch's in-place op on a copy (its node reads the
    # result; the copy passes the gradient on)
    OpInfo("_leaky_relu_result",
           lambda x, negative_slope=0.01: F.leaky_relu(x.clone(), negative_slope, inplace=True),
           unary_samples() + [Sample(((2, 3),), {"negative_slope": 0.2})]),
    OpInfo("_elu_result", lambda x, alpha=1.0: F.elu(x.clone(), alpha, inplace=True),
           unary_samples() + [Sample(((2, 3),), {"alpha": 0.5})]),
    unary("_selu_result", lambda x: F.selu(x.clone(), inplace=True)),
    OpInfo("_celu_result", lambda x, alpha=1.0: F.celu(x.clone(), alpha, inplace=True),
           unary_samples() + [Sample(((2, 3),), {"alpha": 0.5})]),
]

# --- clamp, maximum, minimum, where --------------------------------------------------------------

SELECTION = [
    OpInfo("clamp", lambda x, lo=None, hi=None: torch.clamp(x, lo, hi),
           [Sample(((2, 3), -0.5, 0.5)), Sample(((2, 3), -0.5, None)),
            Sample(((2, 3), None, 0.5)), Sample(((), -0.5, 0.5)),
            Sample(((2, 3), -1, 1)), Sample((ints((2, 3)), -1, 1)),
            Sample((ints((2, 3)), 0.5, None)),
            # tensor bounds, broadcasting, one-sided, and bounds that cross (min > max)
            Sample(((2, 3), (3,), (2, 1))), Sample(((2, 3), (2, 3), None)),
            Sample(((2, 3), None, (3,))),
            Sample(((2, 3), uniform((3,), 0.2, 1.0), uniform((2, 1), -1.0, -0.2)))]),
    OpInfo("maximum", torch.maximum, binary_samples(scalars=False)),
    OpInfo("minimum", torch.minimum, binary_samples(scalars=False)),
    OpInfo("fmax", torch.fmax, binary_samples(scalars=False)),
    OpInfo("fmin", torch.fmin, binary_samples(scalars=False)),
    # fmax/fmin: NaN on one side picks the other; ties give the whole gradient to input
    OpInfo("fmax", torch.fmax, [Sample((ties((2, 3)), ties((2, 3))))],
           check_finite_differences=False),
    OpInfo("fmin", torch.fmin, [Sample((ties((2, 3)), ties((3,))))],
           check_finite_differences=False),
    # Ties split the gradient evenly (not differentiable there: no finite differences).
    OpInfo("maximum", torch.maximum, [Sample((ties((2, 3)), ties((2, 3))))],
           check_finite_differences=False),
    OpInfo("minimum", torch.minimum, [Sample((ties((2, 3)), ties((3,))))],
           check_finite_differences=False),
    OpInfo("where", torch.where,
           [Sample((mask((2, 3)), (2, 3), (2, 3))), Sample((mask((2, 3)), (3,), (2, 1))),
            Sample((mask((3,)), (2, 3), 0.0)), Sample((mask((2, 3)), 1.5, (3,))),
            Sample((mask(()), (), (2,))), Sample((mask((2, 3)), ints((2, 3)), (3,)))]),
]

# --- comparisons and logic (no gradient) ---------------------------------------------------------

_CMP = {"lt": lambda x, y: x < y, "le": lambda x, y: x <= y, "gt": lambda x, y: x > y,
        "ge": lambda x, y: x >= y, "eq": lambda x, y: x == y, "ne": lambda x, y: x != y}
COMPARISONS = [
    OpInfo(name, fn, binary_samples() + [Sample((ties((2, 3)), ties((3,)))),
                                         Sample((ints((2, 3)), ints((3,)))),
                                         Sample((ints((2, 3)), 0.5))])
    for name, fn in _CMP.items()
]
LOGIC = [
    OpInfo(name, getattr(torch, name),
           [Sample((mask((2, 3)), mask((3,)))), Sample((ties((2, 3)), (2, 3))),
            Sample((ints((2, 3)), mask(())))])
    for name in ("logical_and", "logical_or", "logical_xor")
] + [OpInfo("logical_not", torch.logical_not,
            [Sample((mask((2, 3)),)), Sample((ties((3,)),)), Sample((ints((2, 3)),))])]
BITWISE = [
    OpInfo(name, getattr(torch, name),
           [Sample((ints((2, 3), -100, 100), ints((3,), -100, 100))),
            Sample((mask((2, 3)), mask((3,)))), Sample((mask((2, 3)), 6)),
            Sample((ints((2, 3), 0, 255, np.uint8), ints((3,), -128, 127, np.int8))),
            Sample((ints((2,), 0, 9, np.int16), -7))])
    for name in ("bitwise_and", "bitwise_or", "bitwise_xor")
] + [
    OpInfo(name, getattr(torch, name),
           [Sample((ints((2, 3), -100, 100), ints((3,), -3, 70))),
            Sample((ints((2, 3), 0, 255, np.uint8), ints((3,), 0, 12, np.uint8))),
            Sample((ints((2, 3), -128, 127, np.int8), ints((3,), -2, 10, np.int8))),
            Sample((ints((4,), -999, 999, np.int16), 3)), Sample((mask((2,)), 1))])
    for name in ("bitwise_left_shift", "bitwise_right_shift")
] + [OpInfo("bitwise_not", torch.bitwise_not,
            [Sample((mask((2, 3)),)), Sample((ints((2, 3), -100, 100),)),
             Sample((ints((3,), 0, 255, np.uint8),)), Sample((ints((3,), -128, 127, np.int8),))])]

# --- more math (engine/ops_math.py) ---------------------------------------------------------------


def _special(shape: tuple[int, ...]) -> Any:
    """Zeros, NaN and +-inf among ordinary values (the float tests' cases)."""
    values = np.array([0.0, np.nan, np.inf, -np.inf, 1.5, -2.0])
    return lambda rng: np.asarray(rng.choice(values, size=shape))


MATH = [
    unary("asin", domain=(-0.9, 0.9)), unary("acos", domain=(-0.9, 0.9)), unary("atan"),
    unary("sinh"), unary("cosh"), unary("asinh"), unary("acosh", domain=(1.2, 3.0)),
    unary("atanh", domain=(-0.9, 0.9)), unary("log10", domain=(0.5, 2.0)),
    unary("erfc"),
    # piecewise constant / with jumps at the integers: no finite differences across them
    unary("trunc", check_finite_differences=False), unary("frac", check_finite_differences=False),
    unary("sgn", check_finite_differences=False),
    OpInfo("atan2", torch.atan2, [Sample(((3,), away_from_zero((3,)))),
                                  Sample(((2, 3), away_from_zero((3,)))),
                                  Sample(((), away_from_zero((2,)))),
                                  Sample(((2, 1, 3), away_from_zero((4, 1))))]),
    OpInfo("hypot", torch.hypot, binary_samples(scalars=False)),
    OpInfo("logaddexp", torch.logaddexp, binary_samples(scalars=False)),
    OpInfo("xlogy", torch.xlogy,
           [Sample(((3,), positive((3,)))), Sample(((2, 3), positive((3,)))),
            Sample(((), positive((2,)))), Sample(((2, 1, 3), positive((4, 1)))),
            Sample((1.5, positive((2, 3)))), Sample(((2, 3), 2.5))]),
    # xlogy is 0 where input is 0 (its derivative in other too), even where other is 0
    OpInfo("xlogy", torch.xlogy, [Sample((ties((2, 3)), positive((2, 3))))],
           check_finite_differences=False),
    # ... and where other <= 0 (its first derivative there; a second one sums infinities)
    OpInfo("xlogy", torch.xlogy, [Sample((ties((2, 3)), ties((2, 3))))],
           check_finite_differences=False, check_second_order=False),
] + [OpInfo(name, getattr(torch, name),
            [Sample((_special((2, 3)),)), Sample(((3,),)), Sample((ints((2, 3)),))])
     for name in ("isnan", "isinf", "isfinite")] + [
    OpInfo(name, lambda x, diagonal=0, name=name: getattr(torch, name)(x, diagonal),
           [Sample(((3, 3),)), Sample(((2, 4),), {"diagonal": 1}),
            Sample(((2, 3, 4),), {"diagonal": -1}), Sample(((4, 2),), {"diagonal": 5}),
            Sample((ints((3, 3)),), {"diagonal": -2}), Sample((mask((2, 3)),))])
    for name in ("tril", "triu")]
# Integer inputs to floating functions compute in float32 (torch's int-to-float rule).
for _info in MATH:
    if _info.name in ("atan", "sinh", "log10", "erfc", "trunc", "sgn"):
        _info.samples.append(Sample((ints((2, 3), 1, 4),)))

# --- dtype conversion, copies and the in-place targets -------------------------------------------

CONVERSION = [
    # The op always copies (Tensor.to(dtype) returning self for its own dtype is not this op).
    OpInfo("to_dtype", lambda x, dtype: x.to(torch_dtype(dtype), copy=True),
           [Sample(((2, 3),), {"dtype": "float64"}), Sample(((2, 3),), {"dtype": "float32"}),
            Sample(((3,),), {"dtype": "int64"}), Sample(((3,),), {"dtype": "bool"}),
            Sample((ints((2, 3)),), {"dtype": "float32"}),
            Sample((ints((3,)),), {"dtype": "int32"}),
            # the small integers: float -> uint8 / int8 / int16 truncates, int64 -> them wraps
            Sample((ints((4,), -300, 300),), {"dtype": "uint8"}),
            Sample((ints((4,), -300, 300),), {"dtype": "int8"}),
            Sample((ints((4,), -70000, 70000),), {"dtype": "int16"}),
            Sample(((3,),), {"dtype": "uint8"}),
            Sample((ints((3,), 0, 255, np.uint8),), {"dtype": "float32"})]),
    OpInfo("clone", torch.clone, unary_samples() + [Sample((ints((2, 3)),))]),
    OpInfo("zero", lambda x: x.clone().zero_(), unary_samples() + [Sample((ints((2, 3)),))]),
    OpInfo("fill", lambda x, value: torch.fill(x, value),
           [Sample(((2, 3),), {"value": 1.5}), Sample(((),), {"value": -2}),
            Sample((ints((3,)),), {"value": 7})]),
    OpInfo("copy", lambda x, src: x.clone().copy_(src),
           [Sample(((2, 3), (2, 3))), Sample(((2, 3), (3,))), Sample(((2, 3), ())),
            Sample(((2, 3), ints((3,)))), Sample((ints((3,)), (3,)))]),
]

# --- shape and reduction ops the engine core relies on -------------------------------------------


def _reduce(fn: Any) -> Any:
    def call(x: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Any:
        kw: dict[str, Any] = {}
        if dtype is not None:
            kw["dtype"] = torch_dtype(dtype)
        if dim is None:
            return fn(x, **kw) if not keepdim else fn(x, dim=tuple(range(x.ndim)), keepdim=True,
                                                      **kw)
        return fn(x, dim=dim, keepdim=keepdim, **kw)
    return call


def reduce_samples() -> list[Sample]:
    return [Sample(((2, 3),)), Sample(((2, 3),), {"dim": 0}), Sample(((2, 3),), {"dim": -1}),
            Sample(((2, 3, 4),), {"dim": (0, 2)}), Sample(((2, 3),), {"dim": 1, "keepdim": True}),
            Sample(((),)), Sample(((),), {"dim": 0}), Sample(((3,),), {"dim": ()}),
            Sample(((2, 3),), {"dtype": "float64"})]


SHAPE_AND_REDUCE = [
    OpInfo("reshape", lambda x, shape: x.reshape(shape),
           [Sample(((2, 3),), {"shape": (3, 2)}), Sample(((2, 3),), {"shape": (-1,)}),
            Sample(((6,),), {"shape": (2, -1, 1)}), Sample(((),), {"shape": (1, 1)}),
            Sample(((1,),), {"shape": ()})]),
    OpInfo("expand", lambda x, size: x.expand(size),
           [Sample(((3,),), {"size": (2, 3)}), Sample(((2, 1),), {"size": (2, 4)}),
            Sample(((2, 1),), {"size": (3, -1, 4)}), Sample(((),), {"size": (2, 2)}),
            Sample(((1, 3),), {"size": (1, 3)})]),
    OpInfo("sum_to_size", lambda x, size: x.sum_to_size(size),
           [Sample(((2, 3),), {"size": (1, 3)}), Sample(((2, 3),), {"size": (3,)}),
            Sample(((4, 2, 3),), {"size": (2, 1)})]),
    OpInfo("sum", _reduce(torch.sum), reduce_samples() + [
        Sample((ints((2, 3)),), {"dim": 1}), Sample((mask((2, 3)),))]),
    OpInfo("mean", _reduce(torch.mean), reduce_samples()),
]

# input + value * tensor1 (* or /) tensor2, and clamp with one bound (torch's own nodes)
FUSED_AND_BOUNDS = [
    OpInfo("lerp", lambda x, end, weight: torch.lerp(x, end, weight),
           [Sample(((2, 3), (2, 3), (2, 3))), Sample(((3,), (2, 3), (2, 1))),
            Sample(((), (), ())), Sample(((2, 3), (3,), ()))]),
    OpInfo("lerp_scalar", lambda x, end, weight: torch.lerp(x, end, weight),
           [Sample(((2, 3), (2, 3)), {"weight": 0.3}), Sample(((2, 3), (2, 3)), {"weight": 0.75}),
            Sample(((2, 3), (3,)), {"weight": -1.5}), Sample(((), ()), {"weight": 1.0})]),
    OpInfo("addcmul", lambda x, a, b, value=1: torch.addcmul(x, a, b, value=value),
           [Sample(((2, 3), (2, 3), (2, 3))), Sample(((2, 3), (2, 3), (2, 3)), {"value": 0.37}),
            Sample(((3,), (2, 1), (2, 3)), {"value": -2}), Sample(((), (), ())),
            Sample(((2, 3), (3,), ()), {"value": 3.0}),
            Sample((ints((2, 3)), ints((2, 3)), ints((3,))), {"value": 2}),
            Sample((ints((2, 3)), ints((2, 3)), ints((3,))), {"value": 0.5}),
            Sample(((2, 3), ints((2, 3)), ints((3,))))]),
    OpInfo("addcdiv", lambda x, a, b, value=1: torch.addcdiv(x, a, b, value=value),
           [Sample(((2, 3), (2, 3), away_from_zero((2, 3)))),
            Sample(((2, 3), (2, 3), away_from_zero((2, 3))), {"value": 0.37}),
            Sample(((3,), (2, 1), away_from_zero((2, 3))), {"value": -2}),
            Sample(((), (), away_from_zero(()))),
            Sample((ints((2, 3)), (2, 3), away_from_zero((3,))), {"value": 3.0})]),
    OpInfo("clamp_min", lambda x, b: torch.clamp_min(x, b),
           [Sample(((2, 3), 0.5)), Sample(((2, 3), (3,))), Sample(((), -0.5)),
            Sample((ints((2, 3)), 1)), Sample((ints((2, 3)), 0.5))]),
    OpInfo("clamp_max", lambda x, b: torch.clamp_max(x, b),
           [Sample(((2, 3), 0.5)), Sample(((2, 3), (2, 1))), Sample(((), -0.5)),
            Sample((ints((2, 3)), 1))]),
] + [OpInfo(name, getattr(torch, name),  # at the bound: torch's gradient, no derivative there
            [Sample((ties((2, 3)), 0.0)), Sample((ties((2, 3)), ties((3,))))],
            check_finite_differences=False) for name in ("clamp_min", "clamp_max")]

def _nonfinite(rng: Any) -> Any:
    return np.asarray([[1.5, np.nan, -np.inf], [np.inf, -0.5, 2.0]], np.float32)


GATES_AND_REPLACEMENTS = [
    OpInfo("nan_to_num", lambda x, nan=0.0, posinf=None, neginf=None: torch.nan_to_num(
        x, nan, posinf, neginf),
           [Sample(((2, 3),)), Sample((_nonfinite,)),
            Sample((_nonfinite,), {"nan": 1.0, "posinf": 5.0, "neginf": -5.0}),
            Sample((_nonfinite,), {"nan": 1e40}), Sample((ints((3,)),))],
           check_finite_differences=False),
    OpInfo("glu", lambda x, dim=-1: torch.nn.functional.glu(x, dim),
           [Sample(((2, 4),)), Sample(((4, 3),), {"dim": 0}), Sample(((2, 2, 6),), {"dim": -1}),
            Sample(((2,),))]),
]

OPINFOS = ARITHMETIC + UNARY + MATH + ACTIVATIONS + SELECTION + COMPARISONS + LOGIC + BITWISE + \
    CONVERSION + SHAPE_AND_REDUCE + FUSED_AND_BOUNDS + GATES_AND_REPLACEMENTS
