"""Shape ops: reshape, expand, and the gradient plumbing (`sum_to_size`) they share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import errors
from .registry import AttrSpec, defop


def _shape_str(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def infer_shape(shape: Sequence[int], numel: int) -> tuple[int, ...]:
    """Resolve one -1 in `shape` for `numel` elements, with torch's errors."""
    shape = tuple(shape)
    if shape.count(-1) > 1:
        raise errors.InvalidArgumentError("only one dimension can be inferred")
    for d in shape:
        if d < -1:
            raise errors.InvalidArgumentError(f"invalid shape dimension {d}")
    known = 1
    for d in shape:
        if d != -1:
            known *= d
    if -1 in shape:
        if known == 0 or numel % known:
            raise errors.InvalidArgumentError(
                f"shape '{_shape_str(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if d == -1 else d for d in shape)
    elif known != numel:
        raise errors.InvalidArgumentError(
            f"shape '{_shape_str(shape)}' is invalid for input of size {numel}")
    return shape


def _reshape(x: Any, shape: Sequence[int]) -> Any:
    return np.reshape(x, infer_shape(shape, x.size))


defop("reshape", _reshape, lambda ns, g, out, x, shape: ns.reshape(g, shape=x.shape),
      attrs=(AttrSpec("shape", "ints", required=True),), backward="ViewBackward0",
      out_shape=lambda x, shape: infer_shape(shape, x.numel()),
      doc="the same data with another shape")


def expand_shape(shape: Sequence[int], size: Sequence[int]) -> tuple[int, ...]:
    """The shape `expand(size)` gives a tensor of `shape`, with torch's errors."""
    size = tuple(size)
    if len(size) < len(shape):
        raise errors.InvalidArgumentError(
            f"expand({_shape_str(shape)}, size={_shape_str(size)}): the number of sizes provided "
            f"({len(size)}) must be greater or equal to the number of dimensions in the tensor "
            f"({len(shape)})")
    lead = len(size) - len(shape)
    out = []
    for i, s in enumerate(size):
        have = shape[i - lead] if i >= lead else None
        if s == -1:
            if have is None:
                raise errors.InvalidArgumentError(
                    f"The expanded size of the tensor (-1) isn't allowed in a leading, "
                    f"non-existing dimension {i}")
            out.append(have)
        elif have is not None and have != 1 and have != s:
            raise errors.InvalidArgumentError(
                f"The expanded size of the tensor ({s}) must match the existing size ({have}) "
                f"at non-singleton dimension {i}.  Target sizes: {_shape_str(size)}.  Tensor "
                f"sizes: {_shape_str(shape)}")
        elif s < 0:
            raise errors.InvalidArgumentError(f"invalid size {s} in expand")
        else:
            out.append(s)
    return tuple(out)


defop("expand", lambda x, size: np.broadcast_to(x, expand_shape(x.shape, size)),
      lambda ns, g, out, x, size: ns.sum_to_size(g, size=x.shape),
      attrs=(AttrSpec("size", "ints", required=True),),
      out_shape=lambda x, size: expand_shape(x.shape, size),
      doc="a broadcast view with the given size (-1 keeps a dimension)")


def sum_to_size(g: Any, size: Sequence[int]) -> Any:
    """Sum `g` over the dimensions broadcasting added or stretched to reach it from `size`."""
    size = tuple(size)
    if g.shape == size:
        return g
    lead = g.ndim - len(size)
    if lead < 0:
        raise errors.InvalidArgumentError(
            f"size {_shape_str(size)} is not expandable to size {_shape_str(g.shape)}")
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(size) if s == 1 and g.shape[lead + i] != 1)
    out = np.sum(g, axis=axes, keepdims=True) if axes else g
    if lead:
        out = out.reshape(out.shape[lead:])
    if out.shape != size:
        raise errors.InvalidArgumentError(
            f"size {_shape_str(size)} is not expandable to size {_shape_str(g.shape)}")
    return out


def _sum_to_size_name(args: Sequence[Any], attrs: Any) -> str:
    # torch sums with keepdim (SumBackward1), then views away leading dims (ViewBackward0).
    return "ViewBackward0" if args and len(attrs["size"]) < args[0].ndim else "SumBackward1"


defop("sum_to_size", sum_to_size, lambda ns, g, out, x, size: ns.expand(g, size=x.shape),
      attrs=(AttrSpec("size", "ints", required=True),), backward=_sum_to_size_name,
      doc="sum over broadcast dimensions down to size")
