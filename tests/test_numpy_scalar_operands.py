"""numpy scalars as torch reads them, in process and through a session (`gradserve_lib`).

torch takes a numpy scalar operand (`np.float64`, `np.float32`, `np.int64`, `np.bool_`) as the
Python number it holds: `t * np.float64(0.1)` stays float32 and computes in float32, on either
side of the operator (numpy defers to a tensor's `__array_priority__`), in place and in
`torch.add`. `torch.tensor` keeps a numpy scalar's own dtype, alone or in a list, where the
list's elements promote. A leaf's AccumulateGrad node exposes the leaf as `.variable`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.reference import torch

SCALARS = [np.float64(0.1), np.float64(1 / 3), np.float32(0.1), np.int64(3), np.bool_(True)]

BINARY: dict[str, Callable[[Any, Any, Any], Any]] = {
    "mul": lambda lib, t, s: t * s,
    "rmul": lambda lib, t, s: s * t,
    "add": lambda lib, t, s: t + s,
    "radd": lambda lib, t, s: s + t,
    "rsub": lambda lib, t, s: s - t,
    "div": lambda lib, t, s: t / s,
    "rdiv": lambda lib, t, s: s / t,
    "pow": lambda lib, t, s: t.abs() ** s,
    "rpow": lambda lib, t, s: s ** t,
    "torch.add": lambda lib, t, s: lib.add(t, s),
    "torch.mul": lambda lib, t, s: lib.mul(t, s),
    "lt": lambda lib, t, s: t < s,
    "rgt": lambda lib, t, s: s > t,
    "eq": lambda lib, t, s: s == t,
}


def _values() -> np.ndarray:
    return np.random.default_rng(3).standard_normal(2000).astype(np.float32)


def _same(got: Any, want: Any) -> None:
    assert type(got).__name__ == "Tensor"
    assert str(got.dtype) == str(want.dtype)
    np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("scalar", SCALARS, ids=lambda s: f"{type(s).__name__}({s})")
def test_numpy_scalar_operand_is_a_python_number(gradserve_lib: Any, name: str, scalar: Any):
    x = _values()
    want = BINARY[name](torch, torch.tensor(x), scalar)
    got = BINARY[name](gradserve_lib, gradserve_lib.tensor(x), scalar)
    _same(got, want)


@pytest.mark.parametrize("dtype", ["int64", "int32", "float64"])
@pytest.mark.parametrize("scalar", [np.float64(2.5), np.int64(2), np.float32(0.5)],
                         ids=lambda s: type(s).__name__)
def test_numpy_scalar_promotes_as_a_wrapped_number(gradserve_lib: Any, dtype: str, scalar: Any):
    """An integral tensor with a numpy float is float32 (the default), an int32 tensor with a
    numpy int64 stays int32, a float64 tensor stays float64."""
    x = np.arange(1, 6)
    want = torch.tensor(x, dtype=getattr(torch, dtype)) * scalar
    got = gradserve_lib.tensor(x, dtype=getattr(gradserve_lib, dtype)) * scalar
    _same(got, want)


@pytest.mark.parametrize("op", ["__iadd__", "__imul__", "__isub__", "__itruediv__"])
def test_numpy_scalar_in_place(gradserve_lib: Any, op: str):
    x = _values()
    want, got = torch.tensor(x), gradserve_lib.tensor(x)
    want = getattr(want, op)(np.float64(0.3))
    got = getattr(got, op)(np.float64(0.3))
    _same(got, want)


def test_numpy_scalar_gradient(gradserve_lib: Any):
    """The pattern of a physics-informed loss: a numpy-float weight times a float32 loss keeps
    float32, and its gradient is torch's."""
    x = _values()
    results = []
    for lib in (torch, gradserve_lib):
        w = lib.tensor(x, requires_grad=True)
        loss = np.float64(0.7) * (w * w).mean() + (w - np.float64(0.2)).abs().sum() / np.int64(4)
        loss.backward()
        results.append((loss, w.grad))
    (want_loss, want_grad), (got_loss, got_grad) = results
    _same(got_loss, want_loss)
    _same(got_grad, want_grad)
    assert got_loss.grad_fn.name() == want_loss.grad_fn.name()


