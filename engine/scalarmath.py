"""Arithmetic on 0-d data through numpy's scalar operators, where they equal the ufunc.

Ops keep a 0-d result as a numpy scalar (see `Tensor._array`); `np.multiply(a, b)` on two of
them costs about 1.2 us, `a * b` about 0.1 us. For float32 and float64 scalars, with Python
floats and ints as the other operand (NEP 50's weak scalars), numpy's scalar operators compute
the same IEEE operation in the same dtype as the ufunc, and set the same floating-point flags
(checked value for value, warnings included, by tests/test_engine_scalarmath.py): same bits,
only the warning's text says "scalar" (torch gives no warning at all).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from . import parallel

# the ufuncs whose scalar operator is the same operation
OPERATORS: dict[Any, Any] = {
    np.add: operator.add,
    np.subtract: operator.sub,
    np.multiply: operator.mul,
    np.true_divide: operator.truediv,
    np.negative: operator.neg,
}
# numpy scalar types whose operators are IEEE float arithmetic in their own dtype
FLOATS = frozenset((np.float32, np.float64))
# what may stand beside one of them: itself, or a Python number (not bool: numpy's bool rules)
PARTNERS = frozenset((float, int))


def operands(args: Any) -> bool:
    """Whether `args` (one or two ufunc inputs) are numpy float scalars of one type, or one of
    them and a Python float or int: then `OPERATORS[ufunc](*args)` equals `ufunc(*args)`."""
    if len(args) == 1:
        return type(args[0]) in FLOATS
    if len(args) != 2:
        return False
    t0, t1 = type(args[0]), type(args[1])
    if t0 in FLOATS:
        return t1 is t0 or t1 in PARTNERS
    return t1 in FLOATS and t0 in PARTNERS


def call(ufunc: Any, x: Any, y: Any, *, split: bool = False) -> Any:
    """`ufunc(x, y)` bit for bit: the scalar operator for 0-d float operands (`operands`),
    else the ufunc (with `split`, through `parallel.call`: over threads when large)."""
    fast = OPERATORS.get(ufunc)
    if fast is not None:
        t0, t1 = type(x), type(y)
        if (t1 is t0 or t1 in PARTNERS) if t0 in FLOATS else (t1 in FLOATS and t0 in PARTNERS):
            return fast(x, y)
    return parallel.call(ufunc, x, y) if split else ufunc(x, y)
