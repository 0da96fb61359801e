"""OpInfo: how the parametrized op tests build inputs for one registry op and call torch.

Each `tests/opinfo_<area>.py` module defines `OPINFOS: list[OpInfo]`; `tests/test_engine_ops.py`
collects them all, checks every registry op has one, and for every sample compares the engine
with central finite differences (float64) and with torch (float32): values, gradients, second
derivatives (`create_graph`), dtypes and grad_fn names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# An input spec: a shape tuple (random floating tensor in `OpInfo.domain`), a Python scalar
# (passed as is), None (an omitted optional input), or a callable(rng) -> np.ndarray for inputs
# that need special values (integer indices, bool masks, positive definite, ...). A list of such
# specs stands for the one sequence argument of a variadic op (cat, stack, einsum operands).
InputSpec = Any


@dataclass
class Sample:
    """One call: input specs, attributes, and which inputs get gradients checked."""

    inputs: tuple[InputSpec, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    # Default: every floating tensor input requires grad.
    requires_grad: tuple[bool, ...] | None = None
    note: str = ""


@dataclass
class OpInfo:
    """How to test one registry op against torch."""

    name: str
    # torch_fn(*inputs, **attrs) with torch tensors / Python scalars in the same positions.
    torch_fn: Callable[..., Any]
    samples: list[Sample]
    # Random floating inputs are drawn uniformly from here (keep away from singularities).
    domain: tuple[float, float] = (-2.0, 2.0)
    # Whether gradients / second derivatives are compared (False for non-differentiable ops,
    # or where torch's second derivative is not defined).
    check_grad: bool = True
    check_second_order: bool = True
    # Compare against finite differences (off for piecewise-constant or discontinuous ops).
    check_finite_differences: bool = True
    rtol: float = 1e-4
    atol: float = 1e-5
    # For ops with several outputs: which outputs are compared / differentiated (default all).
    outputs: tuple[int, ...] | None = None
    # Non-random ops (rand, randn, ...) set this to compare only shape and dtype.
    compare_values: bool = True
    # An op that takes float32 alone (as torch's): every floating input is float32, also in
    # the tests that otherwise use float64 (its finite differences are then skipped).
    float32_only: bool = False


def make_input(spec: InputSpec, rng: np.random.Generator, domain: tuple[float, float],
               dtype: Any) -> Any:
    """A numpy array (or the scalar / None itself) for one input spec."""
    if spec is None or isinstance(spec, (bool, int, float)):
        return spec
    if callable(spec):
        return spec(rng)
    if isinstance(spec, list):
        return [make_input(s, rng, domain, dtype) for s in spec]
    lo, hi = domain
    # np.asarray: a () spec gives a 0-d array, not a numpy scalar.
    return np.asarray(rng.uniform(lo, hi, size=tuple(spec)), dtype=dtype)