@pytest.mark.parametrize("data", [
    np.float64(1.5), np.float32(1.5), np.int64(2), np.int32(2), np.bool_(True),
    [np.float64(1.0), 2.0], [np.float32(1.0), 2.0], [np.int32(1), 2], [np.int32(1), np.int8(2)],
    [np.uint8(1), np.int8(2)], [np.int32(1), 1.5], [np.int64(1), np.float32(2.0)],
    [[np.float64(1.0), 2.0], [3.0, 4.0]], (np.float64(1.0),), [np.float64(1.0), True],
    [np.int32(1), True], [np.array([1.0, 2.0])], [np.array([1.0], np.float32), [2.0]],
], ids=repr)
@pytest.mark.parametrize("default", ["float32", "float64"])
def test_tensor_of_numpy_values_keeps_their_dtypes(gradserve_lib: Any, data: Any, default: str):
    torch.set_default_dtype(getattr(torch, default))
    gradserve_lib.set_default_dtype(getattr(gradserve_lib, default))
    try:
        with warnings.catch_warnings():  # torch's "a list of numpy.ndarrays is slow"
            warnings.simplefilter("ignore", UserWarning)
            want = torch.tensor(data)
        got = gradserve_lib.tensor(data)
    finally:
        torch.set_default_dtype(torch.float32)
        gradserve_lib.set_default_dtype(gradserve_lib.float32)
    _same(got, want)


def test_tensor_of_a_list_holding_a_float64_tensor(gradserve_lib: Any):
    want = torch.tensor([torch.tensor(1.0, dtype=torch.float64), 1.0])
    got = gradserve_lib.tensor([gradserve_lib.tensor(1.0, dtype=gradserve_lib.float64), 1.0])
    _same(got, want)


def test_accumulate_grad_variable_is_the_leaf(gradserve_lib: Any):
    """`next_functions` down to a leaf's AccumulateGrad, whose `.variable` is the tensor the
    program holds (the same object, as in torch); other nodes have no `variable`."""
    for lib in (torch, gradserve_lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        b = lib.tensor([0.5], requires_grad=True)
        y = (w * 3 + b).sum()
        add = y.grad_fn.next_functions[0][0]
        mul, acc_b = (n for n, _ in add.next_functions)
        acc_w = mul.next_functions[0][0]
        assert acc_w.name() == "torch::autograd::AccumulateGrad"
        assert acc_w.variable is w
        assert acc_b.variable is b
        assert not hasattr(mul, "variable")


NUMPY_CALLS: dict[str, Callable[[Any], Any]] = {
    "t*0d": lambda t: t * np.array(2.0),
    "t*array": lambda t: t * np.array([2.0, 3.0, 4.0]),
    "sin": np.sin,
    "greater": lambda t: np.greater(t, 1.5),  # bool: torch's wrap makes it uint8
    "add_int32": lambda t: np.add(t, np.array(1, np.int32)),
}


@pytest.mark.parametrize("name", list(NUMPY_CALLS))
def test_numpy_function_of_a_tensor_is_a_tensor(gradserve_lib: Any, name: str):
    """numpy computes (the tensor converted by __array__) and __array_wrap__ makes the result
    a tensor, as torch's; its dtype is numpy's (`t * np.array(2.0)` is float64)."""
    x = np.array([1.0, 2.0, 3.0], np.float32)
    with warnings.catch_warnings():  # torch's __array_wrap__ has numpy 1's signature
        warnings.simplefilter("ignore", DeprecationWarning)
        want = NUMPY_CALLS[name](torch.tensor(x))
    _same(NUMPY_CALLS[name](gradserve_lib.tensor(x)), want)


def test_array_operand_errors_as_torch(gradserve_lib: Any):
    """An ndarray on the left defers to the tensor, which refuses it; a tensor that requires
    grad cannot become an array."""
    for lib in (torch, gradserve_lib):
        t = lib.tensor([1.0, 2.0], requires_grad=True)
        with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for \*"):
            np.array(2.0) * t
        with pytest.raises(RuntimeError, match="Can't call numpy"):
            t * np.array(2.0)
