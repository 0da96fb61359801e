"""More elementwise math: inverse trigonometric and hyperbolic functions, log10, trunc/frac,
erfc, the two-input atan2/hypot/logaddexp/xlogy, sgn, the float tests isnan/isinf/isfinite, and
tril/triu (a mask over the last two dims).

Each entry as in `ops_elementwise`: name, numpy forward, one VJP rule per input written in engine
ops (so a backward is differentiable), what each rule reads (`saves`, as torch's
derivatives.yaml), the dtype rule and the result shape.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import errors, mkl
from .ops_elementwise import _ERF_BYTES, _by_scalars, broadcast_shape
from .registry import BOOL, FLOAT, SAME, AttrSpec, defop, temporaries

# --- inverse trigonometric and hyperbolic ---------------------------------------------------------

defop("asin", mkl.unary("Asin", np.arcsin),
      lambda ns, g, out, x: g * ns.rsqrt(1 - x * x), dtype=FLOAT,
      saves="input", inplace=True, doc="arcsine", out_shape=broadcast_shape)
defop("acos", mkl.unary("Acos", np.arccos),
      lambda ns, g, out, x: -g * ns.rsqrt(1 - x * x), dtype=FLOAT,
      saves="input", inplace=True, doc="arccosine", out_shape=broadcast_shape)
defop("atan", mkl.unary("Atan", np.arctan), lambda ns, g, out, x: g / (x * x + 1), dtype=FLOAT,
      saves="input", inplace=True, doc="arctangent", out_shape=broadcast_shape)
defop("sinh", np.sinh, lambda ns, g, out, x: g * ns.cosh(x), dtype=FLOAT,
      saves="input", inplace=True, doc="hyperbolic sine", out_shape=broadcast_shape)
defop("cosh", np.cosh, lambda ns, g, out, x: g * ns.sinh(x), dtype=FLOAT,
      saves="input", inplace=True, doc="hyperbolic cosine", out_shape=broadcast_shape)
# No asinh_/acosh_/atanh_: torch's in-place variants have no derivative ("the derivative for
# 'inplace version of asinh' is not implemented"); gradserve leaves them out.
defop("asinh", np.arcsinh, lambda ns, g, out, x: g * ns.rsqrt(x * x + 1), dtype=FLOAT,
      saves="input", doc="inverse hyperbolic sine", out_shape=broadcast_shape)
defop("acosh", np.arccosh, lambda ns, g, out, x: g * ns.rsqrt(x * x - 1), dtype=FLOAT,
      saves="input", doc="inverse hyperbolic cosine", out_shape=broadcast_shape)
defop("atanh", np.arctanh, lambda ns, g, out, x: g / (1 - x * x), dtype=FLOAT,
      saves="input", doc="inverse hyperbolic tangent", out_shape=broadcast_shape)

# --- logarithms, rounding, error function ---------------------------------------------------------

defop("log10", mkl.unary("Log10", np.log10),
      lambda ns, g, out, x: g / (x * math.log(10.0)), dtype=FLOAT,
      saves="input", inplace=True, doc="base-10 logarithm", out_shape=broadcast_shape)
defop("trunc", np.trunc, lambda ns, g, out, x: g * 0, dtype=SAME,
      saves="", inplace=True, doc="round towards zero; zero gradient",
      out_shape=broadcast_shape)
defop("frac", lambda x: x - np.trunc(x), lambda ns, g, out, x: g, dtype=SAME,
      saves="", inplace=True, doc="input - trunc(input)",
      out_bound=temporaries(broadcast_shape, results=1))


def _erfc(x: Any) -> Any:
    # numpy has no erfc ufunc; math.erfc per element (accurate where 1 - erf(x) cancels).
    return np.vectorize(math.erfc, otypes=[np.float64])(x).astype(x.dtype)


defop("erfc", mkl.unary("Erfc", _erfc),  # derivatives.yaml's order of the products
      lambda ns, g, out, x: (-2 / math.sqrt(math.pi)) * ns.exp(-x * x) * g,
      saves="input", dtype=FLOAT, inplace=True, doc="complementary error function 1 - erf",
      out_bound=temporaries(broadcast_shape, result_bytes=_ERF_BYTES))
# torch's sgn_backward(self, grad, result) saves both (for complex inputs), so a second
# backward through a freed SgnBackward0 fails there too.
defop("sgn", np.sign, lambda ns, g, out, x: g * 0, saves="input result", inplace=True,
      doc="sign (for real inputs); zero gradient", out_shape=broadcast_shape)

# --- two inputs ----------------------------------------------------------------------------------

defop("atan2", np.arctan2,
      lambda ns, g, out, x, y: g * y / (x * x + y * y),
      lambda ns, g, out, x, y: g * -x / (x * x + y * y),
      saves=("input other", "input other"), inputs=("input", "other"), dtype=FLOAT,
      inplace=True, doc="arctangent of input / other by quadrant",
      out_bound=temporaries(broadcast_shape, results=1))
defop("hypot", np.hypot,
      lambda ns, g, out, x, y: g * x / out,
      lambda ns, g, out, x, y: g * y / out,
      saves=("input result", "other result"), inputs=("input", "other"), dtype=FLOAT,
      inplace=True, doc="sqrt(input ** 2 + other ** 2)", out_shape=broadcast_shape)
defop("logaddexp", np.logaddexp,
      lambda ns, g, out, x, y: g / (ns.exp(y - x) + 1),
      lambda ns, g, out, x, y: g / (ns.exp(x - y) + 1),
      saves=("input other", "input other"), inputs=("input", "other"), dtype=FLOAT,
      doc="log(exp(input) + exp(other))", out_bound=temporaries(broadcast_shape, results=2))


def _xlogy(x: Any, y: Any) -> Any:
    # torch: nan where other is nan, else 0 where input is 0, else input * log(other)
    with np.errstate(divide="ignore", invalid="ignore"):
        product = np.multiply(x, np.log(y))
    return np.where(np.isnan(y), y, np.where(np.equal(x, 0), 0, product)).astype(product.dtype)


def _xlogy_dx(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    # torch: xlogy(grad, other), zero where input == 0 and other <= 0
    d = ns.xlogy(g, y)
    return ns.where(ns.logical_and(x == 0, y <= 0), g * 0, d)


defop("xlogy", _xlogy, _xlogy_dx,
      lambda ns, g, out, x, y: g * x / y,
      saves=("input other", "input other"), inputs=("input", "other"), dtype=FLOAT,
      backward=_by_scalars("XlogyBackward0", "XlogyBackward2", "XlogyBackward1"),
      inplace=True, doc="input * log(other), 0 where input is 0",
      out_bound=temporaries(broadcast_shape, results=3))

# --- float tests (no gradient) --------------------------------------------------------------------

defop("isnan", np.isnan, None, dtype=BOOL, doc="input is NaN, as bool",
      out_shape=broadcast_shape)
defop("isinf", np.isinf, None, dtype=BOOL, doc="input is +-inf, as bool",
      out_shape=broadcast_shape)
defop("isfinite", np.isfinite, None, dtype=BOOL, doc="input is neither NaN nor +-inf, as bool",
      out_shape=broadcast_shape)

# --- triangles -----------------------------------------------------------------------------------


def _triangle(name: str) -> Any:
    """tril/triu's forward, refusing fewer than 2 dims (numpy would broadcast a vector)."""
    triangle = getattr(np, name)

    def forward(x: Any, diagonal: int = 0) -> Any:
        if np.ndim(x) < 2:
            raise errors.InvalidArgumentError(
                f"{name}: input tensor must have at least 2 dimensions")
        return triangle(x, diagonal)
    return forward


defop("tril", _triangle("tril"),
      lambda ns, g, out, x, diagonal: ns.tril(g, diagonal=diagonal), saves="",
      attrs=(AttrSpec("diagonal", "int", 0),), inplace=True,
      doc="the lower triangle (below and on `diagonal`) of the last two dims, zeros elsewhere",
      out_bound=temporaries(broadcast_shape, results=1))
defop("triu", _triangle("triu"),
      lambda ns, g, out, x, diagonal: ns.triu(g, diagonal=diagonal), saves="",
      attrs=(AttrSpec("diagonal", "int", 0),), inplace=True,
      doc="the upper triangle (above and on `diagonal`) of the last two dims, zeros elsewhere",
      out_bound=temporaries(broadcast_shape, results=1))
