"""Gaps a fifth set of public PyTorch programs met through gradserve, each checked against torch
in process (the engine) and through a session: floating `arange` bit for bit and integral
`arange` from float bounds."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _error(fn: Any, t: Any) -> tuple[str, str]:
    """The built-in exception type `fn(t)` raises (gradserve's typed errors subclass torch's
    built-in ones) and its message."""
    try:
        fn(t)
    except Exception as exc:  # a session's error also names the line that recorded it
        builtin = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
        return builtin.__name__, str(exc).split("\ngradserve:")[0]
    raise AssertionError("no error")


def _bits(t: Any) -> tuple[str, bytes, tuple[int, ...]]:
    """A tensor's dtype, exact bytes and shape."""
    a = np.asarray(t.tolist(), dtype=str(t.dtype).replace("torch.", ""))
    return str(t.dtype), a.tobytes(), tuple(t.shape)


# --- arange -------------------------------------------------------------------------------------

def _ranges() -> list[tuple[Any, Any, Any]]:
    rng = random.Random(5)
    out: list[tuple[Any, Any, Any]] = [(-1, 1, 0.1), (0, 1, 0.1), (-3.5, 9.25, 0.37),
                                       (10, -10, -0.3), (0.5, 4.5, 1), (-1.7, 5, 1.5),
                                       (0, 5.5, 1), (0.5, 5, 1.5), (1, 2, 1e-3)]
    for _ in range(12):
        start = rng.uniform(-10, 10)
        step = rng.choice([1, -1]) * rng.uniform(1e-3, 1)
        out.append((start, start + step * rng.randint(1, 400), step))
    return out


@pytest.mark.parametrize("bounds", _ranges())
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "int16", "int8",
                                   "uint8"])
def test_arange_matches_torch_bit_for_bit(lib, bounds, dtype):
    def run(t: Any) -> Any:
        return _bits(t.arange(*bounds, dtype=getattr(t, dtype)))
    try:
        want = run(torch)
    except Exception:
        assert _error(run, lib) == _error(run, torch)
        return
    assert run(lib) == want


def test_arange_minus_one_to_one_keeps_torch_rounding(lib):
    # torch: -2.9802e-09 at index 10 (the vector's base rounded to float32, then + 2 * 0.1)
    assert lib.arange(-1, 1, 0.1)[10].item() == torch.arange(-1, 1, 0.1)[10].item() != 0.0


def test_arange_long_range_matches_torch_in_each_thread_range():
    import gradserve.engine as ge

    for dtype in ("float32", "float64"):
        want = torch.arange(-3.0, 70000.0, 0.7, dtype=getattr(torch, dtype)).numpy()
        got = ge.arange(-3.0, 70000.0, 0.7, dtype=getattr(ge, dtype)).numpy()
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("call", [
    lambda t: t.arange(0, 5, 0.5, dtype=t.int64),
    lambda t: t.arange(0, 3, dtype=t.bool),
    lambda t: t.arange(0.5, -3, 1, dtype=t.int64),
    lambda t: t.arange(0, 5, 0),
])
def test_arange_refusals_match_torch(lib, call):
    assert _error(lambda t: call(t).tolist(), lib) == _error(lambda t: call(t).tolist(), torch)


@pytest.mark.parametrize("args", [(0, 1, 5), (-2.5, 7.0, 11), (1, -1, 7), (0.1, 0.9, 33),
                                  (-1, 1, 21)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linspace_matches_torch_bit_for_bit(lib, args, dtype):
    def run(t: Any) -> Any:
        return _bits(t.linspace(*args, dtype=getattr(t, dtype)))
    assert run(lib) == run(torch)


# --- maximum, minimum, fmax, fmin: tensors only -------------------------------------------------

@pytest.mark.parametrize("name", ["maximum", "minimum", "fmax", "fmin"])
@pytest.mark.parametrize("call", [
    lambda t, f: getattr(t, f)(t.ones(2), 2.0),
    lambda t, f: getattr(t, f)(t.ones(2), 2),
    lambda t, f: getattr(t, f)(t.ones(2), True),
    lambda t, f: getattr(t, f)(2.0, t.ones(2)),
    lambda t, f: getattr(t, f)(t.ones(2), None),
    lambda t, f: getattr(t, f)(t.ones(2), [1.0, 2.0]),
    lambda t, f: getattr(t.ones(2), f)(2.0),
    lambda t, f: getattr(t.ones(2), f)(np.float64(2.0)),
])
def test_elementwise_extremes_refuse_numbers_as_torch(lib, name, call):
    assert _error(lambda t: call(t, name), lib) == _error(lambda t: call(t, name), torch)


def _extremes_run(t: Any) -> list[Any]:
    nan = float("nan")
    x = t.tensor([1.0, nan, 3.0, nan, -2.0, 0.5], requires_grad=True)
    y = t.tensor([2.0, 1.0, nan, nan, -2.0, 0.25], requires_grad=True)
    out = []
    for name in ("maximum", "minimum", "fmax", "fmin"):
        r = getattr(t, name)(x, y)
        m = getattr(x, name)(y)
        (r * t.arange(1.0, 7.0)).sum().backward()
        out += [r.tolist(), m.tolist(), r.grad_fn.name(), x.grad.tolist(), y.grad.tolist()]
        x.grad = None
        y.grad = None
    ints = t.fmax(t.tensor([1, 5]), t.tensor([3.5, 2.0]))
    return [repr(out), ints.tolist(), str(ints.dtype)]


def test_elementwise_extremes_match_torch(lib):
    assert _extremes_run(lib) == _extremes_run(torch)
