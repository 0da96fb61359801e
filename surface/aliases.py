"""torch's aliases: other names for one op (`torch.arctan` is `torch.atan`, `x.clip_` is
`x.clamp_`), written once as data.

An alias behaves as its canonical op in every respect, including the backward node's name
(`torch.arctan(x).grad_fn` is AtanBackward0). The engine installs each alias whose canonical name
it has as a function and Tensor method (engine/api.py); the client installs those whose canonical
name the server's catalogue or the surface's spellings provide (client/session.py).
"""

from __future__ import annotations

ALIASES: dict[str, str] = {
    # trigonometric and hyperbolic (numpy's spellings)
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "arctan2": "atan2",
    "arcsinh": "asinh",
    "arccosh": "acosh",
    "arctanh": "atanh",
    # arithmetic
    "absolute": "abs",
    "negative": "neg",
    "multiply": "mul",
    "subtract": "sub",
    "divide": "div",
    "true_divide": "div",
    "fix": "trunc",
    "clip": "clamp",
    # comparisons
    "greater": "gt",
    "greater_equal": "ge",
    "less": "lt",
    "less_equal": "le",
    "not_equal": "ne",
    # shape
    "concat": "cat",
    "concatenate": "cat",
    "row_stack": "vstack",
    "swapaxes": "transpose",
    "swapdims": "transpose",
    "moveaxis": "movedim",
}
"""alias -> canonical name, for functions and Tensor methods alike; an in-place variant
(`clip_`, `absolute_`, ...) is the canonical `name_` (see `canonical`)."""


def canonical(name: str) -> str:
    """The canonical name of a torch function or method name (itself when not an alias).

    An in-place spelling `alias_` maps to `canonical_` (`clip_` -> `clamp_`).
    """
    target = ALIASES.get(name)
    if target is not None:
        return target
    if name.endswith("_") and not name.endswith("__"):
        target = ALIASES.get(name[:-1])
        if target is not None:
            return target + "_"
    return name
