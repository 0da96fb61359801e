"""`torch.nn.utils.rnn`: `PackedSequence` and the functions that pack and pad variable-length
sequences, against an `NNBackend`.

Written as torch's (aten/native/PackedSequence.cpp), so values and gradients are torch's exactly
(every op here copies, none computes) and so are the graphs: packing is the engine's one
`_pack_padded_sequence` op (grad_fn PackPaddedSequenceBackward0), told the batch sizes computed
here from the lengths; `_pad_packed_sequence` and `pad_sequence` fill a `full` tensor with
`copy_` into its slices (grad_fn CopySlices); `pack_padded_sequence` with `enforce_sorted=False`
reorders with `index_select`. What is not torch's: `unpad_sequence(..., batch_first=False)`
transposes out of place (torch's `transpose_` also transposes the caller's tensor).

The recurrent layers (`nn_rnn`) take a `PackedSequence` and run torch's packed layers on its
`data` and `batch_sizes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from .nn_backend import NNBackend

_SORTED_MESSAGE = (
    "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. You can "
    "pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to sidestep this "
    "requirement if you do not need ONNX exportability.")


class PackedSequence_(NamedTuple):
    """The four fields of a PackedSequence (torch's namedtuple base)."""

    data: Any
    batch_sizes: Any
    sorted_indices: Any
    unsorted_indices: Any


def _converter(name: str, dtype: str) -> Callable[[Any], Any]:
    """PackedSequence's `name()`: data converted to `dtype` (`self` when it is that already)."""
    def convert(self: Any) -> Any:
        return self.to(dtype=getattr(self._be.torch, dtype))

    convert.__name__ = convert.__qualname__ = name
    convert.__doc__ = f"`data` as {dtype}."
    return convert


class PackedSequence(PackedSequence_):
    """Holds the data and the `batch_sizes` of a packed batch of sequences (torch's class).

    `data` holds the sequences' steps, time-major: the first step of every sequence, then the
    second step of those that have one, ...; `batch_sizes[t]` is how many sequences have a step
    t. `sorted_indices` (or None) is the order `pack_padded_sequence` sorted the batch in,
    `unsorted_indices` its inverse. Made by `pack_padded_sequence` and `pack_sequence`, taken
    and returned by the recurrent layers. `build` derives one subclass per backend (its `_be`).
    """

    __slots__ = ()
    _be: Any = None

    def __new__(cls, data: Any, batch_sizes: Any = None, sorted_indices: Any = None,
                unsorted_indices: Any = None) -> PackedSequence:
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(cls._be, sorted_indices)
        if batch_sizes is not None:
            if batch_sizes.device.type != "cpu":
                raise ValueError(
                    "batch_sizes should always be on CPU. Instances of PackedSequence should "
                    "never be created manually. They should be instantiated by functions like "
                    "pack_sequence and pack_padded_sequences in nn.utils.rnn. "
                    "https://pytorch.org/docs/stable/nn.html#torch.nn.utils.rnn.pack_sequence")
            fields = (data, batch_sizes, sorted_indices, unsorted_indices)
        else:  # PackedSequence((data, batch_sizes), sorted_indices)
            if not (isinstance(data, (list, tuple)) and len(data) == 2):
                raise AssertionError("Expected data to be a list or tuple of length 2")
            fields = (data[0], data[1], sorted_indices, unsorted_indices)
        return super().__new__(cls, *fields)

    def to(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """`data` converted as `Tensor.to(*args, **kwargs)` converts it; `self` when it is
        unchanged (`batch_sizes` and the indices stay on the CPU)."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        return type(self)(data, self.batch_sizes, self.sorted_indices, self.unsorted_indices)

    def cpu(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """`to(*args, **kwargs)`: every tensor of a backend is on the CPU."""
        return self.to(*args, **kwargs)

    def cuda(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """`to` the CUDA device (the backend refuses it as torch without CUDA does)."""
        return self.to(*args, **{**kwargs, "device": "cuda"})

    # torch's dtype shorthands, each `to(dtype=...)` of data
    double = _converter("double", "float64")
    float = _converter("float", "float32")
    half = _converter("half", "float16")
    long = _converter("long", "int64")
    int = _converter("int", "int32")
    short = _converter("short", "int16")
    char = _converter("char", "int8")
    byte = _converter("byte", "uint8")

    @property
    def is_cuda(self) -> bool:
        """Whether `data` is on a GPU (never, here)."""
        return bool(self.data.is_cuda)


def packed_sequence_class(be: NNBackend, module: str) -> type[PackedSequence]:
    """The backend's own PackedSequence class (its `_be`), shown as defined in `module`."""
    return type("PackedSequence", (PackedSequence,), {
        "__slots__": (), "_be": be, "__module__": module, "__qualname__": "PackedSequence",
        "__doc__": PackedSequence.__doc__})


def is_packed(value: Any) -> bool:
    """Whether `value` is a PackedSequence (of any backend)."""
    return isinstance(value, PackedSequence)


def invert_permutation(be: NNBackend, permutation: Any) -> Any:
    """The inverse of the 1-D index tensor `permutation` (None for None)."""
    if permutation is None:
        return None
    # torch scatters into empty_like in place; out of place here, the same values (a session's
    # in-place write would make every value it holds stale)
    return be.torch.empty_like(permutation).scatter(
        0, permutation, be.torch.arange(0, permutation.numel()))


def _int64(be: NNBackend) -> Any:
    return be.torch.int64


def _check_1d(be: NNBackend, dims: int) -> None:
    """torch's checkLongTensor of `lengths` (or `batch_sizes`), already int64."""
    if dims != 1:
        raise be.runtime_error("'lengths' argument should be a 1D CPU int64 tensor, but got "
                               f"{dims}D cpu Long tensor")


def _lengths_values(be: NNBackend, lengths: Any) -> list[int]:
    """The values of `lengths` (a tensor, a list, an array) as torch's int64 conversion reads
    them (toward zero), refused as torch's checkLongTensor refuses it when not 1-D."""
    if be.is_tensor(lengths):
        _check_1d(be, len(be.shape(lengths)))
        return [int(v) for v in lengths.tolist()]
    values = np.asarray(lengths)
    _check_1d(be, values.ndim)
    return [int(v) for v in values.astype(np.int64).tolist()]


def _pack(be: NNBackend, input: Any, lens: list[int], batch_first: bool) -> tuple[Any, Any]:
    """torch's `_pack_padded_sequence`: (data, batch_sizes) of a padded (T, B, *) input whose
    sequences are sorted by decreasing length `lens`."""
    input.size(1)  # torch's IndexError for fewer than 2 dims (its transpose's, or size(1)'s)
    shape = be.shape(input)
    if batch_first:
        shape = (shape[1], shape[0], *shape[2:])
    batch_size = shape[1]
    if math.prod(shape) == 0:
        raise be.runtime_error("Cannot pack empty tensors.")
    if len(lens) != batch_size:
        raise be.runtime_error("Expected `len(lengths)` to be equal to batch_size, but got "
                               f"{len(lens)} (batch_size={batch_size})")
    if lens[-1] <= 0:
        raise be.runtime_error("Length of all samples has to be greater than 0, but found an "
                               "element in 'lengths' that is <= 0")
    if any(a < b for a, b in zip(lens, lens[1:])):
        raise be.runtime_error(_SORTED_MESSAGE)
    batch_sizes, prev = [], 0
    for i, length in enumerate(reversed(lens)):
        if length > prev:
            batch_sizes += [batch_size - i] * (length - prev)
            prev = length
    # a length past the input's counts its steps in batch_sizes (torch's slices clamp), the data
    # stops at the input's end
    data = be.call("_pack_padded_sequence", (input,),
                   {"batch_sizes": tuple(batch_sizes[:shape[0]]), "batch_first": batch_first})
    return data, be.torch.tensor(batch_sizes, dtype=_int64(be))


def pack_padded_sequence(be: NNBackend, input: Any, lengths: Any, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded batch of variable-length sequences: `input` (T, B, *) or, batch_first,
    (B, T, *), `lengths` each sequence's length (a list or a 1-D tensor).

    Returns:
        A PackedSequence; with `enforce_sorted=False` the batch is sorted by decreasing length
        first (`sorted_indices`).

    Raises:
        RuntimeError: lengths not sorted (enforce_sorted), not 1-D, not positive, not one per
            sequence; an empty input.
    """
    lens = _lengths_values(be, lengths)
    sorted_indices = None
    if not enforce_sorted:
        # the sorted values are known here; the order of ties is the backend's sort's
        sorted_indices = be.torch.sort(be.torch.tensor(lens, dtype=_int64(be)),
                                       descending=True)[1]
        lens = sorted(lens, reverse=True)
        input = input.index_select(0 if batch_first else 1, sorted_indices)
    data, batch_sizes = _pack(be, input, lens, batch_first)
    return be.torch.nn.utils.rnn.PackedSequence(data, batch_sizes, sorted_indices, None)


def _pad(be: NNBackend, data: Any, batch_sizes: Any, batch_first: bool, padding_value: float,
         total_length: int) -> tuple[Any, Any]:
    """torch's `_pad_packed_sequence`: the (total_length, B, *) padded tensor, filled with
    padding_value and each run of equal batch sizes copied into place, and the lengths."""
    _check_1d(be, len(be.shape(batch_sizes)))
    sizes = [int(v) for v in batch_sizes.tolist()]
    max_batch_size = sizes[0]
    tail = be.shape(data)[1:]
    output = be.torch.full((total_length, max_batch_size, *tail), padding_value,
                           dtype=data.dtype)
    lengths = [0] * max_batch_size
    copies = []  # (target, source): every view taken before the first write, as pad_sequence
    offset, prev_size, prev_i = 0, max_batch_size, 0
    for i in range(len(sizes) + 1):
        size = sizes[i] if i != len(sizes) else 0
        if size != prev_size:
            count = prev_size * (i - prev_i)
            # torch's view: reshape, see _pack
            piece = data[offset:offset + count].reshape(i - prev_i, prev_size, *tail)
            copies.append((output[prev_i:i, :prev_size], piece))
            offset += count
            prev_i = i
        for j in range(size, prev_size):  # sequences that ended before step i
            lengths[j] = i
        prev_size = size
    for target, piece in copies:
        target.copy_(piece)
    if batch_first:
        output = output.transpose(0, 1)
    return output, be.torch.tensor(lengths, dtype=_int64(be))


def pad_packed_sequence(be: NNBackend, sequence: Any, batch_first: bool = False,
                        padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Any, Any]:
    """Pad a packed batch back to (T, B, *) (or, batch_first, (B, T, *)), the inverse of
    `pack_padded_sequence`, in the batch's original order.

    Returns:
        (the padded tensor, each sequence's length as an int64 tensor).

    Raises:
        ValueError: total_length below the longest sequence's length.
    """
    max_seq_length = sequence.batch_sizes.size(0)
    if total_length is not None:
        if total_length < max_seq_length:
            raise ValueError(
                "Expected total_length to be at least the length of the longest sequence in "
                f"input, but got total_length={total_length} and max sequence length being "
                f"{max_seq_length}")
        max_seq_length = total_length
    padded, lengths = _pad(be, sequence.data, sequence.batch_sizes, batch_first, padding_value,
                           max_seq_length)
    unsorted_indices = sequence.unsorted_indices
    if unsorted_indices is not None:
        return padded.index_select(0 if batch_first else 1, unsorted_indices), \
            lengths[unsorted_indices]
    return padded, lengths


def pad_sequence(be: NNBackend, sequences: Any, batch_first: bool = False,
                 padding_value: float = 0.0, padding_side: str = "right") -> Any:
    """Stack variable-length sequences (each (L, *)) into one (T, B, *) tensor (B, T, * when
    batch_first), padded with padding_value on `padding_side`.

    Raises:
        RuntimeError: no sequences, a 0-d one, trailing sizes that do not broadcast, a
            padding_side other than 'left' or 'right', sequences that are not iterable.
    """
    if not isinstance(sequences, Iterable):
        raise be.runtime_error("pad_sequence: Expected iterable for input sequences, but got "
                               f"arg of type: {type(sequences)}")
    sequences = tuple(sequences)
    if not sequences:
        raise be.runtime_error("received an empty list of sequences")
    first = be.shape(sequences[0])
    if not first:
        raise be.runtime_error("ArrayRef: invalid slice, N = 1; size = 0")
    lengths = [seq.size(0) for seq in sequences]
    max_len = max(lengths)
    size = (len(sequences), max_len) if batch_first else (max_len, len(sequences))
    out = be.torch.full((*size, *first[1:]), padding_value, dtype=sequences[0].dtype)
    if padding_side not in ("left", "right"):
        raise be.runtime_error("Expected padding_side to be one of left or right, but got "
                               f"{padding_side}.")
    # every target view taken before the first write (a session then reads no shape after it)
    targets = []
    for i, length in enumerate(lengths):
        start = max_len - length if padding_side == "left" else 0
        if batch_first:
            targets.append(out.select(0, i).narrow(0, start, length))
        else:
            targets.append(out.narrow(0, start, length).select(1, i))
    for target, seq in zip(targets, sequences):
        target.copy_(seq)
    return out


def unpad_sequence(be: NNBackend, padded_sequences: Any, lengths: Any,
                   batch_first: bool = False) -> list[Any]:
    """Split a padded (T, B, *) (or (B, T, *)) tensor into its B sequences of `lengths`."""
    if not batch_first:
        padded_sequences = padded_sequences.transpose(0, 1)
    idx = be.torch.arange(be.shape(padded_sequences)[1])
    return [seq[idx < length] for seq, length in zip(padded_sequences, lengths, strict=True)]


def pack_sequence(be: NNBackend, sequences: Any, enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of variable-length sequences (each (L, *)): `pad_sequence`, then
    `pack_padded_sequence` with their lengths."""
    lengths = [v.size(0) for v in sequences]
    return pack_padded_sequence(be, pad_sequence(be, sequences), lengths,
                                enforce_sorted=enforce_sorted)


def unpack_sequence(be: NNBackend, packed_sequences: Any) -> list[Any]:
    """The list of sequences a PackedSequence holds, in their original order."""
    padded, lengths = pad_packed_sequence(be, packed_sequences, batch_first=True)
    return unpad_sequence(be, padded, lengths, batch_first=True)


FUNCTIONS = (invert_permutation, pack_padded_sequence, pad_packed_sequence, pad_sequence,
             unpad_sequence, pack_sequence, unpack_sequence)
"""What `nn.utils.rnn` holds besides PackedSequence (each bound to a backend by
`gradserve.surface.nn.build`)."""
