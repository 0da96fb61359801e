"""Every op's declared saves (`defop(saves=...)`) against what its rules read and what torch saves.

A node saves exactly what the rules of its grad-requiring inputs declare; everything else is
None (data) or a `_Meta` (shape, ndim, dtype) in the node. So, per OpInfo sample (see
`tests/opinfo.py`) and per input alone requiring grad, which isolates one rule:

- `test_each_rule_reads_only_what_it_declares`: the gradients (plain and `create_graph=True`)
  equal those of the same op saving everything. A rule reading an undeclared input or the
  undeclared result gets None or a `_Meta` and fails, or differs. Needs no torch.
- `test_a_second_backward_fails_where_torchs_does`: after a backward without `retain_graph`, a
  second one fails exactly when torch's does, so no op saves more than torch (or less).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine.registry import OPS, OpDef, RuleUses
from tests.reference import torch

from .opinfo import OpInfo, Sample
from .test_engine_ops import (
    OPINFOS,
    _arrays,
    _as_tuple,
    _engine_inputs,
    _flags,
    _grad_outputs,
    _np,
    _selected,
    _torch_inputs,
)


def _one_leaf_at_a_time(flags: list[Any]) -> Iterator[list[Any]]:
    """The sample's flags with exactly one of its grad-requiring tensors left requiring grad."""
    positions = [(i, j) for i, f in enumerate(flags)
                 for j, x in (enumerate(f) if isinstance(f, list) else [(None, f)]) if x]
    for i, j in positions:
        yield [[k == j for k in range(len(f))] if isinstance(f, list) and n == i
               else [False] * len(f) if isinstance(f, list) else n == i
               for n, f in enumerate(flags)]


def _cases() -> list[Any]:
    seen: dict[str, int] = {}
    cases = []
    for info in OPINFOS:
        if not (info.check_grad and info.compare_values and OPS[info.name].differentiable):
            continue
        seen[info.name] = seen.get(info.name, 0) + 1
        label = info.name if seen[info.name] == 1 else f"{info.name}#{seen[info.name]}"
        cases.extend(pytest.param(info, i, s, id=f"{label}[{i}]")
                     for i, s in enumerate(info.samples))
    return cases


CASES = _cases()


@contextlib.contextmanager
def _saving_everything(op: OpDef) -> Iterator[None]:
    """`op` saves its result and every input whole, whatever it declares.

    A variadic op's list is saved whole or as its shapes (`_MetaSeq`, which cat's and stack's
    rules read as `tensors.shape`), as declared: there a wrong declaration fails outright.
    """
    declared, plans = op.uses, op._plans
    every = declared[0].data if op.variadic else frozenset(range(len(op.inputs)))
    op.uses = tuple(RuleUses(True, every, frozenset()) for _ in op.inputs)
    op._plans = {}
    try:
        yield
    finally:
        op.uses, op._plans = declared, plans


def _grads(info: OpInfo, index: int, sample: Sample, arrays: list[Any], flags: list[Any],
           create_graph: bool) -> list[np.ndarray | None]:
    ins, leaves = _engine_inputs(arrays, flags)
    outs = _as_tuple(ge.apply(info.name, ins, sample.attrs))
    which = [k for k in _selected(info, len(outs)) if outs[k].requires_grad]
    if not which:
        return []
    vs = _grad_outputs(info, index, outs, which)
    grads = ge.autograd.grad([outs[k] for k in which], leaves, [ge.tensor(v) for v in vs],
                             allow_unused=True, create_graph=create_graph)
    return [None if g is None else _np(g) for g in grads]


@pytest.mark.parametrize("info, index, sample", CASES)
def test_each_rule_reads_only_what_it_declares(info: OpInfo, index: int, sample: Sample):
    arrays = _arrays(info, index, sample, np.float64)
    op = OPS[info.name]
    for flags in _one_leaf_at_a_time(_flags(sample, arrays)):
        for create_graph in (False, True):
            with _saving_everything(op):
                want = _grads(info, index, sample, arrays, flags, create_graph)
            try:
                got = _grads(info, index, sample, arrays, flags, create_graph)
            except (TypeError, AttributeError, ValueError) as e:
                pytest.fail(f"{info.name} with only {flags} requiring grad: a rule reads what "
                            f"its saves= does not declare ({type(e).__name__}: {e})")
            for g, w in zip(got, want):
                assert (g is None) == (w is None)
                if w is not None:
                    np.testing.assert_array_equal(g, w, err_msg=f"{info.name} {flags}")


def _second_backward(lib: Any, info: OpInfo, index: int, sample: Sample, arrays: list[Any],
                     flags: list[Any]) -> str | None:
    make = _engine_inputs if lib is ge else _torch_inputs
    ins, leaves = make(arrays, flags)
    fn = (lambda *a, **k: ge.apply(info.name, list(a), k)) if lib is ge else info.torch_fn
    outs = _as_tuple(fn(*ins, **sample.attrs))
    which = [k for k in _selected(info, len(outs)) if outs[k].requires_grad]
    if not which:
        return None
    # grad_outputs, not sum(out * v): a mul node would save v and refuse a second backward.
    vs = _grad_outputs(info, index, outs, which)
    wrap = ge.tensor if lib is ge else torch.from_numpy
    roots, grad_outputs = [outs[k] for k in which], [wrap(v) for v in vs]
    lib.autograd.grad(roots, leaves, grad_outputs, allow_unused=True)
    try:
        lib.autograd.grad(roots, leaves, grad_outputs, allow_unused=True)
    except RuntimeError as e:
        return "freed" if "a second time" in str(e) else f"error: {e}"
    return "ok"


@pytest.mark.parametrize("info, index, sample", CASES)
def test_a_second_backward_fails_where_torchs_does(info: OpInfo, index: int, sample: Sample):
    arrays = _arrays(info, index, sample, np.float32)
    for flags in _one_leaf_at_a_time(_flags(sample, arrays)):
        want = _second_backward(torch, info, index, sample, arrays, flags)
        got = _second_backward(ge, info, index, sample, arrays, flags)
        if info.name == "einsum" and len(arrays[0]) == 1 and want == "ok":
            # Known: torch runs a one-operand einsum as views and sums that save nothing;
            # EinsumBackward0 saves its operands, whatever their count (one declaration).
            want = "freed"
        assert got == want, f"{info.name} with only {flags} requiring grad"


def _rule(ns: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    return g * y


@pytest.mark.parametrize("saves, message", [
    (None, "has VJP rules but no saves= declaration"),
    ("other", "saves has 1 entries for 2 inputs"),
    (("weight", ""), "saves names 'weight'"),
    (("input.data", ""), "saves names 'input.data'"),
    (("result.shape", ""), "saves names 'result.shape'"),
    (("other", "input"), "input 'other' has no VJP rule but saves 'input'"),
])
def test_defop_refuses_a_missing_or_wrong_declaration(saves: Any, message: str):
    with pytest.raises(ValueError, match=message):
        ge.registry.defop("saves_op_for_test", np.multiply, _rule, None, saves=saves,
                          inputs=("input", "other"), out_shape=lambda x, y: x.shape)
    assert "saves_op_for_test" not in OPS
