"""Whether an op's result is contiguous in torch, known before the server runs it.

`nn.functional.linear` takes one of two graphs by its input's layout (torch's at::linear:
a contiguous N-D input is flattened into one addmm and the result viewed back, ViewBackward0;
any other is matmul then add). A session knows shapes without asking the server
(`surface.meta`), but a layout only from a description; so the client also follows, op by op,
which results torch allocates contiguous (`contiguous_result`), and a linear layer on such a
tensor takes torch's graph without a round trip. It answers only where torch's rule holds for
every input: an op not listed here, or an input whose layout is not known, says False
("not known"), never a guess.

The kinds of op:

- made contiguous whatever the inputs (`_FRESH`): the creation functions, the matrix products
  torch allocates as new tensors (mm, addmm, bmm; matmul, whose folded and batched forms end
  in a view of one, for every pairing of dims and layouts tests/test_surface_program_gaps7.py
  tries against torch), embedding (an index_select then a view),
  softmax and log_softmax (structured kernels with a contiguous output), layer_norm (its
  output `empty_like(..., Contiguous)`);
- contiguous when every tensor input is (`_FOLLOWS`): torch's TensorIterator ops (the
  elementwise ops of `meta_math`, `where`, casts, reductions, the `*_like` creations,
  bernoulli) order the result's dims as their inputs' strides do, so inputs in row-major
  order give a row-major result; reshape, view, flatten, squeeze and unsqueeze of a contiguous
  tensor are views with contiguous strides; cat and stack (torch's output memory format is
  the inputs' common one: contiguous for contiguous inputs); unbind and select along dim 0
  (each result a view whose strides are the input's last ones);
- anything else (transpose, permute, expand, slicing, ...): not known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import meta  # noqa: F401 - registers the rules, ELEMENTWISE among them
from .meta_base import ELEMENTWISE

_FRESH = frozenset((
    "zeros", "ones", "full", "arange", "linspace", "eye", "rand", "randn", "randint",
    "randperm", "mm", "addmm", "bmm", "matmul", "embedding", "softmax", "log_softmax", "layer_norm",
))

_FOLLOWS = frozenset(ELEMENTWISE | {
    "add_scalar", "mul_scalar", "div_scalar", "pow", "clamp", "round", "where", "to_dtype",
    "sum", "mean", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like",
    "bernoulli", "reshape", "flatten", "squeeze", "unsqueeze", "cat", "stack",
})


_ALONG_FIRST = frozenset(("unbind", "select"))

FRESH, FOLLOWS, ALONG_FIRST = 1, 2, 3
KINDS: dict[str, int] = {**dict.fromkeys(_FOLLOWS, FOLLOWS), **dict.fromkeys(_FRESH, FRESH),
                         **dict.fromkeys(_ALONG_FIRST, ALONG_FIRST)}
"""Each op this module knows, by kind (for a caller's hot path; `contiguous_result` reads it)."""


def contiguous_result(op: str, inputs: Sequence[Any], attrs: Mapping[str, Any] | None,
                      contiguous: Callable[[Any], bool]) -> bool:
    """Whether torch's results of catalogue op `op` on `inputs` are contiguous.

    Args:
        op: the op's catalogue name.
        inputs: its inputs as recorded (tensors, Python scalars, None, a list of tensors for
            `cat`/`stack`).
        attrs: its attributes as given (None: none); `dim` is read for unbind and select.
        contiguous: says of one input whether it is a tensor known to be contiguous; True for
            a Python scalar or None (they have no layout).

    Returns:
        True when every result is contiguous in torch; False when not, or not known.
    """
    kind = KINDS.get(op)
    if kind is None:
        return False
    if kind == FRESH:
        return True
    if kind == ALONG_FIRST:
        dim = (attrs or {}).get("dim", 0 if op == "unbind" else None)
        return type(dim) is int and dim == 0 and len(inputs) == 1 and contiguous(inputs[0])
    for value in inputs:
        if isinstance(value, (list, tuple)):
            if not all(contiguous(v) for v in value):
                return False
        elif not contiguous(value):
            return False
    return True
