"""Tensor.new_zeros / new_ones / new_empty / new_full / new_tensor, torch.numel, the thread and
deterministic-algorithms switches and torch.special's aliases, against torch, in process and
through a session."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _same(ours: Any, theirs: Any) -> None:
    assert str(ours.dtype) == str(theirs.dtype)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert ours.requires_grad == theirs.requires_grad
    assert ours.is_leaf and theirs.is_leaf
    np.testing.assert_array_equal(ours.detach().numpy(), theirs.detach().numpy())


@pytest.mark.parametrize("call", [
    lambda t, x: x.new_zeros(2, 3),
    lambda t, x: x.new_zeros((2,)),
    lambda t, x: x.new_zeros(size=[1, 2]),
    lambda t, x: x.new_ones(3, dtype=t.int64),
    lambda t, x: x.new_ones([2], requires_grad=True),
    lambda t, x: x.new_full((2,), 3),
    lambda t, x: x.new_full([2, 1], 2.5, requires_grad=True),
    lambda t, x: x.new_full(size=(1,), fill_value=2),
    lambda t, x: x.new_full((2,), 1.7, dtype=t.int64),
    lambda t, x: x.new_tensor([1, 2]),
    lambda t, x: x.new_tensor(3),
    lambda t, x: x.new_tensor([[1.5], [2.5]], dtype=t.int64),
    lambda t, x: x.new_tensor([1.0], requires_grad=True),
    lambda t, x: x.new_empty(2, 3).zero_(),
])
@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_new_values_and_dtypes_are_torchs(lib, call, dtype):
    x = torch.tensor([1, 2], dtype=getattr(torch, dtype))
    gx = lib.tensor([1, 2], dtype=getattr(lib, dtype))
    try:
        theirs = call(torch, x)
    except RuntimeError as e:
        with pytest.raises(RuntimeError) as ours:
            call(lib, gx)
        assert str(ours.value).split("\ngradserve:")[0] == str(e)
        return
    _same(call(lib, gx), theirs)


def test_new_tensor_from_a_tensor_copies_and_warns(lib):
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    gx = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
    with pytest.warns(UserWarning) as theirs:
        t = x.new_tensor(torch.tensor([1, 2]) * 2)
    with pytest.warns(UserWarning) as ours:
        g = gx.new_tensor(lib.tensor([1, 2]) * 2)
    assert str(ours[0].message) == str(theirs[0].message)
    _same(g, t)


@pytest.mark.parametrize("call", [
    lambda t, x: x.new_full(2, 1.0),
    lambda t, x: x.new_zeros(2, foo=1),
    lambda t, x: x.new_zeros(),
    lambda t, x: x.new_ones(2.0),
    lambda t, x: t.numel(3),
    lambda t, x: t.numel(x, 1),
    lambda t, x: t.numel(),
])
def test_type_errors(lib, call):
    with pytest.raises(TypeError) as theirs:
        call(torch, torch.zeros(2))
    with pytest.raises(TypeError) as ours:
        call(lib, lib.zeros(2))
    assert str(ours.value) == str(theirs.value)


def test_numel(lib):
    assert lib.numel(lib.zeros(2, 3)) == torch.numel(torch.zeros(2, 3)) == 6
    assert lib.numel(input=lib.zeros(())) == 1
    assert type(lib.numel(lib.zeros(4))) is int


def test_thread_switches_are_remembered(lib):
    assert lib.get_num_threads() >= 1 and lib.get_num_interop_threads() >= 1
    lib.set_num_threads(3)
    assert lib.get_num_threads() == 3
    lib.set_num_threads(np.int64(1))
    assert lib.get_num_threads() == 1
    for bad in (0, -1, 2.0, "a", None, True):
        with pytest.raises(RuntimeError) as ours:
            lib.set_num_threads(bad)
        with pytest.raises(RuntimeError) as theirs:
            torch.set_num_threads(bad)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(RuntimeError) as ours:
        lib.set_num_interop_threads(0)
    assert str(ours.value) == "set_num_interop_threads expects a positive integer"


def test_interop_threads_are_set_once(lib):
    # torch refuses a second call (checked here on a layer of ours only: torch's own switch is
    # process-wide and a test may not spend it)
    if lib.__class__.__name__ != "Session":
        from gradserve.surface.runtime import RuntimeSettings
        lib = RuntimeSettings()
    lib.set_num_interop_threads(2)
    assert lib.get_num_interop_threads() == 2
    with pytest.raises(RuntimeError, match="^Error: cannot set number of interop threads after "
                       "parallel work has started or set_num_interop_threads called$"):
        lib.set_num_interop_threads(2)


def test_deterministic_algorithms(lib):
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        for mode, warn_only in ((True, False), (False, True), (False, False)):
            torch.use_deterministic_algorithms(mode, warn_only=warn_only)
            lib.use_deterministic_algorithms(mode, warn_only=warn_only)
            assert (lib.are_deterministic_algorithms_enabled()
                    == torch.are_deterministic_algorithms_enabled() == mode)
            assert (lib.is_deterministic_algorithms_warn_only_enabled()
                    == torch.is_deterministic_algorithms_warn_only_enabled() == warn_only)
        for call in (lambda t: t.use_deterministic_algorithms(1),
                     lambda t: t.use_deterministic_algorithms(True, warn_only=1)):
            with pytest.raises(TypeError) as ours:
                call(lib)
            with pytest.raises(TypeError) as theirs:
                call(torch)
            assert str(ours.value) == str(theirs.value)
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        lib.use_deterministic_algorithms(False)


@pytest.mark.parametrize("call", [
    lambda t, x: t.special.expit(x),
    lambda t, x: t.special.erf(x),
    lambda t, x: t.special.erfc(x),
    lambda t, x: t.special.log1p(x),
    lambda t, x: t.special.expm1(x),
    lambda t, x: t.special.logsumexp(x, 0),
    lambda t, x: t.special.softmax(x, 0),
    lambda t, x: t.special.log_softmax(x, dim=0),
    lambda t, x: t.special.xlogy(x, x + 1),
])
def test_special_aliases(lib, call):
    values = [-1.5, 0.0, 0.25, 2.0]
    x = torch.tensor(values, requires_grad=True)
    gx = lib.tensor(values, requires_grad=True)
    y, gy = call(torch, x), call(lib, gx)
    np.testing.assert_array_equal(gy.detach().numpy(), y.detach().numpy())
    assert gy.grad_fn.name() == type(y.grad_fn).__name__
    y.sum().backward()
    gy.sum().backward()
    np.testing.assert_array_equal(gx.grad.numpy(), x.grad.numpy())


def test_special_missing_name(lib):
    with pytest.raises(AttributeError, match="gradserve does not implement torch.special.zeta"):
        lib.special.zeta  # noqa: B018


def test_no_warning_without_a_tensor(lib):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lib.zeros(1).new_tensor([1.0])
