"""Bitwise ops on bool and integral tensors: and, or, xor, not, and the shifts (torch's
`bitwise_*`, and the operators `& | ^ ~ << >>` through gradserve.surface.operators). They have
no gradient; a floating operand gets torch's NotImplementedError naming its CPU kernel
(`"bitwise_and_cpu" not implemented for 'Float'`), a bool one for a shift too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface.messages import TYPE_WORDS

from . import errors
from .dtypes import DType
from .ops_elementwise import broadcast_shape
from .registry import by_dtypes, defop, promote_args, temporaries


def _integral(kernel: str, bool_ok: bool = True) -> Any:
    """A dtype rule: compute and return in the promoted dtype, refused (torch's
    NotImplementedError naming `kernel`) when it is floating, or bool unless `bool_ok`."""
    @by_dtypes
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType, DType]:
        d = promote_args(args)
        if d.category == 2 or (d.category == 0 and not bool_ok):
            raise errors.NotImplementedFunctionError(
                f'"{kernel}" not implemented for \'{TYPE_WORDS[d.name]}\'')
        return d, d
    return rule


for _name, _fn in (("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                   ("bitwise_xor", np.bitwise_xor)):
    defop(_name, _fn, None, None, inputs=("input", "other"), dtype=_integral(f"{_name}_cpu"),
          inplace=True, doc=f"elementwise {_name[8:]} of bits (of truth values for bool)",
          out_shape=broadcast_shape)
defop("bitwise_not", np.invert, None, dtype=_integral("bitwise_not_cpu"), inplace=True,
      doc="elementwise not of bits (of truth values for bool)", out_shape=broadcast_shape)


def _shift(a: Any, b: Any, left: bool) -> Any:
    """torch's shift of each a by b in their common integral dtype: the bits shifted out are
    lost (a left shift wraps), and a shift by a negative amount or by the dtype's width or
    more gives 0, but the sign (0 or -1) of a signed integer shifted right."""
    dt = np.result_type(a, b)
    a, b = np.asarray(a, dt), np.asarray(b, dt)
    bits = dt.itemsize * 8
    unsigned = np.dtype(f"u{dt.itemsize}")
    amount = b.astype(f"i{dt.itemsize}")  # torch reads the amount as signed
    outside = (amount < 0) | (amount >= bits)
    amount = np.where(outside, 0, amount).astype(unsigned)
    if left:
        out = np.left_shift(a.astype(unsigned), amount).astype(dt)
        return np.where(outside, dt.type(0), out)
    if dt.kind == "u":
        return np.where(outside, dt.type(0), a >> amount)
    return np.where(outside, a >> dt.type(bits - 1), a >> amount.astype(dt))


defop("bitwise_left_shift", lambda a, b: _shift(a, b, True), None, None,
      inputs=("input", "other"), dtype=_integral("lshift_cpu", bool_ok=False), inplace=True,
      doc="input's bits shifted left by other", out_shape=broadcast_shape,
      out_bound=temporaries(broadcast_shape, results=5))
defop("bitwise_right_shift", lambda a, b: _shift(a, b, False), None, None,
      inputs=("input", "other"), dtype=_integral("rshift_cpu", bool_ok=False), inplace=True,
      doc="input's bits shifted right by other (the sign kept)", out_shape=broadcast_shape,
      out_bound=temporaries(broadcast_shape, results=5))
