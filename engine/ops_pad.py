"""torch's reflection and replication padding (F.pad's "reflect" and "replicate" modes,
nn.ReflectionPad1d/2d/3d, nn.ReplicationPad1d/2d/3d) of the last 1, 2 or 3 dims.

The forward gathers each output element from the input position it mirrors (reflect: about the
edge element, which is not repeated) or clamps to (replicate); negative pads crop. The gradient
adds each output element's gradient into that position in the output's row-major order, plane by
plane, as torch's CPU padding kernels do, so positions that several outputs read (near the
edges) sum in torch's order, bit for bit (`np.add.at`, which adds in index order). The gradient's
own derivative is the padding again (ReflectionPad2DBackwardBackward0, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import errors
from .ops_decomp import not_implemented
from .ops_shape import _shape_str
from .registry import AttrSpec, defop, names_backward, temporaries

_KERNEL = {"reflect": "reflection_pad", "replicate": "replication_pad"}


def pad_shape(shape: Sequence[int], padding: Sequence[int], mode: str) -> tuple[int, ...]:
    """The padded shape of an input of `shape` (padding: (left, right) pairs from the last dim
    backwards, 2, 4 or 6 of them), after torch's checks for `mode` "reflect" or "replicate"."""
    if len(padding) not in (2, 4, 6):
        raise errors.InvalidArgumentError(
            f"{_KERNEL[mode]}: padding must hold 2, 4 or 6 numbers, got {len(padding)}")
    k = len(padding) // 2
    ndim = len(shape)
    batched = ndim == k + 2
    if ndim not in (k + 1, k + 2) or 0 in shape[int(batched):]:
        raise errors.InvalidArgumentError(
            f"Expected {k + 1}D or {k + 2}D (batch mode) tensor with possibly 0 batch size and "
            f"other non-zero dimensions for input, but got: {_shape_str(shape)}")
    sizes = [shape[ndim - 1 - d] for d in range(k)]  # W, H, D
    pads = [(int(padding[2 * d]), int(padding[2 * d + 1])) for d in range(k)]
    if mode == "reflect":
        for d, ((lo, hi), n) in enumerate(zip(pads, sizes)):
            if not (lo < n and hi < n):
                raise errors.InvalidArgumentError(
                    f"Argument #{4 + 2 * d}: Padding size should be less than the corresponding "
                    f"input dimension, but got: padding ({lo}, {hi}) at dimension {ndim - 1 - d} "
                    f"of input {_shape_str(shape)}")
    out = [n + lo + hi for (lo, hi), n in zip(pads, sizes)]
    if all(o < 1 for o in out):
        if k == 1:
            text = f"input (W: {sizes[0]}) is too small. Calculated output W: {out[0]}"
        elif k == 2:
            space = " " if mode == "replicate" else ""  # (torch's two messages differ so)
            text = (f"input (H: {sizes[1]}, W: {sizes[0]}{space}) is too small. Calculated "
                    f"output H: {out[1]} W: {out[0]}")
        else:
            text = (f"input (D: {sizes[2]} H: {sizes[1]}, W: {sizes[0]}) is too small. "
                    f"Calculated output D: {out[2]} H: {out[1]} W: {out[0]}")
        raise errors.InvalidArgumentError(text)
    result = (*shape[:ndim - k], *reversed(out))
    negative = [o for o in result if o < 0]
    if negative:
        if mode == "reflect" and k == 2:
            raise errors.InvalidArgumentError("numel: integer multiplication overflow")
        raise errors.InvalidArgumentError(
            f"Trying to create tensor with negative dimension {negative[0]}: {_shape_str(result)}")
    return result


def _indices(n: int, lo: int, hi: int, mode: str) -> Any:
    """The input position each output position along one dim reads."""
    i = np.arange(-lo, n + hi, dtype=np.int64)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    i = np.abs(i)
    return np.where(i >= n, 2 * (n - 1) - i, i)


