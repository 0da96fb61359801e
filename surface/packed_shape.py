"""The shape rule of the engine's `_pack_padded_sequence` op (torch.nn.utils.rnn's packing),
written once for the engine's bound and checks and the client's inference (`meta_shape`)."""

from __future__ import annotations

from collections.abc import Sequence

from .messages import dim_out_of_range


def packed_runs(batch_sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """The runs of equal batch size: (first step, end step, batch size) each."""
    runs: list[tuple[int, int, int]] = []
    for t, size in enumerate(batch_sizes):
        if runs and runs[-1][2] == size:
            runs[-1] = (runs[-1][0], t + 1, size)
        else:
            runs.append((t, t + 1, size))
    return runs


def packed_data_shape(shape: Sequence[int], batch_sizes: Sequence[int],
                      batch_first: bool) -> tuple[int, ...]:
    """The shape of the `_pack_padded_sequence` op's result (the packed data of a padded
    input of `shape`, T x B x * or B x T x *, at `batch_sizes`, one per step of at most T).

    Raises:
        IndexError: the input has fewer than 2 dims (torch's message).
        ValueError: batch_sizes empty, longer than T, not non-increasing or not in 1..B.
    """
    if len(shape) < 2:
        raise IndexError(dim_out_of_range(1, -1, 0) if shape else
                         "Dimension specified as 1 but tensor has no dimensions")
    steps, batch = (shape[1], shape[0]) if batch_first else (shape[0], shape[1])
    if not batch_sizes or len(batch_sizes) > steps:
        raise ValueError(f"_pack_padded_sequence: expected 1 to {steps} batch sizes (one per "
                         f"step), got {len(batch_sizes)}")
    previous = batch
    for step, size in enumerate(batch_sizes):
        if not 1 <= size <= previous:
            raise ValueError("_pack_padded_sequence: batch sizes must be non-increasing, from "
                             f"at most the batch size {batch} down to at least 1, got {size} "
                             f"at step {step}" + (f" after {previous}" if step else ""))
        previous = size
    return (sum(batch_sizes), *shape[2:])
