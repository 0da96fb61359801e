"""torch.nn.utils.rnn's packing kernel, `_pack_padded_sequence` (grad_fn
PackPaddedSequenceBackward0): a padded T x B x * (or, batch_first, B x T x *) input's first
batch_sizes[t] rows of every step t, concatenated. The surface (`surface/nn_utils_rnn.py`)
computes the batch sizes from the lengths with torch's checks and messages; the op checks them
again against the input, as every attribute from the wire is checked.

Its gradient puts each step's rows back in place among zeros (torch's
`_pack_padded_sequence_backward`), written in engine ops so that it is differentiable: a block
of equal batch sizes at a time (`slice`, `reshape`, `slice_backward`), the blocks concatenated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradserve.surface.packed_shape import packed_data_shape, packed_runs

from . import errors
from .registry import AttrSpec, defop


def _shape(shape: Sequence[int], batch_sizes: Sequence[int], batch_first: bool) -> tuple[int, ...]:
    try:
        return packed_data_shape(shape, batch_sizes, batch_first)
    except IndexError as exc:
        raise errors.OutOfRangeIndexError(str(exc)) from None
    except ValueError as exc:
        raise errors.InvalidArgumentError(str(exc)) from None


def _pack(x: Any, batch_sizes: Sequence[int], batch_first: bool = False) -> Any:
    x = np.asarray(x)
    _shape(x.shape, batch_sizes, batch_first)
    if batch_first:
        x = np.swapaxes(x, 0, 1)
    rest = x.shape[2:]
    return np.concatenate([x[t0:t1, :size].reshape(-1, *rest)
                           for t0, t1, size in packed_runs(batch_sizes)])


def _pack_vjp(ns: Any, g: Any, out: Any, x: Any, batch_sizes: Sequence[int],
              batch_first: bool = False) -> Any:
    shape = tuple(x.shape)
    steps, batch, rest = ((shape[1], shape[0], shape[2:]) if batch_first
                          else (shape[0], shape[1], shape[2:]))
    blocks, offset = [], 0
    for t0, t1, size in packed_runs(batch_sizes):
        n = (t1 - t0) * size
        rows = ns.reshape(ns.slice(g, dim=0, start=offset, end=offset + n, step=1),
                          shape=(t1 - t0, size, *rest))
        blocks.append(ns.slice_backward(rows, input_sizes=(t1 - t0, batch, *rest), dim=1,
                                        start=0, end=size, step=1))
        offset += n
    padded = ns.cat(blocks, dim=0) if len(blocks) > 1 else blocks[0]
    if len(batch_sizes) < steps:
        padded = ns.slice_backward(padded, input_sizes=(steps, batch, *rest), dim=0, start=0,
                                   end=len(batch_sizes), step=1)
    return ns.transpose(padded, dim0=0, dim1=1) if batch_first else padded


def _pack_out_shape(x: Any, batch_sizes: Sequence[int], batch_first: bool = False
                    ) -> tuple[int, ...]:
    try:
        return packed_data_shape(tuple(x.shape), batch_sizes, batch_first)
    except (IndexError, ValueError):
        return ()  # the forward refuses it


# saves `result` though the rule reads only the input's shape: torch's node saves its batch_sizes
# result, so a second backward fails there as it does in torch
defop("_pack_padded_sequence", _pack, _pack_vjp, saves="result input.shape",
      attrs=(AttrSpec("batch_sizes", "ints", required=True),
             AttrSpec("batch_first", "bool", False)),
      backward="PackPaddedSequenceBackward0", method=False,
      doc="the packed data of a padded batch of sequences: step t's first batch_sizes[t] rows, "
          "steps concatenated (input T x B x *, or B x T x * when batch_first)",
      out_shape=_pack_out_shape)
