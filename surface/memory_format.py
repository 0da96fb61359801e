"""torch's memory formats (`torch.contiguous_format`, `torch.channels_last`, ...) and the
strides torch gives a new tensor laid out like another: `empty_like`'s preserve rule (clone,
the *_like factories) and TensorIterator's (elementwise results), written once for the engine
and the client (each supplies the strides it holds).

Rules read off torch 2.13 (tests/test_memory_format.py compares them with torch):

- `like_strides`: a dense, non-overlapping input's own strides; otherwise the strides that keep
  the order of its dims by stride (`infer_dense_strides`: a 0 stride never moves a dim; equal
  strides put the smaller dim inside).
- `elementwise_strides`: contiguous when every operand is; channels-last when every operand is
  (4 or 5 dims); the shared strides when every operand is dense with the same strides and
  shape; else the dims ordered as the operands' strides say, the first operand with an opinion
  deciding each pair (a broadcast dim has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .layout import contiguous_strides


class memory_format:  # noqa: N801 - torch's class name
    """A memory format (`torch.channels_last`); its repr is torch's name for it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __reduce__(self) -> str:
        return self.name  # pickled as the module attribute of that name


contiguous_format = memory_format("contiguous_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")
preserve_format = memory_format("preserve_format")

# what `torch` exports: the four formats and their class (torch.memory_format)
MEMBERS: dict[str, Any] = {"memory_format": memory_format, "contiguous_format": contiguous_format,
                           "channels_last": channels_last, "channels_last_3d": channels_last_3d,
                           "preserve_format": preserve_format}

FORMATS = {f.name: f for f in (contiguous_format, channels_last, channels_last_3d,
                               preserve_format)}
# the wire's (and the engine op's attribute's) spelling of each: clone(memory_format=...)
NAMES = {"contiguous_format": "contiguous", "channels_last": "channels_last",
         "channels_last_3d": "channels_last_3d", "preserve_format": "preserve"}
ATTR_CHOICES = ("preserve", "contiguous", "channels_last", "channels_last_3d")


def attr_name(fmt: Any, fn: str, type_error: type[Exception]) -> str:
    """The attribute value (`ATTR_CHOICES`) for a `memory_format=` argument (None: preserve).

    Raises:
        TypeError: not a memory format, in torch's words.
    """
    if fmt is None:
        return "preserve"
    if not isinstance(fmt, memory_format):
        raise type_error(f"{fn}(): argument 'memory_format' must be torch.memory_format, not "
                         f"{type(fmt).__name__}")
    return NAMES[fmt.name]


def keeps_layout(fmt: str, shape: Sequence[int], strides: Any) -> bool:
    """Whether `Tensor.to(memory_format=fmt)` (no other change) may return the tensor itself:
    preserve, or the format torch suggests for its strides (`suggest`). `strides` is called
    only when needed (a client's costs a round trip)."""
    return fmt == "preserve" or suggest(shape, strides()) == fmt


def rank_error(fmt: str, ndim: int) -> str | None:
    """torch's refusal of a channels-last format for a tensor of the wrong rank, or None."""
    if fmt == "channels_last" and ndim != 4:
        return "required rank 4 tensor to use channels_last format"
    if fmt == "channels_last_3d" and ndim != 5:
        return "required rank 5 tensor to use channels_last_3d format"
    return None


