"""dispatch.run_scalar, run's path for 0-d inputs, against run's general path: for every op that
may take it, the same result bits and dtype, the same node, the same error, and under limits the
same charge and the same refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import limits
from gradserve.engine.dispatch import run, run_scalar
from gradserve.engine.registry import OPS

SCALAR_OPS = sorted(name for name, op in OPS.items()
                    if op.scalar_path and op.arity in (1, 2)
                    and not any(a.required for a in op.attrs))


def _inputs(arity: int, dtype: str) -> list[tuple[object, ...]]:
    x = ge.tensor(np.array(0.75, dtype=dtype), requires_grad=dtype.startswith("float"))
    y = ge.tensor(np.array(-1.5, dtype=dtype))
    if arity == 1:
        return [(x,), (y,)]
    return [(x, y), (x, x), (x, 2.5), (2.5, x), (x, 3), (True, y)]


def _outcome(op_name: str, args: tuple[object, ...], general: bool,
             numpy_warnings: str = "ignore") -> object:
    op = OPS[op_name]
    saved = op.scalar_path
    op.scalar_path = not general and saved
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(numpy_warnings)  # "error": the forward raises them
            with limits.byte_budget(1 << 20) as budget:
                out = run(op, args, {})
    except Exception as exc:  # noqa: BLE001 - compared between the paths
        return ("error", type(exc), str(exc))
    finally:
        op.scalar_path = saved
    if not isinstance(out, ge.Tensor):
        return ("other", out)
    data = out._data
    return (type(data), data.dtype, np.asarray(data).tobytes(), out.dtype, out.requires_grad,
            None if out.grad_fn is None else out.grad_fn.name(), budget.spent)


@pytest.mark.parametrize("name", SCALAR_OPS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bool"])
def test_the_scalar_path_is_the_general_path(name, dtype):
    for args in _inputs(OPS[name].arity, dtype):
        # twice: the first call fills the op's dtype answers, the second takes the path
        for _ in range(2):
            assert _outcome(name, args, general=False) == _outcome(name, args, general=True)


def test_the_path_is_taken_for_0d_inputs_and_left_otherwise():
    x = ge.tensor(0.5, requires_grad=True)
    ge.sin(x)  # the dtype answer remembered
    assert run_scalar(OPS["sin"], (x,), {}) is not None
    assert run_scalar(OPS["sin"], (ge.tensor([0.5]),), {}) is None  # an array
    assert run_scalar(OPS["sin"], (ge.tensor(2),), {}) is None  # int64: cast to float first
    assert run_scalar(OPS["mul"], (x, ge.tensor(2.0, dtype=ge.float64)), {}) is None
    assert run_scalar(OPS["mul"], (x, np.float32(2)), {}) is None  # a numpy scalar operand
    assert run_scalar(OPS["sin"], (x, x), {}) is None  # arity: run says what is wrong
    with limits.allocation_limit(10):
        assert run_scalar(OPS["sin"], (x,), {}) is not None  # elementwise: under limits too
        ge.tensor([1.0]).repeat(2)
        assert run_scalar(OPS["repeat"], (x,), {"repeats": [2]}) is None  # not elementwise


def test_a_forward_that_raises_is_charged_once():
    # numpy's warning raised (as in the test suite): run computes it again, admitted once
    for name, args in (("div", (ge.tensor(0.5), 0.0)), ("log", (ge.tensor(-1.0),))):
        ours = _outcome(name, args, general=False, numpy_warnings="error")
        assert ours == _outcome(name, args, general=True, numpy_warnings="error")
        assert ours[-1] == limits.TENSOR_BYTES + 4  # type: ignore[index]


def test_limits_refuse_on_the_scalar_path():
    x = ge.tensor(0.5, requires_grad=True)
    ge.sin(x)
    with pytest.raises(ge.errors.BudgetExceededError):
        with limits.byte_budget(10):
            ge.sin(x)
    calls = []
    with limits.interrupt(lambda: calls.append(1)):
        ge.sin(x)
    assert calls == [1]
    with pytest.raises(ge.errors.AllocationLimitError):
        with limits.allocation_limit(0):
            ge.sin(x)
