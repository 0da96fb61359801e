"""0-d arithmetic and sigmoid through the scalar fast paths (engine/scalarmath.py,
ops_elementwise._sigmoid) give torch's bits, and numpy's scalar operators equal its ufuncs.

Ops keep 0-d results as numpy scalars and compute with them through numpy's scalar operators
(and a 0-d float32 sigmoid through glibc's expf and float64 steps rounded once) instead of the
ufuncs and float32 kernels larger tensors take: same values, same warnings, faster.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import ops_elementwise, scalarmath, vecmath
from tests.reference import torch

F32, F64 = np.float32, np.float64
SPECIAL = [0.0, -0.0, 1.5, -2.25, 0.1, 7.0, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, 1e-8,
           1 - 1e-8, 88.72, -88.8, -103.9, -104.1, np.inf, -np.inf, np.nan]
PARTNERS: list[Any] = [0.0, -0.0, 1.001, 1e300, 1e-300, float("inf"), float("nan"), 3.5e38, 0,
                       1, -1, 2, 2**24 + 1, 10**20, 10**40]


def _outcome(f: Callable[..., Any], *args: Any) -> tuple[str, Any, bytes]:
    """How `f(*args)` ends under warnings-as-errors: ("ok" or the warning's category, result
    type, result bytes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            r = f(*args)
            kind = "ok"
        except Exception as exc:  # noqa: BLE001 - the warning (or error) is the outcome
            kind = type(exc).__name__
            with np.errstate(all="ignore"):
                try:
                    r = f(*args)
                except Exception as again:  # noqa: BLE001
                    return kind, type(again).__name__, b""
    return kind, type(r), np.asarray(r).tobytes()


@pytest.mark.parametrize("ufunc", list(scalarmath.OPERATORS), ids=lambda u: u.__name__)
def test_scalar_operators_equal_ufuncs(ufunc: Any) -> None:
    op = scalarmath.OPERATORS[ufunc]
    cases: list[tuple[Any, ...]] = []
    for dtype in (F32, F64):
        scalars = [dtype(v) for v in SPECIAL]
        if ufunc.nin == 1:
            cases += [(s,) for s in scalars]
            continue
        cases += list(itertools.product(scalars, scalars))
        cases += list(itertools.product(scalars, PARTNERS))
        cases += list(itertools.product(PARTNERS, scalars))
    for args in cases:
        assert scalarmath.operands(args)
        assert _outcome(op, *args) == _outcome(ufunc, *args), args
        if len(args) == 2:
            assert _outcome(scalarmath.call, ufunc, *args) == _outcome(ufunc, *args), args


def test_operands_refuses_what_may_differ() -> None:
    f, d = F32(1.5), F64(1.5)
    for args in ((f, d), (d, f), (f, True), (np.int64(3), 2), (2, 3.0), (f, np.array(1.0, F32)),
                 (np.array(1.0, F32),), (f, f, f)):
        assert not scalarmath.operands(args), args


BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "mul": lambda x, y: x * y,
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "div": lambda x, y: x / y,
}
WITH_NUMBER: dict[str, Callable[[Any], Any]] = {
    "mul_float": lambda x: x * 1.001,
    "rsub_int": lambda x: 1 - x,
    "add_float": lambda x: x + 1e-8,
    "div_int": lambda x: x / 3,
    "neg": lambda x: -x,
}


def _bits(t: Any) -> bytes:
    return np.asarray(t.detach().numpy()).tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_0d_arithmetic_matches_torch(dtype: str) -> None:
    rng = np.random.default_rng(3)
    values = SPECIAL + (rng.standard_normal(30) * 10).tolist()
    ge_dtype, torch_dtype = getattr(ge, dtype), getattr(torch, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's overflow warnings (torch gives none)
        for a, b in itertools.product(values[::3], values[1::3]):
            ex, ey = ge.tensor(a, dtype=ge_dtype), ge.tensor(b, dtype=ge_dtype)
            tx, ty = torch.tensor(a, dtype=torch_dtype), torch.tensor(b, dtype=torch_dtype)
            for name, f in BINARY.items():
                assert _bits(f(ex, ey)) == _bits(f(tx, ty)), (name, a, b)
        for a in values:
            ex, tx = ge.tensor(a, dtype=ge_dtype), torch.tensor(a, dtype=torch_dtype)
            for name, g in WITH_NUMBER.items():
                assert _bits(g(ex)) == _bits(g(tx)), (name, a)


def test_0d_gradients_match_torch() -> None:
    """The seed's step on 0-d tensors: values and gradients, bit for bit."""
    # (not where clamp cuts the gradient off below: the sign of that zero is not torch's yet)
    for xv, wv in ((6.7, 1.0), (-3.25, 0.5), (0.001, -2.0), (90.0, 1.5), (-9.0, 1.5)):
        got = []
        for lib in (ge, torch):
            x, w = lib.tensor(xv), lib.tensor(wv, requires_grad=True)
            b = lib.tensor(0.1, requires_grad=True)
            p = lib.clamp(lib.sigmoid(w * x + b), 1e-8, 1 - 1e-8)
            loss = -(0.3 * lib.log(p) + (1 - 0.3) * lib.log(1 - p)) / 2
            loss.backward()
            got.append((_bits(loss), _bits(w.grad), _bits(b.grad)))
        assert got[0] == got[1], (xv, wv)


def test_0d_sigmoid_matches_torch_and_the_kernel() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([np.array(SPECIAL, F32), (rng.standard_normal(2000) * 20).astype(F32),
                             rng.uniform(-105, -85, 2000).astype(F32),
                             rng.integers(0, 2**32, 2000, dtype=np.uint64).astype(np.uint32)
                             .view(F32)])  # every kind of bit pattern, NaN payloads included
    ours = np.array([ge.sigmoid(ge.tensor(v)).numpy() for v in values], F32)
    theirs = np.array([torch.sigmoid(torch.tensor(v)).numpy() for v in values], F32)
    differ = (ours.view(np.int32) != theirs.view(np.int32)) & ~(np.isnan(ours) & np.isnan(theirs))
    assert not differ.any(), values[differ][:5]
    with np.errstate(all="raise"):  # and what the array kernel gives, NaN bits included
        for v in values[::7]:
            kernel = vecmath.float32_kernel(ops_elementwise._sigmoid_vec,
                                            ops_elementwise._sigmoid_scalar, v)
            assert ops_elementwise._sigmoid(v).tobytes() == kernel.tobytes(), v