def _grids(shape: Sequence[int], padding: Sequence[int], mode: str) -> tuple[Any, ...]:
    """Per padded dim (outermost first), its positions, shaped to broadcast (np.ix_)."""
    k = len(padding) // 2
    per_dim = [_indices(shape[len(shape) - 1 - d], int(padding[2 * d]), int(padding[2 * d + 1]),
                        mode) for d in reversed(range(k))]
    return np.ix_(*per_dim)


def _pad(mode: str) -> Any:
    def forward(x: Any, padding: Sequence[int]) -> Any:
        shape = pad_shape(x.shape, padding, mode)
        if x.dtype == np.bool_:
            raise not_implemented(f"{_KERNEL[mode]}{len(padding) // 2}d", x.dtype)
        out = x[(Ellipsis,) + tuple(_grids(x.shape, padding, mode))]
        return np.ascontiguousarray(out).reshape(shape)
    return forward


def _pad_backward(mode: str) -> Any:
    def backward(g: Any, input_size: Sequence[int], padding: Sequence[int]) -> Any:
        size = tuple(int(s) for s in input_size)
        if pad_shape(size, padding, mode) != g.shape:
            raise errors.InvalidArgumentError(
                f"{_KERNEL[mode]}_backward: grad_output of shape {_shape_str(g.shape)} is not the "
                f"padding of an input of shape {_shape_str(size)}")
        k = len(padding) // 2
        spatial = size[len(size) - k:]
        grids = _grids(size, padding, mode)
        where = np.ravel_multi_index(np.broadcast_arrays(*grids), spatial).ravel()
        planes = int(np.prod(size[:len(size) - k], dtype=np.int64))
        per = int(np.prod(spatial, dtype=np.int64))
        grad = np.zeros(size, g.dtype)
        # each plane's output gradients in row-major order, into the positions they read
        at = (np.arange(planes, dtype=np.int64)[:, None] * per + where[None, :]).ravel()
        np.add.at(grad.reshape(-1), at, np.ascontiguousarray(g).reshape(-1))
        return grad
    return backward


def _named(kind: str, suffix: str) -> Any:
    """The node name by the number of padded dims: {kind}1D{suffix} .. {kind}3D{suffix}."""
    names = tuple(f"{kind}{k}D{suffix}" for k in (1, 2, 3))

    @names_backward(*names)
    def name(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
        k = len(attrs.get("padding") or ()) // 2
        return names[min(max(k, 1), 3) - 1]
    return name


for _mode, _op, _kind in (("reflect", "reflection_pad", "ReflectionPad"),
                          ("replicate", "replication_pad", "ReplicationPad")):
    defop(_op, _pad(_mode),
          lambda ns, g, out, x, padding, _op=_op: getattr(ns, f"{_op}_backward")(
              g, input_size=tuple(x.shape), padding=padding),
          # torch's node saves the input itself (derivatives.yaml: the backward takes `self`),
          # so a second backward through it fails as torch's does
          saves="input", attrs=(AttrSpec("padding", "ints", required=True),),
          backward=_named(_kind, "Backward0"), method=False,
          doc=f"F.pad's {_mode!r} mode of the last 1, 2 or 3 dims (padding: (left, right) pairs "
              "from the last dim backwards; negative pads crop)",
          out_shape=lambda x, padding, _mode=_mode: pad_shape(x.shape, padding, _mode))
    defop(f"{_op}_backward", _pad_backward(_mode),
          lambda ns, gg, out, g, input_size, padding, _op=_op: getattr(ns, _op)(
              gg, padding=padding),
          saves="", inputs=("grad_output",),
          attrs=(AttrSpec("input_size", "ints", required=True),
                 AttrSpec("padding", "ints", required=True)),
          backward=_named(_kind, "BackwardBackward0"), method=False,
          doc=f"{_op}'s gradient: each output's gradient added where it read, in torch's order",
          # np.add.at's positions: int64 per gradient element
          out_bound=temporaries(lambda g, input_size, padding: tuple(int(s) for s in input_size),
                                inputs=1, input_bytes=8))
