"""What an op's results will be (shape, dtype, requires_grad, and whether contiguous:
`meta_layout`), known before the server runs it.

The client records ops and sends them in batches; to hand back a result's `.shape`, `.dtype` and
`.requires_grad` without asking the server, it calls `infer` with the op's catalogue name, its
inputs and its attributes. `infer` answers only when it can be exact, i.e. what the engine's op
would give for inputs with these shapes, dtypes and requires_grad flags; otherwise (an op without
a rule here, an attribute it does not know, an input kind it does not model, or inputs the
engine refuses for their shapes, dtypes or attributes) it returns None, and the server describes
the result as before. It never guesses.

The rules (`meta_math`, `meta_shape`, `meta_nn`, with `meta_base`'s helpers) mirror the
engine's op table (`engine/ops_*.py`): broadcasting; torch's type promotion
over three priority groups (tensors with dimensions, 0-dim tensors, Python scalars as "wrapped
numbers"), so that `int64 tensor * 2.5` is float32 and `float64 0-dim * float32 tensor` is
float32; true division and math functions made floating; comparisons and logic as bool; integer
and bool sums accumulating in int64; reductions' `dim`/`keepdim`; shape ops; matrix products;
softmax and the losses with their `reduction`. `tests/test_surface_meta.py` checks every rule
against the engine on all of the op's OpInfo samples (and dtype variants and refused inputs) in
both grad modes, and the promotion rules against torch.

requires_grad follows the engine: grad mode on, some input the op differentiates requires grad,
and the result is floating (integer and bool results never require grad).

Values are not looked at: errors that depend on the data (integer division by zero, integers to
negative tensor powers, a binary_cross_entropy input outside [0, 1], a class index out of range)
are still the server's to report when it runs the op; `infer` then describes the result the op
would have had. A Python float is float32, as on the server (whose engine keeps torch's default
dtype; a client's `set_default_dtype` changes only the tensors it creates). The results are
the out-of-place op's: an in-place op (`add_`) keeps its target's shape and dtype, or fails.

It runs for every op the client records, so the common path is flat: one dict lookup for the
rule, one pass over the inputs for elementwise ops. `bench/meta.py` measures it against the
engine running the same op: about 1.5-2.5 µs of CPU for a binary elementwise op or a full
reduction, 3-4.5 µs for a reshape or a reduction over a dim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import (  # noqa: F401 - each registers its rules
    meta_linalg,
    meta_math,
    meta_nn,
    meta_shape,
    meta_tensor_ops,
)
from .meta_base import DTYPE_NAMES, RULES, Meta, _Inexact
from .meta_layout import contiguous_result
from .numbers import NUMPY_NUMBERS, python_number

__all__ = ["DTYPE_NAMES", "RULES", "Meta", "infer"]


def infer(op: str, inputs: Sequence[Any], attrs: Mapping[str, Any],
          grad_enabled: bool) -> list[Meta] | None:
    """Each result's shape, dtype and requires_grad for catalogue op `op`, or None.

    Args:
        op: the op's catalogue name ("add", "sum", "matmul", ...).
        inputs: the op's tensor inputs in order: objects with `.shape` (a tuple of ints),
            `.dtype` (a dtype name, see `DTYPE_NAMES`) and `.requires_grad`; Python bool, int
            and float scalars as themselves, numpy ones as torch reads them
            (`surface.numbers`); None for an omitted optional input; a list of tensors for a
            variadic op's one input (`cat`, `stack`).
        attrs: the op's attributes by name, as given (omitted ones take the op's defaults);
            a dtype attribute as its name or an object with `.name`.
        grad_enabled: whether grad mode is on where the op is recorded.

    Returns:
        One `Meta` per result, or None when the answer cannot be exact: no rule for `op`, an
        attribute or input kind the rule does not know, or inputs the engine refuses.
    """
    rule = RULES.get(op)
    if rule is None:
        return None
    for a in inputs:
        if isinstance(a, NUMPY_NUMBERS):  # read as torch reads them (surface/numbers.py)
            inputs = [a if (n := python_number(a)) is None else n for a in inputs]
            break
    try:
        metas = rule(inputs, attrs, grad_enabled)
    except _Inexact:
        return None
    if contiguous_result(op, inputs, attrs):
        metas = [m._replace(contiguous=True) for m in metas]
    else:  # a result of at most one element is contiguous whatever its strides
        metas = [m._replace(contiguous=True) if math.prod(m.shape) <= 1 else m for m in metas]
    if not grad_enabled and op in VIEW_OPS and getattr(inputs[0], "requires_grad", False):
        return _no_grad_views(op, metas)
    return metas


VIEW_OPS = frozenset(("alias", "diagonal", "expand", "flatten", "permute", "reshape", "select",
                      "slice", "split", "split_with_sizes", "squeeze", "t", "transpose",
                      "unbind", "unfold", "unsqueeze"))
"""The ops whose results may be views of their first input (the engine's `view=True`)."""
_COPY_OR_VIEW = frozenset(("flatten", "reshape"))  # a view only when the layout allows it


def _no_grad_views(op: str, metas: list[Meta]) -> list[Meta] | None:
    """A view op's results under no_grad() of an input that requires grad: views, they require
    grad as it does (torch's rule; their grad_fn is None). None where the result may be a copy
    (reshape, flatten: the layout decides) or is empty or 0-d (numpy makes no view of them)."""
    if op in _COPY_OR_VIEW or any(not m.shape or 0 in m.shape for m in metas):
        return None
    return [m._replace(requires_grad=True) for m in metas]