def channels_last_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The strides of a channels-last tensor of 4 (NHWC) or 5 (NDHWC) dims (a dim of size 0
    counts as 1, as torch's `get_channels_last_strides_2d`/`_3d`)."""
    n = len(shape)
    strides = [0] * n
    strides[1] = 1
    acc = max(int(shape[1]), 1)
    for d in range(n - 1, 1, -1):
        strides[d] = acc
        acc *= max(int(shape[d]), 1)
    strides[0] = acc
    return tuple(strides)


def format_strides(fmt: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The strides of a new tensor of `shape` in format `fmt` ("contiguous", "channels_last",
    "channels_last_3d")."""
    if fmt == "contiguous":
        return contiguous_strides(shape)
    return channels_last_strides(shape)


def is_contiguous_as(fmt: str, shape: Sequence[int], strides: Sequence[int]) -> bool:
    """`tensor.is_contiguous(memory_format=...)`: whether the strides are `fmt`'s for `shape`,
    a dim of size 1 exempt (an empty tensor is contiguous in every format). "preserve" and
    "contiguous" ask about row-major order; a channels-last format of the wrong rank is False.
    """
    if fmt in ("contiguous", "preserve"):
        order: Sequence[int] = range(len(shape) - 1, -1, -1)
    elif (fmt == "channels_last" and len(shape) == 4) or (
            fmt == "channels_last_3d" and len(shape) == 5):
        order = (1, *range(len(shape) - 1, 1, -1), 0)
    else:
        return False
    if any(int(s) == 0 for s in shape):
        return True
    expected = 1
    for d in order:
        size = int(shape[d])
        if size != 1:
            if int(strides[d]) != expected:
                return False
            expected *= size
    return True


def suggest(shape: Sequence[int], strides: Sequence[int]) -> str:
    """torch's `suggest_memory_format`: "channels_last" ("channels_last_3d") for a tensor of 4
    (5) dims whose strides order its dims as that format's, else "contiguous" (ambiguous
    strides, as a tensor of size-1 dims has, count as contiguous)."""
    n = len(shape)
    if n not in (4, 5) or int(strides[1]) == 0:
        return "contiguous"
    least = 0
    for d in (1, *range(n - 1, 1, -1), 0):
        size, stride = int(shape[d]), int(strides[d])
        if size == 0 or stride < least:
            return "contiguous"
        if d == 0 and least == int(strides[1]):
            return "contiguous"
        least = stride * size if size > 1 else stride
    return "channels_last" if n == 4 else "channels_last_3d"


def is_non_overlapping_and_dense(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """torch's `is_non_overlapping_and_dense`: the elements fill one block without gaps or
    repeats, in some order of the dims (dims of size 0 or 1 aside)."""
    n = len(shape)
    if n == 1:
        return int(shape[0]) < 2 or int(strides[0]) == 1
    dims = sorted((d for d in range(n) if int(shape[d]) >= 2), key=lambda d: int(strides[d]))
    expected = 1
    for d in dims:
        if int(strides[d]) != expected:
            return False
        expected *= int(shape[d])
    return True


def sorted_order(shape: Sequence[int], operands: Sequence[Sequence[int]]) -> list[int]:
    """TensorIterator's dim order (innermost first), by the operands' strides: an insertion
    sort where the first operand with a strict opinion on a pair decides it (a 0 stride has
    none; equal strides put the smaller dim inside)."""
    n = len(shape)
    perm = list(range(n - 1, -1, -1))

    def should_swap(d0: int, d1: int) -> int:
        for strides in operands:
            s0, s1 = int(strides[d0]), int(strides[d1])
            if s0 == 0 or s1 == 0:
                continue
            if s0 < s1:
                return -1
            if s0 > s1:
                return 1
            if int(shape[d0]) > int(shape[d1]):
                return 1
        return 0

    for i in range(1, n):
        d1 = i
        for j in range(1, i + 1):
            d0 = i - j
            c = should_swap(perm[d0], perm[d1])
            if c > 0:
                perm[d0], perm[d1] = perm[d1], perm[d0]
                d1 = d0
            elif c < 0:
                break
    return perm


def like_strides(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, ...]:
    """The strides of `empty_like(x)` (clone, zeros_like, ...: `preserve_format`) for x of
    `shape` and `strides`."""
    if len(shape) <= 1 or is_non_overlapping_and_dense(shape, strides):
        return tuple(int(s) for s in strides) if shape else ()
    perm = sorted_order(shape, (strides,))
    out = [0] * len(shape)
    acc = 1
    for d in perm:
        out[d] = acc
        if int(shape[d]) > 1:
            acc *= int(shape[d])
    return tuple(out)


def elementwise_strides(shape: Sequence[int],
                        operands: Sequence[tuple[Sequence[int], Sequence[int]]]
                        ) -> tuple[int, ...]:
    """The strides TensorIterator gives the result of an elementwise op of broadcast `shape`
    on `operands` ((shape, strides) each, in the op's input order; 0-d ones left out).
    """
    n = len(shape)
    shape = tuple(int(s) for s in shape)
    if all(tuple(s) == shape for s, _ in operands):
        if all(is_contiguous_as("contiguous", s, st) for s, st in operands):
            return contiguous_strides(shape)
        if n in (4, 5):
            fmt = "channels_last" if n == 4 else "channels_last_3d"
            if all(is_contiguous_as(fmt, s, st) for s, st in operands):
                return channels_last_strides(shape)
        if all(is_non_overlapping_and_dense(s, st) for s, st in operands) and len(
                {tuple(int(x) for x in st) for _, st in operands}) == 1:
            return tuple(int(x) for x in operands[0][1])
    aligned = []
    for s, st in operands:
        off = n - len(s)
        full = [0] * n
        for i, size in enumerate(s):
            full[off + i] = 0 if int(size) == 1 and shape[off + i] != 1 else int(st[i])
        aligned.append(full)
    perm = sorted_order(shape, aligned)
    if perm == list(range(n - 1, -1, -1)):
        return contiguous_strides(shape)
    out = [0] * n
    acc = 1
    for d in perm:
        out[d] = acc
        acc *= shape[d]
    return tuple(out)
