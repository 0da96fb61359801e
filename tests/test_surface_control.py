"""gradserve.surface.control against torch 2.13, in process (gradserve.engine) and through a
session alike: `torch._check` and its siblings, `sym_min`/`sym_max` on Python numbers, `cond`
run eagerly; and a session tensor's own attributes (`setattr(x, "note", ...)`)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

BUILTIN_ERRORS = (AssertionError, NotImplementedError, IndexError, ValueError, TypeError,
                  RuntimeError, AttributeError)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """("ok", the value's repr) or (the built-in exception family, its message), and the
    warnings raised on the way (category, message, the file that they name)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("ok", repr(fn()))
        except BUILTIN_ERRORS as exc:
            family = next(e for e in type(exc).__mro__ if e in BUILTIN_ERRORS)
            # a session's error also names the user's line that recorded the failing op
            result = (family.__name__, re.sub(r"\ngradserve: the failing op .*$", "", str(exc)))
    return (*result, [(w.category, str(w.message), w.filename) for w in caught])


def same(lib: Any, src: str) -> None:
    """`src` evaluated with torch and with lib (as `torch`) does the same thing."""
    want = outcome(lambda: eval(src, {"torch": torch, "np": np}))
    got = outcome(lambda: eval(src, {"torch": lib, "np": np}))
    assert got == want, src


@pytest.mark.parametrize("src", [
    "torch._check(True)", "torch._check(2 > 1)", "torch._check(False)",
    'torch._check(False, lambda: "x must be positive")', "torch._check(1)",
    "torch._check(np.bool_(True))", "torch._check(torch.tensor(True))",
    'torch._check(False, "not a callable")', 'torch._check(True, "not a callable")',
    "torch._check_index(False)", 'torch._check_value(False, lambda: "v")',
    "torch._check_type(False)", "torch._check_not_implemented(False, lambda: 3)",
    "torch._check_is_size(3)", "torch._check_is_size(0, max=0)", "torch._check_is_size(-1)",
    'torch._check_is_size(4, lambda: "too big", max=3)',
])
def test_checks_as_torch(lib, src):
    same(lib, src)


@pytest.mark.parametrize("src", [
    "torch.sym_min(3, 100)", "torch.sym_max(3, 100)", "torch.sym_min(3, 2.5)",
    "torch.sym_max(3, 2.0)", "torch.sym_min(np.int64(3), 5)", "torch.sym_max(np.float32(1), 0)",
    "torch.sym_min(True, 2)", 'torch.sym_min("a", 1)', "torch.sym_max(1, None)",
])
def test_sym_min_max_as_torch(lib, src):
    same(lib, src)


@pytest.mark.parametrize("src", [
    "torch.cond(True, lambda x: x + 1, lambda x: x - 1, (torch.tensor([1., 2]),))",
    "torch.cond(0, lambda x: x + 1, lambda x: x - 1, (torch.tensor([1., 2]),))",
    "torch.cond(2.5, lambda: 1, lambda: 2)",
    "torch.cond(torch.tensor(False), lambda x: x.sin(), lambda x: x.cos(), "
    "(torch.tensor([1., 2]),))",
    "torch.cond(torch.tensor([3]) > 2, lambda x, y: x * y, lambda x, y: x + y, "
    "[torch.tensor([1., 2]), torch.tensor(3.)])",
    "torch.cond(torch.tensor([True, False]), lambda x: x, lambda x: x, (torch.tensor(1.),))",
    'torch.cond("yes", lambda x: x, lambda x: x, (torch.tensor(1.),))',
    "torch.cond(torch.tensor(True), 1, lambda x: x, (torch.tensor(1.),))",
    "torch.cond(torch.tensor(True), lambda x: x, lambda x: x, torch.tensor(1.))",
    "torch.cond(torch.tensor(True), lambda x: x, lambda x: x, (1.0,))",
])
def test_cond_runs_eagerly_as_torch(lib, src):
    same(lib, src)


def test_session_tensors_take_attributes_as_torch(gradserve_client):
    def program(t: Any) -> tuple[Any, ...]:
        t.manual_seed(0)
        x = t.randn(3, 2)
        name = "attr"  # as ExportDB's tensor_setattr sets it: by a name it is given
        setattr(x, name, t.randn(3, 2))
        x.note = "kept"
        return repr(x + 4), repr(x.attr), x.note, getattr(x, "missing", "default")

    with gradserve_client.session() as s:
        assert program(s) == program(torch)
